//! # factory-commands
//!
//! The command side of the factory: one NATS micro service per aggregate type (`catalog` for
//! products, `stock`, `production` for orders), each answering
//! `cmd.<aggregate_type>.<aggregate_id>.<command>` in a queue group so instances share the
//! load, with the reply contract of DESIGN §5. A router answers what no service owns (unknown
//! aggregate types, malformed subjects, services that are not running).
//!
//! ## Layout
//! - [`service`]: the generic command service: parse, idempotency, execute, reply.
//! - [`models`]: how each aggregate type is parsed and prepared (the production service looks
//!   up the product before planning).
//! - [`router`]: the catch-all.
//!
//! ## Example
//! ```no_run
//! # async fn run(deps: factory_commands::Deps) -> Result<(), Box<dyn std::error::Error>> {
//! use factory_commands::{CommandConfig, ServiceKind};
//! let shutdown = factory_runtime::Shutdown::new();
//! let stock = ServiceKind::Stock.build(&deps, CommandConfig::default()).await?;
//! stock.run_until_stopped(shutdown).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
// `ErrorBody` is the error reply itself, built once per failed request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod models;
pub mod router;
pub mod service;

pub use models::ServiceKind;
pub use service::{CommandConfig, Deps, RunningService};
