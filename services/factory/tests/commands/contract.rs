use crate::support::Factory;

#[tokio::test]
async fn every_command_succeeds_with_the_reply_of_the_contract() {
    let factory = Factory::start().await;
    factory.seed().await;
    let cases = [
        (
            "cmd.product.gizmo.define",
            r#"{"name": "Gizmo", "bom": [{"sku": "bolt", "qty": 1}]}"#,
            "ProductDefined",
            "succeeded",
        ),
        ("cmd.product.gizmo.change-bom", r#"{"bom": [{"sku": "bolt", "qty": 2}]}"#, "BomChanged", "succeeded"),
        ("cmd.product.gizmo.retire", "{}", "ProductRetired", "succeeded"),
        ("cmd.stock.nut@main.receive", r#"{"qty": 20, "source": "po-7"}"#, "StockReceived", "succeeded"),
        ("cmd.stock.nut@main.ship", r#"{"qty": 2}"#, "StockShipped", "succeeded"),
        ("cmd.stock.nut@main.reserve", r#"{"qty": 5, "order_id": "o-1"}"#, "StockReserved", "succeeded"),
        ("cmd.stock.nut@main.release", r#"{"order_id": "o-1"}"#, "ReservationReleased", "succeeded"),
        ("cmd.stock.nut@main.reserve", r#"{"qty": 3, "order_id": "o-2"}"#, "StockReserved", "succeeded"),
        ("cmd.stock.nut@main.consume", r#"{"order_id": "o-2"}"#, "ReservationConsumed", "succeeded"),
        ("cmd.stock.nut@main.adjust", r#"{"on_hand": 12, "reason": "stocktake"}"#, "StockAdjusted", "succeeded"),
        (
            "cmd.order.o-9.plan",
            r#"{"product_id": "widget", "qty": 2, "warehouse": "main"}"#,
            "OrderPlanned",
            "succeeded",
        ),
        ("cmd.order.o-9.start", "", "OrderStarted", "accepted"),
        (
            "cmd.order.o-8.plan",
            r#"{"product_id": "widget", "qty": 1, "warehouse": "main"}"#,
            "OrderPlanned",
            "succeeded",
        ),
        ("cmd.order.o-8.cancel", r#"{"reason": "not needed"}"#, "OrderCancelled", "succeeded"),
    ];
    let mut last_seq = 0;
    for (subject, body, event, status) in cases {
        let reply = factory.send(subject, body).await;
        let json = reply.ok();
        assert_eq!(json["status"], status, "{subject}");
        assert_eq!(json["events"][0]["type"], event, "{subject}");
        let seq = json["stream_seq"].as_u64().unwrap();
        assert!(seq > last_seq, "stream seqs grow: {subject}");
        last_seq = seq;
        let parts: Vec<&str> = subject.split('.').collect();
        assert_eq!((json["aggregate_type"].as_str(), json["aggregate_id"].as_str()), (Some(parts[1]), Some(parts[2])));
        assert!(json["command_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(json["version"], json["events"][0]["version"]);
    }
}

#[tokio::test]
async fn complete_needs_reserved_resources_and_is_refused_before() {
    let factory = Factory::start().await;
    factory.seed().await;
    factory.send("cmd.order.o-1.plan", r#"{"product_id": "widget", "qty": 1, "warehouse": "main"}"#).await.ok();

    let early = factory.send("cmd.order.o-1.complete", "{}").await;

    assert_eq!((early.error_code(), early.code()), (Some(422), "rejected"));
    assert_eq!(early.body["reason"], "invalid_status");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_outcome_and_refuses_another_request() {
    let factory = Factory::start().await;
    let key = [("Idempotency-Key", "receipt-2026-11-27-001")];

    let first = factory.send_with("cmd.stock.bolt@main.receive", r#"{"qty": 5}"#, &key).await;
    let again = factory.send_with("cmd.stock.bolt@main.receive", r#"{ "qty":5 }"#, &key).await;
    let other = factory.send_with("cmd.stock.bolt@main.receive", r#"{"qty": 6}"#, &key).await;

    assert_eq!(first.ok()["command_id"], "receipt-2026-11-27-001");
    assert_eq!(again.ok(), first.ok(), "the first outcome, byte for byte");
    assert_eq!(again.header("Idempotent-Replayed").as_deref(), Some("true"));
    assert_eq!((other.error_code(), other.code()), (Some(422), "idempotency_key_reused"));
    let stock = factory.send("cmd.stock.bolt@main.ship", r#"{"qty": 6}"#).await;
    assert_eq!(stock.body["reason"], "insufficient_stock", "only 5 were received: {stock:?}");
}

#[tokio::test]
async fn a_rejection_under_an_idempotency_key_is_replayed_too() {
    let factory = Factory::start().await;
    let key = [("Idempotency-Key", "ship-1")];

    let first = factory.send_with("cmd.stock.bolt@main.ship", r#"{"qty": 5}"#, &key).await;
    factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 50}"#).await.ok();
    let again = factory.send_with("cmd.stock.bolt@main.ship", r#"{"qty": 5}"#, &key).await;

    assert_eq!(first.body["reason"], "insufficient_stock");
    assert_eq!(again.body, first.body, "the first outcome, although stock arrived since");
}

#[tokio::test]
async fn expected_version_pins_the_version_and_a_stale_one_is_refused() {
    let factory = Factory::start().await;
    factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 5}"#).await.ok();

    let stale = factory.send_with("cmd.stock.bolt@main.ship", r#"{"qty": 1}"#, &[("Expected-Version", "0")]).await;
    let current = factory.send_with("cmd.stock.bolt@main.ship", r#"{"qty": 1}"#, &[("Expected-Version", "1")]).await;
    let garbage = factory.send_with("cmd.stock.bolt@main.ship", r#"{"qty": 1}"#, &[("Expected-Version", "one")]).await;

    assert_eq!((stale.error_code(), stale.code()), (Some(412), "precondition_failed"));
    assert_eq!((stale.body["expected_version"].as_u64(), stale.body["actual_version"].as_u64()), (Some(0), Some(1)));
    assert_eq!(current.ok()["version"], 2);
    assert_eq!((garbage.error_code(), garbage.code()), (Some(400), "invalid"));
}

#[tokio::test]
async fn the_services_answer_nats_micro_discovery() {
    let factory = Factory::start().await;
    factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 5}"#).await.ok();

    let mut names = Vec::new();
    for service in ["catalog", "stock", "production"] {
        let ping = factory.client.request(format!("$SRV.PING.{service}"), "".into()).await.unwrap();
        let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
        assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
        names.push(ping["name"].as_str().unwrap().to_owned());
    }
    let info: serde_json::Value =
        serde_json::from_slice(&factory.client.request("$SRV.INFO.stock", "".into()).await.unwrap().payload).unwrap();
    let stats: serde_json::Value =
        serde_json::from_slice(&factory.client.request("$SRV.STATS.stock", "".into()).await.unwrap().payload).unwrap();

    assert_eq!(names, ["catalog", "stock", "production"]);
    assert_eq!(info["endpoints"][0]["subject"], "cmd.stock.>");
    assert_eq!(info["endpoints"][0]["queue_group"], "stock");
    assert_eq!(stats["endpoints"][0]["num_requests"], 1);
}

#[tokio::test]
async fn void_releases_and_bars_an_order_in_one_atomic_append_and_a_late_reservation_is_refused() {
    // Arrange
    let factory = Factory::start().await;
    factory.send("cmd.stock.pin@main.receive", r#"{"qty": 10}"#).await.ok();
    factory.send("cmd.stock.pin@main.reserve", r#"{"qty": 4, "order_id": "o-1"}"#).await.ok();

    // Act: an order that held 4 gives up; another gives up before its reservation arrived
    let voided = factory.send("cmd.stock.pin@main.void", r#"{"order_id": "o-1"}"#).await;
    let early = factory.send("cmd.stock.pin@main.void", r#"{"order_id": "o-2"}"#).await;
    let late = factory.send("cmd.stock.pin@main.reserve", r#"{"qty": 1, "order_id": "o-2"}"#).await;
    let again = factory.send("cmd.stock.pin@main.void", r#"{"order_id": "o-2"}"#).await;

    // Assert: two events in one append, versions in a row; the late reservation refused
    let events = voided.ok()["events"].as_array().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ReservationReleased", "ReservationVoided"]);
    assert_eq!((events[0]["version"].as_u64(), events[1]["version"].as_u64()), (Some(3), Some(4)));
    assert_eq!(early.ok()["events"][0]["type"], "ReservationVoided");
    assert_eq!((late.code(), late.body["reason"].as_str()), ("rejected", Some("order_voided")), "{late:?}");
    assert_eq!(again.ok()["events"], serde_json::json!([]), "voiding twice records nothing");
    let stock =
        factory.query_with("qry.stock.pin@main", "", &[("Min-Seq", &again.ok()["stream_seq"].to_string())]).await;
    assert_eq!((stock.ok()["on_hand"].as_u64(), stock.ok()["available"].as_u64()), (Some(10), Some(10)));
}
