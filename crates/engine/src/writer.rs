//! The single writer: group commit, with the decide stage folded into every batch.
//!
//! Requests (ingest, runs' progress, the engine's own sources) and the ends of runs queue on one
//! bounded channel. The writer task takes the first, drains whatever else is waiting (up to a
//! limit), folds the batch's events and run ends through the pure [`Decider`], commits everything
//! in one transaction, then dispatches the runs it planned and answers each request. The bound is
//! what turns overload into `429 Too Many Requests` instead of unbounded memory; the one
//! transaction is what makes an acknowledged event's decision exactly as durable as the event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homeostat_core::clock::SharedClock;
use homeostat_core::incident::correlate::Verdict as Correlation;
use homeostat_core::journal::{RunStatus, Write};
use homeostat_core::pipeline::{Decider, RunEnded, Step};
use homeostat_core::rule::Compiled;
use homeostat_core::Event;
use homeostat_store::{Error, Store};
use tokio::sync::{mpsc, oneshot};

use crate::handle::{Changes, DisabledRules, GuardStatus};
use crate::metrics::Metrics;
use crate::runs::{Runs, Start};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a committed request was assigned: the sequence number of each of its events, in order,
/// and what correlation made of each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    pub event_seqs: Vec<i64>,
    pub verdicts: Vec<Correlation>,
    /// Rows deleted by the batch's prunes, told to the requests that carried one (retention sends
    /// one at a time).
    pub pruned: u64,
}

/// Whether the journal can take work: the writer records each commit's outcome here, the engine
/// adds what it sees of the disk, and ingest and `/readyz` read it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<HealthState>);

#[derive(Default)]
struct HealthState {
    /// The last commit of a non-empty batch failed.
    failing: AtomicBool,
    /// ... and it failed because the disk is full.
    full: AtomicBool,
    /// The disk has less free space than the configured floor.
    low_space: AtomicBool,
    reason: Mutex<String>,
}

impl Health {
    /// `Ok` when new work may be accepted; otherwise why not, for a 503 and `/readyz`.
    pub fn accepting(&self) -> std::result::Result<(), String> {
        let state = &self.0;
        if state.failing.load(Ordering::Relaxed) || state.low_space.load(Ordering::Relaxed) {
            let reason = state
                .reason
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            return Err(reason);
        }
        Ok(())
    }

    /// Whether the last commit failed, and whether for a full disk.
    pub fn failing(&self) -> (bool, bool) {
        (
            self.0.failing.load(Ordering::Relaxed),
            self.0.full.load(Ordering::Relaxed),
        )
    }

    fn set_reason(&self, reason: String) {
        *self
            .0
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    fn committed(&self) {
        if self.0.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the journal commits again");
        }
        self.0.full.store(false, Ordering::Relaxed);
    }

    fn commit_failed(&self, error: &Error) {
        self.0
            .full
            .store(matches!(error, Error::Full(_)), Ordering::Relaxed);
        self.set_reason(format!("the journal cannot commit: {error}"));
        self.0.failing.store(true, Ordering::Relaxed);
    }

    /// Lets work in again after a failed commit, when whatever failed may have passed (space came
    /// back, some time went by). The next commit decides: if it fails too, it fails before any
    /// request is answered 2xx.
    pub fn retry(&self) {
        self.0.failing.store(false, Ordering::Relaxed);
    }

    /// Records whether the disk is below its free-space floor.
    pub fn set_low_space(&self, low: Option<String>) {
        match low {
            Some(reason) => {
                if !self.0.low_space.load(Ordering::Relaxed) {
                    tracing::warn!(%reason, "refusing new work until disk space returns");
                }
                self.set_reason(reason);
                self.0.low_space.store(true, Ordering::Relaxed);
            }
            None => {
                if self.0.low_space.swap(false, Ordering::Relaxed) {
                    tracing::info!("disk space is back above the floor: accepting work again");
                }
            }
        }
    }
}

/// What the writer's channel carries: the closed set of its inputs.
enum Input {
    /// Writes to commit, answered once they are (or are not).
    Request {
        writes: Vec<Write>,
        reply: oneshot::Sender<Result<Committed>>,
    },
    /// A run ended: its guards are released and its incident settled in the next batch.
    RunEnded(RunEnded),
    /// A reloaded config, taken between two batches: what was queued before it is decided by the
    /// old rules, what comes after by the new. Answered once it is in use.
    Reload {
        compiled: Arc<Compiled>,
        reply: oneshot::Sender<()>,
    },
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<Input>,
    health: Health,
}

/// A submitted batch; await it for the commit.
pub struct Pending(oneshot::Receiver<Result<Committed>>);

impl Pending {
    pub async fn committed(self) -> Result<Committed> {
        self.0.await.unwrap_or(Err(Error::WriterStopped))
    }
}

/// The writer's queue, until [`Queue::spawn`] starts the task that drains it.
pub struct Queue {
    receiver: mpsc::Receiver<Input>,
    health: Health,
}

impl Writer {
    /// A writer handle and its queue; `capacity` bounds waiting requests. Handles can be given out
    /// before the task runs: what they submit waits in the queue.
    pub fn new(capacity: usize) -> (Self, Queue) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let health = Health::default();
        (
            Self {
                sender,
                health: health.clone(),
            },
            Queue { receiver, health },
        )
    }

    /// Whether the journal can take work, as of the last commit and the last look at the disk.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Queues writes without waiting for room: fails with [`Error::Overloaded`] when the queue is
    /// full.
    pub fn try_submit(&self, writes: Vec<Write>) -> Result<Pending> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .try_send(Input::Request { writes, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Error::WriterStopped,
            })?;
        Ok(Pending(receiver))
    }

    /// Queues writes, waiting for room, and waits for their commit. For internal writers that must
    /// not drop.
    pub async fn submit(&self, writes: Vec<Write>) -> Result<Committed> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .send(Input::Request { writes, reply })
            .await
            .map_err(|_| Error::WriterStopped)?;
        Pending(receiver).committed().await
    }

    /// Hands the decide stage a reloaded config, and waits until it decides with it.
    pub(crate) async fn reload(&self, compiled: Arc<Compiled>) -> Result<()> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .send(Input::Reload { compiled, reply })
            .await
            .map_err(|_| Error::WriterStopped)?;
        receiver.await.map_err(|_| Error::WriterStopped)
    }

    /// Tells the writer a run ended, waiting for room; the next batch releases its guards and
    /// settles its incident.
    pub async fn run_ended(&self, ended: RunEnded) {
        if self.sender.send(Input::RunEnded(ended)).await.is_err() {
            tracing::debug!("the writer stopped before a run's end reached it");
        }
    }
}

/// What the writer task needs besides its queue.
pub struct Stage {
    pub store: Arc<dyn Store>,
    pub compiled: Arc<Compiled>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub runs: Runs,
    pub decider: Decider,
    pub disabled_rules: DisabledRules,
    /// The guard state's published copy.
    pub guards: GuardStatus,
    /// Counts commits with writes (and run changes), for pages that follow the journal.
    pub changes: Changes,
    /// The most writes of requests one transaction takes (the decide stage's come on top).
    pub max_writes: usize,
}

impl Queue {
    /// Starts the writer task.
    pub fn spawn(self, stage: Stage) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(self, stage))
    }
}

struct Waiting {
    reply: oneshot::Sender<Result<Committed>>,
    /// How many of the batch's events are this request's, in order.
    events: usize,
    prunes: bool,
}

async fn run(mut queue: Queue, mut stage: Stage) {
    stage.disabled_rules.publish(stage.decider.disabled());
    stage.guards.publish(stage.decider.guards.snapshot());
    let max_writes = stage.max_writes.max(1);
    // Now and then a batch with no input, so that what time alone makes due (the correlator's
    // sweep, a snapshot) happens when nothing arrives.
    let mut tick_every = Duration::from_secs(stage.compiled.config.incidents.sweep_secs.max(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting: Vec<Waiting> = Vec::new();
    // Ends of runs a failed commit did not record, told again with the next batch.
    let mut unrecorded: Vec<RunEnded> = Vec::new();
    loop {
        let first = tokio::select! {
            input = queue.receiver.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
            _ = tick.tick() => None,
        };
        let mut writes: Vec<Write> = Vec::new();
        let mut ended = std::mem::take(&mut unrecorded);
        let mut reload = None;
        // Takes one input into the batch; a reload is handed back.
        let mut take = |input: Input,
                        writes: &mut Vec<Write>,
                        waiting: &mut Vec<Waiting>|
         -> Option<(Arc<Compiled>, oneshot::Sender<()>)> {
            match input {
                Input::Request {
                    writes: mut more,
                    reply,
                } => {
                    let events = more
                        .iter()
                        .filter(|write| matches!(write, Write::Event(_)))
                        .count();
                    let prunes = more.iter().any(|write| matches!(write, Write::Prune(_)));
                    writes.append(&mut more);
                    waiting.push(Waiting {
                        reply,
                        events,
                        prunes,
                    });
                    None
                }
                Input::RunEnded(run) => {
                    ended.push(run);
                    None
                }
                Input::Reload { compiled, reply } => Some((compiled, reply)),
            }
        };
        if let Some(first) = first {
            reload = take(first, &mut writes, &mut waiting);
            // A reload ends the batch: what follows it is decided by the new config.
            while writes.len() < max_writes && reload.is_none() {
                match queue.receiver.try_recv() {
                    Ok(input) => reload = take(input, &mut writes, &mut waiting),
                    Err(_) => break,
                }
            }
        }
        let now = stage.clock.now();
        let mut step = {
            let events: Vec<&Event> = writes
                .iter()
                .filter_map(|write| match write {
                    Write::Event(encoded) => Some(encoded.event()),
                    _ => None,
                })
                .collect();
            stage.decider.apply(&events, &ended, now)
        };
        observe(&stage.metrics, &step);
        writes.append(&mut step.writes);
        // tokio's clock, so tests on paused time see paused durations.
        let began = tokio::time::Instant::now();
        // A batch with nothing to commit (a tick with nothing due) says nothing about whether the
        // journal can take writes.
        let wrote = !writes.is_empty();
        let result = if writes.is_empty() {
            Ok(homeostat_store::Committed::default())
        } else {
            let result = stage.store.commit(&writes).await;
            match &result {
                Ok(_) => queue.health.committed(),
                Err(error) => queue.health.commit_failed(error),
            }
            result
        };
        stage
            .metrics
            .commit_duration
            .observe(began.elapsed().as_secs_f64());
        match result {
            Ok(mut committed) => {
                stage.committed(&step).await;
                if wrote {
                    stage.changes.publish();
                }
                // Only decisions, run ends and the sweep's pruning change the guards: copying them
                // after every batch of plain events would cost the ingest path for nothing.
                if !step.decided.is_empty() || !ended.is_empty() || step.swept {
                    stage.guards.publish(stage.decider.guards.snapshot());
                }
                let mut seqs = std::mem::take(&mut committed.event_seqs).into_iter();
                let mut verdicts = step.verdicts.into_iter();
                for request in waiting.drain(..) {
                    let reply = Committed {
                        event_seqs: seqs.by_ref().take(request.events).collect(),
                        verdicts: verdicts.by_ref().take(request.events).collect(),
                        pruned: if request.prunes { committed.pruned } else { 0 },
                    };
                    let _ = request.reply.send(Ok(reply));
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = writes.len(), "journal commit failed; nothing of the batch is acknowledged");
                let reason = match &error {
                    Error::Full(_) => "disk_full",
                    _ => "database",
                };
                stage
                    .metrics
                    .commit_failures
                    .get_or_create(&vec![("reason", reason.to_string())])
                    .inc();
                for request in waiting.drain(..) {
                    let error = match &error {
                        Error::Full(message) => Error::Full(message.clone()),
                        other => Error::Database(other.to_string()),
                    };
                    let _ = request.reply.send(Err(error));
                }
                // Nothing was recorded, so nothing may run, and the fold's state counted what
                // was not: rebuild it from the journal. The run ends are told again.
                unrecorded = ended;
                stage.rebuild().await;
            }
        }
        if let Some((compiled, reply)) = reload {
            stage.decider.reconfigure(Arc::clone(&compiled));
            stage.compiled = compiled;
            let every = Duration::from_secs(stage.compiled.config.incidents.sweep_secs.max(1));
            if every != tick_every {
                tick_every = every;
                tick = tokio::time::interval(tick_every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            let _ = reply.send(());
        }
    }
}

/// Counts what a batch's fold decided, and tells the log what people may look for.
fn observe(metrics: &Metrics, step: &Step) {
    for label in &step.correlations {
        metrics
            .correlation_verdicts
            .get_or_create(&vec![("verdict", label.to_string())])
            .inc();
        if *label == "repeat" {
            metrics.events_duplicate.inc();
        }
    }
    for transition in &step.transitions {
        metrics
            .incident_transitions
            .get_or_create(&vec![("transition", transition.as_str().to_string())])
            .inc();
    }
    for decided in &step.decided {
        metrics
            .rules_matched
            .get_or_create(&vec![("rule", decided.rule.clone())])
            .inc();
        metrics
            .guard_verdicts
            .get_or_create(&vec![
                ("rule", decided.rule.clone()),
                ("verdict", decided.label.to_string()),
            ])
            .inc();
        if let Some(message) = &decided.message {
            tracing::info!(rule = %decided.rule, target = %decided.target, event = %decided.event_id, "{message}");
        }
    }
    for verdict in &step.verdicts {
        match verdict {
            Correlation::Silenced { silence } => {
                tracing::info!(%silence, "event silenced: journaled, nothing opened")
            }
            Correlation::Rejected { message } => tracing::warn!("{message}"),
            _ => {}
        }
    }
}

impl Stage {
    /// What a durable batch lets happen: runs dispatched, notices sent, verifications started, the
    /// disabled rules published, the duration metrics observed.
    async fn committed(&mut self, step: &Step) {
        self.disabled_rules.publish(self.decider.disabled());
        for incident in &step.resolved {
            self.metrics.incident_resolved(incident);
        }
        if !step.dry_runs.is_empty() {
            // A dry run ends where it is decided: it never reaches the run driver, which counts
            // the others; shadow mode's "how often would it have acted" is this count.
            self.metrics
                .runs_finished
                .get_or_create(&vec![("status", RunStatus::DryRun.to_string())])
                .inc_by(step.dry_runs.len() as u64);
        }
        for seconds in &step.mitigations {
            self.metrics
                .incident_durations
                .get_or_create(&vec![("phase", "mitigate".to_string())])
                .observe(*seconds);
        }
        if step.swept {
            // Both walk the whole state: refreshed with the sweep, not on every commit.
            let correlator = &self.decider.correlator;
            self.metrics
                .active_alerts
                .set(correlator.active_alerts() as i64);
            let open = correlator
                .tracked()
                .filter(|incident| !incident.is_resolved())
                .count();
            self.metrics.incidents_open.set(open as i64);
        }
        for notice in &step.notices {
            self.runs
                .notify(&notice.key, &notice.notifier, notice.summary.clone());
        }
        for verification in &step.verifications {
            self.runs.verify(
                verification.incident,
                verification.run_id.clone(),
                verification.check.clone(),
                verification.within,
            );
        }
        let now = self.clock.now();
        let latency = |received_at: chrono::DateTime<chrono::Utc>| {
            (now - received_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        };
        for dry_run in &step.dry_runs {
            self.metrics
                .dispatch_latency
                .observe(latency(dry_run.received_at));
        }
        for dispatch in &step.dispatch {
            self.metrics
                .dispatch_latency
                .observe(latency(dispatch.received_at));
            tracing::info!(run = %dispatch.run.id, rule = %dispatch.run.rule, target = %dispatch.run.target, "run dispatched");
            self.runs.spawn(Start {
                started_at: dispatch.planned_at,
                resumed: false,
                plan: dispatch.run.clone(),
                program: Arc::clone(&dispatch.program),
                event: Some(dispatch.event.clone()),
                replay: Vec::new(),
            });
        }
    }

    /// After a failed commit: the fold's state as the journal has it.
    async fn rebuild(&mut self) {
        let now = self.clock.now();
        match crate::recover::decider(&*self.store, &self.compiled, now).await {
            Ok(decider) => self.decider = decider,
            Err(error) => {
                tracing::error!(%error, "cannot rebuild the decide stage from the journal")
            }
        }
    }
}
