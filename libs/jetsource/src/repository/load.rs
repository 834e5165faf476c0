//! Loading: the snapshot if it is usable, then the events after it; decoding with upcasting;
//! snapshots written in the background.

use std::ops::ControlFlow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Envelope, Loaded, Repository};
use crate::aggregate::Aggregate;
use crate::cloudevents;
use crate::error::StoreError;
use crate::id::AggregateId;
use crate::snapshot::SnapshotRecord;
use crate::store::StoredEvent;

/// How far a historical load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Everything.
    End,
    /// Up to and including this dense version.
    Version(u64),
    /// Events stored at or before this time.
    Time(OffsetDateTime),
    /// Both bounds: up to this version, and stored at or before this time.
    Both(u64, OffsetDateTime),
}

impl Until {
    fn admits(self, next_version: u64, stored_at: OffsetDateTime) -> bool {
        match self {
            Until::End => true,
            Until::Version(v) => next_version <= v,
            Until::Time(t) => stored_at <= t,
            Until::Both(v, t) => next_version <= v && stored_at <= t,
        }
    }
}

impl<A: Aggregate> Repository<A> {
    /// The current state of `id` (a new, empty aggregate when it has no events).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], or an undecodable / unknown stored event naming its
    /// subject and sequence.
    pub async fn load(&self, id: &AggregateId) -> Result<Loaded<A>, StoreError> {
        let started = std::time::Instant::now();
        let (loaded, replayed) = self.load_until(id, Until::End).await?;
        self.observer.loaded(A::TYPE, replayed, started.elapsed());
        if self.config.snapshot_every > 0 && replayed >= self.config.snapshot_every {
            self.snapshot(id, &loaded);
        }
        Ok(loaded)
    }

    /// The current state of `id` replayed from its first event, ignoring (and then replacing)
    /// its snapshot.
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn replay(&self, id: &AggregateId) -> Result<Loaded<A>, StoreError> {
        let (loaded, _) = self.load_from(id, Until::End, false).await?;
        self.snapshot(id, &loaded);
        Ok(loaded)
    }

    /// The state of `id` as it was at a version or time (time travel). Returns the state and
    /// how many events were replayed after the snapshot used, if any.
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn load_until(&self, id: &AggregateId, until: Until) -> Result<(Loaded<A>, u64), StoreError> {
        self.load_from(id, until, true).await
    }

    async fn load_from(
        &self,
        id: &AggregateId,
        until: Until,
        use_snapshot: bool,
    ) -> Result<(Loaded<A>, u64), StoreError> {
        let subject = self.store.subject(A::TYPE, id);
        let snapshot = if use_snapshot { self.read_snapshot(id).await } else { None };
        let mut loaded = match snapshot {
            Some(snapshot) if snapshot_usable(&snapshot, until) => snapshot,
            _ => Loaded::default(),
        };
        let capacity = self.config.recent_commands;
        let replayed = self
            .store
            .read_history(&subject, loaded.last_seq + 1, Some(loaded.version + 1), usize::MAX, |stored| {
                if !until.admits(loaded.version + 1, stored.stored_at) {
                    return Ok(ControlFlow::Break(()));
                }
                let (name, event) = self.decode_event(&stored)?;
                let command_id = cloudevents::command_id(&stored.headers);
                loaded.fold(&event, name, command_id, stored.seq, Some(stored.stored_at), capacity);
                Ok(ControlFlow::Continue(()))
            })
            .await?;
        Ok((loaded, replayed))
    }

    /// The events of `id` from stream sequence `from_seq`, decoded and upcast, at most `limit`.
    /// Dense versions are taken from `ce-aggregateversion` (0 where a foreign writer left it out).
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn events(
        &self,
        id: &AggregateId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Envelope<A::Event>>, StoreError> {
        let subject = self.store.subject(A::TYPE, id);
        let stored = self.store.read(&subject, from_seq, limit).await?;
        stored.into_iter().map(|s| self.decode(s)).collect()
    }

    /// Decodes one stored event of this aggregate type with all its attributes. The dense
    /// version is `ce-aggregateversion` (0 where a foreign writer left it out).
    ///
    /// # Errors
    /// [`StoreError::UnknownEventType`] or [`StoreError::Undecodable`], naming subject and seq.
    pub fn decode(&self, stored: StoredEvent) -> Result<Envelope<A::Event>, StoreError> {
        let attributes = stored.attributes()?;
        let (_, event) = self.decode_event(&stored)?;
        let version = attributes.aggregate_version.unwrap_or(0);
        Ok(Envelope { seq: stored.seq, version, stored_at: stored.stored_at, attributes, event })
    }

    /// Decodes the domain event of a stored event, upcasting old schema versions. Returns the
    /// event name as this reader knows it.
    ///
    /// # Errors
    /// [`StoreError::UnknownEventType`] or [`StoreError::Undecodable`], naming subject and seq.
    pub fn decode_event(&self, stored: &StoredEvent) -> Result<(&'static str, A::Event), StoreError> {
        self.codec.decode(stored)
    }

    async fn read_snapshot(&self, id: &AggregateId) -> Option<Loaded<A>> {
        let snapshots = self.snapshots.as_ref()?;
        let raw = match snapshots.get(A::TYPE, id).await {
            Ok(raw) => raw?,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot unreadable; replaying all events");
                return None;
            }
        };
        let record: SnapshotRecord<A> = match serde_json::from_slice(&raw) {
            Ok(record) => record,
            Err(e) => {
                tracing::info!(aggregate_type = A::TYPE, aggregate_id = %id, error = %e, "snapshot does not decode; ignored");
                return None;
            }
        };
        if record.state_version != A::STATE_VERSION {
            tracing::info!(
                aggregate_type = A::TYPE, aggregate_id = %id, found = record.state_version, current = A::STATE_VERSION,
                "snapshot of another state version; ignored"
            );
            return None;
        }
        Some(Loaded {
            state: record.state,
            version: record.version,
            last_seq: record.stream_seq,
            last_at: record.at.and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
            recent: record.recent,
        })
    }

    /// Writes a snapshot of `loaded` in the background: the command does not wait for it, and
    /// a failed write only means a longer replay next time.
    pub(crate) fn snapshot(&self, id: &AggregateId, loaded: &Loaded<A>) {
        let Some(snapshots) = self.snapshots.clone() else { return };
        let record = SnapshotRecord {
            state_version: A::STATE_VERSION,
            version: loaded.version,
            stream_seq: loaded.last_seq,
            at: loaded.last_at.and_then(|t| t.format(&Rfc3339).ok()),
            recent: loaded.recent.clone(),
            state: loaded.state.clone(),
        };
        let id = id.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let result = match sealed(&store, &record).await {
                Ok(bytes) => snapshots.put(A::TYPE, &id, bytes.into()).await.map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id, error = %e, "snapshot not written");
            }
        });
    }
}

/// A snapshot as stored: its personal values sealed (the state folded in memory may hold them
/// in plain).
async fn sealed<S: serde::Serialize>(
    store: &crate::EventStore,
    record: &SnapshotRecord<S>,
) -> Result<Vec<u8>, StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Internal(e.to_string()))?;
    if !crate::keyring::holds_plain(&bytes) {
        return Ok(bytes);
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Internal(e.to_string()))?;
    store.keyring()?.seal(&mut value).await?;
    serde_json::to_vec(&value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn snapshot_usable<A>(snapshot: &Loaded<A>, until: Until) -> bool {
    match until {
        Until::End => true,
        Until::Version(v) => snapshot.version <= v,
        Until::Time(t) => snapshot.last_at.is_some_and(|at| at <= t),
        Until::Both(v, t) => snapshot.version <= v && snapshot.last_at.is_some_and(|at| at <= t),
    }
}
