//! The factory beside a peer stack measured in the same run: cqrs-es with postgres-es on a
//! PostgreSQL server started for the run with every commit fsync'd (`bench/peer`, its own
//! crate outside the workspace: `make bench-peer` builds it and runs this suite). Our figures
//! are the command suite's, on R1 with every write fsync'd (equal durability: on one server's
//! disk), and on R1 and R3 with JetStream's defaults for what they promise instead.

use std::time::Duration;

use serde::Deserialize;

use crate::deploy::Deployment;
use crate::measure::header;

const CONCURRENCY: [usize; 3] = [1, 16, 64];

#[derive(Debug, Deserialize)]
struct PeerReport {
    peer: String,
    postgres: String,
    durability: String,
    rates: Vec<PeerRate>,
}

#[derive(Debug, Deserialize)]
struct PeerRate {
    concurrency: usize,
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
}

pub async fn run(window: Duration) -> anyhow::Result<()> {
    let exe = std::env::var("BENCH_PEER_BIN").unwrap_or_else(|_| "target/peer/release/jetsource-peer-bench".into());
    anyhow::ensure!(
        std::path::Path::new(&exe).exists(),
        "the peer benchmark {exe} is not built: `make bench-peer` builds it (or set BENCH_PEER_BIN)"
    );
    let levels = CONCURRENCY.map(|c| c.to_string()).join(",");
    let output = tokio::process::Command::new(&exe)
        .args(["--seconds", &window.as_secs_f64().to_string(), "--concurrency", &levels])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "the peer benchmark failed ({})", output.status);
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    let peer: PeerReport = serde_json::from_str(last)
        .map_err(|e| anyhow::anyhow!("the peer benchmark's report is not what this suite reads: {e}: {last}"))?;

    let mut ours = Vec::new();
    for deployment in [Deployment::R1Sync, Deployment::R1, Deployment::R3Sync] {
        ours.push((deployment, crate::commands::factory_rates(window, deployment, &CONCURRENCY).await?));
    }
    println!(
        "# Peer benchmark\n\n{} on {} ({}), beside the factory's commands over NATS",
        peer.peer, peer.postgres, peer.durability
    );
    header("Commands/s: one `receive` per worker's own aggregate, one at a time, same machine, same run");
    println!(
        "| concurrency | peer/s (p50/p99 µs) | factory, R1 fsync always/s (p50/p99 µs) | ÷ peer, equal durability | factory, R1/s | ÷ peer | factory, R3 fsync always/s | ÷ peer |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, &c) in CONCURRENCY.iter().enumerate() {
        let Some(theirs) = peer.rates.iter().find(|r| r.concurrency == c) else { continue };
        let [(_, sync), (_, plain), (_, r3)] = &ours[..] else { unreachable!("three deployments") };
        println!(
            "| {c} | {:.0} ({}/{}) | {:.0} ({}/{}) | {:.1}× | {:.0} | {:.1}× | {:.0} | {:.1}× |",
            theirs.per_second,
            theirs.p50_us,
            theirs.p99_us,
            sync[i].per_second,
            sync[i].p50_us,
            sync[i].p99_us,
            sync[i].per_second / theirs.per_second,
            plain[i].per_second,
            plain[i].per_second / theirs.per_second,
            r3[i].per_second,
            r3[i].per_second / theirs.per_second,
        );
    }
    for (deployment, _) in &ours {
        println!("\n{}: acknowledged = {}", deployment.name(), deployment.promise());
    }
    println!("\npeer ({}): a command returns after its transaction's commit is flushed to disk", peer.durability);
    Ok(())
}
