//! `GET /v1/aggregates/{type}/{id}` (now, `?version=N` or `?at=RFC3339`: from the event
//! store, not the views) and `GET /v1/aggregates/{type}/{id}/events?from=&limit=` (history as
//! CloudEvents structured JSON, paged by stream sequence), and `GET /v1/aggregates/{type}?prefix=&limit=`
//! (the ids of a type that have events, from the stream's subjects).

use std::collections::HashMap;
use std::sync::Arc;

use jetsource::Until;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warp::Filter;
use warp::http::HeaderMap;

use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle, json, segment};
use crate::problem::Problem;
use jetsource_runtime::inspect::structured;

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let state = warp::path!("v1" / "aggregates" / String / String)
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .then(|kind: String, id: String, gw: Arc<Gateway>, headers: HeaderMap, query: HashMap<String, String>| async move {
            handle(gw, "/v1/aggregates/{type}/{id}", Role::Viewer, headers, |ctx| aggregate(ctx, kind, id, query)).await
        });
    let events = warp::path!("v1" / "aggregates" / String / String / "events")
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .then(|kind: String, id: String, gw: Arc<Gateway>, headers: HeaderMap, query: HashMap<String, String>| async move {
            handle(gw, "/v1/aggregates/{type}/{id}/events", Role::Viewer, headers, |ctx| history(ctx, kind, id, query)).await
        });
    let ids = warp::path!("v1" / "aggregates" / String)
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .then(|kind: String, gw: Arc<Gateway>, headers: HeaderMap, query: HashMap<String, String>| async move {
            handle(gw, "/v1/aggregates/{type}", Role::Viewer, headers, |ctx| list(ctx, kind, query)).await
        });
    let live = warp::path!("v1" / "aggregates" / String / String / "stream")
        .and(warp::get())
        .and(with(gw))
        .and(super::tail::stream_headers())
        .then(|kind: String, id: String, gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/aggregates/{type}/{id}/stream", Role::Viewer, headers, |ctx| async move {
                let (kind, id) = target(&ctx, &kind, &id)?;
                let subject = ctx.gw.store.subject(kind.aggregate_type(), &id);
                super::tail::stream(ctx, subject, super::tail::Start::History, super::tail::Render::CloudEvent).await
            })
            .await
        });
    state.or(events).unify().or(ids).unify().or(live).unify()
}

/// The ids of type `kind` with events in the hot stream (every aggregate keeps its last event
/// there), sorted, those starting with `prefix`, at most `limit`.
async fn list(ctx: Ctx, kind: String, query: HashMap<String, String>) -> Result<warp::reply::Response, Problem> {
    use futures::TryStreamExt as _;
    only(&query, &["prefix", "limit"])?;
    let kind = segment(&kind)?;
    let aggregate = ctx.gw.app.aggregate_or_error(&kind).map_err(|e| Problem::new(404, "not_found", e.to_string()))?;
    let limit = number(&query, "limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::new(400, "invalid", format!("limit {limit} is not within 1..=1000")));
    }
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let config = ctx.gw.store.config();
    let stream_prefix = format!("{}.{}.", config.subject_prefix, aggregate.aggregate_type());
    let unavailable =
        |e: &dyn std::fmt::Display| Problem::new(503, "unavailable", e.to_string()).with("unavailable", "nats");
    let stream = ctx.gw.store.jetstream().get_stream(&config.stream).await.map_err(|e| unavailable(&e))?;
    let subjects = stream.info_with_subjects(format!("{stream_prefix}*")).await.map_err(|e| unavailable(&e))?;
    // Only the `limit` + 1 smallest ids are kept, whatever the stream holds.
    let keep = limit as usize + 1;
    let mut smallest: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut subjects = std::pin::pin!(subjects);
    while let Some((subject, _)) = subjects.try_next().await.map_err(|e| unavailable(&e))? {
        let Some(id) = subject.strip_prefix(&stream_prefix).filter(|id| id.starts_with(&prefix)) else { continue };
        if smallest.len() < keep || smallest.last().is_some_and(|last| id < last.as_str()) {
            smallest.insert(id.to_owned());
            if smallest.len() > keep {
                smallest.pop_last();
            }
        }
    }
    let truncated = smallest.len() > limit as usize;
    let ids: Vec<String> = smallest.into_iter().take(limit as usize).collect();
    Ok(json(200, &json!({ "aggregate_type": aggregate.aggregate_type(), "ids": ids, "truncated": truncated })))
}

type Entry = std::sync::Arc<dyn jetsource_runtime::registry::AggregateEntry>;

fn target(ctx: &Ctx, kind: &str, id: &str) -> Result<(Entry, jetsource::AggregateId), Problem> {
    let (kind, id) = (segment(kind)?, segment(id)?);
    let aggregate = ctx.gw.app.aggregate_or_error(&kind).map_err(|e| Problem::new(404, "not_found", e.to_string()))?;
    let id = aggregate.id(&id).map_err(|e| Problem::new(400, "invalid", e))?;
    Ok((std::sync::Arc::clone(aggregate), id))
}

fn only(query: &HashMap<String, String>, allowed: &[&str]) -> Result<(), Problem> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(other) => {
            Err(Problem::new(400, "invalid", format!("unknown query parameter {other:?}; use {}", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Problem> {
    query
        .get(name)
        .map(|v| v.parse().map_err(|_| Problem::new(400, "invalid", format!("{name} {v:?} is not a number"))))
        .transpose()
}

async fn aggregate(
    ctx: Ctx,
    kind: String,
    id: String,
    query: HashMap<String, String>,
) -> Result<warp::reply::Response, Problem> {
    let (kind, id) = target(&ctx, &kind, &id)?;
    only(&query, &["version", "at"])?;
    let at = query
        .get("at")
        .map(|at| {
            OffsetDateTime::parse(at, &Rfc3339)
                .map_err(|_| Problem::new(400, "invalid", format!("at {at:?} is not an RFC 3339 time")))
        })
        .transpose()?;
    let until = match (number(&query, "version")?, at) {
        (Some(version), Some(at)) => Until::Both(version, at),
        (Some(version), None) => Until::Version(version),
        (None, Some(at)) => Until::Time(at),
        (None, None) => Until::End,
    };
    let value = kind.inspect(&ctx.gw.store, &id, until, false).await.map_err(crate::problem::store_problem)?;
    if value["exists"] == false {
        return Err(Problem::new(404, "not_found", format!("no {} {id} (at that point)", kind.aggregate_type())));
    }
    let mut response = json(200, &value);
    if let Ok(tag) = warp::http::HeaderValue::from_str(&format!("\"{}\"", value["version"])) {
        response.headers_mut().insert("etag", tag);
    }
    Ok(response)
}

async fn history(
    ctx: Ctx,
    kind: String,
    id: String,
    query: HashMap<String, String>,
) -> Result<warp::reply::Response, Problem> {
    let (kind, id) = target(&ctx, &kind, &id)?;
    only(&query, &["from", "limit"])?;
    let from = number(&query, "from")?.unwrap_or(1).max(1);
    let limit = number(&query, "limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::new(400, "invalid", format!("limit must be 1 to 1000, not {limit}")));
    }
    let subject = ctx.gw.store.subject(kind.aggregate_type(), &id);
    let mut stored =
        ctx.gw.store.read(&subject, from, limit as usize + 1).await.map_err(crate::problem::store_problem)?;
    let next = (stored.len() > limit as usize).then(|| stored.pop().map(|e| e.seq)).flatten();
    let events: Vec<_> =
        stored.iter().map(structured).collect::<Result<_, _>>().map_err(crate::problem::store_problem)?;
    let mut events = Value::Array(events);
    ctx.gw.store.reveal(&mut events).await.map_err(crate::problem::store_problem)?;
    Ok(json(200, &json!({ "events": events, "next": next })))
}
