//! A 3-node JetStream cluster on loopback, for R3 streams and fault tests.

use crate::server::{ClusterConfig, ServerConfig, ServerError, ServerProcess, find_server_binary, free_port};
use tempfile::TempDir;

use crate::READY_WITHIN;

/// Three nats-servers routed to each other. Every node is killed and the stores removed on
/// drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<ServerProcess>,
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts a 3-node cluster and waits until every node is healthy (meta leader elected).
    ///
    /// # Panics
    /// With the server log when a node does not come up.
    pub fn start() -> Self {
        match Self::try_start(3) {
            Ok(cluster) => cluster,
            Err(e) => panic!("cannot start a test nats cluster: {e}"),
        }
    }

    /// Starts a cluster of `size` nodes. Retries with fresh ports when a node does not come up:
    /// a port chosen free may be taken by another test before the node binds it.
    ///
    /// # Errors
    /// [`ServerError`] when a node does not come up in three attempts.
    pub fn try_start(size: usize) -> Result<Self, ServerError> {
        Self::try_start_with(size, |_| {})
    }

    /// Starts a cluster of `size` nodes whose configurations `tune` may change (each node's in
    /// turn: `sync_interval`, say). Retries with fresh ports as [`Self::try_start`] does.
    ///
    /// # Errors
    /// [`ServerError`] when a node does not come up in three attempts.
    pub fn try_start_with(size: usize, tune: impl Fn(&mut ServerConfig)) -> Result<Self, ServerError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start_once(size, &tune) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ServerError::NotFound))
    }

    fn try_start_once(size: usize, tune: &impl Fn(&mut ServerConfig)) -> Result<Self, ServerError> {
        let binary = find_server_binary()?;
        let dir = tempfile::Builder::new().prefix("jetsource-cluster-").tempdir()?;
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, &route) in routes.iter().enumerate() {
            let node_dir = dir.path().join(format!("n{i}"));
            let mut config = ServerConfig {
                name: format!("n{i}"),
                port: free_port()?,
                monitor_port: free_port()?,
                store_dir: node_dir.join("jetstream"),
                work_dir: node_dir,
                cluster: Some(ClusterConfig { name: "jetsource-test".into(), port: route, routes: routes.clone() }),
                max_file_store: "2G".into(),
                sync_interval: None,
                extra: String::new(),
                env: Vec::new(),
            };
            tune(&mut config);
            // Launch all before waiting on any: a node is healthy only once it sees a quorum.
            nodes.push(ServerProcess::launch(&binary, config)?);
        }
        for node in &mut nodes {
            node.wait_ready(READY_WITHIN)?;
        }
        Ok(Self { nodes, _dir: dir })
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(ServerProcess::pid).collect()
    }

    /// Client URLs of all nodes, comma-separated, as `async_nats::connect` accepts them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(ServerProcess::url).collect::<Vec<_>>().join(",")
    }

    /// Client URL of node `i`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Monitoring port of node `i` (`/jsz`, `/healthz`).
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.nodes[i].config().monitor_port
    }

    /// Stream `stream` as node `i` holds it (its `/jsz` stream detail: `state`, `cluster`),
    /// if the node answers and holds it.
    pub fn stream_on(&self, i: usize, stream: &str) -> Option<serde_json::Value> {
        let body = crate::server::http_get(self.monitor_port(i), "/jsz?accounts=true&streams=true")?;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .find_map(|account| account["stream_detail"].as_array()?.iter().find(|s| s["name"] == stream).cloned())
    }

    /// Index of the node named `name` (`n0`, `n1`, ...), as stream and consumer infos name
    /// their leaders.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.config().name == name)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a cluster of no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Kills node `i` (a crash), keeping its store.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Restarts node `i` on the same ports and store and waits until it is healthy again.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart_node(&mut self, i: usize) {
        if let Err(e) = self.nodes[i].restart(READY_WITHIN) {
            panic!("cluster node n{i} did not restart: {e}");
        }
    }
}
