//! The normalized event: one thing that happened, whatever source it came from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Label and annotation sets are ordered maps, so that fingerprints and serialized forms are stable.
pub type Labels = BTreeMap<String, String>;

/// A few labels kept for a long time, as an incident's grouping labels are: sorted by name and
/// written as a JSON object, like [`Labels`], in a boxed slice. A `BTreeMap` allocates a node for
/// eleven entries even when it holds one (544 bytes for one label), and every open incident
/// carries its grouping labels in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet(Box<[(String, String)]>);

impl LabelSet {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(key, _)| key.as_str().cmp(name))
            .ok()
            .map(|index| self.0[index].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as a map.
    pub fn to_labels(&self) -> Labels {
        self.0.iter().cloned().collect()
    }
}

impl From<Labels> for LabelSet {
    fn from(labels: Labels) -> Self {
        // A map's order is by name, which `get` searches by.
        Self(labels.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for LabelSet {
    fn from(labels: [(String, String); N]) -> Self {
        Labels::from(labels).into()
    }
}

impl Serialize for LabelSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for LabelSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Labels::deserialize(deserializer).map(Self::from)
    }
}

/// Whether the condition an event reports is present or gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of thing happened; rules and (later) correlation treat kinds differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A condition that fires and resolves, such as a Prometheus alert or a failing probe.
    #[default]
    Alert,
    /// Something was changed on purpose: a deploy, a config push.
    Change,
    /// Anything else worth recording.
    Info,
    /// An action on an incident (acknowledge, resolve, mitigated, escalate), carried in the stream so
    /// it is journaled and replayed in order; see [`crate::incident::Command`]. Rules never see these.
    Command,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Alert => "alert",
            EventKind::Change => "change",
            EventKind::Info => "info",
            EventKind::Command => "command",
        }
    }
}

/// One normalized event. Source-specific payloads stop at the source; everything downstream sees this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id, a UUIDv7 so ids sort by arrival.
    pub id: String,
    /// The configured source name that produced it (`alertmanager`, `api-probe`, ...).
    pub source: String,
    pub kind: EventKind,
    pub status: Status,
    /// Identity of the underlying condition: the same alert firing and resolving shares it.
    pub fingerprint: String,
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// Source extras worth keeping (a CloudEvent's `data`, an alert's `generatorURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Who sent it, for the audit trail: the API token's name, `hmac:<source>` for a signed webhook,
    /// or nothing for events homeostat made itself (probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested_by: Option<String>,
}

impl Event {
    /// An alert homeostat raises itself (a probe, an SLO, a detector, a forecast): its fingerprint is
    /// its labels', it ends `now` when resolved, and no token sent it.
    pub fn raised(
        source: &str,
        status: Status,
        labels: Labels,
        annotations: Labels,
        starts_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        data: Option<serde_json::Value>,
    ) -> Event {
        Event {
            id: new_id(now),
            source: source.to_string(),
            kind: EventKind::Alert,
            status,
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at,
            ends_at: (status == Status::Resolved).then_some(now),
            received_at: now,
            data,
            ingested_by: None,
        }
    }
}

/// A new UUIDv7 for an event or run created at `now`.
pub fn new_id(now: DateTime<Utc>) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        now.timestamp().max(0) as u64,
        now.timestamp_subsec_nanos(),
    );
    uuid::Uuid::new_v7(ts).to_string()
}

/// A label fingerprint in the manner of Prometheus: FNV-1a 64 over sorted names and values.
///
/// Used when a payload carries no fingerprint of its own, so the same label set always maps to the
/// same condition.
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    // The separator byte 0xff cannot occur in valid UTF-8, so `a=bc` and `ab=c` differ.
    for (name, value) in labels {
        feed(name.as_bytes());
        feed(&[0xff]);
        feed(value.as_bytes());
        feed(&[0xff]);
    }
    format!("{hash:016x}")
}

/// An event for tests: a firing alert from `test` with these labels, received at the epoch.
#[cfg(test)]
pub(crate) fn test_event(status: Status, labels: &[(&str, &str)]) -> Event {
    Event {
        id: "e1".into(),
        source: "test".into(),
        kind: EventKind::Alert,
        status,
        fingerprint: "fp".into(),
        labels: labels
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        annotations: Labels::new(),
        starts_at: None,
        ends_at: None,
        received_at: DateTime::UNIX_EPOCH,
        data: None,
        ingested_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_names_and_values_not_order() {
        let a: Labels = [("a".into(), "bc".into())].into();
        let b: Labels = [("ab".into(), "c".into())].into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let c: Labels = [("x".into(), "1".into()), ("y".into(), "2".into())].into();
        let d: Labels = [("y".into(), "2".into()), ("x".into(), "1".into())].into();
        assert_eq!(fingerprint(&c), fingerprint(&d));
    }

    #[test]
    fn a_label_set_reads_and_writes_as_a_map_does() {
        let map: Labels = [
            ("service".into(), "api".into()),
            ("env".into(), "prod \"eu\"".into()),
            ("a".into(), String::new()),
        ]
        .into();
        let set = LabelSet::from(map.clone());
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            serde_json::to_string(&map).expect("json")
        );
        let back: LabelSet =
            serde_json::from_str(r#"{"service":"api","a":"","env":"prod \"eu\""}"#)
                .expect("reads a map in any order");
        assert_eq!(back, set);
        assert_eq!(set.get("env"), Some("prod \"eu\""));
        assert_eq!(set.get("a"), Some(""));
        assert_eq!(set.get("zone"), None);
        assert_eq!(set.to_labels(), map);
        assert_eq!(set.len(), 3);
        assert!(LabelSet::default().is_empty());
    }
}
