//! The registry of an application: its aggregates (with the service that owns each), its views
//! and its other services, declared once. Everything that would otherwise keep its own list
//! reads it: the command services and the router, the HTTP edge's routes, known types and
//! OpenAPI document, `/status` (which services are expected), the CLI's service names, the
//! Kubernetes generator and the tests.
//!
//! ```no_run
//! # use jetsource_runtime::registry::App;
//! # fn demo<Counter: jetsource::Aggregate>() where Counter::Command: jetsource::Command {
//! let app = App::new("example").aggregate::<Counter>("counters");
//! assert_eq!(app.service_names(), ["counters"]);
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use jetsource::projection::Projection;
use jetsource::{Aggregate, AggregateId, Command, CommandParseError, CommandSpec, EventStore, StoreError, Until};
use serde_json::Value;

pub use crate::command::id::{InvalidId, aggregate_id};
use crate::command::service::{self, CommandConfig, Deps, NoPrepare, Prepare, RunningService};
use crate::inspect::{InspectRequest, inspect_as};
use crate::views::{Kind, ViewEntry, ViewKeys};

/// What a service of the application does; decides how a process starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Takes the commands of the aggregates registered with it (`cmd.<type>.>`).
    Commands,
    /// Keeps the registered views and answers their queries (`qry.>`).
    Projector,
    /// The HTTP edge (`jetsource-http`), on the process's HTTP address.
    Edge,
    /// Answers queries over the shipped logs ([`crate::logbook`]).
    Logbook,
    /// Compacts the hot event stream against the archive ([`crate::archiver`]).
    Archiver,
    /// A service of the application's own, started by its [`Starter`].
    Custom,
}

/// What a [`Starter`] gets: the process's connection, metrics and the registry.
#[derive(Clone)]
pub struct StartCtx {
    /// The process's NATS connection.
    pub client: async_nats::Client,
    /// The process's metrics.
    pub metrics: Arc<jetsource_telemetry::Metrics>,
    /// The application.
    pub app: Arc<App>,
}

/// A service started and subscribed, waiting to be run until the signal.
pub type Started = Box<dyn FnOnce(crate::Shutdown) -> BoxFuture<'static, ()> + Send>;

/// The error a [`Starter`] may fail with.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// How a custom service starts: subscribe (fail if the topology is missing), then run.
pub type Starter = Arc<dyn Fn(StartCtx) -> BoxFuture<'static, Result<Started, StartError>> + Send + Sync>;

/// One service a process can run.
#[derive(Clone)]
pub struct ServiceSpec {
    /// Its name (`stock`), as in `run <service>`, `$SRV` discovery and NATS users.
    pub name: &'static str,
    /// What it does, for `--help` and `/status`.
    pub description: String,
    /// How it is started.
    pub kind: ServiceKind,
    /// Answers `$SRV.PING` (so `/status` expects it).
    pub discoverable: bool,
    /// At most one instance may be active (its Deployment replaces rather than overlaps).
    pub singleton: bool,
    /// How a [`ServiceKind::Custom`] service starts.
    pub starter: Option<Starter>,
    /// What a custom service may publish and subscribe to, beyond what every service may (its
    /// NATS user, see [`App::permissions`]).
    pub permissions: Option<Permissions>,
}

/// The subjects a service's NATS user may use (least privilege, `nats/accounts.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may not publish to, though `publish` allows them.
    pub deny: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
}

impl Permissions {
    /// Publishing `publish`, subscribing `subscribe` (plus what every service may).
    pub fn new(publish: &[&str], subscribe: &[&str]) -> Self {
        let own = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Self { publish: own(publish), deny: Vec::new(), subscribe: own(subscribe) }
    }
}

impl fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("discoverable", &self.discoverable)
            .field("singleton", &self.singleton)
            .finish_non_exhaustive()
    }
}

impl ServiceSpec {
    fn new(name: &'static str, description: impl Into<String>, kind: ServiceKind) -> Self {
        Self {
            name,
            description: description.into(),
            kind,
            discoverable: true,
            singleton: false,
            starter: None,
            permissions: None,
        }
    }

    /// A service of the application's own, started by `starter`.
    pub fn custom<F>(name: &'static str, description: impl Into<String>, starter: F) -> Self
    where
        F: Fn(StartCtx) -> BoxFuture<'static, Result<Started, StartError>> + Send + Sync + 'static,
    {
        Self { starter: Some(Arc::new(starter)), ..Self::new(name, description, ServiceKind::Custom) }
    }

    /// The HTTP edge: commands, views, aggregates, status, OpenAPI, auth (it does not answer
    /// `$SRV` discovery).
    pub fn edge() -> Self {
        Self {
            discoverable: false,
            ..Self::new(
                "gateway",
                "The HTTP edge (on --http): commands, views, aggregates, status, auth",
                ServiceKind::Edge,
            )
        }
    }

    /// The logbook: queries over the shipped logs (`logbook.query`).
    pub fn logbook() -> Self {
        Self::new("logbook", "Queries over the shipped logs (logbook.query)", ServiceKind::Logbook)
    }

    /// The archiver: compacts the hot event stream by the topology's retention, against its
    /// archive (one active instance; its runs are idempotent).
    pub fn archiver() -> Self {
        Self::new(
            "archiver",
            "Compacts the hot event stream against the archive, by the declared retention",
            ServiceKind::Archiver,
        )
        .singleton()
    }

    /// Marks it as not answering `$SRV` discovery.
    #[must_use]
    pub fn undiscoverable(mut self) -> Self {
        self.discoverable = false;
        self
    }

    /// Declares what the service's NATS user may publish and subscribe to.
    #[must_use]
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// Marks it as running one active instance at a time.
    #[must_use]
    pub fn singleton(mut self) -> Self {
        self.singleton = true;
        self
    }
}

/// One aggregate type of the application, type-erased.
pub trait AggregateEntry: Send + Sync {
    /// Its type name (`stock`).
    fn aggregate_type(&self) -> &'static str;
    /// The service that owns its commands.
    fn service(&self) -> &'static str;
    /// The tag names its events are recorded under ([`Aggregate::TAGS`]).
    fn tags(&self) -> &'static [&'static str];
    /// Its commands.
    fn commands(&self) -> &'static [CommandSpec];
    /// The command named `name`.
    ///
    /// # Errors
    /// [`CommandParseError::UnknownCommand`] listing the commands it takes.
    fn command(&self, name: &str) -> Result<&'static CommandSpec, CommandParseError>;
    /// The pattern its ids match.
    fn id_pattern(&self) -> &'static str;
    /// Validates an id of this type.
    ///
    /// # Errors
    /// `invalid <type> id: <why>`.
    fn id(&self, raw: &str) -> Result<AggregateId, InvalidId>;
    /// The aggregate from the event store as JSON (see [`crate::inspect`]).
    fn inspect<'a>(
        &'a self,
        store: &'a EventStore,
        id: &'a AggregateId,
        until: Until,
        events: bool,
    ) -> BoxFuture<'a, Result<Value, StoreError>>;
    /// Subscribes its command service.
    fn start<'a>(
        &'a self,
        deps: &'a Deps,
        config: CommandConfig,
    ) -> BoxFuture<'a, Result<RunningService, async_nats::SubscribeError>>;
}

struct Entry<A, P> {
    service: &'static str,
    prepare: Arc<P>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, P> AggregateEntry for Entry<A, P>
where
    A: Aggregate,
    A::Command: Command,
    P: Prepare<A>,
{
    fn aggregate_type(&self) -> &'static str {
        A::TYPE
    }

    fn service(&self) -> &'static str {
        self.service
    }

    fn tags(&self) -> &'static [&'static str] {
        A::TAGS
    }

    fn commands(&self) -> &'static [CommandSpec] {
        <A::Command as Command>::SPECS
    }

    fn command(&self, name: &str) -> Result<&'static CommandSpec, CommandParseError> {
        <A::Command as Command>::spec(name)
            .ok_or_else(|| CommandParseError::unknown(A::TYPE, name, <A::Command as Command>::SPECS))
    }

    fn id(&self, raw: &str) -> Result<AggregateId, InvalidId> {
        aggregate_id::<A>(raw)
    }

    fn id_pattern(&self) -> &'static str {
        A::ID_PATTERN
    }

    fn inspect<'a>(
        &'a self,
        store: &'a EventStore,
        id: &'a AggregateId,
        until: Until,
        events: bool,
    ) -> BoxFuture<'a, Result<Value, StoreError>> {
        Box::pin(async move { inspect_as::<A>(store, &InspectRequest { id: id.clone(), until, events }).await })
    }

    fn start<'a>(
        &'a self,
        deps: &'a Deps,
        config: CommandConfig,
    ) -> BoxFuture<'a, Result<RunningService, async_nats::SubscribeError>> {
        let prepare = SharedPrepare(Arc::clone(&self.prepare));
        Box::pin(service::build::<A, SharedPrepare<P>>(self.service, prepare, deps, config))
    }
}

/// A registered preparation, shared by every instance of the service.
struct SharedPrepare<P>(Arc<P>);

impl<A: Aggregate, P: Prepare<A>> Prepare<A> for SharedPrepare<P> {
    fn prepare<'a>(
        &'a self,
        reads: &'a service::Reads,
        command: A::Command,
    ) -> BoxFuture<'a, Result<A::Command, crate::wire::ErrorBody>> {
        self.0.prepare(reads, command)
    }
}

/// Why a lookup in the registry failed; the messages list what the registry knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No aggregate type of that name.
    #[error("unknown aggregate type {name:?}; known types: {known}")]
    UnknownType {
        /// The name asked for.
        name: String,
        /// The registered types.
        known: String,
    },
    /// No view of that name.
    #[error("unknown view {name:?}; views: {known}")]
    UnknownView {
        /// The name asked for.
        name: String,
        /// The registered views.
        known: String,
    },
    /// No service of that name.
    #[error("unknown service {name:?}; services: {known}")]
    UnknownService {
        /// The name asked for.
        name: String,
        /// The registered services.
        known: String,
    },
}

/// An application: its name, aggregates, views and services.
#[derive(Clone)]
pub struct App {
    name: &'static str,
    aggregates: Vec<Arc<dyn AggregateEntry>>,
    views: Vec<Arc<dyn ViewEntry>>,
    services: Vec<ServiceSpec>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("aggregates", &self.aggregate_types())
            .field("views", &self.view_names())
            .field("services", &self.service_names())
            .finish()
    }
}

impl App {
    /// An application named `name`: the root of `ce-source` (`/<name>/<service>`), the prefix of
    /// `ce-type` (`<name>.<type>.<Event>`) and of its metrics.
    pub fn new(name: &'static str) -> Self {
        Self { name, aggregates: Vec::new(), views: Vec::new(), services: Vec::new() }
    }

    /// Registers aggregate type `A`, whose commands service `service` takes.
    ///
    /// # Panics
    /// When `A::TYPE` is registered twice or is not a valid type name: a registration error
    /// is a programming error, found at start.
    #[must_use]
    pub fn aggregate<A>(self, service: &'static str) -> Self
    where
        A: Aggregate,
        A::Command: Command,
    {
        self.aggregate_prepared::<A, NoPrepare>(service, NoPrepare)
    }

    /// Registers aggregate type `A` whose commands are completed by `prepare` before `handle`
    /// (looking up another aggregate, say).
    ///
    /// # Panics
    /// As [`App::aggregate`].
    #[must_use]
    pub fn aggregate_prepared<A, P>(mut self, service: &'static str, prepare: P) -> Self
    where
        A: Aggregate,
        A::Command: Command,
        P: Prepare<A>,
    {
        assert!(
            jetsource::id::validate_type_name(A::TYPE).is_ok(),
            "aggregate type {:?} is not a lower-case subject token",
            A::TYPE
        );
        assert!(self.aggregate_entry(A::TYPE).is_none(), "aggregate type {:?} is registered twice", A::TYPE);
        self.aggregates.push(Arc::new(Entry::<A, P> { service, prepare: Arc::new(prepare), _aggregate: PhantomData }));
        if !self.services.iter().any(|s| s.name == service) {
            self.services.push(ServiceSpec::new(service, String::new(), ServiceKind::Commands));
        }
        let types: Vec<&str> =
            self.aggregates.iter().filter(|a| a.service() == service).map(|a| a.aggregate_type()).collect();
        if let Some(spec) = self.services.iter_mut().find(|s| s.name == service) {
            spec.description = format!("Commands of {} (cmd.<{}>.<id>.<command>)", types.join(", "), types.join("|"));
        }
        self
    }

    /// Registers view `P` with its key spelling. The first view registers the `projector`
    /// service that keeps them all.
    ///
    /// # Panics
    /// When a view of the same name is registered twice.
    #[must_use]
    pub fn view<P>(mut self, keys: ViewKeys) -> Self
    where
        P: Projection + Default,
        P::Doc: jetsource::schemars::JsonSchema,
    {
        let name = P::default().name();
        assert!(self.view_entry(name).is_none(), "view {name:?} is registered twice");
        self.views.push(Arc::new(Kind::<P> { name, keys, _projection: PhantomData }));
        if !self.services.iter().any(|s| s.kind == ServiceKind::Projector) {
            self.services.push(ServiceSpec::new(
                "projector",
                "Views and queries (qry.*), rebuilds and parked events (projector.*)",
                ServiceKind::Projector,
            ));
        }
        self
    }

    /// Registers a process manager as a service of its own name (`run <name>`): its engine
    /// ([`crate::process::ProcessEngine`]) with `config`, and a NATS user that may read its
    /// consumers, keep its state and deadlines, and send commands to the types it names.
    #[must_use]
    pub fn process_manager<P: crate::process::ProcessManager>(
        self,
        pm: P,
        description: impl Into<String>,
        config: crate::process::ProcessConfig,
    ) -> Self {
        let name = pm.name();
        let mut publish: Vec<String> = pm.commands_to().iter().map(|t| format!("cmd.{t}.>")).collect();
        publish.extend([
            "$JS.API.INFO".to_owned(),
            "$JS.API.STREAM.INFO.*".to_owned(),
            format!("$JS.API.CONSUMER.CREATE.EVENTS.{name}.>"),
            format!("$JS.API.CONSUMER.CREATE.EVENTS.{name}"),
            format!("$JS.API.CONSUMER.INFO.EVENTS.{name}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.EVENTS.{name}"),
            format!("$JS.API.CONSUMER.RESET.EVENTS.{name}"),
            format!("$JS.ACK.EVENTS.{name}.>"),
            format!("$JS.API.CONSUMER.CREATE.TIMERS.{name}_deadlines.>"),
            format!("$JS.API.CONSUMER.CREATE.TIMERS.{name}_deadlines"),
            format!("$JS.API.CONSUMER.INFO.TIMERS.{name}_deadlines"),
            format!("$JS.API.CONSUMER.MSG.NEXT.TIMERS.{name}_deadlines"),
            format!("$JS.API.CONSUMER.RESET.TIMERS.{name}_deadlines"),
            format!("$JS.ACK.TIMERS.{name}_deadlines.>"),
            format!("$JS.API.STREAM.PURGE.{}", crate::process::TIMERS),
            format!("sched.{name}.>"),
            // the facts reporting what it parked to the commands that caused it
            format!("evt.view.{name}"),
            format!("$KV.{}.{name}.>", crate::process::BUCKET),
            format!("$JS.API.DIRECT.GET.KV_{}.>", crate::process::BUCKET),
            format!("$JS.API.STREAM.MSG.GET.KV_{}", crate::process::BUCKET),
            format!("$KV.parked.{name}.>"),
            format!("$KV.parked.{name}_deadlines.>"),
            "$JS.API.CONSUMER.CREATE.KV_parked.>".to_owned(),
            "$JS.API.CONSUMER.DELETE.KV_parked.>".to_owned(),
        ]);
        let permissions = Permissions { publish, deny: Vec::new(), subscribe: vec![format!("{name}.get.*")] };
        let pm = Arc::new(pm);
        let starter = move |ctx: StartCtx| -> BoxFuture<'static, Result<Started, StartError>> {
            let (pm, config) = (Arc::clone(&pm), config.clone());
            Box::pin(async move {
                let config = crate::process::ProcessConfig { app: ctx.app.name().to_owned(), ..config };
                let engine = crate::process::ProcessEngine::start(ctx.client, pm, &config, ctx.metrics).await?;
                let started: Started =
                    Box::new(move |stop| Box::pin(engine.run_until_stopped(stop, config.max_in_flight)));
                Ok(started)
            })
        };
        self.service(ServiceSpec::custom(name, description, starter).permissions(permissions))
    }

    /// Registers another service ([`ServiceSpec::edge`], [`ServiceSpec::logbook`] or one of the
    /// application's own, [`ServiceSpec::custom`]).
    ///
    /// # Panics
    /// When a service of the same name is registered twice.
    #[must_use]
    pub fn service(mut self, spec: ServiceSpec) -> Self {
        assert!(self.service_spec(spec.name).is_none(), "service {:?} is registered twice", spec.name);
        self.services.push(spec);
        self
    }

    /// The application's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Every aggregate type, in registration order.
    pub fn aggregates(&self) -> &[Arc<dyn AggregateEntry>] {
        &self.aggregates
    }

    /// Their names.
    pub fn aggregate_types(&self) -> Vec<&'static str> {
        self.aggregates.iter().map(|a| a.aggregate_type()).collect()
    }

    /// The aggregate type named `name`.
    pub fn aggregate_entry(&self, name: &str) -> Option<&Arc<dyn AggregateEntry>> {
        self.aggregates.iter().find(|a| a.aggregate_type() == name)
    }

    /// The aggregate type named `name`, or an error listing the known ones.
    ///
    /// # Errors
    /// [`LookupError::UnknownType`].
    pub fn aggregate_or_error(&self, name: &str) -> Result<&Arc<dyn AggregateEntry>, LookupError> {
        self.aggregate_entry(name)
            .ok_or_else(|| LookupError::UnknownType { name: name.to_owned(), known: self.aggregate_types().join(", ") })
    }

    /// Every view, in registration order.
    pub fn views(&self) -> &[Arc<dyn ViewEntry>] {
        &self.views
    }

    /// Their names.
    pub fn view_names(&self) -> Vec<&'static str> {
        self.views.iter().map(|v| v.name()).collect()
    }

    /// The view named `name`.
    pub fn view_entry(&self, name: &str) -> Option<&Arc<dyn ViewEntry>> {
        self.views.iter().find(|v| v.name() == name)
    }

    /// The view named `name`, or an error listing the views.
    ///
    /// # Errors
    /// [`LookupError::UnknownView`].
    pub fn view_or_error(&self, name: &str) -> Result<&Arc<dyn ViewEntry>, LookupError> {
        self.view_entry(name)
            .ok_or_else(|| LookupError::UnknownView { name: name.to_owned(), known: self.view_names().join(", ") })
    }

    /// Every service, in start order (command services first, in registration order).
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    /// Their names.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name).collect()
    }

    /// The service named `name`.
    pub fn service_spec(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service named `name`, or an error listing the services.
    ///
    /// # Errors
    /// [`LookupError::UnknownService`].
    pub fn service_or_error(&self, name: &str) -> Result<&ServiceSpec, LookupError> {
        self.service_spec(name).ok_or_else(|| LookupError::UnknownService {
            name: name.to_owned(),
            known: self.service_names().join(", "),
        })
    }

    /// The services that answer `$SRV` discovery: what `/status` expects of a complete
    /// application.
    pub fn discoverable_services(&self) -> Vec<&'static str> {
        self.services.iter().filter(|s| s.discoverable).map(|s| s.name).collect()
    }

    /// The least privilege of `service`'s NATS user, given the declared `topology`: what every
    /// service may (reply to its requests, its inboxes, `$SRV` discovery, its log subjects),
    /// and what its kind needs — a command service writes its aggregates' events and reads the
    /// store; the projector manages view versions but may not touch the other buckets and
    /// streams or the other consumers; the logbook reads `LOGS`; the edge sends requests to
    /// every service and reads, never consuming `EVENTS` durably; a custom service what it
    /// declared.
    pub fn permissions(&self, spec: &ServiceSpec, topology: &jetsource::topology::Topology) -> Permissions {
        let name = spec.name;
        let reads = ["$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"];
        let own = |list: &[&str]| -> Vec<String> { list.iter().map(|s| (*s).to_owned()).collect() };
        let mut p = match spec.kind {
            ServiceKind::Commands => {
                let aggregates = self.aggregates_of(name);
                let mut publish: Vec<String> =
                    aggregates.iter().map(|a| format!("evt.{}.>", a.aggregate_type())).collect();
                let tags = aggregates.iter().flat_map(|a| a.tags());
                publish.extend(tags.map(|tag| format!("{}.{tag}.>", jetsource::store::TAG_PREFIX)));
                publish.extend(own(&reads));
                publish.extend(own(&["$KV.snapshots.>", "$KV.idempotency.>"]));
                // Sealing personal data creates its subject's key on first use.
                publish.push(format!("{}.>", jetsource::keyring::KEYS_PREFIX));
                Permissions { publish, deny: Vec::new(), subscribe: own(&[crate::wire::subject::COMMANDS]) }
            }
            ServiceKind::Projector => {
                let mut deny = Vec::new();
                for bucket in topology.buckets.iter().filter(|b| !matches!(b.bucket.as_str(), "views" | "parked")) {
                    deny.push(format!("$KV.{}.>", bucket.bucket));
                }
                let streams = topology.streams.iter().map(|s| s.name.clone());
                let kv_streams = topology.buckets.iter().map(|b| format!("KV_{}", b.bucket));
                for stream in streams.chain(kv_streams) {
                    for verb in ["DELETE", "PURGE", "UPDATE", "MSG.DELETE"] {
                        deny.push(format!("$JS.API.STREAM.{verb}.{stream}"));
                    }
                }
                for consumer in &topology.consumers {
                    deny.push(format!("$JS.API.CONSUMER.DELETE.{}.{}", consumer.stream, consumer.durable));
                    deny.push(format!("$JS.API.CONSUMER.RESET.{}.{}", consumer.stream, consumer.durable));
                    deny.push(format!("$JS.ACK.{}.{}.>", consumer.stream, consumer.durable));
                }
                Permissions {
                    publish: own(&["evt.view.>", "$JS.API.>", "$JS.ACK.EVENTS.>", "$JS.FC.>", "$KV.>"]),
                    deny,
                    subscribe: own(&[crate::wire::subject::QUERIES, crate::wire::subject::PROJECTOR]),
                }
            }
            ServiceKind::Logbook => Permissions {
                publish: own(&[
                    "$JS.API.INFO",
                    "$JS.API.STREAM.INFO.LOGS",
                    "$JS.API.CONSUMER.CREATE.LOGS.>",
                    "$JS.API.CONSUMER.MSG.NEXT.LOGS.>",
                    "$JS.API.CONSUMER.DELETE.LOGS.>",
                    "$JS.ACK.LOGS.>",
                    "$JS.FC.LOGS.>",
                ]),
                deny: Vec::new(),
                subscribe: own(&[crate::wire::subject::LOGBOOK_QUERY]),
            },
            ServiceKind::Archiver => {
                let mut publish = own(&reads);
                publish.push(format!("{}.>", jetsource::store::ARCHIVE_TIMES));
                if let Some(archive) = &topology.archive {
                    publish.push(format!("$JS.API.STREAM.PURGE.{}", archive.events));
                    publish.push(format!("$JS.API.CONSUMER.LIST.{}", archive.events));
                }
                Permissions { publish, deny: Vec::new(), subscribe: Vec::new() }
            }
            ServiceKind::Edge => {
                let mut publish = own(&[
                    crate::wire::subject::COMMANDS,
                    crate::wire::subject::QUERIES,
                    crate::wire::subject::PROJECTOR,
                    crate::wire::subject::LOGBOOK_QUERY,
                ]);
                for custom in self.services.iter().filter_map(|s| s.permissions.as_ref()) {
                    publish.extend(custom.subscribe.iter().cloned());
                }
                publish.extend(own(&reads));
                // `POST /v1/data-subjects/{subject}/forget` erases a key (admins only).
                for keys in topology.streams.iter().filter(|s| s.subjects.iter().any(|s| s.starts_with("keys."))) {
                    publish.push(format!("$JS.API.STREAM.MSG.DELETE.{}", keys.name));
                }
                publish.extend(own(&[
                    "$JS.API.CONSUMER.CREATE.>",
                    "$JS.API.CONSUMER.MSG.NEXT.>",
                    "$JS.API.CONSUMER.DELETE.>",
                    "$JS.FC.>",
                ]));
                Permissions {
                    publish,
                    deny: own(&[
                        "$JS.API.CONSUMER.CREATE.EVENTS.>",
                        "$JS.API.CONSUMER.MSG.NEXT.EVENTS.>",
                        "$JS.API.CONSUMER.DELETE.EVENTS.>",
                        "$JS.API.CONSUMER.DURABLE.>",
                    ]),
                    subscribe: Vec::new(),
                }
            }
            ServiceKind::Custom => spec.permissions.clone().unwrap_or_default(),
        };
        p.publish.extend([crate::wire::subject::SRV.to_owned(), format!("logs.{name}.>")]);
        p.subscribe.extend(own(&["_INBOX.>", crate::wire::subject::SRV]));
        p
    }

    /// The aggregate types whose commands `service` takes.
    pub fn aggregates_of(&self, service: &str) -> Vec<&Arc<dyn AggregateEntry>> {
        self.aggregates.iter().filter(|a| a.service() == service).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use jetsource::{DomainError, DomainEvent};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub(crate) struct Never;
    impl DomainError for Never {
        fn reason(&self) -> &'static str {
            "never"
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[serde(tag = "type", content = "data")]
    pub(crate) enum Happened {
        Happened {},
    }

    macro_rules! aggregate {
        ($name:ident, $command:ident, $type:literal, $($variant:ident),+) => {
            #[derive(Debug, Clone, Default, Serialize, Deserialize)]
            pub(crate) struct $name;

            #[derive(Debug, Clone, PartialEq, jetsource::Command)]
            #[command(aggregate = $name)]
            pub(crate) enum $command {
                $($variant,)+
            }

            impl Aggregate for $name {
                const TYPE: &'static str = $type;
                type Command = $command;
                type Event = Happened;
                type Error = Never;
                fn handle(&self, _: $command) -> Result<Vec<Happened>, Never> {
                    Ok(vec![Happened::Happened {}])
                }
                fn apply(&mut self, _: &Happened) {}
            }
        };
    }

    aggregate!(Product, ProductCommand, "product", Define, Retire);
    aggregate!(Stock, StockCommand, "stock", Receive, Ship);
    aggregate!(Order, OrderCommand, "order", Plan, Start);

    /// Three aggregate types served by three services.
    pub(crate) fn sample() -> App {
        App::new("test").aggregate::<Product>("catalog").aggregate::<Stock>("stock").aggregate::<Order>("production")
    }

    #[test]
    fn the_registry_knows_types_commands_services_and_says_what_it_knows() {
        let app = sample();
        assert_eq!(app.aggregate_types(), ["product", "stock", "order"]);
        assert_eq!(app.service_names(), ["catalog", "stock", "production"]);
        assert_eq!(app.aggregate_entry("stock").map(|a| a.service()), Some("stock"));
        let unknown = app.aggregate_or_error("widget").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(unknown, "unknown aggregate type \"widget\"; known types: product, stock, order");
        let stock = app.aggregate_entry("stock").unwrap();
        let teleport = stock.command("teleport").unwrap_err();
        assert!(teleport.is_not_found() && teleport.to_string().contains("receive, ship"), "{teleport}");
        assert!(stock.id("bolt@main").is_ok());
        assert!(stock.id("a.b").unwrap_err().to_string().starts_with("invalid stock id: "));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_type_registered_twice_is_refused_at_start() {
        let _ = sample().aggregate::<Stock>("warehouse");
    }
}
