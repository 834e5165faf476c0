//! # jetsource-runtime
//!
//! What every service of a jetsource application is built from, so each is built the same way:
//!
//! - [`registry`]: the application's aggregates (with their services), views and other
//!   services, declared once ([`App`]); everything that lists them reads it;
//! - [`command`]: the command service of any registered aggregate type (parse, idempotency,
//!   prepare, execute, reply) and the router that answers what no service owns;
//! - [`inspect`]: an aggregate's state and history from the event store, at any point;
//! - [`views`]: the registered views, type-erased; [`projector`]: the service keeping them
//!   (workers per version, rebuilds, parked events, queries over NATS);
//! - [`process`]: process managers — pure decisions (state + input → effects), the engine that
//!   carries them out (state in KV, commands over NATS with derived keys, deadlines kept by NATS
//!   as message schedules, standby instances) and a given/when/then fixture;
//! - [`logbook`]: queries over the logs every service ships to the bus;
//! - [`archiver`]: the clean-up service compacting the hot event stream against the archive;
//! - [`endpoint`]: the one request/reply loop every endpoint runs in;
//! - [`micro`]: the NATS micro-service protocol (`$SRV.PING|INFO|STATS`) with our own endpoints;
//! - [`wire`]: the wire contract: subjects, header names, the reply contract
//!   (`Nats-Service-Error-Code`, `Nats-Service-Error`, JSON body) and a typed client;
//! - [`ledger`]: the idempotency ledger (`Idempotency-Key` → first outcome, 24 h);
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`shutdown`]: one signal for Ctrl-C, SIGTERM and tests.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = jetsource_testkit::NatsServer::start();
//! # let client = async_nats::connect(server.url()).await?;
//! use std::sync::Arc;
//! let shutdown = jetsource_runtime::Shutdown::new();
//! shutdown.on_signals();
//! let readiness = jetsource_runtime::health::Readiness::new(client);
//! let metrics = Arc::new(jetsource_telemetry::Metrics::new("example"));
//! let addr = ([127, 0, 0, 1], 0).into();
//! let (addr, server) = jetsource_runtime::health::serve_operational(addr, readiness, metrics, shutdown.clone()).await?;
//! println!("health on http://{addr}");
//! let serving = tokio::spawn(server);
//! let live = tokio::task::spawn_blocking(move || jetsource_testkit::server::http_status(addr.port(), "/healthz")).await?;
//! assert_eq!(live, Some(200));
//! shutdown.trigger();
//! # let _ = serving.await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
// `ErrorBody` is the error reply itself, built once per failed request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod archiver;
pub mod command;
pub mod endpoint;
pub mod health;
pub mod inspect;
pub mod ledger;
pub mod logbook;
pub mod micro;
pub mod process;
pub mod projector;
pub mod registry;
pub mod views;
pub mod wire;

pub use jetsource::Shutdown;
pub use jetsource::consume;
pub use registry::App;
