//! An aggregate folded from its history, with what the command pipeline needs besides state.

use time::OffsetDateTime;

use crate::aggregate::Aggregate;
use crate::cloudevents::Attributes;
use crate::recent::RecentCommands;

/// One decoded event with where it sits in the stream.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    /// Stream sequence.
    pub seq: u64,
    /// Dense aggregate version after the event (counted on replay).
    pub version: u64,
    /// Server time it was stored.
    pub stored_at: OffsetDateTime,
    /// CloudEvents attributes, metadata included.
    pub attributes: Attributes,
    /// The upcast domain event.
    pub event: E,
}

/// An aggregate as loaded: state, dense version, OCC token and recent commands.
#[derive(Debug, Clone, Default)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// Dense version: how many events were folded (0 for a new aggregate).
    pub version: u64,
    /// Stream sequence of the last event folded (0 for a new aggregate): the OCC token.
    pub last_seq: u64,
    /// Server time of the last event, when it came from the store (an append in this process
    /// does not learn it, so time-travel reads never start from a snapshot it wrote).
    pub last_at: Option<OffsetDateTime>,
    /// The last commands recorded, for idempotent retries.
    pub recent: RecentCommands,
}

impl<A: Aggregate> Loaded<A> {
    /// Folds one more event in.
    pub(crate) fn fold(
        &mut self,
        event: &A::Event,
        event_name: &str,
        command_id: &str,
        seq: u64,
        at: Option<OffsetDateTime>,
        recent_capacity: usize,
    ) {
        self.state.apply(event);
        self.version += 1;
        self.last_seq = seq;
        self.last_at = at;
        self.recent.record(command_id, event_name, self.version, seq, recent_capacity);
    }

    /// True when the aggregate has no events.
    pub fn is_new(&self) -> bool {
        self.version == 0
    }
}
