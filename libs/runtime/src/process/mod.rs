//! Process managers: long-running processes that react to events, command replies and
//! deadlines by deciding effects.
//!
//! The contract is pure and synchronous ([`ProcessManager::on`]): given the state of one
//! process instance and an [`Input`], return [`Effect`]s — send a command, schedule or cancel a
//! deadline, save the state, finish. The [`engine`] owns everything else: the state in the KV
//! bucket `processes` (key `<name>.<instance>`, compare-and-set), the order of inputs per
//! instance, commands over NATS with idempotency keys derived from what caused them (an input
//! handled twice — after a crash, a takeover — sends the same ids, and the command services
//! answer the first outcome), deadlines kept by NATS as message schedules on the `TIMERS` stream
//! (they fire while every process is down, and are handled once they are back), retries and
//! parking through the one consumer loop, and any number of instances on standby.
//! [`fixture`] tests a process manager with given/when/then, without NATS.
//!
//! ```no_run
//! use jetsource::projection::EventView;
//! use jetsource_runtime::process::{Effect, Input, ProcessManager};
//! use jetsource_runtime::wire::CommandRequest;
//!
//! /// Reminds a member of a loan that is still open a week after it was opened.
//! struct Reminders;
//!
//! impl ProcessManager for Reminders {
//!     type State = bool; // open?
//!     fn name(&self) -> &'static str { "reminders" }
//!     fn subjects(&self) -> Vec<String> { vec!["evt.loan.>".into()] }
//!     fn key(&self, event: &EventView<'_>) -> Option<String> { Some(event.aggregate_id.to_owned()) }
//!     fn on(&self, open: &bool, input: Input<'_>) -> Vec<Effect<bool>> {
//!         match input {
//!             Input::Event(e) if e.name == "LoanOpened" => vec![
//!                 Effect::Save(true),
//!                 Effect::Schedule { name: "remind".into(), at: e.stored.stored_at + time::Duration::days(7) },
//!             ],
//!             Input::Event(e) if e.name == "LoanClosed" => vec![Effect::Cancel { name: "remind".into() }, Effect::Finish],
//!             Input::Deadline { instance, .. } if *open => vec![Effect::Send {
//!                 step: "remind".into(),
//!                 command: CommandRequest::new("loan", instance, "remind", "{}"),
//!             }],
//!             _ => Vec::new(),
//!         }
//!     }
//! }
//! ```

use std::fmt::Debug;

use jetsource::projection::EventView;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{CommandRequest, ErrorBody};

pub mod engine;
pub mod fixture;

pub use engine::{ProcessConfig, ProcessEngine};

/// The KV bucket holding every process manager's state.
pub const BUCKET: &str = "processes";

/// The stream holding deadlines: schedules on `sched.<process>.<instance>.<deadline>` and the
/// messages they produce on `timer.<process>.<instance>.<deadline>`.
pub const TIMERS: &str = "TIMERS";

/// A process manager: which events it follows, which instance each belongs to, and what it
/// decides.
pub trait ProcessManager: Send + Sync + 'static {
    /// The state of one instance (`Default` before its first input).
    type State: Serialize + DeserializeOwned + Clone + Default + Debug + PartialEq + Send + Sync + 'static;

    /// Its name: the service, its consumers (`<name>`, `<name>_deadlines`), state keys and
    /// deadline subjects. A subject token.
    fn name(&self) -> &'static str;

    /// The event subjects it follows (`evt.order.>`).
    fn subjects(&self) -> Vec<String>;

    /// The instance `event` belongs to (a subject token, such as the aggregate id), or `None`
    /// when the event does not concern it.
    fn key(&self, event: &EventView<'_>) -> Option<String>;

    /// What `input` calls for, given the instance's `state`. Pure: no I/O, no clock (a
    /// deadline's time comes from the input, such as the event's `stored_at`).
    fn on(&self, state: &Self::State, input: Input<'_>) -> Vec<Effect<Self::State>>;

    /// Aggregate types it sends commands to (its NATS user may publish `cmd.<type>.>`).
    fn commands_to(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Hears a command's answer as it comes (for metrics); does nothing by default.
    fn replied(&self, metrics: &jetsource_telemetry::Metrics, step: &str, reply: &Reply) {
        let _ = (metrics, step, reply);
    }

    /// Hears what an input changed once it is carried through (for metrics and logs, in the
    /// input's trace); does nothing by default.
    fn observed(
        &self,
        metrics: &jetsource_telemetry::Metrics,
        input: &Input<'_>,
        before: &Self::State,
        after: &Self::State,
    ) {
        let _ = (metrics, input, before, after);
    }
}

/// What a process manager reacts to.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An event it follows.
    Event(&'a EventView<'a>),
    /// The answer to a command it sent in `step`.
    Replied {
        /// The step, as named in [`Effect::Send`].
        step: &'a str,
        /// The answer.
        reply: &'a Reply,
    },
    /// A deadline it scheduled came due.
    Deadline {
        /// The instance.
        instance: &'a str,
        /// The deadline, as named in [`Effect::Schedule`].
        name: &'a str,
    },
}

/// A command's answer, as a process manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done (or done before: a replayed outcome); the reply body.
    Done(serde_json::Value),
    /// Refused: the error reply (`rejected` with its reason, `invalid`, `not_found`, ...).
    Refused(ErrorBody),
    /// No answer: the service is down or did not answer within the bound (it may have acted).
    NoAnswer(ErrorBody),
}

/// What a process manager decides; the engine carries the effects out in order.
// A command is the effect that matters; effects live in a short list, boxing would only cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<S> {
    /// Send a command; its answer comes back as [`Input::Replied`] with this `step`, before
    /// the effects after this one. Its idempotency key is derived from the input that caused
    /// it and the step, so name steps uniquely per input (`reserve-3`).
    Send {
        /// The step's name.
        step: String,
        /// The command (the engine sets its idempotency key, correlation and causation).
        command: CommandRequest,
    },
    /// Have [`Input::Deadline`] come at `at` (replacing a deadline of the same name).
    Schedule {
        /// The deadline's name (a subject token).
        name: String,
        /// When.
        at: time::OffsetDateTime,
    },
    /// Drop a scheduled deadline (one that already came is the process manager's to ignore).
    Cancel {
        /// The deadline's name.
        name: String,
    },
    /// Keep this as the instance's state (written to the bucket before the next command is
    /// sent, and once the input is carried through, retried or parked).
    Save(S),
    /// The input can never be handled as it is (it does not decode): park it, and the
    /// instance's later inputs behind it, until an operator retries.
    Park(String),
    /// This input cannot be carried through now (a command went unanswered): the effects so
    /// far stand, and the input comes again after a backoff.
    Retry(String),
    /// The instance is over: its state is deleted.
    Finish,
}
