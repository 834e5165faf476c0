//! Every route of the gateway, in one filter, with one recovery into problem documents.

mod aggregates;
mod commands;
mod logs;
mod ops;
mod views;

use std::sync::Arc;

use warp::Filter;

use crate::Gateway;
use crate::problem;

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
    commands::routes(&gw)
        .or(views::routes(&gw))
        .unify()
        .or(aggregates::routes(&gw))
        .unify()
        .or(ops::routes(&gw))
        .unify()
        .or(logs::routes(&gw))
        .unify()
        .recover(problem::recover)
        .unify()
}
