//! # jetsource-bench
//!
//! Benchmarks that print our figure beside a raw JetStream baseline measured in the same run on
//! the same server, as a ratio. Each suite starts its own nats-server (the pinned one).
//!
//! `cargo run --release -p jetsource-bench -- core` (or `make bench` for every suite).
//! The append, command and projection suites take `--deployment` (R1, R1 with every write
//! fsync'd, a 3-node R3 cluster, and R3 fsync'd); `all` runs them on each.

mod archive;
mod asynchronous;
mod commands;
mod consistency;
mod core;
mod deploy;
mod failover;
mod http;
mod measure;
mod memory;
mod model;
mod peer;
mod projection;
mod rebuild;

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
    /// The servers the core, commands and projection suites run on (each with its raw
    /// baseline on the same servers); `all` runs those suites on every deployment.
    #[arg(long, value_enum, default_value = "r1")]
    deployment: deploy::Deployment,
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
    /// at concurrency 1/16/64/128.
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
    /// A view rebuilt over 1M events (BENCH_REBUILD_EVENTS) beside a raw ordered read of the
    /// same events: the backfill, the live consumer path, and the projector's rebuild.
    Rebuild,
    /// Resident memory of `factory up` idle and under 2000 HTTP connections, and of each
    /// service run alone.
    Memory,
    /// The factory beside cqrs-es + postgres-es on PostgreSQL (fsync on) in the same run; needs
    /// the peer benchmark built (`make bench-peer` builds it and runs this).
    Peer,
    /// Every suite in turn (not the peer); core, commands and projection on every deployment.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // BENCH_LOG=warn (any filter) shows what the services in the measured process log.
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let window = Duration::from_secs_f64(cli.seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.suite.unwrap_or(Suite::All) {
            Suite::Core => core::run(window, cli.deployment).await,
            Suite::Commands => commands::run(window, cli.deployment).await,
            Suite::Projection => projection::run(window, cli.deployment).await,
            Suite::Memory => memory::run(window).await,
            Suite::Rebuild => rebuild::run().await,
            Suite::Peer => peer::run(window).await,
            Suite::Http => http::run(window).await,
            Suite::Async => asynchronous::run(window).await,
            Suite::Failover => failover::run(window).await,
            Suite::Archive => archive::run(window).await,
            Suite::Consistency => consistency::run(window).await,
            Suite::All => {
                for deployment in deploy::Deployment::ALL {
                    core::run(window, deployment).await?;
                    commands::run(window, deployment).await?;
                    projection::run(window, deployment).await?;
                }
                http::run(window).await?;
                memory::run(window).await?;
                asynchronous::run(window).await?;
                failover::run(window).await?;
                consistency::run(window).await?;
                rebuild::run().await?;
                archive::run(window).await
            }
        }
    })
}
