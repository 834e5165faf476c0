//! Decoding stored events into a domain event enum: find the type by its `ce-type`, upcast old
//! schema versions through the registered chain, deserialise. Used by repositories (loads) and
//! projections alike.

use std::marker::PhantomData;

use serde_json::Value;

use crate::cloudevents;
use crate::error::StoreError;
use crate::event::{DomainEvent, Upcasters, decode_data};
use crate::store::StoredEvent;

/// The decoder of one event enum, with its upcasting chain built once.
pub struct Codec<E> {
    upcasters: Upcasters,
    _events: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> Default for Codec<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: DomainEvent> Codec<E> {
    /// A codec with `E`'s upcasters.
    pub fn new() -> Self {
        Self { upcasters: E::upcasters(), _events: PhantomData }
    }

    /// True when `ce-type` of the event names one of `E`'s events.
    pub fn knows(&self, stored: &StoredEvent) -> bool {
        cloudevents::event_type(&stored.headers)
            .map(|t| t.rsplit('.').next().unwrap_or(t))
            .is_some_and(|name| E::SCHEMAS.iter().any(|(known, _)| *known == name))
    }

    /// Decodes a stored event, upcasting old schema versions. Returns the event name as this
    /// reader knows it.
    ///
    /// # Errors
    /// [`StoreError::UnknownEventType`] or [`StoreError::Undecodable`], naming subject and seq.
    pub fn decode(&self, stored: &StoredEvent) -> Result<(&'static str, E), StoreError> {
        let full_type = cloudevents::event_type(&stored.headers)
            .ok_or_else(|| stored.undecodable("missing header ce-type".into()))?;
        let name = full_type.rsplit('.').next().unwrap_or(full_type);
        let Some((known, target)) = E::SCHEMAS.iter().find(|(known, _)| *known == name).copied() else {
            return Err(StoreError::UnknownEventType {
                subject: stored.subject.clone(),
                seq: stored.seq,
                event_type: full_type.to_owned(),
            });
        };
        let version = cloudevents::schema_version(&stored.headers).map_err(|e| stored.undecodable(e.to_string()))?;
        let event = if version == target {
            decode_current::<E>(known, &stored.data)
        } else {
            let raw: Value = serde_json::from_slice(body(&stored.data))
                .map_err(|e| stored.undecodable(format!("body is not JSON: {e}")))?;
            let data = self.upcasters.upcast(known, version, target, raw).map_err(|e| stored.undecodable(e))?;
            decode_data(known, data)
        };
        let event = event.map_err(|e| stored.undecodable(format!("{known} v{target}: {e}")))?;
        Ok((known, event))
    }
}

/// An empty body stands for `{}` (an event without data).
fn body(data: &[u8]) -> &[u8] {
    if data.is_empty() { b"{}" } else { data }
}

/// Decodes data already at the current schema version straight into the event enum, by
/// wrapping the body as `{"type": name, "data": body}` (one parse, no intermediate tree).
fn decode_current<E: DomainEvent>(name: &str, data: &[u8]) -> Result<E, String> {
    let mut tagged = Vec::with_capacity(data.len() + name.len() + 20);
    tagged.extend_from_slice(br#"{"type":""#);
    tagged.extend_from_slice(name.as_bytes());
    tagged.extend_from_slice(br#"","data":"#);
    tagged.extend_from_slice(body(data));
    tagged.push(b'}');
    serde_json::from_slice(&tagged).map_err(|e| e.to_string())
}
