//! What travels with every event besides its data: who asked, why, and in which trace.

use serde::{Deserialize, Serialize};

/// The longest command id accepted (also the bound on `Idempotency-Key`).
pub const MAX_COMMAND_ID_LEN: usize = 128;

/// W3C trace context carried from the caller into the event headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `traceparent` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// `tracestate` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The trace id (32 hex digits) of `traceparent`, if it is well formed.
    pub fn trace_id(&self) -> Option<&str> {
        let parent = self.traceparent.as_deref()?;
        let mut parts = parent.split('-');
        let (_version, trace_id) = (parts.next()?, parts.next()?);
        (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
    }
}

/// Metadata of one recorded event (CloudEvents extensions `ce-commandid`, `ce-correlationid`,
/// `ce-causationid`, `ce-actor`, and the W3C trace headers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The command that recorded the event.
    pub command_id: String,
    /// The conversation the command belongs to (the first command's id unless given).
    pub correlation_id: String,
    /// What caused the command: the command id itself, or the event a saga reacted to.
    pub causation_id: String,
    /// Who asked (user, API key name or service).
    pub actor: String,
    /// Trace context at the time of the command.
    #[serde(flatten)]
    pub trace: TraceContext,
}

/// How a caller asks for a command to run: its identity, provenance and preconditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// Identifies the command: retries with the same id write once (`Nats-Msg-Id`) and answer
    /// the first outcome.
    pub command_id: String,
    /// Correlation id; defaults to the command id.
    pub correlation_id: Option<String>,
    /// Causation id; defaults to the command id.
    pub causation_id: Option<String>,
    /// Who asks.
    pub actor: String,
    /// Dense version the caller believes current (`Expected-Version` / `If-Match`); a stale one
    /// fails at once with `precondition_failed`.
    pub expected_version: Option<u64>,
    /// Trace context to store with the events.
    pub trace: TraceContext,
}

impl Default for CommandContext {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandContext {
    /// A context with a fresh, time-ordered command id (UUIDv7) and actor `anonymous`.
    pub fn new() -> Self {
        Self::with_command_id(new_command_id())
    }

    /// A context for a given command id (an `Idempotency-Key`, or an id derived from an event).
    pub fn with_command_id(command_id: impl Into<String>) -> Self {
        Self {
            command_id: command_id.into(),
            correlation_id: None,
            causation_id: None,
            actor: "anonymous".to_owned(),
            expected_version: None,
            trace: TraceContext::default(),
        }
    }

    /// Sets who asks.
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Pins the expected dense version.
    #[must_use]
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the trace context.
    #[must_use]
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        self.trace = trace;
        self
    }

    /// The metadata every event of this command carries.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            command_id: self.command_id.clone(),
            correlation_id: self.correlation_id.clone().unwrap_or_else(|| self.command_id.clone()),
            causation_id: self.causation_id.clone().unwrap_or_else(|| self.command_id.clone()),
            actor: self.actor.clone(),
            trace: self.trace.clone(),
        }
    }
}

/// A fresh UUIDv7 command id. The random bits come from a fast thread-local generator rather
/// than the OS (one `getrandom` call per command costs more than the rest of the id): command
/// ids must be unique, not unguessable.
pub fn new_command_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let random: [u8; 10] = std::array::from_fn(|_| fastrand::u8(..));
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().hyphenated().to_string()
}

/// Why a command id, idempotency key or data subject is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandIdError {
    /// Nothing given.
    #[error("command id is empty")]
    Empty,
    /// Longer than [`MAX_COMMAND_ID_LEN`] bytes.
    #[error("command id is {0} bytes long; the limit is {MAX_COMMAND_ID_LEN}")]
    TooLong(usize),
    /// A character outside the alphabet.
    #[error("command id contains {0:?}; allowed are A-Z a-z 0-9 - _ . : @ =")]
    Character(char),
    /// A dot at either end or two in a row (ids travel in subjects, where a dot separates tokens).
    #[error("command id cannot start or end with a dot, or hold two in a row")]
    Dots,
}

/// Checks a command id or idempotency key: 1–128 printable ASCII characters without spaces, as
/// it becomes part of `Nats-Msg-Id` and of KV keys.
///
/// # Errors
/// [`CommandIdError`], naming the problem.
pub fn validate_command_id(id: &str) -> Result<(), CommandIdError> {
    if id.is_empty() {
        return Err(CommandIdError::Empty);
    }
    if id.len() > MAX_COMMAND_ID_LEN {
        return Err(CommandIdError::TooLong(id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '=')))
    {
        return Err(CommandIdError::Character(c));
    }
    if id.starts_with('.') || id.ends_with('.') || id.contains("..") {
        return Err(CommandIdError::Dots);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_is_read_from_a_well_formed_traceparent() {
        let trace = TraceContext {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
        };
        assert_eq!(trace.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let bad = TraceContext { traceparent: Some("00-xyz-1-01".into()), tracestate: None };
        assert_eq!(bad.trace_id(), None);
    }

    #[test]
    fn metadata_defaults_correlation_and_causation_to_the_command() {
        let meta = CommandContext::with_command_id("c1").metadata();
        assert_eq!((meta.correlation_id.as_str(), meta.causation_id.as_str()), ("c1", "c1"));
    }

    #[test]
    fn generated_command_ids_are_time_ordered_uuids() {
        let a = new_command_id();
        let b = new_command_id();
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_ne!(a, b);
        assert!(validate_command_id(&a).is_ok());
    }

    #[test]
    fn command_ids_are_bounded_and_plain() {
        assert!(validate_command_id("01934f1c-7b3e-7cc2-9c1a-1f7f3c6d2a10").is_ok());
        assert!(validate_command_id("saga:evt-12:0").is_ok());
        assert!(validate_command_id("").is_err());
        assert!(validate_command_id("a b").is_err());
        assert!(validate_command_id("a.b").is_ok());
        for bad in [".", ".a", "a.", "a..b"] {
            assert!(validate_command_id(bad).is_err(), "{bad}");
        }
        assert!(validate_command_id(&"k".repeat(129)).is_err());
    }
}
