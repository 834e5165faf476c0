//! The catch-all of `cmd.>`: answers what no command service owns. Unknown aggregate types and
//! malformed subjects get `not_found` / `invalid`; a known type whose service is not running
//! anywhere gets `unavailable` at once (instead of the requester waiting for a timeout), found
//! through `$SRV.PING` discovery. Known types whose service runs are left to that service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::Client;
use futures::StreamExt;
use jetsource::ErrorCode;

use crate::Shutdown;
use crate::registry::App;
use crate::wire::ErrorBody;

/// How often running services are discovered.
const DISCOVERY_EVERY: Duration = Duration::from_secs(2);
/// A service not seen for this long is taken as not running.
const SEEN_WITHIN: Duration = Duration::from_secs(6);

/// The router, subscribed.
pub struct Router {
    app: Arc<App>,
    client: Client,
    commands: async_nats::Subscriber,
    local: Vec<&'static str>,
}

/// Subscribes the router. `local` names the command services this process runs (they count as
/// running without discovery).
///
/// # Errors
/// When the subscription cannot be made.
pub async fn subscribe(
    app: Arc<App>,
    client: Client,
    local: Vec<&'static str>,
) -> Result<Router, async_nats::SubscribeError> {
    let commands = client.queue_subscribe(crate::wire::subject::COMMANDS, "cmd-router".to_owned()).await?;
    Ok(Router { app, client, commands, local })
}

/// Answers until `shutdown`.
pub async fn run(router: Router, shutdown: Shutdown) {
    let Router { app, client, mut commands, local } = router;
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let discovery = tokio::spawn(discover(Arc::clone(&app), client.clone(), Arc::clone(&seen)));
    loop {
        let message = tokio::select! {
            m = commands.next() => match m { Some(m) => m, None => break },
            () = shutdown.wait() => break,
        };
        let Some(reply) = message.reply.clone() else { continue };
        let Some(error) = judge(&app, &message.subject, &local, &seen) else { continue };
        if error.code != ErrorCode::Unavailable {
            answer(&client, reply, &error).await;
            continue;
        }
        // Not seen lately: ask once more before saying so (a service that has just started
        // may not have been discovered yet).
        let (client, seen) = (client.clone(), Arc::clone(&seen));
        let service = message.subject.split('.').nth(1).and_then(|t| app.aggregate_entry(t)).map(|a| a.service());
        tokio::spawn(async move {
            if let Some(service) = service
                && ping(&client, service).await
            {
                seen.lock().unwrap_or_else(PoisonError::into_inner).insert(service.to_owned(), Instant::now());
                return;
            }
            answer(&client, reply, &error).await;
        });
    }
    discovery.abort();
}

async fn answer(client: &Client, reply: async_nats::Subject, error: &ErrorBody) {
    let (headers, body) = error.to_message();
    if let Err(e) = client.publish_with_headers(reply, headers, body).await {
        tracing::warn!(error = %e, "router cannot answer");
    }
}

/// True when an instance of `service` answers `$SRV.PING` within 500 ms.
async fn ping(client: &Client, service: &str) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            client.request(crate::wire::subject::srv_ping(service), "".into())
        )
        .await,
        Ok(Ok(_))
    )
}

/// The answer for a command subject, or `None` when its service will answer.
fn judge(app: &App, subject: &str, local: &[&str], seen: &Mutex<HashMap<String, Instant>>) -> Option<ErrorBody> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let name = tokens.get(1).copied().unwrap_or_default();
    let kind = match app.aggregate_or_error(name) {
        Ok(kind) => kind,
        Err(e) => return Some(ErrorBody::new(ErrorCode::NotFound, e.to_string())),
    };
    if tokens.len() < 4 {
        return Some(ErrorBody::new(
            ErrorCode::Invalid,
            format!("subject {subject} must be cmd.<aggregate_type>.<aggregate_id>.<command>"),
        ));
    }
    let service = kind.service();
    let running = local.contains(&service)
        || seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .is_some_and(|at| at.elapsed() < SEEN_WITHIN);
    (!running).then(|| {
        ErrorBody::new(
            ErrorCode::Unavailable,
            format!("no {service} service is running to take {} commands", kind.aggregate_type()),
        )
    })
}

async fn discover(app: Arc<App>, client: Client, seen: Arc<Mutex<HashMap<String, Instant>>>) {
    loop {
        for kind in app.aggregates() {
            let service = kind.service();
            if ping(&client, service).await {
                seen.lock().unwrap_or_else(PoisonError::into_inner).insert(service.to_owned(), Instant::now());
            }
        }
        tokio::time::sleep(DISCOVERY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_unknown_types_and_short_subjects_and_leaves_running_services_alone() {
        let app = crate::registry::tests::sample();
        let seen = Mutex::new(HashMap::from([("catalog".to_owned(), Instant::now())]));
        let code = |subject| judge(&app, subject, &["stock"], &seen).map(|e| e.code);
        assert_eq!(code("cmd.widget.w1.make"), Some(ErrorCode::NotFound));
        assert_eq!(code("cmd.stock"), Some(ErrorCode::Invalid));
        assert_eq!(code("cmd.stock.bolt@main.receive"), None, "runs locally");
        assert_eq!(code("cmd.product.p1.define"), None, "seen by discovery");
        assert_eq!(code("cmd.order.o1.plan"), Some(ErrorCode::Unavailable), "production runs nowhere");
    }
}
