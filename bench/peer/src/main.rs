//! # jetsource-peer-bench
//!
//! Command throughput of a *peer* event-sourcing stack, measured on the same machine and in the
//! same run as jetsource's own figures, so the README compares against a real peer rather than
//! a number quoted from elsewhere: [cqrs-es](https://crates.io/crates/cqrs-es) with its
//! PostgreSQL event store [postgres-es](https://crates.io/crates/postgres-es), on a PostgreSQL
//! server that this binary starts for the run.
//!
//! ## What it measures
//!
//! The workload is jetsource-bench's command workload: an aggregate `Stock` (one stock item)
//! with one command, `Receive { qty }`, which emits one event, `StockReceived { qty }`, whose
//! apply adds `qty` to a counter. For each concurrency level (`--concurrency`, default 1, 16
//! and 64) that many workers run for `--seconds`; worker `w` sends `Receive { qty: 1 }` to its
//! own aggregate (`l<level>c<concurrency>-w<w>@main`, fresh for each level), one command at a time,
//! through the framework's standard path: `postgres_es::postgres_cqrs(pool, vec![], ())` and
//! `cqrs.execute(id, command)`, which loads the aggregate's events, handles the command and
//! appends the event in a transaction. The pool is built as postgres-es's own
//! `default_postgress_pool` builds it, sized to the largest concurrency level. Each command is
//! timed (HdrHistogram, µs); the rate is commands completed over the window.
//!
//! ## Durability
//!
//! Equal to jetsource's "every write fsync'd": the server runs with `fsync=on`,
//! `synchronous_commit=on` and `full_page_writes=on` (checked with `SHOW` before the run), so a
//! command returns only after its event's WAL record is flushed to disk. The data dir is a fresh
//! temp dir under `--tmp-dir` (default: the system temp dir, which should be a real disk, as
//! jetsource-bench's NATS data dir is).
//!
//! ## The server
//!
//! `initdb` into a fresh temp dir, then `postgres` on a free 127.0.0.1 port (TCP, no TLS),
//! stopped (SIGTERM, waited for) and its dir removed when the run ends, on error too. The
//! binaries come from `--postgres-dir`, else `<repo>/.tools/postgres` (unpacked by
//! `bench/peer/postgres.sh`) found above the binary or the current dir, else a system install
//! under /usr/lib/postgresql; libraries unpacked beside them are put on `LD_LIBRARY_PATH`.
//! PostgreSQL refuses to run as root: when this process is root, initdb and postgres run as
//! `--server-user` (default `nobody`) through `setpriv`, with the data dir given to that user.
//!
//! ## Output
//!
//! To stdout a markdown table, `| concurrency | commands/s | p50/p99 µs |`, and as the last line
//! one JSON object: `{"peer":…,"postgres":…,"durability":…,"rates":[{"concurrency":…,
//! "per_second":…,"p50_us":…,"p99_us":…},…]}`. Progress goes to stderr.

mod server;
mod stock;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use hdrhistogram::Histogram;
use postgres_es::{PostgresCqrs, postgres_cqrs};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;

use crate::server::{Install, Server};
use crate::stock::{Stock, StockCommand};

/// Command throughput of cqrs-es + postgres-es on a PostgreSQL server it starts for the run
/// (fsync=on, synchronous_commit=on), with jetsource-bench's command workload.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Where PostgreSQL is: an unpacked tree (as bench/peer/postgres.sh makes), a prefix or a
    /// bin dir [default: <repo>/.tools/postgres above the binary or the current dir, else
    /// /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "DIR")]
    postgres_dir: Option<PathBuf>,

    /// Seconds each concurrency level runs
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,

    /// Concurrency levels: workers, each sending one command at a time to its own aggregate
    #[arg(long, value_delimiter = ',', default_value = "1,16,64", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: Vec<u32>,

    /// Where the server's temp data dir goes [default: the system temp dir]
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,

    /// The user that runs initdb and postgres when this process is root
    #[arg(long, value_name = "USER", default_value = "nobody")]
    server_user: String,
}

/// One concurrency level's result.
#[derive(Debug, Serialize)]
struct Rate {
    concurrency: u32,
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
}

/// The last line of stdout.
#[derive(Debug, Serialize)]
struct Report {
    peer: String,
    postgres: String,
    durability: &'static str,
    rates: Vec<Rate>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => result,
            // Dropping `run` drops its server guard: the server is stopped, its dir removed.
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let install = Install::find(cli.postgres_dir.as_deref())?;
    let most = cli.concurrency.iter().copied().max().context("--concurrency lists no level")?;
    let parent = cli.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    eprintln!("starting postgres from {} (data under {})", install.bin.display(), parent.display());
    let max_connections = usize::try_from(most).context("concurrency")?.saturating_add(10).max(100);
    let server = Server::start(&install, &parent, &cli.server_user, max_connections).await?;
    let postgres = server.version().await?;
    eprintln!("{postgres} on 127.0.0.1:{}", server.port());

    // As postgres-es's `default_postgress_pool`, sized to the largest level.
    let pool = PgPoolOptions::new()
        .max_connections(most)
        .connect_with(server.connect_options())
        .await
        .context("connecting the pool")?;
    // Open every connection before timing, so no level pays for connecting.
    let mut warm = Vec::new();
    for _ in 0..most {
        warm.push(pool.acquire().await.context("opening the pool's connections")?);
    }
    drop(warm);
    let cqrs: Arc<PostgresCqrs<Stock>> = Arc::new(postgres_cqrs(pool.clone(), vec![], ()));

    let peer = format!("cqrs-es {} + postgres-es {}", env!("PEER_CQRS_ES_VERSION"), env!("PEER_POSTGRES_ES_VERSION"));
    println!("| concurrency | commands/s | p50/p99 µs |");
    println!("| --- | --- | --- |");
    let mut rates = Vec::new();
    for (level, &concurrency) in cli.concurrency.iter().enumerate() {
        eprintln!("{peer}: {concurrency} workers for {} s", cli.seconds);
        let rate = commands(&cqrs, level, concurrency, Duration::from_secs(cli.seconds)).await?;
        println!("| {} | {:.0} | {}/{} |", rate.concurrency, rate.per_second, rate.p50_us, rate.p99_us);
        rates.push(rate);
    }

    // Close every connection before the server's smart shutdown, which waits for sessions to
    // end. `close` can miss a connection whose return to the pool was still in flight (sqlx
    // returns connections from a spawned task); dropping the last handle closes that one too.
    drop(cqrs);
    pool.close().await;
    drop(pool);
    let report = Report { peer, postgres, durability: "fsync=on, synchronous_commit=on", rates };
    println!("{}", serde_json::to_string(&report).context("serializing the report")?);
    drop(server);
    Ok(())
}

/// `concurrency` workers for `window` (level `level` of the run, which makes the aggregate ids
/// fresh: `l<level>c<concurrency>-w<worker>@main`), each sending `Receive { qty: 1 }` to its own aggregate,
/// one command at a time; every command timed. An error stops the level (and the run).
async fn commands(
    cqrs: &Arc<PostgresCqrs<Stock>>,
    level: usize,
    concurrency: u32,
    window: Duration,
) -> anyhow::Result<Rate> {
    let start = Instant::now();
    let deadline = start + window;
    // A JoinSet aborts the workers still running if this returns early.
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let cqrs = Arc::clone(cqrs);
        workers.spawn(async move {
            let id = format!("l{level}c{concurrency}-w{worker}@main");
            let mut histogram = Histogram::<u64>::new(3)?;
            while Instant::now() < deadline {
                let t = Instant::now();
                cqrs.execute(&id, StockCommand::Receive { qty: 1 })
                    .await
                    .with_context(|| format!("executing Receive on {id}"))?;
                histogram.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))?;
            }
            anyhow::Ok(histogram)
        });
    }
    let mut total = Histogram::<u64>::new(3)?;
    while let Some(joined) = workers.join_next().await {
        total.add(joined.context("a worker panicked")??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(!total.is_empty(), "no command completed in {} s", window.as_secs());
    Ok(Rate {
        concurrency,
        per_second: (total.len() as f64 / elapsed * 10.0).round() / 10.0,
        p50_us: total.value_at_quantile(0.5),
        p99_us: total.value_at_quantile(0.99),
    })
}
