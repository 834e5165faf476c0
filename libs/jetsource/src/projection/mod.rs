//! Projections: read models in KV buckets, kept by durable pull consumers.
//!
//! A [`Projection`] says which documents an event changes and how; a [`ViewWorker`] runs it:
//! one durable consumer per view version, events applied in stream order to an in-memory copy
//! of the touched documents, the changed documents written to the view's bucket, and only then
//! the batch acknowledged. Every document carries the stream sequence it reflects (`seq`), so a
//! redelivered event is a no-op. An event a view cannot apply is *parked* for its aggregate:
//! that aggregate's later events wait behind it, the others flow, and a retry on demand applies
//! them in order.
//!
//! Versions make rebuilds free of downtime: version `n+1` is built into its own bucket by its
//! own consumer from the first event while `n` keeps answering; the [`registry`] then switches
//! the active version atomically.

pub mod parked;
pub mod registry;
mod watch;
mod worker;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use parked::{EventParked, ParkedRecord};
pub use watch::{ViewUpdate, WatchFilter};
pub(crate) use worker::Backfill;
pub use worker::{Admin, RetryReport, ViewConfig, ViewHandle, ViewObserver, ViewWorker, delete_version};

use crate::cloudevents::{self, Attributes};
use crate::store::StoredEvent;

/// A read model: which documents each event changes, and how.
pub trait Projection: Send + Sync + 'static {
    /// The document kept per key.
    type Doc: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static;

    /// The view's name (`stock`): buckets are `view_<name>_v<version>`, consumers
    /// `projector_<name>_v<version>`.
    fn name(&self) -> &'static str;

    /// The event subjects it reads (`evt.stock.>`).
    fn subjects(&self) -> Vec<String>;

    /// How long documents live (none: forever). The `commands` view keeps a day.
    fn max_age(&self) -> Option<Duration> {
        None
    }

    /// Whether the worker keeps every key in memory: listings without scans, and new keys
    /// written without first asking the bucket. Turn it off for views with very many keys (the
    /// `commands` view holds one per command).
    fn indexed(&self) -> bool {
        true
    }

    /// The keys (KV-safe) of the documents `event` changes; empty to ignore it.
    ///
    /// # Errors
    /// Why the event cannot be projected; it is parked.
    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String>;

    /// Folds `event` into the document of `key` (a default one if the key is new). Called on a
    /// copy: an error leaves the stored document untouched.
    ///
    /// # Errors
    /// Why the event cannot be applied; it is parked.
    fn apply(&self, event: &EventView<'_>, key: &str, doc: &mut Self::Doc) -> Result<(), String>;
}

/// One event as a projection sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The stored event (headers, data, subject, sequence, time).
    pub stored: &'a StoredEvent,
    /// Aggregate type (second subject token).
    pub aggregate_type: &'a str,
    /// Aggregate id (third subject token).
    pub aggregate_id: &'a str,
    /// Event name (last segment of `ce-type`).
    pub name: &'a str,
}

impl<'a> EventView<'a> {
    /// The view of a stored event on `evt.<type>.<id>`.
    pub fn new(stored: &'a StoredEvent) -> Self {
        let mut tokens = stored.subject.splitn(3, '.').skip(1);
        let aggregate_type = tokens.next().unwrap_or_default();
        let aggregate_id = tokens.next().unwrap_or_default();
        let full = cloudevents::event_type(&stored.headers).unwrap_or_default();
        let name = full.rsplit('.').next().unwrap_or(full);
        Self { stored, aggregate_type, aggregate_id, name }
    }

    /// Stream sequence.
    pub fn seq(&self) -> u64 {
        self.stored.seq
    }

    /// `ce-commandid`.
    pub fn command_id(&self) -> &'a str {
        cloudevents::command_id(&self.stored.headers)
    }

    /// `ce-correlationid`: the conversation (the first command's id).
    pub fn correlation_id(&self) -> &'a str {
        cloudevents::correlation_id(&self.stored.headers)
    }

    /// Every CloudEvents attribute.
    ///
    /// # Errors
    /// When the headers are malformed.
    pub fn attributes(&self) -> Result<Attributes, crate::cloudevents::AttributeError> {
        Attributes::read(&self.stored.headers)
    }
}

/// A document as stored: the stream sequence it reflects and its fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored<D> {
    /// Stream sequence of the last event applied.
    pub seq: u64,
    /// The document.
    #[serde(flatten)]
    pub doc: D,
}

/// Why a view could not be run.
#[derive(Debug, Error)]
pub enum ProjectionError {
    /// JetStream did not answer or refused.
    #[error("view {view}: {reason}")]
    Unavailable {
        /// The view.
        view: String,
        /// What happened.
        reason: String,
    },
}

/// The bucket of version `version` of view `name`.
pub fn bucket_name(name: &str, version: u32) -> String {
    format!("view_{name}_v{version}")
}

/// The durable consumer of version `version` of view `name`.
pub fn consumer_name(name: &str, version: u32) -> String {
    format!("projector_{name}_v{version}")
}
