//! The production saga as a process manager: its decisions are [`SagaState`]'s, turned into
//! effects here; the framework's engine carries them out (state, commands over NATS with
//! derived keys, retries, standby instances).

use std::sync::atomic::{AtomicU64, Ordering};

use factory_domain::order::{Order, OrderEvent, OrderStatus};
use factory_domain::saga::{Answer, Decision, Phase, SagaState, StockRequest};
use jetsource::Codec;
use jetsource::projection::EventView;
use jetsource_runtime::process::{Effect, Input, ProcessManager, Reply};
use jetsource_runtime::wire::CommandRequest;
use jetsource_telemetry::Metrics;

/// The deadline after which a reserved order that did not complete is cancelled.
const HOLD: &str = "hold";

/// The production saga.
pub struct ProductionSaga {
    codec: Codec<OrderEvent>,
    /// How long a reserved order may hold its stock.
    hold: time::Duration,
    /// Fault injection for crash tests: abort the process after this many stock answers
    /// (`FACTORY_SAGA_ABORT_AFTER_STEPS`), as a crash mid-saga would.
    abort_after: Option<AtomicU64>,
}

impl ProductionSaga {
    /// The saga with `config`'s reservation hold.
    pub fn new(config: &crate::SagaConfig) -> Self {
        let abort_after =
            std::env::var("FACTORY_SAGA_ABORT_AFTER_STEPS").ok().and_then(|v| v.parse().ok()).map(AtomicU64::new);
        let hold = time::Duration::try_from(config.reservation_hold).unwrap_or(time::Duration::DAY);
        Self { codec: Codec::default(), hold, abort_after }
    }
}

impl Default for ProductionSaga {
    fn default() -> Self {
        Self::new(&crate::SagaConfig::default())
    }
}

type Effects = Vec<Effect<SagaState>>;

impl ProcessManager for ProductionSaga {
    type State = SagaState;

    fn name(&self) -> &'static str {
        "saga"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.order.>".into()]
    }

    fn key(&self, event: &EventView<'_>) -> Option<String> {
        Some(event.aggregate_id.to_owned())
    }

    fn commands_to(&self) -> Vec<&'static str> {
        vec!["stock", "order"]
    }

    fn on(&self, state: &SagaState, input: Input<'_>) -> Effects {
        let mut state = state.clone();
        match input {
            Input::Event(event) => {
                let decoded = match self.codec.decode(event.stored) {
                    Ok((_, decoded)) => decoded,
                    Err(e) => return vec![Effect::Park(format!("the saga cannot read it: {e}"))],
                };
                match decoded {
                    OrderEvent::OrderPlanned { product_id, qty, warehouse, bom, .. } if state.order_id.is_empty() => {
                        let order =
                            Order { status: OrderStatus::Planned, product_id, qty, warehouse, bom, ..Order::default() };
                        vec![Effect::Save(SagaState::planned(event.aggregate_id, &order))]
                    }
                    OrderEvent::OrderStarted {} if !state.order_id.is_empty() => {
                        state.begin(event.correlation_id());
                        next(state)
                    }
                    // Reserved: the stock is held until the order completes, at most `hold`.
                    OrderEvent::ResourcesReserved { .. } if state.phase == Phase::Reserved => {
                        vec![Effect::Schedule { name: HOLD.into(), at: event.stored.stored_at + self.hold }]
                    }
                    OrderEvent::OrderCompleted {} if !state.order_id.is_empty() => {
                        let _ = state.complete();
                        let mut effects = vec![Effect::Cancel { name: HOLD.into() }];
                        effects.extend(next(state));
                        effects
                    }
                    // Cancelled before it started: nothing is held.
                    OrderEvent::OrderCancelled { .. } if state.phase == Phase::Planned => vec![Effect::Finish],
                    OrderEvent::OrderCancelled { reason } if !state.order_id.is_empty() && !state.phase.is_final() => {
                        state.cancel_reason = Some(reason);
                        let _ = state.cancel();
                        let mut effects = vec![Effect::Cancel { name: HOLD.into() }];
                        effects.extend(next(state));
                        effects
                    }
                    // Failed (or cancelled) already, its fail refused by the cancel: close the start.
                    OrderEvent::OrderCancelled { reason } if !state.order_id.is_empty() && !state.start_closed => {
                        state.cancel_reason = Some(reason);
                        abandon(state)
                    }
                    _ => Vec::new(),
                }
            }
            Input::Replied { step, reply } => answered(state, step, reply),
            // Still reserved (not completed, not cancelled) when the hold ends: cancel the order;
            // its cancel event releases the stock.
            Input::Deadline { name, .. } if name == HOLD && state.phase == Phase::Reserved => {
                let body = serde_json::json!({ "reason": "reservation hold expired" }).to_string();
                let command = CommandRequest::new("order", &state.order_id, "cancel", body);
                vec![Effect::Send { step: "expire".into(), command }]
            }
            Input::Deadline { .. } => Vec::new(),
        }
    }

    fn replied(&self, metrics: &Metrics, step: &str, reply: &Reply) {
        let (command, _) = step.split_once('-').unwrap_or((step, ""));
        let outcome = match reply {
            Reply::Done(_) => "done",
            Reply::Refused(_) => "refused",
            Reply::NoAnswer(_) => "no_answer",
        };
        if matches!(command, "reserve" | "release" | "void" | "consume" | "receive") {
            metrics
                .saga_steps
                .get_or_create(&[("command", command.to_owned().into()), ("outcome", outcome.into())])
                .inc();
            if let Some(left) = &self.abort_after
                && left.fetch_sub(1, Ordering::SeqCst) <= 1
            {
                tracing::error!(service = "saga", "FACTORY_SAGA_ABORT_AFTER_STEPS reached: aborting (fault injection)");
                std::process::abort();
            }
        }
    }

    fn observed(&self, metrics: &Metrics, input: &Input<'_>, before: &SagaState, after: &SagaState) {
        let outcome = |name: &'static str| metrics.saga_orders.get_or_create(&[("outcome", name.into())]).inc();
        if after.phase == Phase::Reserved && before.phase != Phase::Reserved && after.start_closed {
            outcome("reserved");
        }
        if after.order_failed && !before.order_failed && after.start_closed {
            let failure = after.failure.clone().unwrap_or_default();
            let reason = match failure.reason.as_str() {
                known @ ("insufficient_stock" | "timeout" | "unavailable") => known.to_owned(),
                _ => "other".to_owned(),
            };
            outcome("failed");
            metrics.saga_failures.get_or_create(&[("reason", reason.into())]).inc();
            if let Input::Event(event) = input {
                let since = time::OffsetDateTime::now_utc() - event.stored.stored_at;
                metrics.saga_time_to_failure.observe(since.as_seconds_f64().max(0.0));
            }
            tracing::warn!(
                order_id = %after.order_id,
                reason = %failure.reason,
                detail = %failure.message,
                correlation_id = %after.correlation_id,
                "production order failed"
            );
        }
        if after.phase == Phase::Completed && before.phase != Phase::Completed {
            outcome("completed");
        }
        if after.phase == Phase::Cancelled && before.phase != Phase::Cancelled {
            outcome("cancelled");
        }
    }
}

/// What the saga does next from `state`: one command at a time, the state saved with it.
fn next(mut state: SagaState) -> Effects {
    match state.phase {
        Phase::Reserving => {
            if let Some(ask) = state.reservations().into_iter().next() {
                return send_stock(state, &ask);
            }
            match state.decide() {
                Decision::Wait => vec![Effect::Save(state)],
                Decision::Confirm(lines) => {
                    let body = serde_json::json!({ "lines": lines }).to_string();
                    send_order(state, "confirm", "confirm-reserved", body)
                }
                Decision::Compensate(_) => next(state),
            }
        }
        Phase::Compensating if !state.order_failed => {
            let failure = state.failure.clone().unwrap_or_default();
            let body = serde_json::json!({
                "reason": failure.reason, "message": failure.message, "service": failure.service,
            })
            .to_string();
            send_order(state, "fail", "fail", body)
        }
        Phase::Compensating => match state.compensations().into_iter().next() {
            Some(release) => send_stock(state, &release),
            None => {
                state.failed();
                vec![Effect::Save(state)]
            }
        },
        Phase::Completing => match state.completions().into_iter().next() {
            Some(step) => send_stock(state, &step),
            None => vec![Effect::Save(state)],
        },
        Phase::Releasing => match state.cancellations().into_iter().next() {
            Some(release) => send_stock(state, &release),
            None => {
                state.phase = Phase::Cancelled;
                next(state)
            }
        },
        Phase::Cancelled if !state.start_closed => abandon(state),
        _ => vec![Effect::Save(state)],
    }
}

/// Closes a start the cancel left open (`abandon-start`, in the start's conversation: its
/// status is the one this closes).
fn abandon(state: SagaState) -> Effects {
    if state.correlation_id.is_empty() || state.cancel_reason.is_none() {
        return vec![Effect::Save(state)];
    }
    let reason = state.cancel_reason.clone().unwrap_or_default();
    let body = serde_json::json!({ "reason": reason }).to_string();
    let correlation = state.correlation_id.clone();
    let mut effects = send_order(state, "abandon", "abandon-start", body);
    if let Some(Effect::Send { command, .. }) = effects.last_mut() {
        command.correlation_id = Some(correlation);
    }
    effects
}

/// What an answer to `step` means.
fn answered(mut state: SagaState, step: &str, reply: &Reply) -> Effects {
    let (command, line) = step.split_once('-').map_or((step, None), |(c, l)| (c, l.parse::<usize>().ok()));
    let answer = answer_of(reply);
    let unanswered = matches!(answer, Answer::NoAnswer { .. });
    match (command, line) {
        ("reserve", Some(line)) => {
            state.reserved(line, &answer);
            next(state)
        }
        ("confirm" | "fail" | "abandon", _) if unanswered => {
            vec![Effect::Save(state), Effect::Retry(format!("{step} of order unanswered"))]
        }
        ("confirm", _) => {
            state.confirmed();
            state.start_closed = matches!(reply, Reply::Done(_));
            vec![Effect::Save(state)]
        }
        ("fail", _) => {
            state.order_failed = true;
            state.start_closed = matches!(reply, Reply::Done(_));
            next(state)
        }
        ("abandon", _) => {
            state.start_closed = true;
            vec![Effect::Save(state)]
        }
        // The order was cancelled (its event comes next), or had moved on: nothing more here.
        ("expire", _) if unanswered => vec![Effect::Retry(format!("{step} of order unanswered"))],
        ("expire", _) => Vec::new(),
        ("release" | "void", Some(line)) => {
            let recorded = if state.phase == Phase::Releasing {
                state.cancel_step(line, &answer)
            } else {
                state.released(line, &answer)
            };
            if recorded { next(state) } else { vec![Effect::Save(state), Effect::Retry(format!("{step} unanswered"))] }
        }
        ("consume" | "receive", Some(line)) => {
            if let Answer::Refused { reason, message, .. } = &answer {
                tracing::warn!(order_id = %state.order_id, step, reason = %reason, detail = %message, "a completion step was refused; stock and production disagree");
            }
            if state.completed_step(line, &answer) {
                next(state)
            } else {
                vec![Effect::Save(state), Effect::Retry(format!("{step} unanswered"))]
            }
        }
        _ => vec![Effect::Save(state)],
    }
}

fn send_stock(state: SagaState, request: &StockRequest) -> Effects {
    let command = CommandRequest::new("stock", &request.stock_id, request.command, request.body.clone());
    vec![Effect::Save(state), Effect::Send { step: format!("{}-{}", request.command, request.line), command }]
}

fn send_order(state: SagaState, step: &str, command: &str, body: String) -> Effects {
    let request = CommandRequest::new("order", &state.order_id, command, body);
    vec![Effect::Save(state), Effect::Send { step: step.to_owned(), command: request }]
}

/// A reply as the saga's decisions read it.
fn answer_of(reply: &Reply) -> Answer {
    match reply {
        Reply::Done(_) => Answer::Done,
        Reply::Refused(e) => Answer::Refused {
            code: e.code.as_str().to_owned(),
            reason: e.reason.clone().unwrap_or_else(|| e.code.as_str().to_owned()),
            message: e.message.clone(),
        },
        Reply::NoAnswer(e) => Answer::NoAnswer { code: e.code.as_str().to_owned(), message: e.message.clone() },
    }
}

#[cfg(test)]
mod tests {
    use jetsource::ErrorCode;
    use jetsource_runtime::process::fixture::{Fixture, event};
    use jetsource_runtime::wire::ErrorBody;
    use serde_json::json;

    use super::*;

    fn planned_and_started() -> Fixture<ProductionSaga> {
        let mut saga = Fixture::new(ProductionSaga::default());
        let bom = json!([{"sku": "bolt", "qty": 4}, {"sku": "plate", "qty": 1}]);
        let planned = json!({"product_id": "widget", "qty": 2, "warehouse": "main", "bom": bom});
        let _ = saga.when_event(&event("evt.order.o1", "OrderPlanned", planned));
        saga.when_event(&event("evt.order.o1", "OrderStarted", json!({}))).then_sends(&["reserve-0"]).effects.clear();
        saga
    }

    #[test]
    fn a_started_order_reserves_line_by_line_then_confirms() {
        let mut saga = planned_and_started();
        let step = saga.when_replied("reserve-0", &Reply::Done(json!({}))).then_sends(&["reserve-1"]);
        let Some(Effect::Send { command, .. }) = step.effects.last() else { panic!("{:?}", step.effects) };
        assert_eq!(
            (command.subject(), &command.body[..]),
            ("cmd.stock.plate@main.reserve".into(), &br#"{"order_id":"o1","qty":2}"#[..])
        );
        let _ = saga.when_replied("reserve-1", &Reply::Done(json!({}))).then_sends(&["confirm"]);
        let _ = saga.when_replied("confirm", &Reply::Done(json!({})));
        assert_eq!((saga.state().phase, saga.state().start_closed), (Phase::Reserved, true));
    }

    #[test]
    fn a_refused_line_fails_the_order_first_then_releases_what_was_taken() {
        let mut saga = planned_and_started();
        let _ = saga.when_replied("reserve-0", &Reply::Done(json!({})));
        let short = ErrorBody::new(ErrorCode::Rejected, "insufficient stock").with_reason("insufficient_stock");
        let _ = saga.when_replied("reserve-1", &Reply::Refused(short)).then_sends(&["fail"]);
        let _ = saga.when_replied("fail", &Reply::Done(json!({}))).then_sends(&["release-0"]);
        let down = Reply::NoAnswer(ErrorBody::new(ErrorCode::Unavailable, "stock is down"));
        assert!(matches!(saga.when_replied("release-0", &down).effects[..], [Effect::Save(_), Effect::Retry(_)]));
        let _ = saga.when_replied("release-0", &Reply::Done(json!({})));
        assert_eq!((saga.state().phase, saga.state().order_failed), (Phase::Failed, true));
    }

    #[test]
    fn an_order_cancelled_before_it_started_holds_nothing() {
        let mut saga = Fixture::new(ProductionSaga::default());
        let planned =
            json!({"product_id": "widget", "qty": 1, "warehouse": "main", "bom": [{"sku": "bolt", "qty": 1}]});
        let _ = saga.when_event(&event("evt.order.o2", "OrderPlanned", planned));
        saga.when_event(&event("evt.order.o2", "OrderCancelled", json!({"reason": "no"}))).then(&[Effect::Finish]);
    }
}
