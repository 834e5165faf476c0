//! Consistency beyond one aggregate (ADR 18): transfers — one command over two stock
//! aggregates in one atomic batch — beside single-aggregate commands, with their conflict rates;
//! and appends conditioned on a tag beside plain OCC appends, all beside raw JetStream OCC
//! publishes measured in the same run on the same server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factory_domain::product::Product;
use factory_domain::product::ProductCommand;
use factory_domain::stock::Stock;
use factory_domain::stock::StockCommand;
use factory_domain::values::{Qty, Warehouse};
use jetsource::cloudevents::Attributes;
use jetsource::store::{Expect, NewEvent, Write};
use jetsource::topology::Topology;
use jetsource::{
    AggregateId, CommandContext, CommandError, EventStore, Observer, Repository, RepositoryConfig, StoreConfig, Tag,
};
use jetsource_testkit::NatsServer;
use tokio::sync::Mutex;

use crate::deploy::Deployment;
use crate::measure::{Rate, header, raw_occ_publish, run_workers};

const TOPOLOGY: &str = include_str!("../../nats/topology.toml");
const WAREHOUSES: [&str; 4] = ["north", "south", "east", "west"];

/// Counts appends and conflicts of one repository.
#[derive(Default)]
struct Counts {
    appended: AtomicU64,
    conflicts: AtomicU64,
    gave_up: AtomicU64,
}

impl Observer for Counts {
    fn appended(&self, _: &'static str, _: usize, _: Duration) {
        self.appended.fetch_add(1, Ordering::Relaxed);
    }
    fn conflict(&self, _: &'static str) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counts {
    /// Conflicts per append attempt, in percent.
    fn conflict_percent(&self) -> f64 {
        let (ok, conflicts) = (self.appended.load(Ordering::Relaxed), self.conflicts.load(Ordering::Relaxed));
        if ok + conflicts == 0 { 0.0 } else { 100.0 * conflicts as f64 / (ok + conflicts) as f64 }
    }
}

pub async fn run(window: Duration) -> anyhow::Result<()> {
    println!("# Consistency beyond one aggregate\n");
    println!(
        "{}s per figure; every figure on a fresh EVENTS stream (file storage). On R1, nats-server",
        window.as_secs_f64()
    );
    println!("stages each atomic batch in a file store of its own before committing it; on R3 it stages");
    println!("batches in memory (`newBatchStore` in server/jetstream_batching.go), so the two differ most for");
    println!("batches. Commands with an empty scope keep the single-publish path.");
    {
        let server = NatsServer::try_start()?;
        suite(&server.url(), Deployment::R1, window).await?;
    }
    let cluster = jetsource_testkit::NatsCluster::try_start(3)?;
    suite(&cluster.urls(), Deployment::R3, window).await
}

async fn suite(url: &str, deployment: Deployment, window: Duration) -> anyhow::Result<()> {
    let client = jetsource::connect(url, "bench").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(TOPOLOGY)?;
    deployment.provision(&js, &topology).await?;
    let store = EventStore::new(client.clone(), StoreConfig { service: "bench".into(), ..Default::default() });
    let config = format!("{}, nats-server {}", deployment.name(), client.server_info().version);
    header(&format!(
        "Transfers (one command, two aggregates, one atomic batch) beside single-aggregate commands, {config}"
    ));
    println!("`receive`: each worker its own stock item. `transfer, own pair`: each worker moves 1 unit back and");
    println!("forth between its own two warehouses (no contention between workers). `transfer, shared`: every");
    println!("worker moves 1 unit between random warehouses of one SKU in four (all contend). Conflicts are");
    println!("per append attempt; a command that met 10 conflicts answers `conflict` and is not counted.\n");
    println!(
        "| concurrency | raw OCC publish/s | receive/s | ÷ raw | transfer, own pair/s | conflicts | ÷ receive | transfer, shared/s | conflicts | gave up |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [1_usize, 16, 64] {
        deployment.fresh_store(&js, &topology).await?;
        let raw = raw_occ_publish(&js, concurrency, window).await?;
        deployment.fresh_store(&js, &topology).await?;
        let (receive, _) = commands(&store, concurrency, window, Workload::Receive).await?;
        deployment.fresh_store(&js, &topology).await?;
        let (own, own_counts) = commands(&store, concurrency, window, Workload::OwnPair).await?;
        deployment.fresh_store(&js, &topology).await?;
        let (shared, shared_counts) = commands(&store, concurrency, window, Workload::Shared).await?;
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1}% | {:.2} | {:.0} | {:.1}% | {} |",
            raw.per_second,
            receive.per_second,
            receive.per_second / raw.per_second,
            own.per_second,
            own_counts.conflict_percent(),
            own.per_second / receive.per_second,
            shared.per_second,
            shared_counts.conflict_percent(),
            shared_counts.gave_up.load(Ordering::Relaxed),
        );
    }

    header(&format!("Appends conditioned on a tag beside plain OCC appends, {config}"));
    println!("`OCC append`: one event with its aggregate's expectation. `+ tag condition`: the same event and");
    println!("its copy on the worker's tag subject, in one atomic batch, the copy expecting the tag's last");
    println!("sequence (`Nats-Expected-Last-Subject-Sequence-Subject`). `define`: the whole product `define`");
    println!("pipeline with its unique-name condition (read the tag, decide, append the batch).\n");
    println!(
        "| concurrency | raw OCC publish/s | OCC append/s | ÷ raw | append + tag condition/s | ÷ OCC append | ÷ raw | product define/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [1_usize, 16, 64] {
        deployment.fresh_store(&js, &topology).await?;
        let raw = raw_occ_publish(&js, concurrency, window).await?;
        deployment.fresh_store(&js, &topology).await?;
        let plain = appends(&store, concurrency, window, false).await?;
        deployment.fresh_store(&js, &topology).await?;
        let conditional = appends(&store, concurrency, window, true).await?;
        deployment.fresh_store(&js, &topology).await?;
        let define = defines(&store, concurrency, window).await?;
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} |",
            raw.per_second,
            plain.per_second,
            plain.per_second / raw.per_second,
            conditional.per_second,
            conditional.per_second / plain.per_second,
            conditional.per_second / raw.per_second,
            define.per_second,
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    Receive,
    OwnPair,
    Shared,
}

fn stock_id(sku: &str, warehouse: &str) -> anyhow::Result<AggregateId> {
    Ok(AggregateId::new(format!("{sku}@{warehouse}"))?)
}

/// Stock commands through `Repository::execute` (the command pipeline without the transport).
async fn commands(
    store: &EventStore,
    concurrency: usize,
    window: Duration,
    workload: Workload,
) -> anyhow::Result<(Rate, Arc<Counts>)> {
    let counts = Arc::new(Counts::default());
    let repo = Arc::new(
        Repository::<Stock>::new(store.clone(), None, RepositoryConfig::default())
            .with_observer(Arc::clone(&counts) as Arc<dyn Observer>),
    );
    let qty = |n| Qty::new(n).ok_or_else(|| anyhow::anyhow!("qty"));
    let plenty = || qty(1_000_000_000).map(|qty| StockCommand::Receive { qty, source: "bench".into() });
    let ctx = CommandContext::new;
    match workload {
        Workload::Receive => {}
        Workload::OwnPair => {
            for worker in 0..concurrency {
                repo.execute(&stock_id(&format!("p{worker}"), "a")?, plenty()?, &ctx()).await?;
            }
        }
        Workload::Shared => {
            for warehouse in WAREHOUSES {
                repo.execute(&stock_id("bolt", warehouse)?, plenty()?, &ctx()).await?;
            }
        }
    }
    counts.appended.store(0, Ordering::Relaxed);
    let in_window = Arc::clone(&counts);
    let rate = run_workers(concurrency, window, move |worker, i| {
        let (repo, counts) = (Arc::clone(&repo), Arc::clone(&in_window));
        async move {
            let (id, command) = match workload {
                Workload::Receive => (
                    stock_id(&format!("w{worker}"), "main")?,
                    StockCommand::Receive { qty: qty(1)?, source: "bench".into() },
                ),
                Workload::OwnPair => {
                    let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
                    (
                        stock_id(&format!("p{worker}"), from)?,
                        StockCommand::Transfer { qty: qty(1)?, to: Warehouse::new(to).map_err(anyhow::Error::msg)? },
                    )
                }
                Workload::Shared => {
                    let from = fastrand::usize(0..4);
                    let to = (from + fastrand::usize(1..4)) % 4;
                    (
                        stock_id("bolt", WAREHOUSES[from])?,
                        StockCommand::Transfer {
                            qty: qty(1)?,
                            to: Warehouse::new(WAREHOUSES[to]).map_err(anyhow::Error::msg)?,
                        },
                    )
                }
            };
            match repo.execute(&id, command, &CommandContext::new()).await {
                Ok(_) => Ok(()),
                Err(CommandError::Conflict { .. }) => {
                    counts.gave_up.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        }
    })
    .await?;
    // Commands that gave up are not throughput.
    let gave_up = counts.gave_up.load(Ordering::Relaxed) as f64 / window.as_secs_f64();
    Ok((Rate { per_second: rate.per_second - gave_up, ..rate }, counts))
}

/// One event per append, with the aggregate's expectation, and with `conditional` also its
/// copy on the worker's tag subject expecting the tag's last sequence.
async fn appends(store: &EventStore, concurrency: usize, window: Duration, conditional: bool) -> anyhow::Result<Rate> {
    let last: Arc<Vec<Mutex<(u64, u64)>>> = Arc::new((0..concurrency).map(|_| Mutex::new((0, 0))).collect());
    let store = store.clone();
    run_workers(concurrency, window, move |worker, i| {
        let (store, last) = (store.clone(), Arc::clone(&last));
        async move {
            let mut last = last[worker].lock().await;
            let (event_seq, tag_seq) = *last;
            let id = format!("w{worker}");
            let event = meter_event(&store, &id, i, "");
            let subject = format!("evt.meter.{id}");
            let own = Expect { filter: None, last_seq: event_seq };
            if conditional {
                let tag = store.tag_subject(&Tag::new("bench", &AggregateId::new(id.as_str())?));
                let copy = meter_event(&store, &id, i, "#bench");
                let writes = vec![
                    Write::new(tag.clone(), copy).expecting(Expect { filter: Some(tag), last_seq: tag_seq }),
                    Write::new(subject, event).expecting(own),
                ];
                let appended = append_resending(&store, writes).await?;
                *last = (appended.last_seq, appended.first_seq);
            } else {
                let appended = append_resending(&store, vec![Write::new(subject, event).expecting(own)]).await?;
                *last = (appended.last_seq, 0);
            }
            Ok(())
        }
    })
    .await
}

/// Appends `writes`, sending them again after a conflict: each worker alone writes its subjects,
/// so a conflict can only be an R3 leader that has not yet applied the worker's previous
/// acknowledged write (10164), which the raw baseline sends again too.
async fn append_resending(store: &EventStore, writes: Vec<Write>) -> anyhow::Result<jetsource::store::Appended> {
    loop {
        match store.append_all(writes.clone()).await {
            Err(jetsource::StoreError::Conflict { .. }) => tokio::task::yield_now().await,
            other => return Ok(other?),
        }
    }
}

/// The event of command `i` of worker `id`, its message id ending in `suffix`.
fn meter_event(store: &EventStore, id: &str, i: u64, suffix: &str) -> NewEvent {
    let attributes = Attributes {
        id: format!("{id}-{i}:0{suffix}"),
        source: store.source().to_owned(),
        event_type: store.event_type("meter", "Counted"),
        subject: id.to_owned(),
        time: "2026-12-01T10:00:00.123456789Z".into(),
        schema_version: 1,
        aggregate_version: Some(i + 1),
        metadata: CommandContext::with_command_id(format!("{id}-{i}")).metadata(),
    };
    NewEvent::new(attributes, r#"{"qty":1,"source":"bench"}"#.into())
}

/// `product define` with a fresh id and name per command: read the name's tag, decide, append
/// the event and its copy on condition that the tag did not change.
async fn defines(store: &EventStore, concurrency: usize, window: Duration) -> anyhow::Result<Rate> {
    let repo = Arc::new(Repository::<Product>::new(store.clone(), None, RepositoryConfig::default()));
    run_workers(concurrency, window, move |worker, i| {
        let repo = Arc::clone(&repo);
        async move {
            let id = AggregateId::new(format!("p{worker}-{i}"))?;
            let command = ProductCommand::Define { name: format!("Product {worker}-{i}"), bom: Vec::new() };
            repo.execute(&id, command, &CommandContext::new()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await
}
