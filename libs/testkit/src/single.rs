//! One nats-server with JetStream, on free ports, in a temporary directory.

use std::path::Path;

use crate::server::{ServerConfig, ServerError, ServerProcess, find_server_binary};
use tempfile::TempDir;

use crate::READY_WITHIN;

/// A running nats-server for one test. Killed and its store removed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    process: ServerProcess,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server, panicking with the reason (binary missing, server log) if it cannot.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("cannot start a test nats-server: {e}"),
        }
    }

    /// Starts a server. Retries once on a port race.
    ///
    /// # Errors
    /// [`ServerError`] when no binary is usable or the server does not come up.
    pub fn try_start() -> Result<Self, ServerError> {
        Self::try_start_with(|_| {})
    }

    /// Starts a server whose configuration `tune` may extend (accounts, environment).
    pub fn start_with(tune: impl Fn(&mut ServerConfig)) -> Self {
        match Self::try_start_with(tune) {
            Ok(server) => server,
            Err(e) => panic!("cannot start a test nats-server: {e}"),
        }
    }

    /// Starts a server whose configuration `tune` may extend. Retries on a port race.
    ///
    /// # Errors
    /// [`ServerError`] when no binary is usable or the server does not come up.
    pub fn try_start_with(tune: impl Fn(&mut ServerConfig)) -> Result<Self, ServerError> {
        let binary = find_server_binary()?;
        let mut last = None;
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("jetsource-nats-").tempdir()?;
            let mut config = ServerConfig::single("test", dir.path())?;
            tune(&mut config);
            match ServerProcess::start(&binary, config, READY_WITHIN) {
                Ok(process) => return Ok(Self { process, dir }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ServerError::NotFound))
    }

    /// The client URL (`nats://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.process.url()
    }

    /// The monitoring port (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_port(&self) -> u16 {
        self.process.config().monitor_port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The temporary directory holding the store, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (as a crash would), keeping its store.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port and store.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        if let Err(e) = self.process.restart(READY_WITHIN) {
            panic!("test nats-server did not restart: {e}");
        }
    }
}
