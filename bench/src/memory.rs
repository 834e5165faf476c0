//! Resident memory: `factory up` idle and at the highest load the benchmarks drive (2000 HTTP
//! connections without backoff), and each service run alone (`factory run <service>`) beside
//! the nats-server it uses.

use std::time::{Duration, Instant};

use jetsource_testkit::NatsServer;

use crate::measure::{FactoryUp, header, rss_mib};

pub async fn run(window: Duration) -> anyhow::Result<()> {
    println!("# Memory benchmark\n\nResident set size (VmRSS) of the release binaries, MiB");
    header("`factory up` (every service and the gateway in one process, its managed nats-server beside it)");
    let Some(up) = FactoryUp::start().await? else { return Ok(()) };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = up.child.id();
    println!("| state | factory RSS MiB | nats-server RSS MiB |\n|---|---:|---:|");
    println!("| idle (ready, 3 s after start) | {:.1} | {:.1} |", rss_mib(pid)?, children_rss(pid)?);
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", up.http).parse()?;
    let sampler = tokio::spawn(peak_rss(pid, window + Duration::from_secs(1)));
    let load = crate::http::flood(http, 2000, window).await?;
    let (peak, peak_server) = sampler.await??;
    println!(
        "| 2000 HTTP connections without backoff ({:.0} commands/s answered 200), peak | {peak:.1} | {peak_server:.1} |",
        load.ok_per_second
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("| 3 s after that load | {:.1} | {:.1} |", rss_mib(pid)?, children_rss(pid)?);
    drop(up);
    alone().await
}

/// Each service in its own `factory run` process against one nats-server, ready and idle.
async fn alone() -> anyhow::Result<()> {
    header("Each service alone (`factory run <service>`, ready, 2 s after start)");
    let exe = std::env::current_exe()?.with_file_name("factory");
    let server = NatsServer::try_start()?;
    println!("| service | RSS MiB |\n|---|---:|");
    for service in factory::app::all_services() {
        let port = jetsource_testkit::server::free_port()?;
        let mut child = std::process::Command::new(&exe)
            .args(["run", service, "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = loop {
            if jetsource_testkit::server::http_status(port, "/readyz") == Some(200) {
                break true;
            }
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if ready {
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("| {service} | {:.1} |", rss_mib(child.id())?);
        } else {
            println!("| {service} | did not become ready |");
        }
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
    let server_rss = server.pid().map(rss_mib).transpose()?.unwrap_or(0.0);
    println!("| (the nats-server all of them used, at the end) | {server_rss:.1} |");
    Ok(())
}

/// The largest RSS of `pid` and of its child processes seen while sampling every 100 ms.
async fn peak_rss(pid: u32, within: Duration) -> anyhow::Result<(f64, f64)> {
    let deadline = Instant::now() + within;
    let (mut peak, mut peak_children) = (0.0_f64, 0.0_f64);
    while Instant::now() < deadline {
        peak = peak.max(rss_mib(pid)?);
        peak_children = peak_children.max(children_rss(pid)?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((peak, peak_children))
}

/// Summed RSS of the direct children of `pid` (the managed nats-server).
fn children_rss(pid: u32) -> anyhow::Result<f64> {
    std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/status")).is_ok_and(|s| s.contains(&format!("PPid:\t{pid}")))
        })
        .map(rss_mib)
        .sum()
}
