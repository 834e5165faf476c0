//! Projection benchmarks: how fast a view applies events into KV against a raw consumer
//! fetching and acknowledging the same events in the same run, and the read-your-writes wait
//! (command answered → `Min-Seq` query answered) under a steady 1k commands/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use factory::app::{App, AppConfig};
use factory::views::{CommandsView, StockView};
use futures::StreamExt;
use hdrhistogram::Histogram;
use jetsource::projection::{Projection, ViewConfig, ViewWorker};
use jetsource::topology::Topology;
use jetsource::{AggregateId, CommandContext, EventStore, Repository, RepositoryConfig, StoreConfig};
use jetsource_runtime::Shutdown;
use jetsource_runtime::wire::{Client, CommandRequest};

use crate::deploy::Deployment;
use crate::measure::header;

const AGGREGATES: u64 = 1_000;
const EVENTS_PER_AGGREGATE: u64 = 100;

pub async fn run(window: Duration, deployment: Deployment) -> anyhow::Result<()> {
    let servers = deployment.start()?;
    let url = servers.url();
    let client = jetsource::connect(&url, "bench").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    deployment.provision(&js, &topology).await?;
    println!(
        "# Projection benchmark: {}\n\nnats-server {} ({}, file storage); acknowledged = {}",
        deployment.name(),
        client.server_info().version,
        deployment.name(),
        deployment.promise()
    );
    let view = ViewConfig { replicas: deployment.replicas(), ..ViewConfig::default() };

    let total = prefill(&client).await?;
    header(&format!("Applying {total} stock events into KV (same stream, same run)"));
    println!("| reader | events/s | ÷ raw |\n|---|---:|---:|");
    let raw = raw_fetch_and_ack(&js, total).await?;
    println!("| raw pull consumer: fetch batches of 1000, ack each batch (baseline) | {raw:.0} | 1.00 |");
    let stock = view_rate(&url, &client, &view, StockView::default, total, 1).await?;
    println!("| view `stock` (decode, fold, KV write, ack) | {stock:.0} | {:.2} |", stock / raw);
    let standby = view_rate(&url, &client, &view, StockView::default, total, 2).await?;
    println!(
        "| view `stock`, 2 instances (one active, one on standby: availability, not throughput) | {standby:.0} | {:.2} |",
        standby / raw
    );
    let commands = view_rate(&url, &client, &view, CommandsView::default, total, 1).await?;
    println!("| view `commands` (one document per command) | {commands:.0} | {:.2} |", commands / raw);

    drop(servers);
    read_your_writes(window, deployment).await
}

/// Writes `AGGREGATES × EVENTS_PER_AGGREGATE` stock events through the framework (commands of
/// 10 events each), interleaving aggregates as real traffic would.
async fn prefill(client: &async_nats::Client) -> anyhow::Result<u64> {
    let store = EventStore::new(
        client.clone(),
        StoreConfig { app: "factory".into(), service: "stock".into(), ..Default::default() },
    );
    let repo = Arc::new(Repository::<factory_domain::stock::Stock>::new(store, None, RepositoryConfig::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|worker| {
            let repo = Arc::clone(&repo);
            tokio::spawn(async move {
                for round in 0..EVENTS_PER_AGGREGATE / 10 {
                    for a in (worker..AGGREGATES).step_by(16) {
                        let id = AggregateId::new(format!("sku{a}@main"))?;
                        // ten receives per command: one atomic batch
                        let cmd = factory_domain::stock::StockCommand::parse("receive", br#"{"qty": 1}"#)?;
                        for _ in 0..10 {
                            repo.execute(&id, cmd.clone(), &CommandContext::new()).await?;
                        }
                        let _ = round;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let total = AGGREGATES * EVENTS_PER_AGGREGATE;
    println!("prefilled {total} events in {:.1}s", started.elapsed().as_secs_f64());
    Ok(total)
}

async fn raw_fetch_and_ack(js: &async_nats::jetstream::Context, total: u64) -> anyhow::Result<f64> {
    let stream = js.get_stream("EVENTS").await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench_raw".into()),
            filter_subject: "evt.stock.>".into(),
            ack_policy: AckPolicy::All,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.stream().max_messages_per_batch(1000).messages().await?;
    let mut seen = 0;
    let mut batch = 0;
    while seen < total {
        let Some(message) = messages.next().await else { break };
        let message = message.map_err(|e| anyhow::anyhow!(e))?;
        seen += 1;
        batch += 1;
        if batch == 1000 || seen == total {
            message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
            batch = 0;
        }
    }
    let rate = seen as f64 / started.elapsed().as_secs_f64();
    stream.delete_consumer("bench_raw").await?;
    Ok(rate)
}

/// Events/s of a fresh version of a view run by `instances` workers, each on its own
/// connection (one pinned, the others on standby), until one reflects the stream's end.
async fn view_rate<P: Projection>(
    url: &str,
    client: &async_nats::Client,
    view: &ViewConfig,
    projection: impl Fn() -> P,
    total: u64,
    instances: usize,
) -> anyhow::Result<f64> {
    let js = async_nats::jetstream::new(client.clone());
    let last = js.get_stream("EVENTS").await?.info().await?.state.last_sequence;
    let name = projection().name();
    let stop = Shutdown::new();
    let mut handles = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..instances {
        let connection = jetsource::connect(url, "bench-view").await?;
        let worker = ViewWorker::open(connection, Arc::new(projection()), 99, view.clone(), None).await?;
        handles.push(worker.handle());
        workers.push(worker);
    }
    let started = Instant::now();
    for worker in workers {
        let signal = stop.clone();
        tokio::spawn(worker.run(async move { signal.wait().await }));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !handles.iter().any(|h| h.applied() >= last) {
        anyhow::ensure!(Instant::now() < deadline, "view {name} did not catch up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    stop.trigger();
    tokio::time::sleep(Duration::from_millis(200)).await;
    jetsource::projection::delete_version(&js, name, 99, "EVENTS").await?;
    Ok(rate)
}

/// 1k commands/s for `window`: each command's reply, then a `Min-Seq` query of its view.
async fn read_your_writes(window: Duration, deployment: Deployment) -> anyhow::Result<()> {
    header("Read your writes at 1,000 commands/s (all services in one process, as `factory up`; fresh servers)");
    let servers = deployment.start()?;
    let url = &servers.url();
    let shutdown = Shutdown::new();
    let services = factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect();
    let mut config = AppConfig::new(url, services);
    config.replicas = Some(deployment.replicas());
    let app = App::build(config).await?;
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = jetsource::connect(url, "bench").await?;
    let sampler = tokio::spawn(sample_lag(client.clone(), window.max(Duration::from_secs(5))));
    let workers = 10;
    let per_worker = Duration::from_millis(10); // 100/s each
    let deadline = Instant::now() + window.max(Duration::from_secs(5));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let client = client.clone();
            let typed = Client::new(client.clone(), Duration::from_secs(10));
            tokio::spawn(async move {
                let mut waits = Histogram::<u64>::new(3)?;
                let mut commands = Histogram::<u64>::new(3)?;
                let mut next = Instant::now();
                let mut i = 0_u64;
                while Instant::now() < deadline {
                    tokio::time::sleep_until(next.into()).await;
                    next += per_worker;
                    let t = Instant::now();
                    let item = format!("ryw{w}-{}@main", i % 50);
                    let reply = typed.command(&CommandRequest::new("stock", &item, "receive", r#"{"qty":1}"#)).await?;
                    commands.record(t.elapsed().as_micros() as u64)?;
                    let seq = reply.stream_seq;
                    let answered = Instant::now();
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Min-Seq", seq.to_string());
                    let doc = client
                        .request_with_headers(format!("qry.stock.ryw{w}-{}@main", i % 50), headers, "".into())
                        .await?;
                    anyhow::ensure!(
                        doc.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code")).is_none(),
                        "query failed: {:?}",
                        doc
                    );
                    waits.record(answered.elapsed().as_micros() as u64)?;
                    i += 1;
                }
                anyhow::Ok((waits, commands))
            })
        })
        .collect();
    let mut waits = Histogram::<u64>::new(3)?;
    let mut commands = Histogram::<u64>::new(3)?;
    for task in tasks {
        let (w, c) = task.await??;
        waits.add(w)?;
        commands.add(c)?;
    }
    let rate = commands.len() as f64 / started.elapsed().as_secs_f64();
    println!("| measure | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|");
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| command answered (request/reply) | {:.2} | {:.2} | {:.2} |",
        ms(&commands, 0.5),
        ms(&commands, 0.99),
        commands.max() as f64 / 1000.0
    );
    println!(
        "| command answered → Min-Seq query answered | {:.2} | {:.2} | {:.2} |",
        ms(&waits, 0.5),
        ms(&waits, 0.99),
        waits.max() as f64 / 1000.0
    );
    println!("\n{} commands at {rate:.0}/s", commands.len());
    let lags = sampler.await??;
    println!("\nView lag while under that load (events not yet applied, sampled every 100 ms):\n");
    println!("| view | max lag | mean lag |\n|---|---:|---:|");
    for (view, (max, sum, n)) in lags {
        println!("| {view} | {max} | {:.1} |", sum as f64 / n.max(1) as f64);
    }
    shutdown.trigger();
    Ok(())
}

/// Samples `projector.status` every 100 ms: per view (max lag, sum, samples).
async fn sample_lag(
    client: async_nats::Client,
    window: Duration,
) -> anyhow::Result<std::collections::BTreeMap<String, (u64, u64, u64)>> {
    let mut lags = std::collections::BTreeMap::new();
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = client.request("projector.status", "".into()).await?;
        let status: serde_json::Value = serde_json::from_slice(&status.payload)?;
        for view in status["views"].as_array().into_iter().flatten() {
            let lag = view["lag"].as_u64().unwrap_or(0);
            let entry = lags.entry(view["view"].as_str().unwrap_or_default().to_owned()).or_insert((0, 0, 0));
            entry.0 = entry.0.max(lag);
            entry.1 += lag;
            entry.2 += 1;
        }
    }
    Ok(lags)
}
