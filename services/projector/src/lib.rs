//! # factory-projector
//!
//! The read side of the factory: five views kept in KV buckets by durable consumers (`stock`,
//! `warehouse`, `orders`, `products`, `commands`), queries over NATS (`qry.<view>.<key>`,
//! `qry.<view>` with paging, `Min-Seq` for read-your-writes), and operations: status, rebuild
//! without downtime, retry of parked events.
//!
//! ## Layout
//! - [`views`]: the projections, pure functions of the events.
//! - [`service`]: running them, switching versions, answering queries and operators.
//!
//! ## Example
//! ```no_run
//! # async fn run(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let metrics = Arc::new(jetsource_telemetry::Metrics::new("example"));
//! let app = jetsource_runtime::App::new("example");
//! let projector = factory_projector::Projector::start(&app, client, Default::default(), metrics).await?;
//! projector.run_until_stopped(jetsource_runtime::Shutdown::new()).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
// `ErrorBody` is the error reply itself, built once per failed request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod queries;
pub mod service;
pub mod views;

pub use service::{Projector, ProjectorConfig};
