//! Generation of Prometheus recording and multi-window multi-burn-rate alerting rules from a spec,
//! with Sloth's rule names, labels and thresholds.
//!
//! Per SLO there are three groups: the SLI error ratio over every window the alerts use and over
//! the whole period, the metadata dashboards read (objective, budget, burn rates), and the alerts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::{Labels, Slo, Spec, SPEC_VERSION};

/// The name of the SLI error ratio recording for a window, as `slo:sli_error:ratio_rate5m`.
pub fn sli_error_metric(window: Window) -> String {
    format!("slo:sli_error:ratio_rate{window}")
}

const WINDOW_LABEL: &str = "sloth_window";

static WINDOW_TEMPLATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{\s*\.window\s*\}\}").expect("a valid regex"));

/// Whether a query holds `{{.window}}`.
pub(crate) fn has_window(query: &str) -> bool {
    WINDOW_TEMPLATE.is_match(query)
}

/// Replaces every `{{.window}}` in a query with `window`.
pub(crate) fn render_window(query: &str, window: &str) -> String {
    WINDOW_TEMPLATE
        .replace_all(query, regex::NoExpand(window))
        .into_owned()
}

/// A time window, in minutes, written as Prometheus writes durations (`5m`, `1h`, `3d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window(u32);

impl Window {
    pub const fn minutes(minutes: u32) -> Window {
        Window(minutes)
    }

    pub const fn hours(hours: u32) -> Window {
        Window(hours * 60)
    }

    pub const fn days(days: u32) -> Window {
        Window(days * 24 * 60)
    }

    pub fn as_hours(self) -> f64 {
        f64::from(self.0) / 60.0
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAY: u32 = 24 * 60;
        // Remainders bound apart from the test: `is_multiple_of` is newer than our MSRV.
        let (days, hours) = (self.0 / DAY, self.0 / 60);
        let (day_rest, hour_rest) = (self.0 % DAY, self.0 % 60);
        if day_rest == 0 {
            write!(f, "{days}d")
        } else if hour_rest == 0 {
            write!(f, "{hours}h")
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

/// The SLO period the error budget is spent over, with its alert windows: 28 or 30 days with the
/// SRE workbook's windows, or custom windows from a Sloth `AlertWindows` file.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Period {
    Days28,
    #[default]
    Days30,
    Custom(AlertWindows),
}

impl Period {
    pub fn window(self) -> Window {
        match self {
            Period::Days28 => Window::days(28),
            Period::Days30 => Window::days(30),
            Period::Custom(windows) => windows.period,
        }
    }

    /// Whole days (custom periods are whole days).
    pub fn days(self) -> u32 {
        self.window().0 / (24 * 60)
    }

    /// The page and ticket conditions for this period.
    pub fn burn_rates(self) -> BurnRates {
        match self {
            Period::Custom(windows) => windows.rates,
            standard => BurnRates::for_period(standard),
        }
    }
}

/// Custom alert windows, as Sloth's `AlertWindows` (`sloth.slok.dev/v1`) declares them: the period,
/// and for each alert condition the share of the budget it spends and its two windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertWindows {
    pub period: Window,
    pub rates: BurnRates,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AlertWindowsFile {
    api_version: String,
    kind: String,
    spec: AlertWindowsSpec,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AlertWindowsSpec {
    slo_period: String,
    page: QuickSlow,
    ticket: QuickSlow,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuickSlow {
    quick: WindowSpec,
    slow: WindowSpec,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WindowSpec {
    error_budget_percent: f64,
    short_window: String,
    long_window: String,
}

/// `5m`, `1h`, `3d`, `1w` as a window; seconds are too fine for burn-rate windows.
fn parse_window(text: &str) -> Option<Window> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let count: u32 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let minutes = match unit {
        'm' => count,
        'h' => count.checked_mul(60)?,
        'd' => count.checked_mul(24 * 60)?,
        'w' => count.checked_mul(7 * 24 * 60)?,
        _ => return None,
    };
    (minutes > 0).then_some(Window(minutes))
}

impl AlertWindows {
    /// Reads a Sloth `AlertWindows` file.
    pub fn parse(text: &str) -> Result<AlertWindows, super::Error> {
        let file: AlertWindowsFile = serde_yaml_ng::from_str(text)
            .map_err(|error| super::Error::new("", error.to_string()))?;
        if file.api_version != "sloth.slok.dev/v1" || file.kind != "AlertWindows" {
            return Err(super::Error::new(
                "kind",
                format!(
                    "`{}` `{}` is not `sloth.slok.dev/v1` `AlertWindows`",
                    file.api_version, file.kind
                ),
            ));
        }
        let window = |field: &str, text: &str| {
            parse_window(text).ok_or_else(|| {
                super::Error::new(
                    field,
                    format!("`{text}` is not a window; write minutes, hours, days or weeks: `5m`, `1h`, `3d`"),
                )
            })
        };
        let period = window("spec.sloPeriod", &file.spec.slo_period)?;
        if period.0 % (24 * 60) != 0 {
            return Err(super::Error::new(
                "spec.sloPeriod",
                format!("`{}` is not a whole number of days", file.spec.slo_period),
            ));
        }
        let rate = |field: &str, spec: &WindowSpec| -> Result<BurnRate, super::Error> {
            let short = window(&format!("{field}.shortWindow"), &spec.short_window)?;
            let long = window(&format!("{field}.longWindow"), &spec.long_window)?;
            if short >= long || long > period {
                return Err(super::Error::new(
                    field,
                    "needs a short window under its long window, and the long window within the period",
                ));
            }
            let percent = spec.error_budget_percent;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(super::Error::new(
                    format!("{field}.errorBudgetPercent"),
                    format!("{percent} is not a percentage above 0"),
                ));
            }
            Ok(BurnRate::new(period, short, long, percent / 100.0))
        };
        Ok(AlertWindows {
            period,
            rates: BurnRates {
                page_quick: rate("spec.page.quick", &file.spec.page.quick)?,
                page_slow: rate("spec.page.slow", &file.spec.page.slow)?,
                ticket_quick: rate("spec.ticket.quick", &file.spec.ticket.quick)?,
                ticket_slow: rate("spec.ticket.slow", &file.spec.ticket.slow)?,
            },
        })
    }
}

/// A period that is not `28d` or `30d`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("period `{0}` is not supported; use `28d` or `30d`")]
pub struct UnsupportedPeriod(pub String);

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Period, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Period {
    type Err = UnsupportedPeriod;

    fn from_str(text: &str) -> Result<Period, UnsupportedPeriod> {
        match text {
            "28d" => Ok(Period::Days28),
            "30d" => Ok(Period::Days30),
            other => Err(UnsupportedPeriod(other.to_string())),
        }
    }
}

/// One condition of a multi-window alert: the error ratio over both windows is above
/// `factor` times the error budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRate {
    pub short: Window,
    pub long: Window,
    /// The share of the period's error budget that burning this fast for `long` spends.
    pub budget_fraction: f64,
    /// How many times faster than the budget allows the errors come.
    pub factor: f64,
}

impl BurnRate {
    fn new(period: Window, short: Window, long: Window, budget_fraction: f64) -> BurnRate {
        // Spending `budget_fraction` of the budget within `long` means burning
        // `budget_fraction * period / long` times as fast as the period allows.
        let factor = round(budget_fraction * period.as_hours() / long.as_hours());
        BurnRate {
            short,
            long,
            budget_fraction,
            factor,
        }
    }
}

/// The four conditions of the two alerts: the page fires on either fast burn, the ticket on
/// either slow burn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRates {
    pub page_quick: BurnRate,
    pub page_slow: BurnRate,
    pub ticket_quick: BurnRate,
    pub ticket_slow: BurnRate,
}

impl BurnRates {
    /// The windows and budget shares of the SRE workbook, as Sloth uses them.
    pub fn for_period(period: Period) -> BurnRates {
        let period = period.window();
        BurnRates {
            page_quick: BurnRate::new(period, Window::minutes(5), Window::hours(1), 0.02),
            page_slow: BurnRate::new(period, Window::minutes(30), Window::hours(6), 0.05),
            ticket_quick: BurnRate::new(period, Window::hours(2), Window::days(1), 0.10),
            ticket_slow: BurnRate::new(period, Window::hours(6), Window::days(3), 0.10),
        }
    }

    /// Every window the alerts read, shortest first, without repeats.
    pub fn windows(&self) -> Vec<Window> {
        let mut windows = vec![
            self.page_quick.short,
            self.page_quick.long,
            self.page_slow.short,
            self.page_slow.long,
            self.ticket_quick.short,
            self.ticket_quick.long,
            self.ticket_slow.short,
            self.ticket_slow.long,
        ];
        windows.sort();
        windows.dedup();
        windows
    }
}

/// A Prometheus rule file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Rule {
    Recording {
        record: String,
        expr: String,
        labels: Labels,
    },
    Alerting {
        alert: String,
        expr: String,
        labels: Labels,
        annotations: Labels,
    },
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording { record, .. } => record,
            Rule::Alerting { alert, .. } => alert,
        }
    }

    pub fn expr(&self) -> &str {
        match self {
            Rule::Recording { expr, .. } | Rule::Alerting { expr, .. } => expr,
        }
    }

    pub fn labels(&self) -> &Labels {
        match self {
            Rule::Recording { labels, .. } | Rule::Alerting { labels, .. } => labels,
        }
    }
}

impl RuleFile {
    /// The file as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("rule files serialize")
    }
}

/// Generates the rules of every SLO of a validated spec.
pub fn generate(spec: &Spec, period: Period) -> RuleFile {
    let burn_rates = period.burn_rates();
    let mut groups = Vec::new();
    for slo in &spec.slos {
        let generator = SloRules::new(spec, slo, period, burn_rates);
        groups.push(Group {
            name: format!("sloth-slo-sli-recordings-{}", generator.id),
            rules: generator.sli_recordings(),
        });
        groups.push(Group {
            name: format!("sloth-slo-meta-recordings-{}", generator.id),
            rules: generator.meta_recordings(),
        });
        let alerts = generator.alerts();
        if !alerts.is_empty() {
            groups.push(Group {
                name: format!("sloth-slo-alerts-{}", generator.id),
                rules: alerts,
            });
        }
    }
    RuleFile { groups }
}

/// What the rules of one SLO are made from.
struct SloRules<'a> {
    slo: &'a Slo,
    id: String,
    period: Period,
    burn_rates: BurnRates,
    /// `sloth_id`, `sloth_service` and `sloth_slo`.
    id_labels: Labels,
    /// The spec's labels with the SLO's over them.
    slo_labels: Labels,
    /// `{sloth_id="...", sloth_service="...", sloth_slo="..."}`.
    filter: String,
}

impl<'a> SloRules<'a> {
    fn new(spec: &'a Spec, slo: &'a Slo, period: Period, burn_rates: BurnRates) -> SloRules<'a> {
        let id = slo.id(&spec.service);
        let id_labels = Labels::from([
            ("sloth_id".to_string(), id.clone()),
            ("sloth_service".to_string(), spec.service.clone()),
            ("sloth_slo".to_string(), slo.name.clone()),
        ]);
        let filter = format!(
            "{{{}}}",
            id_labels
                .iter()
                .map(|(name, value)| format!("{name}=\"{value}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        SloRules {
            slo,
            id,
            period,
            burn_rates,
            id_labels,
            slo_labels: merge(&[&spec.labels, &slo.labels]),
            filter,
        }
    }

    fn error_budget(&self) -> f64 {
        round((100.0 - self.slo.objective) / 100.0)
    }

    fn sli_recordings(&self) -> Vec<Rule> {
        let mut rules = Vec::new();
        for window in self.burn_rates.windows() {
            let rendered = window.to_string();
            let sli = &self.slo.sli;
            let expr = match (&sli.events, &sli.raw) {
                (Some(events), _) => format!(
                    "({})\n/\n({})\n",
                    render_window(events.error_query.trim(), &rendered),
                    render_window(events.total_query.trim(), &rendered)
                ),
                (None, Some(raw)) => {
                    format!(
                        "({})\n",
                        render_window(raw.error_ratio_query.trim(), &rendered)
                    )
                }
                // A validated spec has one or the other.
                (None, None) => String::new(),
            };
            let window_label = Labels::from([(WINDOW_LABEL.to_string(), rendered)]);
            rules.push(Rule::Recording {
                record: sli_error_metric(window),
                expr,
                labels: merge(&[&self.id_labels, &window_label, &self.slo_labels]),
            });
        }
        // The period's ratio averages the shortest window's instead of querying 30 days of raw
        // series: far cheaper, and a ratio of sums, not an average of ratios.
        let period = self.period.window();
        let shortest = sli_error_metric(self.burn_rates.page_quick.short);
        rules.push(Rule::Recording {
            record: sli_error_metric(period),
            expr: format!(
                "sum_over_time({shortest}{filter}[{period}])\n/ ignoring ({WINDOW_LABEL})\ncount_over_time({shortest}{filter}[{period}])\n",
                filter = self.filter
            ),
            // The other labels come from the recording it reads. Sloth sets only the window; the
            // SLO's ids (the same values the series carry anyway) keep the rules of two SLOs from
            // being identical, which `promtool check rules` refuses as duplicates.
            labels: merge(&[
                &self.id_labels,
                &Labels::from([(WINDOW_LABEL.to_string(), period.to_string())]),
            ]),
        });
        rules
    }

    fn meta_recordings(&self) -> Vec<Rule> {
        let labels = merge(&[&self.id_labels, &self.slo_labels]);
        let objective = round(self.slo.objective / 100.0);
        let burn_rate = |window: Window| {
            format!(
                "{metric}{filter}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{filter}\n",
                metric = sli_error_metric(window),
                filter = self.filter
            )
        };
        let recording = |record: &str, expr: String| Rule::Recording {
            record: record.to_string(),
            expr,
            labels: labels.clone(),
        };
        let info_labels = Labels::from([
            (
                "sloth_version".to_string(),
                format!("homeostat-{}", env!("CARGO_PKG_VERSION")),
            ),
            ("sloth_mode".to_string(), "cli-gen-prom".to_string()),
            ("sloth_spec".to_string(), SPEC_VERSION.to_string()),
            (
                "sloth_objective".to_string(),
                format!("{}", self.slo.objective),
            ),
        ]);
        vec![
            recording("slo:objective:ratio", format!("vector({objective})")),
            recording("slo:error_budget:ratio", format!("vector(1-{objective})")),
            recording(
                "slo:time_period:days",
                format!("vector({})", self.period.days()),
            ),
            recording(
                "slo:current_burn_rate:ratio",
                burn_rate(self.burn_rates.page_quick.short),
            ),
            recording(
                "slo:period_burn_rate:ratio",
                burn_rate(self.period.window()),
            ),
            recording(
                "slo:period_error_budget_remaining:ratio",
                format!("1 - slo:period_burn_rate:ratio{}", self.filter),
            ),
            Rule::Recording {
                record: "sloth_slo_info".to_string(),
                expr: "vector(1)".to_string(),
                labels: merge(&[&labels, &info_labels]),
            },
        ]
    }

    fn alerts(&self) -> Vec<Rule> {
        let alerting = &self.slo.alerting;
        let mut rules = Vec::new();
        let tiers = [
            (
                "page",
                &alerting.page_alert,
                self.burn_rates.page_quick,
                self.burn_rates.page_slow,
            ),
            (
                "ticket",
                &alerting.ticket_alert,
                self.burn_rates.ticket_quick,
                self.burn_rates.ticket_slow,
            ),
        ];
        for (severity, tier, quick, slow) in tiers {
            if tier.disable {
                continue;
            }
            // `severity` is what Alertmanager routes and inhibits on; the spec's labels may
            // rename it, as they may `sloth_severity` in Sloth.
            let own_labels = Labels::from([
                ("severity".to_string(), severity.to_string()),
                ("sloth_severity".to_string(), severity.to_string()),
            ]);
            let own_annotations = Labels::from([
                (
                    "title".to_string(),
                    format!("({severity}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error budget burn rate is too fast."),
                ),
                (
                    "summary".to_string(),
                    "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected.".to_string(),
                ),
            ]);
            rules.push(Rule::Alerting {
                alert: alerting.name.clone(),
                expr: self.alert_expr(quick, slow),
                labels: merge(&[&own_labels, &alerting.labels, &tier.labels]),
                annotations: merge(&[&own_annotations, &alerting.annotations, &tier.annotations]),
            });
        }
        rules
    }

    /// Both windows of either burn rate over their threshold. `ignoring (sloth_window)` lets the
    /// recordings of different windows match; the alert keeps the window of the side that fired.
    fn alert_expr(&self, quick: BurnRate, slow: BurnRate) -> String {
        let budget = number(self.error_budget());
        let over = |window: Window, factor: f64| {
            format!(
                "({metric}{filter} > ({factor} * {budget}))",
                metric = sli_error_metric(window),
                filter = self.filter,
                factor = number(factor),
            )
        };
        format!(
            "(\n    {}\n    and ignoring ({WINDOW_LABEL})\n    {}\n)\nor ignoring ({WINDOW_LABEL})\n(\n    {}\n    and ignoring ({WINDOW_LABEL})\n    {}\n)\n",
            over(quick.short, quick.factor),
            over(quick.long, quick.factor),
            over(slow.short, slow.factor),
            over(slow.long, slow.factor),
        )
    }
}

/// Later maps win.
fn merge(maps: &[&Labels]) -> Labels {
    let mut merged = BTreeMap::new();
    for map in maps {
        merged.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged
}

/// Drops the noise of binary floating point (`1 - 0.999` is `0.0010000000000000009`), so
/// thresholds read as written; twelve decimals keep budgets down to a millionth of a percent.
fn round(value: f64) -> f64 {
    (value * 1e12).round() / 1e12
}

fn number(value: f64) -> String {
    format!("{}", round(value))
}

#[cfg(test)]
mod tests {
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

    fn rules(period: Period) -> RuleFile {
        generate(&super::super::parse(SPEC).expect("valid"), period)
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
        let rates = BurnRates::for_period(period);
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
    fn the_28_day_factors_scale_with_the_period() {
        let [page_quick, page_slow, ticket_quick, ticket_slow] = factors(Period::Days28);
        assert_eq!(page_quick, 13.44);
        assert_eq!(page_slow, 5.6);
        assert_eq!(ticket_quick, 2.8);
        assert!(
            (ticket_slow - 0.933_333_333_333).abs() < 1e-9,
            "{ticket_slow}"
        );
    }

    #[test]
    fn periods_other_than_28d_and_30d_are_refused() {
        assert_eq!("28d".parse(), Ok(Period::Days28));
        assert_eq!("30d".parse(), Ok(Period::Days30));
        let error = "7d".parse::<Period>().expect_err("refused");
        assert_eq!(
            error.to_string(),
            "period `7d` is not supported; use `28d` or `30d`"
        );
    }

    #[test]
    fn windows_print_as_prometheus_durations() {
        let windows: Vec<String> = BurnRates::for_period(Period::Days30)
            .windows()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(windows, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
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
        assert_eq!(
            one_hour.expr(),
            "(sum(rate(http_requests_total{job=\"checkout\",code=~\"5..\"}[1h])))\n/\n(sum(rate(http_requests_total{job=\"checkout\"}[1h])))\n"
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
        assert_eq!(
            group.rules[7].expr(),
            format!("sum_over_time(slo:sli_error:ratio_rate5m{filter}[30d])\n/ ignoring (sloth_window)\ncount_over_time(slo:sli_error:ratio_rate5m{filter}[30d])\n")
        );
    }

    #[test]
    fn a_raw_sli_is_the_query_with_its_window() {
        let file = rules(Period::Days28);
        let recording = find(
            &file,
            "sloth-slo-sli-recordings-checkout-requests-latency",
            "slo:sli_error:ratio_rate6h",
        );
        assert_eq!(
            recording[0].expr(),
            "(1 - (sum(rate(http_request_duration_seconds_bucket{le=\"0.5\"}[6h])) / sum(rate(http_request_duration_seconds_count[6h]))))\n"
        );
        assert_eq!(
            find(
                &file,
                "sloth-slo-sli-recordings-checkout-requests-latency",
                "slo:sli_error:ratio_rate28d"
            )
            .len(),
            1
        );
    }

    #[test]
    fn metadata_records_objective_budget_and_period() {
        let file = rules(Period::Days30);
        let group = "sloth-slo-meta-recordings-checkout-requests-availability";
        assert_eq!(
            find(&file, group, "slo:objective:ratio")[0].expr(),
            "vector(0.999)"
        );
        assert_eq!(
            find(&file, group, "slo:error_budget:ratio")[0].expr(),
            "vector(1-0.999)"
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
    }

    #[test]
    fn the_page_alert_burns_at_14_4_and_6_times_the_budget() {
        let file = rules(Period::Days30);
        let alerts = find(
            &file,
            "sloth-slo-alerts-checkout-requests-availability",
            "CheckoutAvailabilitySLO",
        );
        assert_eq!(alerts.len(), 2);
        let page = alerts[0].expr();
        assert!(page.contains("(slo:sli_error:ratio_rate5m{sloth_id=\"checkout-requests-availability\", sloth_service=\"checkout\", sloth_slo=\"requests-availability\"} > (14.4 * 0.001))"), "{page}");
        assert!(page.contains("ratio_rate1h{sloth_id=\"checkout-requests-availability\", sloth_service=\"checkout\", sloth_slo=\"requests-availability\"} > (14.4 * 0.001))"), "{page}");
        assert!(page.contains("ratio_rate30m{sloth_id=\"checkout-requests-availability\", sloth_service=\"checkout\", sloth_slo=\"requests-availability\"} > (6 * 0.001))"), "{page}");
        assert!(page.contains("ratio_rate6h{sloth_id=\"checkout-requests-availability\", sloth_service=\"checkout\", sloth_slo=\"requests-availability\"} > (6 * 0.001))"), "{page}");
        assert_eq!(alerts[0].labels()["severity"], "page");
        assert_eq!(alerts[0].labels()["sloth_severity"], "page");
        assert_eq!(alerts[0].labels()["category"], "availability");

        let ticket = alerts[1].expr();
        assert!(
            ticket.contains("ratio_rate2h{") && ticket.contains("> (3 * 0.001))"),
            "{ticket}"
        );
        assert!(
            ticket.contains("ratio_rate1d{") && ticket.contains("ratio_rate3d{"),
            "{ticket}"
        );
        assert!(ticket.contains("ratio_rate6h{sloth_id=\"checkout-requests-availability\", sloth_service=\"checkout\", sloth_slo=\"requests-availability\"} > (1 * 0.001))"), "{ticket}");
        // The spec's ticket labels override the default severity; `sloth_severity` stays.
        assert_eq!(alerts[1].labels()["severity"], "warning");
        assert_eq!(alerts[1].labels()["sloth_severity"], "ticket");
    }

    #[test]
    fn a_28_day_period_and_a_99_objective_give_their_own_thresholds() {
        let file = rules(Period::Days28);
        let alerts = find(
            &file,
            "sloth-slo-alerts-checkout-requests-latency",
            "CheckoutLatencySLO",
        );
        // The page is disabled: only the ticket remains.
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels()["severity"], "ticket");
        let ticket = alerts[0].expr();
        assert!(ticket.contains("> (2.8 * 0.01))"), "{ticket}");
        assert!(ticket.contains("> (0.933333333333 * 0.01))"), "{ticket}");
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
    quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 1d}
    slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 3d}
"#;

    #[test]
    fn custom_alert_windows_give_their_own_factors_and_period() {
        let windows = AlertWindows::parse(SEVEN_DAYS).expect("valid windows");
        let period = Period::Custom(windows);
        assert_eq!(period.days(), 7);
        let rates = period.burn_rates();
        // 8% of 7 days' budget in 1h: 0.08 * 168 / 1 = 13.44; 12.5% in 6h: 3.5; 20% in 1d: 1.4;
        // 42% in 3d: 0.98.
        let factors = [
            rates.page_quick.factor,
            rates.page_slow.factor,
            rates.ticket_quick.factor,
            rates.ticket_slow.factor,
        ];
        assert_eq!(factors, [13.44, 3.5, 1.4, 0.98]);
        let file = generate(&super::super::parse(SPEC).expect("valid"), period).to_yaml();
        assert!(file.contains("slo:sli_error:ratio_rate7d"), "{file}");
        assert!(file.contains("vector(7)"), "{file}");
        assert!(file.contains("(13.44 * 0.001)"), "{file}");

        let bad = SEVEN_DAYS.replace("longWindow: 3d", "longWindow: 8d");
        let error = AlertWindows::parse(&bad).unwrap_err();
        assert_eq!(error.field, "spec.ticket.slow");
        let bad = SEVEN_DAYS.replace("shortWindow: 5m", "shortWindow: 5s");
        let error = AlertWindows::parse(&bad).unwrap_err();
        assert_eq!(error.field, "spec.page.quick.shortWindow");
    }
}
