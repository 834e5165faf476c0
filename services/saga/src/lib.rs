//! # factory-saga
//!
//! The production saga, a process manager on the framework's engine
//! ([`jetsource_runtime::process`]): it follows order events and asks the stock service to
//! reserve, release, void and consume resources, and tells the order how it went — every command
//! over NATS to the command services. The decisions are [`factory_domain::saga::SagaState`]'s;
//! [`ProductionSaga`] turns them into effects, one command at a time:
//!
//! - `OrderPlanned`: the lines (`qty × bom`) are known; `OrderStarted`: reserve each; all
//!   reserved → `confirm-reserved`; a refusal or no answer within [`SagaConfig::request_timeout`]
//!   → `fail` first, then release what was taken and void what went unanswered;
//! - `OrderCompleted`: consume each reservation, then receive the product;
//! - `OrderCancelled`: release and void; a cancel that came while reserving closes the start
//!   with `abandon-start`;
//! - `ResourcesReserved`: a deadline ([`SagaConfig::reservation_hold`], kept by NATS) after
//!   which an order still not completed is cancelled, so its stock is not held forever.
//!
//! The engine keeps the state (KV `processes`, key `saga.<order>`; `saga.get.<order_id>`
//! answers it), derives every command's idempotency key from the event that caused it (a
//! redelivered event is answered from the first outcome, never reserved twice), retries what
//! cannot be done now while that order's later events wait, and runs any number of instances
//! (one active, the others on standby). For crash tests, `FACTORY_SAGA_ABORT_AFTER_STEPS=<n>`
//! aborts the process after `n` stock answers.
//!
//! ## Example
//! ```
//! let app = jetsource_runtime::App::new("factory").process_manager(
//!     factory_saga::ProductionSaga::new(&factory_saga::SagaConfig::default()),
//!     "Production saga",
//!     factory_saga::SagaConfig::default().process(),
//! );
//! assert_eq!(app.service_names(), ["saga"]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::time::Duration;

mod process;

pub use process::ProductionSaga;

/// How the saga runs.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// How long a stock command may go unanswered before the order fails (`timeout`).
    pub request_timeout: Duration,
    /// Order events handled at once (events of one order are always one after the other).
    pub max_in_flight: usize,
    /// How long a reserved order may hold its stock without completing: then the saga cancels
    /// it (reason `reservation hold expired`) and the stock is released. A deadline kept by
    /// NATS: it comes even if every factory process was down when it was due.
    pub reservation_hold: Duration,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            max_in_flight: 256,
            reservation_hold: Duration::from_secs(24 * 3600),
        }
    }
}

impl SagaConfig {
    /// The engine's settings for these.
    pub fn process(&self) -> jetsource_runtime::process::ProcessConfig {
        jetsource_runtime::process::ProcessConfig {
            request_timeout: self.request_timeout,
            max_in_flight: self.max_in_flight,
            ..Default::default()
        }
    }
}
