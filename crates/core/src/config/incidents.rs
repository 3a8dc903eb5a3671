//! Top-level `incidents:`: how events are correlated into incidents.

use serde::{Deserialize, Serialize};

/// Top-level `incidents:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incidents {
    /// Labels whose values group events into one incident, as Alertmanager's `group_by`. An entry
    /// may list alternatives, `service|app|deployment`: the first label an event has gives the
    /// value, so sources that name the same thing differently correlate. `["..."]` groups by every
    /// label (one incident per alert). An event with none of these labels is its own incident.
    #[serde(default = "defaults::group_by")]
    pub group_by: Vec<String>,
    /// An event that never resolves (kind `info`, such as a Kubernetes event) holds its incident
    /// open this long after it was seen.
    #[serde(default = "defaults::window_secs")]
    pub window_secs: u64,
    /// A resolved incident whose group fires again within this long is reopened, not a new one.
    #[serde(default = "defaults::reopen_window_secs")]
    pub reopen_window_secs: u64,
    #[serde(default)]
    pub flapping: Flapping,
    /// Alertmanager's inhibition: while a source alert fires, target alerts with the same values
    /// of the `equal` labels are muted.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    /// How far back `change` events (deploys) for the same group count as recent changes.
    #[serde(default = "defaults::change_lookback_secs")]
    pub change_lookback_secs: u64,
    /// Told when an incident escalates (a remediation did not clear it, a loop was stopped), with
    /// what was tried. `runs.attention_notifier` when unset.
    #[serde(default)]
    pub escalation_notifier: Option<String>,
    /// How often time-driven work is checked: remediation verification deadlines, flapping that
    /// went quiet, momentary members aging out.
    #[serde(default = "defaults::sweep_secs")]
    pub sweep_secs: u64,
    /// The most incidents tracked at once: open ones, and resolved ones within
    /// `reopen_window_secs`, the overflow incident not counted. Past it, an alert that would open a new incident joins one overflow
    /// incident instead (group `{homeostat_overflow="true"}`), so an alert storm of distinct groups
    /// cannot grow memory (about 4 KB an incident) and the decide stage without bound. Its alerts
    /// are journaled and decided as any others. `0`: no limit.
    #[serde(default = "defaults::max_open")]
    pub max_open: u64,
}

impl Default for Incidents {
    fn default() -> Self {
        Self {
            group_by: defaults::group_by(),
            window_secs: defaults::window_secs(),
            reopen_window_secs: defaults::reopen_window_secs(),
            flapping: Flapping::default(),
            inhibit_rules: Vec::new(),
            change_lookback_secs: defaults::change_lookback_secs(),
            escalation_notifier: None,
            sweep_secs: defaults::sweep_secs(),
            max_open: defaults::max_open(),
        }
    }
}

/// `incidents.flapping`: an alert that changes state this many times within the window is
/// flapping; its incident stops paging until the alert is quiet for a whole window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flapping {
    #[serde(default = "defaults::flap_transitions")]
    pub transitions: u32,
    #[serde(default = "defaults::flap_window_secs")]
    pub window_secs: u64,
}

impl Default for Flapping {
    fn default() -> Self {
        Self {
            transitions: defaults::flap_transitions(),
            window_secs: defaults::flap_window_secs(),
        }
    }
}

/// One inhibition rule, as Alertmanager's `inhibit_rules` entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_matchers: Vec<String>,
    pub target_matchers: Vec<String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

mod defaults {
    /// `service`, or Sloth's `sloth_service` where an alert has no `service`: burn-rate alerts
    /// (generated rules, or the daemon's own SLO evaluation) name their service as Sloth does,
    /// and keep that name so the generated rules match Sloth's exactly; grouping takes either,
    /// so a burn joins its service's other alerts.
    pub fn group_by() -> Vec<String> {
        vec!["service|sloth_service".into()]
    }
    pub fn window_secs() -> u64 {
        900
    }
    pub fn reopen_window_secs() -> u64 {
        3600
    }
    pub fn flap_transitions() -> u32 {
        4
    }
    pub fn flap_window_secs() -> u64 {
        1800
    }
    pub fn change_lookback_secs() -> u64 {
        3600
    }
    pub fn sweep_secs() -> u64 {
        5
    }
    /// About 200 MB of incidents; far more than people can work, far less than a storm opens.
    pub fn max_open() -> u64 {
        50_000
    }
}
