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
