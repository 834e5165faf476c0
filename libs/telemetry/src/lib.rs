//! # jetsource-telemetry
//!
//! Telemetry set up once, in one crate, for every service of an application:
//!
//! - [`Telemetry::init`]: JSON log lines on stdout (service, instance, level, target, message,
//!   trace and span ids), OpenTelemetry spans, W3C propagation, OTLP export driven by the
//!   standard `OTEL_*` variables and free when they are unset;
//! - [`propagation`]: `traceparent` in and out of NATS headers and stored events;
//! - [`metrics`]: the Prometheus registry behind `/metrics`;
//! - log shipping: the same records (WARN and above unless `<PREFIX>_LOG_SHIP` says otherwise)
//!   to `logs.<service>.<level>` once [`Telemetry::ship_logs`] has a connection.
//!
//! ## Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use jetsource_telemetry::{Telemetry, TelemetryConfig};
//! let telemetry = Telemetry::init(&TelemetryConfig {
//!     service: "stock".into(),
//!     instance: "stock-1".into(),
//!     filter: None,
//!     ship: None,
//!     env_prefix: "STOCK".into(),
//! })?;
//! tracing::info!(service = "stock", "ready");
//! telemetry.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod https;
mod init;
mod json;
pub mod metrics;
mod otlp;
mod process;
pub mod propagation;
mod ship;

pub use init::{Telemetry, TelemetryConfig, TelemetryError};
pub use json::readable;
pub use metrics::Metrics;
