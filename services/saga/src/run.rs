//! The saga's consumer loop, its steps and its stock requests.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, kv};
use factory_domain::order::{Order, OrderCommand, OrderEvent};
use factory_domain::saga::{Answer, Decision, Phase, SagaState, StockRequest};
use futures::future::{BoxFuture, join_all};
use jetsource::consume::{self, EventHandler, Outcome, PerEventConfig};
use jetsource::id::escape_kv_token;
use jetsource::{
    AggregateId, Backoff, Codec, ErrorCode, EventStore, Repository, RepositoryConfig, SnapshotStore, StoreConfig,
    StoredEvent,
};
use jetsource_runtime::Shutdown;
use jetsource_runtime::endpoint::{self, Answer as Reply};
use jetsource_runtime::micro::{Endpoint, MicroService};
use jetsource_runtime::wire::{self, CallError, CommandRequest, ErrorBody};
use jetsource_telemetry::Metrics;
use jetsource_telemetry::propagation;
use ring::digest;
use tracing::{Instrument, field};

/// How the saga runs.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// How long a stock command may go unanswered before the order fails (`timeout`).
    pub request_timeout: Duration,
    /// Order events handled at once (events of one order are always one after the other).
    pub max_in_flight: usize,
    /// Longest pause between attempts at a step that could not be done (stock down).
    pub max_retry_pause: Duration,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(5), max_in_flight: 256, max_retry_pause: Duration::from_secs(5) }
    }
}

/// Why the saga could not start.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// The consumer or a bucket is missing, or JetStream does not answer.
    #[error("saga: {0}; is the topology provisioned (`factory provision`)?")]
    Setup(String),
}

/// A step that cannot be done now and must be tried again.
#[derive(Debug)]
struct Retry(String);

/// Why an event is not done.
enum Step {
    /// Try again later.
    Retry(String),
    /// It can never be handled as it is.
    Park(String),
}

/// The running saga.
pub struct Saga {
    inner: Arc<Inner>,
    consumer: PullConsumer,
    queries: async_nats::Subscriber,
    _micro: MicroService,
}

struct Inner {
    /// Where events the saga cannot read are parked.
    parked: kv::Store,
    /// Fault injection for crash tests: abort the process after this many stock answers
    /// (`FACTORY_SAGA_ABORT_AFTER_STEPS`), as a crash mid-saga would.
    abort_after: Option<std::sync::atomic::AtomicU64>,
    client: Client,
    sagas: kv::Store,
    orders: Repository<Order>,
    codec: Codec<OrderEvent>,
    config: SagaConfig,
    metrics: Arc<Metrics>,
    queries: Arc<Endpoint>,
}

/// What caused a step: the event, for derived command ids, provenance and the trace.
#[derive(Clone)]
struct Cause {
    /// Short stable digest of the event id: command ids are `saga-<tag>-<command>-<line>`.
    tag: String,
    event_id: String,
    correlation_id: String,
}

impl Saga {
    /// Binds the `saga` consumer and the `sagas` bucket and answers `$SRV` discovery and
    /// `saga.get.<order_id>`.
    ///
    /// # Errors
    /// [`SagaError::Setup`].
    pub async fn start(client: Client, config: SagaConfig, metrics: Arc<Metrics>) -> Result<Self, SagaError> {
        let setup = |e: &dyn std::fmt::Display| SagaError::Setup(e.to_string());
        let js = jetstream::new(client.clone());
        let consumer: PullConsumer = js
            .get_consumer_from_stream("saga", "EVENTS")
            .await
            .map_err(|e| SagaError::Setup(format!("consumer saga on EVENTS: {e}")))?;
        let sagas = js.get_key_value("sagas").await.map_err(|e| SagaError::Setup(format!("bucket sagas: {e}")))?;
        let parked = js.get_key_value("parked").await.map_err(|e| SagaError::Setup(format!("bucket parked: {e}")))?;
        let snapshots = SnapshotStore::open(&js, "snapshots").await.ok();
        let store = EventStore::new(
            client.clone(),
            StoreConfig { app: "factory".into(), service: "saga".into(), ..Default::default() },
        );
        let orders =
            Repository::<Order>::new(store, snapshots, RepositoryConfig { cache_capacity: 0, ..Default::default() });
        let micro = MicroService::start(
            &client,
            "saga",
            env!("CARGO_PKG_VERSION"),
            "Production saga: reserves, releases and consumes stock for production orders",
        )
        .await
        .map_err(|e| setup(&e))?;
        let (queries, endpoint) = micro.endpoint("state", "saga.get.*", "saga").await.map_err(|e| setup(&e))?;
        tracing::info!(service = "saga", service_id = micro.id(), "production saga ready");
        let abort_after = std::env::var("FACTORY_SAGA_ABORT_AFTER_STEPS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::sync::atomic::AtomicU64::new);
        let inner = Arc::new(Inner {
            parked,
            abort_after,
            client,
            sagas,
            orders,
            codec: Codec::default(),
            config,
            metrics,
            queries: endpoint,
        });
        Ok(Self { inner, consumer, queries, _micro: micro })
    }

    /// Handles order events until `shutdown`; steps in progress then stop where they are and
    /// resume after a restart (their events were not acknowledged).
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        let Saga { inner, consumer, queries, _micro } = self;
        let answer = {
            let inner = Arc::clone(&inner);
            let (client, stats) = (inner.client.clone(), Arc::clone(&inner.queries));
            endpoint::serve(client, queries, stats, endpoint::DEFAULT_IN_FLIGHT, shutdown.clone(), move |request| {
                let inner = Arc::clone(&inner);
                async move { inner.answer_query(request).await }
            })
        };
        let config = PerEventConfig {
            max_in_flight: inner.config.max_in_flight,
            retry: Backoff::new(Duration::from_millis(100), inner.config.max_retry_pause),
            ..PerEventConfig::new("saga")
        };
        let events =
            consume::run_per_event(consumer, inner.parked.clone(), config, Arc::clone(&inner), shutdown.clone());
        tokio::select! {
            () = events => {}
            () = answer => {}
        }
        tracing::info!(service = "saga", "stopping");
    }
}

impl EventHandler for Inner {
    /// One order event, in the one consumer loop: events of one order one after the other,
    /// orders in parallel; a step that must wait (a stock service down) is retried there with
    /// backoff while its order's later events wait; an event the saga cannot read is parked.
    fn handle<'a>(&'a self, event: &'a StoredEvent) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.step(event).await {
                Ok(()) => Outcome::Done,
                Err(Step::Retry(why)) => {
                    tracing::warn!(service = "saga", subject = %event.subject, reason = %why, "saga step postponed; retrying");
                    Outcome::Retry(Duration::ZERO)
                }
                Err(Step::Park(why)) => Outcome::Park(why),
            }
        })
    }
}

impl Inner {
    async fn step(&self, stored: &StoredEvent) -> Result<(), Step> {
        let (attributes, event) = match (stored.attributes(), self.codec.decode(stored)) {
            (Ok(attributes), Ok((_, event))) => (attributes, event),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(service = "saga", error = %e, "an order event the saga cannot read; parked");
                return Err(Step::Park(format!("the saga cannot read it: {e}")));
            }
        };
        let Ok(order_id) = AggregateId::new(attributes.subject.as_str()) else { return Ok(()) };
        let name = attributes.event_name().to_owned();
        let span = tracing::info_span!(
            "saga.event",
            service = "saga",
            otel.name = %format!("saga {name}"),
            otel.status_code = field::Empty,
            aggregate_type = "order",
            aggregate_id = %order_id,
            event = %name,
            stream_seq = stored.seq,
            outcome = field::Empty,
        );
        propagation::set_parent_from_trace(&span, &attributes.metadata.trace);
        let cause = Cause {
            tag: tag(&attributes.id),
            event_id: attributes.id.clone(),
            correlation_id: attributes.metadata.correlation_id.clone(),
        };
        let work = async {
            match event {
                OrderEvent::OrderStarted {} => self.on_started(&order_id, &cause, stored).await,
                OrderEvent::OrderCompleted {} => self.on_completed(&order_id, &cause).await,
                OrderEvent::OrderCancelled { .. } => self.on_cancelled(&order_id, &cause).await,
                _ => Ok(()),
            }
        };
        work.instrument(span).await.map_err(|Retry(why)| Step::Retry(why))
    }

    async fn on_started(&self, order_id: &AggregateId, cause: &Cause, stored: &StoredEvent) -> Result<(), Retry> {
        let key = escape_kv_token(order_id.as_str());
        let mut state = match self.load(&key).await? {
            Some(state) => state,
            None => {
                let order = self.orders.load(order_id).await.map_err(|e| Retry(e.to_string()))?;
                let Some(state) = SagaState::start(order_id.as_str(), &order.state, &cause.correlation_id) else {
                    tracing::Span::current().record("outcome", "skipped");
                    return Ok(()); // cancelled before the saga got to it, or old history
                };
                self.save(&key, &state).await?;
                state
            }
        };
        if state.phase == Phase::Reserving {
            let asks = state.reservations();
            let answers = join_all(asks.iter().map(|ask| self.send(ask, cause))).await;
            let mut postponed = None;
            for (ask, answer) in asks.iter().zip(answers) {
                match answer {
                    Ok(answer) => state.reserved(ask.line, &answer),
                    Err(retry) => postponed = Some(retry),
                }
            }
            if let Some(retry) = postponed {
                self.save(&key, &state).await?;
                return Err(retry);
            }
            match state.decide() {
                Decision::Wait => {}
                Decision::Confirm(lines) => {
                    self.save(&key, &state).await?;
                    let recorded =
                        self.tell_order(order_id, cause, "confirm", OrderCommand::ConfirmReserved { lines }).await?;
                    state.confirmed();
                    state.start_closed = recorded;
                    self.save(&key, &state).await?;
                    self.metrics.saga_orders.get_or_create(&[("outcome", "reserved".into())]).inc();
                    tracing::Span::current().record("outcome", "reserved");
                }
                Decision::Compensate(_) => self.save(&key, &state).await?,
            }
        }
        if state.phase == Phase::Compensating {
            if !state.order_failed {
                state.start_closed = self.fail_order(order_id, cause, stored, &state).await?;
                state.order_failed = true;
                self.save(&key, &state).await?;
            }
            let releases = state.compensations();
            let pending = self.send_all(&mut state, &releases, cause, SagaState::released).await;
            if pending.is_none() {
                state.failed();
            }
            self.save(&key, &state).await?;
            if let Some(retry) = pending {
                return Err(retry);
            }
        }
        Ok(())
    }

    /// Records `OrderFailed` with the saga's failure, and reports it.
    async fn fail_order(
        &self,
        order_id: &AggregateId,
        cause: &Cause,
        stored: &StoredEvent,
        state: &SagaState,
    ) -> Result<bool, Retry> {
        let failure = state.failure.clone().unwrap_or_else(|| factory_domain::saga::Failure {
            service: "stock".into(),
            code: "rejected".into(),
            reason: "not_reserved".into(),
            message: "a resource could not be reserved".into(),
        });
        let fail = OrderCommand::Fail {
            reason: failure.reason.clone(),
            message: failure.message.clone(),
            service: failure.service.clone(),
        };
        let recorded = self.tell_order(order_id, cause, "fail", fail).await?;
        if !recorded {
            return Ok(false); // the order moved on (cancelled): the cancel closes its start
        }
        let reason = match failure.reason.as_str() {
            known @ ("insufficient_stock" | "timeout" | "unavailable") => known.to_owned(),
            _ => "other".to_owned(),
        };
        self.metrics.saga_orders.get_or_create(&[("outcome", "failed".into())]).inc();
        self.metrics.saga_failures.get_or_create(&[("reason", reason.into())]).inc();
        let since = time::OffsetDateTime::now_utc() - stored.stored_at;
        self.metrics.saga_time_to_failure.observe(since.as_seconds_f64().max(0.0));
        let span = tracing::Span::current();
        span.record("outcome", "failed");
        span.record("otel.status_code", "error");
        tracing::warn!(
            order_id = %order_id,
            reason = %failure.reason,
            detail = %failure.message,
            correlation_id = %cause.correlation_id,
            "production order failed"
        );
        Ok(true)
    }

    async fn on_completed(&self, order_id: &AggregateId, cause: &Cause) -> Result<(), Retry> {
        let key = escape_kv_token(order_id.as_str());
        let Some(mut state) = self.load(&key).await? else {
            tracing::warn!(order_id = %order_id, "an order completed without a saga; nothing consumed");
            return Ok(());
        };
        let steps = state.complete();
        if steps.is_empty() {
            return Ok(());
        }
        // Consume first, then receive the product: one after the other, as production would.
        for step in steps {
            let answer = self.send(&step, cause).await?;
            if let Answer::Refused { reason, message, .. } = &answer {
                tracing::warn!(
                    order_id = %order_id,
                    command = step.command,
                    stock_id = %step.stock_id,
                    reason = %reason,
                    detail = %message,
                    "a completion step was refused; stock and production disagree"
                );
            }
            if !state.completed_step(step.line, &answer) {
                self.save(&key, &state).await?;
                return Err(Retry(format!("{} of {} unanswered", step.command, step.stock_id)));
            }
        }
        self.save(&key, &state).await?;
        self.metrics.saga_orders.get_or_create(&[("outcome", "completed".into())]).inc();
        tracing::Span::current().record("outcome", "completed");
        Ok(())
    }

    async fn on_cancelled(&self, order_id: &AggregateId, cause: &Cause) -> Result<(), Retry> {
        let key = escape_kv_token(order_id.as_str());
        let Some(mut state) = self.load(&key).await? else { return Ok(()) };
        if state.phase.is_final() {
            return Ok(()); // failed or completed before the cancel: nothing is held
        }
        let releases = state.cancel();
        let pending = self.send_all(&mut state, &releases, cause, SagaState::cancel_step).await;
        self.save(&key, &state).await?;
        if let Some(retry) = pending {
            return Err(retry);
        }
        if !state.start_closed {
            // Cancelled while reserving: the start's confirm (or fail) was refused, so nothing
            // closed it. Close it now, in its own conversation.
            let reason = self.orders.load(order_id).await.map_err(|e| Retry(e.to_string()))?.state.reason;
            let start = Cause { correlation_id: state.correlation_id.clone(), ..cause.clone() };
            let abandon = OrderCommand::AbandonStart { reason: reason.unwrap_or_else(|| "cancelled".into()) };
            self.tell_order(order_id, &start, "abandon", abandon).await?;
            state.start_closed = true;
            self.save(&key, &state).await?;
        }
        self.metrics.saga_orders.get_or_create(&[("outcome", "cancelled".into())]).inc();
        tracing::Span::current().record("outcome", "cancelled");
        Ok(())
    }

    /// Sends `asks` at once and records each answer with `record` (false: to be tried again);
    /// what must be tried again, if anything.
    async fn send_all(
        &self,
        state: &mut SagaState,
        asks: &[StockRequest],
        cause: &Cause,
        record: fn(&mut SagaState, usize, &Answer) -> bool,
    ) -> Option<Retry> {
        let answers = join_all(asks.iter().map(|ask| self.send(ask, cause))).await;
        let mut pending = None;
        for (ask, answer) in asks.iter().zip(answers) {
            match answer {
                Ok(answer) if record(state, ask.line, &answer) => {}
                Ok(_) => pending = Some(Retry(format!("{} of {} unanswered", ask.command, ask.stock_id))),
                Err(retry) => pending = Some(retry),
            }
        }
        pending
    }

    /// Sends one stock command with an id derived from the cause; the answer, or `Retry` when
    /// the answer says nothing about the stock (a conflict or internal error worth repeating).
    async fn send(&self, ask: &StockRequest, cause: &Cause) -> Result<Answer, Retry> {
        let command_id = format!("saga-{}-{}-{}", cause.tag, ask.command, ask.line);
        let span = tracing::info_span!(
            "saga.request",
            service = "saga",
            otel.name = %format!("saga {} {}", ask.command, ask.stock_id),
            otel.status_code = field::Empty,
            aggregate_type = "stock",
            aggregate_id = %ask.stock_id,
            command = ask.command,
            command_id = %command_id,
            outcome = field::Empty,
        );
        let mut command = CommandRequest::new("stock", &ask.stock_id, ask.command, ask.body.clone());
        command.idempotency_key = Some(command_id.clone());
        command.correlation_id = Some(cause.correlation_id.clone());
        command.causation_id = Some(cause.event_id.clone());
        command.actor = Some("saga".into());
        propagation::inject(&span, &mut command.headers);
        let bound = self.config.request_timeout;
        let client = wire::Client::new(self.client.clone(), bound);
        let sent =
            client.request(command.subject(), command.header_map(), command.body.clone()).instrument(span.clone());
        let answer = match sent.await {
            Ok(_) => Ok(Answer::Done),
            Err(CallError::Reply(error)) => classify(error),
            Err(CallError::Timeout { .. }) => {
                Ok(Answer::NoAnswer { code: "timeout".into(), message: format!("no answer within {bound:?}") })
            }
            Err(CallError::NoResponders { .. }) => {
                Ok(Answer::NoAnswer { code: "unavailable".into(), message: "the stock service is not running".into() })
            }
            Err(CallError::Invalid(e)) => Ok(Answer::Refused {
                code: "invalid".into(),
                reason: "invalid".into(),
                message: format!("the stock service cannot take this request: {e}"),
            }),
            Err(CallError::Nats(e)) => Err(Retry(format!("request to the stock service failed: {e}"))),
        };
        let outcome = match &answer {
            Ok(Answer::Done) => "done",
            Ok(Answer::Refused { .. }) => "refused",
            Ok(Answer::NoAnswer { .. }) => "no_answer",
            Err(_) => "retry",
        };
        if let Some(left) = &self.abort_after
            && left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 1
        {
            tracing::error!(service = "saga", "FACTORY_SAGA_ABORT_AFTER_STEPS reached: aborting (fault injection)");
            std::process::abort();
        }
        span.record("outcome", outcome);
        if outcome != "done" {
            span.record("otel.status_code", "error");
        }
        self.metrics.saga_steps.get_or_create(&[("command", ask.command.into()), ("outcome", outcome.into())]).inc();
        answer
    }

    /// Sends a saga-only order command (`confirm-reserved`, `fail`) to the production service
    /// over NATS, with an id derived from the cause (its idempotency ledger answers a repeat
    /// with the first outcome). An order that moved on (cancelled meanwhile) refuses it; that
    /// is fine: the cancel is handled next. True when the order recorded it.
    async fn tell_order(
        &self,
        order_id: &AggregateId,
        cause: &Cause,
        what: &str,
        command: OrderCommand,
    ) -> Result<bool, Retry> {
        let (name, body) = match &command {
            OrderCommand::ConfirmReserved { lines } => ("confirm-reserved", serde_json::json!({ "lines": lines })),
            OrderCommand::Fail { reason, message, service } => {
                ("fail", serde_json::json!({ "reason": reason, "message": message, "service": service }))
            }
            OrderCommand::AbandonStart { reason } => ("abandon-start", serde_json::json!({ "reason": reason })),
            other => return Err(Retry(format!("not a saga command: {other:?}"))),
        };
        let mut request = CommandRequest::new("order", order_id.as_str(), name, body.to_string());
        request.idempotency_key = Some(format!("saga-{}-{what}", cause.tag));
        request.correlation_id = Some(cause.correlation_id.clone());
        request.causation_id = Some(cause.event_id.clone());
        request.actor = Some("saga".into());
        propagation::inject(&tracing::Span::current(), &mut request.headers);
        let client = wire::Client::new(self.client.clone(), self.config.request_timeout);
        match client.command(&request).await {
            Ok(_) => Ok(true),
            Err(CallError::Reply(e)) if e.code == ErrorCode::Rejected => {
                tracing::info!(order_id = %order_id, reason = %e.message, "the order moved on; {what} not recorded");
                Ok(false)
            }
            Err(e) => Err(Retry(format!("{what} of order {order_id}: {e}"))),
        }
    }

    async fn load(&self, key: &str) -> Result<Option<SagaState>, Retry> {
        let raw = self.sagas.get(key).await.map_err(|e| Retry(format!("reading saga state: {e}")))?;
        Ok(raw.and_then(|bytes| match serde_json::from_slice(&bytes) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::error!(key, error = %e, "saga state does not decode; starting it afresh");
                None
            }
        }))
    }

    async fn save(&self, key: &str, state: &SagaState) -> Result<(), Retry> {
        let bytes = serde_json::to_vec(state).map_err(|e| Retry(e.to_string()))?;
        self.sagas.put(key, bytes.into()).await.map_err(|e| Retry(format!("writing saga state: {e}")))?;
        Ok(())
    }

    /// `saga.get.<order_id>`: the saga state, or `not_found`.
    async fn answer_query(&self, request: async_nats::Message) -> Reply {
        let order = request.subject.strip_prefix("saga.get.").unwrap_or_default();
        let result = match AggregateId::new(order) {
            Err(e) => Err(ErrorBody::new(ErrorCode::Invalid, e.to_string())),
            Ok(id) => match self.sagas.get(escape_kv_token(id.as_str())).await {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(ErrorBody::new(ErrorCode::NotFound, format!("no saga for order {id}"))),
                Err(e) => Err(ErrorBody::new(ErrorCode::Unavailable, e.to_string())),
            },
        };
        match result {
            Ok(bytes) => Reply::ok(bytes),
            Err(error) => Reply::error(&error),
        }
    }
}

/// What an error reply means for the saga.
fn classify(error: ErrorBody) -> Result<Answer, Retry> {
    match error.code {
        ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::ConsistencyTimeout => {
            Ok(Answer::NoAnswer { code: error.code.as_str().to_owned(), message: error.message })
        }
        ErrorCode::Conflict | ErrorCode::Internal => Err(Retry(format!("{}: {}", error.code.as_str(), error.message))),
        code => Ok(Answer::Refused {
            code: code.as_str().to_owned(),
            reason: error.reason.unwrap_or_else(|| code.as_str().to_owned()),
            message: error.message,
        }),
    }
}

/// 16 hex digits of SHA-256 over an event id: short, stable, and unique enough to derive
/// command ids from (ids may be client keys of up to 128 characters).
fn tag(event_id: &str) -> String {
    digest::digest(&digest::SHA256, event_id.as_bytes()).as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_short_and_valid() {
        let a = tag("01a21bb7-993c-7364-9baf-3b54955930a1:0");
        assert_eq!(a, tag("01a21bb7-993c-7364-9baf-3b54955930a1:0"));
        assert_ne!(a, tag("01a21bb7-993c-7364-9baf-3b54955930a1:1"));
        assert_eq!(a.len(), 16);
        jetsource::metadata::validate_command_id(&format!("saga-{a}-reserve-12")).unwrap();
    }

    #[test]
    fn error_replies_map_to_refusals_missing_answers_or_retries() {
        let rejected = ErrorBody::new(ErrorCode::Rejected, "short").with_reason("insufficient_stock");
        assert!(matches!(classify(rejected), Ok(Answer::Refused { reason, .. }) if reason == "insufficient_stock"));
        assert!(matches!(
            classify(ErrorBody::new(ErrorCode::Unavailable, "down")),
            Ok(Answer::NoAnswer { code, .. }) if code == "unavailable"
        ));
        assert!(classify(ErrorBody::new(ErrorCode::Conflict, "busy")).is_err());
    }
}
