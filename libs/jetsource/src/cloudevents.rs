//! Events as CloudEvents 1.0 in NATS binary content mode: the body is the JSON data and every
//! attribute is a `ce-*` header (`docs/contracts/events.md`). Any CloudEvents SDK can read the log.

use async_nats::header::HeaderName;
use async_nats::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use crate::metadata::{Metadata, TraceContext};

/// Header names written on every event.
pub mod header {
    /// `ce-specversion`, always `1.0`.
    pub const SPECVERSION: &str = "ce-specversion";
    /// `ce-id`: `<command id>:<event index>`, unique and stable across retries.
    pub const ID: &str = "ce-id";
    /// `ce-source`: `/<app>/<service>`.
    pub const SOURCE: &str = "ce-source";
    /// `ce-type`: `<app>.<aggregate type>.<EventName>`.
    pub const TYPE: &str = "ce-type";
    /// `ce-subject`: the aggregate id.
    pub const SUBJECT: &str = "ce-subject";
    /// `ce-time`: RFC 3339 time of the command.
    pub const TIME: &str = "ce-time";
    /// `ce-datacontenttype`: `application/json`.
    pub const DATACONTENTTYPE: &str = "ce-datacontenttype";
    /// Extension `ce-schemaversion`: schema version of the data, for upcasting.
    pub const SCHEMAVERSION: &str = "ce-schemaversion";
    /// Extension `ce-aggregateversion`: dense version of the aggregate after this event.
    pub const AGGREGATEVERSION: &str = "ce-aggregateversion";
    /// Extension `ce-commandid`.
    pub const COMMANDID: &str = "ce-commandid";
    /// Extension `ce-correlationid`.
    pub const CORRELATIONID: &str = "ce-correlationid";
    /// Extension `ce-causationid`.
    pub const CAUSATIONID: &str = "ce-causationid";
    /// Extension `ce-actor`.
    pub const ACTOR: &str = "ce-actor";
    /// W3C `traceparent`.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C `tracestate`.
    pub const TRACESTATE: &str = "tracestate";
}

/// The header names as constants, so building a header map neither validates nor allocates them.
mod name {
    use async_nats::header::HeaderName;

    use super::header;

    pub const SPECVERSION: HeaderName = HeaderName::from_static(header::SPECVERSION);
    pub const ID: HeaderName = HeaderName::from_static(header::ID);
    pub const SOURCE: HeaderName = HeaderName::from_static(header::SOURCE);
    pub const TYPE: HeaderName = HeaderName::from_static(header::TYPE);
    pub const SUBJECT: HeaderName = HeaderName::from_static(header::SUBJECT);
    pub const TIME: HeaderName = HeaderName::from_static(header::TIME);
    pub const DATACONTENTTYPE: HeaderName = HeaderName::from_static(header::DATACONTENTTYPE);
    pub const SCHEMAVERSION: HeaderName = HeaderName::from_static(header::SCHEMAVERSION);
    pub const AGGREGATEVERSION: HeaderName = HeaderName::from_static(header::AGGREGATEVERSION);
    pub const COMMANDID: HeaderName = HeaderName::from_static(header::COMMANDID);
    pub const CORRELATIONID: HeaderName = HeaderName::from_static(header::CORRELATIONID);
    pub const CAUSATIONID: HeaderName = HeaderName::from_static(header::CAUSATIONID);
    pub const ACTOR: HeaderName = HeaderName::from_static(header::ACTOR);
    pub const TRACEPARENT: HeaderName = HeaderName::from_static(header::TRACEPARENT);
    pub const TRACESTATE: HeaderName = HeaderName::from_static(header::TRACESTATE);
}

/// The CloudEvents attributes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `ce-id`.
    pub id: String,
    /// `ce-source`.
    pub source: String,
    /// `ce-type` in full (`shop.stock.StockReceived`).
    pub event_type: String,
    /// `ce-subject`: the aggregate id.
    pub subject: String,
    /// `ce-time`, as written.
    pub time: String,
    /// `ce-schemaversion` (1 when absent).
    pub schema_version: u32,
    /// `ce-aggregateversion`, when present.
    pub aggregate_version: Option<u64>,
    /// Command, correlation, causation, actor and trace.
    pub metadata: Metadata,
}

/// Why stored headers are not the attributes of an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    /// A required header is absent.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header's value is not what it must be.
    #[error("{header} {value:?} is not {expected}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What it holds.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// Where a reason is text (a view's parking reason), the error is its message.
impl From<AttributeError> for String {
    fn from(error: AttributeError) -> Self {
        error.to_string()
    }
}

impl Attributes {
    /// The event name: the last segment of `ce-type` (`StockReceived`).
    pub fn event_name(&self) -> &str {
        self.event_type.rsplit('.').next().unwrap_or(&self.event_type)
    }

    /// Writes every attribute as a header (copying; see [`Attributes::into_headers`]).
    pub fn write(&self, headers: &mut HeaderMap) {
        for (name, value) in self.clone().into_pairs() {
            headers.insert(name, value);
        }
    }

    /// The attributes as a header map, moving the strings (the append hot path: no copies, and
    /// header names are constants, so nothing is validated or allocated for them).
    pub fn into_headers(self) -> HeaderMap {
        self.into_pairs().into_iter().collect()
    }

    fn into_pairs(self) -> Vec<(HeaderName, HeaderValue)> {
        let meta = self.metadata;
        let mut pairs = vec![
            (name::SPECVERSION, HeaderValue::from("1.0")),
            (name::ID, encode(self.id).into()),
            (name::SOURCE, encode(self.source).into()),
            (name::TYPE, encode(self.event_type).into()),
            (name::SUBJECT, encode(self.subject).into()),
            (name::TIME, encode(self.time).into()),
            (name::DATACONTENTTYPE, HeaderValue::from("application/json")),
            (name::SCHEMAVERSION, self.schema_version.to_string().into()),
            (name::COMMANDID, encode(meta.command_id).into()),
            (name::CORRELATIONID, encode(meta.correlation_id).into()),
            (name::CAUSATIONID, encode(meta.causation_id).into()),
            (name::ACTOR, encode(meta.actor).into()),
        ];
        if let Some(version) = self.aggregate_version {
            pairs.push((name::AGGREGATEVERSION, version.to_string().into()));
        }
        if let Some(parent) = meta.trace.traceparent {
            pairs.push((name::TRACEPARENT, parent.into()));
        }
        if let Some(state) = meta.trace.tracestate {
            pairs.push((name::TRACESTATE, state.into()));
        }
        pairs
    }

    /// Reads the attributes back. Only `ce-type` is required; a missing `ce-schemaversion` means
    /// version 1, as another client may have written the event.
    ///
    /// # Errors
    /// [`AttributeError`] naming the missing or malformed header.
    pub fn read(headers: &HeaderMap) -> Result<Self, AttributeError> {
        let get = |name: HeaderName| headers.get(name).map(|v| decode(v.as_str()));
        let event_type = get(name::TYPE).ok_or(AttributeError::Missing("ce-type"))?;
        Ok(Self {
            id: get(name::ID).unwrap_or_default(),
            source: get(name::SOURCE).unwrap_or_default(),
            event_type,
            subject: get(name::SUBJECT).unwrap_or_default(),
            time: get(name::TIME).unwrap_or_default(),
            schema_version: schema_version(headers)?,
            aggregate_version: aggregate_version(headers)?,
            metadata: Metadata {
                command_id: get(name::COMMANDID).unwrap_or_default(),
                correlation_id: get(name::CORRELATIONID).unwrap_or_default(),
                causation_id: get(name::CAUSATIONID).unwrap_or_default(),
                actor: get(name::ACTOR).unwrap_or_default(),
                trace: TraceContext { traceparent: get(name::TRACEPARENT), tracestate: get(name::TRACESTATE) },
            },
        })
    }

    /// The event in CloudEvents *structured* JSON form, with `data` inline and the stream
    /// sequence as extension `streamseq`.
    pub fn to_structured(&self, data: Value, stream_seq: u64) -> Value {
        let mut out = Map::new();
        let mut put = |k: &str, v: Value| {
            out.insert(k.to_owned(), v);
        };
        put("specversion", "1.0".into());
        put("id", self.id.clone().into());
        put("source", self.source.clone().into());
        put("type", self.event_type.clone().into());
        put("subject", self.subject.clone().into());
        put("time", self.time.clone().into());
        put("datacontenttype", "application/json".into());
        put("schemaversion", self.schema_version.into());
        if let Some(version) = self.aggregate_version {
            put("aggregateversion", version.into());
        }
        let meta = &self.metadata;
        put("commandid", meta.command_id.clone().into());
        put("correlationid", meta.correlation_id.clone().into());
        put("causationid", meta.causation_id.clone().into());
        put("actor", meta.actor.clone().into());
        if let Some(parent) = &meta.trace.traceparent {
            put("traceparent", parent.clone().into());
        }
        put("streamseq", stream_seq.into());
        put("data", data);
        Value::Object(out)
    }
}

/// What the CloudEvents protocol bindings percent-encode in header values: space, `"`, `%`,
/// controls, and (always, by the crate) every octet outside ASCII.
const HEADER_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

/// Percent-encodes an attribute value for its header. A value that needs none (ids, types and
/// times always) is returned as it is, without a copy.
pub fn encode(value: String) -> String {
    match std::borrow::Cow::from(percent_encoding::utf8_percent_encode(&value, HEADER_ESCAPES)) {
        std::borrow::Cow::Borrowed(_) => value,
        std::borrow::Cow::Owned(encoded) => encoded,
    }
}

/// Reads a header value written by [`encode`] (or by any binding-conformant client). A
/// malformed escape is kept as it came, and so is a value that does not decode to UTF-8: a
/// header that cannot be decoded is still better shown than dropped.
pub fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value).decode_utf8().map_or_else(|_| value.to_owned(), |v| v.into_owned())
}

/// The current UTC time as RFC 3339 with nanoseconds (`2026-11-27T10:00:00.123456789Z`),
/// formatted by hand: it is written on every event, and the general formatter costs more than
/// the rest of building the event's attributes.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// `at` (taken as UTC) in the form of [`now_rfc3339`].
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    use std::fmt::Write as _;
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond()
    );
    out
}

/// `ce-type` of the headers, if present.
pub fn event_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(name::TYPE).map(HeaderValue::as_str)
}

/// `ce-id` of the headers (the event's id), or "".
pub fn id(headers: &HeaderMap) -> &str {
    headers.get(name::ID).map_or("", HeaderValue::as_str)
}

/// `ce-commandid` of the headers, or "".
pub fn command_id(headers: &HeaderMap) -> &str {
    headers.get(name::COMMANDID).map_or("", HeaderValue::as_str)
}

/// `ce-correlationid` of the headers, or "".
pub fn correlation_id(headers: &HeaderMap) -> &str {
    headers.get(name::CORRELATIONID).map_or("", HeaderValue::as_str)
}

/// `ce-schemaversion` (1 when absent).
///
/// # Errors
/// When present but not a positive integer.
pub fn schema_version(headers: &HeaderMap) -> Result<u32, AttributeError> {
    match headers.get(name::SCHEMAVERSION) {
        Some(v) => v.as_str().parse().map_err(|_| AttributeError::Malformed {
            header: "ce-schemaversion",
            value: v.as_str().to_owned(),
            expected: "a positive integer",
        }),
        None => Ok(1),
    }
}

/// `ce-aggregateversion`, when present.
///
/// # Errors
/// When present but not an integer.
pub fn aggregate_version(headers: &HeaderMap) -> Result<Option<u64>, AttributeError> {
    headers
        .get(name::AGGREGATEVERSION)
        .map(|v| {
            v.as_str().parse().map_err(|_| AttributeError::Malformed {
                header: "ce-aggregateversion",
                value: v.as_str().to_owned(),
                expected: "an integer",
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Attributes {
        Attributes {
            id: "c1:0".into(),
            source: "/shop/stock".into(),
            event_type: "shop.stock.StockReceived".into(),
            subject: "bolt@main".into(),
            time: "2026-11-27T10:00:00Z".into(),
            schema_version: 2,
            aggregate_version: Some(3),
            metadata: Metadata {
                command_id: "c1".into(),
                correlation_id: "c0".into(),
                causation_id: "c1".into(),
                actor: "alice".into(),
                trace: TraceContext {
                    traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
                    tracestate: None,
                },
            },
        }
    }

    #[test]
    fn attributes_round_trip_through_headers() {
        let mut headers = HeaderMap::new();
        sample().write(&mut headers);
        assert_eq!(headers.get("ce-specversion").map(|v| v.as_str()), Some("1.0"));
        assert_eq!(headers.get("ce-datacontenttype").map(|v| v.as_str()), Some("application/json"));
        let back = Attributes::read(&headers).unwrap();
        assert_eq!(back, sample());
        assert_eq!(back.event_name(), "StockReceived");
    }

    #[test]
    fn a_foreign_event_without_extensions_is_version_one() {
        let mut headers = HeaderMap::new();
        headers.insert("ce-type", "shop.stock.StockReceived");
        let attrs = Attributes::read(&headers).unwrap();
        assert_eq!((attrs.schema_version, attrs.aggregate_version), (1, None));
    }

    #[test]
    fn malformed_headers_are_named() {
        let mut headers = HeaderMap::new();
        assert!(Attributes::read(&headers).unwrap_err().to_string().contains("ce-type"));
        headers.insert("ce-type", "x.y.Z");
        headers.insert("ce-schemaversion", "two");
        assert!(Attributes::read(&headers).unwrap_err().to_string().contains("ce-schemaversion"));
    }

    #[test]
    fn times_are_rfc3339_and_parse_back() {
        let at = time::macros::datetime!(2026-11-27 10:00:00.000000042 UTC);
        assert_eq!(rfc3339(at), "2026-11-27T10:00:00.000000042Z");
        let now = now_rfc3339();
        let parsed = time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(rfc3339(parsed), now);
    }

    #[test]
    fn structured_form_carries_data_and_extensions() {
        let json = sample().to_structured(serde_json::json!({"qty": 5}), 42);
        assert_eq!(json["type"], "shop.stock.StockReceived");
        assert_eq!(json["aggregateversion"], 3);
        assert_eq!(json["streamseq"], 42);
        assert_eq!(json["data"]["qty"], 5);
    }

    #[test]
    fn header_values_are_percent_encoded_as_the_binding_requires_and_read_back() {
        let mut attributes = sample();
        attributes.metadata.actor = "José \"ops\" 100%".into();
        let headers = attributes.clone().into_headers();
        assert_eq!(headers.get("ce-actor").map(|v| v.as_str()), Some("Jos%C3%A9%20%22ops%22%20100%25"));
        assert_eq!(headers.get("ce-subject").map(|v| v.as_str()), Some("bolt@main"), "plain values stay as they are");
        assert_eq!(Attributes::read(&headers).unwrap().metadata.actor, "José \"ops\" 100%");
        assert_eq!(decode("100%"), "100%", "a bare % is kept");
        assert_eq!(decode("%FF"), "%FF", "invalid UTF-8 is kept as it came");
    }
}
