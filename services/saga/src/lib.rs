//! # factory-saga
//!
//! The production saga (a process manager): a durable consumer (`saga`) on order events that
//! asks the stock service to reserve, release and consume resources, and tells the order how it
//! went. The decisions are pure and live in [`factory_domain::saga`]; this crate does the I/O:
//!
//! - each event is handled with the state kept in the KV bucket `sagas` (so a restart continues
//!   where it stopped and decides the same), events of one order strictly in order, orders in
//!   parallel;
//! - every stock command is a NATS request to `cmd.stock.<sku>@<warehouse>.<command>` with an
//!   `Idempotency-Key` derived from the event that caused it (a redelivered event is answered
//!   from the first outcome, never reserved twice), the `start` command's id as
//!   `Correlation-Id`, the event id as `Causation-Id`, and the trace context;
//! - a reservation refused or unanswered within [`SagaConfig::request_timeout`] releases what
//!   was taken and fails the order (`OrderFailed` with the reason and the service);
//! - what cannot be done now (the stock service is down during a release) is retried until it
//!   is, holding that order's later events back.
//!
//! `saga.get.<order_id>` answers an order's saga state.
//!
//! One saga instance runs at a time (like the projector; see `docs/adr`). For crash tests,
//! `FACTORY_SAGA_ABORT_AFTER_STEPS=<n>` aborts the process after `n` stock answers.
//!
//! ## Example
//! ```no_run
//! # async fn run(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let metrics = Arc::new(jetsource_telemetry::Metrics::new("example"));
//! let saga = factory_saga::Saga::start(client, factory_saga::SagaConfig::default(), metrics).await?;
//! saga.run_until_stopped(jetsource_runtime::Shutdown::new()).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod run;

pub use run::{Saga, SagaConfig, SagaError};
