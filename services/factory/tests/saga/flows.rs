//! The saga's flows through NATS, against services running in this process (and a saga in a
//! separate process for the crash test).

use std::time::Duration;

use futures::StreamExt;
use jetsource::{EventStore, StoreConfig};
use serde_json::Value;

use crate::eventually;
use crate::support::Factory;

/// A product `widget` of `bom` (sku, qty per unit), with `stock` units of each in `main`.
async fn catalogue(factory: &Factory, bom: &[(&str, u64)], stock: u64) {
    let lines: Vec<Value> = bom.iter().map(|(sku, qty)| serde_json::json!({"sku": sku, "qty": qty})).collect();
    let define = serde_json::json!({"name": "Widget", "bom": lines}).to_string();
    factory.send("cmd.product.widget.define", &define).await.ok();
    for (sku, _) in bom {
        factory.send(&format!("cmd.stock.{sku}@main.receive"), &format!(r#"{{"qty": {stock}}}"#)).await.ok();
    }
}

/// Plans `order` for `qty` widgets and starts it with command id `key`; the start reply.
async fn start(factory: &Factory, order: &str, qty: u64, key: &str) -> Value {
    let plan = format!(r#"{{"product_id": "widget", "qty": {qty}, "warehouse": "main"}}"#);
    factory.send(&format!("cmd.order.{order}.plan"), &plan).await.ok();
    let started = factory.send_with(&format!("cmd.order.{order}.start"), "{}", &[("Idempotency-Key", key)]).await;
    started.ok().clone()
}

/// The command's status document once it is no longer `accepted`.
async fn final_status(factory: &Factory, command_id: &str) -> Value {
    eventually(&format!("a final status of {command_id}"), || async {
        let reply = factory.query(&format!("qry.commands.{command_id}"), "").await;
        let doc = reply.body;
        (reply.headers.is_none() && doc["status"] != "accepted").then_some(doc)
    })
    .await
}

async fn stock(factory: &Factory, id: &str) -> Value {
    factory.query(&format!("qry.stock.{id}"), "").await.ok().clone()
}

/// Event names of an aggregate's history.
async fn history(factory: &Factory, subject: &str) -> Vec<(String, Value)> {
    let store = EventStore::new(factory.client.clone(), StoreConfig::default());
    store
        .read(subject, 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let name = e.attributes().unwrap().event_name().to_owned();
            (name, serde_json::from_slice(&e.data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_covered_order_reserves_completes_and_the_product_stock_rises() {
    // Arrange
    let factory = Factory::start().await;
    catalogue(&factory, &[("bolt", 4), ("plate", 1)], 100).await;

    // Act
    let started = start(&factory, "o-1", 5, "start-o-1").await;
    let status = final_status(&factory, "start-o-1").await;
    let reserved = stock(&factory, "bolt@main").await;
    let completed = factory.send("cmd.order.o-1.complete", "{}").await;
    let widgets = eventually("widgets received", || async {
        let reply = factory.query("qry.stock.widget@main", "").await;
        (reply.headers.is_none() && reply.body["on_hand"] == 5).then_some(reply.body)
    })
    .await;

    // Assert
    assert_eq!(started["status"], "accepted");
    assert_eq!(status["status"], "completed", "{status}");
    let names: Vec<&str> = status["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(names.contains(&"StockReserved") && names.contains(&"ResourcesReserved"), "{names:?}");
    assert_eq!((reserved["reserved"].as_u64(), reserved["available"].as_u64()), (Some(20), Some(80)));
    completed.ok();
    assert_eq!(widgets["available"], 5);
    let bolts = eventually("bolts consumed", || async {
        let doc = stock(&factory, "bolt@main").await;
        (doc["reserved"] == 0).then_some(doc)
    })
    .await;
    assert_eq!(bolts["on_hand"], 80);
    let saga = factory.query("saga.get.o-1", "").await;
    assert_eq!(saga.ok()["phase"], "completed");
}

#[tokio::test]
async fn a_short_order_releases_what_it_took_fails_with_the_reason_and_notifies() {
    // Arrange: 10 bolts, 10 plates; 5 widgets need 20 bolts and 5 plates
    let factory = Factory::start().await;
    catalogue(&factory, &[("bolt", 4), ("plate", 1)], 10).await;
    let mut notifications = factory.client.subscribe("notify.start-o-2").await.unwrap();

    // Act
    let started = start(&factory, "o-2", 5, "start-o-2").await;
    let notification = tokio::time::timeout(Duration::from_secs(20), notifications.next())
        .await
        .expect("a notification within 20 s")
        .unwrap();
    let status = final_status(&factory, "start-o-2").await;

    // Assert: the notification and the status say the same, with the trace of the start
    let notification: Value = serde_json::from_slice(&notification.payload).unwrap();
    assert_eq!(started["status"], "accepted");
    assert_eq!(
        (&notification["status"], &notification["reason"], &notification["service"], &notification["code"]),
        (&"failed".into(), &"insufficient_stock".into(), &"stock".into(), &"rejected".into()),
        "{notification}"
    );
    assert!(notification["message"].as_str().unwrap().starts_with("bolt@main: "), "{notification}");
    assert_eq!(status["status"], "failed");
    let error = &status["errors"][0];
    assert_eq!((&error["reason"], &error["service"]), (&"insufficient_stock".into(), &"stock".into()));
    assert_eq!(error["trace_id"], status["trace_id"], "the failure is in the start command's trace");
    assert_eq!(notification["trace_id"], status["trace_id"]);
    // What was taken is given back
    let names = eventually("the plates released", || async {
        let names: Vec<String> = history(&factory, "evt.stock.plate@main").await.into_iter().map(|(n, _)| n).collect();
        (names.len() == 3).then_some(names)
    })
    .await;
    assert_eq!(names, ["StockReceived", "StockReserved", "ReservationReleased"]);
    let plate = eventually("plates released in the view", || async {
        let doc = stock(&factory, "plate@main").await;
        (doc["reserved"] == 0 && doc["version"] == 3).then_some(doc)
    })
    .await;
    assert_eq!(plate["available"], 10);
    assert!(history(&factory, "evt.stock.bolt@main").await.iter().all(|(n, _)| n == "StockReceived"));
    let order = factory.query("qry.orders.o-2", "").await;
    assert_eq!(order.ok()["status"], "failed");
}

#[tokio::test]
async fn a_reservation_without_an_answer_fails_the_order_after_the_bound() {
    // Arrange: a "stock" service that answers discovery but never a command
    let mut factory = Factory::server_only().await;
    let fake =
        jetsource_runtime::micro::MicroService::start(&factory.client, "stock", "0.0.0", "silent").await.unwrap();
    let _silent = factory.client.queue_subscribe("cmd.stock.>", "stock".into()).await.unwrap();
    let services = factory::app::all_services().into_iter().filter(|s| !matches!(*s, "stock" | "gateway"));
    factory.spawn(services.collect(), |config| config.saga.request_timeout = Duration::from_millis(300)).await;
    factory.send("cmd.product.widget.define", r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 1}]}"#).await.ok();

    // Act
    start(&factory, "o-3", 1, "start-o-3").await;
    let status = final_status(&factory, "start-o-3").await;

    // Assert
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!((&status["errors"][0]["reason"], &status["errors"][0]["code"]), (&"timeout".into(), &"timeout".into()));
    // The release of the unanswered line (it may have got through) is retried while the stock
    // service stays silent.
    let saga = factory.query("saga.get.o-3", "").await;
    assert_eq!((saga.ok()["phase"].as_str(), saga.ok()["order_failed"].as_bool()), (Some("compensating"), Some(true)));
    drop(fake);
}

#[tokio::test]
async fn a_saga_killed_mid_flow_and_restarted_reserves_each_line_exactly_once() {
    // Arrange: twelve resources; the saga runs in its own process, which aborts after three
    // stock answers (most reservations then got through, their answers were never read)
    let mut factory = Factory::server_only().await;
    let services = factory::app::all_services().into_iter().filter(|s| !matches!(*s, "saga" | "gateway"));
    factory.spawn(services.collect(), |_| {}).await;
    let bom: Vec<(String, u64)> = (0..12).map(|i| (format!("r{i}"), 1 + i % 3)).collect();
    let bom_refs: Vec<(&str, u64)> = bom.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    catalogue(&factory, &bom_refs, 100).await;
    let mut crashing = factory.run_process_with_env(&["saga"], &[("FACTORY_SAGA_ABORT_AFTER_STEPS", "3")]);

    // Act
    start(&factory, "o-4", 2, "start-o-4").await;
    let exit = eventually("the saga process to abort", || {
        let status = crashing.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    let restarted = factory.run_process(&["saga"]);
    let status = final_status(&factory, "start-o-4").await;
    // Completion: consume twelve reservations, then receive the product; the saga aborts right
    // after the receive was answered, before it could record that.
    drop(restarted);
    let mut crashing = factory.run_process_with_env(&["saga"], &[("FACTORY_SAGA_ABORT_AFTER_STEPS", "13")]);
    factory.send("cmd.order.o-4.complete", "{}").await.ok();
    let second_exit = eventually("the saga process to abort again", || {
        let status = crashing.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    let _restarted = factory.run_process(&["saga"]);
    let saga = eventually("the saga to finish completing", || async {
        let saga = factory.query("saga.get.o-4", "").await.body;
        (saga["phase"] == "completed").then_some(saga)
    })
    .await;

    // Assert
    assert!(!exit.success() && !second_exit.success(), "the saga aborted twice: {exit:?} {second_exit:?}");
    assert_eq!(status["status"], "completed", "{status}");
    for (sku, qty) in &bom {
        let events = history(&factory, &format!("evt.stock.{sku}@main")).await;
        let count = |name: &str| events.iter().filter(|(n, _)| n == name).count();
        let reserved: Vec<&Value> = events.iter().filter(|(n, _)| n == "StockReserved").map(|(_, d)| d).collect();
        assert_eq!((reserved.len(), count("ReservationConsumed")), (1, 1), "{sku}: {events:?}");
        assert_eq!(reserved[0]["qty"].as_u64(), Some(qty * 2), "{sku}");
    }
    let widgets = history(&factory, "evt.stock.widget@main").await;
    assert_eq!(widgets.len(), 1, "the product was received once: {widgets:?}");
    assert_eq!(widgets[0].1["qty"], 2);
    assert_eq!(saga["received"], true);
}

#[tokio::test]
async fn an_event_a_view_parks_fails_its_command_and_notifies() {
    // Arrange: another client writes a stock event the views cannot read
    let factory = Factory::start().await;
    let mut notifications = factory.client.subscribe("notify.poison-1").await.unwrap();
    let js = async_nats::jetstream::new(factory.client.clone());
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "poison-1:0"),
        ("ce-source", "/elsewhere"),
        ("ce-type", "factory.stock.StockReceived"),
        ("ce-subject", "bad@main"),
        ("ce-time", "2026-11-27T10:00:00Z"),
        ("ce-schemaversion", "2"),
        ("ce-commandid", "poison-1"),
        ("ce-correlationid", "poison-1"),
    ] {
        headers.insert(name, value);
    }

    // Act
    js.publish_with_headers("evt.stock.bad@main", headers, r#"{"qty": "lots"}"#.into()).await.unwrap().await.unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(20), notifications.next())
        .await
        .expect("a notification within 20 s")
        .unwrap();
    let status = eventually("the command marked failed", || async {
        let doc = factory.query("qry.commands.poison-1", "").await.body;
        (doc["status"] == "failed").then_some(doc)
    })
    .await;

    // Assert
    let notification: Value = serde_json::from_slice(&notification.payload).unwrap();
    assert_eq!((&notification["service"], &notification["code"]), (&"projector".into(), &"projection_failed".into()));
    assert!(notification["message"].as_str().unwrap().contains("evt.stock.bad@main"), "{notification}");
    assert_eq!(status["errors"][0]["code"], "projection_failed", "{status}");
}

#[tokio::test]
async fn an_order_event_the_saga_cannot_read_is_parked_with_the_events_of_its_order_behind_it() {
    // Arrange: another client writes an order start the saga cannot decode, then one more event
    let factory = Factory::start().await;
    let js = async_nats::jetstream::new(factory.client.clone());
    let event = |id: &'static str, body: &'static str| {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/elsewhere"),
            ("ce-type", "factory.order.OrderCancelled"),
            ("ce-subject", "o-poison"),
            ("ce-time", "2026-11-27T10:00:00Z"),
            ("ce-commandid", id),
        ] {
            headers.insert(name, value);
        }
        (headers, body)
    };

    // Act
    for (headers, body) in [event("poison-a:0", r#"{"reason": 7}"#), event("poison-b:0", r#"{"reason": "x"}"#)] {
        js.publish_with_headers("evt.order.o-poison", headers, body.into()).await.unwrap().await.unwrap();
    }
    let parked = js.get_key_value("parked").await.unwrap();
    let key = jetsource::projection::parked::key("saga", 0, "evt.order.o-poison");
    let record: Value = eventually("the saga parks the unreadable event and the one behind it", || async {
        let raw = parked.get(&key).await.ok().flatten()?;
        let record: Value = serde_json::from_slice(&raw).ok()?;
        (record["seqs"].as_array()?.len() == 2).then_some(record)
    })
    .await;

    // Assert: parked, and the command that wrote it is told
    assert!(record["reason"].as_str().unwrap().contains("cannot read"), "{record}");
    assert_eq!(record["command_id"], "poison-a:0", "{record}");
    // (the views cannot read it either: their reports may come first)
    let by_saga = |doc: &Value| {
        doc["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["service"] == "saga" && e["code"] == "process_failed"))
    };
    let status = eventually("the command's status to say the saga parked its event", || async {
        let doc = factory.query("qry.commands.poison-a:0", "").await.body;
        (doc["status"] == "failed" && by_saga(&doc)).then_some(doc)
    })
    .await;
    assert!(by_saga(&status), "{status}");
}

#[tokio::test]
async fn when_the_active_saga_dies_mid_flow_a_standby_finishes_every_order_reserving_each_line_once() {
    // Arrange: two saga processes; the first takes the pin and aborts after ten stock answers
    let mut factory = Factory::server_only().await;
    let services = factory::app::all_services().into_iter().filter(|s| !matches!(*s, "saga" | "gateway"));
    factory.spawn(services.collect(), |_| {}).await;
    let bom = [("a", 1), ("b", 2), ("c", 3)];
    catalogue(&factory, &bom, 1000).await;
    let mut active = factory.run_process_with_env(&["saga"], &[("FACTORY_SAGA_ABORT_AFTER_STEPS", "10")]);
    let _standby = factory.run_process(&["saga"]);

    // Act
    for i in 0..8 {
        start(&factory, &format!("o-{i}"), 1, &format!("start-o-{i}")).await;
    }
    let exit = eventually("the active saga to abort", || {
        let status = active.0.try_wait().unwrap();
        async move { status }
    })
    .await;

    // Assert: the standby took every order to its end, each line reserved exactly once
    assert!(!exit.success(), "{exit:?}");
    for i in 0..8 {
        let status = final_status(&factory, &format!("start-o-{i}")).await;
        assert_eq!(status["status"], "completed", "o-{i}: {status}");
    }
    for (sku, qty) in bom {
        let events = history(&factory, &format!("evt.stock.{sku}@main")).await;
        let reserved: Vec<&Value> = events.iter().filter(|(n, _)| n == "StockReserved").map(|(_, d)| d).collect();
        assert_eq!(reserved.len(), 8, "{sku}: one reservation per order: {events:?}");
        let orders: std::collections::BTreeSet<&str> = reserved.iter().filter_map(|d| d["order_id"].as_str()).collect();
        assert_eq!(orders.len(), 8, "{sku}: no order reserved twice");
        assert!(reserved.iter().all(|d| d["qty"].as_u64() == Some(qty)), "{sku}");
    }
}

#[tokio::test]
async fn an_order_cancelled_while_its_resources_are_reserved_ends_its_start_as_failed_cancelled() {
    // Arrange: a "stock" service slow to answer reservations, so the cancel lands meanwhile
    let mut factory = Factory::server_only().await;
    let fake = jetsource_runtime::micro::MicroService::start(&factory.client, "stock", "0.0.0", "slow").await.unwrap();
    let mut slow = factory.client.queue_subscribe("cmd.stock.>", "stock".into()).await.unwrap();
    let client = factory.client.clone();
    let answering = tokio::spawn(async move {
        while let Some(request) = slow.next().await {
            if request.subject.ends_with(".reserve") {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            if let Some(reply) = request.reply {
                client.publish(reply, r#"{"status": "succeeded"}"#.into()).await.ok();
            }
        }
    });
    let services = factory::app::all_services().into_iter().filter(|s| !matches!(*s, "stock" | "gateway"));
    factory.spawn(services.collect(), |_| {}).await;
    factory.send("cmd.product.widget.define", r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 1}]}"#).await.ok();

    // Act
    start(&factory, "o-5", 1, "start-o-5").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    factory.send("cmd.order.o-5.cancel", r#"{"reason": "customer withdrew"}"#).await.ok();
    let status = final_status(&factory, "start-o-5").await;

    // Assert: the start ends (instead of staying `accepted`), with the reason; what was taken
    // is given back
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["errors"][0]["reason"], "cancelled", "{status}");
    let saga = eventually("the saga to finish the cancel", || async {
        let saga = factory.query("saga.get.o-5", "").await.body;
        (saga["phase"] == "cancelled").then_some(saga)
    })
    .await;
    assert_eq!(saga["start_closed"], true);
    answering.abort();
    drop(fake);
}

#[tokio::test]
async fn a_reservation_hold_that_ends_while_the_whole_factory_is_down_cancels_the_order_once_it_is_back() {
    // Arrange: orders may hold their stock 2 s; one is reserved, then the whole factory stops
    let mut factory = Factory::server_only().await;
    let services = || factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect::<Vec<_>>();
    let hold = |config: &mut factory::app::AppConfig| config.saga.reservation_hold = Duration::from_secs(2);
    factory.spawn(services(), hold).await;
    catalogue(&factory, &[("bolt", 2)], 10).await;
    start(&factory, "o-6", 1, "start-o-6").await;
    let reserved = final_status(&factory, "start-o-6").await;
    assert_eq!(reserved["status"], "completed", "{reserved}");
    let js = async_nats::jetstream::new(factory.client.clone());
    let timers = |subject: &'static str| {
        let js = js.clone();
        async move {
            let stream = js.get_stream("TIMERS").await.unwrap();
            let subjects: Vec<(String, usize)> =
                futures::TryStreamExt::try_collect(stream.info_with_subjects(subject).await.unwrap()).await.unwrap();
            subjects.len()
        }
    };
    eventually("the hold to be scheduled", || async { (timers("sched.saga.o-6.hold").await == 1).then_some(()) }).await;

    // Act: down across the deadline, then back
    factory.stop_all().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fired_while_down = timers("timer.saga.o-6.hold").await;
    factory.spawn(services(), hold).await;
    let saga = eventually("the expired order to be released", || async {
        let saga = factory.query("saga.get.o-6", "").await.body;
        (saga["phase"] == "cancelled").then_some(saga)
    })
    .await;

    // Assert: NATS kept the deadline while nothing ran; once back, the order was cancelled once
    // and its stock released
    assert_eq!(fired_while_down, 1);
    assert_eq!(saga["cancel_reason"], "reservation hold expired");
    let order = history(&factory, "evt.order.o-6").await;
    let cancels = order.iter().filter(|(name, _)| name == "OrderCancelled").count();
    assert_eq!(cancels, 1, "{order:?}");
    let bolts = history(&factory, "evt.stock.bolt@main").await;
    let names: Vec<&str> = bolts.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["StockReceived", "StockReserved", "ReservationReleased"]);
}

#[tokio::test]
async fn an_order_completed_within_its_hold_is_not_cancelled_when_the_hold_would_have_ended() {
    // Arrange
    let mut factory = Factory::server_only().await;
    let services = factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect::<Vec<_>>();
    factory.spawn(services, |config| config.saga.reservation_hold = Duration::from_secs(1)).await;
    catalogue(&factory, &[("bolt", 1)], 10).await;
    start(&factory, "o-7", 1, "start-o-7").await;
    final_status(&factory, "start-o-7").await;

    // Act
    factory.send("cmd.order.o-7.complete", "{}").await.ok();
    eventually("the saga to complete", || async {
        (factory.query("saga.get.o-7", "").await.body["phase"] == "completed").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Assert: the hold was cancelled with the completion
    let order = history(&factory, "evt.order.o-7").await;
    assert!(order.iter().all(|(name, _)| name != "OrderCancelled"), "{order:?}");
    assert_eq!(factory.query("saga.get.o-7", "").await.body["phase"], "completed");
}

#[tokio::test]
async fn cancelling_a_reserved_order_gives_every_line_back() {
    // Arrange: an order whose two lines are reserved
    let factory = Factory::start().await;
    catalogue(&factory, &[("bolt", 4), ("plate", 1)], 100).await;
    start(&factory, "o-c", 5, "start-o-c").await;
    let status = final_status(&factory, "start-o-c").await;
    assert_eq!(status["status"], "completed", "the start reserved both lines: {status}");
    eventually("bolt to show the reservation", || async {
        (stock(&factory, "bolt@main").await["available"] == 80).then_some(())
    })
    .await;

    // Act
    let cancelled = factory.send("cmd.order.o-c.cancel", r#"{"reason": "customer withdrew"}"#).await;

    // Assert: the order is cancelled, the saga releases each line, the stock is free again
    assert!(cancelled.error_code().is_none(), "{cancelled:?}");
    let saga = eventually("the saga to finish the cancel", || async {
        let saga = factory.query("saga.get.o-c", "").await.body;
        (saga["phase"] == "cancelled").then_some(saga)
    })
    .await;
    assert_eq!(saga["cancel_reason"], "customer withdrew", "{saga}");
    for (sku, free) in [("bolt", 100), ("plate", 100)] {
        let doc = eventually("the stock to be free again", || async {
            let doc = stock(&factory, &format!("{sku}@main")).await;
            (doc["available"] == free && doc["reserved"] == 0).then_some(doc)
        })
        .await;
        assert_eq!(doc["on_hand"], 100, "{sku}: nothing was consumed");
        let events = history(&factory, &format!("evt.stock.{sku}@main")).await;
        let released: Vec<_> = events.iter().filter(|(name, _)| name == "ReservationReleased").collect();
        assert_eq!(released.len(), 1, "{sku}: one release: {events:?}");
        assert_eq!(released[0].1["order_id"], "o-c");
    }
    eventually("the orders view to show the cancel", || async {
        let order = factory.query("qry.orders.o-c", "").await;
        (order.body["status"] == "cancelled").then_some(())
    })
    .await;
}
