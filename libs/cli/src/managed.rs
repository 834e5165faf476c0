//! The managed nats-server of an application's `up`: the pinned binary, JetStream on, its store under the
//! data directory (so events survive restarts), stopped when the process stops.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use jetsource_testkit::server::{ServerConfig, ServerProcess, find_server_binary};

/// A nats-server this process started.
pub struct ManagedServer {
    process: ServerProcess,
    version: String,
}

impl ManagedServer {
    /// Starts the server on `port` (monitoring on `monitor_port`) with its files in `data_dir`.
    ///
    /// # Errors
    /// No usable binary (with how to install one), a port in use, or a server that does not
    /// come up (with the end of its log).
    pub fn start(name: &str, data_dir: &Path, port: u16, monitor_port: u16) -> anyhow::Result<Self> {
        let binary = find_server_binary()?;
        for (what, p) in [("client", port), ("monitoring", monitor_port)] {
            if TcpListener::bind(("127.0.0.1", p)).is_err() {
                bail!(
                    "port {p} (NATS {what}) is in use: is another `up` running? \
                     Stop it, pick other ports with --nats-port/--nats-monitor-port, or use a running server with --nats-url"
                );
            }
        }
        let dir = data_dir.join("nats");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let config = ServerConfig {
            name: name.into(),
            port,
            monitor_port,
            store_dir: dir.join("jetstream"),
            work_dir: dir.clone(),
            cluster: None,
            max_file_store: "10G".into(),
            sync_interval: None,
            extra: String::new(),
            env: Vec::new(),
        };
        let process = ServerProcess::start(&binary, config, Duration::from_secs(30))?;
        let version = std::process::Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("nats-server: ").to_owned())
            .unwrap_or_default();
        Ok(Self { process, version })
    }

    /// Client URL.
    pub fn url(&self) -> String {
        self.process.url()
    }

    /// Monitoring URL.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.config().monitor_port)
    }

    /// Server version (`v2.15.1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where JetStream keeps its files.
    pub fn store_dir(&self) -> &Path {
        &self.process.config().store_dir
    }

    /// Shuts the server down cleanly.
    pub fn stop(mut self) {
        self.process.stop(Duration::from_secs(10));
    }
}
