//! The production saga's decisions, without I/O: which stock commands an order event calls
//! for, and what their answers mean for the order (`docs/contracts/domain.md`).
//!
//! - `OrderStarted`: reserve `qty × bom` of `<sku>@<warehouse>` for every line. All reserved →
//!   confirm (`ResourcesReserved`). A line refused (`insufficient_stock`) or unanswered within
//!   the bound → fail the order with the reason at once (the client learns it without waiting
//!   for a stock service that may be down), then release what was taken — and every line whose
//!   reservation went unanswered, in case it got through — retrying until each is answered.
//! - `OrderCompleted`: consume every reservation, then receive `qty` of
//!   `<product_id>@<warehouse>`.
//! - `OrderCancelled`: release every reservation.
//!
//! The state is kept between steps (and across restarts) by the saga service; each command it
//! sends has an id derived from the event that caused it, so a replayed step is answered from
//! the first outcome instead of running twice.

use serde::{Deserialize, Serialize};

use crate::order::{Order, OrderStatus, ReservedLine};
use crate::values::Sku;

/// Where a production order's saga is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The order is planned; the saga knows its lines and waits for it to start.
    #[default]
    Planned,
    /// Reservations are being asked for.
    Reserving,
    /// Every line is reserved (and the order told so).
    Reserved,
    /// A line could not be reserved: what was taken is being released.
    Compensating,
    /// Released, and the order failed.
    Failed,
    /// The order completed: reservations are being consumed, the product received.
    Completing,
    /// Consumed and received.
    Completed,
    /// The order was cancelled: reservations are being released.
    Releasing,
    /// Released after a cancel.
    Cancelled,
}

impl Phase {
    /// True when nothing is left to do.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Failed | Phase::Completed | Phase::Cancelled)
    }
}

/// Where one line of the bill of materials is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Not asked yet (or asked, and the answer is not in).
    Pending,
    /// Reserved for the order.
    Reserved,
    /// Refused by the stock (not enough of it).
    Refused,
    /// No answer within the bound.
    Unanswered,
    /// Released again.
    Released,
    /// Consumed by production.
    Consumed,
}

/// One resource of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The resource.
    pub sku: String,
    /// Its stock aggregate (`<sku>@<warehouse>`).
    pub stock_id: String,
    /// Units for the whole order (`order qty × bom qty`).
    pub qty: u64,
    /// Where it is.
    pub status: LineStatus,
}

/// Why the saga failed the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The service whose answer decided it (`stock`).
    pub service: String,
    /// Error code of that answer (`rejected`, `timeout`, `unavailable`).
    pub code: String,
    /// Stable reason (`insufficient_stock`, `timeout`, `unavailable`).
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// The answer to one stock command, as the saga sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done (or done before: a replayed outcome).
    Done,
    /// Refused for a domain reason.
    Refused {
        /// Error code (`rejected`).
        code: String,
        /// Domain reason (`insufficient_stock`, `already_reserved`, `not_reserved`).
        reason: String,
        /// The message.
        message: String,
    },
    /// No answer within the bound, or the service is not running.
    NoAnswer {
        /// `timeout` or `unavailable`.
        code: String,
        /// The message.
        message: String,
    },
}

/// A stock command the saga sends (`cmd.stock.<stock_id>.<command>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRequest {
    /// Index of the line (the product line is `lines.len()`).
    pub line: usize,
    /// The stock aggregate.
    pub stock_id: String,
    /// `reserve`, `release`, `void`, `consume` or `receive`.
    pub command: &'static str,
    /// The JSON body.
    pub body: String,
}

/// What to do once the reservations are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some lines have no answer yet.
    Wait,
    /// Everything is reserved: confirm the order.
    Confirm(Vec<ReservedLine>),
    /// Release what was taken, then fail the order.
    Compensate(Failure),
}

/// The saga of one production order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    /// The order.
    pub order_id: String,
    /// What it produces.
    pub product_id: String,
    /// How many.
    pub qty: u64,
    /// Where.
    pub warehouse: String,
    /// Where the saga is.
    pub phase: Phase,
    /// One per bill-of-materials line.
    pub lines: Vec<Line>,
    /// Why it failed, once decided (kept, so a restart decides the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Whether the product was received after completion.
    #[serde(default)]
    pub received: bool,
    /// Whether the order was told it failed (that comes first: releases may take retries).
    #[serde(default)]
    pub order_failed: bool,
    /// The conversation: the `start` command's id.
    pub correlation_id: String,
    /// Whether the order recorded how its start ended (reserved, or failed); a cancel that
    /// came first leaves it to the saga to close it once released.
    #[serde(default)]
    pub start_closed: bool,
    /// Why the order was cancelled, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
}

impl SagaState {
    /// A saga for an order that has just started, or `None` if the order is not in the
    /// `started` status any more (a cancel came first, or the event is old history).
    pub fn start(order_id: &str, order: &Order, correlation_id: &str) -> Option<Self> {
        if order.status != OrderStatus::Started {
            return None;
        }
        let lines = order
            .requirements()
            .into_iter()
            .map(|line| Line {
                stock_id: format!("{}@{}", line.sku, order.warehouse),
                sku: line.sku.as_str().to_owned(),
                qty: line.qty,
                status: LineStatus::Pending,
            })
            .collect();
        Some(Self {
            order_id: order_id.to_owned(),
            product_id: order.product_id.clone(),
            qty: order.qty,
            warehouse: order.warehouse.clone(),
            phase: Phase::Reserving,
            lines,
            failure: None,
            received: false,
            order_failed: false,
            correlation_id: correlation_id.to_owned(),
            start_closed: false,
            cancel_reason: None,
        })
    }

    /// The saga of an order just planned: its lines known, waiting for the start.
    pub fn planned(order_id: &str, order: &Order) -> Self {
        let started = Order { status: OrderStatus::Started, ..order.clone() };
        let mut saga = Self::start(order_id, &started, "").unwrap_or_default();
        saga.phase = Phase::Planned;
        saga
    }

    /// The order started, in conversation `correlation_id`: reservations are asked for.
    pub fn begin(&mut self, correlation_id: &str) {
        if self.phase == Phase::Planned {
            self.phase = Phase::Reserving;
            correlation_id.clone_into(&mut self.correlation_id);
        }
    }

    /// The requests a cancel still calls for: release what is reserved, void what is pending
    /// or unanswered.
    pub fn cancellations(&self) -> Vec<StockRequest> {
        let mut out = self.requests(LineStatus::Reserved, "release", |_| self.order_ref());
        out.extend(self.requests(LineStatus::Pending, "void", |_| self.order_ref()));
        out.extend(self.requests(LineStatus::Unanswered, "void", |_| self.order_ref()));
        out.sort_by_key(|r| r.line);
        out
    }

    /// The completion steps still to do: consume each reservation, then receive the product.
    pub fn completions(&self) -> Vec<StockRequest> {
        let mut out = self.requests(LineStatus::Reserved, "consume", |_| self.order_ref());
        if !self.received {
            out.push(StockRequest {
                line: self.lines.len(),
                stock_id: format!("{}@{}", self.product_id, self.warehouse),
                command: "receive",
                body: serde_json::json!({"qty": self.qty, "source": format!("order {}", self.order_id)}).to_string(),
            });
        }
        out
    }

    /// The reservations still to ask for.
    pub fn reservations(&self) -> Vec<StockRequest> {
        if self.phase != Phase::Reserving {
            return Vec::new();
        }
        self.requests(LineStatus::Pending, "reserve", |line| {
            serde_json::json!({"qty": line.qty, "order_id": self.order_id}).to_string()
        })
    }

    /// Records the answer to a reservation. `already_reserved` means an earlier attempt got
    /// through: the line is reserved. The first refusal becomes the failure (a refusal is more
    /// telling than a missing answer, which it replaces).
    pub fn reserved(&mut self, line: usize, answer: &Answer) {
        let Some(l) = self.lines.get_mut(line) else { return };
        let failure = |code: &str, reason: &str, message: &str| Failure {
            service: "stock".into(),
            code: code.to_owned(),
            reason: reason.to_owned(),
            message: format!("{}: {message}", l.stock_id),
        };
        let (status, failure) = match answer {
            Answer::Done => (LineStatus::Reserved, None),
            Answer::Refused { reason, .. } if reason == "already_reserved" => (LineStatus::Reserved, None),
            Answer::Refused { code, reason, message } => (LineStatus::Refused, Some(failure(code, reason, message))),
            Answer::NoAnswer { code, message } => (LineStatus::Unanswered, Some(failure(code, code, message))),
        };
        l.status = status;
        let refused = status == LineStatus::Refused;
        match (&self.failure, failure) {
            (None, Some(f)) => self.failure = Some(f),
            (Some(current), Some(f)) if refused && matches!(current.code.as_str(), "timeout" | "unavailable") => {
                self.failure = Some(f);
            }
            _ => {}
        }
    }

    /// What the answers so far call for.
    pub fn decide(&mut self) -> Decision {
        if self.phase != Phase::Reserving || self.lines.iter().any(|l| l.status == LineStatus::Pending) {
            return Decision::Wait;
        }
        if self.lines.iter().all(|l| l.status == LineStatus::Reserved) {
            return Decision::Confirm(
                self.lines
                    .iter()
                    .filter_map(|l| Sku::new(l.sku.clone()).ok().map(|sku| ReservedLine { sku, qty: l.qty }))
                    .collect(),
            );
        }
        let failure = self.failure.clone().unwrap_or_else(|| Failure {
            service: "stock".into(),
            code: "rejected".into(),
            reason: "not_reserved".into(),
            message: "a resource could not be reserved".into(),
        });
        self.phase = Phase::Compensating;
        self.failure = Some(failure.clone());
        Decision::Compensate(failure)
    }

    /// The releases compensation needs: every line reserved is released, and every line whose
    /// reservation went unanswered is voided (released if it got through after all, and
    /// refused if it is still on its way).
    pub fn compensations(&self) -> Vec<StockRequest> {
        let mut out = self.requests(LineStatus::Reserved, "release", |_| self.order_ref());
        out.extend(self.requests(LineStatus::Unanswered, "void", |_| self.order_ref()));
        out.sort_by_key(|r| r.line);
        out
    }

    /// Records the answer to a release; `not_reserved` means there was nothing to release.
    /// Returns false when the release must be tried again (no answer).
    pub fn released(&mut self, line: usize, answer: &Answer) -> bool {
        if matches!(answer, Answer::NoAnswer { .. }) {
            return false;
        }
        if let Some(l) = self.lines.get_mut(line) {
            l.status = LineStatus::Released;
        }
        true
    }

    /// Compensation is done: the order is failed.
    pub fn failed(&mut self) {
        self.phase = Phase::Failed;
    }

    /// Every line is reserved and the order knows it.
    pub fn confirmed(&mut self) {
        self.phase = Phase::Reserved;
    }

    /// The order completed: consume every reservation, then receive the product.
    pub fn complete(&mut self) -> Vec<StockRequest> {
        if matches!(self.phase, Phase::Reserved | Phase::Completing) {
            self.phase = Phase::Completing;
        } else {
            return Vec::new();
        }
        self.completions()
    }

    /// Records the answer to a consume or the receive; false when it must be tried again.
    pub fn completed_step(&mut self, line: usize, answer: &Answer) -> bool {
        if matches!(answer, Answer::NoAnswer { .. }) {
            return false;
        }
        match self.lines.get_mut(line) {
            Some(l) => l.status = LineStatus::Consumed,
            None => self.received = true,
        }
        if self.received && self.lines.iter().all(|l| l.status != LineStatus::Reserved) {
            self.phase = Phase::Completed;
        }
        true
    }

    /// The order was cancelled: release whatever is reserved (or may be).
    pub fn cancel(&mut self) -> Vec<StockRequest> {
        if self.phase.is_final() && self.phase != Phase::Cancelled {
            return Vec::new();
        }
        self.phase = Phase::Releasing;
        let out = self.cancellations();
        if out.is_empty() {
            self.phase = Phase::Cancelled;
        }
        out
    }

    /// Records the answer to a release after a cancel; false when it must be tried again.
    pub fn cancel_step(&mut self, line: usize, answer: &Answer) -> bool {
        if !self.released(line, answer) {
            return false;
        }
        if self.lines.iter().all(|l| !matches!(l.status, LineStatus::Reserved | LineStatus::Pending)) {
            self.phase = Phase::Cancelled;
        }
        true
    }

    fn order_ref(&self) -> String {
        serde_json::json!({"order_id": self.order_id}).to_string()
    }

    fn requests(&self, status: LineStatus, command: &'static str, body: impl Fn(&Line) -> String) -> Vec<StockRequest> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.status == status)
            .map(|(line, l)| StockRequest { line, stock_id: l.stock_id.clone(), command, body: body(l) })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{BomLine, Qty};

    fn started() -> Order {
        let line = |sku: &str, qty| BomLine { sku: Sku::new(sku).unwrap(), qty: Qty::new(qty).unwrap() };
        Order {
            status: OrderStatus::Started,
            product_id: "widget".into(),
            qty: 2,
            warehouse: "main".into(),
            bom: vec![line("bolt", 4), line("plate", 1)],
            ..Order::default()
        }
    }

    fn refused(reason: &str) -> Answer {
        Answer::Refused { code: "rejected".into(), reason: reason.into(), message: "no".into() }
    }

    #[test]
    fn a_started_order_reserves_qty_times_bom_per_line() {
        let saga = SagaState::start("o1", &started(), "c1").unwrap();
        let asks = saga.reservations();
        assert_eq!(asks.len(), 2);
        assert_eq!((asks[0].stock_id.as_str(), asks[0].command), ("bolt@main", "reserve"));
        assert_eq!(asks[0].body, r#"{"order_id":"o1","qty":8}"#);
        assert_eq!(asks[1].body, r#"{"order_id":"o1","qty":2}"#);
        let mut cancelled = started();
        cancelled.status = OrderStatus::Cancelled;
        assert!(SagaState::start("o1", &cancelled, "c1").is_none());
    }

    #[test]
    fn all_reserved_confirms_and_completion_consumes_then_receives() {
        let mut saga = SagaState::start("o1", &started(), "c1").unwrap();
        let answers = vec![(0, Answer::Done), (1, refused("already_reserved"))];
        for (line, answer) in &answers {
            saga.reserved(*line, answer);
        }
        let Decision::Confirm(lines) = saga.decide() else { panic!("not confirmed") };
        assert_eq!(lines.iter().map(|l| l.qty).collect::<Vec<_>>(), [8, 2]);
        saga.confirmed();
        let steps = saga.complete();
        assert_eq!(steps.iter().map(|s| s.command).collect::<Vec<_>>(), ["consume", "consume", "receive"]);
        assert_eq!(steps[2].stock_id, "widget@main");
        for step in &steps {
            assert!(saga.completed_step(step.line, &Answer::Done));
        }
        assert_eq!(saga.phase, Phase::Completed);
        assert!(saga.complete().is_empty(), "a completed saga asks for nothing more");
    }

    #[test]
    fn a_short_line_releases_what_was_taken_and_fails_with_the_reason() {
        let mut saga = SagaState::start("o1", &started(), "c1").unwrap();
        let answers = vec![(0, refused("insufficient_stock")), (1, Answer::Done)];
        for (line, answer) in &answers {
            saga.reserved(*line, answer);
        }
        let Decision::Compensate(failure) = saga.decide() else { panic!("no compensation") };
        assert_eq!((failure.reason.as_str(), failure.service.as_str()), ("insufficient_stock", "stock"));
        assert!(failure.message.starts_with("bolt@main: "), "{}", failure.message);
        let releases = saga.compensations();
        assert_eq!(releases.len(), 1);
        assert_eq!((releases[0].stock_id.as_str(), releases[0].command), ("plate@main", "release"));
        assert!(!saga.released(1, &Answer::NoAnswer { code: "timeout".into(), message: "…".into() }));
        assert!(saga.released(1, &Answer::Done));
        saga.failed();
        assert!(saga.phase.is_final());
        assert!(saga.reservations().is_empty());
    }

    #[test]
    fn an_unanswered_reservation_fails_the_order_and_is_released_in_case() {
        let mut saga = SagaState::start("o1", &started(), "c1").unwrap();
        let answers = vec![(0, Answer::Done), (1, Answer::NoAnswer { code: "timeout".into(), message: "5s".into() })];
        for (line, answer) in &answers {
            saga.reserved(*line, answer);
        }
        let Decision::Compensate(failure) = saga.decide() else { panic!("no compensation") };
        assert_eq!(failure.reason, "timeout");
        assert_eq!(saga.compensations().len(), 2, "the reserved line and the unanswered one");
    }

    #[test]
    fn a_cancel_releases_reserved_lines() {
        let mut saga = SagaState::start("o1", &started(), "c1").unwrap();
        saga.reserved(0, &Answer::Done);
        saga.reserved(1, &Answer::Done);
        saga.confirmed();
        let releases = saga.cancel();
        assert_eq!(releases.len(), 2);
        assert!(saga.cancel_step(0, &refused("not_reserved")));
        assert!(saga.cancel_step(1, &Answer::Done));
        assert_eq!(saga.phase, Phase::Cancelled);
    }
}
