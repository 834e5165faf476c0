use factory_domain::order::{Order, OrderCommand as C, OrderEvent as E, OrderStatus, ProductInfo, ReservedLine};
use factory_domain::{Sku, Warehouse};
use jetsource_testkit::AggregateFixture;

use crate::{line, qty};

fn plan(product: Option<ProductInfo>) -> C {
    C::Plan {
        product_id: "widget".into(),
        qty: qty(2),
        warehouse: Warehouse::new("main").unwrap(),
        requester: None,
        product,
    }
}

fn widget(retired: bool) -> Option<ProductInfo> {
    Some(ProductInfo { retired, bom: vec![line("bolt", 4)] })
}

fn planned() -> E {
    E::OrderPlanned {
        product_id: "widget".into(),
        qty: 2,
        warehouse: "main".into(),
        bom: vec![line("bolt", 4)],
        customer: None,
        contact: None,
    }
}

fn bolts(n: u64) -> Vec<ReservedLine> {
    vec![ReservedLine { sku: Sku::new("bolt").unwrap(), qty: n }]
}

#[test]
fn plan_needs_a_defined_unretired_product() {
    let state = AggregateFixture::<Order>::given_no_events().when(plan(widget(false))).then_expect_events([planned()]);
    assert_eq!(state.requirements(), bolts(8), "2 widgets × 4 bolts");
    AggregateFixture::<Order>::given_no_events().when(plan(None)).then_expect_rejection("unknown_product");
    AggregateFixture::<Order>::given_no_events().when(plan(widget(true))).then_expect_rejection("product_retired");
    AggregateFixture::<Order>::given([planned()]).when(plan(widget(false))).then_expect_rejection("already_planned");
    let huge = C::Plan {
        product_id: "widget".into(),
        qty: qty(u64::MAX / 2),
        warehouse: Warehouse::new("main").unwrap(),
        requester: None,
        product: widget(false),
    };
    AggregateFixture::<Order>::given_no_events().when(huge).then_expect_rejection("quantity_too_large");
}

#[test]
fn a_requester_s_contact_is_personal_data_of_the_customer() {
    let requester: factory_domain::order::Requester =
        serde_json::from_str(r#"{"customer": "c-42", "name": "Ada", "email": "ada@example.com"}"#).unwrap();
    let command = C::Plan {
        product_id: "widget".into(),
        qty: qty(2),
        warehouse: Warehouse::new("main").unwrap(),
        requester: Some(requester),
        product: widget(false),
    };
    let state = AggregateFixture::<Order>::given_no_events().when(command).then_expect_events([E::OrderPlanned {
        product_id: "widget".into(),
        qty: 2,
        warehouse: "main".into(),
        bom: vec![line("bolt", 4)],
        customer: Some("c-42".into()),
        contact: Some(jetsource::Personal::new(
            "c-42",
            factory_domain::order::Contact { name: "Ada".into(), email: "ada@example.com".into() },
        )),
    }]);
    assert_eq!(state.contact.as_ref().map(|c| c.subject()), Some("c-42"));
    let unknown = r#"{"customer": "c-42", "name": "Ada", "email": "a@b", "phone": "1"}"#;
    assert!(serde_json::from_str::<factory_domain::order::Requester>(unknown).is_err());
}

#[test]
fn start_moves_a_planned_order_on() {
    let state = AggregateFixture::<Order>::given([planned()]).when(C::Start).then_expect_events([E::OrderStarted {}]);
    assert_eq!(state.status, OrderStatus::Started);
    AggregateFixture::<Order>::given_no_events().when(C::Start).then_expect_rejection("not_found");
    AggregateFixture::<Order>::given([planned(), E::OrderStarted {}])
        .when(C::Start)
        .then_expect_rejection("invalid_status");
}

#[test]
fn the_saga_confirms_reservations_or_fails_a_started_order() {
    AggregateFixture::<Order>::given([planned(), E::OrderStarted {}])
        .when(C::ConfirmReserved { lines: bolts(8) })
        .then_expect_events([E::ResourcesReserved { lines: bolts(8) }]);
    let failed = AggregateFixture::<Order>::given([planned(), E::OrderStarted {}])
        .when(C::Fail { reason: "insufficient_stock".into(), message: "bolt: 3 of 8".into(), service: "stock".into() })
        .then_expect_events([E::OrderFailed {
            reason: "insufficient_stock".into(),
            message: "bolt: 3 of 8".into(),
            service: "stock".into(),
        }]);
    assert_eq!((failed.status, failed.reason.as_deref()), (OrderStatus::Failed, Some("insufficient_stock")));
    AggregateFixture::<Order>::given([planned()])
        .when(C::ConfirmReserved { lines: vec![] })
        .then_expect_rejection("invalid_status");
    AggregateFixture::<Order>::given([planned()])
        .when(C::Fail { reason: "x".into(), message: "y".into(), service: "stock".into() })
        .then_expect_rejection("invalid_status");
}

#[test]
fn complete_needs_reserved_resources() {
    AggregateFixture::<Order>::given([planned(), E::OrderStarted {}, E::ResourcesReserved { lines: bolts(8) }])
        .when(C::Complete)
        .then_expect_events([E::OrderCompleted {}]);
    AggregateFixture::<Order>::given([planned(), E::OrderStarted {}])
        .when(C::Complete)
        .then_expect_rejection("invalid_status");
    AggregateFixture::<Order>::given_no_events().when(C::Complete).then_expect_rejection("not_found");
}

#[test]
fn cancel_works_until_the_order_is_finished() {
    for history in [
        vec![planned()],
        vec![planned(), E::OrderStarted {}],
        vec![planned(), E::OrderStarted {}, E::ResourcesReserved { lines: bolts(8) }],
    ] {
        AggregateFixture::<Order>::given(history)
            .when(C::Cancel { reason: "no longer needed".into() })
            .then_expect_events([E::OrderCancelled { reason: "no longer needed".into() }]);
    }
    AggregateFixture::<Order>::given([planned(), E::OrderCancelled { reason: "x".into() }])
        .when(C::Cancel { reason: "again".into() })
        .then_expect_rejection("invalid_status");
    AggregateFixture::<Order>::given_no_events()
        .when(C::Cancel { reason: "x".into() })
        .then_expect_rejection("not_found");
}

#[test]
fn order_commands_parse_strictly() {
    assert_eq!(C::parse("plan", br#"{"product_id": "widget", "qty": 2, "warehouse": "main"}"#).unwrap(), plan(None));
    assert_eq!(C::parse("start", b"{}").unwrap(), C::Start);
    for (name, body, needle) in [
        ("plan", r#"{"product_id": "widget", "qty": 2}"#, "missing field `warehouse`"),
        ("plan", r#"{"product_id": "w!", "qty": 2, "warehouse": "main"}"#, "product_id"),
        ("plan", r#"{"product_id": "w", "qty": 2, "warehouse": "ma in"}"#, "warehouse"),
        ("cancel", r#"{"reason": ""}"#, "reason"),
        ("start", r#"{"force": true}"#, "unknown field"),
        // The saga's commands travel over NATS now (internal: not over HTTP), parsed as strictly.
        ("confirm-reserved", "{}", "missing field `lines`"),
        ("teleport", "{}", "order has no command"),
    ] {
        let err = C::parse(name, body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(needle), "{name} {body}: {err}");
    }
}
