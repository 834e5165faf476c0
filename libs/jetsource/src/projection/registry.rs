//! The view registry (KV bucket `views`): for each view, the version queries read and the
//! version being rebuilt. Switching versions is one compare-and-set on one key.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use super::ProjectionError;

/// Registry entry of one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The version queries read.
    pub active: u32,
    /// A version being built, if a rebuild runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building: Option<u32>,
}

/// The registry bucket.
#[derive(Debug, Clone)]
pub struct Registry {
    kv: kv::Store,
}

fn unavailable(view: &str, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Unavailable { view: view.to_owned(), reason: format!("registry: {e}") }
}

impl Registry {
    /// Opens the `views` bucket (provisioned from the topology).
    ///
    /// # Errors
    /// When it does not exist or JetStream does not answer.
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, ProjectionError> {
        let kv = js.get_key_value(bucket).await.map_err(|e| unavailable(bucket, e))?;
        Ok(Self { kv })
    }

    /// The entry of `view` with its revision; created (version 1 active) if missing.
    ///
    /// # Errors
    /// When the bucket does not answer.
    pub async fn ensure(&self, view: &str) -> Result<(Entry, u64), ProjectionError> {
        loop {
            if let Some(found) = self.get(view).await? {
                return Ok(found);
            }
            let entry = Entry { active: 1, building: None };
            let bytes = serde_json::to_vec(&entry).map_err(|e| unavailable(view, e))?;
            match self.kv.create(view, bytes.into()).await {
                Ok(revision) => return Ok((entry, revision)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(unavailable(view, e)),
            }
        }
    }

    /// The entry of `view` with its revision.
    ///
    /// # Errors
    /// When the bucket does not answer or the entry is corrupt.
    pub async fn get(&self, view: &str) -> Result<Option<(Entry, u64)>, ProjectionError> {
        let Some(found) = self.kv.entry(view).await.map_err(|e| unavailable(view, e))? else { return Ok(None) };
        if found.operation != kv::Operation::Put {
            return Ok(None);
        }
        let entry = serde_json::from_slice(&found.value).map_err(|e| unavailable(view, e))?;
        Ok(Some((entry, found.revision)))
    }

    /// Replaces the entry if it is still at `revision`; false when someone else changed it.
    ///
    /// # Errors
    /// When the bucket does not answer.
    pub async fn update(&self, view: &str, entry: &Entry, revision: u64) -> Result<bool, ProjectionError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| unavailable(view, e))?;
        match self.kv.update(view, bytes.into(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(view, e)),
        }
    }

    /// The underlying bucket (for watching switches).
    pub fn store(&self) -> &kv::Store {
        &self.kv
    }
}
