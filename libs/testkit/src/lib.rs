//! # jetsource-testkit
//!
//! Real parts for tests: a nats-server started on free ports with a temporary store (removed
//! when dropped), a 3-node JetStream cluster on loopback whose nodes can be killed and
//! restarted, and a synchronous given/when/then fixture for aggregates.
//!
//! ## Layout
//! - [`NatsServer`] — one node, JetStream on.
//! - [`NatsCluster`] — three nodes with routes between them, for R3 streams and fault tests.
//! - [`AggregateFixture`] — `given(events).when(command).then_expect_events(..)`.
//! - [`server`] — finding, starting, stopping nats-server processes: the harness of the
//!   nodes above, and of the managed server an application's `up` runs.
//!
//! ## Example
//! ```
//! let server = jetsource_testkit::NatsServer::start();
//! println!("connect to {}", server.url());
//! assert!(std::net::TcpStream::connect(server.url().trim_start_matches("nats://")).is_ok());
//! // dropped at the end of the test: process killed, store removed
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cluster;
mod fixture;
pub mod server;
mod single;

pub use cluster::NatsCluster;
pub use fixture::{AggregateFixture, Then};
pub use single::NatsServer;

/// How long a server may take to report healthy.
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
