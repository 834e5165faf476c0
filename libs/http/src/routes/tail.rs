//! Live event streams as Server-Sent Events (`event: event`, `id:` the stream sequence): an
//! ordered consumer on the event stream, for at most ten minutes a connection; EventSource
//! reconnects with the last id and misses nothing.
//! - `GET /v1/tail[?type=T]`: every event (or those of aggregate type `T`) as it is stored, a
//!   summary of each, from now on.
//! - `GET /v1/aggregates/{type}/{id}/stream`: one aggregate's events as CloudEvents, its history
//!   first (through the archive where it was compacted), then each new one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;
use serde_json::json;
use warp::Filter;
use warp::http::HeaderMap;
use warp::sse::Event;

use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle};
use crate::problem::Problem;

/// How long one connection streams before EventSource reconnects (with its last id).
const TAIL_FOR: Duration = Duration::from_secs(600);

/// History events sent before the live ones, per connection (a reconnect goes on from the
/// last id).
const HISTORY: usize = 10_000;

/// Tails streaming at once per gateway: each holds an ordered consumer on the server.
const MAX_TAILS: usize = 32;

static TAILS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_TAILS);

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    warp::path!("v1" / "tail")
        .and(warp::get())
        .and(with(gw))
        .and(stream_headers())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .then(|gw: Arc<Gateway>, headers: HeaderMap, query: std::collections::HashMap<String, String>| async move {
            handle(gw, "/v1/tail", Role::Viewer, headers, |ctx| tail(ctx, query)).await
        })
}

/// Every event, or those of one aggregate type (`?type=stock`).
async fn tail(ctx: Ctx, query: std::collections::HashMap<String, String>) -> Result<warp::reply::Response, Problem> {
    if let Some(other) = query.keys().find(|k| !["type", "access_token", "api_key"].contains(&k.as_str())) {
        return Err(Problem::new(400, "invalid", format!("unknown query parameter {other:?}; this takes type")));
    }
    let prefix = &ctx.gw.store.config().subject_prefix;
    let filter = match query.get("type") {
        None => format!("{prefix}.>"),
        Some(kind) => {
            let aggregate =
                ctx.gw.app.aggregate_or_error(kind).map_err(|e| Problem::new(404, "not_found", e.to_string()))?;
            format!("{prefix}.{}.>", aggregate.aggregate_type())
        }
    };
    stream(ctx, filter, Start::New, Render::Summary).await
}

/// Where a stream starts when the client did not say (`Last-Event-ID`).
pub(super) enum Start {
    /// At the next event stored.
    New,
    /// With the subject's history, read first (archive included), then live.
    History,
}

/// What each event becomes.
pub(super) enum Render {
    /// `{"seq","subject","type","id","aggregateversion","commandid","time"}`.
    Summary,
    /// The CloudEvent, structured, its personal values opened.
    CloudEvent,
}

pub(super) async fn stream(
    ctx: Ctx,
    filter: String,
    start: Start,
    render: Render,
) -> Result<warp::reply::Response, Problem> {
    let unavailable =
        |e: &dyn std::fmt::Display| Problem::new(503, "unavailable", e.to_string()).with("unavailable", "nats");
    let after =
        match ctx.header("last-event-id") {
            Some(id) => Some(id.trim().parse::<u64>().ok().filter(|seq| *seq < u64::MAX).ok_or_else(|| {
                Problem::new(400, "invalid", format!("Last-Event-ID {id:?} is not a stream sequence"))
            })?),
            None => None,
        };
    let Ok(permit) = TAILS.try_acquire() else {
        return Err(Problem::new(
            503,
            "unavailable",
            format!("{MAX_TAILS} live streams are open already; try again later"),
        )
        .header("retry-after", "5".to_owned())
        .with("unavailable", "gateway"));
    };
    let store = ctx.gw.store.clone();
    // The history first, where the client starts from it: read through the archive.
    let mut history = Vec::new();
    let mut next_seq = after.map(|seq| seq + 1);
    if matches!(start, Start::History) {
        let from = next_seq.unwrap_or(1);
        history = store.read(&filter, from, HISTORY).await.map_err(crate::problem::store_problem)?;
        // Live from right after the last event read: nothing appended meanwhile is missed.
        next_seq = Some(history.last().map_or(from, |e| e.seq + 1));
    }
    let config = store.config();
    let js_stream = store.jetstream().get_stream(&config.stream).await.map_err(|e| unavailable(&e))?;
    let deliver_policy = match next_seq {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::New,
    };
    let consumer = js_stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let stop = ctx.gw.shutdown.clone();
    tokio::spawn(async move {
        let _permit = permit; // held while this stream is open
        let deadline = tokio::time::Instant::now() + TAIL_FOR;
        for stored in history {
            if let Some(event) = event(&store, &render, stored).await
                && tx.send(event).await.is_err()
            {
                return;
            }
        }
        loop {
            let message = tokio::select! {
                () = stop.wait() => break,
                () = tokio::time::sleep_until(deadline) => break,
                () = tx.closed() => break, // the client went away
                message = messages.next() => message,
            };
            let Some(Ok(message)) = message else { break };
            let Ok(stored) = jetsource::StoredEvent::from_delivery(&message) else { continue };
            if let Some(event) = event(&store, &render, stored).await
                && tx.send(event).await.is_err()
            {
                break;
            }
        }
    });
    Ok(sse(rx))
}

/// One stored event as a Server-Sent Event (none for a message that is not an event).
async fn event(store: &jetsource::EventStore, render: &Render, stored: jetsource::StoredEvent) -> Option<Event> {
    let data = match render {
        Render::Summary => {
            let attributes = stored.attributes().ok();
            let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
            json!({
                "seq": stored.seq,
                "subject": stored.subject,
                "type": attributes.as_ref().map(|a| a.event_type.clone()),
                "id": attributes.as_ref().map(|a| a.id.clone()),
                "aggregateversion": attributes.as_ref().and_then(|a| a.aggregate_version),
                "commandid": header("ce-commandid"),
                "time": attributes.as_ref().map(|a| a.time.clone()),
            })
        }
        Render::CloudEvent => {
            let mut value = jetsource_runtime::inspect::structured(&stored).ok()?;
            store.reveal(&mut value).await.ok()?;
            value
        }
    };
    Event::default().event("event").id(stored.seq.to_string()).json_data(&data).ok()
}

/// The `access_token` of a query string (a JWT: its characters need no decoding).
fn access_token(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| pair.strip_prefix("access_token=")).filter(|t| !t.is_empty())
}

/// The headers of a request for a Server-Sent Events stream. EventSource cannot set headers: a
/// stream may carry its credentials in the session cookie (`POST /v1/session`), or its bearer
/// token as `?access_token=` or its API key as `?api_key=`, each taken only when no credential
/// header is present.
pub(super) fn stream_headers() -> impl Filter<Extract = (HeaderMap,), Error = Infallible> + Clone {
    warp::header::headers_cloned().and(warp::query::raw().or(warp::any().map(String::new)).unify()).map(
        |mut headers: HeaderMap, query: String| {
            if !headers.contains_key("authorization")
                && !headers.contains_key("x-api-key")
                && let Some((name, value)) = super::session::credential(&headers)
                && let Ok(value) = warp::http::HeaderValue::from_str(&value)
            {
                headers.insert(name, value);
            }
            if let Some(token) = access_token(&query)
                && !headers.contains_key("authorization")
                && let Ok(value) = warp::http::HeaderValue::from_str(&format!("Bearer {token}"))
            {
                headers.insert("authorization", value);
            }
            let key = query.split('&').find_map(|pair| pair.strip_prefix("api_key=")).filter(|k| !k.is_empty());
            if let Some(key) = key
                && !headers.contains_key("x-api-key")
            {
                let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
                if let Ok(value) = warp::http::HeaderValue::from_str(&key) {
                    headers.insert("x-api-key", value);
                }
            }
            headers
        },
    )
}

/// The Server-Sent Events `rx` receives, as a 200 response with a keep-alive every 15 s.
pub(super) fn sse(mut rx: tokio::sync::mpsc::Receiver<Event>) -> warp::reply::Response {
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<Event, Infallible>)));
    let reply = warp::sse::reply(warp::sse::keep_alive().interval(Duration::from_secs(15)).stream(events));
    let mut response = warp::Reply::into_response(reply);
    *response.status_mut() = warp::http::StatusCode::OK;
    response
}
