//! Every route of the gateway, in one filter, with one recovery into problem documents.

mod aggregates;
mod commands;
mod console;
mod logs;
mod ops;
mod session;
mod tail;
mod views;

use std::collections::BTreeSet;
use std::sync::Arc;

use warp::Filter;
use warp::http::Method;
use warp::path::FullPath;

use crate::Gateway;
use crate::problem::{self, Problem};

/// The state as a filter.
pub(crate) fn with(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (Arc<Gateway>,), Error = std::convert::Infallible> + Clone + use<> {
    let gw = Arc::clone(gw);
    warp::any().map(move || Arc::clone(&gw))
}

/// All routes; unknown paths and methods become problem documents.
pub(crate) fn all(
    gw: Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static {
    let methods = Arc::new(methods_by_path(&gw.openapi));
    commands::routes(&gw)
        .or(views::routes(&gw))
        .unify()
        .or(aggregates::routes(&gw))
        .unify()
        .or(ops::routes(&gw))
        .unify()
        .or(logs::routes(&gw))
        .unify()
        .or(console::routes(&gw))
        .unify()
        .or(tail::routes(&gw))
        .unify()
        .or(session::routes(&gw))
        .unify()
        .or(method_not_allowed(methods))
        .unify()
        .recover(problem::recover)
        .unify()
}

/// Each documented path (its segments, `{name}` for a parameter) with its methods.
type Methods = Vec<(Vec<String>, Vec<String>)>;

fn methods_by_path(openapi: &str) -> Methods {
    let doc: serde_json::Value = serde_json::from_str(openapi).unwrap_or_default();
    let Some(paths) = doc["paths"].as_object() else { return Vec::new() };
    paths
        .iter()
        .map(|(path, item)| {
            let segments = path.trim_start_matches('/').split('/').map(str::to_owned).collect();
            let methods =
                item.as_object().map(|m| m.keys().map(|k| k.to_ascii_uppercase()).collect()).unwrap_or_default();
            (segments, methods)
        })
        .collect()
}

/// A documented path asked with a method it does not take: 405 with `Allow` (RFC 9110). Any
/// other request this reaches is left to the rejection the routes gave.
fn method_not_allowed(
    methods: Arc<Methods>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    warp::path::full().and(warp::method()).and_then(move |path: FullPath, method: Method| {
        let methods = Arc::clone(&methods);
        async move {
            let segments: Vec<&str> = path.as_str().trim_start_matches('/').split('/').collect();
            let allowed: BTreeSet<&str> = methods
                .iter()
                .filter(|(template, _)| {
                    template.len() == segments.len()
                        && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
                })
                .flat_map(|(_, methods)| methods.iter().map(String::as_str))
                .collect();
            if allowed.is_empty() || allowed.contains(method.as_str()) {
                return Err(warp::reject::not_found());
            }
            let allow = allowed.into_iter().collect::<Vec<_>>().join(", ");
            Ok(Problem::new(405, "method_not_allowed", format!("{method} is not allowed here; allowed: {allow}"))
                .header("allow", allow)
                .into_response())
        }
    })
}
