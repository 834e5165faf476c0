//! `GET /v1/views/{view}/{key}` and `GET /v1/views/{view}?prefix=&limit=&after=`, with
//! `Consistency-Token` (a command's `stream_seq`) for read-your-writes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use jetsource_runtime::wire::{header, subject};
use serde_json::{Map, Value};
use warp::Filter;
use warp::http::HeaderMap;

use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle, json, request, segment};
use crate::problem::Problem;

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let one = warp::path!("v1" / "views" / String / String)
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .then(|view: String, key: String, gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/views/{view}/{key}", Role::Viewer, headers, |ctx| document(ctx, view, key)).await
        });
    let list = warp::path!("v1" / "views" / String)
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .then(|view: String, gw: Arc<Gateway>, headers: HeaderMap, query: HashMap<String, String>| async move {
            handle(gw, "/v1/views/{view}", Role::Viewer, headers, |ctx| listing(ctx, view, query)).await
        });
    one.or(list).unify()
}

fn view_name(ctx: &Ctx, raw: &str) -> Result<String, Problem> {
    let view = segment(raw)?;
    ctx.gw.app.view_or_error(&view).map_err(|e| Problem::new(404, "not_found", e.to_string()))?;
    Ok(view)
}

/// `Consistency-Token` → the `Min-Seq` of the query.
pub(super) fn consistency(ctx: &Ctx) -> Result<async_nats::HeaderMap, Problem> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(token) = ctx.header("consistency-token") {
        let seq: u64 = token.trim().parse().map_err(|_| {
            Problem::new(
                400,
                "invalid",
                format!("Consistency-Token {token:?} is not a stream sequence (a command's stream_seq)"),
            )
        })?;
        headers.insert(header::MIN_SEQ, seq.to_string());
    }
    Ok(headers)
}

async fn document(ctx: Ctx, view: String, key: String) -> Result<warp::reply::Response, Problem> {
    let (view, key) = (view_name(&ctx, &view)?, segment(&key)?);
    // Keys go into a subject's last token(s): no wildcards, no spaces, no empty tokens.
    if key.is_empty()
        || key.contains(['*', '>', ' '])
        || key.starts_with('.')
        || key.ends_with('.')
        || key.contains("..")
    {
        return Err(Problem::new(400, "invalid", format!("invalid {view} key {key:?}")));
    }
    let headers = consistency(&ctx)?;
    let reply = request(&ctx, subject::query(&view, Some(&key)), headers, Bytes::new(), "projector").await?;
    let doc: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    let mut response = json(200, &doc);
    if let Some(seq) = doc["seq"].as_u64()
        && let Ok(value) = warp::http::HeaderValue::from_str(&seq.to_string())
    {
        response.headers_mut().insert("consistency-token", value);
    }
    Ok(response)
}

async fn listing(ctx: Ctx, view: String, query: HashMap<String, String>) -> Result<warp::reply::Response, Problem> {
    let view = view_name(&ctx, &view)?;
    let mut body = Map::new();
    for (name, value) in &query {
        match name.as_str() {
            "prefix" | "after" => {
                body.insert(name.clone(), Value::String(value.clone()));
            }
            "limit" => {
                let limit: u64 = value
                    .parse()
                    .map_err(|_| Problem::new(400, "invalid", format!("limit {value:?} is not a number")))?;
                body.insert("limit".into(), limit.into());
            }
            other => {
                return Err(Problem::new(
                    400,
                    "invalid",
                    format!("unknown query parameter {other:?}; use prefix, limit, after"),
                ));
            }
        }
    }
    let headers = consistency(&ctx)?;
    let reply = request(
        &ctx,
        subject::query(&view, None),
        headers,
        serde_json::to_vec(&body).unwrap_or_default().into(),
        "projector",
    )
    .await?;
    let page: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    Ok(json(200, &page))
}
