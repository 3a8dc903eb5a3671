//! The decide stage as a pure fold: a batch of events and finished runs in; the writes that commit
//! with them, the runs to dispatch, the notices to send and the verifications to start once they
//! are durable, out. No store, no clock, no network: the engine's writer runs it on each batch
//! before the commit, and replays and rule tests run the same fold on recorded or made-up input.
//!
//! One fold per batch is what makes an acknowledged event's decision exactly as durable as the
//! event: both commit in one transaction. If that commit fails, the engine throws this state away
//! and rebuilds it from the journal, so nothing counts that was not recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::config::{Check, Verify};
use crate::decide::{decide_trigger, incident_event, Decision, PlannedRun, Trigger, Verdict};
use crate::event::{Event, EventKind};
use crate::guard::{GuardState, LoopCounts, Skip};
use crate::incident::correlate::{Correlator, Transition, Verdict as Correlation};
use crate::incident::{Change, Command, Incident, IncidentId, TimelineEntry, TimelineKind};
use crate::journal::{EncodedEvent, RunStatus, Write};
use crate::rule::Compiled;
use crate::runbook::{Input, Machine, Program, Record};

/// The decide stage's cursor in the event stream, and the name of its snapshot.
pub const CURSOR: &str = "decide";
/// The correlator is snapshot after this many events, or this long, whichever comes first, so a
/// restart replays at most that much of the journal.
const SNAPSHOT_EVERY_EVENTS: u64 = 100_000;
const SNAPSHOT_EVERY_SECS: i64 = 10;

/// A run that ended, told to the fold so it releases the run's guards and settles its incident.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEnded {
    pub rule: String,
    pub run_id: String,
    /// The incident the run was started for: a success mitigates it, a failure escalates it.
    pub incident: Option<IncidentId>,
    /// How it ended; `None` if it stopped without an end (the engine stopping), to resume later.
    pub status: Option<RunStatus>,
    /// When its last transition happened.
    pub at: DateTime<Utc>,
}

/// A run to start once the batch that plans it is durable.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub run: PlannedRun,
    pub program: Arc<Program>,
    /// The event that triggered it (for an incident transition, the incident's view of it).
    pub event: Event,
    pub received_at: DateTime<Utc>,
    pub planned_at: DateTime<Utc>,
}

/// A dry run completed inside the batch: journaled whole, nothing to execute.
#[derive(Clone, Debug, PartialEq)]
pub struct DryRunDone {
    pub rule: String,
    pub run_id: String,
    pub received_at: DateTime<Utc>,
}

/// A best-effort message to people, sent once the batch is durable.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Sent as the idempotency key: a retry of the same notice is one message.
    pub key: String,
    pub notifier: String,
    pub summary: String,
}

/// A fix to verify once the batch that mitigates its incident is durable.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    pub incident: IncidentId,
    pub run_id: String,
    pub check: Check,
    pub within: std::time::Duration,
}

/// What one rule decided, counted for the metrics and told to the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub rule: String,
    pub target: String,
    pub event_id: String,
    /// `run`, `dry_run`, `skipped_cooldown`, ...
    pub label: &'static str,
    /// Why it did not run, for a skip or an error.
    pub message: Option<String>,
}

/// What the rules decided for one event, its incident transitions' included: journaled as one row,
/// the run intents after it.
#[derive(Default)]
struct EventDecisions {
    decisions: Vec<Decision>,
    intents: Vec<Write>,
}

/// The output of one batch: what commits with it, and what to do once it has.
#[derive(Debug, Default)]
pub struct Step {
    /// Decisions, run intents, incident rows, timeline lines, silences, the events the engine made
    /// itself (commands), the cursor and, now and then, a snapshot: to commit with the batch.
    pub writes: Vec<Write>,
    /// The correlation verdict of each event of the batch, in order; the engine's own events come
    /// after the batch's, with no verdict here.
    pub verdicts: Vec<Correlation>,
    pub dispatch: Vec<Dispatch>,
    pub dry_runs: Vec<DryRunDone>,
    pub notices: Vec<Notice>,
    pub verifications: Vec<Verification>,
    /// Incidents the batch resolves, for the duration metrics.
    pub resolved: Vec<Incident>,
    /// Times to mitigate of the incidents the batch mitigates, in seconds.
    pub mitigations: Vec<f64>,
    pub decided: Vec<Decided>,
    /// Every verdict of correlation (all events, the engine's own included), for the metrics.
    pub correlations: Vec<&'static str>,
    pub transitions: Vec<Transition>,
    /// Whether the batch carries a snapshot of the correlator.
    pub snapshot: bool,
    /// Whether the sweep ran (time made work due): the gauges are refreshed with it.
    pub swept: bool,
}

/// The decide stage's state: the correlator, the guards and the loop counts.
pub struct Decider {
    compiled: Arc<Compiled>,
    /// Each rule's program by rule name, for the runs its decisions plan.
    programs: HashMap<String, Arc<Program>>,
    pub guards: GuardState,
    pub correlator: Correlator,
    pub loops: LoopCounts,
    /// The incident transitions some rule triggers on.
    incident_rules: HashSet<Transition>,
    /// The longest cooldown of any rule: older starts cannot matter and are pruned.
    longest_cooldown_secs: u64,
    since_snapshot: u64,
    snapshot_at: DateTime<Utc>,
    swept_at: DateTime<Utc>,
    /// Commands decided during the batch being folded (a loop stopped), to append as events.
    followups: Vec<Command>,
}

impl Decider {
    /// The stage over state rebuilt from the journal, as of `now`.
    pub fn new(
        compiled: Arc<Compiled>,
        mut guards: GuardState,
        correlator: Correlator,
        loops: LoopCounts,
        now: DateTime<Utc>,
    ) -> Self {
        guards.max_targets = compiled.config.runs.max_targets;
        guards.disabled = correlator.disabled().cloned().collect();
        let programs = compiled
            .rules
            .iter()
            .map(|rule| (rule.name.clone(), Arc::clone(&rule.runbook)))
            .collect();
        let incident_rules = compiled
            .rules
            .iter()
            .flat_map(|rule| rule.on_incident.iter().copied())
            .collect();
        let longest_cooldown_secs = compiled
            .rules
            .iter()
            .map(|rule| rule.guards.cooldown_secs)
            .max()
            .unwrap_or(0);
        Self {
            compiled,
            programs,
            guards,
            correlator,
            loops,
            incident_rules,
            longest_cooldown_secs,
            since_snapshot: 0,
            snapshot_at: now,
            swept_at: now,
            followups: Vec::new(),
        }
    }

    /// Takes a reloaded config and keeps everything the fold has learned: guards (cooldowns, rate
    /// windows, locks, concurrency), loop counts, incidents, silences and the rules loop detection
    /// disabled. Changed `incidents:` settings apply as a restart would apply them: the correlator
    /// is restored from its own snapshot under the new settings, so open incidents keep their
    /// groups and new alerts are grouped by the new ones. Runs already planned keep the programs
    /// they were planned with.
    pub fn reconfigure(&mut self, compiled: Arc<Compiled>) {
        if compiled.config.incidents != self.compiled.config.incidents {
            let snapshot = self.correlator.snapshot();
            // `None` cannot happen for a snapshot just taken; the old grouping would stay.
            if let Some(restored) = Correlator::restore(Arc::clone(&compiled.incidents), &snapshot)
            {
                self.correlator = restored;
            }
        }
        let mut guards = std::mem::take(&mut self.guards);
        guards.max_targets = compiled.config.runs.max_targets;
        let fresh = Self::new(
            compiled,
            guards,
            std::mem::replace(
                &mut self.correlator,
                Correlator::new(Arc::clone(&self.compiled.incidents), 0),
            ),
            std::mem::take(&mut self.loops),
            self.snapshot_at,
        );
        *self = Self {
            since_snapshot: self.since_snapshot,
            swept_at: self.swept_at,
            followups: std::mem::take(&mut self.followups),
            ..fresh
        };
    }

    /// The rules loop detection turned off, per target.
    pub fn disabled(&self) -> impl Iterator<Item = &(String, String)> {
        self.correlator.disabled()
    }

    /// Folds one batch: the runs that ended since the last (their incidents are mitigated or
    /// escalated by commands of this batch), the work time made due, and the batch's events.
    pub fn apply(&mut self, events: &[&Event], ended: &[RunEnded], now: DateTime<Utc>) -> Step {
        let mut step = Step::default();
        // Commands the engine makes itself go into the stream as events of this same commit, after
        // the batch's own, so a replay applies them at the same point.
        let mut commands = Vec::new();
        for run in ended {
            self.run_ended(run, &mut commands, &mut step);
        }
        let sweep_every = Duration::seconds(
            i64::try_from(self.compiled.config.incidents.sweep_secs.max(1)).unwrap_or(i64::MAX),
        );
        if now - self.swept_at >= sweep_every || now < self.swept_at {
            self.swept_at = now;
            commands.extend(self.correlator.sweep(now));
            step.swept = true;
        }
        let make = |commands: Vec<Command>| -> Vec<Event> {
            commands
                .into_iter()
                .map(|command| command.into_event(crate::event::new_id(now), None, now))
                .collect()
        };
        let mut made = make(commands);
        if events.is_empty() && made.is_empty() {
            return step;
        }
        for event in events {
            let verdict = self.decide_event(event, now, &mut step);
            step.verdicts.push(verdict);
        }
        // Deciding can make commands of its own (a loop stopped); they join the same commit.
        let mut decided_made = 0;
        loop {
            for event in &made[decided_made..] {
                self.decide_event(event, now, &mut step);
            }
            decided_made = made.len();
            let followups = make(std::mem::take(&mut self.followups));
            if followups.is_empty() {
                break;
            }
            made.extend(followups);
        }
        for event in made {
            step.writes.push(Write::Event(EncodedEvent::new(event)));
        }
        step.writes.push(Write::CursorAtLastEvent {
            name: CURSOR.into(),
        });
        if self.since_snapshot >= SNAPSHOT_EVERY_EVENTS
            || now - self.snapshot_at >= Duration::seconds(SNAPSHOT_EVERY_SECS)
            || now < self.snapshot_at
        {
            // Taken after this batch is folded in, at this batch's last event.
            step.writes.push(Write::Snapshot {
                name: CURSOR.into(),
                seq: -1,
                body: self.correlator.snapshot(),
            });
            step.snapshot = true;
            self.since_snapshot = 0;
            self.snapshot_at = now;
            self.guards.prune(self.longest_cooldown_secs, now);
        }
        step
    }

    /// A run ended: its guards are released; a success mitigates its incident (and starts its
    /// verification check once durable), a failure escalates it.
    fn run_ended(&mut self, run: &RunEnded, commands: &mut Vec<Command>, step: &mut Step) {
        self.guards.finish(&run.rule, &run.run_id);
        let Some(incident) = run.incident else {
            return;
        };
        match run.status {
            Some(RunStatus::Succeeded) => {
                let verify = self.rule(&run.rule).and_then(|rule| rule.verify.clone());
                let verify_within_secs = verify.as_ref().map(|verify| verify.within_secs);
                if let Some(Verify {
                    within_secs,
                    check: Some(check),
                }) = verify
                {
                    step.verifications.push(Verification {
                        incident,
                        run_id: run.run_id.clone(),
                        check,
                        within: std::time::Duration::from_secs(within_secs),
                    });
                }
                commands.push(Command::Mitigate {
                    incident,
                    run_id: run.run_id.clone(),
                    rule: run.rule.clone(),
                    verify_within_secs,
                    finished_at: Some(run.at),
                });
            }
            Some(status) if status.is_failure() => commands.push(Command::Escalate {
                incident,
                reason: format!("run {} of rule `{}` ended `{status}`", run.run_id, run.rule),
                run_id: Some(run.run_id.clone()),
            }),
            _ => {}
        }
    }

    /// A rule of the compiled config by name.
    fn rule(&self, name: &str) -> Option<&crate::rule::CompiledRule> {
        self.compiled.rules.iter().find(|rule| rule.name == name)
    }

    /// Folds one event into its incident and lets the rules decide it; its correlation verdict.
    fn decide_event(&mut self, event: &Event, now: DateTime<Utc>, step: &mut Step) -> Correlation {
        self.since_snapshot += 1;
        let observed = self.correlator.observe(event);
        let verdict = observed.verdict.unwrap_or(Correlation::Context);
        step.correlations.push(verdict.label());
        // An accepted silence is stored with the command that made it.
        // The kind first: reading `data` as a command cost every alert 3% of the writer's
        // instructions (callgrind, `homeostat-bench pipeline`), to be thrown away.
        let command = (event.kind == EventKind::Command)
            .then(|| Command::from_event(event))
            .flatten();
        if let (Correlation::Context, Some(Command::Silence { silence })) = (&verdict, &command) {
            step.writes.push(Write::Silence(silence.clone()));
        }
        for change in observed.changes {
            if let Change::Incident(incident) = &change {
                if incident.is_resolved() && incident.resolved_at == Some(event.received_at) {
                    step.resolved.push(incident.clone());
                }
            }
            step.writes.push(match change {
                Change::Incident(incident) => Write::Incident(incident),
                Change::Member(member) => Write::IncidentMember(member),
                Change::Timeline(entry) => Write::Timeline(entry),
            });
        }
        for (incident, transition) in &observed.transitions {
            if *transition == Transition::Mitigated {
                if let Some(seconds) = self
                    .correlator
                    .incident(*incident)
                    .and_then(Incident::time_to_mitigate)
                {
                    step.mitigations.push(seconds);
                }
            }
            step.transitions.push(*transition);
        }
        if matches!(
            command,
            Some(Command::DisableRule { .. } | Command::EnableRule { .. })
        ) {
            self.guards.disabled = self.correlator.disabled().cloned().collect();
        }
        // A person turning a rule back on starts its loop count afresh. (A restart recounts recent
        // runs of unresolved incidents, so it may stop the rule again one run sooner.)
        if let (Some(Command::EnableRule { rule, target, .. }), Correlation::Context) =
            (&command, &verdict)
        {
            self.loops.forget(rule, target);
        }
        for (incident, transition) in &observed.transitions {
            if *transition == Transition::Resolved {
                self.loops.resolved(*incident);
            }
            if *transition == Transition::Escalated {
                self.escalation_notice(*incident, event, step);
            }
        }
        // Every decision about this event, its incident transitions' included, goes into one
        // journal row with its correlation; the run intents they cause follow it.
        let mut decided = EventDecisions::default();
        if verdict.actionable() && event.kind != EventKind::Command {
            self.decide_one(
                Trigger::Event,
                event,
                verdict.incident(),
                now,
                step,
                &mut decided,
            );
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
                step,
                &mut decided,
            );
        }
        // A command has its own timeline line; its row is written only when rules decided on the
        // transition it caused.
        if event.kind != EventKind::Command || !decided.decisions.is_empty() {
            step.writes.push(Write::Decisions {
                event_id: event.id.clone(),
                at: now,
                correlation: Some(verdict.clone()),
                decisions: decided.decisions,
            });
        }
        step.writes.append(&mut decided.intents);
        verdict
    }

    /// Decides one event (or an incident's view) for the rules with this trigger, adding the
    /// decisions and the run intents they cause to `decided`.
    fn decide_one(
        &mut self,
        trigger: Trigger,
        event: &Event,
        incident: Option<IncidentId>,
        now: DateTime<Utc>,
        step: &mut Step,
        decided: &mut EventDecisions,
    ) {
        // `decide` runs code from the config (CEL, templates): a panic there must cost one event's
        // decision, recorded as an error, not the writer and with it the daemon.
        let (compiled, guards) = (&self.compiled, &mut self.guards);
        let mut decisions = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
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
                    if let Verdict::Run { run } | Verdict::DryRun { run } = &mut decision.verdict {
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
            return;
        }
        self.stop_loops(&mut decisions, now);
        for decision in &decisions {
            let message = match &decision.verdict {
                Verdict::Skipped { message, .. } | Verdict::Error { message } => {
                    Some(message.clone())
                }
                _ => None,
            };
            step.decided.push(Decided {
                rule: decision.rule.clone(),
                target: decision.target.clone(),
                event_id: event.id.clone(),
                label: decision.verdict.label(),
                message,
            });
            match &decision.verdict {
                Verdict::Run { run } | Verdict::DryRun { run } => {
                    let Some(program) = self.programs.get(&run.rule).cloned() else {
                        continue;
                    };
                    // A dry run whose actions can ask their API (`dryRun=All`) is driven like a
                    // real run; its machine executes only those. Other dry runs complete at once.
                    if !run.dry_run || program.asks_server_dry_run() {
                        decided.intents.push(Write::RunStarted {
                            run: run.clone(),
                            at: now,
                        });
                        if let Some(incident) = run.incident {
                            decided.intents.push(Write::RunIncident {
                                run_id: run.id.clone(),
                                incident,
                            });
                        }
                        step.dispatch.push(Dispatch {
                            run: run.clone(),
                            program,
                            event: event.clone(),
                            received_at: event.received_at,
                            planned_at: now,
                        });
                    } else {
                        decided
                            .intents
                            .extend(dry_run_writes(run, program, Some(event), now));
                        // It holds nothing: done as soon as decided.
                        self.guards.finish(&run.rule, &run.id);
                        step.dry_runs.push(DryRunDone {
                            rule: run.rule.clone(),
                            run_id: run.id.clone(),
                            received_at: event.received_at,
                        });
                    }
                }
                Verdict::Skipped {
                    message,
                    skip,
                    dry_run: false,
                } => self.held_back(decision, skip, message, event, incident, step),
                Verdict::Skipped { .. } | Verdict::Error { .. } | Verdict::IgnoredStatus { .. } => {
                }
            }
        }
        decided.decisions.append(&mut decisions);
    }

    /// A guard held a live run back: people are told when nobody else would know. A refused
    /// blast radius always; a held-back page (its `severity` one of `runs.page_severities`) when
    /// the guard says the rule will not act for a while. A lock means another run is acting on the
    /// target, and a stopped loop escalates the incident, which tells people itself.
    fn held_back(
        &self,
        decision: &Decision,
        skip: &Skip,
        message: &str,
        event: &Event,
        incident: Option<IncidentId>,
        step: &mut Step,
    ) {
        let runs = &self.compiled.config.runs;
        let Some(notifier) = runs.attention_notifier.clone() else {
            return;
        };
        let (rule, target) = (&decision.rule, &decision.target);
        match skip {
            Skip::BlastRadius { .. } => step.notices.push(Notice {
                key: format!("blast-radius/{}", event.id),
                notifier,
                summary: format!(
                    "rule `{rule}` on `{target}` {message}; people decide whether to act"
                ),
            }),
            Skip::Cooldown { .. }
            | Skip::RateLimited { .. }
            | Skip::Concurrency { .. }
            | Skip::Disabled { .. } => {
                let Some(severity) = event
                    .labels
                    .get("severity")
                    .filter(|severity| runs.page_severities.contains(severity))
                else {
                    return;
                };
                let of = incident
                    .map(|incident| format!(" (incident {incident})"))
                    .unwrap_or_default();
                let summary = format!(
                    "page not acted on: {} ({severity}){of}: rule `{rule}` on `{target}` {message}. People decide whether to act; see `homeostat events show {}`",
                    crate::incident::correlate::alert_name(event),
                    event.id
                );
                if let Some(incident) = incident {
                    step.writes.push(Write::Timeline(TimelineEntry {
                        incident,
                        kind: TimelineKind::Notified,
                        at: event.received_at,
                        event_id: Some(event.id.clone()),
                        summary: format!("told `{notifier}`: {summary}"),
                        detail: serde_json::Value::Null,
                    }));
                }
                step.notices.push(Notice {
                    key: format!("held-back/{}/{rule}", event.id),
                    notifier,
                    summary,
                });
            }
            Skip::Locked { .. } | Skip::Loop { .. } => {}
        }
    }

    /// Loop detection: a run that would pass its rule's `loop` limit is stopped; the rule is
    /// disabled for that target and the incident escalates (a command of this same commit).
    fn stop_loops(&mut self, decisions: &mut [Decision], now: DateTime<Utc>) {
        for decision in decisions {
            let Verdict::Run { run } = &decision.verdict else {
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
            let Err(count) = self
                .loops
                .admit(&run.rule, &run.target, incident, &limit, now)
            else {
                continue;
            };
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
            decision.verdict = Verdict::Skipped {
                skip,
                message,
                dry_run: false,
            };
        }
    }

    /// Tells people an incident escalated, with what was tried; sent once the batch is durable,
    /// and said on the timeline in the commit that decided it.
    fn escalation_notice(&mut self, incident: IncidentId, cause: &Event, step: &mut Step) {
        let config = &self.compiled.config;
        let Some(notifier) = config
            .incidents
            .escalation_notifier
            .clone()
            .or_else(|| config.runs.attention_notifier.clone())
        else {
            return;
        };
        let Some(record) = self.correlator.incident(incident) else {
            return;
        };
        let reason = match Command::from_event(cause) {
            Some(Command::Escalate { reason, .. } | Command::DisableRule { reason, .. }) => reason,
            _ => "escalated".into(),
        };
        let tried = self.loops.tried(incident);
        let changes = self.correlator.recent_changes(incident);
        let changes = if changes.is_empty() {
            String::new()
        } else {
            format!(
                " Recent changes: {}.",
                crate::decide::changes_text(&changes)
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
        step.writes.push(Write::Timeline(TimelineEntry {
            incident,
            kind: TimelineKind::Notified,
            at: cause.received_at,
            event_id: Some(cause.id.clone()),
            summary: format!("told `{notifier}`: {summary}"),
            detail: serde_json::Value::Null,
        }));
        step.notices.push(Notice {
            key: format!("incident/{incident}/escalated/{}", cause.id),
            notifier,
            summary,
        });
    }
}

/// A dry run executes nothing, so it completes inside one transition: its start, every step's
/// rendered inputs and its end are journaled together.
pub fn dry_run_writes(
    plan: &PlannedRun,
    program: Arc<Program>,
    event: Option<&Event>,
    at: DateTime<Utc>,
) -> Vec<Write> {
    let mut machine = Machine::new(program, plan.params.clone(), plan.globals(event), true);
    let transition = machine.apply(&Input::Start, at);
    let mut writes = Vec::with_capacity(transition.records.len() + 1);
    writes.push(Write::RunStarted {
        run: plan.clone(),
        at,
    });
    for record in transition.records {
        writes.push(record_write(&plan.id, record, at));
    }
    writes
}

/// How a machine's record is journaled: a run's end also updates the run's row.
pub fn record_write(run_id: &str, record: Record, at: DateTime<Utc>) -> Write {
    match record {
        Record::RunEnded(end) => Write::RunFinished {
            run_id: run_id.to_string(),
            end,
            at,
        },
        record => Write::RunRecord {
            run_id: run_id.to_string(),
            record,
            at,
        },
    }
}

#[cfg(test)]
mod tests;
