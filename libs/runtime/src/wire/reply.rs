//! The reply contract of every request/reply endpoint (`docs/contracts/nats.md`): a JSON body on success; on
//! error the headers `Nats-Service-Error-Code` (HTTP-like number) and `Nats-Service-Error`,
//! and a JSON body `{"code", "message", ...}`.

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use jetsource::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Header carrying the error text.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// Header carrying the HTTP-like error number.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// The body of an error reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code (`rejected`, `invalid`, ...).
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The domain reason of a rejection (`insufficient_stock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The trace of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Further fields (`expected`, `actual`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorBody {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), reason: None, command_id: None, trace_id: None, extra: Map::new() }
    }

    /// Sets the domain reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the command id.
    #[must_use]
    pub fn with_command_id(mut self, id: impl Into<String>) -> Self {
        self.command_id = Some(id.into());
        self
    }

    /// Sets the trace id (when there is one).
    #[must_use]
    pub fn with_trace_id(mut self, id: Option<String>) -> Self {
        self.trace_id = id;
        self
    }

    /// Adds a field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The HTTP-like status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// Headers and body of the reply message.
    pub fn to_message(&self) -> (HeaderMap, Bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(SERVICE_ERROR_CODE, self.status().to_string());
        // Header values cannot hold line breaks.
        headers.insert(SERVICE_ERROR, self.message.replace(['\r', '\n'], " "));
        let body = serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"code":"internal","message":"unencodable error"}"#.to_vec());
        (headers, body.into())
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorBody {}

/// Reads a reply: its body on success, the [`ErrorBody`] on error. A reply whose error headers
/// come without our JSON body (another implementation) still yields a usable error.
///
/// # Errors
/// The error body.
pub fn read_reply(message: &Message) -> Result<&Bytes, ErrorBody> {
    let Some(status) = message.headers.as_ref().and_then(|h| h.get(SERVICE_ERROR_CODE)) else {
        return Ok(&message.payload);
    };
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(&message.payload) {
        return Err(body);
    }
    let text =
        message.headers.as_ref().and_then(|h| h.get(SERVICE_ERROR)).map(|v| v.as_str().to_owned()).unwrap_or_default();
    let code = match status.as_str() {
        "400" => ErrorCode::Invalid,
        "404" => ErrorCode::NotFound,
        "409" => ErrorCode::Conflict,
        "412" => ErrorCode::PreconditionFailed,
        "422" => ErrorCode::Rejected,
        "503" => ErrorCode::Unavailable,
        "504" => ErrorCode::Timeout,
        _ => ErrorCode::Internal,
    };
    Err(ErrorBody::new(code, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_round_trips_through_a_message() {
        let error = ErrorBody::new(ErrorCode::Rejected, "insufficient stock:\n3 left")
            .with_reason("insufficient_stock")
            .with_command_id("c1")
            .with("available", 3);
        let (headers, body) = error.to_message();
        assert_eq!(headers.get(SERVICE_ERROR_CODE).map(|v| v.as_str()), Some("422"));
        assert_eq!(headers.get(SERVICE_ERROR).map(|v| v.as_str()), Some("insufficient stock: 3 left"));
        let message = Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload: body,
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        };
        let back = read_reply(&message).unwrap_err();
        assert_eq!(back, error);
        let json: Value = serde_json::to_value(&back).unwrap();
        assert_eq!((json["code"].as_str(), json["available"].as_u64()), (Some("rejected"), Some(3)));
    }
}
