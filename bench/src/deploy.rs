//! The server configurations a figure is measured on: one node or a 3-node loopback cluster,
//! with JetStream's default fsync or with every write fsync'd before it is acknowledged. Each
//! suite that takes a [`Deployment`] measures its raw baseline on the same one.

use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource_testkit::{NatsCluster, NatsServer};

/// Where the streams live, and what an acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Deployment {
    /// One server, R1 streams, JetStream's default `sync_interval` (2 minutes).
    R1,
    /// One server, R1 streams, `sync_interval: always`.
    R1Sync,
    /// A 3-node loopback cluster, R3 streams, default `sync_interval`.
    R3,
    /// A 3-node loopback cluster, R3 streams, `sync_interval: always` on every node.
    R3Sync,
}

impl Deployment {
    /// Every configuration, in the order `make bench` runs them.
    pub const ALL: [Self; 4] = [Self::R1, Self::R1Sync, Self::R3, Self::R3Sync];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::R1 => "R1",
            Self::R1Sync => "R1, fsync always",
            Self::R3 => "R3",
            Self::R3Sync => "R3, fsync always",
        }
    }

    /// What an acknowledged write survives in this configuration.
    pub fn promise(self) -> &'static str {
        match self {
            Self::R1 => "in one server's memory (on disk within 2 min): survives a process crash, not a power loss",
            Self::R1Sync => "on one server's disk: survives a power loss, not the loss of that disk",
            Self::R3 => "in the memory of 2 of 3 servers: survives the loss of any one server",
            Self::R3Sync => "on the disks of 2 of 3 servers: survives a power loss and the loss of any one server",
        }
    }

    /// Replicas of every stream, bucket and consumer.
    pub fn replicas(self) -> usize {
        match self {
            Self::R1 | Self::R1Sync => 1,
            Self::R3 | Self::R3Sync => 3,
        }
    }

    /// Provisions `topology` with this configuration's replicas. A cluster just started may
    /// not answer a JetStream request in time while it settles: provisioning is idempotent, so
    /// it is tried again (five times, a second apart).
    ///
    /// # Errors
    /// The last refusal.
    pub async fn provision(self, js: &async_nats::jetstream::Context, topology: &Topology) -> anyhow::Result<()> {
        let options = ProvisionOptions { replicas: Some(self.replicas()), ..Default::default() };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match provision(js, topology, options).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 5 => {
                    eprintln!("provisioning on {} failed ({e}); trying again", self.name());
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A fresh event store for the next figure: the event stream and its archive, the
    /// snapshots and the idempotency ledger deleted, then the topology provisioned again. The
    /// archive goes too: its sourcing would otherwise wait behind the deleted stream's last
    /// sequence, and the figures after the first would not pay for the copy the first paid for.
    ///
    /// # Errors
    /// A stream that cannot be deleted, or provisioning's last refusal.
    pub async fn fresh_store(self, js: &async_nats::jetstream::Context, topology: &Topology) -> anyhow::Result<()> {
        let (events, archive) = match &topology.archive {
            Some(tier) => (tier.events.as_str(), Some(tier.stream.as_str())),
            None => ("EVENTS", None),
        };
        js.delete_stream(events).await?;
        if let Some(archive) = archive {
            js.delete_stream(archive).await?;
        }
        // Buckets a suite did not use may not exist yet.
        let _ = js.delete_key_value("snapshots").await;
        let _ = js.delete_key_value("idempotency").await;
        self.provision(js, topology).await
    }

    fn sync(self) -> Option<String> {
        matches!(self, Self::R1Sync | Self::R3Sync).then(|| "always".to_owned())
    }

    /// Starts the servers (the pinned nats-server, free ports, temporary stores).
    ///
    /// # Errors
    /// When a server does not come up.
    pub fn start(self) -> anyhow::Result<Servers> {
        let sync = self.sync();
        Ok(match self.replicas() {
            1 => Servers::One(Box::new(NatsServer::try_start_with(|c| c.sync_interval.clone_from(&sync))?)),
            n => Servers::Cluster(NatsCluster::try_start_with(n, |c| c.sync_interval.clone_from(&sync))?),
        })
    }
}

/// The running servers of a [`Deployment`]; stopped when dropped.
pub enum Servers {
    One(Box<NatsServer>),
    Cluster(NatsCluster),
}

impl Servers {
    /// The URL to connect to (every node of a cluster).
    pub fn url(&self) -> String {
        match self {
            Self::One(server) => server.url(),
            Self::Cluster(cluster) => cluster.urls(),
        }
    }

    /// Process ids of the servers.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Self::One(server) => server.pid().into_iter().collect(),
            Self::Cluster(cluster) => cluster.pids(),
        }
    }
}
