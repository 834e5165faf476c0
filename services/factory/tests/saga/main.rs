//! Async errors end to end: the production saga (reserve, compensate, complete, time out,
//! crash and restart), command status, notifications, parked events reported to their command,
//! and one OpenTelemetry trace across gateway, services, saga and notifier.

mod flows;
mod metrics;
mod otel;
mod otlp;
mod permissions;
// The factory harness the command, view and saga suites share.
#[allow(dead_code)]
#[path = "../common/support.rs"]
mod support;

use std::future::Future;
use std::time::Duration;

/// Polls `probe` until it gives a value (at most 45 s: a crashed consumer's event comes back
/// after its 10 s ack wait).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
