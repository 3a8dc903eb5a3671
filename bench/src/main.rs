//! `homeostat-bench`: homeostat's ingest throughput and receipt-to-dispatch latency, measured beside a real Alertmanager.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

mod dashboard;
mod disk;
mod incidents;
mod load;
mod overload;
mod payload;
mod pipeline;
mod promhist;
mod report;
mod runbooks;
mod scale;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::load::{ClosedLoop, Coverage, OpenLoop, Target};
use crate::payload::{Bodies, Flavor};
use crate::report::{IngestMeasure, IngestRow, LatencyReport};
use crate::server::{HomeostatOptions, Server, BENCH_TOKEN};

/// The histogram homeostat exposes for the time from an event's receipt to its action's dispatch.
const DISPATCH_METRIC: &str = "homeostat_dispatch_latency_seconds";

#[derive(Parser)]
#[command(
    name = "homeostat-bench",
    version,
    about = "homeostat's benchmarks, side by side with Alertmanager"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Closed-loop ingest throughput per batch size: homeostat with durable commit, then Alertmanager.
    Ingest(IngestArgs),
    /// Open-loop single-alert requests at a fixed rate; receipt-to-dispatch latency from homeostat's histogram.
    Latency(LatencyArgs),
    /// The engine alone, in process, without HTTP: its own ingest and dispatch ceiling.
    Pipeline(pipeline::PipelineArgs),
    /// The runbook engine: durable steps per second, and memory per run parked on an approval.
    Runbooks(runbooks::RunbookArgs),
    /// Incident correlation: events per second through the correlator and memory per active alert, beside Alertmanager.
    Incidents(incidents::IncidentArgs),
    /// Hostile load: large bodies at the peak and at 10x the clients, a slow-client flood, a
    /// 10,000-item signed webhook; peak RSS against the stated ceiling, /healthz throughout.
    Overload(overload::OverloadArgs),
    /// The store's size on disk through millions of events with retention on.
    Disk(disk::DiskArgs),
    /// How cost grows: ingest against rules and history, restart against the journal's length,
    /// list pages (first and deep) against the rows stored; tables, JSON and SVG plots.
    Scale(scale::ScaleArgs),
    /// The dashboard's page loads with many incidents in the store, and an incident with a long
    /// timeline.
    Dashboard(dashboard::DashboardArgs),
}

#[derive(Args)]
struct GeneratorArgs {
    /// Tokio worker threads for the load generator; the servers run on the same cores, so this is a trade-off.
    #[arg(long, default_value_t = 2)]
    generator_threads: usize,
    /// Connections: in the closed loop, requests kept in flight; in the open loop, the most allowed in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Distinct label sets sent: the `instance` label cycles over `host-0` to `host-N-1`.
    #[arg(long, default_value_t = 100_000)]
    distinct_alerts: usize,
    /// A request without an answer by then counts as an error, so a stalled server cannot hold the run.
    #[arg(long, default_value_t = 10)]
    request_timeout_secs: u64,
    /// How long a server may take to answer its readiness check after starting.
    #[arg(long, default_value_t = 30)]
    ready_timeout_secs: u64,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct HomeostatArgs {
    /// `server.queue_capacity`: requests waiting for the journal beyond this get 429.
    #[arg(long, default_value_t = 4096)]
    queue_capacity: usize,
    /// `store.synchronous`; `full` is the durable commit the targets are stated for.
    #[arg(long, value_enum, default_value_t = Synchronous::Full)]
    synchronous: Synchronous,
    /// `sqlite`, or `postgres`: each daemon's store on a PostgreSQL server started for it from the
    /// Debian package (`/usr/lib/postgresql/*/bin`), with its default durability (`fsync`,
    /// `synchronous_commit` on), on 127.0.0.1 with its own data directory, stopped after; the
    /// server CPU then includes PostgreSQL's processes. `--synchronous` is SQLite's only.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// `store.wal_max_bytes` (SQLite), when given; 0 leaves the WAL unbounded.
    #[arg(long)]
    wal_max_bytes: Option<u64>,
}

impl HomeostatArgs {
    /// Extra `store:` lines for the daemon's config.
    fn store_lines(&self) -> String {
        self.wal_max_bytes
            .map(|bytes| format!("  wal_max_bytes: {bytes}\n"))
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    fn as_config(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    fn as_config(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Both,
    Homeostat,
    Alertmanager,
}

#[derive(Args)]
struct IngestArgs {
    /// The homeostat binary, started as `BIN serve --config FILE`.
    #[arg(long)]
    homeostat: Option<PathBuf>,
    /// The Alertmanager binary, e.g. `/usr/bin/prometheus-alertmanager`.
    #[arg(long)]
    alertmanager: Option<PathBuf>,
    /// Which servers to measure.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// Alerts per request, comma-separated; each size gets fresh servers.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batch: Vec<usize>,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Unmeasured load before each phase, so connections are open and caches warm.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Give homeostat a rule that matches every alert, so ingest also pays for matching and dispatch.
    #[arg(long)]
    with_rule: bool,
    /// A cap on requests per phase, so the run is bounded in count as well as in time.
    #[arg(long, default_value_t = 20_000_000)]
    max_requests: u64,
    /// Pause after a 429 or an error before that connection sends again.
    #[arg(long, default_value_t = 5)]
    backoff_ms: u64,
    #[command(flatten)]
    generator: GeneratorArgs,
    #[command(flatten)]
    homeostat_options: HomeostatArgs,
}

#[derive(Args)]
struct LatencyArgs {
    /// The homeostat binary, started as `BIN serve --config FILE` with a rule that dispatches every alert.
    #[arg(long)]
    homeostat: PathBuf,
    /// Requests per second, each carrying one alert, sent on a fixed schedule.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// How long to wait after the load for dispatches to catch up with accepted alerts.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    #[command(flatten)]
    generator: GeneratorArgs,
    #[command(flatten)]
    homeostat_options: HomeostatArgs,
}

impl Command {
    fn worker_threads(&self) -> usize {
        match self {
            Command::Ingest(args) => args.generator.generator_threads,
            Command::Latency(args) => args.generator.generator_threads,
            // In process there is no separate server: the engine gets the whole machine.
            Command::Pipeline(_) | Command::Runbooks(_) | Command::Incidents(_) => 2,
            Command::Overload(_) | Command::Disk(_) | Command::Scale(_) | Command::Dashboard(_) => {
                2
            }
        }
    }
}

/// The same allocator as the `homeostat` binary, so the engine is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Help and version are not errors; anything else is a usage error.
            return if error.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.command.worker_threads().max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the tokio runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        // Dropping the run on Ctrl-C drops the servers, whose children are killed and directories removed.
        tokio::select! {
            result = run(cli.command) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted; the servers were stopped")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Ingest(args) => ingest(args).await,
        Command::Latency(args) => latency(args).await,
        Command::Pipeline(args) => pipeline::run(args).await,
        Command::Runbooks(args) => runbooks::run(args).await,
        Command::Incidents(args) => incidents::run(args).await,
        Command::Overload(args) => overload::run(args).await,
        Command::Disk(args) => disk::run(args).await,
        Command::Scale(args) => scale::run(args).await,
        Command::Dashboard(args) => dashboard::run(args).await,
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn target(
    generator: &GeneratorArgs,
    url: String,
    bearer: bool,
    bodies: &Bodies,
) -> Result<Arc<Target>> {
    Ok(Arc::new(Target {
        client: load::client(
            generator.connections,
            Duration::from_secs(generator.request_timeout_secs),
        )?,
        url,
        authorization: if bearer {
            Some(load::bearer(BENCH_TOKEN)?)
        } else {
            None
        },
        bodies: Arc::new(bodies.bodies.clone()),
    }))
}

/// The first line a binary prints for `--version`, for the results file; `None` if it will not say.
async fn version_of(binary: &Path, argument: &str) -> Option<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::process::Command::new(binary)
            .arg(argument)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(str::to_owned)
        .filter(|line| !line.is_empty())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("failed to serialize the results")?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn machine_json() -> Value {
    json!({
        "cores": std::thread::available_parallelism().map(|cores| cores.get()).ok(),
        "note": "generator and servers share the same cores",
    })
}

async fn ingest(args: IngestArgs) -> Result<()> {
    let want_homeostat = args.only != Only::Alertmanager;
    let want_alertmanager = args.only != Only::Homeostat;
    if want_homeostat && args.homeostat.is_none() {
        bail!("`--homeostat BIN` is needed to measure homeostat; consider `--only alertmanager` to skip it");
    }
    if want_alertmanager && args.alertmanager.is_none() {
        bail!("`--alertmanager BIN` is needed to measure Alertmanager; consider `--only homeostat` to skip it");
    }
    if args
        .batch
        .iter()
        .any(|&batch| batch == 0 || batch > args.generator.distinct_alerts)
    {
        bail!(
            "each `--batch` must be between 1 and `--distinct-alerts` ({})",
            args.generator.distinct_alerts
        );
    }
    let starts_at = now_rfc3339();
    let ready_timeout = Duration::from_secs(args.generator.ready_timeout_secs);
    let closed_loop = ClosedLoop {
        connections: args.generator.connections,
        duration: Duration::from_secs(args.duration_secs),
        max_requests: args.max_requests,
        backoff: Duration::from_millis(args.backoff_ms),
    };
    let warmup = ClosedLoop {
        duration: Duration::from_secs(args.warmup_secs),
        ..closed_loop
    };
    let mut rows = Vec::new();
    for &batch in &args.batch {
        if let (true, Some(binary)) = (want_homeostat, &args.homeostat) {
            let bodies = payload::build(
                Flavor::Webhook,
                batch,
                args.generator.distinct_alerts,
                &starts_at,
            );
            let options = HomeostatOptions {
                queue_capacity: args.homeostat_options.queue_capacity,
                synchronous: args.homeostat_options.synchronous.as_config(),
                with_rule: args.with_rule,
                ready_timeout,
                extra: String::new(),
                server: String::new(),
                store: args.homeostat_options.store_lines(),
                max_open_files: None,
                postgres: args.homeostat_options.store == StoreKind::Postgres,
            };
            eprintln!(
                "batch {batch}: starting homeostat from `{}`",
                binary.display()
            );
            let result = match Server::start_homeostat(binary, &options).await {
                Ok(server) => {
                    let url = format!("{}/api/v1/hooks/alertmanager", server.base_url);
                    measure_ingest(
                        server,
                        target(&args.generator, url, true, &bodies)?,
                        &bodies,
                        &warmup,
                        &closed_loop,
                    )
                    .await
                }
                Err(error) => Err(error),
            };
            rows.push(IngestRow {
                server: "homeostat",
                batch,
                result: result.map_err(|error| format!("{error:#}")),
            });
        }
        if let (true, Some(binary)) = (want_alertmanager, &args.alertmanager) {
            let bodies = payload::build(
                Flavor::AlertmanagerV2,
                batch,
                args.generator.distinct_alerts,
                &starts_at,
            );
            eprintln!(
                "batch {batch}: starting alertmanager from `{}`",
                binary.display()
            );
            let result = match Server::start_alertmanager(binary, ready_timeout).await {
                Ok(server) => {
                    let url = format!("{}/api/v2/alerts", server.base_url);
                    measure_ingest(
                        server,
                        target(&args.generator, url, false, &bodies)?,
                        &bodies,
                        &warmup,
                        &closed_loop,
                    )
                    .await
                }
                Err(error) => Err(error),
            };
            rows.push(IngestRow {
                server: "alertmanager",
                batch,
                result: result.map_err(|error| format!("{error:#}")),
            });
        }
    }
    for row in &rows {
        if let Err(error) = &row.result {
            eprintln!("batch {}: {} failed: {error}", row.batch, row.server);
        }
    }
    print!("{}", report::ingest_table(&rows, &args.batch));
    if let Some(path) = &args.generator.out {
        let homeostat_version = match &args.homeostat {
            Some(binary) if want_homeostat => version_of(binary, "--version").await,
            _ => None,
        };
        let alertmanager_version = match &args.alertmanager {
            Some(binary) if want_alertmanager => version_of(binary, "--version").await,
            _ => None,
        };
        let parameters = json!({
            "started_at": starts_at,
            "batches": args.batch,
            "duration_secs": args.duration_secs,
            "warmup_secs": args.warmup_secs,
            "connections": args.generator.connections,
            "generator_threads": args.generator.generator_threads,
            "distinct_alerts": args.generator.distinct_alerts,
            "with_rule": args.with_rule,
            "queue_capacity": args.homeostat_options.queue_capacity,
            "synchronous": args.homeostat_options.synchronous.as_config(),
            "store": args.homeostat_options.store.as_config(),
            "homeostat_version": homeostat_version,
            "alertmanager_version": alertmanager_version,
            "machine": machine_json(),
        });
        write_json(path, &report::ingest_json(&rows, &args.batch, parameters))?;
    }
    if rows.iter().any(|row| row.result.is_err()) {
        bail!("at least one server could not be measured; see above");
    }
    Ok(())
}

/// Warms up, measures one closed-loop phase, samples the server around it, and stops the server.
async fn measure_ingest(
    mut server: Server,
    target: Arc<Target>,
    bodies: &Bodies,
    warmup: &ClosedLoop,
    closed_loop: &ClosedLoop,
) -> Result<IngestMeasure> {
    let result = async {
        let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
        let server_before = server.sample()?;
        if !warmup.duration.is_zero() {
            let warm = warmup.run(&target, &coverage).await;
            eprintln!(
                "  {}: warm-up {} requests, {} 2xx, {} 429, {} errors",
                server.name,
                warm.tally.requests(),
                warm.tally.accepted,
                warm.tally.throttled,
                warm.tally.rejected + warm.tally.transport_errors
            );
        }
        server.ensure_running()?;
        let server_start = server.sample()?;
        let generator_start = server::sample_self()?;
        eprintln!(
            "  {}: measuring for {:?} with {} connections ({} alerts per request, {} B per body, {} distinct alerts)",
            server.name,
            closed_loop.duration,
            closed_loop.connections,
            bodies.batch,
            bodies.mean_body_bytes(),
            bodies.distinct_alerts()
        );
        let outcome = closed_loop.run(&target, &coverage).await;
        let generator_end = server::sample_self()?;
        server.ensure_running()?;
        let server_after = server.sample()?;
        Ok(IngestMeasure {
            active_alerts: coverage.bodies_accepted() * bodies.batch,
            server_cpu_secs: server_after.cpu_secs - server_start.cpu_secs,
            generator_cpu_secs: generator_end.cpu_secs - generator_start.cpu_secs,
            tally: outcome.tally,
            elapsed: outcome.elapsed,
            server_before,
            server_after,
        })
    }
    .await;
    server.stop().await;
    result
}

async fn latency(args: LatencyArgs) -> Result<()> {
    if args.rate == 0 || args.duration_secs == 0 {
        bail!("`--rate` and `--duration-secs` must be positive");
    }
    if args.rate.saturating_mul(args.duration_secs) > 10_000_000 {
        bail!("`--rate` × `--duration-secs` is over 10,000,000 requests; consider a lower rate or a shorter run");
    }
    // homeostat decides a re-sent firing alert only once, so every request carries a new alert: otherwise the
    // repeats would be accepted without a dispatch and the histogram would miss them.
    let distinct_alerts = args
        .generator
        .distinct_alerts
        .max(usize::try_from(args.rate.saturating_mul(args.duration_secs)).unwrap_or(usize::MAX));
    let starts_at = now_rfc3339();
    let bodies = payload::build(Flavor::Webhook, 1, distinct_alerts, &starts_at);
    let options = HomeostatOptions {
        queue_capacity: args.homeostat_options.queue_capacity,
        synchronous: args.homeostat_options.synchronous.as_config(),
        with_rule: true,
        ready_timeout: Duration::from_secs(args.generator.ready_timeout_secs),
        extra: String::new(),
        server: String::new(),
        store: args.homeostat_options.store_lines(),
        max_open_files: None,
        postgres: args.homeostat_options.store == StoreKind::Postgres,
    };
    eprintln!(
        "starting homeostat from `{}` with rule `bench-dispatch`",
        args.homeostat.display()
    );
    let mut server = Server::start_homeostat(&args.homeostat, &options).await?;
    let result = measure_latency(&mut server, &args, &bodies).await;
    server.stop().await;
    let report = result?;
    print!("{}", report::latency_text(&report, DISPATCH_METRIC));
    if let Some(path) = &args.generator.out {
        let parameters = json!({
            "started_at": starts_at,
            "rate_per_sec": args.rate,
            "duration_secs": args.duration_secs,
            "max_in_flight": args.generator.connections,
            "generator_threads": args.generator.generator_threads,
            "distinct_alerts": distinct_alerts,
            "queue_capacity": args.homeostat_options.queue_capacity,
            "synchronous": args.homeostat_options.synchronous.as_config(),
            "store": args.homeostat_options.store.as_config(),
            "homeostat_version": version_of(&args.homeostat, "--version").await,
            "machine": machine_json(),
        });
        write_json(
            path,
            &report::latency_json(&report, DISPATCH_METRIC, parameters),
        )?;
    }
    Ok(())
}

async fn measure_latency(
    server: &mut Server,
    args: &LatencyArgs,
    bodies: &Bodies,
) -> Result<LatencyReport> {
    let url = format!("{}/api/v1/hooks/alertmanager", server.base_url);
    let target = target(&args.generator, url, true, bodies)?;
    let metrics_url = format!("{}/metrics", server.base_url);
    let before = scrape(&target.client, &metrics_url).await?;
    let dispatch_before = promhist::parse(&before, DISPATCH_METRIC).unwrap_or_default();
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let server_before = server.sample()?;
    let generator_start = server::sample_self()?;
    let open_loop = OpenLoop {
        rate_per_sec: args.rate,
        duration: Duration::from_secs(args.duration_secs),
        max_in_flight: args.generator.connections,
    };
    eprintln!(
        "  sending {} single-alert requests at {}/s (at most {} in flight)",
        args.rate * args.duration_secs,
        args.rate,
        args.generator.connections
    );
    let outcome = open_loop.run(&target, &coverage).await;
    let generator_end = server::sample_self()?;
    server.ensure_running()?;
    let dispatch = settle(
        &target.client,
        &metrics_url,
        &dispatch_before,
        outcome.tally.accepted,
        args.settle_secs,
    )
    .await;
    let server_after = server.sample()?;
    Ok(LatencyReport {
        rate_per_sec: args.rate,
        active_alerts: coverage.bodies_accepted() * bodies.batch,
        generator_cpu_secs: generator_end.cpu_secs - generator_start.cpu_secs,
        outcome,
        dispatch,
        server_before,
        server_after,
    })
}

/// Waits until the dispatch histogram has counted every accepted alert or stops growing, then returns its window.
async fn settle(
    client: &reqwest::Client,
    metrics_url: &str,
    before: &promhist::Histogram,
    accepted: u64,
    settle_secs: u64,
) -> Result<promhist::Histogram, String> {
    let deadline = Instant::now() + Duration::from_secs(settle_secs);
    let mut last_count = -1.0;
    let mut unchanged_polls = 0;
    loop {
        let text = scrape(client, metrics_url)
            .await
            .map_err(|error| format!("{error:#}"))?;
        let Some(now) = promhist::parse(&text, DISPATCH_METRIC) else {
            return Err(format!("`/metrics` has no histogram `{DISPATCH_METRIC}` (no `{DISPATCH_METRIC}_bucket` lines)"));
        };
        let window = now.since(before);
        // One second without a new dispatch means the backlog is drained, even if some alerts never dispatch.
        unchanged_polls = if window.count == last_count {
            unchanged_polls + 1
        } else {
            0
        };
        last_count = window.count;
        if window.count >= accepted as f64 || unchanged_polls >= 10 || Instant::now() >= deadline {
            if window.count < accepted as f64 {
                eprintln!(
                    "  note: {} dispatches counted for {accepted} accepted alerts",
                    window.count
                );
            }
            return Ok(window);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scrape(client: &reqwest::Client, url: &str) -> Result<String> {
    let response = client
        .get(url)
        .bearer_auth(BENCH_TOKEN)
        .send()
        .await
        .with_context(|| format!("failed to scrape `{url}`"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("failed to read `{url}`"))?;
    if !status.is_success() {
        bail!(
            "`{url}` answered HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
    }
    Ok(text)
}
