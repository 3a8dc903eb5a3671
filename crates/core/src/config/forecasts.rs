//! `forecasts:`: a metric forecast on an interval, and a `CapacityForecast` alert when the forecast
//! crosses a capacity within the horizon, so a rule can scale before the demand arrives.

use serde::Deserialize;

use crate::event::Labels;

/// One item of `forecasts:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    /// Unique; the `forecast` label of its events.
    pub name: String,
    /// PromQL; each series it returns is forecast on its own (at most `max_series`).
    pub query: String,
    /// The value the series must not reach, say the requests per second the replicas serve.
    pub capacity: f64,
    /// How far ahead to look, in seconds: the lead time the scaling needs, and some.
    #[serde(default = "defaults::horizon")]
    pub horizon_secs: f64,
    /// How much history each fit reads (a range query): two weeks lets a weekly cycle be learned.
    #[serde(default = "defaults::history")]
    pub history_secs: f64,
    /// The range query's step, and so the forecast's.
    #[serde(default = "defaults::step")]
    pub step_secs: f64,
    /// How often to refit, in seconds.
    #[serde(default = "defaults::step")]
    pub interval_secs: f64,
    /// Compare the capacity with the forecast's `upper` bound (act early, the default), `point`
    /// (the expected value) or `lower` (act only when it is almost sure).
    #[serde(default = "defaults::bound")]
    pub bound: String,
    /// The prediction interval's coverage.
    #[serde(default = "defaults::level")]
    pub level: f64,
    /// Seasonal periods in steps; from the step and the history when not given.
    #[serde(default)]
    pub seasonal_periods: Option<Vec<usize>>,
    #[serde(default = "defaults::max_series")]
    pub max_series: usize,
    /// Added to every event (`service`, `severity`, ...).
    #[serde(default)]
    pub labels: Labels,
    /// The Prometheus-compatible API to query; `prometheus.url` by default.
    #[serde(default)]
    pub prometheus_url: Option<String>,
}

mod defaults {
    pub fn horizon() -> f64 {
        3_600.0
    }
    pub fn history() -> f64 {
        14.0 * 86_400.0
    }
    pub fn step() -> f64 {
        300.0
    }
    pub fn bound() -> String {
        "upper".into()
    }
    pub fn level() -> f64 {
        0.95
    }
    pub fn max_series() -> usize {
        50
    }
}
