//! Given/when/then for process managers, without NATS: the state is kept as the engine keeps
//! it (the last `Save`), each step returns the effects decided.
//!
//! ```
//! use jetsource_runtime::process::fixture::{Fixture, event};
//! # use jetsource_runtime::process::{Effect, Input, ProcessManager};
//! # use jetsource::projection::EventView;
//! # struct Counter;
//! # impl ProcessManager for Counter {
//! #     type State = u32;
//! #     fn name(&self) -> &'static str { "counter" }
//! #     fn subjects(&self) -> Vec<String> { vec!["evt.thing.>".into()] }
//! #     fn key(&self, e: &EventView<'_>) -> Option<String> { Some(e.aggregate_id.into()) }
//! #     fn on(&self, n: &u32, _: Input<'_>) -> Vec<Effect<u32>> { vec![Effect::Save(n + 1)] }
//! # }
//! let mut saga = Fixture::new(Counter).given(41);
//! saga.when_event(&event("evt.thing.a", "Happened", serde_json::json!({}))).then(&[Effect::Save(42)]);
//! assert_eq!(*saga.state(), 42);
//! ```

use jetsource::StoredEvent;
use jetsource::projection::EventView;

use super::{Effect, Input, ProcessManager, Reply};

/// A process manager under test, with the state of one instance.
pub struct Fixture<P: ProcessManager> {
    pm: P,
    state: P::State,
    finished: bool,
}

/// What one step decided.
#[must_use = "a step's effects are meant to be checked"]
#[derive(Debug)]
pub struct Step<S> {
    /// The effects, in order.
    pub effects: Vec<Effect<S>>,
}

impl<P: ProcessManager> Fixture<P> {
    /// `pm` with a fresh instance (the default state).
    pub fn new(pm: P) -> Self {
        Self { pm, state: P::State::default(), finished: false }
    }

    /// Starts from `state`.
    pub fn given(mut self, state: P::State) -> Self {
        self.state = state;
        self
    }

    /// The state after the steps so far.
    pub fn state(&self) -> &P::State {
        &self.state
    }

    /// Whether a step finished the instance.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Which instance `event` is for.
    pub fn key(&self, event: &StoredEvent) -> Option<String> {
        self.pm.key(&EventView::new(event))
    }

    /// `event` comes.
    pub fn when_event(&mut self, event: &StoredEvent) -> Step<P::State> {
        let view = EventView::new(event);
        let effects = self.pm.on(&self.state, Input::Event(&view));
        self.keep(effects)
    }

    /// The command of `step` was answered with `reply`.
    pub fn when_replied(&mut self, step: &str, reply: &Reply) -> Step<P::State> {
        let effects = self.pm.on(&self.state, Input::Replied { step, reply });
        self.keep(effects)
    }

    /// Deadline `name` of `instance` came.
    pub fn when_deadline(&mut self, instance: &str, name: &str) -> Step<P::State> {
        let effects = self.pm.on(&self.state, Input::Deadline { instance, name });
        self.keep(effects)
    }

    fn keep(&mut self, effects: Vec<Effect<P::State>>) -> Step<P::State> {
        for effect in &effects {
            match effect {
                Effect::Save(state) => self.state = state.clone(),
                Effect::Finish => self.finished = true,
                _ => {}
            }
        }
        Step { effects }
    }
}

impl<S: PartialEq + std::fmt::Debug> Step<S> {
    /// Asserts the effects are exactly `expected`.
    #[track_caller]
    pub fn then(self, expected: &[Effect<S>]) {
        assert_eq!(self.effects, expected);
    }

    /// The steps of the commands it sends, in order.
    pub fn sends(&self) -> Vec<&str> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { step, .. } => Some(step.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Asserts it sends the commands of `steps`, in order.
    #[track_caller]
    pub fn then_sends(self, steps: &[&str]) -> Self {
        assert_eq!(self.sends(), steps, "{:?}", self.effects);
        self
    }

    /// Asserts it decides nothing.
    #[track_caller]
    pub fn then_nothing(self) {
        assert!(self.effects.is_empty(), "{:?}", self.effects);
    }
}

/// A stored event on `subject` named `name` (`ce-type` `app.<type>.<name>`) with `data`,
/// stored now, for the steps of a fixture.
pub fn event(subject: &str, name: &str, data: serde_json::Value) -> StoredEvent {
    let aggregate_type = subject.split('.').nth(1).unwrap_or_default();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-type", format!("app.{aggregate_type}.{name}"));
    headers.insert("ce-id", format!("{subject}:{name}"));
    StoredEvent {
        subject: subject.to_owned(),
        seq: 1,
        stored_at: time::OffsetDateTime::now_utc(),
        headers,
        data: serde_json::to_vec(&data).unwrap_or_default().into(),
    }
}
