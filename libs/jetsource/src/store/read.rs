//! Reading events back with Direct Get (ADR-31): batches of `next_by_subj`, no consumer; from
//! the archive where the hot stream no longer holds them.

use std::collections::HashMap;
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
        Attributes::read(&self.headers).map_err(|reason| self.undecodable(reason.to_string()))
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
    /// Nobody answered Direct Get (a stream just created, its responders not up yet).
    NoResponders,
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
    pub async fn read_with<F>(&self, subject: &str, from_seq: u64, limit: usize, visit: F) -> Result<u64, StoreError>
    where
        F: FnMut(StoredEvent) -> Result<ControlFlow<()>, StoreError>,
    {
        self.read_history(subject, from_seq, None, limit, visit).await
    }

    /// Reads the events of `subject` from stream sequence `from_seq` on, whichever tier holds
    /// them: the hot stream, and the archive for the events the archiver purged from it
    /// (`docs/adr/0016`). Archived events come back as they were: their sequence in the event
    /// stream and the time it recorded them.
    ///
    /// Every event's `ce-aggregateversion` is checked against the one expected: a jump means
    /// the events between were purged, before the read or while it ran, and they are read
    /// from the archive before the read goes on. `first_version` is the version the first event
    /// at or after `from_seq` has (the repository knows it; `None` when the caller does not:
    /// then a first event that is not the aggregate's first and sits after `from_seq` sends the
    /// read to the archive, which costs a round trip and finds nothing when nothing was
    /// purged).
    ///
    /// # Errors
    /// As [`EventStore::read`].
    pub async fn read_history<F>(
        &self,
        subject: &str,
        from_seq: u64,
        first_version: Option<u64>,
        limit: usize,
        mut visit: F,
    ) -> Result<u64, StoreError>
    where
        F: FnMut(StoredEvent) -> Result<ControlFlow<()>, StoreError>,
    {
        let archived = self.inner.config.archive.is_some();
        let mut from = from_seq.max(1);
        // The version the next event has if none is missing (unknown before the first when
        // the caller does not know it, and after an event that carries none).
        let mut expected = first_version;
        let mut next_seq = from;
        let mut visited = 0_u64;
        let mut trust_next = false;
        loop {
            let (mut gap_at, mut stopped, mut first) = (None, false, true);
            self.direct_batches(&self.inner.direct_get, subject, from, limit - visited as usize, |event| {
                let version = crate::cloudevents::aggregate_version(&event.headers).ok().flatten();
                let missing = archived
                    && !std::mem::take(&mut trust_next)
                    && match (expected, version) {
                        (Some(expected), Some(version)) => version > expected,
                        (None, Some(version)) => first && version > 1 && event.seq > from,
                        _ => false,
                    };
                first = false;
                if missing {
                    gap_at = Some(event.seq);
                    return Ok(ControlFlow::Break(()));
                }
                expected = version.map(|v| v + 1);
                next_seq = event.seq + 1;
                visited += 1;
                let flow = visit(event)?;
                stopped = flow.is_break();
                Ok(flow)
            })
            .await?;
            // Events before `gap_at` were purged from the hot stream (before this read, or
            // while it ran): the archive has them.
            let Some(hot_seq) = gap_at else { return Ok(visited) };
            if stopped || visited as usize >= limit {
                return Ok(visited);
            }
            let (from_archive, stopped) = self
                .read_archived(subject, next_seq, hot_seq, limit - visited as usize, &mut |event| {
                    expected = crate::cloudevents::aggregate_version(&event.headers).ok().flatten().map(|v| v + 1);
                    visit(event)
                })
                .await?;
            visited += from_archive;
            if stopped || visited as usize >= limit {
                return Ok(visited);
            }
            // Nothing in the archive either (a writer skipped versions): carry on with the
            // hot stream rather than look again.
            trust_next = from_archive == 0;
            (from, next_seq) = (hot_seq, hot_seq);
        }
    }

    /// The archived events of `subject` with event-stream sequences in `from_seq..before`.
    /// Returns how many were visited and whether `visit` stopped the read.
    async fn read_archived<F>(
        &self,
        subject: &str,
        from_seq: u64,
        before: u64,
        limit: usize,
        visit: &mut F,
    ) -> Result<(u64, bool), StoreError>
    where
        F: FnMut(StoredEvent) -> Result<ControlFlow<()>, StoreError>,
    {
        let Some(archive) = &self.inner.config.archive else { return Ok((0, false)) };
        let api = format!("$JS.API.DIRECT.GET.{archive}");
        let times = self.archived_times(&api, subject).await?;
        let (mut visited, mut stopped) = (0_u64, false);
        self.direct_batches(&api, subject, 1, usize::MAX, |mut event| {
            let Some(origin) = source_sequence(&event.headers) else {
                return Err(event.undecodable("an archived event without Nats-Stream-Source".into()));
            };
            if origin < from_seq {
                return Ok(ControlFlow::Continue(()));
            }
            if origin >= before || visited as usize >= limit {
                return Ok(ControlFlow::Break(()));
            }
            event.seq = origin;
            if let Some(at) = times.get(&origin) {
                event.stored_at = *at;
            }
            visited += 1;
            let flow = visit(event)?;
            stopped = flow.is_break();
            Ok(flow)
        })
        .await
        .map_err(|e| match e {
            StoreError::Unavailable(reason) => {
                StoreError::Unavailable(format!("archive {archive} (holding purged events of {subject}): {reason}"))
            }
            other => other,
        })?;
        Ok((visited, stopped))
    }

    /// The recorded times of the purged events of `subject`, from the archive's time index.
    async fn archived_times(&self, api: &str, subject: &str) -> Result<HashMap<u64, OffsetDateTime>, StoreError> {
        let mut times = HashMap::new();
        let index = format!("{ARCHIVE_TIMES}.{subject}");
        self.direct_batches(api, &index, 1, usize::MAX, |entry| {
            let batch: TimeIndex = serde_json::from_slice(&entry.data)
                .map_err(|e| entry.undecodable(format!("archive time index: {e}")))?;
            for (seq, nanos) in batch.seqs.into_iter().zip(batch.nanos) {
                if let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)) {
                    times.insert(seq, at);
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(times)
    }

    /// Direct Get batches of `next_by_subj` against the stream answering on `api`.
    async fn direct_batches<F>(
        &self,
        api: &str,
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
        let started = tokio::time::Instant::now();
        while (read as usize) < limit {
            let batch = self.inner.config.read_batch.min(limit - read as usize);
            let request = json!({ "seq": next_seq, "batch": batch, "next_by_subj": subject });
            client
                .publish_with_reply(api.to_owned(), inbox.clone(), request.to_string().into())
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
                    Some(503) => break BatchEnd::NoResponders,
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
                // A stream just created answers Direct Get once its replicas are up: ask again
                // for a while before calling it unavailable.
                BatchEnd::NoResponders if started.elapsed() < self.inner.config.read_timeout => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                BatchEnd::NoResponders => {
                    return Err(StoreError::Unavailable(format!(
                        "{} does not answer Direct Get; is it provisioned with allow_direct?",
                        api.trim_start_matches("$JS.API.DIRECT.GET.")
                    )));
                }
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
        self.direct_get_one(&self.inner.direct_get, json!({ "last_by_subj": subject })).await
    }

    /// The event-stream sequence of the last event of `subject` the archive holds (0: none,
    /// or no archive): every event of the subject up to it is archived (sourcing copies in
    /// order).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the archive does not answer Direct Get.
    pub async fn archived_up_to(&self, subject: &str) -> Result<u64, StoreError> {
        let Some(archive) = &self.inner.config.archive else { return Ok(0) };
        let api = format!("$JS.API.DIRECT.GET.{archive}");
        let last = self.direct_get_one(&api, json!({ "last_by_subj": subject })).await?;
        Ok(last.and_then(|e| source_sequence(&e.headers)).unwrap_or(0))
    }

    /// Reads the hot stream only (what [`EventStore::read_with`] reads before the archive).
    ///
    /// # Errors
    /// As [`EventStore::read`].
    pub async fn read_hot<F>(&self, subject: &str, from_seq: u64, limit: usize, visit: F) -> Result<u64, StoreError>
    where
        F: FnMut(StoredEvent) -> Result<ControlFlow<()>, StoreError>,
    {
        self.direct_batches(&self.inner.direct_get, subject, from_seq, limit, visit).await
    }

    /// The event of `subject` at stream sequence `seq`, from whichever tier holds it.
    ///
    /// # Errors
    /// As [`EventStore::read`].
    pub async fn event_of(&self, subject: &str, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        let mut found = None;
        self.read_history(subject, seq, None, 1, |event| {
            found = Some(event).filter(|e| e.seq == seq);
            Ok(ControlFlow::Break(()))
        })
        .await?;
        Ok(found)
    }

    /// The event at stream sequence `seq`, if there is one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Direct Get does not answer.
    pub async fn event_at(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        self.direct_get_one(&self.inner.direct_get, json!({ "seq": seq })).await
    }

    async fn direct_get_one(&self, api: &str, request: serde_json::Value) -> Result<Option<StoredEvent>, StoreError> {
        let stream = api.trim_start_matches("$JS.API.DIRECT.GET.");
        match direct_get(&self.inner.client, stream, &request, self.inner.config.read_timeout).await {
            Ok(Got::Message(message)) => StoredEvent::from_message(message).map(Some),
            Ok(Got::Missing) => Ok(None),
            Ok(Got::NoStream) => {
                Err(StoreError::Unavailable(format!("stream {stream} does not answer Direct Get; is it provisioned?")))
            }
            Err(reason) => Err(StoreError::Unavailable(reason)),
        }
    }
}

/// What one Direct Get request found.
pub(crate) enum Got {
    /// The message asked for.
    Message(Message),
    /// No such message (404).
    Missing,
    /// No stream answers Direct Get under that name (no responders, 503).
    NoStream,
}

/// One Direct Get of `request` from `stream`, answered within `within`: the one place that
/// reads the statuses of a Direct Get reply (messages of the event stream and the archive,
/// keys).
///
/// # Errors
/// What went wrong, when the request got no answer in time or an unexpected status.
pub(crate) async fn direct_get(
    client: &async_nats::Client,
    stream: &str,
    request: &serde_json::Value,
    within: std::time::Duration,
) -> Result<Got, String> {
    let asked = client.request(format!("$JS.API.DIRECT.GET.{stream}"), request.to_string().into());
    let message = match tokio::time::timeout(within, asked).await {
        Err(_) => return Err(format!("direct get from {stream} timed out")),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => return Ok(Got::NoStream),
        Ok(Err(e)) => return Err(format!("direct get from {stream}: {e}")),
        Ok(Ok(message)) => message,
    };
    match message.status.map(|s| s.as_u16()) {
        None => Ok(Got::Message(message)),
        Some(404) => Ok(Got::Missing),
        Some(503) => Ok(Got::NoStream),
        Some(code) => {
            Err(format!("direct get from {stream} failed: {code} {}", message.description.unwrap_or_default()))
        }
    }
}

/// The subject prefix of the archive's time index: `archive.times.<event subject>` holds the
/// times the event stream recorded the events the archiver purged.
pub const ARCHIVE_TIMES: &str = "archive.times";

/// One entry of the archive's time index: event-stream sequences and their recorded times
/// (Unix nanoseconds), written by the archiver before it purges those events.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeIndex {
    /// Event-stream sequences.
    pub seqs: Vec<u64>,
    /// When the event stream recorded each (Unix nanoseconds).
    pub nanos: Vec<i64>,
}

/// The event-stream sequence of an archived (sourced) message: `Nats-Stream-Source` is
/// `<stream> <seq> <filter> <transform> <subject>`.
pub fn source_sequence(headers: &HeaderMap) -> Option<u64> {
    headers.get(NATS_STREAM_SOURCE)?.as_str().split(' ').nth(1)?.parse().ok()
}

const NATS_STREAM_SOURCE: HeaderName = HeaderName::from_static("Nats-Stream-Source");

fn num_pending(headers: Option<&HeaderMap>) -> u64 {
    headers.and_then(|h| h.get(NATS_NUM_PENDING)).and_then(|v| v.as_str().parse().ok()).unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
