//! Pulling a durable consumer's messages until shutdown, reconnecting after hiccups: the loop
//! the saga and the notifier share.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;

use crate::Shutdown;

/// Hands each message of `consumer` to `each`, in delivery order (the next message is pulled
/// once `each` returns), until `shutdown` or `each` breaks. `service` names the logs.
pub async fn pull<F, Fut>(consumer: &PullConsumer, shutdown: &Shutdown, service: &'static str, mut each: F)
where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    loop {
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(service, error = %e, "cannot pull messages; retrying");
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let message = tokio::select! {
                () = shutdown.wait() => return,
                next = messages.next() => match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(service, error = %e, "pulling messages");
                        continue;
                    }
                    None => break,
                },
            };
            if each(message).await.is_break() {
                return;
            }
        }
    }
}
