//! Anomaly detectors: a PromQL query polled on an interval, one streaming detector per series it
//! returns (series come and go), and an `Anomaly` event when a series' score crosses the
//! threshold, resolved once its values are back in the expected range.
//!
//! The detectors' state is snapshot to the store (`detector:<name>`), so a restart resumes
//! learning where it stopped; the gap since is filled from a range query, and on the very first
//! start the detectors learn from `backfill_secs` of history so they score from the first interval.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
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

    /// Learns from history without raising anything: each series' samples after its latest.
    pub fn learn(&mut self, config: &Config, history: BTreeMap<Labels, Vec<(f64, f64)>>) {
        for (labels, samples) in history {
            let labels = series_labels(labels);
            let key = fingerprint(&labels);
            if !self.series.contains_key(&key) && self.series.len() >= config.max_series {
                continue;
            }
            let tracked = self.series.entry(key).or_insert_with(|| Tracked {
                labels,
                detector: anomaly::Detector::new(&config.settings),
                last_at: i64::MIN,
                firing: None,
            });
            for (at, value) in samples {
                let at = at.floor() as i64;
                if at <= tracked.last_at {
                    continue;
                }
                if tracked.detector.observe(at, value).is_ok() {
                    tracked.last_at = at;
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
            let tracked = self.series.entry(key).or_insert_with(|| Tracked {
                labels: labels.clone(),
                detector: anomaly::Detector::new(&config.settings),
                last_at: i64::MIN,
                firing: None,
            });
            let at = at.floor() as i64;
            if at <= tracked.last_at {
                // The same sample again (Prometheus had nothing newer): nothing to learn.
                continue;
            }
            let Ok(score) = tracked.detector.observe(at, value) else {
                continue;
            };
            tracked.last_at = at;
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

/// Runs one detector forever.
pub async fn run(config: Config, prometheus_url: String, handle: Handle, client: reqwest::Client) {
    let name = snapshot_name(&config);
    let timeout = Duration::from_secs_f64(config.interval_secs.clamp(1.0, 30.0));
    let mut watch: Watch = match handle.store().snapshot(&name).await {
        Ok(Some((_, body))) => serde_json::from_slice(&body).unwrap_or_else(|error| {
            tracing::warn!(detector = %config.name, %error, "cannot read the detector's snapshot; learning afresh");
            Watch::default()
        }),
        _ => Watch::default(),
    };
    if !watch.is_empty() {
        tracing::info!(detector = %config.name, series = watch.len(), "detector state restored from its snapshot");
    }
    // Learn what happened while the daemon was down, or the history on a first start.
    let now = handle.clock().now().timestamp() as f64;
    let start = match watch.oldest_last_at() {
        Some(last) => last as f64 + config.interval_secs,
        None => now - config.backfill_secs,
    }
    .max(now - MAX_RANGE_POINTS * config.interval_secs);
    if start < now {
        let range = (start, now, config.interval_secs);
        match crate::prometheus::range(
            &client,
            &prometheus_url,
            &config.query,
            range,
            Duration::from_secs(60),
        )
        .await
        {
            Ok(history) => {
                let points: usize = history.values().map(Vec::len).sum();
                watch.learn(&config, history);
                tracing::info!(detector = %config.name, series = watch.len(), points, "detector learned from history");
            }
            Err(error) => {
                tracing::warn!(detector = %config.name, %error, "cannot read history; learning from now on");
            }
        }
    }
    let series_gauge = vec![("detector", config.name.clone())];
    // Snapshots every five minutes or so, and with every event.
    let snapshot_every = (300.0 / config.interval_secs).ceil().max(1.0) as u32;
    let mut since_snapshot = 0u32;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(config.interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let samples =
            match crate::prometheus::instant_at(&client, &prometheus_url, &config.query, timeout)
                .await
            {
                Ok(samples) => samples,
                Err(error) => {
                    tracing::warn!(detector = %config.name, %error, "cannot query");
                    handle.metrics().source_error(SOURCE, "query_failed");
                    continue;
                }
            };
        let observed = watch.observe(&config, samples, handle.clock().now());
        if observed.ignored > 0 {
            handle.metrics().source_error(SOURCE, "too_many_series");
        }
        handle
            .metrics()
            .detector_series
            .get_or_create(&series_gauge)
            .set(watch.len() as i64);
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
}
