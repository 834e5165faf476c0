//! # factory-domain
//!
//! The reference application's model, shared by every service and the gateway (one model, no
//! drift): products with bills of materials, stock per warehouse, production orders. Pure and
//! synchronous: no I/O, no clock, no async; it depends on the I/O-free `jetsource-core` only.
//!
//! ## Layout
//! - [`product`], [`stock`], [`order`]: one aggregate each, with its commands (derived: names,
//!   strict bodies, JSON Schemas), events (derived: names and schema versions) and rules.
//! - [`saga`]: the production saga's decisions (what to reserve, release, consume; when an
//!   order fails), with the I/O left to the saga service.
//! - [`status`]: what events mean for the status of the command that began a conversation.
//! - [`values`]: validated values: positive quantities, SKUs, warehouses, stock ids.
//!
//! ## Example
//! ```
//! use factory_domain::stock::{Stock, StockCommand, StockEvent};
//! use jetsource_core::Aggregate;
//!
//! let stock = Stock::default();
//! let events = stock.handle(StockCommand::parse("receive", br#"{"qty": 5}"#).unwrap()).unwrap();
//! assert!(matches!(&events[0], StockEvent::StockReceived { qty: 5, .. }));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod order;
pub mod product;
pub mod saga;
pub mod status;
pub mod stock;
pub mod values;

pub use values::{BomLine, Qty, Sku, StockId, Warehouse};
