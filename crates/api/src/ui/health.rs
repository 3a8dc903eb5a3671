//! The health page's figures: what `/metrics` says (read back from its own text, so the page and
//! the scrape never disagree), the runs that need a person, and detection and recovery times per
//! week from the incidents in the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, Duration, Utc};
use homeostat_core::incident::{Incident, State as IncidentState};
use homeostat_engine::Handle;
use homeostat_store::{IncidentQuery, RunQuery, RunStatus};
use serde::Serialize;

use crate::error::ApiError;

/// How far back detection and recovery times go, and how many incidents they read at most.
const WEEKS: i64 = 4;
const MAX_INCIDENTS: usize = 10_000;

/// One line of the metrics text: a name, its labels, a value.
#[derive(Debug, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses OpenMetrics text as `prometheus-client` writes it: `name{a="b",c="d"} value`. Comments
/// and lines it cannot read are passed over.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), BTreeMap::new()),
                Some((name, rest)) => (name.to_string(), labels(rest.strip_suffix('}')?)?),
            };
            Some(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// `a="b",c="d"`, with `\"`, `\\` and `\n` escapes in the values.
fn labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (index, character) = chars.next()?;
            match character {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break index,
                other => value.push(other),
            }
        };
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The sum of every sample named `name`, by the value of `label`.
fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for sample in samples.iter().filter(|sample| sample.name == name) {
        let key = sample.labels.get(label).cloned().unwrap_or_default();
        *sums.entry(key).or_insert(0.0) += sample.value;
    }
    sums
}

fn total(samples: &[Sample], name: &str) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|sample| sample.name == name)
        .map(|sample| sample.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// The `q` quantile of a histogram from its cumulative buckets: the upper bound of the first
/// bucket that reaches it (as fine as the buckets are).
fn quantile(samples: &[Sample], name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|sample| sample.name == format!("{name}_bucket"))
        .filter_map(|sample| {
            let bound = match sample.labels.get("le")?.as_str() {
                "+Inf" => f64::INFINITY,
                text => text.parse().ok()?,
            };
            Some((bound, sample.value))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = buckets.last()?.1;
    if count == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * count)
        .map(|(bound, _)| *bound)
        .filter(|bound| bound.is_finite())
}

/// When the page was last drawn, and the events per source then.
type Reading = (DateTime<Utc>, BTreeMap<String, f64>);

/// The previous reading, for rates between two views.
#[derive(Default)]
pub(crate) struct Previous(Mutex<Option<Reading>>);

#[derive(Serialize)]
struct Source {
    name: String,
    events: f64,
    errors: f64,
    /// Events a second since the previous view, when it was between 5 s and 10 min ago.
    rate: Option<f64>,
}

#[derive(Serialize)]
struct Week {
    starts: String,
    incidents: usize,
    /// Mean seconds from an incident's start to its opening.
    mttd: Option<f64>,
    /// Mean seconds from an incident's start to its resolution, over those resolved.
    mttr: Option<f64>,
    resolved: usize,
}

/// Everything the health page shows.
pub(crate) async fn figures(
    handle: &Handle,
    previous: &Previous,
) -> Result<serde_json::Value, ApiError> {
    let now = handle.clock().now();
    let samples = parse(&handle.metrics().render());
    let received = by_label(&samples, "homeostat_events_received_total", "source");
    let errors = by_label(&samples, "homeostat_source_errors_total", "source");
    let mut rates = BTreeMap::new();
    {
        let mut last = previous
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, totals)) = last.as_ref() {
            let seconds = (now - *at).num_milliseconds() as f64 / 1000.0;
            if (5.0..=600.0).contains(&seconds) {
                for (source, count) in &received {
                    let before = totals.get(source).copied().unwrap_or(0.0);
                    rates.insert(source.clone(), (count - before).max(0.0) / seconds);
                }
            }
        }
        if last
            .as_ref()
            .is_none_or(|(at, _)| (now - *at).num_seconds() >= 5)
        {
            *last = Some((now, received.clone()));
        }
    }
    let mut names: Vec<&String> = received.keys().chain(errors.keys()).collect();
    names.sort();
    names.dedup();
    let sources: Vec<Source> = names
        .into_iter()
        .map(|name| Source {
            name: name.clone(),
            events: received.get(name).copied().unwrap_or(0.0),
            errors: errors.get(name).copied().unwrap_or(0.0),
            rate: rates.get(name).copied(),
        })
        .collect();
    let commits = total(&samples, "homeostat_journal_commit_seconds_count");
    let commit_seconds = total(&samples, "homeostat_journal_commit_seconds_sum");
    let attention = handle
        .store()
        .runs(&RunQuery {
            limit: 20,
            status: Some(RunStatus::NeedsAttention),
            ..Default::default()
        })
        .await
        .map_err(crate::read::store_error)?;
    let incidents = handle
        .store()
        .incidents(&IncidentQuery {
            limit: MAX_INCIDENTS,
            opened_after: Some(now - Duration::weeks(WEEKS)),
            ..Default::default()
        })
        .await
        .map_err(crate::read::store_error)?;
    Ok(serde_json::json!({
        "sources": sources,
        "writer": {
            "accepting": total(&samples, "homeostat_journal_accepting").map(|value| value > 0.0),
            "commits": commits,
            "mean_commit_ms": commits.zip(commit_seconds).filter(|(count, _)| *count > 0.0).map(|(count, sum)| sum / count * 1000.0),
            "p99_commit_ms": quantile(&samples, "homeostat_journal_commit_seconds", 0.99).map(|seconds| seconds * 1000.0),
            "failures": by_label(&samples, "homeostat_journal_commit_failures_total", "reason"),
            "runs_waiting": total(&samples, "homeostat_runs_waiting_for_journal"),
            "store_bytes": by_label(&samples, "homeostat_store_bytes", "what"),
        },
        "now": {
            "incidents_open": total(&samples, "homeostat_incidents_open"),
            "active_alerts": total(&samples, "homeostat_alerts_active"),
            "runs_active": total(&samples, "homeostat_runs_active"),
            "http_connections": total(&samples, "homeostat_http_connections"),
        },
        "attention": attention,
        "weeks": weeks(&incidents, now),
        "read_incidents": incidents.len(),
        "capped": incidents.len() == MAX_INCIDENTS,
    }))
}

/// Detection and recovery times per week (weeks start on Monday, UTC), newest first.
fn weeks(incidents: &[Incident], now: DateTime<Utc>) -> Vec<Week> {
    let monday = |at: DateTime<Utc>| {
        let date = at.date_naive();
        date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
    };
    let this_week = monday(now);
    (0..WEEKS)
        .map(|back| {
            let starts = this_week - Duration::weeks(back);
            let of_week: Vec<&Incident> = incidents
                .iter()
                .filter(|incident| monday(incident.opened_at) == starts)
                .collect();
            let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| {
                (to - from).num_milliseconds().max(0) as f64 / 1000.0
            };
            let detect: Vec<f64> = of_week
                .iter()
                .map(|incident| seconds(incident.started_at, incident.opened_at))
                .collect();
            let recover: Vec<f64> = of_week
                .iter()
                .filter(|incident| incident.state == IncidentState::Resolved)
                .filter_map(|incident| Some(seconds(incident.started_at, incident.resolved_at?)))
                .collect();
            let mean = |values: &[f64]| {
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            };
            Week {
                starts: starts.to_string(),
                incidents: of_week.len(),
                mttd: mean(&detect),
                mttr: mean(&recover),
                resolved: recover.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metrics_text_back() {
        let text = "# HELP x y\n# TYPE homeostat_events_received counter\n\
            homeostat_events_received_total{source=\"am\"} 12\n\
            homeostat_events_received_total{source=\"we\\\"ird\",kind=\"a,b\"} 3\n\
            homeostat_journal_commit_seconds_bucket{le=\"0.001\"} 90\n\
            homeostat_journal_commit_seconds_bucket{le=\"0.01\"} 99\n\
            homeostat_journal_commit_seconds_bucket{le=\"+Inf\"} 100\n\
            homeostat_runs_active 2\n# EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 6);
        let sources = by_label(&samples, "homeostat_events_received_total", "source");
        assert_eq!(sources.get("am"), Some(&12.0));
        assert_eq!(sources.get("we\"ird"), Some(&3.0));
        assert_eq!(
            samples[1].labels.get("kind").map(String::as_str),
            Some("a,b")
        );
        assert_eq!(total(&samples, "homeostat_runs_active"), Some(2.0));
        assert_eq!(total(&samples, "homeostat_nothing"), None);
        assert_eq!(
            quantile(&samples, "homeostat_journal_commit_seconds", 0.5),
            Some(0.001)
        );
        assert_eq!(
            quantile(&samples, "homeostat_journal_commit_seconds", 0.99),
            Some(0.01)
        );
        assert_eq!(
            quantile(&samples, "homeostat_journal_commit_seconds", 1.0),
            None
        );
    }
}
