//! # jetsource-bench
//!
//! Benchmarks that print our figure beside a raw JetStream baseline measured in the same run on
//! the same server, as a ratio. Each suite starts its own nats-server (the pinned one).
//!
//! `cargo run --release -p jetsource-bench -- core` (or `make bench` for every suite).

mod archive;
mod asynchronous;
mod commands;
mod consistency;
mod core;
mod failover;
mod http;
mod measure;
mod model;
mod projection;

use std::time::Duration;

use clap::{Parser, Subcommand};

// The same allocator as the `factory` binary: JSON and NATS headers allocate per message.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks of jetsource against raw JetStream baselines from the same run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Seconds each throughput figure is measured for.
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 3.0)]
    seconds: f64,
    /// Which suite to run.
    #[command(subcommand)]
    suite: Option<Suite>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Suite {
    /// Event store: appends vs raw OCC publishes at concurrency 1/16/64; loading a 10,000-event
    /// aggregate with and without a snapshot.
    Core,
    /// Command services over NATS request/reply vs raw OCC publish and a minimal responder,
    /// at concurrency 1/16/64/128; idle memory of `factory up`.
    Commands,
    /// Projection throughput into KV vs a raw consumer of the same events; read-your-writes
    /// wait at 1k commands/s.
    Projection,
    /// HTTP commands through the gateway vs the NATS request/reply path at 16/64/128; goodput
    /// under overload (640 and 2000 connections without backoff) beside the peak at 64.
    Http,
    /// Async errors: failure → status and notification latency at 1k commands/s beside raw
    /// JetStream delivery; command throughput with tracing on vs off.
    Async,
    /// Failover on a 3-node R3 cluster: commands around a stream-leader kill beside the
    /// election and a raw publisher; standby projector and saga taking over.
    Failover,
    /// The bounded event log: hot and archived sizes under a steady workload (1M events by
    /// default, BENCH_ARCHIVE_EVENTS), bytes per event, time travel and a view rebuild after
    /// compaction beside the same reads before it.
    Archive,
    /// Consistency beyond one aggregate: transfers (two aggregates, one atomic batch) beside
    /// single-aggregate commands with their conflict rates at 1/16/64; appends conditioned on a
    /// tag beside plain OCC appends and raw publishes.
    Consistency,
    /// Every suite in turn.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let window = Duration::from_secs_f64(cli.seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.suite.unwrap_or(Suite::All) {
            Suite::Core => core::run(window).await,
            Suite::Commands => commands::run(window).await,
            Suite::Projection => projection::run(window).await,
            Suite::Http => http::run(window).await,
            Suite::Async => asynchronous::run(window).await,
            Suite::Failover => failover::run(window).await,
            Suite::Archive => archive::run(window).await,
            Suite::Consistency => consistency::run(window).await,
            Suite::All => {
                core::run(window).await?;
                commands::run(window).await?;
                projection::run(window).await?;
                http::run(window).await?;
                asynchronous::run(window).await?;
                failover::run(window).await?;
                consistency::run(window).await?;
                archive::run(window).await
            }
        }
    })
}
