//! The bounded event log: a steady workload of 1,000 stock aggregates (snapshots every 100
//! events) compacted every 100,000 events, with the hot stream's size after 100k and after
//! 1M events; bytes per event hot and archived (S2); time travel to an archived version and a
//! view rebuild from archive + hot, each beside the same read of the uncompacted stream
//! measured in the same run, and a raw ordered read of the stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use factory::app::{App, AppConfig};
use factory_domain::Qty;
use factory_domain::stock::{Stock, StockCommand};
use jetsource::archive::{Archiver, RunOptions};
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource::{
    AggregateId, CommandContext, EventStore, Repository, RepositoryConfig, SnapshotStore, StoreConfig, Until,
};
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsServer;

use crate::measure::{header, median_ms};

const AGGREGATES: u64 = 1_000;
const ROUND: u64 = 100_000;
const CONCURRENCY: u64 = 64;

pub async fn run(_window: Duration) -> anyhow::Result<()> {
    let total: u64 = std::env::var("BENCH_ARCHIVE_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let server = NatsServer::try_start()?;
    let client = jetsource::connect(&server.url(), "bench").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    provision(&js, &topology, ProvisionOptions::default()).await?;
    let store = EventStore::new(client.clone(), StoreConfig { service: "bench".into(), ..Default::default() });
    let snapshots = SnapshotStore::open(&js, "snapshots").await?;
    let repo = Arc::new(Repository::<Stock>::new(store.clone(), Some(snapshots), RepositoryConfig::default()));
    let archiver = Archiver::open(client.clone(), &topology).await?;
    println!(
        "# Archive benchmark\n\nnats-server {} (R1, file storage); {AGGREGATES} stock aggregates receiving events in random \
         order through the repository ({CONCURRENCY} at once), snapshots every 100 events, a compaction every {ROUND} events",
        client.server_info().version
    );

    header("Hot and archived size under a steady workload");
    println!(
        "| events written | hot messages | hot bytes | archive messages | archive bytes | compaction s | purged | held back (archive / consumers) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut written = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut first_hot = None;
    let mut uncompacted = None;
    let (mut travel_before, mut travel_after) = (0.0, 0.0);
    let (mut rebuild_before, mut rebuild_after, mut raw_read) = (0.0, 0.0, 0.0);
    while written < total {
        write(&repo, ROUND, &mut rng).await?;
        written += ROUND;
        settle(&archiver).await?;
        if written == ROUND {
            uncompacted = Some((archiver.sizes().await?, stream_dir_bytes(server.dir(), "EVENTS")));
            travel_before = time_travel_ms(&store).await?;
            (rebuild_before, raw_read) = rebuild_s(&server, None).await?;
        }
        let started = Instant::now();
        let report = archiver.run(&RunOptions::default(), |_| {}).await?;
        let took = started.elapsed().as_secs_f64();
        let sizes = archiver.sizes().await?;
        let purged: u64 = report.types.values().map(|t| t.purged).sum();
        let held: (u64, u64) =
            report.types.values().fold((0, 0), |(a, c), t| (a + t.held_by_archive, c + t.held_by_consumers));
        println!(
            "| {written} | {} | {} | {} | {} | {took:.1} | {purged} | {} / {} |",
            sizes.hot.messages, sizes.hot.bytes, sizes.archived.messages, sizes.archived.bytes, held.0, held.1
        );
        if held.1 > 0 {
            let events = js.get_stream("EVENTS").await?;
            let mut listing = events.consumers();
            while let Some(info) = futures::TryStreamExt::try_next(&mut listing).await? {
                eprintln!("  consumer {} acknowledged up to {}", info.name, info.ack_floor.stream_sequence);
            }
        }
        if written == ROUND {
            first_hot = Some(sizes.hot);
            travel_after = time_travel_ms(&store).await?;
            (rebuild_after, _) = rebuild_s(&server, Some("ARCHIVE")).await?;
        }
    }
    let last = archiver.sizes().await?;
    if let Some(first) = first_hot {
        println!(
            "\nHot stream after {written} events ÷ after {ROUND}: {:.2}× messages, {:.2}× bytes (target ≤ 1.2); the archive holds all {written}.",
            last.hot.messages as f64 / first.messages as f64,
            last.hot.bytes as f64 / first.bytes as f64
        );
    }

    header("Bytes per event on disk");
    if let Some((before, hot_disk)) = uncompacted {
        let hot = before.hot.bytes as f64 / before.hot.messages as f64;
        let hot_disk = hot_disk as f64 / before.hot.messages as f64;
        let archived = last.archived.bytes as f64 / last.archived.messages.max(1) as f64;
        let archived_disk = stream_dir_bytes(server.dir(), "ARCHIVE") as f64 / last.archived.messages.max(1) as f64;
        println!("| tier | stored bytes per event (stream state) | on disk per event (files) |");
        println!("|---|---:|---:|");
        println!(
            "| hot EVENTS (file, uncompressed; at {ROUND} events, before any compaction) | {hot:.0} | {hot_disk:.0} |"
        );
        println!(
            "| ARCHIVE (file, S2; every event with its source header, and the time index) | {archived:.0} | {archived_disk:.0} |"
        );
        println!("\narchived ÷ hot on disk: {:.2}", archived_disk / hot_disk);
    }

    header("Reads after compaction beside the same reads before it (same run, same events)");
    println!("| read | uncompacted | compacted | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| time travel to version 50 (no snapshot usable), median of 200 aggregates, ms | {travel_before:.2} | {travel_after:.2} | {:.2} |",
        travel_after / travel_before
    );
    println!(
        "| rebuild of the stock view over {ROUND} events, s (hot only / archive + hot) | {rebuild_before:.2} | {rebuild_after:.2} | {:.2} |",
        rebuild_after / rebuild_before
    );
    println!("| raw ordered consumer reading the {ROUND} events (baseline), s | {raw_read:.2} | | |");
    Ok(())
}

/// The bytes of the files of stream `name` under the server's store directory.
fn stream_dir_bytes(dir: &std::path::Path, name: &str) -> u64 {
    let mut total = 0;
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((dir, inside)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let here = inside || (path.file_name().is_some_and(|n| n == name) && dir.ends_with("streams"));
            if path.is_dir() {
                stack.push((path, here));
            } else if here {
                total += entry.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

/// Writes `n` events, one `receive` each, to random aggregates.
async fn write(repo: &Arc<Repository<Stock>>, n: u64, rng: &mut u64) -> anyhow::Result<()> {
    let ids: Vec<AggregateId> = (0..n)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            AggregateId::new(format!("part{}@main", *rng % AGGREGATES))
        })
        .collect::<Result<_, _>>()?;
    let queue = Arc::new(std::sync::Mutex::new(ids));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (repo, queue) = (Arc::clone(repo), Arc::clone(&queue));
            tokio::spawn(async move {
                loop {
                    let Some(id) = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop() else {
                        return anyhow::Ok(());
                    };
                    let qty = Qty::new(1).ok_or_else(|| anyhow::anyhow!("qty"))?;
                    let command = StockCommand::Receive { qty, source: "bench".into() };
                    repo.execute(&id, command, &CommandContext::new()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

/// Waits until the archive holds every event and the snapshots written in the background
/// are in place.
async fn settle(archiver: &Archiver) -> anyhow::Result<()> {
    while archiver.sizes().await?.lag > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// The median time to load the state at version 50 of 200 aggregates, without snapshots.
async fn time_travel_ms(store: &EventStore) -> anyhow::Result<f64> {
    let repo =
        Repository::<Stock>::new(store.clone(), None, RepositoryConfig { cache_capacity: 0, ..Default::default() });
    let mut samples = Vec::new();
    for i in 0..200 {
        let id = AggregateId::new(format!("part{i}@main"))?;
        let started = Instant::now();
        let (loaded, _) = repo.load_until(&id, Until::Version(50)).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(loaded.version == 50, "part{i} loaded at {}", loaded.version);
    }
    Ok(median_ms(samples))
}

/// Builds the stock view in a projector whose views read `archive` first (or only the hot
/// stream): the time from the rebuild request to the switch, and a raw ordered read of the
/// same stream for scale.
async fn rebuild_s(server: &NatsServer, archive: Option<&str>) -> anyhow::Result<(f64, f64)> {
    let client = jetsource::connect(&server.url(), "bench-rebuild").await?;
    let mut config = AppConfig::new(server.url(), vec!["projector"]);
    config.projector.view.archive = archive.map(str::to_owned);
    let shutdown = Shutdown::new();
    let app = App::build(config).await?;
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    // Every view caught up (the first start builds them all), then the timed rebuild.
    wait_switch(&client, None).await?;
    let started = Instant::now();
    let reply = client.request("projector.rebuild.stock", "".into()).await?;
    let version: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    wait_switch(&client, version["version"].as_u64()).await?;
    let took = started.elapsed().as_secs_f64();
    shutdown.trigger();
    running.await?;
    // The stopped projector's consumers would hold compaction back from here on.
    let js = async_nats::jetstream::new(client.clone());
    let events = js.get_stream("EVENTS").await?;
    let mut names = events.consumer_names();
    let mut stale = Vec::new();
    while let Some(name) = futures::TryStreamExt::try_next(&mut names).await? {
        if name.starts_with("projector_") {
            stale.push(name);
        }
    }
    for name in stale {
        events.delete_consumer(&name).await?;
    }
    let raw = raw_read_s(&client).await?;
    Ok((took, raw))
}

/// Waits until every view is caught up and the stock view is at `version` (any, when none).
pub(crate) async fn wait_switch(client: &async_nats::Client, version: Option<u64>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let reply = client.request("projector.status", "".into()).await?;
        let status: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        let views = status["views"].as_array().cloned().unwrap_or_default();
        let stock = views.iter().find(|v| v["view"] == "stock");
        let last =
            async_nats::jetstream::new(client.clone()).get_stream("EVENTS").await?.cached_info().state.last_sequence;
        let caught_up = views.iter().all(|v| {
            v["lag"] == 0 && v["rebuilding"].is_null() && v["applied_seq"].as_u64().is_some_and(|a| a >= last)
        });
        if caught_up && stock.is_some_and(|s| version.is_none_or(|want| s["version"].as_u64() == Some(want))) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the stock view did not switch: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every message of EVENTS with an ordered consumer.
async fn raw_read_s(client: &async_nats::Client) -> anyhow::Result<f64> {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("EVENTS").await?;
    let last = stream.cached_info().state.last_sequence;
    let started = Instant::now();
    let consumer = stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await?;
    let name = consumer.cached_info().name.clone();
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        if message?.info().map_err(|e| anyhow::anyhow!("{e}"))?.stream_sequence >= last {
            break;
        }
    }
    let took = started.elapsed().as_secs_f64();
    // Until its inactivity ends, an ordered consumer holds compaction back where it stopped.
    drop(messages);
    stream.delete_consumer(&name).await?;
    Ok(took)
}
