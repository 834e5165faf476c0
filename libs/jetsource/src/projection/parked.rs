//! Parked events: what a view could not apply, per aggregate, in the `parked` KV bucket, so a
//! restart keeps them parked and an operator can see and retry them.

use serde::{Deserialize, Serialize};

/// The parked events of one aggregate in one view version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedRecord {
    /// The view.
    pub view: String,
    /// The view version.
    pub version: u32,
    /// The aggregate's subject.
    pub subject: String,
    /// Stream sequences waiting, oldest first; the first is the one that failed.
    pub seqs: Vec<u64>,
    /// Why the first could not be applied.
    pub reason: String,
    /// The command that recorded the first.
    pub command_id: String,
    /// When it was parked (RFC 3339).
    pub at: String,
}

/// The key of a parked record: `<view>.v<version>.<subject token, KV-escaped>`.
pub fn key(view: &str, version: u32, subject: &str) -> String {
    format!("{view}.v{version}.{}", crate::id::escape_kv_token(subject))
}

/// The fact that a view parked an event, as recorded on `evt.view.<view>` (event name
/// [`EventParked::NAME`]) so the failure reaches whoever follows the command that caused it:
/// the fact carries that command's correlation id, the parked event's id as causation, and
/// its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventParked {
    /// The view.
    pub view: String,
    /// The view version.
    pub version: u32,
    /// The parked event's aggregate subject.
    pub subject: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its event name.
    pub event_type: String,
    /// Why it could not be applied (or that its aggregate was already parked).
    pub reason: String,
}

impl EventParked {
    /// The event name.
    pub const NAME: &'static str = "EventParked";
    /// The aggregate type facts about views are recorded under (`evt.view.<view>`).
    pub const AGGREGATE_TYPE: &'static str = "view";

    /// The fact for `event`, parked by version `version` of `view`, ready to append with
    /// [`crate::EventStore::append_fact`] on `evt.view.<view>`.
    pub fn fact(
        store: &crate::EventStore,
        view: &str,
        version: u32,
        event: &super::EventView<'_>,
        reason: &str,
    ) -> crate::store::NewEvent {
        let parked = event.attributes().ok();
        let metadata = parked.as_ref().map(|a| a.metadata.clone()).unwrap_or_default();
        let id = format!("park-{view}-v{version}-{}", event.seq());
        let data = Self {
            view: view.to_owned(),
            version,
            subject: event.stored.subject.clone(),
            seq: event.seq(),
            event_type: event.name.to_owned(),
            reason: reason.to_owned(),
        };
        let attributes = crate::cloudevents::Attributes {
            id: id.clone(),
            source: store.source().to_owned(),
            event_type: store.event_type(Self::AGGREGATE_TYPE, Self::NAME),
            subject: view.to_owned(),
            time: crate::cloudevents::now_rfc3339(),
            schema_version: 1,
            aggregate_version: None,
            metadata: crate::Metadata {
                command_id: id,
                correlation_id: if metadata.correlation_id.is_empty() {
                    metadata.command_id.clone()
                } else {
                    metadata.correlation_id
                },
                causation_id: parked.map(|a| a.id).unwrap_or_default(),
                actor: store.config().service.clone(),
                trace: metadata.trace,
            },
        };
        crate::store::NewEvent::new(attributes, serde_json::to_vec(&data).unwrap_or_default().into())
    }
}

/// Every parked record of version `version` of consumer `view`, by subject.
///
/// # Errors
/// When the bucket cannot be listed or read.
pub async fn load(
    parked: &async_nats::jetstream::kv::Store,
    view: &str,
    version: u32,
) -> Result<std::collections::HashMap<String, ParkedRecord>, String> {
    use futures::TryStreamExt as _;
    let prefix = format!("{view}.v{version}.");
    let mut records = std::collections::HashMap::new();
    let Ok(mut keys) = parked.keys().await else { return Ok(records) };
    while let Some(key) = keys.try_next().await.map_err(|e| e.to_string())? {
        if !key.starts_with(&prefix) {
            continue;
        }
        if let Some(raw) = parked.get(&key).await.map_err(|e| e.to_string())?
            && let Ok(record) = serde_json::from_slice::<ParkedRecord>(&raw)
        {
            records.insert(record.subject.clone(), record);
        }
    }
    Ok(records)
}
