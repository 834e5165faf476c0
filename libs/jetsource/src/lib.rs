//! # jetsource
//!
//! CQRS and event sourcing on NATS JetStream, with no database beside the message bus.
//!
//! - **Aggregates** are pure and synchronous ([`Aggregate`]): `handle` decides, `apply` folds.
//! - **Events** are CloudEvents in NATS binary mode ([`cloudevents`]), one subject per
//!   aggregate (`evt.<type>.<id>`), with schema versions and an upcasting chain ([`event`]).
//! - **Appends** use optimistic concurrency on the aggregate's last stream sequence; several
//!   events of one command commit as one atomic batch; `Nats-Msg-Id` makes retries write once
//!   ([`store`]).
//! - **Loads** start from a KV snapshot and read the rest with Direct Get batch ([`snapshot`],
//!   [`Repository::load`]).
//! - **Commands** run through [`Repository::execute`]: load, handle, append, retry on conflict.
//! - **Beyond one aggregate** ([`scope`], ADR 18): a command's [`Scope`] names other aggregates
//!   and tags; its [`Decision`] is appended in one atomic batch, each aggregate and each tag read
//!   expected, so a concurrent change to any of them is a conflict.
//! - **Topology** (streams, buckets, consumers) is declared in TOML and provisioned
//!   idempotently ([`topology`]).
//!
//! ## Layout
//! `aggregate`, `event`, `metadata`, `cloudevents` define the model; `store` and `snapshot`
//! talk to JetStream; `repository` is the command pipeline; `topology` and `connect` set up.
//!
//! ## Example
//! Run as a doctest against a nats-server it starts, with the project's topology provisioned:
//! ```
//! # use jetsource::{Aggregate, DomainError, DomainEvent, Repository, RepositoryConfig, EventStore,
//! #     StoreConfig, SnapshotStore, AggregateId, CommandContext};
//! # use serde::{Deserialize, Serialize};
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! struct Counter { total: u64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! #[serde(tag = "type", content = "data")]
//! enum CounterEvent { Added { n: u64 } }
//!
//! impl DomainEvent for CounterEvent {
//!     const SCHEMAS: &'static [(&'static str, u32)] = &[("Added", 1)];
//!     fn event_type(&self) -> &'static str { "Added" }
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("zero is not a number to add")]
//! struct Zero;
//! impl DomainError for Zero { fn reason(&self) -> &'static str { "zero" } }
//!
//! impl Aggregate for Counter {
//!     const TYPE: &'static str = "counter";
//!     type Command = u64;
//!     type Event = CounterEvent;
//!     type Error = Zero;
//!     fn handle(&self, n: u64) -> Result<Vec<CounterEvent>, Zero> {
//!         if n == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Added { n }]) }
//!     }
//!     fn apply(&mut self, CounterEvent::Added { n }: &CounterEvent) { self.total += n; }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = jetsource_testkit::NatsServer::start();
//! # let url = server.url();
//! # let topology = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../nats/topology.toml"));
//! # let topology = jetsource::topology::Topology::parse(topology)?;
//! # let setup = jetsource::connect(&url, "setup").await?;
//! # jetsource::topology::provision(&async_nats::jetstream::new(setup), &topology, Default::default()).await?;
//! let client = jetsource::connect(&url, "example").await?;
//! let store = EventStore::new(client, StoreConfig::default());
//! let snapshots = SnapshotStore::open(store.jetstream(), "snapshots").await?;
//! let counters = Repository::<Counter>::new(store, Some(snapshots), RepositoryConfig::default());
//! let outcome = counters.execute(&AggregateId::new("c1")?, 5, &CommandContext::new()).await?;
//! assert_eq!(outcome.version, 1);
//! let again = counters.execute(&AggregateId::new("c1")?, 0, &CommandContext::new()).await;
//! assert!(again.is_err(), "zero is refused");
//! println!("version {} at stream seq {}", outcome.version, outcome.stream_seq);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod archive;
pub mod backoff;
pub mod cloudevents;
pub mod codec;
pub mod connect;
pub mod consume;
pub mod error;
pub mod keyring;
pub mod projection;
pub mod recent;
pub mod repository;
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod topology;

pub use backoff::Backoff;
pub use codec::Codec;
pub use connect::{ConnectError, NatsAuth, connect, connect_with};
pub use error::{CommandError, ErrorCode, StoreError};
pub use jetsource_core::schemars;
pub use jetsource_core::{
    Aggregate, AggregateId, Command, CommandContext, CommandParseError, CommandSpec, Decision, DomainError,
    DomainEvent, IdError, Metadata, Personal, Scope, Seen, Tag, Tagged, TraceContext, Upcasters, aggregate, command,
    event, id, metadata, personal, scope,
};
pub use recent::EventRef;
pub use repository::{CommandOutcome, Envelope, Loaded, Observer, Repository, RepositoryConfig, Until};
pub use shutdown::Shutdown;
pub use snapshot::SnapshotStore;
pub use store::{EventStore, StoreConfig, StoredEvent};
