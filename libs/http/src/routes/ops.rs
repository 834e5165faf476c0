//! Operations: `/status`, `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, and the
//! projections (`GET /v1/projections`, `POST /v1/projections/{view}/rebuild|retry`), and
//! forgetting a data subject (`POST /v1/data-subjects/{subject}/forget`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use warp::Filter;
use warp::http::HeaderMap;

use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle, json, json_body, request, segment};
use crate::problem::Problem;
use crate::status;

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let health = jetsource_runtime::health::routes(gw.readiness.clone(), Arc::clone(&gw.metrics));
    let openapi = warp::path!("openapi.json").and(warp::get()).and(with(gw)).map(|gw: Arc<Gateway>| {
        warp::http::Response::builder()
            .header("content-type", "application/json")
            .body(gw.openapi.clone())
            .map(warp::Reply::into_response)
            .unwrap_or_else(warp::Reply::into_response)
    });
    let status = warp::path!("status").and(warp::get()).and(with(gw)).and(warp::header::headers_cloned()).then(
        |gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/status", Role::Viewer, headers, |ctx| async move {
                let (code, body) = status::report(&ctx.gw).await;
                let mut response = json(code, &body);
                if code == 503 {
                    response.headers_mut().insert("retry-after", warp::http::HeaderValue::from(2));
                }
                Ok(response)
            })
            .await
        },
    );
    let projections =
        warp::path!("v1" / "projections").and(warp::get()).and(with(gw)).and(warp::header::headers_cloned()).then(
            |gw: Arc<Gateway>, headers: HeaderMap| async move {
                handle(gw, "/v1/projections", Role::Viewer, headers, |ctx| {
                    admin(ctx, jetsource_runtime::wire::subject::PROJECTOR_STATUS.into(), Bytes::new())
                })
                .await
            },
        );
    let operate = warp::path!("v1" / "projections" / String / String)
        .and(warp::post())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .then(|view: String, action: String, gw: Arc<Gateway>, headers: HeaderMap, content_type, body| async move {
            // Read after authentication and admission (see the command route).
            let body = json_body(content_type, body, gw.config.max_body_bytes);
            handle(gw, "/v1/projections/{view}/{action}", Role::Admin, headers, |ctx| async move {
                let (view, action) = (segment(&view)?, segment(&action)?);
                if !matches!(action.as_str(), "rebuild" | "retry") || view.contains(['.', '*', '>']) {
                    return Err(Problem::new(404, "not_found", "use POST /v1/projections/{view}/rebuild or /retry"));
                }
                admin(ctx, jetsource_runtime::wire::subject::projector(&action, &view), body.await?).await
            })
            .await
        });
    let parked = warp::path!("v1" / "projections" / String / "parked")
        .and(warp::get())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .then(|view: String, gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/projections/{view}/parked", Role::Viewer, headers, |ctx| async move {
                let view = segment(&view)?;
                if view.contains(['.', '*', '>']) || view.is_empty() {
                    return Err(Problem::new(404, "not_found", format!("no view {view:?}")));
                }
                admin(ctx, jetsource_runtime::wire::subject::projector("parked", &view), Bytes::new()).await
            })
            .await
        });
    let forget = warp::path!("v1" / "data-subjects" / String / "forget")
        .and(warp::post())
        .and(with(gw))
        .and(warp::header::headers_cloned())
        .then(|subject: String, gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/data-subjects/{subject}/forget", Role::Admin, headers, |ctx| async move {
                let subject = segment(&subject)?;
                jetsource::metadata::validate_command_id(&subject)
                    .map_err(|e| Problem::new(400, "invalid", format!("invalid data subject: {e}")))?;
                let keyring = ctx.gw.store.keyring().map_err(crate::problem::store_problem)?;
                let forgotten = keyring.forget(&subject).await.map_err(crate::problem::store_problem)?;
                Ok(json(200, &serde_json::json!({ "subject": subject, "forgotten": forgotten })))
            })
            .await
        });
    health
        .or(openapi)
        .unify()
        .or(status)
        .unify()
        .or(projections)
        .unify()
        .or(parked)
        .unify()
        .or(operate)
        .unify()
        .or(forget)
        .unify()
}

async fn admin(ctx: Ctx, subject: String, body: Bytes) -> Result<warp::reply::Response, Problem> {
    let reply = request(&ctx, subject, async_nats::HeaderMap::new(), body, "projector").await?;
    let value: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    Ok(json(200, &value))
}
