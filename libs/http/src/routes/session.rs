//! A cookie session for what a browser cannot send headers with (EventSource):
//! `POST /v1/session`, with the caller's credentials in the usual header, answers `204` with an
//! `HttpOnly`, `SameSite=Strict` cookie holding them (for a JWT, until it expires; for an API
//! key, eight hours); `DELETE /v1/session` clears it. Only the event streams (`GET`) read the
//! cookie — never a command, so a page on another site cannot make a browser act with it.

use std::sync::Arc;

use warp::Filter;
use warp::http::HeaderMap;

use super::with;
use crate::Gateway;
use crate::auth::Role;
use crate::edge::{Ctx, handle};
use crate::problem::Problem;

/// The session cookie's name.
pub(super) const COOKIE: &str = "jetsource_session";
/// How long a session made from an API key lasts.
const KEY_SESSION_SECONDS: i64 = 8 * 3600;

pub(super) fn routes(
    gw: &Arc<Gateway>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let open = warp::path!("v1" / "session").and(warp::post()).and(with(gw)).and(warp::header::headers_cloned()).then(
        |gw: Arc<Gateway>, headers: HeaderMap| async move {
            handle(gw, "/v1/session", Role::Viewer, headers, |ctx| async move { open(&ctx) }).await
        },
    );
    let close = warp::path!("v1" / "session").and(warp::delete()).map(|| cookie_reply(String::new(), 0));
    open.or(close).unify()
}

fn open(ctx: &Ctx) -> Result<warp::reply::Response, Problem> {
    // With authentication off there is nothing to carry.
    let value = match ctx.header("x-api-key") {
        Some(key) => Some((format!("k.{key}"), KEY_SESSION_SECONDS)),
        None => ctx
            .header("authorization")
            .and_then(|a| a.split_once(' '))
            .map(|(_, token)| token.trim())
            .map(|token| (format!("b.{token}"), seconds_left(token).unwrap_or(0).clamp(0, 12 * 3600))),
    };
    Ok(match value {
        Some((value, seconds)) if cookie_safe(&value) => cookie_reply(value, seconds),
        Some(_) => return Err(Problem::new(400, "invalid", "these credentials cannot be carried in a cookie")),
        None => empty(),
    })
}

/// Seconds until the (already verified) token's `exp`.
fn seconds_left(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let claims = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    Some(exp as i64 - time::OffsetDateTime::now_utc().unix_timestamp())
}

/// Cookie values are a token of printable ASCII without `;`, `,`, spaces or quotes.
fn cookie_safe(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

fn empty() -> warp::reply::Response {
    warp::Reply::into_response(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT))
}

fn cookie_reply(value: String, max_age: i64) -> warp::reply::Response {
    let cookie = format!("{COOKIE}={value}; Path=/v1; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    let mut response = empty();
    if let Ok(header) = warp::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert("set-cookie", header);
    }
    response
}

/// The credential a session cookie in `headers` carries, as the header it stands for.
pub(super) fn credential(headers: &HeaderMap) -> Option<(&'static str, String)> {
    let cookies = headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';'));
    let value = cookies.map(str::trim).find_map(|c| c.strip_prefix(COOKIE)?.strip_prefix('='))?;
    if let Some(key) = value.strip_prefix("k.") {
        Some(("x-api-key", key.to_owned()))
    } else {
        value.strip_prefix("b.").map(|token| ("authorization", format!("Bearer {token}")))
    }
}
