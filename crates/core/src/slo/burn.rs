//! The daemon's own SLO evaluation: the error ratio over each alert window, read from a
//! Prometheus-compatible API, becomes burn rates, the error budget left and page and ticket
//! burn-rate alerts with the same conditions as the generated rules.
//!
//! Pure: the engine runs the queries of [`Objective::queries`] and hands the answers to
//! [`Tracker::observe`], which returns the status to show and the events of the alerts that
//! started or stopped firing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rules::{error_budget, sli_error_metric, sli_expr, BurnRate, Period, Window};
use super::{Labels, Spec};
use crate::{Event, Status};

/// The source name of burn-rate events.
pub const SOURCE: &str = "slo";

/// One SLO, compiled for evaluation.
#[derive(Debug, Clone)]
pub struct Objective {
    /// `<service>-<name>`, the generated rules' `sloth_id`.
    pub id: String,
    pub service: String,
    pub name: String,
    pub description: String,
    /// In percent, such as `99.9`.
    pub objective: f64,
    pub period: Period,
    /// The query giving the error ratio over each window, the period's last.
    queries: Vec<(Window, String)>,
    /// `sloth_id`, `sloth_service`, `sloth_slo`, then the spec's and the SLO's labels.
    labels: Labels,
    page: Option<Tier>,
    ticket: Option<Tier>,
}

/// An alert tier that is on: its conditions and what its events carry.
#[derive(Debug, Clone)]
struct Tier {
    severity: Severity,
    conditions: [BurnRate; 2],
    labels: Labels,
    annotations: Labels,
}

/// Which alert of an SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// Where the error ratios come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// The spec's SLI queries, rendered for each window: nothing to install in Prometheus, at the
    /// price of reading the raw series over the whole period once per evaluation.
    #[default]
    Queries,
    /// The recordings of `homeostat slo rules` (or Sloth), already loaded into Prometheus: cheap,
    /// and the same numbers the dashboards show.
    Recordings,
}

impl Objective {
    /// Every SLO of a validated spec.
    pub fn compile(spec: &Spec, period: Period, source: Source) -> Vec<Objective> {
        let burn_rates = period.burn_rates();
        spec.slos
            .iter()
            .map(|slo| {
                let id = slo.id(&spec.service);
                let mut labels = spec.labels.clone();
                labels.extend(slo.labels.clone());
                labels.insert("sloth_id".into(), id.clone());
                labels.insert("sloth_service".into(), spec.service.clone());
                labels.insert("sloth_slo".into(), slo.name.clone());
                let mut windows = burn_rates.windows();
                windows.push(period.window());
                let filter = format!(
                    "{{sloth_id=\"{id}\", sloth_service=\"{}\", sloth_slo=\"{}\"}}",
                    spec.service, slo.name
                );
                let queries = windows
                    .into_iter()
                    .map(|window| {
                        // The very expression of the recording rule, so both read the same ratio.
                        let query = match source {
                            Source::Recordings => format!("{}{filter}", sli_error_metric(window)),
                            Source::Queries => sli_expr(slo, window),
                        };
                        (window, query)
                    })
                    .collect();
                let alerting = &slo.alerting;
                let tier =
                    |severity: Severity, tier: &super::AlertTier, conditions: [BurnRate; 2]| {
                        (!tier.disable).then(|| {
                            let mut tier_labels = Labels::from([
                                ("alertname".to_string(), alerting.name.clone()),
                                ("sloth_severity".to_string(), severity.as_str().to_string()),
                            ]);
                            tier_labels.extend(alerting.labels.clone());
                            tier_labels.extend(tier.labels.clone());
                            let mut annotations = alerting.annotations.clone();
                            annotations.extend(tier.annotations.clone());
                            Tier {
                                severity,
                                conditions,
                                labels: tier_labels,
                                annotations,
                            }
                        })
                    };
                Objective {
                    id,
                    service: spec.service.clone(),
                    name: slo.name.clone(),
                    description: slo.description.clone(),
                    objective: slo.objective,
                    period,
                    queries,
                    labels,
                    page: tier(
                        Severity::Page,
                        &alerting.page_alert,
                        [burn_rates.page_quick, burn_rates.page_slow],
                    ),
                    ticket: tier(
                        Severity::Ticket,
                        &alerting.ticket_alert,
                        [burn_rates.ticket_quick, burn_rates.ticket_slow],
                    ),
                }
            })
            .collect()
    }

    /// The error budget as a ratio, the very `f64` the generated alerts compare with:
    /// `0.0009999999999999432` for a 99.9% objective.
    pub fn budget(&self) -> f64 {
        error_budget(self.objective)
    }

    /// The query of each window, the period last.
    pub fn queries(&self) -> impl Iterator<Item = (Window, &str)> {
        self.queries
            .iter()
            .map(|(window, query)| (*window, query.as_str()))
    }

    /// The labels of the objective's burn-rate alerts and status.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The labels that tell one series of the SLI from another: a result's labels without
    /// `sloth_window` and those the recordings carry for the SLO itself.
    pub fn series_key(&self, mut labels: Labels) -> Labels {
        labels.remove("__name__");
        labels.remove("sloth_window");
        labels.retain(|name, value| self.labels.get(name) != Some(value));
        labels
    }

    fn tiers(&self) -> impl Iterator<Item = &Tier> {
        self.page.iter().chain(self.ticket.iter())
    }
}

/// What one evaluation read: for each window, the error ratio of each series the query returned,
/// keyed by the series' labels (`{}` for the usual aggregated SLI).
pub type Samples = BTreeMap<Window, BTreeMap<Labels, f64>>;

/// The state of an SLO's alerts, kept across evaluations.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// The alerts firing, per series and tier, with when they started.
    firing: BTreeMap<(Labels, Severity), DateTime<Utc>>,
}

/// How an SLO stands after an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub id: String,
    pub service: String,
    pub slo: String,
    /// In percent.
    pub objective: f64,
    /// The error budget as a ratio (`0.001` for 99.9%).
    pub error_budget: f64,
    pub period_days: u32,
    /// One entry per series the SLI returned; usually one, with no labels.
    pub series: Vec<SeriesStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesStatus {
    pub labels: Labels,
    /// The error ratio over each window (`5m`, ..., `30d`); `null` where the query had no value
    /// (no traffic, or a series that has not existed that long).
    pub error_ratio: BTreeMap<String, Option<f64>>,
    /// The error ratio over each window divided by the budget: 1 spends the budget exactly over the
    /// period.
    pub burn_rate: BTreeMap<String, Option<f64>>,
    /// The share of the period's error budget left, in percent; negative once it is overspent.
    pub budget_remaining_percent: Option<f64>,
    /// How long until the budget is gone at the last hour's burn rate; `null` when nothing is
    /// burning or it is gone already.
    pub exhausted_in_secs: Option<f64>,
    /// The alerts firing: `page`, `ticket`.
    pub firing: Vec<Severity>,
}

/// The window the time to exhaustion extrapolates from: long enough not to swing with every
/// scrape, short enough to say what is happening now.
const CURRENT: Window = Window::hours(1);

impl Tracker {
    /// A tracker that knows which alerts were firing, as the journal says, so they can resolve
    /// after a restart.
    pub fn restore(firing: impl IntoIterator<Item = (Labels, Severity, DateTime<Utc>)>) -> Tracker {
        Tracker {
            firing: firing
                .into_iter()
                .map(|(labels, severity, since)| ((labels, severity), since))
                .collect(),
        }
    }

    /// Folds one evaluation in: the status, and an event for each alert that started or stopped.
    pub fn observe(
        &mut self,
        objective: &Objective,
        samples: &Samples,
        at: DateTime<Utc>,
    ) -> (SloStatus, Vec<Event>) {
        let budget = objective.budget();
        let ratio = |series: &Labels, window: Window| -> Option<f64> {
            samples
                .get(&window)
                .and_then(|values| values.get(series))
                .copied()
                .filter(|value| value.is_finite())
        };
        // Every series any window returned: one that vanished from the short windows still
        // resolves its alerts.
        let mut all: Vec<Labels> = samples
            .values()
            .flat_map(|values| values.keys().cloned())
            .collect();
        all.extend(self.firing.keys().map(|(labels, _)| labels.clone()));
        all.sort();
        all.dedup();
        let mut events = Vec::new();
        let mut series_status = Vec::new();
        for series in all {
            let mut firing = Vec::new();
            for tier in objective.tiers() {
                let over = |rate: &BurnRate| {
                    let threshold = rate.factor * budget;
                    [rate.short, rate.long]
                        .into_iter()
                        .all(|window| ratio(&series, window).is_some_and(|r| r > threshold))
                };
                let fired_by = tier.conditions.iter().find(|rate| over(rate));
                let key = (series.clone(), tier.severity);
                let was = self.firing.get(&key).copied();
                match (was, fired_by) {
                    (None, Some(rate)) => {
                        self.firing.insert(key, at);
                        events.push(burn_event(
                            objective,
                            tier,
                            &series,
                            Some(*rate),
                            &ratio,
                            Status::Firing,
                            at,
                            at,
                        ));
                        firing.push(tier.severity);
                    }
                    (Some(since), None) => {
                        self.firing.remove(&key);
                        events.push(burn_event(
                            objective,
                            tier,
                            &series,
                            None,
                            &ratio,
                            Status::Resolved,
                            since,
                            at,
                        ));
                    }
                    (Some(_), Some(_)) => firing.push(tier.severity),
                    (None, None) => {}
                }
            }
            let mut error_ratio = BTreeMap::new();
            let mut burn_rate = BTreeMap::new();
            for (window, _) in &objective.queries {
                let value = ratio(&series, *window);
                error_ratio.insert(window.to_string(), value.map(round6));
                burn_rate.insert(window.to_string(), value.map(|v| round6(v / budget)));
            }
            let spent = ratio(&series, objective.period.window()).map(|r| r / budget);
            let remaining = spent.map(|spent| 1.0 - spent);
            let exhausted_in_secs = match (remaining, ratio(&series, CURRENT)) {
                (Some(remaining), Some(current)) if remaining > 0.0 && current > 0.0 => {
                    let period_secs = f64::from(objective.period.days()) * 86_400.0;
                    Some((remaining * period_secs / (current / budget)).round())
                }
                _ => None,
            };
            series_status.push(SeriesStatus {
                labels: series,
                error_ratio,
                burn_rate,
                budget_remaining_percent: remaining.map(|r| round6(r * 100.0)),
                exhausted_in_secs,
                firing,
            });
        }
        let status = SloStatus {
            id: objective.id.clone(),
            service: objective.service.clone(),
            slo: objective.name.clone(),
            objective: objective.objective,
            error_budget: budget,
            period_days: objective.period.days(),
            series: series_status,
        };
        (status, events)
    }
}

/// The labels of a tier's alert for one series: the series', the SLO's, then the alert's.
pub fn alert_labels(objective: &Objective, severity: Severity, series: &Labels) -> Option<Labels> {
    let tier = objective.tiers().find(|tier| tier.severity == severity)?;
    let mut labels = series.clone();
    labels.extend(objective.labels.clone());
    labels.extend(tier.labels.clone());
    Some(labels)
}

#[allow(clippy::too_many_arguments)]
fn burn_event(
    objective: &Objective,
    tier: &Tier,
    series: &Labels,
    fired_by: Option<BurnRate>,
    ratio: &dyn Fn(&Labels, Window) -> Option<f64>,
    status: Status,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Event {
    let mut labels = series.clone();
    labels.extend(objective.labels.clone());
    labels.extend(tier.labels.clone());
    let budget = objective.budget();
    let burn = |window: Window| ratio(series, window).map(|r| r / budget);
    let remaining = ratio(series, objective.period.window()).map(|r| 100.0 * (1.0 - r / budget));
    let remaining_text = remaining
        .map(|r| {
            format!(
                "{r:.1}% of the {}d error budget left",
                objective.period.days()
            )
        })
        .unwrap_or_else(|| "error budget left unknown".to_string());
    let mut annotations = Labels::from([(
        "title".to_string(),
        format!(
            "({}) {} {} SLO error budget burn rate is too fast.",
            tier.severity.as_str(),
            objective.service,
            objective.name
        ),
    )]);
    let summary = match fired_by {
        Some(rate) => format!(
            "{} {} ({}% objective) is burning its error budget {}x as fast as it may over {} and {}x over {} ({} limit {}x); {remaining_text}",
            objective.service,
            objective.name,
            objective.objective,
            burn(rate.long).map_or("?".into(), |b| format!("{b:.1}")),
            rate.long,
            burn(rate.short).map_or("?".into(), |b| format!("{b:.1}")),
            rate.short,
            tier.severity.as_str(),
            round6(rate.factor),
        ),
        None => format!(
            "{} {} burns its error budget within the {} limits again; {remaining_text}",
            objective.service,
            objective.name,
            tier.severity.as_str(),
        ),
    };
    annotations.insert("summary".into(), summary);
    annotations.extend(tier.annotations.clone());
    let burn_rates: serde_json::Map<String, serde_json::Value> = objective
        .queries
        .iter()
        .map(|(window, _)| (window.to_string(), serde_json::json!(burn(*window))))
        .collect();
    Event::raised(
        SOURCE,
        status,
        labels,
        annotations,
        Some(since),
        at,
        Some(serde_json::json!({
            "slo": objective.id,
            "series": series,
            "objective": objective.objective,
            "error_budget": budget,
            "burn_rate": burn_rates,
            "threshold": fired_by.map(|rate| rate.factor),
            "windows": fired_by.map(|rate| [rate.short.to_string(), rate.long.to_string()]),
            "budget_remaining_percent": remaining,
        })),
    )
}

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SPEC: &str = r#"
version: "prometheus/v1"
service: checkout
labels: {team: payments}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: CheckoutAvailability
      annotations: {runbook: "https://runbooks/checkout"}
      ticket_alert: {labels: {severity: warning}}
"#;

    fn objective() -> Objective {
        let spec = super::super::parse(SPEC).expect("a valid spec");
        Objective::compile(&spec, Period::Days30, Source::Queries).remove(0)
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, minute, 0).unwrap()
    }

    /// Every window at `ratio`, except those given.
    fn samples(ratio: f64, except: &[(Window, f64)]) -> Samples {
        objective()
            .queries()
            .map(|(window, _)| {
                let value = except
                    .iter()
                    .find(|(w, _)| *w == window)
                    .map_or(ratio, |(_, v)| *v);
                (window, BTreeMap::from([(Labels::new(), value)]))
            })
            .collect()
    }

    #[test]
    fn queries_render_every_window_and_the_period_last() {
        let objective = objective();
        let windows: Vec<String> = objective.queries().map(|(w, _)| w.to_string()).collect();
        assert_eq!(windows, ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]);
        let (_, first) = objective.queries().next().unwrap();
        assert_eq!(
            first,
            // The recording rule's own expression: both read the same ratio.
            "(sum(rate(http_requests_total{code=~\"5..\"}[5m])))\n/\n((sum(rate(http_requests_total[5m]))) > 0)\n"
        );
        let spec = super::super::parse(SPEC).unwrap();
        let recorded = Objective::compile(&spec, Period::Days28, Source::Recordings).remove(0);
        let (window, query) = recorded.queries().last().unwrap();
        // 28 days are 4 weeks, as Prometheus and Sloth write them.
        assert_eq!(window.to_string(), "4w");
        assert_eq!(
            query,
            r#"slo:sli_error:ratio_rate4w{sloth_id="checkout-availability", sloth_service="checkout", sloth_slo="availability"}"#
        );
    }

    #[test]
    fn a_fast_burn_pages_then_resolves_and_the_budget_is_reported() {
        let objective = objective();
        let mut tracker = Tracker::default();
        // 0.05% errors: half the budget's pace; nothing fires.
        let (status, events) = tracker.observe(&objective, &samples(0.0005, &[]), at(0));
        assert!(events.is_empty());
        let series = &status.series[0];
        assert_eq!(series.budget_remaining_percent, Some(50.0));
        assert_eq!(series.burn_rate["1h"], Some(0.5));
        // Half the budget left, burning at 0.5x: 30 days of budget at 1x is 30 days, so
        // half of it at half the pace lasts 30 days.
        assert_eq!(series.exhausted_in_secs, Some(30.0 * 86_400.0));

        // 2% errors over 5m and 1h: 20x the budget, over 14.4x on both windows of the page.
        let burning = samples(
            0.0005,
            &[(Window::minutes(5), 0.02), (Window::hours(1), 0.02)],
        );
        let (status, events) = tracker.observe(&objective, &burning, at(1));
        assert_eq!(events.len(), 1, "{events:#?}");
        let page = &events[0];
        assert_eq!(page.status, Status::Firing);
        assert_eq!(page.source, "slo");
        assert_eq!(page.labels["alertname"], "CheckoutAvailability");
        assert_eq!(page.labels["sloth_severity"], "page");
        // The labels of the generated alert: no `severity` unless the spec sets one.
        assert!(!page.labels.contains_key("severity"));
        assert_eq!(page.labels["sloth_id"], "checkout-availability");
        assert_eq!(page.labels["team"], "payments");
        assert_eq!(page.annotations["runbook"], "https://runbooks/checkout");
        assert!(
            page.annotations["summary"].contains("20.0x as fast as it may over 1h and 20.0x over 5m (page limit 14.4x); 50.0% of the 30d error budget left"),
            "{}",
            page.annotations["summary"]
        );
        assert_eq!(page.data.as_ref().unwrap()["threshold"], 14.4);
        assert_eq!(status.series[0].firing, [Severity::Page]);
        // The half left lasts 0.75 days at 20x.
        assert_eq!(
            status.series[0].exhausted_in_secs,
            Some(0.5 * 30.0 * 86_400.0 / 20.0)
        );

        // Still burning: no new event.
        let (_, events) = tracker.observe(&objective, &burning, at(2));
        assert!(events.is_empty());
        // The short window recovers: the page resolves with its start time.
        let recovering = samples(0.0005, &[(Window::hours(1), 0.02)]);
        let (status, events) = tracker.observe(&objective, &recovering, at(3));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, Status::Resolved);
        assert_eq!(events[0].starts_at, Some(at(1)));
        assert_eq!(events[0].ends_at, Some(at(3)));
        assert_eq!(events[0].fingerprint, page.fingerprint);
        assert!(status.series[0].firing.is_empty());
    }

    #[test]
    fn a_slow_burn_opens_a_ticket_with_its_own_labels() {
        let objective = objective();
        let mut tracker = Tracker::default();
        // 0.4% over every window: 4x, over the ticket's 3x on 2h and 1d, under the page's 6x.
        let (status, events) = tracker.observe(&objective, &samples(0.004, &[]), at(0));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].labels["severity"], "warning");
        assert_eq!(events[0].labels["sloth_severity"], "ticket");
        assert_eq!(status.series[0].firing, [Severity::Ticket]);
        assert_eq!(status.series[0].budget_remaining_percent, Some(-300.0));
        assert_eq!(status.series[0].exhausted_in_secs, None);
    }

    #[test]
    fn no_traffic_is_no_alert_and_a_vanished_series_resolves() {
        let objective = objective();
        let mut tracker = Tracker::default();
        let (_, events) = tracker.observe(&objective, &samples(f64::NAN, &[]), at(0));
        assert!(events.is_empty());
        let (_, events) = tracker.observe(&objective, &samples(0.5, &[]), at(1));
        assert_eq!(events.len(), 2, "page and ticket");
        let (status, events) = tracker.observe(&objective, &Samples::new(), at(2));
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.status == Status::Resolved));
        assert_eq!(status.series.len(), 1);
        assert_eq!(status.series[0].budget_remaining_percent, None);
    }

    #[test]
    fn a_restored_tracker_resolves_what_fired_before_the_restart() {
        let objective = objective();
        let labels = alert_labels(&objective, Severity::Page, &Labels::new()).unwrap();
        let mut tracker = Tracker::restore([(Labels::new(), Severity::Page, at(0))]);
        let (_, events) = tracker.observe(&objective, &samples(0.0, &[]), at(5));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, Status::Resolved);
        assert_eq!(events[0].labels, labels);
        assert_eq!(events[0].starts_at, Some(at(0)));
    }

    #[test]
    fn disabled_tiers_never_fire() {
        let spec = super::super::parse(&SPEC.replace(
            "ticket_alert: {labels: {severity: warning}}",
            "ticket_alert: {disable: true}\n      page_alert: {disable: true}",
        ))
        .unwrap();
        let objective = Objective::compile(&spec, Period::Days30, Source::Queries).remove(0);
        let mut tracker = Tracker::default();
        let (status, events) = tracker.observe(&objective, &samples(0.5, &[]), at(0));
        assert!(events.is_empty());
        assert_eq!(status.series[0].burn_rate["5m"], Some(500.0));
    }
}
