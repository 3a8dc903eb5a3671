//! What the API and the engine's own sources use to talk to the running engine: [`Handle`],
//! cheap to clone, its fields reachable only through what it offers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use homeostat_core::clock::SharedClock;
use homeostat_core::config::Scope;
use homeostat_core::decide::PlannedRun;
use homeostat_core::guard::status::Snapshot;
use homeostat_core::incident::correlate::Verdict as Correlation;
use homeostat_core::journal::Write;
use homeostat_core::rule::Compiled;
use homeostat_core::runbook::coerce_params;
use homeostat_core::Event;
use homeostat_store::Store;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::reload::{self, Loader, Summary};
use crate::runs::{Runs, Start};
use crate::secrets::Secret;
use crate::source::detector::DetectorStatuses;
use crate::source::slo::SloStatuses;
use crate::source::Sources;
use crate::writer::{Pending, Writer};

/// Why a run could not be started by hand.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no runbook is named `{name}`")]
    UnknownRunbook { name: String, known: Vec<String> },
    #[error(transparent)]
    Param(#[from] homeostat_core::runbook::program::ParamError),
    #[error("no incident has the number `{incident}`")]
    UnknownIncident { incident: i64 },
    #[error("the journal is unavailable: {0}")]
    Unavailable(String),
}

/// A command in the journal, and what correlation made of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The command's event.
    pub event_id: String,
    /// `Command` when it applied to its incident, `Context` for a silence or a rule enabled,
    /// `Rejected` with why when it could not apply.
    pub verdict: Correlation,
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
    /// A token named `name` with these scopes, keeping only the digest of `secret`.
    pub(crate) fn new(name: String, scopes: Vec<Scope>, secret: &str) -> Self {
        Self {
            name,
            scopes,
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

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

/// A count of changes pages may show: bumped after each commit with writes, and when a run's live
/// state changes (an approval starts waiting, listed just after its step's commit). Pages that
/// follow the journal live (the dashboard's server-sent events) wait on it instead of polling,
/// and a page drawn at one count knows it is stale at another.
#[derive(Clone)]
pub struct Changes(Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl Changes {
    /// The count now.
    pub fn current(&self) -> u64 {
        *self.0.borrow()
    }

    /// A receiver that sees the count change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Counts one change; the writer and the runs call it.
    pub(crate) fn publish(&self) {
        self.0.send_modify(|count| *count += 1);
    }
}

/// The guard state as of the last commit that could change it: cooldowns, rate windows, runs in
/// progress and their locks, for `GET /api/v1/rules`.
///
/// Published by the decide stage as [`DisabledRules`] is; readers get the copy's `Arc`, so a slow
/// reader never holds the writer up.
#[derive(Clone, Default)]
pub struct GuardStatus(Arc<std::sync::RwLock<Arc<Snapshot>>>);

impl GuardStatus {
    /// The copy as of the last publication.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces the copy; only the decide stage calls it.
    pub(crate) fn publish(&self, snapshot: Snapshot) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }
}

/// The config in use and what was resolved from it, swapped whole by a reload.
struct Current {
    compiled: Arc<Compiled>,
    tokens: Vec<Token>,
    webhook_secrets: HashMap<String, Secret>,
}

/// What the API and sources use to talk to the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    store: Arc<dyn Store>,
    writer: Writer,
    current: Arc<std::sync::RwLock<Arc<Current>>>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// The source tasks, which a reload restarts when their config changed.
    sources: Sources,
    /// Where a reload reads the config from, set by whoever started the engine from a file.
    loader: Arc<std::sync::Mutex<Option<Loader>>>,
    /// One reload at a time: two at once could swap in the older config last.
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// Runs in progress: approvals, cancels and progress notifications.
    runs: Runs,
    /// The rules loop detection disabled, per target, as of the last commit.
    disabled_rules: DisabledRules,
    /// The guard state, as of the last commit that could change it.
    guards: GuardStatus,
    /// Counts changes, for pages that follow the journal.
    changes: Changes,
    /// Every SLO's latest evaluation.
    slos: SloStatuses,
    /// Every anomaly detector's series, as of its latest evaluation.
    detectors: DetectorStatuses,
    ready: Arc<AtomicBool>,
    /// Bytes of request bodies admitted and not done with, in KiB permits.
    inflight: Arc<tokio::sync::Semaphore>,
}

/// Room for one request's body among the bytes in flight; given back when dropped.
pub struct Admitted {
    _permit: tokio::sync::OwnedSemaphorePermit,
    kib: u32,
    metrics: Arc<Metrics>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics
            .http_inflight_bytes
            .dec_by(i64::from(self.kib) * 1024);
    }
}

/// The parts of a [`Handle`], for [`Handle::new`].
pub(crate) struct Parts {
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub compiled: Arc<Compiled>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    pub tokens: Vec<Token>,
    pub webhook_secrets: HashMap<String, Secret>,
    pub runs: Runs,
    pub disabled_rules: DisabledRules,
    pub guards: GuardStatus,
    pub changes: Changes,
    pub sources: Sources,
}

impl Handle {
    pub(crate) fn new(parts: Parts) -> Self {
        let server = &parts.compiled.config.server;
        let inflight = (server.max_inflight_bytes / 1024)
            .max(server.max_body_bytes.div_ceil(1024))
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            store: parts.store,
            writer: parts.writer,
            current: Arc::new(std::sync::RwLock::new(Arc::new(Current {
                compiled: parts.compiled,
                tokens: parts.tokens,
                webhook_secrets: parts.webhook_secrets,
            }))),
            metrics: parts.metrics,
            clock: parts.clock,
            sources: parts.sources,
            loader: Arc::default(),
            reloading: Arc::default(),
            runs: parts.runs,
            disabled_rules: parts.disabled_rules,
            guards: parts.guards,
            changes: parts.changes,
            slos: SloStatuses::default(),
            detectors: DetectorStatuses::default(),
            ready: Arc::new(AtomicBool::new(false)),
            inflight: Arc::new(tokio::sync::Semaphore::new(inflight)),
        }
    }

    /// The store, for reads. Writes go through the writer ([`Handle::ingest`],
    /// [`Handle::command`], [`Handle::journal_own`]).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The config in use. A reload swaps it: hold the `Arc` for one request or one decision,
    /// not for the life of a task.
    pub fn compiled(&self) -> Arc<Compiled> {
        Arc::clone(&self.current().compiled)
    }

    fn current(&self) -> Arc<Current> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Runs in progress: approvals, cancels and progress notifications.
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// The rules loop detection disabled, per target, as of the last commit.
    pub fn disabled_rules(&self) -> &DisabledRules {
        &self.disabled_rules
    }

    /// The guard state (cooldowns, rate windows, runs and locks) as of the last commit that could
    /// change it.
    pub fn guards(&self) -> &GuardStatus {
        &self.guards
    }

    /// Counts commits and run changes: subscribe to follow the journal.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Every SLO's latest evaluation.
    pub fn slos(&self) -> &SloStatuses {
        &self.slos
    }

    /// Every anomaly detector's series, as of its latest evaluation.
    pub fn detectors(&self) -> &DetectorStatuses {
        &self.detectors
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Whether any API token is configured at all.
    pub fn has_tokens(&self) -> bool {
        !self.current().tokens.is_empty()
    }

    /// The configured token `presented` is, compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<Token> {
        self.current()
            .tokens
            .iter()
            .find(|token| token.matches(presented))
            .cloned()
    }

    /// The configured token that `token` was, if it still is one: the dashboard's sessions hold
    /// the token they signed in with and ask again on every request, so a token removed or
    /// changed by a reload ends its sessions, and its scopes are today's.
    pub fn token_still(&self, token: &Token) -> Option<Token> {
        self.current()
            .tokens
            .iter()
            .find(|current| current.name == token.name && current.digest == token.digest)
            .cloned()
    }

    /// The HMAC key of webhook source `name`.
    pub fn webhook_secret(&self, name: &str) -> Option<Secret> {
        self.current().webhook_secrets.get(name).cloned()
    }

    /// The source tasks.
    pub(crate) fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Sets where [`Handle::reload`] reads the config from.
    pub fn set_loader(&self, loader: Loader) {
        *self
            .loader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loader);
    }

    /// Reloads the config: loads and checks it as `homeostat check` does and, if it is valid,
    /// swaps it in (see [`crate::reload`]); otherwise the config in use stays. Either way the
    /// `homeostat_config_last_reload_*` metrics and the log say how it went.
    pub async fn reload(&self) -> Result<Summary, reload::Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.reload_inner().await;
        match &result {
            Ok(summary) => {
                self.metrics.config_last_reload_successful.set(1);
                self.metrics
                    .config_last_reload_success_timestamp
                    .set(self.clock.now().timestamp_millis() as f64 / 1000.0);
                tracing::info!(
                    sources_started = ?summary.sources.started,
                    sources_restarted = ?summary.sources.restarted,
                    sources_stopped = ?summary.sources.stopped,
                    rules_added = ?summary.rules_added,
                    rules_removed = ?summary.rules_removed,
                    rules_changed = ?summary.rules_changed,
                    runbooks_changed = ?summary.runbooks_changed,
                    "config reloaded"
                );
                for warning in &summary.warnings {
                    tracing::warn!("{warning}");
                }
                for field in &summary.needs_restart {
                    tracing::warn!(
                        field,
                        "`{field}` changed in the config; the running value stays until a restart"
                    );
                }
            }
            Err(error) => {
                self.metrics.config_last_reload_successful.set(0);
                tracing::error!("config reload refused, the config in use stays: {error}");
            }
        }
        result
    }

    async fn reload_inner(&self) -> Result<Summary, reload::Error> {
        let loader = self
            .loader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(reload::Error::NoLoader)?;
        // Reading files and resolving secrets blocks.
        let mut compiled = tokio::task::spawn_blocking(move || loader())
            .await
            .map_err(|error| reload::Error::Invalid(format!("loading panicked: {error}")))?
            .map_err(reload::Error::Invalid)?;
        let running = self.compiled();
        let mut summary = Summary {
            needs_restart: reload::keep_restart_only(&running, &mut compiled),
            warnings: compiled.warnings.iter().map(ToString::to_string).collect(),
            ..Summary::default()
        };
        if let Some(why) = crate::kubernetes::needed(&compiled.config) {
            if !self.sources.cluster().is_connected() {
                return Err(reload::Error::NeedsCluster { why });
            }
        }
        let (tokens, webhook_secrets) = reload::resolve(&compiled)
            .map_err(|(what, error)| reload::Error::Invalid(format!("{what}: {error}")))?;
        reload::compare(&running, &compiled, &mut summary);
        let compiled = Arc::new(compiled);
        // The decide stage first: from here on, events are decided by the new rules.
        self.writer
            .reload(Arc::clone(&compiled))
            .await
            .map_err(|_| reload::Error::WriterStopped)?;
        self.runs
            .reconfigure(crate::runs::Settings::from_config(&compiled.config));
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Current {
            compiled: Arc::clone(&compiled),
            tokens,
            webhook_secrets,
        });
        summary.sources = self.sources.apply(self, &compiled);
        Ok(summary)
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Admits a request body of `bytes` (or, when its length is not declared, of the largest size
    /// allowed) before any of it is read: `None` when the bytes in flight would pass
    /// `server.max_inflight_bytes`, for a 429. Holding the result until the request is answered
    /// is what bounds the memory of bodies, parsed events and queued batches together.
    pub fn admit(&self, bytes: usize) -> Option<Admitted> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let permit = self.inflight.clone().try_acquire_many_owned(kib).ok()?;
        self.metrics
            .http_inflight_bytes
            .inc_by(i64::from(kib) * 1024);
        Some(Admitted {
            _permit: permit,
            kib,
            metrics: self.metrics.clone(),
        })
    }

    /// Queues events for a durable commit without waiting for room; await the result before answering 2xx.
    pub fn ingest(
        &self,
        source: &str,
        events: Vec<Event>,
    ) -> Result<(Pending, usize), IngestError> {
        let count = events.len();
        if let Err(reason) = self.writer.health().accepting() {
            self.metrics.source_error(source, "unavailable");
            return Err(IngestError::Unavailable(reason));
        }
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

    /// Puts a command (acknowledge, resolve, a note, a silence) into the event stream for `by`, waits
    /// for its commit, and says what correlation made of it: applied to its incident, or rejected
    /// with why (the incident is resolved, say). Correlation applies it in stream order, so a
    /// replay applies it again at the same point.
    pub async fn command(
        &self,
        command: homeostat_core::incident::Command,
        by: &str,
    ) -> Result<Applied, IngestError> {
        let now = self.clock.now();
        let event = command.into_event(
            homeostat_core::event::new_id(now),
            Some(by.to_string()),
            now,
        );
        let event_id = event.id.clone();
        let (pending, count) = self.ingest("homeostat", vec![event])?;
        let committed = pending
            .committed()
            .await
            .map_err(|error| IngestError::Unavailable(error.to_string()))?;
        self.accepted("homeostat", count);
        let verdict = committed
            .verdicts
            .into_iter()
            .next()
            .unwrap_or(Correlation::Context);
        Ok(Applied { event_id, verdict })
    }

    /// Counts accepted events once committed.
    /// Journals the events a source inside the daemon raised, with its `state` in the same commit
    /// when given. Internal sources wait for room rather than drop: under overload the source
    /// simply runs late.
    pub async fn journal_own(&self, source: &str, events: Vec<Event>, state: Option<Write>) {
        let count = events.len();
        let writes: Vec<Write> = events
            .into_iter()
            .map(|event| Write::Event(event.into()))
            .chain(state)
            .collect();
        // A failed commit is retried until it succeeds: the source waits meanwhile, as it would
        // for room, and what it raised is neither lost nor told twice.
        let mut delay = std::time::Duration::from_millis(100);
        let mut failed = false;
        loop {
            match self.writer.submit(writes.clone()).await {
                Ok(_) => break,
                Err(homeostat_store::Error::WriterStopped) => {
                    tracing::error!(
                        source,
                        "the journal writer stopped; dropping what the source raised"
                    );
                    return;
                }
                Err(error) => {
                    if !failed {
                        failed = true;
                        tracing::warn!(source, %error, "cannot journal what the source raised; retrying");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
        if count > 0 {
            self.accepted(source, count);
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
        self.start_runbook_for(name, given, target, dry_run, by, None)
            .await
    }

    /// As [`Handle::start_runbook`], tied to `incident` when given: the run is linked to it (its
    /// steps show on the incident's timeline and the postmortem credits `by`), as a rule's run for
    /// the incident is. Its end does not change the incident's state: a person's run is not the
    /// automation whose success is verified or whose failure escalates.
    pub async fn start_runbook_for(
        &self,
        name: &str,
        given: &BTreeMap<String, serde_json::Value>,
        target: Option<String>,
        dry_run: bool,
        by: &str,
        incident: Option<i64>,
    ) -> Result<PlannedRun, StartError> {
        if let Some(incident) = incident {
            let found = self
                .store
                .incident(incident)
                .await
                .map_err(|error| StartError::Unavailable(error.to_string()))?;
            if found.is_none() {
                return Err(StartError::UnknownIncident { incident });
            }
        }
        let compiled = self.compiled();
        let program =
            compiled
                .runbooks
                .get(name)
                .cloned()
                .ok_or_else(|| StartError::UnknownRunbook {
                    name: name.to_string(),
                    known: compiled.runbooks.keys().cloned().collect(),
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
            dry_run: dry_run || compiled.config.dry_run,
            incident: None,
            params,
            spec: program.spec.clone(),
            library: program.library.clone(),
        };
        // A dry run completes at once, unless its actions can ask their API for a dry run.
        let at_once = plan.dry_run && !program.asks_server_dry_run();
        let mut writes = if at_once {
            homeostat_core::pipeline::dry_run_writes(&plan, Arc::clone(&program), None, now)
        } else {
            vec![Write::RunStarted {
                run: plan.clone(),
                at: now,
            }]
        };
        // The link only, not `plan.incident`: that would make the run's end mitigate or escalate
        // the incident, which is the automation's verification, not a person's.
        if let Some(incident) = incident {
            writes.push(Write::RunIncident {
                run_id: plan.id.clone(),
                incident,
            });
        }
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

    /// Ready once recovery is done, and while the journal takes new work; otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("recovering".into());
        }
        self.writer.health().accepting()
    }
}
