//! Appending with optimistic concurrency: one event as a plain JetStream publish, several as
//! one atomic batch (ADR-50), all or nothing.

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

impl EventStore {
    /// Appends `events` to `subject` if the subject's last stream sequence is still `expected`
    /// (0: no events yet). Several events are committed atomically.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the aggregate moved on, [`StoreError::Duplicate`] when
    /// the events were stored before, [`StoreError::Unavailable`], [`StoreError::TooLarge`].
    pub async fn append(
        &self,
        subject: &str,
        expected: u64,
        mut events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let fail = |e: PublishError| map_publish_error(e, subject, expected);
        match events.len() {
            0 => Err(StoreError::Internal("append of no events".into())),
            1 => {
                let NewEvent { msg_id, mut headers, data } = events.remove(0);
                headers.insert(MSG_ID, msg_id);
                headers.insert(EXPECTED_LAST_SUBJECT_SEQ, expected.to_string());
                let ack = self.retrying(|| self.publish(subject, headers.clone(), data.clone())).await.map_err(fail)?;
                Ok(Appended { first_seq: ack.sequence, last_seq: ack.sequence, duplicate: ack.duplicate })
            }
            n if n > MAX_BATCH => Err(StoreError::TooLarge(format!(
                "a command may record at most {MAX_BATCH} events; this one recorded {n}"
            ))),
            n => {
                let ack =
                    self.retrying(|| self.publish_batch(subject, expected, events.clone())).await.map_err(fail)?;
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
    /// last one commits through the JetStream publish path and gets the PubAck. The
    /// expectation sits on the first message only: the batch targets one subject, and a second
    /// expectation on the same subject would be refused (10164).
    async fn publish_batch(
        &self,
        subject: &str,
        expected: u64,
        events: Vec<NewEvent>,
    ) -> Result<PublishAck, PublishError> {
        let other = |e: Box<dyn StdError + Send + Sync>| PublishError::with_source(PublishErrorKind::Other, e);
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let client = &self.inner.client;
        let last = events.len() - 1;
        for (index, NewEvent { msg_id, mut headers, data }) in events.into_iter().enumerate() {
            headers.insert(MSG_ID, msg_id);
            headers.insert(BATCH_ID, batch_id.as_str());
            headers.insert(BATCH_SEQ, (index + 1).to_string());
            if index == 0 {
                headers.insert(EXPECTED_LAST_SUBJECT_SEQ, expected.to_string());
            }
            if index == last {
                headers.insert(BATCH_COMMIT, "1");
                return self.publish(subject, headers, data).await;
            }
            if index == 0 {
                let reply =
                    client.request_with_headers(subject.to_owned(), headers, data).await.map_err(|e| {
                        match e.kind() {
                            async_nats::RequestErrorKind::TimedOut => PublishError::new(PublishErrorKind::TimedOut),
                            async_nats::RequestErrorKind::NoResponders => {
                                PublishError::new(PublishErrorKind::StreamNotFound)
                            }
                            _ => other(Box::new(e)),
                        }
                    })?;
                if !reply.payload.is_empty() {
                    return Err(batch_start_error(&reply.payload));
                }
            } else {
                client.publish_with_headers(subject.to_owned(), headers, data).await.map_err(|e| other(Box::new(e)))?;
            }
        }
        Err(PublishError::new(PublishErrorKind::Other))
    }
}

/// Whether an append may have been lost on the way (and is worth sending again), rather than
/// refused.
fn retryable(error: &PublishError) -> bool {
    matches!(error.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe)
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
