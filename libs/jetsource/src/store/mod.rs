//! The event store: one JetStream stream, one subject per aggregate (`evt.<type>.<id>`).
//!
//! Appends carry `Nats-Expected-Last-Subject-Sequence` (the OCC token is the stream sequence of
//! the aggregate's last event) and a `Nats-Msg-Id` per event; several events of one command go
//! in one atomic batch, across aggregates and tag subjects (`tag.<name>.<value>`) if need be. Reads use Direct Get batch (`next_by_subj`), which needs no consumer.

mod append;
pub(crate) mod read;

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap, jetstream};
use bytes::Bytes;

pub use append::{Expect, MAX_BATCH, Write};
pub use read::{ARCHIVE_TIMES, StoredEvent, TimeIndex, source_sequence};
pub(crate) use read::{Got, direct_get};

use crate::cloudevents::Attributes;
use crate::error::StoreError;
use crate::id::AggregateId;
use crate::keyring::Keyring;

/// Whether `value` holds an object with key `field` at any depth.
fn value_holds(value: &serde_json::Value, field: &str) -> bool {
    match value {
        serde_json::Value::Object(map) => map.contains_key(field) || map.values().any(|v| value_holds(v, field)),
        serde_json::Value::Array(items) => items.iter().any(|v| value_holds(v, field)),
        _ => false,
    }
}

/// The first subject token of tag subjects by default (`tag.<name>.<value>`).
pub const TAG_PREFIX: &str = "tag";

/// Where and how events are stored.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Stream holding the events (`EVENTS`).
    pub stream: String,
    /// First subject token of every event subject (`evt`).
    pub subject_prefix: String,
    /// First subject token of the tag subjects (`tag`): `tag.<name>.<value>` holds a copy of
    /// every event recorded under that tag (ADR 18). It must be a subject of `stream`.
    pub tag_prefix: String,
    /// Application name: `ce-type` prefix and `ce-source` root (the registry's name).
    pub app: String,
    /// Service writing the events: `ce-source` = `/<app>/<service>`.
    pub service: String,
    /// Messages asked for per Direct Get batch request.
    pub read_batch: usize,
    /// How long to wait for each part of a read.
    pub read_timeout: Duration,
    /// How long one append waits for its acknowledgement before sending again (with the
    /// same message ids, which the server deduplicates): a stream leader that died answers
    /// nothing, and its successor is elected meanwhile.
    pub ack_timeout: Duration,
    /// How long an append keeps trying before it is answered unavailable.
    pub append_deadline: Duration,
    /// The archive stream reads fall back to for events purged from `stream` (`ARCHIVE`);
    /// `None` where nothing is ever purged.
    pub archive: Option<String>,
    /// The stream holding the data subjects' keys (`KEYS`, see [`crate::keyring`]); `None`
    /// where no event holds personal data.
    pub keys: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            stream: "EVENTS".into(),
            subject_prefix: "evt".into(),
            tag_prefix: TAG_PREFIX.into(),
            app: "app".into(),
            service: "app".into(),
            read_batch: 10_000,
            read_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_millis(750),
            append_deadline: Duration::from_secs(4),
            archive: Some("ARCHIVE".into()),
            keys: Some("KEYS".into()),
        }
    }
}

/// One event ready to append: its CloudEvents headers and JSON body. The `ce-id` doubles as
/// `Nats-Msg-Id`, so a retried command is deduplicated by the server.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub(crate) msg_id: String,
    pub(crate) headers: HeaderMap,
    pub(crate) data: Bytes,
}

impl NewEvent {
    /// An event with these attributes and JSON `data`.
    pub fn new(attributes: Attributes, data: Bytes) -> Self {
        let msg_id = attributes.id.clone();
        Self { msg_id, headers: attributes.into_headers(), data }
    }

    /// The message id (`ce-id`).
    pub fn msg_id(&self) -> &str {
        &self.msg_id
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Stream sequence of the first event appended.
    pub first_seq: u64,
    /// Stream sequence of the last event appended: the aggregate's new OCC token.
    pub last_seq: u64,
    /// The server recognised the message id: the events were stored before, at these sequences.
    pub duplicate: bool,
}

/// Handle to the event store; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    js: jetstream::Context,
    config: StoreConfig,
    direct_get: String,
    source: String,
    keyring: Option<Keyring>,
}

impl EventStore {
    /// A store over `client` with `config`.
    pub fn new(client: Client, config: StoreConfig) -> Self {
        let js = jetstream::new(client.clone());
        let direct_get = format!("$JS.API.DIRECT.GET.{}", config.stream);
        let source = format!("/{}/{}", config.app, config.service);
        let keyring = config.keys.as_ref().map(|keys| Keyring::new(js.clone(), keys.clone()));
        Self { inner: Arc::new(Inner { client, js, config, direct_get, source, keyring }) }
    }

    /// The data subjects' keys: sealing personal data before it is stored, opening it in
    /// answers, forgetting a subject.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the store was configured without keys.
    pub fn keyring(&self) -> Result<&Keyring, StoreError> {
        self.inner
            .keyring
            .as_ref()
            .ok_or_else(|| StoreError::Internal("personal data, but no keys stream is configured".into()))
    }

    /// `json` as it may be stored: its plain personal values sealed (see [`Keyring::seal`]);
    /// unchanged, and no round trip, when it holds none. Every write of JSON that may carry
    /// personal data goes through it: events, snapshots, view documents, process states.
    ///
    /// # Errors
    /// As [`Keyring::seal`]; [`StoreError::Internal`] for JSON that does not parse.
    pub async fn sealed(&self, json: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if !crate::keyring::holds_plain(&json) {
            return Ok(json);
        }
        let mut value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| StoreError::Internal(format!("sealing: {e}")))?;
        self.keyring()?.seal(&mut value).await?;
        serde_json::to_vec(&value).map_err(|e| StoreError::Internal(format!("sealing: {e}")))
    }

    /// Opens the personal values in an answer (see [`Keyring::reveal`]); nothing to do, and
    /// no round trip, when it holds none.
    ///
    /// # Errors
    /// As [`Keyring::reveal`].
    pub async fn reveal(&self, value: &mut serde_json::Value) -> Result<(), StoreError> {
        if !value_holds(value, crate::personal::SEALED) {
            return Ok(());
        }
        self.keyring()?.reveal(value).await
    }

    /// The configuration in use.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The NATS client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The subject of one aggregate: `<prefix>.<type>.<id>`. The id is validated by its type.
    pub fn subject(&self, aggregate_type: &str, id: &AggregateId) -> String {
        format!("{}.{aggregate_type}.{id}", self.inner.config.subject_prefix)
    }

    /// The subject of a tag: `<tag prefix>.<name>.<value>`; both are subject tokens.
    pub fn tag_subject(&self, tag: &crate::Tag) -> String {
        format!("{}.{}.{}", self.inner.config.tag_prefix, tag.name(), tag.value())
    }

    /// The full `ce-type` of an event of an aggregate type.
    pub fn event_type(&self, aggregate_type: &str, event_name: &str) -> String {
        format!("{}.{aggregate_type}.{event_name}", self.inner.config.app)
    }

    /// The `ce-source` of events this store writes.
    pub fn source(&self) -> &str {
        &self.inner.source
    }
}
