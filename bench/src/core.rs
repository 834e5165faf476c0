//! Event store benchmarks: appends through the framework against raw OCC publishes, and
//! aggregate loads with and without a snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use jetsource::cloudevents::Attributes;
use jetsource::store::NewEvent;
use jetsource::topology::Topology;
use jetsource::{AggregateId, CommandContext, EventStore, Repository, RepositoryConfig, SnapshotStore, StoreConfig};
use tokio::sync::Mutex;

use crate::deploy::Deployment;
use crate::measure::{Rate, header, median_ms, raw_publish, run_workers};
use crate::model::{Meter, MeterEvent};

const TOPOLOGY: &str = include_str!("../../nats/topology.toml");
const BODY: &str = r#"{"qty":1,"source":"bench"}"#;

pub async fn run(window: Duration, deployment: Deployment) -> anyhow::Result<()> {
    let servers = deployment.start()?;
    let client = jetsource::connect(&servers.url(), "bench").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(TOPOLOGY)?;
    deployment.provision(&js, &topology).await?;
    let store = EventStore::new(client.clone(), StoreConfig { service: "bench".into(), ..Default::default() });
    let snapshots = SnapshotStore::open(&js, "snapshots").await?;
    println!(
        "# jetsource core benchmark: {}\n\nnats-server {} ({}, file storage), {}s per figure; acknowledged = {}",
        deployment.name(),
        client.server_info().version,
        deployment.name(),
        window.as_secs_f64(),
        deployment.promise()
    );

    header("Appends: framework vs raw JetStream OCC publish (same server, same run)");
    println!("Every figure starts on a freshly created EVENTS stream, so no run inherits another's messages");
    println!("or message-id dedupe table. Two baselines: `bare` publishes the body with only the OCC header;");
    println!("`same event` publishes the very bytes the framework writes (its CloudEvents headers, message id");
    println!("and body) from a prebuilt header map, so the difference to it is the framework's own work.\n");
    println!(
        "| concurrency | raw bare/s | raw same event/s | framework append/s | ÷ bare | ÷ same event | command pipeline/s | ÷ same event | append p50/p99 µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [1_usize, 16, 64] {
        deployment.fresh_store(&js, &topology).await?;
        let bare = raw_publish(&js, concurrency, window, BODY, None).await?;
        deployment.fresh_store(&js, &topology).await?;
        let same = raw_publish(&js, concurrency, window, BODY, Some(sample_headers(&store))).await?;
        deployment.fresh_store(&js, &topology).await?;
        let append = framework_append(&store, concurrency, window).await?;
        deployment.fresh_store(&js, &topology).await?;
        let command = framework_command(&store, concurrency, window).await?;
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {}/{} |",
            bare.per_second,
            same.per_second,
            append.per_second,
            append.per_second / bare.per_second,
            append.per_second / same.per_second,
            command.per_second,
            command.per_second / same.per_second,
            append.p50_us,
            append.p99_us
        );
    }
    deployment.fresh_store(&js, &topology).await?;

    header("Loading a 10,000-event aggregate");
    let (with_snapshot, without_snapshot, raw_fetch) = load_times(&store, &snapshots).await?;
    println!("| load | median ms | events/s |");
    println!("|---|---:|---:|");
    println!(
        "| raw Direct Get batch of the 10,000 messages (baseline) | {raw_fetch:.2} | {:.0} |",
        10_000.0 / (raw_fetch / 1e3)
    );
    println!("| no snapshot: full replay | {without_snapshot:.2} | {:.0} |", 10_000.0 / (without_snapshot / 1e3));
    println!("| with snapshot at the last event | {with_snapshot:.3} | - |");
    Ok(())
}

/// The CloudEvents headers the framework writes for one event, prebuilt.
fn sample_headers(store: &EventStore) -> HeaderMap {
    let mut headers = HeaderMap::new();
    sample_attributes(store, "w0", 0).write(&mut headers);
    headers
}

fn sample_attributes(store: &EventStore, id: &str, i: u64) -> Attributes {
    let command_id = uuid_like(id, i);
    Attributes {
        id: format!("{command_id}:0"),
        source: store.source().to_owned(),
        event_type: store.event_type("meter", "Counted"),
        subject: id.to_owned(),
        time: "2026-11-27T10:00:00.123456789Z".into(),
        schema_version: 1,
        aggregate_version: Some(i + 1),
        metadata: CommandContext::with_command_id(command_id).metadata(),
    }
}

/// A command id as long as the UUIDs the services generate.
fn uuid_like(id: &str, i: u64) -> String {
    format!("{id:0>8}-0000-7000-8000-{i:012}")
}

/// `EventStore::append`: CloudEvents headers, message id, OCC; one event per append.
async fn framework_append(store: &EventStore, concurrency: usize, window: Duration) -> anyhow::Result<Rate> {
    let last: Arc<Vec<Mutex<u64>>> = Arc::new((0..concurrency).map(|_| Mutex::new(0)).collect());
    let store = store.clone();
    run_workers(concurrency, window, move |worker, i| {
        let (store, last) = (store.clone(), Arc::clone(&last));
        async move {
            let mut expected = last[worker].lock().await;
            let id = format!("w{worker}");
            let event = MeterEvent::Counted { qty: 1, source: "bench".into() };
            let data = jetsource::event::encode_data(&event).map_err(anyhow::Error::msg)?;
            let data = bytes::Bytes::from(data);
            loop {
                let new = NewEvent::new(sample_attributes(&store, &id, i), data.clone());
                match store.append(&format!("evt.meter.{id}"), *expected, vec![new]).await {
                    Ok(appended) => {
                        *expected = appended.last_seq;
                        return Ok(());
                    }
                    // On R3, as the raw baseline: the leader had not applied the last write yet.
                    Err(jetsource::StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    })
    .await
}

/// `Repository::execute`: the whole command pipeline on a cached aggregate per worker.
async fn framework_command(store: &EventStore, concurrency: usize, window: Duration) -> anyhow::Result<Rate> {
    let repo = Arc::new(Repository::<Meter>::new(store.clone(), None, RepositoryConfig::default()));
    run_workers(concurrency, window, move |worker, _| {
        let repo = Arc::clone(&repo);
        async move {
            let id = AggregateId::new(format!("w{worker}"))?;
            repo.execute(&id, vec![1], &CommandContext::new()).await?;
            Ok(())
        }
    })
    .await
}

/// Median load times (ms) of a 10,000-event aggregate: with a snapshot, without, and the raw
/// Direct Get batch read of the same messages.
async fn load_times(store: &EventStore, snapshots: &SnapshotStore) -> anyhow::Result<(f64, f64, f64)> {
    let id = AggregateId::new("big")?;
    let writer =
        Repository::<Meter>::new(store.clone(), None, RepositoryConfig { cache_capacity: 0, ..Default::default() });
    for _ in 0..10 {
        writer.execute(&id, vec![1; 1000], &CommandContext::new()).await?;
    }
    let replaying =
        Repository::<Meter>::new(store.clone(), None, RepositoryConfig { snapshot_every: 0, ..Default::default() });
    let mut full = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let loaded = replaying.load(&id).await?;
        full.push(t.elapsed());
        anyhow::ensure!(loaded.version == 10_000 && loaded.state.total == 10_000, "replay is wrong");
        let t = Instant::now();
        let read = store.read("evt.meter.big", 1, usize::MAX).await?;
        raw.push(t.elapsed());
        anyhow::ensure!(read.len() == 10_000, "raw read is wrong");
    }
    let snapshotting = Repository::<Meter>::new(store.clone(), Some(snapshots.clone()), RepositoryConfig::default());
    snapshotting.load(&id).await?; // replays 10,000 events and writes a snapshot in the background
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshots.get("meter", &id).await?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "snapshot never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut snap = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let loaded = snapshotting.load(&id).await?;
        snap.push(t.elapsed());
        anyhow::ensure!(loaded.version == 10_000, "snapshot load is wrong");
    }
    Ok((median_ms(snap), median_ms(full), median_ms(raw)))
}
