//! Commands beyond one aggregate (ADR 18): reading a command's [`Scope`] — the other
//! aggregates and the tagged events — and turning a [`Decision`] into one atomic batch in
//! which every aggregate and every tag read carries its expectation.

use std::collections::{HashMap, HashSet};

use crate::aggregate::Aggregate;
use crate::aggregate::Seen;
use crate::cloudevents;
use crate::error::{CommandError, StoreError};
use crate::id::AggregateId;
use crate::metadata::{CommandContext, Metadata};
use crate::scope::{Decision, Scope, Tag, Tagged};
use crate::store::{Expect, NewEvent, Write};

use super::{Loaded, Repository};

/// What a decision read besides its own aggregate, with the stream positions its
/// expectations are built from.
pub(super) struct Wide<A: Aggregate> {
    /// Other aggregates, as loaded.
    others: Vec<(AggregateId, Loaded<A>)>,
    /// Whether any of them came from this process's cache (and may be stale).
    cached: bool,
    /// Each tag read.
    tags: Vec<TagRead<A::Event>>,
}

/// One tag as read: its events and the stream sequence of the last one (0: none).
struct TagRead<E> {
    tag: Tag,
    last_seq: u64,
    events: Vec<Tagged<E>>,
}

/// Another aggregate a decision wrote: its state before, its events, and the index of its
/// first write in the batch.
pub(super) struct Written<A: Aggregate> {
    pub(super) id: AggregateId,
    pub(super) loaded: Loaded<A>,
    pub(super) events: Vec<A::Event>,
    pub(super) start: usize,
}

impl<A: Aggregate> Wide<A> {
    fn empty() -> Self {
        Self { others: Vec::new(), cached: false, tags: Vec::new() }
    }

    /// What the decision over `id` sees.
    pub(super) fn seen(&self, id: &AggregateId) -> Seen<A> {
        let aggregates = self.others.iter().map(|(id, loaded)| (id.clone(), loaded.state.clone())).collect();
        let tags = self.tags.iter().map(|read| (read.tag.clone(), read.events.clone())).collect();
        Seen::new(id.clone(), aggregates, tags)
    }
}

/// What every event of one command carries, built once per command: its command id (the
/// prefix of the event ids), its time and its metadata.
pub(super) struct Stamp<'a> {
    pub(super) command_id: &'a str,
    pub(super) time: String,
    pub(super) metadata: Metadata,
}

/// The batch a decision came to, and where each aggregate's events sit in it.
pub(super) struct Planned<A: Aggregate> {
    pub(super) writes: Vec<Write>,
    /// Each other aggregate written.
    pub(super) others: Vec<Written<A>>,
}

impl<A: Aggregate> Repository<A> {
    /// Reads what `scope` names besides aggregate `id`: nothing (and no round trip) for a
    /// single-aggregate command.
    pub(super) async fn read_scope(&self, id: &AggregateId, scope: &Scope) -> Result<Wide<A>, StoreError> {
        if scope.aggregates.len() + scope.tags.len() >= crate::store::MAX_BATCH {
            return Err(StoreError::TooLarge(format!(
                "a command may read at most {} aggregates and tags besides its own; this one names {}",
                crate::store::MAX_BATCH - 1,
                scope.aggregates.len() + scope.tags.len()
            )));
        }
        let mut wide = Wide::empty();
        for other in scope.aggregates.iter().filter(|other| *other != id) {
            // A cached state is used if no command holds it; its expectation keeps it honest.
            let cached = self.slots.get(other).try_lock().ok().and_then(|slot| slot.clone());
            wide.cached |= cached.is_some();
            let loaded = match cached {
                Some(loaded) => loaded,
                None => self.load(other).await?,
            };
            wide.others.push((other.clone(), loaded));
        }
        for tag in &scope.tags {
            // Copies interleave many aggregates' versions and are never compacted: read them as
            // stored, without the gap checks of an aggregate's history.
            let mut stored = Vec::new();
            self.store
                .read_hot(&self.store.tag_subject(tag), 1, usize::MAX, |event| {
                    stored.push(event);
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .await?;
            let last_seq = stored.last().map_or(0, |s| s.seq);
            let mut events = Vec::with_capacity(stored.len());
            let own_type = self.store.event_type(A::TYPE, "");
            for stored in stored {
                let attributes = stored.attributes()?;
                if !attributes.event_type.starts_with(&own_type) {
                    return Err(stored.undecodable(format!(
                        "tag {tag} holds a {} event; a tag holds the events of the one type that declares it ({})",
                        attributes.event_type,
                        A::TYPE
                    )));
                }
                let aggregate_id = AggregateId::new(attributes.subject.as_str())
                    .map_err(|e| stored.undecodable(format!("ce-subject: {e}")))?;
                let (_, event) = self.decode_event(&stored)?;
                events.push(Tagged { aggregate_id, event });
            }
            wide.tags.push(TagRead { tag: tag.clone(), last_seq, events });
        }
        Ok(wide)
    }

    /// Whether every other aggregate read from the cache is still current (an answer that is
    /// not confirmed by an append must not come from a stale state).
    pub(super) async fn others_current(&self, wide: &Wide<A>) -> Result<bool, StoreError> {
        if !wide.cached {
            return Ok(true);
        }
        for (other, loaded) in &wide.others {
            if self.store.last_seq(&self.store.subject(A::TYPE, other)).await? != loaded.last_seq {
                self.forget_others(wide);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Drops the cached states of the other aggregates (after a conflict: one of them may be
    /// stale).
    pub(super) fn forget_others(&self, wide: &Wide<A>) {
        for (other, _) in &wide.others {
            if let Ok(mut slot) = self.slots.get(other).try_lock() {
                *slot = None;
            }
        }
    }

    /// Caches the state of another aggregate a command just wrote, unless a command holds it.
    pub(super) fn remember_other(&self, id: &AggregateId, loaded: Loaded<A>) {
        if self.config.cache_capacity > 0
            && let Ok(mut slot) = self.slots.get(id).try_lock()
        {
            *slot = Some(loaded);
        }
    }

    /// The batch for `decision`: every tag copy first, then the other aggregates' events, the
    /// own aggregate's events last (so the batch's last sequence is its consistency token and
    /// its events are contiguous). Each aggregate written expects its loaded sequence on its
    /// first event; each tag read, and each aggregate read but not written, expects its read
    /// position on a message of a subject that carries no other expectation.
    pub(super) fn plan(
        &self,
        current: &Loaded<A>,
        wide: &Wide<A>,
        decision: Decision<A::Event>,
        ctx: &CommandContext,
        id: &AggregateId,
    ) -> Result<Planned<A>, CommandError<A::Error>> {
        let Decision { events, others } = decision;
        if events.is_empty() {
            return Err(CommandError::Internal(
                "a decision that records events on other aggregates records one on its own too: it holds the command's record"
                    .into(),
            ));
        }
        let stamp = Stamp { command_id: &ctx.command_id, time: cloudevents::now_rfc3339(), metadata: ctx.metadata() };
        let mut tag_writes = Vec::new();
        let mut blocks: Vec<(AggregateId, Vec<NewEvent>)> = Vec::new();
        let mut written_others = Vec::new();
        let mut index = 0;
        for (other, other_events) in others.into_iter().filter(|(_, events)| !events.is_empty()) {
            if other == *id {
                return Err(CommandError::Internal("a decision names its own aggregate among the others".into()));
            }
            let loaded = match wide.others.iter().find(|(known, _)| *known == other) {
                Some((_, loaded)) => loaded.clone(),
                None => {
                    return Err(CommandError::Internal(format!(
                        "a decision records events on {other}, which its scope does not name"
                    )));
                }
            };
            let encoded = self.encode_tagged(&other, &loaded, &other_events, &stamp, &mut index, &mut tag_writes)?;
            blocks.push((other.clone(), encoded));
            written_others.push((other, loaded, other_events));
        }
        let own = self.encode_tagged(id, current, &events, &stamp, &mut index, &mut tag_writes)?;
        blocks.push((id.clone(), own));

        let mut writes = tag_writes;
        let mut expecting: HashSet<String> = HashSet::new();
        let mut starts = HashMap::new();
        for (aggregate, encoded) in blocks {
            let subject = self.store.subject(A::TYPE, &aggregate);
            let last_seq = if aggregate == *id {
                current.last_seq
            } else {
                written_others.iter().find(|(o, _, _)| *o == aggregate).map_or(0, |(_, loaded, _)| loaded.last_seq)
            };
            starts.insert(aggregate, writes.len());
            for (n, event) in encoded.into_iter().enumerate() {
                let write = Write::new(subject.clone(), event);
                writes.push(if n == 0 { write.expecting(Expect { filter: None, last_seq }) } else { write });
            }
            expecting.insert(subject);
        }
        // The conditions: each tag read, and each aggregate read but not written.
        let mut conditions: Vec<(String, u64)> =
            wide.tags.iter().map(|read| (self.store.tag_subject(&read.tag), read.last_seq)).collect();
        for (other, loaded) in &wide.others {
            if !starts.contains_key(other) {
                conditions.push((self.store.subject(A::TYPE, other), loaded.last_seq));
            }
        }
        // The server checks an expectation before the batch's own writes, and refuses one whose
        // subject the batch wrote earlier (10164): a condition on a subject the batch writes
        // rides on its first write there, or on a free message before it.
        let first_write = |writes: &[Write], filter: &str| writes.iter().position(|w| w.subject() == filter);
        conditions.sort_by_key(|(filter, _)| first_write(&writes, filter).is_none());
        for (filter, last_seq) in conditions {
            let free = |w: &Write| !expecting.contains(w.subject());
            let first = first_write(&writes, &filter);
            let before = first.map_or(writes.len(), |i| i + 1);
            let carrier = first.filter(|&i| free(&writes[i])).or_else(|| writes[..before].iter().position(free));
            let Some(carrier) = carrier else {
                return Err(CommandError::Internal(format!(
                    "the condition on {filter} has no message to ride on: a batch carries one expectation per subject, \
                     checked before the batch's own writes, so a decision writes a tagged event per tag or aggregate \
                     it only reads"
                )));
            };
            expecting.insert(writes[carrier].subject().to_owned());
            let write = writes.remove(carrier);
            writes.insert(carrier, write.expecting(Expect { filter: Some(filter), last_seq }));
        }
        let others = written_others
            .into_iter()
            .map(|(id, loaded, events)| {
                let start = starts[&id];
                Written { id, loaded, events, start }
            })
            .collect();
        Ok(Planned { writes, others })
    }

    /// Encodes the events of aggregate `id` (at `loaded`) with dense versions, the batch-wide
    /// `index` in their ids, and pushes a copy of each tagged one to `tag_writes`. A type that
    /// declares no tags records none: its state is not folded a second time for them.
    fn encode_tagged(
        &self,
        id: &AggregateId,
        loaded: &Loaded<A>,
        events: &[A::Event],
        stamp: &Stamp<'_>,
        index: &mut usize,
        tag_writes: &mut Vec<Write>,
    ) -> Result<Vec<NewEvent>, CommandError<A::Error>> {
        let mut state = (!A::TAGS.is_empty()).then(|| loaded.state.clone());
        let mut encoded = Vec::with_capacity(events.len());
        for (n, event) in events.iter().enumerate() {
            let new = self.encode_one(id, loaded.version + 1 + n as u64, event, stamp, *index)?;
            *index += 1;
            if let Some(state) = state.as_mut() {
                let tags: std::collections::BTreeSet<Tag> = state.tags(id, event).into_iter().collect();
                for tag in tags {
                    if !A::TAGS.contains(&tag.name()) {
                        return Err(CommandError::Internal(format!(
                            "{} tags an event {tag}, but its TAGS do not declare {:?}",
                            A::TYPE,
                            tag.name()
                        )));
                    }
                    let mut copy = new.clone();
                    copy.msg_id = format!("{}#{tag}", new.msg_id);
                    tag_writes.push(Write::new(self.store.tag_subject(&tag), copy));
                }
                state.apply(event);
            }
            encoded.push(new);
        }
        Ok(encoded)
    }
}
