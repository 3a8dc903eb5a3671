//! The journal, typed: every record the engine writes ([`Write`]), the one place their stored form
//! is defined ([`Write::row`], [`Entry::from_row`]), and what readers match on ([`Entry`]).
//!
//! A journal row is `(seq, at, kind, event_id, run_id, incident_id, body)`; `kind` and `body` are
//! what [`Entry`] encodes. The encoding is pinned by golden files (`tests/data/journal/`), and
//! rows written by earlier versions keep reading.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decide::{Decision, PlannedRun};
use crate::event::Event;
use crate::guard::Skip;
use crate::incident::correlate::Verdict as Correlation;
use crate::incident::silence::Silence;
use crate::incident::{Incident, IncidentId, Member, TimelineEntry, TimelineKind};
use crate::runbook::{Input, Record, RunEnd};

/// How a run stands or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// A dry run: every step was rendered and recorded, nothing executed.
    DryRun,
    /// A crash left a non-idempotent step's outcome unknown; a person must look.
    NeedsAttention,
    /// A step failed and the rollbacks of the steps already done all succeeded.
    RolledBack,
    Cancelled,
    /// A person rejected an approval the run waited for. Not a failure: someone decided.
    Rejected,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::DryRun,
        RunStatus::NeedsAttention,
        RunStatus::RolledBack,
        RunStatus::Cancelled,
        RunStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::DryRun => "dry_run",
            RunStatus::NeedsAttention => "needs_attention",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Rejected => "rejected",
        }
    }

    /// A person should look: the run failed, or could not know whether it did harm.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RunStatus::Failed | RunStatus::RolledBack | RunStatus::NeedsAttention
        )
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action (or a check) reported: the status of an [`Input::Outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Succeeded,
    Failed,
    TimedOut,
    /// A dry run's action: its API said what it would do, and it did nothing.
    DryRun,
}

impl OutcomeStatus {
    pub const ALL: [OutcomeStatus; 4] = [
        OutcomeStatus::Succeeded,
        OutcomeStatus::Failed,
        OutcomeStatus::TimedOut,
        OutcomeStatus::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Succeeded => "succeeded",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::TimedOut => "timed_out",
            OutcomeStatus::DryRun => "dry_run",
        }
    }

    /// The step status an outcome gives its step.
    pub fn step(self) -> StepStatus {
        match self {
            OutcomeStatus::Succeeded => StepStatus::Succeeded,
            OutcomeStatus::Failed => StepStatus::Failed,
            OutcomeStatus::TimedOut => StepStatus::TimedOut,
            OutcomeStatus::DryRun => StepStatus::DryRun,
        }
    }
}

impl std::fmt::Display for OutcomeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a step stands or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Its intent is journaled and its outcome is not.
    Running,
    /// A `wait` or an `approval` in progress.
    Waiting,
    Succeeded,
    Failed,
    TimedOut,
    /// An approval that was rejected.
    Rejected,
    Skipped,
    /// Rendered and recorded in a dry run; nothing executed.
    DryRun,
    Cancelled,
}

impl StepStatus {
    pub const ALL: [StepStatus; 9] = [
        StepStatus::Running,
        StepStatus::Waiting,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::TimedOut,
        StepStatus::Rejected,
        StepStatus::Skipped,
        StepStatus::DryRun,
        StepStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed_out",
            StepStatus::Rejected => "rejected",
            StepStatus::Skipped => "skipped",
            StepStatus::DryRun => "dry_run",
            StepStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the step went wrong (and its run's `on_failure` applies).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            StepStatus::Failed | StepStatus::TimedOut | StepStatus::Rejected
        )
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Comparisons and parsing by the stored name, for the statuses: `status == "failed"` reads as the
/// journal does, and command-line filters and test tables can name them.
macro_rules! named {
    ($type:ty, $all:expr) => {
        impl PartialEq<str> for $type {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $type {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                $all.into_iter()
                    .find(|status| status.as_str() == text)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $all.iter().map(|status| status.as_str()).collect();
                        format!("unknown status `{text}`; use one of {}", names.join(", "))
                    })
            }
        }
    };
}

named!(RunStatus, RunStatus::ALL);
named!(OutcomeStatus, OutcomeStatus::ALL);
named!(StepStatus, StepStatus::ALL);

/// An event with its JSON encoding, made by whoever builds the write: serializing on the request's
/// own task keeps that work off the single writer, which is the pipeline's one serial stage.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedEvent {
    event: Event,
    json: String,
}

impl EncodedEvent {
    pub fn new(event: Event) -> Self {
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "null".into());
        Self { event, json }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn into_event(self) -> Event {
        self.event
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> Self {
        Self::new(event)
    }
}

/// One write to the journal. A slice of them passed to a store's `commit` commits atomically.
#[derive(Clone, Debug)]
pub enum Write {
    /// An event as received; the writer assigns its sequence number.
    Event(EncodedEvent),
    /// What became of an event: what correlation made of it and what the rules decided, its
    /// triggers' (incident transitions') included. One per event the decide stage saw (commands
    /// apart), so every event has a visible verdict; on its incident's timeline when it has one.
    Decisions {
        event_id: String,
        at: DateTime<Utc>,
        correlation: Option<Correlation>,
        decisions: Vec<Decision>,
    },
    /// A run's full plan, recorded before any step executes.
    RunStarted { run: PlannedRun, at: DateTime<Utc> },
    /// What a run's transition records besides its input: a step's intent (committed before its
    /// effect starts), a skipped step, a step that ended, a rollback beginning. A run's end is a
    /// [`Write::RunFinished`], never a record here.
    RunRecord {
        run_id: String,
        record: Record,
        at: DateTime<Utc>,
    },
    /// An input to a run's state machine, journaled so a restart can replay it. An action's outcome
    /// is stored as `step_finished` with the outputs the machine derived from it; `output` must hold
    /// no secret.
    RunInput {
        run_id: String,
        input: Input,
        outputs: Option<Value>,
        at: DateTime<Utc>,
    },
    RunFinished {
        run_id: String,
        end: RunEnd,
        at: DateTime<Utc>,
    },
    /// Advances a named consumer's position in the event stream.
    Cursor { name: String, seq: i64 },
    /// Advances a consumer's position to the last event of this same commit (or leaves it, if the
    /// commit has no events): for a consumer that commits its output together with its input.
    CursorAtLastEvent { name: String },
    /// Replaces a consumer's state snapshot, taken at event sequence number `seq` (-1: the last
    /// event of this commit).
    Snapshot {
        name: String,
        seq: i64,
        body: Vec<u8>,
    },
    /// An incident's row as it is now, replacing the stored one (the correlator numbers incidents,
    /// so the id is the key).
    Incident(Incident),
    /// A member alert of an incident, keyed by incident and fingerprint. A later write replaces it
    /// but keeps the first write's `first_event_id`, `first_seen` and `starts_at` (unless that had
    /// no `starts_at`), so the member remembers how it joined.
    IncidentMember(Member),
    /// A line of an incident's timeline, appended to the journal with the incident's number.
    Timeline(TimelineEntry),
    /// A silence as it is now (created, or expired early), replacing the stored one with its id.
    Silence(Silence),
    /// Links a run to the incident it acts on. Written after the run's `RunStarted`, in the same
    /// commit or a later one.
    RunIncident {
        run_id: String,
        incident: IncidentId,
    },
    /// Deletes rows retention decided may go; a chunk small enough for one commit.
    Prune(Prune),
}

/// Rows retention deletes, in the writer's transaction like any other write. Whatever the plan
/// said, what must stay stays: the newest event and journal row, the triggers of runs in
/// progress, runs still running, the newest incident.
#[derive(Clone, Debug, PartialEq)]
pub enum Prune {
    /// Events with sequence numbers in `[from, below)`.
    Events { from: i64, below: i64 },
    /// Event-level journal rows (decisions) with sequence numbers in `[from, below)`.
    Decisions { from: i64, below: i64 },
    /// The journal rows of these finished runs, and with `summaries` their rows in `runs` too.
    Runs { ids: Vec<String>, summaries: bool },
    /// The timelines of these resolved incidents, and with `summaries` their rows and members.
    Incidents {
        ids: Vec<IncidentId>,
        summaries: bool,
    },
}

/// A journal row as a store writes it: the keys beside the kind and the JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub at: DateTime<Utc>,
    pub kind: &'static str,
    pub event_id: Option<String>,
    pub run_id: Option<String>,
    pub incident_id: Option<IncidentId>,
    pub body: String,
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl Write {
    /// The journal row this write appends, if it appends one (the others are events and
    /// projections). The only place an entry's stored form is made.
    pub fn row(&self) -> Option<Row> {
        let row = |at: DateTime<Utc>, kind: &'static str, body: String| Row {
            at,
            kind,
            event_id: None,
            run_id: None,
            incident_id: None,
            body,
        };
        Some(match self {
            Write::Decisions {
                event_id,
                at,
                correlation,
                decisions,
            } => {
                #[derive(Serialize)]
                struct Body<'a> {
                    #[serde(skip_serializing_if = "Option::is_none")]
                    correlation: Option<&'a Correlation>,
                    decisions: Vec<crate::decide::DecisionRecord<'a>>,
                }
                let body = Body {
                    correlation: correlation.as_ref(),
                    decisions: decisions.iter().map(Decision::record).collect(),
                };
                Row {
                    event_id: Some(event_id.clone()),
                    // On the timeline of the incident the event was placed in.
                    incident_id: correlation.as_ref().and_then(Correlation::incident),
                    ..row(*at, "decision", to_json(&body))
                }
            }
            Write::RunStarted { run, at } => Row {
                event_id: Some(run.event_id.clone()),
                run_id: Some(run.id.clone()),
                ..row(*at, "run_started", to_json(run))
            },
            Write::RunRecord { run_id, record, at } => Row {
                run_id: Some(run_id.clone()),
                ..row(*at, Entry::record_kind(record), to_json(record))
            },
            Write::RunInput {
                run_id,
                input,
                outputs,
                at,
            } => {
                let (kind, body) = Entry::input_body(input, outputs.as_ref());
                Row {
                    run_id: Some(run_id.clone()),
                    ..row(*at, kind, body.to_string())
                }
            }
            Write::RunFinished { run_id, end, at } => Row {
                run_id: Some(run_id.clone()),
                ..row(*at, "run_finished", to_json(end))
            },
            Write::Timeline(entry) => {
                // Keys in order (`detail` before `summary`), as the JSON object this replaced
                // wrote them, so stored bodies stay byte for byte the same.
                #[derive(Serialize)]
                struct Body<'a> {
                    #[serde(skip_serializing_if = "Value::is_null")]
                    detail: &'a Value,
                    summary: &'a str,
                }
                let body = Body {
                    detail: &entry.detail,
                    summary: &entry.summary,
                };
                Row {
                    event_id: entry.event_id.clone(),
                    incident_id: Some(entry.incident),
                    ..row(entry.at, entry.kind.as_str(), to_json(&body))
                }
            }
            Write::Event(_)
            | Write::Cursor { .. }
            | Write::CursorAtLastEvent { .. }
            | Write::Snapshot { .. }
            | Write::Incident(_)
            | Write::IncidentMember(_)
            | Write::Silence(_)
            | Write::RunIncident { .. }
            | Write::Prune(_) => return None,
        })
    }
}

/// One rule's decision as the journal reads it back: a planned run is named by its id (its plan is
/// the run's own `run_started` entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    pub rule: String,
    #[serde(default)]
    pub target: String,
    #[serde(flatten)]
    pub verdict: VerdictEntry,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VerdictEntry {
    Run {
        run_id: String,
    },
    DryRun {
        run_id: String,
    },
    Skipped {
        skip: Skip,
        message: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
    IgnoredStatus {
        status: crate::event::Status,
    },
    Error {
        message: String,
    },
}

/// What a journal row records, as every reader sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// What became of an event: its correlation (absent in rows older versions wrote) and the
    /// rules' decisions.
    Decision {
        correlation: Option<Correlation>,
        decisions: Vec<DecisionEntry>,
    },
    /// A run's plan, before any step executes.
    RunStarted(Box<PlannedRun>),
    /// A step's intent, a skipped step, a step that ended without an outcome of its own, a rollback
    /// beginning. Never [`Record::RunEnded`]: a run's end is [`Entry::RunFinished`].
    Step(Record),
    /// An action's or check's outcome ([`Input::Outcome`]), with the outputs the machine derived.
    StepFinished {
        input: Input,
        outputs: Value,
    },
    /// Any other input to a run: a timer, an approval, a cancel, a recovery.
    RunInput(Input),
    RunFinished(RunEnd),
    /// A line of an incident's timeline.
    Timeline {
        kind: TimelineKind,
        summary: String,
        detail: Value,
    },
}

/// What became of an event, as people read it: one per thing that happened to it. The API's
/// event objects carry a list of these as `verdicts`; `kind` and `detail` are always there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventVerdict {
    pub kind: VerdictKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A sentence for people.
    pub detail: String,
    /// Until when a guard holds the rule back, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The run started (or the dry run recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentId>,
}

/// The kinds of [`EventVerdict`], as the API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// A rule started a run.
    Acted,
    /// A rule in dry run recorded what it would do.
    DryRun,
    /// A guard held a rule back (for a dry run, would have).
    Skipped,
    /// A rule matched but does not act on the event's status.
    Ignored,
    /// A rule's condition or template failed on the event.
    Error,
    /// No rule matches the event.
    NoMatch,
    /// The same alert again, already decided: not decided again.
    Repeat,
    Silenced,
    Inhibited,
    /// Its incident is flapping: no page (the rules still decide a firing alert).
    Flapping,
}

impl EventVerdict {
    fn new(kind: VerdictKind, detail: String) -> Self {
        Self {
            kind,
            rule: None,
            detail,
            until: None,
            run: None,
            incident: None,
        }
    }
}

/// The verdicts of an event, from its journal rows (the decision rows; others are ignored), in
/// order.
pub fn verdicts(entries: &[JournalEntry]) -> Vec<EventVerdict> {
    entries
        .iter()
        .flat_map(|entry| entry.entry.verdicts())
        .collect()
}

/// Why a stored row could not be read as an [`Entry`].
#[derive(Debug, thiserror::Error)]
#[error("journal entry of kind `{kind}`: {message}")]
pub struct Error {
    pub kind: String,
    pub message: String,
}

impl Entry {
    /// The `kind` a run record is stored under.
    fn record_kind(record: &Record) -> &'static str {
        match record {
            Record::StepStarted { .. } => "step_started",
            Record::StepSkipped { .. } => "step_skipped",
            Record::StepEnded { .. } => "step_ended",
            Record::RollbackStarted { .. } => "rollback_started",
            Record::RunEnded(_) => "run_finished",
        }
    }

    /// How an input is stored: an outcome as `step_finished` with its outputs beside it, others as
    /// `run_input`.
    fn input_body(input: &Input, outputs: Option<&Value>) -> (&'static str, Value) {
        let mut body = serde_json::to_value(input).unwrap_or_default();
        match input {
            Input::Outcome { .. } => {
                if let (Some(outputs), Some(map)) = (outputs, body.as_object_mut()) {
                    map.insert("outputs".into(), outputs.clone());
                }
                ("step_finished", body)
            }
            _ => ("run_input", body),
        }
    }

    /// The stored kind of this entry.
    pub fn kind(&self) -> &str {
        match self {
            Entry::Decision { .. } => "decision",
            Entry::RunStarted(_) => "run_started",
            Entry::Step(record) => Self::record_kind(record),
            Entry::StepFinished { .. } => "step_finished",
            Entry::RunInput(_) => "run_input",
            Entry::RunFinished(_) => "run_finished",
            Entry::Timeline { kind, .. } => kind.as_str(),
        }
    }

    /// The body as stored.
    pub fn body(&self) -> Value {
        match self {
            Entry::Decision {
                correlation,
                decisions,
            } => match correlation {
                Some(correlation) => {
                    serde_json::json!({ "correlation": correlation, "decisions": decisions })
                }
                None => serde_json::json!({ "decisions": decisions }),
            },
            Entry::RunStarted(run) => serde_json::to_value(run).unwrap_or_default(),
            Entry::Step(record) => serde_json::to_value(record).unwrap_or_default(),
            Entry::StepFinished { input, outputs } => {
                Self::input_body(input, Some(outputs).filter(|o| !o.is_null())).1
            }
            Entry::RunInput(input) => Self::input_body(input, None).1,
            Entry::RunFinished(end) => serde_json::to_value(end).unwrap_or_default(),
            Entry::Timeline {
                summary, detail, ..
            } => {
                let mut body = serde_json::Map::new();
                body.insert("summary".into(), summary.clone().into());
                if !detail.is_null() {
                    body.insert("detail".into(), detail.clone());
                }
                Value::Object(body)
            }
        }
    }

    /// What became of the event a decision row is about, in verdicts; none for other entries.
    /// Rows older versions wrote hold no correlation: their verdicts are the rules' alone.
    pub fn verdicts(&self) -> Vec<EventVerdict> {
        let Entry::Decision {
            correlation,
            decisions,
        } = self
        else {
            return Vec::new();
        };
        let mut verdicts = Vec::new();
        let mut decided = true;
        match correlation {
            Some(Correlation::Repeat { incident }) => {
                let of = incident
                    .map(|incident| format!(" of incident {incident}"))
                    .unwrap_or_default();
                verdicts.push(EventVerdict {
                    incident: *incident,
                    ..EventVerdict::new(
                        VerdictKind::Repeat,
                        format!("repeat: the same alert{of} in the same state, already decided (under the rules of that time); not decided again until it resolves or fires anew"),
                    )
                });
                decided = false;
            }
            Some(Correlation::Silenced { silence }) => {
                verdicts.push(EventVerdict::new(
                    VerdictKind::Silenced,
                    format!("silenced by silence `{silence}`: recorded, no incident, not decided"),
                ));
                decided = false;
            }
            Some(Correlation::Inhibited { rule }) => {
                verdicts.push(EventVerdict::new(
                    VerdictKind::Inhibited,
                    format!("inhibited by `incidents.inhibit_rules[{rule}]` while its source alert fires: recorded, no incident, not decided"),
                ));
                decided = false;
            }
            Some(Correlation::Flapping { incident }) => verdicts.push(EventVerdict {
                incident: Some(*incident),
                ..EventVerdict::new(
                    VerdictKind::Flapping,
                    format!("incident {incident} is flapping: no page, and the rules still decide a firing alert"),
                )
            }),
            Some(Correlation::Rejected { message }) => {
                verdicts.push(EventVerdict::new(
                    VerdictKind::Error,
                    format!("rejected: {message}"),
                ));
                decided = false;
            }
            Some(Correlation::Command { .. }) => decided = false,
            _ => {}
        }
        for decision in decisions {
            let rule = &decision.rule;
            let on = match decision.target.as_str() {
                "" => String::new(),
                target => format!(" on `{target}`"),
            };
            let verdict = match &decision.verdict {
                VerdictEntry::Run { run_id } => EventVerdict {
                    run: Some(run_id.clone()),
                    ..EventVerdict::new(
                        VerdictKind::Acted,
                        format!("rule `{rule}` started run {run_id}{on}"),
                    )
                },
                VerdictEntry::DryRun { run_id } => EventVerdict {
                    run: Some(run_id.clone()),
                    ..EventVerdict::new(
                        VerdictKind::DryRun,
                        format!("rule `{rule}` would act{on}: dry run {run_id} records what it would do"),
                    )
                },
                VerdictEntry::Skipped { skip, message, .. } => EventVerdict {
                    until: match skip {
                        Skip::Cooldown { until, .. } | Skip::RateLimited { until, .. } => {
                            Some(*until)
                        }
                        _ => None,
                    },
                    ..EventVerdict::new(
                        VerdictKind::Skipped,
                        format!("rule `{rule}`{on}: {message}"),
                    )
                },
                VerdictEntry::IgnoredStatus { status } => EventVerdict::new(
                    VerdictKind::Ignored,
                    format!("rule `{rule}` matches but does not act on `{}` alerts (its `on:`)", status.as_str()),
                ),
                VerdictEntry::Error { message } => EventVerdict::new(
                    VerdictKind::Error,
                    format!("rule `{rule}` could not decide: {message}"),
                ),
            };
            verdicts.push(EventVerdict {
                rule: Some(rule.clone()).filter(|rule| !rule.is_empty()),
                ..verdict
            });
        }
        if decisions.is_empty() && decided {
            verdicts.push(EventVerdict {
                incident: correlation.as_ref().and_then(Correlation::incident),
                ..EventVerdict::new(VerdictKind::NoMatch, "no rule matches this event".into())
            });
        }
        verdicts
    }

    /// Reads a stored row back. Kinds that only older versions wrote are read as what they meant.
    pub fn from_row(kind: &str, body: Value) -> Result<Entry, Error> {
        let failed = |message: String| Error {
            kind: kind.to_string(),
            message,
        };
        Ok(match kind {
            "decision" => {
                #[derive(Deserialize)]
                struct Body {
                    #[serde(default)]
                    correlation: Option<Correlation>,
                    #[serde(default)]
                    decisions: Vec<DecisionEntry>,
                }
                let body: Body =
                    serde_json::from_value(body).map_err(|error| failed(error.to_string()))?;
                Entry::Decision {
                    correlation: body.correlation,
                    decisions: body.decisions,
                }
            }
            "run_started" => Entry::RunStarted(Box::new(
                serde_json::from_value(body).map_err(|error| failed(error.to_string()))?,
            )),
            "step_started" | "step_skipped" | "step_ended" | "rollback_started" => {
                let mut body = body;
                // Records carry their kind in the body; rows written without it still read.
                if let Some(map) = body.as_object_mut() {
                    map.entry("kind").or_insert_with(|| kind.into());
                }
                Entry::Step(
                    serde_json::from_value(body).map_err(|error| failed(error.to_string()))?,
                )
            }
            "step_finished" => {
                let mut body = body;
                let outputs = body
                    .as_object_mut()
                    .and_then(|map| map.remove("outputs"))
                    .unwrap_or(Value::Null);
                Entry::StepFinished {
                    input: serde_json::from_value(body)
                        .map_err(|error| failed(error.to_string()))?,
                    outputs,
                }
            }
            "run_input" => Entry::RunInput(
                serde_json::from_value(body).map_err(|error| failed(error.to_string()))?,
            ),
            // `run_ended` was a record kind once; it meant what `run_finished` means.
            "run_finished" | "run_ended" => {
                let mut body = body;
                if let Some(map) = body.as_object_mut() {
                    map.remove("kind");
                }
                Entry::RunFinished(
                    serde_json::from_value(body).map_err(|error| failed(error.to_string()))?,
                )
            }
            other => {
                let kind = TimelineKind::parse(other)
                    .ok_or_else(|| failed("not a kind this version knows".into()))?;
                let summary = body
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let detail = body.get("detail").cloned().unwrap_or(Value::Null);
                Entry::Timeline {
                    kind,
                    summary,
                    detail,
                }
            }
        })
    }
}

/// A journal row read back, typed. On the wire (the API, the run log stream) it is the row's
/// columns with `kind` and `body` as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event_id: Option<String>,
    pub run_id: Option<String>,
    /// The incident a timeline entry belongs to; none for every other kind of entry.
    pub incident_id: Option<IncidentId>,
    pub entry: Entry,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    seq: i64,
    at: DateTime<Utc>,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident_id: Option<IncidentId>,
    body: Value,
}

impl Serialize for JournalEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireEntry {
            seq: self.seq,
            at: self.at,
            kind: self.entry.kind().to_string(),
            event_id: self.event_id.clone(),
            run_id: self.run_id.clone(),
            incident_id: self.incident_id,
            body: self.entry.body(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JournalEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireEntry::deserialize(deserializer)?;
        let entry = Entry::from_row(&wire.kind, wire.body).map_err(serde::de::Error::custom)?;
        Ok(JournalEntry {
            seq: wire.seq,
            at: wire.at,
            event_id: wire.event_id,
            run_id: wire.run_id,
            incident_id: wire.incident_id,
            entry,
        })
    }
}

/// A step attempt's record, folded from its journal entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's path: `name`, `parallel.branch.name`, `each[2].name`, `call.name`, `name.rollback`.
    pub step: String,
    pub name: String,
    pub attempt: u32,
    /// The action or step kind.
    pub action: String,
    /// `running` until an outcome is recorded; `waiting` for waits and approvals.
    pub status: StepStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub inputs: Option<Value>,
    /// What the action returned (for `exec`: exit code, stdout, stderr).
    pub output: Option<Value>,
    /// The step's declared outputs, as later steps see them.
    pub outputs: Option<Value>,
    pub error: Option<String>,
    /// Started again after a restart.
    #[serde(default)]
    pub resumed: bool,
    /// What the step does, in words, from its rendered inputs (`run `systemctl restart api``); in
    /// a dry run, what would have run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// For a `wait` until a check: how many times the check has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u32>,
    /// For a `wait` until a check: what its latest check observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<Poll>,
}

/// One check of a `wait` step that polls until it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    pub at: DateTime<Utc>,
    /// `succeeded` when the check held.
    pub status: OutcomeStatus,
    /// What the check read (for PromQL: the query, its series and the first value; for HTTP: the
    /// status).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// Why it did not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Folds a run's journal entries into its steps, one record per step attempt, in journal order.
pub fn steps(entries: &[JournalEntry]) -> Vec<StepRecord> {
    let mut steps: Vec<StepRecord> = Vec::new();
    let find = |steps: &[StepRecord], step: &str, attempt: Option<u32>| -> Option<usize> {
        steps.iter().rposition(|record| {
            record.step == step && attempt.is_none_or(|attempt| record.attempt == attempt)
        })
    };
    for entry in entries {
        let at = entry.at;
        // A step that ended with no start of its own (a template or condition error) starts here.
        let ended =
            |steps: &mut Vec<StepRecord>, step: &str, name: &str, attempt: Option<u32>| -> usize {
                match find(steps, step, attempt) {
                    Some(index) => index,
                    None => {
                        steps.push(StepRecord {
                            step: step.to_string(),
                            name: name.to_string(),
                            attempt: 1,
                            action: String::new(),
                            status: StepStatus::Running,
                            started_at: at,
                            finished_at: None,
                            inputs: None,
                            output: None,
                            outputs: None,
                            error: None,
                            resumed: false,
                            summary: None,
                            polls: None,
                            last_poll: None,
                        });
                        steps.len() - 1
                    }
                }
            };
        match &entry.entry {
            Entry::Step(Record::StepStarted {
                step,
                name,
                attempt,
                action,
                inputs,
                resumed,
            }) => {
                let waits = matches!(action.as_str(), "wait" | "approval");
                steps.push(StepRecord {
                    step: step.clone(),
                    name: name.clone(),
                    attempt: *attempt,
                    status: if waits {
                        StepStatus::Waiting
                    } else {
                        StepStatus::Running
                    },
                    action: action.clone(),
                    started_at: at,
                    finished_at: None,
                    inputs: Some(inputs.clone()),
                    output: None,
                    outputs: None,
                    error: None,
                    resumed: *resumed,
                    summary: crate::runbook::words::step_summary(action, inputs),
                    polls: None,
                    last_poll: None,
                })
            }
            Entry::Step(Record::StepSkipped { step, name, reason }) => steps.push(StepRecord {
                step: step.clone(),
                name: name.clone(),
                attempt: 0,
                action: String::new(),
                status: StepStatus::Skipped,
                started_at: at,
                finished_at: Some(at),
                inputs: None,
                output: None,
                outputs: None,
                error: Some(reason.clone()),
                resumed: false,
                summary: None,
                polls: None,
                last_poll: None,
            }),
            Entry::Step(Record::StepEnded {
                step,
                name,
                status,
                outputs,
                error,
            }) => {
                let index = ended(&mut steps, step, name, None);
                let record = &mut steps[index];
                record.status = *status;
                record.finished_at = Some(at);
                if !outputs.is_null() {
                    record.outputs = Some(outputs.clone());
                }
                record.error = error.clone();
            }
            Entry::StepFinished {
                input:
                    Input::Outcome {
                        step,
                        attempt,
                        status,
                        output,
                        error,
                    },
                outputs,
            } => {
                // A `wait` until a check numbers its polls as attempts of its one start, and only
                // its own end (held, timed out, cancelled) ends it: a check that does not hold
                // leaves it waiting.
                let polled = find(&steps, step, None).filter(|index| {
                    steps[*index].action == "wait" && steps[*index].status == StepStatus::Waiting
                });
                if let Some(index) = polled {
                    let record = &mut steps[index];
                    record.polls = Some(*attempt);
                    record.last_poll = Some(Poll {
                        at,
                        status: *status,
                        output: output.clone(),
                        error: error.clone(),
                    });
                    continue;
                }
                let index = ended(&mut steps, step, "", Some(*attempt));
                let record = &mut steps[index];
                record.status = status.step();
                record.finished_at = Some(at);
                if !output.is_null() {
                    record.output = Some(output.clone());
                }
                if !outputs.is_null() {
                    record.outputs = Some(outputs.clone());
                }
                record.error = error.clone();
            }
            _ => {}
        }
    }
    steps
}

impl JournalEntry {
    /// The stored kind (`step_started`, `opened`, ...).
    pub fn kind(&self) -> &str {
        self.entry.kind()
    }

    /// The body as stored.
    pub fn body(&self) -> Value {
        self.entry.body()
    }

    /// The entry in one line of words, as a timeline shows it: an incident's own entries carry
    /// their summary; decisions and run entries are put in words from what they hold.
    pub fn words(&self) -> String {
        let run = self.run_id.as_deref().unwrap_or("?");
        let attempt = |attempt: u32| (attempt > 1).then_some(attempt);
        match &self.entry {
            Entry::Decision {
                correlation: None,
                decisions,
            } => {
                if decisions.is_empty() {
                    "no rule acted".to_string()
                } else {
                    decisions
                        .iter()
                        .map(DecisionEntry::words)
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            }
            Entry::Decision { .. } => self
                .entry
                .verdicts()
                .iter()
                .map(|verdict| verdict.detail.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            Entry::RunStarted(plan) => {
                let by = match (plan.rule.as_str(), plan.started_by.as_deref()) {
                    ("", Some(person)) => format!("started by `{person}`"),
                    ("", None) => "started by hand".to_string(),
                    (rule, _) => format!("started by rule `{rule}`"),
                };
                let dry = if plan.dry_run { "dry run" } else { "run" };
                // A rule's inline steps are compiled as the runbook `rule:<name>`.
                let what = match plan.runbook.strip_prefix("rule:") {
                    Some(rule) if rule == plan.rule => "of the rule's own steps".to_string(),
                    _ => format!("of runbook `{}`", plan.runbook),
                };
                format!("{dry} {} {what} {by} on target `{}`", plan.id, plan.target)
            }
            Entry::Step(Record::StepStarted {
                step,
                attempt: number,
                action,
                inputs,
                resumed,
                ..
            }) => {
                let mut words = match action.as_str() {
                    "approval" => {
                        let message = inputs
                            .get("message")
                            .and_then(Value::as_str)
                            .map(|message| format!(": {message}"))
                            .unwrap_or_default();
                        format!("step `{step}` waits for an approval{message}")
                    }
                    "wait" => format!("step `{step}` waits"),
                    _ => format!("step `{step}` started ({action})"),
                };
                if let Some(attempt) = attempt(*number) {
                    words.push_str(&format!(", attempt {attempt}"));
                }
                if *resumed {
                    words.push_str(", resumed after a restart");
                }
                words
            }
            Entry::Step(Record::StepEnded {
                step,
                status,
                error,
                ..
            }) => {
                let mut words = format!("step `{step}` {status}");
                if let Some(error) = error {
                    words.push_str(&format!(": {error}"));
                }
                words
            }
            Entry::StepFinished {
                input:
                    Input::Outcome {
                        step,
                        attempt: number,
                        status,
                        error,
                        ..
                    },
                ..
            } => {
                let mut words = format!("step `{step}` {status}");
                if let Some(attempt) = attempt(*number) {
                    words.push_str(&format!(" on attempt {attempt}"));
                }
                if let Some(error) = error {
                    words.push_str(&format!(": {error}"));
                }
                words
            }
            Entry::Step(Record::StepSkipped { step, reason, .. }) => {
                format!("step `{step}` skipped: {reason}")
            }
            Entry::Step(Record::RollbackStarted { steps }) => {
                format!("rollback of run {run} started: undoing {}", quoted(steps))
            }
            Entry::StepFinished { input, .. } | Entry::RunInput(input) => match input {
                Input::Cancel { by } => format!("run {run}: cancel asked by `{by}`"),
                Input::Recover => format!("run {run} resumed after a daemon restart"),
                Input::Approval {
                    step,
                    by,
                    approved,
                    comment,
                } => {
                    let verdict = if *approved { "approved" } else { "rejected" };
                    let comment = comment
                        .as_deref()
                        .map(|comment| format!(": {comment}"))
                        .unwrap_or_default();
                    format!("step `{step}` {verdict} by `{by}`{comment}")
                }
                Input::Timer { step, timer, .. } => match timer {
                    crate::runbook::machine::TimerKind::Retry => format!("step `{step}` retries"),
                    crate::runbook::machine::TimerKind::Sleep => {
                        format!("step `{step}`: the wait is over")
                    }
                    crate::runbook::machine::TimerKind::Poll => {
                        format!("step `{step}` checks again")
                    }
                    crate::runbook::machine::TimerKind::Deadline => {
                        format!("step `{step}` ran out of time")
                    }
                },
                Input::Start => format!("run {run} started"),
                Input::Outcome { step, status, .. } => format!("step `{step}` {status}"),
            },
            Entry::RunFinished(end) | Entry::Step(Record::RunEnded(end)) => {
                let mut words = format!("run {run} {}", end.status);
                if let Some(error) = &end.error {
                    words.push_str(&format!(": {error}"));
                }
                if !end.undone.is_empty() {
                    words.push_str(&format!("; undone: {}", quoted(&end.undone)));
                }
                words
            }
            Entry::Timeline { kind, summary, .. } => {
                if summary.is_empty() {
                    kind.as_str().replace('_', " ")
                } else {
                    summary.clone()
                }
            }
        }
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DecisionEntry {
    /// One rule's decision in words.
    pub fn words(&self) -> String {
        let rule = &self.rule;
        let on = match self.target.as_str() {
            "" => String::new(),
            target => format!(" on `{target}`"),
        };
        match &self.verdict {
            VerdictEntry::Run { run_id } => format!("rule `{rule}` started run {run_id}{on}"),
            VerdictEntry::DryRun { run_id } => {
                format!("rule `{rule}` planned dry run {run_id}{on}")
            }
            VerdictEntry::Skipped { message, .. } => {
                format!("rule `{rule}` held back{on}: {message}")
            }
            VerdictEntry::IgnoredStatus { status } => {
                format!("rule `{rule}` does not act on `{}` alerts", status.as_str())
            }
            VerdictEntry::Error { message } => format!("rule `{rule}` failed: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden rows: every kind of entry as the journal stores it, with its words. A change to
    /// how an entry is stored fails here; journals already written must keep reading.
    const GOLDEN: &str = include_str!("../tests/data/journal/entries.jsonl");

    #[derive(Deserialize)]
    struct Golden {
        kind: String,
        #[serde(default)]
        event_id: Option<String>,
        #[serde(default)]
        run_id: Option<String>,
        #[serde(default)]
        incident_id: Option<IncidentId>,
        body: Value,
        words: String,
    }

    fn golden() -> Vec<Golden> {
        GOLDEN
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("a golden row"))
            .collect()
    }

    #[test]
    fn every_entry_reads_and_writes_back_as_stored() {
        let mut kinds = std::collections::BTreeSet::new();
        for row in golden() {
            let entry = Entry::from_row(&row.kind, row.body.clone())
                .unwrap_or_else(|error| panic!("{error}: {}", row.body));
            assert_eq!(entry.kind(), row.kind);
            assert_eq!(entry.body(), row.body, "`{}` is stored as it was", row.kind);
            let journal = JournalEntry {
                seq: 1,
                at: DateTime::UNIX_EPOCH,
                event_id: row.event_id.clone(),
                run_id: row.run_id.clone(),
                incident_id: row.incident_id,
                entry,
            };
            assert_eq!(journal.words(), row.words);
            // The API's form reads back to the same entry.
            let wire = serde_json::to_value(&journal).expect("serializes");
            assert_eq!(wire["kind"], row.kind.as_str());
            assert_eq!(wire["body"], row.body);
            let back: JournalEntry = serde_json::from_value(wire).expect("deserializes");
            assert_eq!(back, journal);
            kinds.insert(row.kind);
        }
        let mut expected: std::collections::BTreeSet<String> = [
            "decision",
            "run_started",
            "step_started",
            "step_skipped",
            "step_ended",
            "rollback_started",
            "step_finished",
            "run_input",
            "run_finished",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        expected.extend(TimelineKind::ALL.map(|kind| kind.as_str().to_string()));
        assert_eq!(kinds, expected, "every kind has a golden row");
    }

    #[test]
    fn the_writes_store_what_the_golden_rows_hold() {
        let plan: PlannedRun = serde_json::from_value(
            golden()
                .into_iter()
                .find(|row| row.kind == "run_started")
                .expect("a run_started row")
                .body,
        )
        .expect("a plan");
        let write = Write::RunStarted {
            run: plan.clone(),
            at: DateTime::UNIX_EPOCH,
        };
        let row = write.row().expect("a journal row");
        assert_eq!(row.kind, "run_started");
        assert_eq!(
            serde_json::from_str::<Value>(&row.body).expect("json"),
            serde_json::to_value(&plan).expect("json")
        );
        assert_eq!(
            (row.event_id.as_deref(), row.run_id.as_deref()),
            (Some("e1"), Some("r1"))
        );
        let outcome = Write::RunInput {
            run_id: "r1".into(),
            input: Input::Outcome {
                step: "restart".into(),
                attempt: 1,
                status: OutcomeStatus::Succeeded,
                output: serde_json::json!({"exit_code": 0}),
                error: None,
            },
            outputs: Some(serde_json::json!({"code": "0"})),
            at: DateTime::UNIX_EPOCH,
        };
        let row = outcome.row().expect("a journal row");
        let stored = golden()
            .into_iter()
            .find(|row| row.kind == "step_finished")
            .expect("a step_finished row");
        assert_eq!(row.kind, "step_finished");
        assert_eq!(
            serde_json::from_str::<Value>(&row.body).expect("json"),
            stored.body
        );
        assert!(Write::Cursor {
            name: "decide".into(),
            seq: 1
        }
        .row()
        .is_none());
        // A timeline entry's body, byte for byte as stored before it was written from borrowed
        // fields (keys sorted, `detail` left out when null).
        let entry = |detail: Value| {
            Write::Timeline(TimelineEntry {
                incident: 7,
                kind: TimelineKind::Opened,
                at: DateTime::UNIX_EPOCH,
                event_id: Some("e1".into()),
                summary: "opened by `A` \"quoted\"".into(),
                detail,
            })
            .row()
            .expect("a journal row")
        };
        let row = entry(serde_json::json!({"group_key": "{service=\"api\"}", "a": 1}));
        assert_eq!(
            row.body,
            r#"{"detail":{"a":1,"group_key":"{service=\"api\"}"},"summary":"opened by `A` \"quoted\""}"#
        );
        assert_eq!(
            (row.kind, row.event_id.as_deref(), row.incident_id),
            ("opened", Some("e1"), Some(7))
        );
        assert_eq!(
            entry(Value::Null).body,
            r#"{"summary":"opened by `A` \"quoted\""}"#
        );
    }

    #[test]
    fn rows_older_versions_wrote_still_read() {
        // `run_ended` was a record kind, with the record's own `kind` in its body.
        let entry = Entry::from_row(
            "run_ended",
            serde_json::json!({"kind": "run_ended", "status": "failed", "error": "boom"}),
        )
        .expect("reads");
        assert!(matches!(
            entry,
            Entry::RunFinished(RunEnd {
                status: RunStatus::Failed,
                ..
            })
        ));
        // A step record without its `kind` in the body.
        let entry = Entry::from_row(
            "step_skipped",
            serde_json::json!({"step": "a", "name": "a", "reason": "no"}),
        )
        .expect("reads");
        assert_eq!(entry.kind(), "step_skipped");
        let error = Entry::from_row("nonsense", serde_json::json!({})).expect_err("unknown");
        assert!(error.to_string().contains("`nonsense`"), "{error}");
    }

    #[test]
    fn a_decision_row_gives_what_became_of_its_event() {
        let until: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().expect("a time");
        let decision = |rule: &str, verdict: VerdictEntry| DecisionEntry {
            rule: rule.into(),
            target: "t".into(),
            verdict,
        };
        let kinds = |entry: &Entry| -> Vec<(VerdictKind, Option<String>)> {
            entry
                .verdicts()
                .into_iter()
                .map(|verdict| (verdict.kind, verdict.rule))
                .collect()
        };
        let entry = Entry::Decision {
            correlation: Some(Correlation::Joined { incident: 2 }),
            decisions: vec![
                decision(
                    "cool",
                    VerdictEntry::Skipped {
                        skip: Skip::Cooldown {
                            target: "t".into(),
                            until,
                        },
                        message: "skipped: cooldown".into(),
                        dry_run: false,
                    },
                ),
                decision(
                    "on-firing",
                    VerdictEntry::IgnoredStatus {
                        status: crate::event::Status::Resolved,
                    },
                ),
                decision(
                    "broken",
                    VerdictEntry::Error {
                        message: "no `instance`".into(),
                    },
                ),
            ],
        };
        let verdicts = entry.verdicts();
        assert_eq!(
            kinds(&entry),
            vec![
                (VerdictKind::Skipped, Some("cool".into())),
                (VerdictKind::Ignored, Some("on-firing".into())),
                (VerdictKind::Error, Some("broken".into())),
            ]
        );
        assert_eq!(verdicts[0].until, Some(until));
        assert!(verdicts[2].detail.contains("no `instance`"), "{verdicts:?}");
        // Muted and repeated events are not decided: no `no_match` after them.
        for (correlation, kind) in [
            (
                Correlation::Silenced {
                    silence: "s1".into(),
                },
                VerdictKind::Silenced,
            ),
            (Correlation::Inhibited { rule: 0 }, VerdictKind::Inhibited),
            (
                Correlation::Repeat { incident: Some(4) },
                VerdictKind::Repeat,
            ),
        ] {
            let entry = Entry::Decision {
                correlation: Some(correlation),
                decisions: vec![],
            };
            assert_eq!(kinds(&entry), vec![(kind, None)]);
        }
        let silenced = Entry::Decision {
            correlation: Some(Correlation::Silenced {
                silence: "s1".into(),
            }),
            decisions: vec![],
        };
        assert!(silenced.verdicts()[0].detail.contains("`s1`"));
        // An event placed in an incident that no rule matched.
        let unmatched = Entry::Decision {
            correlation: Some(Correlation::Opened { incident: 1 }),
            decisions: vec![],
        };
        let verdicts = unmatched.verdicts();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].kind, VerdictKind::NoMatch);
        assert_eq!(verdicts[0].incident, Some(1));
        // The API's form: `kind` and `detail` always, the rest where they apply.
        let wire = serde_json::to_value(&verdicts[0]).expect("json");
        assert_eq!(wire["kind"], "no_match");
        assert!(wire["detail"].is_string());
        assert!(wire.get("until").is_none() && wire.get("run").is_none());
        // A row stores the correlation and reads it back.
        let row = Write::Decisions {
            event_id: "e9".into(),
            at: DateTime::UNIX_EPOCH,
            correlation: Some(Correlation::Flapping { incident: 7 }),
            decisions: vec![],
        }
        .row()
        .expect("a journal row");
        assert_eq!(row.incident_id, Some(7), "on its incident's timeline");
        let back = Entry::from_row(row.kind, serde_json::from_str(&row.body).expect("json"))
            .expect("reads");
        assert_eq!(
            kinds(&back),
            vec![(VerdictKind::Flapping, None), (VerdictKind::NoMatch, None)]
        );
        // Other entries are no verdict.
        assert!(Entry::RunInput(Input::Start).verdicts().is_empty());
    }

    #[test]
    fn statuses_read_and_compare_by_their_stored_names() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).expect("json"),
                Value::from(status.as_str())
            );
        }
        for status in StepStatus::ALL {
            assert_eq!(status.as_str().parse::<StepStatus>(), Ok(status));
        }
        assert!(RunStatus::Failed == "failed");
        assert!("interrupted".parse::<RunStatus>().is_err());
    }
}
