//! Unit tests of spec reading and validation: Sloth's rules, its leniency, and what is refused.

use super::*;

const SPEC: &str = r#"
version: "prometheus/v1"
service: checkout
labels:
  team: payments
slos:
  - name: requests-availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    alerting:
      name: CheckoutAvailabilitySLO
"#;

fn error_of(text: &str) -> String {
    parse(text).expect_err("refused").to_string()
}

#[test]
fn a_valid_spec_parses() {
    let spec = parse(SPEC).expect("valid");
    assert_eq!(
        spec.slos[0].id(&spec.service),
        "checkout-requests-availability"
    );
}

#[test]
fn the_objective_is_above_0_and_at_most_100_as_in_sloth() {
    let text = SPEC.replace("objective: 99.9", "objective: 100.5");
    assert_eq!(
        error_of(&text),
        "slos[0].objective: 100.5 is not a percentage above 0 and at most 100; write the objective in percent, as `99.9`"
    );
    let text = SPEC.replace("objective: 99.9", "objective: 0");
    assert!(error_of(&text).starts_with("slos[0].objective: 0 is not"));
    // Sloth accepts 100: no error budget at all.
    parse(&SPEC.replace("objective: 99.9", "objective: 100")).expect("100 is accepted");
}

#[test]
fn another_version_is_refused() {
    let text = SPEC.replace("prometheus/v1", "prometheus/v2");
    assert_eq!(
        error_of(&text),
        "version: `prometheus/v2` is not supported; use `prometheus/v1`"
    );
}

#[test]
fn a_query_without_window_is_refused() {
    let text = SPEC.replace(r#"code=~"5.."}[{{.window}}]"#, r#"code=~"5.."}[5m]"#);
    assert!(
        error_of(&text).starts_with("slos[0].sli.events.error_query: has no `{{.window}}`"),
        "{}",
        error_of(&text)
    );
}

#[test]
fn invalid_promql_is_refused() {
    let text = SPEC.replace(
        "sum(rate(http_requests_total{job=\"checkout\"}",
        "sum(rate(((",
    );
    assert!(
        error_of(&text).starts_with("slos[0].sli.events.total_query: invalid PromQL"),
        "{}",
        error_of(&text)
    );
}

#[test]
fn the_same_error_and_total_query_is_refused() {
    let text = SPEC.replace(r#"job="checkout",code=~"5.."}"#, r#"job="checkout"}"#);
    assert!(
        error_of(&text)
            .starts_with("slos[0].sli.events: has the same `error_query` and `total_query`"),
        "{}",
        error_of(&text)
    );
}

#[test]
fn fields_sloth_ignores_are_ignored_with_a_warning_naming_them() {
    let text = SPEC.replace(
        "    objective: 99.9",
        "    objective: 99.9\n    objetive: 1\n    infoLabels: {a: b}",
    );
    let loaded = load(&text).expect("accepted, as Sloth accepts it");
    assert_eq!(loaded.documents[0].spec.slos[0].objective, 99.9);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].starts_with("slos[0].objetive: is not a field of the spec; ignored"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn snake_case_and_camel_case_names_are_both_read_as_sloth_reads_them() {
    let camel = SPEC
        .replace("error_query", "errorQuery")
        .replace("total_query", "totalQuery")
        .replace(
            "      name: CheckoutAvailabilitySLO",
            "      name: CheckoutAvailabilitySLO\n      pageAlert: {labels: {routing: oncall}}",
        );
    let spec = parse(&camel).expect("camelCase is read");
    let slo = &spec.slos[0];
    assert!(slo.sli.events.is_some());
    assert_eq!(slo.alerting.page_alert.labels["routing"], "oncall");
    // Both spellings at once say two different things: refused.
    let both = SPEC.replace(
        "        total_query:",
        "        totalQuery: x\n        total_query:",
    );
    assert!(
        error_of(&both).contains("duplicate field"),
        "{}",
        error_of(&both)
    );
}

#[test]
fn a_missing_alert_name_is_refused_unless_both_alerts_are_disabled() {
    let text = SPEC.replace("      name: CheckoutAvailabilitySLO", "      labels: {}");
    assert!(error_of(&text).starts_with("slos[0].alerting.name: is missing"));
    let text = SPEC.replace(
        "      name: CheckoutAvailabilitySLO",
        "      page_alert: {disable: true}\n      ticket_alert: {disable: true}",
    );
    parse(&text).expect("no alerts, no name needed");
}

#[test]
fn labels_need_valid_names_and_values_and_reserved_ones_warn() {
    let text = SPEC.replace("team: payments", "1team: payments");
    assert!(error_of(&text).starts_with("labels.1team: is not a valid label name"));
    let text = SPEC.replace("team: payments", "team: \"\"");
    assert!(error_of(&text).starts_with("labels.team: is empty"));
    let text = SPEC.replace("team: payments", "tier: 1");
    assert!(error_of(&text).contains("quote it"), "{}", error_of(&text));
    // Sloth lets a spec set `sloth_id`; it is accepted, with a warning.
    let loaded = load(&SPEC.replace("team: payments", "sloth_id: x")).expect("accepted");
    assert!(loaded.warnings[0].starts_with("labels.sloth_id: overrides"));
}

#[test]
fn names_follow_sloths_rule() {
    let text = SPEC.replace("service: checkout", "service: -checkout");
    assert!(error_of(&text).starts_with("service: `-checkout` may only hold"));
    let text = SPEC.replace("service: checkout", "service: c");
    assert!(error_of(&text).starts_with("service: `c` may only hold"));
}

#[test]
fn duplicate_slo_names_are_refused() {
    let slo = &SPEC[SPEC.find("  - name").expect("slo")..];
    let text = format!("{SPEC}{slo}");
    assert_eq!(
        error_of(&text),
        "slos[1].name: `requests-availability` is already the name of slos[0]; SLO names must be unique"
    );
}

#[test]
fn plugins_are_refused_with_what_to_write_instead() {
    let text = SPEC.replace(
        "      events:",
        "      plugin: {id: sloth-common/kubernetes/apiserver/availability, options: {}}\n      events:",
    );
    let error = error_of(&text);
    assert!(
        error.starts_with("slos[0].sli.plugin: `sloth-common/kubernetes/apiserver/availability` is a Sloth SLI plugin"),
        "{error}"
    );
    assert!(error.contains("sli.raw.error_ratio_query"), "{error}");
    let text = SPEC.replace(
        "slos:\n",
        "slo_plugins:\n  chain:\n    - id: sloth.dev/contrib/info_labels/v1\nslos:\n",
    );
    let error = error_of(&text);
    assert!(
        error.starts_with("slo_plugins: names `sloth.dev/contrib/info_labels/v1`"),
        "{error}"
    );
    // An empty chain changes nothing.
    parse(&SPEC.replace("slos:\n", "slo_plugins: {chain: []}\nslos:\n")).expect("empty chain");
}

const KUBERNETES: &str = r#"
apiVersion: sloth.slok.dev/v1
kind: PrometheusServiceLevel
metadata:
  name: checkout
  namespace: shop
  labels: {owner: payments}
spec:
  service: checkout
  slos:
    - name: availability
      objective: 99.5
      sli:
        raw:
          errorRatioQuery: sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))
      alerting:
        name: CheckoutAvailability
        ticketAlert: {disable: true}
"#;

#[test]
fn a_prometheus_service_level_is_a_spec_with_its_metadata() {
    let loaded = load(KUBERNETES).expect("valid");
    let document = &loaded.documents[0];
    assert_eq!(document.format, Format::SlothKubernetes);
    let meta = document.kubernetes.as_ref().expect("metadata");
    assert_eq!(meta.name, "checkout");
    assert_eq!(meta.namespace, "shop");
    assert_eq!(meta.labels["owner"], "payments");
    let slo = &document.spec.slos[0];
    assert!(slo.alerting.ticket_alert.disable);
    let rules = generate(&document.spec, Period::Days30);
    let yaml = rules.to_prometheus_rule(meta);
    assert!(
        yaml.starts_with("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("app.kubernetes.io/managed-by: sloth"),
        "{yaml}"
    );
    assert!(yaml.contains("  owner: payments"), "{yaml}");

    let error = load(&KUBERNETES.replace("objective: 99.5", "objective: 0")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("spec.slos[0].objective: 0 is not"),
        "{error}"
    );
}

#[test]
fn documents_are_read_in_order_and_named_in_errors() {
    let text = format!(
        "---\n{SPEC}\n---\n{}",
        SPEC.replace("service: checkout", "service: cart")
    );
    let loaded = load(&text).expect("two specs");
    let services: Vec<&str> = loaded
        .documents
        .iter()
        .map(|document| document.spec.service.as_str())
        .collect();
    assert_eq!(services, ["checkout", "cart"]);
    let bad = format!(
        "{SPEC}\n---\n{}",
        SPEC.replace("objective: 99.9", "objective: 101")
    );
    let error = load(&bad).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("documents[1].slos[0].objective: 101 is not"),
        "{error}"
    );
    // The same SLO id twice would record the same series twice.
    let twice = format!("{SPEC}\n---\n{SPEC}");
    let error = load(&twice).unwrap_err();
    assert!(error.message.contains("must be unique"), "{error}");
    assert!(load_one(&text)
        .unwrap_err()
        .message
        .contains("holds 2 specs"));
}

#[test]
fn unknown_objects_are_refused_with_what_is_read() {
    let error = load("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("apiVersion: `v1` `ConfigMap` is not a spec homeostat reads"),
        "{error}"
    );
    let error = load("").unwrap_err();
    assert!(error.message.contains("empty"), "{error}");
}
