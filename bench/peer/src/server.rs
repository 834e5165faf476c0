//! A throwaway PostgreSQL server: found on disk, `initdb` into a fresh temp dir, `postgres` on a
//! free loopback port with every commit fsync'd, stopped (SIGTERM, then waited for) and its dir
//! removed when the guard drops, on success and on error alike.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File};
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The tables postgres-es reads and writes, as its `db/init.sql` creates them (the view table and
/// the test rows of that file are left out: this workload has no query side).
const SCHEMA: [&str; 2] = [
    "CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
)",
    "CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
)",
];

/// The settings that make each commit durable before it is acknowledged (PostgreSQL's defaults,
/// stated so that no postgresql.conf can weaken them), and that keep the server on loopback.
const DURABILITY: [(&str, &str); 3] = [("fsync", "on"), ("synchronous_commit", "on"), ("full_page_writes", "on")];

/// A PostgreSQL installation: its bin dir, and the library dirs unpacked beside it (empty for a
/// system install).
#[derive(Debug)]
pub struct Install {
    pub bin: PathBuf,
    pub library_path: Vec<PathBuf>,
}

impl Install {
    /// The installation under `dir` if given (an unpacked tree such as `.tools/postgres`, a prefix
    /// such as `/usr`, `/usr/lib/postgresql/15` or a bin dir), else `<repo>/.tools/postgres` found
    /// above the binary or the current dir, else a system install under /usr/lib/postgresql.
    pub fn find(dir: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(dir) = dir {
            let bin = bin_dir_under(dir)?.with_context(|| {
                format!("no PostgreSQL server under {} (expected usr/lib/postgresql/*/bin/postgres)", dir.display())
            })?;
            return Self::at(bin);
        }
        let mut starts = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            starts.push(exe);
        }
        if let Ok(cwd) = std::env::current_dir() {
            starts.push(cwd);
        }
        for start in &starts {
            for ancestor in start.ancestors() {
                let tools = ancestor.join(".tools/postgres");
                if tools.is_dir()
                    && let Some(bin) = bin_dir_under(&tools)?
                {
                    return Self::at(bin);
                }
            }
        }
        if let Some(bin) = bin_dir_under(Path::new("/usr"))? {
            return Self::at(bin);
        }
        bail!(
            "no PostgreSQL server found: run bench/peer/postgres.sh (unpacks Debian's postgresql-15 into \
             <repo>/.tools/postgres), install postgresql-15, or pass --postgres-dir"
        )
    }

    /// The installation whose bin dir is `bin`; an unpacked tree (`<root>/usr/lib/postgresql/<v>/bin`
    /// with `<root>` not `/`) contributes its `usr/lib/<triplet>` and `lib/<triplet>` dirs.
    fn at(bin: PathBuf) -> anyhow::Result<Self> {
        let bin = bin.canonicalize().with_context(|| format!("resolving {}", bin.display()))?;
        let mut library_path = Vec::new();
        let root =
            bin.ancestors().nth(4).filter(|root| bin.strip_prefix(root).is_ok_and(|rest| rest.starts_with("usr/lib")));
        if let Some(root) = root.filter(|root| *root != Path::new("/")) {
            for lib in [root.join("usr/lib"), root.join("lib")] {
                let Ok(entries) = fs::read_dir(&lib) else { continue };
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().ends_with("-linux-gnu") && entry.path().is_dir() {
                        library_path.push(entry.path());
                    }
                }
            }
        }
        Ok(Self { bin, library_path })
    }

    fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// The bin dir of the newest server under `dir`: `dir` itself, `dir/bin`,
/// `dir/lib/postgresql/*/bin` or `dir/usr/lib/postgresql/*/bin`.
fn bin_dir_under(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    for bin in [dir.to_path_buf(), dir.join("bin")] {
        if bin.join("postgres").is_file() && bin.join("initdb").is_file() {
            return Ok(Some(bin));
        }
    }
    for versions in [dir.join("lib/postgresql"), dir.join("usr/lib/postgresql")] {
        let entries = match fs::read_dir(&versions) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", versions.display())),
        };
        let mut found: Vec<(Vec<u64>, PathBuf)> = entries
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("postgres").is_file() && bin.join("initdb").is_file())
            .map(|bin| (version_key(&bin), bin))
            .collect();
        found.sort();
        if let Some((_, bin)) = found.pop() {
            return Ok(Some(bin));
        }
    }
    Ok(None)
}

/// `.../postgresql/15/bin` → `[15]`, for picking the newest.
fn version_key(bin: &Path) -> Vec<u64> {
    let name = bin.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.split('.').filter_map(|part| part.parse().ok()).collect()
}

/// Who runs initdb and postgres: this process, or (when it is root, which PostgreSQL refuses)
/// an unprivileged user through `setpriv`.
#[derive(Debug, Clone)]
enum RunAs {
    Me,
    User { name: String, uid: u32, gid: u32 },
}

impl RunAs {
    fn choose(server_user: &str) -> anyhow::Result<Self> {
        if !geteuid().is_root() {
            return Ok(Self::Me);
        }
        let user = User::from_name(server_user)
            .with_context(|| format!("looking up user {server_user}"))?
            .with_context(|| format!("running as root, and there is no user {server_user} to run PostgreSQL as"))?;
        ensure!(!user.uid.is_root(), "--server-user {server_user} is root; PostgreSQL refuses to run as root");
        Ok(Self::User { name: server_user.to_owned(), uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// A command running `program` as this user, with `library_path` prepended to LD_LIBRARY_PATH.
    fn command(&self, program: &Path, library_path: &[PathBuf]) -> anyhow::Result<Command> {
        let mut command = match self {
            Self::Me => Command::new(program),
            Self::User { uid, gid, .. } => {
                // setpriv execs the program (no fork), so the child's PID is the server's.
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                command
            }
        };
        if !library_path.is_empty() {
            let mut paths: Vec<PathBuf> = library_path.to_vec();
            if let Some(existing) = std::env::var_os("LD_LIBRARY_PATH") {
                paths.extend(std::env::split_paths(&existing));
            }
            let joined: OsString = std::env::join_paths(paths).context("joining LD_LIBRARY_PATH")?;
            command.env("LD_LIBRARY_PATH", joined);
        }
        Ok(command)
    }

    /// Gives `path` to this user.
    fn own(&self, path: &Path) -> anyhow::Result<()> {
        if let Self::User { uid, gid, name } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .with_context(|| format!("giving {} to {name}", path.display()))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match self {
            Self::Me => "this user".to_owned(),
            Self::User { name, .. } => format!("user {name} (this process is root)"),
        }
    }
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> anyhow::Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let path = parent.join(format!("jetsource-peer-{}-{nanos}", std::process::id()));
        DirBuilder::new().mode(0o755).create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

/// A running server; dropping it stops the server and removes its data.
pub struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    // Dropped after `Drop::drop` has stopped the server.
    _dir: TempDir,
}

impl Server {
    /// `initdb` into a fresh dir under `parent`, then `postgres` on a free 127.0.0.1 port; ready
    /// (accepting connections, durability checked, postgres-es's tables created) on return.
    pub async fn start(
        install: &Install,
        parent: &Path,
        server_user: &str,
        max_connections: usize,
    ) -> anyhow::Result<Self> {
        let run_as = RunAs::choose(server_user)?;
        let dir = TempDir::new(parent)?;
        let data = dir.0.join("data");
        let socket = dir.0.join("socket");
        for (path, mode) in [(&data, 0o700), (&socket, 0o755)] {
            DirBuilder::new().mode(mode).create(path).with_context(|| format!("creating {}", path.display()))?;
            run_as.own(path)?;
        }

        // initdb --no-sync only skips flushing the freshly made cluster; the server's own writes
        // (the benchmark's commits) are fsync'd per the settings below.
        let mut initdb = run_as.command(&install.program("initdb"), &install.library_path)?;
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .current_dir(&dir.0)
            .stdin(Stdio::null());
        let output = tokio::task::spawn_blocking(move || initdb.output())
            .await
            .context("waiting for initdb")?
            .with_context(|| format!("running {}", install.program("initdb").display()))?;
        if !output.status.success() {
            bail!(
                "initdb as {} failed ({}): {}{}{}",
                run_as.describe(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                access_hint(&run_as, &install.bin),
            );
        }

        let port = free_port()?;
        let log = dir.0.join("postgres.log");
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let log_err = log_file.try_clone().context("duplicating the log file handle")?;
        let mut postgres = run_as.command(&install.program("postgres"), &install.library_path)?;
        postgres.arg("-D").arg(&data).arg("-p").arg(port.to_string());
        let mut settings: Vec<(String, String)> =
            DURABILITY.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        settings.extend([
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            ("unix_socket_directories".to_owned(), socket.to_string_lossy().into_owned()),
            ("max_connections".to_owned(), max_connections.to_string()),
            ("timezone".to_owned(), "UTC".to_owned()),
            ("log_timezone".to_owned(), "UTC".to_owned()),
        ]);
        for (key, value) in &settings {
            postgres.arg("-c").arg(format!("{key}={value}"));
        }
        postgres.current_dir(&dir.0).stdin(Stdio::null()).stdout(log_file).stderr(log_err);
        let child = postgres.spawn().with_context(|| format!("starting {}", install.program("postgres").display()))?;
        let mut server = Self { child, port, log, _dir: dir };
        server.ready(&run_as, install).await?;
        Ok(server)
    }

    /// Options for connecting to it over TCP on loopback, as the superuser.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().host("127.0.0.1").port(self.port).username("postgres").database("postgres")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits (30 s at most) until it accepts connections, checks the durability settings in
    /// force and creates the tables.
    async fn ready(&mut self, run_as: &RunAs, install: &Install) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut connection = loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "postgres as {} exited during start-up ({status}); its log:\n{}{}",
                    run_as.describe(),
                    self.log_tail(),
                    access_hint(run_as, &install.bin),
                );
            }
            match PgConnection::connect_with(&self.connect_options()).await {
                Ok(connection) => break connection,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| {
                        format!(
                            "postgres did not accept connections on port {} in 30 s; log:\n{}",
                            self.port,
                            self.log_tail()
                        )
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        for (key, expected) in DURABILITY {
            let (value,): (String,) = sqlx::query_as(&format!("SHOW {key}"))
                .fetch_one(&mut connection)
                .await
                .with_context(|| format!("SHOW {key}"))?;
            ensure!(value == expected, "the server runs with {key}={value}, not {expected}");
        }
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut connection).await.context("creating postgres-es's tables")?;
        }
        connection.close().await.context("closing the set-up connection")?;
        Ok(())
    }

    /// The server's version, e.g. `PostgreSQL 15.18 (Debian 15.18-0+deb12u1)` (`SELECT version()`
    /// up to its build details).
    pub async fn version(&self) -> anyhow::Result<String> {
        let mut connection = PgConnection::connect_with(&self.connect_options()).await.context("connecting")?;
        let (version,): (String,) =
            sqlx::query_as("SELECT version()").fetch_one(&mut connection).await.context("SELECT version()")?;
        connection.close().await.context("closing the connection")?;
        Ok(version.split(" on ").next().unwrap_or(&version).to_owned())
    }

    fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait().context("checking on postgres")
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        match fs::read_to_string(&self.log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            }
            Err(e) => format!("(could not read {}: {e})", self.log.display()),
        }
    }

    /// SIGTERM (smart shutdown: waits for sessions to end), then SIGINT (fast: ends them) after
    /// 5 s, then SIGKILL after 10 s more; waits for the process each time.
    fn stop(&mut self) {
        let Ok(raw) = i32::try_from(self.child.id()) else { return };
        let pid = Pid::from_raw(raw);
        for (signal, wait) in [(Signal::SIGTERM, 5), (Signal::SIGINT, 10), (Signal::SIGKILL, 10)] {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {}
            }
            if kill(pid, signal).is_err() {
                break;
            }
            let deadline = Instant::now() + Duration::from_secs(wait);
            while Instant::now() < deadline {
                match self.child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            eprintln!("warning: postgres (pid {raw}) still running {wait} s after {signal}");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free on 127.0.0.1 (bound to port 0, then released).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr().context("reading the bound address")?.port())
}

/// When another user runs the server, it must be able to reach the binaries.
fn access_hint(run_as: &RunAs, bin: &Path) -> String {
    match run_as {
        RunAs::Me => String::new(),
        RunAs::User { name, .. } => format!(
            "\n(hint: as root this runs PostgreSQL as {name}, who must be able to read and execute {} and every \
             directory above it; choose another with --server-user)",
            bin.display()
        ),
    }
}
