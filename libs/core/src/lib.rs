//! # jetsource-core
//!
//! The I/O-free core of jetsource, what a domain crate depends on: no async, no NATS, no clock
//! beyond command ids.
//!
//! - [`Aggregate`]: pure decisions (`handle`) over a state folded from events (`apply`);
//! - [`DomainEvent`] with its names and schema versions, and [`Upcasters`] for old versions;
//! - [`Command`]: names, strict JSON bodies and JSON Schemas of a command enum;
//! - [`Scope`], [`Seen`] and [`Decision`]: commands that decide over several aggregates and
//!   over tagged events, appended atomically on condition that nothing they read changed;
//! - [`AggregateId`] and the metadata of commands ([`CommandContext`]).
//!
//! `#[derive(DomainEvent)]` and `#[derive(Command)]` write the catalogues, so a name or a
//! schema version is declared once, next to the variant it belongs to.
//!
//! ## Example
//! ```
//! use jetsource_core::{Aggregate, Command, DomainError, DomainEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! struct Counter { total: u64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! #[serde(tag = "type", content = "data")]
//! enum CounterEvent { Added { n: u64 } }
//!
//! #[derive(Debug, Clone, PartialEq, Command)]
//! #[command(aggregate = Counter)]
//! enum CounterCommand {
//!     /// Adds `n`.
//!     Add { n: u64 },
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("zero is not a number to add")]
//! struct Zero;
//! impl DomainError for Zero { fn reason(&self) -> &'static str { "zero" } }
//!
//! impl Aggregate for Counter {
//!     const TYPE: &'static str = "counter";
//!     type Command = CounterCommand;
//!     type Event = CounterEvent;
//!     type Error = Zero;
//!     fn handle(&self, CounterCommand::Add { n }: CounterCommand) -> Result<Vec<CounterEvent>, Zero> {
//!         if n == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Added { n }]) }
//!     }
//!     fn apply(&mut self, CounterEvent::Added { n }: &CounterEvent) { self.total += n; }
//! }
//!
//! let command = CounterCommand::parse("add", br#"{"n": 2}"#).unwrap();
//! assert_eq!(Counter::default().handle(command).unwrap(), vec![CounterEvent::Added { n: 2 }]);
//! assert!(CounterCommand::parse("add", br#"{"n": 2, "m": 1}"#).is_err());
//! assert_eq!(CounterEvent::SCHEMAS, &[("Added", 1)]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod aggregate;
pub mod command;
pub mod event;
pub mod id;
pub mod metadata;
pub mod personal;
pub mod scope;

pub use aggregate::{Aggregate, DomainError, Seen};
pub use command::{Command, CommandParseError, CommandSpec, parse_body};
pub use event::{DomainEvent, Upcasters};
pub use id::{AggregateId, IdError};
pub use jetsource_derive::{Command, DomainEvent};
pub use metadata::{CommandContext, Metadata, TraceContext};
pub use personal::Personal;
pub use scope::{Decision, Scope, Tag, Tagged};

/// What the derives expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
}

/// JSON Schema support for command bodies and documents (the `schemars` crate).
pub use schemars;
