//! What every route runs in: admission (a place among the requests in flight, else 503),
//! authentication and roles, per-caller rate limits (429), a deadline (504),
//! a span continuing the caller's trace, metrics; and the helpers routes share (NATS requests
//! with the error contract, path decoding, capped JSON bodies).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use jetsource::ErrorCode;
use jetsource_runtime::wire::{self, CallError};
use jetsource_telemetry::propagation;
use tracing::Instrument;
use warp::http::HeaderMap;

use crate::Gateway;
use crate::admission::Refused;
use crate::auth::{AuthError, Principal, Role};
use crate::problem::Problem;

/// What a route's handler gets.
pub(crate) struct Ctx {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) principal: Principal,
    pub(crate) span: tracing::Span,
    pub(crate) headers: HeaderMap,
}

impl Ctx {
    /// A request header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Runs `handler` for `route` with role `needs`; every outcome becomes a response.
pub(crate) async fn handle<F, Fut>(
    gw: Arc<Gateway>,
    route: &'static str,
    needs: Role,
    headers: HeaderMap,
    handler: F,
) -> warp::reply::Response
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<warp::reply::Response, Problem>>,
{
    let started = Instant::now();
    // A place first, before any work on the request: what is shed costs next to nothing.
    let mut place = match gw.admission.admit().await {
        Ok(place) => place,
        Err(Refused::Overloaded) => {
            let response =
                Problem::new(503, "overloaded", "the gateway is at its limit of requests in flight; retry shortly")
                    .retry_after(1)
                    .into_response();
            gw.metrics.http_requests.get_or_create(&[("route", route.into()), ("status", "503".into())]).inc();
            return response;
        }
    };
    let span = tracing::info_span!(
        "jetsource.http",
        service = "gateway",
        otel.name = route,
        http.route = route,
        http.status = tracing::field::Empty,
        actor = tracing::field::Empty,
    );
    set_parent(&span, &headers);
    let trace_id = propagation::trace_id(&span);
    let response = match admit(&gw, &headers, needs).await {
        Err(problem) => problem.trace(trace_id.clone()).into_response(),
        Ok(principal) => {
            place.measured();
            span.record("actor", principal.actor.as_str());
            let ctx = Ctx { gw: Arc::clone(&gw), principal, span: span.clone(), headers };
            let timeout = gw.config.request_timeout;
            match tokio::time::timeout(timeout, handler(ctx).instrument(span.clone())).await {
                Ok(Ok(response)) => response,
                Ok(Err(problem)) => {
                    if problem.status >= 500 {
                        tracing::error!(parent: &span, code = %problem.code, detail = %problem.detail, "request failed");
                    }
                    problem.trace(trace_id.clone()).into_response()
                }
                Err(_) => Problem::from_code(ErrorCode::Timeout, format!("no answer within {timeout:?}"))
                    .trace(trace_id.clone())
                    .into_response(),
            }
        }
    };
    let mut response = response;
    if let Some(id) = trace_id
        && let Ok(value) = warp::http::HeaderValue::from_str(&id)
    {
        response.headers_mut().insert("x-trace-id", value);
    }
    let status = response.status().as_u16();
    span.record("http.status", status);
    gw.metrics.http_requests.get_or_create(&[("route", route.into()), ("status", status.to_string().into())]).inc();
    gw.metrics.http_seconds.get_or_create(&[("route", route.into())]).observe(started.elapsed().as_secs_f64());
    response
}

/// Authentication, role, and the caller's rate.
async fn admit(gw: &Gateway, headers: &HeaderMap, needs: Role) -> Result<Principal, Problem> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let principal = gw.auth.check(text("authorization"), text("x-api-key"), needs).await.map_err(|e| match e {
        AuthError::Forbidden { .. } => Problem::new(403, "forbidden", e.to_string()),
        other => Problem::new(401, "unauthorized", other.to_string()).header("www-authenticate", "Bearer".into()),
    })?;
    if let Some(limiter) = &gw.rate_limiter
        && let Err(not_until) = limiter.check_key(&principal.actor)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        return Err(Problem::new(
            429,
            "rate_limited",
            format!("{} is over its limit of requests per second; retry in {seconds} s", principal.actor),
        )
        .retry_after(seconds));
    }
    Ok(principal)
}

/// Continues the caller's W3C trace (`traceparent`, `tracestate`).
fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let mut nats = async_nats::HeaderMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            nats.insert(name, value);
        }
    }
    propagation::set_parent_from_headers(span, Some(&nats));
}

/// A NATS request in this request's trace; the reply's body, or the problem it carries.
pub(crate) async fn request(
    ctx: &Ctx,
    subject: String,
    mut headers: async_nats::HeaderMap,
    body: Bytes,
    service: &str,
) -> Result<async_nats::Message, Problem> {
    let client = &ctx.gw.client;
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(Problem::from_code(ErrorCode::Unavailable, "NATS (the message bus) is unreachable")
            .with("unavailable", "nats")
            .retry_after(2));
    }
    propagation::inject(&ctx.span, &mut headers);
    let client = wire::Client::new(client.clone(), ctx.gw.config.request_timeout);
    client.request(subject, headers, body).await.map_err(|e| match e {
        CallError::Reply(error) => Problem::from(error),
        CallError::NoResponders { .. } => {
            Problem::from_code(ErrorCode::Unavailable, format!("no {service} service is running"))
                .with("unavailable", service.to_owned())
                .retry_after(2)
        }
        CallError::Timeout { .. } => {
            Problem::from_code(ErrorCode::Timeout, format!("the {service} service did not answer in time"))
        }
        CallError::Invalid(reason) => Problem::from_code(ErrorCode::Invalid, reason),
        CallError::Nats(reason) => {
            Problem::from_code(ErrorCode::Unavailable, format!("NATS (the message bus) failed: {reason}"))
                .with("unavailable", "nats")
        }
    })
}

/// Decodes a percent-encoded path segment.
pub(crate) fn segment(raw: &str) -> Result<String, Problem> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| Problem::new(400, "invalid", format!("bad percent-encoding in {raw:?}")))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Problem::new(400, "invalid", format!("{raw:?} is not UTF-8")))
}

/// Reads a request body of at most `max` bytes; a body needs a JSON content type.
pub(crate) async fn json_body(
    content_type: Option<String>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>>,
    max: usize,
) -> Result<Bytes, Problem> {
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| Problem::new(400, "invalid", "the request body could not be read"))?;
        if collected.len() + chunk.remaining() > max {
            return Err(
                Problem::new(413, "invalid", format!("the request body is larger than {max} bytes")).with("limit", max)
            );
        }
        collected.extend_from_slice(chunk.chunk());
    }
    if !collected.iter().all(u8::is_ascii_whitespace) {
        let json = content_type
            .as_deref()
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .is_some_and(|ct| ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json")));
        if !json {
            return Err(Problem::new(415, "invalid", "the body must be JSON: send Content-Type: application/json"));
        }
    }
    Ok(collected.freeze())
}

/// A JSON response.
pub(crate) fn json(status: u16, body: &impl serde::Serialize) -> warp::reply::Response {
    let status = warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::OK);
    warp::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .map(warp::Reply::into_response)
        .unwrap_or_else(warp::Reply::into_response)
}
