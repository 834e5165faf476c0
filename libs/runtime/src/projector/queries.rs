//! The NATS endpoints of the projector: queries (`qry.<view>.<key>`, `qry.<view>` with
//! `{"prefix", "limit", "after"}`, header `Min-Seq`) and operations (`projector.status`,
//! `projector.rebuild.<view>`, `projector.retry.<view>`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Shutdown;
use crate::endpoint::{self, Answer};
use crate::micro::Endpoint;
use crate::wire::ErrorBody;
use async_nats::header::HeaderName;
use async_nats::{Message, Subscriber};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use jetsource::ErrorCode;
use jetsource::command::parse_body;
use jetsource::projection::{ProjectionError, ViewHandle};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Projector;

use crate::wire::header::MIN_SEQ;
use crate::wire::subject;
const MIN_SEQ_NAME: HeaderName = HeaderName::from_static(MIN_SEQ);

/// Largest page of a listing.
const MAX_LIMIT: usize = 1000;

pub(crate) async fn subscribe(projector: &Projector) -> Result<(), ProjectionError> {
    let micro = projector.micro();
    let fail = |e: async_nats::SubscribeError| ProjectionError::Unavailable { view: "*".into(), reason: e.to_string() };
    let (queries, query_stats) = micro.endpoint("query", subject::QUERIES, "views").await.map_err(fail)?;
    let (admin, admin_stats) = micro.endpoint("admin", subject::PROJECTOR, "projector").await.map_err(fail)?;
    projector.keep_endpoint(queries, query_stats);
    projector.keep_endpoint(admin, admin_stats);
    Ok(())
}

/// Answers queries and operations until `shutdown`, each endpoint in the one endpoint loop.
pub(crate) async fn serve(projector: Projector, endpoints: Vec<(Subscriber, Arc<Endpoint>)>, shutdown: Shutdown) {
    let client = projector.inner.client.clone();
    let loops = endpoints.into_iter().map(|(requests, stats)| {
        let projector = projector.clone();
        endpoint::serve(
            client.clone(),
            requests,
            stats,
            endpoint::DEFAULT_IN_FLIGHT,
            shutdown.clone(),
            move |message| {
                let projector = projector.clone();
                async move {
                    let result = if message.subject.starts_with("qry.") {
                        match query(&projector, &message).await {
                            // Documents hold personal values sealed; answers show them opened.
                            Ok(mut value) => projector
                                .inner
                                .store
                                .reveal(&mut value)
                                .await
                                .map(|()| value)
                                .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, e.to_string())),
                            Err(e) => Err(e),
                        }
                    } else {
                        admin(&projector, &message).await
                    };
                    Answer::of(result)
                }
            },
        )
    });
    futures::future::join_all(loops).await;
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

async fn query(projector: &Projector, message: &Message) -> Result<Value, ErrorBody> {
    let mut parts = message.subject.splitn(3, '.').skip(1);
    let view = parts.next().unwrap_or_default();
    let key = parts.next();
    let kind = projector.kind(view).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!("unknown view {view:?}; views: {}", projector.view_names().join(", ")),
        )
    })?;
    let min_seq = message
        .headers
        .as_ref()
        .and_then(|h| h.get(MIN_SEQ_NAME))
        .map(|v| {
            v.as_str().trim().parse::<u64>().map_err(|_| {
                ErrorBody::new(ErrorCode::Invalid, format!("{MIN_SEQ} {:?} is not a stream sequence", v.as_str()))
            })
        })
        .transpose()?;
    let handle = wait_for(projector, view, min_seq).await?;
    let unavailable = |e: ProjectionError| ErrorBody::new(ErrorCode::Unavailable, e.to_string());
    match key {
        Some(natural) => {
            let key = kind
                .key(natural)
                .map_err(|e| ErrorBody::new(ErrorCode::Invalid, format!("invalid {view} key: {e}")))?;
            match read(&handle, &key, min_seq.is_some()).await.map_err(unavailable)? {
                Some(doc) => Ok(doc),
                None => Err(ErrorBody::new(ErrorCode::NotFound, format!("no {view} document {natural:?}"))),
            }
        }
        None => {
            let request: ListRequest =
                parse_body(&message.payload).map_err(|e| ErrorBody::new(ErrorCode::Invalid, e.to_string()))?;
            let limit = request.limit.unwrap_or(100);
            if !(1..=MAX_LIMIT).contains(&limit) {
                return Err(ErrorBody::new(ErrorCode::Invalid, format!("limit must be 1 to {MAX_LIMIT}, not {limit}")));
            }
            let prefix = kind.prefix(&request.prefix);
            let (keys, next) = handle.keys(&prefix, request.after.as_deref(), limit).await.map_err(unavailable)?;
            let mut docs: FuturesOrdered<_> = keys.iter().map(|k| read(&handle, k, min_seq.is_some())).collect();
            let mut items = Vec::with_capacity(keys.len());
            while let Some(doc) = docs.next().await {
                if let Some(doc) = doc.map_err(unavailable)? {
                    items.push(doc);
                }
            }
            Ok(json!({ "items": items, "next": next }))
        }
    }
}

/// One document: from the bucket's leader when the reader waited for a sequence (`Min-Seq`),
/// which a replica's Direct Get may not have yet (ADR 22); else by Direct Get.
async fn read(handle: &ViewHandle, key: &str, waited: bool) -> Result<Option<Value>, ProjectionError> {
    if waited { handle.get_current(key).await } else { handle.get(key).await }
}

/// The active version of `view`, once it reflects `min_seq` (following a switch of versions
/// while waiting).
async fn wait_for(projector: &Projector, view: &str, min_seq: Option<u64>) -> Result<ViewHandle, ErrorBody> {
    let missing = || ErrorBody::new(ErrorCode::Unavailable, format!("view {view} is not running"));
    let Some(min_seq) = min_seq else { return projector.view(view).ok_or_else(missing) };
    let deadline = Instant::now() + projector.inner.config.consistency_wait;
    loop {
        let handle = projector.view(view).ok_or_else(missing)?;
        if handle.wait_applied(min_seq, Duration::from_millis(50)).await {
            return Ok(handle);
        }
        if Instant::now() >= deadline {
            return Err(ErrorBody::new(
                ErrorCode::ConsistencyTimeout,
                format!("view {view} reflects stream seq {}, not yet {min_seq}", handle.applied()),
            )
            .with("applied_seq", handle.applied()));
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    #[serde(default)]
    subject: Option<String>,
}

async fn admin(projector: &Projector, message: &Message) -> Result<Value, ErrorBody> {
    let mut parts = message.subject.splitn(3, '.').skip(1);
    let (verb, view) = (parts.next().unwrap_or_default(), parts.next());
    let unavailable = |e: ProjectionError| ErrorBody::new(ErrorCode::Unavailable, e.to_string());
    let known = |view: Option<&str>| -> Result<String, ErrorBody> {
        let view = view.unwrap_or_default();
        projector.kind(view).map(|k| k.name().to_owned()).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("unknown view {view:?}; views: {}", projector.view_names().join(", ")),
            )
        })
    };
    match verb {
        "status" => Ok(projector.status().await),
        "rebuild" => {
            let view = known(view)?;
            let version = projector.rebuild(&view).await.map_err(unavailable)?;
            Ok(json!({ "view": view, "version": version, "state": "building" }))
        }
        "parked" => {
            let view = known(view)?;
            let handle =
                projector.view(&view).ok_or_else(|| ErrorBody::new(ErrorCode::Unavailable, "view not running"))?;
            // The oldest 500: a reply stays well within the server's max_payload.
            let mut records = handle.parked_records().await.map_err(unavailable)?;
            let total = records.len();
            records.truncate(500);
            Ok(json!({ "view": view, "version": handle.version(), "parked": records, "total": total }))
        }
        "retry" => {
            let view = known(view)?;
            let request: RetryRequest =
                parse_body(&message.payload).map_err(|e| ErrorBody::new(ErrorCode::Invalid, e.to_string()))?;
            let handle =
                projector.view(&view).ok_or_else(|| ErrorBody::new(ErrorCode::Unavailable, "view not running"))?;
            let report = handle.retry(request.subject).await.map_err(unavailable)?;
            Ok(json!({ "view": view, "applied": report.applied, "still_parked": report.still_parked }))
        }
        other => Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("unknown operation {other:?}; operations: status, rebuild.<view>, retry.<view>, parked.<view>"),
        )),
    }
}
