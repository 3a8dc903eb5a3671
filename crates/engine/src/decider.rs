//! The decide stage: runs in the writer, on each batch of events before it commits, so that the
//! events, what the rules decided about them, the plans of the runs they start and the cursor all
//! commit in one transaction. Runs are dispatched right after that commit.
//!
//! One commit from receipt to dispatch keeps dispatch latency at one fsync, and means an
//! acknowledged event's decision is exactly as durable as the event.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::clock::SharedClock;
use homeostat_core::decide::{decide, Decision, PlannedRun, Verdict};
use homeostat_core::guard::GuardState;
use homeostat_core::rule::Compiled;
use homeostat_core::{Event, Status};
use homeostat_store::writer::Stage;
use homeostat_store::{Committed, EventQuery, RunQuery, RunStatus, Store, Write};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::runs::{dry_run_writes, Finished, Runs, Start};

pub const CURSOR: &str = "decide";
const CATCH_UP_PAGE: usize = 1024;
/// How often the alert state is snapshotted, so a restart replays at most this much of the journal.
const SNAPSHOT_EVERY_EVENTS: u64 = 100_000;
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

pub struct DecideStage {
    pub store: Arc<dyn Store>,
    pub compiled: Arc<Compiled>,
    /// Each rule's program by rule name, for the runs its decisions plan.
    programs: HashMap<String, Arc<homeostat_core::runbook::Program>>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub runs: Runs,
    pub guards: GuardState,
    /// Firing alerts by fingerprint hash, with their `starts_at` in milliseconds. About 40 bytes each.
    pub firing: Firing,
    /// Runs that ended, so their guards can be released.
    pub finished: mpsc::UnboundedReceiver<Finished>,
    /// Events decided since the last snapshot, and when it was taken (monotonic).
    pub since_snapshot: u64,
    pub snapshot_at: Duration,
    /// The longest cooldown of any rule: older starts cannot matter and are pruned.
    pub longest_cooldown_secs: u64,
    /// What the batch being committed will dispatch once it is durable.
    /// Runs to dispatch: the plan, its event, when it was received, and when it was planned.
    pending_runs: Vec<(PlannedRun, Event, DateTime<Utc>, DateTime<Utc>)>,
    pending_dry_runs: Vec<(String, String, DateTime<Utc>)>,
    pending_snapshot: bool,
}

/// Firing alerts by fingerprint hash, with their `starts_at` in milliseconds.
pub type Firing = HashMap<u64, Option<i64>>;

/// Folds an event into the firing set; true when it is a repeat of an alert already firing since the
/// same time (Alertmanager re-sends firing alerts every `repeat_interval`).
pub fn fold(firing: &mut Firing, event: &Event) -> bool {
    let key = fingerprint_key(&event.fingerprint);
    let starts_at = event.starts_at.map(|time| time.timestamp_millis());
    match event.status {
        Status::Firing => firing.insert(key, starts_at) == Some(starts_at),
        Status::Resolved => {
            firing.remove(&key);
            false
        }
    }
}

/// The firing set as of `cursor`: the last snapshot, plus the events after it up to the cursor.
pub async fn restore_firing(
    store: &dyn Store,
    cursor: i64,
) -> Result<(i64, Firing), homeostat_store::Error> {
    let (snapshot_seq, mut firing) = match store.snapshot(CURSOR).await? {
        Some((seq, body)) => (seq, decode(&body)),
        None => (0, Firing::new()),
    };
    let mut after = snapshot_seq;
    while after < cursor {
        let page = store
            .events(&EventQuery {
                limit: CATCH_UP_PAGE,
                after_seq: Some(after),
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in page.iter().filter(|record| record.seq <= cursor) {
            fold(&mut firing, &record.event);
        }
    }
    Ok((snapshot_seq, firing))
}

/// Guard state as the journal has it: cooldown and rate windows from recent runs, and the locks and
/// concurrency slots of runs still in progress.
pub async fn rebuild_guards(
    store: &dyn Store,
    compiled: &Compiled,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<GuardState, homeostat_store::Error> {
    let horizon = compiled
        .rules
        .iter()
        .map(|rule| {
            rule.guards
                .cooldown_secs
                .max(rule.guards.max_runs.as_ref().map_or(0, |m| m.window_secs))
        })
        .max()
        .unwrap_or(0);
    let mut runs = store
        .runs(&RunQuery {
            limit: 100_000,
            started_after: Some(now - chrono::Duration::seconds(horizon as i64)),
            ..Default::default()
        })
        .await?;
    let recent: std::collections::HashSet<String> = runs.iter().map(|run| run.id.clone()).collect();
    runs.extend(
        store
            .runs(&RunQuery {
                limit: 100_000,
                status: Some(RunStatus::Running),
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|run| !recent.contains(&run.id)),
    );
    runs.sort_by_key(|run| run.started_at);
    let rules: HashMap<&str, _> = compiled
        .rules
        .iter()
        .map(|rule| (rule.name.as_str(), rule))
        .collect();
    let mut guards = GuardState::default();
    for run in &runs {
        let default_guards = homeostat_core::config::Guards::default();
        let rule_guards = rules
            .get(run.rule.as_str())
            .map_or(&default_guards, |rule| &rule.guards);
        guards.start(&run.rule, rule_guards, &run.target, &run.id, run.started_at);
        if run.status != RunStatus::Running {
            guards.finish(&run.rule, &run.id);
        }
    }
    Ok(guards)
}

/// Snapshot bytes: per alert, the key (8 bytes), a flag and `starts_at` (9 bytes), little-endian.
pub fn encode(firing: &Firing) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(firing.len() * 17);
    for (key, starts_at) in firing {
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.push(u8::from(starts_at.is_some()));
        bytes.extend_from_slice(&starts_at.unwrap_or(0).to_le_bytes());
    }
    bytes
}

pub fn decode(bytes: &[u8]) -> Firing {
    bytes
        .chunks_exact(17)
        .map(|chunk| {
            let key = u64::from_le_bytes(chunk[0..8].try_into().unwrap_or_default());
            let starts_at = i64::from_le_bytes(chunk[9..17].try_into().unwrap_or_default());
            (key, (chunk[8] == 1).then_some(starts_at))
        })
        .collect()
}

pub fn fingerprint_key(fingerprint: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    fingerprint.hash(&mut hasher);
    hasher.finish()
}

impl DecideStage {
    #[allow(clippy::too_many_arguments)] // one constructor, called once, at start-up
    pub fn new(
        store: Arc<dyn Store>,
        compiled: Arc<Compiled>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        runs: Runs,
        guards: GuardState,
        firing: Firing,
        finished: mpsc::UnboundedReceiver<Finished>,
    ) -> Self {
        let longest_cooldown_secs = compiled
            .rules
            .iter()
            .map(|rule| rule.guards.cooldown_secs)
            .max()
            .unwrap_or(0);
        let snapshot_at = clock.monotonic();
        let programs = compiled
            .rules
            .iter()
            .map(|rule| (rule.name.clone(), Arc::clone(&rule.runbook)))
            .collect();
        Self {
            programs,
            store,
            compiled,
            clock,
            metrics,
            runs,
            guards,
            firing,
            finished,
            since_snapshot: 0,
            snapshot_at,
            longest_cooldown_secs,
            pending_runs: Vec::new(),
            pending_dry_runs: Vec::new(),
            pending_snapshot: false,
        }
    }

    /// Decides events committed but never decided: journals written before decisions were made in the
    /// commit path, or by a tool. Commits straight to the store, so it runs before the writer starts.
    pub async fn catch_up(&mut self, mut cursor: i64) -> Result<(), homeostat_store::Error> {
        loop {
            let page = self
                .store
                .events(&EventQuery {
                    limit: CATCH_UP_PAGE,
                    after_seq: Some(cursor),
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last().map(|record| record.seq) else {
                return Ok(());
            };
            let events: Vec<&Event> = page.iter().map(|record| &record.event).collect();
            let mut writes = Vec::new();
            self.decide_events(&events, &mut writes);
            writes.push(Write::Cursor {
                name: CURSOR.into(),
                seq: last,
            });
            let began = tokio::time::Instant::now();
            let result = self.store.commit(&writes).await;
            self.after_commit(result.as_ref(), began.elapsed()).await;
            result?;
            cursor = last;
        }
    }

    /// The program a rule runs (the decision that planned the run came from this same compiled config).
    fn program(&self, rule: &str) -> Option<Arc<homeostat_core::runbook::Program>> {
        self.programs.get(rule).cloned()
    }

    fn decide_events(&mut self, events: &[&Event], writes: &mut Vec<Write>) {
        let now = self.clock.now();
        for event in events {
            self.since_snapshot += 1;
            if fold(&mut self.firing, event) {
                self.metrics.events_duplicate.inc();
                continue;
            }
            // `decide` runs third-party code (CEL, templates) inside the writer task: a panic there must
            // cost one event's decision, recorded as an error, not the writer and with it the daemon.
            let (compiled, guards) = (&self.compiled, &mut self.guards);
            let decisions = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decide(event, compiled, guards, compiled.config.dry_run, now)
            })) {
                Ok(decisions) => decisions,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|text| text.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(event = %event.id, %message, "deciding an event panicked");
                    vec![Decision {
                        rule: String::new(),
                        target: String::new(),
                        verdict: Verdict::Error {
                            message: format!("deciding this event panicked: {message}"),
                        },
                    }]
                }
            };
            if decisions.is_empty() {
                continue;
            }
            let mut intents = Vec::new();
            for decision in &decisions {
                self.metrics
                    .rules_matched
                    .get_or_create(&vec![("rule", decision.rule.clone())])
                    .inc();
                self.metrics
                    .guard_verdicts
                    .get_or_create(&vec![
                        ("rule", decision.rule.clone()),
                        ("verdict", decision.verdict.label().to_string()),
                    ])
                    .inc();
                match &decision.verdict {
                    Verdict::Run { run } => {
                        intents.push(Write::RunStarted {
                            run: run.clone(),
                            at: now,
                        });
                        self.pending_runs.push((
                            run.clone(),
                            (*event).clone(),
                            event.received_at,
                            now,
                        ));
                    }
                    Verdict::DryRun { run } => {
                        // Complete at once: recorded with the decision, nothing to execute later.
                        match self.program(&run.rule) {
                            Some(program) => {
                                intents.extend(dry_run_writes(run, program, Some(event), now))
                            }
                            None => continue,
                        }
                        self.pending_dry_runs.push((
                            run.rule.clone(),
                            run.id.clone(),
                            event.received_at,
                        ));
                    }
                    Verdict::Skipped { message, .. } => {
                        tracing::info!(rule = %decision.rule, target = %decision.target, event = %event.id, "{message}");
                    }
                    Verdict::Error { message } => {
                        tracing::warn!(rule = %decision.rule, event = %event.id, "rule not applied: {message}");
                    }
                    Verdict::IgnoredStatus { .. } => {}
                }
            }
            // The decision goes before the run intents it caused.
            writes.push(Write::Decisions {
                event_id: event.id.clone(),
                at: now,
                decisions,
            });
            writes.append(&mut intents);
        }
    }
}

#[async_trait]
impl Stage for DecideStage {
    fn before_commit(&mut self, events: &[&Event], writes: &mut Vec<Write>) {
        while let Ok(finished) = self.finished.try_recv() {
            self.guards.finish(&finished.rule, &finished.run_id);
        }
        if events.is_empty() {
            return;
        }
        self.decide_events(events, writes);
        writes.push(Write::CursorAtLastEvent {
            name: CURSOR.into(),
        });
        let monotonic = self.clock.monotonic();
        if self.since_snapshot >= SNAPSHOT_EVERY_EVENTS
            || monotonic.saturating_sub(self.snapshot_at) >= SNAPSHOT_EVERY
        {
            // Taken after this batch is folded in, at this batch's last event.
            writes.push(Write::Snapshot {
                name: CURSOR.into(),
                seq: -1,
                body: encode(&self.firing),
            });
            self.pending_snapshot = true;
        }
    }

    async fn after_commit(
        &mut self,
        result: Result<&Committed, &homeostat_store::Error>,
        took: Duration,
    ) {
        self.metrics.commit_duration.observe(took.as_secs_f64());
        let snapshot = std::mem::take(&mut self.pending_snapshot);
        if result.is_err() {
            // Nothing was recorded, so nothing may run. The guards and the firing set already counted
            // this batch: rebuild both from what the journal holds, so a retry is decided afresh.
            self.pending_runs.clear();
            self.pending_dry_runs.clear();
            let now = self.clock.now();
            match rebuild_guards(&*self.store, &self.compiled, now).await {
                Ok(guards) => self.guards = guards,
                Err(error) => tracing::error!(%error, "cannot rebuild the guard state"),
            }
            let cursor = self.store.cursor(CURSOR).await.unwrap_or(0);
            match restore_firing(&*self.store, cursor).await {
                Ok((_, firing)) => self.firing = firing,
                Err(error) => tracing::error!(%error, "cannot restore the alert state"),
            }
            return;
        }
        if snapshot {
            self.since_snapshot = 0;
            self.snapshot_at = self.clock.monotonic();
            self.guards
                .prune(self.longest_cooldown_secs, self.clock.now());
        }
        let now = self.clock.now();
        for (rule, run_id, received_at) in self.pending_dry_runs.drain(..) {
            self.metrics.dispatch_latency.observe(
                (now - received_at)
                    .to_std()
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
            self.guards.finish(&rule, &run_id);
        }
        for (run, event, received_at, planned_at) in std::mem::take(&mut self.pending_runs) {
            self.metrics.dispatch_latency.observe(
                (now - received_at)
                    .to_std()
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
            tracing::info!(run = %run.id, rule = %run.rule, target = %run.target, "run dispatched");
            let Some(program) = self.program(&run.rule) else {
                continue;
            };
            self.runs.spawn(Start {
                started_at: planned_at,
                resumed: false,
                plan: run,
                program,
                event: Some(event),
                replay: Vec::new(),
            });
        }
    }
}
