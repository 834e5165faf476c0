//! The five views of the factory and how each event changes them.

use std::collections::BTreeMap;
use std::time::Duration;

use factory_domain::order::{OrderEvent, OrderStatus};
use factory_domain::product::ProductEvent;
use factory_domain::status;
use factory_domain::stock::StockEvent;
use factory_domain::{BomLine, StockId};
use jetsource::id::escape_kv_token;
use jetsource::projection::{EventParked, EventView, Projection};
use jetsource::schemars::JsonSchema;
use jetsource::{AggregateId, Codec};
use serde::{Deserialize, Serialize};

fn version_of(event: &EventView<'_>) -> u64 {
    jetsource::cloudevents::aggregate_version(&event.stored.headers).ok().flatten().unwrap_or(0)
}

fn decode<E: jetsource::DomainEvent>(codec: &Codec<E>, event: &EventView<'_>) -> Result<E, String> {
    codec.decode(event.stored).map(|(_, e)| e).map_err(|e| e.to_string())
}

/// `stock`: one document per `<sku>@<warehouse>` (key `<sku>=<warehouse>`).
#[derive(Default)]
pub struct StockView {
    codec: Codec<StockEvent>,
}

/// A `stock` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct StockDoc {
    /// The SKU.
    pub sku: String,
    /// The warehouse.
    pub warehouse: String,
    /// Units there.
    pub on_hand: u64,
    /// Units held for orders.
    pub reserved: u64,
    /// `on_hand − reserved`.
    pub available: u64,
    /// Reservations by order.
    pub reservations: BTreeMap<String, u64>,
    /// Dense version of the stock aggregate.
    pub version: u64,
}

/// Applies a stock event to on-hand and reservations.
fn fold_stock(on_hand: &mut u64, reservations: &mut BTreeMap<String, u64>, event: &StockEvent) {
    match event {
        StockEvent::StockReceived { qty, .. } | StockEvent::StockTransferredIn { qty, .. } => *on_hand += qty,
        StockEvent::StockShipped { qty } | StockEvent::StockTransferredOut { qty, .. } => {
            *on_hand = on_hand.saturating_sub(*qty);
        }
        StockEvent::StockReserved { order_id, qty } => {
            reservations.insert(order_id.clone(), *qty);
        }
        StockEvent::ReservationReleased { order_id, .. } => {
            reservations.remove(order_id);
        }
        StockEvent::ReservationConsumed { order_id, qty } => {
            reservations.remove(order_id);
            *on_hand = on_hand.saturating_sub(*qty);
        }
        StockEvent::StockAdjusted { on_hand: counted, .. } => *on_hand = *counted,
        StockEvent::ReservationVoided { .. } => {}
    }
}

impl Projection for StockView {
    type Doc = StockDoc;

    fn name(&self) -> &'static str {
        "stock"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.stock.>".into()]
    }

    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        let id = AggregateId::new(event.aggregate_id).map_err(|e| e.to_string())?;
        Ok(vec![id.kv_token()])
    }

    fn apply(&self, event: &EventView<'_>, _key: &str, doc: &mut StockDoc) -> Result<(), String> {
        let stock = decode(&self.codec, event)?;
        let id = StockId::parse(event.aggregate_id)?;
        doc.sku = id.sku.to_string();
        doc.warehouse = id.warehouse.to_string();
        fold_stock(&mut doc.on_hand, &mut doc.reservations, &stock);
        doc.reserved = doc.reservations.values().sum();
        doc.available = doc.on_hand.saturating_sub(doc.reserved);
        doc.version = version_of(event);
        Ok(())
    }
}

/// `warehouse`: one document per warehouse with its SKUs.
#[derive(Default)]
pub struct WarehouseView {
    codec: Codec<StockEvent>,
}

/// One SKU in a warehouse document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct WarehouseLine {
    /// Units there.
    pub on_hand: u64,
    /// Units held.
    pub reserved: u64,
    /// Units free.
    pub available: u64,
    /// Reservations by order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reservations: BTreeMap<String, u64>,
}

/// A `warehouse` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct WarehouseDoc {
    /// The warehouse.
    pub warehouse: String,
    /// Its SKUs.
    pub skus: BTreeMap<String, WarehouseLine>,
}

impl Projection for WarehouseView {
    type Doc = WarehouseDoc;

    fn name(&self) -> &'static str {
        "warehouse"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.stock.>".into()]
    }

    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        Ok(vec![StockId::parse(event.aggregate_id)?.warehouse.to_string()])
    }

    fn apply(&self, event: &EventView<'_>, _key: &str, doc: &mut WarehouseDoc) -> Result<(), String> {
        let stock = decode(&self.codec, event)?;
        let id = StockId::parse(event.aggregate_id)?;
        doc.warehouse = id.warehouse.to_string();
        let line = doc.skus.entry(id.sku.to_string()).or_default();
        fold_stock(&mut line.on_hand, &mut line.reservations, &stock);
        line.reserved = line.reservations.values().sum();
        line.available = line.on_hand.saturating_sub(line.reserved);
        Ok(())
    }
}

/// `orders`: one document per production order.
#[derive(Default)]
pub struct OrdersView {
    codec: Codec<OrderEvent>,
}

/// An `orders` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct OrderDoc {
    /// The order id.
    pub order_id: String,
    /// What it produces.
    pub product_id: String,
    /// How many.
    pub qty: u64,
    /// Where.
    pub warehouse: String,
    /// Life-cycle status.
    pub status: OrderStatus,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// What happened, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// Who asked for it (a customer id), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// How to reach them: personal data, kept sealed as the event holds it (answers open it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<jetsource::Personal<factory_domain::order::Contact>>,
    /// Dense version of the order aggregate.
    pub version: u64,
}

impl Projection for OrdersView {
    type Doc = OrderDoc;

    fn name(&self) -> &'static str {
        "orders"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.order.>".into()]
    }

    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        Ok(vec![AggregateId::new(event.aggregate_id).map_err(|e| e.to_string())?.kv_token()])
    }

    fn apply(&self, event: &EventView<'_>, _key: &str, doc: &mut OrderDoc) -> Result<(), String> {
        doc.order_id = event.aggregate_id.to_owned();
        match decode(&self.codec, event)? {
            OrderEvent::OrderPlanned { product_id, qty, warehouse, customer, contact, .. } => {
                doc.product_id = product_id;
                doc.qty = qty;
                doc.warehouse = warehouse;
                doc.status = OrderStatus::Planned;
                doc.customer = customer;
                doc.contact = contact;
            }
            OrderEvent::OrderStarted {} => doc.status = OrderStatus::Started,
            OrderEvent::ResourcesReserved { .. } => doc.status = OrderStatus::Reserved,
            OrderEvent::OrderFailed { reason, message, .. } => {
                doc.status = OrderStatus::Failed;
                doc.failure_reason = Some(reason);
                doc.failure_message = Some(message);
            }
            OrderEvent::OrderCompleted {} => doc.status = OrderStatus::Completed,
            OrderEvent::OrderCancelled { reason } => {
                doc.status = OrderStatus::Cancelled;
                doc.failure_reason = Some(reason);
            }
            OrderEvent::StartAbandoned { .. } => {} // still cancelled; its start's status says so
        }
        doc.version = version_of(event);
        Ok(())
    }
}

/// `products`: one document per product.
#[derive(Default)]
pub struct ProductsView {
    codec: Codec<ProductEvent>,
}

/// A `products` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct ProductDoc {
    /// The product id.
    pub product_id: String,
    /// Display name.
    pub name: String,
    /// Bill of materials.
    pub bom: Vec<BomLine>,
    /// Retired?
    pub retired: bool,
    /// Dense version of the product aggregate.
    pub version: u64,
}

impl Projection for ProductsView {
    type Doc = ProductDoc;

    fn name(&self) -> &'static str {
        "products"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.product.>".into()]
    }

    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        Ok(vec![AggregateId::new(event.aggregate_id).map_err(|e| e.to_string())?.kv_token()])
    }

    fn apply(&self, event: &EventView<'_>, _key: &str, doc: &mut ProductDoc) -> Result<(), String> {
        doc.product_id = event.aggregate_id.to_owned();
        match decode(&self.codec, event)? {
            ProductEvent::ProductDefined { name, bom } => {
                doc.name = name;
                doc.bom = bom;
            }
            ProductEvent::BomChanged { bom } => doc.bom = bom,
            ProductEvent::ProductRetired {} => doc.retired = true,
        }
        doc.version = version_of(event);
        Ok(())
    }
}

/// `commands`: the status of every command, by command id, kept for 25 hours. The events of
/// commands sent on a command's behalf (by the saga) and the facts of views that parked its
/// events are listed under it too, and move its status on (see [`factory_domain::status`]).
#[derive(Default)]
pub struct CommandsView {
    orders: Codec<OrderEvent>,
}

/// One event of a command, as in command replies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct CommandEvent {
    /// Event name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Dense version.
    pub version: u64,
    /// Stream sequence.
    pub seq: u64,
    /// `<type>/<id>` of the aggregate, for events recorded on the command's behalf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
}

/// An asynchronous error of a command (the notification carries the same).
pub type CommandErrorDoc = status::Report;

/// A `commands` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct CommandDoc {
    /// The command id.
    pub command_id: String,
    /// `succeeded`; `accepted` for asynchronous commands, then `completed` or `failed`.
    pub status: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Its events.
    pub events: Vec<CommandEvent>,
    /// Stream sequence of its last event.
    pub stream_seq: u64,
    /// The trace it ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When it was recorded (RFC 3339).
    pub at: String,
    /// Asynchronous errors, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<CommandErrorDoc>,
}

/// Events that mean their command was accepted to finish asynchronously.
const ACCEPTED_BY: &[&str] = &["OrderStarted"];

impl Projection for CommandsView {
    type Doc = CommandDoc;

    fn name(&self) -> &'static str {
        "commands"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.>".into()]
    }

    fn max_age(&self) -> Option<Duration> {
        Some(Duration::from_secs(25 * 3600))
    }

    fn indexed(&self) -> bool {
        false
    }

    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        let command_id = event.command_id();
        let correlation_id = event.correlation_id();
        let mut keys = Vec::with_capacity(2);
        if !command_id.is_empty() && event.aggregate_type != EventParked::AGGREGATE_TYPE {
            keys.push(escape_kv_token(command_id));
        }
        if !correlation_id.is_empty() && correlation_id != command_id {
            keys.push(escape_kv_token(correlation_id));
        }
        Ok(keys)
    }

    fn apply(&self, event: &EventView<'_>, key: &str, doc: &mut CommandDoc) -> Result<(), String> {
        let own = event.aggregate_type != EventParked::AGGREGATE_TYPE && key == escape_kv_token(event.command_id());
        if !own {
            return self.apply_related(event, doc);
        }
        let attributes = event.attributes()?;
        doc.command_id = event.command_id().to_owned();
        doc.aggregate_type = event.aggregate_type.to_owned();
        doc.aggregate_id = event.aggregate_id.to_owned();
        if doc.status.is_empty() {
            doc.status = "succeeded".into();
        }
        if ACCEPTED_BY.contains(&event.name) {
            doc.status = "accepted".into();
        }
        doc.events.push(CommandEvent {
            event_type: event.name.to_owned(),
            version: version_of(event),
            seq: event.seq(),
            aggregate: None,
        });
        doc.stream_seq = event.seq();
        doc.trace_id = attributes.metadata.trace.trace_id().map(str::to_owned);
        doc.at = attributes.time;
        Ok(())
    }
}

impl CommandsView {
    /// An event recorded on the command's behalf (its correlation id is the command's id):
    /// listed under it, and its outcome moves the command's status on.
    fn apply_related(&self, event: &EventView<'_>, doc: &mut CommandDoc) -> Result<(), String> {
        let attributes = event.attributes()?;
        if doc.command_id.is_empty() {
            doc.command_id = attributes.metadata.correlation_id.clone();
            doc.status = "accepted".into();
        }
        let outcome = if event.aggregate_type == EventParked::AGGREGATE_TYPE {
            let parked: EventParked = serde_json::from_slice(&event.stored.data).map_err(|e| e.to_string())?;
            let by = status::source_service(&attributes.source);
            Some(status::of_parked(by, &parked.view, &parked.event_type, parked.seq, &parked.subject, &parked.reason))
        } else if event.aggregate_type == "order" {
            let source = status::source_service(&attributes.source);
            status::of_order_event(&decode(&self.orders, event)?, source)
        } else {
            None
        };
        doc.events.push(CommandEvent {
            event_type: event.name.to_owned(),
            version: version_of(event),
            seq: event.seq(),
            aggregate: Some(format!("{}/{}", event.aggregate_type, event.aggregate_id)),
        });
        doc.stream_seq = doc.stream_seq.max(event.seq());
        if let Some(outcome) = outcome {
            doc.status = outcome.status.to_owned();
            if outcome.failed() {
                doc.errors
                    .push(outcome.report(attributes.metadata.trace.trace_id().map(str::to_owned), attributes.time));
            }
        }
        Ok(())
    }
}
