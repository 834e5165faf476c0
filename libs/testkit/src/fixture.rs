//! Given/when/then for aggregates: synchronous, no server, one line per expectation.

use jetsource::{Aggregate, DomainError};

/// An aggregate built from past events, ready to receive a command.
#[derive(Debug)]
#[must_use = "a fixture does nothing until `when` is called"]
pub struct AggregateFixture<A: Aggregate> {
    state: A,
}

/// The result of `when`, to be checked.
#[derive(Debug)]
#[must_use = "the outcome must be checked with a `then_*` method"]
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> AggregateFixture<A> {
    /// An aggregate with no history.
    pub fn given_no_events() -> Self {
        Self { state: A::default() }
    }

    /// An aggregate that recorded `events`.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(&event);
        }
        Self { state }
    }

    /// Sends `command`.
    pub fn when(self, command: A::Command) -> Then<A> {
        let result = self.state.handle(command);
        Then { state: self.state, result }
    }
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq,
{
    /// Asserts that exactly `expected` were recorded; returns the state after them.
    ///
    /// # Panics
    /// When the command was refused or recorded other events.
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "recorded events differ");
                let mut state = self.state;
                for event in &events {
                    state.apply(event);
                }
                state
            }
            Err(e) => panic!("expected events {expected:?}, but the command was refused: {e} ({})", e.reason()),
        }
    }

    /// Asserts that the command was refused with `reason`.
    ///
    /// # Panics
    /// When it was accepted or refused for another reason.
    pub fn then_expect_rejection(self, reason: &str) {
        match self.result {
            Ok(events) => panic!("expected rejection {reason:?}, but the command recorded {events:?}"),
            Err(e) => assert_eq!(e.reason(), reason, "refused for another reason: {e}"),
        }
    }

    /// Hands the raw result to `check`.
    pub fn inspect(self, check: impl FnOnce(&Result<Vec<A::Event>, A::Error>)) {
        check(&self.result);
    }
}
