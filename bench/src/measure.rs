//! Running N workers for a fixed window and reporting rates, latencies and ratios.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What a run of workers achieved.
#[derive(Debug, Clone)]
pub struct Rate {
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Runs `concurrency` workers for `window`; each calls `op(worker, i)` in a loop. Every op is
/// timed. Errors stop the run.
pub async fn run_workers<F, Fut>(concurrency: usize, window: Duration, op: F) -> anyhow::Result<Rate>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + window;
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new(3)?;
                let mut i = 0_u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    op(worker, i).await?;
                    histogram.record(t.elapsed().as_micros() as u64)?;
                    i += 1;
                }
                anyhow::Ok(histogram)
            })
        })
        .collect();
    let mut total = Histogram::<u64>::new(3)?;
    for task in tasks {
        total.add(task.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Rate {
        per_second: total.len() as f64 / elapsed,
        p50_us: total.value_at_quantile(0.5),
        p99_us: total.value_at_quantile(0.99),
    })
}

/// Median of a set of durations, in milliseconds.
pub fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples.get(samples.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Prints a header line for a table.
pub fn header(title: &str) {
    println!("\n## {title}\n");
}

/// The raw JetStream baseline: each worker publishes `{"qty":1}` to its own subject
/// (`evt.raw.w<n>`) with the OCC header and waits for the acknowledgement.
pub async fn raw_occ_publish(
    js: &async_nats::jetstream::Context,
    concurrency: usize,
    window: Duration,
) -> anyhow::Result<Rate> {
    raw_publish(js, concurrency, window, r#"{"qty":1}"#, None).await
}

/// Each worker publishes `body` to its own subject (`evt.raw.w<n>`) with the OCC header and,
/// when `headers` is given, those headers plus a fresh message id (`<n>-<i>`), and waits for
/// the acknowledgement.
pub async fn raw_publish(
    js: &async_nats::jetstream::Context,
    concurrency: usize,
    window: Duration,
    body: &'static str,
    headers: Option<async_nats::HeaderMap>,
) -> anyhow::Result<Rate> {
    let last: Arc<Vec<tokio::sync::Mutex<u64>>> =
        Arc::new((0..concurrency).map(|_| tokio::sync::Mutex::new(0)).collect());
    let js = js.clone();
    run_workers(concurrency, window, move |worker, i| {
        let (js, last, headers) = (js.clone(), Arc::clone(&last), headers.clone());
        async move {
            let mut expected = last[worker].lock().await;
            loop {
                let mut publish = async_nats::jetstream::message::PublishMessage::build().payload(body.into());
                if let Some(headers) = &headers {
                    publish =
                        publish.headers(headers.clone()).message_id(format!("{worker:0>8}-0000-7000-8000-{i:012}"));
                }
                let publish = publish.expected_last_subject_sequence(*expected);
                match js.send_publish(format!("evt.raw.w{worker}"), publish).await?.await {
                    Ok(ack) => {
                        *expected = ack.sequence;
                        return Ok(());
                    }
                    // An R3 leader may not have applied the previous acknowledged write yet
                    // (10164); the baseline sends again, as the framework does after a conflict.
                    Err(e) if e.to_string().contains("10164") => tokio::task::yield_now().await,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    })
    .await
}

/// The release `factory up` as a user runs it (its managed nats-server on free ports, its own
/// data directory), ready; stopped with SIGTERM when dropped.
pub struct FactoryUp {
    pub child: std::process::Child,
    pub http: u16,
    _dir: tempfile::TempDir,
}

impl FactoryUp {
    /// Starts it; `None` (with a note) when the binary is not built.
    pub async fn start() -> anyhow::Result<Option<Self>> {
        let exe = std::env::current_exe()?.with_file_name("factory");
        if !exe.exists() {
            println!("skipped: {} not built (`cargo build --release -p factory`)", exe.display());
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let port = jetsource_testkit::server::free_port;
        let (nats, monitor, http) = (port()?, port()?, port()?);
        let child = std::process::Command::new(&exe)
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .args([
                "--nats-port",
                &nats.to_string(),
                "--nats-monitor-port",
                &monitor.to_string(),
                "--http",
                &format!("127.0.0.1:{http}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let up = Self { child, http, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while jetsource_testkit::server::http_status(http, "/readyz") != Some(200) {
            anyhow::ensure!(Instant::now() < deadline, "factory up did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Some(up))
    }
}

impl Drop for FactoryUp {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid`, MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(kib / 1024.0)
}
