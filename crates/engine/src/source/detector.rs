//! Anomaly detectors: a PromQL query polled on an interval, one streaming detector per series it
//! returns (series come and go), and an `Anomaly` event when a series' score crosses the
//! threshold, resolved once its values are back in the expected range.
//!
//! The detectors' state is snapshot to the store (`detector:<name>`), so a restart resumes
//! learning where it stopped; the gap since is filled from a range query, and on the very first
//! start the detectors learn from `backfill_secs` of history so they score from the first interval.
//! A range query that fails because Prometheus is not up yet is retried every interval. A series
//! whose stored state was learned by an older detector, or with other settings, is learned afresh
//! from history. Each detector's series, with their latest score, expected range and state, are
//! published in [`DetectorStatuses`] for `homeostat detectors status` and the API.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use homeostat_core::anomaly::{self, Score};
use homeostat_core::config::detectors::Detector as Config;
use homeostat_core::event::{fingerprint, Labels};
use homeostat_core::{Event, Status};
use homeostat_store::Write;
use serde::{Deserialize, Serialize};

use crate::Handle;

/// The source name of anomaly events.
pub const SOURCE: &str = "detector";

/// Prometheus answers at most 11,000 points per series; stay under it.
const MAX_RANGE_POINTS: f64 = 10_000.0;

/// Intervals in which Prometheus answers the detector's query but not its range query before the
/// backfill is given up (the detectors then learn from now on): at start-up, Prometheus can come
/// up between the two queries.
const BACKFILL_ATTEMPTS_ANSWERED: u32 = 3;

/// Every detector's status as of its latest evaluation, by name.
#[derive(Clone, Default)]
pub struct DetectorStatuses(Arc<RwLock<BTreeMap<String, DetectorStatus>>>);

impl DetectorStatuses {
    /// Every detector, by name.
    pub fn all(&self) -> Vec<DetectorStatus> {
        self.0
            .read()
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<DetectorStatus> {
        self.0.read().ok().and_then(|map| map.get(name).cloned())
    }

    /// Forgets a detector a reload removed or restarted.
    pub(crate) fn remove(&self, name: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(name);
        }
    }

    fn set(&self, status: DetectorStatus) {
        if let Ok(mut map) = self.0.write() {
            map.insert(status.name.clone(), status);
        }
    }
}

/// One detector as of its latest evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct DetectorStatus {
    pub name: String,
    pub query: String,
    pub interval_secs: f64,
    /// The score at or above which a series' anomaly fires.
    pub threshold: f64,
    /// When Prometheus last answered the query; `null` before the first answer.
    pub evaluated_at: Option<DateTime<Utc>>,
    /// Why the latest query failed, if it did: the series are then as of the one before.
    pub error: Option<String>,
    pub backfill: Backfill,
    /// Series the query returned beyond `max_series` in the latest evaluation, not tracked.
    pub ignored_series: usize,
    pub series: Vec<SeriesStatus>,
}

/// Where the detector is with learning its series' history.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Backfill {
    /// None to learn: `backfill_secs` is 0, or the state came back from a snapshot with no gap.
    Skipped,
    /// Not read yet: the range query failed (Prometheus not up yet?); retried every interval.
    Pending {
        attempts: u32,
        error: Option<String>,
    },
    /// Learned `points` values of history.
    Done { points: usize },
    /// Prometheus answers the query but not the range query: learning from now on.
    Failed { error: String },
}

/// One series of a detector.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesStatus {
    pub labels: Labels,
    pub state: SeriesState,
    /// The latest value scored, when, its score and the range that was expected then.
    pub at: Option<DateTime<Utc>>,
    pub value: Option<f64>,
    pub score: Option<f64>,
    pub expected: Option<f64>,
    pub expected_low: Option<f64>,
    pub expected_high: Option<f64>,
    /// When its anomaly started firing, if it is.
    pub firing_since: Option<DateTime<Utc>>,
    /// What the detector made of the series' samples: values scored, timestamps that went back
    /// or repeated, gaps, values that were not numbers.
    pub input: anomaly::Input,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesState {
    /// Warming up: scores are 0 until it has learned `warmup_points` values.
    Learning,
    /// Scored, within what the detector expects or not firing.
    Normal,
    /// Its anomaly fires.
    Firing,
}

/// Every series of one detector.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Watch {
    /// By the fingerprint of the series' labels (JSON keys must be strings).
    series: BTreeMap<String, Tracked>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tracked {
    labels: Labels,
    detector: anomaly::Detector,
    /// The latest sample's time, unix seconds.
    last_at: i64,
    firing: Option<Firing>,
    /// The latest value scored and its verdict (absent in snapshots taken before it was kept).
    #[serde(default)]
    latest: Option<Latest>,
}

/// A value and its score, for the status (JSON has no infinities: an unbounded range is `None`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Latest {
    at: i64,
    value: f64,
    score: f64,
    expected: Option<f64>,
    expected_low: Option<f64>,
    expected_high: Option<f64>,
    learning: bool,
}

impl Latest {
    fn new(at: i64, value: f64, score: &Score) -> Latest {
        let finite = |number: f64| number.is_finite().then_some(number);
        Latest {
            at,
            value,
            score: score.score,
            expected: finite(score.expected),
            expected_low: finite(score.expected_low),
            expected_high: finite(score.expected_high),
            learning: score.learning,
        }
    }
}

impl Tracked {
    fn new(labels: Labels, config: &Config) -> Tracked {
        Tracked {
            labels,
            detector: anomaly::Detector::new(&config.settings),
            last_at: i64::MIN,
            firing: None,
            latest: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Firing {
    since: DateTime<Utc>,
    /// Values in a row inside the expected range since it fired.
    calm: u32,
}

/// What one evaluation did besides its events, for metrics and logs.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    pub events: Vec<Event>,
    /// Series not tracked because `max_series` were.
    pub ignored: usize,
}

impl Watch {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The latest sample time of the series seen least recently: where a gap fill starts.
    pub fn oldest_last_at(&self) -> Option<i64> {
        self.series.values().map(|tracked| tracked.last_at).min()
    }

    /// Forgets the series whose state was learned by an older detector (see
    /// [`anomaly::STATE_VERSION`]) or with other settings than `config`'s, so that they are
    /// learned afresh; returns how many. A firing anomaly on one stays recorded as it is, and
    /// resolves as any other once the series is back in range.
    pub fn forget_stale(&mut self, config: &Config) -> usize {
        let settings = anomaly::Detector::new(&config.settings).settings().clone();
        let before = self.series.len();
        self.series.retain(|_, tracked| {
            tracked.detector.state_version() == anomaly::STATE_VERSION
                && *tracked.detector.settings() == settings
        });
        before - self.series.len()
    }

    /// Every series' latest verdict and state.
    pub fn status(&self) -> Vec<SeriesStatus> {
        let time = |at: i64| Utc.timestamp_opt(at, 0).single();
        self.series
            .values()
            .map(|tracked| {
                let latest = tracked.latest.as_ref();
                let state = match (&tracked.firing, latest) {
                    (Some(_), _) => SeriesState::Firing,
                    (None, Some(latest)) if !latest.learning => SeriesState::Normal,
                    _ => SeriesState::Learning,
                };
                SeriesStatus {
                    labels: tracked.labels.clone(),
                    state,
                    at: latest.and_then(|latest| time(latest.at)),
                    value: latest.map(|latest| latest.value),
                    score: latest.map(|latest| latest.score),
                    expected: latest.and_then(|latest| latest.expected),
                    expected_low: latest.and_then(|latest| latest.expected_low),
                    expected_high: latest.and_then(|latest| latest.expected_high),
                    firing_since: tracked.firing.as_ref().map(|firing| firing.since),
                    input: tracked.detector.input(),
                }
            })
            .collect()
    }

    /// Learns from history without raising anything: each series' samples after its latest.
    pub fn learn(&mut self, config: &Config, history: BTreeMap<Labels, Vec<(f64, f64)>>) {
        for (labels, samples) in history {
            let labels = series_labels(labels);
            let key = fingerprint(&labels);
            if !self.series.contains_key(&key) && self.series.len() >= config.max_series {
                continue;
            }
            let tracked = self
                .series
                .entry(key)
                .or_insert_with(|| Tracked::new(labels, config));
            for (at, value) in samples {
                let at = at.floor() as i64;
                if at <= tracked.last_at {
                    continue;
                }
                if let Ok(score) = tracked.detector.observe(at, value) {
                    tracked.last_at = at;
                    tracked.latest = Some(Latest::new(at, value, &score));
                }
            }
        }
    }

    /// Scores one sample per series, and says which anomalies start or end.
    pub fn observe(
        &mut self,
        config: &Config,
        samples: BTreeMap<Labels, (f64, f64)>,
        now: DateTime<Utc>,
    ) -> Observed {
        let mut observed = Observed::default();
        let threshold = config.threshold();
        for (labels, (at, value)) in samples {
            let labels = series_labels(labels);
            let key = fingerprint(&labels);
            if !self.series.contains_key(&key) && self.series.len() >= config.max_series {
                observed.ignored += 1;
                continue;
            }
            let tracked = self
                .series
                .entry(key)
                .or_insert_with(|| Tracked::new(labels.clone(), config));
            let at = at.floor() as i64;
            if at <= tracked.last_at {
                // The same sample again (Prometheus had nothing newer): nothing to learn.
                continue;
            }
            // A value that is not a number (a ratio of zeros) is skipped, and counted.
            let Ok(score) = tracked.detector.observe(at, value) else {
                continue;
            };
            tracked.last_at = at;
            tracked.latest = Some(Latest::new(at, value, &score));
            if score.learning {
                continue;
            }
            match &mut tracked.firing {
                None if score.score >= threshold => {
                    tracked.firing = Some(Firing {
                        since: now,
                        calm: 0,
                    });
                    observed.events.push(event(
                        config,
                        &labels,
                        value,
                        &score,
                        Status::Firing,
                        now,
                        now,
                    ));
                }
                None => {}
                Some(firing) => {
                    let inside = value >= score.expected_low && value <= score.expected_high;
                    firing.calm = if inside { firing.calm + 1 } else { 0 };
                    if firing.calm >= config.resolve_after {
                        let since = firing.since;
                        tracked.firing = None;
                        observed.events.push(event(
                            config,
                            &labels,
                            value,
                            &score,
                            Status::Resolved,
                            since,
                            now,
                        ));
                    }
                }
            }
        }
        // Series the query stopped returning are forgotten after a while; an anomaly on one ends.
        let horizon = now.timestamp() - config.forget_after_secs as i64;
        let gone: Vec<String> = self
            .series
            .iter()
            .filter(|(_, tracked)| tracked.last_at < horizon)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(Tracked {
                labels,
                firing: Some(firing),
                ..
            }) = self.series.remove(&key)
            {
                observed
                    .events
                    .push(gone_event(config, &labels, firing.since, now));
            }
        }
        observed
    }
}

/// A series' identity: its labels without the metric name, which a query's functions drop anyway.
fn series_labels(mut labels: Labels) -> Labels {
    labels.remove("__name__");
    labels
}

fn event_labels(config: &Config, series: &Labels) -> Labels {
    let mut labels = series.clone();
    labels.extend(config.labels.clone());
    labels.insert("alertname".into(), "Anomaly".into());
    labels.insert("detector".into(), config.name.clone());
    labels
}

fn describe(series: &Labels) -> String {
    if series.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = series
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Numbers as people read them: four significant digits.
fn show(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let digits = (3 - value.abs().log10().floor() as i32).max(0) as usize;
    format!("{value:.digits$}")
}

fn event(
    config: &Config,
    series: &Labels,
    value: f64,
    score: &Score,
    status: Status,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Event {
    let labels = event_labels(config, series);
    let range = format!(
        "{} to {}",
        show(score.expected_low),
        show(score.expected_high)
    );
    let summary = match status {
        Status::Firing => {
            let times = if score.expected.abs() > f64::EPSILON {
                format!(" is {:.1}x its usual", value / score.expected)
            } else {
                " is unusual".to_string()
            };
            format!(
                "`{}`{}{times}: {} where {range} was expected (anomaly score {:.2})",
                config.name,
                describe(series),
                show(value),
                score.score
            )
        }
        Status::Resolved => format!(
            "`{}`{} is back in its usual range: {} ({range} expected)",
            config.name,
            describe(series),
            show(value)
        ),
    };
    Event::raised(
        SOURCE,
        status,
        labels,
        Labels::from([("summary".to_string(), summary)]),
        Some(since),
        now,
        Some(serde_json::json!({
            "detector": config.name,
            "query": config.query,
            "value": value,
            "score": score.score,
            "expected": score.expected,
            "expected_low": score.expected_low,
            "expected_high": score.expected_high,
        })),
    )
}

fn gone_event(config: &Config, series: &Labels, since: DateTime<Utc>, now: DateTime<Utc>) -> Event {
    let labels = event_labels(config, series);
    Event::raised(
        SOURCE,
        Status::Resolved,
        labels,
        Labels::from([(
            "summary".to_string(),
            format!(
                "`{}`{} is gone from the query's results",
                config.name,
                describe(series)
            ),
        )]),
        Some(since),
        now,
        None,
    )
}

fn snapshot_name(config: &Config) -> String {
    format!("detector:{}", config.name)
}

/// Runs one detector forever, publishing its status in `statuses`.
pub async fn run(
    config: Config,
    prometheus_url: String,
    handle: Handle,
    statuses: DetectorStatuses,
    client: reqwest::Client,
) {
    let name = snapshot_name(&config);
    let timeout = Duration::from_secs_f64(config.interval_secs.clamp(1.0, 30.0));
    let mut watch: Watch = match handle.store().snapshot(&name).await {
        Ok(Some((_, body))) => serde_json::from_slice(&body).unwrap_or_else(|error| {
            tracing::warn!(detector = %config.name, %error, "cannot read the detector's snapshot; learning afresh");
            Watch::default()
        }),
        _ => Watch::default(),
    };
    let stale = watch.forget_stale(&config);
    if stale > 0 {
        tracing::info!(detector = %config.name, series = stale, "series learned by an older detector or with other settings; learning them afresh from history");
    }
    if !watch.is_empty() {
        tracing::info!(detector = %config.name, series = watch.len(), "detector state restored from its snapshot");
    }
    // Learn what happened while the daemon was down, or the history on a first start (and for
    // series learned afresh).
    let now = handle.clock().now().timestamp() as f64;
    let start = match watch.oldest_last_at() {
        Some(last) if stale == 0 => last as f64 + config.interval_secs,
        _ => now - config.backfill_secs,
    };
    let mut status = DetectorStatus {
        name: config.name.clone(),
        query: config.query.clone(),
        interval_secs: config.interval_secs,
        threshold: config.threshold(),
        evaluated_at: None,
        error: None,
        backfill: if start < now {
            Backfill::Pending {
                attempts: 0,
                error: None,
            }
        } else {
            Backfill::Skipped
        },
        ignored_series: 0,
        series: watch.status(),
    };
    statuses.set(status.clone());
    // Intervals in which Prometheus answered the query while the backfill was still pending.
    let mut answered_without_backfill = 0;
    let series_gauge = vec![("detector", config.name.clone())];
    // Snapshots every five minutes or so, and with every event.
    let snapshot_every = (300.0 / config.interval_secs).ceil().max(1.0) as u32;
    let mut since_snapshot = 0u32;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(config.interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Backfill::Pending { attempts, .. } = status.backfill {
            status.backfill = backfill(
                &config,
                &prometheus_url,
                &handle,
                &client,
                &mut watch,
                start,
                attempts,
            )
            .await;
        }
        let samples =
            match crate::prometheus::instant_at(&client, &prometheus_url, &config.query, timeout)
                .await
            {
                Ok(samples) => samples,
                Err(error) => {
                    tracing::warn!(detector = %config.name, %error, "cannot query");
                    handle.metrics().source_error(SOURCE, "query_failed");
                    status.error = Some(error);
                    statuses.set(status.clone());
                    continue;
                }
            };
        if let Backfill::Pending { error, .. } = &status.backfill {
            // Prometheus is up but the history did not come: scoring now would make the
            // history unusable (it is older than what was scored), so wait a few intervals.
            answered_without_backfill += 1;
            if answered_without_backfill < BACKFILL_ATTEMPTS_ANSWERED {
                status.error = None;
                statuses.set(status.clone());
                continue;
            }
            let error = error.clone().unwrap_or_default();
            tracing::warn!(detector = %config.name, %error, "cannot read history although the query answers; learning from now on");
            status.backfill = Backfill::Failed { error };
        }
        let observed = watch.observe(&config, samples, handle.clock().now());
        if observed.ignored > 0 {
            handle.metrics().source_error(SOURCE, "too_many_series");
        }
        handle
            .metrics()
            .detector_series
            .get_or_create(&series_gauge)
            .set(watch.len() as i64);
        status.evaluated_at = Some(handle.clock().now());
        status.error = None;
        status.ignored_series = observed.ignored;
        status.series = watch.status();
        statuses.set(status.clone());
        since_snapshot += 1;
        if observed.events.is_empty() && since_snapshot < snapshot_every {
            continue;
        }
        since_snapshot = 0;
        for event in &observed.events {
            tracing::info!(detector = %config.name, status = event.status.as_str(), summary = %event.annotations.get("summary").map(String::as_str).unwrap_or(""), "anomaly");
        }
        let snapshot = match serde_json::to_vec(&watch) {
            Ok(body) => Some(Write::Snapshot {
                name: name.clone(),
                seq: 0,
                body,
            }),
            Err(error) => {
                tracing::warn!(detector = %config.name, %error, "cannot snapshot");
                None
            }
        };
        // The events and the state that raised them commit together.
        handle.journal_own(SOURCE, observed.events, snapshot).await;
    }
}

/// Reads the history from `start` (at most `MAX_RANGE_POINTS` intervals back) and learns it;
/// says how that went. `attempts` is how many times it failed before.
async fn backfill(
    config: &Config,
    prometheus_url: &str,
    handle: &Handle,
    client: &reqwest::Client,
    watch: &mut Watch,
    start: f64,
    attempts: u32,
) -> Backfill {
    let now = handle.clock().now().timestamp() as f64;
    let start = start.max(now - MAX_RANGE_POINTS * config.interval_secs);
    let range = (start, now, config.interval_secs);
    match crate::prometheus::range(
        client,
        prometheus_url,
        &config.query,
        range,
        Duration::from_secs(60),
    )
    .await
    {
        Ok(history) => {
            let points: usize = history.values().map(Vec::len).sum();
            watch.learn(config, history);
            tracing::info!(detector = %config.name, series = watch.len(), points, attempts = attempts + 1, "detector learned from history");
            Backfill::Done { points }
        }
        Err(error) => {
            if attempts == 0 {
                tracing::warn!(detector = %config.name, %error, "cannot read history yet; retrying every interval");
            }
            handle.metrics().source_error(SOURCE, "backfill_failed");
            Backfill::Pending {
                attempts: attempts + 1,
                error: Some(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time(at: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(at, 0).single().unwrap_or_default()
    }

    fn config() -> Config {
        serde_yaml_ng::from_str(
            "{name: latency, query: 'p99_latency_seconds', interval_secs: 60, labels: {severity: ticket}, max_series: 2, forget_after_secs: 600}",
        )
        .expect("a valid detector")
    }

    fn series(service: &str) -> Labels {
        Labels::from([
            ("__name__".to_string(), "p99_latency_seconds".to_string()),
            ("service".to_string(), service.to_string()),
        ])
    }

    /// A day-periodic latency around 0.2s with a little deterministic wobble.
    fn normal(at: i64) -> f64 {
        let day = (at % 86_400) as f64 / 86_400.0;
        0.2 + 0.05 * (day * std::f64::consts::TAU).sin() + 0.004 * ((at / 60) % 7) as f64
    }

    #[test]
    fn a_spike_fires_once_and_resolves_when_values_are_back_in_range() {
        let config = config();
        let mut watch = Watch::default();
        let start = 1_700_000_000 - 1_700_000_000 % 86_400;
        let history: Vec<(f64, f64)> = (0..3 * 1440)
            .map(|i| {
                let at = start + i * 60;
                (at as f64, normal(at))
            })
            .collect();
        watch.learn(&config, BTreeMap::from([(series("checkout"), history)]));
        let mut at = start + 3 * 1440 * 60;
        let mut step = |watch: &mut Watch, value: Option<f64>| {
            at += 60;
            let value = value.unwrap_or_else(|| normal(at));
            watch.observe(
                &config,
                BTreeMap::from([(series("checkout"), (at as f64, value))]),
                time(at),
            )
        };
        for _ in 0..30 {
            assert!(step(&mut watch, None).events.is_empty());
        }
        let fired = step(&mut watch, Some(1.0));
        assert_eq!(fired.events.len(), 1, "{fired:#?}");
        let event = &fired.events[0];
        assert_eq!(event.status, Status::Firing);
        assert_eq!(event.labels["alertname"], "Anomaly");
        assert_eq!(event.labels["detector"], "latency");
        assert_eq!(event.labels["service"], "checkout");
        assert_eq!(event.labels["severity"], "ticket");
        assert!(!event.labels.contains_key("__name__"));
        let summary = &event.annotations["summary"];
        assert!(summary.contains("x its usual: 1.000 where"), "{summary}");
        let mut resolved = None;
        for _ in 0..10 {
            let observed = step(&mut watch, None);
            if let Some(event) = observed.events.into_iter().next() {
                resolved = Some(event);
                break;
            }
        }
        let resolved = resolved.expect("the anomaly resolves");
        assert_eq!(resolved.status, Status::Resolved);
        assert_eq!(resolved.fingerprint, event.fingerprint);
        assert_eq!(resolved.starts_at, event.starts_at);
    }

    #[test]
    fn series_are_bounded_and_forgotten_and_the_state_round_trips() {
        let config = config();
        let mut watch = Watch::default();
        let at = 1_700_000_000;
        let samples: BTreeMap<Labels, (f64, f64)> = ["a", "b", "c"]
            .into_iter()
            .map(|name| (series(name), (at as f64, 1.0)))
            .collect();
        let observed = watch.observe(&config, samples, time(at));
        assert_eq!(watch.len(), 2);
        assert_eq!(observed.ignored, 1);
        // The same snapshot restored scores the next value identically.
        let body = serde_json::to_vec(&watch).expect("serializes");
        let mut restored: Watch = serde_json::from_slice(&body).expect("deserializes");
        let next = BTreeMap::from([(series("a"), ((at + 60) as f64, 1.0))]);
        watch.observe(&config, next.clone(), time(at + 60));
        restored.observe(&config, next, time(at + 60));
        assert_eq!(
            serde_json::to_value(&watch).unwrap(),
            serde_json::to_value(&restored).unwrap()
        );
        // `b` stopped coming: forgotten after `forget_after_secs`.
        let later = BTreeMap::from([(series("a"), ((at + 900) as f64, 1.0))]);
        watch.observe(&config, later, time(at + 900));
        assert_eq!(watch.len(), 1);
        assert_eq!(watch.oldest_last_at(), Some(at + 900));
    }

    #[test]
    fn the_status_shows_each_series_score_range_and_state() {
        let config = config();
        let mut watch = Watch::default();
        let start = 1_700_000_000 - 1_700_000_000 % 86_400;
        let history: Vec<(f64, f64)> = (0..3 * 1440)
            .map(|i| {
                let at = start + i * 60;
                (at as f64, normal(at))
            })
            .collect();
        watch.learn(&config, BTreeMap::from([(series("checkout"), history)]));
        // A series seen once is still learning; the learned one is normal with a range.
        let at = start + 3 * 1440 * 60;
        let samples = BTreeMap::from([
            (series("checkout"), (at as f64, normal(at))),
            (series("cart"), (at as f64, 1.0)),
        ]);
        watch.observe(&config, samples, time(at));
        let status = watch.status();
        let state = |service: &str| {
            status
                .iter()
                .find(|one| one.labels["service"] == service)
                .expect("the series is in the status")
                .clone()
        };
        let checkout = state("checkout");
        assert_eq!(checkout.state, SeriesState::Normal);
        assert_eq!(checkout.value, Some(normal(at)));
        assert_eq!(checkout.at, Some(time(at)));
        let (low, high) = (
            checkout.expected_low.unwrap(),
            checkout.expected_high.unwrap(),
        );
        assert!(low < normal(at) && normal(at) < high, "{checkout:?}");
        assert_eq!(checkout.input.scored, 3 * 1440 + 1);
        assert_eq!(state("cart").state, SeriesState::Learning);
        // A spike fires, and the status says so.
        let observed = watch.observe(
            &config,
            BTreeMap::from([(series("checkout"), ((at + 60) as f64, 1.0))]),
            time(at + 60),
        );
        assert_eq!(observed.events.len(), 1);
        let status = watch.status();
        let checkout = status
            .iter()
            .find(|one| one.labels["service"] == "checkout")
            .expect("the series is in the status");
        assert_eq!(checkout.state, SeriesState::Firing);
        assert_eq!(checkout.firing_since, Some(time(at + 60)));
        // JSON has no infinities: the status serializes whatever the range.
        assert!(serde_json::to_string(&status).is_ok());
    }

    #[test]
    fn series_of_an_older_detector_or_other_settings_are_learned_afresh() {
        let config = config();
        let mut watch = Watch::default();
        let at = 1_700_000_000;
        let samples: BTreeMap<Labels, (f64, f64)> = ["a", "b"]
            .into_iter()
            .map(|name| (series(name), (at as f64, 1.0)))
            .collect();
        watch.observe(&config, samples, time(at));
        // `a` as a snapshot from before the detector recorded its version.
        let mut stored = serde_json::to_value(&watch).expect("serializes");
        let key = fingerprint(&series_labels(series("a")));
        let detector = stored["series"][&key]["detector"]
            .as_object_mut()
            .expect("a detector");
        detector.remove("version");
        let mut restored: Watch = serde_json::from_value(stored).expect("an old snapshot reads");
        assert_eq!(restored.forget_stale(&config), 1);
        assert_eq!(restored.len(), 1);
        // Other settings in the config: every series is learned afresh.
        let mut other = config.clone();
        other.settings.window_points = 64;
        assert_eq!(restored.forget_stale(&other), 1);
        assert!(restored.is_empty());
    }
}
