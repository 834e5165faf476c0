//! One process's services: connect, provision, subscribe, serve `/healthz` `/readyz`
//! `/metrics`, and stop cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use factory_gateway::{Gateway, GatewayConfig};
use factory_logbook::Logbook;
use factory_notifier::Notifier;
use factory_projector::{Projector, ProjectorConfig};
use factory_saga::{Saga, SagaConfig};
use jetsource::topology::{ProvisionOptions, Report, Topology, provision};
use jetsource_runtime::Shutdown;
use jetsource_runtime::command::{CommandConfig, Deps, RunningService, router};
use jetsource_runtime::health::{self, Readiness};
use jetsource_runtime::registry::ServiceKind;
use jetsource_telemetry::Metrics;

/// Every service of the factory, in start order (from the registry).
pub fn all_services() -> Vec<&'static str> {
    crate::registry::app().service_names()
}

/// How to run one process.
#[derive(Debug, Clone)]
pub struct AppConfig {
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
    /// How the production saga runs.
    pub saga: SagaConfig,
}

impl AppConfig {
    /// Defaults: provision the shipped topology with replicas as declared, no HTTP.
    pub fn new(nats_url: impl Into<String>, services: Vec<&'static str>) -> Self {
        Self {
            nats_url: nats_url.into(),
            services,
            http: None,
            provision: true,
            replicas: None,
            topology: Topology::parse(crate::TOPOLOGY).unwrap_or_default(),
            commands: CommandConfig::default(),
            projector: ProjectorConfig::default(),
            gateway: GatewayConfig::default(),
            saga: SagaConfig::default(),
        }
    }
}

/// A process with its services subscribed, ready to serve.
pub struct App {
    client: Client,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    services: Vec<RunningService>,
    router: Option<router::Router>,
    projector: Option<Projector>,
    saga: Option<Saga>,
    notifier: Option<Notifier>,
    logbook: Option<Logbook>,
    gateway: Option<Arc<Gateway>>,
    local: Vec<&'static str>,
    http: Option<SocketAddr>,
    provisioned: Option<Report>,
}

impl App {
    /// Connects, provisions, and subscribes every service.
    ///
    /// # Errors
    /// NATS unreachable or too old, a topology the server refuses, a bucket missing.
    pub async fn build(config: AppConfig) -> anyhow::Result<Self> {
        let registry = Arc::new(crate::registry::app());
        for name in &config.services {
            registry.service_or_error(name)?;
        }
        let client = jetsource::connect(&config.nats_url, registry.name()).await?;
        let provisioned = if config.provision {
            let js = async_nats::jetstream::new(client.clone());
            let options = ProvisionOptions { replicas: config.replicas, ..Default::default() };
            let report = provision(&js, &config.topology, options).await.context("provisioning the topology")?;
            if report.has_drift() {
                tracing::warn!(report = %report, "the server's topology differs from the declaration; run `factory provision` to see how");
            }
            Some(report)
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new(registry.name()));
        metrics.nats_connected.set(1);
        let readiness = Readiness::new(client.clone());
        let mut services = Vec::new();
        let mut local = Vec::new();
        let (mut projector, mut saga, mut notifier, mut logbook, mut gateway) = (None, None, None, None, None);
        let mut deps = None;
        for spec in registry.services().iter().filter(|s| config.services.contains(&s.name)) {
            match spec.kind {
                ServiceKind::Commands => {
                    if deps.is_none() {
                        deps = Some(
                            Deps::open(registry.name(), client.clone(), Arc::clone(&metrics))
                                .await
                                .map_err(|e| anyhow::anyhow!(e))?,
                        );
                    }
                    let deps = deps.as_ref().context("command service dependencies")?;
                    for aggregate in registry.aggregates_of(spec.name) {
                        services.push(aggregate.start(deps, config.commands.clone()).await?);
                    }
                }
                ServiceKind::Projector => {
                    let mut projector_config = config.projector.clone();
                    projector_config.view.replicas = config.replicas.unwrap_or(1);
                    let views = readiness.check("views");
                    projector = Some(
                        Projector::start(&registry, client.clone(), projector_config, Arc::clone(&metrics)).await?,
                    );
                    views.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                ServiceKind::Other => match spec.name {
                    "saga" => {
                        saga = Some(Saga::start(client.clone(), config.saga.clone(), Arc::clone(&metrics)).await?)
                    }
                    "notifier" => notifier = Some(Notifier::start(client.clone(), Arc::clone(&metrics)).await?),
                    "logbook" => logbook = Some(Logbook::start(client.clone()).await?),
                    "gateway" => {
                        let addr = config.http.context("the gateway needs an HTTP address (--http)")?;
                        let gateway_config = GatewayConfig { addr, ..config.gateway.clone() };
                        // Its own connection: the edge's requests and replies do not queue behind
                        // the services' traffic in one connection task.
                        let edge = jetsource::connect(&config.nats_url, "factory-gateway").await?;
                        gateway = Some(Gateway::new(
                            Arc::clone(&registry),
                            edge,
                            gateway_config,
                            Arc::clone(&metrics),
                            readiness.clone(),
                        )?);
                    }
                    other => anyhow::bail!("service {other} is registered, but this process has no way to start it"),
                },
            }
            local.push(spec.name);
        }
        let command_services: Vec<&'static str> = registry
            .services()
            .iter()
            .filter(|s| s.kind == ServiceKind::Commands && local.contains(&s.name))
            .map(|s| s.name)
            .collect();
        let router = if command_services.is_empty() {
            None
        } else {
            Some(router::subscribe(Arc::clone(&registry), client.clone(), command_services).await?)
        };
        // A round trip on this connection: once the server answers it has processed every
        // subscription sent before, so nobody is told we are up before we can be reached.
        async_nats::jetstream::new(client.clone()).query_account().await.context("JetStream does not answer")?;
        Ok(Self {
            client,
            metrics,
            readiness,
            services,
            router,
            projector,
            saga,
            notifier,
            logbook,
            gateway,
            local,
            http: config.http,
            provisioned,
        })
    }

    /// The provisioning report, when the app provisioned.
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
        if let Some(router) = self.router {
            tasks.spawn(router::run(router, shutdown.clone()));
        }
        for service in self.services {
            tasks.spawn(service.run_until_stopped(shutdown.clone()));
        }
        if let Some(projector) = self.projector {
            tasks.spawn(projector.run_until_stopped(shutdown.clone()));
        }
        if let Some(saga) = self.saga {
            tasks.spawn(saga.run_until_stopped(shutdown.clone()));
        }
        if let Some(notifier) = self.notifier {
            tasks.spawn(notifier.run_until_stopped(shutdown.clone()));
        }
        if let Some(logbook) = self.logbook {
            tasks.spawn(logbook.run_until_stopped(shutdown.clone()));
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

    /// Serves until `shutdown` (see [`App::serve`]).
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        if let Err(e) = self.serve(shutdown, |_| {}).await {
            tracing::error!(error = %e, "stopped");
        }
    }
}
