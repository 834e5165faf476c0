//! Rebuilding a view over a long history (1M events by default, `BENCH_REBUILD_EVENTS`) beside
//! a raw ordered read of the same events in the same run: through the projector as an operator
//! asks for it (`projector.rebuild.stock`, timed to the switch), and the one view version read
//! by its backfill (ordered consumers, documents written once per batch) against the same
//! version read by a durable consumer as live events are (what a rebuild did before).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use factory::app::{App, AppConfig};
use factory::views::StockView;
use futures::StreamExt;
use jetsource::projection::{Projection, ViewConfig, ViewWorker, consumer_name};
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource::{AggregateId, CommandContext, EventStore, Repository, RepositoryConfig, StoreConfig};
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsServer;

use crate::measure::header;

const AGGREGATES: u64 = 1_000;

pub async fn run() -> anyhow::Result<()> {
    let total: u64 = std::env::var("BENCH_REBUILD_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let server = NatsServer::try_start()?;
    let url = server.url();
    let client = jetsource::connect(&url, "bench-rebuild").await?;
    let js = async_nats::jetstream::new(client.clone());
    provision(&js, &Topology::parse(factory::TOPOLOGY)?, ProvisionOptions::default()).await?;
    println!("# Rebuild benchmark\n\nnats-server {} (R1, file storage)", client.server_info().version);
    prefill(&client, total).await?;

    header(&format!("Rebuilding the stock view over {total} events ({AGGREGATES} aggregates), same stream, same run"));
    println!("| reader | s | events/s | ÷ raw ordered read |\n|---|---:|---:|---:|");
    let raw = raw_ordered_read(&js, total).await?;
    println!("| raw ordered consumer over `evt.stock.>` (baseline) | {:.2} | {:.0} | 1.00 |", total as f64 / raw, raw);
    let backfill = version_rate(&url, &js, total, 101, false).await?;
    println!(
        "| a new version of the view: its backfill (ordered consumer, documents written once per batch of 20,000) | {:.2} | {backfill:.0} | {:.2} |",
        total as f64 / backfill,
        backfill / raw
    );
    let live = version_rate(&url, &js, total, 102, true).await?;
    println!(
        "| the same version read by a durable consumer, as live events are (how a rebuild read before) | {:.2} | {live:.0} | {:.2} |",
        total as f64 / live,
        live / raw
    );
    let (through_projector, first_build) = projector_rebuild(&url, &client).await?;
    println!(
        "| `projector.rebuild.stock` in a running projector, request → switch | {through_projector:.2} | {:.0} | {:.2} |",
        total as f64 / through_projector,
        total as f64 / through_projector / raw
    );
    println!("\nThe projector's first start built all five views over the same history in {first_build:.1} s.");
    Ok(())
}

/// `total` stock `receive` commands through the framework, 64 at a time, over `AGGREGATES`
/// aggregates.
async fn prefill(client: &async_nats::Client, total: u64) -> anyhow::Result<()> {
    let store = EventStore::new(
        client.clone(),
        StoreConfig { app: "factory".into(), service: "stock".into(), ..Default::default() },
    );
    let repo = Arc::new(Repository::<factory_domain::stock::Stock>::new(store, None, RepositoryConfig::default()));
    let started = Instant::now();
    let workers = 64;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let repo = Arc::clone(&repo);
            tokio::spawn(async move {
                let cmd = factory_domain::stock::StockCommand::parse("receive", br#"{"qty": 1}"#)?;
                for i in (worker..total).step_by(workers as usize) {
                    let id = AggregateId::new(format!("sku{}@main", i % AGGREGATES))?;
                    repo.execute(&id, cmd.clone(), &CommandContext::new()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!("prefilled {total} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Events/s of an ordered consumer reading every stock event.
async fn raw_ordered_read(js: &async_nats::jetstream::Context, total: u64) -> anyhow::Result<f64> {
    let stream = js.get_stream("EVENTS").await?;
    let started = Instant::now();
    let consumer = stream
        .create_consumer(pull::OrderedConfig { filter_subject: "evt.stock.>".into(), ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut seen = 0;
    while seen < total {
        let Some(message) = messages.next().await else { break };
        message.map_err(|e| anyhow::anyhow!(e))?;
        seen += 1;
    }
    anyhow::ensure!(seen == total, "the raw read saw {seen} of {total}");
    Ok(seen as f64 / started.elapsed().as_secs_f64())
}

/// Events/s of version `version` of the stock view, opened fresh, until it reflects the
/// stream's end. `live`: its durable consumer is created first (from the first event), so the
/// version reads the history as it reads live events, with no backfill.
async fn version_rate(
    url: &str,
    js: &async_nats::jetstream::Context,
    total: u64,
    version: u32,
    live: bool,
) -> anyhow::Result<f64> {
    let last = js.get_stream("EVENTS").await?.info().await?.state.last_sequence;
    let view = StockView::default();
    let name = view.name();
    let started = Instant::now();
    if live {
        js.get_stream("EVENTS")
            .await?
            .create_consumer(pull::Config {
                durable_name: Some(consumer_name(name, version)),
                filter_subject: "evt.stock.>".into(),
                ack_policy: AckPolicy::All,
                max_ack_pending: 10_000,
                ..Default::default()
            })
            .await?;
    }
    let connection = jetsource::connect(url, "bench-view").await?;
    let worker = ViewWorker::open(connection, Arc::new(view), version, ViewConfig::default(), None).await?;
    let handle = worker.handle();
    let stop = Shutdown::new();
    let signal = stop.clone();
    tokio::spawn(worker.run(async move { signal.wait().await }));
    let deadline = Instant::now() + Duration::from_secs(900);
    while handle.applied() < last {
        anyhow::ensure!(Instant::now() < deadline, "view {name} v{version} did not catch up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(handle.documents().await == Some(AGGREGATES), "the view does not hold every aggregate");
    stop.trigger();
    tokio::time::sleep(Duration::from_millis(200)).await;
    jetsource::projection::delete_version(js, name, version, "EVENTS").await?;
    Ok(rate)
}

/// A projector over the history: its first start (every view), then a timed rebuild of the
/// stock view, request to switch; both in seconds.
async fn projector_rebuild(url: &str, client: &async_nats::Client) -> anyhow::Result<(f64, f64)> {
    let shutdown = Shutdown::new();
    let started = Instant::now();
    let app = App::build(AppConfig::new(url, vec!["projector"])).await?;
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    crate::archive::wait_switch(client, None).await?;
    let first = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let reply = client.request("projector.rebuild.stock", "".into()).await?;
    let version: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    crate::archive::wait_switch(client, version["version"].as_u64()).await?;
    let took = started.elapsed().as_secs_f64();
    shutdown.trigger();
    running.await?;
    Ok((took, first))
}
