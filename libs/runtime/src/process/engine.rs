//! The engine that runs a [`ProcessManager`]: its inputs from two durable consumers (the events
//! it follows on `EVENTS`, its deadlines on `TIMERS`) through the one consumer loop, one
//! instance's inputs at a time, and the effects carried out in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, kv};
use futures::future::BoxFuture;
use jetsource::consume::{self, EventHandler, Outcome, PerEventConfig};
use jetsource::projection::EventView;
use jetsource::{ErrorCode, StoredEvent};
use ring::digest;
use tracing::Instrument;

use super::{BUCKET, Effect, Input, ProcessManager, Reply, TIMERS};
use crate::Shutdown;
use crate::wire::{self, CallError, ErrorBody};

/// The header a deadline carries to the message it produces: the conversation it belongs to.
const CORRELATION: &str = "Jetsource-Correlation-Id";

/// How a process manager runs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// How long a command it sends may go unanswered ([`Reply::NoAnswer`] then).
    pub request_timeout: Duration,
    /// Inputs handled at once (one instance's always one after the other).
    pub max_in_flight: usize,
    /// Follow the events stored before the process manager was first deployed too (by
    /// default only those stored after).
    pub from_start: bool,
    /// Replicas of its consumers.
    pub replicas: usize,
    /// The application's name (`ce-source` `/<app>/<process>` of the facts it records; set from
    /// the registry by [`crate::App::process_manager`]).
    pub app: String,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            max_in_flight: 256,
            from_start: false,
            replicas: 1,
            app: "app".into(),
        }
    }
}

/// Why a process manager could not start.
#[derive(Debug, thiserror::Error)]
#[error("process manager {name}: {reason}; is the topology provisioned (stream TIMERS, buckets processes and parked)?")]
pub struct StartError {
    name: &'static str,
    reason: String,
}

/// A process manager, bound to its consumers and bucket, ready to run.
pub struct ProcessEngine<P: ProcessManager> {
    inner: Arc<Inner<P>>,
    events: PullConsumer,
    deadlines: PullConsumer,
    parked: kv::Store,
    /// `<name>.get.<instance>`: an instance's state.
    queries: async_nats::Subscriber,
    query_stats: Arc<crate::micro::Endpoint>,
    /// Answers `$SRV` discovery while it runs.
    _micro: crate::micro::MicroService,
}

struct Inner<P: ProcessManager> {
    pm: Arc<P>,
    /// Where the facts about parked inputs are recorded (their commands are told).
    facts: jetsource::EventStore,
    name: &'static str,
    metrics: Arc<jetsource_telemetry::Metrics>,
    js: jetstream::Context,
    client: wire::Client,
    states: kv::Store,
    timers: jetstream::stream::Stream,
    /// One instance's inputs one at a time within this process (events and deadlines come
    /// through two loops); across processes the state's compare-and-set decides.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// What caused an input: its id (for derived idempotency keys) and conversation.
struct Cause {
    id: String,
    correlation_id: String,
}

/// An input could not be carried through (NATS refused or did not answer): try again later.
#[derive(Debug)]
struct Again(String);

impl<P: ProcessManager> ProcessEngine<P> {
    /// Binds `pm` to its consumers (created if missing: `<name>` on `EVENTS`, `<name>_deadlines`
    /// on `TIMERS`, each with standby instances) and to the `processes` bucket.
    ///
    /// # Errors
    /// [`StartError`] when the topology is missing or JetStream does not answer.
    pub async fn start(
        client: async_nats::Client,
        pm: Arc<P>,
        config: &ProcessConfig,
        metrics: Arc<jetsource_telemetry::Metrics>,
    ) -> Result<Self, StartError> {
        let name = pm.name();
        let fail = |reason: String| StartError { name, reason };
        let js = jetstream::new(client.clone());
        let states = js.get_key_value(BUCKET).await.map_err(|e| fail(format!("bucket {BUCKET}: {e}")))?;
        let parked = js.get_key_value("parked").await.map_err(|e| fail(format!("bucket parked: {e}")))?;
        let timers = js.get_stream(TIMERS).await.map_err(|e| fail(format!("stream {TIMERS}: {e}")))?;
        let events_stream = js.get_stream("EVENTS").await.map_err(|e| fail(format!("stream EVENTS: {e}")))?;
        let subjects = pm.subjects();
        let (filter_subject, filter_subjects) = match subjects.as_slice() {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        let durable = |durable: String, description: String| pull::Config {
            durable_name: Some(durable),
            description: Some(description),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let events = events_stream
            .get_or_create_consumer(
                name,
                consume::standby(pull::Config {
                    filter_subject,
                    filter_subjects,
                    deliver_policy: if config.from_start { DeliverPolicy::All } else { DeliverPolicy::New },
                    ..durable(name.to_owned(), format!("process manager {name}: its events"))
                }),
            )
            .await
            .map_err(|e| fail(format!("consumer {name} on EVENTS: {e}")))?;
        let deadlines_name = format!("{name}_deadlines");
        let deadlines = timers
            .get_or_create_consumer(
                &deadlines_name,
                consume::standby(pull::Config {
                    filter_subject: format!("timer.{name}.>"),
                    deliver_policy: DeliverPolicy::All,
                    ..durable(deadlines_name.clone(), format!("process manager {name}: its deadlines"))
                }),
            )
            .await
            .map_err(|e| fail(format!("consumer {deadlines_name} on {TIMERS}: {e}")))?;
        let micro = crate::micro::MicroService::start(
            &client,
            name,
            env!("CARGO_PKG_VERSION"),
            &format!("process manager {name}"),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        let (queries, query_stats) =
            micro.endpoint("state", &format!("{name}.get.*"), name).await.map_err(|e| fail(e.to_string()))?;
        let facts = jetsource::EventStore::new(
            client.clone(),
            jetsource::StoreConfig { app: config.app.clone(), service: name.to_owned(), ..Default::default() },
        );
        let inner = Arc::new(Inner {
            pm,
            facts,
            name,
            metrics,
            js,
            client: wire::Client::new(client, config.request_timeout),
            states,
            timers,
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        });
        Ok(Self { inner, events, deadlines, parked, queries, query_stats, _micro: micro })
    }

    /// Handles inputs until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown, max_in_flight: usize) {
        let Self { inner, events, deadlines, parked, queries, query_stats, _micro } = self;
        let answer = {
            let inner = Arc::clone(&inner);
            let client = inner.client.nats().clone();
            crate::endpoint::serve(
                client,
                queries,
                query_stats,
                crate::endpoint::DEFAULT_IN_FLIGHT,
                shutdown.clone(),
                move |request| {
                    let inner = Arc::clone(&inner);
                    async move { inner.answer_query(&request).await }
                },
            )
        };
        let name = inner.name;
        let config = |consumer: &'static str| PerEventConfig { max_in_flight, ..PerEventConfig::new(consumer) };
        let deadlines_name: &'static str = Box::leak(format!("{name}_deadlines").into_boxed_str());
        let on_events = consume::run_per_event(
            events,
            parked.clone(),
            config(name),
            Arc::new(Events(Arc::clone(&inner))),
            shutdown.clone(),
        );
        let on_deadlines = consume::run_per_event(
            deadlines,
            parked,
            config(deadlines_name),
            Arc::new(Deadlines(Arc::clone(&inner))),
            shutdown,
        );
        futures::future::join3(on_events, on_deadlines, answer).await;
    }
}

struct Events<P: ProcessManager>(Arc<Inner<P>>);
struct Deadlines<P: ProcessManager>(Arc<Inner<P>>);

impl<P: ProcessManager> EventHandler for Events<P> {
    fn handle<'a>(&'a self, event: &'a StoredEvent) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let view = EventView::new(event);
            let Some(instance) = self.0.pm.key(&view) else { return Outcome::Done };
            let cause = Cause {
                id: jetsource::cloudevents::id(&event.headers).to_owned(),
                correlation_id: view.correlation_id().to_owned(),
            };
            let outcome = self.0.handle(&instance, &cause, Input::Event(&view)).await;
            match outcome {
                Outcome::Park(reason) => self.0.report_parked(&view, reason).await,
                other => other,
            }
        })
    }
}

impl<P: ProcessManager> EventHandler for Deadlines<P> {
    fn handle<'a>(&'a self, message: &'a StoredEvent) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            // timer.<process>.<instance>.<deadline>
            let mut tokens = message.subject.splitn(4, '.').skip(2);
            let (Some(instance), Some(name)) = (tokens.next(), tokens.next()) else {
                return Outcome::Park(format!("not a deadline subject: {}", message.subject));
            };
            let correlation_id = message.headers.get(CORRELATION).map(|v| v.as_str().to_owned()).unwrap_or_default();
            let cause = Cause { id: format!("deadline-{}", message.seq), correlation_id };
            self.0.handle(instance, &cause, Input::Deadline { instance, name }).await
        })
    }
}

impl<P: ProcessManager> Inner<P> {
    /// One input of `instance`: decide, carry the effects out; on a failure everything is
    /// decided again later from the saved state (commands resent with the same keys).
    async fn handle(&self, instance: &str, cause: &Cause, input: Input<'_>) -> Outcome {
        let stripe = digest::digest(&digest::SHA256, instance.as_bytes()).as_ref()[0] as usize % self.stripes.len();
        let _one_at_a_time = self.stripes[stripe].lock().await;
        let span = tracing::info_span!(
            "process.input",
            service = self.name,
            otel.name = %format!("{} {}", self.name, describe(&input)),
            instance,
            cause = %cause.id,
        );
        if let Input::Event(event) = &input
            && let Ok(attributes) = event.stored.attributes()
        {
            jetsource_telemetry::propagation::set_parent_from_trace(&span, &attributes.metadata.trace);
        }
        match self.carry_out(instance, cause, input).instrument(span).await {
            Ok(None) => Outcome::Done,
            Ok(Some(why)) => Outcome::Park(why),
            Err(Again(why)) => {
                tracing::warn!(service = self.name, instance, reason = %why, "process step postponed; retrying");
                Outcome::Retry(Duration::ZERO)
            }
        }
    }

    /// Carries `input` through; `Some(reason)` when it is to be parked.
    async fn carry_out(&self, instance: &str, cause: &Cause, input: Input<'_>) -> Result<Option<String>, Again> {
        let key = format!("{}.{}", self.name, jetsource::id::escape_kv_token(instance));
        let (before, mut revision) = self.load(&key).await?;
        let mut state = before.clone();
        let mut dirty = false;
        let mut work: VecDeque<Effect<P::State>> = self.pm.on(&state, input).into();
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Save(next) => {
                    state = next;
                    dirty = true;
                }
                Effect::Send { step, command } => {
                    // What was decided so far is kept before anything is asked of others.
                    if dirty {
                        revision = self.save(&key, &state, revision).await?;
                        dirty = false;
                    }
                    let reply = self.send(instance, cause, &step, command).await?;
                    self.pm.replied(&self.metrics, &step, &reply);
                    let next = self.pm.on(&state, Input::Replied { step: &step, reply: &reply });
                    for effect in next.into_iter().rev() {
                        work.push_front(effect);
                    }
                }
                Effect::Schedule { name, at } => self.schedule(instance, &name, at, cause).await?,
                Effect::Cancel { name } => self.cancel(instance, &name).await?,
                Effect::Retry(why) => {
                    if dirty {
                        self.save(&key, &state, revision).await?;
                    }
                    return Err(Again(why));
                }
                Effect::Park(why) => {
                    if dirty {
                        self.save(&key, &state, revision).await?;
                    }
                    return Ok(Some(why));
                }
                Effect::Finish => {
                    if revision > 0 {
                        self.states
                            .delete_expect_revision(&key, Some(revision))
                            .await
                            .map_err(|e| Again(format!("finishing {key}: {e}")))?;
                    }
                    self.pm.observed(&self.metrics, &input, &before, &state);
                    return Ok(None);
                }
            }
        }
        if dirty {
            self.save(&key, &state, revision).await?;
        }
        self.pm.observed(&self.metrics, &input, &before, &state);
        Ok(None)
    }

    /// Writes `state` if `key` is still at `revision`; the new revision.
    async fn save(&self, key: &str, state: &P::State, revision: u64) -> Result<u64, Again> {
        let bytes = serde_json::to_vec(state).map_err(|e| Again(e.to_string()))?;
        let bytes = self.facts.sealed(bytes).await.map_err(|e| Again(format!("sealing the state of {key}: {e}")))?;
        self.states
            .update(key, bytes.into(), revision)
            .await
            .map_err(|e| Again(format!("saving the state of {key}: {e}")))
    }

    /// `<name>.get.<instance>`: the state, or `not_found`.
    async fn answer_query(&self, request: &async_nats::Message) -> crate::endpoint::Answer {
        let prefix = format!("{}.get.", self.name);
        let instance = request.subject.strip_prefix(prefix.as_str()).unwrap_or_default();
        let result = match jetsource::AggregateId::new(instance) {
            Err(e) => Err(ErrorBody::new(ErrorCode::Invalid, e.to_string())),
            Ok(id) => {
                let key = format!("{}.{}", self.name, jetsource::id::escape_kv_token(id.as_str()));
                match self.states.get(&key).await {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => Err(ErrorBody::new(ErrorCode::NotFound, format!("no {} for {id}", self.name))),
                    Err(e) => Err(ErrorBody::new(ErrorCode::Unavailable, e.to_string())),
                }
            }
        };
        match result {
            Ok(bytes) => crate::endpoint::Answer::ok(bytes),
            Err(error) => crate::endpoint::Answer::error(&error),
        }
    }

    /// Tells the command that caused `event` that it was parked (an `EventParked` fact on
    /// `evt.view.<name>`, as views do), then parks it; tries again later if the fact cannot be
    /// recorded, so no failure goes unreported.
    async fn report_parked(&self, event: &EventView<'_>, reason: String) -> Outcome {
        use jetsource::projection::EventParked;
        let fact = EventParked::fact(&self.facts, self.name, 0, event, &reason);
        match self.facts.append_fact(&format!("evt.{}.{}", EventParked::AGGREGATE_TYPE, self.name), fact).await {
            Ok(_) => Outcome::Park(reason),
            Err(e) => {
                tracing::warn!(service = self.name, error = %e, "cannot record a parked input; retrying");
                Outcome::Retry(Duration::ZERO)
            }
        }
    }

    /// The state of `key` and its revision (0: none yet).
    async fn load(&self, key: &str) -> Result<(P::State, u64), Again> {
        let entry = self.states.entry(key).await.map_err(|e| Again(format!("reading the state of {key}: {e}")))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let state = serde_json::from_slice(&entry.value)
                    .map_err(|e| Again(format!("the state of {key} does not decode: {e}")))?;
                (state, entry.revision)
            }
            Some(entry) => (P::State::default(), entry.revision),
            None => (P::State::default(), 0),
        })
    }

    /// Sends `command` with a key derived from the cause and the step; its answer.
    async fn send(
        &self,
        instance: &str,
        cause: &Cause,
        step: &str,
        mut command: wire::CommandRequest,
    ) -> Result<Reply, Again> {
        command.idempotency_key = Some(derived_key(self.name, instance, &cause.id, step));
        if command.correlation_id.is_none() && !cause.correlation_id.is_empty() {
            command.correlation_id = Some(cause.correlation_id.clone());
        }
        command.causation_id = Some(cause.id.clone());
        command.actor = Some(self.name.to_owned());
        let span = tracing::info_span!(
            "process.command",
            service = self.name,
            otel.name = %format!("{} {} {}", self.name, command.command, command.id),
            aggregate_type = %command.aggregate_type,
            aggregate_id = %command.id,
            step,
        );
        jetsource_telemetry::propagation::inject(&span, &mut command.headers);
        let sent = self.client.request(command.subject(), command.header_map(), command.body.clone()).instrument(span);
        match sent.await {
            Ok(reply) => Ok(Reply::Done(serde_json::from_slice(&reply.payload).unwrap_or(serde_json::Value::Null))),
            Err(CallError::Reply(body)) => match body.code {
                ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::ConsistencyTimeout => {
                    Ok(Reply::NoAnswer(body))
                }
                ErrorCode::Conflict | ErrorCode::Internal => Err(Again(format!("{step}: {}", body.message))),
                _ => {
                    tracing::warn!(service = self.name, instance, step, code = body.code.as_str(), reason = body.reason.as_deref().unwrap_or_default(), detail = %body.message, "a command of the process was refused");
                    Ok(Reply::Refused(body))
                }
            },
            Err(e @ (CallError::Timeout { .. } | CallError::NoResponders { .. })) => {
                Ok(Reply::NoAnswer(ErrorBody::new(e.code(), e.to_string())))
            }
            Err(CallError::Invalid(message)) => Ok(Reply::Refused(ErrorBody::new(ErrorCode::Invalid, message))),
            Err(CallError::Nats(message)) => Err(Again(format!("{step}: {message}"))),
        }
    }

    /// A message schedule on `TIMERS`: the server produces the deadline at `at`, whether or
    /// not any process is running then.
    async fn schedule(&self, instance: &str, name: &str, at: time::OffsetDateTime, cause: &Cause) -> Result<(), Again> {
        let when = at
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(at)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| Again(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Schedule", format!("@at {when}"));
        headers.insert("Nats-Schedule-Target", format!("timer.{}.{instance}.{name}", self.name));
        if !cause.correlation_id.is_empty() {
            headers.insert(CORRELATION, cause.correlation_id.as_str());
        }
        let subject = format!("sched.{}.{instance}.{name}", self.name);
        let publish = jetstream::message::PublishMessage::build().headers(headers).payload(bytes::Bytes::new());
        let ack = self.js.send_publish(subject, publish).await.map_err(|e| Again(format!("scheduling {name}: {e}")))?;
        ack.await.map_err(|e| Again(format!("scheduling {name}: {e}")))?;
        Ok(())
    }

    async fn cancel(&self, instance: &str, name: &str) -> Result<(), Again> {
        let subject = format!("sched.{}.{instance}.{name}", self.name);
        self.timers.purge().filter(subject).await.map_err(|e| Again(format!("cancelling {name}: {e}")))?;
        Ok(())
    }
}

fn describe(input: &Input<'_>) -> String {
    match input {
        Input::Event(event) => event.name.to_owned(),
        Input::Replied { step, .. } => format!("reply to {step}"),
        Input::Deadline { name, .. } => format!("deadline {name}"),
    }
}

/// `<process>-<16 hex of SHA-256 over instance, cause and step>`: the same input sends the
/// same keys, whichever instance handles it and however often.
pub fn derived_key(process: &str, instance: &str, cause: &str, step: &str) -> String {
    let input = format!("{instance}\n{cause}\n{step}");
    let digest = digest::digest(&digest::SHA256, input.as_bytes());
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{process}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_stable_short_and_valid_command_ids() {
        let a = derived_key("reminders", "loan-1", "01a2:0", "remind");
        assert_eq!(a, derived_key("reminders", "loan-1", "01a2:0", "remind"));
        assert_ne!(a, derived_key("reminders", "loan-1", "01a2:0", "remind-2"));
        assert_ne!(a, derived_key("reminders", "loan-2", "01a2:0", "remind"));
        jetsource::metadata::validate_command_id(&a).unwrap();
    }
}
