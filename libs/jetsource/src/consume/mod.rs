//! The one consumer loop: pulls a durable consumer's messages until shutdown, reconnecting after
//! hiccups, and owns what every consumer needs — acknowledgements, naks with backoff, progress
//! while a slow step runs, and the poison-event policy. Handlers only return what became of an
//! event ([`Outcome`]); they never ack.
//!
//! Two ways to hand events over, one loop:
//! - [`run_per_event`]: each event to [`EventHandler::handle`]; events of one aggregate one after
//!   the other, aggregates in parallel (process managers, the notifier). `Retry` keeps the event
//!   (and its aggregate's later events) and tries again after a backoff, reporting progress so
//!   it is not redelivered meanwhile; `Park` records it in the `parked` bucket under the
//!   consumer's name, where later events of the same aggregate wait behind it until a retry.
//! - [`run_batches`]: batches in stream order to a [`Batches`] handler (views, which park per
//!   aggregate inside their documents' writes); a failed batch is delivered again, in order,
//!   after a backoff.
//!
//! Both run any number of instances of one consumer: one is active, the others wait on standby
//! and take over when it dies, with deliveries kept in stream order across the takeover
//! ([`order`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind, kv};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};

use crate::projection::ParkedRecord;

pub mod order;

use crate::{Backoff, Shutdown, StoredEvent};
use order::{Admit, Held, InOrder};
pub use order::{GROUP, PIN_TIMEOUT, PULL_EXPIRES, standby};

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge it.
    Done,
    /// Not now (a service is down): try again after at least this long.
    Retry(Duration),
    /// It can never be handled as it is: park it (and its aggregate's later events).
    Park(String),
}

/// Handles one event at a time.
pub trait EventHandler: Send + Sync + 'static {
    /// What became of `event`.
    fn handle<'a>(&'a self, event: &'a StoredEvent) -> BoxFuture<'a, Outcome>;
}

/// How a per-event consumer runs.
#[derive(Debug, Clone)]
pub struct PerEventConfig {
    /// The consumer's name: logs, and its parked events' keys (`<name>.v0.<subject>`).
    pub name: &'static str,
    /// Events handled at once (events of one aggregate are always one after the other).
    pub max_in_flight: usize,
    /// How often a slow step reports progress (well below the consumer's ack wait).
    pub progress_every: Duration,
    /// Pauses between attempts at an event that asked to be retried.
    pub retry: Backoff,
}

impl PerEventConfig {
    /// Defaults for consumer `name`: 256 at once, progress every 3 s, retries from 100 ms to 5 s.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            max_in_flight: 256,
            progress_every: Duration::from_secs(3),
            retry: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// Pulls `consumer`'s messages (as one instance of its priority group) and hands each that is
/// in order over with `each`, with its hold, until `shutdown`; reconnects when the pull stream
/// ends or cannot start.
async fn pull<F, Fut>(consumer: &PullConsumer, shutdown: &Shutdown, name: &str, mut each: F)
where
    F: FnMut(jetstream::Message, Option<Held>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut reconnect = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut order = InOrder::new(consumer.clone());
    loop {
        let mut messages = match pull_stream(consumer, order.pinned(), None).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "cannot pull messages; retrying");
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = reconnect.wait() => continue,
                }
            }
        };
        reconnect.reset();
        loop {
            let message = tokio::select! {
                () = shutdown.wait() => return,
                next = messages.next() => match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(consumer = name, error = %e, "pulling messages");
                        continue;
                    }
                    None => break,
                },
            };
            match order.admit(&message).await {
                Admit::Take(held) => each(message, held).await,
                Admit::Drop => {}
            }
        }
    }
}

/// A pull stream of `consumer`; of a pinned one in the priority group, with requests short
/// enough to renew the pin.
async fn pull_stream(
    consumer: &PullConsumer,
    pinned: bool,
    batch: Option<usize>,
) -> Result<async_nats::jetstream::consumer::pull::Stream, async_nats::jetstream::consumer::StreamError> {
    let mut builder = consumer.stream();
    builder = if pinned {
        builder.group(GROUP).expires(PULL_EXPIRES).heartbeat(PULL_EXPIRES / 4)
    } else {
        builder.expires(Duration::from_secs(30)).heartbeat(Duration::from_secs(5))
    };
    if let Some(batch) = batch {
        builder = builder.max_messages_per_batch(batch);
    }
    builder.messages().await
}

/// The parked events of a per-event consumer, kept in the `parked` bucket.
struct Parked {
    kv: kv::Store,
    name: &'static str,
    records: Mutex<HashMap<String, ParkedRecord>>,
}

impl Parked {
    async fn open(kv: kv::Store, name: &'static str) -> Self {
        let records = crate::projection::parked::load(&kv, name, 0).await.unwrap_or_else(|e| {
            tracing::warn!(consumer = name, error = %e, "cannot read parked events; starting with none");
            HashMap::new()
        });
        Self { kv, name, records: Mutex::new(records) }
    }

    fn count(&self) -> usize {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).values().map(|r| r.seqs.len()).sum()
    }

    fn contains(&self, subject: &str) -> bool {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).contains_key(subject)
    }

    /// Parks `event`: a new record for its aggregate, or one more behind the first.
    async fn park(&self, event: &StoredEvent, reason: Option<&str>) -> Result<(), String> {
        let record = {
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            let record = records.entry(event.subject.clone()).or_insert_with(|| ParkedRecord {
                view: self.name.to_owned(),
                version: 0,
                subject: event.subject.clone(),
                seqs: Vec::new(),
                reason: reason.unwrap_or_default().to_owned(),
                command_id: crate::cloudevents::command_id(&event.headers).to_owned(),
                at: crate::cloudevents::now_rfc3339(),
            });
            if !record.seqs.contains(&event.seq) {
                record.seqs.push(event.seq);
            }
            record.clone()
        };
        let why = reason.map_or_else(|| format!("waits behind parked seq {}", record.seqs[0]), str::to_owned);
        tracing::warn!(consumer = self.name, subject = %event.subject, seq = event.seq, reason = %why, "event parked");
        let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let key = crate::projection::parked::key(self.name, 0, &event.subject);
        self.kv.put(key, bytes.into()).await.map(drop).map_err(|e| e.to_string())
    }
}

/// One event, the message it came in, and its place in the delivery order.
struct Delivery {
    message: jetstream::Message,
    event: Option<StoredEvent>,
    _held: Option<Held>,
}

/// Hands every event of `consumer` to `handler`, one aggregate's events in order, until
/// `shutdown`; parks in `parked` (the bucket of parked events) what the handler parks.
pub async fn run_per_event<H: EventHandler>(
    consumer: PullConsumer,
    parked: kv::Store,
    config: PerEventConfig,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let parked = Arc::new(Parked::open(parked, config.name).await);
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let queues: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Delivery>>>> = Arc::default();
    let config = Arc::new(config);
    pull(&consumer, &shutdown, config.name, |message, held| {
        let event = StoredEvent::from_delivery(&message).ok();
        let key = event.as_ref().map_or_else(|| message.subject.to_string(), |e| e.subject.clone());
        let delivery = Delivery { message, event, _held: held };
        let mut open = queues.lock().unwrap_or_else(PoisonError::into_inner);
        let delivery = match open.get(&key) {
            Some(queue) => match queue.send(delivery) {
                Ok(()) => return std::future::ready(()),
                Err(mpsc::error::SendError(delivery)) => delivery,
            },
            None => delivery,
        };
        let (queue, mut pending) = mpsc::unbounded_channel();
        let _ = queue.send(delivery);
        open.insert(key.clone(), queue);
        drop(open);
        let (handler, parked, config, shutdown, permits, queues) = (
            Arc::clone(&handler),
            Arc::clone(&parked),
            Arc::clone(&config),
            shutdown.clone(),
            Arc::clone(&permits),
            Arc::clone(&queues),
        );
        tokio::spawn(async move {
            loop {
                let next = match pending.try_recv() {
                    Ok(delivery) => delivery,
                    Err(_) => {
                        // Empty: close the queue unless an event arrived meanwhile (checked
                        // under the lock the dispatcher sends under).
                        let mut open = queues.lock().unwrap_or_else(PoisonError::into_inner);
                        match pending.try_recv() {
                            Ok(delivery) => delivery,
                            Err(_) => {
                                open.remove(&key);
                                return;
                            }
                        }
                    }
                };
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                if !deliver(handler.as_ref(), &parked, &config, next, &shutdown).await {
                    return; // stopping: what is left is redelivered after a restart
                }
                drop(permit);
            }
        });
        std::future::ready(())
    })
    .await;
    tracing::info!(consumer = config.name, parked = parked.count(), "stopping");
}

/// Handles one delivery until it is done or parked; false when the process stops first (the
/// event is not acknowledged, so it comes again).
async fn deliver<H: EventHandler>(
    handler: &H,
    parked: &Parked,
    config: &PerEventConfig,
    delivery: Delivery,
    shutdown: &Shutdown,
) -> bool {
    let Delivery { message, event, _held } = delivery;
    let Some(event) = event else {
        tracing::error!(consumer = config.name, subject = %message.subject, "a message without delivery info; acknowledged and dropped");
        ack(config.name, &message, AckKind::Ack).await;
        return true;
    };
    if parked.contains(&event.subject) {
        return settle_parked(config, parked, &message, &event, None, shutdown).await;
    }
    let mut pause = config.retry.clone();
    loop {
        let step = handler.handle(&event);
        tokio::pin!(step);
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + config.progress_every, config.progress_every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut step => break outcome,
                _ = progress.tick() => ack(config.name, &message, AckKind::Progress).await,
                () = shutdown.wait() => return false,
            }
        };
        match outcome {
            Outcome::Done => {
                ack(config.name, &message, AckKind::Ack).await;
                return true;
            }
            Outcome::Park(reason) => {
                return settle_parked(config, parked, &message, &event, Some(&reason), shutdown).await;
            }
            Outcome::Retry(at_least) => {
                ack(config.name, &message, AckKind::Progress).await;
                let wait = pause.next_delay().max(at_least);
                tokio::select! {
                    () = shutdown.wait() => return false,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Parks `event` (retrying the record until it is written), then acknowledges it.
async fn settle_parked(
    config: &PerEventConfig,
    parked: &Parked,
    message: &jetstream::Message,
    event: &StoredEvent,
    reason: Option<&str>,
    shutdown: &Shutdown,
) -> bool {
    let mut pause = config.retry.clone();
    while let Err(e) = parked.park(event, reason).await {
        tracing::warn!(consumer = config.name, error = %e, "cannot record a parked event; retrying");
        ack(config.name, message, AckKind::Progress).await;
        tokio::select! {
            () = shutdown.wait() => return false,
            () = pause.wait() => {}
        }
    }
    ack(config.name, message, AckKind::Ack).await;
    true
}

async fn ack(name: &str, message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(consumer = name, error = %e, "cannot acknowledge");
    }
}

/// Applies batches of events in stream order (views).
pub trait Batches: Send {
    /// Requests an operator sends the consumer while it runs (a view's retries).
    type Request: Send;

    /// Applies `batch` and acknowledges it; nothing is acknowledged on error.
    fn process(&mut self, batch: &[jetstream::Message]) -> impl Future<Output = Result<(), String>> + Send;

    /// Forgets what it cached of a batch that failed (it is delivered again).
    fn forget(&mut self);

    /// Deliveries start here (again): at start, or after another instance delivered some
    /// meanwhile (a takeover); what the handler cached of its output may be stale.
    fn resumed(&mut self) -> impl Future<Output = ()> + Send;

    /// No message came for a while.
    fn idle(&mut self) -> impl Future<Output = ()> + Send;

    /// Answers an operator's request.
    fn request(&mut self, request: Self::Request) -> impl Future<Output = ()> + Send;
}

/// How a batch consumer runs.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// The consumer's name, for logs.
    pub name: &'static str,
    /// Messages handed over at once at most.
    pub batch: usize,
    /// How long without messages counts as idle.
    pub idle: Duration,
    /// Delays before a failed batch is delivered again.
    pub redeliver: Backoff,
}

/// Hands `consumer`'s messages to `handler` in batches of what has arrived (up to
/// `config.batch`), until `stop`; a failed batch comes again, in order, after a growing delay
/// (the consumer is rewound to its acknowledgement floor). Operator requests arriving on
/// `requests` are answered between batches.
pub async fn run_batches<B: Batches>(
    consumer: PullConsumer,
    config: BatchConfig,
    mut handler: B,
    mut requests: mpsc::Receiver<B::Request>,
    stop: impl Future<Output = ()>,
) {
    let name = config.name;
    let mut stop = std::pin::pin!(stop);
    let mut reconnect = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut redeliver = config.redeliver.clone();
    let mut order = InOrder::new(consumer.clone());
    'connect: loop {
        let mut messages = match pull_stream(&consumer, order.pinned(), Some(config.batch)).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "cannot consume; retrying");
                tokio::select! {
                    () = &mut stop => return,
                    () = reconnect.wait() => continue 'connect,
                }
            }
        };
        reconnect.reset();
        loop {
            tokio::select! {
                () = &mut stop => return,
                Some(request) = requests.recv() => handler.request(request).await,
                first = tokio::time::timeout(config.idle, messages.next()) => match first {
                    Err(_idle) => handler.idle().await,
                    Ok(Some(Ok(message))) => {
                        let mut batch = Vec::with_capacity(config.batch);
                        let mut holds = Vec::with_capacity(config.batch);
                        let mut next = Some(message);
                        while let Some(message) = next.take() {
                            if let Admit::Take(held) = order.admit(&message).await {
                                batch.push(message);
                                holds.push(held);
                            }
                            if batch.len() < config.batch
                                && let Some(Some(Ok(message))) = messages.next().now_or_never()
                            {
                                next = Some(message);
                            }
                        }
                        if batch.is_empty() {
                            continue;
                        }
                        if order.take_resumed() {
                            handler.resumed().await;
                        }
                        match handler.process(&batch).await {
                            Ok(()) => redeliver.reset(),
                            Err(e) => {
                                tracing::warn!(consumer = name, error = %e, "batch not applied; it will be delivered again");
                                handler.forget();
                                tokio::select! {
                                    () = &mut stop => return,
                                    () = redeliver.wait() => {}
                                }
                                drop(holds);
                                order.rewind(&batch[0].context).await;
                            }
                        }
                    }
                    Ok(Some(Err(e))) => tracing::warn!(consumer = name, error = %e, "consumer hiccup"),
                    Ok(None) => continue 'connect,
                },
            }
        }
    }
}
