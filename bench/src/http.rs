//! HTTP commands through the gateway against the NATS request/reply path, same run, same
//! server, same services.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use factory::app::{App, AppConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jetsource::topology::Topology;
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsServer;

use crate::deploy::Deployment;
use crate::measure::{Rate, header, run_workers};

pub async fn run(window: Duration) -> anyhow::Result<()> {
    let server = NatsServer::try_start()?;
    let url = server.url();
    let mut config = AppConfig::new(&url, factory::app::all_services());
    // The gateway's defaults: at most 1024 in flight, the limit learned from latency, a wait of
    // up to 1 s for a place.
    config.http = Some("127.0.0.1:0".parse()?);
    let app = App::build(config).await?;
    let shutdown = Shutdown::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.serve(shutdown.clone(), move |addr| {
        let _ = tx.send(addr);
    }));
    let http = rx.await?.ok_or_else(|| anyhow::anyhow!("no HTTP address"))?;
    let client = jetsource::connect(&url, "bench").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(factory::TOPOLOGY)?;
    println!(
        "# HTTP gateway benchmark\n\nnats-server {} (R1), all services and the gateway in one process (auth off), {}s per figure",
        client.server_info().version,
        window.as_secs_f64()
    );
    let floor = minimal_proxy(&url).await?;
    header("Commands: HTTP (gateway → NATS → service) vs NATS request/reply, same run");
    println!("The floor, `minimal proxy`, is a warp route in this process that sends the body to the same");
    println!("service as a NATS request and answers the reply as it came: the HTTP hop alone, without the");
    println!("gateway's admission, authentication, tracing, metrics and checks.\n");
    println!(
        "| concurrency | NATS request/reply/s | p50/p99 µs | minimal proxy/s | ÷ NATS | HTTP/s | p50/p99 µs | ÷ NATS | ÷ minimal proxy |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [16_usize, 64, 128] {
        Deployment::R1.fresh_store(&js, &topology).await?;
        let nats = nats_commands(&client, concurrency, window).await?;
        Deployment::R1.fresh_store(&js, &topology).await?;
        let proxied = http_commands(floor, concurrency, window).await?;
        Deployment::R1.fresh_store(&js, &topology).await?;
        let over_http = http_commands(http, concurrency, window).await?;
        println!(
            "| {concurrency} | {:.0} | {}/{} | {:.0} | {:.2} | {:.0} | {}/{} | {:.2} | {:.2} |",
            nats.per_second,
            nats.p50_us,
            nats.p99_us,
            proxied.per_second,
            proxied.per_second / nats.per_second,
            over_http.per_second,
            over_http.p50_us,
            over_http.p99_us,
            over_http.per_second / nats.per_second,
            over_http.per_second / proxied.per_second
        );
    }
    shutdown.trigger();
    overload(window).await?;
    Ok(())
}

/// The HTTP floor: `POST /v1/commands/<type>/<id>/<command>` sent on as the NATS request
/// `cmd.<type>.<id>.<command>` over its own connection, the reply's body answered with 200 (or
/// 500 when the service answered an error). Served until the process ends.
async fn minimal_proxy(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    use warp::Filter;
    let client = jetsource::connect(url, "bench-proxy").await?;
    let route = warp::path!("v1" / "commands" / String / String / String)
        .and(warp::post())
        .and(warp::body::bytes())
        .then(move |kind: String, id: String, command: String, body: Bytes| {
            let client = client.clone();
            async move {
                let (status, body) = match client.request(format!("cmd.{kind}.{id}.{command}"), body).await {
                    Ok(reply) if reply.headers.is_none() => (200, reply.payload),
                    Ok(reply) => (500, reply.payload),
                    Err(e) => (502, Bytes::from(e.to_string())),
                };
                warp::http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap_or_default()
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok(addr)
}

/// Goodput under overload: connections that send commands as fast as they are answered (no
/// backoff, as wrk does) at `factory up` in its own process, at the peak's concurrency and at
/// 10× and ~30× it; each figure beside the peak from the same run.
async fn overload(window: Duration) -> anyhow::Result<()> {
    header("Goodput under overload: HTTP commands at `factory up` (its own process), connections without backoff");
    let Some(up) = crate::measure::FactoryUp::start().await? else { return Ok(()) };
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", up.http).parse()?;
    println!(
        "| connections | successful/s | ÷ at 64 (unloaded) | ÷ best | refused (503)/s | p50/p99 µs of successes | admission limit | RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    flood(http, 64, Duration::from_secs(1)).await?; // warm-up, not shown
    let mut rows = Vec::new();
    for connections in [64_usize, 640, 2000] {
        let load = flood(http, connections, window).await?;
        rows.push((connections, load, crate::measure::rss_mib(up.child.id())?));
    }
    let unloaded = rows[0].1.ok_per_second;
    let best = rows.iter().map(|r| r.1.ok_per_second).fold(0.0, f64::max);
    for (connections, load, rss) in rows {
        println!(
            "| {connections} | {:.0} | {:.2} | {:.2} | {:.0} | {}/{} | {} | {rss:.0} |",
            load.ok_per_second,
            load.ok_per_second / unloaded,
            load.ok_per_second / best,
            load.refused_per_second,
            load.p50_us,
            load.p99_us,
            load.limit,
        );
    }
    Ok(())
}

pub(crate) struct Flood {
    pub(crate) ok_per_second: f64,
    refused_per_second: f64,
    p50_us: u64,
    p99_us: u64,
    limit: String,
}

/// `connections` keep-alive connections, each sending the next command as soon as the last is
/// answered, whatever the answer.
pub(crate) async fn flood(addr: std::net::SocketAddr, connections: usize, window: Duration) -> anyhow::Result<Flood> {
    let start = std::time::Instant::now();
    let deadline = start + window;
    let tasks: Vec<_> = (0..connections)
        .map(|worker| {
            tokio::spawn(async move {
                let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
                let mut refused = 0_u64;
                let mut connection = KeepAlive::connect(addr).await?;
                let request = format!(
                    "POST /v1/commands/stock/o{worker}@main/receive HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{{\"qty\":1}}"
                );
                while std::time::Instant::now() < deadline {
                    let sent = std::time::Instant::now();
                    match connection.exchange(request.as_bytes()).await? {
                        200 => histogram.record(sent.elapsed().as_micros() as u64)?,
                        503 => refused += 1,
                        other => anyhow::bail!("status {other}"),
                    }
                }
                anyhow::Ok((histogram, refused))
            })
        })
        .collect();
    let limit = scrape_limit(addr).await.unwrap_or_else(|| "?".into());
    let mut total = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut refused = 0;
    for task in tasks {
        let (histogram, shed) = task.await??;
        total.add(histogram)?;
        refused += shed;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Flood {
        ok_per_second: total.len() as f64 / elapsed,
        refused_per_second: refused as f64 / elapsed,
        p50_us: total.value_at_quantile(0.5),
        p99_us: total.value_at_quantile(0.99),
        limit,
    })
}

/// The admission limit the gateway reports on `/metrics`, read half-way through a load.
async fn scrape_limit(addr: std::net::SocketAddr) -> Option<String> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut connection = tokio::net::TcpStream::connect(addr).await.ok()?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    connection.write_all(b"GET /metrics HTTP/1.0\r\nhost: bench\r\n\r\n").await.ok()?;
    let mut text = String::new();
    connection.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find(|l| !l.starts_with('#') && l.contains("http_concurrency_limit "))
        .and_then(|l| l.split(' ').nth(1))
        .map(str::to_owned)
}

async fn nats_commands(client: &async_nats::Client, concurrency: usize, window: Duration) -> anyhow::Result<Rate> {
    let client = client.clone();
    run_workers(concurrency, window, move |worker, _| {
        let client = client.clone();
        async move {
            let reply = client.request(format!("cmd.stock.h{worker}@main.receive"), r#"{"qty":1}"#.into()).await?;
            anyhow::ensure!(reply.headers.is_none(), "error reply: {:?}", reply);
            Ok(())
        }
    })
    .await
}

/// Each worker keeps one HTTP/1.1 connection and sends its requests on it one after the other,
/// as a lean load generator (wrk-like) would; the first request of each worker goes through
/// hyper's client to check the exchange is well formed.
async fn http_commands(addr: std::net::SocketAddr, concurrency: usize, window: Duration) -> anyhow::Result<Rate> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let probe = hyper::Request::post(format!("http://{addr}/v1/commands/stock/probe@main/receive"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"qty":1}"#)))?;
    let response = client.request(probe).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
    let connections: Arc<Vec<tokio::sync::Mutex<Option<KeepAlive>>>> =
        Arc::new((0..concurrency).map(|_| tokio::sync::Mutex::new(None)).collect());
    run_workers(concurrency, window, move |worker, _| {
        let connections = Arc::clone(&connections);
        async move {
            let mut slot = connections[worker].lock().await;
            if slot.is_none() {
                *slot = Some(KeepAlive::connect(addr).await?);
            }
            let connection = slot.as_mut().ok_or_else(|| anyhow::anyhow!("no connection"))?;
            let request = format!(
                "POST /v1/commands/stock/h{worker}@main/receive HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{{\"qty\":1}}"
            );
            let status = connection.exchange(request.as_bytes()).await?;
            anyhow::ensure!(status == 200, "status {status}");
            Ok(())
        }
    })
    .await
}

/// One keep-alive HTTP/1.1 connection.
struct KeepAlive {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    line: String,
}

impl KeepAlive {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: tokio::io::BufReader::new(stream), line: String::new() })
    }

    /// Sends one request and reads the whole response; returns its status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        self.stream.get_mut().write_all(request).await?;
        self.line.clear();
        self.stream.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {:?}", self.line))?;
        let mut length = 0;
        loop {
            self.line.clear();
            self.stream.read_line(&mut self.line).await?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}
