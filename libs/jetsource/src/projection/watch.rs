//! Live updates of a view: every change of one key, or of all keys starting with a prefix, as
//! a stream; resumable from the revision last seen.

use async_nats::jetstream::kv;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;

use super::{ProjectionError, ViewHandle};

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFilter {
    /// One key.
    Key(String),
    /// Every key starting with this (empty: every key).
    Prefix(String),
}

/// One change of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewUpdate {
    /// The key.
    pub key: String,
    /// The bucket revision of the change: resume after it with `from_revision`.
    pub revision: u64,
    /// The document (with its `seq`), or `None` when it was removed.
    pub doc: Option<Value>,
}

impl ViewHandle {
    /// Changes of the documents `filter` selects. Without `from_revision`, the current
    /// document(s) come first, then every change; with it, only changes after that revision.
    ///
    /// # Errors
    /// When the bucket cannot be watched.
    pub async fn watch(
        &self,
        filter: WatchFilter,
        from_revision: Option<u64>,
    ) -> Result<impl Stream<Item = Result<ViewUpdate, ProjectionError>> + Send + use<>, ProjectionError> {
        let (subject, prefix) = match &filter {
            WatchFilter::Key(key) => (key.clone(), None),
            WatchFilter::Prefix(prefix) => (">".to_owned(), Some(prefix.clone())),
        };
        let bucket = &self.bucket;
        let watch = match from_revision {
            Some(revision) => bucket.watch_from_revision(&subject, revision + 1).await,
            None => bucket.watch_with_history(&subject).await,
        }
        .map_err(|e| self.unavailable(e))?;
        let view = self.name.to_owned();
        let updates = watch
            .map_err(move |e| ProjectionError::Unavailable { view: view.clone(), reason: e.to_string() })
            .try_filter(move |entry| {
                let keep = prefix.as_ref().is_none_or(|p| entry.key.starts_with(p.as_str()));
                futures::future::ready(keep)
            })
            .map_ok(|entry| ViewUpdate {
                doc: match entry.operation {
                    kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
                    _ => None,
                },
                key: entry.key,
                revision: entry.revision,
            });
        Ok(updates.boxed())
    }
}
