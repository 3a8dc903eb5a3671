//! The decider task: reads committed events in sequence order, decides, journals decisions and run
//! intents with its cursor in one commit, then dispatches the runs.
//!
//! Events normally arrive in memory straight from the writer. When that handoff is full they are
//! dropped from memory only: the decider notices the gap in sequence numbers (or is woken) and reads
//! them back from the store. So an acknowledged event is decided exactly once, even across crashes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use homeostat_core::clock::SharedClock;
use homeostat_core::decide::{decide, Verdict};
use homeostat_core::guard::GuardState;
use homeostat_core::rule::Compiled;
use homeostat_core::{Event, Status};
use homeostat_store::writer::Writer;
use homeostat_store::{EventQuery, RunQuery, RunStatus, Store, Write};
use tokio::sync::{mpsc, Notify};

use crate::metrics::Metrics;
use crate::runner::{dry_run_steps, Finished, Runner};

pub const CURSOR: &str = "decide";
const CATCH_UP_PAGE: usize = 1024;
/// At most this many events are decided in one commit; the decider must keep up with group commits
/// of many requests of many alerts, so it takes everything waiting up to this.
const MAX_DECIDE_BATCH: usize = 65_536;
/// How often the alert state is snapshotted, so a restart replays at most this much of the journal.
const SNAPSHOT_EVERY_EVENTS: i64 = 100_000;
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// A batch that decided nothing does not commit the cursor, except this often: re-deciding such
/// events after a restart changes nothing, and skipping the commit halves the writer's work.
const CURSOR_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Decider {
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub compiled: Arc<Compiled>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub runner: Runner,
    pub guards: GuardState,
    /// Firing alerts by fingerprint hash, with their `starts_at` in milliseconds. About 40 bytes each.
    pub firing: Firing,
    pub cursor: i64,
    pub events: mpsc::Receiver<Vec<(i64, Event)>>,
    pub wake: Arc<Notify>,
    /// The highest committed event sequence number, for the lag gauge.
    pub committed_seq: Arc<std::sync::atomic::AtomicI64>,
    pub finished: mpsc::UnboundedReceiver<Finished>,
    /// The sequence number and monotonic time of the last snapshot.
    pub snapshot_seq: i64,
    pub snapshot_at: std::time::Duration,
    /// The monotonic time the cursor was last committed, and its value then.
    pub cursor_at: std::time::Duration,
    pub committed_cursor: i64,
    /// The longest cooldown of any rule: older starts cannot matter and are pruned.
    pub longest_cooldown_secs: u64,
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

impl Decider {
    pub async fn run(mut self) {
        // Whatever was committed but not decided before the last stop comes first.
        self.catch_up(None).await;
        let mut tick = tokio::time::interval(CURSOR_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = tick.tick() => {
                    self.flush_cursor().await;
                    self.guards.prune(self.longest_cooldown_secs, self.clock.now());
                }
                Some(finished) = self.finished.recv() => {
                    self.guards.finish(&finished.rule, &finished.run_id);
                }
                batch = self.events.recv() => {
                    let Some(mut batch) = batch else { break };
                    while batch.len() < MAX_DECIDE_BATCH {
                        match self.events.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    if let Some((first, _)) = batch.iter().find(|(seq, _)| *seq > self.cursor) {
                        if *first != self.cursor + 1 {
                            // Some events never reached memory: read them from the store first.
                            self.catch_up(Some(*first - 1)).await;
                        }
                    }
                    self.decide_batch(batch).await;
                }
                _ = self.wake.notified() => {
                    self.catch_up(None).await;
                }
            }
        }
    }

    /// Commits the cursor when batches that decided nothing moved it only in memory.
    async fn flush_cursor(&mut self) {
        if self.cursor <= self.committed_cursor {
            return;
        }
        let cursor = self.cursor;
        if self
            .writer
            .submit(vec![Write::Cursor {
                name: CURSOR.into(),
                seq: cursor,
            }])
            .await
            .is_ok()
        {
            self.committed_cursor = cursor;
            self.cursor_at = self.clock.monotonic();
        }
    }

    /// Decides every committed event after the cursor, up to `until` (inclusive) or the end.
    async fn catch_up(&mut self, until: Option<i64>) {
        loop {
            let page = match self
                .store
                .events(&EventQuery {
                    limit: CATCH_UP_PAGE,
                    after_seq: Some(self.cursor),
                    ..Default::default()
                })
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "cannot read events to decide; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let page: Vec<(i64, Event)> = page
                .into_iter()
                .filter(|record| until.is_none_or(|until| record.seq <= until))
                .map(|record| (record.seq, record.event))
                .collect();
            if page.is_empty() {
                return;
            }
            self.decide_batch(page).await;
        }
    }

    async fn decide_batch(&mut self, batch: Vec<(i64, Event)>) {
        let now = self.clock.now();
        let mut writes = Vec::new();
        let mut runs = Vec::new();
        let mut dry_runs = Vec::new();
        let mut last = self.cursor;
        for (seq, event) in &batch {
            if *seq <= self.cursor {
                continue;
            }
            last = *seq;
            if fold(&mut self.firing, event) {
                self.metrics.events_duplicate.inc();
                continue;
            }
            let decisions = decide(
                event,
                &self.compiled,
                &mut self.guards,
                self.compiled.config.dry_run,
                now,
            );
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
                        runs.push((run.clone(), event.received_at));
                    }
                    Verdict::DryRun { run } => {
                        // Complete at once: recorded with the decision, nothing to execute later.
                        intents.push(Write::RunStarted {
                            run: run.clone(),
                            at: now,
                        });
                        intents.extend(dry_run_steps(run, 0, now));
                        intents.push(Write::RunFinished {
                            run_id: run.id.clone(),
                            status: RunStatus::DryRun,
                            error: None,
                            at: now,
                        });
                        dry_runs.push((run.rule.clone(), run.id.clone(), event.received_at));
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
        if last == self.cursor {
            return;
        }
        let monotonic = self.clock.monotonic();
        let snapshot = last - self.snapshot_seq >= SNAPSHOT_EVERY_EVENTS
            || monotonic.saturating_sub(self.snapshot_at) >= SNAPSHOT_EVERY;
        if writes.is_empty() && !snapshot && monotonic.saturating_sub(self.cursor_at) < CURSOR_EVERY
        {
            self.cursor = last;
            return;
        }
        writes.push(Write::Cursor {
            name: CURSOR.into(),
            seq: last,
        });
        if snapshot {
            writes.push(Write::Snapshot {
                name: CURSOR.into(),
                seq: last,
                body: encode(&self.firing),
            });
        }
        if let Err(error) = self.writer.submit(writes).await {
            // Nothing was recorded, so nothing may run. Put the guards and the firing set back as they
            // were before this batch and decide it again from the store.
            tracing::error!(%error, "cannot journal decisions; retrying");
            drop(runs);
            drop(dry_runs);
            match rebuild_guards(&*self.store, &self.compiled, self.clock.now()).await {
                Ok(guards) => self.guards = guards,
                Err(rebuild_error) => {
                    tracing::error!(%rebuild_error, "cannot rebuild the guard state")
                }
            }
            match restore_firing(&*self.store, self.cursor).await {
                Ok((_, firing)) => self.firing = firing,
                Err(restore_error) => {
                    tracing::error!(%restore_error, "cannot restore the alert state")
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            self.wake.notify_one();
            return;
        }
        self.cursor = last;
        self.cursor_at = monotonic;
        self.committed_cursor = last;
        if snapshot {
            self.snapshot_seq = last;
            self.snapshot_at = monotonic;
        }
        let committed = self
            .committed_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .decide_lag
            .set((committed - self.cursor).max(0));
        for (rule, run_id, received_at) in dry_runs {
            let latency = (self.clock.now() - received_at)
                .to_std()
                .unwrap_or_default();
            self.metrics.dispatch_latency.observe(latency.as_secs_f64());
            self.guards.finish(&rule, &run_id);
        }
        for (run, received_at) in runs {
            let latency = (self.clock.now() - received_at)
                .to_std()
                .unwrap_or_default();
            self.metrics.dispatch_latency.observe(latency.as_secs_f64());
            tracing::info!(run = %run.id, rule = %run.rule, target = %run.target, dry_run = run.dry_run, "run dispatched");
            self.runner.spawn(run, 0, 1);
        }
    }
}
