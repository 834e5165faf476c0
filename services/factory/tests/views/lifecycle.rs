use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::fold::{all_docs, assert_views_equal_fold, caught_up};
use crate::support::Factory;

/// A mixed workload from `tasks` concurrent clients: products, stock movements, orders. Some
/// commands are refused on purpose (over-shipping, double reservations).
/// Sends `tasks` × `rounds` rounds of stock and order commands; returns how many succeeded,
/// having checked that at least every `receive`, `plan` and `cancel` did.
pub async fn workload(factory: &Arc<Factory>, tasks: usize, rounds: usize) -> usize {
    for p in 0..3 {
        factory
            .send(
                &format!("cmd.product.p{p}.define"),
                &format!(r#"{{"name": "P{p}", "bom": [{{"sku": "s{p}", "qty": 2}}]}}"#),
            )
            .await
            .ok();
    }
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let factory = Arc::clone(factory);
            tokio::spawn(async move {
                let mut ok = 0;
                for r in 0..rounds {
                    let sku = (t + r) % 5;
                    let wh = ["main", "east"][r % 2];
                    let stock = format!("cmd.stock.s{sku}@{wh}");
                    let order = format!("o-{t}-{r}");
                    let commands = [
                        (format!("{stock}.receive"), format!(r#"{{"qty": {}}}"#, 5 + r)),
                        (format!("{stock}.reserve"), format!(r#"{{"qty": 2, "order_id": "{order}"}}"#)),
                        (format!("{stock}.ship"), r#"{"qty": 3}"#.to_owned()),
                        (format!("{stock}.release"), format!(r#"{{"order_id": "{order}"}}"#)),
                        (
                            format!("cmd.order.{order}.plan"),
                            format!(r#"{{"product_id": "p{}", "qty": 1, "warehouse": "{wh}"}}"#, r % 3),
                        ),
                        (format!("cmd.order.{order}.cancel"), r#"{"reason": "test"}"#.to_owned()),
                    ];
                    let mut succeeded = 0;
                    for (subject, body) in commands {
                        succeeded += usize::from(factory.send(&subject, &body).await.error_code().is_none());
                    }
                    ok += succeeded;
                }
                ok
            })
        })
        .collect();
    let mut succeeded = 0;
    for handle in handles {
        succeeded += handle.await.unwrap();
    }
    assert!(succeeded >= tasks * rounds * 3, "only {succeeded} commands of the workload succeeded");
    succeeded
}

#[tokio::test]
async fn after_a_mixed_concurrent_workload_every_view_equals_the_fold_of_the_event_log() {
    let factory = Arc::new(Factory::start().await);
    workload(&factory, 8, 6).await;
    factory.send("cmd.product.p1.retire", "{}").await.ok();
    factory.send("cmd.stock.s1@main.adjust", r#"{"on_hand": 100, "reason": "stocktake"}"#).await.ok();

    assert_views_equal_fold(&factory).await;
}

#[tokio::test]
async fn a_projector_killed_mid_stream_restarts_without_applying_anything_twice() {
    // Arrange: command services in this process, the projector in its own
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["catalog", "stock", "production"], |_| {}).await;
    let factory = Arc::new(factory);
    let projector = factory.run_process(&["projector"]);

    // Act: kill it (SIGKILL) while a workload runs, then start another
    let load = tokio::spawn({
        let factory = Arc::clone(&factory);
        async move { workload(&factory, 6, 30).await }
    });
    // once the projector has applied part of the workload, while commands still flow
    loop {
        let page = factory.query("qry.stock", r#"{"prefix": "s"}"#).await;
        if page.body["items"].as_array().is_some_and(|items| !items.is_empty()) {
            break;
        }
        assert!(!load.is_finished(), "the workload ended before the projector applied any of it");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!load.is_finished(), "the kill must land mid-stream");
    drop(projector);
    load.await.unwrap();
    let _restarted = factory.run_process(&["projector"]);

    // Assert: same as a fold; every document's seq is its aggregate's last event
    assert_views_equal_fold(&factory).await;
}

#[tokio::test]
async fn a_rebuild_under_load_switches_without_failed_queries_and_matches_a_fresh_fold() {
    // Arrange
    let factory = Arc::new(Factory::start().await);
    workload(&factory, 4, 4).await;
    caught_up(&factory).await;
    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (factory, writing) = (Arc::clone(&factory), Arc::clone(&writing));
        async move {
            let mut i = 0;
            while writing.load(Ordering::Relaxed) {
                factory.send(&format!("cmd.stock.s{}@main.receive", i % 5), r#"{"qty": 1}"#).await.ok();
                i += 1;
            }
            i
        }
    });
    let reader = tokio::spawn({
        let (factory, writing) = (Arc::clone(&factory), Arc::clone(&writing));
        async move {
            let mut answered = 0;
            while writing.load(Ordering::Relaxed) {
                let doc = factory.query("qry.stock.s0@main", "").await;
                assert!(doc.error_code().is_none(), "a query failed during the rebuild: {doc:?}");
                let page = factory.query("qry.stock", r#"{"prefix": "s"}"#).await;
                assert!(page.error_code().is_none(), "a listing failed during the rebuild: {page:?}");
                answered += 1;
            }
            answered
        }
    });

    // Act
    let started = factory.query("projector.rebuild.stock", "").await;
    assert_eq!(started.ok()["version"], 2);
    factory.wait_view_version("stock", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    writing.store(false, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let answered = reader.await.unwrap();

    // Assert
    assert!(written > 0 && answered > 0, "load ran during the rebuild: {written} commands, {answered} queries");
    assert_views_equal_fold(&factory).await;
    let js = async_nats::jetstream::new(factory.client.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while js.get_key_value("view_stock_v1").await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the old version was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(js.get_key_value("view_stock_v2").await.is_ok());
}

#[tokio::test]
async fn a_poison_event_parks_only_its_aggregate_and_stays_visible() {
    // Arrange: a stock event another client wrote badly, then good events for it and another
    let factory = Factory::start().await;
    factory.send("cmd.stock.good@main.receive", r#"{"qty": 1}"#).await.ok();
    let js = async_nats::jetstream::new(factory.client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-type", "factory.stock.StockReceived");
    headers.insert("ce-schemaversion", "2");
    headers.insert("ce-commandid", "foreign-1");
    js.publish_with_headers("evt.stock.bad@main", headers, r#"{"qty": "lots"}"#.into()).await.unwrap().await.unwrap();

    // Act: a good event behind the bad one (published raw too: the command service itself
    // refuses to work on a history it cannot read)
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-type", "factory.stock.StockReceived");
    headers.insert("ce-schemaversion", "2");
    headers.insert("ce-commandid", "foreign-2");
    js.publish_with_headers("evt.stock.bad@main", headers, r#"{"qty": 5, "source": "x"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let refused = factory.send("cmd.stock.bad@main.receive", r#"{"qty": 5}"#).await;
    assert_eq!(refused.code(), "internal", "the write side does not act on an unreadable history");
    let last = factory.send("cmd.stock.good@main.receive", r#"{"qty": 2}"#).await;
    let seq = last.ok()["stream_seq"].as_u64().unwrap().to_string();
    let good = factory.query_with("qry.stock.good@main", "", &[("Min-Seq", &seq)]).await;

    // Assert: the other aggregate flows; this one waits, visibly
    assert_eq!(good.ok()["on_hand"], 3);
    let bad = factory.query("qry.stock.bad@main", "").await;
    assert_eq!(bad.code(), "not_found", "nothing of bad@main applied: {bad:?}");
    let status = factory.query("projector.status", "").await;
    let views = status.ok()["views"].as_array().unwrap().clone();
    let parked = |name: &str| views.iter().find(|v| v["view"] == name).unwrap()["parked"].as_u64().unwrap();
    assert_eq!((parked("stock"), parked("warehouse")), (2, 2), "the poison event and the one behind it");
    assert_eq!(parked("orders"), 0);
    let retry = factory.query("projector.retry.stock", "").await;
    assert_eq!(
        (retry.ok()["applied"].as_u64(), retry.ok()["still_parked"].as_u64()),
        (Some(0), Some(2)),
        "still undecodable, still parked"
    );
    let docs = all_docs(&factory, "stock").await;
    assert!(docs.contains_key("good@main") && !docs.contains_key("bad@main"));
}

#[tokio::test]
async fn two_projector_processes_at_once_keep_every_view_equal_to_the_fold() {
    // Arrange: command services in this process, two projectors started by mistake (or on
    // purpose: one is active, the other on standby)
    let (factory, _first, _second) = active_and_standby().await;

    // Act: steady load, queries answered by either
    workload(&factory, 8, 6).await;

    // Assert: no lost update, nothing applied twice
    assert_views_equal_fold(&factory).await;
}

/// Receives one unit at a time into `s0@main`..`s4@main` until `running` is cleared.
fn steady_receives(factory: &Arc<Factory>, running: &Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let (factory, running) = (Arc::clone(factory), Arc::clone(running));
    tokio::spawn(async move {
        let mut sent = 0;
        while running.load(Ordering::Relaxed) {
            factory.send(&format!("cmd.stock.s{}@main.receive", sent % 5), r#"{"qty": 1}"#).await.ok();
            sent += 1;
        }
        sent
    })
}

/// Command services in this process; two projector processes, the first started (and active)
/// first.
async fn active_and_standby() -> (Arc<Factory>, crate::support::Process, crate::support::Process) {
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["catalog", "stock", "production"], |_| {}).await;
    let factory = Arc::new(factory);
    let active = factory.run_process(&["projector"]);
    let standby = factory.run_process(&["projector"]);
    (factory, active, standby)
}

fn signal(process: &crate::support::Process, signal: &str) {
    let pid = process.0.id().to_string();
    let status = std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn a_hung_active_projector_loses_its_views_to_the_standby_and_its_late_writes_change_nothing() {
    // Arrange: the first projector takes the pin of every view; the second waits on standby
    let (factory, active, _standby) = active_and_standby().await;
    let running = Arc::new(AtomicBool::new(true));
    let load = steady_receives(&factory, &running);

    // Act: freeze the active one (SIGSTOP) with deliveries in hand while the load goes on; the
    // standby takes over; then let the frozen one run again with its stale batch and cache
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&active, "-STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&active, "-CONT");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    running.store(false, Ordering::Relaxed);
    let sent = load.await.unwrap();

    // Assert: every unit received is in the stock view, once
    assert!(sent > 0);
    assert_views_equal_fold(&factory).await;
}

#[tokio::test]
async fn when_the_active_projector_dies_under_load_the_standby_takes_over_and_the_views_stay_exact() {
    // Arrange: the first projector takes the pin of every view; the second waits on standby
    let (factory, active, _standby) = active_and_standby().await;
    let running = Arc::new(AtomicBool::new(true));
    let load = steady_receives(&factory, &running);

    // Act: SIGKILL the active one while the load runs
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(active);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();

    // Assert: the standby alone catches up, equal to a fresh fold
    assert_views_equal_fold(&factory).await;
}
