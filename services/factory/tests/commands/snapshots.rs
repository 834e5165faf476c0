//! Snapshots through the public interfaces: a long-lived stock item, after a restart, loads
//! from its snapshot and replays only what follows (the `factory_aggregate_load_events_total`
//! metric says how many events a load replayed), and a snapshot of another state schema is
//! ignored and replaced.

use std::time::Duration;

use jetsource::{Aggregate, AggregateId, SnapshotStore};

use crate::support::Factory;

/// Events stock loads replayed, from `/metrics`.
async fn replayed(port: u16) -> u64 {
    let metrics = crate::support::http_get(port, "/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("factory_aggregate_load_events_total{aggregate_type=\"stock\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A stock service alone in its process, serving `/metrics` on a port of its own.
async fn stock_service(factory: &mut Factory) -> u16 {
    let port = jetsource_testkit::server::free_port().unwrap();
    factory.spawn(vec!["stock"], |config| config.http = Some(format!("127.0.0.1:{port}").parse().unwrap())).await;
    port
}

async fn snapshot_state_version(factory: &Factory, id: &AggregateId) -> Option<u64> {
    let js = async_nats::jetstream::new(factory.client.clone());
    let snapshots = SnapshotStore::open(&js, "snapshots").await.unwrap();
    let raw = snapshots.get("stock", id).await.unwrap()?;
    let record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    record["state_version"].as_u64()
}

#[tokio::test]
async fn after_a_restart_a_long_lived_aggregate_loads_from_its_snapshot_and_another_schema_is_replaced() {
    // Arrange: 150 receipts (the snapshot is taken at version 100), then a fresh process
    let mut factory = Factory::server_only().await;
    let port = stock_service(&mut factory).await;
    for _ in 0..150 {
        factory.send("cmd.stock.long@main.receive", r#"{"qty": 1}"#).await.ok();
    }
    let id = AggregateId::new("long@main").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while snapshot_state_version(&factory, &id).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replayed(port).await, 0, "the first process built the aggregate from its own appends");
    factory.stop_all().await;

    // Act 1: the next command in a new process
    let port = stock_service(&mut factory).await;
    let reply = factory.send("cmd.stock.long@main.receive", r#"{"qty": 1}"#).await;

    // Assert 1: the right version, from the snapshot at 100 and the 50 events after it
    assert_eq!(reply.ok()["version"], 151);
    assert_eq!(replayed(port).await, 50);
    factory.stop_all().await;

    // Act 2: a snapshot of another state schema, then a command in a new process
    let js = async_nats::jetstream::new(factory.client.clone());
    let snapshots = SnapshotStore::open(&js, "snapshots").await.unwrap();
    let other = serde_json::json!({"state_version": 999, "version": 151, "stream_seq": 151, "recent": [], "state": {"on_hand": 0}});
    snapshots.put("stock", &id, serde_json::to_vec(&other).unwrap().into()).await.unwrap();
    let port = stock_service(&mut factory).await;
    let reply = factory.send("cmd.stock.long@main.receive", r#"{"qty": 1}"#).await;

    // Assert 2: ignored (all 151 events replayed, the count right), and replaced
    assert_eq!(reply.ok()["version"], 152);
    assert_eq!(replayed(port).await, 151);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while snapshot_state_version(&factory, &id).await != Some(u64::from(factory_domain::stock::Stock::STATE_VERSION)) {
        assert!(tokio::time::Instant::now() < deadline, "the snapshot of another schema was not replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
