//! `POST /v1/commands/{type}/{id}/{command}`, `GET /v1/commands/{command_id}`,
//! `GET /v1/commands/{command_id}/events` (Server-Sent Events).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jetsource::metadata::validate_command_id;
use jetsource::projection::registry::Registry;
use jetsource_runtime::wire::{header, subject};
use serde_json::Value;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::sse::Event;

use super::tail::{sse, stream_headers};
use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle, json, json_body, request, segment};
use crate::problem::Problem;

/// How long an event stream stays open at most.
const STREAM_FOR: Duration = Duration::from_secs(600);
/// How long a final status waits for its notification (and the other way round).
const NOTIFICATION_GRACE: Duration = Duration::from_secs(2);

/// The notifications of a command after stream sequence `after` (from the first kept when 0),
/// and how many of them there are now; none when the stream is missing.
async fn notifications(
    js: &async_nats::jetstream::Context,
    id: &str,
    after: u64,
) -> Option<(async_nats::jetstream::consumer::pull::Ordered, u64)> {
    use async_nats::jetstream::consumer::DeliverPolicy;
    let stream = js.get_stream("NOTIFICATIONS").await.ok()?;
    let deliver_policy =
        if after == 0 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: after + 1 } };
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject::notify(id),
            deliver_policy,
            ..Default::default()
        })
        .await
        .ok()?;
    // From the creation's answer: the edge's user may not ask for consumer info.
    let pending = consumer.cached_info().num_pending;
    Some((consumer.messages().await.ok()?, pending))
}

/// Where an event stream of a command stands: the revision of the last status sent and the
/// sequence of the last notification sent. It is every event's `id`, `<revision>.<sequence>`,
/// so a `Last-Event-ID` resumes after both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    status: u64,
    notification: u64,
}

impl Position {
    fn parse(text: &str) -> Option<Self> {
        let (status, notification) = text.trim().split_once('.')?;
        Some(Self { status: status.parse().ok()?, notification: notification.parse().ok()? })
    }

    fn id(self) -> String {
        format!("{}.{}", self.status, self.notification)
    }
}

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let send =
        warp::path!("v1" / "commands" / String / String / String)
            .and(warp::post())
            .and(with(gw))
            .and(warp::header::headers_cloned())
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::stream())
            .then(
                |kind: String,
                 id: String,
                 command: String,
                 gw: Arc<Gateway>,
                 headers: HeaderMap,
                 content_type,
                 body| async move {
                    // Read only once the caller is authenticated and admitted, within the
                    // request's deadline: an unknown caller cannot make the edge buffer bodies.
                    let max = gw.config.max_body_bytes;
                    let body = json_body(content_type, body, max);
                    handle(gw, "/v1/commands/{type}/{id}/{command}", Role::Operator, headers, |ctx| {
                        send_command(ctx, kind, id, command, body)
                    })
                    .await
                },
            );
    let status = warp::path!("v1" / "commands" / String)
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .then(|id: String, gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/commands/{command_id}", Role::Viewer, headers, |ctx| command_status(ctx, id)).await
        });
    let events = warp::path!("v1" / "commands" / String / "events")
        .and(warp::get())
        .and(with(gw))
        .and(stream_headers())
        .then(|id: String, gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/commands/{command_id}/events", Role::Viewer, headers, |ctx| command_events(ctx, id)).await
        });
    send.or(status).unify().or(events).unify()
}

async fn send_command(
    ctx: Ctx,
    kind: String,
    id: String,
    command: String,
    body: impl Future<Output = Result<Bytes, Problem>>,
) -> Result<warp::reply::Response, Problem> {
    let (kind, id, command) = (segment(&kind)?, segment(&id)?, segment(&command)?);
    let aggregate = ctx.gw.app.aggregate_or_error(&kind).map_err(|e| Problem::new(404, "not_found", e.to_string()))?;
    let spec = aggregate.command(&command).map_err(|e| Problem::new(404, "not_found", e.to_string()))?;
    if spec.internal {
        let known = jetsource::CommandParseError::unknown(aggregate.aggregate_type(), &command, aggregate.commands());
        return Err(Problem::new(404, "not_found", known.to_string()));
    }
    let aggregate_id = aggregate.id(&id).map_err(|e| Problem::new(400, "invalid", e))?;
    let body = body.await?;
    let mut headers = async_nats::HeaderMap::new();
    if let Some(key) = ctx.header("idempotency-key") {
        let key = unquoted(key);
        validate_command_id(key).map_err(|e| Problem::new(400, "invalid", format!("Idempotency-Key: {e}")))?;
        headers.insert(header::IDEMPOTENCY_KEY, key);
    }
    match ctx.header("if-match").map(if_match).transpose()? {
        None => {}
        Some(IfMatch::Version(expected)) => headers.insert(header::EXPECTED_VERSION, expected.to_string()),
        // Aggregates are never deleted, so "it exists" checked now stays true for the append.
        Some(IfMatch::Exists) => {
            let subject = ctx.gw.store.subject(aggregate.aggregate_type(), &aggregate_id);
            let last = ctx.gw.store.last_seq(&subject).await.map_err(crate::problem::store_problem)?;
            if last == 0 {
                return Err(Problem::new(
                    412,
                    "precondition_failed",
                    format!("If-Match: * and no {} {id} exists yet", aggregate.aggregate_type()),
                ));
            }
        }
    }
    headers.insert(header::ACTOR, ctx.principal.actor.as_str());
    let subject = subject::command(&kind, &id, &command);
    let reply = request(&ctx, subject, headers, body, aggregate.service()).await?;
    /// What the edge needs of the reply; the body itself is passed on as it came.
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        status: &'a str,
        version: u64,
        command_id: &'a str,
    }
    let head: Head<'_> = serde_json::from_slice(&reply.payload)
        .map_err(|e| Problem::new(500, "internal", format!("unreadable reply: {e}")))?;
    let accepted = head.status == "accepted";
    let mut response = warp::http::Response::builder()
        .status(if accepted { StatusCode::ACCEPTED } else { StatusCode::OK })
        .header("content-type", "application/json")
        .body(reply.payload.clone())
        .map(warp::Reply::into_response)
        .unwrap_or_else(warp::Reply::into_response);
    let set = |response: &mut warp::reply::Response, name: &'static str, value: String| {
        if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    };
    set(&mut response, "etag", format!("\"{}\"", head.version));
    if accepted {
        set(&mut response, "location", format!("/v1/commands/{}", head.command_id));
    }
    if reply.headers.as_ref().and_then(|h| h.get(header::REPLAYED)).is_some() {
        set(&mut response, "idempotent-replayed", "true".into());
    }
    Ok(response)
}

/// What an `If-Match` asks.
#[derive(Debug, PartialEq)]
enum IfMatch {
    /// `"3"` (or a bare `3`): the aggregate is at version 3.
    Version(u64),
    /// `*`: the aggregate exists.
    Exists,
}

/// Reads `If-Match` by the strong comparison RFC 9110 §13.1.1 prescribes: a weak tag (`W/"3"`)
/// never matches, so it is a 412, not a pinned version.
fn if_match(value: &str) -> Result<IfMatch, Problem> {
    let value = value.trim();
    if value == "*" {
        return Ok(IfMatch::Exists);
    }
    if value.starts_with("W/") {
        return Err(Problem::new(
            412,
            "precondition_failed",
            format!("If-Match {value:?} is a weak entity tag, which never matches (strong comparison)"),
        ));
    }
    unquoted(value).parse().map(IfMatch::Version).map_err(|_| {
        Problem::new(400, "invalid", format!("If-Match {value:?} is not an entity tag of a version (\"3\")"))
    })
}

/// What is inside the quotes of an entity tag (`"3"`) or of a structured-field string
/// (`"k-1"`, RFC 9651, as the Idempotency-Key draft spells a key); a bare value as it is.
fn unquoted(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

async fn command_status(ctx: Ctx, id: String) -> Result<warp::reply::Response, Problem> {
    let id = segment(&id)?;
    validate_command_id(&id).map_err(|e| Problem::new(400, "invalid", e.to_string()))?;
    // `Consistency-Token: <stream_seq>` (the command's answer) waits until the status shows it.
    let headers = super::views::consistency(&ctx)?;
    let reply = request(&ctx, subject::query("commands", Some(&id)), headers, Bytes::new(), "projector").await?;
    let doc: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    Ok(json(200, &doc))
}

/// The command's status now and at each change (`event: status`), and its notifications from
/// the `NOTIFICATIONS` stream (`event: notification`), until the status is final (`accepted`
/// is not); an asynchronous outcome also waits a moment for its notification.
async fn command_events(ctx: Ctx, id: String) -> Result<warp::reply::Response, Problem> {
    let id = segment(&id)?;
    validate_command_id(&id).map_err(|e| Problem::new(400, "invalid", e.to_string()))?;
    let gw = &ctx.gw;
    let js = async_nats::jetstream::new(gw.client.clone());
    let unavailable = |e: &dyn std::fmt::Display| {
        Problem::new(503, "unavailable", format!("the commands view is not available: {e}"))
    };
    let registry = Registry::open(&js, "views").await.map_err(|e| unavailable(&e))?;
    let (entry, _) = registry
        .get("commands")
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| unavailable(&"no projector has run"))?;
    let bucket = js
        .get_key_value(jetsource::projection::bucket_name("commands", entry.active))
        .await
        .map_err(|e| unavailable(&e))?;
    let key = jetsource::id::escape_kv_token(&id);
    let mut watch = bucket.watch_with_history(&key).await.map_err(|e| unavailable(&e))?;
    let first = match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(entry))) => entry,
        _ => return Err(Problem::new(404, "not_found", format!("no command {id:?}"))),
    };
    // A reconnecting EventSource sends the id of the last event it got.
    let resumed = ctx.header("last-event-id").and_then(Position::parse);
    let mut position = resumed.unwrap_or_default();
    let notifications = notifications(&js, &id, position.notification).await;
    let first_status: Value = serde_json::from_slice(&first.value).unwrap_or(Value::Null);
    let final_status = |doc: &Value| doc["status"].as_str().is_some_and(|s| s != "accepted");
    if resumed.is_some()
        && first.revision <= position.status
        && final_status(&first_status)
        && notifications.as_ref().is_none_or(|(_, pending)| *pending == 0)
    {
        // Everything was sent and the command is finished: 204 tells EventSource to stop.
        return Ok(warp::Reply::into_response(StatusCode::NO_CONTENT));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    let stop = gw.shutdown.clone();
    tokio::spawn(async move {
        let mut deadline = tokio::time::Instant::now() + STREAM_FOR;
        let mut notifications = notifications.map(|(messages, _)| messages);
        let mut notified = false;
        let mut finished = false;
        let mut last_status = String::from("accepted");
        // The status already sent before a reconnect is not sent again.
        let mut next = Some(first).filter(|entry| entry.revision > position.status);
        if next.is_none() && final_status(&first_status) {
            // Finished before the reconnect: only notifications it missed are left to send.
            finished = true;
            last_status = first_status["status"].as_str().unwrap_or_default().to_owned();
            deadline = deadline.min(tokio::time::Instant::now() + NOTIFICATION_GRACE);
        }
        loop {
            if let Some(entry) = next.take() {
                let doc: Value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
                let status = doc["status"].as_str().unwrap_or("accepted").to_owned();
                position.status = entry.revision;
                last_status.clone_from(&status);
                let event = Event::default().event("status").id(position.id()).json_data(&doc);
                if let Ok(event) = event
                    && tx.send(event).await.is_err()
                {
                    return;
                }
                match status.as_str() {
                    "accepted" => {}
                    // An outcome that came asynchronously has a notification: wait for it a moment.
                    "completed" | "failed" if !notified && notifications.is_some() => {
                        finished = true;
                        deadline = deadline.min(tokio::time::Instant::now() + NOTIFICATION_GRACE);
                    }
                    _ => break,
                }
            }
            tokio::select! {
                () = stop.wait() => break,
                () = tokio::time::sleep_until(deadline) => break,
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => next = Some(entry),
                    _ => break,
                },
                message = async {
                    match notifications.as_mut() {
                        Some(stream) => stream.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(Ok(message)) = message else {
                        notifications = None;
                        continue;
                    };
                    if let Ok(info) = message.info() {
                        position.notification = info.stream_sequence;
                    }
                    let notification: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                    let final_outcome = notification["status"].as_str().is_some_and(|s| s != "accepted");
                    let event = Event::default().event("notification").id(position.id()).json_data(&notification);
                    if let Ok(event) = event
                        && tx.send(event).await.is_err()
                    {
                        return;
                    }
                    if final_outcome {
                        if finished {
                            break;
                        }
                        notified = true;
                        // The status change the notification reports follows shortly, if it
                        // has not come yet.
                        deadline = deadline.min(tokio::time::Instant::now() + NOTIFICATION_GRACE);
                    }
                }
            };
        }
        // A finished command's stream ends with `end`; reconnecting after it is answered 204,
        // which stops EventSource.
        if last_status != "accepted"
            && let Ok(end) =
                Event::default().event("end").id(position.id()).json_data(serde_json::json!({ "status": last_status }))
        {
            let _ = tx.send(end).await;
        }
    });
    Ok(sse(rx))
}
