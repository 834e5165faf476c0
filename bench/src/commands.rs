//! Command throughput and latency over NATS request/reply, against two baselines measured in
//! the same run on the same server: raw JetStream OCC publish, and a minimal responder that
//! does one OCC append per request and replies (the floor of this architecture). Also the idle
//! memory of `factory up`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use factory::app::{App, AppConfig};
use futures::StreamExt;
use jetsource::topology::Topology;
use jetsource_runtime::Shutdown;

use crate::deploy::Deployment;
use crate::measure::{Rate, header, raw_occ_publish, run_workers};

const CONCURRENCY: [usize; 4] = [1, 16, 64, 128];

pub async fn run(window: Duration, deployment: Deployment) -> anyhow::Result<()> {
    let servers = deployment.start()?;
    let url = servers.url();
    let client = jetsource::connect(&url, "bench-client").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    deployment.provision(&js, &topology).await?;
    println!(
        "# Command services benchmark: {}\n\nnats-server {} ({}, file storage), {}s per figure; acknowledged = {}",
        deployment.name(),
        client.server_info().version,
        deployment.name(),
        window.as_secs_f64(),
        deployment.promise()
    );
    println!("Each figure starts on a freshly created EVENTS stream; every worker sends `receive` to its own");
    println!("stock item, one request at a time; the client is a separate NATS connection.\n");

    let minimal = MinimalResponder::start(&url, "min", None).await?;
    let _minimal_event = MinimalResponder::start(&url, "mev", Some(event_headers())).await?;
    let shutdown = Shutdown::new();
    let services = factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect();
    let mut config = AppConfig::new(&url, services);
    config.replicas = Some(deployment.replicas());
    let app = App::build(config).await?;
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    header("Commands over NATS request/reply");
    println!("Two floors: `minimal responder` appends the request body with only the OCC header; `minimal,");
    println!("same event` appends it with the headers a factory event carries (CloudEvents attributes and");
    println!("message id), so the difference to it is the command pipeline's own work.\n");
    println!(
        "| concurrency | raw OCC publish/s | minimal responder/s | minimal, same event/s | p50/p99 µs | factory commands/s | p50/p99 µs | ÷ minimal | ÷ minimal, same event |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if std::env::var("BENCH_ONLY_FACTORY").is_ok() {
        let spid = servers.pids().first().copied().unwrap_or(0).to_string();
        let prefixes: Vec<&'static str> = std::env::var("BENCH_PREFIXES")
            .map(|v| v.split(',').map(|p| &*Box::leak(p.to_owned().into_boxed_str())).collect())
            .unwrap_or_else(|_| vec!["mev", "cmd", "mev", "cmd"]);
        for prefix in prefixes {
            deployment.fresh_store(&js, &topology).await?;
            let (s0, c0) = (cpu_ticks(&spid), cpu_ticks("self"));
            let r = requests(&client, prefix, 64, window).await?;
            let (s1, c1) = (cpu_ticks(&spid), cpu_ticks("self"));
            let n = r.per_second * window.as_secs_f64();
            println!(
                "{prefix} at 64: {:.0}/s server {:.1} µs/cmd, bench process {:.1} µs/cmd",
                r.per_second,
                (s1 - s0) as f64 * 1e4 / n,
                (c1 - c0) as f64 * 1e4 / n
            );
        }
        return Ok(());
    }
    for concurrency in CONCURRENCY {
        deployment.fresh_store(&js, &topology).await?;
        let raw = raw_occ_publish(&js, concurrency, window).await?;
        deployment.fresh_store(&js, &topology).await?;
        let floor = requests(&client, "min", concurrency, window).await?;
        deployment.fresh_store(&js, &topology).await?;
        let floor_event = requests(&client, "mev", concurrency, window).await?;
        deployment.fresh_store(&js, &topology).await?;
        let ours = requests(&client, "cmd", concurrency, window).await?;
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.0} | {}/{} | {:.0} | {}/{} | {:.2} | {:.2} |",
            raw.per_second,
            floor.per_second,
            floor_event.per_second,
            floor_event.p50_us,
            floor_event.p99_us,
            ours.per_second,
            ours.p50_us,
            ours.p99_us,
            ours.per_second / floor.per_second,
            ours.per_second / floor_event.per_second
        );
    }
    shutdown.trigger();
    drop(minimal);
    drop(_minimal_event);
    Ok(())
}

/// The factory's commands over NATS on `deployment` at each of `concurrency`, each figure on
/// a freshly created event store (the other suites' comparisons: the peer, the memory load).
pub async fn factory_rates(
    window: Duration,
    deployment: Deployment,
    concurrency: &[usize],
) -> anyhow::Result<Vec<Rate>> {
    let servers = deployment.start()?;
    let url = servers.url();
    let client = jetsource::connect(&url, "bench-client").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    deployment.provision(&js, &topology).await?;
    let shutdown = Shutdown::new();
    let services = factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect();
    let mut config = AppConfig::new(&url, services);
    config.replicas = Some(deployment.replicas());
    tokio::spawn(App::build(config).await?.run_until_stopped(shutdown.clone()));
    let mut rates = Vec::new();
    for &c in concurrency {
        deployment.fresh_store(&js, &topology).await?;
        rates.push(requests(&client, "cmd", c, window).await?);
    }
    shutdown.trigger();
    Ok(rates)
}

/// Each worker sends `<prefix>.stock.w<n>@main.receive` and waits for the reply. The factory and
/// its minimal floors answer the same raw request, so this one client serves both sides (the
/// typed `wire::Client` drives the other suites; here it would be a cost only one side pays).
async fn requests(
    client: &async_nats::Client,
    prefix: &'static str,
    concurrency: usize,
    window: Duration,
) -> anyhow::Result<Rate> {
    let client = client.clone();
    run_workers(concurrency, window, move |worker, _| {
        let client = client.clone();
        async move {
            let reply = client.request(format!("{prefix}.stock.w{worker}@main.receive"), r#"{"qty":1}"#.into()).await?;
            anyhow::ensure!(
                reply.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code")).is_none(),
                "error reply: {:?}",
                reply
            );
            Ok(())
        }
    })
    .await
}

/// The headers of a factory event (a prebuilt copy; the message id is added per request).
fn event_headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    jetsource::cloudevents::Attributes {
        id: "01a21b78-4e58-73d0-9252-e8580ea1f54d:0".into(),
        source: "/factory/stock".into(),
        event_type: "factory.stock.StockReceived".into(),
        subject: "w0@main".into(),
        time: "2026-11-27T10:00:00.123456789Z".into(),
        schema_version: 2,
        aggregate_version: Some(1),
        metadata: jetsource::CommandContext::with_command_id("01a21b78-4e58-73d0-9252-e8580ea1f54d").metadata(),
    }
    .write(&mut headers);
    headers
}

/// The floor: a queue subscriber on `<prefix>.>` that appends each request's body to
/// `evt.<prefix>.<id>` with the OCC header (tracking each subject's last sequence), plus the
/// given event headers and a message id, and replies with the sequence.
struct MinimalResponder {
    task: tokio::task::JoinHandle<()>,
}

impl MinimalResponder {
    async fn start(url: &str, prefix: &'static str, headers: Option<async_nats::HeaderMap>) -> anyhow::Result<Self> {
        let client = jetsource::connect(url, "bench").await?;
        let js = async_nats::jetstream::new(client.clone());
        let mut requests = client.queue_subscribe(format!("{prefix}.>"), prefix.into()).await?;
        let last: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let task = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let (client, js, last, headers) = (client.clone(), js.clone(), Arc::clone(&last), headers.clone());
                tokio::spawn(async move {
                    let id = request.subject.split('.').nth(2).unwrap_or_default().to_owned();
                    let subject = format!("evt.{prefix}.{id}");
                    let mut expected = last.lock().map(|m| m.get(&subject).copied().unwrap_or(0)).unwrap_or(0);
                    let outcome = loop {
                        let mut publish = PublishMessage::build().payload(request.payload.clone());
                        if let Some(headers) = &headers {
                            publish = publish.headers(headers.clone()).message_id(format!("{id}-{}:0", expected + 1));
                        }
                        let publish = publish.expected_last_subject_sequence(expected);
                        match js.send_publish(subject.clone(), publish).await {
                            Ok(ack) => match ack.await {
                                Ok(ack) => break Ok(ack.sequence),
                                // R3: the leader had not applied the last write yet; as the
                                // framework does on a conflict, it tries again.
                                Err(e) if e.to_string().contains("10164") => tokio::task::yield_now().await,
                                // A stream recreated for the next figure: the server names its
                                // last sequence, and the floor goes on from there.
                                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                                    expected = last_sequence_in(&e.to_string()).unwrap_or(0);
                                }
                                Err(e) => break Err(e.to_string()),
                            },
                            Err(e) => break Err(e.to_string()),
                        }
                    };
                    let Some(reply) = request.reply else { return };
                    match outcome {
                        Ok(seq) => {
                            if let Ok(mut m) = last.lock() {
                                m.insert(subject, seq);
                            }
                            let _ = client.publish(reply, format!(r#"{{"stream_seq":{seq}}}"#).into()).await;
                        }
                        Err(e) => {
                            let mut error = async_nats::HeaderMap::new();
                            error.insert("Nats-Service-Error-Code", "503");
                            let _ = client.publish_with_headers(reply, error, e.into()).await;
                        }
                    }
                });
            }
        });
        client_barrier(url).await?;
        Ok(Self { task })
    }
}

impl Drop for MinimalResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last sequence a `wrong last sequence: N` error names.
fn last_sequence_in(error: &str) -> Option<u64> {
    let (_, after) = error.rsplit_once("wrong last sequence: ")?;
    after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn client_barrier(url: &str) -> anyhow::Result<()> {
    let client = jetsource::connect(url, "bench").await?;
    client.flush().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or_default();
    let f: Vec<&str> = after.split(' ').collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}
