//! Appending with optimistic concurrency: one event as a plain JetStream publish, several as
//! one atomic batch (ADR-50), all or nothing, on one subject or several (a command over several
//! aggregates, tags, conditions over a subject filter: ADR 18).

use std::error::Error as StdError;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::HeaderName;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;

use super::{Appended, EventStore, NewEvent};
use crate::error::StoreError;

/// JetStream's limit on messages per atomic batch.
pub const MAX_BATCH: usize = 1000;

const EXPECTED_LAST_SUBJECT_SEQ: HeaderName = HeaderName::from_static("Nats-Expected-Last-Subject-Sequence");
const EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: HeaderName =
    HeaderName::from_static("Nats-Expected-Last-Subject-Sequence-Subject");
const MSG_ID: HeaderName = HeaderName::from_static("Nats-Msg-Id");
const BATCH_ID: HeaderName = HeaderName::from_static("Nats-Batch-Id");
const BATCH_SEQ: HeaderName = HeaderName::from_static("Nats-Batch-Sequence");
const BATCH_COMMIT: HeaderName = HeaderName::from_static("Nats-Batch-Commit");

// JetStream API error codes this module acts on (async-nats only maps 10071 to a kind).
const WRONG_LAST_SEQUENCE: u64 = 10071;
const WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
const ATOMIC_PUBLISH_DISABLED: u64 = 10174;
const ATOMIC_DUPLICATE_MSG_ID: u64 = 10201;
const DUPLICATE_MSG_ID_IN_PROCESS: u64 = 10158;
const ATOMIC_TOO_MANY_INFLIGHT: u64 = 10210;

/// One message of an append: an event, or a tag's copy of one, on its subject, with the
/// expectation it carries, if any.
#[derive(Debug, Clone)]
pub struct Write {
    subject: String,
    event: NewEvent,
    expect: Option<Expect>,
}

/// What a message expects of the stream before the append: that the last message on `filter`
/// (its own subject when `None`) has stream sequence `last_seq` (0: there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The subject filter checked; the message's own subject when `None`.
    pub filter: Option<String>,
    /// The stream sequence of the last message on it, as read.
    pub last_seq: u64,
}

impl Write {
    /// `event` on `subject`, expecting nothing.
    pub fn new(subject: impl Into<String>, event: NewEvent) -> Self {
        Self { subject: subject.into(), event, expect: None }
    }

    /// Carries `expect`; at most one expectation per message, and per subject in a batch.
    #[must_use]
    pub fn expecting(mut self, expect: Expect) -> Self {
        self.expect = Some(expect);
        self
    }

    /// The subject it is written to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The event it writes.
    pub(crate) fn event(&self) -> &NewEvent {
        &self.event
    }

    pub(crate) fn event_mut(&mut self) -> &mut NewEvent {
        &mut self.event
    }
}

impl EventStore {
    /// Appends `events` to `subject` if the subject's last stream sequence is still `expected`
    /// (0: no events yet). Several events are committed atomically.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the aggregate moved on, [`StoreError::Duplicate`] when
    /// the events were stored before, [`StoreError::Unavailable`], [`StoreError::TooLarge`].
    pub async fn append(&self, subject: &str, expected: u64, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
        let writes = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let write = Write::new(subject, event);
                if index == 0 { write.expecting(Expect { filter: None, last_seq: expected }) } else { write }
            })
            .collect();
        self.append_all(writes).await
    }

    /// Appends `writes` all or nothing: one message as a plain publish, several as one atomic
    /// batch (ADR-50) in this order. Every expectation is checked against the stream as it was
    /// before the batch; if any fails, nothing is written. Put each aggregate's expectation on
    /// its first message, and each further condition on a message of its own subject (the
    /// server refuses two expectations on one subject in a batch).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when an expectation failed (it names the first write's),
    /// [`StoreError::Duplicate`] when the messages were stored before,
    /// [`StoreError::Unavailable`], [`StoreError::TooLarge`].
    pub async fn append_all(&self, mut writes: Vec<Write>) -> Result<Appended, StoreError> {
        let Some(first) = writes.first() else {
            return Err(StoreError::Internal("append of no events".into()));
        };
        let subject = first.subject.clone();
        let expected = first.expect.as_ref().map_or(0, |e| e.last_seq);
        let fail = |e: PublishError| map_publish_error(e, &subject, expected);
        match writes.len() {
            1 => {
                let Write { subject, event: NewEvent { msg_id, mut headers, data }, expect } = writes.remove(0);
                headers.insert(MSG_ID, msg_id);
                expectation(&mut headers, expect.as_ref());
                let ack =
                    self.retrying(|| self.publish(&subject, headers.clone(), data.clone())).await.map_err(fail)?;
                Ok(Appended { first_seq: ack.sequence, last_seq: ack.sequence, duplicate: ack.duplicate })
            }
            n if n > MAX_BATCH => Err(StoreError::TooLarge(format!(
                "a command may record at most {MAX_BATCH} events and tags; this one recorded {n}"
            ))),
            n => {
                let ack = self.retrying(|| self.publish_batch(writes.clone())).await.map_err(fail)?;
                let count = n as u64;
                Ok(Appended { first_seq: ack.sequence + 1 - count, last_seq: ack.sequence, duplicate: ack.duplicate })
            }
        }
    }

    /// Appends one event that does not depend on the subject's earlier events (a fact
    /// recorded by infrastructure, such as an event a view had to park): no expectation on
    /// the last sequence, deduplicated by its `Nats-Msg-Id`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::TooLarge`].
    pub async fn append_fact(&self, subject: &str, event: NewEvent) -> Result<Appended, StoreError> {
        let NewEvent { msg_id, mut headers, data } = event;
        headers.insert(MSG_ID, msg_id);
        let ack = self
            .retrying(|| self.publish(subject, headers.clone(), data.clone()))
            .await
            .map_err(|e| map_publish_error(e, subject, 0))?;
        Ok(Appended { first_seq: ack.sequence, last_seq: ack.sequence, duplicate: ack.duplicate })
    }

    /// Runs `attempt` until it is acknowledged or refused, at most until the append deadline.
    /// An attempt unacknowledged within the ack timeout (its stream leader died; an election
    /// is under way; a route broke) is sent again as it was: the same message ids and the same
    /// expectation, so a first attempt that did land is recognised (a duplicate on R3, the
    /// same sequence no longer expected on R1 — the repository then finds its earlier outcome).
    async fn retrying<F, Fut>(&self, mut attempt: F) -> Result<PublishAck, PublishError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<PublishAck, PublishError>>,
    {
        let config = &self.inner.config;
        let deadline = tokio::time::Instant::now() + config.append_deadline;
        let mut pause = crate::Backoff::new(Duration::from_millis(20), Duration::from_millis(250));
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = match tokio::time::timeout(config.ack_timeout.min(left), attempt()).await {
                Ok(result) => result,
                Err(_) => Err(PublishError::new(PublishErrorKind::TimedOut)),
            };
            match result {
                Err(e) if retryable(&e) => {
                    let wait = pause.next_delay();
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "append unacknowledged; sending again");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn publish(&self, subject: &str, headers: HeaderMap, data: bytes::Bytes) -> Result<PublishAck, PublishError> {
        let publish = PublishMessage::build().payload(data).headers(headers);
        self.inner.js.send_publish(subject.to_owned(), publish).await?.await
    }

    /// The atomic batch: the first message is a request (an empty reply means the batch
    /// started), the middle ones plain publishes on the same connection (so in order), the
    /// last one commits through the JetStream publish path and gets the PubAck.
    async fn publish_batch(&self, writes: Vec<Write>) -> Result<PublishAck, PublishError> {
        let other = |e: Box<dyn StdError + Send + Sync>| PublishError::with_source(PublishErrorKind::Other, e);
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let client = &self.inner.client;
        let last = writes.len() - 1;
        for (index, Write { subject, event: NewEvent { msg_id, mut headers, data }, expect }) in
            writes.into_iter().enumerate()
        {
            headers.insert(MSG_ID, msg_id);
            headers.insert(BATCH_ID, batch_id.as_str());
            headers.insert(BATCH_SEQ, (index + 1).to_string());
            expectation(&mut headers, expect.as_ref());
            if index == last {
                headers.insert(BATCH_COMMIT, "1");
                return self.publish(&subject, headers, data).await;
            }
            if index == 0 {
                let reply = client.request_with_headers(subject, headers, data).await.map_err(|e| match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => PublishError::new(PublishErrorKind::TimedOut),
                    async_nats::RequestErrorKind::NoResponders => PublishError::new(PublishErrorKind::StreamNotFound),
                    _ => other(Box::new(e)),
                })?;
                if !reply.payload.is_empty() {
                    return Err(batch_start_error(&reply.payload));
                }
            } else {
                client.publish_with_headers(subject, headers, data).await.map_err(|e| other(Box::new(e)))?;
            }
        }
        Err(PublishError::new(PublishErrorKind::Other))
    }
}

/// Writes an expectation into a message's headers.
fn expectation(headers: &mut HeaderMap, expect: Option<&Expect>) {
    if let Some(expect) = expect {
        headers.insert(EXPECTED_LAST_SUBJECT_SEQ, expect.last_seq.to_string());
        if let Some(filter) = &expect.filter {
            headers.insert(EXPECTED_LAST_SUBJECT_SEQ_SUBJECT, filter.as_str());
        }
    }
}

/// Whether an append may have been lost on the way, or was turned away before anything was
/// stored (the stream already had its 50 atomic batches in flight), and is worth sending
/// again, rather than refused.
fn retryable(error: &PublishError) -> bool {
    matches!(error.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe)
        || jetstream_code(error) == Some(ATOMIC_TOO_MANY_INFLIGHT)
}

/// The first message of a batch answers with a JetStream API error when it cannot start.
fn batch_start_error(payload: &[u8]) -> PublishError {
    #[derive(serde::Deserialize)]
    struct Reply {
        error: Option<async_nats::jetstream::Error>,
    }
    match serde_json::from_slice::<Reply>(payload) {
        Ok(Reply { error: Some(e) }) if e.error_code().0 == WRONG_LAST_SEQUENCE => {
            PublishError::with_source(PublishErrorKind::WrongLastSequence, e)
        }
        Ok(Reply { error: Some(e) }) => PublishError::with_source(PublishErrorKind::Other, e),
        _ => PublishError::with_source(
            PublishErrorKind::Other,
            format!("unexpected batch start reply: {}", String::from_utf8_lossy(payload)),
        ),
    }
}

/// The JetStream API error code inside a publish error, if the server sent one.
pub(crate) fn jetstream_code(error: &(dyn StdError + 'static)) -> Option<u64> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code().0);
        }
        current = e.source();
    }
    None
}

fn map_publish_error(error: PublishError, subject: &str, expected: u64) -> StoreError {
    let conflict = || StoreError::Conflict { subject: subject.to_owned(), expected };
    match error.kind() {
        PublishErrorKind::WrongLastSequence => conflict(),
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            StoreError::Unavailable(format!("no acknowledgement for {subject}: {error}"))
        }
        PublishErrorKind::StreamNotFound => {
            StoreError::Unavailable(format!("no stream accepts {subject}; is the topology provisioned?"))
        }
        PublishErrorKind::MaxPayloadExceeded => StoreError::TooLarge(format!("event too large for {subject}: {error}")),
        _ => match jetstream_code(&error) {
            Some(WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_CONSTANT) => conflict(),
            Some(ATOMIC_DUPLICATE_MSG_ID | DUPLICATE_MSG_ID_IN_PROCESS) => {
                StoreError::Duplicate { subject: subject.to_owned() }
            }
            Some(ATOMIC_PUBLISH_DISABLED) => StoreError::Internal(format!(
                "atomic batch publish is disabled on the stream of {subject}; provision the topology again"
            )),
            _ => StoreError::Internal(format!("append to {subject} failed: {error}")),
        },
    }
}
