//! Failover on a 3-node loopback cluster (R3): how long commands go without success when the
//! EVENTS stream leader is killed, beside the cluster's own leader election and a raw JetStream
//! publisher measured around the same kill; and how long a standby projector and a standby saga
//! take to carry on after the active one is killed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use factory::app::{App, AppConfig};
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsCluster;

use crate::measure::header;

const KILLS: usize = 2;
const WRITERS: usize = 16;

/// Successful operations, by time.
#[derive(Default, Clone)]
struct Successes(Arc<Mutex<Vec<Instant>>>);

impl Successes {
    fn record(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
    }
    /// The longest time without success from `at` on (from the last success before it):
    /// how long the kill at `at` kept every operation from succeeding.
    fn longest_gap_from(&self, at: Instant) -> Option<Duration> {
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        all.sort();
        let first = all.iter().rposition(|t| *t <= at)?;
        all[first..].windows(2).map(|w| w[1] - w[0]).max()
    }
    fn after(&self, at: Instant) -> usize {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().filter(|t| **t > at).count()
    }
}

pub async fn run(_window: Duration) -> anyhow::Result<()> {
    let mut cluster = NatsCluster::try_start(3)?;
    let urls = cluster.urls();
    let client = jetsource::connect(&urls, "bench-client").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    provision(&js, &topology, ProvisionOptions { replicas: Some(3), ..Default::default() }).await?;
    println!(
        "# Failover benchmark\n\nnats-server {} (3-node loopback cluster, R3 streams, file storage)",
        client.server_info().version
    );
    let shutdown = Shutdown::new();
    let app = App::build(AppConfig::new(&urls, vec!["catalog", "stock", "production"])).await?;
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    leader_kills(&mut cluster, &client).await?;
    let exe = std::env::current_exe()?.with_file_name("factory");
    if exe.exists() {
        standby_takeovers(&exe, &urls, &client).await?;
    } else {
        println!("\nstandby takeovers skipped: {} not built (`cargo build --release -p factory`)", exe.display());
    }
    shutdown.trigger();
    Ok(())
}

/// The node leading `EVENTS` as node `node`'s monitoring endpoint says.
fn leader_seen_by(cluster: &NatsCluster, node: usize) -> Option<usize> {
    cluster.node_index(cluster.stream_on(node, "EVENTS")?["cluster"]["leader"].as_str()?)
}

/// The node leading `EVENTS`, once one of the nodes other than `not` names one other than
/// `not` (polled every 10 ms).
async fn events_leader(cluster: &NatsCluster, not: Option<usize>) -> usize {
    loop {
        for node in (0..cluster.len()).filter(|n| Some(*n) != not) {
            if let Some(leader) = leader_seen_by(cluster, node).filter(|l| Some(*l) != not) {
                return leader;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn leader_kills(cluster: &mut NatsCluster, client: &async_nats::Client) -> anyhow::Result<()> {
    header("Commands around a kill of the EVENTS stream leader");
    println!("{WRITERS} workers send `stock receive` over NATS request/reply, one at a time each; 4 raw publishers");
    println!("append to `evt.raw.*` in the same stream (message id, a 750 ms ack timeout, sent again until");
    println!("acknowledged). The leader gets SIGKILL; election = until a surviving node's `/jsz` names a new leader;");
    println!("no success = the longest time without one from the kill on (from the last success before it).\n");
    println!("| kill | election ms | raw: no success ms | factory: no success ms | factory ÷ election |");
    println!("|---:|---:|---:|---:|---:|");
    let js = async_nats::jetstream::new(client.clone());
    let running = Arc::new(AtomicBool::new(true));
    let (commands, raw) = (Successes::default(), Successes::default());
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (client, running, commands) = (client.clone(), Arc::clone(&running), commands.clone());
        tasks.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let request = client.request(format!("cmd.stock.f{w}@main.receive"), r#"{"qty":1}"#.into());
                if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(6), request).await
                    && reply.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code")).is_none()
                {
                    commands.record();
                }
            }
        }));
    }
    for w in 0..4 {
        let (js, running, raw) = (js.clone(), Arc::clone(&running), raw.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0_u64;
            while running.load(Ordering::Relaxed) {
                i += 1;
                loop {
                    let publish = PublishMessage::build().payload("{}".into()).message_id(format!("raw-{w}-{i}"));
                    let sent = async { js.send_publish(format!("evt.raw.p{w}"), publish).await?.await };
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(750), sent).await {
                        raw.record();
                        break;
                    }
                    if !running.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }));
    }
    for kill in 1..=KILLS {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = events_leader(cluster, None).await;
        let killed_at = Instant::now();
        cluster.kill_node(leader);
        let _ = events_leader(cluster, Some(leader)).await;
        let election = killed_at.elapsed();
        let elected_at = killed_at + election;
        let deadline = Instant::now() + Duration::from_secs(60);
        while (commands.after(elected_at) < 10 || raw.after(elected_at) < 10) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ms = |d: Option<Duration>| d.map_or("none".to_owned(), |gap| format!("{:.0}", gap.as_secs_f64() * 1e3));
        let ours = commands.longest_gap_from(killed_at);
        let ratio = ours.map_or("-".to_owned(), |gap| format!("{:.2}", gap.as_secs_f64() / election.as_secs_f64()));
        println!(
            "| {kill} | {:.0} | {} | {} | {ratio} |",
            election.as_secs_f64() * 1e3,
            ms(raw.longest_gap_from(killed_at)),
            ms(ours),
        );
        cluster.restart_node(leader);
        settle(cluster).await;
    }
    running.store(false, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// Until every node reports the same last sequence of `EVENTS` (a restarted node caught up),
/// then a little longer for its Raft groups to settle.
async fn settle(cluster: &NatsCluster) {
    let last_seq = |node: usize| cluster.stream_on(node, "EVENTS")?["state"]["last_seq"].as_u64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let seqs: Vec<Option<u64>> = (0..cluster.len()).map(last_seq).collect();
        if seqs.iter().all(|s| s.is_some() && *s == seqs[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// `factory run <service>` against the cluster, killed on drop.
struct Process(std::process::Child);

impl Process {
    fn start(exe: &std::path::Path, urls: &str, service: &str) -> anyhow::Result<Self> {
        let port = jetsource_testkit::server::free_port()?;
        let child = std::process::Command::new(exe)
            .args(["run", service, "--nats-url", urls, "--http", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
            anyhow::ensure!(Instant::now() < deadline, "factory run {service} did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self(child))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn send(client: &async_nats::Client, subject: &str, body: &str) -> anyhow::Result<serde_json::Value> {
    let reply = client.request(subject.to_owned(), body.to_owned().into()).await?;
    anyhow::ensure!(
        reply.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code")).is_none(),
        "{subject}: {}",
        String::from_utf8_lossy(&reply.payload)
    );
    Ok(serde_json::from_slice(&reply.payload)?)
}

/// Until `done` answers true, checking every 10 ms; how long that took.
async fn until<F, Fut>(within: Duration, mut done: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        anyhow::ensure!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(started.elapsed())
}

async fn standby_takeovers(exe: &std::path::Path, urls: &str, client: &async_nats::Client) -> anyhow::Result<()> {
    header("Standby instances taking over");
    println!("Two `factory run projector` and two `factory run saga` processes; the first of each (the active");
    println!("one) gets SIGKILL. Projector: until a `Min-Seq` query for a command sent right after the kill is");
    println!("answered. Saga: until an order started right after the kill is reserved (its start command");
    println!("`completed`), beside the same order flow with both sagas alive. Pin timeout 1.5 s.\n");
    let active_projector = Process::start(exe, urls, "projector")?;
    let _standby_projector = Process::start(exe, urls, "projector")?;
    let active_saga = Process::start(exe, urls, "saga")?;
    let _standby_saga = Process::start(exe, urls, "saga")?;
    send(client, "cmd.product.fw.define", r#"{"name": "W", "bom": [{"sku": "fb", "qty": 1}]}"#).await?;
    send(client, "cmd.stock.fb@main.receive", r#"{"qty": 100000}"#).await?;

    let view_sees = |seq: u64| {
        let client = client.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Min-Seq", seq.to_string());
            let query = client.request_with_headers("qry.stock.fb@main", headers, "".into());
            matches!(tokio::time::timeout(Duration::from_secs(6), query).await,
                Ok(Ok(reply)) if reply.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code")).is_none())
        }
    };
    let order = |n: u32| {
        let client = client.clone();
        async move {
            let id = format!("fo{n}");
            send(&client, &format!("cmd.order.{id}.plan"), r#"{"product_id": "fw", "qty": 1, "warehouse": "main"}"#)
                .await?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Idempotency-Key", format!("start-{id}"));
            client.request_with_headers(format!("cmd.order.{id}.start"), headers, "{}".into()).await?;
            until(Duration::from_secs(30), || {
                let client = client.clone();
                let id = id.clone();
                async move {
                    match client.request(format!("qry.commands.start-{id}"), "".into()).await {
                        Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
                            .is_ok_and(|doc| doc["status"] == "completed"),
                        Err(_) => false,
                    }
                }
            })
            .await
        }
    };
    let mut alive = Vec::new();
    for n in 0..3 {
        alive.push(order(n).await?);
    }
    let alive = crate::measure::median_ms(alive);

    println!("| instance killed | until it carries on ms | with both alive ms |");
    println!("|---|---:|---:|");
    let seq = send(client, "cmd.stock.fb@main.receive", r#"{"qty": 1}"#).await?["stream_seq"].as_u64().unwrap_or(0);
    let both = until(Duration::from_secs(10), || view_sees(seq)).await?;
    drop(active_projector);
    let killed_at = Instant::now();
    let seq = send(client, "cmd.stock.fb@main.receive", r#"{"qty": 1}"#).await?["stream_seq"].as_u64().unwrap_or(0);
    until(Duration::from_secs(30), || view_sees(seq)).await?;
    println!("| active projector | {:.0} | {:.0} |", killed_at.elapsed().as_secs_f64() * 1e3, both.as_secs_f64() * 1e3);
    drop(active_saga);
    let killed_at = Instant::now();
    order(10).await?;
    println!("| active saga | {:.0} | {alive:.0} (median of 3) |", killed_at.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
