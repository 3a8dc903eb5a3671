//! Drives runs: one task per run owns its [`Machine`], journals each transition, then executes the
//! effects the transition asked for.
//!
//! The order is the durability contract. An input (an action's outcome, a timer, an approval) and the
//! records of the transition it causes, including the intents of the next effects, commit together;
//! only then do those effects start. A crash before that commit loses the input, so the effect that
//! produced it counts as started with no outcome; a crash after it re-creates the same state by replay.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use homeostat_core::action::{Action, Notify};
use homeostat_core::clock::SharedClock;
use homeostat_core::config::{Notifier, Prometheus};
use homeostat_core::decide::PlannedRun;
use homeostat_core::journal::RunStatus;
use homeostat_core::pipeline::RunEnded;
use homeostat_core::runbook::machine::{PendingApproval, Refusal};
use homeostat_core::runbook::{Effect, Input, Machine, Program, Transition};
use homeostat_core::Event;
use homeostat_store::Write;
use tokio::sync::{broadcast, mpsc};

use crate::writer::Writer;

use crate::action::{self, Outcome, Status};
use crate::failpoint;
use crate::metrics::Metrics;

/// Why an input could not be given to a run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("run `{run}` is not in progress")]
    NotRunning { run: String },
    #[error("run `{run}` has no approval waiting")]
    NoApproval { run: String },
    #[error("`{by}` may not approve run `{run}`; its approvers are {approvers}")]
    NotApprover {
        run: String,
        by: String,
        approvers: String,
    },
    #[error("`{by}` started run `{run}` and may not approve it: step `{step}` asks for someone else (`distinct_from_starter`); ask another approver")]
    StarterMayNotApprove {
        run: String,
        step: String,
        by: String,
    },
}

/// The runs in progress, and what they need to execute effects. Cheap to clone.
#[derive(Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// What a reload may change; each effect reads the settings current when it starts.
    settings: std::sync::RwLock<Arc<Settings>>,
    http: reqwest::Client,
    cluster: crate::kubernetes::Cluster,
    live: Mutex<HashMap<String, Live>>,
    /// Tells readers (the API's log streams) that a run's journal grew.
    changed: broadcast::Sender<String>,
    changes: crate::handle::Changes,
}

impl Inner {
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(
            &self
                .settings
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Inputs travel boxed: the channel allocates its slots in blocks of 32, and a parked run should
/// not hold 32 inline `Input`s (3.5 KB) for the one approval it waits for.
type Inputs = mpsc::UnboundedSender<Box<Input>>;

struct Live {
    inputs: Inputs,
    approvals: Vec<PendingApproval>,
}

/// What a run task starts from.
pub struct Start {
    pub plan: PlannedRun,
    pub program: Arc<Program>,
    pub event: Option<Event>,
    /// Journaled inputs to replay before going on (after a restart), with their times.
    pub replay: Vec<(Input, DateTime<Utc>)>,
    /// When the run started (its `RunStarted` time), for applying or replaying its `Start`.
    pub started_at: DateTime<Utc>,
    /// The run's first transition was committed before a restart: replay, then recover.
    pub resumed: bool,
}

/// The config runs read as they go (not their runbook, which they journaled): notifiers, the
/// Prometheus of checks, who is told when a run needs attention. A reload replaces them.
#[derive(Clone, Default)]
pub struct Settings {
    pub notifiers: BTreeMap<String, Notifier>,
    pub prometheus: Option<Prometheus>,
    pub attention_notifier: Option<String>,
}

impl Settings {
    pub fn from_config(config: &homeostat_core::config::Config) -> Self {
        Self {
            notifiers: config
                .notifiers
                .iter()
                .map(|notifier| (notifier.name().to_string(), notifier.clone()))
                .collect(),
            prometheus: config.prometheus.clone(),
            attention_notifier: config.runs.attention_notifier.clone(),
        }
    }
}

pub struct Config {
    pub writer: Writer,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// The Kubernetes client of the `kubernetes.*` actions.
    pub cluster: crate::kubernetes::Cluster,
    /// Bumped with every change followers are told of, for pages drawn at a count.
    pub changes: crate::handle::Changes,
}

impl Runs {
    pub fn new(config: Config) -> Self {
        let (changed, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                writer: config.writer,
                clock: config.clock,
                metrics: config.metrics,
                settings: std::sync::RwLock::new(Arc::new(config.settings)),
                http: config.http,
                cluster: config.cluster,
                live: Mutex::new(HashMap::new()),
                changed,
                changes: config.changes,
            }),
        }
    }

    /// Run ids whose journal grew, as they commit.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.changed.subscribe()
    }

    /// How many runs are in progress in this process.
    pub fn live_count(&self) -> usize {
        self.live().len()
    }

    pub fn is_live(&self, run_id: &str) -> bool {
        self.live().contains_key(run_id)
    }

    pub fn pending_approvals(&self, run_id: &str) -> Option<Vec<PendingApproval>> {
        self.live().get(run_id).map(|live| live.approvals.clone())
    }

    /// Every live run that waits for an approval, with what it waits for, by run id.
    pub fn waiting_approvals(&self) -> Vec<(String, Vec<PendingApproval>)> {
        let mut waiting: Vec<(String, Vec<PendingApproval>)> = self
            .live()
            .iter()
            .filter(|(_, live)| !live.approvals.is_empty())
            .map(|(run, live)| (run.clone(), live.approvals.clone()))
            .collect();
        waiting.sort_by(|a, b| a.0.cmp(&b.0));
        waiting
    }

    /// Records a person's answer to a waiting approval; `step` may be omitted when only one waits.
    pub fn approve(
        &self,
        run_id: &str,
        step: Option<&str>,
        by: &str,
        approved: bool,
        comment: Option<String>,
    ) -> Result<String, Error> {
        let live = self.live();
        let run = live.get(run_id).ok_or_else(|| Error::NotRunning {
            run: run_id.to_string(),
        })?;
        let pending = run
            .approvals
            .iter()
            .find(|approval| step.is_none_or(|step| approval.step == step))
            .ok_or_else(|| Error::NoApproval {
                run: run_id.to_string(),
            })?;
        match pending.refuses(by) {
            None => {}
            Some(Refusal::NotAnApprover) => {
                return Err(Error::NotApprover {
                    run: run_id.to_string(),
                    by: by.to_string(),
                    approvers: pending
                        .approvers
                        .iter()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
            Some(Refusal::Starter) => {
                return Err(Error::StarterMayNotApprove {
                    run: run_id.to_string(),
                    step: pending.step.clone(),
                    by: by.to_string(),
                })
            }
        }
        let step = pending.step.clone();
        run.inputs
            .send(Box::new(Input::Approval {
                step: step.clone(),
                by: by.to_string(),
                approved,
                comment,
            }))
            .map_err(|_| Error::NotRunning {
                run: run_id.to_string(),
            })?;
        Ok(step)
    }

    pub fn cancel(&self, run_id: &str, by: &str) -> Result<(), Error> {
        let live = self.live();
        let run = live.get(run_id).ok_or_else(|| Error::NotRunning {
            run: run_id.to_string(),
        })?;
        run.inputs
            .send(Box::new(Input::Cancel { by: by.to_string() }))
            .map_err(|_| Error::NotRunning {
                run: run_id.to_string(),
            })
    }

    /// Replaces the settings runs read as they go; runs in progress see them from their next effect.
    pub(crate) fn reconfigure(&self, settings: Settings) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(settings);
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        // A panic while holding this lock cannot leave the map half-updated, so poisoning is ignored.
        self.inner
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a run whose `RunStarted` is committed: new (no replay) or resumed after a restart.
    pub fn spawn(&self, start: Start) -> tokio::task::JoinHandle<()> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.live().insert(
            start.plan.id.clone(),
            Live {
                inputs: sender.clone(),
                approvals: Vec::new(),
            },
        );
        let runs = self.clone();
        let run_id = start.plan.id.clone();
        let globals = start.plan.globals(start.event.as_ref());
        // Only these few fields are needed from here on: a parked run must not hold its whole plan
        // (the runbook's definition is in the shared program) nor its event.
        let Start {
            plan:
                PlannedRun {
                    rule,
                    runbook,
                    target,
                    params,
                    incident,
                    dry_run,
                    ..
                },
            program,
            replay,
            started_at,
            resumed,
            ..
        } = start;
        let mut machine = Box::new(Machine::new(program, params, globals, dry_run));
        let first = if !resumed {
            (Input::Start, started_at)
        } else {
            // Rebuild the state the journal describes; its effects already happened or are resolved
            // by `Recover` below.
            machine.apply(&Input::Start, started_at);
            for (input, at) in &replay {
                machine.apply(input, *at);
            }
            tracing::info!(run = %run_id, inputs = replay.len(), "resuming an interrupted run");
            (Input::Recover, self.inner.clock.now())
        };
        let run = Driven {
            run_id,
            rule,
            runbook,
            target,
            incident,
        };
        tokio::spawn(async move { runs.drive(run, machine, first, sender, receiver).await })
    }

    async fn drive(
        self,
        run: Driven,
        mut machine: Box<Machine>,
        first: (Input, DateTime<Utc>),
        sender: Inputs,
        mut receiver: mpsc::UnboundedReceiver<Box<Input>>,
    ) {
        let inner = &self.inner;
        let Driven {
            run_id,
            rule,
            runbook,
            target,
            incident,
        } = run;
        // `None` if the run stops without an end (the engine stopping): it resumes on restart.
        let mut status = None;
        let mut ended_at = inner.clock.now();
        inner.metrics.runs_active.inc();
        // A min-heap on (when, order of arming): few timers per run, and a heap is one small
        // allocation where a B-tree's first node is over a kilobyte.
        let mut timers: BinaryHeap<Reverse<Armed>> = BinaryHeap::new();
        let mut timer_seq = 0u64;
        let mut next = Some(first);
        loop {
            let (input, at) = match next.take() {
                Some(next) => next,
                None => {
                    let deadline = timers.peek().map(|Reverse(armed)| armed.at);
                    let sleep = match deadline {
                        Some(at) => (at - inner.clock.now()).to_std().unwrap_or_default(),
                        None => Duration::from_secs(86_400 * 365),
                    };
                    tokio::select! {
                        received = receiver.recv() => match received {
                            Some(input) => (*input, inner.clock.now()),
                            None => break,
                        },
                        _ = tokio::time::sleep(sleep), if deadline.is_some() => {
                            let Reverse(armed) = timers.pop().expect("a deadline means a timer");
                            (*armed.input, inner.clock.now())
                        }
                    }
                }
            };
            let transition = machine.apply(&input, at);
            if transition.ignored {
                continue;
            }
            // Approvals this transition ends disappear before its commit, new ones after it: a
            // reader never sees an approval whose step is not journaled, nor one still pending in
            // a run the journal already shows ended.
            let approvals = machine.pending_approvals();
            if let Some(live) = self.live().get_mut(&run_id) {
                live.approvals
                    .retain(|old| approvals.iter().any(|new| new.step == old.step));
            }
            // Boxed: awaited inline, the commit's state (its writes, the queue's send) would sit in
            // every parked run's task for good.
            if Box::pin(self.commit(&run_id, &input, &transition, at))
                .await
                .is_err()
            {
                // Nothing more can be recorded: stop here. The run stays `running` in the store and
                // the next start resumes it through recovery.
                break;
            }
            let waits_anew = match self.live().get_mut(&run_id) {
                Some(live) => {
                    let anew = approvals
                        .iter()
                        .any(|new| !live.approvals.iter().any(|old| old.step == new.step));
                    live.approvals = approvals;
                    anew
                }
                None => false,
            };
            // The commit told its followers already, before the approval was listed: tell them
            // again, or a page refreshed by the first notice would not show it.
            if waits_anew {
                self.inner.changes.publish();
                let _ = self.inner.changed.send(run_id.clone());
            }
            for effect in transition.effects {
                match effect {
                    Effect::Execute {
                        step,
                        attempt,
                        action,
                        timeout_secs,
                    } => self.execute(
                        &run_id,
                        step,
                        attempt,
                        action,
                        timeout_secs,
                        machine.dry_run(),
                        sender.clone(),
                    ),
                    Effect::Check {
                        step,
                        attempt,
                        check,
                        timeout_secs,
                    } => {
                        let (inner, sender) = (Arc::clone(inner), sender.clone());
                        tokio::spawn(async move {
                            let timeout = Duration::from_secs_f64(timeout_secs.max(0.001));
                            let outcome = crate::check::evaluate(
                                &check,
                                inner.settings().prometheus.as_ref(),
                                &inner.http,
                                timeout,
                            )
                            .await;
                            let _ = sender.send(Box::new(outcome_input(step, attempt, outcome)));
                        });
                    }
                    Effect::Timer {
                        step,
                        attempt,
                        timer,
                        at,
                    } => {
                        timer_seq += 1;
                        timers.push(Reverse(Armed {
                            at,
                            seq: timer_seq,
                            input: Box::new(Input::Timer {
                                step,
                                attempt,
                                timer,
                            }),
                        }));
                    }
                    Effect::Notify { notifier, summary } => {
                        self.notify_best_effort(&run_id, &notifier, summary);
                    }
                }
            }
            if let Some(end) = machine.end() {
                status = Some(end.status);
                ended_at = at;
                inner
                    .metrics
                    .runs_finished
                    .get_or_create(&vec![("status", end.status.to_string())])
                    .inc();
                tracing::info!(run = %run_id, %runbook, %target, status = %end.status, error = end.error.as_deref().unwrap_or(""), "run finished");
                if end.status == RunStatus::NeedsAttention
                    || (end.status == RunStatus::Failed && !end.undone.is_empty())
                {
                    if let Some(notifier) = inner.settings().attention_notifier.clone() {
                        let summary = format!(
                            "run `{run_id}` of `{runbook}` on `{target}` needs attention: {}",
                            end.error.clone().unwrap_or_default()
                        );
                        self.notify_best_effort(&run_id, &notifier, summary);
                    }
                }
                break;
            }
        }
        self.live().remove(&run_id);
        inner.metrics.runs_active.dec();
        inner
            .writer
            .run_ended(RunEnded {
                rule,
                run_id,
                incident,
                status,
                at: ended_at,
            })
            .await;
    }

    /// Journals one transition: its input and its records, in one commit.
    async fn commit(
        &self,
        run_id: &str,
        input: &Input,
        transition: &Transition,
        at: DateTime<Utc>,
    ) -> Result<(), ()> {
        let starts_effects = transition
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::Execute { .. }));
        let mut writes = Vec::with_capacity(transition.records.len() + 1);
        if !matches!(input, Input::Start) {
            writes.push(Write::RunInput {
                run_id: run_id.to_string(),
                input: input.clone(),
                outputs: transition.outputs.clone(),
                at,
            });
        }
        for record in &transition.records {
            writes.push(homeostat_core::pipeline::record_write(
                run_id,
                record.clone(),
                at,
            ));
        }
        if starts_effects {
            failpoint::hit(failpoint::BEFORE_INTENT_COMMIT);
        }
        // A commit that fails (a full disk) is retried until it succeeds: the transition's effects
        // start only after it, so the run waits, parked, and does nothing unrecorded meanwhile.
        let mut delay = Duration::from_millis(100);
        let mut waiting = false;
        loop {
            match self.inner.writer.submit(writes.clone()).await {
                Ok(_) => break,
                Err(homeostat_store::Error::WriterStopped) => {
                    tracing::error!(run = %run_id, "the journal writer stopped; stopping the run");
                    if waiting {
                        self.inner.metrics.runs_waiting_for_journal.dec();
                    }
                    return Err(());
                }
                Err(error) => {
                    if !waiting {
                        waiting = true;
                        self.inner.metrics.runs_waiting_for_journal.inc();
                        tracing::warn!(run = %run_id, %error, "cannot journal run progress; the run waits and retries");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        if waiting {
            self.inner.metrics.runs_waiting_for_journal.dec();
            tracing::info!(run = %run_id, "run progress journaled; the run goes on");
        }
        if matches!(input, Input::Outcome { .. }) {
            failpoint::hit(failpoint::AFTER_OUTCOME_COMMIT);
        }
        if starts_effects {
            failpoint::hit(failpoint::AFTER_INTENT_COMMIT);
        }
        self.inner.changes.publish();
        let _ = self.inner.changed.send(run_id.to_string());
        Ok(())
    }

    /// Runs one action in its own task, so a panic becomes a failed step, not a dead daemon.
    #[allow(clippy::too_many_arguments)] // The step's coordinates, its action and how to run it.
    fn execute(
        &self,
        run_id: &str,
        step: String,
        attempt: u32,
        action: Action,
        timeout_secs: f64,
        dry_run: bool,
        sender: Inputs,
    ) {
        let inner = Arc::clone(&self.inner);
        let timeout = Duration::from_secs_f64(timeout_secs.max(0.001));
        let context = action::Context {
            idempotency_key: format!("{run_id}/{step}/{attempt}"),
            run_id: run_id.to_string(),
            timeout,
            notifiers: inner.settings().notifiers.clone(),
            http: inner.http.clone(),
            dry_run,
            now: inner.clock.now(),
            cluster: inner.cluster.clone(),
        };
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            let name = action.name();
            let began = inner.clock.monotonic();
            let task = tokio::spawn(async move { action::execute(&action, &context).await });
            // Actions enforce their own timeout; this outer one only guards against one that does not.
            let outcome = match tokio::time::timeout(timeout + Duration::from_secs(5), task).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(join_error)) => Outcome::failed(
                    serde_json::Value::Null,
                    format!("the action panicked: {join_error}"),
                ),
                Err(_) => Outcome::timed_out(serde_json::Value::Null, timeout),
            };
            // A dry run's action asked its API what it would do; it did nothing.
            let outcome = if dry_run && outcome.status == Status::Succeeded {
                Outcome {
                    status: Status::DryRun,
                    ..outcome
                }
            } else {
                outcome
            };
            failpoint::hit(failpoint::AFTER_EFFECT);
            let elapsed = inner.clock.monotonic().saturating_sub(began);
            inner
                .metrics
                .actions
                .get_or_create(&vec![
                    ("action", name.to_string()),
                    ("outcome", outcome.status.as_str().to_string()),
                ])
                .inc();
            inner
                .metrics
                .action_duration
                .get_or_create(&vec![("action", name.to_string())])
                .observe(elapsed.as_secs_f64());
            if outcome.status != Status::Succeeded {
                tracing::warn!(run = %run_id, %step, status = outcome.status.as_str(), error = outcome.error.as_deref().unwrap_or(""), "step did not succeed");
            }
            let _ = sender.send(Box::new(outcome_input(step, attempt, outcome)));
        });
    }

    /// Polls a remediation's verification check until it holds or `within` passes. When it holds,
    /// a `Verified` command goes into the event stream, so the incident's deadline no longer
    /// escalates; when it never does, the correlator's sweep escalates at the deadline. The check
    /// only reads (a PromQL query, an HTTP request), so polling it again after a restart is safe;
    /// a restart simply stops it, and the deadline still stands.
    pub fn verify(
        &self,
        incident: i64,
        run_id: String,
        check: homeostat_core::config::Check,
        within: Duration,
    ) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            let every = (within / 10).clamp(Duration::from_millis(200), Duration::from_secs(15));
            let described = match (&check.promql, &check.http) {
                (Some(promql), _) => format!("`{promql}`"),
                (None, Some(http)) => format!("{} {}", http.method, http.url),
                (None, None) => "the check".to_string(),
            };
            while began.elapsed() < within {
                let outcome = crate::check::evaluate(
                    &check,
                    inner.settings().prometheus.as_ref(),
                    &inner.http,
                    every.min(Duration::from_secs(10)),
                )
                .await;
                if outcome.status == Status::Succeeded {
                    let now = inner.clock.now();
                    let event = homeostat_core::incident::Command::Verified {
                        incident,
                        run_id: run_id.clone(),
                        check: described,
                    }
                    .into_event(homeostat_core::event::new_id(now), None, now);
                    if let Err(error) = inner.writer.submit(vec![Write::Event(event.into())]).await
                    {
                        tracing::error!(incident, %error, "cannot record a verification");
                    }
                    return;
                }
                tokio::time::sleep(every).await;
            }
            tracing::info!(incident, run = %run_id, "the verification check did not hold in time");
        });
    }

    /// Sends a notice through `notifier` in the background; `key` makes its idempotency key.
    pub fn notify(&self, key: &str, notifier: &str, summary: String) {
        self.notify_best_effort(key, notifier, summary);
    }

    fn notify_best_effort(&self, run_id: &str, notifier: &str, summary: String) {
        let inner = Arc::clone(&self.inner);
        let context = action::Context {
            idempotency_key: format!("{run_id}/notice"),
            run_id: run_id.to_string(),
            timeout: Duration::from_secs(10),
            notifiers: inner.settings().notifiers.clone(),
            http: inner.http.clone(),
            dry_run: false,
            now: inner.clock.now(),
            cluster: inner.cluster.clone(),
        };
        let notify = Action::Notify(Notify {
            notifier: notifier.to_string(),
            summary,
            details: BTreeMap::new(),
            severity: "warning".into(),
            event_action: None,
            dedup_key: None,
        });
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            let outcome = action::execute(&notify, &context).await;
            if outcome.status != Status::Succeeded {
                tracing::warn!(run = %run_id, error = outcome.error.as_deref().unwrap_or(""), "notice not delivered");
            }
        });
    }
}

/// The names a run task keeps for its logs and its end.
struct Driven {
    run_id: String,
    rule: String,
    runbook: String,
    target: String,
    incident: Option<i64>,
}

/// A timer a run armed: ordered by when it fires, then by the order it was armed in.
struct Armed {
    at: DateTime<Utc>,
    seq: u64,
    input: Box<Input>,
}

impl PartialEq for Armed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Armed {}

impl PartialOrd for Armed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Armed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

fn outcome_input(step: String, attempt: u32, outcome: Outcome) -> Input {
    Input::Outcome {
        step,
        attempt,
        status: outcome.status,
        output: outcome.output,
        error: outcome.error,
    }
}
