//! The web console at `/console`: plain HTML, CSS and a JavaScript module embedded in the
//! binary (no build step, nothing fetched from elsewhere). The files hold no data; every figure
//! the console shows comes from the API, with the caller's credentials and roles.

use std::sync::Arc;

use warp::Filter;
use warp::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};

use super::with;
use crate::Gateway;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// Scripts, styles, images and connections from this origin only.
const POLICY: &str =
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> warp::reply::Response {
    warp::http::Response::builder()
        .header(CONTENT_TYPE, content_type)
        .header(CACHE_CONTROL, "no-cache")
        .header(CONTENT_SECURITY_POLICY, POLICY)
        .body(body.into())
        .unwrap_or_default()
}

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let index = warp::path("console")
        .and(warp::path::end().or(warp::path("index.html").and(warp::path::end())).unify())
        .and(warp::get())
        .map(|| file(INDEX, "text/html; charset=utf-8"));
    let script =
        warp::path!("console" / "console.js").and(warp::get()).map(|| file(SCRIPT, "text/javascript; charset=utf-8"));
    let style = warp::path!("console" / "console.css").and(warp::get()).map(|| file(STYLE, "text/css; charset=utf-8"));
    let config = warp::path!("console" / "config.json").and(warp::get()).and(with(gw)).map(|gw: Arc<Gateway>| {
        let body = serde_json::json!({ "trace_url": gw.config.console_trace_url });
        warp::http::Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string().into())
            .unwrap_or_default()
    });
    index.or(script).unify().or(style).unify().or(config).unify()
}
