//! Unit tests of the rule generation. The comparison with Sloth's own golden files is in
//! tests/it/slo_rules.rs.

use super::*;

const SPEC: &str = r#"
version: "prometheus/v1"
service: checkout
labels:
  team: payments
slos:
  - name: requests-availability
    objective: 99.9
    labels:
      tier: "1"
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{ .window }}]))
    alerting:
      name: CheckoutAvailabilitySLO
      labels:
        category: availability
      ticket_alert:
        labels:
          severity: warning
  - name: requests-latency
    objective: 99
    sli:
      raw:
        error_ratio_query: 1 - (sum(rate(http_request_duration_seconds_bucket{le="0.5"}[{{.window}}])) / sum(rate(http_request_duration_seconds_count[{{.window}}])))
    alerting:
      name: CheckoutLatencySLO
      page_alert:
        disable: true
"#;

fn spec() -> Spec {
    super::super::parse(SPEC).expect("valid")
}

fn rules(period: Period) -> RuleFile {
    generate(&spec(), period)
}

fn find<'a>(file: &'a RuleFile, group: &str, name: &str) -> Vec<&'a Rule> {
    file.groups
        .iter()
        .filter(|g| g.name == group)
        .flat_map(|g| g.rules.iter())
        .filter(|r| r.name() == name)
        .collect()
}

fn factors(period: Period) -> [f64; 4] {
    let rates = period.burn_rates();
    [
        rates.page_quick.factor,
        rates.page_slow.factor,
        rates.ticket_quick.factor,
        rates.ticket_slow.factor,
    ]
}

#[test]
fn the_30_day_factors_are_the_workbooks() {
    assert_eq!(factors(Period::Days30), [14.4, 6.0, 3.0, 1.0]);
}

#[test]
fn the_28_day_factors_are_the_f64_sloth_computes() {
    // Sloth's golden for 28 days: 13.44, 5.6000000000000005, 2.8000000000000003, 0.9333333333333333.
    let written: Vec<String> = factors(Period::Days28)
        .iter()
        .map(|f| format_g(*f))
        .collect();
    assert_eq!(
        written,
        [
            "13.44",
            "5.6000000000000005",
            "2.8000000000000003",
            "0.9333333333333333"
        ]
    );
}

#[test]
fn periods_other_than_28d_and_30d_are_refused() {
    assert_eq!("28d".parse(), Ok(Period::Days28));
    assert_eq!("4w".parse(), Ok(Period::Days28));
    assert_eq!("30d".parse(), Ok(Period::Days30));
    let error = "7d".parse::<Period>().expect_err("refused");
    assert_eq!(
        error.to_string(),
        "period `7d` is not supported; use `28d` or `30d`"
    );
}

#[test]
fn windows_read_and_print_as_prometheus_durations() {
    let windows: Vec<String> = BurnRates::for_period(Period::Days30)
        .windows()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(windows, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    for (text, printed) in [
        ("28d", "4w"),
        ("7d", "1w"),
        ("30d", "30d"),
        ("24h", "1d"),
        ("72h", "3d"),
        ("90m", "1h30m"),
        ("1h30m", "1h30m"),
        ("365d", "1y"),
        ("500ms", "500ms"),
        ("14d", "2w"),
    ] {
        assert_eq!(
            Window::parse(text).map(|w| w.to_string()).as_deref(),
            Some(printed),
            "{text}"
        );
    }
    for bad in ["", "5", "m", "5x", "1m1h", "0m", "-5m"] {
        assert_eq!(Window::parse(bad), None, "{bad}");
    }
    // Hours as Go computes them, so factors of odd windows are Sloth's too.
    assert_eq!(Window::minutes(5).as_hours(), 300e9 / 3.6e12);
}

#[test]
fn every_window_and_the_period_have_an_sli_recording() {
    let file = rules(Period::Days30);
    let group = &file.groups[0];
    assert_eq!(
        group.name,
        "sloth-slo-sli-recordings-checkout-requests-availability"
    );
    let names: Vec<&str> = group.rules.iter().map(Rule::name).collect();
    assert_eq!(
        names,
        [
            "slo:sli_error:ratio_rate5m",
            "slo:sli_error:ratio_rate30m",
            "slo:sli_error:ratio_rate1h",
            "slo:sli_error:ratio_rate2h",
            "slo:sli_error:ratio_rate6h",
            "slo:sli_error:ratio_rate1d",
            "slo:sli_error:ratio_rate3d",
            "slo:sli_error:ratio_rate30d",
        ]
    );
    let one_hour = &group.rules[2];
    // A total of zero gives no value, not `NaN`.
    assert_eq!(
        one_hour.expr(),
        "(sum(rate(http_requests_total{job=\"checkout\",code=~\"5..\"}[1h])))\n/\n((sum(rate(http_requests_total{job=\"checkout\"}[1h]))) > 0)\n"
    );
    let labels: Vec<(&str, &str)> = one_hour
        .labels()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("sloth_id", "checkout-requests-availability"),
            ("sloth_service", "checkout"),
            ("sloth_slo", "requests-availability"),
            ("sloth_window", "1h"),
            ("team", "payments"),
            ("tier", "1"),
        ]
    );
    let filter = r#"{sloth_id="checkout-requests-availability", sloth_service="checkout", sloth_slo="requests-availability"}"#;
    let period = &group.rules[7];
    assert_eq!(
        period.expr(),
        format!("sum_over_time(slo:sli_error:ratio_rate5m{filter}[30d])\n/ ignoring (sloth_window)\ncount_over_time(slo:sli_error:ratio_rate5m{filter}[30d])\n")
    );
    // Every label of the SLO, as Sloth since 0.11.
    assert_eq!(period.labels()["team"], "payments");
    assert_eq!(period.labels()["sloth_window"], "30d");
}

#[test]
fn a_raw_sli_is_the_query_with_its_window_and_28_days_are_4w() {
    let file = rules(Period::Days28);
    let group = "sloth-slo-sli-recordings-checkout-requests-latency";
    let recording = find(&file, group, "slo:sli_error:ratio_rate6h");
    assert_eq!(
        recording[0].expr(),
        "(1 - (sum(rate(http_request_duration_seconds_bucket{le=\"0.5\"}[6h])) / sum(rate(http_request_duration_seconds_count[6h]))))"
    );
    assert_eq!(find(&file, group, "slo:sli_error:ratio_rate4w").len(), 1);
}

#[test]
fn metadata_records_objective_budget_and_period_as_sloth_writes_them() {
    let file = rules(Period::Days30);
    let group = "sloth-slo-meta-recordings-checkout-requests-availability";
    assert_eq!(
        find(&file, group, "slo:objective:ratio")[0].expr(),
        "vector(0.9990000000000001)"
    );
    assert_eq!(
        find(&file, group, "slo:error_budget:ratio")[0].expr(),
        "vector(1-0.9990000000000001)"
    );
    assert_eq!(
        find(&file, group, "slo:time_period:days")[0].expr(),
        "vector(30)"
    );
    assert!(find(&file, group, "slo:period_burn_rate:ratio")[0]
        .expr()
        .starts_with("slo:sli_error:ratio_rate30d{"));
    let info = find(&file, group, "sloth_slo_info")[0].labels();
    assert_eq!(info["sloth_objective"], "99.9");
    assert_eq!(info["sloth_spec"], "prometheus/v1");
    assert_eq!(info["sloth_mode"], "cli-gen-prom");
    assert_eq!(info["sloth_version"], VERSION);
}

#[test]
fn the_page_alert_burns_at_14_4_and_6_times_the_budget_without_the_window_label() {
    let file = rules(Period::Days30);
    let alerts = find(
        &file,
        "sloth-slo-alerts-checkout-requests-availability",
        "CheckoutAvailabilitySLO",
    );
    assert_eq!(alerts.len(), 2);
    let filter = r#"{sloth_id="checkout-requests-availability", sloth_service="checkout", sloth_slo="requests-availability"}"#;
    let budget = "0.0009999999999999432";
    assert_eq!(
        alerts[0].expr(),
        format!(
            "(\n    max(slo:sli_error:ratio_rate5m{filter} > (14.4 * {budget})) without (sloth_window)\n    and\n    max(slo:sli_error:ratio_rate1h{filter} > (14.4 * {budget})) without (sloth_window)\n)\nor\n(\n    max(slo:sli_error:ratio_rate30m{filter} > (6 * {budget})) without (sloth_window)\n    and\n    max(slo:sli_error:ratio_rate6h{filter} > (6 * {budget})) without (sloth_window)\n)\n"
        )
    );
    // Sloth's labels: `sloth_severity`, then the spec's.
    let page = alerts[0].labels();
    assert_eq!(page["sloth_severity"], "page");
    assert_eq!(page["category"], "availability");
    assert!(!page.contains_key("severity"));
    let ticket = alerts[1].expr();
    assert!(
        ticket.contains("ratio_rate2h") && ticket.contains(&format!("> (3 * {budget}))")),
        "{ticket}"
    );
    assert!(
        ticket.contains("ratio_rate3d") && ticket.contains(&format!("> (1 * {budget}))")),
        "{ticket}"
    );
    assert_eq!(alerts[1].labels()["severity"], "warning");
    assert_eq!(alerts[1].labels()["sloth_severity"], "ticket");
    let Rule::Alerting { annotations, .. } = alerts[1] else {
        panic!("an alert")
    };
    assert_eq!(
        annotations["title"],
        "(ticket) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is too fast."
    );
}

#[test]
fn a_disabled_tier_has_no_alert_and_flags_drop_groups() {
    let file = rules(Period::Days28);
    let alerts = find(
        &file,
        "sloth-slo-alerts-checkout-requests-latency",
        "CheckoutLatencySLO",
    );
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].labels()["sloth_severity"], "ticket");
    assert!(
        alerts[0].expr().contains("> (2.8000000000000003 * 0.01))"),
        "{}",
        alerts[0].expr()
    );

    let options = |disable_alerts, disable_recordings| Options {
        disable_alerts,
        disable_recordings,
        ..Options::default()
    };
    let names =
        |file: RuleFile| -> Vec<String> { file.groups.into_iter().map(|g| g.name).collect() };
    let no_alerts = names(generate_with(
        &spec(),
        Period::Days30,
        &options(true, false),
    ));
    assert!(
        no_alerts
            .iter()
            .all(|name| !name.starts_with("sloth-slo-alerts-")),
        "{no_alerts:?}"
    );
    assert_eq!(no_alerts.len(), 4);
    let alerts_only = names(generate_with(
        &spec(),
        Period::Days30,
        &options(false, true),
    ));
    assert_eq!(
        alerts_only,
        [
            "sloth-slo-alerts-checkout-requests-availability",
            "sloth-slo-alerts-checkout-requests-latency"
        ]
    );
}

#[test]
fn extra_labels_go_on_every_recording_over_the_specs() {
    let options = Options {
        extra_labels: Labels::from([
            ("team".to_string(), "platform".to_string()),
            ("env".to_string(), "prod".to_string()),
        ]),
        ..Options::default()
    };
    let file = generate_with(&spec(), Period::Days30, &options);
    for rule in file.rules() {
        match rule {
            Rule::Recording { labels, .. } => {
                assert_eq!(labels["env"], "prod");
                assert_eq!(labels["team"], "platform");
            }
            Rule::Alerting { labels, .. } => assert!(!labels.contains_key("env")),
        }
    }
}

#[test]
fn the_yaml_is_a_rule_file() {
    let yaml = rules(Period::Days30).to_yaml();
    assert!(
        yaml.starts_with(
            "groups:\n- name: sloth-slo-sli-recordings-checkout-requests-availability\n"
        ),
        "{yaml}"
    );
    let back: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
    assert_eq!(back["groups"].as_sequence().map(Vec::len), Some(6));
}

/// Sloth's example of custom windows: a 7-day period.
const SEVEN_DAYS: &str = r#"
apiVersion: sloth.slok.dev/v1
kind: AlertWindows
spec:
  sloPeriod: 7d
  page:
    quick: {errorBudgetPercent: 8, shortWindow: 5m, longWindow: 1h}
    slow: {errorBudgetPercent: 12.5, shortWindow: 30m, longWindow: 6h}
  ticket:
    quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 24h}
    slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 72h}
"#;

#[test]
fn custom_alert_windows_give_their_own_factors_and_period() {
    let windows = AlertWindows::parse(SEVEN_DAYS).expect("valid windows");
    let period = Period::Custom(windows);
    assert_eq!(period.days(), 7);
    assert_eq!(period.days_text(), "7");
    // Sloth's golden for these windows: 13.44, 3.5, 1.4000000000000001, 0.98.
    let written: Vec<String> = factors(period).iter().map(|f| format_g(*f)).collect();
    assert_eq!(written, ["13.44", "3.5", "1.4000000000000001", "0.98"]);
    let file = generate(&spec(), period).to_yaml();
    assert!(file.contains("slo:sli_error:ratio_rate1w"), "{file}");
    assert!(file.contains("vector(7)"), "{file}");

    let bad = SEVEN_DAYS.replace("longWindow: 72h", "longWindow: 8d");
    let error = AlertWindows::parse(&bad).unwrap_err();
    assert_eq!(error.field, "spec.ticket.slow");
    let bad = SEVEN_DAYS.replace("shortWindow: 5m", "shortWindow: 5x");
    let error = AlertWindows::parse(&bad).unwrap_err();
    assert_eq!(error.field, "spec.page.quick.shortWindow");
}
