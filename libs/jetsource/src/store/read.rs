//! Reading events back with Direct Get (ADR-31): batches of `next_by_subj`, no consumer.

use std::ops::ControlFlow;

use async_nats::header::HeaderName;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::EventStore;
use crate::cloudevents::Attributes;
use crate::error::StoreError;

/// An event as stored: where it sits, its headers and raw JSON data. Attributes are parsed on
/// demand, so a replay reads only the headers it needs.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The aggregate subject.
    pub subject: String,
    /// Stream sequence.
    pub seq: u64,
    /// When the server stored it.
    pub stored_at: OffsetDateTime,
    /// All headers: the `ce-*` attributes, trace context and the server's `Nats-*` ones.
    pub headers: HeaderMap,
    /// The body.
    pub data: Bytes,
}

impl StoredEvent {
    fn from_message(message: Message) -> Result<Self, StoreError> {
        let headers = message.headers.unwrap_or_default();
        let text = |name: HeaderName| headers.get(name).map(|v| v.as_str());
        let subject = text(NATS_SUBJECT).unwrap_or_default().to_owned();
        let seq = text(NATS_SEQUENCE).and_then(|s| s.parse().ok()).unwrap_or(0);
        let stored_at =
            text(NATS_TIME_STAMP).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()).ok_or_else(|| {
                StoreError::Undecodable {
                    subject: subject.clone(),
                    seq,
                    reason: "missing or malformed Nats-Time-Stamp".into(),
                }
            })?;
        Ok(Self { subject, seq, stored_at, headers, data: message.payload })
    }

    /// An event delivered by a JetStream consumer.
    ///
    /// # Errors
    /// [`StoreError::Undecodable`] when the message carries no JetStream delivery info.
    pub fn from_delivery(message: &async_nats::jetstream::Message) -> Result<Self, StoreError> {
        let info = message.info().map_err(|e| StoreError::Undecodable {
            subject: message.subject.to_string(),
            seq: 0,
            reason: format!("no delivery info: {e}"),
        })?;
        Ok(Self {
            subject: message.subject.to_string(),
            seq: info.stream_sequence,
            stored_at: info.published,
            headers: message.headers.clone().unwrap_or_default(),
            data: message.payload.clone(),
        })
    }

    /// All CloudEvents attributes.
    ///
    /// # Errors
    /// [`StoreError::Undecodable`] naming subject and sequence when `ce-type` is missing or a
    /// number is malformed.
    pub fn attributes(&self) -> Result<Attributes, StoreError> {
        Attributes::read(&self.headers).map_err(|reason| self.undecodable(reason))
    }

    /// The error for this event being unreadable.
    pub fn undecodable(&self, reason: String) -> StoreError {
        StoreError::Undecodable { subject: self.subject.clone(), seq: self.seq, reason }
    }
}

const NATS_SUBJECT: HeaderName = HeaderName::from_static("Nats-Subject");
const NATS_SEQUENCE: HeaderName = HeaderName::from_static("Nats-Sequence");
const NATS_TIME_STAMP: HeaderName = HeaderName::from_static("Nats-Time-Stamp");
const NATS_NUM_PENDING: HeaderName = HeaderName::from_static("Nats-Num-Pending");

/// What a Direct Get batch request ended with.
enum BatchEnd {
    /// The server sent everything it had (or the batch limit) and this many still match.
    Pending(u64),
    /// Nothing at or after the start sequence.
    NotFound,
}

impl EventStore {
    /// Reads the events of `subject` from stream sequence `from_seq` on, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the stream does not answer Direct Get in time,
    /// [`StoreError::Undecodable`] when a message lacks the headers of an event.
    pub async fn read(&self, subject: &str, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        self.read_with(subject, from_seq, limit, |event| {
            events.push(event);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(events)
    }

    /// Like [`EventStore::read`], handing each event to `visit` as it arrives (no buffering of
    /// the whole history). `visit` stops the read with [`ControlFlow::Break`] or an error.
    /// Returns how many events were visited.
    ///
    /// # Errors
    /// As [`EventStore::read`], or the first error `visit` returns.
    pub async fn read_with<F>(
        &self,
        subject: &str,
        from_seq: u64,
        limit: usize,
        mut visit: F,
    ) -> Result<u64, StoreError>
    where
        F: FnMut(StoredEvent) -> Result<ControlFlow<()>, StoreError>,
    {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        let mut next_seq = from_seq.max(1);
        let mut read = 0_u64;
        while (read as usize) < limit {
            let batch = self.inner.config.read_batch.min(limit - read as usize);
            let request = json!({ "seq": next_seq, "batch": batch, "next_by_subj": subject });
            client
                .publish_with_reply(self.inner.direct_get.clone(), inbox.clone(), request.to_string().into())
                .await
                .map_err(unavailable)?;
            let end = loop {
                let message = tokio::time::timeout(self.inner.config.read_timeout, replies.next())
                    .await
                    .map_err(|_| StoreError::Unavailable(format!("direct get of {subject} timed out")))?
                    .ok_or_else(|| StoreError::Unavailable("NATS connection closed during a read".into()))?;
                match message.status.map(|s| s.as_u16()) {
                    None => {
                        let event = StoredEvent::from_message(message)?;
                        next_seq = event.seq + 1;
                        read += 1;
                        if visit(event)?.is_break() {
                            return Ok(read);
                        }
                    }
                    Some(204) => break BatchEnd::Pending(num_pending(message.headers.as_ref())),
                    Some(404) => break BatchEnd::NotFound,
                    Some(503) => {
                        return Err(StoreError::Unavailable(format!(
                            "stream {} does not answer Direct Get; is it provisioned with allow_direct?",
                            self.inner.config.stream
                        )));
                    }
                    Some(code) => {
                        return Err(StoreError::Internal(format!(
                            "direct get of {subject} failed: {code} {}",
                            message.description.unwrap_or_default()
                        )));
                    }
                }
            };
            match end {
                BatchEnd::Pending(0) | BatchEnd::NotFound => break,
                BatchEnd::Pending(_) => {}
            }
        }
        Ok(read)
    }

    /// The stream sequence of the last event on `subject`, or 0 when it has none.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Direct Get does not answer.
    pub async fn last_seq(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self.last_event(subject).await?.map_or(0, |e| e.seq))
    }

    /// The last event on `subject`, if any.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Direct Get does not answer.
    pub async fn last_event(&self, subject: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.direct_get_one(json!({ "last_by_subj": subject })).await
    }

    /// The event at stream sequence `seq`, if there is one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Direct Get does not answer.
    pub async fn event_at(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        self.direct_get_one(json!({ "seq": seq })).await
    }

    async fn direct_get_one(&self, request: serde_json::Value) -> Result<Option<StoredEvent>, StoreError> {
        let request = self.inner.client.request(self.inner.direct_get.clone(), request.to_string().into());
        let message = tokio::time::timeout(self.inner.config.read_timeout, request)
            .await
            .map_err(|_| StoreError::Unavailable("direct get timed out".into()))?
            .map_err(unavailable)?;
        match message.status.map(|s| s.as_u16()) {
            None => StoredEvent::from_message(message).map(Some),
            Some(404) => Ok(None),
            Some(code) => Err(StoreError::Unavailable(format!(
                "direct get failed: {code} {}",
                message.description.unwrap_or_default()
            ))),
        }
    }
}

fn num_pending(headers: Option<&HeaderMap>) -> u64 {
    headers.and_then(|h| h.get(NATS_NUM_PENDING)).and_then(|v| v.as_str().parse().ok()).unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
