//! Commands. Data goes to stdout, everything else to stderr; exit 0 success, 1 a check failed,
//! 2 error, 64 invalid config or usage.

mod config;
mod demo;
mod detect;
mod detectors;
mod docs;
mod follow;
mod forecast;
mod incidents;
mod output;
mod remote;
mod rules;
mod runbook;
mod serve;
mod show;
mod silence;
mod slo;
mod store;

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
    about = "Event-driven automation that makes infrastructure heal itself",
    after_help = "Exit codes: 0 ok, 1 a check failed or the daemon refused, 2 error, 64 invalid config or usage (docs/cli.md)."
)]
pub struct Args {
    /// Log level filter (`info`, `debug`, `homeostat_engine=debug`, ...); also RUST_LOG.
    /// Defaults to `info`, and to `warn` for `demo`, whose output is its timeline.
    #[arg(long, global = true, env = "HOMEOSTAT_LOG")]
    log: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command takes, before or after its name: where the daemon is and how to prove
/// who you are, the config, and the store to read directly.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Global {
    /// A config file or a folder of `.yaml` files [default: homeostat.yaml, for the commands that
    /// need one]. Commands that talk to the daemon read only its `server.listen`, and only when
    /// --server is not given.
    #[arg(
        long,
        short = 'c',
        env = "HOMEOSTAT_CONFIG",
        global = true,
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// The daemon's base URL [default: `server.listen` of --config when given, else
    /// http://127.0.0.1:9393].
    #[arg(long, env = "HOMEOSTAT_SERVER", global = true, value_name = "URL")]
    server: Option<String>,
    /// An API token from the config's `api_tokens`: `read` to look, `write` to act. Its name is
    /// recorded as who did it.
    #[arg(
        long,
        env = "HOMEOSTAT_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// A file holding the token (its first line); wins over --token and HOMEOSTAT_TOKEN.
    #[arg(long, env = "HOMEOSTAT_TOKEN_FILE", global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Read `events` and `runs` straight from this SQLite file instead of through the daemon (the
    /// daemon need not run); `backup`, `export` and `retention` use it instead of the config's.
    #[arg(long, global = true, value_name = "PATH")]
    store: Option<PathBuf>,
}

impl Global {
    /// The config path: --config, or `homeostat.yaml` in the current directory.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from("homeostat.yaml"))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: HTTP API, sources, rules and actions.
    Serve {
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate config: syntax, fields, matchers, templates, CEL, references and secrets.
    Check {
        /// A config file or a folder of `.yaml` files [default: --config, or homeostat.yaml].
        path: Option<PathBuf>,
    },
    /// Run a self-contained game day: a service, a fault, detection, remediation and verification.
    Demo {
        /// Give up if the service is not healed within this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Keep the demo's working directory (config, database, logs) instead of deleting it.
        #[arg(long)]
        keep: bool,
        /// After the game day, keep its daemon running and serve the dashboard on loopback
        /// (`--listen`, a free port by default) until Ctrl-C, to see the incident and its run.
        #[arg(long)]
        ui: bool,
        /// Where `--ui` serves, such as `127.0.0.1:9393`.
        #[arg(long, requires = "ui")]
        listen: Option<String>,
    },
    /// Events, newest first (`events` or `events list`), or one with its verdicts and what the
    /// rules decided (`events show ID`).
    Events {
        #[command(flatten)]
        output: output::Args,
        /// `homeostat events` alone lists, with these flags.
        #[command(flatten)]
        list: EventsList,
        #[command(subcommand)]
        command: Option<EventsCommand>,
    },
    /// List runs (`runs` or `runs list`), show one (`runs show ID`) or cancel one (`runs cancel ID`).
    Runs {
        #[command(flatten)]
        output: output::Args,
        /// `homeostat runs` alone lists, with these flags.
        #[command(flatten)]
        list: RunsList,
        #[command(subcommand)]
        command: Option<RunsCommand>,
    },
    /// Runbooks: list and show them, or start a run.
    Runbook {
        #[command(flatten)]
        output: output::Args,
        #[command(subcommand)]
        command: RunbookCommand,
    },
    /// Approve (or, with --reject, reject) the approval step a run waits for.
    Approve {
        /// The run's id.
        run: String,
        /// Reject instead of approve: the step fails and the run rolls back or stops.
        #[arg(long)]
        reject: bool,
        /// The approval step's path, when the run waits for more than one.
        #[arg(long)]
        step: Option<String>,
        /// Recorded with the answer in the run's journal.
        #[arg(long)]
        comment: Option<String>,
    },
    /// The approvals runs wait for that your token may give: what will run, on what, until when.
    Approvals {
        /// Approvals your token may not give too.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        output: output::Args,
    },
    /// Incidents: list them (`incidents` or `incidents list`), show one, and acknowledge, resolve
    /// or add a note to one.
    Incidents {
        #[command(flatten)]
        output: output::Args,
        /// `homeostat incidents` alone lists, with these flags.
        #[command(flatten)]
        list: IncidentsList,
        #[command(subcommand)]
        command: Option<IncidentsCommand>,
    },
    /// Write a blameless postmortem draft of an incident, in Markdown, from its journal.
    Postmortem {
        /// The incident's number.
        id: String,
        /// Write the draft to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Silences: mute the alerts that match, for a while, as Alertmanager's.
    Silence {
        #[command(flatten)]
        output: output::Args,
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Rules: list them with what their guards hold (`rules` or `rules list`), show one, list the
    /// ones loop detection disabled, or turn one back on for a target.
    Rules {
        #[command(flatten)]
        output: output::Args,
        #[command(subcommand)]
        command: Option<RulesCommand>,
    },
    /// Ask the daemon to reload its config (`POST /-/reload`).
    Reload,
    /// Service level objectives: generate Prometheus rules from a Sloth `prometheus/v1` spec, or
    /// show the error budgets the daemon keeps.
    Slo {
        #[command(subcommand)]
        command: SloCommand,
    },
    /// Write a consistent, compacted copy of the live store to FILE (SQLite's `VACUUM INTO`); the
    /// daemon keeps running.
    Backup {
        /// The copy; it must not exist yet.
        file: PathBuf,
    },
    /// Export events and journal entries as JSON lines, in the order they happened: an audit
    /// record, and what `homeostat replay` reads.
    Export {
        /// From this time: RFC 3339, or a duration ago (`24h`, `7d`) [default: the beginning].
        #[arg(long, value_parser = store::parse_when)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Up to (not including) this time, the same way [default: now].
        #[arg(long, value_parser = store::parse_when)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// What `store.retention` deletes from the store now (a dry run); `--apply` deletes it.
    Retention {
        /// Delete now instead of reporting.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        output: output::Args,
    },
    /// Score a `timestamp,value` CSV with the anomaly detector, offline; writes
    /// `timestamp,value,anomaly_score`.
    Detect(detect::Args),
    /// The daemon's anomaly detectors (`detectors:` in the config).
    Detectors {
        #[command(subcommand)]
        command: DetectorsCommand,
    },
    /// Forecast a `timestamp,value` CSV, or backtest the forecaster on it.
    Forecast(forecast::Args),
    /// Print a shell completion script: `source <(homeostat completion bash)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write man pages, one per command (`homeostat.1`, `homeostat-runs.1`, ...), into DIR.
    Man {
        /// Where to write them; created if missing.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
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

/// `--limit`: a count of one or more; past 1,000 the lists read several of the daemon's pages.
fn limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!(
            "`{text}` is not a count; use a whole number such as 100"
        )),
    }
}

/// The flags of the event list.
#[derive(clap::Args, Debug)]
struct EventsList {
    /// How many events to list [default: 20].
    #[arg(long, value_parser = limit)]
    limit: Option<usize>,
    /// Only events from this source.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Recent events, newest first (the default).
    List {
        #[command(flatten)]
        list: EventsList,
    },
    /// One event: its labels and annotations, its verdicts, and what the rules decided about it.
    Show { id: String },
}

/// The flags of the run list.
#[derive(clap::Args, Debug)]
struct RunsList {
    /// How many runs to list [default: 20].
    #[arg(long, value_parser = limit)]
    limit: Option<usize>,
    /// Only runs in this state: running, succeeded, failed, rolled_back, cancelled, rejected,
    /// dry_run, needs_attention.
    #[arg(long)]
    status: Option<String>,
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    /// Recent runs, newest first (the default).
    List {
        #[command(flatten)]
        list: RunsList,
    },
    /// One run with each step's status, timing, outputs, output and error, and how it ended.
    Show { id: String },
    /// Cancel a run in progress.
    Cancel { id: String },
}

/// The flags of the incident list.
#[derive(clap::Args, Debug)]
struct IncidentsList {
    /// Only incidents not resolved.
    #[arg(long)]
    open: bool,
    /// How many incidents to list [default: 20].
    #[arg(long, value_parser = limit)]
    limit: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum IncidentsCommand {
    /// Incidents, newest first (the default).
    List {
        #[command(flatten)]
        list: IncidentsList,
    },
    /// One incident: its state, its alerts, its context (runbooks, recent changes, related
    /// incidents, queries) and its timeline.
    Show { id: String },
    /// Say you are on it: pages about it can stop.
    Ack {
        id: String,
        /// Recorded on the incident's timeline.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Resolve it by hand.
    Resolve {
        id: String,
        /// Recorded on the incident's timeline.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Add a note to its timeline.
    Note {
        id: String,
        /// The note; several words are joined with spaces.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum SilenceCommand {
    /// Silence the alerts that match every MATCHER (`service="checkout"`, `severity=~"warn|info"`);
    /// prints the silence's id.
    Add {
        /// Alertmanager matchers; an alert must match all of them.
        #[arg(required = true, num_args = 1.., value_name = "MATCHER")]
        matchers: Vec<String>,
        /// Why the alerts are silenced.
        #[arg(long)]
        comment: String,
        /// How long from its start: `30m`, `2h`, `1h30m`, `1d` [default: 1h].
        #[arg(long, conflicts_with = "end")]
        duration: Option<String>,
        /// When it starts, RFC 3339 [default: now].
        #[arg(long, value_name = "RFC3339", value_parser = silence::parse_time)]
        start: Option<chrono::DateTime<chrono::Utc>>,
        /// When it ends, RFC 3339, instead of --duration.
        #[arg(long, value_name = "RFC3339", value_parser = silence::parse_time)]
        end: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Pending and active silences, newest first.
    List {
        /// Expired silences too.
        #[arg(long)]
        expired: bool,
    },
    /// End a silence now.
    Expire { id: String },
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Every rule, with what its guards hold now: targets in cooldown, runs in the rate window,
    /// runs in progress and their locks, targets loop detection disabled it for (the default).
    List,
    /// One rule: what it matches and runs, its guards, and what they hold now.
    Show { rule: String },
    /// The (rule, target) pairs loop detection turned off.
    Disabled,
    /// Turn a rule back on for a target: it acts on that target again from the next event.
    /// Its loop count for that target starts afresh.
    Enable {
        rule: String,
        /// The target loop detection disabled the rule for (`homeostat rules disabled` lists them).
        #[arg(long)]
        target: String,
    },
}

// Parsed once per process: the size of the larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum SloCommand {
    /// Write Prometheus recording rules and multi-window multi-burn-rate alerts (page and ticket)
    /// for every SLO of a spec file, equal to Sloth's `generate`: Sloth `prometheus/v1` and
    /// Kubernetes `PrometheusServiceLevel` specs (several documents per file), OpenSLO `v1alpha`
    /// as Sloth reads it, and OpenSLO `v1` ratio SLOs.
    Rules {
        /// The spec file.
        spec: PathBuf,
        /// Write the rules to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// The SLO period the error budget is spent over: `28d` or `30d` (default `30d`, or an
        /// OpenSLO file's time window).
        #[arg(long, conflicts_with = "windows")]
        period: Option<homeostat_core::slo::Period>,
        /// Custom alert windows and period, from a Sloth `AlertWindows` (`sloth.slok.dev/v1`) file.
        #[arg(long, value_name = "FILE")]
        windows: Option<PathBuf>,
        /// Write the recording rules only.
        #[arg(long)]
        disable_alerts: bool,
        /// Write the alerts only (the recordings they read come from elsewhere).
        #[arg(long)]
        disable_recordings: bool,
        /// A label for every recording rule, over the spec's (repeatable).
        #[arg(long = "extra-labels", short = 'l', value_name = "KEY=VALUE", value_parser = slo::parse_label)]
        extra_labels: Vec<(String, String)>,
    },
    /// The error budget, burn rates and firing alerts of every SLO the daemon evaluates
    /// (`slos:` in the config), as of each one's latest evaluation.
    Status {
        #[command(flatten)]
        output: output::Args,
    },
}

#[derive(Subcommand, Debug)]
enum DetectorsCommand {
    /// Every series of every detector, with its latest score, expected range and state
    /// (learning, normal, firing), what its input's clock did, and how learning its history went.
    Status {
        #[command(flatten)]
        output: output::Args,
    },
}

#[derive(Subcommand, Debug)]
enum RunbookCommand {
    /// The runbooks the daemon's config declares, with their parameters.
    List,
    /// One runbook: its parameters, and its steps as a tree.
    Show { name: String },
    /// Start a run of a runbook; prints the run's id.
    Run {
        name: String,
        /// A parameter, as `KEY=VALUE`; repeat for more. Values convert to the declared types.
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = runbook::parse_param)]
        params: Vec<(String, String)>,
        /// What the run acts on (keys locks and cooldowns); the runbook's name by default.
        #[arg(long)]
        target: Option<String>,
        /// The incident this run is for: it shows on the incident's timeline and the postmortem
        /// credits you, not automation.
        #[arg(long, value_name = "N")]
        incident: Option<i64>,
        /// Render every step's inputs and execute nothing; Kubernetes steps ask the API server
        /// what they would do (`dryRun=All`).
        #[arg(long)]
        dry_run: bool,
        /// Print each step as it happens, and exit 0 only if the run succeeds.
        #[arg(long, short = 'f')]
        follow: bool,
    },
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
    let global = &args.global;
    let code = match args.command {
        Command::Serve { listen } => serve::run(&global.config_path(), listen).await,
        Command::Check { path } => config::check(&path.unwrap_or_else(|| global.config_path())),
        Command::Demo {
            timeout_secs,
            keep,
            ui,
            listen,
        } => demo::run(timeout_secs, keep, ui.then(|| listen.unwrap_or_default())).await,
        Command::Events {
            output,
            list,
            command,
        } => {
            let format = output.format();
            match command {
                None => show::events(global, format, list.limit.unwrap_or(20), list.source).await,
                Some(EventsCommand::List { list: own }) => {
                    show::events(
                        global,
                        format,
                        own.limit.or(list.limit).unwrap_or(20),
                        own.source.or(list.source),
                    )
                    .await
                }
                Some(EventsCommand::Show { id }) => show::event(global, format, &id).await,
            }
        }
        Command::Runs {
            output,
            list,
            command,
        } => {
            let format = output.format();
            match command {
                None => show::runs(global, format, list.limit.unwrap_or(20), list.status).await,
                Some(RunsCommand::List { list: own }) => {
                    show::runs(
                        global,
                        format,
                        own.limit.or(list.limit).unwrap_or(20),
                        own.status.or(list.status),
                    )
                    .await
                }
                Some(RunsCommand::Show { id }) => show::run(global, format, &id).await,
                Some(RunsCommand::Cancel { id }) => runbook::cancel(global, &id).await,
            }
        }
        Command::Runbook { output, command } => {
            let format = output.format();
            match command {
                RunbookCommand::List => runbook::list(global, format).await,
                RunbookCommand::Show { name } => runbook::show(global, format, &name).await,
                RunbookCommand::Run {
                    name,
                    params,
                    target,
                    incident,
                    dry_run,
                    follow,
                } => {
                    runbook::run(
                        global,
                        runbook::Start {
                            name,
                            params,
                            target,
                            incident,
                            dry_run,
                            follow,
                        },
                    )
                    .await
                }
            }
        }
        Command::Approve {
            run,
            reject,
            step,
            comment,
        } => runbook::approve(global, &run, !reject, step, comment).await,
        Command::Approvals { all, output } => {
            runbook::approvals(global, output.format(), all).await
        }
        Command::Incidents {
            output,
            list,
            command,
        } => {
            let format = output.format();
            match command {
                None => {
                    let list = incidents::List {
                        open: list.open,
                        limit: list.limit.unwrap_or(20),
                    };
                    incidents::list(global, format, list).await
                }
                Some(IncidentsCommand::List { list: own }) => {
                    let list = incidents::List {
                        open: own.open || list.open,
                        limit: own.limit.or(list.limit).unwrap_or(20),
                    };
                    incidents::list(global, format, list).await
                }
                Some(IncidentsCommand::Show { id }) => incidents::show(global, format, &id).await,
                Some(IncidentsCommand::Ack { id, comment }) => {
                    let action = incidents::Action::Acknowledge { comment };
                    incidents::act(global, &id, action).await
                }
                Some(IncidentsCommand::Resolve { id, comment }) => {
                    let action = incidents::Action::Resolve { comment };
                    incidents::act(global, &id, action).await
                }
                Some(IncidentsCommand::Note { id, text }) => {
                    let action = incidents::Action::Note {
                        text: text.join(" "),
                    };
                    incidents::act(global, &id, action).await
                }
            }
        }
        Command::Postmortem { id, output } => {
            incidents::postmortem(global, &id, output.as_deref()).await
        }
        Command::Silence { output, command } => match command {
            SilenceCommand::Add {
                matchers,
                comment,
                duration,
                start,
                end,
            } => {
                let add = silence::Add {
                    matchers,
                    comment,
                    duration,
                    start,
                    end,
                };
                silence::add(global, add).await
            }
            SilenceCommand::List { expired } => {
                silence::list(global, output.format(), expired).await
            }
            SilenceCommand::Expire { id } => silence::expire(global, &id).await,
        },
        Command::Rules { output, command } => {
            let format = output.format();
            match command {
                None | Some(RulesCommand::List) => rules::list(global, format).await,
                Some(RulesCommand::Show { rule }) => rules::show(global, format, &rule).await,
                Some(RulesCommand::Disabled) => rules::disabled(global, format).await,
                Some(RulesCommand::Enable { rule, target }) => {
                    rules::enable(global, &rule, &target).await
                }
            }
        }
        Command::Reload => remote::reload(global).await,
        Command::Slo { command } => match command {
            SloCommand::Rules {
                spec,
                out,
                period,
                windows,
                disable_alerts,
                disable_recordings,
                extra_labels,
            } => slo::rules(slo::RulesArgs {
                spec: &spec,
                out: out.as_deref(),
                period,
                windows: windows.as_deref(),
                disable_alerts,
                disable_recordings,
                extra_labels,
            }),
            SloCommand::Status { output } => slo::status(global, output.format()).await,
        },
        Command::Backup { file } => store::backup(global, &file).await,
        Command::Export {
            since,
            until,
            output,
        } => store::export(global, since, until, output.as_deref()).await,
        Command::Retention { apply, output } => {
            store::retention(global, apply, output.format()).await
        }
        Command::Detect(args) => detect::run(&args),
        Command::Detectors {
            command: DetectorsCommand::Status { output },
        } => detectors::status(global, output.format()).await,
        Command::Forecast(args) => forecast::run(&args),
        Command::Completion { shell } => docs::completion(shell),
        Command::Man { dir } => docs::man(&dir),
        Command::DemoService { port } => demo::service(port).await,
        Command::DemoRestart { dir } => demo::restart(&dir).await,
    };
    ExitCode::from(code)
}
