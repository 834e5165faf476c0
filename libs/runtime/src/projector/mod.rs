//! Running the views: one worker per active version (and per version being rebuilt), the
//! switch of a rebuilt version, and the NATS endpoints for queries and operators.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::Shutdown;
use crate::micro::{Endpoint, MicroService};
use async_nats::Client;
use jetsource::projection::registry::{Entry, Registry};
use jetsource::projection::{
    EventParked, EventView, ProjectionError, ViewConfig, ViewHandle, ViewObserver, delete_version,
};
use jetsource::store::NewEvent;
use jetsource::{EventStore, StoreConfig};
use jetsource_telemetry::Metrics;
use jetsource_telemetry::metrics::Metrics as M;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::App;
use crate::views::{Running, ViewEntry};

mod queries;

/// How the projector runs.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// How every view consumes.
    pub view: ViewConfig,
    /// The registry bucket.
    pub registry_bucket: String,
    /// How long a `Min-Seq` query waits for its view.
    pub consistency_wait: Duration,
    /// How long an old version stays after a switch, for queries already under way.
    pub switch_grace: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            view: ViewConfig::default(),
            registry_bucket: "views".into(),
            consistency_wait: Duration::from_secs(5),
            switch_grace: Duration::from_secs(2),
        }
    }
}

/// The projector: views running, queries and operations answered.
#[derive(Clone)]
pub struct Projector {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) registry: Registry,
    pub(crate) config: ProjectorConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) kinds: Vec<Arc<dyn ViewEntry>>,
    pub(crate) active: RwLock<HashMap<&'static str, Arc<Running>>>,
    pub(crate) building: RwLock<HashMap<&'static str, Arc<Running>>>,
    endpoints: std::sync::Mutex<Vec<(async_nats::Subscriber, Arc<Endpoint>)>>,
    micro: MicroService,
    store: EventStore,
    faults: mpsc::Sender<(String, NewEvent)>,
}

/// Feeds view activity into the process metrics, and reports parked events as facts on
/// `evt.view.<view>` (so the command that caused them is told, see [`EventParked`]).
struct Observe {
    metrics: Arc<Metrics>,
    /// A span per applied event (only when traces are exported).
    trace_events: bool,
    version: u32,
    store: EventStore,
    faults: mpsc::Sender<(String, NewEvent)>,
}

impl ViewObserver for Observe {
    fn applied(&self, view: &str, events: u64) {
        self.metrics.projection_events.get_or_create(&M::view(view.to_owned())).inc_by(events);
    }
    fn progress(&self, view: &str, last_seq: u64, lag: u64) {
        self.metrics.projection_last_seq.get_or_create(&M::view(view.to_owned())).set(last_seq as i64);
        self.metrics.projection_lag.get_or_create(&M::view(view.to_owned())).set(lag as i64);
    }
    fn parked_count(&self, view: &str, count: u64) {
        self.metrics.projection_parked.get_or_create(&M::view(view.to_owned())).set(count as i64);
    }
    /// Traced: each event's status update (the `commands` view, which every command's
    /// events pass through) and every parked event, in whichever view. A span per event and
    /// view would triple the span volume for little more insight.
    fn span(&self, view: &str, event: &EventView<'_>) -> Option<tracing::Span> {
        (self.trace_events && view == "commands").then(|| self.event_span("project", view, event))
    }
    fn parked(&self, view: &str, event: &EventView<'_>, reason: &str) {
        if self.trace_events && view != "commands" {
            let span = self.event_span("park", view, event);
            span.record("otel.status_code", "error");
            tracing::warn!(parent: &span, view, seq = event.seq(), reason, "event parked");
        }
        self.report(view, event, reason);
    }
}

impl Observe {
    fn event_span(&self, name: &'static str, view: &str, event: &EventView<'_>) -> tracing::Span {
        let span = tracing::info_span!(
            "projector.event",
            otel.name = %format!("{name} {} into {view}", event.name),
            otel.status_code = tracing::field::Empty,
            service = "projector",
            view,
            event = event.name,
            aggregate_type = event.aggregate_type,
            aggregate_id = event.aggregate_id,
            stream_seq = event.seq(),
        );
        let trace = jetsource::TraceContext {
            traceparent: event.stored.headers.get("traceparent").map(|v| v.as_str().to_owned()),
            tracestate: event.stored.headers.get("tracestate").map(|v| v.as_str().to_owned()),
        };
        jetsource_telemetry::propagation::set_parent_from_trace(&span, &trace);
        span
    }

    fn report(&self, view: &str, event: &EventView<'_>, reason: &str) {
        if event.aggregate_type == EventParked::AGGREGATE_TYPE {
            return; // a fact about a view that a view cannot apply: reporting it would loop
        }
        let fact = EventParked::fact(&self.store, view, self.version, event, reason);
        let subject = format!("evt.{}.{view}", EventParked::AGGREGATE_TYPE);
        if self.faults.try_send((subject, fact)).is_err() {
            tracing::warn!(
                service = "projector",
                view,
                seq = event.seq(),
                "too many parked events to report; this one is not"
            );
        }
    }
}

/// Appends the parked-event facts the views report.
async fn report_faults(store: EventStore, mut faults: mpsc::Receiver<(String, NewEvent)>) {
    while let Some((subject, fact)) = faults.recv().await {
        // Until it is recorded: the command it fails must be told.
        let mut pause = jetsource::Backoff::new(Duration::from_millis(200), Duration::from_millis(6_400));
        while let Err(e) = store.append_fact(&subject, fact.clone()).await {
            tracing::warn!(service = "projector", error = %e, "cannot record a parked event; retrying");
            pause.wait().await;
        }
    }
}

impl Projector {
    /// Opens every view (the active version, and a version being rebuilt if a rebuild was under
    /// way) and subscribes the query and operator endpoints.
    ///
    /// # Errors
    /// When JetStream does not answer or a bucket of the topology is missing.
    pub async fn start(
        app: &App,
        client: Client,
        config: ProjectorConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ProjectionError> {
        let js = async_nats::jetstream::new(client.clone());
        let registry = Registry::open(&js, &config.registry_bucket).await?;
        let micro = MicroService::start(
            &client,
            "projector",
            env!("CARGO_PKG_VERSION"),
            "Views: queries qry.<view>[.<key>], operations projector.*",
        )
        .await
        .map_err(|e| ProjectionError::Unavailable { view: "*".into(), reason: e.to_string() })?;
        let store = EventStore::new(
            client.clone(),
            StoreConfig { app: app.name().to_owned(), service: "projector".into(), ..Default::default() },
        );
        let (faults, reports) = mpsc::channel(10_000);
        tokio::spawn(report_faults(store.clone(), reports));
        let inner = Arc::new(Inner {
            store,
            faults,
            client,
            registry,
            config,
            metrics,
            kinds: app.views().to_vec(),
            active: RwLock::default(),
            building: RwLock::default(),
            endpoints: std::sync::Mutex::default(),
            micro,
        });
        let projector = Self { inner };
        for kind in projector.inner.kinds.clone() {
            let (entry, _) = projector.inner.registry.ensure(kind.name()).await?;
            let running = projector.open(kind.as_ref(), entry.active).await?;
            projector
                .inner
                .active
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(kind.name(), Arc::new(running));
            if let Some(version) = entry.building {
                projector.resume_rebuild(Arc::clone(&kind), version).await?;
            }
        }
        queries::subscribe(&projector).await?;
        Ok(projector)
    }

    async fn open(&self, kind: &dyn ViewEntry, version: u32) -> Result<Running, ProjectionError> {
        let observer: Arc<dyn ViewObserver> = Arc::new(Observe {
            metrics: Arc::clone(&self.inner.metrics),
            trace_events: jetsource_telemetry::Telemetry::export_configured(),
            version,
            store: self.inner.store.clone(),
            faults: self.inner.faults.clone(),
        });
        kind.start(self.inner.client.clone(), version, self.inner.config.view.clone(), observer).await
    }

    pub(crate) fn micro(&self) -> &MicroService {
        &self.inner.micro
    }

    pub(crate) fn keep_endpoint(&self, subscriber: async_nats::Subscriber, stats: Arc<Endpoint>) {
        self.inner.endpoints.lock().unwrap_or_else(PoisonError::into_inner).push((subscriber, stats));
    }

    pub(crate) fn take_endpoints(&self) -> Vec<(async_nats::Subscriber, Arc<Endpoint>)> {
        std::mem::take(&mut *self.inner.endpoints.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The handle of a view's active version.
    pub fn view(&self, name: &str) -> Option<ViewHandle> {
        self.inner.active.read().unwrap_or_else(PoisonError::into_inner).get(name).map(|r| r.handle.clone())
    }

    /// Names of every view.
    pub fn view_names(&self) -> Vec<&'static str> {
        self.inner.kinds.iter().map(|k| k.name()).collect()
    }

    pub(crate) fn kind(&self, name: &str) -> Option<Arc<dyn ViewEntry>> {
        self.inner.kinds.iter().find(|k| k.name() == name).cloned()
    }

    /// Starts rebuilding `view` into a new version; returns that version. A rebuild already
    /// under way is reported, not started twice.
    ///
    /// # Errors
    /// Unknown view, or JetStream trouble.
    pub async fn rebuild(&self, view: &str) -> Result<u32, ProjectionError> {
        let unknown = || ProjectionError::Unavailable { view: view.to_owned(), reason: "no such view".into() };
        let kind = self.kind(view).ok_or_else(unknown)?;
        loop {
            let (entry, revision) = self.inner.registry.ensure(view).await?;
            if let Some(version) = entry.building {
                return Ok(version);
            }
            let version = entry.active + 1;
            let next = Entry { active: entry.active, building: Some(version) };
            if self.inner.registry.update(view, &next, revision).await? {
                self.resume_rebuild(kind, version).await?;
                tracing::info!(service = "projector", view, version, "rebuild started");
                return Ok(version);
            }
        }
    }

    /// Runs version `version` of a view from its first event and switches to it once it has
    /// caught up with the active one.
    async fn resume_rebuild(&self, kind: Arc<dyn ViewEntry>, version: u32) -> Result<(), ProjectionError> {
        let running = Arc::new(self.open(kind.as_ref(), version).await?);
        self.inner.building.write().unwrap_or_else(PoisonError::into_inner).insert(kind.name(), Arc::clone(&running));
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.switch_when_caught_up(kind.name(), running).await {
                tracing::error!(service = "projector", error = %e, "rebuild could not switch");
            }
        });
        Ok(())
    }

    async fn switch_when_caught_up(&self, view: &'static str, new: Arc<Running>) -> Result<(), ProjectionError> {
        let version = new.handle.version();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if new.stop.is_triggered() {
                return Ok(());
            }
            let Some(old) = self.inner.active.read().unwrap_or_else(PoisonError::into_inner).get(view).cloned() else {
                return Ok(());
            };
            if new.handle.applied() < old.handle.applied() || new.handle.lag() > 0 {
                continue;
            }
            let Some((entry, revision)) = self.inner.registry.get(view).await? else { continue };
            if entry.building != Some(version) {
                return Ok(());
            }
            if !self.inner.registry.update(view, &Entry { active: version, building: None }, revision).await? {
                continue;
            }
            // Queries read the new version from now on; the old one stops, and goes after a
            // grace period so queries already under way can finish.
            self.inner.active.write().unwrap_or_else(PoisonError::into_inner).insert(view, Arc::clone(&new));
            self.inner.building.write().unwrap_or_else(PoisonError::into_inner).remove(view);
            old.stop.trigger();
            self.inner.metrics.projection_rebuilds.get_or_create(&M::view(view)).inc();
            tracing::info!(service = "projector", view, version, "rebuild caught up; switched");
            tokio::time::sleep(self.inner.config.switch_grace).await;
            let js = async_nats::jetstream::new(self.inner.client.clone());
            let old_version = old.handle.version();
            delete_version(&js, view, old_version, &self.inner.config.view.stream).await?;
            return Ok(());
        }
    }

    /// Per view: version, rebuild under way, stream sequence reflected, lag, parked events,
    /// documents.
    pub async fn status(&self) -> Value {
        let js = async_nats::jetstream::new(self.inner.client.clone());
        let stream = js.get_stream(&self.inner.config.view.stream).await.ok();
        let mut views = Vec::new();
        for name in self.view_names() {
            let Some(active) = self.view(name) else { continue };
            let building =
                self.inner.building.read().unwrap_or_else(PoisonError::into_inner).get(name).map(|r| r.handle.clone());
            let lag = match &stream {
                Some(stream) => stream
                    .consumer_info(jetsource::projection::consumer_name(name, active.version()))
                    .await
                    .map(|i| i.num_pending + i.num_ack_pending as u64)
                    .unwrap_or(active.lag()),
                None => active.lag(),
            };
            views.push(json!({
                "view": name,
                "version": active.version(),
                "applied_seq": active.applied(),
                "lag": lag,
                "parked": active.parked(),
                "documents": active.documents().await,
                "rebuilding": building.map(|b| json!({"version": b.version(), "applied_seq": b.applied(), "lag": b.lag()})),
            }));
        }
        json!({ "views": views })
    }

    /// Serves until `shutdown`, then stops every worker.
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        let endpoints = self.take_endpoints();
        queries::serve(self.clone(), endpoints, shutdown.clone()).await;
        if shutdown.is_triggered() {
            tracing::info!(service = "projector", "stopping");
        } else {
            tracing::warn!(service = "projector", "query endpoints closed");
        }
        for running in self.inner.active.read().unwrap_or_else(PoisonError::into_inner).values() {
            running.stop.trigger();
        }
        for running in self.inner.building.read().unwrap_or_else(PoisonError::into_inner).values() {
            running.stop.trigger();
        }
    }
}
