//! `tollgate`: one OpenAI-compatible endpoint in front of many LLM providers,
//! free tiers first.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollgate::clock::SystemClock;
use tollgate::config::env;
use tollgate::config::{Catalog, Secret};
use tollgate::gpu::device::Device;
use tollgate::gpu::{GpuReport, Leases};
use tollgate::http::inbound::Inbound;
use tollgate::http::server;
use tollgate::keys::Keys;
use tollgate::keys::store::KeyStore;
use tollgate::ledger::report::QuotaReport;
use tollgate::ledger::store::Store;
use tollgate::ledger::{Backend, Ledger};
use tollgate::plugins::{PluginRuntime, engine::Limits};
use tollgate::state::{self, reload};
use tollgate::{report, route as router};

#[global_allocator]
static ALLOCATOR: tollgate::memory::Allocator = tollgate::memory::Allocator {};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An OpenAI-compatible LLM gateway that spends free tiers first"
)]
struct Cli {
    /// Without a command, `serve` with its defaults.
    #[command(subcommand)]
    command: Option<Command>,
    /// Write logs as JSON, one object a line (also TOLLGATE_LOG_FORMAT=json).
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(ServeArgs),
    /// Validate the configuration and plugins, then exit (non-zero on problems).
    Check(Sources),
    /// List every model alias with its provider, mode, tier, status and limits.
    Models(Sources),
    /// Show the quota ledger: each provider's and model's limits, what is
    /// used, what remains, when it resets, and any cooldown.
    Quotas(QuotasArgs),
    /// Show the GPU lease table: the device, each local backend's lease,
    /// the requests waiting for memory, and eviction counts.
    Gpu(GpuArgs),
    /// Write Tollgate's configuration from another gateway's.
    #[command(subcommand)]
    Import(ImportSource),
    /// Write, build, check and test a plugin (a provider adapter or a
    /// routing policy).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Make, list and revoke gateway keys on a running gateway (its
    /// /admin/keys, with TOLLGATE_MASTER_KEY).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key; its secret is printed once.
    Add(KeyAddArgs),
    /// List every key with its limits and this month's usage.
    List(UrlArgs),
    /// Revoke a key made with `keys add`.
    Rm(KeyRmArgs),
}

#[derive(Args)]
struct UrlArgs {
    /// The gateway. Default: TOLLGATE_URL, else http://127.0.0.1:4000.
    #[arg(long)]
    url: Option<String>,
    /// Print the JSON the gateway answered.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct KeyAddArgs {
    /// The key's name: letters, digits, `-`, `_`, `.`.
    name: String,
    /// An alias it may use (`*` matches any run); repeat for more. Default: all.
    #[arg(long = "model")]
    models: Vec<String>,
    #[arg(long)]
    rpm: Option<u64>,
    #[arg(long)]
    rpd: Option<u64>,
    #[arg(long)]
    tpm: Option<u64>,
    #[arg(long)]
    tpd: Option<u64>,
    /// Dollars a calendar month on paid models.
    #[arg(long)]
    budget_usd: Option<f64>,
    /// YYYY-MM-DD (UTC) after which it stops working.
    #[arg(long)]
    expires: Option<String>,
    /// Tiers it may be served from, separated by commas (free,local).
    #[arg(long, value_delimiter = ',')]
    tiers: Vec<String>,
    #[command(flatten)]
    url: UrlArgs,
}

#[derive(Args)]
struct KeyRmArgs {
    name: String,
    #[command(flatten)]
    url: UrlArgs,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Start a plugin crate from a template, outside any workspace.
    New(NewArgs),
    /// Build a plugin crate for wasm32-wasip2 and write DIR/dist/NAME.wasm.
    Build(DirArg),
    /// Load a .wasm as the gateway would and say what is wrong with it
    /// (non-zero when it would be rejected).
    Check(CheckArgs),
    /// Build a plugin crate, then run it against the recorded cases in its
    /// tests/ folder (non-zero when one fails).
    Test(TestArgs),
}

#[derive(Args)]
struct NewArgs {
    /// The plugin's name: its file's (NAME.wasm) and what fragments give
    /// as `adapter:`. Lowercase words joined by `-`.
    name: String,
    /// The crate's folder. Default: ./NAME.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// An adapter (a provider's wire protocol) or a routing policy.
    #[arg(long, value_enum, default_value = "adapter")]
    kind: PluginKind,
    /// The sdk/ folder of a Tollgate checkout. Default: TOLLGATE_SDK, else
    /// the checkout this binary was built from.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PluginKind {
    Adapter,
    Policy,
}

#[derive(Args)]
struct DirArg {
    /// The plugin crate's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// The component to check.
    file: PathBuf,
}

#[derive(Args)]
struct TestArgs {
    /// The plugin crate's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Test this component instead of building the crate first.
    #[arg(long)]
    wasm: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ImportSource {
    /// Read a LiteLLM proxy config and write provider fragments,
    /// fallbacks.yaml and policies.yaml. Everything it cannot map is
    /// reported; it exits non-zero only when nothing maps.
    Litellm(LitellmArgs),
}

#[derive(Args)]
struct LitellmArgs {
    /// The LiteLLM proxy config (config.yaml).
    config: PathBuf,
    /// A separate fallbacks JSON: `{"model": ["fallback", ...]}` or
    /// LiteLLM's list-of-mappings form.
    #[arg(long)]
    fallbacks: Option<PathBuf>,
    /// The Tollgate config folder to write into.
    #[arg(long, default_value = "providers")]
    out: PathBuf,
    /// Replace files that already exist in the folder.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct GpuArgs {
    /// A running gateway to ask. Default: TOLLGATE_URL, else
    /// http://127.0.0.1:4000. When none answers there, only the device is
    /// shown.
    #[arg(long)]
    url: Option<String>,
    /// Print the JSON that /admin/gpu serves instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Sources {
    /// Folder of provider fragments and fallbacks.yaml.
    #[arg(long, default_value = "providers")]
    config: PathBuf,
    /// Folder of plugin components (`NAME.wasm`).
    #[arg(long, default_value = "plugins")]
    plugins: PathBuf,
    /// Folder for state (compiled plugin cache).
    #[arg(long, default_value = ".tollgate")]
    data: PathBuf,
}

#[derive(Parser)]
struct ServeArgs {
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Address to listen on. Loopback by default: set TOLLGATE_MASTER_KEY
    /// before exposing the gateway further.
    #[arg(long, default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Also serve `GET /metrics` here, without the master key (for a
    /// Prometheus on a private network). On the main address `/metrics`
    /// wants the master key, when one is set.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Args)]
struct LedgerArgs {
    /// Where quota counts are kept: `embedded` (a store in the data folder,
    /// the default), `memory` (lost on exit), or `redis://HOST:PORT/DB` to
    /// share one ledger between gateways. Default: TOLLGATE_LEDGER.
    #[arg(long)]
    ledger: Option<String>,
}

#[derive(Args)]
struct QuotasArgs {
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    ledger: LedgerArgs,
    /// A running gateway to ask. Default: TOLLGATE_URL, else
    /// http://127.0.0.1:4000. When none answers there, the ledger is read
    /// directly.
    #[arg(long)]
    url: Option<String>,
    /// Print the JSON that /admin/quotas serves instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json || std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|f| f == "json"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = runtime.block_on(async {
        let command = cli
            .command
            .unwrap_or_else(|| Command::Serve(ServeArgs::parse_from(["tollgate"])));
        match command {
            Command::Serve(args) => serve(args).await,
            Command::Check(sources) => check(sources).await,
            Command::Models(sources) => models(sources).await,
            Command::Quotas(args) => quotas(args).await,
            Command::Gpu(args) => gpu(args).await,
            Command::Import(ImportSource::Litellm(args)) => import_litellm(args),
            Command::Plugin(command) => plugin(command).await,
            Command::Keys(command) => keys_command(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn import_litellm(args: LitellmArgs) -> Result<()> {
    let options = tollgate::import::Options {
        config: args.config,
        fallbacks: args.fallbacks,
        out: args.out,
        force: args.force,
    };
    let today = tollgate::clock::rfc3339(tollgate::clock::Clock::now_ms(&SystemClock));
    let report = tollgate::import::run(&options, &today[..10])?;
    print!("{report}");
    println!(
        "\ncheck it with: tollgate check --config {0}\nserve it with: tollgate serve --config {0}",
        options.out.display()
    );
    Ok(())
}

async fn plugin(command: PluginCommand) -> Result<()> {
    use tollgate::author;
    match command {
        PluginCommand::New(args) => {
            let dir = author::scaffold::create(&author::scaffold::NewPlugin {
                name: args.name.clone(),
                kind: match args.kind {
                    PluginKind::Adapter => author::scaffold::Kind::Adapter,
                    PluginKind::Policy => author::scaffold::Kind::Policy,
                },
                dir: args.dir,
                sdk: args.sdk,
            })?;
            println!(
                "created {} `{}` in {}",
                match args.kind {
                    PluginKind::Adapter => "adapter",
                    PluginKind::Policy => "policy",
                },
                args.name,
                dir.display()
            );
            println!("next: cd {} && tollgate plugin test", dir.display());
            Ok(())
        }
        PluginCommand::Build(args) => {
            let built = author::builder::build(&args.dir)?;
            if let author::check::Verdict::Rejected(error) = plugin_verdict(&built.wasm).await? {
                anyhow::bail!(
                    "{} was built but a gateway would reject it: {error}\nhint: {}",
                    built.wasm.display(),
                    error.hint()
                );
            }
            println!("{}", built.wasm.display());
            Ok(())
        }
        PluginCommand::Check(args) => match plugin_verdict(&args.file).await? {
            author::check::Verdict::Loads(summary) => {
                println!("{}: {summary}", args.file.display());
                Ok(())
            }
            author::check::Verdict::Rejected(error) => {
                println!("{}: rejected: {error}", args.file.display());
                println!("hint: {}", error.hint());
                anyhow::bail!("a gateway would not load {}", args.file.display())
            }
        },
        PluginCommand::Test(args) => plugin_test(args).await,
    }
}

/// What a gateway started here (same environment, same limits) would make
/// of the file.
async fn plugin_verdict(file: &Path) -> Result<tollgate::author::check::Verdict> {
    let env = env::Env::load(Path::new("."))?;
    tollgate::author::check::check(file, limits(&env)?).await
}

async fn plugin_test(args: TestArgs) -> Result<()> {
    use tollgate::author::{cases, check};
    let cases_dir = args.dir.join("tests");
    let files = cases::files(&cases_dir)
        .with_context(|| format!("reading the cases folder {}", cases_dir.display()))?;
    if files.is_empty() {
        anyhow::bail!(
            "no cases (*.json) in {}: add one, see the SDK's guide",
            cases_dir.display()
        );
    }
    let wasm = match args.wasm {
        Some(wasm) => wasm,
        None => tollgate::author::builder::build(&args.dir)?.wasm,
    };
    let env = env::Env::load(Path::new("."))?;
    let (_, runtime, plugin) = match check::load(&wasm, limits(&env)?).await? {
        Ok(loaded) => loaded,
        Err(error) => anyhow::bail!(
            "{} would be rejected: {error}\nhint: {}",
            wasm.display(),
            error.hint()
        ),
    };
    println!("running {} case(s) against {}", files.len(), wasm.display());
    let outcomes = cases::run(&files, &runtime, &plugin).await;
    let failed = outcomes.iter().filter(|o| !o.problems.is_empty()).count();
    for outcome in &outcomes {
        println!("{outcome}");
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed > 0 {
        anyhow::bail!("{failed} case(s) failed");
    }
    Ok(())
}

/// Logs to stderr, filtered by TOLLGATE_LOG (default `info`): as text for
/// a person, or as one JSON object a line for a log shipper.
fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Sandbox limits, adjustable from the environment.
fn limits(env: &env::Env) -> Result<Limits> {
    let mut limits = Limits::default();
    let number = |name| whole_number(env, name);
    if let Some(ms) = number("TOLLGATE_PLUGIN_DEADLINE_MS")? {
        limits.call_deadline = Duration::from_millis(ms.max(1));
    }
    if let Some(ms) = number("TOLLGATE_PLUGIN_QUEUE_MS")? {
        limits.queue_deadline = Duration::from_millis(ms.max(1));
    }
    if let Some(mb) = number("TOLLGATE_PLUGIN_MEMORY_MB")? {
        limits.memory_bytes = (mb.max(1) as usize) << 20;
    }
    if let Some(n) = number("TOLLGATE_MAX_INSTANCES")? {
        limits.max_instances = n.clamp(1, 10_000) as u32;
    }
    if let Some(n) = number("TOLLGATE_SPARE_INSTANCES")? {
        limits.spare_instances = n.min(64) as usize;
    }
    Ok(limits)
}

/// The environment variable `name` as a whole number, if it is set.
fn whole_number(env: &env::Env, name: &str) -> Result<Option<u64>> {
    env.get(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .with_context(|| format!("{name}={v} is not a whole number"))
        })
        .transpose()
}

/// How long a serving lane polls before it sleeps: `TOLLGATE_IDLE_POLL_US`
/// (0 turns polling off, at most a second), else the default.
fn idle_poll(env: &env::Env) -> Result<Duration> {
    Ok(whole_number(env, "TOLLGATE_IDLE_POLL_US")?
        .map_or_else(tollgate::lanes::default_idle_poll, |us| {
            Duration::from_micros(us.min(1_000_000))
        }))
}

async fn load(sources: &Sources, env: &env::Env) -> Result<(Catalog, PluginRuntime)> {
    let cache = sources.data.join("cache");
    let plugins = PluginRuntime::load(limits(env)?, Some(&sources.plugins), Some(cache))
        .await
        .context("loading plugins")?;
    if !sources.config.is_dir() {
        anyhow::bail!(
            "the config folder {} does not exist (pass --config DIR)",
            sources.config.display()
        );
    }
    let catalog = reload::load_catalog(&sources.config, env, &plugins)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    Ok((catalog, plugins))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let env = env::Env::load(Path::new("."))?;
    let idle_poll = idle_poll(&env)?;
    let inbound = Inbound::from_env(|name| env.get(name).map(str::to_owned))?;
    inbound.install();
    let (catalog, plugins) = load(&args.sources, &env).await?;
    let enabled = catalog.providers.iter().filter(|p| p.enabled()).count();
    let aliases = catalog.models.iter().filter(|m| m.enabled()).count();
    if enabled == 0 {
        tracing::warn!(
            "no provider is enabled: set a provider's flag to 1 (and its key) in the environment or .env"
        );
    }
    let master_key = env
        .get("TOLLGATE_MASTER_KEY")
        .map(|k| Secret::new(k.to_owned()));
    if master_key.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "listening beyond loopback without TOLLGATE_MASTER_KEY: anyone who can reach this port can spend your quotas");
    }
    let ledger = open_ledger(&args.ledger, &args.sources.data, &env).await?;
    ledger.spawn_saver(Duration::from_millis(500));
    let leases = Leases::new(gpu_device(&env)?);
    let gateway = router::Gateway::new(catalog, plugins, ledger.clone(), leases)?;
    let keys = open_keys(&args.sources, &env, &ledger)?;
    if !keys.ring().is_empty() && master_key.is_none() {
        tracing::warn!(
            "gateway keys are set but TOLLGATE_MASTER_KEY is not: /admin and /metrics refuse everyone until it is"
        );
    }
    let state = Arc::new(state::AppState::new(gateway, master_key, keys));
    spawn_idle_sweeper(state.clone());
    let watched = reload::Watched {
        config: args.sources.config.clone(),
        plugins: args.sources.plugins.clone(),
    };
    // Kept alive for as long as the gateway serves.
    let _watcher = match reload::watch(state.clone(), watched) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(
                "cannot watch the config and plugins folders ({e}); changes need a restart"
            );
            None
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        providers = enabled,
        aliases,
        ledger = ledger.backend().name(),
        "serving"
    );
    println!("tollgate listening on http://{addr}");
    if let Some(metrics_addr) = args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("binding {metrics_addr} for --metrics-listen"))?;
        tracing::info!(
            "serving /metrics without the master key on http://{}/metrics",
            metrics.local_addr()?
        );
        tokio::spawn(server::run_metrics(
            metrics,
            state.clone(),
            std::future::pending(),
        ));
    }
    std::io::stdout().flush().ok();
    server::run(listener, state, idle_poll, inbound, shutdown_signal()).await?;
    ledger.flush().await;
    Ok(())
}

/// The keys of keys.yaml and those made through the API (kept in the data
/// folder).
fn open_keys(sources: &Sources, env: &env::Env, ledger: &Arc<Ledger>) -> Result<Keys> {
    let file = tollgate::keys::file::load(&sources.config, env)?;
    let store = KeyStore::open(&sources.data)?;
    let keys = Keys::new(ledger.clone(), Some(store), file)?;
    let count = keys.ring().keys().len();
    if count > 0 {
        tracing::info!(
            keys = count,
            "gateway keys in service: every /v1 request needs one"
        );
    }
    Ok(keys)
}

/// The card from TOLLGATE_GPU_VRAM_MB, else NVML (device
/// TOLLGATE_GPU_DEVICE, default 0), else unknown.
fn gpu_device(env: &env::Env) -> Result<Device> {
    let number = |name| whole_number(env, name);
    let configured = number("TOLLGATE_GPU_VRAM_MB")?;
    let index = number("TOLLGATE_GPU_DEVICE")?.unwrap_or(0) as u32;
    let device = Device::detect(configured, index);
    tracing::info!(device = %device.name, vram_mb = ?device.total_mb, "GPU for local backends");
    Ok(device)
}

/// Unloads local backends idle past their TTL (checked every second: a
/// scan of a handful of leases).
fn spawn_idle_sweeper(state: Arc<state::AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let generation = state.current();
            let gateway = &generation.gateway;
            let ttl = |backend: &str| {
                gateway
                    .catalog
                    .providers
                    .iter()
                    .find(|p| p.name == backend)
                    .and_then(|p| p.local.as_ref())
                    .map_or(Duration::from_secs(300), |l| l.idle_ttl())
            };
            gateway.leases.sweep(ttl, gateway).await;
        }
    });
}

/// `--url`, else TOLLGATE_URL, else the default listen address.
fn gateway_url(flag: Option<&str>, env: &env::Env) -> String {
    flag.or_else(|| env.get("TOLLGATE_URL"))
        .unwrap_or("http://127.0.0.1:4000")
        .to_owned()
}

async fn gpu(args: GpuArgs) -> Result<()> {
    let env = env::Env::load(Path::new("."))?;
    let url = gateway_url(args.url.as_deref(), &env);
    let report: GpuReport = match admin_get(&url, "/admin/gpu", &env).await? {
        Some(body) => serde_json::from_slice(&body)
            .with_context(|| format!("{url}/admin/gpu did not return a GPU report"))?,
        None => {
            eprintln!("no gateway answers at {url}; showing the device only");
            Leases::new(gpu_device(&env)?).report()
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// The ledger backend chosen by `--ledger` or TOLLGATE_LEDGER.
async fn open_ledger(args: &LedgerArgs, data: &Path, env: &env::Env) -> Result<Arc<Ledger>> {
    let choice = args
        .ledger
        .as_deref()
        .or_else(|| env.get("TOLLGATE_LEDGER"))
        .unwrap_or("embedded");
    let backend = match choice {
        "embedded" => Backend::Store(Store::open(data)?),
        "memory" => Backend::Memory,
        url if url.starts_with("redis://") || url.starts_with("unix://") => {
            Backend::Redis(tollgate::ledger::redis::Shared::connect(url).await?)
        }
        other => anyhow::bail!(
            "unknown ledger `{}`: use embedded, memory, or a redis:// URL",
            tollgate::ledger::redis::redact_url(other)
        ),
    };
    Ok(Ledger::new(backend, Arc::new(SystemClock))?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn check(sources: Sources) -> Result<()> {
    let env = env::Env::load(Path::new("."))?;
    let (catalog, plugins) = load(&sources, &env).await?;
    let keys = tollgate::keys::file::load(&sources.config, &env)?;
    report::print(&report::check(&catalog, &plugins));
    if !keys.is_empty() {
        println!(
            "{} gateway key(s) in {}",
            keys.len(),
            tollgate::keys::file::FILE
        );
    }
    if !plugins.failures().is_empty() {
        anyhow::bail!("{} plugin(s) were rejected", plugins.failures().len());
    }
    println!("ok");
    Ok(())
}

async fn quotas(args: QuotasArgs) -> Result<()> {
    let env = env::Env::load(Path::new("."))?;
    let url = gateway_url(args.url.as_deref(), &env);
    let report = match ask_gateway(&url, &env).await? {
        Some(report) => report,
        None => {
            tracing::debug!("no gateway at {url}; reading the ledger directly");
            let (catalog, _) = load(&args.sources, &env).await?;
            let ledger = open_ledger(&args.ledger, &args.sources.data, &env)
                .await
                .context("no gateway answered at the --url, so the ledger was opened directly")?;
            for model in catalog.models.iter().filter(|m| m.enabled()) {
                ledger.plan(model);
            }
            ledger.report().await
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// The quota report of the gateway at `url`, or `None` when nothing listens there.
async fn ask_gateway(url: &str, env: &env::Env) -> Result<Option<QuotaReport>> {
    let Some(body) = admin_get(url, "/admin/quotas", env).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .with_context(|| format!("{url}/admin/quotas did not return a quota report"))
}

/// The body of an admin endpoint of the gateway at `url`, or `None` when
/// nothing listens there.
async fn admin_get(url: &str, path: &str, env: &env::Env) -> Result<Option<bytes::Bytes>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let mut request = client.get(format!("{}{path}", url.trim_end_matches('/')));
    if let Some(key) = env.get("TOLLGATE_MASTER_KEY") {
        request = request.bearer_auth(key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("asking {url}: {e}")),
    };
    let status = response.status();
    let body = response.bytes().await?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!("the gateway at {url} wants its master key: set TOLLGATE_MASTER_KEY");
    }
    if !status.is_success() {
        anyhow::bail!(
            "the gateway at {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(Some(body))
}

async fn keys_command(command: KeysCommand) -> Result<()> {
    use tollgate::keys::client;
    let env = env::Env::load(Path::new("."))?;
    let master = env.get("TOLLGATE_MASTER_KEY");
    match command {
        KeysCommand::Add(args) => {
            let url = gateway_url(args.url.url.as_deref(), &env);
            let body = serde_json::json!({
                "name": args.name,
                "models": args.models,
                "rpm": args.rpm, "rpd": args.rpd, "tpm": args.tpm, "tpd": args.tpd,
                "budget_usd": args.budget_usd,
                "expires": args.expires,
                "tiers": (!args.tiers.is_empty()).then_some(args.tiers),
            });
            let made = client::add(&url, master, client::without_nulls(body)).await?;
            if args.url.json {
                println!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                print!("{}", client::made(&made));
            }
        }
        KeysCommand::List(args) => {
            let url = gateway_url(args.url.as_deref(), &env);
            let listed = client::list(&url, master).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print!("{}", client::table(&listed));
            }
        }
        KeysCommand::Rm(args) => {
            let url = gateway_url(args.url.url.as_deref(), &env);
            client::remove(&url, master, &args.name).await?;
            println!("revoked {}", args.name);
        }
    }
    Ok(())
}

async fn models(sources: Sources) -> Result<()> {
    let env = env::Env::load(Path::new("."))?;
    let (catalog, _) = load(&sources, &env).await?;
    report::print(&report::models(&catalog));
    Ok(())
}
