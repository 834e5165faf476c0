use factory_domain::product::{Product, ProductCommand as C, ProductEvent as E};
use jetsource_testkit::AggregateFixture;

use crate::line;

fn defined() -> E {
    E::ProductDefined { name: "Widget".into(), bom: vec![line("bolt", 4)] }
}

#[test]
fn define_records_the_name_and_bom() {
    AggregateFixture::<Product>::given_no_events()
        .when(C::Define { name: "Widget".into(), bom: vec![line("bolt", 4)] })
        .then_expect_events([defined()]);
}

#[test]
fn define_twice_is_rejected() {
    AggregateFixture::<Product>::given([defined()])
        .when(C::Define { name: "Other".into(), bom: vec![] })
        .then_expect_rejection("already_defined");
}

#[test]
fn change_bom_replaces_the_bill_of_materials() {
    let state = AggregateFixture::<Product>::given([defined()])
        .when(C::ChangeBom { bom: vec![line("bolt", 6), line("plate", 1)] })
        .then_expect_events([E::BomChanged { bom: vec![line("bolt", 6), line("plate", 1)] }]);
    assert_eq!(state.bom.len(), 2);
}

#[test]
fn change_bom_of_an_undefined_or_retired_product_is_rejected() {
    AggregateFixture::<Product>::given_no_events()
        .when(C::ChangeBom { bom: vec![] })
        .then_expect_rejection("not_found");
    AggregateFixture::<Product>::given([defined(), E::ProductRetired {}])
        .when(C::ChangeBom { bom: vec![] })
        .then_expect_rejection("retired");
}

#[test]
fn retire_retires_once() {
    AggregateFixture::<Product>::given([defined()]).when(C::Retire).then_expect_events([E::ProductRetired {}]);
    AggregateFixture::<Product>::given([defined(), E::ProductRetired {}])
        .when(C::Retire)
        .then_expect_rejection("already_retired");
    AggregateFixture::<Product>::given_no_events().when(C::Retire).then_expect_rejection("not_found");
}

#[test]
fn product_commands_parse_strictly() {
    assert_eq!(
        C::parse("define", br#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}]}"#).unwrap(),
        C::Define { name: "Widget".into(), bom: vec![line("bolt", 4)] }
    );
    assert_eq!(C::parse("retire", b"").unwrap(), C::Retire);
    for (name, body, needle) in [
        ("define", r#"{"name": " ", "bom": []}"#, "name: must be"),
        ("define", r#"{"name": "W", "bom": [{"sku": "a", "qty": 1}, {"sku": "a", "qty": 2}]}"#, "twice"),
        ("change-bom", r#"{"bom": [{"sku": "a", "qty": -1}]}"#, "bom[0].qty"),
        ("retire", r#"{"now": true}"#, "unknown field `now`"),
        ("explode", "{}", "product has no command"),
    ] {
        let err = C::parse(name, body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(needle), "{name} {body}: {err}");
    }
}

#[test]
fn define_body_errors_name_the_failing_field() {
    let err = |body: &str| C::parse("define", body.as_bytes()).unwrap_err().to_string();
    assert!(
        err(r#"{"name": "w", "bom": [{"sku": "a", "qty": 0}]}"#).contains("bom[0].qty: must be a positive integer")
    );
    assert!(err(r#"{"name": 7, "bom": []}"#).contains("name: invalid type: integer `7`, expected a string"));
    assert!(err(r#"{"name": "w", "bom": [], "colour": "red"}"#).contains("unknown field `colour`"));
    assert!(err(r#"{"name": "w"}"#).contains("missing field `bom`"));
    assert!(err(r#"{"name": "w", "bom": [{"sku": "a b", "qty": 1}]}"#).contains("bom[0].sku"));
}

#[test]
fn a_product_listing_itself_reads_nothing_outside_its_scope() {
    use factory_domain::product::{Product, ProductCommand};
    use jetsource::{Aggregate, AggregateId, Seen};
    let id = AggregateId::new("loop").unwrap();
    let bom = serde_json::from_value(serde_json::json!([{"sku": "loop", "qty": 1}])).unwrap();
    let command = ProductCommand::Define { name: "Loop".into(), bom };
    let scope = Product::scope(&id, &command);
    assert!(scope.aggregates.is_empty(), "{scope:?}");
    let tags = scope.tags.iter().map(|t| (t.clone(), Vec::new())).collect();
    let seen = Seen::new(id, Default::default(), tags);
    Product::default().decide(command, &seen).unwrap();
    assert!(seen.outside_scope().is_empty(), "{:?}", seen.outside_scope());
}
