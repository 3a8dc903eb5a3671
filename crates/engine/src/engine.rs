//! Starting the engine: open the store, recover unfinished work, and spawn the writer, decider, runs and sources.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use homeostat_core::clock::SharedClock;
use homeostat_core::config::{Scope, Source};
use homeostat_core::decide::PlannedRun;
use homeostat_core::rule::Compiled;
use homeostat_core::runbook::{coerce_params, Input, Program};
use homeostat_core::Event;
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::writer::{Pending, Writer};
use homeostat_store::{RunQuery, RunStatus, Store, Write};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::decider::{rebuild_guards, restore_correlator, DecideStage, CURSOR};
use crate::metrics::Metrics;
use crate::runs::{self, Runs, Start};
use crate::secrets::{self, Secret};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] homeostat_store::Error),
    #[error("api token `{name}`: {source}")]
    Token {
        name: String,
        source: secrets::Error,
    },
    #[error("source `{name}`: {source}")]
    SourceSecret {
        name: String,
        source: secrets::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("run `{run}`: its journaled runbook does not compile: {message}")]
    Plan { run: String, message: String },
    #[error(transparent)]
    Kubernetes(#[from] crate::kubernetes::Error),
}

/// Why a run could not be started by hand.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no runbook is named `{name}`")]
    UnknownRunbook { name: String, known: Vec<String> },
    #[error(transparent)]
    Param(#[from] homeostat_core::runbook::program::ParamError),
    #[error("the journal is unavailable: {0}")]
    Unavailable(String),
}

/// Why an ingest request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the journal queue is full")]
    Overloaded,
    #[error("the journal is unavailable: {0}")]
    Unavailable(String),
}

/// A resolved API token: only its SHA-256 is kept in memory.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub scopes: Vec<Scope>,
    digest: [u8; 32],
}

impl Token {
    /// Whether `presented` is this token, compared in constant time over the digests.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|scope| {
            matches!(
                (scope, needed),
                (Scope::Write, _) | (Scope::Ingest, Scope::Ingest) | (Scope::Read, Scope::Read)
            )
        })
    }
}

/// The (rule, target) pairs loop detection turned off, as of the last commit, sorted.
///
/// The correlator that owns the set lives in the writer task, which the API cannot reach; the decide
/// stage publishes its copy here after each successful commit (and once at start, after restore), so
/// readers see only what is durable. Cheap to clone: clones share the one copy.
#[derive(Clone, Default)]
pub struct DisabledRules(Arc<std::sync::RwLock<Vec<(String, String)>>>);

impl DisabledRules {
    /// The pairs as of the last commit.
    pub fn list(&self) -> Vec<(String, String)> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `rule` is disabled for `target` as of the last commit.
    pub fn contains(&self, rule: &str, target: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(disabled, on)| disabled == rule && on == target)
    }

    /// Replaces the copy; only the decide stage calls it.
    pub(crate) fn publish<'a>(&self, pairs: impl Iterator<Item = &'a (String, String)>) {
        let pairs: Vec<(String, String)> = pairs.cloned().collect();
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pairs;
    }
}

/// What the API and sources use to talk to the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub compiled: Arc<Compiled>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    pub tokens: Arc<Vec<Token>>,
    pub webhook_secrets: Arc<HashMap<String, Secret>>,
    /// Runs in progress: approvals, cancels and progress notifications.
    pub runs: Runs,
    /// The rules loop detection disabled, per target, as of the last commit.
    pub disabled_rules: DisabledRules,
    /// Every SLO's latest evaluation.
    pub slos: crate::source::slo::SloStatuses,
    /// Every anomaly detector's series, as of its latest evaluation.
    pub detectors: crate::source::detector::DetectorStatuses,
    ready: Arc<AtomicBool>,
}

impl Handle {
    /// Queues events for a durable commit without waiting for room; await the result before answering 2xx.
    pub fn ingest(
        &self,
        source: &str,
        events: Vec<Event>,
    ) -> Result<(Pending, usize), IngestError> {
        let count = events.len();
        let pending = self
            .writer
            .try_submit(
                events
                    .into_iter()
                    .map(|event| Write::Event(event.into()))
                    .collect(),
            )
            .map_err(|error| {
                self.metrics.source_error(source, "overloaded");
                match error {
                    homeostat_store::Error::Overloaded => IngestError::Overloaded,
                    other => IngestError::Unavailable(other.to_string()),
                }
            })?;
        Ok((pending, count))
    }

    /// Puts a command (acknowledge, resolve, a note, a silence) into the event stream for `by` and
    /// waits for its commit. Correlation applies it in stream order, so a replay applies it again at
    /// the same point; callers check it applies (the incident is open, say) before submitting.
    pub async fn command(
        &self,
        command: homeostat_core::incident::Command,
        by: &str,
    ) -> Result<String, IngestError> {
        let now = self.clock.now();
        let event = command.into_event(
            homeostat_core::event::new_id(now),
            Some(by.to_string()),
            now,
        );
        let id = event.id.clone();
        let (pending, count) = self.ingest("homeostat", vec![event])?;
        pending
            .committed()
            .await
            .map_err(|error| IngestError::Unavailable(error.to_string()))?;
        self.accepted("homeostat", count);
        Ok(id)
    }

    /// Counts accepted events once committed.
    /// Journals the events a source inside the daemon raised, with its `state` in the same commit
    /// when given. Internal sources wait for room rather than drop: under overload the source
    /// simply runs late.
    pub async fn journal_own(&self, source: &str, events: Vec<Event>, state: Option<Write>) {
        let count = events.len();
        let writes = events
            .into_iter()
            .map(|event| Write::Event(event.into()))
            .chain(state)
            .collect();
        match self.writer.submit(writes).await {
            Ok(_) if count > 0 => self.accepted(source, count),
            Ok(_) => {}
            Err(error) => tracing::error!(source, %error, "cannot journal what the source raised"),
        }
    }

    pub fn accepted(&self, source: &str, count: usize) {
        self.metrics
            .events_received
            .get_or_create(&vec![("source", source.to_string())])
            .inc_by(count as u64);
    }

    /// Starts a named runbook by hand, for `by` (an API token's name). Parameters arrive as given on
    /// the command line or in JSON and are checked against the runbook's declarations. A dry run is
    /// complete when this returns; a real run is committed and dispatched.
    pub async fn start_runbook(
        &self,
        name: &str,
        given: &BTreeMap<String, serde_json::Value>,
        target: Option<String>,
        dry_run: bool,
        by: &str,
    ) -> Result<PlannedRun, StartError> {
        let program = self.compiled.runbooks.get(name).cloned().ok_or_else(|| {
            StartError::UnknownRunbook {
                name: name.to_string(),
                known: self.compiled.runbooks.keys().cloned().collect(),
            }
        })?;
        let params = coerce_params(program.params(), given)?;
        let now = self.clock.now();
        let plan = PlannedRun {
            id: homeostat_core::event::new_id(now),
            rule: String::new(),
            runbook: name.to_string(),
            target: target.unwrap_or_else(|| name.to_string()),
            event_id: String::new(),
            started_by: Some(by.to_string()),
            dry_run: dry_run || self.compiled.config.dry_run,
            incident: None,
            params,
            spec: program.spec.clone(),
            library: program.library.clone(),
        };
        // A dry run completes at once, unless its actions can ask their API for a dry run.
        let at_once = plan.dry_run && !program.asks_server_dry_run();
        let writes = if at_once {
            runs::dry_run_writes(&plan, Arc::clone(&program), None, now)
        } else {
            vec![Write::RunStarted {
                run: plan.clone(),
                at: now,
            }]
        };
        self.writer
            .submit(writes)
            .await
            .map_err(|error| StartError::Unavailable(error.to_string()))?;
        if !at_once {
            tracing::info!(run = %plan.id, runbook = name, %by, dry_run = plan.dry_run, "run started by hand");
            self.runs.spawn(Start {
                plan: plan.clone(),
                program,
                event: None,
                replay: Vec::new(),
                resumed: false,
                started_at: now,
            });
        }
        Ok(plan)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// The running engine.
pub struct Engine {
    pub handle: Handle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Engine {
    /// Stops the background tasks. Committed work is safe; runs in progress resume on the next start.
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens the store and starts everything the config asks for.
pub async fn start(compiled: Compiled, clock: SharedClock) -> Result<Engine, Error> {
    let config = &compiled.config;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&config.store.path, config.store.synchronous).await?);
    start_with_store(compiled, clock, store).await
}

pub async fn start_with_store(
    compiled: Compiled,
    clock: SharedClock,
    store: Arc<dyn Store>,
) -> Result<Engine, Error> {
    let config = compiled.config.clone();
    let tokens = config
        .api_tokens
        .iter()
        .map(|token| {
            let secret = secrets::resolve(&token.token).map_err(|source| Error::Token {
                name: token.name.clone(),
                source,
            })?;
            Ok(Token {
                name: token.name.clone(),
                scopes: token.scopes.clone(),
                digest: Sha256::digest(secret.expose().as_bytes()).into(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut webhook_secrets = HashMap::new();
    for source in &config.sources {
        if let Source::Webhook(webhook) = source {
            let secret =
                secrets::resolve(&webhook.secret).map_err(|source| Error::SourceSecret {
                    name: webhook.name.clone(),
                    source,
                })?;
            webhook_secrets.insert(webhook.name.clone(), secret);
        }
    }
    let metrics = Arc::new(Metrics::default());
    let compiled = Arc::new(compiled);
    // Handles first, so runners can hold one; the writer task starts once recovery is done.
    let (writer, queue) = Writer::new(config.server.queue_capacity);
    let http = reqwest::Client::builder()
        .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Http(error.to_string()))?;
    let cluster = crate::kubernetes::Cluster::connect(&config).await?;
    let (finished_sender, finished_receiver) = mpsc::unbounded_channel();
    let runs = Runs::new(runs::Config {
        writer: writer.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        notifiers: config
            .notifiers
            .iter()
            .map(|n| (n.name().to_string(), n.clone()))
            .collect::<BTreeMap<_, _>>(),
        prometheus: config.prometheus.clone(),
        attention_notifier: config.runs.attention_notifier.clone(),
        http: http.clone(),
        cluster: cluster.clone(),
        finished: finished_sender,
    });

    let resumed = recover(&*store, &compiled).await?;
    let guards = rebuild_guards(&*store, &compiled, clock.now()).await?;
    let cursor = store.cursor(CURSOR).await?;
    let correlator = restore_correlator(&*store, Arc::clone(&compiled.incidents), cursor).await?;
    let disabled_rules = DisabledRules::default();
    let mut stage = DecideStage::new(
        store.clone(),
        compiled.clone(),
        clock.clone(),
        metrics.clone(),
        runs.clone(),
        guards,
        correlator,
        finished_receiver,
        disabled_rules.clone(),
    );
    stage.attempts =
        crate::decider::rebuild_attempts(&*store, &compiled, &stage.correlator, clock.now())
            .await?;
    // Whatever was committed but never decided comes first.
    stage.catch_up(cursor).await?;
    let mut tasks = vec![queue.spawn(store.clone(), 8192, Box::new(stage))];
    // An empty batch now and then lets the decide stage do what time alone makes due (the
    // correlator's sweep, runs that finished) when no events arrive.
    let ticker = writer.clone();
    let every = std::time::Duration::from_secs(compiled.config.incidents.sweep_secs.max(1));
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        loop {
            interval.tick().await;
            if ticker.submit(Vec::new()).await.is_err() {
                break;
            }
        }
    }));
    for start in resumed {
        runs.spawn(start);
    }

    let handle = Handle {
        store,
        writer,
        compiled: compiled.clone(),
        metrics,
        clock,
        tokens: Arc::new(tokens),
        webhook_secrets: Arc::new(webhook_secrets),
        runs,
        disabled_rules,
        slos: Default::default(),
        detectors: Default::default(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    for source in &compiled.config.sources {
        if let Source::HttpProbe(probe) = source {
            tasks.push(tokio::spawn(crate::source::http_probe::run(
                probe.clone(),
                handle.clone(),
                http.clone(),
            )));
        }
    }
    #[cfg(feature = "kubernetes")]
    for source in &compiled.config.sources {
        if let (Source::KubernetesEvents(watch), Some(client)) = (source, cluster.client()) {
            tasks.push(tokio::spawn(crate::source::kubernetes::run(
                watch.clone(),
                client.clone(),
                handle.clone(),
            )));
        }
    }
    for target in &compiled.slos {
        tasks.push(tokio::spawn(crate::source::slo::run(
            target.clone(),
            handle.clone(),
            handle.slos.clone(),
            http.clone(),
        )));
    }
    for detector in &compiled.config.detectors {
        let Some(url) = compiled
            .config
            .prometheus_url(detector.prometheus_url.as_deref())
        else {
            continue;
        };
        tasks.push(tokio::spawn(crate::source::detector::run(
            detector.clone(),
            url,
            handle.clone(),
            handle.detectors.clone(),
            http.clone(),
        )));
    }
    for forecast in &compiled.config.forecasts {
        let Some(url) = compiled
            .config
            .prometheus_url(forecast.prometheus_url.as_deref())
        else {
            continue;
        };
        tasks.push(tokio::spawn(crate::source::forecast::run(
            forecast.clone(),
            url,
            handle.clone(),
            http.clone(),
        )));
    }
    handle.ready.store(true, Ordering::Relaxed);
    Ok(Engine { handle, tasks })
}

/// Rebuilds every unfinished run by replaying its journaled inputs, to be resumed once the writer
/// runs. What happens to an effect that started and has no outcome is the machine's decision
/// (`Input::Recover`): run again if idempotent, otherwise stop in `needs_attention`, because guessing
/// could do a dangerous thing twice.
async fn recover(store: &dyn Store, compiled: &Compiled) -> Result<Vec<Start>, Error> {
    let unfinished = store
        .runs(&RunQuery {
            limit: 1_000_000,
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .await?;
    let mut resume = Vec::with_capacity(unfinished.len());
    for run in unfinished {
        let journal = store.journal_for_run(&run.id).await?;
        let replay = journal
            .iter()
            .filter(|entry| matches!(entry.kind.as_str(), "step_finished" | "run_input"))
            .map(|entry| {
                serde_json::from_value::<Input>(entry.body.clone())
                    .map(|input| (input, entry.at))
                    .map_err(|error| homeostat_store::Error::Corrupt {
                        id: format!("journal entry {}", entry.seq),
                        message: error.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let program = program_for(compiled, &run.plan)?;
        let event = match run.event_id.as_str() {
            "" => None,
            id => store.event(id).await?.map(|record| record.event),
        };
        // Anything journaled besides the plan means the first transition committed, so its effects
        // may have started: the run must recover, even with no input to replay.
        let resumed = journal.iter().any(|entry| entry.kind != "run_started");
        resume.push(Start {
            started_at: run.started_at,
            plan: run.plan,
            program,
            event,
            replay,
            resumed,
        });
    }
    Ok(resume)
}

/// The compiled program for a planned run: the config's own when its definition is unchanged,
/// otherwise compiled from the definition the run journaled.
fn program_for(compiled: &Compiled, plan: &PlannedRun) -> Result<Arc<Program>, Error> {
    let current = compiled
        .rules
        .iter()
        .map(|rule| &rule.runbook)
        .chain(compiled.runbooks.values())
        .find(|program| program.spec == plan.spec && program.library == plan.library);
    match current {
        Some(program) => Ok(Arc::clone(program)),
        None => Program::compile(&plan.spec, &plan.library)
            .map(Arc::new)
            .map_err(|error| Error::Plan {
                run: plan.id.clone(),
                message: error.to_string(),
            }),
    }
}
