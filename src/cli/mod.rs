//! Commands. Data goes to stdout, everything else to stderr; exit 0 success, 1 a check failed,
//! 2 error, 64 invalid config or usage.

mod config;
mod demo;
mod serve;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_ERROR: u8 = 2;
pub const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "homeostat",
    version,
    about = "Event-driven automation that makes infrastructure heal itself"
)]
pub struct Args {
    /// Log level filter (`info`, `debug`, `homeostat_engine=debug`, ...); also RUST_LOG.
    /// Defaults to `info`, and to `warn` for `demo`, whose output is its timeline.
    #[arg(long, global = true, env = "HOMEOSTAT_LOG")]
    log: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

/// `--config`, shared by the commands that read the config (or the database it names).
#[derive(clap::Args, Debug)]
struct ConfigPath {
    /// A config file or a folder of `.yaml` files.
    #[arg(
        long = "config",
        short = 'c',
        env = "HOMEOSTAT_CONFIG",
        default_value = "homeostat.yaml"
    )]
    path: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: HTTP API, sources, rules and actions.
    Serve {
        #[command(flatten)]
        config: ConfigPath,
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate config: syntax, fields, matchers, templates, CEL, references and secrets.
    Check {
        /// A config file or a folder of `.yaml` files.
        #[arg(default_value = "homeostat.yaml", env = "HOMEOSTAT_CONFIG")]
        path: PathBuf,
    },
    /// Run a self-contained game day: a service, a fault, detection, remediation and verification.
    Demo {
        /// Give up if the service is not healed within this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Keep the demo's working directory (config, database, logs) instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
    /// List recent events.
    Events {
        #[command(flatten)]
        config: ConfigPath,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        source: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List runs, or show one with `runs show ID`.
    Runs {
        #[command(flatten)]
        config: ConfigPath,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs in this state: running, succeeded, failed, dry_run, needs_attention.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        show: Option<RunsCommand>,
    },
    /// The demo's service under test (started by `homeostat demo`).
    #[command(hide = true)]
    DemoService {
        #[arg(long)]
        port: u16,
    },
    /// Restarts the demo's service (the remediation `homeostat demo` configures).
    #[command(hide = true)]
    DemoRestart {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    /// One run with each step's status, timing, output and error.
    Show { id: String },
}

pub fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            let default = if matches!(args.command, Command::Demo { .. }) {
                "warn"
            } else {
                "info"
            };
            tracing_subscriber::EnvFilter::try_new(args.log.as_deref().unwrap_or(default))
        })
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

pub async fn run(args: Args) -> ExitCode {
    let code = match args.command {
        Command::Serve { config, listen } => serve::run(&config.path, listen).await,
        Command::Check { path } => config::check(&path),
        Command::Demo { timeout_secs, keep } => demo::run(timeout_secs, keep).await,
        Command::Events {
            config,
            limit,
            source,
            json,
        } => show::events(&config.path, limit, source, json).await,
        Command::Runs {
            config,
            limit,
            status,
            json,
            show,
        } => match show {
            Some(RunsCommand::Show { id }) => show::run(&config.path, &id, json).await,
            None => show::runs(&config.path, limit, status, json).await,
        },
        Command::DemoService { port } => demo::service(port).await,
        Command::DemoRestart { dir } => demo::restart(&dir).await,
    };
    ExitCode::from(code)
}
