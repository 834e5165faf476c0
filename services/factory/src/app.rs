//! One process's services: connect, provision, subscribe, serve `/healthz` `/readyz`
//! `/metrics`, and stop cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use factory_commands::{CommandConfig, Deps, ServiceKind};
use factory_gateway::{Gateway, GatewayConfig};
use factory_logbook::Logbook;
use factory_notifier::Notifier;
use factory_projector::{Projector, ProjectorConfig};
use factory_runtime::Shutdown;
use factory_runtime::health::{self, Readiness};
use factory_saga::{Saga, SagaConfig};
use jetsource::topology::{ProvisionOptions, Report, Topology, provision};
use jetsource_telemetry::Metrics;

/// A service `factory run` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ServiceName {
    /// Product commands (`cmd.product.*`).
    Catalog,
    /// Stock commands (`cmd.stock.*`).
    Stock,
    /// Production order commands (`cmd.order.*`).
    Production,
    /// Views and queries (`qry.*`), rebuilds and parked events (`projector.*`).
    Projector,
    /// The production saga: reserves, releases and consumes stock for orders.
    Saga,
    /// Asynchronous outcomes of commands to `notify.<command_id>`.
    Notifier,
    /// Queries over the shipped logs (`logbook.query`).
    Logbook,
    /// The HTTP edge (on `--http`): commands, views, aggregates, status, auth.
    Gateway,
}

impl ServiceName {
    /// Every service, in start order.
    pub const ALL: [ServiceName; 8] = [
        ServiceName::Catalog,
        ServiceName::Stock,
        ServiceName::Production,
        ServiceName::Projector,
        ServiceName::Saga,
        ServiceName::Notifier,
        ServiceName::Logbook,
        ServiceName::Gateway,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Catalog => "catalog",
            ServiceName::Stock => "stock",
            ServiceName::Production => "production",
            ServiceName::Projector => "projector",
            ServiceName::Saga => "saga",
            ServiceName::Notifier => "notifier",
            ServiceName::Logbook => "logbook",
            ServiceName::Gateway => "gateway",
        }
    }

    fn command_service(self) -> Option<ServiceKind> {
        match self {
            ServiceName::Catalog => Some(ServiceKind::Catalog),
            ServiceName::Stock => Some(ServiceKind::Stock),
            ServiceName::Production => Some(ServiceKind::Production),
            _ => None,
        }
    }
}

/// How to run one process.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// The services to run.
    pub services: Vec<ServiceName>,
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
    pub fn new(nats_url: impl Into<String>, services: Vec<ServiceName>) -> Self {
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
    services: Vec<factory_commands::RunningService>,
    router: Option<factory_commands::router::Router>,
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
        let client = jetsource::connect(&config.nats_url, "factory").await?;
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
        let metrics = Arc::new(Metrics::new());
        metrics.nats_connected.set(1);
        let readiness = Readiness::new(client.clone());
        let mut services = Vec::new();
        let mut local = Vec::new();
        let kinds: Vec<_> = config.services.iter().filter_map(|name| name.command_service()).collect();
        if !kinds.is_empty() {
            let deps = Deps::open(client.clone(), Arc::clone(&metrics)).await.map_err(|e| anyhow::anyhow!(e))?;
            for kind in kinds {
                services.push(kind.build(&deps, config.commands.clone()).await?);
                local.push(kind.name());
            }
        }
        let router = if local.is_empty() {
            None
        } else {
            Some(factory_commands::router::subscribe(client.clone(), local.clone()).await?)
        };
        let projector = if config.services.contains(&ServiceName::Projector) {
            let mut projector_config = config.projector.clone();
            projector_config.view.replicas = config.replicas.unwrap_or(1);
            let views = readiness.check("views");
            let projector = Projector::start(client.clone(), projector_config, Arc::clone(&metrics)).await?;
            views.store(true, std::sync::atomic::Ordering::Relaxed);
            local.push("projector");
            Some(projector)
        } else {
            None
        };
        let saga = if config.services.contains(&ServiceName::Saga) {
            local.push("saga");
            Some(Saga::start(client.clone(), config.saga.clone(), Arc::clone(&metrics)).await?)
        } else {
            None
        };
        let notifier = if config.services.contains(&ServiceName::Notifier) {
            local.push("notifier");
            Some(Notifier::start(client.clone(), Arc::clone(&metrics)).await?)
        } else {
            None
        };
        let logbook = if config.services.contains(&ServiceName::Logbook) {
            local.push("logbook");
            Some(Logbook::start(client.clone()).await?)
        } else {
            None
        };
        let gateway = match (config.services.contains(&ServiceName::Gateway), config.http) {
            (true, Some(addr)) => {
                let gateway_config = GatewayConfig { addr, ..config.gateway.clone() };
                local.push("gateway");
                // Its own connection: the edge's requests and replies do not queue behind the
                // services' traffic in one connection task.
                let edge = jetsource::connect(&config.nats_url, "factory-gateway").await?;
                Some(Gateway::new(edge, gateway_config, Arc::clone(&metrics), readiness.clone())?)
            }
            (true, None) => anyhow::bail!("the gateway needs an HTTP address (--http)"),
            _ => None,
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
            tasks.spawn(factory_commands::router::run(router, shutdown.clone()));
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
