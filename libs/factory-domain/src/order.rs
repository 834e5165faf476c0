//! Production orders: planned for a defined product, started (the saga then reserves the bill
//! of materials), completed or cancelled; failed when resources are short.

use jetsource_core::command::fields;
use jetsource_core::schemars::JsonSchema;
use jetsource_core::{Aggregate, Command, DomainError, DomainEvent, Personal};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::values::{BomLine, Qty, Sku, Warehouse};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource_core::schemars")]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not planned yet.
    #[default]
    None,
    /// Planned, not started.
    Planned,
    /// Started; the saga is reserving resources.
    Started,
    /// Every resource is reserved.
    Reserved,
    /// Reservation failed; what was taken was released.
    Failed,
    /// Produced.
    Completed,
    /// Cancelled.
    Cancelled,
}

impl OrderStatus {
    /// The status as written in views and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::None => "none",
            OrderStatus::Planned => "planned",
            OrderStatus::Started => "started",
            OrderStatus::Reserved => "reserved",
            OrderStatus::Failed => "failed",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

/// What was reserved of one resource, in total for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource_core::schemars")]
#[serde(deny_unknown_fields)]
pub struct ReservedLine {
    /// The resource.
    pub sku: Sku,
    /// Units reserved (`order qty × bom qty`).
    pub qty: u64,
}

/// The order aggregate's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Life-cycle status.
    pub status: OrderStatus,
    /// What to produce.
    pub product_id: String,
    /// How many.
    pub qty: u64,
    /// Where resources are taken and the product is put.
    pub warehouse: String,
    /// The product's bill of materials when the order was planned (per unit).
    pub bom: Vec<BomLine>,
    /// What the saga reserved.
    pub reserved: Vec<ReservedLine>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Its start ended without reservations (cancelled while they were under way).
    #[serde(default)]
    pub start_abandoned: bool,
    /// Who asked for it (a customer id), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// How to reach them: personal data of the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Personal<Contact>>,
}

/// Who asked for an order, as `plan` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource_core::schemars")]
#[serde(deny_unknown_fields)]
pub struct Requester {
    /// The customer's id: a pseudonym, the data subject `factory forget` names.
    #[serde(deserialize_with = "fields::aggregate_id")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_@-]{1,128}$"))]
    pub customer: String,
    /// Their name (1 to 200 characters).
    #[serde(deserialize_with = "fields::text")]
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// How to reach them (1 to 200 characters).
    #[serde(deserialize_with = "fields::text")]
    #[schemars(length(min = 1, max = 200))]
    pub email: String,
}

/// How to reach an order's customer: personal data, stored sealed with the customer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource_core::schemars")]
pub struct Contact {
    /// Their name.
    pub name: String,
    /// How to reach them.
    pub email: String,
}

impl Order {
    /// The resources one order needs: `qty × bom`, per SKU.
    pub fn requirements(&self) -> Vec<ReservedLine> {
        // `plan` refuses orders whose product would overflow.
        self.bom
            .iter()
            .map(|line| ReservedLine { sku: line.sku.clone(), qty: line.qty.get().saturating_mul(self.qty) })
            .collect()
    }
}

/// The product as the service found it when planning (looked up before `handle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    /// Retired products cannot be planned.
    pub retired: bool,
    /// Its bill of materials.
    pub bom: Vec<BomLine>,
}

/// What an order can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Command)]
#[command(aggregate = Order)]
pub enum OrderCommand {
    /// Plans an order for a defined, unretired product.
    #[command(example = r#"{"product_id": "widget", "qty": 2, "warehouse": "main"}"#)]
    Plan {
        /// Product to produce.
        #[serde(deserialize_with = "fields::aggregate_id")]
        #[schemars(regex(pattern = r"^[A-Za-z0-9_@-]{1,128}$"))]
        product_id: String,
        /// How many.
        qty: Qty,
        /// Where.
        warehouse: Warehouse,
        /// Who asked for it: a customer id and their contact (personal data, stored sealed with
        /// the customer's key; `factory forget <customer>` erases it everywhere).
        #[serde(default)]
        requester: Option<Requester>,
        /// The product, looked up by the service before `handle` (none: not defined).
        #[command(lookup)]
        product: Option<ProductInfo>,
    },
    /// Starts the order: accepted at once; the saga reserves the resources and the status
    /// becomes `completed` or `failed`.
    #[command(asynchronous)]
    Start,
    /// Completes an order whose resources are reserved.
    Complete,
    /// Cancels an order that is not finished.
    #[command(example = r#"{"reason": "customer withdrew"}"#)]
    Cancel {
        /// Why (1 to 200 characters).
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        reason: String,
    },
    /// Saga only (over NATS, not HTTP): every line is reserved.
    #[command(internal, example = r#"{"lines": [{"sku": "bolt", "qty": 8}]}"#)]
    ConfirmReserved {
        /// What was reserved.
        lines: Vec<ReservedLine>,
    },
    /// Saga only (over NATS, not HTTP): the order cannot be produced.
    #[command(
        internal,
        example = r#"{"reason": "insufficient_stock", "message": "bolt@main: 2 available", "service": "stock"}"#
    )]
    Fail {
        /// Stable reason (`insufficient_stock`).
        reason: String,
        /// What happened.
        message: String,
        /// The service whose answer failed it (`stock`).
        service: String,
    },
    /// Saga only (over NATS, not HTTP): the order was cancelled while its resources were being
    /// reserved; its `start` ends here (its status `failed`, reason `cancelled`).
    #[command(internal, example = r#"{"reason": "customer withdrew"}"#)]
    AbandonStart {
        /// Why the order was cancelled.
        reason: String,
    },
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    /// Planned.
    OrderPlanned {
        /// Product to produce.
        product_id: String,
        /// How many.
        qty: u64,
        /// Where.
        warehouse: String,
        /// The product's bill of materials at planning time (per unit).
        bom: Vec<BomLine>,
        /// Who asked for it (a customer id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        /// How to reach them: personal data of the customer, sealed with their key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<Personal<Contact>>,
    },
    /// Started: the saga reserves the resources now.
    OrderStarted {},
    /// Every resource is reserved.
    ResourcesReserved {
        /// What was reserved.
        lines: Vec<ReservedLine>,
    },
    /// The order cannot be produced (the saga releases what was reserved).
    OrderFailed {
        /// Stable reason (`insufficient_stock`).
        reason: String,
        /// What happened.
        message: String,
        /// The service whose answer failed it (`stock`); empty in events written before it
        /// was recorded.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        service: String,
    },
    /// Produced: the saga consumes the reservations and receives the product.
    OrderCompleted {},
    /// Cancelled: the saga releases the reservations.
    OrderCancelled {
        /// Why.
        reason: String,
    },
    /// The order was cancelled while its resources were being reserved: its start ended
    /// without them (recorded by the saga once it released what it took).
    StartAbandoned {
        /// Why the order was cancelled.
        reason: String,
    },
}

/// Why an order refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrderError {
    /// Any command but `plan` on an order that was never planned.
    #[error("no such order")]
    NotFound,
    /// `plan` twice.
    #[error("the order is already planned")]
    AlreadyPlanned,
    /// `plan` for a product that is not defined.
    #[error("product {0} is not defined")]
    UnknownProduct(String),
    /// `plan` for a retired product.
    #[error("product {0} is retired")]
    ProductRetired(String),
    /// `plan` whose resources (`qty × bom`) cannot be counted.
    #[error("{0} units of this product need more resources than can be counted")]
    QuantityTooLarge(u64),
    /// A command the order's status does not allow.
    #[error("cannot {command} an order that is {status}")]
    InvalidStatus {
        /// The command.
        command: &'static str,
        /// The status.
        status: &'static str,
    },
}

impl DomainError for OrderError {
    fn reason(&self) -> &'static str {
        match self {
            OrderError::NotFound => "not_found",
            OrderError::AlreadyPlanned => "already_planned",
            OrderError::UnknownProduct(_) => "unknown_product",
            OrderError::ProductRetired(_) => "product_retired",
            OrderError::QuantityTooLarge(_) => "quantity_too_large",
            OrderError::InvalidStatus { .. } => "invalid_status",
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, OrderError::NotFound)
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus as S;
        let refuse = |command| Err(OrderError::InvalidStatus { command, status: self.status.as_str() });
        let event = match (command, self.status) {
            (OrderCommand::Plan { .. }, status) if status != S::None => return Err(OrderError::AlreadyPlanned),
            (OrderCommand::Plan { product_id, product: None, .. }, _) => {
                return Err(OrderError::UnknownProduct(product_id));
            }
            (OrderCommand::Plan { product_id, product: Some(p), .. }, _) if p.retired => {
                return Err(OrderError::ProductRetired(product_id));
            }
            (OrderCommand::Plan { qty, product: Some(p), .. }, _)
                if p.bom.iter().any(|line| line.qty.get().checked_mul(qty.get()).is_none()) =>
            {
                return Err(OrderError::QuantityTooLarge(qty.get()));
            }
            (OrderCommand::Plan { product_id, qty, warehouse, requester, product: Some(p) }, _) => {
                OrderEvent::OrderPlanned {
                    product_id,
                    qty: qty.get(),
                    warehouse: warehouse.as_str().to_owned(),
                    bom: p.bom,
                    customer: requester.as_ref().map(|r| r.customer.clone()),
                    contact: requester.map(|r| Personal::new(r.customer, Contact { name: r.name, email: r.email })),
                }
            }
            (_, S::None) => return Err(OrderError::NotFound),
            (OrderCommand::Start, S::Planned) => OrderEvent::OrderStarted {},
            (OrderCommand::Start, _) => return refuse("start"),
            (OrderCommand::Complete, S::Reserved) => OrderEvent::OrderCompleted {},
            (OrderCommand::Complete, _) => return refuse("complete"),
            (OrderCommand::Cancel { reason }, S::Planned | S::Started | S::Reserved) => {
                OrderEvent::OrderCancelled { reason }
            }
            (OrderCommand::Cancel { .. }, _) => return refuse("cancel"),
            (OrderCommand::ConfirmReserved { lines }, S::Started) => OrderEvent::ResourcesReserved { lines },
            (OrderCommand::ConfirmReserved { .. }, _) => return refuse("confirm reservations of"),
            (OrderCommand::Fail { reason, message, service }, S::Started) => {
                OrderEvent::OrderFailed { reason, message, service }
            }
            (OrderCommand::Fail { .. }, _) => return refuse("fail"),
            (OrderCommand::AbandonStart { reason }, S::Cancelled)
                if !self.start_abandoned && self.reserved.is_empty() =>
            {
                OrderEvent::StartAbandoned { reason }
            }
            (OrderCommand::AbandonStart { .. }, _) => return refuse("abandon the start of"),
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlanned { product_id, qty, warehouse, bom, customer, contact } => {
                self.status = OrderStatus::Planned;
                self.product_id = product_id.clone();
                self.qty = *qty;
                self.warehouse = warehouse.clone();
                self.bom = bom.clone();
                self.customer = customer.clone();
                self.contact = contact.clone();
            }
            OrderEvent::OrderStarted {} => self.status = OrderStatus::Started,
            OrderEvent::ResourcesReserved { lines } => {
                self.status = OrderStatus::Reserved;
                self.reserved = lines.clone();
            }
            OrderEvent::OrderFailed { reason, .. } => {
                self.status = OrderStatus::Failed;
                self.reason = Some(reason.clone());
            }
            OrderEvent::OrderCompleted {} => self.status = OrderStatus::Completed,
            OrderEvent::OrderCancelled { reason } => {
                self.status = OrderStatus::Cancelled;
                self.reason = Some(reason.clone());
            }
            OrderEvent::StartAbandoned { .. } => self.start_abandoned = true,
        }
    }
}
