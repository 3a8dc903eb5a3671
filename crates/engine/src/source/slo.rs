//! The SLO evaluator: on an interval, reads each SLO's error ratio over every alert window from a
//! Prometheus-compatible API, keeps the error budget's status for `homeostat slo status`, the API
//! and `/metrics`, and journals burn-rate alerts as events when they start or stop firing, so they
//! correlate into incidents and trigger rules like any alert.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use homeostat_core::event::Labels;
use homeostat_core::rule::SloTarget;
use homeostat_core::slo::burn::{Samples, Severity, SloStatus, Tracker, SOURCE};
use homeostat_core::Status;
use homeostat_store::EventQuery;
use serde::Serialize;

use crate::Handle;

/// Every SLO's latest status, by SLO id.
#[derive(Clone, Default)]
pub struct SloStatuses(Arc<RwLock<BTreeMap<String, Evaluated>>>);

/// An SLO's status as of its latest evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluated {
    #[serde(flatten)]
    pub status: SloStatus,
    /// When Prometheus last answered every query; `null` before the first answer.
    pub evaluated_at: Option<DateTime<Utc>>,
    /// Why the latest evaluation failed, if it did: the status is then the previous one.
    pub error: Option<String>,
    pub interval_secs: f64,
}

impl SloStatuses {
    /// Every SLO, by id.
    pub fn all(&self) -> Vec<Evaluated> {
        self.0
            .read()
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<Evaluated> {
        self.0.read().ok().and_then(|map| map.get(id).cloned())
    }

    /// Forgets an SLO a reload removed.
    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(id);
        }
    }

    fn insert(&self, evaluated: Evaluated) {
        if let Ok(mut map) = self.0.write() {
            map.insert(evaluated.status.id.clone(), evaluated);
        }
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Evaluated)) {
        if let Some(evaluated) = self.0.write().ok().as_mut().and_then(|map| map.get_mut(id)) {
            change(evaluated);
        }
    }
}

/// Evaluates one SLO forever.
pub async fn run(
    target: SloTarget,
    handle: Handle,
    statuses: SloStatuses,
    client: reqwest::Client,
) {
    let objective = &target.objective;
    let mut tracker = restore(&handle, &target).await;
    statuses.insert(Evaluated {
        status: SloStatus {
            id: objective.id.clone(),
            service: objective.service.clone(),
            slo: objective.name.clone(),
            objective: objective.objective,
            error_budget: objective.budget(),
            period_days: objective.period.days(),
            series: Vec::new(),
        },
        evaluated_at: None,
        error: None,
        interval_secs: target.interval_secs,
    });
    let mut interval = tokio::time::interval(Duration::from_secs_f64(target.interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An answer older than the interval is no use: the next evaluation is due.
    let timeout = Duration::from_secs_f64(target.interval_secs.clamp(1.0, 30.0));
    let slo = vec![("slo", objective.id.clone())];
    loop {
        interval.tick().await;
        let samples = match read(&target, &client, timeout).await {
            Ok(samples) => samples,
            Err(error) => {
                tracing::warn!(slo = %objective.id, %error, "cannot evaluate SLO");
                handle.metrics().source_error(SOURCE, "query_failed");
                handle
                    .metrics()
                    .slo_evaluations
                    .get_or_create(&[slo.clone(), vec![("result", "error".into())]].concat())
                    .inc();
                statuses.update(&objective.id, |status| status.error = Some(error));
                continue;
            }
        };
        let now = handle.clock().now();
        let (status, events) = tracker.observe(objective, &samples, now);
        handle
            .metrics()
            .slo_evaluations
            .get_or_create(&[slo.clone(), vec![("result", "ok".into())]].concat())
            .inc();
        // The first series (the only one for an aggregated SLI) is what the gauges show.
        if let Some(series) = status.series.first() {
            if let Some(remaining) = series.budget_remaining_percent {
                handle
                    .metrics()
                    .slo_budget_remaining
                    .get_or_create(&slo)
                    .set(remaining / 100.0);
            }
            for (window, rate) in &series.burn_rate {
                if let Some(rate) = rate {
                    handle
                        .metrics()
                        .slo_burn_rate
                        .get_or_create(&[slo.clone(), vec![("window", window.clone())]].concat())
                        .set(*rate);
                }
            }
        }
        statuses.update(&objective.id, |evaluated| {
            evaluated.status = status;
            evaluated.evaluated_at = Some(now);
            evaluated.error = None;
        });
        if events.is_empty() {
            continue;
        }
        for event in &events {
            tracing::info!(slo = %objective.id, severity = event.labels.get("sloth_severity").map(String::as_str).unwrap_or(""), status = event.status.as_str(), "SLO burn-rate alert changed state");
        }
        handle.journal_own(SOURCE, events, None).await;
    }
}

/// The alerts that were firing before a restart, from the journal, so they can resolve.
async fn restore(handle: &Handle, target: &SloTarget) -> Tracker {
    let objective = &target.objective;
    let events = handle
        .store()
        .events(&EventQuery {
            limit: 1_000,
            source: Some(SOURCE.to_string()),
            newest_first: true,
            label: Some(("sloth_id".to_string(), objective.id.clone())),
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let mut latest: BTreeMap<String, &homeostat_core::Event> = BTreeMap::new();
    for record in &events {
        latest
            .entry(record.event.fingerprint.clone())
            .or_insert(&record.event);
    }
    let firing = latest.values().filter_map(|event| {
        if event.status != Status::Firing {
            return None;
        }
        let severity = match event.labels.get("sloth_severity").map(String::as_str) {
            Some("page") => Severity::Page,
            Some("ticket") => Severity::Ticket,
            _ => return None,
        };
        let series: Labels = event
            .data
            .as_ref()
            .and_then(|data| data.get("series"))
            .and_then(|series| serde_json::from_value(series.clone()).ok())
            .unwrap_or_default();
        Some((
            series,
            severity,
            event.starts_at.unwrap_or(event.received_at),
        ))
    });
    Tracker::restore(firing)
}

/// Runs every window's query at once.
async fn read(
    target: &SloTarget,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<Samples, String> {
    let queries = target
        .objective
        .queries()
        .map(|(window, query)| async move {
            let values =
                crate::prometheus::instant(client, &target.prometheus_url, query, timeout).await?;
            let values = values
                .into_iter()
                .map(|(labels, value)| (target.objective.series_key(labels), value))
                .collect();
            Ok::<_, String>((window, values))
        });
    futures::future::try_join_all(queries)
        .await
        .map(|pairs| pairs.into_iter().collect())
}
