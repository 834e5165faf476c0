//! Snapshots in a KV bucket: the folded state of an aggregate at a stream sequence, so a load
//! reads only the events after it. A snapshot is an optimisation, never the truth: one that is
//! missing, of another state version or undecodable is ignored and the events are replayed.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::id::AggregateId;
use crate::recent::RecentCommands;

/// What one snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord<S> {
    /// `Aggregate::STATE_VERSION` of the code that wrote it.
    pub state_version: u32,
    /// Dense aggregate version the state reflects.
    pub version: u64,
    /// Stream sequence of the last event folded in.
    pub stream_seq: u64,
    /// Server time of that event (RFC 3339), so time-travel reads can start from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The commands that produced the last events, to answer retries after a snapshot.
    #[serde(default)]
    pub recent: RecentCommands,
    /// The folded state.
    pub state: S,
}

/// The `snapshots` KV bucket.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    kv: kv::Store,
}

impl SnapshotStore {
    /// The bucket the topology declares for snapshots.
    pub const BUCKET: &'static str = "snapshots";

    /// Opens an existing bucket (provisioned from the topology).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the bucket does not exist or JetStream does not answer.
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, StoreError> {
        let kv = js.get_key_value(bucket).await.map_err(|e| {
            StoreError::Unavailable(format!("snapshot bucket {bucket}: {e}; is the topology provisioned?"))
        })?;
        Ok(Self { kv })
    }

    /// The key of one aggregate's snapshot: `<type>.<id as KV token>`.
    pub fn key(aggregate_type: &str, id: &AggregateId) -> String {
        format!("{aggregate_type}.{}", id.kv_token())
    }

    /// The raw snapshot of an aggregate, if any.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the bucket does not answer.
    pub async fn get(&self, aggregate_type: &str, id: &AggregateId) -> Result<Option<Bytes>, StoreError> {
        self.kv
            .get(Self::key(aggregate_type, id))
            .await
            .map_err(|e| StoreError::Unavailable(format!("snapshot read: {e}")))
    }

    /// Writes a raw snapshot (last writer wins: an older one is still correct, only slower).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the bucket does not answer.
    pub async fn put(&self, aggregate_type: &str, id: &AggregateId, value: Bytes) -> Result<u64, StoreError> {
        self.kv
            .put(Self::key(aggregate_type, id), value)
            .await
            .map_err(|e| StoreError::Unavailable(format!("snapshot write: {e}")))
    }
}
