//! The growing event log, bounded (`docs/adr/0016`): the archive tier holds every event,
//! copied from the event stream by JetStream sourcing; the archiver compacts the hot event
//! stream against it, per aggregate, by the declared retention.
//!
//! What may leave the hot stream is decided by [`horizon`], a pure function of one
//! aggregate's facts: the events before the horizon are purged, and only if
//! - the retention rule lets them go (after the latest snapshot, or the whole aggregate but
//!   its last event once it is closed and old enough),
//! - the archive already holds them (its last copy of the subject is at or past them),
//! - every durable consumer that reads the subject has acknowledged them,
//! - and they are not the aggregate's last event (the expectation of its next append).
//!
//! Before purging, the archiver writes the recorded times of the events it purges to
//! `archive.times.<subject>` in the archive, so reads through the archive answer time travel
//! on the same clock. Each step is idempotent and conditioned on what is stored: a crash at
//! any point loses nothing, and a second run finishes the work.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::Stream};
use futures::TryStreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::id::AggregateId;
use crate::snapshot::SnapshotStore;
use crate::store::{ARCHIVE_TIMES, EventStore, StoreConfig, TimeIndex};
use crate::topology::{Keep, RetentionSpec, Topology, parse_duration};

/// What is known about one aggregate when its horizon is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Stream sequence of its last event (kept hot).
    pub last_seq: u64,
    /// Event name of its last event (`OrderCompleted`).
    pub last_event: String,
    /// When its last event was recorded.
    pub last_at: OffsetDateTime,
    /// Stream sequence of the last event its latest snapshot folded in.
    pub snapshot_seq: Option<u64>,
    /// Event-stream sequence of the last event of its subject the archive holds (0: none).
    pub archived_seq: u64,
    /// The lowest first-unacknowledged sequence among the durable consumers reading it.
    pub unacknowledged_from: Option<u64>,
}

/// What holds an aggregate's horizon where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// Nothing: the retention rule's horizon applies.
    No,
    /// The retention rule keeps it (keep everything; not closed or not old enough; no snapshot).
    Retention,
    /// The archive does not hold those events yet.
    Archive,
    /// A durable consumer has not acknowledged them.
    Consumer,
}

/// The sequence below which an aggregate's events may be purged from the hot stream (0:
/// none), and what holds it there.
///
/// `closed_for` is the rule's `closed_for`, parsed.
pub fn horizon(rule: &RetentionSpec, closed_for: Duration, facts: &Facts, now: OffsetDateTime) -> (u64, Held) {
    let wanted = match rule.keep {
        Keep::All => None,
        Keep::SinceSnapshot => facts.snapshot_seq.map(|s| s + 1),
        Keep::Closed => {
            let closed = rule.closed_by.contains(&facts.last_event);
            let old = now - facts.last_at >= closed_for;
            (closed && old).then_some(facts.last_seq)
        }
    };
    let Some(wanted) = wanted else { return (0, Held::Retention) };
    let mut horizon = wanted.min(facts.last_seq);
    let mut held = Held::No;
    if facts.archived_seq + 1 < horizon {
        horizon = facts.archived_seq + 1;
        held = Held::Archive;
    }
    if let Some(from) = facts.unacknowledged_from.filter(|from| *from < horizon) {
        horizon = from;
        held = Held::Consumer;
    }
    (horizon, held)
}

/// What one run is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only this aggregate type.
    pub aggregate_type: Option<String>,
    /// Decide and count, purge nothing.
    pub dry_run: bool,
}

/// How one aggregate type fared in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeRun {
    /// Its retention.
    pub keep: String,
    /// Aggregates looked at.
    pub aggregates: u64,
    /// Aggregates with events purged (or that would be, in a dry run).
    pub compacted: u64,
    /// Events purged from the hot stream (or that would be).
    pub purged: u64,
    /// Aggregates whose horizon the archive held back (it has not copied those events yet).
    pub held_by_archive: u64,
    /// Aggregates whose horizon a consumer held back.
    pub held_by_consumers: u64,
}

/// The outcome of a run, per aggregate type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Nothing was purged.
    pub dry_run: bool,
    /// Per aggregate type.
    pub types: BTreeMap<String, TypeRun>,
}

/// Where a run is: aggregates done of the type's total.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The aggregate type.
    pub aggregate_type: &'a str,
    /// Aggregates done.
    pub done: u64,
    /// Aggregates of the type.
    pub total: u64,
}

/// Events of one aggregate type in a tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Aggregates (subjects).
    pub aggregates: u64,
    /// Events.
    pub events: u64,
    /// Their bytes (headers and data, before compression), when counted
    /// ([`Archiver::count_bytes`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// One stream's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamSize {
    /// Messages.
    pub messages: u64,
    /// Bytes on disk (compressed where the stream is).
    pub bytes: u64,
}

/// The two tiers' sizes and how far the archive is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    /// The event stream.
    pub hot: StreamSize,
    /// The archive (its time index included).
    pub archived: StreamSize,
    /// Events of the event stream the archive has not copied yet.
    pub lag: u64,
    /// Whether the archive's source is connected (heard from in the last 30 s).
    pub sourcing: bool,
}

/// Hot and archived, per aggregate type, and how far the archive is behind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveStatus {
    /// Sizes and lag.
    #[serde(flatten)]
    pub sizes: Sizes,
    /// Per aggregate type: its retention, hot and archived counts.
    pub types: BTreeMap<String, TypeStatus>,
}

/// One aggregate type in [`ArchiveStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// Its retention.
    pub keep: String,
    /// Why (from the topology).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In the hot stream.
    pub hot: Count,
    /// In the archive.
    pub archived: Count,
}

/// The archiver: reads the topology's `[archive]` and `[[retention]]`, compacts, reports.
#[derive(Debug, Clone)]
pub struct Archiver {
    js: jetstream::Context,
    store: EventStore,
    events: String,
    archive: String,
    prefix: String,
    snapshots: Option<kv::Store>,
    rules: Vec<(RetentionSpec, Duration)>,
    /// How often the service runs.
    pub every: Duration,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

fn keep_name(keep: Keep) -> String {
    match keep {
        Keep::All => "all",
        Keep::SinceSnapshot => "since_snapshot",
        Keep::Closed => "closed",
    }
    .to_owned()
}

impl Archiver {
    /// The archiver of `topology` over `client`, reading the aggregates' snapshots from the
    /// `snapshots` bucket (without it, `since_snapshot` rules purge nothing).
    ///
    /// # Errors
    /// As [`Archiver::new`].
    pub async fn open(client: async_nats::Client, topology: &Topology) -> Result<Self, StoreError> {
        let snapshots = jetstream::new(client.clone()).get_key_value(SnapshotStore::BUCKET).await.ok();
        Self::new(client, topology, snapshots)
    }

    /// The archiver of `topology` over `client`, reading snapshots from `snapshots`.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the topology declares no `[archive]`.
    pub fn new(
        client: async_nats::Client,
        topology: &Topology,
        snapshots: Option<kv::Store>,
    ) -> Result<Self, StoreError> {
        let spec = topology
            .archive
            .as_ref()
            .ok_or_else(|| StoreError::Internal("the topology declares no [archive]".into()))?;
        let rules = topology
            .retention
            .iter()
            .map(|r| (r.clone(), r.closed_for.as_deref().and_then(|d| parse_duration(d).ok()).unwrap_or_default()))
            .collect();
        let store = EventStore::new(
            client.clone(),
            StoreConfig { stream: spec.events.clone(), archive: Some(spec.stream.clone()), ..Default::default() },
        );
        Ok(Self {
            js: jetstream::new(client),
            prefix: store.config().subject_prefix.clone(),
            store,
            events: spec.events.clone(),
            archive: spec.stream.clone(),
            snapshots,
            rules,
            every: parse_duration(&spec.every).unwrap_or(Duration::from_secs(600)),
        })
    }

    async fn stream(&self, name: &str) -> Result<Stream, StoreError> {
        self.js.get_stream(name).await.map_err(|e| unavailable(&format!("stream {name}"), e))
    }

    /// Compacts the hot stream by the retention rules, one aggregate at a time, reporting
    /// progress to `progress`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a stream or bucket does not answer; what was purged
    /// before stays purged (and archived), the rest waits for the next run.
    pub async fn run(
        &self,
        options: &RunOptions,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, StoreError> {
        let mut report = RunReport { dry_run: options.dry_run, types: BTreeMap::new() };
        let events = self.stream(&self.events).await?;
        let consumers = self.consumer_floors(&events).await?;
        for (rule, closed_for) in &self.rules {
            if options.aggregate_type.as_ref().is_some_and(|t| *t != rule.aggregate) {
                continue;
            }
            let mut run = TypeRun { keep: keep_name(rule.keep), ..Default::default() };
            if rule.keep == Keep::All {
                report.types.insert(rule.aggregate.clone(), run);
                continue;
            }
            let subjects = self.subjects(&events, &rule.aggregate).await?;
            let total = subjects.len() as u64;
            for (done, subject) in subjects.keys().enumerate() {
                progress(Progress { aggregate_type: &rule.aggregate, done: done as u64, total });
                run.aggregates += 1;
                let Some(facts) = self.facts(subject, &rule.aggregate, &consumers).await? else { continue };
                let (below, held) = horizon(rule, *closed_for, &facts, OffsetDateTime::now_utc());
                match held {
                    Held::Archive => run.held_by_archive += 1,
                    Held::Consumer => run.held_by_consumers += 1,
                    Held::No | Held::Retention => {}
                }
                if below <= 1 {
                    continue;
                }
                let purged = self.compact(&events, subject, below, rule.tail, options.dry_run).await?;
                if purged > 0 {
                    run.compacted += 1;
                    run.purged += purged;
                }
            }
            progress(Progress { aggregate_type: &rule.aggregate, done: total, total });
            report.types.insert(rule.aggregate.clone(), run);
        }
        Ok(report)
    }

    /// Purges the events of `subject` before `below` but the last `tail` of them: first their
    /// recorded times into the archive, then the purge. Returns how many events were (or would
    /// be) purged.
    async fn compact(
        &self,
        events: &Stream,
        subject: &str,
        below: u64,
        tail: u64,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let mut index = TimeIndex::default();
        self.store
            .read_hot(subject, 1, usize::MAX, |event| {
                if event.seq >= below {
                    return Ok(ControlFlow::Break(()));
                }
                index.seqs.push(event.seq);
                index.nanos.push(i64::try_from(event.stored_at.unix_timestamp_nanos()).unwrap_or(i64::MAX));
                Ok(ControlFlow::Continue(()))
            })
            .await?;
        let cut = index.seqs.len().saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
        let below = index.seqs.get(cut).copied().unwrap_or(below);
        index.seqs.truncate(cut);
        index.nanos.truncate(cut);
        let count = index.seqs.len() as u64;
        if count == 0 || dry_run {
            return Ok(count);
        }
        let body = serde_json::to_vec(&index).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{subject}:{below}"));
        self.js
            .publish_with_headers(format!("{ARCHIVE_TIMES}.{subject}"), headers, body.into())
            .await
            .map_err(|e| unavailable("archive time index", e))?
            .await
            .map_err(|e| unavailable("archive time index", e))?;
        let purged = events
            .purge()
            .filter(subject)
            .sequence(below)
            .await
            .map_err(|e| unavailable(&format!("purge of {subject}"), e))?;
        tracing::debug!(subject, below, purged = purged.purged, "compacted");
        Ok(purged.purged)
    }

    /// The subjects of one aggregate type in `stream`, with their message counts.
    async fn subjects(&self, stream: &Stream, aggregate_type: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let filter = format!("{}.{aggregate_type}.>", self.prefix);
        let mut listing = stream.info_with_subjects(&filter).await.map_err(|e| unavailable("stream subjects", e))?;
        let mut subjects = BTreeMap::new();
        while let Some((subject, count)) = listing.try_next().await.map_err(|e| unavailable("stream subjects", e))? {
            subjects.insert(subject, count as u64);
        }
        Ok(subjects)
    }

    async fn facts(
        &self,
        subject: &str,
        aggregate_type: &str,
        consumers: &[(Vec<String>, u64)],
    ) -> Result<Option<Facts>, StoreError> {
        let Some(last) = self.store.last_event(subject).await? else { return Ok(None) };
        let attributes = last.attributes()?;
        if attributes.aggregate_version.is_none() {
            // Written by a writer that leaves the dense version out: reads could not tell what
            // is missing from the hot stream, so nothing of it leaves.
            return Ok(None);
        }
        let last_event = attributes.event_type.rsplit('.').next().unwrap_or_default().to_owned();
        let archived_seq = self.store.archived_up_to(subject).await?;
        let id = subject.rsplit('.').next().and_then(|id| AggregateId::new(id).ok());
        let snapshot_seq = match (&self.snapshots, id) {
            (Some(kv), Some(id)) => kv
                .get(SnapshotStore::key(aggregate_type, &id))
                .await
                .map_err(|e| unavailable("snapshot", e))?
                .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok()?.get("stream_seq")?.as_u64()),
            _ => None,
        };
        let unacknowledged_from =
            consumers.iter().filter(|(filters, _)| reads(filters, subject)).map(|(_, from)| *from).min();
        Ok(Some(Facts {
            last_seq: last.seq,
            last_event,
            last_at: last.stored_at,
            snapshot_seq,
            archived_seq,
            unacknowledged_from,
        }))
    }

    /// Every durable consumer of the event stream: its filters and its first unacknowledged
    /// stream sequence (or, for a view version reading its history, where it reads from).
    async fn consumer_floors(&self, events: &Stream) -> Result<Vec<(Vec<String>, u64)>, StoreError> {
        let mut floors = Vec::new();
        let mut listing = events.consumers();
        while let Some(info) = listing.try_next().await.map_err(|e| unavailable("consumers", e))? {
            let mut filters = info.config.filter_subjects.clone();
            if !info.config.filter_subject.is_empty() {
                filters.push(info.config.filter_subject.clone());
            }
            // A new view version still reading its history needs it kept from where it reads.
            let reading = crate::projection::Backfill::of(&info.config.metadata).map(|b| b.from);
            let floor = info.ack_floor.stream_sequence + 1;
            floors.push((filters, reading.map_or(floor, |from| from.min(floor))));
        }
        Ok(floors)
    }

    /// The two tiers' sizes and the archive's lag (two stream infos).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a stream does not answer.
    pub async fn sizes(&self) -> Result<Sizes, StoreError> {
        sizes(&self.js, &self.events, &self.archive).await
    }

    /// Adds to `status` the bytes of each aggregate type's messages in both tiers, by reading
    /// them all (the archive's whole history: slow on a long one).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a stream does not answer.
    pub async fn count_bytes(&self, status: &mut ArchiveStatus) -> Result<(), StoreError> {
        let events = self.stream(&self.events).await?;
        let archive = self.stream(&self.archive).await?;
        for (kind, entry) in &mut status.types {
            let filter = format!("{}.{kind}.>", self.prefix);
            entry.hot.bytes = Some(bytes_on(&events, filter.clone()).await?);
            entry.archived.bytes = Some(bytes_on(&archive, filter).await?);
        }
        Ok(())
    }

    /// Hot and archived events per aggregate type, stream sizes and the archive's lag.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a stream does not answer.
    pub async fn status(&self) -> Result<ArchiveStatus, StoreError> {
        let sizes = self.sizes().await?;
        let events = self.stream(&self.events).await?;
        let archive = self.stream(&self.archive).await?;
        let mut status = ArchiveStatus { sizes, types: BTreeMap::new() };
        for (tier, stream) in [(0, &events), (1, &archive)] {
            for (subject, count) in self.subjects(stream, "*").await? {
                let Some(kind) = subject.split('.').nth(1) else { continue };
                let entry = status.types.entry(kind.to_owned()).or_default();
                let c = if tier == 0 { &mut entry.hot } else { &mut entry.archived };
                c.aggregates += 1;
                c.events += count;
            }
        }
        for (kind, entry) in &mut status.types {
            let rule = self.rules.iter().find(|(r, _)| r.aggregate == *kind);
            entry.keep = keep_name(rule.map_or(Keep::All, |(r, _)| r.keep));
            entry.reason = rule.and_then(|(r, _)| r.reason.clone());
        }
        Ok(status)
    }
}

/// Counts the bytes of every message of `stream` on `filter` (an ordered consumer reads them
/// all: as long as the history).
async fn bytes_on(stream: &Stream, filter: String) -> Result<u64, StoreError> {
    use futures::StreamExt;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig { filter_subject: filter, ..Default::default() })
        .await
        .map_err(|e| unavailable("ordered consumer", e))?;
    let mut probe = consumer.clone();
    if probe.info().await.map_err(|e| unavailable("ordered consumer", e))?.num_pending == 0 {
        return Ok(0);
    }
    let name = consumer.cached_info().name.clone();
    let mut messages = consumer.messages().await.map_err(|e| unavailable("ordered consumer", e))?;
    let mut bytes = 0;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| unavailable("ordered consumer", e))?;
        bytes += message.length as u64;
        if message.info().map_err(|e| unavailable("ordered consumer", e))?.pending == 0 {
            break;
        }
    }
    // Left to expire, it would hold compaction back where it stopped meanwhile.
    drop(messages);
    let _ = stream.delete_consumer(&name).await;
    Ok(bytes)
}

/// The sizes of `events` and `archive` and the archive's lag behind `events`.
///
/// # Errors
/// [`StoreError::Unavailable`] when a stream does not answer.
pub async fn sizes(js: &jetstream::Context, events: &str, archive: &str) -> Result<Sizes, StoreError> {
    let hot = js.get_stream(events).await.map_err(|e| unavailable(&format!("stream {events}"), e))?;
    let copy = js.get_stream(archive).await.map_err(|e| unavailable(&format!("stream {archive}"), e))?;
    let (hot, copy) = (hot.cached_info(), copy.cached_info());
    let source = copy.sources.iter().find(|s| s.name == events);
    Ok(Sizes {
        hot: StreamSize { messages: hot.state.messages, bytes: hot.state.bytes },
        archived: StreamSize { messages: copy.state.messages, bytes: copy.state.bytes },
        lag: source.map_or(0, |s| s.lag),
        sourcing: source.is_some_and(|s| s.active.is_some_and(|a| a < Duration::from_secs(30))),
    })
}

/// Whether a consumer with these filters (all subjects when none) receives `subject`.
fn reads(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| matches(f, subject))
}

/// NATS subject matching: `*` one token, `>` the rest.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for want in filter.split('.') {
        match (want, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (w, Some(t)) if w == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            last_seq: 500,
            last_event: "Counted".into(),
            last_at: OffsetDateTime::UNIX_EPOCH,
            snapshot_seq: Some(400),
            archived_seq: 500,
            unacknowledged_from: None,
        }
    }

    fn rule(keep: Keep) -> RetentionSpec {
        RetentionSpec {
            aggregate: "order".into(),
            keep,
            closed_by: vec!["OrderCompleted".into()],
            closed_for: Some("1d".into()),
            ..Default::default()
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn since_snapshot_purges_up_to_and_with_the_snapshot_event_but_never_the_last() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(horizon(&rule(Keep::SinceSnapshot), DAY, &facts(), now), (401, Held::No));
        let at_last = Facts { snapshot_seq: Some(500), ..facts() };
        assert_eq!(horizon(&rule(Keep::SinceSnapshot), DAY, &at_last, now), (500, Held::No));
        let none = Facts { snapshot_seq: None, ..facts() };
        assert_eq!(horizon(&rule(Keep::SinceSnapshot), DAY, &none, now), (0, Held::Retention));
        assert_eq!(horizon(&rule(Keep::All), DAY, &facts(), now), (0, Held::Retention));
    }

    #[test]
    fn nothing_the_archive_lacks_or_a_consumer_has_not_acknowledged_is_purged() {
        let now = OffsetDateTime::now_utc();
        let lagging = Facts { archived_seq: 300, ..facts() };
        assert_eq!(horizon(&rule(Keep::SinceSnapshot), DAY, &lagging, now), (301, Held::Archive));
        let empty = Facts { archived_seq: 0, ..facts() };
        assert_eq!(horizon(&rule(Keep::SinceSnapshot), DAY, &empty, now), (1, Held::Archive));
        let consumer = Facts { unacknowledged_from: Some(250), ..lagging };
        assert_eq!(horizon(&rule(Keep::SinceSnapshot), DAY, &consumer, now), (250, Held::Consumer));
    }

    #[test]
    fn closed_aggregates_keep_only_their_last_event_once_old_enough() {
        let closed = Facts { last_event: "OrderCompleted".into(), snapshot_seq: None, ..facts() };
        let later = closed.last_at + DAY;
        assert_eq!(horizon(&rule(Keep::Closed), DAY, &closed, later), (500, Held::No));
        assert_eq!(horizon(&rule(Keep::Closed), DAY, &closed, later - Duration::from_secs(1)), (0, Held::Retention));
        let open = Facts { last_event: "OrderStarted".into(), ..closed };
        assert_eq!(horizon(&rule(Keep::Closed), DAY, &open, later), (0, Held::Retention));
    }

    #[test]
    fn subject_matching() {
        assert!(matches("evt.stock.>", "evt.stock.bolt@main"));
        assert!(matches("evt.*.x", "evt.stock.x"));
        assert!(!matches("evt.order.>", "evt.stock.x"));
        assert!(!matches("evt.stock", "evt.stock.x"));
        assert!(!matches("evt.stock.x.>", "evt.stock.x"));
        assert!(reads(&[], "anything"));
    }
}
