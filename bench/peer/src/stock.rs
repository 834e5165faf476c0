//! The workload's aggregate, as cqrs-es models it: one stock item, one command
//! (`Receive { qty }`) that emits one event (`StockReceived { qty }`), whose apply adds the
//! quantity to a counter. The same shape as jetsource-bench's `stock.w<n>@main.receive`.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// One stock item: the quantity received so far.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stock {
    received: u64,
}

/// The one command.
#[derive(Debug, Deserialize)]
pub enum StockCommand {
    /// Receive `qty` units.
    Receive { qty: u32 },
}

/// The one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StockEvent {
    /// `qty` units were received.
    StockReceived { qty: u32 },
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> String {
        match self {
            Self::StockReceived { .. } => "StockReceived".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// The command's business error (never raised: every receipt is accepted).
#[derive(Debug)]
pub struct StockError(String);

impl fmt::Display for StockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StockError {}

impl Aggregate for Stock {
    const TYPE: &'static str = "Stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;
    type Services = ();

    async fn handle(
        &mut self,
        command: StockCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), StockError> {
        match command {
            StockCommand::Receive { qty } => {
                if self.received.checked_add(u64::from(qty)).is_none() {
                    return Err(StockError("received quantity overflows".to_owned()));
                }
                sink.write(StockEvent::StockReceived { qty }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: StockEvent) {
        match event {
            StockEvent::StockReceived { qty } => self.received = self.received.saturating_add(u64::from(qty)),
        }
    }
}
