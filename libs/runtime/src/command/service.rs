//! The command service of any registered aggregate type: `cmd.<type>.<id>.<command>` → parse
//! → idempotency check → prepare → execute (load, handle, append) → reply. Instances of the same
//! service share a queue group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Shutdown;
use crate::endpoint::{self, Answer};
use crate::ledger::{Entry, Ledger, fingerprint};
use crate::micro::MicroService;
use crate::wire::ErrorBody;
use async_nats::header::HeaderName;
use async_nats::{Client, Message};
use bytes::Bytes;
use futures::future::BoxFuture;
use jetsource::metadata::validate_command_id;
use jetsource::{
    Aggregate, AggregateId, Command, CommandContext, CommandError, CommandOutcome, ErrorCode, EventStore, Loaded,
    Repository, RepositoryConfig, SnapshotStore, StoreConfig, StoreError,
};
use jetsource_telemetry::Metrics;
use jetsource_telemetry::metrics::RepositoryMetrics;
use jetsource_telemetry::propagation;
use serde_json::Value;
use tracing::{Instrument, field};

use crate::wire::header::{ACTOR, CAUSATION_ID, CORRELATION_ID, EXPECTED_VERSION, IDEMPOTENCY_KEY, REPLAYED};

// The same names as constants, so looking them up allocates nothing.
const IDEMPOTENCY_KEY_NAME: HeaderName = HeaderName::from_static(IDEMPOTENCY_KEY);
const EXPECTED_VERSION_NAME: HeaderName = HeaderName::from_static(EXPECTED_VERSION);
const ACTOR_NAME: HeaderName = HeaderName::from_static(ACTOR);
const CORRELATION_ID_NAME: HeaderName = HeaderName::from_static(CORRELATION_ID);
const CAUSATION_ID_NAME: HeaderName = HeaderName::from_static(CAUSATION_ID);

/// What every command service of a process shares.
#[derive(Clone)]
pub struct Deps {
    /// The NATS connection.
    pub client: Client,
    /// Snapshots (none disables them).
    pub snapshots: Option<SnapshotStore>,
    /// The idempotency ledger.
    pub ledger: Ledger,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// The application name (`ce-source` root, `ce-type` prefix).
    pub app: &'static str,
}

impl Deps {
    /// Opens the `snapshots` and `idempotency` buckets over `client`.
    ///
    /// # Errors
    /// When a bucket does not exist (the topology is not provisioned) or JetStream does not answer.
    pub async fn open(
        app: &'static str,
        client: Client,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let js = async_nats::jetstream::new(client.clone());
        let snapshots = SnapshotStore::open(&js, "snapshots").await?;
        let ledger = Ledger::open(&js, "idempotency").await?;
        Ok(Self { client, snapshots: Some(snapshots), ledger, metrics, app })
    }

    /// An event store writing as `service`.
    pub fn store(&self, service: &str) -> EventStore {
        EventStore::new(
            self.client.clone(),
            StoreConfig { app: self.app.to_owned(), service: service.to_owned(), ..Default::default() },
        )
    }

    /// Reads other aggregates (no cache: the truth of the store).
    pub fn reads(&self, service: &str) -> Reads {
        Reads { store: self.store(service), snapshots: self.snapshots.clone() }
    }
}

/// Reads the current state of aggregates of any type, for a [`Prepare`] hook.
#[derive(Clone)]
pub struct Reads {
    store: EventStore,
    snapshots: Option<SnapshotStore>,
}

impl Reads {
    /// The current state of aggregate `id` of type `B`.
    ///
    /// # Errors
    /// [`StoreError`] when the store does not answer or the history does not decode.
    pub async fn load<B: Aggregate>(&self, id: &AggregateId) -> Result<Loaded<B>, StoreError> {
        let config = RepositoryConfig { cache_capacity: 0, ..Default::default() };
        Repository::<B>::new(self.store.clone(), self.snapshots.clone(), config).load(id).await
    }
}

/// Looks up what `handle` needs from outside and puts it into the command (the production
/// service looks up the product before planning an order).
pub trait Prepare<A: Aggregate>: Send + Sync + 'static {
    /// The command, completed.
    ///
    /// # Errors
    /// The answer to send instead (`invalid`, `unavailable`).
    fn prepare<'a>(&'a self, reads: &'a Reads, command: A::Command) -> BoxFuture<'a, Result<A::Command, ErrorBody>>;
}

/// No preparation.
pub struct NoPrepare;

impl<A: Aggregate> Prepare<A> for NoPrepare {
    fn prepare<'a>(&'a self, _: &'a Reads, command: A::Command) -> BoxFuture<'a, Result<A::Command, ErrorBody>> {
        Box::pin(async move { Ok(command) })
    }
}

/// Limits of a command service.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Largest command body accepted.
    pub max_body_bytes: usize,
    /// Commands handled at once by one instance.
    pub max_in_flight: usize,
    /// Longest a command may take before `timeout` is answered.
    pub timeout: Duration,
    /// Retries, cache and snapshots.
    pub repository: RepositoryConfig,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_in_flight: 1024,
            timeout: Duration::from_secs(10),
            repository: RepositoryConfig::default(),
        }
    }
}

/// A command service subscribed and ready to run.
pub struct RunningService {
    name: &'static str,
    run: Run,
}

/// Serves a command endpoint until the signal.
type Run = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

impl RunningService {
    /// The service name (`stock`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Serves until `shutdown`, then stops taking requests and lets the ones in flight finish.
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        let name = self.name;
        (self.run)(shutdown.clone()).await;
        if shutdown.is_triggered() {
            tracing::info!(service = name, "stopping");
        } else {
            tracing::warn!(service = name, "command endpoint closed");
        }
    }
}

pub(crate) struct Handler<A: Aggregate, P> {
    service: &'static str,
    prepare: P,
    reads: Reads,
    repo: Repository<A>,
    deps: Deps,
    config: CommandConfig,
}

/// Subscribes the command service `service` of aggregate type `A` and returns it ready to run.
///
/// # Errors
/// When the subscriptions cannot be made.
pub async fn build<A, P>(
    service: &'static str,
    prepare: P,
    deps: &Deps,
    config: CommandConfig,
) -> Result<RunningService, async_nats::SubscribeError>
where
    A: Aggregate,
    A::Command: Command,
    P: Prepare<A>,
{
    let repo = Repository::<A>::new(deps.store(service), deps.snapshots.clone(), config.repository.clone())
        .with_observer(Arc::new(RepositoryMetrics(Arc::clone(&deps.metrics))));
    let subject = crate::wire::subject::commands_of(A::TYPE);
    let description = format!("Commands of {} aggregates: cmd.{}.<id>.<command>", A::TYPE, A::TYPE);
    let micro = MicroService::start(&deps.client, service, env!("CARGO_PKG_VERSION"), &description).await?;
    let (requests, stats) = micro.endpoint("commands", &subject, service).await?;
    let reads = deps.reads(service);
    let max_in_flight = config.max_in_flight;
    let handler = Arc::new(Handler { service, prepare, reads, repo, deps: deps.clone(), config });
    tracing::info!(service, service_id = micro.id(), subject = %subject, "command service ready");
    let client = deps.client.clone();
    let run: Run = Box::new(move |shutdown| {
        Box::pin(async move {
            let _micro = micro; // answers $SRV while the endpoint serves
            endpoint::serve(client, requests, stats, max_in_flight, shutdown, move |message| {
                let handler = Arc::clone(&handler);
                async move { handler.answer(message).await }
            })
            .await;
        })
    });
    Ok(RunningService { name: service, run })
}

/// What one request came to.
struct Outcome {
    result: Result<Success, ErrorBody>,
    replayed: bool,
    /// The command's catalogue name (`unknown` for malformed requests: labels stay bounded).
    command: &'static str,
}

impl<A, P> Handler<A, P>
where
    A: Aggregate,
    A::Command: Command,
    P: Prepare<A>,
{
    async fn answer(&self, message: Message) -> Answer {
        let started = Instant::now();
        let span = tracing::info_span!(
            "jetsource.command",
            otel.name = field::Empty,
            otel.status_code = field::Empty,
            service = self.service,
            aggregate_type = A::TYPE,
            aggregate_id = field::Empty,
            command = field::Empty,
            command_id = field::Empty,
            code = field::Empty,
            stream_seq = field::Empty,
        );
        propagation::set_parent_from_headers(&span, message.headers.as_ref());
        let Outcome { result, replayed, command } = self.process(&message).instrument(span.clone()).await;
        let code = match &result {
            Ok(reply) if reply.accepted => "accepted",
            Ok(_) => "succeeded",
            Err(e) => e.code.as_str(),
        };
        span.record("code", code);
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        let answer = match result {
            Ok(reply) => Answer::ok(reply.body),
            Err(error) => {
                let error = error.with_trace_id(propagation::trace_id(&span));
                if error.code == ErrorCode::Internal {
                    tracing::error!(parent: &span, error = %error, "command failed");
                }
                Answer::error(&error)
            }
        };
        self.deps.metrics.command(A::TYPE, command, code, started.elapsed());
        if replayed { answer.with_header(REPLAYED, "true") } else { answer }
    }

    async fn process(&self, message: &Message) -> Outcome {
        let span = tracing::Span::current();
        let mut answer = Outcome {
            result: Err(ErrorBody::new(ErrorCode::Internal, "unhandled")),
            replayed: false,
            command: "unknown",
        };
        let mut tokens = message.subject.splitn(5, '.').skip(2);
        let (Some(id), Some(command), None) = (tokens.next(), tokens.next(), tokens.next()) else {
            answer.result = Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!(
                    "subject {} must be cmd.<aggregate_type>.<aggregate_id>.<command>; ids cannot contain dots",
                    message.subject
                ),
            ));
            return answer;
        };
        if !span.is_disabled() {
            span.record("otel.name", format!("{} {}", A::TYPE, command));
        }
        span.record("command", command);
        span.record("aggregate_id", id);
        answer.result = self.run(message, id, command, &mut answer).await;
        answer
    }

    async fn run(
        &self,
        message: &Message,
        id: &str,
        command: &str,
        answer: &mut Outcome,
    ) -> Result<Success, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(ErrorCode::Invalid, m);
        let spec = <A::Command as Command>::spec(command).ok_or_else(|| {
            let e = jetsource::CommandParseError::unknown(A::TYPE, command, <A::Command as Command>::SPECS);
            ErrorBody::new(ErrorCode::NotFound, e.to_string())
        })?;
        answer.command = spec.name;
        let id = super::id::aggregate_id::<A>(id).map_err(|e| invalid(e.to_string()))?;
        if message.payload.len() > self.config.max_body_bytes {
            return Err(invalid(format!(
                "command body is {} bytes; the limit is {}",
                message.payload.len(),
                self.config.max_body_bytes
            )));
        }
        let header =
            |name: HeaderName| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let key = header(IDEMPOTENCY_KEY_NAME);
        if let Some(key) = &key {
            validate_command_id(key).map_err(|e| invalid(format!("{IDEMPOTENCY_KEY}: {e}")))?;
        }
        let expected = header(EXPECTED_VERSION_NAME)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(format!("{EXPECTED_VERSION} {v:?} is not a version number")))
            })
            .transpose()?;
        let mut ctx = match &key {
            Some(key) => CommandContext::with_command_id(key.clone()),
            None => CommandContext::new(),
        };
        ctx.expected_version = expected;
        ctx.actor = header(ACTOR_NAME).filter(|a| !a.is_empty() && a.len() <= 200).unwrap_or_else(|| "nats".to_owned());
        for (name, header_name, slot) in [
            (CORRELATION_ID, CORRELATION_ID_NAME, &mut ctx.correlation_id),
            (CAUSATION_ID, CAUSATION_ID_NAME, &mut ctx.causation_id),
        ] {
            if let Some(value) = header(header_name) {
                // An event id (`<command id>:<index>`) may be a little longer than a command id.
                let valid = !value.is_empty()
                    && value.len() <= 2 * jetsource::metadata::MAX_COMMAND_ID_LEN
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@=".contains(&b));
                if !valid {
                    return Err(invalid(format!("{name} {value:?}: 1-256 characters of A-Z a-z 0-9 - _ . : @ =")));
                }
                *slot = Some(value);
            }
        }
        ctx.trace = propagation::trace_context(&tracing::Span::current());
        tracing::Span::current().record("command_id", ctx.command_id.as_str());
        let with_id = |e: ErrorBody| e.with_command_id(ctx.command_id.clone());

        // Only keyed commands pay for the ledger: fingerprint, lookup and record.
        let fp = key.as_ref().map(|_| fingerprint(A::TYPE, id.as_str(), command, expected, &message.payload));
        if let (Some(key), Some(fp)) = (&key, &fp)
            && let Some(entry) = self
                .deps
                .ledger
                .get(key)
                .await
                .map_err(|e| with_id(ErrorBody::new(ErrorCode::Unavailable, e.to_string())))?
        {
            answer.replayed = &entry.fingerprint == fp;
            self.deps.metrics.replayed(A::TYPE, "ledger");
            return replay(entry, fp, key);
        }

        let parsed = <A::Command as Command>::parse(command, &message.payload).map_err(|e| {
            let code = if e.is_not_found() { ErrorCode::NotFound } else { ErrorCode::Invalid };
            with_id(ErrorBody::new(code, e.to_string()))
        })?;
        let prepared = self.prepare.prepare(&self.reads, parsed).await.map_err(with_id)?;
        let executed = tokio::time::timeout(self.config.timeout, self.repo.execute(&id, prepared, &ctx)).await;
        let result = match executed {
            Err(_) => Err(ErrorBody::new(ErrorCode::Timeout, format!("no outcome within {:?}", self.config.timeout))),
            Ok(Ok(outcome)) => {
                answer.replayed = outcome.duplicate;
                tracing::Span::current().record("stream_seq", outcome.stream_seq);
                Ok(success(&outcome, spec.asynchronous))
            }
            Ok(Err(e)) => Err(command_error(e)),
        }
        .map_err(with_id);
        let keep = matches!(
            &result,
            Ok(_)
                | Err(ErrorBody {
                    code: ErrorCode::Rejected | ErrorCode::NotFound | ErrorCode::PreconditionFailed,
                    ..
                })
        );
        match (key, fp) {
            (Some(key), Some(fp)) if keep => self.remember(&key, fp, &result).await,
            _ => result,
        }
    }

    /// Records the first outcome of a keyed command; if a concurrent request with the same
    /// key recorded first, answers with that one (or refuses a different request).
    async fn remember(&self, key: &str, fp: String, result: &Result<Success, ErrorBody>) -> Result<Success, ErrorBody> {
        let (status, reply) = match result {
            Ok(reply) => {
                (if reply.accepted { 202 } else { 200 }, serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
            }
            Err(e) => (e.status(), serde_json::to_value(e).unwrap_or(Value::Null)),
        };
        let entry = Entry { fingerprint: fp.clone(), status, reply };
        match self.deps.ledger.record(key, &entry).await {
            Ok(None) => result.clone(),
            Ok(Some(first)) => replay(first, &fp, key),
            Err(e) => {
                tracing::warn!(error = %e, key, "outcome not recorded in the idempotency ledger");
                result.clone()
            }
        }
    }
}

fn replay(entry: Entry, fp: &str, key: &str) -> Result<Success, ErrorBody> {
    if entry.fingerprint != fp {
        return Err(ErrorBody::new(
            ErrorCode::IdempotencyKeyReused,
            format!("idempotency key {key:?} was used for a different request in the last 24 h"),
        )
        .with_command_id(key));
    }
    if entry.status < 300 {
        let body = serde_json::to_vec(&entry.reply).unwrap_or_default().into();
        return Ok(Success { body, accepted: entry.status == 202 });
    }
    serde_json::from_value::<ErrorBody>(entry.reply)
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("unreadable ledger entry: {e}")))
        .and_then(Err)
}

/// A success reply, already encoded.
#[derive(Debug, Clone)]
struct Success {
    body: Bytes,
    accepted: bool,
}

fn success(outcome: &CommandOutcome, asynchronous: bool) -> Success {
    /// The success reply (`docs/contracts/nats.md`).
    #[derive(serde::Serialize)]
    struct Reply<'a> {
        command_id: &'a str,
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        version: u64,
        stream_seq: u64,
        status: &'static str,
        events: &'a [jetsource::EventRef],
    }
    let reply = Reply {
        command_id: &outcome.command_id,
        aggregate_type: &outcome.aggregate_type,
        aggregate_id: &outcome.aggregate_id,
        version: outcome.version,
        stream_seq: outcome.stream_seq,
        status: if asynchronous { "accepted" } else { "succeeded" },
        events: &outcome.events,
    };
    Success { body: serde_json::to_vec(&reply).unwrap_or_default().into(), accepted: asynchronous }
}

fn command_error<E: jetsource::DomainError>(e: CommandError<E>) -> ErrorBody {
    let body = ErrorBody::new(e.code(), e.to_string());
    match e {
        CommandError::Rejected(domain) => body.with_reason(domain.reason()),
        CommandError::PreconditionFailed { expected, actual } => {
            body.with("expected_version", expected).with("actual_version", actual)
        }
        CommandError::Internal(detail) => {
            tracing::error!(detail, "command failed internally");
            ErrorBody::new(ErrorCode::Internal, "internal error; the service log has the details")
        }
        _ => body,
    }
}
