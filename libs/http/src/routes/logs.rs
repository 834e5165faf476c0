//! `GET /v1/logs?service=&level=&trace_id=&limit=`: shipped log records, through the logbook.

use std::collections::HashMap;
use std::sync::Arc;

use jetsource_runtime::logbook::{LogQuery, QUERY_SUBJECT};
use serde_json::Value;
use warp::Filter;
use warp::http::HeaderMap;

use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle, json, request};
use crate::problem::Problem;

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    warp::path!("v1" / "logs")
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .then(|gw: Arc<Gateway>, headers: HeaderMap, query: HashMap<String, String>| async move {
            handle(gw, "/v1/logs", Role::Viewer, headers, |ctx| logs(ctx, query)).await
        })
}

async fn logs(ctx: Ctx, params: HashMap<String, String>) -> Result<warp::reply::Response, Problem> {
    let mut query = LogQuery::default();
    for (name, value) in params {
        match name.as_str() {
            "service" => query.service = Some(value),
            "level" => query.level = Some(value),
            "trace_id" => query.trace_id = Some(value),
            "limit" => {
                query.limit = Some(
                    value
                        .parse()
                        .map_err(|_| Problem::new(400, "invalid", format!("limit {value:?} is not a number")))?,
                );
            }
            other => {
                return Err(Problem::new(
                    400,
                    "invalid",
                    format!("unknown query parameter {other:?}; use service, level, trace_id, limit"),
                ));
            }
        }
    }
    query.validate().map_err(|e| Problem::new(400, "invalid", e.to_string()))?;
    let body = serde_json::to_vec(&query).unwrap_or_default();
    let reply = request(&ctx, QUERY_SUBJECT.into(), async_nats::HeaderMap::new(), body.into(), "logbook").await?;
    let page: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    Ok(json(200, &page))
}
