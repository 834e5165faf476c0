//! `GET /v1/tail`: every event as it is stored, as Server-Sent Events (`event: event`, `id:` its
//! stream sequence), for a live view of what the system does. An ordered consumer on the event
//! stream, starting at new events (or after `Last-Event-ID`), for at most ten minutes; the
//! browser's EventSource reconnects with the last id and misses nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;
use serde_json::json;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::sse::Event;

use super::commands::stream_credentials;
use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle};
use crate::problem::Problem;

/// How long one connection streams before EventSource reconnects (with its last id).
const TAIL_FOR: Duration = Duration::from_secs(600);

/// Tails streaming at once per gateway: each holds an ordered consumer on the server.
const MAX_TAILS: usize = 32;

static TAILS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_TAILS);

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    warp::path!("v1" / "tail")
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(|gw: Arc<Gateway>, mut headers: HeaderMap, query: String| async move {
            stream_credentials(&query, &mut headers);
            handle(gw, "/v1/tail", Role::Viewer, headers, tail).await
        })
}

async fn tail(ctx: Ctx) -> Result<warp::reply::Response, Problem> {
    let unavailable =
        |e: &dyn std::fmt::Display| Problem::new(503, "unavailable", e.to_string()).with("unavailable", "nats");
    let after =
        match ctx.header("last-event-id") {
            Some(id) => Some(id.trim().parse::<u64>().ok().and_then(|seq| seq.checked_add(1)).ok_or_else(|| {
                Problem::new(400, "invalid", format!("Last-Event-ID {id:?} is not a stream sequence"))
            })?),
            None => None,
        };
    let Ok(permit) = TAILS.try_acquire() else {
        return Err(Problem::new(
            503,
            "unavailable",
            format!("{MAX_TAILS} tails are streaming already; try again later"),
        )
        .header("retry-after", "5".to_owned())
        .with("unavailable", "gateway"));
    };
    let config = ctx.gw.store.config();
    let stream = ctx.gw.store.jetstream().get_stream(&config.stream).await.map_err(|e| unavailable(&e))?;
    let deliver_policy = match after {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::New,
    };
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.>", config.subject_prefix),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    let stop = ctx.gw.shutdown.clone();
    tokio::spawn(async move {
        let _permit = permit; // held while this tail streams
        let deadline = tokio::time::Instant::now() + TAIL_FOR;
        loop {
            let message = tokio::select! {
                () = stop.wait() => break,
                () = tokio::time::sleep_until(deadline) => break,
                () = tx.closed() => break, // the client went away
                message = messages.next() => message,
            };
            let Some(Ok(message)) = message else { break };
            let Ok(stored) = jetsource::StoredEvent::from_delivery(&message) else { continue };
            let attributes = stored.attributes().ok();
            let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
            let summary = json!({
                "seq": stored.seq,
                "subject": stored.subject,
                "type": attributes.as_ref().map(|a| a.event_type.clone()),
                "id": attributes.as_ref().map(|a| a.id.clone()),
                "aggregateversion": attributes.as_ref().and_then(|a| a.aggregate_version),
                "commandid": header("ce-commandid"),
                "time": attributes.as_ref().map(|a| a.time.clone()),
            });
            let Ok(event) = Event::default().event("event").id(stored.seq.to_string()).json_data(&summary) else {
                continue;
            };
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<Event, Infallible>)));
    let reply = warp::sse::reply(warp::sse::keep_alive().interval(Duration::from_secs(15)).stream(events));
    let mut response = warp::Reply::into_response(reply);
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}
