//! `due_dates`: a process manager that marks a loan overdue when its period ends with the book
//! still out. The deadline is kept by NATS (a message schedule): it fires while every library
//! process is down, and is handled once one is back.

use jetsource::Codec;
use jetsource::projection::EventView;
use jetsource_runtime::process::{Effect, Input, ProcessManager, Reply};
use jetsource_runtime::wire::CommandRequest;
use serde::{Deserialize, Serialize};

use crate::domain::LoanEvent;

/// The deadline's name.
const DUE: &str = "due";

/// Marks loans overdue after `period`.
pub struct DueDates {
    /// How long a book may stay out.
    pub period: time::Duration,
    codec: Codec<LoanEvent>,
}

impl DueDates {
    /// Loans of `period`.
    pub fn new(period: time::Duration) -> Self {
        Self { period, codec: Codec::default() }
    }
}

/// One loan, as the process manager keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Due {
    /// The book is out.
    pub open: bool,
    /// When it is due back (RFC 3339).
    pub due: Option<String>,
}

impl ProcessManager for DueDates {
    type State = Due;

    fn name(&self) -> &'static str {
        "due_dates"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.loan.>".into()]
    }

    fn key(&self, event: &EventView<'_>) -> Option<String> {
        Some(event.aggregate_id.to_owned())
    }

    fn commands_to(&self) -> Vec<&'static str> {
        vec!["loan"]
    }

    fn on(&self, state: &Due, input: Input<'_>) -> Vec<Effect<Due>> {
        match input {
            Input::Event(event) => match self.codec.decode(event.stored).map(|(_, e)| e) {
                Ok(LoanEvent::LoanOpened { .. }) => {
                    let at = event.stored.stored_at + self.period;
                    let due = jetsource::cloudevents::rfc3339(at);
                    vec![Effect::Save(Due { open: true, due: Some(due) }), Effect::Schedule { name: DUE.into(), at }]
                }
                Ok(LoanEvent::LoanClosed { .. }) => vec![Effect::Cancel { name: DUE.into() }, Effect::Finish],
                Ok(LoanEvent::LoanOverdue { .. }) | Err(_) => Vec::new(),
            },
            Input::Deadline { instance, name } if name == DUE && state.open => vec![Effect::Send {
                step: "mark_overdue".into(),
                command: CommandRequest::new("loan", instance, "mark-overdue", "{}"),
            }],
            Input::Deadline { .. } => Vec::new(),
            // Marked (or refused: returned meanwhile, or marked before): the loan is the process's no more.
            Input::Replied { reply: Reply::Done(_) | Reply::Refused(_), .. } => vec![Effect::Finish],
            Input::Replied { reply: Reply::NoAnswer(e), .. } => vec![Effect::Retry(e.message.clone())],
        }
    }
}

#[cfg(test)]
mod tests {
    use jetsource::ErrorCode;
    use jetsource_runtime::process::fixture::{Fixture, event};
    use jetsource_runtime::wire::ErrorBody;
    use serde_json::json;

    use super::*;

    fn opened() -> jetsource::StoredEvent {
        event("evt.loan.l1", "LoanOpened", json!({"book_id": "dune", "member_id": "ada"}))
    }

    #[test]
    fn an_opened_loan_is_due_after_the_period() {
        let mut loans = Fixture::new(DueDates::new(time::Duration::days(14)));
        let opened = opened();
        let step = loans.when_event(&opened);
        let at = opened.stored_at + time::Duration::days(14);
        assert_eq!(step.effects[1], Effect::Schedule { name: "due".into(), at });
        assert!(loans.state().open);
    }

    #[test]
    fn a_due_loan_still_out_is_marked_overdue_once_answered() {
        let mut loans = Fixture::new(DueDates::new(time::Duration::days(14)));
        let _ = loans.when_event(&opened());
        let _ = loans.when_deadline("l1", "due").then_sends(&["mark_overdue"]);
        let unanswered = Reply::NoAnswer(ErrorBody::new(ErrorCode::Unavailable, "lending is down"));
        assert!(matches!(loans.when_replied("mark_overdue", &unanswered).effects[..], [Effect::Retry(_)]));
        loans.when_replied("mark_overdue", &Reply::Done(json!({}))).then(&[Effect::Finish]);
    }

    #[test]
    fn a_returned_loan_cancels_its_deadline_and_is_never_marked() {
        let mut loans = Fixture::new(DueDates::new(time::Duration::days(14)));
        let _ = loans.when_event(&opened());
        let closed = event("evt.loan.l1", "LoanClosed", json!({"member_id": "ada"}));
        loans.when_event(&closed).then(&[Effect::Cancel { name: "due".into() }, Effect::Finish]);
        assert!(loans.finished());
        // A deadline that fired before the cancel reached the server finds nothing to do.
        loans = Fixture::new(DueDates::new(time::Duration::days(14)));
        loans.when_deadline("l1", "due").then_nothing();
    }
}
