//! Unit tests of the OpenSLO mappings. OpenSLO's own examples are run in tests/it/slo_rules.rs.

use super::super::{load, Format};
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
  labels: {team: payments, regions: [eu, us]}
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
  timeWindow: [{duration: 4w, isRolling: true}]
  objectives: [{targetPercent: 99}]
  indicatorRef: errors
---
apiVersion: openslo/v1
kind: SLI
metadata: {name: errors}
spec:
  ratioMetric:
    bad: {metricSource: {type: prometheus, spec: {query: 'sum(rate(errors_total[{{.window}}]))'}}}
    total: {metricSource: {type: prometheus, spec: {query: 'sum(rate(requests_total[{{.window}}]))'}}}
"#;

#[test]
fn ratio_slos_map_onto_a_sloth_spec() {
    assert!(is_openslo(DOCUMENTS));
    let loaded = load(DOCUMENTS).expect("maps");
    assert_eq!(loaded.documents.len(), 1, "one service, one period");
    let document = &loaded.documents[0];
    assert_eq!(document.format, Format::OpenSloV1);
    assert_eq!(document.period, Some(Window::days(28)));
    let spec = &document.spec;
    assert_eq!(spec.service, "checkout");
    let good = &spec.slos[0];
    assert_eq!(good.name, "checkout-availability");
    assert_eq!(good.objective, 99.9);
    assert_eq!(good.labels["team"], "payments");
    assert_eq!(good.labels["regions"], "eu,us");
    assert_eq!(good.alerting.name, "CheckoutAvailabilitySLO");
    assert_eq!(
        good.sli.raw.as_ref().unwrap().error_ratio_query,
        r#"1 - ((sum(rate(http_requests_total{code!~"5.."}[{{.window}}]))) / (sum(rate(http_requests_total[{{.window}}]))))"#
    );
    // `indicatorRef` resolved to the SLI of the same file.
    let bad = &spec.slos[1];
    assert_eq!(bad.objective, 99.0);
    assert_eq!(
        bad.sli.events.as_ref().unwrap().error_query,
        "sum(rate(errors_total[{{.window}}]))"
    );
}

#[test]
fn the_list_form_is_read_like_documents() {
    let list: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(DOCUMENTS)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    let text = serde_yaml_ng::to_string(&list).unwrap();
    let loaded = load(&text).expect("the list form maps");
    let documents = load(DOCUMENTS).unwrap();
    assert_eq!(
        format!("{:?}", loaded.documents[0].spec),
        format!("{:?}", documents.documents[0].spec)
    );
    let error = load(&text.replace("duration: 4w", "duration: 1M")).unwrap_err();
    assert_eq!(error.field, "items[2].spec.timeWindow[0].duration");
}

#[test]
fn what_does_not_map_is_refused_with_its_field() {
    let field = |text: String| load(&text).unwrap_err().field;
    assert_eq!(
        field(DOCUMENTS.replace(
            "isRolling: true}]\n  objectives: [{displayName",
            "isRolling: false}]\n  objectives: [{displayName"
        )),
        "documents[1].spec.timeWindow[0].isRolling"
    );
    assert_eq!(
        field(DOCUMENTS.replace(
            "budgetingMethod: Occurrences",
            "budgetingMethod: Timeslices"
        )),
        "documents[1].spec.budgetingMethod"
    );
    assert_eq!(
        field(DOCUMENTS.replace(
            "[{displayName: good, target: 0.999}]",
            "[{target: 0.999, op: lte, value: 200}]"
        )),
        "documents[1].spec.objectives[0].op"
    );
    assert_eq!(
        field(DOCUMENTS.replace(
            "[{displayName: good, target: 0.999}]",
            "[{target: 0.999}, {target: 0.99}]"
        )),
        "documents[1].spec.objectives"
    );
    assert_eq!(
        field(DOCUMENTS.replace(
            "[{displayName: good, target: 0.999}]",
            "[{target: 0.999, timeSliceTarget: 0.9}]"
        )),
        "documents[1].spec.objectives[0].timeSliceTarget"
    );
    assert_eq!(
        field(DOCUMENTS.replace("indicatorRef: errors", "indicatorRef: nothing")),
        "documents[2].spec.indicatorRef"
    );
    assert_eq!(
        field(DOCUMENTS.replace("type: prometheus", "type: Datadog")),
        "documents[2].spec.indicatorRef (SLI `errors`).spec.ratioMetric.total.metricSource.type"
    );
    assert_eq!(
        field(DOCUMENTS.replace("ratioMetric:\n    bad", "thresholdMetric:\n    bad")),
        "documents[2].spec.indicatorRef (SLI `errors`).spec.thresholdMetric"
    );
    let no_window = load(&DOCUMENTS.replace(
        "[{{.window}}]))'}}}\n        total",
        "[5m]))'}}}\n        total",
    ))
    .unwrap_err();
    assert!(no_window.to_string().contains("{{.window}}"), "{no_window}");
    let error = load("apiVersion: openslo/v1\nkind: Service\nmetadata: {name: x}\n").unwrap_err();
    assert!(error.message.contains("no `kind: SLO`"), "{error}");
}

#[test]
fn services_and_periods_make_separate_specs() {
    let text = DOCUMENTS.replace(
        "service: checkout\n  timeWindow: [{duration: 4w",
        "service: cart\n  timeWindow: [{duration: 30d",
    );
    let loaded = load(&text).expect("maps");
    let specs: Vec<(&str, Option<Window>)> = loaded
        .documents
        .iter()
        .map(|document| (document.spec.service.as_str(), document.period))
        .collect();
    assert_eq!(
        specs,
        [
            ("checkout", Some(Window::days(28))),
            ("cart", Some(Window::days(30)))
        ]
    );
}

#[test]
fn v1alpha_is_read_as_sloth_reads_it() {
    let text = r#"
apiVersion: openslo/v1alpha
kind: SLO
metadata: {name: slo1}
spec:
  service: svc01
  objectives:
    - ratioMetrics:
        good: {source: prometheus, queryType: promql, query: 'sum(rate(ok[{{.window}}]))'}
        total: {source: prometheus, queryType: promql, query: 'sum(rate(all[{{.window}}]))'}
      target: 0.999
  timeWindows: [{count: 7, unit: Day}]
"#;
    let loaded = load(text).expect("maps");
    let document = &loaded.documents[0];
    assert_eq!(document.format, Format::OpenSloV1Alpha);
    assert_eq!(document.period, Some(Window::days(7)));
    let slo = &document.spec.slos[0];
    assert_eq!(slo.name, "slo1-0");
    assert!(slo.alerting.page_alert.disable && slo.alerting.ticket_alert.disable);
    let error = load(&text.replace("unit: Day", "unit: Week")).unwrap_err();
    assert_eq!(error.field, "spec.timeWindows[0].unit");
    let error = load(&text.replace(
        "queryType: promql, query: 'sum(rate(ok",
        "queryType: graphite, query: 'sum(rate(ok",
    ))
    .unwrap_err();
    assert_eq!(
        error.field,
        "spec.objectives[0].ratioMetrics.good.queryType"
    );
}
