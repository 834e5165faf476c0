//! `factory`: the command-line entry point. See `factory --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use factory::app::{App, AppConfig, all_services};
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource::{EventStore, StoreConfig, Until};
use jetsource_cli::managed::ManagedServer;
use jetsource_runtime::Shutdown;
use jetsource_telemetry::{Telemetry, TelemetryConfig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// JSON and NATS headers allocate per message; mimalloc keeps that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The jetsource reference factory: products, stock and production orders, event-sourced on
/// NATS JetStream.
#[derive(Debug, Parser)]
#[command(
    name = "factory",
    version,
    propagate_version = true,
    after_help = "Start with `factory up`; every command has --help."
)]
struct Cli {
    /// Log filter (`info`, `debug`, `jetsource_runtime=debug`); logs are JSON lines on stdout.
    #[arg(long, global = true, env = "FACTORY_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in one process. Without --nats-url it starts the pinned nats-server
    /// with JetStream (files under --data-dir) and stops it on exit. Ctrl-C or SIGTERM stops
    /// cleanly.
    Up(UpArgs),
    /// Run some services against a running NATS (as each Kubernetes Deployment does).
    Run(RunArgs),
    /// Create the declared streams, buckets and consumers; report differences. Nothing that
    /// could lose data is changed without --force.
    Provision(ProvisionArgs),
    /// Show an aggregate's state from the event store, now or as it was (--version, --at).
    Inspect(InspectArgs),
    /// Send one command over NATS request/reply and print the reply (what any NATS client
    /// does with `cmd.<type>.<id>.<command>`).
    Send(SendArgs),
    /// Read a view: one document by key, or a page of documents (`qry.<view>[.<key>]`).
    Query(QueryArgs),
    /// Operate the views: status, rebuild without downtime, retry parked events.
    Projections(ProjectionsArgs),
    /// Is the bus up and JetStream answering, which services answer ($SRV discovery, with
    /// instances and versions), how far behind each view is: the same report as GET /status.
    /// Exits non-zero unless the overall status is `ok`.
    Status(NatsArgs),
    /// Shipped log records (WARN and above unless FACTORY_LOG_SHIP says otherwise) from the
    /// LOGS stream, through the logbook service: by service, lowest level and trace id; with
    /// --follow, new records as they come.
    Logs(LogsArgs),
    /// Generate the Kubernetes files derived from nats/: the topology as NACK resources
    /// (k8s/overlays/{dev,prod}/topology.yaml) and the NATS server configuration with the
    /// accounts (k8s/base/nats/). With --check, only report files that differ.
    K8s(K8sArgs),
}

#[derive(Debug, Args)]
struct K8sArgs {
    /// The kustomize tree to write into.
    #[arg(long, default_value = "k8s")]
    dir: PathBuf,
    /// Change nothing; fail if a committed file differs from a fresh generation.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Args)]
struct LogsArgs {
    /// Only this service (stock, saga, gateway, ...).
    #[arg(long)]
    service: Option<String>,
    /// Only this level and above: trace, debug, info, warn, error.
    #[arg(long)]
    level: Option<String>,
    /// Only records of this trace (32 hex digits, as in x-trace-id and every error).
    #[arg(long = "trace", value_name = "TRACE_ID")]
    trace_id: Option<String>,
    /// How many of the newest records to show first (1-1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Keep printing new records until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
    /// Print the raw JSON records instead of one readable line each.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// View: stock, warehouse, orders, products or commands.
    view: String,
    /// Key (stock: <sku>@<warehouse>; warehouse name; order, product or command id); leave
    /// out to list.
    key: Option<String>,
    /// List keys starting with this.
    #[arg(long, conflicts_with = "key")]
    prefix: Option<String>,
    /// Page size (1-1000, default 100).
    #[arg(long, conflicts_with = "key")]
    limit: Option<usize>,
    /// Continue after this key (the `next` of the previous page).
    #[arg(long, conflicts_with = "key")]
    after: Option<String>,
    /// Wait until the view reflects this stream sequence (the `stream_seq` of a command reply).
    #[arg(long)]
    min_seq: Option<u64>,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Args)]
struct ProjectionsArgs {
    #[command(subcommand)]
    action: ProjectionsAction,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Subcommand)]
enum ProjectionsAction {
    /// Per view: version, last stream sequence applied, lag, parked events, rebuild under way.
    Status,
    /// Build a new version of a view from the first event while the current one keeps
    /// answering; switch queries over once it has caught up; remove the old one.
    Rebuild {
        /// The view.
        view: String,
        /// Return at once instead of waiting for the switch.
        #[arg(long)]
        no_wait: bool,
    },
    /// Apply a view's parked events again (all, or one aggregate's with --subject).
    Retry {
        /// The view.
        view: String,
        /// Only this aggregate, by subject (evt.stock.bolt@main).
        #[arg(long)]
        subject: Option<String>,
    },
}

#[derive(Debug, Args)]
struct SendArgs {
    /// Aggregate type: product, stock or order.
    #[arg(value_name = "TYPE")]
    aggregate_type: String,
    /// Aggregate id (stock ids are <sku>@<warehouse>).
    id: String,
    /// Command name (receive, reserve, plan, ...).
    command: String,
    /// JSON body (`{}` when left out).
    #[arg(default_value = "{}")]
    body: String,
    /// Idempotency key: the same key with the same request answers the first outcome.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Fail with precondition_failed unless the aggregate is at this version.
    #[arg(long)]
    expected_version: Option<u64>,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Args)]
struct NatsArgs {
    /// NATS server URL(s), comma-separated for a cluster; credentials as nats://user:password@host:4222
    /// (percent-encode special characters).
    #[arg(
        long,
        global = true,
        env = "FACTORY_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Use this NATS instead of starting the managed server.
    #[arg(long, env = "FACTORY_NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
    /// Where the managed server keeps its JetStream files.
    #[arg(long, env = "FACTORY_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    /// Client port of the managed server.
    #[arg(long, env = "FACTORY_NATS_PORT", default_value_t = 4222)]
    nats_port: u16,
    /// Monitoring port of the managed server.
    #[arg(long, env = "FACTORY_NATS_MONITOR_PORT", default_value_t = 8222)]
    nats_monitor_port: u16,
    /// HTTP address of the gateway (API, /status, /healthz, /readyz, /metrics). Beyond
    /// loopback it needs authentication: FACTORY_JWT_HS256_SECRET, FACTORY_JWT_PUBLIC_KEY_FILE
    /// or FACTORY_API_KEYS (name:role:key,...).
    #[arg(long, env = "FACTORY_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The services to run (see `factory run --help` for the list).
    #[arg(required = true, value_parser = clap::builder::PossibleValuesParser::new(service_values()))]
    services: Vec<String>,
    #[command(flatten)]
    nats: NatsArgs,
    /// HTTP address: the gateway's API, or /healthz, /readyz and /metrics for other services.
    #[arg(long, env = "FACTORY_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Replicas of streams and buckets provisioned at start (1 dev, 3 prod).
    #[arg(long, env = "FACTORY_REPLICAS")]
    replicas: Option<usize>,
    /// Do not provision the topology at start.
    #[arg(long)]
    no_provision: bool,
}

#[derive(Debug, Args)]
struct ProvisionArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Report what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also apply changes that could lose data (shorter retention, fewer subjects...).
    #[arg(long)]
    force: bool,
    /// Replicas for every stream and bucket (1 dev, 3 prod).
    #[arg(long, env = "FACTORY_REPLICAS")]
    replicas: Option<usize>,
    /// A topology file instead of the one built in (nats/topology.toml).
    #[arg(long)]
    topology: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Aggregate type: product, stock or order.
    #[arg(value_name = "TYPE")]
    aggregate_type: String,
    /// Aggregate id (stock ids are <sku>@<warehouse>).
    id: String,
    /// Show the state as of this dense version.
    #[arg(long, conflicts_with = "at")]
    version: Option<u64>,
    /// Show the state as of this time (RFC 3339, e.g. 2026-11-27T10:00:00Z).
    #[arg(long)]
    at: Option<String>,
    /// Also list the events (CloudEvents, structured JSON).
    #[arg(long)]
    events: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

/// The registered services with their descriptions, as `run` takes them.
fn service_values() -> Vec<clap::builder::PossibleValue> {
    factory::registry::app()
        .services()
        .iter()
        .map(|s| clap::builder::PossibleValue::new(s.name).help(s.description.clone()))
        .collect()
}

/// The registered name matching `name` (clap has checked it is one).
fn service_name(name: &str) -> anyhow::Result<&'static str> {
    all_services().into_iter().find(|s| *s == name).with_context(|| format!("no service {name:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("factory: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("factory: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up(args, cli.log).await,
        Command::Run(args) => run_services(args, cli.log).await,
        Command::Provision(args) => provision_command(args).await,
        Command::Inspect(args) => inspect_command(args).await,
        Command::Send(args) => send_command(args).await,
        Command::Query(args) => query_command(args).await,
        Command::Projections(args) => projections_command(args).await,
        Command::Status(nats) => status_command(nats).await,
        Command::Logs(args) => logs_command(args).await,
        Command::K8s(args) => k8s_command(&args),
    }
}

fn k8s_command(args: &K8sArgs) -> anyhow::Result<()> {
    let topology = Topology::parse(factory::TOPOLOGY)?;
    let files = factory::k8s::generate(&topology).map_err(anyhow::Error::msg)?;
    if args.check {
        let drift = factory::k8s::drift(&args.dir, &files);
        if drift.is_empty() {
            println!("{} generated files are up to date", files.len());
            return Ok(());
        }
        for path in &drift {
            println!("differs: {}", args.dir.join(path).display());
        }
        anyhow::bail!("{} generated files are stale: run `factory k8s`", drift.len());
    }
    factory::k8s::write(&args.dir, &files)?;
    for file in &files {
        println!("wrote {}", args.dir.join(&file.path).display());
    }
    Ok(())
}

async fn logs_command(args: LogsArgs) -> anyhow::Result<()> {
    let query = jetsource_runtime::logbook::LogQuery {
        service: args.service.clone(),
        level: args.level.clone(),
        trace_id: args.trace_id.clone(),
        limit: Some(args.limit),
    };
    query.validate().map_err(anyhow::Error::msg)?;
    let client = jetsource::connect(&args.nats.nats_url, "factory-logs").await?;
    let show = |record: &serde_json::Value| {
        if args.json {
            println!("{record}");
        } else {
            println!("{}", readable(record));
        }
    };
    // Subscribe first so nothing falls between the history and the live records.
    let mut live = if args.follow {
        let mut subscriptions = Vec::new();
        for subject in query.subjects().map_err(anyhow::Error::msg)? {
            subscriptions.push(client.subscribe(subject).await?);
        }
        Some(futures::stream::select_all(subscriptions))
    } else {
        None
    };
    let page = request(
        &client,
        jetsource_runtime::logbook::QUERY_SUBJECT.into(),
        async_nats::HeaderMap::new(),
        serde_json::to_string(&query)?,
    )
    .await?;
    let mut last_seen = String::new();
    for record in page["records"].as_array().into_iter().flatten() {
        show(record);
        last_seen = record["timestamp"].as_str().unwrap_or_default().to_owned();
    }
    let Some(live) = live.as_mut() else { return Ok(()) };
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    loop {
        let message = tokio::select! {
            () = shutdown.wait() => return Ok(()),
            next = futures::StreamExt::next(live) => match next {
                Some(message) => message,
                None => return Ok(()),
            },
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&message.payload) else { continue };
        if query.trace_id.as_ref().is_some_and(|t| record["trace_id"].as_str() != Some(t.as_str())) {
            continue;
        }
        if record["timestamp"].as_str().is_some_and(|t| t <= last_seen.as_str()) {
            continue; // already shown as history
        }
        show(&record);
    }
}

/// `timestamp LEVEL service message key=value… trace=…`.
fn readable(record: &serde_json::Value) -> String {
    let text = |key: &str| record[key].as_str().unwrap_or_default().to_owned();
    let mut line =
        format!("{} {:5} {:10} {}", text("timestamp"), text("level").to_uppercase(), text("service"), text("message"));
    if let Some(fields) = record.as_object() {
        for (key, value) in fields {
            if matches!(
                key.as_str(),
                "timestamp" | "level" | "service" | "message" | "instance" | "target" | "trace_id" | "span_id"
            ) {
                continue;
            }
            match value.as_str() {
                Some(s) => line.push_str(&format!(" {key}={s}")),
                None => line.push_str(&format!(" {key}={value}")),
            }
        }
    }
    if let Some(trace) = record["trace_id"].as_str() {
        line.push_str(&format!(" trace={trace}"));
    }
    line
}

async fn status_command(nats: NatsArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&nats.nats_url, "factory-cli").await?;
    let (_, report) = jetsource_http::status::status(&factory::registry::app(), &client).await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    match report["status"].as_str() {
        Some("ok") => Ok(()),
        other => anyhow::bail!("the factory is {}", other.unwrap_or("unknown")),
    }
}

fn telemetry(service: &str, log: Option<String>) -> anyhow::Result<Telemetry> {
    let config = TelemetryConfig {
        service: service.to_owned(),
        instance: jetsource_runtime::micro::instance_name(),
        filter: log,
        ship: None,
        env_prefix: "FACTORY".into(),
    };
    Ok(Telemetry::init(&config)?)
}

async fn up(args: UpArgs, log: Option<String>) -> anyhow::Result<()> {
    let telemetry = telemetry("factory", log)?;
    let managed = match &args.nats_url {
        Some(_) => None,
        None => Some(ManagedServer::start("factory", &args.data_dir, args.nats_port, args.nats_monitor_port)?),
    };
    let url = args.nats_url.clone().or_else(|| managed.as_ref().map(ManagedServer::url)).unwrap_or_default();
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let mut config = AppConfig::new(&url, all_services());
    config.http = Some(args.http);
    config.gateway.auth = jetsource_http::AuthConfig::from_env("FACTORY").map_err(anyhow::Error::msg)?;
    let result = match App::build(config).await {
        Ok(app) => {
            telemetry.ship_logs(app.client().clone(), Some(Arc::clone(app.metrics())));
            let nats = match &managed {
                Some(m) => format!(
                    "{url}  (managed nats-server {}, JetStream in {}, monitoring {})",
                    m.version(),
                    m.store_dir().display(),
                    m.monitor_url()
                ),
                None => format!("{}  (given with --nats-url)", jetsource::connect::redact(&url)),
            };
            let topology = app.provisioned().map(summary).unwrap_or_default();
            let services = app.service_names().join(", ");
            app.serve(shutdown, |http| {
                println!("factory up: every service in one process");
                println!("  NATS      {nats}");
                println!("  topology  {topology}");
                println!(
                    "  services  {services}: cmd.<product|stock|order>.<id>.<command>, $SRV discovery; router on cmd.>"
                );
                if let Some(http) = http {
                    println!(
                        "  HTTP      http://{http}  (API /v1/..., /status, /openapi.json, /healthz /readyz /metrics)"
                    );
                }
                println!("Ctrl-C stops everything.");
            })
            .await
        }
        Err(e) => Err(e),
    };
    telemetry.shutdown().await;
    if let Some(managed) = managed {
        managed.stop();
    }
    result
}

async fn run_services(args: RunArgs, log: Option<String>) -> anyhow::Result<()> {
    let names: Vec<&'static str> = args.services.iter().map(|s| service_name(s)).collect::<Result<_, _>>()?;
    let telemetry = telemetry(&names.join("+"), log)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let mut config = AppConfig::new(&args.nats.nats_url, names.clone());
    config.http = Some(args.http);
    config.gateway.auth = jetsource_http::AuthConfig::from_env("FACTORY").map_err(anyhow::Error::msg)?;
    config.provision = !args.no_provision;
    config.replicas = args.replicas;
    let result = match App::build(config).await {
        Ok(app) => {
            telemetry.ship_logs(app.client().clone(), Some(Arc::clone(app.metrics())));
            app.serve(shutdown, |http| {
                tracing::info!(services = %names.join(","), nats = %jetsource::connect::redact(&args.nats.nats_url), http = ?http, "running");
            })
            .await
        }
        Err(e) => Err(e),
    };
    telemetry.shutdown().await;
    result
}

fn summary(report: &jetsource::topology::Report) -> String {
    report
        .items
        .iter()
        .map(|item| {
            let action = match item.action {
                jetsource::topology::Action::Created => "created",
                jetsource::topology::Action::Unchanged => "ok",
                jetsource::topology::Action::Updated => "updated",
                jetsource::topology::Action::Drifted => "differs (see factory provision)",
            };
            format!("{} {} {action}", item.kind, item.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn provision_command(args: ProvisionArgs) -> anyhow::Result<()> {
    let topology = match &args.topology {
        Some(path) => Topology::load(path)?,
        None => Topology::parse(factory::TOPOLOGY)?,
    };
    let client = jetsource::connect(&args.nats.nats_url, "factory-provision").await?;
    let js = async_nats::jetstream::new(client);
    let options = ProvisionOptions { replicas: args.replicas, force: args.force, dry_run: args.dry_run };
    let report = provision(&js, &topology, options).await?;
    print!("{report}");
    if report.has_drift() {
        anyhow::bail!("some declared settings are not in place (see above)");
    }
    Ok(())
}

async fn inspect_command(args: InspectArgs) -> anyhow::Result<()> {
    let registry = factory::registry::app();
    let kind = registry.aggregate_or_error(&args.aggregate_type)?;
    let id = kind.id(&args.id).map_err(anyhow::Error::msg)?;
    let until = match (args.version, &args.at) {
        (Some(version), _) => Until::Version(version),
        (None, Some(at)) => Until::Time(
            OffsetDateTime::parse(at, &Rfc3339).with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?,
        ),
        (None, None) => Until::End,
    };
    let client = jetsource::connect(&args.nats.nats_url, "factory-inspect").await?;
    let store = EventStore::new(client, StoreConfig { app: registry.name().to_owned(), ..Default::default() });
    let value = kind.inspect(&store, &id, until, args.events).await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn send_command(args: SendArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&args.nats.nats_url, "factory-send").await?;
    let subject = format!("cmd.{}.{}.{}", args.aggregate_type, args.id, args.command);
    let mut headers = async_nats::HeaderMap::new();
    if let Some(key) = &args.idempotency_key {
        headers.insert("Idempotency-Key", key.as_str());
    }
    if let Some(version) = args.expected_version {
        headers.insert("Expected-Version", version.to_string());
    }
    let request = client.request_with_headers(subject.clone(), headers, args.body.into());
    let reply = match tokio::time::timeout(std::time::Duration::from_secs(10), request).await {
        Err(_) => anyhow::bail!("no reply to {subject} within 10 s"),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            anyhow::bail!("nothing answers {subject}: is `factory up` running?")
        }
        Ok(reply) => reply?,
    };
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or(serde_json::Value::Null);
    println!("{}", serde_json::to_string_pretty(&body)?);
    match jetsource_runtime::reply::read_reply(&reply) {
        Ok(_) => Ok(()),
        Err(error) => anyhow::bail!("{error}"),
    }
}

/// Sends a request and prints the JSON reply; an error reply fails the command.
async fn request(
    client: &async_nats::Client,
    subject: String,
    headers: async_nats::HeaderMap,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let request = client.request_with_headers(subject.clone(), headers, body.into());
    let reply = match tokio::time::timeout(std::time::Duration::from_secs(30), request).await {
        Err(_) => anyhow::bail!("no reply to {subject} within 30 s"),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            anyhow::bail!("nothing answers {subject}: is the service running (`factory up`)?")
        }
        Ok(reply) => reply?,
    };
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or(serde_json::Value::Null);
    match jetsource_runtime::reply::read_reply(&reply) {
        Ok(_) => Ok(body),
        Err(error) => {
            println!("{}", serde_json::to_string_pretty(&body)?);
            anyhow::bail!("{error}")
        }
    }
}

async fn query_command(args: QueryArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&args.nats.nats_url, "factory-query").await?;
    let mut headers = async_nats::HeaderMap::new();
    if let Some(seq) = args.min_seq {
        headers.insert("Min-Seq", seq.to_string());
    }
    let (subject, body) = match &args.key {
        Some(key) => (format!("qry.{}.{key}", args.view), String::new()),
        None => {
            let mut list = serde_json::Map::new();
            if let Some(prefix) = &args.prefix {
                list.insert("prefix".into(), prefix.clone().into());
            }
            if let Some(limit) = args.limit {
                list.insert("limit".into(), limit.into());
            }
            if let Some(after) = &args.after {
                list.insert("after".into(), after.clone().into());
            }
            (format!("qry.{}", args.view), serde_json::Value::Object(list).to_string())
        }
    };
    let value = request(&client, subject, headers, body).await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn projections_command(args: ProjectionsArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&args.nats.nats_url, "factory-projections").await?;
    let none = async_nats::HeaderMap::new;
    match args.action {
        ProjectionsAction::Status => {
            let status = request(&client, "projector.status".into(), none(), String::new()).await?;
            print_status(&status);
        }
        ProjectionsAction::Rebuild { view, no_wait } => {
            let started = request(&client, format!("projector.rebuild.{view}"), none(), String::new()).await?;
            let version = started["version"].as_u64().unwrap_or(0);
            println!("rebuilding view {view} as version {version}");
            if !no_wait {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    let status = request(&client, "projector.status".into(), none(), String::new()).await?;
                    let Some(entry) =
                        status["views"].as_array().and_then(|v| v.iter().find(|e| e["view"] == view.as_str())).cloned()
                    else {
                        break;
                    };
                    if entry["version"].as_u64() == Some(version) {
                        println!(
                            "switched: queries read version {version} (applied through seq {})",
                            entry["applied_seq"]
                        );
                        break;
                    }
                    if let Some(building) = entry.get("rebuilding").filter(|b| !b.is_null()) {
                        println!(
                            "  version {version}: applied through seq {} of {}, {} waiting",
                            building["applied_seq"], entry["applied_seq"], building["lag"]
                        );
                    }
                }
            }
        }
        ProjectionsAction::Retry { view, subject } => {
            let body = subject.map(|s| serde_json::json!({ "subject": s }).to_string()).unwrap_or_default();
            let report = request(&client, format!("projector.retry.{view}"), none(), body).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

fn print_status(status: &serde_json::Value) {
    println!("{:<10} {:>7} {:>12} {:>7} {:>7}  rebuilding", "view", "version", "applied_seq", "lag", "parked");
    for view in status["views"].as_array().into_iter().flatten() {
        let rebuilding = match view.get("rebuilding").filter(|b| !b.is_null()) {
            Some(b) => format!("v{} at seq {}", b["version"], b["applied_seq"]),
            None => "-".into(),
        };
        println!(
            "{:<10} {:>7} {:>12} {:>7} {:>7}  {rebuilding}",
            view["view"].as_str().unwrap_or_default(),
            view["version"],
            view["applied_seq"],
            view["lag"],
            view["parked"]
        );
    }
}
