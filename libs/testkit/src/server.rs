//! A local nats-server under our control: found the way `docs/contracts/cli.md` says (`$NATS_SERVER_BIN`,
//! the pinned `.tools/bin/nats-server`, then `PATH`), started with JetStream, waited for, and
//! stopped. An application's `up` command uses it for its managed server; the testkit for test
//! servers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use jetsource::connect::check_server_version;

/// Why a local server could not be used.
#[derive(Debug, Error)]
pub enum ServerError {
    /// No binary was found.
    #[error(
        "no nats-server found: set NATS_SERVER_BIN, or install the pinned one with \
         `nats/install-server.sh` (make up and make test do it for you)"
    )]
    NotFound,
    /// The binary is too old or did not say its version.
    #[error("{binary}: {reason}")]
    Unusable {
        /// The binary tried.
        binary: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Starting or talking to the process failed.
    #[error("nats-server: {0}")]
    Io(#[from] std::io::Error),
    /// The server exited or did not become ready.
    #[error("nats-server did not become ready: {reason}\n--- last lines of its log ---\n{log}")]
    NotReady {
        /// What was seen.
        reason: String,
        /// The end of its log.
        log: String,
    },
}

/// Finds a usable nats-server binary (≥ 2.12).
///
/// # Errors
/// [`ServerError::NotFound`] or [`ServerError::Unusable`] naming the version found.
pub fn find_server_binary() -> Result<PathBuf, ServerError> {
    let candidate = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(pinned_binary)
        .or_else(|| on_path("nats-server"))
        .ok_or(ServerError::NotFound)?;
    check_binary(&candidate)?;
    Ok(candidate)
}

/// `.tools/bin/nats-server` in the current directory or one of its ancestors, or next to the
/// workspace this crate was built in.
fn pinned_binary() -> Option<PathBuf> {
    let from_cwd =
        std::env::current_dir().ok().into_iter().flat_map(|d| d.ancestors().map(Path::to_path_buf).collect::<Vec<_>>());
    let from_build = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(Path::to_path_buf).collect::<Vec<_>>();
    from_cwd.chain(from_build).map(|dir| dir.join(".tools/bin/nats-server")).find(|p| p.is_file())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).collect::<Vec<_>>())
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

fn check_binary(binary: &Path) -> Result<(), ServerError> {
    let unusable = |reason: String| ServerError::Unusable { binary: binary.display().to_string(), reason };
    let output = Command::new(binary).arg("--version").output().map_err(|e| unusable(e.to_string()))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let version = text.rsplit(' ').next().unwrap_or_default().trim_start_matches('v');
    check_server_version(&binary.display().to_string(), version).map_err(|e| unusable(e.to_string()))
}

/// A free TCP port on the loopback interface (the OS picks; a tiny race with other processes
/// remains, which a failed start reports clearly).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Cluster settings of one node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Cluster name shared by all nodes.
    pub name: String,
    /// This node's route port.
    pub port: u16,
    /// Route ports of every node (this one's included, which the server ignores).
    pub routes: Vec<u16>,
}

/// How to run one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Server name (unique in a cluster).
    pub name: String,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// Monitoring port on 127.0.0.1 (`/healthz`, `/varz`, `/jsz`).
    pub monitor_port: u16,
    /// JetStream store directory.
    pub store_dir: PathBuf,
    /// Where the config and log files go.
    pub work_dir: PathBuf,
    /// Cluster settings, if clustered.
    pub cluster: Option<ClusterConfig>,
    /// Upper bound on file storage.
    pub max_file_store: String,
    /// JetStream's `sync_interval`: how often the store is fsync'd (`None`: the server's default,
    /// every 2 minutes; `"always"`: every write before it is acknowledged).
    pub sync_interval: Option<String>,
    /// More configuration appended as is (`include "/abs/accounts.conf"`).
    pub extra: String,
    /// Environment of the server process (variables the configuration refers to).
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    /// A single node on free ports, keeping its files under `dir`.
    ///
    /// # Errors
    /// When no free port can be found.
    pub fn single(name: &str, dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            port: free_port()?,
            monitor_port: free_port()?,
            store_dir: dir.join("jetstream"),
            work_dir: dir.to_path_buf(),
            cluster: None,
            max_file_store: "4G".into(),
            sync_interval: None,
            extra: String::new(),
            env: Vec::new(),
        })
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server configuration. `max_payload` is 4 MB so that an oversized command (the
    /// services accept 256 KiB) still reaches its service and is answered `invalid`, rather
    /// than being refused by the client library or the server.
    fn render(&self) -> String {
        let sync = self.sync_interval.as_ref().map(|s| format!("  sync_interval: {s}\n")).unwrap_or_default();
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{mon}\nmax_payload: 4MB\n\
             jetstream {{\n  store_dir: {dir:?}\n  max_memory_store: 256MB\n  max_file_store: {file}\n{sync}}}\n",
            name = self.name,
            port = self.port,
            mon = self.monitor_port,
            dir = self.store_dir.display().to_string(),
            file = self.max_file_store,
        );
        if let Some(cluster) = &self.cluster {
            let routes: Vec<String> = cluster.routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
            conf.push_str(&format!(
                "cluster {{\n  name: {}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                cluster.name,
                cluster.port,
                routes.join(", ")
            ));
        }
        if !self.extra.is_empty() {
            conf.push_str(&self.extra);
            conf.push('\n');
        }
        conf
    }

    fn log_file(&self) -> PathBuf {
        self.work_dir.join(format!("{}.log", self.name))
    }
}

/// A running nats-server process. Killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    binary: PathBuf,
    config: ServerConfig,
}

impl ServerProcess {
    /// Starts a server with `config` and waits until it reports healthy.
    ///
    /// # Errors
    /// [`ServerError`] with the end of the server's log when it does not come up.
    pub fn start(binary: &Path, config: ServerConfig, ready_within: Duration) -> Result<Self, ServerError> {
        let mut process = Self::launch(binary, config)?;
        process.wait_ready(ready_within)?;
        Ok(process)
    }

    /// Starts a server without waiting for it (cluster nodes are healthy only once a quorum
    /// runs, so all are launched before any is waited for).
    ///
    /// # Errors
    /// [`ServerError::Io`] when the process cannot be spawned.
    pub fn launch(binary: &Path, config: ServerConfig) -> Result<Self, ServerError> {
        let mut process = Self { child: None, binary: binary.to_path_buf(), config };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        std::fs::create_dir_all(&self.config.work_dir)?;
        std::fs::create_dir_all(&self.config.store_dir)?;
        let conf_path = self.config.work_dir.join(format!("{}.conf", self.config.name));
        std::fs::write(&conf_path, self.config.render())?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.config.log_file())?;
        let child = Command::new(&self.binary)
            .envs(self.config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `/healthz` answers 200 (JetStream ready; in a cluster, a meta leader known).
    ///
    /// # Errors
    /// [`ServerError::NotReady`] when the process exits or the deadline passes.
    pub fn wait_ready(&mut self, within: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(self.not_ready(format!("exited with {status}")));
            }
            if http_status(self.config.monitor_port, "/healthz").is_some_and(|s| s == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!("no healthy /healthz within {within:?}")));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn not_ready(&self, reason: String) -> ServerError {
        let log = std::fs::read_to_string(self.config.log_file()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        ServerError::NotReady { reason, log: tail.into_iter().rev().collect::<Vec<_>>().join("\n") }
    }

    /// Kills the process at once (a crash, as far as the server can tell).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the server to shut down cleanly (`--signal term`) and waits for it, killing it
    /// after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("term={}", child.id()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the process again with the same config, ports and store.
    ///
    /// # Errors
    /// As [`ServerProcess::start`].
    pub fn restart(&mut self, ready_within: Duration) -> Result<(), ServerError> {
        self.kill();
        self.spawn()?;
        self.wait_ready(ready_within)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The client URL.
    pub fn url(&self) -> String {
        self.config.url()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `path` on the monitoring port; the body, if it answered 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1)? == "200").then(|| body.to_owned())
}

/// GET `path` on the monitoring port; the HTTP status, if anything answered.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0_u8; 16];
    let n = stream.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}
