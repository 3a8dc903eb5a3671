//! `detectors:`: PromQL queries polled on an interval, each resulting series scored by its own
//! streaming anomaly detector ([`crate::anomaly`]).

use serde::Deserialize;

use crate::anomaly::Settings;
use crate::event::Labels;

/// One item of `detectors:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detector {
    /// Unique; the `detector` label of its events.
    pub name: String,
    /// An instant-vector PromQL query; every series it returns gets its own detector.
    pub query: String,
    /// How often to query and score, in seconds: one point per series per interval.
    #[serde(default = "defaults::interval")]
    pub interval_secs: f64,
    /// The score (0 to 1) at or above which a series' anomaly fires: `0.5` is about a
    /// one-in-100,000 deviation for the series. The detector's `alarm_score` by default.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// A firing anomaly resolves after this many values in a row inside the expected range.
    #[serde(default = "defaults::resolve_after")]
    pub resolve_after: u32,
    /// On the first start, learn from this much history (a range query, at most 10,000 points
    /// per series), so the detector scores from its first interval. 0 learns from now on.
    #[serde(default = "defaults::backfill")]
    pub backfill_secs: f64,
    /// At most this many series are tracked; more are ignored (and counted) until some vanish.
    #[serde(default = "defaults::max_series")]
    pub max_series: usize,
    /// A series the query has not returned for this long is forgotten (resolving its anomaly).
    #[serde(default = "defaults::forget_after")]
    pub forget_after_secs: f64,
    /// Added to every anomaly event (say, `severity: ticket`).
    #[serde(default)]
    pub labels: Labels,
    /// The detector's settings; the defaults need no tuning per series.
    #[serde(default)]
    pub settings: Settings,
    /// The Prometheus-compatible API to query; `prometheus.url` by default.
    #[serde(default)]
    pub prometheus_url: Option<String>,
}

impl Detector {
    /// The score that fires an anomaly.
    pub fn threshold(&self) -> f64 {
        self.threshold.unwrap_or(self.settings.alarm_score)
    }
}

mod defaults {
    pub fn interval() -> f64 {
        60.0
    }
    pub fn resolve_after() -> u32 {
        3
    }
    pub fn backfill() -> f64 {
        7.0 * 86_400.0
    }
    pub fn max_series() -> usize {
        1_000
    }
    pub fn forget_after() -> f64 {
        3_600.0
    }
}
