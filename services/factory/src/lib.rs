//! # factory
//!
//! The reference application of jetsource as one binary: `factory up` runs every service in one
//! process against a managed nats-server; `factory run <service>…` runs a subset against any
//! NATS (one image, one Deployment per service in Kubernetes). This library half is what the
//! binary and the end-to-end tests share.
//!
//! ## Layout
//! - [`registry`]: the factory registered once: aggregates, views, services.
//! - [`app`]: assembling the services of one process, serving until shutdown.
//! - [`k8s`]: the Kubernetes files derived from `nats/` (`factory k8s`).
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! # let server = jetsource_testkit::NatsServer::start();
//! # let nats_url = server.url();
//! use factory::app::{App, AppConfig, all_services};
//! let shutdown = jetsource_runtime::Shutdown::new();
//! let services = all_services().into_iter().filter(|s| *s != "gateway").collect();
//! let app = App::build(AppConfig::new(nats_url.clone(), services)).await?;
//! let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
//! let client = async_nats::connect(nats_url).await?;
//! let reply = client.request("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#.into()).await?;
//! assert!(reply.headers.is_none(), "the command succeeded");
//! shutdown.trigger();
//! running.await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod k8s;
pub mod registry;
pub mod views;

/// The declared topology shipped with the binary (`nats/topology.toml`).
pub const TOPOLOGY: &str = include_str!("../../../nats/topology.toml");
