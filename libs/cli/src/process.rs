//! One process's services, assembled from the registry: connect, provision, subscribe any subset
//! of the application's services, serve `/healthz` `/readyz` `/metrics` (or the whole HTTP edge),
//! and stop cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use futures::future::BoxFuture;
use jetsource::topology::{ProvisionOptions, Report, Topology, provision};
use jetsource_http::{Gateway, GatewayConfig};
use jetsource_runtime::archiver::ArchiverService;
use jetsource_runtime::command::{CommandConfig, Deps, router};
use jetsource_runtime::health::{self, Readiness};
use jetsource_runtime::logbook::Logbook;
use jetsource_runtime::projector::{Projector, ProjectorConfig};
use jetsource_runtime::registry::{ServiceKind, StartCtx};
use jetsource_runtime::{App, Shutdown};
use jetsource_telemetry::Metrics;

/// How to run one process of an application.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// The services to run, by registered name.
    pub services: Vec<&'static str>,
    /// Where to serve `/healthz`, `/readyz`, `/metrics` (none: not served).
    pub http: Option<SocketAddr>,
    /// Provision the topology before starting (never destructive).
    pub provision: bool,
    /// Replicas for provisioned streams and buckets.
    pub replicas: Option<usize>,
    /// The topology to provision.
    pub topology: Topology,
    /// Limits of the command services.
    pub commands: CommandConfig,
    /// How the projector runs.
    pub projector: ProjectorConfig,
    /// The gateway's limits and authentication (its address is `http`).
    pub gateway: GatewayConfig,
}

impl ProcessConfig {
    /// Defaults: provision `topology` with replicas as declared, no HTTP.
    pub fn new(nats_url: impl Into<String>, services: Vec<&'static str>, topology: Topology) -> Self {
        Self {
            nats_url: nats_url.into(),
            services,
            http: None,
            provision: true,
            replicas: None,
            topology,
            commands: CommandConfig::default(),
            projector: ProjectorConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

/// One started service, waiting for the signal to run until it.
type Runner = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

/// A process with its services subscribed, ready to serve.
pub struct Process {
    client: Client,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    runners: Vec<Runner>,
    gateway: Option<Arc<Gateway>>,
    local: Vec<&'static str>,
    http: Option<SocketAddr>,
    provisioned: Option<Report>,
}

impl Process {
    /// Connects, provisions, and subscribes every service `config` names.
    ///
    /// # Errors
    /// A service the registry does not know (the error lists the known ones), NATS unreachable
    /// or too old, a topology the server refuses, a bucket missing.
    pub async fn build(app: Arc<App>, config: ProcessConfig) -> anyhow::Result<Self> {
        for name in &config.services {
            app.service_or_error(name)?;
        }
        let client = jetsource::connect(&config.nats_url, app.name()).await?;
        let provisioned = if config.provision {
            let js = async_nats::jetstream::new(client.clone());
            let options = ProvisionOptions { replicas: config.replicas, ..Default::default() };
            let report = provision(&js, &config.topology, options).await.context("provisioning the topology")?;
            if report.has_drift() {
                tracing::warn!(report = %report, "the server's topology differs from the declaration; run `provision` to see how");
            }
            Some(report)
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new(app.name()));
        metrics.nats_connected.set(1);
        let readiness = Readiness::new(client.clone());
        let mut runners: Vec<Runner> = Vec::new();
        let mut local = Vec::new();
        let mut gateway = None;
        let mut deps = None;
        for spec in app.services().iter().filter(|s| config.services.contains(&s.name)) {
            match spec.kind {
                ServiceKind::Commands => {
                    if deps.is_none() {
                        deps = Some(
                            Deps::open(app.name(), client.clone(), Arc::clone(&metrics))
                                .await
                                .map_err(|e| anyhow::anyhow!(e))?,
                        );
                    }
                    let deps = deps.as_ref().context("command service dependencies")?;
                    for aggregate in app.aggregates_of(spec.name) {
                        let service = aggregate.start(deps, config.commands.clone()).await?;
                        runners.push(Box::new(move |stop| Box::pin(service.run_until_stopped(stop))));
                    }
                }
                ServiceKind::Projector => {
                    let mut projector_config = config.projector.clone();
                    projector_config.view.replicas = config.replicas.unwrap_or(1);
                    let views = readiness.check("views");
                    let projector =
                        Projector::start(&app, client.clone(), projector_config, Arc::clone(&metrics)).await?;
                    views.store(true, std::sync::atomic::Ordering::Relaxed);
                    runners.push(Box::new(move |stop| Box::pin(projector.run_until_stopped(stop))));
                }
                ServiceKind::Archiver => {
                    let archiver = ArchiverService::start(client.clone(), &config.topology, Arc::clone(&metrics))
                        .await
                        .map_err(|e| anyhow::anyhow!("archiver: {e}"))?;
                    runners.push(Box::new(move |stop| Box::pin(archiver.run_until_stopped(stop))));
                }
                ServiceKind::Logbook => {
                    let logbook = Logbook::start(client.clone()).await?;
                    runners.push(Box::new(move |stop| Box::pin(logbook.run_until_stopped(stop))));
                }
                ServiceKind::Edge => {
                    let addr = config.http.context("the gateway needs an HTTP address (--http)")?;
                    let gateway_config = GatewayConfig { addr, ..config.gateway.clone() };
                    // Its own connection: the edge's requests and replies do not queue behind the
                    // services' traffic in one connection task.
                    let edge = jetsource::connect(&config.nats_url, &format!("{}-gateway", app.name())).await?;
                    gateway = Some(Gateway::new(
                        Arc::clone(&app),
                        edge,
                        gateway_config,
                        Arc::clone(&metrics),
                        readiness.clone(),
                    )?);
                }
                ServiceKind::Custom => {
                    let starter = spec
                        .starter
                        .clone()
                        .with_context(|| format!("service {} is registered without a way to start it", spec.name))?;
                    let ctx = StartCtx { client: client.clone(), metrics: Arc::clone(&metrics), app: Arc::clone(&app) };
                    let started = starter(ctx).await.map_err(|e| anyhow::anyhow!("{}: {e}", spec.name))?;
                    runners.push(started);
                }
            }
            local.push(spec.name);
        }
        let command_services: Vec<&'static str> = app
            .services()
            .iter()
            .filter(|s| s.kind == ServiceKind::Commands && local.contains(&s.name))
            .map(|s| s.name)
            .collect();
        if !command_services.is_empty() {
            let router = router::subscribe(Arc::clone(&app), client.clone(), command_services).await?;
            runners.push(Box::new(move |stop| Box::pin(router::run(router, stop))));
        }
        // A round trip on this connection: once the server answers it has processed every
        // subscription sent before, so nobody is told we are up before we can be reached.
        async_nats::jetstream::new(client.clone()).query_account().await.context("JetStream does not answer")?;
        Ok(Self { client, metrics, readiness, runners, gateway, local, http: config.http, provisioned })
    }

    /// The provisioning report, when the process provisioned.
    pub fn provisioned(&self) -> Option<&Report> {
        self.provisioned.as_ref()
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The process metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Names of the services this process runs.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.local.clone()
    }

    /// Binds the HTTP address (if any) and serves until `shutdown`; returns once every service
    /// has stopped. `on_bound` receives the bound address (port 0 picks a free one).
    ///
    /// # Errors
    /// When the HTTP address cannot be bound.
    pub async fn serve(self, shutdown: Shutdown, on_bound: impl FnOnce(Option<SocketAddr>)) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let http = match (self.http, self.gateway) {
            (Some(_), Some(gateway)) => {
                let (bound, server) = gateway.serve(shutdown.clone()).await?;
                tasks.spawn(async move {
                    let _ = server.await;
                });
                Some(bound)
            }
            (Some(addr), None) => {
                let (bound, server) = health::serve_operational(
                    addr,
                    self.readiness.clone(),
                    Arc::clone(&self.metrics),
                    shutdown.clone(),
                )
                .await
                .with_context(|| format!("binding {addr}"))?;
                tasks.spawn(async move {
                    let _ = server.await;
                });
                Some(bound)
            }
            (None, _) => None,
        };
        on_bound(http);
        for runner in self.runners {
            tasks.spawn(runner(shutdown.clone()));
        }
        shutdown.wait().await;
        if tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("services did not stop within 10 s; leaving them");
            tasks.abort_all();
        }
        // Send what is buffered (replies of the last commands) before the connection goes.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        Ok(())
    }

    /// Serves until `shutdown` (see [`Process::serve`]).
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        if let Err(e) = self.serve(shutdown, |_| {}).await {
            tracing::error!(error = %e, "stopped");
        }
    }
}
