//! Stock of one SKU in one warehouse (`<sku>@<warehouse>`): received, shipped, reserved for
//! orders, released, consumed, adjusted, transferred to another warehouse. Never below zero:
//! `available = on_hand − reserved`.
//!
//! A transfer is one command over two stock aggregates (`sku@from` and `sku@to`): both events
//! are appended in one atomic batch, each with its aggregate's expectation (ADR 18), so the
//! total on hand is conserved whatever runs beside it.

use std::collections::BTreeMap;

use jetsource_core::command::fields;
use jetsource_core::{Aggregate, AggregateId, Command, Decision, DomainError, DomainEvent, Scope, Seen, Upcasters};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::values::{Qty, StockId, Warehouse};

/// The stock aggregate's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Units physically there.
    pub on_hand: u64,
    /// Units held for orders, by order id.
    pub reservations: BTreeMap<String, u64>,
    /// Orders that gave up on this stock: no reservation is taken for them any more.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub voided: std::collections::BTreeSet<String>,
}

impl Stock {
    /// Units held for orders.
    pub fn reserved(&self) -> u64 {
        self.reservations.values().sum()
    }

    /// Units free to ship or reserve.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved())
    }
}

/// What stock can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Command)]
#[command(aggregate = Stock)]
pub enum StockCommand {
    /// Units arrived: `on_hand` grows by `qty`.
    #[command(example = r#"{"qty": 100}"#)]
    Receive {
        /// Units received.
        qty: Qty,
        /// Where they came from (`receipt` unless given; 1 to 200 characters).
        #[serde(default = "receipt", deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        source: String,
    },
    /// Units left: at most what is available.
    #[command(example = r#"{"qty": 5}"#)]
    Ship {
        /// Units shipped.
        qty: Qty,
    },
    /// Units are held for an order: at most what is available, once per order.
    #[command(example = r#"{"qty": 8, "order_id": "o-1"}"#)]
    Reserve {
        /// Units to hold.
        qty: Qty,
        /// For which order.
        #[serde(deserialize_with = "fields::aggregate_id")]
        #[schemars(regex(pattern = r"^[A-Za-z0-9_@-]{1,128}$"))]
        order_id: String,
    },
    /// An order's hold is lifted.
    #[command(example = r#"{"order_id": "o-1"}"#)]
    Release {
        /// Whose reservation.
        #[serde(deserialize_with = "fields::aggregate_id")]
        #[schemars(regex(pattern = r"^[A-Za-z0-9_@-]{1,128}$"))]
        order_id: String,
    },
    /// An order gives up on this stock: its hold, if any, is lifted, and no reservation is
    /// taken for it any more (a reservation still on its way, after the order stopped waiting
    /// for it, is refused rather than left behind).
    #[command(example = r#"{"order_id": "o-1"}"#)]
    Void {
        /// The order.
        #[serde(deserialize_with = "fields::aggregate_id")]
        #[schemars(regex(pattern = r"^[A-Za-z0-9_@-]{1,128}$"))]
        order_id: String,
    },
    /// An order uses what it holds.
    #[command(example = r#"{"order_id": "o-1"}"#)]
    Consume {
        /// Whose reservation.
        #[serde(deserialize_with = "fields::aggregate_id")]
        #[schemars(regex(pattern = r"^[A-Za-z0-9_@-]{1,128}$"))]
        order_id: String,
    },
    /// Moves units to the same SKU in another warehouse, atomically: at most what is
    /// available here.
    #[command(example = r#"{"qty": 10, "to": "east"}"#)]
    Transfer {
        /// Units moved.
        qty: Qty,
        /// The warehouse they go to (1–60 characters of `[A-Za-z0-9_-]`).
        to: Warehouse,
    },
    /// A stocktake sets the count: not below what is reserved.
    #[command(example = r#"{"on_hand": 90, "reason": "stocktake"}"#)]
    Adjust {
        /// Units counted.
        on_hand: u64,
        /// Why (1 to 200 characters).
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        reason: String,
    },
}

fn receipt() -> String {
    "receipt".to_owned()
}

/// What happened to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type", content = "data")]
#[event(upcasters = stock_upcasters)]
pub enum StockEvent {
    /// Units arrived. Schema v2; v1 was `{"quantity": n}` (see [`stock_upcasters`]).
    #[event(version = 2)]
    StockReceived {
        /// Units received.
        qty: u64,
        /// Where they came from (`unknown` for v1 events).
        source: String,
    },
    /// Units left.
    StockShipped {
        /// Units shipped.
        qty: u64,
    },
    /// Units were held for an order.
    StockReserved {
        /// The order.
        order_id: String,
        /// Units held.
        qty: u64,
    },
    /// An order's hold was lifted.
    ReservationReleased {
        /// The order.
        order_id: String,
        /// Units freed.
        qty: u64,
    },
    /// An order gave up on this stock: no reservation is taken for it any more.
    ReservationVoided {
        /// The order.
        order_id: String,
    },
    /// An order used what it held.
    ReservationConsumed {
        /// The order.
        order_id: String,
        /// Units used.
        qty: u64,
    },
    /// Units left for the same SKU in another warehouse.
    StockTransferredOut {
        /// Units moved.
        qty: u64,
        /// The warehouse they went to.
        to: String,
    },
    /// Units arrived from the same SKU in another warehouse.
    StockTransferredIn {
        /// Units moved.
        qty: u64,
        /// The warehouse they came from.
        from: String,
    },
    /// A stocktake set the count.
    StockAdjusted {
        /// Units counted.
        on_hand: u64,
        /// Units before.
        previous: u64,
        /// Why.
        reason: String,
    },
}

/// The upcasting chain of stock events: `StockReceived` v1 `{"quantity": n}` → v2
/// `{"qty": n, "source": "unknown"}`.
pub fn stock_upcasters() -> Upcasters {
    Upcasters::default().with("StockReceived", 1, upcast_stock_received_v1)
}

fn upcast_stock_received_v1(v1: serde_json::Value) -> Result<serde_json::Value, String> {
    let quantity =
        v1.get("quantity").and_then(serde_json::Value::as_u64).ok_or("v1 StockReceived needs an integer quantity")?;
    Ok(serde_json::json!({ "qty": quantity, "source": "unknown" }))
}

/// Why stock refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StockError {
    /// Shipping or reserving more than is available.
    #[error("insufficient stock: {requested} requested, {available} available")]
    InsufficientStock {
        /// Units asked for.
        requested: u64,
        /// Units available.
        available: u64,
    },
    /// A second reservation for the same order.
    #[error("order {0} already holds a reservation here")]
    AlreadyReserved(String),
    /// Releasing or consuming a reservation that does not exist.
    #[error("order {0} holds no reservation here")]
    NotReserved(String),
    /// A reservation for an order that gave up on this stock.
    #[error("order {0} gave up on this stock; no reservation is taken for it")]
    Voided(String),
    /// More units than can be counted (`on_hand` would pass 2^64 − 1).
    #[error("{on_hand} on hand and {qty} more cannot be counted")]
    TooMany {
        /// Units on hand.
        on_hand: u64,
        /// Units arriving.
        qty: u64,
    },
    /// A transfer to the warehouse the stock is in.
    #[error("a transfer goes to another warehouse; the stock is already in {0}")]
    SameWarehouse(String),
    /// A stocktake below what is reserved.
    #[error("on_hand {on_hand} is below the {reserved} units reserved")]
    BelowReserved {
        /// Units counted.
        on_hand: u64,
        /// Units reserved.
        reserved: u64,
    },
}

impl DomainError for StockError {
    fn reason(&self) -> &'static str {
        match self {
            StockError::InsufficientStock { .. } => "insufficient_stock",
            StockError::AlreadyReserved(_) => "already_reserved",
            StockError::NotReserved(_) => "not_reserved",
            StockError::Voided(_) => "order_voided",
            StockError::BelowReserved { .. } => "below_reserved",
            StockError::SameWarehouse(_) => "same_warehouse",
            StockError::TooMany { .. } => "quantity_too_large",
        }
    }
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;

    const ID_PATTERN: &'static str = "^[A-Za-z0-9_-]{1,60}@[A-Za-z0-9_-]{1,60}$";

    fn check_id(id: &AggregateId) -> Result<(), String> {
        StockId::parse(id.as_str()).map(drop)
    }

    fn scope(id: &AggregateId, command: &StockCommand) -> Scope {
        match (command, StockId::parse(id.as_str())) {
            (StockCommand::Transfer { to, .. }, Ok(from)) if *to != from.warehouse => {
                Scope::default().aggregate(StockId::new(from.sku, to.clone()).aggregate_id())
            }
            _ => Scope::default(),
        }
    }

    /// A transfer records its arrival on the destination too; every other command is
    /// [`Aggregate::handle`] alone.
    fn decide(&self, command: StockCommand, seen: &Seen<Self>) -> Result<Decision<StockEvent>, StockError> {
        let StockCommand::Transfer { qty, to } = &command else {
            return self.handle(command).map(Decision::own);
        };
        let from = StockId::parse(seen.id().as_str()).map_err(|_| StockError::SameWarehouse(String::new()))?;
        if *to == from.warehouse {
            return Err(StockError::SameWarehouse(to.to_string()));
        }
        let destination = StockId::new(from.sku.clone(), to.clone()).aggregate_id();
        let there = seen.aggregate(&destination).on_hand;
        if there.checked_add(qty.get()).is_none() {
            return Err(StockError::TooMany { on_hand: there, qty: qty.get() });
        }
        let arrived = StockEvent::StockTransferredIn { qty: qty.get(), from: from.warehouse.to_string() };
        Ok(Decision::own(self.handle(command)?).and(destination, vec![arrived]))
    }

    /// Decides on this stock's part of a command (a transfer's departure; its arrival is
    /// [`Aggregate::decide`]'s).
    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, StockError> {
        let enough = |qty: Qty| {
            if qty.get() > self.available() {
                Err(StockError::InsufficientStock { requested: qty.get(), available: self.available() })
            } else {
                Ok(())
            }
        };
        let held = |order_id: &str| {
            self.reservations.get(order_id).copied().ok_or_else(|| StockError::NotReserved(order_id.to_owned()))
        };
        let event = match command {
            StockCommand::Receive { qty, .. } if self.on_hand.checked_add(qty.get()).is_none() => {
                return Err(StockError::TooMany { on_hand: self.on_hand, qty: qty.get() });
            }
            StockCommand::Receive { qty, source } => StockEvent::StockReceived { qty: qty.get(), source },
            StockCommand::Ship { qty } => {
                enough(qty)?;
                StockEvent::StockShipped { qty: qty.get() }
            }
            StockCommand::Reserve { order_id, .. } if self.reservations.contains_key(&order_id) => {
                return Err(StockError::AlreadyReserved(order_id));
            }
            StockCommand::Reserve { order_id, .. } if self.voided.contains(&order_id) => {
                return Err(StockError::Voided(order_id));
            }
            StockCommand::Void { order_id } if self.voided.contains(&order_id) => return Ok(Vec::new()),
            StockCommand::Void { order_id } => {
                let mut events = Vec::with_capacity(2);
                if let Some(&qty) = self.reservations.get(&order_id) {
                    events.push(StockEvent::ReservationReleased { order_id: order_id.clone(), qty });
                }
                events.push(StockEvent::ReservationVoided { order_id });
                return Ok(events);
            }
            StockCommand::Reserve { qty, order_id } => {
                enough(qty)?;
                StockEvent::StockReserved { order_id, qty: qty.get() }
            }
            StockCommand::Release { order_id } => StockEvent::ReservationReleased { qty: held(&order_id)?, order_id },
            StockCommand::Consume { order_id } => StockEvent::ReservationConsumed { qty: held(&order_id)?, order_id },
            StockCommand::Transfer { qty, to } => {
                enough(qty)?;
                StockEvent::StockTransferredOut { qty: qty.get(), to: to.to_string() }
            }
            StockCommand::Adjust { on_hand, .. } if on_hand < self.reserved() => {
                return Err(StockError::BelowReserved { on_hand, reserved: self.reserved() });
            }
            StockCommand::Adjust { on_hand, reason } => {
                StockEvent::StockAdjusted { on_hand, previous: self.on_hand, reason }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::StockReceived { qty, .. } => self.on_hand += qty,
            StockEvent::StockShipped { qty } | StockEvent::StockTransferredOut { qty, .. } => {
                self.on_hand = self.on_hand.saturating_sub(*qty);
            }
            StockEvent::StockTransferredIn { qty, .. } => self.on_hand += qty,
            StockEvent::StockReserved { order_id, qty } => {
                self.reservations.insert(order_id.clone(), *qty);
            }
            StockEvent::ReservationReleased { order_id, .. } => {
                self.reservations.remove(order_id);
            }
            StockEvent::ReservationConsumed { order_id, qty } => {
                self.reservations.remove(order_id);
                self.on_hand = self.on_hand.saturating_sub(*qty);
            }
            StockEvent::ReservationVoided { order_id } => {
                self.voided.insert(order_id.clone());
            }
            StockEvent::StockAdjusted { on_hand, .. } => self.on_hand = *on_hand,
        }
    }
}
