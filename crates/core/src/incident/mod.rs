//! Incidents: events correlated into something a person can act on.
//!
//! [`correlate::Correlator`] is a pure fold over the event stream. Alerts are grouped by labels into
//! incidents, repeats are recognized, flapping alerts are folded, inhibited and silenced alerts are
//! muted. People's actions (acknowledge, resolve) and the engine's (a remediation mitigated it, a
//! verification failed) reach it as [`EventKind::Command`](crate::EventKind::Command) events in the
//! same stream. So replaying the journal from a snapshot rebuilds exactly the state it had, and every
//! change to an incident has a journaled cause.

pub mod correlate;
pub mod postmortem;
pub mod silence;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{LabelSet, Labels, Status};

/// Incidents are numbered in the order they open: `homeostat incidents show 42`.
pub type IncidentId = i64;

/// Where an incident is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Something fires and nobody has said they are on it.
    Open,
    /// A person is on it.
    Acknowledged,
    /// A remediation ran and succeeded; the symptom has not cleared yet.
    Mitigated,
    /// Every member alert resolved, or a person resolved it.
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Mitigated => "mitigated",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => State::Open,
            "acknowledged" => State::Acknowledged,
            "mitigated" => State::Mitigated,
            "resolved" => State::Resolved,
            _ => return None,
        })
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An incident as people see it and as it is stored: one row, replaced on every change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub state: State,
    /// The first member's `alertname` (or summary), and how many others joined.
    pub title: String,
    /// The grouping labels and their values, as matchers: `{service="checkout"}`.
    pub group_key: String,
    /// The grouping labels of this incident.
    pub labels: LabelSet,
    /// A member alert flaps: its re-firing updates the incident instead of paging again.
    pub flapping: bool,
    /// A remediation did not clear it, or a remediation loop was stopped: people were told.
    pub escalated: bool,
    pub members_firing: u32,
    pub members_total: u32,
    /// How many times it came back after resolving.
    pub reopened: u32,
    /// When the problem began: the earliest member's `starts_at` (else when it was received).
    pub started_at: DateTime<Utc>,
    /// When homeostat opened the incident: the first member's arrival.
    pub opened_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    /// The last member event or action.
    pub updated_at: DateTime<Utc>,
}

impl Incident {
    /// Seconds from the problem's start to homeostat opening the incident.
    pub fn time_to_detect(&self) -> f64 {
        seconds(self.started_at, self.opened_at)
    }

    pub fn time_to_acknowledge(&self) -> Option<f64> {
        self.acknowledged_at.map(|at| seconds(self.started_at, at))
    }

    pub fn time_to_mitigate(&self) -> Option<f64> {
        self.mitigated_at.map(|at| seconds(self.started_at, at))
    }

    pub fn time_to_resolve(&self) -> Option<f64> {
        self.resolved_at.map(|at| seconds(self.started_at, at))
    }

    pub fn is_resolved(&self) -> bool {
        self.state == State::Resolved
    }
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds().max(0) as f64) / 1000.0
}

/// One alert (one fingerprint) in an incident, as stored: replaced when it fires again or resolves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub incident: IncidentId,
    pub fingerprint: String,
    pub source: String,
    pub status: Status,
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
    /// The event that added it, and the latest one.
    pub first_event_id: String,
    pub last_event_id: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Where the alert came from, when its source says: Prometheus' `generatorURL`, which holds the
    /// PromQL expression behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// What a line of an incident's timeline says happened; stored as the journal row's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Opened,
    MemberAdded,
    MemberFiredAgain,
    MemberResolved,
    Acknowledged,
    Mitigated,
    Verified,
    Resolved,
    Reopened,
    Flapping,
    FlappingCleared,
    Escalated,
    /// Who was told of an escalation, and what.
    Notified,
    Note,
}

impl TimelineKind {
    pub const ALL: [TimelineKind; 14] = [
        TimelineKind::Opened,
        TimelineKind::MemberAdded,
        TimelineKind::MemberFiredAgain,
        TimelineKind::MemberResolved,
        TimelineKind::Acknowledged,
        TimelineKind::Mitigated,
        TimelineKind::Verified,
        TimelineKind::Resolved,
        TimelineKind::Reopened,
        TimelineKind::Flapping,
        TimelineKind::FlappingCleared,
        TimelineKind::Escalated,
        TimelineKind::Notified,
        TimelineKind::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Opened => "opened",
            TimelineKind::MemberAdded => "member_added",
            TimelineKind::MemberFiredAgain => "member_fired_again",
            TimelineKind::MemberResolved => "member_resolved",
            TimelineKind::Acknowledged => "acknowledged",
            TimelineKind::Mitigated => "mitigated",
            TimelineKind::Verified => "verified",
            TimelineKind::Resolved => "resolved",
            TimelineKind::Reopened => "reopened",
            TimelineKind::Flapping => "flapping",
            TimelineKind::FlappingCleared => "flapping_cleared",
            TimelineKind::Escalated => "escalated",
            TimelineKind::Notified => "notified",
            TimelineKind::Note => "note",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for TimelineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an incident's timeline, journaled with the incident's number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub incident: IncidentId,
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
    /// The event that caused it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What happened, in words a person reads on the timeline.
    pub summary: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// What the correlator asks to be stored, in order, in the same commit as the events that caused it.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The incident's row as it is now.
    Incident(Incident),
    Member(Member),
    Timeline(TimelineEntry),
}

/// An action on an incident, carried in the event stream as an event of kind `command`
/// (its `data`), so a replay applies it in the same order as the events around it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Acknowledge {
        incident: IncidentId,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    Resolve {
        incident: IncidentId,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A remediation run succeeded on it; with `verify_within_secs`, it must resolve within that
    /// long or it escalates.
    Mitigate {
        incident: IncidentId,
        run_id: String,
        rule: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verify_within_secs: Option<u64>,
        /// When the run finished (the command reaches the stream a little later).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finished_at: Option<DateTime<Utc>>,
    },
    /// Loop detection stopped a rule on a target: the rule stays off for that target (until
    /// `EnableRule`) and the incident escalates.
    DisableRule {
        incident: IncidentId,
        rule: String,
        target: String,
        reason: String,
    },
    /// A remediation's verification check held before its deadline: the fix is verified (the
    /// alerts may still be on their way to resolving), so the deadline no longer escalates.
    Verified {
        incident: IncidentId,
        run_id: String,
        check: String,
    },
    /// A person turned a disabled rule back on for a target.
    EnableRule {
        rule: String,
        target: String,
        by: String,
    },
    /// A remediation did not clear it in time, or a loop was stopped.
    Escalate {
        incident: IncidentId,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
    },
    /// A free-text note on the timeline.
    Note {
        incident: IncidentId,
        by: String,
        text: String,
    },
    /// Time made something due (flapping quiet for a window, momentary members aged out): the
    /// correlator re-checks the incident at this command's time. Made by `Correlator::sweep`.
    Settle { incident: IncidentId },
    /// A silence was created or changed (expired early): from this point in the stream it mutes.
    Silence { silence: silence::Silence },
}

impl Command {
    /// The incident it acts on; none for a silence.
    pub fn incident(&self) -> Option<IncidentId> {
        Some(match self {
            Command::Acknowledge { incident, .. }
            | Command::Resolve { incident, .. }
            | Command::Mitigate { incident, .. }
            | Command::Escalate { incident, .. }
            | Command::Note { incident, .. }
            | Command::DisableRule { incident, .. }
            | Command::Verified { incident, .. }
            | Command::Settle { incident } => *incident,
            Command::Silence { .. } | Command::EnableRule { .. } => return None,
        })
    }

    /// The command as an event to submit: source `homeostat`, kind `command`.
    pub fn into_event(self, id: String, by: Option<String>, now: DateTime<Utc>) -> crate::Event {
        let (fingerprint, labels): (String, Labels) = match (&self, self.incident()) {
            (Command::Silence { silence }, _) => (
                format!("silence/{}", silence.id),
                [("silence".to_string(), silence.id.clone())].into(),
            ),
            (Command::EnableRule { rule, target, .. }, _) => (
                format!("rule/{rule}/{target}"),
                [
                    ("rule".to_string(), rule.clone()),
                    ("target".to_string(), target.clone()),
                ]
                .into(),
            ),
            (_, incident) => {
                let incident = incident.unwrap_or_default();
                (
                    format!("incident/{incident}"),
                    [("incident".to_string(), incident.to_string())].into(),
                )
            }
        };
        crate::Event {
            id,
            source: "homeostat".into(),
            kind: crate::EventKind::Command,
            status: Status::Firing,
            fingerprint,
            labels,
            annotations: Labels::new(),
            starts_at: None,
            ends_at: None,
            received_at: now,
            data: serde_json::to_value(&self).ok(),
            ingested_by: by,
        }
    }

    /// The command an event of kind `command` carries.
    pub fn from_event(event: &crate::Event) -> Option<Self> {
        event
            .data
            .as_ref()
            .and_then(|data| serde::Deserialize::deserialize(data).ok())
    }
}

#[cfg(test)]
mod tests;
