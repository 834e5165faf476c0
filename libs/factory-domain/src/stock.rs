//! Stock of one SKU in one warehouse (`<sku>@<warehouse>`): received, shipped, reserved for
//! orders, released, consumed, adjusted. Never below zero: `available = on_hand − reserved`.

use std::collections::BTreeMap;

use jetsource::{Aggregate, AggregateId, DomainError, DomainEvent, Upcasters};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::{AggregateKind, CommandError, parse_body};
use crate::values::Qty;

/// The stock aggregate's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Units physically there.
    pub on_hand: u64,
    /// Units held for orders, by order id.
    pub reservations: BTreeMap<String, u64>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockCommand {
    /// `receive`: `{qty, source?}`.
    Receive {
        /// Units received.
        qty: Qty,
        /// Where they came from (`receipt` unless given).
        source: String,
    },
    /// `ship`: `{qty}`.
    Ship {
        /// Units shipped.
        qty: Qty,
    },
    /// `reserve`: `{qty, order_id}`.
    Reserve {
        /// Units to hold.
        qty: Qty,
        /// For which order.
        order_id: String,
    },
    /// `release`: `{order_id}`.
    Release {
        /// Whose reservation.
        order_id: String,
    },
    /// `consume`: `{order_id}`.
    Consume {
        /// Whose reservation.
        order_id: String,
    },
    /// `adjust`: `{on_hand, reason}` (a stocktake).
    Adjust {
        /// Units counted.
        on_hand: u64,
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveBody {
    qty: Qty,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipBody {
    qty: Qty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    qty: Qty,
    order_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderRefBody {
    order_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    on_hand: u64,
    reason: String,
}

fn order_id(id: String) -> Result<String, CommandError> {
    AggregateId::new(id.as_str()).map_err(|e| CommandError::InvalidBody(format!("order_id: {e}")))?;
    Ok(id)
}

impl StockCommand {
    /// Parses command `name` with JSON `body`.
    ///
    /// # Errors
    /// [`CommandError`]: unknown command, or a body that does not fit.
    pub fn parse(name: &str, body: &[u8]) -> Result<Self, CommandError> {
        Ok(match AggregateKind::Stock.command(name)?.name {
            "receive" => {
                let ReceiveBody { qty, source } = parse_body(body)?;
                let source = source.unwrap_or_else(|| "receipt".to_owned());
                if source.trim().is_empty() || source.len() > 200 {
                    return Err(CommandError::InvalidBody("source: must be 1 to 200 characters".into()));
                }
                StockCommand::Receive { qty, source }
            }
            "ship" => StockCommand::Ship { qty: parse_body::<ShipBody>(body)?.qty },
            "reserve" => {
                let ReserveBody { qty, order_id: id } = parse_body(body)?;
                StockCommand::Reserve { qty, order_id: order_id(id)? }
            }
            "release" => StockCommand::Release { order_id: order_id(parse_body::<OrderRefBody>(body)?.order_id)? },
            "consume" => StockCommand::Consume { order_id: order_id(parse_body::<OrderRefBody>(body)?.order_id)? },
            _ => {
                let AdjustBody { on_hand, reason } = parse_body(body)?;
                if reason.trim().is_empty() || reason.len() > 200 {
                    return Err(CommandError::InvalidBody("reason: must be 1 to 200 characters".into()));
                }
                StockCommand::Adjust { on_hand, reason }
            }
        })
    }
}

/// What happened to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum StockEvent {
    /// Units arrived. Schema v2; v1 was `{"quantity": n}` (see [`StockEvent::upcasters`]).
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
    /// An order used what it held.
    ReservationConsumed {
        /// The order.
        order_id: String,
        /// Units used.
        qty: u64,
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

impl DomainEvent for StockEvent {
    const SCHEMAS: &'static [(&'static str, u32)] = &[
        ("StockReceived", 2),
        ("StockShipped", 1),
        ("StockReserved", 1),
        ("ReservationReleased", 1),
        ("ReservationConsumed", 1),
        ("StockAdjusted", 1),
    ];

    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::StockReceived { .. } => "StockReceived",
            StockEvent::StockShipped { .. } => "StockShipped",
            StockEvent::StockReserved { .. } => "StockReserved",
            StockEvent::ReservationReleased { .. } => "ReservationReleased",
            StockEvent::ReservationConsumed { .. } => "ReservationConsumed",
            StockEvent::StockAdjusted { .. } => "StockAdjusted",
        }
    }

    /// `StockReceived` v1 `{"quantity": n}` → v2 `{"qty": n, "source": "unknown"}`.
    fn upcasters() -> Upcasters {
        Upcasters::default().with("StockReceived", 1, upcast_stock_received_v1)
    }
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
            StockError::BelowReserved { .. } => "below_reserved",
        }
    }
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;

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
            StockCommand::Receive { qty, source } => StockEvent::StockReceived { qty: qty.get(), source },
            StockCommand::Ship { qty } => {
                enough(qty)?;
                StockEvent::StockShipped { qty: qty.get() }
            }
            StockCommand::Reserve { order_id, .. } if self.reservations.contains_key(&order_id) => {
                return Err(StockError::AlreadyReserved(order_id));
            }
            StockCommand::Reserve { qty, order_id } => {
                enough(qty)?;
                StockEvent::StockReserved { order_id, qty: qty.get() }
            }
            StockCommand::Release { order_id } => StockEvent::ReservationReleased { qty: held(&order_id)?, order_id },
            StockCommand::Consume { order_id } => StockEvent::ReservationConsumed { qty: held(&order_id)?, order_id },
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
            StockEvent::StockShipped { qty } => self.on_hand = self.on_hand.saturating_sub(*qty),
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
            StockEvent::StockAdjusted { on_hand, .. } => self.on_hand = *on_hand,
        }
    }
}
