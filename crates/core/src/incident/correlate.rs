//! The correlator: a deterministic fold of the event stream into incidents.
//!
//! Time is each event's `received_at`, never the wall clock, so a replay from a snapshot makes the same
//! decisions the live run made. State is kept small, because every active alert costs it: per alert a
//! fixed-size record keyed by a hash of its fingerprint; labels live in the store (members), not here.
//! State past every window (resolved alerts, incidents that can no longer reopen) is pruned by
//! [`Correlator::sweep`], and every rule below also checks its window explicitly, so pruning never
//! changes a decision.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::silence::{CompiledSilence, Silence};
use super::{Change, Command, Incident, IncidentId, Member, State, TimelineEntry, TimelineKind};
use crate::config::incidents::Incidents;
use crate::event::{Event, EventKind, Labels, Status};
use crate::matcher::{self, Matcher};

/// The `incidents:` settings, checked.
#[derive(Debug)]
pub struct Settings {
    /// Each grouping key's alternative label names; empty with `all_labels`.
    group_by: Vec<Vec<String>>,
    all_labels: bool,
    window_ms: i64,
    reopen_ms: i64,
    flap_transitions: u32,
    flap_window_ms: i64,
    inhibit: Vec<Inhibit>,
    change_lookback_ms: i64,
    /// `max_open`; `usize::MAX` for no limit.
    max_tracked: usize,
}

/// The group of the overflow incident, which alerts join once `incidents.max_open` are tracked.
pub const OVERFLOW_GROUP: &str = "{homeostat_overflow=\"true\"}";

#[derive(Debug)]
struct Inhibit {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

/// At most this many inhibition rules: an alert records the rules it is a source for in a bit set.
pub const MAX_INHIBIT_RULES: usize = 64;

impl Settings {
    /// Checks `incidents:`; an error is `(field, message)`.
    pub fn compile(config: &Incidents) -> Result<Self, (String, String)> {
        let all_labels = config.group_by.iter().any(|key| key == "...");
        if all_labels && config.group_by.len() > 1 {
            return Err((
                "group_by".into(),
                "`...` groups by every label and cannot be combined with other labels".into(),
            ));
        }
        let mut group_by = Vec::new();
        if !all_labels {
            for (index, key) in config.group_by.iter().enumerate() {
                let names: Vec<String> =
                    key.split('|').map(|name| name.trim().to_string()).collect();
                if names.iter().any(|name| !valid_label_name(name)) {
                    return Err((
                        format!("group_by[{index}]"),
                        format!("`{key}` is not a label name or `a|b` alternatives of label names"),
                    ));
                }
                group_by.push(names);
            }
        }
        if config.inhibit_rules.len() > MAX_INHIBIT_RULES {
            return Err((
                "inhibit_rules".into(),
                format!("at most {MAX_INHIBIT_RULES} inhibition rules; merge rules with regular-expression matchers"),
            ));
        }
        let mut inhibit = Vec::new();
        for (index, rule) in config.inhibit_rules.iter().enumerate() {
            let parse = |field: &str, list: &[String]| -> Result<Vec<Matcher>, (String, String)> {
                let mut matchers = Vec::new();
                for (position, text) in list.iter().enumerate() {
                    matchers.extend(matcher::parse_list(text).map_err(|error| {
                        (
                            format!("inhibit_rules[{index}].{field}[{position}]"),
                            error.to_string(),
                        )
                    })?);
                }
                Ok(matchers)
            };
            let source = parse("source_matchers", &rule.source_matchers)?;
            let target = parse("target_matchers", &rule.target_matchers)?;
            if source.is_empty() || target.is_empty() {
                return Err((
                    format!("inhibit_rules[{index}]"),
                    "needs both source_matchers and target_matchers".into(),
                ));
            }
            inhibit.push(Inhibit {
                source,
                target,
                equal: rule.equal.clone(),
            });
        }
        if config.flapping.transitions < 2 {
            return Err((
                "flapping.transitions".into(),
                "must be at least 2 (a fire and a resolve are not flapping)".into(),
            ));
        }
        Ok(Self {
            group_by,
            all_labels,
            window_ms: millis(config.window_secs),
            reopen_ms: millis(config.reopen_window_secs),
            flap_transitions: config.flapping.transitions,
            flap_window_ms: millis(config.flapping.window_secs),
            inhibit,
            change_lookback_ms: millis(config.change_lookback_secs),
            max_tracked: match config.max_open {
                0 => usize::MAX,
                limit => usize::try_from(limit).unwrap_or(usize::MAX),
            },
        })
    }

    /// The group an event belongs to: its key as matchers, and the grouping labels with values.
    fn group(&self, event: &Event) -> (String, Labels) {
        let mut labels = Labels::new();
        if self.all_labels {
            labels = event.labels.clone();
        } else {
            for names in &self.group_by {
                if let Some((_, value)) = names
                    .iter()
                    .find_map(|name| event.labels.get(name).map(|value| (name, value)))
                {
                    labels.insert(names[0].clone(), value.clone());
                }
            }
        }
        if labels.is_empty() {
            // None of the grouping labels: the event is a group of its own.
            return (
                format!("{{fingerprint={:?}}}", event.fingerprint),
                [("fingerprint".to_string(), event.fingerprint.clone())].into(),
            );
        }
        let key = labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        (format!("{{{key}}}"), labels)
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn millis(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn hash_str(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// What became of one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "correlation", rename_all = "snake_case")]
pub enum Verdict {
    /// It opened a new incident.
    Opened {
        incident: IncidentId,
    },
    /// It joined an open incident of its group.
    Joined {
        incident: IncidentId,
    },
    /// A member that had resolved fires again.
    FiredAgain {
        incident: IncidentId,
    },
    /// It brought back a recently resolved incident.
    Reopened {
        incident: IncidentId,
    },
    /// A member resolved.
    MemberResolved {
        incident: IncidentId,
    },
    /// The same alert, still firing since the same time (Alertmanager re-sends firing alerts), or
    /// resolved again; with the incident it belongs to, when it was placed in one.
    Repeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<IncidentId>,
    },
    Silenced {
        silence: String,
    },
    Inhibited {
        rule: usize,
    },
    /// A member of a flapping incident changed state: recorded, no page.
    Flapping {
        incident: IncidentId,
    },
    /// A change (deploy) or a resolve of an alert never seen firing: context, no incident.
    Context,
    /// A command applied to an incident.
    Command {
        incident: IncidentId,
    },
    /// A command that could not apply.
    Rejected {
        message: String,
    },
}

impl Verdict {
    /// Whether rules should decide the event: not for repeats, muted alerts or commands. A
    /// flapping incident's member is decided: flapping stops pages, never the remediation of an
    /// alert that fires (the rules' guards bound how often that runs).
    pub fn actionable(&self) -> bool {
        matches!(
            self,
            Verdict::Opened { .. }
                | Verdict::Joined { .. }
                | Verdict::FiredAgain { .. }
                | Verdict::Reopened { .. }
                | Verdict::MemberResolved { .. }
                | Verdict::Flapping { .. }
                | Verdict::Context
        )
    }

    pub fn incident(&self) -> Option<IncidentId> {
        match self {
            Verdict::Opened { incident }
            | Verdict::Joined { incident }
            | Verdict::FiredAgain { incident }
            | Verdict::Reopened { incident }
            | Verdict::MemberResolved { incident }
            | Verdict::Flapping { incident }
            | Verdict::Command { incident } => Some(*incident),
            _ => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Opened { .. } => "opened",
            Verdict::Joined { .. } => "joined",
            Verdict::FiredAgain { .. } => "fired_again",
            Verdict::Reopened { .. } => "reopened",
            Verdict::MemberResolved { .. } => "member_resolved",
            Verdict::Repeat { .. } => "repeat",
            Verdict::Silenced { .. } => "silenced",
            Verdict::Inhibited { .. } => "inhibited",
            Verdict::Flapping { .. } => "flapping",
            Verdict::Context => "context",
            Verdict::Command { .. } => "command",
            Verdict::Rejected { .. } => "rejected",
        }
    }
}

/// An incident's change of state that rules can trigger on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Opened,
    Reopened,
    Acknowledged,
    Mitigated,
    Escalated,
    Resolved,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Reopened => "reopened",
            Transition::Acknowledged => "acknowledged",
            Transition::Mitigated => "mitigated",
            Transition::Escalated => "escalated",
            Transition::Resolved => "resolved",
        }
    }
}

/// What one event did: its verdict, what to store, and the transitions rules may act on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub verdict: Option<Verdict>,
    pub changes: Vec<Change>,
    pub transitions: Vec<(IncidentId, Transition)>,
}

/// One alert's state: 56 bytes, whatever its labels.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Alert {
    incident: IncidentId,
    /// `starts_at` in milliseconds, `i64::MIN` when the source gave none.
    starts_at: i64,
    /// When the current flap-counting window began, and the last state change (milliseconds).
    window_start: i64,
    last_transition: i64,
    /// The inhibition rules this alert is a source for, while it fires.
    sources: u64,
    transitions: u16,
    firing: bool,
    muted: bool,
}

impl Alert {
    /// An alert first seen at `now` (milliseconds), in no incident yet.
    fn new(starts_at: i64, now: i64) -> Self {
        Self {
            incident: 0,
            starts_at,
            window_start: now,
            last_transition: now,
            sources: 0,
            transitions: 0,
            firing: false,
            muted: false,
        }
    }
}

/// Marks an incident flapping, once, with its timeline entry; `span` is how long the counted
/// changes took, when known.
fn start_flapping(
    tracked: &mut Tracked,
    event: &Event,
    alert: &Alert,
    span: Option<i64>,
    flap_window_ms: i64,
    out: &mut Observed,
) {
    if tracked.incident.flapping {
        return;
    }
    tracked.incident.flapping = true;
    let span = span
        .map(|millis| format!(" in {}", duration_words(millis)))
        .unwrap_or_default();
    out.changes.push(Change::Timeline(TimelineEntry {
        incident: tracked.incident.id,
        kind: TimelineKind::Flapping,
        at: event.received_at,
        event_id: Some(event.id.clone()),
        summary: format!(
            "flapping: {} changed state {} times{span}; it no longer pages until quiet for {}",
            alert_name(event),
            alert.transitions,
            duration_words(flap_window_ms)
        ),
        detail: serde_json::Value::Null,
    }));
}

/// An incident the correlator still tracks: open, or resolved within the reopen window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tracked {
    incident: Incident,
    group: u64,
    /// The last momentary (never-resolving) member event, milliseconds.
    last_momentary: Option<i64>,
    /// The last state change of any member, milliseconds; flapping clears a window after it.
    last_transition: i64,
    /// A remediation succeeded: the incident must resolve by this deadline (milliseconds), or it
    /// escalates. With the run and rule, for the escalation's reason.
    /// Boxed: most incidents never have one, and every open incident carries the field.
    #[serde(default)]
    verify: Option<Box<(i64, String, String)>>,
}

/// The correlator's whole state.
pub struct Correlator {
    settings: Arc<Settings>,
    /// The silences as given (for snapshots) and compiled (for matching), in the same order.
    silences: Vec<(Silence, CompiledSilence)>,
    next_id: IncidentId,
    alerts: HashMap<u64, Alert>,
    /// Each group's latest incident.
    groups: HashMap<u64, IncidentId>,
    /// Boxed, so the table's spare capacity costs a pointer per slot, not a whole incident.
    incidents: HashMap<IncidentId, Box<Tracked>>,
    /// Firing source alerts per (inhibition rule, hash of their `equal` label values).
    sources: HashMap<(u8, u64), u32>,
    /// (rule, target) pairs loop detection turned off, until a person turns them on again.
    disabled: std::collections::BTreeSet<(String, String)>,
    /// The last few changes (deploys) per group, for incident context: when, what, event id.
    changes: HashMap<u64, Vec<RecentChange>>,
}

/// A change as the correlator keeps it: when (milliseconds), what, and the change event's id.
type RecentChange = (i64, String, String);

/// Changes kept per group: an incident's context names the most recent ones.
const CHANGES_PER_GROUP: usize = 3;

impl Correlator {
    /// A correlator that numbers new incidents after `last_id`.
    pub fn new(settings: Arc<Settings>, last_id: IncidentId) -> Self {
        Self {
            settings,
            silences: Vec::new(),
            next_id: last_id + 1,
            alerts: HashMap::new(),
            groups: HashMap::new(),
            incidents: HashMap::new(),
            sources: HashMap::new(),
            disabled: Default::default(),
            changes: HashMap::new(),
        }
    }

    fn note_change(&mut self, event: &Event, at: DateTime<Utc>) {
        let (group_key, _) = self.settings.group(event);
        let summary = event
            .annotations
            .get("summary")
            .or_else(|| event.annotations.get("description"))
            .cloned()
            .unwrap_or_else(|| {
                let what = event
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("{} change: {what}", event.source)
            });
        let list = self.changes.entry(hash_str(&group_key)).or_default();
        list.push((at.timestamp_millis(), summary, event.id.clone()));
        if list.len() > CHANGES_PER_GROUP {
            list.remove(0);
        }
    }

    /// Changes to an incident's group within the lookback before it started (or since): when,
    /// what, and the change event's id. Oldest first.
    pub fn recent_changes(&self, id: IncidentId) -> Vec<(DateTime<Utc>, String, String)> {
        let Some(tracked) = self.incidents.get(&id) else {
            return Vec::new();
        };
        let since =
            tracked.incident.started_at.timestamp_millis() - self.settings.change_lookback_ms;
        self.changes
            .get(&tracked.group)
            .map(|list| {
                list.iter()
                    .filter(|(at, _, _)| *at >= since)
                    .filter_map(|(at, summary, event)| {
                        DateTime::from_timestamp_millis(*at)
                            .map(|time| (time, summary.clone(), event.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether loop detection turned `rule` off for `target`.
    pub fn is_disabled(&self, rule: &str, target: &str) -> bool {
        self.disabled
            .contains(&(rule.to_string(), target.to_string()))
    }

    pub fn disabled(&self) -> impl Iterator<Item = &(String, String)> {
        self.disabled.iter()
    }

    /// Adds a silence or replaces the one with its id. Silences reach a running correlator as
    /// [`Command::Silence`] events, so a replay sees each from the same point in the stream; each is
    /// matched at an event's `received_at`. A silence that does not compile is refused.
    pub fn set_silence(&mut self, silence: Silence) -> Result<(), super::silence::Error> {
        let compiled = silence.compile()?;
        self.silences
            .retain(|(existing, _)| existing.id != silence.id);
        self.silences.push((silence, compiled));
        Ok(())
    }

    pub fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.silences.iter().map(|(silence, _)| silence)
    }

    pub fn active_alerts(&self) -> usize {
        self.alerts.values().filter(|alert| alert.firing).count()
    }

    /// The incidents tracked (open, or resolved and still able to reopen).
    pub fn tracked(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().map(|tracked| &tracked.incident)
    }

    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(&id).map(|tracked| &tracked.incident)
    }

    /// Folds one event in.
    pub fn observe(&mut self, event: &Event) -> Observed {
        let at = event.received_at;
        let mut out = Observed::default();
        let verdict = match event.kind {
            EventKind::Command => match Command::from_event(event) {
                Some(command) => self.command(&command, event, at, &mut out),
                None => Verdict::Rejected {
                    message: "a command event without a valid command in its data".into(),
                },
            },
            EventKind::Change => {
                self.note_change(event, at);
                Verdict::Context
            }
            EventKind::Info => self.momentary(event, at, &mut out),
            EventKind::Alert => match event.status {
                Status::Firing => self.firing(event, at, &mut out),
                Status::Resolved => self.resolved(event, at, &mut out),
            },
        };
        out.verdict = Some(verdict);
        out
    }

    fn mute(
        &self,
        labels: &Labels,
        at: DateTime<Utc>,
        own_sources: &[(u8, u64)],
    ) -> Option<Verdict> {
        if let Some((_, silence)) = self
            .silences
            .iter()
            .find(|(_, silence)| silence.mutes(labels, at))
        {
            return Some(Verdict::Silenced {
                silence: silence.id.clone(),
            });
        }
        for (index, rule) in self.settings.inhibit.iter().enumerate() {
            if !matcher::all_match(&rule.target, labels) {
                continue;
            }
            let key = (index as u8, equal_hash(&rule.equal, labels));
            let count = self.sources.get(&key).copied().unwrap_or(0);
            // As Alertmanager: an alert that is both source and target does not inhibit itself.
            let own = u32::from(own_sources.contains(&key));
            if count > own {
                return Some(Verdict::Inhibited { rule: index });
            }
        }
        None
    }

    /// The inhibition rules an alert is a source for, with its `equal` hash in each.
    fn source_keys(&self, labels: &Labels) -> Vec<(u8, u64)> {
        self.settings
            .inhibit
            .iter()
            .enumerate()
            .filter(|(_, rule)| matcher::all_match(&rule.source, labels))
            .map(|(index, rule)| (index as u8, equal_hash(&rule.equal, labels)))
            .collect()
    }

    fn add_sources(&mut self, keys: &[(u8, u64)]) -> u64 {
        let mut bits = 0u64;
        for key in keys {
            *self.sources.entry(*key).or_insert(0) += 1;
            bits |= 1 << key.0;
        }
        bits
    }

    fn remove_sources(&mut self, bits: u64, labels: &Labels) {
        if bits == 0 {
            return;
        }
        for (index, rule) in self.settings.inhibit.iter().enumerate() {
            if bits & (1 << index) == 0 {
                continue;
            }
            let key = (index as u8, equal_hash(&rule.equal, labels));
            if let Some(count) = self.sources.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.sources.remove(&key);
                }
            }
        }
    }

    fn firing(&mut self, event: &Event, at: DateTime<Utc>, out: &mut Observed) -> Verdict {
        let key = hash_str(&event.fingerprint);
        let starts_at = event
            .starts_at
            .map_or(i64::MIN, |time| time.timestamp_millis());
        let now = at.timestamp_millis();
        let previous = self.alerts.get(&key).copied();
        if let Some(alert) = previous {
            if alert.firing && alert.starts_at == starts_at {
                if !alert.muted {
                    return Verdict::Repeat {
                        incident: placed(alert.incident),
                    };
                }
                // Muted when it began: still muted, or its silence has ended and it counts as new.
                if let Some(muted) = self.mute(&event.labels, at, &[]) {
                    return muted;
                }
            }
        }
        // Sources first: a muted alert still inhibits, as in Alertmanager.
        let keys = self.source_keys(&event.labels);
        let mut alert = previous.unwrap_or_else(|| Alert::new(starts_at, now));
        if alert.firing {
            // Fired again with a new `starts_at` without a resolve in between: a new occurrence.
            self.remove_sources(alert.sources, &event.labels);
        }
        let state_change = previous.is_some_and(|previous| !previous.firing);
        alert.sources = self.add_sources(&keys);
        alert.starts_at = starts_at;
        alert.firing = true;
        if let Some(muted) = self.mute(&event.labels, at, &keys) {
            alert.muted = true;
            self.alerts.insert(key, alert);
            return muted;
        }
        alert.muted = false;
        if state_change {
            self.count_transition(&mut alert, now);
        }
        let counted = previous.is_some_and(|previous| previous.firing && !previous.muted);
        let (incident, verdict) = self.place(event, at, &mut alert, state_change, counted, out);
        alert.incident = incident;
        self.alerts.insert(key, alert);
        verdict
    }

    /// Incidents tracked, the overflow incident not counted.
    fn tracked_besides_overflow(&self) -> usize {
        let overflow = self
            .groups
            .get(&hash_str(OVERFLOW_GROUP))
            .is_some_and(|id| self.incidents.contains_key(id));
        self.incidents.len() - usize::from(overflow)
    }

    /// The id, state and resolution time of a group's latest tracked incident.
    fn current(&self, group: u64) -> Option<(IncidentId, State, Option<DateTime<Utc>>)> {
        self.groups
            .get(&group)
            .and_then(|id| self.incidents.get(id))
            .map(|tracked| {
                (
                    tracked.incident.id,
                    tracked.incident.state,
                    tracked.incident.resolved_at,
                )
            })
    }

    /// Whether a firing member of a group with this latest incident opens a new one: the group
    /// has none, or its last resolved longer than the reopen window ago (see [`Self::place`]).
    fn opens(&self, current: Option<(IncidentId, State, Option<DateTime<Utc>>)>, now: i64) -> bool {
        match current {
            Some((_, state, _)) if state != State::Resolved => false,
            Some((_, State::Resolved, Some(resolved_at))) => {
                now - resolved_at.timestamp_millis() > self.settings.reopen_ms
            }
            _ => true,
        }
    }

    fn count_transition(&self, alert: &mut Alert, now: i64) {
        if now - alert.window_start > self.settings.flap_window_ms {
            alert.window_start = now;
            alert.transitions = 0;
        }
        alert.transitions = alert.transitions.saturating_add(1);
        alert.last_transition = now;
    }

    /// Puts a firing or momentary event into its group's incident, opening or reopening one.
    fn place(
        &mut self,
        event: &Event,
        at: DateTime<Utc>,
        alert: &mut Alert,
        state_change: bool,
        already_counted: bool,
        out: &mut Observed,
    ) -> (IncidentId, Verdict) {
        let now = at.timestamp_millis();
        let momentary = event.kind == EventKind::Info;
        let (mut group_key, mut group_labels) = self.settings.group(event);
        let mut group = hash_str(&group_key);
        let mut current = self.current(group);
        let mut overflow = false;
        if self.tracked_besides_overflow() >= self.settings.max_tracked && self.opens(current, now)
        {
            // At the limit: the alert joins the overflow incident (opened past the limit, once).
            group_key = OVERFLOW_GROUP.to_string();
            group_labels = [("homeostat_overflow".to_string(), "true".to_string())].into();
            group = hash_str(&group_key);
            current = self.current(group);
            overflow = true;
        }
        let flap_threshold = u32::from(alert.transitions) >= self.settings.flap_transitions;
        let (id, mut verdict) = match current {
            Some((id, state, _)) if state != State::Resolved => {
                let rejoin = alert.incident == id;
                (
                    id,
                    if rejoin && !momentary {
                        Verdict::FiredAgain { incident: id }
                    } else {
                        Verdict::Joined { incident: id }
                    },
                )
            }
            Some((id, State::Resolved, Some(resolved_at)))
                if now - resolved_at.timestamp_millis() <= self.settings.reopen_ms =>
            {
                let tracked = self.incidents.get_mut(&id).expect("tracked");
                let incident = &mut tracked.incident;
                incident.state = if incident.acknowledged_at.is_some() {
                    State::Acknowledged
                } else {
                    State::Open
                };
                incident.resolved_at = None;
                incident.resolved_by = None;
                incident.mitigated_at = None;
                incident.reopened += 1;
                out.transitions.push((id, Transition::Reopened));
                out.changes.push(Change::Timeline(TimelineEntry {
                    incident: id,
                    kind: TimelineKind::Reopened,
                    at,
                    event_id: Some(event.id.clone()),
                    summary: format!(
                        "reopened: {} fired again {} after the incident resolved",
                        alert_name(event),
                        duration_words(now - resolved_at.timestamp_millis())
                    ),
                    detail: serde_json::Value::Null,
                }));
                (id, Verdict::Reopened { incident: id })
            }
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                let started_at = event.starts_at.filter(|start| *start <= at).unwrap_or(at);
                let incident = Incident {
                    id,
                    state: State::Open,
                    title: title(event),
                    group_key: group_key.clone(),
                    labels: group_labels.into(),
                    flapping: false,
                    escalated: false,
                    members_firing: 0,
                    members_total: 0,
                    reopened: 0,
                    started_at,
                    opened_at: at,
                    acknowledged_at: None,
                    acknowledged_by: None,
                    mitigated_at: None,
                    resolved_at: None,
                    resolved_by: None,
                    escalated_at: None,
                    updated_at: at,
                };
                self.incidents.insert(
                    id,
                    Box::new(Tracked {
                        incident,
                        group,
                        last_momentary: None,
                        last_transition: now,
                        verify: None,
                    }),
                );
                self.groups.insert(group, id);
                out.transitions.push((id, Transition::Opened));
                out.changes.push(Change::Timeline(TimelineEntry {
                    incident: id,
                    kind: TimelineKind::Opened,
                    at,
                    event_id: Some(event.id.clone()),
                    summary: if overflow {
                        format!(
                            "opened by {}: {} incidents are tracked, the limit (incidents.max_open); alerts that would open a new incident join this one until fewer are",
                            alert_name(event),
                            self.settings.max_tracked
                        )
                    } else {
                        format!("opened by {} (group {group_key})", alert_name(event))
                    },
                    detail: serde_json::json!({ "group_key": group_key }),
                }));
                (id, Verdict::Opened { incident: id })
            }
        };
        let tracked = self.incidents.get_mut(&id).expect("placed");
        let new_member = alert.incident != id;
        if state_change || new_member {
            tracked.last_transition = now;
        }
        if tracked.incident.state == State::Mitigated && !momentary {
            // The fix did not hold (or something else broke): the incident is not mitigated while
            // a member fires, and its verification no longer applies; the rules decide anew.
            tracked.incident.state = if tracked.incident.acknowledged_at.is_some() {
                State::Acknowledged
            } else {
                State::Open
            };
            tracked.verify = None;
            out.changes.push(Change::Timeline(TimelineEntry {
                incident: id,
                kind: TimelineKind::MemberFiredAgain,
                at,
                event_id: Some(event.id.clone()),
                summary: format!(
                    "{} fires while the incident was mitigated: the incident is open again",
                    alert_name(event)
                ),
                detail: serde_json::Value::Null,
            }));
        }
        if momentary {
            tracked.last_momentary = Some(now);
        } else if !already_counted || new_member {
            tracked.incident.members_firing += 1;
        }
        if new_member {
            tracked.incident.members_total += 1;
            if tracked.incident.members_total > 1 {
                tracked.incident.title =
                    retitle(&tracked.incident.title, tracked.incident.members_total);
            }
        }
        if let Some(start) = event.starts_at.filter(|start| *start <= at) {
            if start < tracked.incident.started_at {
                tracked.incident.started_at = start;
            }
        }
        tracked.incident.updated_at = at;
        if flap_threshold {
            let span = Some(now - alert.window_start);
            start_flapping(
                tracked,
                event,
                alert,
                span,
                self.settings.flap_window_ms,
                out,
            );
        }
        if tracked.incident.flapping && !matches!(verdict, Verdict::Opened { .. }) {
            // Recorded, but it pages no one and starts nothing.
            if let Some(position) = out.transitions.iter().position(|(incident, transition)| {
                *incident == id && *transition == Transition::Reopened
            }) {
                out.transitions.remove(position);
            }
            verdict = Verdict::Flapping { incident: id };
        }
        let summary = match &verdict {
            Verdict::FiredAgain { .. } | Verdict::Flapping { .. } if !new_member => {
                format!("{} fired again", alert_name(event))
            }
            _ if momentary => format!("{} happened", alert_name(event)),
            _ => format!(
                "{} joined ({})",
                alert_name(event),
                correlation_reason(&tracked.incident)
            ),
        };
        out.changes.push(Change::Timeline(TimelineEntry {
            incident: id,
            kind: if new_member {
                TimelineKind::MemberAdded
            } else {
                TimelineKind::MemberFiredAgain
            },
            at,
            event_id: Some(event.id.clone()),
            summary,
            detail: serde_json::json!({ "fingerprint": event.fingerprint, "source": event.source }),
        }));
        out.changes.push(Change::Member(member(id, event)));
        out.changes.push(Change::Incident(tracked.incident.clone()));
        (id, verdict)
    }

    fn momentary(&mut self, event: &Event, at: DateTime<Utc>, out: &mut Observed) -> Verdict {
        if let Some(muted) = self.mute(&event.labels, at, &[]) {
            return muted;
        }
        let key = hash_str(&event.fingerprint);
        // A CloudEvent's fingerprint is its source and id: seen again, it is a re-delivery.
        if event
            .annotations
            .contains_key(crate::ingest::cloudevents::ID_ANNOTATION)
            && self.alerts.contains_key(&key)
        {
            return Verdict::Repeat {
                incident: self
                    .alerts
                    .get(&key)
                    .and_then(|alert| placed(alert.incident)),
            };
        }
        let now = at.timestamp_millis();
        let mut alert = self
            .alerts
            .get(&key)
            .copied()
            .unwrap_or_else(|| Alert::new(i64::MIN, now));
        let (incident, verdict) = self.place(event, at, &mut alert, false, false, out);
        alert.incident = incident;
        alert.last_transition = now;
        self.alerts.insert(key, alert);
        verdict
    }

    fn resolved(&mut self, event: &Event, at: DateTime<Utc>, out: &mut Observed) -> Verdict {
        let key = hash_str(&event.fingerprint);
        let now = at.timestamp_millis();
        let Some(mut alert) = self.alerts.get(&key).copied() else {
            return Verdict::Context;
        };
        if !alert.firing {
            return Verdict::Repeat {
                incident: placed(alert.incident),
            };
        }
        alert.firing = false;
        self.remove_sources(alert.sources, &event.labels);
        alert.sources = 0;
        if alert.muted {
            alert.muted = false;
            self.alerts.insert(key, alert);
            return match self.mute(&event.labels, at, &[]) {
                Some(muted) => muted,
                None => Verdict::Context,
            };
        }
        let fixed = self
            .incidents
            .get(&alert.incident)
            .is_some_and(|tracked| tracked.incident.state == State::Mitigated);
        if fixed {
            // A run of homeostat's succeeded and now the alert resolves: the fix working, not the
            // alert flapping. Its count starts afresh, so fire, fix, resolve, fire again later
            // never adds up to flapping; only changes nobody caused do.
            alert.transitions = 0;
            alert.window_start = now;
            alert.last_transition = now;
        } else {
            self.count_transition(&mut alert, now);
        }
        self.alerts.insert(key, alert);
        let flap_threshold = u32::from(alert.transitions) >= self.settings.flap_transitions;
        let Some(tracked) = self.incidents.get_mut(&alert.incident) else {
            return Verdict::Context;
        };
        let id = tracked.incident.id;
        tracked.incident.members_firing = tracked.incident.members_firing.saturating_sub(1);
        tracked.incident.updated_at = at;
        tracked.last_transition = now;
        if flap_threshold {
            start_flapping(
                tracked,
                event,
                &alert,
                None,
                self.settings.flap_window_ms,
                out,
            );
        }
        out.changes.push(Change::Timeline(TimelineEntry {
            incident: id,
            kind: TimelineKind::MemberResolved,
            at,
            event_id: Some(event.id.clone()),
            summary: format!("{} resolved", alert_name(event)),
            detail: serde_json::json!({ "fingerprint": event.fingerprint }),
        }));
        let mut resolved_member = member(id, event);
        resolved_member.status = Status::Resolved;
        out.changes.push(Change::Member(resolved_member));
        let flapping = tracked.incident.flapping;
        self.settle(id, at, Some(&event.id), out);
        if !out
            .changes
            .iter()
            .any(|change| matches!(change, Change::Incident(incident) if incident.id == id))
        {
            if let Some(tracked) = self.incidents.get(&id) {
                out.changes.push(Change::Incident(tracked.incident.clone()));
            }
        }
        if flapping {
            Verdict::Flapping { incident: id }
        } else {
            Verdict::MemberResolved { incident: id }
        }
    }

    /// Clears flapping after a quiet window and resolves an incident nothing holds open any more.
    fn settle(
        &mut self,
        id: IncidentId,
        at: DateTime<Utc>,
        event_id: Option<&str>,
        out: &mut Observed,
    ) {
        let now = at.timestamp_millis();
        let (window_ms, flap_window_ms) = (self.settings.window_ms, self.settings.flap_window_ms);
        let Some(tracked) = self.incidents.get_mut(&id) else {
            return;
        };
        if tracked.incident.state == State::Resolved {
            return;
        }
        let mut changed = false;
        if tracked.incident.flapping && now - tracked.last_transition >= flap_window_ms {
            tracked.incident.flapping = false;
            changed = true;
            out.changes.push(Change::Timeline(TimelineEntry {
                incident: id,
                kind: TimelineKind::FlappingCleared,
                at,
                event_id: event_id.map(str::to_string),
                summary: format!(
                    "no longer flapping: quiet for {}",
                    duration_words(flap_window_ms)
                ),
                detail: serde_json::Value::Null,
            }));
        }
        let momentary_holds = tracked
            .last_momentary
            .is_some_and(|last| now - last < window_ms);
        if tracked.incident.members_firing == 0 && !momentary_holds && !tracked.incident.flapping {
            tracked.incident.state = State::Resolved;
            tracked.incident.resolved_at = Some(at);
            tracked.incident.resolved_by = Some("homeostat".into());
            tracked.verify = None;
            changed = true;
            out.transitions.push((id, Transition::Resolved));
            out.changes.push(Change::Timeline(TimelineEntry {
                incident: id,
                kind: TimelineKind::Resolved,
                at,
                event_id: event_id.map(str::to_string),
                summary: "resolved: every member alert resolved".into(),
                detail: serde_json::Value::Null,
            }));
        }
        if changed {
            tracked.incident.updated_at = at;
            out.changes.push(Change::Incident(tracked.incident.clone()));
        }
    }

    fn command(
        &mut self,
        command: &Command,
        event: &Event,
        at: DateTime<Utc>,
        out: &mut Observed,
    ) -> Verdict {
        let Some(id) = command.incident() else {
            if let Command::EnableRule { rule, target, .. } = command {
                return if self.disabled.remove(&(rule.clone(), target.clone())) {
                    Verdict::Context
                } else {
                    Verdict::Rejected {
                        message: format!("rule `{rule}` is not disabled for `{target}`"),
                    }
                };
            }
            let Command::Silence { silence } = command else {
                return Verdict::Context;
            };
            return match self.set_silence(silence.clone()) {
                Ok(()) => Verdict::Context,
                Err(error) => Verdict::Rejected {
                    message: format!("silence `{}`: {error}", silence.id),
                },
            };
        };
        let Some(tracked) = self.incidents.get_mut(&id) else {
            return Verdict::Rejected {
                message: format!("incident {id} is not open (or resolved too long ago to change)"),
            };
        };
        let incident = &mut tracked.incident;
        let resolved = incident.state == State::Resolved;
        let (kind, summary, transition) = match command {
            Command::Acknowledge { by, comment, .. } => {
                if resolved {
                    return Verdict::Rejected {
                        message: format!("incident {id} is resolved"),
                    };
                }
                if incident.acknowledged_at.is_some() {
                    return Verdict::Rejected {
                        message: format!(
                            "incident {id} was already acknowledged by {}",
                            incident.acknowledged_by.as_deref().unwrap_or("someone")
                        ),
                    };
                }
                incident.acknowledged_at = Some(at);
                incident.acknowledged_by = Some(by.clone());
                if incident.state == State::Open {
                    incident.state = State::Acknowledged;
                }
                (
                    TimelineKind::Acknowledged,
                    with_comment(format!("acknowledged by {by}"), comment),
                    Some(Transition::Acknowledged),
                )
            }
            Command::Resolve { by, comment, .. } => {
                if resolved {
                    return Verdict::Rejected {
                        message: format!("incident {id} is already resolved"),
                    };
                }
                incident.state = State::Resolved;
                incident.resolved_at = Some(at);
                incident.resolved_by = Some(by.clone());
                (
                    TimelineKind::Resolved,
                    with_comment(format!("resolved by {by}"), comment),
                    Some(Transition::Resolved),
                )
            }
            Command::Mitigate {
                run_id,
                rule,
                verify_within_secs,
                finished_at,
                ..
            } => {
                // When the run finished, not when its news reached the stream: the alerts may have
                // resolved in between, and the fix still counts.
                let finished = finished_at.unwrap_or(at).min(at);
                if resolved {
                    let before = incident
                        .resolved_at
                        .is_some_and(|resolved_at| finished <= resolved_at);
                    if !before || incident.mitigated_at.is_some() {
                        return Verdict::Rejected {
                            message: format!("incident {id} is already resolved"),
                        };
                    }
                    incident.mitigated_at = Some(finished);
                    incident.updated_at = at;
                    out.changes.push(Change::Timeline(TimelineEntry {
                        incident: id,
                        kind: TimelineKind::Mitigated,
                        at: finished,
                        event_id: Some(event.id.clone()),
                        summary: format!("mitigated: run {run_id} of rule `{rule}` succeeded; the alerts resolved right after"),
                        detail: serde_json::to_value(command).unwrap_or_default(),
                    }));
                    out.changes.push(Change::Incident(incident.clone()));
                    out.transitions.push((id, Transition::Mitigated));
                    return Verdict::Command { incident: id };
                }
                let at = finished;
                incident.mitigated_at = Some(at);
                incident.state = State::Mitigated;
                tracked.verify = verify_within_secs.map(|seconds| {
                    Box::new((
                        at.timestamp_millis() + millis(seconds),
                        run_id.clone(),
                        rule.clone(),
                    ))
                });
                (
                    TimelineKind::Mitigated,
                    format!("mitigated: run {run_id} of rule `{rule}` succeeded; waiting for the alerts to resolve"),
                    Some(Transition::Mitigated),
                )
            }
            Command::Escalate { reason, .. } => {
                incident.escalated = true;
                incident.escalated_at = Some(at);
                tracked.verify = None;
                (
                    TimelineKind::Escalated,
                    format!("escalated: {reason}"),
                    Some(Transition::Escalated),
                )
            }
            Command::DisableRule {
                rule,
                target,
                reason,
                ..
            } => {
                self.disabled.insert((rule.clone(), target.clone()));
                incident.escalated = true;
                incident.escalated_at = Some(at);
                tracked.verify = None;
                (
                    TimelineKind::Escalated,
                    format!("escalated: {reason}; rule `{rule}` is disabled for `{target}` until `homeostat rules enable {rule} --target {target}`"),
                    Some(Transition::Escalated),
                )
            }
            Command::Note { by, text, .. } => (TimelineKind::Note, format!("{by}: {text}"), None),
            Command::Verified { run_id, check, .. } => {
                if tracked
                    .verify
                    .as_deref()
                    .is_none_or(|(_, run, _)| run != run_id)
                {
                    return Verdict::Rejected {
                        message: format!(
                            "incident {id} is not waiting for run {run_id}'s verification"
                        ),
                    };
                }
                tracked.verify = None;
                (
                    TimelineKind::Verified,
                    format!("verified: after run {run_id}, {check} holds"),
                    None,
                )
            }
            Command::Settle { .. } => {
                self.settle(id, at, Some(&event.id), out);
                return Verdict::Command { incident: id };
            }
            Command::Silence { .. } | Command::EnableRule { .. } => return Verdict::Context,
        };
        incident.updated_at = at;
        out.changes.push(Change::Timeline(TimelineEntry {
            incident: id,
            kind,
            at,
            event_id: Some(event.id.clone()),
            summary,
            detail: serde_json::to_value(command).unwrap_or_default(),
        }));
        out.changes.push(Change::Incident(incident.clone()));
        if let Some(transition) = transition {
            out.transitions.push((id, transition));
        }
        Verdict::Command { incident: id }
    }

    /// Work that time alone makes due, as commands to submit (so they are journaled and replayed like
    /// any other input): incidents to settle (flapping quiet for a window, or held open only by
    /// momentary events that are now older than the window). Also forgets state past every window.
    pub fn sweep(&mut self, now: DateTime<Utc>) -> Vec<Command> {
        let now_ms = now.timestamp_millis();
        let settings = Arc::clone(&self.settings);
        let mut due = Vec::new();
        let mut forget = Vec::new();
        for (id, tracked) in &self.incidents {
            if tracked.incident.state == State::Resolved {
                let resolved = tracked
                    .incident
                    .resolved_at
                    .map_or(now_ms, |at| at.timestamp_millis());
                if now_ms - resolved > settings.reopen_ms {
                    forget.push(*id);
                }
                continue;
            }
            let flapping_quiet = tracked.incident.flapping
                && now_ms - tracked.last_transition >= settings.flap_window_ms;
            let momentary_done = tracked.incident.members_firing == 0
                && !tracked.incident.flapping
                && tracked
                    .last_momentary
                    .is_some_and(|last| now_ms - last >= settings.window_ms);
            if flapping_quiet || momentary_done {
                due.push(Command::Settle { incident: *id });
            }
            if let Some((deadline, run_id, rule)) = tracked.verify.as_deref() {
                if now_ms >= *deadline {
                    let mitigated = tracked
                        .incident
                        .mitigated_at
                        .map_or(*deadline, |at| at.timestamp_millis());
                    due.push(Command::Escalate {
                        incident: *id,
                        reason: format!(
                            "run {run_id} of rule `{rule}` succeeded, but the alerts did not resolve within {}",
                            duration_words(*deadline - mitigated)
                        ),
                        run_id: Some(run_id.clone()),
                    });
                }
            }
        }
        due.sort_by_key(Command::incident);
        // A change older than any incident could still look back to is forgotten.
        let lookback = settings.change_lookback_ms.saturating_mul(2);
        self.changes.retain(|_, list| {
            list.retain(|(at, _, _)| now_ms - *at <= lookback);
            !list.is_empty()
        });
        // An expired silence can mute nothing received from now on.
        self.silences.retain(|(silence, _)| silence.ends_at > now);
        for id in forget {
            if let Some(tracked) = self.incidents.remove(&id) {
                if self.groups.get(&tracked.group) == Some(&id) {
                    self.groups.remove(&tracked.group);
                }
            }
        }
        // Resolved alerts are kept only to count flapping transitions.
        self.alerts.retain(|_, alert| {
            alert.firing
                || now_ms - alert.last_transition <= settings.flap_window_ms.max(settings.window_ms)
        });
        due
    }

    /// The state as bytes, to store with the cursor it was taken at.
    pub fn snapshot(&self) -> Vec<u8> {
        // Borrowed, not cloned: with tens of thousands of open incidents, copying them only to
        // serialize the copies doubled the cost of a snapshot.
        let head = HeadRef {
            next_id: self.next_id,
            incidents: Seq::new(self.incidents.values()),
            groups: Seq::new(self.groups.iter().map(|(group, id)| (*group, *id))),
            sources: Seq::new(
                self.sources
                    .iter()
                    .map(|((rule, hash), count)| (*rule, *hash, *count)),
            ),
            silences: Seq::new(self.silences()),
            disabled: &self.disabled,
            changes: Seq::new(self.changes.iter().map(|(group, list)| (*group, list))),
        };
        let head = serde_json::to_vec(&head).unwrap_or_default();
        let mut bytes = Vec::with_capacity(8 + head.len() + self.alerts.len() * ALERT_BYTES);
        bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&head);
        for (key, alert) in &self.alerts {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&alert.incident.to_le_bytes());
            bytes.extend_from_slice(&alert.starts_at.to_le_bytes());
            bytes.extend_from_slice(&alert.window_start.to_le_bytes());
            bytes.extend_from_slice(&alert.last_transition.to_le_bytes());
            bytes.extend_from_slice(&alert.sources.to_le_bytes());
            bytes.extend_from_slice(&alert.transitions.to_le_bytes());
            bytes.push(u8::from(alert.firing) | (u8::from(alert.muted) << 1));
        }
        bytes
    }

    /// A correlator from a snapshot; `None` when the bytes are not one (then replay from the start).
    /// Numbering goes on from the snapshot's, so replaying the events after it gives the incidents
    /// the numbers they were given live.
    pub fn restore(settings: Arc<Settings>, bytes: &[u8]) -> Option<Self> {
        let length = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
        let head: Head = serde_json::from_slice(bytes.get(8..8 + length)?).ok()?;
        let rest = bytes.get(8 + length..)?;
        if rest.len() % ALERT_BYTES != 0 {
            return None;
        }
        let mut alerts = HashMap::with_capacity(rest.len() / ALERT_BYTES);
        for chunk in rest.chunks_exact(ALERT_BYTES) {
            let word = |at: usize| -> i64 {
                i64::from_le_bytes(chunk[at..at + 8].try_into().unwrap_or_default())
            };
            let flags = chunk[50];
            alerts.insert(
                word(0) as u64,
                Alert {
                    incident: word(8),
                    starts_at: word(16),
                    window_start: word(24),
                    last_transition: word(32),
                    sources: word(40) as u64,
                    transitions: u16::from_le_bytes([chunk[48], chunk[49]]),
                    firing: flags & 1 != 0,
                    muted: flags & 2 != 0,
                },
            );
        }
        let silences = head
            .silences
            .into_iter()
            .filter_map(|silence| silence.compile().ok().map(|compiled| (silence, compiled)))
            .collect();
        Some(Self {
            settings,
            silences,
            next_id: head.next_id,
            alerts,
            groups: head.groups.into_iter().collect(),
            incidents: head
                .incidents
                .into_iter()
                .map(|tracked| (tracked.incident.id, Box::new(tracked)))
                .collect(),
            sources: head
                .sources
                .into_iter()
                .map(|(rule, hash, count)| ((rule, hash), count))
                .collect(),
            disabled: head.disabled.into_iter().collect(),
            changes: head.changes.into_iter().collect(),
        })
    }
}

const ALERT_BYTES: usize = 51;

#[derive(Serialize, Deserialize)]
struct Head {
    next_id: IncidentId,
    incidents: Vec<Tracked>,
    groups: Vec<(u64, IncidentId)>,
    sources: Vec<(u8, u64, u32)>,
    silences: Vec<Silence>,
    #[serde(default)]
    disabled: Vec<(String, String)>,
    #[serde(default)]
    changes: Vec<(u64, Vec<RecentChange>)>,
}

/// [`Head`] as [`Correlator::snapshot`] writes it, from borrowed state. The fields are [`Head`]'s,
/// in its order, so the bytes are the same.
#[derive(Serialize)]
#[serde(bound(
    serialize = "Seq<I>: Serialize, Seq<G>: Serialize, Seq<S>: Serialize, Seq<L>: Serialize, \
                 Seq<C>: Serialize"
))]
struct HeadRef<'a, I, G, S, L, C> {
    next_id: IncidentId,
    incidents: Seq<I>,
    groups: Seq<G>,
    sources: Seq<S>,
    silences: Seq<L>,
    disabled: &'a std::collections::BTreeSet<(String, String)>,
    changes: Seq<C>,
}

/// An iterator serialized as a JSON array, once.
struct Seq<I>(std::cell::Cell<Option<I>>);

impl<I> Seq<I> {
    fn new(items: I) -> Self {
        Self(std::cell::Cell::new(Some(items)))
    }
}

impl<I> Serialize for Seq<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.take().into_iter().flatten())
    }
}

/// An alert's incident, if it was ever placed in one (incidents are numbered from 1).
fn placed(incident: IncidentId) -> Option<IncidentId> {
    (incident > 0).then_some(incident)
}

fn equal_hash(equal: &[String], labels: &Labels) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for name in equal {
        // A missing label counts as empty, as in Alertmanager.
        labels
            .get(name)
            .map_or("", String::as_str)
            .hash(&mut hasher);
        0xffu8.hash(&mut hasher);
    }
    hasher.finish()
}

fn member(incident: IncidentId, event: &Event) -> Member {
    Member {
        incident,
        fingerprint: event.fingerprint.clone(),
        source: event.source.clone(),
        status: event.status,
        labels: event.labels.clone(),
        annotations: event.annotations.clone(),
        first_event_id: event.id.clone(),
        last_event_id: event.id.clone(),
        first_seen: event.received_at,
        last_seen: event.received_at,
        starts_at: event.starts_at,
        generator_url: event
            .data
            .as_ref()
            .and_then(|data| {
                data.get("generatorURL")
                    .or_else(|| data.get("generator_url"))
            })
            .and_then(|url| url.as_str())
            .map(str::to_string),
    }
}

/// How an alert is named on a timeline: `alertname` (else `reason`, else the fingerprint) and, when
/// it has one, the service or instance it is about.
pub fn alert_name(event: &Event) -> String {
    let name = event
        .labels
        .get("alertname")
        .or_else(|| event.labels.get("reason"))
        .cloned()
        .unwrap_or_else(|| format!("alert {}", event.fingerprint));
    match event
        .labels
        .get("instance")
        .or_else(|| event.labels.get("pod"))
    {
        Some(on) => format!("`{name}` on {on}"),
        None => format!("`{name}`"),
    }
}

fn title(event: &Event) -> String {
    event
        .annotations
        .get("summary")
        .cloned()
        .or_else(|| event.labels.get("alertname").cloned())
        .or_else(|| event.labels.get("reason").cloned())
        .unwrap_or_else(|| format!("alert {}", event.fingerprint))
}

fn retitle(title: &str, members: u32) -> String {
    let base = title.split(" (+").next().unwrap_or(title);
    format!("{base} (+{} more)", members - 1)
}

fn correlation_reason(incident: &Incident) -> String {
    format!(
        "same {}",
        incident.group_key.trim_matches(|c| c == '{' || c == '}')
    )
}

fn with_comment(summary: String, comment: &Option<String>) -> String {
    match comment {
        Some(comment) if !comment.trim().is_empty() => format!("{summary}: {comment}"),
        _ => summary,
    }
}

/// `90s`, `12m`, `3h5m`: durations on a timeline.
pub fn duration_words(millis: i64) -> String {
    let seconds = (millis / 1000).max(0);
    if seconds < 120 {
        format!("{seconds}s")
    } else if seconds < 7200 {
        format!("{}m", seconds / 60)
    } else {
        let (hours, minutes) = (seconds / 3600, (seconds % 3600) / 60);
        if minutes == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{minutes}m")
        }
    }
}
