//! Generation of Prometheus recording and multi-window multi-burn-rate alerting rules from a spec,
//! equal to Sloth's: the same groups, record names, expressions, labels, annotations and the same
//! floating-point thresholds, written the way Go writes them (the `gofmt` module).
//!
//! Per SLO there are three groups: the SLI error ratio over every window the alerts use and over
//! the whole period, the metadata dashboards read (objective, budget, burn rates), and the alerts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::gofmt::{format_f, format_g};
use super::{Format, Labels, Slo, Spec};

/// The name of the SLI error ratio recording for a window, as `slo:sli_error:ratio_rate5m`.
pub fn sli_error_metric(window: Window) -> String {
    format!("slo:sli_error:ratio_rate{window}")
}

const WINDOW_LABEL: &str = "sloth_window";

/// What `sloth_version` says in the rules homeostat writes.
pub const VERSION: &str = concat!("homeostat-", env!("CARGO_PKG_VERSION"));

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

/// A duration as Prometheus and Sloth write it (`5m`, `1h30m`, `4w`), kept in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window(u64);

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
const YEAR: u64 = 365 * DAY;

impl Window {
    pub const fn minutes(minutes: u64) -> Window {
        Window(minutes * MINUTE)
    }

    pub const fn hours(hours: u64) -> Window {
        Window(hours * HOUR)
    }

    pub const fn days(days: u64) -> Window {
        Window(days * DAY)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1_000.0
    }

    /// Hours as Go's `time.Duration.Hours` computes them: whole hours plus the rest divided, so
    /// the factors derived from them are the same `f64` Sloth's are.
    pub fn as_hours(self) -> f64 {
        let whole = self.0 / HOUR;
        let rest_nanos = (self.0 % HOUR) * 1_000_000;
        whole as f64 + rest_nanos as f64 / (60.0 * 60.0 * 1e9)
    }

    /// Reads a Prometheus duration: `5m`, `24h`, `7d`, `1w`, `1h30m`, `500ms`.
    pub fn parse(text: &str) -> Option<Window> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let mut total: u64 = 0;
        let mut rest = text;
        let mut last_unit = u64::MAX;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return None;
            }
            let count: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let (unit, len) = if rest.starts_with("ms") {
                (1, 2)
            } else {
                let unit = match rest.chars().next()? {
                    's' => SECOND,
                    'm' => MINUTE,
                    'h' => HOUR,
                    'd' => DAY,
                    'w' => WEEK,
                    'y' => YEAR,
                    _ => return None,
                };
                (unit, 1)
            };
            // Units must come largest first and once each, as Prometheus requires.
            if unit >= last_unit {
                return None;
            }
            last_unit = unit;
            total = total.checked_add(count.checked_mul(unit)?)?;
            rest = &rest[len..];
        }
        (total > 0).then_some(Window(total))
    }
}

impl fmt::Display for Window {
    /// Prometheus' `model.Duration.String`: years and weeks only when they divide exactly, then
    /// days, hours, minutes, seconds and milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return write!(f, "0s");
        }
        for (unit, name, exact) in [
            (YEAR, "y", true),
            (WEEK, "w", true),
            (DAY, "d", false),
            (HOUR, "h", false),
            (MINUTE, "m", false),
            (SECOND, "s", false),
            (1, "ms", false),
        ] {
            // The remainder bound apart from the test: `is_multiple_of` is newer than our MSRV.
            let rest = ms % unit;
            if exact && rest != 0 {
                continue;
            }
            let count = ms / unit;
            if count > 0 {
                write!(f, "{count}{name}")?;
                ms -= count * unit;
            }
        }
        Ok(())
    }
}

/// The SLO period the error budget is spent over, with its alert windows: 28 or 30 days with the
/// SRE workbook's windows (Sloth's built-in `google-28d` and `google-30d`), or custom windows from
/// a Sloth `AlertWindows` file.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Period {
    Days28,
    #[default]
    Days30,
    Custom(AlertWindows),
}

impl Period {
    pub fn window(self) -> Window {
        self.alert_windows().period
    }

    /// Whole days, for messages; [`Period::days_text`] is what the rules say.
    pub fn days(self) -> u32 {
        (self.window().0 / DAY) as u32
    }

    /// The period in days as Sloth writes `slo:time_period:days`: `vector(30)`.
    pub fn days_text(self) -> String {
        format_g(self.window().as_hours() / 24.0)
    }

    /// The page and ticket conditions for this period.
    pub fn burn_rates(self) -> BurnRates {
        self.alert_windows().rates
    }

    /// The period with its windows.
    pub fn alert_windows(self) -> AlertWindows {
        match self {
            Period::Days28 => AlertWindows::workbook(Window::days(28)),
            Period::Days30 => AlertWindows::workbook(Window::days(30)),
            Period::Custom(windows) => windows,
        }
    }
}

/// Alert windows, as Sloth's `AlertWindows` (`sloth.slok.dev/v1`) declares them: the period, and
/// for each alert condition the share of the budget it spends and its two windows.
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

impl AlertWindows {
    /// The SRE workbook's windows for a period, as Sloth ships them for 28 and 30 days: page at 2%
    /// of the budget in 1h (and 5m), 5% in 6h (and 30m); ticket at 10% in 1d (and 2h) and in 3d
    /// (and 6h).
    pub fn workbook(period: Window) -> AlertWindows {
        AlertWindows {
            period,
            rates: BurnRates {
                page_quick: BurnRate::new(period, Window::minutes(5), Window::hours(1), 2.0),
                page_slow: BurnRate::new(period, Window::minutes(30), Window::hours(6), 5.0),
                ticket_quick: BurnRate::new(period, Window::hours(2), Window::days(1), 10.0),
                ticket_slow: BurnRate::new(period, Window::hours(6), Window::days(3), 10.0),
            },
        }
    }

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
            Window::parse(text).ok_or_else(|| {
                super::Error::new(
                    field,
                    format!("`{text}` is not a duration; write it as Prometheus does: `5m`, `1h`, `3d`, `1w`"),
                )
            })
        };
        let period = window("spec.sloPeriod", &file.spec.slo_period)?;
        let part_of_a_day = period.0 % DAY;
        if part_of_a_day != 0 {
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
            Ok(BurnRate::new(period, short, long, percent))
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
        match Window::parse(text) {
            Some(window) if window == Window::days(28) => Ok(Period::Days28),
            Some(window) if window == Window::days(30) => Ok(Period::Days30),
            _ => Err(UnsupportedPeriod(text.to_string())),
        }
    }
}

/// One condition of a multi-window alert: the error ratio over both windows is above
/// `factor` times the error budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRate {
    pub short: Window,
    pub long: Window,
    /// The share of the period's error budget, in percent, that burning this fast for `long`
    /// spends.
    pub budget_percent: f64,
    /// How many times faster than the budget allows the errors come.
    pub factor: f64,
}

impl BurnRate {
    fn new(period: Window, short: Window, long: Window, budget_percent: f64) -> BurnRate {
        // Spending `budget_percent` of the budget within `long` means burning
        // `budget_percent / 100 * period / long` times as fast as the period allows. Computed in
        // Sloth's order, so the factor is the very `f64` Sloth writes (`5.6000000000000005`).
        let hours_to_spend = budget_percent * period.as_hours() / 100.0;
        let factor = hours_to_spend / long.as_hours();
        BurnRate {
            short,
            long,
            budget_percent,
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
        period.burn_rates()
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

    /// The file wrapped in a Prometheus operator `PrometheusRule`, as Sloth writes the rules of a
    /// Kubernetes `PrometheusServiceLevel`.
    pub fn to_prometheus_rule(&self, meta: &super::KubernetesMeta) -> String {
        let mut labels = Labels::from([
            ("app.kubernetes.io/component".to_string(), "SLO".to_string()),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "sloth".to_string(),
            ),
        ]);
        labels.extend(meta.labels.clone());
        let object = PrometheusRule {
            api_version: "monitoring.coreos.com/v1",
            kind: "PrometheusRule",
            metadata: ObjectMeta {
                creation_timestamp: None,
                labels,
                annotations: meta.annotations.clone(),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
            },
            spec: self,
        };
        serde_yaml_ng::to_string(&object).expect("rule files serialize")
    }

    /// Every rule of every group.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.groups.iter().flat_map(|group| group.rules.iter())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusRule<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    spec: &'a RuleFile,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    // Kubernetes' Go types write an unset creation time as `null`; Sloth's files carry it.
    creation_timestamp: Option<String>,
    labels: Labels,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: Labels,
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
}

/// What to generate, beyond the spec: Sloth's `generate` flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--disable-alerts`: recordings only.
    pub disable_alerts: bool,
    /// `--disable-recordings`: alerts only (they read recordings loaded elsewhere).
    pub disable_recordings: bool,
    /// `--extra-labels`: over the spec's and the SLO's labels, on every recording.
    pub extra_labels: Labels,
    /// `sloth_version` on `sloth_slo_info`.
    pub version: String,
    /// `sloth_mode` and `sloth_spec` on `sloth_slo_info`.
    pub format: Format,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            disable_alerts: false,
            disable_recordings: false,
            extra_labels: Labels::new(),
            version: VERSION.to_string(),
            format: Format::Sloth,
        }
    }
}

/// Generates the rules of every SLO of a validated Sloth `prometheus/v1` spec.
pub fn generate(spec: &Spec, period: Period) -> RuleFile {
    generate_with(spec, period, &Options::default())
}

/// Generates the rules of every SLO of a validated spec, with Sloth's `generate` options.
pub fn generate_with(spec: &Spec, period: Period, options: &Options) -> RuleFile {
    let mut groups = Vec::new();
    for slo in &spec.slos {
        let generator = SloRules::new(spec, slo, period, options);
        if !options.disable_recordings {
            groups.push(Group {
                name: format!("sloth-slo-sli-recordings-{}", generator.id),
                rules: generator.sli_recordings(),
            });
            groups.push(Group {
                name: format!("sloth-slo-meta-recordings-{}", generator.id),
                rules: generator.meta_recordings(),
            });
        }
        if !options.disable_alerts {
            let alerts = generator.alerts();
            if !alerts.is_empty() {
                groups.push(Group {
                    name: format!("sloth-slo-alerts-{}", generator.id),
                    rules: alerts,
                });
            }
        }
    }
    RuleFile { groups }
}

/// The expression of an SLO's error ratio over a window, as its recording rule holds it: the raw
/// query in parentheses, or the error query over the total, where a total of zero gives no value
/// rather than `NaN` or `+Inf` (which would poison the period's average for the whole period).
pub fn sli_expr(slo: &Slo, window: Window) -> String {
    let rendered = window.to_string();
    match (&slo.sli.events, &slo.sli.raw) {
        (Some(events), _) => format!(
            "({})\n/\n(({}) > 0)\n",
            render_window(&events.error_query, &rendered),
            render_window(&events.total_query, &rendered)
        ),
        (None, Some(raw)) => format!("({})", render_window(&raw.error_ratio_query, &rendered)),
        // A validated spec has one or the other.
        (None, None) => String::new(),
    }
}

/// The error budget as a ratio, computed as Sloth does: `(100 - objective) / 100`, so a 99.9%
/// objective's budget is `0.0009999999999999432`, the number the alert thresholds hold.
pub fn error_budget(objective: f64) -> f64 {
    (100.0 - objective) / 100.0
}

/// What the rules of one SLO are made from.
struct SloRules<'a> {
    slo: &'a Slo,
    id: String,
    period: Period,
    burn_rates: BurnRates,
    options: &'a Options,
    /// `sloth_id`, `sloth_service` and `sloth_slo`.
    id_labels: Labels,
    /// The spec's labels, the SLO's over them, and the extra labels over both.
    slo_labels: Labels,
    /// `{sloth_id="...", sloth_service="...", sloth_slo="..."}`.
    filter: String,
}

impl<'a> SloRules<'a> {
    fn new(spec: &'a Spec, slo: &'a Slo, period: Period, options: &'a Options) -> SloRules<'a> {
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
            burn_rates: period.burn_rates(),
            options,
            id_labels,
            slo_labels: merge(&[&spec.labels, &slo.labels, &options.extra_labels]),
            filter,
        }
    }

    fn window_labels(&self, window: Window) -> Labels {
        let window_label = Labels::from([(WINDOW_LABEL.to_string(), window.to_string())]);
        merge(&[&self.id_labels, &window_label, &self.slo_labels])
    }

    fn sli_recordings(&self) -> Vec<Rule> {
        let mut rules = Vec::new();
        for window in self.burn_rates.windows() {
            rules.push(Rule::Recording {
                record: sli_error_metric(window),
                expr: sli_expr(self.slo, window),
                labels: self.window_labels(window),
            });
        }
        // The period's ratio averages the shortest window's instead of querying the whole period
        // of raw series: far cheaper, and a ratio of sums, not an average of ratios.
        let period = self.period.window();
        let shortest = sli_error_metric(self.burn_rates.page_quick.short);
        rules.push(Rule::Recording {
            record: sli_error_metric(period),
            expr: format!(
                "sum_over_time({shortest}{filter}[{period}])\n/ ignoring ({WINDOW_LABEL})\ncount_over_time({shortest}{filter}[{period}])\n",
                filter = self.filter
            ),
            labels: self.window_labels(period),
        });
        rules
    }

    fn meta_recordings(&self) -> Vec<Rule> {
        let labels = merge(&[&self.id_labels, &self.slo_labels]);
        let objective = format_g(self.slo.objective / 100.0);
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
            ("sloth_version".to_string(), self.options.version.clone()),
            (
                "sloth_mode".to_string(),
                self.options.format.mode().to_string(),
            ),
            (
                "sloth_spec".to_string(),
                self.options.format.spec().to_string(),
            ),
            ("sloth_objective".to_string(), format_f(self.slo.objective)),
        ]);
        vec![
            recording("slo:objective:ratio", format!("vector({objective})")),
            recording("slo:error_budget:ratio", format!("vector(1-{objective})")),
            recording(
                "slo:time_period:days",
                format!("vector({})", self.period.days_text()),
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
            let own_labels = Labels::from([("sloth_severity".to_string(), severity.to_string())]);
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

    /// Both windows of either burn rate over their threshold. `max(...) without (sloth_window)`
    /// drops the window label, so the alert's labels do not change with the window that fires:
    /// one incident is one alert, which does not resolve and fire again when the other condition
    /// takes over.
    fn alert_expr(&self, quick: BurnRate, slow: BurnRate) -> String {
        let budget = format_g(error_budget(self.slo.objective));
        let over = |window: Window, factor: f64| {
            format!(
                "max({metric}{filter} > ({factor} * {budget})) without ({WINDOW_LABEL})",
                metric = sli_error_metric(window),
                filter = self.filter,
                factor = format_g(factor),
            )
        };
        format!(
            "(\n    {}\n    and\n    {}\n)\nor\n(\n    {}\n    and\n    {}\n)\n",
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

#[cfg(test)]
mod tests;
