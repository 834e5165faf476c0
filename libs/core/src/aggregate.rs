//! The aggregate contract: pure, synchronous decisions over a state folded from events.

use std::fmt::Debug;

use serde::{Serialize, de::DeserializeOwned};

use crate::event::DomainEvent;
use crate::id::AggregateId;
use crate::scope::{Decision, Scope, Seen, Tag};

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
    /// service may write `tag.<name>.>` and nothing else under `tag`.
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
