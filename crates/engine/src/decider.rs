//! The decide stage: runs in the writer, on each batch of events before it commits, so that the
//! events, what the rules decided about them, the plans of the runs they start and the cursor all
//! commit in one transaction. Runs are dispatched right after that commit.
//!
//! One commit from receipt to dispatch keeps dispatch latency at one fsync, and means an
//! acknowledged event's decision is exactly as durable as the event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::clock::SharedClock;
use homeostat_core::config::{Check, Verify};
use homeostat_core::decide::{
    decide_trigger, incident_event, Decision, PlannedRun, Trigger, Verdict as RuleVerdict,
};
use homeostat_core::guard::{GuardState, Skip};
use homeostat_core::incident::correlate::{Correlator, Settings, Transition, Verdict};
use homeostat_core::incident::{Change, Command, Incident, IncidentId, TimelineEntry};
use homeostat_core::rule::Compiled;
use homeostat_core::{Event, EventKind};
use homeostat_store::writer::Stage;
use homeostat_store::{Committed, EncodedEvent, EventQuery, RunQuery, RunStatus, Store, Write};
use tokio::sync::mpsc;

use crate::engine::DisabledRules;
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
    /// Events into incidents; its state is what the stage snapshots.
    pub correlator: Correlator,
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
    /// Run ends turned into commands in the batch being committed; told again if it fails.
    in_batch_finished: Vec<Finished>,
    /// Run ends a failed commit did not record, for the next batch.
    unrecorded_finished: Vec<Finished>,
    /// When the correlator was last swept for work that time made due (monotonic).
    last_sweep: Duration,
    /// Incidents this batch resolves, for the duration metrics once it commits.
    resolved: Vec<Incident>,
    /// Loop detection: per (rule, target), the runs started for incidents that have not resolved
    /// since, with when. Rebuilt from recent runs after a restart.
    pub attempts: Attempts,
    /// The incident transitions some rule triggers on.
    incident_rules: std::collections::HashSet<Transition>,
    /// Commands decided during this batch (a loop stopped), to append as events of the same commit.
    followups: Vec<Command>,
    /// Notices to send once this batch is durable: idempotency key, notifier, text.
    notices: Vec<(String, String, String)>,
    /// Times to mitigate of incidents this batch mitigates, for the metrics once it commits.
    mitigations: Vec<f64>,
    /// The correlator's disabled rules, published for the API after each commit.
    disabled_rules: DisabledRules,
    /// Verification checks to start once this batch (with its `Mitigate`) is durable.
    verifications: Vec<(IncidentId, String, Check, Duration)>,
}

/// What to store for one of the correlator's changes.
fn change_write(change: Change) -> Write {
    match change {
        Change::Incident(incident) => Write::Incident(incident),
        Change::Member(member) => Write::IncidentMember(member),
        Change::Timeline(entry) => Write::Timeline(entry),
    }
}

/// The correlator as of `cursor`: the last snapshot, plus the events after it up to the cursor.
/// Without a usable snapshot the whole journal is replayed, which numbers incidents as they were.
pub async fn restore_correlator(
    store: &dyn Store,
    settings: Arc<Settings>,
    cursor: i64,
) -> Result<Correlator, homeostat_store::Error> {
    let (snapshot_seq, mut correlator) = match store.snapshot(CURSOR).await? {
        Some((seq, body)) => match Correlator::restore(Arc::clone(&settings), &body) {
            Some(correlator) => (seq, correlator),
            None => {
                tracing::warn!(
                    "the correlation snapshot is from another version; replaying the journal"
                );
                (0, Correlator::new(settings, 0))
            }
        },
        None => (0, Correlator::new(settings, 0)),
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
            correlator.observe(&record.event);
        }
    }
    Ok(correlator)
}

/// Per (rule, target): when runs started, and for which incident.
pub type Attempts = HashMap<(String, String), Vec<(DateTime<Utc>, IncidentId)>>;

/// Loop counts as the journal has them: recent runs of each (rule, target) for incidents that are
/// not resolved. A restart forgets a resolution between two runs of a reopened incident, which can
/// only make loop detection stop one run sooner.
pub async fn rebuild_attempts(
    store: &dyn Store,
    compiled: &Compiled,
    correlator: &Correlator,
    now: DateTime<Utc>,
) -> Result<Attempts, homeostat_store::Error> {
    let horizon = compiled
        .rules
        .iter()
        .filter_map(|rule| {
            rule.guards
                .loop_limit
                .as_ref()
                .map(|limit| limit.window_secs)
        })
        .max()
        .unwrap_or(0);
    let mut attempts = Attempts::new();
    if horizon == 0 {
        return Ok(attempts);
    }
    let runs = store
        .runs(&RunQuery {
            limit: 100_000,
            started_after: Some(now - chrono::Duration::seconds(horizon as i64)),
            ..Default::default()
        })
        .await?;
    for run in runs {
        let Some(incident) = run.incident_id else {
            continue;
        };
        if correlator
            .incident(incident)
            .is_some_and(|record| !record.is_resolved())
        {
            attempts
                .entry((run.rule.clone(), run.target.clone()))
                .or_default()
                .push((run.started_at, incident));
        }
    }
    for list in attempts.values_mut() {
        list.sort();
    }
    Ok(attempts)
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

impl DecideStage {
    #[allow(clippy::too_many_arguments)] // one constructor, called once, at start-up
    pub fn new(
        store: Arc<dyn Store>,
        compiled: Arc<Compiled>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        runs: Runs,
        guards: GuardState,
        correlator: Correlator,
        finished: mpsc::UnboundedReceiver<Finished>,
        disabled_rules: DisabledRules,
    ) -> Self {
        let longest_cooldown_secs = compiled
            .rules
            .iter()
            .map(|rule| rule.guards.cooldown_secs)
            .max()
            .unwrap_or(0);
        let snapshot_at = clock.monotonic();
        let incident_rules = compiled
            .rules
            .iter()
            .flat_map(|rule| rule.on_incident.iter().copied())
            .collect();
        let mut guards = guards;
        guards.max_targets = compiled.config.runs.max_targets;
        guards.disabled = correlator.disabled().cloned().collect();
        disabled_rules.publish(correlator.disabled());
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
            correlator,
            finished,
            last_sweep: snapshot_at,
            resolved: Vec::new(),
            attempts: HashMap::new(),
            incident_rules,
            followups: Vec::new(),
            notices: Vec::new(),
            verifications: Vec::new(),
            mitigations: Vec::new(),
            disabled_rules,
            since_snapshot: 0,
            snapshot_at,
            longest_cooldown_secs,
            pending_runs: Vec::new(),
            pending_dry_runs: Vec::new(),
            pending_snapshot: false,
            in_batch_finished: Vec::new(),
            unrecorded_finished: Vec::new(),
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

    /// Loop detection: a run that would be a rule's `loop.runs + 1`-th on one target for one
    /// incident within the window, the incident not having resolved, is stopped; the rule is
    /// disabled for that target and the incident escalates (a command of this same commit).
    fn stop_loops(&mut self, decisions: &mut [Decision], now: DateTime<Utc>) {
        for decision in decisions {
            let RuleVerdict::Run { run } = &decision.verdict else {
                continue;
            };
            let Some(incident) = run.incident else {
                continue;
            };
            let Some(limit) = self
                .rule(&run.rule)
                .and_then(|rule| rule.guards.loop_limit.clone())
            else {
                continue;
            };
            let window = chrono::Duration::seconds(limit.window_secs as i64);
            let attempts = self
                .attempts
                .entry((run.rule.clone(), run.target.clone()))
                .or_default();
            attempts.retain(|(at, _)| *at > now - window);
            let count = attempts
                .iter()
                .filter(|(_, attempt)| *attempt == incident)
                .count() as u32;
            if count < limit.runs {
                attempts.push((now, incident));
                continue;
            }
            self.guards.finish(&run.rule, &run.id);
            let skip = Skip::Loop {
                target: run.target.clone(),
                runs: count + 1,
                window_secs: limit.window_secs,
            };
            self.followups.push(Command::DisableRule {
                incident,
                rule: run.rule.clone(),
                target: run.target.clone(),
                reason: format!(
                    "remediation loop: rule `{}` ran {count} times on `{}` within {}s and incident {incident} did not resolve",
                    run.rule, run.target, limit.window_secs
                ),
            });
            let message = skip.to_string();
            decision.verdict = RuleVerdict::Skipped { skip, message };
        }
    }

    /// Tells people an incident escalated, with what was tried; sent once the batch is durable.
    fn escalation_notice(&mut self, incident: IncidentId, cause: &Event, writes: &mut Vec<Write>) {
        let config = &self.compiled.config;
        let Some(notifier) = config
            .incidents
            .escalation_notifier
            .clone()
            .or_else(|| config.runs.attention_notifier.clone())
        else {
            tracing::warn!(
                incident,
                "incident escalated; no escalation_notifier or attention_notifier to tell"
            );
            return;
        };
        let Some(record) = self.correlator.incident(incident) else {
            return;
        };
        let reason = match Command::from_event(cause) {
            Some(Command::Escalate { reason, .. } | Command::DisableRule { reason, .. }) => reason,
            _ => "escalated".into(),
        };
        let mut tried: Vec<String> = self
            .attempts
            .iter()
            .filter_map(|((rule, target), attempts)| {
                let runs = attempts
                    .iter()
                    .filter(|(_, attempt)| *attempt == incident)
                    .count();
                (runs > 0).then(|| {
                    format!(
                        "rule `{rule}` on `{target}` ({runs} run{})",
                        if runs == 1 { "" } else { "s" }
                    )
                })
            })
            .collect();
        tried.sort();
        let changes = self.correlator.recent_changes(incident);
        let changes = if changes.is_empty() {
            String::new()
        } else {
            format!(
                " Recent changes: {}.",
                homeostat_core::decide::changes_text(&changes)
            )
        };
        let summary = format!(
            "incident {incident} escalated: {} {}, {} alert{} firing, started {}. Why: {reason}. Tried: {}.{changes} See `homeostat incidents show {incident}`.",
            record.title,
            record.group_key,
            record.members_firing,
            if record.members_firing == 1 { "" } else { "s" },
            record.started_at.format("%H:%M:%S UTC"),
            if tried.is_empty() { "no automated remediation".to_string() } else { tried.join(", ") }
        );
        // The timeline says who was told what, in the commit that decided it; the notice itself
        // is sent once that commit is durable.
        writes.push(Write::Timeline(TimelineEntry {
            incident,
            kind: homeostat_core::incident::TimelineKind::Notified,
            at: cause.received_at,
            event_id: Some(cause.id.clone()),
            summary: format!("told `{notifier}`: {summary}"),
            detail: serde_json::Value::Null,
        }));
        self.notices.push((
            format!("incident/{incident}/escalated/{}", cause.id),
            notifier,
            summary,
        ));
    }

    /// A rule of the compiled config by name.
    fn rule(&self, name: &str) -> Option<&homeostat_core::rule::CompiledRule> {
        self.compiled.rules.iter().find(|rule| rule.name == name)
    }

    /// The program a rule runs (the decision that planned the run came from this same compiled config).
    fn program(&self, rule: &str) -> Option<Arc<homeostat_core::runbook::Program>> {
        self.programs.get(rule).cloned()
    }

    fn decide_events(&mut self, events: &[&Event], writes: &mut Vec<Write>) {
        let now = self.clock.now();
        for event in events {
            self.since_snapshot += 1;
            let observed = self.correlator.observe(event);
            let verdict = observed.verdict.unwrap_or(Verdict::Context);
            self.metrics
                .correlation_verdicts
                .get_or_create(&vec![("verdict", verdict.label().to_string())])
                .inc();
            if verdict == Verdict::Repeat {
                self.metrics.events_duplicate.inc();
            }
            if let Verdict::Silenced { silence } = &verdict {
                tracing::info!(event = %event.id, %silence, "event silenced: journaled, nothing opened");
            }
            if let Verdict::Rejected { message } = &verdict {
                tracing::warn!(event = %event.id, "{message}");
            }
            // An accepted silence is stored with the command that made it.
            if let (Verdict::Context, EventKind::Command) = (&verdict, event.kind) {
                if let Some(Command::Silence { silence }) = Command::from_event(event) {
                    writes.push(Write::Silence(silence));
                }
            }
            for change in observed.changes {
                if let Change::Incident(incident) = &change {
                    if incident.is_resolved() && incident.resolved_at == Some(event.received_at) {
                        self.resolved.push(incident.clone());
                    }
                }
                writes.push(change_write(change));
            }
            for (incident, transition) in &observed.transitions {
                if *transition == Transition::Mitigated {
                    if let Some(seconds) = self
                        .correlator
                        .incident(*incident)
                        .and_then(Incident::time_to_mitigate)
                    {
                        self.mitigations.push(seconds);
                    }
                }
                self.metrics
                    .incident_transitions
                    .get_or_create(&vec![("transition", transition.as_str().to_string())])
                    .inc();
            }
            let commands = Command::from_event(event).filter(|_| event.kind == EventKind::Command);
            if matches!(
                commands,
                Some(Command::DisableRule { .. } | Command::EnableRule { .. })
            ) {
                self.guards.disabled = self.correlator.disabled().cloned().collect();
            }
            // A person turning a rule back on starts its loop count afresh. (A restart recounts
            // recent runs of unresolved incidents, so it may stop the rule again one run sooner.)
            if let (Some(Command::EnableRule { rule, target, .. }), Verdict::Context) =
                (&commands, &verdict)
            {
                self.attempts.remove(&(rule.clone(), target.clone()));
            }
            for (incident, transition) in &observed.transitions {
                if *transition == Transition::Resolved {
                    // A resolution ends the loop count: the remediations so far worked.
                    for attempts in self.attempts.values_mut() {
                        attempts.retain(|(_, attempt)| attempt != incident);
                    }
                }
                if *transition == Transition::Escalated {
                    self.escalation_notice(*incident, event, writes);
                }
            }
            if verdict.actionable() && event.kind != EventKind::Command {
                self.decide_one(Trigger::Event, event, verdict.incident(), now, writes);
            }
            for (incident, transition) in observed.transitions {
                if !self.incident_rules.contains(&transition) {
                    continue;
                }
                let Some(record) = self.correlator.incident(incident) else {
                    continue;
                };
                let changes = self.correlator.recent_changes(incident);
                let view = incident_event(record, transition, event, &changes);
                self.decide_one(
                    Trigger::Incident(transition),
                    &view,
                    Some(incident),
                    now,
                    writes,
                );
            }
        }
    }

    /// Decides one event (or an incident's view) for the rules with this trigger, and journals the
    /// decisions with the runs they plan.
    fn decide_one(
        &mut self,
        trigger: Trigger,
        event: &Event,
        incident: Option<IncidentId>,
        now: DateTime<Utc>,
        writes: &mut Vec<Write>,
    ) {
        {
            // `decide` runs third-party code (CEL, templates) inside the writer task: a panic there must
            // cost one event's decision, recorded as an error, not the writer and with it the daemon.
            let (compiled, guards) = (&self.compiled, &mut self.guards);
            let decisions = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decide_trigger(
                    trigger,
                    event,
                    compiled,
                    guards,
                    compiled.config.dry_run,
                    now,
                )
            })) {
                Ok(mut decisions) => {
                    for decision in &mut decisions {
                        if let RuleVerdict::Run { run } | RuleVerdict::DryRun { run } =
                            &mut decision.verdict
                        {
                            run.incident = incident;
                        }
                    }
                    decisions
                }
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
                        verdict: RuleVerdict::Error {
                            message: format!("deciding this event panicked: {message}"),
                        },
                    }]
                }
            };
            if decisions.is_empty() {
                return;
            }
            let mut decisions = decisions;
            self.stop_loops(&mut decisions, now);
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
                    RuleVerdict::Run { run } | RuleVerdict::DryRun { run }
                        if !run.dry_run
                            || self
                                .program(&run.rule)
                                .is_some_and(|program| program.asks_server_dry_run()) =>
                    {
                        // A dry run whose actions can ask their API (`dryRun=All`) is driven like
                        // a real run; its machine executes only those.
                        intents.push(Write::RunStarted {
                            run: run.clone(),
                            at: now,
                        });
                        if let Some(incident) = run.incident {
                            intents.push(Write::RunIncident {
                                run_id: run.id.clone(),
                                incident,
                            });
                        }
                        self.pending_runs.push((
                            run.clone(),
                            (*event).clone(),
                            event.received_at,
                            now,
                        ));
                    }
                    RuleVerdict::DryRun { run } => {
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
                    RuleVerdict::Skipped { message, skip } => {
                        tracing::info!(rule = %decision.rule, target = %decision.target, event = %event.id, "{message}");
                        if matches!(skip, Skip::BlastRadius { .. }) {
                            if let Some(notifier) =
                                self.compiled.config.runs.attention_notifier.clone()
                            {
                                self.notices.push((
                                    format!("blast-radius/{}", event.id),
                                    notifier,
                                    format!(
                                        "rule `{}` on `{}` {message}; people decide whether to act",
                                        decision.rule, decision.target
                                    ),
                                ));
                            }
                        }
                    }
                    RuleVerdict::Error { message } => {
                        tracing::warn!(rule = %decision.rule, event = %event.id, "rule not applied: {message}");
                    }
                    RuleVerdict::IgnoredStatus { .. } => {}
                    // A run that is not a dry run always matches the first arm.
                    RuleVerdict::Run { .. } => {}
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
        let now = self.clock.now();
        // Commands the engine itself makes (a run that succeeded mitigates its incident; time made an
        // incident due) go into the stream as events of this same commit, after the batch's own.
        let mut commands = Vec::new();
        // Runs whose end a failed commit did not record come first, then those that ended since.
        let mut ended = std::mem::take(&mut self.unrecorded_finished);
        while let Ok(finished) = self.finished.try_recv() {
            ended.push(finished);
        }
        self.in_batch_finished = ended.clone();
        for finished in ended {
            self.guards.finish(&finished.rule, &finished.run_id);
            let Some(incident) = finished.incident else {
                continue;
            };
            match finished.status {
                Some(RunStatus::Succeeded) => {
                    let verify = self
                        .rule(&finished.rule)
                        .and_then(|rule| rule.verify.clone());
                    let verify_within_secs = verify.as_ref().map(|verify| verify.within_secs);
                    if let Some(Verify {
                        within_secs,
                        check: Some(check),
                    }) = verify
                    {
                        self.verifications.push((
                            incident,
                            finished.run_id.clone(),
                            check,
                            Duration::from_secs(within_secs),
                        ));
                    }
                    commands.push(Command::Mitigate {
                        incident,
                        run_id: finished.run_id,
                        rule: finished.rule,
                        verify_within_secs,
                        finished_at: Some(finished.at),
                    });
                }
                Some(status) if status.is_failure() => commands.push(Command::Escalate {
                    incident,
                    reason: format!(
                        "run {} of rule `{}` ended `{status}`",
                        finished.run_id, finished.rule
                    ),
                    run_id: Some(finished.run_id),
                }),
                _ => {}
            }
        }
        let monotonic = self.clock.monotonic();
        let sweep_every = Duration::from_secs(self.compiled.config.incidents.sweep_secs.max(1));
        if monotonic.saturating_sub(self.last_sweep) >= sweep_every {
            self.last_sweep = monotonic;
            commands.extend(self.correlator.sweep(now));
            // Both walk the whole state: refreshed with the sweep, not on every commit.
            self.metrics
                .active_alerts
                .set(self.correlator.active_alerts() as i64);
            let open = self
                .correlator
                .tracked()
                .filter(|incident| !incident.is_resolved())
                .count();
            self.metrics.incidents_open.set(open as i64);
        }
        let make = |commands: Vec<Command>| -> Vec<Event> {
            commands
                .into_iter()
                .map(|command| command.into_event(homeostat_core::event::new_id(now), None, now))
                .collect()
        };
        let mut made: Vec<Event> = make(commands);
        if events.is_empty() && made.is_empty() {
            return;
        }
        let mut all: Vec<&Event> = events.to_vec();
        all.extend(made.iter());
        self.decide_events(&all, writes);
        // Deciding can make commands of its own (a loop stopped); they join the same commit.
        loop {
            let followups = make(std::mem::take(&mut self.followups));
            if followups.is_empty() {
                break;
            }
            let refs: Vec<&Event> = followups.iter().collect();
            self.decide_events(&refs, writes);
            made.extend(followups);
        }
        for event in made {
            writes.push(Write::Event(EncodedEvent::new(event)));
        }
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
                body: self.correlator.snapshot(),
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
        if let Err(error) = result {
            let reason = match error {
                homeostat_store::Error::Full(_) => "disk_full",
                _ => "database",
            };
            self.metrics
                .commit_failures
                .get_or_create(&vec![("reason", reason.to_string())])
                .inc();
            // The ends of runs this batch turned into commands are told again with the next one.
            self.unrecorded_finished = std::mem::take(&mut self.in_batch_finished);
            // Nothing was recorded, so nothing may run. The guards and the firing set already counted
            // this batch: rebuild both from what the journal holds, so a retry is decided afresh.
            self.pending_runs.clear();
            self.pending_dry_runs.clear();
            let now = self.clock.now();
            match rebuild_guards(&*self.store, &self.compiled, now).await {
                Ok(guards) => self.guards = guards,
                Err(error) => tracing::error!(%error, "cannot rebuild the guard state"),
            }
            self.resolved.clear();
            self.notices.clear();
            self.followups.clear();
            self.mitigations.clear();
            self.verifications.clear();
            let cursor = self.store.cursor(CURSOR).await.unwrap_or(0);
            match restore_correlator(&*self.store, Arc::clone(&self.compiled.incidents), cursor)
                .await
            {
                Ok(correlator) => self.correlator = correlator,
                Err(error) => tracing::error!(%error, "cannot restore the correlation state"),
            }
            self.guards.max_targets = self.compiled.config.runs.max_targets;
            self.guards.disabled = self.correlator.disabled().cloned().collect();
            match rebuild_attempts(&*self.store, &self.compiled, &self.correlator, now).await {
                Ok(attempts) => self.attempts = attempts,
                Err(error) => tracing::error!(%error, "cannot rebuild the loop counts"),
            }
            return;
        }
        self.in_batch_finished.clear();
        self.disabled_rules.publish(self.correlator.disabled());
        for incident in self.resolved.drain(..) {
            self.metrics.incident_resolved(&incident);
        }
        for seconds in self.mitigations.drain(..) {
            self.metrics
                .incident_durations
                .get_or_create(&vec![("phase", "mitigate".to_string())])
                .observe(seconds);
        }
        for (key, notifier, summary) in self.notices.drain(..) {
            self.runs.notify(&key, &notifier, summary);
        }
        for (incident, run_id, check, within) in self.verifications.drain(..) {
            self.runs.verify(incident, run_id, check, within);
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
