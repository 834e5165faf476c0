//! A small aggregate for the tests and a provisioned server per test.

use async_nats::Client;
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource::{
    Aggregate, AggregateId, Decision, DomainError, DomainEvent, EventStore, Repository, RepositoryConfig, Scope, Seen,
    SnapshotStore, StoreConfig, Tag, Upcasters,
};
use jetsource_testkit::{NatsCluster, NatsServer};
use serde::{Deserialize, Serialize};

/// The project's real topology declaration.
pub const TOPOLOGY: &str = include_str!("../../../../nats/topology.toml");

/// A bin of parts: received, taken, never below zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub on_hand: u64,
    pub receipts: u64,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BinEvent {
    /// v1 was `{"quantity": n}`; v2 is `{"qty": n, "source": s}`.
    Received {
        qty: u64,
        source: String,
    },
    Taken {
        qty: u64,
    },
    /// The bin took a label no other bin holds (tagged `label`).
    Labelled {
        label: String,
    },
    /// The bin was marked with several labels (tagged with each).
    Marked {
        labels: Vec<String>,
    },
}

impl DomainEvent for BinEvent {
    const SCHEMAS: &'static [(&'static str, u32)] = &[("Received", 2), ("Taken", 1), ("Labelled", 1), ("Marked", 1)];
    fn event_type(&self) -> &'static str {
        match self {
            BinEvent::Received { .. } => "Received",
            BinEvent::Taken { .. } => "Taken",
            BinEvent::Labelled { .. } => "Labelled",
            BinEvent::Marked { .. } => "Marked",
        }
    }
    fn upcasters() -> Upcasters {
        Upcasters::default().with("Received", 1, |v| {
            let qty = v.get("quantity").cloned().ok_or("v1 Received has no quantity")?;
            Ok(serde_json::json!({ "qty": qty, "source": "unknown" }))
        })
    }
}

#[derive(Debug, Clone)]
pub enum BinCommand {
    Receive {
        qty: u64,
    },
    /// Receives each quantity as its own event: one atomic batch.
    ReceiveMany(Vec<u64>),
    Take {
        qty: u64,
    },
    Touch,
    /// Moves `qty` to bin `to`: one command over two aggregates.
    Move {
        qty: u64,
        to: AggregateId,
    },
    /// Takes a label, on condition that no other bin took it (a conditional append).
    Label {
        label: AggregateId,
    },
    /// Marks the bin with `write` labels on condition that nothing was recorded under the
    /// `read` labels since they were read.
    Mark {
        read: Vec<AggregateId>,
        write: Vec<AggregateId>,
    },
    /// Decides on a label its scope does not name (a bug the framework refuses).
    Peek {
        label: AggregateId,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("only {available} on hand")]
    Insufficient { available: u64 },
    #[error("quantities must be positive")]
    Zero,
    #[error("label taken by {0}")]
    LabelTaken(String),
}

impl DomainError for BinError {
    fn reason(&self) -> &'static str {
        match self {
            BinError::Insufficient { .. } => "insufficient_stock",
            BinError::Zero => "invalid_quantity",
            BinError::LabelTaken(_) => "label_taken",
        }
    }
}

impl Aggregate for Bin {
    const TYPE: &'static str = "bin";
    type Command = BinCommand;
    type Event = BinEvent;
    type Error = BinError;
    const TAGS: &'static [&'static str] = &["label"];

    fn scope(_: &AggregateId, command: &BinCommand) -> Scope {
        match command {
            BinCommand::Move { to, .. } => Scope::default().aggregate(to.clone()),
            BinCommand::Label { label } => Scope::default().tag(Tag::new("label", label)),
            BinCommand::Mark { read, .. } => read.iter().fold(Scope::default(), |s, l| s.tag(Tag::new("label", l))),
            _ => Scope::default(),
        }
    }

    fn decide(&self, command: BinCommand, seen: &Seen<Self>) -> Result<Decision<BinEvent>, BinError> {
        match command {
            BinCommand::Move { qty, to } => {
                let taken = self.handle(BinCommand::Take { qty })?;
                Ok(Decision::own(taken).and(to, vec![BinEvent::Received { qty, source: "move".into() }]))
            }
            BinCommand::Label { label } => {
                let tag = Tag::new("label", &label);
                if let Some(holder) = seen.tagged(&tag).iter().find(|t| t.aggregate_id != *seen.id()) {
                    return Err(BinError::LabelTaken(holder.aggregate_id.to_string()));
                }
                Ok(Decision::own(vec![BinEvent::Labelled { label: label.to_string() }]))
            }
            BinCommand::Mark { write, .. } => {
                Ok(Decision::own(vec![BinEvent::Marked { labels: write.iter().map(ToString::to_string).collect() }]))
            }
            BinCommand::Peek { label } => {
                let _ = seen.tagged(&Tag::new("label", &label));
                Ok(Decision::own(vec![BinEvent::Labelled { label: label.to_string() }]))
            }
            other => self.handle(other).map(Decision::own),
        }
    }

    fn tags(&self, _: &AggregateId, event: &BinEvent) -> Vec<Tag> {
        match event {
            BinEvent::Labelled { label } => {
                AggregateId::new(label.as_str()).map(|l| Tag::new("label", &l)).into_iter().collect()
            }
            BinEvent::Marked { labels } => {
                labels.iter().filter_map(|l| AggregateId::new(l.as_str()).ok()).map(|l| Tag::new("label", &l)).collect()
            }
            _ => Vec::new(),
        }
    }

    fn handle(&self, command: BinCommand) -> Result<Vec<BinEvent>, BinError> {
        let received = |qty| BinEvent::Received { qty, source: "test".into() };
        match command {
            BinCommand::Receive { qty: 0 } | BinCommand::Take { qty: 0 } => Err(BinError::Zero),
            BinCommand::Receive { qty } => Ok(vec![received(qty)]),
            BinCommand::ReceiveMany(qtys) if qtys.contains(&0) => Err(BinError::Zero),
            BinCommand::ReceiveMany(qtys) => Ok(qtys.into_iter().map(received).collect()),
            BinCommand::Take { qty } if qty > self.on_hand => Err(BinError::Insufficient { available: self.on_hand }),
            BinCommand::Take { qty } => Ok(vec![BinEvent::Taken { qty }]),
            BinCommand::Touch => Ok(vec![]),
            BinCommand::Move { .. } | BinCommand::Label { .. } | BinCommand::Mark { .. } | BinCommand::Peek { .. } => {
                Ok(vec![])
            }
        }
    }

    fn apply(&mut self, event: &BinEvent) {
        match event {
            BinEvent::Received { qty, source } => {
                self.on_hand += qty;
                self.receipts += 1;
                if !self.sources.contains(source) {
                    self.sources.push(source.clone());
                }
            }
            BinEvent::Taken { qty } => self.on_hand -= qty,
            BinEvent::Labelled { .. } | BinEvent::Marked { .. } => {}
        }
    }
}

/// A server with the project's topology provisioned (R1), or a 3-node cluster with every
/// stream and bucket on three replicas (R3).
pub struct Env {
    pub _server: Option<NatsServer>,
    pub _cluster: Option<NatsCluster>,
    pub client: Client,
    pub store: EventStore,
    pub snapshots: SnapshotStore,
}

impl Env {
    pub async fn start() -> Self {
        let server = NatsServer::start();
        let (client, store, snapshots) = connect_provisioned(&server.url(), 1).await;
        Env { _server: Some(server), _cluster: None, client, store, snapshots }
    }

    pub async fn start_cluster() -> Self {
        let cluster = NatsCluster::start();
        let (client, store, snapshots) = connect_provisioned(&cluster.urls(), 3).await;
        Env { _server: None, _cluster: Some(cluster), client, store, snapshots }
    }

    pub fn repository(&self, config: RepositoryConfig) -> Repository<Bin> {
        Repository::new(self.store.clone(), Some(self.snapshots.clone()), config)
    }
}

pub async fn connect_provisioned(url: &str, replicas: usize) -> (Client, EventStore, SnapshotStore) {
    let client = jetsource::connect(url, "jetsource-tests").await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::parse(TOPOLOGY).expect("topology parses");
    let options = ProvisionOptions { replicas: Some(replicas), ..Default::default() };
    // On a cluster just started, a peer may still be joining ("no suitable peers", 10005), or
    // the meta leader still being elected (a request times out); provisioning is idempotent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match provision(&js, &topology, options).await {
            Ok(_) => break,
            Err(e)
                if (e.to_string().contains("10005") || e.to_string().contains("timed out"))
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("provision: {e:?}"),
        }
    }
    let store = EventStore::new(client.clone(), StoreConfig { service: "tests".into(), ..Default::default() });
    let snapshots = SnapshotStore::open(&js, "snapshots").await.expect("snapshot bucket");
    (client, store, snapshots)
}

pub fn id(text: &str) -> AggregateId {
    AggregateId::new(text).expect("valid id")
}

/// Every event stored for `subject`, straight from the stream.
pub async fn stored(store: &EventStore, subject: &str) -> Vec<jetsource::StoredEvent> {
    store.read(subject, 1, usize::MAX).await.expect("read")
}

/// Messages in the EVENTS stream.
pub async fn stream_messages(client: &Client) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("EVENTS").await.expect("EVENTS");
    stream.info().await.expect("info").state.messages
}

/// Runs each named test body (`async fn name(env: Env)`) twice: on one server (R1) and on a
/// 3-node cluster with R3 streams (`<file>::on::<name>::r1` and `::r3`).
macro_rules! on_r1_and_r3 {
    ($($name:ident),* $(,)?) => {
        mod on {
            $(
                pub mod $name {
                    #[tokio::test]
                    async fn r1() {
                        super::super::$name(crate::support::Env::start().await).await;
                    }

                    #[tokio::test]
                    async fn r3() {
                        super::super::$name(crate::support::Env::start_cluster().await).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_r1_and_r3;
