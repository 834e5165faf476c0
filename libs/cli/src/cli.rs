//! The command line every application shares: `up`, `run`, `provision`, `inspect`, `send`,
//! `query`, `projections`, `status`, `logs`, with the application's name, its services and
//! aggregate types as value lists, and its environment variables (`<PREFIX>_NATS_URL`, ...).
//! An application adds commands of its own with [`Extra`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource::{EventStore, StoreConfig, Until};
use jetsource_runtime::{App, Shutdown};
use jetsource_telemetry::{Telemetry, TelemetryConfig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use jetsource_runtime::wire::{CallError, Client, CommandRequest, header, subject};

use crate::managed::ManagedServer;
use crate::process::{Process, ProcessConfig};

/// A jetsource application.
#[derive(Debug, Parser)]
#[command(name = "app", version, propagate_version = true)]
struct Cli {
    /// Log filter (`info`, `debug`, `jetsource_runtime=debug`); logs go to stdout as JSON lines,
    /// or as readable lines on a terminal (APP_LOG_FORMAT=json|text decides).
    #[arg(long, global = true, env = "APP_LOG")]
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
    #[command(disable_version_flag = true)]
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
    /// Shipped log records (WARN and above unless APP_LOG_SHIP says otherwise) from the
    /// LOGS stream, through the logbook service: by service, lowest level and trace id; with
    /// --follow, new records as they come.
    Logs(LogsArgs),
    /// The bounded event log: compact the hot stream against the archive by the declared
    /// retention (`run`, what the archiver service does on its schedule), or show hot and
    /// archived events per aggregate type and the archive's lag (`status`).
    Archive(ArchiveArgs),
    /// Forget a data subject (crypto-shredding): erase their key, so every personal value
    /// sealed with it reads as erased from now on — in history, time travel, snapshots, views
    /// and the archive; nothing else changes. Exits non-zero when the subject had no key.
    Forget(ForgetArgs),
    /// Print a shell completion script: `factory completions bash > /etc/bash_completion.d/factory`
    /// (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct ForgetArgs {
    /// The data subject's id (an order's `requester.customer`).
    subject: String,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Args)]
struct ArchiveArgs {
    #[command(subcommand)]
    action: ArchiveAction,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Subcommand)]
enum ArchiveAction {
    /// Purge from the hot stream, per aggregate, what the retention lets go and the archive
    /// already holds (never an aggregate's last event, never what a consumer has not
    /// acknowledged). Reads are unchanged: they go to the archive for it.
    Run {
        /// Only this aggregate type.
        #[arg(long = "type", value_name = "TYPE")]
        aggregate_type: Option<String>,
        /// Count what would be purged; purge nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hot and archived events per aggregate type with their retention, both streams' sizes
    /// and the archive's lag.
    Status {
        /// Also count the bytes per aggregate type in both tiers (reads every message: as slow
        /// as the archive is long).
        #[arg(long)]
        bytes: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct LogsArgs {
    /// Only this service's records.
    #[arg(long)]
    service: Option<String>,
    /// Only this level and above.
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
    /// The view.
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
    /// The aggregate type.
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
    /// NATS server URL(s), comma-separated for a cluster (else NATS_URL, else
    /// nats://127.0.0.1:4222); credentials as nats://user:password@host:4222 (percent-encode
    /// special characters), or NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY (a seed file),
    /// --creds; TLS with NATS_CA, NATS_CERT and NATS_KEY.
    #[arg(long, global = true, env = "APP_NATS_URL", hide_env_values = true, default_value_t = default_nats_url())]
    nats_url: String,
    /// A NATS credentials file (user JWT and nkey seed), as `nats --creds` takes.
    #[arg(long, global = true, env = "NATS_CREDS", value_name = "FILE")]
    creds: Option<PathBuf>,
}

/// The OpenTelemetry variables a process honours, shown under `up --help` and `run --help`.
const TELEMETRY_HELP: &str = "Telemetry, as the OpenTelemetry SDKs read it: OTEL_EXPORTER_OTLP_ENDPOINT \
(http:// or https://), OTEL_EXPORTER_OTLP_PROTOCOL=grpc|http/protobuf|http/json, \
OTEL_EXPORTER_OTLP_CERTIFICATE (a CA file), OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/_CLIENT_KEY, \
OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER=otlp|none, \
OTEL_LOGS_EXPORTER=otlp|none (log records over OTLP too). Unset: nothing is exported.";

/// `NATS_URL`, as NATS tooling reads it, else the local default.
fn default_nats_url() -> String {
    std::env::var("NATS_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Use this NATS instead of starting the managed server.
    #[arg(long, env = "APP_NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
    /// Where the managed server keeps its JetStream files.
    #[arg(long, env = "APP_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    /// Client port of the managed server.
    #[arg(long, env = "APP_NATS_PORT", default_value_t = 4222)]
    nats_port: u16,
    /// Monitoring port of the managed server.
    #[arg(long, env = "APP_NATS_MONITOR_PORT", default_value_t = 8222)]
    nats_monitor_port: u16,
    /// HTTP address of the gateway (the web console at /console, API, /status, /healthz,
    /// /readyz, /metrics). Beyond loopback it needs authentication: APP_JWT_HS256_SECRET,
    /// APP_JWT_PUBLIC_KEY_FILE or APP_API_KEYS (name:role:key,...); APP_CONSOLE_TRACE_URL
    /// (with {trace_id}) links the console's trace ids to a trace UI.
    #[arg(long, env = "APP_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The services to run.
    #[arg(required = true)]
    services: Vec<String>,
    #[command(flatten)]
    nats: NatsArgs,
    /// HTTP address: the gateway's API, or /healthz, /readyz and /metrics for other services.
    #[arg(long, env = "APP_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Replicas of streams and buckets provisioned at start (1 dev, 3 prod).
    #[arg(long, env = "APP_REPLICAS")]
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
    #[arg(long, env = "APP_REPLICAS")]
    replicas: Option<usize>,
    /// A topology file instead of the one built in (nats/topology.toml).
    #[arg(long)]
    topology: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The aggregate type.
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

/// What the command line needs of the application.
pub struct Settings {
    /// The application's registry.
    pub app: App,
    /// Its declared topology (what `provision` and every start provision).
    pub topology: Topology,
    /// The prefix of its environment variables (`FACTORY` → `FACTORY_NATS_URL`).
    pub env_prefix: &'static str,
    /// One line saying what the application is, for `--help`.
    pub about: &'static str,
    /// Commands of the application's own.
    pub extra: Vec<Extra>,
}

/// A command of the application's own: its clap definition and what runs it.
pub struct Extra {
    /// The subcommand.
    pub command: clap::Command,
    /// Runs it with its matches.
    pub run: fn(&clap::ArgMatches) -> anyhow::Result<()>,
}

/// What every command gets.
struct Ctx {
    app: Arc<App>,
    topology: Topology,
    env_prefix: &'static str,
}

impl Ctx {
    /// A connection name for this command (`factory-send`).
    fn connection(&self, what: &str) -> String {
        format!("{}-{what}", self.app.name())
    }

    /// The registered name matching `name` (clap has checked it is one).
    fn service(&self, name: &str) -> anyhow::Result<&'static str> {
        self.app.service_names().into_iter().find(|s| *s == name).with_context(|| format!("no service {name:?}"))
    }
}

/// The clap command of the application: its name, the services `run` takes, the environment
/// variables under its prefix, its own commands.
fn command(settings: &Settings) -> clap::Command {
    let app = &settings.app;
    let name: &'static str = app.name();
    let values: Vec<clap::builder::PossibleValue> =
        app.services().iter().map(|s| clap::builder::PossibleValue::new(s.name).help(s.description.clone())).collect();
    let list = |names: Vec<&'static str>| clap::builder::PossibleValuesParser::new(names);
    let types = app.aggregate_types();
    let views = app.view_names();
    // Records name their service, or the application for what belongs to none.
    let services: Vec<&'static str> = std::iter::once(name).chain(app.service_names()).collect();
    let levels = jetsource_runtime::logbook::LEVELS.to_vec();
    let mut cmd = <Cli as clap::CommandFactory>::command()
        .name(name)
        .bin_name(name)
        .about(settings.about)
        .after_help(format!("Start with `{name} up`; every command has --help."))
        .mut_subcommand("up", |c| c.after_help(TELEMETRY_HELP))
        .mut_subcommand("run", |c| c.after_help(TELEMETRY_HELP))
        .mut_subcommand("run", |run| {
            run.mut_arg("services", |arg| arg.value_parser(clap::builder::PossibleValuesParser::new(values)))
        })
        // Free-text arguments that take known values list them (in --help and completions).
        .mut_subcommand("send", |c| with_arg(c, "aggregate_type", |a| a.value_parser(list(types.clone()))))
        .mut_subcommand("inspect", |c| with_arg(c, "aggregate_type", |a| a.value_parser(list(types.clone()))))
        .mut_subcommand("query", |c| with_arg(c, "view", |a| a.value_parser(list(views.clone()))))
        .mut_subcommand("projections", |c| {
            c.mut_subcommand("rebuild", |r| with_arg(r, "view", |a| a.value_parser(list(views.clone()))))
                .mut_subcommand("retry", |r| with_arg(r, "view", |a| a.value_parser(list(views.clone()))))
        })
        .mut_subcommand("logs", |c| {
            let c = with_arg(c, "level", |a| a.value_parser(list(levels.clone())));
            with_arg(c, "service", |a| a.value_parser(list(services.clone())))
        })
        .mut_subcommand("archive", |c| {
            c.mut_subcommand("run", |r| with_arg(r, "aggregate_type", |a| a.value_parser(list(types.clone()))))
        });
    cmd = rename_env(cmd, settings.env_prefix);
    for extra in &settings.extra {
        cmd = cmd.subcommand(extra.command.clone());
    }
    cmd
}

/// `cmd` with argument `id` changed by `change`. `mut_arg` moves the argument it changes to the
/// end, which would renumber positional arguments: every argument is passed through in order.
fn with_arg(mut cmd: clap::Command, id: &str, change: impl FnOnce(clap::Arg) -> clap::Arg) -> clap::Command {
    let ids: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
    let mut change = Some(change);
    for other in ids {
        let pending = if other == id { change.take() } else { None };
        cmd = cmd.mut_arg(other, |a| match pending {
            Some(change) => change(a),
            None => a,
        });
    }
    cmd
}

/// Every `APP_*` variable of `cmd` and its subcommands, and every mention of one in their help,
/// becomes `<prefix>_*`.
fn rename_env(mut cmd: clap::Command, prefix: &str) -> clap::Command {
    let named =
        |text: &str| -> &'static str { Box::leak(text.replace("APP_", &format!("{prefix}_")).into_boxed_str()) };
    let ids: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |mut a| {
            if let Some(env) = a.get_env().and_then(|e| e.to_str()).filter(|e| e.starts_with("APP_")) {
                let env = named(env);
                a = a.env(env);
            }
            for long in [false, true] {
                let help = if long { a.get_long_help() } else { a.get_help() }.map(ToString::to_string);
                if let Some(help) = help.filter(|h| h.contains("APP_")) {
                    let help = named(&help);
                    a = if long { a.long_help(help) } else { a.help(help) };
                }
            }
            a
        });
    }
    if let Some(about) = cmd.get_about().map(ToString::to_string).filter(|t| t.contains("APP_")) {
        cmd = cmd.about(named(&about));
    }
    if let Some(about) = cmd.get_long_about().map(ToString::to_string).filter(|t| t.contains("APP_")) {
        cmd = cmd.long_about(named(&about));
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for sub in subs {
        cmd = cmd.mut_subcommand(sub, |c| rename_env(c, prefix));
    }
    cmd
}

/// Runs the command line of an application: parses the arguments, runs the command, and says
/// what went wrong on standard error.
pub fn main(settings: Settings) -> ExitCode {
    let matches = command(&settings).get_matches();
    let name = settings.app.name();
    if let Some(creds) = matches.subcommand().and_then(|(_, m)| m.try_get_one::<PathBuf>("creds").ok().flatten()) {
        jetsource::connect::use_credentials_file(creds.clone());
    }
    let extra = matches
        .subcommand()
        .and_then(|(sub, m)| settings.extra.iter().find(|e| e.command.get_name() == sub).map(|e| (e.run, m.clone())));
    if let Some((run, sub)) = extra {
        return match run(&sub) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut command(&settings), name, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let ctx = Ctx { app: Arc::new(settings.app), topology: settings.topology, env_prefix: settings.env_prefix };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &ctx)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, ctx: &Ctx) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up(ctx, args, cli.log).await,
        Command::Run(args) => run_services(ctx, args, cli.log).await,
        Command::Provision(args) => provision_command(ctx, args).await,
        Command::Inspect(args) => inspect_command(ctx, args).await,
        Command::Send(args) => send_command(ctx, args).await,
        Command::Query(args) => query_command(ctx, args).await,
        Command::Projections(args) => projections_command(ctx, args).await,
        Command::Status(nats) => status_command(ctx, nats).await,
        Command::Logs(args) => logs_command(ctx, args).await,
        Command::Archive(args) => archive_command(ctx, args).await,
        Command::Forget(args) => forget_command(ctx, args).await,
        Command::Completions { .. } => Ok(()), // answered before the runtime starts
    }
}

async fn logs_command(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let query = jetsource_runtime::logbook::LogQuery {
        service: args.service.clone(),
        level: args.level.clone(),
        trace_id: args.trace_id.clone(),
        limit: Some(args.limit),
    };
    query.validate()?;
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("logs")).await?;
    let show = |record: &serde_json::Value| {
        if args.json {
            println!("{record}");
        } else {
            println!("{}", jetsource_telemetry::readable(record));
        }
    };
    // Subscribe first so nothing falls between the history and the live records.
    let mut live = if args.follow {
        let mut subscriptions = Vec::new();
        for subject in query.subjects()? {
            subscriptions.push(client.subscribe(subject).await?);
        }
        Some(futures::stream::select_all(subscriptions))
    } else {
        None
    };
    let page =
        request(&client, subject::LOGBOOK_QUERY.into(), async_nats::HeaderMap::new(), serde_json::to_string(&query)?)
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
async fn status_command(ctx: &Ctx, nats: NatsArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&nats.nats_url, &ctx.connection("cli")).await?;
    let (_, report) = jetsource_http::status::status(&ctx.app, &client).await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    match report["status"].as_str() {
        Some("ok") => Ok(()),
        other => anyhow::bail!("the {} is {}", ctx.app.name(), other.unwrap_or("unknown")),
    }
}

fn telemetry(ctx: &Ctx, service: &str, log: Option<String>) -> anyhow::Result<Telemetry> {
    let config = TelemetryConfig {
        service: service.to_owned(),
        instance: jetsource_runtime::micro::instance_name(),
        filter: log,
        ship: None,
        env_prefix: ctx.env_prefix.into(),
    };
    Ok(Telemetry::init(&config)?)
}

async fn up(ctx: &Ctx, args: UpArgs, log: Option<String>) -> anyhow::Result<()> {
    let telemetry = telemetry(ctx, ctx.app.name(), log)?;
    let managed = match &args.nats_url {
        Some(_) => None,
        None => Some(ManagedServer::start(ctx.app.name(), &args.data_dir, args.nats_port, args.nats_monitor_port)?),
    };
    let url = args.nats_url.clone().or_else(|| managed.as_ref().map(ManagedServer::url)).unwrap_or_default();
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let mut config = ProcessConfig::new(&url, ctx.app.service_names(), ctx.topology.clone());
    config.http = Some(args.http);
    config.gateway.apply_env(ctx.env_prefix).map_err(anyhow::Error::msg)?;
    let result = match Process::build(Arc::clone(&ctx.app), config).await {
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
                println!("{} up: every service in one process", ctx.app.name());
                println!("  NATS      {nats}");
                println!("  topology  {topology}");
                println!(
                    "  services  {services}: cmd.<{}>.<id>.<command>, $SRV discovery; router on cmd.>",
                    ctx.app.aggregate_types().join("|")
                );
                if let Some(http) = http {
                    println!(
                        "  HTTP      http://{http}  (console /console, API /v1/..., /status, /openapi.json, /healthz /readyz /metrics)"
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

async fn run_services(ctx: &Ctx, args: RunArgs, log: Option<String>) -> anyhow::Result<()> {
    let names: Vec<&'static str> = args.services.iter().map(|s| ctx.service(s)).collect::<Result<_, _>>()?;
    let telemetry = telemetry(ctx, &names.join("+"), log)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let mut config = ProcessConfig::new(&args.nats.nats_url, names.clone(), ctx.topology.clone());
    config.http = Some(args.http);
    config.gateway.apply_env(ctx.env_prefix).map_err(anyhow::Error::msg)?;
    config.provision = !args.no_provision;
    config.replicas = args.replicas;
    let result = match Process::build(Arc::clone(&ctx.app), config).await {
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
                jetsource::topology::Action::Drifted => "differs (see provision)",
            };
            format!("{} {} {action}", item.kind, item.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn provision_command(ctx: &Ctx, args: ProvisionArgs) -> anyhow::Result<()> {
    let topology = match &args.topology {
        Some(path) => Topology::load(path)?,
        None => ctx.topology.clone(),
    };
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("provision")).await?;
    let js = async_nats::jetstream::new(client);
    let options = ProvisionOptions { replicas: args.replicas, force: args.force, dry_run: args.dry_run };
    let report = provision(&js, &topology, options).await?;
    print!("{report}");
    if report.has_drift() {
        anyhow::bail!("some declared settings are not in place (see above)");
    }
    Ok(())
}

async fn inspect_command(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<()> {
    let registry = &ctx.app;
    let kind = registry.aggregate_or_error(&args.aggregate_type)?;
    let id = kind.id(&args.id).map_err(anyhow::Error::msg)?;
    let until = match (args.version, &args.at) {
        (Some(version), _) => Until::Version(version),
        (None, Some(at)) => Until::Time(
            OffsetDateTime::parse(at, &Rfc3339).with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?,
        ),
        (None, None) => Until::End,
    };
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("inspect")).await?;
    let store = EventStore::new(client, StoreConfig { app: registry.name().to_owned(), ..Default::default() });
    let value = kind.inspect(&store, &id, until, args.events).await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn forget_command(ctx: &Ctx, args: ForgetArgs) -> anyhow::Result<()> {
    jetsource::metadata::validate_command_id(&args.subject)
        .map_err(|e| anyhow::anyhow!("invalid data subject {:?}: {e}", args.subject))?;
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("forget")).await?;
    let store = EventStore::new(client, StoreConfig { app: ctx.app.name().to_owned(), ..Default::default() });
    if store.keyring()?.forget(&args.subject).await? {
        println!("forgot {}: its key is erased; its personal data reads as erased everywhere", args.subject);
        Ok(())
    } else {
        anyhow::bail!("{} has no key: never seen, or forgotten before", args.subject)
    }
}

async fn archive_command(ctx: &Ctx, args: ArchiveArgs) -> anyhow::Result<()> {
    use jetsource::archive::{Archiver, RunOptions};
    use std::io::{IsTerminal as _, Write as _};
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("archive")).await?;
    let archiver = Archiver::open(client, &ctx.topology).await?;
    match args.action {
        ArchiveAction::Run { aggregate_type, dry_run, json } => {
            if let Some(kind) = &aggregate_type {
                ctx.app.aggregate_or_error(kind)?;
            }
            let bar = std::io::stderr().is_terminal();
            let options = RunOptions { aggregate_type, dry_run };
            let report = archiver
                .run(&options, |p| {
                    if bar && p.total > 0 {
                        let width = 30;
                        let filled = (p.done * width / p.total) as usize;
                        let line = format!(
                            "\r{:<10} [{}{}] {}/{}",
                            p.aggregate_type,
                            "=".repeat(filled),
                            " ".repeat(width as usize - filled),
                            p.done,
                            p.total
                        );
                        let mut err = std::io::stderr();
                        let _ = err.write_all(line.as_bytes());
                        if p.done == p.total {
                            let _ = err.write_all(b"\n");
                        }
                        let _ = err.flush();
                    }
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let verb = if report.dry_run { "would purge" } else { "purged" };
            println!(
                "{:<10} {:<15} {:>10} {:>10} {:>12}  held back (archive / consumers)",
                "type", "keep", "aggregates", "compacted", verb
            );
            for (kind, run) in &report.types {
                println!(
                    "{kind:<10} {:<15} {:>10} {:>10} {:>12}  {} / {}",
                    run.keep, run.aggregates, run.compacted, run.purged, run.held_by_archive, run.held_by_consumers
                );
            }
        }
        ArchiveAction::Status { bytes, json } => {
            let mut status = archiver.status().await?;
            if bytes {
                archiver.count_bytes(&mut status).await?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            let s = &status.sizes;
            println!("hot      {} events, {} bytes", s.hot.messages, s.hot.bytes);
            println!("archive  {} messages, {} bytes before S2 compression", s.archived.messages, s.archived.bytes);
            println!(
                "lag      {} events{}",
                s.lag,
                if s.sourcing { "" } else { "  (the archive's source is not connected)" }
            );
            println!("{:<10} {:<15} {:>14} {:>14} {:>16}", "type", "keep", "hot events", "archived", "hot aggregates");
            for (kind, t) in &status.types {
                println!(
                    "{kind:<10} {:<15} {:>14} {:>14} {:>16}",
                    t.keep, t.hot.events, t.archived.events, t.hot.aggregates
                );
            }
        }
    }
    Ok(())
}

async fn send_command(ctx: &Ctx, args: SendArgs) -> anyhow::Result<()> {
    let nats = jetsource::connect(&args.nats.nats_url, &ctx.connection("send")).await?;
    let client = Client::new(nats, std::time::Duration::from_secs(10));
    let mut command = CommandRequest::new(&args.aggregate_type, &args.id, &args.command, args.body);
    command.idempotency_key = args.idempotency_key;
    command.expected_version = args.expected_version;
    let reply = client.request(command.subject(), command.header_map(), command.body.clone()).await;
    print_reply(ctx, reply).map(drop)
}

/// Prints a reply's JSON (keys sorted); an error reply fails the command with its text.
fn print_reply(ctx: &Ctx, reply: Result<async_nats::Message, CallError>) -> anyhow::Result<serde_json::Value> {
    match reply {
        Ok(message) => {
            let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null);
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(body)
        }
        Err(CallError::Reply(error)) => {
            println!("{}", serde_json::to_string_pretty(&serde_json::to_value(&error)?)?);
            anyhow::bail!("{error}")
        }
        Err(CallError::NoResponders { subject }) => {
            anyhow::bail!("nothing answers {subject}: is `{} up` running?", ctx.app.name())
        }
        Err(other) => anyhow::bail!("{other}"),
    }
}

/// Sends a request and returns the JSON reply; an error reply is printed and fails the command.
async fn request(
    client: &async_nats::Client,
    subject: String,
    headers: async_nats::HeaderMap,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let client = Client::new(client.clone(), std::time::Duration::from_secs(30));
    match client.request(subject, headers, body.into()).await {
        Ok(message) => Ok(serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null)),
        Err(CallError::Reply(error)) => {
            println!("{}", serde_json::to_string_pretty(&serde_json::to_value(&error)?)?);
            anyhow::bail!("{error}")
        }
        Err(CallError::NoResponders { subject }) => anyhow::bail!("nothing answers {subject}: is the service running?"),
        Err(other) => anyhow::bail!("{other}"),
    }
}

async fn query_command(ctx: &Ctx, args: QueryArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("query")).await?;
    let mut headers = async_nats::HeaderMap::new();
    if let Some(seq) = args.min_seq {
        headers.insert(header::MIN_SEQ, seq.to_string());
    }
    let (subject, body) = match &args.key {
        Some(key) => (subject::query(&args.view, Some(key)), String::new()),
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
            (subject::query(&args.view, None), serde_json::Value::Object(list).to_string())
        }
    };
    let value = request(&client, subject, headers, body).await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn projections_command(ctx: &Ctx, args: ProjectionsArgs) -> anyhow::Result<()> {
    let client = jetsource::connect(&args.nats.nats_url, &ctx.connection("projections")).await?;
    let none = async_nats::HeaderMap::new;
    match args.action {
        ProjectionsAction::Status => {
            let status = request(&client, subject::PROJECTOR_STATUS.into(), none(), String::new()).await?;
            print_status(&status);
        }
        ProjectionsAction::Rebuild { view, no_wait } => {
            let started = request(&client, subject::projector("rebuild", &view), none(), String::new()).await?;
            let version = started["version"].as_u64().unwrap_or(0);
            println!("rebuilding view {view} as version {version}");
            if !no_wait {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    let status = request(&client, subject::PROJECTOR_STATUS.into(), none(), String::new()).await?;
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
            let report = request(&client, subject::projector("retry", &view), none(), body).await?;
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
