//! Running one version of one view: consume, apply, write, acknowledge; park what cannot be
//! applied; answer retries; tell how far it got.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, kv};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::parked::{self, ParkedRecord};
use super::{EventView, Projection, ProjectionError, Stored, bucket_name, consumer_name};
use crate::store::{EventStore, StoreConfig, StoredEvent};

/// How a view runs.
#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// The event stream.
    pub stream: String,
    /// Messages applied per batch at most.
    pub batch: usize,
    /// How long without messages counts as idle (then the view checks it is caught up).
    pub idle: Duration,
    /// Redelivery delay of unacknowledged messages.
    pub ack_wait: Duration,
    /// Documents kept in memory.
    pub cache_capacity: usize,
    /// The bucket of parked events.
    pub parked_bucket: String,
    /// Replicas of the view buckets and consumers.
    pub replicas: usize,
    /// The archive holding the events purged from `stream`: a new view version reads it
    /// first, then the event stream from where the archive ended (`docs/adr/0016`).
    pub archive: Option<String>,
    /// Events applied per batch while a new version reads the history that was there when it
    /// was created (ordered consumers, no acknowledgements): the documents of a batch are
    /// written once, however many of its events touch them (`docs/adr/0022`).
    pub backfill_batch: usize,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self {
            stream: "EVENTS".into(),
            batch: 1000,
            idle: Duration::from_millis(50),
            ack_wait: Duration::from_secs(30),
            cache_capacity: 200_000,
            parked_bucket: "parked".into(),
            replicas: 1,
            archive: Some("ARCHIVE".into()),
            backfill_batch: 20_000,
        }
    }
}

/// Hears what a view does, for metrics and failure reports. Every method defaults to nothing.
pub trait ViewObserver: Send + Sync {
    /// `events` events were applied.
    fn applied(&self, view: &str, events: u64) {
        let _ = (view, events);
    }
    /// The view reflects the stream up to `last_seq`; `lag` events are waiting.
    fn progress(&self, view: &str, last_seq: u64, lag: u64) {
        let _ = (view, last_seq, lag);
    }
    /// `count` events are parked in the view.
    fn parked_count(&self, view: &str, count: u64) {
        let _ = (view, count);
    }
    /// An event was parked (it failed to apply, or its aggregate was already parked).
    fn parked(&self, view: &str, event: &EventView<'_>, reason: &str) {
        let _ = (view, event, reason);
    }
    /// A span to apply `event` in (continuing the event's trace), or none: spans per event
    /// cost, so an observer returns one only when traces are exported.
    fn span(&self, view: &str, event: &EventView<'_>) -> Option<tracing::Span> {
        let _ = (view, event);
        None
    }
}

struct Silent;
impl ViewObserver for Silent {}

/// Requests to a running view.
#[derive(Debug)]
pub enum Admin {
    /// Apply the parked events again (of one aggregate subject, or all).
    Retry {
        /// Only this aggregate subject (`evt.stock.bolt@main`).
        subject: Option<String>,
        /// Where the report goes.
        reply: oneshot::Sender<RetryReport>,
    },
}

/// What a retry did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    /// Events applied.
    pub applied: usize,
    /// Events still parked.
    pub still_parked: usize,
}

/// What queries and operators need of a running view; cheap to clone.
#[derive(Clone)]
pub struct ViewHandle {
    pub(crate) name: &'static str,
    version: u32,
    pub(crate) bucket: kv::Store,
    /// Every key, in order; `None` for views that are not indexed (too many keys to hold).
    keys: Option<Arc<RwLock<BTreeSet<String>>>>,
    /// Whether the index is current: not while another instance writes the view (this one is
    /// on standby), when listings scan the bucket instead.
    index_current: Arc<std::sync::atomic::AtomicBool>,
    applied: watch::Receiver<u64>,
    parked: Arc<AtomicU64>,
    parked_kv: kv::Store,
    lag: Arc<AtomicU64>,
    admin: mpsc::Sender<Admin>,
}

impl ViewHandle {
    /// The view's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The stream sequence the view reflects everything up to.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the view reflects `seq`, at most `within`; true if it does.
    pub async fn wait_applied(&self, seq: u64, within: Duration) -> bool {
        let mut rx = self.applied.clone();
        matches!(tokio::time::timeout(within, rx.wait_for(|applied| *applied >= seq)).await, Ok(Ok(_)))
    }

    /// Events waiting to be applied (as of the last batch).
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Events parked.
    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// How many documents this version's bucket holds (`None` when it does not answer): its
    /// stream's messages, one per key (the bucket keeps no history), asked of the server (the
    /// bucket's own status is the one cached when it was opened).
    pub async fn documents(&self) -> Option<u64> {
        let mut stream = self.bucket.stream.clone();
        stream.info().await.ok().map(|info| info.state.messages)
    }

    /// The parked records of this version, one per aggregate, oldest first.
    ///
    /// # Errors
    /// When the `parked` bucket cannot be read.
    pub async fn parked_records(&self) -> Result<Vec<ParkedRecord>, ProjectionError> {
        let records = parked::load(&self.parked_kv, self.name, self.version).await.map_err(|e| self.unavailable(e))?;
        let mut records: Vec<ParkedRecord> = records.into_values().collect();
        records.sort_by_key(|r| r.seqs.first().copied().unwrap_or(0));
        Ok(records)
    }

    /// The document of `key`, with its `seq`.
    ///
    /// # Errors
    /// When the bucket does not answer.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, ProjectionError> {
        let raw = self.bucket.get(key).await.map_err(|e| self.unavailable(e))?;
        Ok(raw.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// The document of `key` as the bucket's leader has it: what a reader who waited for a
    /// sequence (`Min-Seq`) must see. [`Self::get`] uses Direct Get, which a replica may answer
    /// before it has the last write (R3).
    ///
    /// # Errors
    /// When the bucket does not answer.
    pub async fn get_current(&self, key: &str) -> Result<Option<Value>, ProjectionError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let subject = format!("$KV.{}.{key}", self.bucket.name);
        match self.bucket.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let removed = message.headers.get("KV-Operation").is_some_and(|op| op.as_str() != "PUT");
                Ok((!removed).then(|| serde_json::from_slice(&message.payload).ok()).flatten())
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Keys in order, starting with `prefix`, after `after`, at most `limit`; plus the key to
    /// continue after when there are more. Views that are not indexed list their bucket's keys
    /// (a scan: fine for occasional listings, not for hot paths).
    ///
    /// # Errors
    /// When a scan cannot read the bucket.
    pub async fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), ProjectionError> {
        let scanned;
        let guard;
        let current = self.index_current.load(Ordering::Relaxed);
        let keys: &BTreeSet<String> = match self.keys.as_ref().filter(|_| current) {
            Some(index) => {
                guard = index.read().unwrap_or_else(PoisonError::into_inner);
                &guard
            }
            _ => {
                let mut all = BTreeSet::new();
                if let Ok(mut listing) = self.bucket.keys().await {
                    while let Some(key) = listing.try_next().await.map_err(|e| self.unavailable(e))? {
                        if key.starts_with(prefix) {
                            all.insert(key);
                        }
                    }
                }
                scanned = all;
                &scanned
            }
        };
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut page: Vec<String> = keys
            .range((start, Bound::Unbounded))
            .take_while(|k| k.starts_with(prefix))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().cloned().unwrap_or_default()
        });
        Ok((page, next))
    }

    /// Applies parked events again.
    ///
    /// # Errors
    /// When the view is not running.
    pub async fn retry(&self, subject: Option<String>) -> Result<RetryReport, ProjectionError> {
        let (reply, answer) = oneshot::channel();
        self.admin.send(Admin::Retry { subject, reply }).await.map_err(|e| self.unavailable(e))?;
        answer.await.map_err(|e| self.unavailable(e))
    }

    pub(crate) fn unavailable(&self, e: impl std::fmt::Display) -> ProjectionError {
        ProjectionError::Unavailable { view: self.name.to_owned(), reason: e.to_string() }
    }
}

/// One version of one view, consuming.
pub struct ViewWorker<P: Projection> {
    projection: Arc<P>,
    version: u32,
    config: ViewConfig,
    js: jetstream::Context,
    store: EventStore,
    bucket_prefix: String,
    parked_kv: kv::Store,
    consumer: PullConsumer,
    /// For a new version: the history that was there when it was created (in the archive and
    /// in the event stream), still to be read before the consumer is.
    backfill: Option<Backfill>,
    cache: HashMap<String, Stored<P::Doc>>,
    /// The bucket revision of each cached document (0: taken as new). Every write expects it,
    /// so a document another instance wrote meanwhile is never overwritten: the write fails,
    /// the document is fetched and the batch applied again.
    revisions: HashMap<String, u64>,
    /// Keys whose document turned out to differ from the cache: fetched before the next use.
    must_fetch: HashSet<String>,
    /// The last delivery applied (its consumer sequence): when the consumer has delivered
    /// beyond it, another instance is active and this one is on standby.
    last_delivery: u64,
    /// When the idle check last asked the server.
    idle_checked: std::time::Instant,
    /// Fetch every document, taking none as new (while retrying parked events).
    fetch_always: bool,
    parked: HashMap<String, ParkedRecord>,
    handle: ViewHandle,
    applied_tx: watch::Sender<u64>,
    admin_rx: mpsc::Receiver<Admin>,
    observer: Arc<dyn ViewObserver>,
}

/// Where the archive ended when a new view version was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArchiveEnd {
    /// The archive's sequence of its last copied event.
    archive_seq: u64,
    /// That event's sequence in the event stream.
    event_seq: u64,
}

/// The history a new view version reads before its durable consumer delivers anything: the
/// archive up to `archive_seq` (0: nothing), then the event stream from `from` to `to` (empty
/// when `from > to`). The durable consumer starts after `to`. Recorded in the consumer's
/// metadata ([`BACKFILL`]), so every instance reads the same, a restart goes on with what is
/// left, and the archiver purges nothing from `from` on meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backfill {
    archive_seq: u64,
    pub(crate) from: u64,
    to: u64,
}

/// Document writes awaiting their acknowledgement at once, at most.
const WRITES_IN_FLIGHT: usize = 1_000;

/// The consumer metadata key recording a backfill still to do: `<archive seq> <from> <to>`,
/// removed once it is done (the archive part set to 0 once that part is).
pub(crate) const BACKFILL: &str = "jetsource.backfill";

/// The key an earlier release recorded a reading of the archive under: `<archive seq>
/// <event seq>`, its consumer starting after that event.
const READING_ARCHIVE: &str = "jetsource.reading_archive";

impl Backfill {
    /// What `metadata` records, if anything.
    pub(crate) fn of(metadata: &HashMap<String, String>) -> Option<Self> {
        if let Some(value) = metadata.get(BACKFILL) {
            let mut parts = value.split(' ').map(str::parse::<u64>);
            let (Some(Ok(archive_seq)), Some(Ok(from)), Some(Ok(to))) = (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            return Some(Self { archive_seq, from, to });
        }
        let (archive_seq, event_seq) = metadata.get(READING_ARCHIVE)?.split_once(' ')?;
        let event_seq: u64 = event_seq.parse().ok()?;
        Some(Self { archive_seq: archive_seq.parse().ok()?, from: event_seq + 1, to: event_seq })
    }

    fn record(self) -> String {
        format!("{} {} {}", self.archive_seq, self.from, self.to)
    }

    /// What the version lags by meanwhile: the last sequence it reads (at least 1, so it is
    /// never taken as caught up before it has read it).
    fn events(self) -> u64 {
        self.to.max(1)
    }
}

/// The last event the archive holds (any subject of the event stream): `None` when there is
/// no archive or it is empty. Any other failure is an error, so a version is never built from
/// the hot stream alone because the archive was slow to answer.
async fn archive_end(js: &jetstream::Context, archive: Option<&str>) -> Result<Option<ArchiveEnd>, String> {
    use crate::store::{Got, direct_get};
    let Some(archive) = archive else { return Ok(None) };
    let events = format!("{}.>", StoreConfig::default().subject_prefix);
    let request = serde_json::json!({ "last_by_subj": events });
    let reply = match direct_get(&js.client(), archive, &request, Duration::from_secs(5)).await? {
        Got::Message(reply) => reply,
        Got::Missing | Got::NoStream => return Ok(None), // empty, or no such stream
    };
    let headers = reply.headers.as_ref().ok_or_else(|| "an archived message without headers".to_owned())?;
    let archive_seq = headers.get("Nats-Sequence").and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
    let event_seq = crate::store::source_sequence(headers)
        .ok_or_else(|| "an archived message without Nats-Stream-Source".to_owned())?;
    Ok(Some(ArchiveEnd { archive_seq, event_seq }))
}

/// A consumer's filter for a view's subjects: one subject, or several.
fn filters(mut subjects: Vec<String>) -> (String, Vec<String>) {
    match subjects.len() {
        1 => (subjects.remove(0), Vec::new()),
        _ => (String::new(), subjects),
    }
}

/// Whether a consumer lookup failed because the consumer does not exist.
fn consumer_missing(error: &async_nats::Error) -> bool {
    use async_nats::jetstream::context::{ConsumerInfoError, ConsumerInfoErrorKind};
    error.downcast_ref::<ConsumerInfoError>().is_some_and(|e| e.kind() == ConsumerInfoErrorKind::NotFound)
}

fn unavailable(view: &str, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Unavailable { view: view.to_owned(), reason: e.to_string() }
}

impl<P: Projection> ViewWorker<P> {
    /// Opens version `version` of the view: its bucket and durable consumer (created if
    /// missing), its parked events and its key index.
    ///
    /// # Errors
    /// When JetStream does not answer or refuses.
    pub async fn open(
        client: async_nats::Client,
        projection: Arc<P>,
        version: u32,
        config: ViewConfig,
        observer: Option<Arc<dyn ViewObserver>>,
    ) -> Result<Self, ProjectionError> {
        let name = projection.name();
        let fail = |e: &dyn std::fmt::Display| unavailable(name, e);
        let js = jetstream::new(client.clone());
        let bucket_name = bucket_name(name, version);
        let bucket = match js.get_key_value(&bucket_name).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket_name.clone(),
                    description: format!("view {name}, version {version}"),
                    history: 1,
                    max_age: projection.max_age().unwrap_or_default(),
                    num_replicas: config.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| fail(&e))?,
        };
        let parked_kv =
            js.get_key_value(&config.parked_bucket).await.map_err(|e| fail(&format!("parked bucket: {e}")))?;
        let stream = js.get_stream(&config.stream).await.map_err(|e| fail(&e))?;
        let (filter_subject, filter_subjects) = filters(projection.subjects());
        let desired = crate::consume::standby(pull::Config {
            durable_name: Some(consumer_name(name, version)),
            description: Some(format!("projector of view {name}, version {version}")),
            filter_subject,
            filter_subjects,
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            ack_wait: config.ack_wait,
            max_ack_pending: (config.batch * 10) as i64,
            num_replicas: config.replicas,
            ..Default::default()
        });
        let durable = consumer_name(name, version);
        let consumer = match stream.get_consumer::<pull::Config>(&durable).await {
            Ok(mut consumer) => {
                if consumer.cached_info().config.priority_policy != desired.priority_policy {
                    // Created by an earlier release, with one instance only: give it standby instances.
                    let mut config = desired.clone();
                    config.deliver_policy = consumer.cached_info().config.deliver_policy;
                    config.metadata.clone_from(&consumer.cached_info().config.metadata);
                    stream.update_consumer(config).await.map_err(|e| fail(&e))?;
                    consumer = stream.get_consumer(&durable).await.map_err(|e| fail(&e))?;
                }
                consumer
            }
            Err(e) if consumer_missing(&e) => {
                // A new version reads the history there is now first (in `run`): the archive,
                // then the event stream from the archive's end to the stream's; its durable
                // consumer starts after that.
                let end = archive_end(&js, config.archive.as_deref()).await.map_err(|e| fail(&e))?;
                let last = stream.get_info().await.map_err(|e| fail(&e))?.state.last_sequence;
                let backfill = Backfill {
                    archive_seq: end.map_or(0, |e| e.archive_seq),
                    from: end.map_or(1, |e| e.event_seq + 1),
                    to: last.max(end.map_or(0, |e| e.event_seq)),
                };
                let mut config = desired;
                if backfill.archive_seq > 0 || backfill.from <= backfill.to {
                    config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence: backfill.to + 1 };
                    config.metadata.insert(BACKFILL.into(), backfill.record());
                }
                stream.get_or_create_consumer(&durable, config).await.map_err(|e| fail(&e))?
            }
            Err(e) => return Err(fail(&e)),
        };
        // Another instance may have created it: what it recorded is what this one reads.
        let backfill = Backfill::of(&consumer.cached_info().config.metadata);
        let keys = if projection.indexed() {
            let mut keys = BTreeSet::new();
            if let Ok(mut listing) = bucket.keys().await {
                while let Some(key) = listing.try_next().await.map_err(|e| fail(&e))? {
                    keys.insert(key);
                }
            }
            Some(Arc::new(RwLock::new(keys)))
        } else {
            None
        };
        let parked = parked::load(&parked_kv, name, version).await.map_err(|e| fail(&e))?;
        let mut consumer_info = consumer.clone();
        let acked = match backfill {
            Some(_) => 0,
            None => consumer_info.info().await.map(|i| i.ack_floor.stream_sequence).unwrap_or(0),
        };
        let (applied_tx, applied) = watch::channel(acked);
        let (admin_tx, admin_rx) = mpsc::channel(16);
        let parked_count: u64 = parked.values().map(|r| r.seqs.len() as u64).sum();
        let handle = ViewHandle {
            name,
            version,
            bucket,
            keys,
            index_current: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            applied,
            parked: Arc::new(AtomicU64::new(parked_count)),
            parked_kv: parked_kv.clone(),
            // A version that has history to read is behind by as much until it has read it:
            // nothing may take it as caught up (a rebuild's switch, /status) meanwhile.
            lag: Arc::new(AtomicU64::new(backfill.map_or(0, Backfill::events))),
            admin: admin_tx,
        };
        let store = EventStore::new(
            client,
            StoreConfig { stream: config.stream.clone(), archive: config.archive.clone(), ..Default::default() },
        );
        let observer = observer.unwrap_or_else(|| Arc::new(Silent));
        observer.parked_count(name, parked_count);
        Ok(Self {
            projection,
            version,
            bucket_prefix: format!("$KV.{bucket_name}."),
            config,
            js,
            store,
            parked_kv,
            consumer,
            backfill,
            cache: HashMap::new(),
            revisions: HashMap::new(),
            must_fetch: HashSet::new(),
            last_delivery: 0,
            idle_checked: std::time::Instant::now(),
            fetch_always: false,
            parked,
            handle,
            applied_tx,
            admin_rx,
            observer,
        })
    }

    /// The handle for queries and operators.
    pub fn handle(&self) -> ViewHandle {
        self.handle.clone()
    }

    /// Consumes until `stop` resolves, in the one consumer loop ([`crate::consume::run_batches`]).
    /// A new version reads the history that was there when it was created first.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut pause = crate::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        while self.backfill.is_some() {
            tokio::select! {
                () = &mut stop => return,
                result = self.read_history() => if let Err(e) = result {
                    tracing::warn!(view = self.projection.name(), error = %e, "reading the history failed; trying again");
                    tokio::time::sleep(pause.next_delay()).await;
                },
            }
        }
        let consumer = self.consumer.clone();
        let config = crate::consume::BatchConfig {
            name: self.projection.name(),
            batch: self.config.batch,
            idle: self.config.idle,
            redeliver: crate::Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        };
        let (_, closed) = mpsc::channel(1);
        let requests = std::mem::replace(&mut self.admin_rx, closed);
        crate::consume::run_batches(consumer, config, self, requests, stop).await;
    }

    /// Applies one batch: plan, load, apply, write, park, acknowledge.
    ///
    /// # Errors
    /// When documents cannot be written; nothing is acknowledged then.
    pub async fn apply_batch(&mut self, batch: &[jetstream::Message]) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let mut events = Vec::with_capacity(batch.len());
        let mut lag = 0;
        for message in batch {
            let info = message.info().map_err(|e| unavailable(name, e))?;
            lag = info.pending;
            self.last_delivery = info.consumer_sequence;
            events.push(StoredEvent {
                subject: message.subject.to_string(),
                seq: info.stream_sequence,
                stored_at: info.published,
                headers: message.headers.clone().unwrap_or_default(),
                data: message.payload.clone(),
            });
        }
        self.apply_events(&events).await?;
        if let Some(last) = batch.last() {
            last.ack().await.map_err(|e| unavailable(name, e))?;
        }
        self.reached(events.last().map_or(0, |e| e.seq), lag);
        Ok(())
    }

    /// Reads the history this version was created over: the archive from its first event to
    /// where it ended (applying every event of the view's subjects with its sequence in the
    /// event stream), recording that part done, then the event stream up to where it ended;
    /// then removes the record, and the durable consumer goes on from the next sequence. Both
    /// parts are ordered consumers applied in batches of `backfill_batch`. Interrupted, a part
    /// starts over: documents already reflecting an event skip it.
    async fn read_history(&mut self) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let Some(mut backfill) = self.backfill else { return Ok(()) };
        if backfill.archive_seq > 0 {
            let archive = self.config.archive.clone().unwrap_or_default();
            self.read_ordered(&archive, 1, backfill.archive_seq, true).await?;
            tracing::info!(view = name, version = self.version, up_to = backfill.from - 1, "read the archive");
            backfill.archive_seq = 0;
            self.record_backfill(Some(backfill)).await?;
        }
        if backfill.from <= backfill.to {
            let stream = self.config.stream.clone();
            self.read_ordered(&stream, backfill.from, backfill.to, false).await?;
        }
        self.record_backfill(None).await?;
        self.reached(backfill.to, 0);
        tracing::info!(view = name, version = self.version, up_to = backfill.to, "read the history");
        self.backfill = None;
        Ok(())
    }

    /// Records what is left of the backfill in the durable consumer's metadata (`None`: done).
    async fn record_backfill(&mut self, left: Option<Backfill>) -> Result<(), ProjectionError> {
        let fail = |e: &dyn std::fmt::Display| unavailable(self.projection.name(), e);
        let mut config = self.consumer.cached_info().config.clone();
        config.metadata.remove(READING_ARCHIVE);
        match left {
            Some(left) => config.metadata.insert(BACKFILL.into(), left.record()),
            None => config.metadata.remove(BACKFILL),
        };
        let events = self.js.get_stream(&self.config.stream).await.map_err(|e| fail(&e))?;
        events.update_consumer(config).await.map_err(|e| fail(&e))?;
        Ok(())
    }

    /// Applies the view's events of `stream` from sequence `from` to `to` (that stream's
    /// sequences), read by an ordered consumer, in batches of `backfill_batch`. An archive's
    /// events carry their event-stream sequence in a header (`archived`).
    async fn read_ordered(&mut self, stream: &str, from: u64, to: u64, archived: bool) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let fail = |e: &dyn std::fmt::Display| unavailable(name, e);
        let stream = self.js.get_stream(stream).await.map_err(|e| fail(&e))?;
        let (filter_subject, filter_subjects) = filters(self.projection.subjects());
        let ordered = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject,
                filter_subjects,
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
                ..Default::default()
            })
            .await
            .map_err(|e| fail(&e))?;
        let mut probe = ordered.clone();
        if probe.info().await.map_err(|e| fail(&e))?.num_pending == 0 {
            return Ok(());
        }
        let batch = self.config.backfill_batch.max(1);
        let mut messages = ordered.messages().await.map_err(|e| fail(&e))?;
        let mut events = Vec::with_capacity(batch);
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .map_err(|_| fail(&"the history stopped arriving"))?
                .ok_or_else(|| fail(&"the ordered consumer ended"))?
                .map_err(|e| fail(&e))?;
            let info = message.info().map_err(|e| fail(&e))?;
            let (at, left) = (info.stream_sequence, info.pending);
            let done = at >= to || left == 0;
            let headers = message.headers.clone().unwrap_or_default();
            let seq = if archived { crate::store::source_sequence(&headers) } else { Some(at) };
            if let Some(seq) = seq.filter(|_| at <= to) {
                events.push(StoredEvent {
                    subject: message.subject.to_string(),
                    seq,
                    stored_at: info.published,
                    headers,
                    data: message.payload.clone(),
                });
            }
            if events.len() >= batch || (done && !events.is_empty()) {
                self.apply_events(&events).await?;
                let last = events.last().map_or(0, |e| e.seq);
                self.reached(last, left.max(1));
                events.clear();
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Applies events in order and writes the documents, again where another instance wrote
    /// them meanwhile.
    async fn apply_events(&mut self, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let mut dirty_docs = HashSet::new();
        let mut dirty_parked = HashSet::new();
        let mut applied_seqs = HashSet::new();
        let applied = self.apply_all(events, &mut dirty_docs, &mut dirty_parked, &mut applied_seqs).await?;
        let mut conflicted = self.write(dirty_docs, dirty_parked).await?;
        let mut rounds = 0;
        while !conflicted.is_empty() {
            rounds += 1;
            if rounds > 8 {
                return Err(unavailable(name, "documents keep changing under this instance"));
            }
            let again = self.reapply(events, &applied_seqs, conflicted).await?;
            conflicted = self.write(again, HashSet::new()).await?;
        }
        self.observer.applied(name, applied);
        Ok(())
    }

    /// The view reflects the event stream up to `last_seq`, with `lag` events still to come.
    fn reached(&mut self, last_seq: u64, lag: u64) {
        let name = self.projection.name();
        self.applied_tx.send_if_modified(|current| {
            let moved = last_seq > *current;
            *current = (*current).max(last_seq);
            moved
        });
        self.handle.lag.store(lag, Ordering::Relaxed);
        self.observer.progress(name, *self.applied_tx.borrow(), lag);
        if self.cache.len() > self.config.cache_capacity {
            crate::consume::Batches::forget(self);
        }
    }

    /// Applies events in order to the cached documents; returns how many were applied (and
    /// their sequences in `applied_seqs`).
    async fn apply_all(
        &mut self,
        events: &[StoredEvent],
        dirty_docs: &mut HashSet<String>,
        dirty_parked: &mut HashSet<String>,
        applied_seqs: &mut HashSet<u64>,
    ) -> Result<u64, ProjectionError> {
        let mut plans = Vec::with_capacity(events.len());
        let mut missing = HashSet::new();
        for stored in events {
            let view = EventView::new(stored);
            let plan = if self.parked.contains_key(&stored.subject) {
                Err(None)
            } else {
                self.projection.keys(&view).map_err(Some)
            };
            if let Ok(keys) = &plan {
                missing.extend(keys.iter().filter(|k| !self.cache.contains_key(*k)).cloned());
            }
            plans.push(plan);
        }
        self.load(missing).await?;
        let mut applied = 0;
        for (stored, plan) in events.iter().zip(plans) {
            let view = EventView::new(stored);
            let span = self.observer.span(self.projection.name(), &view);
            let _entered = span.as_ref().map(tracing::Span::enter);
            // An earlier event of this batch may have parked the aggregate: wait behind it.
            let outcome = match plan {
                Ok(_) if self.parked.contains_key(&stored.subject) => Err(None),
                Ok(keys) => self.apply_one(&view, &keys, dirty_docs),
                Err(reason) => Err(reason),
            };
            match outcome {
                Ok(()) => {
                    applied += 1;
                    applied_seqs.insert(stored.seq);
                }
                Err(reason) => self.park(&view, reason, dirty_parked),
            }
        }
        Ok(applied)
    }

    /// Applies one event to every document it touches, or to none (`Err(Some(reason))`).
    fn apply_one(
        &mut self,
        event: &EventView<'_>,
        keys: &[String],
        dirty: &mut HashSet<String>,
    ) -> Result<(), Option<String>> {
        let mut staged = Vec::with_capacity(keys.len());
        for key in keys {
            let current = self.cache.get(key).cloned().unwrap_or_default();
            if current.seq >= event.seq() {
                continue; // redelivered: already reflected
            }
            let mut doc = current.doc;
            self.projection.apply(event, key, &mut doc).map_err(Some)?;
            staged.push((key.clone(), Stored { seq: event.seq(), doc }));
        }
        for (key, stored) in staged {
            dirty.insert(key.clone());
            self.cache.insert(key, stored);
        }
        Ok(())
    }

    /// Parks an event: a new record for its aggregate, or one more in the existing one.
    fn park(&mut self, event: &EventView<'_>, reason: Option<String>, dirty: &mut HashSet<String>) {
        let name = self.projection.name();
        let subject = event.stored.subject.clone();
        let record = self.parked.entry(subject.clone()).or_insert_with(|| ParkedRecord {
            view: name.to_owned(),
            version: self.version,
            subject: subject.clone(),
            seqs: Vec::new(),
            reason: reason.clone().unwrap_or_default(),
            command_id: event.command_id().to_owned(),
            at: crate::cloudevents::now_rfc3339(),
        });
        if record.seqs.contains(&event.seq()) {
            return; // redelivered
        }
        record.seqs.push(event.seq());
        let why = reason.unwrap_or_else(|| format!("waits behind parked seq {}", record.seqs[0]));
        tracing::warn!(view = name, subject = %subject, seq = event.seq(), reason = %why, command_id = event.command_id(), "event parked");
        self.observer.parked(name, event, &why);
        dirty.insert(subject);
        let count: u64 = self.parked.values().map(|r| r.seqs.len() as u64).sum();
        self.handle.parked.store(count, Ordering::Relaxed);
        self.observer.parked_count(name, count);
    }

    /// Documents `keys` were written meanwhile by someone else (another instance, or they were
    /// taken as new but existed): fetches them and applies this batch's events to them again
    /// (those they do not reflect yet). Returns the documents to write.
    async fn reapply(
        &mut self,
        events: &[StoredEvent],
        applied_seqs: &HashSet<u64>,
        keys: HashSet<String>,
    ) -> Result<HashSet<String>, ProjectionError> {
        for key in &keys {
            self.cache.remove(key);
            self.must_fetch.insert(key.clone());
        }
        self.load(keys.clone()).await?;
        let mut dirty = HashSet::new();
        for stored in events.iter().filter(|e| applied_seqs.contains(&e.seq)) {
            let view = EventView::new(stored);
            let Ok(touched) = self.projection.keys(&view) else { continue };
            let touched: Vec<String> = touched.into_iter().filter(|k| keys.contains(k)).collect();
            if touched.is_empty() {
                continue;
            }
            self.apply_one(&view, &touched, &mut dirty).map_err(|reason| {
                unavailable(self.projection.name(), reason.unwrap_or_else(|| "cannot apply again".into()))
            })?;
        }
        // A document that already reflects every event is left as it is.
        Ok(dirty)
    }

    /// Loads documents not in the cache (absent ones as defaults, revision 0). Keys the index
    /// does not know, and every key of a view without index, are taken as new without asking:
    /// the write expects the key to be empty, and the document is fetched if it was not.
    async fn load(&mut self, mut keys: HashSet<String>) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        {
            let known = self.handle.keys.as_ref().map(|index| index.read().unwrap_or_else(PoisonError::into_inner));
            keys.retain(|key| {
                let fetch =
                    self.must_fetch.remove(key) || self.fetch_always || known.as_ref().is_some_and(|k| k.contains(key));
                if !fetch {
                    self.cache.insert(key.clone(), Stored::default());
                    self.revisions.insert(key.clone(), 0);
                }
                fetch
            });
        }
        let bucket = &self.handle.bucket;
        let mut loads: FuturesUnordered<_> = keys
            .into_iter()
            .map(|key| async move {
                let raw = bucket.entry(&key).await;
                (key, raw)
            })
            .collect();
        while let Some((key, raw)) = loads.next().await {
            let raw = raw.map_err(|e| unavailable(name, e))?;
            let (doc, revision) = match raw {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    let doc = serde_json::from_slice(&entry.value).unwrap_or_else(|e| {
                        tracing::warn!(view = name, key = %key, error = %e, "stored document does not decode; starting it afresh");
                        Stored::default()
                    });
                    (doc, entry.revision)
                }
                Some(entry) => (Stored::default(), entry.revision),
                None => (Stored::default(), 0),
            };
            self.cache.insert(key.clone(), doc);
            self.revisions.insert(key, revision);
        }
        Ok(())
    }

    /// Writes changed documents and parked records; waits for every write.
    /// Returns the documents that could not be written because they changed meanwhile.
    async fn write(
        &mut self,
        mut docs: HashSet<String>,
        parked: HashSet<String>,
    ) -> Result<HashSet<String>, ProjectionError> {
        let name = self.projection.name();
        let mut acks = FuturesUnordered::new();
        let mut outcomes = Vec::with_capacity(docs.len());
        for key in &docs {
            // A JetStream context lets 5,000 acknowledgements be awaited at once, and releases a
            // place only as one arrives: more unpolled writes than that would wait forever.
            if acks.len() >= WRITES_IN_FLIGHT {
                outcomes.extend(acks.next().await);
            }
            let Some(stored) = self.cache.get(key) else { continue };
            let bytes = serde_json::to_vec(stored).map_err(|e| unavailable(name, e))?;
            // Documents fold stored (sealed) events; one a view built with plain personal data
            // is sealed too, never written in plain.
            let bytes = self.store.sealed(bytes).await.map_err(|e| unavailable(name, e))?;
            let revision = self.revisions.get(key).copied().unwrap_or_default();
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes.into())
                .expected_last_subject_sequence(revision);
            let ack = self
                .js
                .send_publish(format!("{}{key}", self.bucket_prefix), publish)
                .await
                .map_err(|e| unavailable(name, e))?;
            let key = key.clone();
            acks.push(ack.into_future().map(move |result| (key, result)));
        }
        while let Some(outcome) = acks.next().await {
            outcomes.push(outcome);
        }
        let mut failed = None;
        let mut conflicted = HashSet::new();
        for (key, ack) in outcomes {
            match ack {
                Ok(ack) => {
                    self.revisions.insert(key, ack.sequence);
                }
                Err(e) if e.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence => {
                    // Written meanwhile (by another instance), or taken as new but it exists.
                    docs.remove(&key);
                    conflicted.insert(key);
                }
                Err(e) => {
                    self.must_fetch.insert(key);
                    failed = Some(unavailable(name, e));
                }
            }
        }
        if let Some(error) = failed {
            self.must_fetch.extend(conflicted);
            return Err(error);
        }
        for subject in &parked {
            let key = parked::key(name, self.version, subject);
            match self.parked.get(subject) {
                Some(record) => {
                    let bytes = serde_json::to_vec(record).map_err(|e| unavailable(name, e))?;
                    self.parked_kv.put(key, bytes.into()).await.map_err(|e| unavailable(name, e))?;
                }
                None => {
                    self.parked_kv.purge(key).await.map_err(|e| unavailable(name, e))?;
                }
            }
        }
        if let Some(index) = self.handle.keys.as_ref().filter(|_| !docs.is_empty()) {
            index.write().unwrap_or_else(PoisonError::into_inner).extend(docs);
        }
        Ok(conflicted)
    }

    /// When idle: whichever instance is active, everything up to the consumer's
    /// acknowledgement floor is in the view; if nothing is waiting or unacknowledged, the view
    /// reflects the whole stream as it was before the check. Asks the server at most every
    /// `idle` (100 ms at least: a standby is always idle).
    async fn idle(&mut self) {
        if self.idle_checked.elapsed() < self.config.idle.max(Duration::from_millis(100)) {
            return;
        }
        self.idle_checked = std::time::Instant::now();
        // Getting the stream fetches its info already.
        let Ok(stream) = self.js.get_stream(&self.config.stream).await else { return };
        let last = stream.cached_info().state.last_sequence;
        if self.backfill.is_some() {
            return;
        }
        let Ok(info) = self.consumer.info().await else { return };
        if info.delivered.consumer_sequence > self.last_delivery {
            self.handle.index_current.store(false, Ordering::Relaxed); // on standby
        }
        let floor = info.ack_floor.stream_sequence;
        self.applied_tx.send_if_modified(|current| {
            let moved = floor > *current;
            *current = (*current).max(floor);
            moved
        });
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            self.applied_tx.send_if_modified(|current| {
                let moved = last > *current;
                *current = (*current).max(last);
                moved
            });
            self.handle.lag.store(0, Ordering::Relaxed);
            self.observer.progress(self.projection.name(), *self.applied_tx.borrow(), 0);
        }
    }

    /// Reads the parked events again (another instance may have parked or retried some).
    async fn reload_parked(&mut self) {
        match parked::load(&self.parked_kv, self.projection.name(), self.version).await {
            Ok(records) => {
                self.parked = records;
                let count: u64 = self.parked.values().map(|r| r.seqs.len() as u64).sum();
                self.handle.parked.store(count, Ordering::Relaxed);
                self.observer.parked_count(self.projection.name(), count);
            }
            Err(e) => tracing::warn!(view = self.projection.name(), error = %e, "cannot read parked events"),
        }
    }

    async fn admin(&mut self, admin: Admin) {
        match admin {
            Admin::Retry { subject, reply } => {
                let report = self.retry(subject).await;
                let _ = reply.send(report);
            }
        }
    }

    /// Applies parked events again, in order, aggregate by aggregate.
    async fn retry(&mut self, only: Option<String>) -> RetryReport {
        let name = self.projection.name();
        // Another instance may be the active one: start from what is recorded, and fetch
        // every document instead of taking any as new.
        self.reload_parked().await;
        crate::consume::Batches::forget(self);
        self.fetch_always = true;
        let subjects: Vec<String> =
            self.parked.keys().filter(|s| only.as_ref().is_none_or(|o| o == *s)).cloned().collect();
        let mut report = RetryReport::default();
        let mut dirty_docs = HashSet::new();
        let mut dirty_parked = HashSet::new();
        for subject in subjects {
            let Some(record) = self.parked.remove(&subject) else { continue };
            let mut remaining = record.seqs.clone();
            while let Some(&seq) = remaining.first() {
                // A parked event may have been compacted into the archive since: read it there.
                let stored = match self.store.event_of(&subject, seq).await {
                    Ok(Some(stored)) => stored,
                    Ok(None) => {
                        remaining.remove(0); // gone from both tiers: nothing to apply
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(view = name, seq, error = %e, "cannot read a parked event");
                        break;
                    }
                };
                let view = EventView::new(&stored);
                let keys = match self.projection.keys(&view) {
                    Ok(keys) => keys,
                    Err(reason) => {
                        self.parked.insert(
                            subject.clone(),
                            ParkedRecord { seqs: remaining.clone(), reason, ..record.clone() },
                        );
                        break;
                    }
                };
                let missing = keys.iter().filter(|k| !self.cache.contains_key(*k)).cloned().collect();
                if let Err(e) = self.load(missing).await {
                    tracing::warn!(view = name, error = %e, "cannot load documents for a retry");
                    self.parked.insert(subject.clone(), ParkedRecord { seqs: remaining.clone(), ..record.clone() });
                    break;
                }
                match self.apply_one(&view, &keys, &mut dirty_docs) {
                    Ok(()) => {
                        report.applied += 1;
                        remaining.remove(0);
                    }
                    Err(reason) => {
                        let reason = reason.unwrap_or_default();
                        self.parked.insert(
                            subject.clone(),
                            ParkedRecord { seqs: remaining.clone(), reason, ..record.clone() },
                        );
                        break;
                    }
                }
            }
            dirty_parked.insert(subject);
        }
        self.fetch_always = false;
        // The documents first: the parked records change only once they are written.
        let written = match self.write(dirty_docs, HashSet::new()).await {
            Ok(conflicted) if conflicted.is_empty() => self.write(HashSet::new(), dirty_parked).await.map(drop),
            Ok(_) => Err(unavailable(name, "documents changed under this instance")),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(view = name, error = %e, "retry not written; the events stay parked");
            crate::consume::Batches::forget(self);
            report.applied = 0;
            self.reload_parked().await;
        }
        report.still_parked = self.parked.values().map(|r| r.seqs.len()).sum();
        self.handle.parked.store(report.still_parked as u64, Ordering::Relaxed);
        self.observer.parked_count(name, report.still_parked as u64);
        report
    }
}

impl<P: Projection> crate::consume::Batches for ViewWorker<P> {
    type Request = Admin;

    async fn process(&mut self, batch: &[jetstream::Message]) -> Result<(), String> {
        self.apply_batch(batch).await.map_err(|e| e.to_string())
    }

    fn forget(&mut self) {
        self.cache.clear();
        self.revisions.clear();
    }

    /// Another instance may have written the view meanwhile: start from the bucket.
    async fn resumed(&mut self) {
        self.forget();
        self.reload_parked().await;
        if let Some(index) = &self.handle.keys {
            let mut keys = BTreeSet::new();
            match self.handle.bucket.keys().await {
                Ok(mut listing) => {
                    while let Ok(Some(key)) = listing.try_next().await {
                        keys.insert(key);
                    }
                }
                Err(e) => {
                    tracing::warn!(view = self.projection.name(), error = %e, "cannot list the view's keys; documents are fetched as they come")
                }
            }
            *index.write().unwrap_or_else(PoisonError::into_inner) = keys;
        }
        self.handle.index_current.store(true, Ordering::Relaxed);
    }

    async fn idle(&mut self) {
        ViewWorker::idle(self).await;
    }

    async fn request(&mut self, request: Admin) {
        self.admin(request).await;
    }
}

/// Deletes version `version` of view `name`: its consumer and bucket (after a switch to a
/// newer version).
///
/// # Errors
/// When JetStream refuses.
pub async fn delete_version(
    js: &jetstream::Context,
    name: &str,
    version: u32,
    stream: &str,
) -> Result<(), ProjectionError> {
    if let Ok(stream) = js.get_stream(stream).await {
        let _ = stream.delete_consumer(&consumer_name(name, version)).await;
    }
    js.delete_key_value(bucket_name(name, version)).await.map_err(|e| unavailable(name, e))?;
    Ok(())
}
