//! The aggregate contract: pure, synchronous decisions over a state folded from events.

use std::collections::HashMap;
use std::fmt::Debug;

use serde::{Serialize, de::DeserializeOwned};

use crate::event::DomainEvent;
use crate::id::AggregateId;

use crate::scope::{Decision, Scope, Tag, Tagged};

/// An event-sourced aggregate: a state that decides on commands and folds its own events.
///
/// The trait is synchronous on purpose: an aggregate has no I/O and no clock. Whatever it needs
/// from outside is looked up before and put into the command. `apply` holds no rule and cannot
/// fail, so replaying history always works.
pub trait Aggregate: Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type name: a subject token (`evt.<TYPE>.<id>`) and a `ce-type` segment.
    /// Changing it orphans every event already stored under the old name.
    const TYPE: &'static str;

    /// Version of the serialised state kept in snapshots. Bump it whenever the state's shape
    /// changes: older snapshots are then ignored, the aggregate is replayed and re-snapshotted.
    const STATE_VERSION: u32 = 1;

    /// The names of the tags its events are recorded under (see [`Aggregate::tags`]): its
    /// service may write `tag.<name>.>` and nothing else under `tag`. A type that declares
    /// none records no tags ([`Aggregate::tags`] is not asked).
    const TAGS: &'static [&'static str] = &[];

    /// What the aggregate can be asked to do. Cloned when a conflict makes the framework retry.
    type Command: Clone + Send + Sync + 'static;
    /// What it records.
    type Event: DomainEvent;
    /// Why it refuses a command.
    type Error: DomainError;

    /// Decides on a command against the current state: the events to record, or a refusal.
    ///
    /// # Errors
    /// The domain's refusal, returned to the caller as `rejected` (or `not_found`).
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// What `command` to aggregate `id` needs besides this aggregate: other aggregates of
    /// this type (a transfer's destination) and tags whose events it reads (who holds a
    /// name). Empty by default: the command decides over this aggregate alone.
    fn scope(id: &AggregateId, command: &Self::Command) -> Scope {
        let _ = (id, command);
        Scope::default()
    }

    /// Decides on a command over this aggregate and what its [`Aggregate::scope`] named. The
    /// events of every aggregate are appended in one atomic batch, on condition that none of
    /// the aggregates and tags `seen` holds has changed; otherwise everything is reloaded and
    /// the command decided again. Calls [`Aggregate::handle`] by default.
    ///
    /// # Errors
    /// The domain's refusal, as for [`Aggregate::handle`].
    fn decide(&self, command: Self::Command, seen: &Seen<Self>) -> Result<Decision<Self::Event>, Self::Error> {
        let _ = seen;
        self.handle(command).map(Decision::own)
    }

    /// The tags `event` of aggregate `id` is recorded under, given the state before it (none
    /// by default). A tagged event is also written, in the same batch, to one subject per tag,
    /// where decisions read it (see [`Scope::tag`]).
    fn tags(&self, id: &AggregateId, event: &Self::Event) -> Vec<Tag> {
        let _ = (id, event);
        Vec::new()
    }

    /// The pattern its ids match (a JSON Schema `pattern`, for documents); keep it in step
    /// with [`Aggregate::check_id`].
    const ID_PATTERN: &'static str = "^[A-Za-z0-9_@-]{1,128}$";

    /// Checks an id beyond the common alphabet (stock ids are `<sku>@<warehouse>`).
    ///
    /// # Errors
    /// Why the id is not one of this type.
    fn check_id(id: &crate::AggregateId) -> Result<(), String> {
        let _ = id;
        Ok(())
    }
}

/// A domain refusal with a stable, machine-readable reason (`insufficient_stock`).
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// The stable reason code clients match on.
    fn reason(&self) -> &'static str;

    /// True when the refusal means "no such aggregate", answered as `not_found` instead of
    /// `rejected`.
    fn is_not_found(&self) -> bool {
        false
    }
}

/// What a decision sees: its own aggregate's id, the states of the other aggregates in its
/// [`Scope`] and the events under its tags, all as of one read. Asking for anything the scope
/// did not name is recorded: the framework refuses such a decision (nothing would check it).
#[derive(Debug)]
pub struct Seen<A: Aggregate> {
    id: AggregateId,
    aggregates: HashMap<AggregateId, A>,
    tags: HashMap<Tag, Vec<Tagged<A::Event>>>,
    outside: std::sync::Mutex<Vec<String>>,
}

impl<A: Aggregate> Seen<A> {
    /// What a decision over aggregate `id` saw: the states of the other aggregates and the
    /// events under each tag. The framework builds it; tests of a domain may too.
    pub fn new(
        id: AggregateId,
        aggregates: HashMap<AggregateId, A>,
        tags: HashMap<Tag, Vec<Tagged<A::Event>>>,
    ) -> Self {
        Self { id, aggregates, tags, outside: std::sync::Mutex::new(Vec::new()) }
    }

    /// A decision that saw nothing besides its own aggregate.
    pub fn alone(id: AggregateId) -> Self {
        Self::new(id, HashMap::new(), HashMap::new())
    }

    /// The id of the aggregate the command was sent to.
    pub fn id(&self) -> &AggregateId {
        &self.id
    }

    /// The state of another aggregate of the scope (a new, empty one when it has no events).
    /// One the scope did not name reads as new, and makes the decision refused.
    pub fn aggregate(&self, id: &AggregateId) -> std::borrow::Cow<'_, A> {
        match self.aggregates.get(id) {
            Some(state) => std::borrow::Cow::Borrowed(state),
            None => {
                self.outside(format!("aggregate {id}"));
                std::borrow::Cow::Owned(A::default())
            }
        }
    }

    /// The events under `tag`, oldest first. A tag the scope did not name reads as empty, and
    /// makes the decision refused.
    pub fn tagged(&self, tag: &Tag) -> &[Tagged<A::Event>] {
        match self.tags.get(tag) {
            Some(events) => events,
            None => {
                self.outside(format!("tag {tag}"));
                &[]
            }
        }
    }

    /// What the decision asked for that its scope did not name (empty when it kept to it).
    pub fn outside_scope(&self) -> Vec<String> {
        self.outside.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn outside(&self, what: String) {
        if let Ok(mut outside) = self.outside.lock() {
            outside.push(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_outside_the_scope_is_recorded() {
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
        struct Nothing;
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        enum NoEvent {}
        impl crate::DomainEvent for NoEvent {
            const SCHEMAS: &'static [(&'static str, u32)] = &[];
            fn event_type(&self) -> &'static str {
                match *self {}
            }
        }
        #[derive(Debug, thiserror::Error)]
        #[error("never")]
        struct Never;
        impl crate::DomainError for Never {
            fn reason(&self) -> &'static str {
                "never"
            }
        }
        impl Aggregate for Nothing {
            const TYPE: &'static str = "nothing";
            type Command = ();
            type Event = NoEvent;
            type Error = Never;
            fn handle(&self, (): ()) -> Result<Vec<NoEvent>, Never> {
                Ok(Vec::new())
            }
            fn apply(&mut self, event: &NoEvent) {
                match *event {}
            }
        }
        let a = AggregateId::new("a").unwrap();
        let named = Tag::new("t", &a);
        let seen = Seen::<Nothing>::new(
            a.clone(),
            HashMap::from([(a.clone(), Nothing)]),
            HashMap::from([(named.clone(), Vec::new())]),
        );
        seen.aggregate(&a);
        seen.tagged(&named);
        assert!(seen.outside_scope().is_empty());
        seen.aggregate(&AggregateId::new("b").unwrap());
        seen.tagged(&Tag::new("t", &AggregateId::new("z").unwrap()));
        assert_eq!(seen.outside_scope(), ["aggregate b", "tag t=z"]);
    }
}
