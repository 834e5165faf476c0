//! # jetsource-cli
//!
//! Running a jetsource application:
//!
//! - [`process`]: one process assembled from the registry, running any subset of the
//!   application's services (command services, projector, logbook, HTTP edge, its own);
//! - [`managed`]: the nats-server an `up` command starts and stops itself;
//! - [`cli`]: the command line every application shares ([`main`]), with the application's
//!   names and value lists, and room for commands of its own.
//!
//! ## Example
//! ```no_run
//! # async fn run(app: std::sync::Arc<jetsource_runtime::App>) -> anyhow::Result<()> {
//! use jetsource_cli::process::{Process, ProcessConfig};
//! let config = ProcessConfig::new("nats://127.0.0.1:4222", app.service_names(), Default::default());
//! let process = Process::build(app, config).await?;
//! process.run_until_stopped(jetsource_runtime::Shutdown::new()).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod managed;
pub mod process;

pub use cli::{Extra, Settings, main};
