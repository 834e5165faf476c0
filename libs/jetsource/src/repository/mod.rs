//! The command pipeline: load (snapshot + tail) and whatever else the command's scope names,
//! decide, append with the expected sequences in one batch, answer. Conflicts reload and retry
//! a bounded number of times.

mod load;
mod loaded;
mod slots;
mod wide;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::Instrument;

pub use load::Until;
pub use loaded::{Envelope, Loaded};

use crate::aggregate::Aggregate;
use crate::cloudevents::Attributes;
use crate::codec::Codec;
use crate::error::{CommandError, StoreError};
use crate::event::{DomainEvent, encode_data};
use crate::id::AggregateId;
use crate::metadata::{CommandContext, validate_command_id};
use crate::recent::{CommandRecord, EventRef};
use crate::snapshot::SnapshotStore;
use crate::store::{EventStore, NewEvent, Write};
use slots::Slots;

/// How the repository retries, caches and snapshots.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// Appends tried before answering `conflict`.
    pub max_attempts: u32,
    /// Write a snapshot whenever the version crosses a multiple of this (0: never).
    pub snapshot_every: u64,
    /// Aggregates whose state stays cached in memory (their OCC token keeps it honest).
    pub cache_capacity: usize,
    /// Commands remembered per aggregate for idempotent retries.
    pub recent_commands: usize,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        Self { max_attempts: 10, snapshot_every: 100, cache_capacity: 10_000, recent_commands: 32 }
    }
}

/// What a command did: the command reply (`docs/contracts/nats.md`) minus the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// The command id.
    pub command_id: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Dense version after the command.
    pub version: u64,
    /// Stream sequence of the aggregate's last event: the consistency token.
    pub stream_seq: u64,
    /// The events recorded.
    pub events: Vec<EventRef>,
    /// True when the command had run before and this is its first outcome, replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Hears what the command pipeline does, for metrics. Every method defaults to nothing.
pub trait Observer: Send + Sync {
    /// A command's events were appended in `elapsed`.
    fn appended(&self, aggregate_type: &'static str, events: usize, elapsed: Duration) {
        let _ = (aggregate_type, events, elapsed);
    }
    /// An append met an optimistic-concurrency conflict (the command is retried).
    fn conflict(&self, aggregate_type: &'static str) {
        let _ = aggregate_type;
    }
    /// A command id seen before answered its first outcome.
    fn replayed(&self, aggregate_type: &'static str) {
        let _ = aggregate_type;
    }
    /// An aggregate was loaded from the store (not the cache), replaying `events` events.
    fn loaded(&self, aggregate_type: &'static str, events: u64, elapsed: Duration) {
        let _ = (aggregate_type, events, elapsed);
    }
}

struct NoObserver;
impl Observer for NoObserver {}

/// Loads and runs commands against aggregates of type `A`.
pub struct Repository<A: Aggregate> {
    store: EventStore,
    snapshots: Option<SnapshotStore>,
    config: RepositoryConfig,
    codec: Codec<A::Event>,
    slots: Slots<Loaded<A>>,
    observer: Arc<dyn Observer>,
    /// Full `ce-type` of each event name, built once.
    event_types: HashMap<&'static str, String>,
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store`, with snapshots if a snapshot store is given.
    pub fn new(store: EventStore, snapshots: Option<SnapshotStore>, config: RepositoryConfig) -> Self {
        let slots = Slots::new(config.cache_capacity);
        let event_types = A::Event::SCHEMAS.iter().map(|(name, _)| (*name, store.event_type(A::TYPE, name))).collect();
        Self { store, snapshots, config, codec: Codec::new(), slots, observer: Arc::new(NoObserver), event_types }
    }

    /// Reports appends, conflicts, replays and loads to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The event store underneath.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Drops the cached states (tests and operators use it to force reloads).
    pub fn clear_cache(&self) {
        self.slots.clear_idle();
    }

    /// Runs `command` against aggregate `id`.
    ///
    /// A command id seen among the aggregate's recent commands answers its first outcome
    /// without running again; the server's `Nats-Msg-Id` dedupe covers the race of two
    /// deliveries of the same command.
    ///
    /// # Errors
    /// See [`CommandError`]: each variant says who must act.
    pub async fn execute(
        &self,
        id: &AggregateId,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        validate_command_id(&ctx.command_id).map_err(|e| CommandError::Invalid(e.to_string()))?;
        let span = tracing::debug_span!("jetsource.execute", aggregate_type = A::TYPE, aggregate_id = %id, command_id = %ctx.command_id);
        self.execute_locked(id, command, ctx).instrument(span).await
    }

    async fn execute_locked(
        &self,
        id: &AggregateId,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        let subject = self.store.subject(A::TYPE, id);
        let scope = A::scope(id, &command);
        let slot = self.slots.get(id);
        let mut cached = slot.lock().await;
        let mut distrust_snapshot = false;
        // Contenders for one aggregate spread out: up to 0.4 ms, doubling to 12.8 ms.
        let mut conflicts =
            crate::Backoff::new(Duration::from_micros(400), Duration::from_micros(12_800)).with_jitter();
        for attempt in 1..=self.config.max_attempts {
            let (mut current, fresh) = match cached.take() {
                Some(state) => (state, false),
                None if distrust_snapshot => (self.replay(id).await?, true),
                None => (self.load(id).await?, true),
            };
            if let Some(prior) = current.recent.find(&ctx.command_id) {
                self.observer.replayed(A::TYPE);
                let outcome = self.outcome(id, ctx, prior, true);
                *cached = self.keep(current);
                return Ok(outcome);
            }
            let wide = self.read_scope(id, &scope).await?;
            // Any answer that is not confirmed by an append must come from current state.
            let decision = match ctx.expected_version {
                Some(expected) if expected != current.version => {
                    Err(CommandError::PreconditionFailed { expected, actual: current.version })
                }
                _ => {
                    let seen = wide.seen(id);
                    let decision = current.state.decide(command.clone(), &seen);
                    let outside = seen.outside_scope();
                    if !outside.is_empty() {
                        return Err(CommandError::Internal(format!(
                            "{} decided on {} its scope does not name; nothing would check them",
                            A::TYPE,
                            outside.join(", ")
                        )));
                    }
                    decision.map_err(CommandError::Rejected)
                }
            };
            let decision = match decision {
                Ok(decision) if !decision.is_empty() => decision,
                answer => {
                    let stale = !fresh && self.store.last_seq(&subject).await? != current.last_seq;
                    if stale || !self.others_current(&wide).await? {
                        continue; // a cached state was stale: decide again on reloaded state
                    }
                    let outcome = answer.map(|_| CommandOutcome {
                        command_id: ctx.command_id.clone(),
                        aggregate_type: A::TYPE.to_owned(),
                        aggregate_id: id.to_string(),
                        version: current.version,
                        stream_seq: current.last_seq,
                        events: Vec::new(),
                        duplicate: false,
                    });
                    *cached = self.keep(current);
                    return outcome;
                }
            };
            let events = decision.events.clone();
            let wide::Planned { mut writes, others } = self.plan(&current, &wide, decision, ctx, id)?;
            self.seal(&mut writes).await?;
            let started = Instant::now();
            let appended = self.store.append_all(writes).await;
            match appended {
                Ok(appended) if !appended.duplicate => {
                    self.observer.appended(A::TYPE, events.len(), started.elapsed());
                    for wide::Written { id: other, mut loaded, events: other_events, start } in others {
                        let before = loaded.version;
                        self.fold_all(&mut loaded, &other_events, ctx, appended.first_seq + start as u64);
                        if self.crossed_snapshot_mark(before, loaded.version) {
                            self.snapshot(&other, &loaded);
                        }
                        self.remember_other(&other, loaded);
                    }
                    let before = current.version;
                    self.fold_all(&mut current, &events, ctx, appended.last_seq + 1 - events.len() as u64);
                    let outcome = match current.recent.find(&ctx.command_id) {
                        Some(record) => self.outcome(id, ctx, record, false),
                        None => {
                            return Err(CommandError::Internal(
                                "recorded events are not in the recent commands".into(),
                            ));
                        }
                    };
                    if self.crossed_snapshot_mark(before, current.version) {
                        self.snapshot(id, &current);
                    }
                    *cached = self.keep(current);
                    return Ok(outcome);
                }
                // Stored before (R3 dedupe), or moved on (OCC; on R1 also a retried command):
                // reload, which finds either the earlier outcome or the newer state.
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::Duplicate { .. }) => {
                    tracing::debug!(attempt, "append conflict; reloading");
                    self.observer.conflict(A::TYPE);
                    self.forget_others(&wide);
                    // A state ahead of the stream comes from a snapshot (or cache) of a history
                    // that no longer exists (a restored or recreated stream): replay instead.
                    if self.store.last_seq(&subject).await? < current.last_seq {
                        tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id, "snapshot ahead of the event stream; replaying");
                        distrust_snapshot = true;
                    }
                    conflicts.wait().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Conflict { attempts: self.config.max_attempts })
    }

    /// Folds a command's `events`, stored from stream sequence `first_seq` on, into `loaded`.
    fn fold_all(&self, loaded: &mut Loaded<A>, events: &[A::Event], ctx: &CommandContext, first_seq: u64) {
        for (offset, event) in events.iter().enumerate() {
            let seq = first_seq + offset as u64;
            loaded.fold(event, event.event_type(), &ctx.command_id, seq, None, self.config.recent_commands);
        }
    }

    /// Seals the personal values of events before they are stored (`docs/adr/0017`).
    async fn seal(&self, writes: &mut [Write]) -> Result<(), CommandError<A::Error>> {
        for write in writes.iter_mut().filter(|w| crate::keyring::holds_plain(&w.event().data)) {
            let sealed = self.store.sealed(write.event().data.to_vec()).await?;
            write.event_mut().data = sealed.into();
        }
        Ok(())
    }

    fn keep(&self, loaded: Loaded<A>) -> Option<Loaded<A>> {
        (self.config.cache_capacity > 0).then_some(loaded)
    }

    /// One event of aggregate `id` at dense `version`, the `index`-th of its command's batch.
    fn encode_one(
        &self,
        id: &AggregateId,
        version: u64,
        event: &A::Event,
        stamp: &wide::Stamp<'_>,
        index: usize,
    ) -> Result<NewEvent, CommandError<A::Error>> {
        let data = encode_data(event).map_err(CommandError::Internal)?;
        let attributes = Attributes {
            id: format!("{}:{index}", stamp.command_id),
            source: self.store.source().to_owned(),
            event_type: self
                .event_types
                .get(event.event_type())
                .cloned()
                .unwrap_or_else(|| self.store.event_type(A::TYPE, event.event_type())),
            subject: id.to_string(),
            time: stamp.time.clone(),
            schema_version: event.schema_version(),
            aggregate_version: Some(version),
            metadata: stamp.metadata.clone(),
        };
        Ok(NewEvent::new(attributes, data.into()))
    }

    fn outcome(
        &self,
        id: &AggregateId,
        ctx: &CommandContext,
        record: &CommandRecord,
        duplicate: bool,
    ) -> CommandOutcome {
        CommandOutcome {
            command_id: ctx.command_id.clone(),
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: id.to_string(),
            version: record.last_version(),
            stream_seq: record.last_seq(),
            events: record.events(),
            duplicate,
        }
    }

    fn crossed_snapshot_mark(&self, before: u64, after: u64) -> bool {
        let every = self.config.snapshot_every;
        every > 0 && after / every > before / every
    }
}
