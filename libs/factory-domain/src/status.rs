//! How events change the status of the command that began a conversation (`docs/contracts/domain.md`): an
//! asynchronous command (`order start`) is `accepted` at once, then `completed` when the saga
//! reserved everything or `failed` when it could not; any command becomes `failed` when a view
//! had to park one of its events. The commands view and the notifier share this reading, so
//! the status and the notification always say the same.

use serde::{Deserialize, Serialize};

use crate::order::OrderEvent;

/// What an event means for the command its conversation began with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `completed` or `failed`.
    pub status: &'static str,
    /// The service whose answer decided it (`stock`, `saga`, `projector`).
    pub service: String,
    /// Error code (`rejected`, `timeout`, `unavailable`, `projection_failed`), or `completed`.
    pub code: String,
    /// The domain reason of a failure (`insufficient_stock`).
    pub reason: Option<String>,
    /// What happened.
    pub message: String,
}

impl Outcome {
    /// True for a failure.
    pub fn failed(&self) -> bool {
        self.status == "failed"
    }
}

/// An asynchronous error (or outcome) as the status document lists it and the notification
/// carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, jetsource_core::schemars::JsonSchema)]
#[schemars(crate = "jetsource_core::schemars")]
pub struct Report {
    /// The service that reported it.
    pub service: String,
    /// Error code (`rejected`, `timeout`, `unavailable`, `projection_failed`), or `completed`.
    pub code: String,
    /// Domain reason of a failure (`insufficient_stock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened.
    pub message: String,
    /// The trace it happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When it was recorded (RFC 3339).
    pub at: String,
}

impl Outcome {
    /// The report of this outcome, in trace `trace_id`, recorded `at`.
    pub fn report(self, trace_id: Option<String>, at: String) -> Report {
        Report { service: self.service, code: self.code, reason: self.reason, message: self.message, trace_id, at }
    }
}

/// The outcome an order event reports, if any (`source` names the service that recorded it).
pub fn of_order_event(event: &OrderEvent, source: &str) -> Option<Outcome> {
    match event {
        OrderEvent::ResourcesReserved { lines } => Some(Outcome {
            status: "completed",
            service: source.to_owned(),
            code: "completed".into(),
            reason: None,
            message: format!("every resource is reserved ({} lines)", lines.len()),
        }),
        OrderEvent::OrderFailed { reason, message, service } => Some(Outcome {
            status: "failed",
            service: if service.is_empty() { source.to_owned() } else { service.clone() },
            code: match reason.as_str() {
                "timeout" | "unavailable" => reason.clone(),
                _ => "rejected".into(),
            },
            reason: Some(reason.clone()),
            message: message.clone(),
        }),
        OrderEvent::StartAbandoned { reason } => Some(Outcome {
            status: "failed",
            service: source.to_owned(),
            code: "rejected".into(),
            reason: Some("cancelled".into()),
            message: format!("the order was cancelled while its resources were being reserved: {reason}"),
        }),
        _ => None,
    }
}

/// The outcome of `parked_by` (the projector, for view `view`; or a process manager, whose
/// name `view` then is) parking event `event_type` (seq `seq` of `subject`) of the command, for
/// `reason`.
pub fn of_parked(parked_by: &str, view: &str, event_type: &str, seq: u64, subject: &str, reason: &str) -> Outcome {
    let (code, message) = if parked_by == "projector" {
        ("projection_failed", format!("view {view} could not apply {event_type} (seq {seq}) of {subject}: {reason}"))
    } else {
        ("process_failed", format!("{view} could not handle {event_type} (seq {seq}) of {subject}: {reason}"))
    };
    Outcome { status: "failed", service: parked_by.to_owned(), code: code.into(), reason: None, message }
}

/// The service name in a `ce-source` (`/factory/saga` → `saga`).
pub fn source_service(source: &str) -> &str {
    source.rsplit('/').next().unwrap_or(source)
}
