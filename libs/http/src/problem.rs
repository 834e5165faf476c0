//! One error shape at the edge: RFC 9457 `application/problem+json` with a stable `code` and
//! the `trace_id`. 5xx bodies stay generic; their detail goes to the log.

use std::convert::Infallible;

use jetsource::ErrorCode;
use jetsource_runtime::wire::ErrorBody;
use serde_json::{Map, Value, json};
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::reject::Reject;

/// A problem document, built without side effects.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Stable code (`rejected`, `invalid`, `unauthorized`...).
    pub code: String,
    /// What went wrong, for people.
    pub detail: String,
    /// Extension members (`reason`, `command_id`, `trace_id`...).
    pub extra: Map<String, Value>,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// Extra response headers (`WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl Reject for Problem {}

impl Problem {
    /// A problem with a status, code and detail.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// From a contract error code.
    pub fn from_code(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(code.status(), code.as_str(), detail)
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the trace id when there is one.
    #[must_use]
    pub fn trace(mut self, trace_id: Option<String>) -> Self {
        if let Some(id) = trace_id {
            self.extra.insert("trace_id".into(), id.into());
        }
        self
    }

    /// The response.
    pub fn into_response(self) -> warp::reply::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let detail = if status.is_server_error() && self.code == "internal" {
            "internal error; the gateway log has the details".to_owned()
        } else {
            self.detail
        };
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": self.code,
        });
        if let Value::Object(map) = &mut body {
            for (k, v) in self.extra {
                map.entry(k).or_insert(v);
            }
        }
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .body(body.to_string())
            .map(warp::Reply::into_response)
            .unwrap_or_else(warp::Reply::into_response);
        // Whoever is told to come back later is told when (429 and 503 always carry it).
        let retry_after = self.retry_after.or(match status.as_u16() {
            429 => Some(1),
            503 => Some(2),
            _ => None,
        });
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<ErrorBody> for Problem {
    fn from(error: ErrorBody) -> Self {
        let mut problem = Problem::from_code(error.code, error.message);
        problem.extra = error.extra;
        if let Some(reason) = error.reason {
            problem.extra.insert("reason".into(), reason.into());
        }
        if let Some(id) = error.command_id {
            problem.extra.insert("command_id".into(), id.into());
        }
        problem.trace(error.trace_id)
    }
}

/// Turns every rejection into a problem document: ours as they are, warp's own by kind, and
/// unknown routes as 404.
pub async fn recover(rejection: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    use warp::reject::{
        InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader, PayloadTooLarge,
        UnsupportedMediaType,
    };
    let problem = if let Some(problem) = rejection.find::<Problem>() {
        problem.clone()
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        Problem::new(413, "invalid", "the request body is too large")
    } else if rejection.find::<LengthRequired>().is_some() {
        Problem::new(411, "invalid", "a Content-Length is required")
    } else if rejection.find::<UnsupportedMediaType>().is_some() {
        Problem::new(415, "invalid", "the body must be application/json")
    } else if let Some(h) = rejection.find::<InvalidHeader>() {
        Problem::new(400, "invalid", format!("header {} is invalid", h.name()))
    } else if let Some(h) = rejection.find::<MissingHeader>() {
        Problem::new(400, "invalid", format!("header {} is missing", h.name()))
    } else if rejection.find::<InvalidQuery>().is_some() {
        Problem::new(400, "invalid", "the query string is invalid")
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        Problem::new(405, "method_not_allowed", "this method is not allowed here")
    } else if rejection.is_not_found() {
        Problem::new(404, "not_found", "no such resource; see /openapi.json")
    } else {
        Problem::new(400, "invalid", "the request could not be read")
    };
    Ok(problem.into_response())
}

/// What a store failure is to an HTTP caller.
pub(crate) fn store_problem(e: jetsource::StoreError) -> Problem {
    match e {
        jetsource::StoreError::Unavailable(m) => Problem::new(503, "unavailable", m).with("unavailable", "nats"),
        other => Problem::new(500, "internal", other.to_string()),
    }
}
