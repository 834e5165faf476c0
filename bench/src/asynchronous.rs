//! Asynchronous errors: how soon a failed order's status and notification are visible after
//! the failure event is written (at 1,000 commands/s), beside the raw JetStream delivery
//! latency at the same pace; and what tracing costs: command throughput of `factory up` with
//! OTLP export on against off, same run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factory::app::{App, AppConfig};
use futures::StreamExt;
use hdrhistogram::Histogram;
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource_runtime::Shutdown;
use jetsource_runtime::wire::{Client, CommandRequest};
use jetsource_testkit::NatsServer;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::measure::{Rate, header, run_workers};

pub async fn run(window: Duration) -> anyhow::Result<()> {
    failure_visibility(window.max(Duration::from_secs(5))).await?;
    tracing_overhead(window).await
}

/// Microseconds from an RFC 3339 time to now.
fn since_us(at: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(at, &Rfc3339).ok()?;
    let us = (OffsetDateTime::now_utc() - at).whole_microseconds();
    u64::try_from(us).ok()
}

async fn failure_visibility(window: Duration) -> anyhow::Result<()> {
    header("Async error visibility at 1,000 commands/s (500 orders/s, each `plan` + `start`, every one failing)");
    let server = NatsServer::try_start()?;
    let url = server.url();
    let shutdown = Shutdown::new();
    let services = factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect();
    let app = App::build(AppConfig::new(&url, services)).await?;
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let define = r#"{"name": "Widget", "bom": [{"sku": "unobtainium", "qty": 1}]}"#;
    let commands = Client::new(client.clone(), Duration::from_secs(10));
    commands.command(&CommandRequest::new("product", "widget", "define", define)).await?;

    // What we measure: notification received, and status `failed` visible in the commands
    // view, each from the failure's recorded time.
    let notified = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut notifications = client.subscribe("notify.>").await?;
    let n = Arc::clone(&notified);
    tokio::spawn(async move {
        while let Some(message) = notifications.next().await {
            let Ok(body) = serde_json::from_slice::<Value>(&message.payload) else { continue };
            if let Some(us) = body["at"].as_str().and_then(since_us) {
                let _ = n.lock().map(|mut h| h.record(us.max(1)));
            }
        }
    });
    let visible = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let statuses = js.get_key_value(jetsource::projection::bucket_name("commands", 1)).await?;
    let mut watch = statuses.watch_all_from_revision(1).await?;
    let v = Arc::clone(&visible);
    tokio::spawn(async move {
        while let Some(Ok(entry)) = watch.next().await {
            let Ok(doc) = serde_json::from_slice::<Value>(&entry.value) else { continue };
            if doc["status"] == "failed"
                && let Some(us) = doc["errors"][0]["at"].as_str().and_then(since_us)
            {
                let _ = v.lock().map(|mut h| h.record(us.max(1)));
            }
        }
    });

    // The floor: raw JetStream, an event published at the same pace and read by a consumer.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw.>".into()],
        ..Default::default()
    })
    .await?;
    let raw = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let consumer = js
        .get_stream("BENCH_RAW")
        .await?
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut raw_messages = consumer.messages().await?;
    let r = Arc::clone(&raw);
    tokio::spawn(async move {
        while let Some(Ok(message)) = raw_messages.next().await {
            let sent = std::str::from_utf8(&message.payload).ok().and_then(since_us);
            if let Some(us) = sent {
                let _ = r.lock().map(|mut h| h.record(us.max(1)));
            }
        }
    });

    let workers = 10;
    let pace = Duration::from_millis(20); // 50 orders/s per worker
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let client = commands.clone();
            let js = js.clone();
            tokio::spawn(async move {
                let mut next = Instant::now();
                let mut i = 0_u64;
                while Instant::now() < deadline {
                    tokio::time::sleep_until(next.into()).await;
                    next += pace;
                    let order = format!("o{w}-{i}");
                    let plan = r#"{"product_id": "widget", "qty": 1, "warehouse": "main"}"#;
                    // Each order fails asynchronously: `start` is answered `accepted`.
                    client.command(&CommandRequest::new("order", &order, "plan", plan)).await?;
                    client.command(&CommandRequest::new("order", &order, "start", "{}")).await?;
                    let now = jetsource::cloudevents::now_rfc3339();
                    js.publish(format!("bench.raw.{w}"), now.into()).await?.await?;
                    i += 1;
                }
                anyhow::Ok(i)
            })
        })
        .collect();
    let mut orders = 0;
    for task in tasks {
        orders += task.await??;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let row = |name: &str, h: &Histogram<u64>| {
        println!("| {name} | {} | {:.2} | {:.2} | {:.2} |", h.len(), ms(h, 0.5), ms(h, 0.99), h.max() as f64 / 1000.0);
    };
    println!("| from the failure event's time to | samples | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|");
    let notified = notified.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let visible = visible.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let raw = raw.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    row("notification received (`notify.<command_id>`)", &notified);
    row("status `failed` in the commands view", &visible);
    row("baseline: raw JetStream event read by a consumer, same pace", &raw);
    println!(
        "\n{orders} orders failed in {:.1} s; p99 ÷ raw p99: notification {:.1}×, status {:.1}×",
        window.as_secs_f64(),
        ms(&notified, 0.99) / ms(&raw, 0.99).max(0.001),
        ms(&visible, 0.99) / ms(&raw, 0.99).max(0.001)
    );
    shutdown.trigger();
    Ok(())
}

/// An OTLP/HTTP sink that accepts and counts exports (what a collector does first).
async fn otlp_sink() -> anyhow::Result<(std::net::SocketAddr, Arc<Mutex<(u64, u64)>>)> {
    use warp::Filter;
    let counts = Arc::new(Mutex::new((0_u64, 0_u64)));
    let c = Arc::clone(&counts);
    let route = warp::post().and(warp::body::bytes()).map(move |body: bytes::Bytes| {
        if let Ok(mut c) = c.lock() {
            c.0 += 1;
            c.1 += body.len() as u64;
        }
        warp::reply()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok((addr, counts))
}

async fn tracing_overhead(window: Duration) -> anyhow::Result<()> {
    header("Tracing: command throughput of `factory up` with OTLP export on vs off (c=64, same server)");
    let exe = std::env::current_exe()?.with_file_name("factory");
    if !exe.exists() {
        println!("skipped: {} not built (`cargo build --release -p factory`)", exe.display());
        return Ok(());
    }
    let server = NatsServer::try_start()?;
    let url = server.url();
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    provision(&js, &topology, ProvisionOptions::default()).await?;
    let (sink, exports) = otlp_sink().await?;
    println!("| run | tracing | commands/s | p50/p99 µs |\n|---|---|---:|---:|");
    let mut best = [0.0_f64; 2];
    for round in 1..=2 {
        for (i, exporting) in [false, true].into_iter().enumerate() {
            let port = jetsource_testkit::server::free_port()?;
            let mut command = std::process::Command::new(&exe);
            command
                .args(["up", "--nats-url", &url, "--http", &format!("127.0.0.1:{port}"), "--log", "error"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if exporting {
                command.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{sink}"));
            }
            let mut child = command.spawn()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
                anyhow::ensure!(Instant::now() < deadline, "factory up did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let rate = commands(&client, window, round).await?;
            let _ = child.kill();
            let _ = child.wait();
            best[i] = best[i].max(rate.per_second);
            println!(
                "| {round} | {} | {:.0} | {}/{} |",
                if exporting { "on (spans exported over OTLP/HTTP)" } else { "off (no OTEL_* set)" },
                rate.per_second,
                rate.p50_us,
                rate.p99_us
            );
        }
    }
    let (requests, bytes) = exports.lock().map(|c| *c).unwrap_or_default();
    println!(
        "\nbest on ÷ best off: {:.2} (target ≥ 0.90); the sink received {requests} exports, {:.1} MiB",
        best[1] / best[0].max(1.0),
        bytes as f64 / 1048576.0
    );
    Ok(())
}

async fn commands(client: &async_nats::Client, window: Duration, round: u32) -> anyhow::Result<Rate> {
    let client = Client::new(client.clone(), Duration::from_secs(10));
    run_workers(64, window, move |worker, _| {
        let client = client.clone();
        async move {
            let item = format!("t{round}-{worker}@main");
            client.command(&CommandRequest::new("stock", &item, "receive", r#"{"qty":1}"#)).await?;
            Ok(())
        }
    })
    .await
}
