use factory_domain::stock::{Stock, StockCommand as C, StockEvent as E};
use jetsource::{DomainEvent, event::decode_data};
use jetsource_testkit::AggregateFixture;
use serde_json::json;

use crate::qty;

fn received(n: u64) -> E {
    E::StockReceived { qty: n, source: "receipt".into() }
}

fn reserved(order: &str, n: u64) -> E {
    E::StockReserved { order_id: order.into(), qty: n }
}

#[test]
fn receive_adds_to_on_hand() {
    let state = AggregateFixture::<Stock>::given_no_events()
        .when(C::Receive { qty: qty(10), source: "receipt".into() })
        .then_expect_events([received(10)]);
    assert_eq!((state.on_hand, state.available()), (10, 10));
}

#[test]
fn ship_takes_from_available_and_never_below_zero() {
    AggregateFixture::<Stock>::given([received(10)])
        .when(C::Ship { qty: qty(4) })
        .then_expect_events([E::StockShipped { qty: 4 }]);
    AggregateFixture::<Stock>::given([received(10), reserved("o1", 8)])
        .when(C::Ship { qty: qty(3) })
        .then_expect_rejection("insufficient_stock");
}

#[test]
fn reserve_holds_available_units_for_one_order() {
    let state = AggregateFixture::<Stock>::given([received(10)])
        .when(C::Reserve { qty: qty(7), order_id: "o1".into() })
        .then_expect_events([reserved("o1", 7)]);
    assert_eq!((state.reserved(), state.available()), (7, 3));
    AggregateFixture::<Stock>::given([received(10), reserved("o1", 7)])
        .when(C::Reserve { qty: qty(4), order_id: "o2".into() })
        .then_expect_rejection("insufficient_stock");
    AggregateFixture::<Stock>::given([received(10), reserved("o1", 1)])
        .when(C::Reserve { qty: qty(1), order_id: "o1".into() })
        .then_expect_rejection("already_reserved");
}

#[test]
fn release_frees_a_reservation() {
    let state = AggregateFixture::<Stock>::given([received(10), reserved("o1", 7)])
        .when(C::Release { order_id: "o1".into() })
        .then_expect_events([E::ReservationReleased { order_id: "o1".into(), qty: 7 }]);
    assert_eq!(state.available(), 10);
    AggregateFixture::<Stock>::given([received(10)])
        .when(C::Release { order_id: "o1".into() })
        .then_expect_rejection("not_reserved");
}

#[test]
fn void_lifts_a_hold_and_refuses_any_later_reservation_for_the_order() {
    let state = AggregateFixture::<Stock>::given([received(10), reserved("o1", 7)])
        .when(C::Void { order_id: "o1".into() })
        .then_expect_events([
            E::ReservationReleased { order_id: "o1".into(), qty: 7 },
            E::ReservationVoided { order_id: "o1".into() },
        ]);
    assert_eq!(state.available(), 10);
    // Nothing held yet (the reservation is still on its way): it is refused when it comes.
    AggregateFixture::<Stock>::given([received(10), E::ReservationVoided { order_id: "o1".into() }])
        .when(C::Reserve { qty: qty(1), order_id: "o1".into() })
        .then_expect_rejection("order_voided");
    AggregateFixture::<Stock>::given([received(10), E::ReservationVoided { order_id: "o1".into() }])
        .when(C::Void { order_id: "o1".into() })
        .then_expect_events([]);
}

#[test]
fn consume_uses_a_reservation_up() {
    let state = AggregateFixture::<Stock>::given([received(10), reserved("o1", 7)])
        .when(C::Consume { order_id: "o1".into() })
        .then_expect_events([E::ReservationConsumed { order_id: "o1".into(), qty: 7 }]);
    assert_eq!((state.on_hand, state.reserved()), (3, 0));
    AggregateFixture::<Stock>::given([received(10)])
        .when(C::Consume { order_id: "o9".into() })
        .then_expect_rejection("not_reserved");
}

#[test]
fn adjust_sets_the_count_but_not_below_what_is_reserved() {
    AggregateFixture::<Stock>::given([received(10)])
        .when(C::Adjust { on_hand: 8, reason: "stocktake".into() })
        .then_expect_events([E::StockAdjusted { on_hand: 8, previous: 10, reason: "stocktake".into() }]);
    AggregateFixture::<Stock>::given([received(10), reserved("o1", 5)])
        .when(C::Adjust { on_hand: 4, reason: "stocktake".into() })
        .then_expect_rejection("below_reserved");
}

#[test]
fn stock_received_v1_is_upcast_to_v2() {
    let data = E::upcasters().upcast("StockReceived", 1, 2, json!({"quantity": 12})).unwrap();
    let event: E = decode_data("StockReceived", data).unwrap();
    assert_eq!(event, E::StockReceived { qty: 12, source: "unknown".into() });
    assert!(E::upcasters().upcast("StockReceived", 1, 2, json!({"qty": 12})).is_err(), "v1 needs quantity");
}

#[test]
fn stock_commands_parse_strictly() {
    assert_eq!(C::parse("receive", br#"{"qty": 5}"#).unwrap(), C::Receive { qty: qty(5), source: "receipt".into() });
    assert_eq!(
        C::parse("adjust", br#"{"on_hand": 0, "reason": "lost"}"#).unwrap(),
        C::Adjust { on_hand: 0, reason: "lost".into() }
    );
    for (name, body, needle) in [
        ("receive", r#"{"qty": 0}"#, "qty: must be a positive integer"),
        ("receive", r#"{"qty": "5"}"#, "qty: invalid type"),
        ("ship", r#"{"qty": 1, "extra": 1}"#, "unknown field `extra`"),
        ("reserve", r#"{"qty": 1}"#, "missing field `order_id`"),
        ("reserve", r#"{"qty": 1, "order_id": "a.b"}"#, "order_id"),
        ("adjust", r#"{"on_hand": -3, "reason": "x"}"#, "on_hand"),
        ("adjust", r#"{"on_hand": 3, "reason": ""}"#, "reason"),
        ("receive", r#"{"qty": 1"#, "malformed JSON"),
    ] {
        let err = C::parse(name, body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(needle), "{name} {body}: {err}");
    }
}

#[test]
fn receiving_beyond_what_can_be_counted_is_refused() {
    AggregateFixture::<Stock>::given([received(u64::MAX - 1)])
        .when(C::Receive { qty: qty(2), source: "receipt".into() })
        .then_expect_rejection("quantity_too_large");
}

#[test]
fn a_transfer_departs_here_and_arrives_there_and_refuses_what_cannot_be_counted_there() {
    use jetsource::{Aggregate, AggregateId, Seen};
    let here = AggregateId::new("bolt@north").unwrap();
    let there = AggregateId::new("bolt@south").unwrap();
    let to = factory_domain::Warehouse::new("south").unwrap();
    let command = || C::Transfer { qty: qty(5), to: to.clone() };
    assert_eq!(Stock::scope(&here, &command()).aggregates, std::slice::from_ref(&there));
    let stock = |on_hand| Stock { on_hand, ..Stock::default() };

    let seen = Seen::new(here.clone(), [(there.clone(), stock(1))].into(), Default::default());
    let decision = stock(10).decide(command(), &seen).unwrap();
    assert_eq!(decision.events, [E::StockTransferredOut { qty: 5, to: "south".into() }]);
    assert_eq!(decision.others, [(there.clone(), vec![E::StockTransferredIn { qty: 5, from: "north".into() }])]);

    let full = Seen::new(here.clone(), [(there, stock(u64::MAX - 1))].into(), Default::default());
    let refused = stock(10).decide(command(), &full).unwrap_err();
    assert_eq!(jetsource::DomainError::reason(&refused), "quantity_too_large");
}
