//! OpenSLO `openslo/v1` `SLO` documents, where they map onto a Sloth spec: a ratio indicator
//! (`good` or `bad` over `total`) with Prometheus queries, one objective, and a rolling window of
//! 28 or 30 days.
//!
//! As in Sloth, the queries must hold `{{.window}}` where the range goes. OpenSLO's alert policies
//! have no burn-rate windows to map from, so every SLO gets the usual page and ticket alerts, named
//! after the SLO (`checkout-availability` alerts as `CheckoutAvailabilitySLO`). Other kinds
//! (`Service`, `SLI`, `AlertPolicy`, ...) in the same file are skipped; threshold indicators,
//! calendar windows and several objectives are refused with the field that says so.

use serde::Deserialize;

use super::rules::Period;
use super::{Alerting, Error, EventsSli, Labels, RawSli, Sli, Slo, Spec, SPEC_VERSION};

/// The API version understood.
pub const API_VERSION: &str = "openslo/v1";

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: serde_yaml_ng::Value,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Labels,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SloSpec {
    service: String,
    #[serde(default)]
    description: String,
    indicator: Indicator,
    #[serde(default)]
    time_window: Vec<TimeWindow>,
    objectives: Vec<Objective>,
}

#[derive(Deserialize)]
struct Indicator {
    spec: IndicatorSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndicatorSpec {
    #[serde(default)]
    ratio_metric: Option<RatioMetric>,
    #[serde(default)]
    threshold_metric: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
struct RatioMetric {
    #[serde(default)]
    good: Option<MetricRef>,
    #[serde(default)]
    bad: Option<MetricRef>,
    total: MetricRef,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricRef {
    metric_source: MetricSource,
}

#[derive(Deserialize)]
struct MetricSource {
    #[serde(rename = "type", default)]
    kind: String,
    spec: QuerySpec,
}

#[derive(Deserialize)]
struct QuerySpec {
    query: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeWindow {
    duration: String,
    #[serde(default)]
    is_rolling: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Objective {
    #[serde(default)]
    target: Option<f64>,
    #[serde(default)]
    target_percent: Option<f64>,
}

/// Whether a YAML text is OpenSLO rather than a Sloth spec.
pub fn is_openslo(text: &str) -> bool {
    text.lines()
        .any(|line| line.trim_start().starts_with("apiVersion:") && line.contains("openslo/"))
}

/// The `SLO` documents of an OpenSLO file, as one Sloth spec, with the period their time windows
/// give.
pub fn parse(text: &str) -> Result<(Spec, Period), Error> {
    let mut slos = Vec::new();
    let mut service: Option<String> = None;
    let mut period: Option<Period> = None;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = |field: &str| format!("documents[{index}].{field}");
        let document = Document::deserialize(document)
            .map_err(|error| Error::new(format!("documents[{index}]"), error.to_string()))?;
        if document.kind != "SLO" {
            continue;
        }
        if document.api_version != API_VERSION {
            return Err(Error::new(
                at("apiVersion"),
                format!(
                    "`{}` is not supported; use `{API_VERSION}`",
                    document.api_version
                ),
            ));
        }
        let spec: SloSpec = serde_yaml_ng::from_value(document.spec)
            .map_err(|error| Error::new(at("spec"), error.to_string()))?;
        match &service {
            Some(first) if *first != spec.service => {
                return Err(Error::new(
                    at("spec.service"),
                    format!(
                        "`{}` differs from the first SLO's `{first}`; keep one service per file",
                        spec.service
                    ),
                ))
            }
            _ => service = Some(spec.service.clone()),
        }
        let window =
            match spec.time_window.as_slice() {
                [window] if window.is_rolling => window,
                [_] => return Err(Error::new(
                    at("spec.timeWindow[0].isRolling"),
                    "calendar windows are not supported; use a rolling window (`isRolling: true`)",
                )),
                _ => {
                    return Err(Error::new(
                        at("spec.timeWindow"),
                        "give exactly one rolling window of `28d` or `30d`",
                    ))
                }
            };
        let this_period: Period =
            window
                .duration
                .parse()
                .map_err(|error: super::rules::UnsupportedPeriod| {
                    Error::new(at("spec.timeWindow[0].duration"), error.to_string())
                })?;
        if period.is_some_and(|first| first != this_period) {
            return Err(Error::new(
                at("spec.timeWindow[0].duration"),
                "differs from the first SLO's; keep one period per file",
            ));
        }
        period = Some(this_period);
        let objective =
            match spec.objectives.as_slice() {
                [objective] => match (objective.target, objective.target_percent) {
                    (Some(target), None) => target * 100.0,
                    (None, Some(percent)) => percent,
                    _ => {
                        return Err(Error::new(
                            at("spec.objectives[0]"),
                            "give one of `target` (0.999) and `targetPercent` (99.9)",
                        ))
                    }
                },
                _ => return Err(Error::new(
                    at("spec.objectives"),
                    "give exactly one objective; several thresholds do not map to one error budget",
                )),
            };
        if spec.indicator.spec.threshold_metric.is_some() {
            return Err(Error::new(
                at("spec.indicator.spec.thresholdMetric"),
                "threshold indicators are not supported; use a `ratioMetric`",
            ));
        }
        let Some(ratio) = spec.indicator.spec.ratio_metric else {
            return Err(Error::new(
                at("spec.indicator.spec"),
                "has no `ratioMetric`",
            ));
        };
        let query = |metric: &MetricRef, field: &str| -> Result<String, Error> {
            let kind = &metric.metric_source.kind;
            if !kind.eq_ignore_ascii_case("prometheus") {
                return Err(Error::new(
                    at(&format!(
                        "spec.indicator.spec.ratioMetric.{field}.metricSource.type"
                    )),
                    format!("`{kind}` is not supported; use `Prometheus`"),
                ));
            }
            Ok(metric.metric_source.spec.query.trim().to_string())
        };
        let total = query(&ratio.total, "total")?;
        let sli = match (&ratio.good, &ratio.bad) {
            (Some(good), None) => Sli {
                events: None,
                raw: Some(RawSli {
                    error_ratio_query: format!("1 - (({}) / ({total}))", query(good, "good")?),
                }),
            },
            (None, Some(bad)) => Sli {
                events: Some(EventsSli {
                    error_query: query(bad, "bad")?,
                    total_query: total,
                }),
                raw: None,
            },
            _ => {
                return Err(Error::new(
                    at("spec.indicator.spec.ratioMetric"),
                    "give one of `good` and `bad`, with `total`",
                ))
            }
        };
        let name = document.metadata.name;
        slos.push(Slo {
            alerting: Alerting {
                name: alert_name(&name),
                ..Alerting::default()
            },
            name,
            objective,
            description: spec.description,
            labels: document.metadata.labels,
            sli,
        });
    }
    let Some(service) = service else {
        return Err(Error::new("", "has no `kind: SLO` document"));
    };
    let spec = Spec {
        version: SPEC_VERSION.to_string(),
        service,
        labels: Labels::new(),
        slos,
    };
    spec.validate()?;
    Ok((spec, period.unwrap_or_default()))
}

/// `checkout-availability` as `CheckoutAvailabilitySLO`.
fn alert_name(name: &str) -> String {
    let mut alert: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if alert.starts_with(|c: char| c.is_ascii_digit()) {
        alert.insert(0, '_');
    }
    alert + "SLO"
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTS: &str = r#"
apiVersion: openslo/v1
kind: Service
metadata: {name: checkout}
spec: {description: the checkout}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  labels: {team: payments}
spec:
  service: checkout
  description: requests that do not fail
  budgetingMethod: Occurrences
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{displayName: good, target: 0.999}]
  indicator:
    metadata: {name: availability}
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: Prometheus, spec: {query: 'sum(rate(http_requests_total{code!~"5.."}[{{.window}}]))'}}}
        total: {metricSource: {type: Prometheus, spec: {query: 'sum(rate(http_requests_total[{{.window}}]))'}}}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout-errors}
spec:
  service: checkout
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{targetPercent: 99}]
  indicator:
    spec:
      ratioMetric:
        bad: {metricSource: {type: prometheus, spec: {query: 'sum(rate(errors_total[{{.window}}]))'}}}
        total: {metricSource: {type: prometheus, spec: {query: 'sum(rate(requests_total[{{.window}}]))'}}}
"#;

    #[test]
    fn ratio_slos_map_onto_a_sloth_spec() {
        assert!(is_openslo(DOCUMENTS));
        let (spec, period) = parse(DOCUMENTS).expect("maps");
        assert_eq!(period, Period::Days28);
        assert_eq!(spec.service, "checkout");
        assert_eq!(spec.slos.len(), 2);
        let good = &spec.slos[0];
        assert_eq!(good.name, "checkout-availability");
        assert!((good.objective - 99.9).abs() < 1e-9);
        assert_eq!(good.labels["team"], "payments");
        assert_eq!(good.alerting.name, "CheckoutAvailabilitySLO");
        assert_eq!(
            good.sli.raw.as_ref().unwrap().error_ratio_query,
            r#"1 - ((sum(rate(http_requests_total{code!~"5.."}[{{.window}}]))) / (sum(rate(http_requests_total[{{.window}}]))))"#
        );
        let bad = &spec.slos[1];
        assert_eq!(bad.objective, 99.0);
        assert_eq!(
            bad.sli.events.as_ref().unwrap().error_query,
            "sum(rate(errors_total[{{.window}}]))"
        );
        // The generated rules are the same as for the equivalent Sloth spec.
        let rules = super::super::generate(&spec, period).to_yaml();
        assert!(rules.contains("slo:sli_error:ratio_rate28d"), "{rules}");
    }

    #[test]
    fn what_does_not_map_is_refused_with_its_field() {
        let calendar = DOCUMENTS.replace(
            "isRolling: true}]\n  objectives: [{displayName",
            "isRolling: false}]\n  objectives: [{displayName",
        );
        let error = parse(&calendar).unwrap_err();
        assert_eq!(error.field, "documents[1].spec.timeWindow[0].isRolling");
        let weekly = DOCUMENTS.replace("duration: 28d", "duration: 7d");
        let error = parse(&weekly).unwrap_err();
        assert!(error.message.contains("`7d` is not supported"), "{error}");
        let no_window = DOCUMENTS.replace(
            "[{{.window}}]))'}}}\n        total",
            "[5m]))'}}}\n        total",
        );
        let error = parse(&no_window).unwrap_err();
        assert!(error.to_string().contains("{{.window}}"), "{error}");
        let datadog = DOCUMENTS.replace("type: prometheus", "type: Datadog");
        let error = parse(&datadog).unwrap_err();
        assert!(
            error.message.contains("`Datadog` is not supported"),
            "{error}"
        );
        let error =
            parse("apiVersion: openslo/v1\nkind: Service\nmetadata: {name: x}\n").unwrap_err();
        assert!(error.message.contains("no `kind: SLO`"), "{error}");
    }
}
