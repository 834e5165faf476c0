//! Aggregates from the event store: authoritative state, now or as of a version or time (time
//! travel), and history as CloudEvents. Shared by the HTTP edge (`GET /v1/aggregates/...`) and
//! the CLI's `inspect`, for any registered aggregate type (see [`crate::registry`]).

use jetsource::{Aggregate, AggregateId, EventStore, Repository, RepositoryConfig, StoredEvent, Until};
use serde_json::{Value, json};

/// What to show.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    /// Aggregate id.
    pub id: AggregateId,
    /// Up to which point.
    pub until: Until,
    /// Include the events.
    pub events: bool,
}

/// Aggregate `A` as JSON: type, id, version, stream seq, state, and events if asked.
///
/// # Errors
/// Store unavailable, or undecodable history.
pub async fn inspect_as<A: Aggregate>(
    store: &EventStore,
    request: &InspectRequest,
) -> Result<Value, jetsource::StoreError> {
    let repo = Repository::<A>::new(store.clone(), None, RepositoryConfig { cache_capacity: 0, ..Default::default() });
    let (loaded, _) = repo.load_until(&request.id, request.until).await?;
    let mut out = json!({
        "aggregate_type": A::TYPE,
        "aggregate_id": request.id.as_str(),
        "version": loaded.version,
        "stream_seq": loaded.last_seq,
        "exists": !loaded.is_new(),
        "state": serde_json::to_value(&loaded.state).unwrap_or(Value::Null),
    });
    if request.events {
        let subject = store.subject(A::TYPE, &request.id);
        let stored = store.read(&subject, 1, usize::MAX).await?;
        let events: Vec<Value> =
            stored.iter().take(loaded.version as usize).map(structured).collect::<Result<_, _>>()?;
        out["events"] = Value::Array(events);
    }
    // State and history hold personal values sealed; the answer shows them opened (or erased).
    store.reveal(&mut out).await?;
    Ok(out)
}

/// A stored event in CloudEvents structured JSON (data as stored, with its schema version),
/// with extension `recordedtime`: when the server stored it, the clock `?at=` reads.
///
/// # Errors
/// Undecodable attributes.
pub fn structured(event: &StoredEvent) -> Result<Value, jetsource::StoreError> {
    let data = serde_json::from_slice(&event.data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.data).into_owned()));
    let mut value = event.attributes()?.to_structured(data, event.seq);
    value["recordedtime"] = Value::String(jetsource::cloudevents::rfc3339(event.stored_at));
    Ok(value)
}
