//! Service level objectives: the Sloth `prometheus/v1` spec, its validation, and the Prometheus
//! rules generated from it (in [`rules`]).
//!
//! The spec format and the generated rule names and labels follow Sloth's, so its dashboards and
//! the habits of people who know it carry over.

pub mod burn;
pub mod openslo;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

pub use rules::{generate, AlertWindows, Period, RuleFile};

/// The only spec version understood.
pub const SPEC_VERSION: &str = "prometheus/v1";

/// Labels on a spec, an SLO or an alert.
pub type Labels = BTreeMap<String, String>;

/// A Sloth `prometheus/v1` spec: one service and its SLOs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub version: String,
    pub service: String,
    #[serde(default)]
    pub labels: Labels,
    pub slos: Vec<Slo>,
}

/// One SLO of a spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    /// The objective in percent, such as `99.9`.
    pub objective: f64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: Labels,
    pub sli: Sli,
    #[serde(default)]
    pub alerting: Alerting,
}

/// How the error ratio of an SLO is measured: exactly one of `events` and `raw`. Queries hold
/// `{{.window}}` where the range goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sli {
    #[serde(default)]
    pub events: Option<EventsSli>,
    #[serde(default)]
    pub raw: Option<RawSli>,
}

/// Bad events over all events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSli {
    pub error_query: String,
    pub total_query: String,
}

/// A query that is already the error ratio.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSli {
    pub error_ratio_query: String,
}

/// The alerts of an SLO: a fast-burn page and a slow-burn ticket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(default)]
    pub page_alert: AlertTier,
    #[serde(default)]
    pub ticket_alert: AlertTier,
}

/// The page or the ticket alert of an SLO.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTier {
    #[serde(default)]
    pub disable: bool,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
}

/// Why a spec was refused: the field, what is wrong, and the fix where it is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Error {
    /// The field's path, as `slos[0].objective`; empty for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl Error {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a Sloth `prometheus/v1` spec, or OpenSLO `SLO` documents where they map onto one
/// ([`openslo`]); OpenSLO gives its own period.
pub fn load(text: &str) -> Result<(Spec, Option<Period>), Error> {
    if openslo::is_openslo(text) {
        openslo::parse(text).map(|(spec, period)| (spec, Some(period)))
    } else {
        parse(text).map(|spec| (spec, None))
    }
}

/// Labels the generated rules set themselves, which a spec may not override.
const RESERVED_LABELS: &[&str] = &["sloth_id", "sloth_service", "sloth_slo", "sloth_window"];

/// Parses a spec from YAML and validates it.
pub fn parse(text: &str) -> Result<Spec, Error> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let spec: Spec = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let mut field = error.path().to_string();
        if field == "." || field == "?" {
            field.clear();
        }
        let mut message = error.into_inner().to_string();
        // serde_yaml_ng may start its message with the path (or its parent) again.
        if let Some((head, rest)) = message.split_once(": ") {
            if !head.is_empty() && field.starts_with(head) {
                message = rest.to_string();
            }
        }
        Error::new(field, message)
    })?;
    spec.validate()?;
    Ok(spec)
}

impl Spec {
    /// Checks what serde cannot: names, the objective, labels and queries.
    pub fn validate(&self) -> Result<(), Error> {
        if self.version != SPEC_VERSION {
            return Err(Error::new(
                "version",
                format!("`{}` is not supported; use `{SPEC_VERSION}`", self.version),
            ));
        }
        check_name("service", &self.service)?;
        check_labels("labels", &self.labels)?;
        if self.slos.is_empty() {
            return Err(Error::new("slos", "is empty; declare at least one SLO"));
        }
        let mut seen = BTreeMap::new();
        for (index, slo) in self.slos.iter().enumerate() {
            let at = format!("slos[{index}]");
            check_name(&format!("{at}.name"), &slo.name)?;
            if let Some(first) = seen.insert(slo.name.as_str(), index) {
                return Err(Error::new(
                    format!("{at}.name"),
                    format!(
                        "`{}` is already the name of slos[{first}]; SLO names must be unique",
                        slo.name
                    ),
                ));
            }
            if !(slo.objective > 0.0 && slo.objective < 100.0) {
                return Err(Error::new(
                    format!("{at}.objective"),
                    format!(
                        "{} is not a percentage below 100; write the objective in percent, as `99.9`",
                        slo.objective
                    ),
                ));
            }
            check_labels(&format!("{at}.labels"), &slo.labels)?;
            match (&slo.sli.events, &slo.sli.raw) {
                (Some(events), None) => {
                    check_query(&format!("{at}.sli.events.error_query"), &events.error_query)?;
                    check_query(&format!("{at}.sli.events.total_query"), &events.total_query)?;
                }
                (None, Some(raw)) => {
                    check_query(
                        &format!("{at}.sli.raw.error_ratio_query"),
                        &raw.error_ratio_query,
                    )?;
                }
                (Some(_), Some(_)) => {
                    return Err(Error::new(
                        format!("{at}.sli"),
                        "has both `events` and `raw`; keep one",
                    ));
                }
                (None, None) => {
                    return Err(Error::new(
                        format!("{at}.sli"),
                        "is empty; give `events` (`error_query` and `total_query`) or `raw` (`error_ratio_query`)",
                    ));
                }
            }
            let alerting = &slo.alerting;
            let alerts_on = !alerting.page_alert.disable || !alerting.ticket_alert.disable;
            if alerts_on && alerting.name.is_empty() {
                return Err(Error::new(
                    format!("{at}.alerting.name"),
                    "is missing; name the alert, or set `page_alert.disable` and `ticket_alert.disable`",
                ));
            }
            if alerts_on && !is_metric_name(&alerting.name) {
                return Err(Error::new(
                    format!("{at}.alerting.name"),
                    format!(
                        "`{}` is not a valid alert name; use letters, digits and `_`",
                        alerting.name
                    ),
                ));
            }
            check_alert_labels(&format!("{at}.alerting.labels"), &alerting.labels)?;
            check_alert_labels(
                &format!("{at}.alerting.page_alert.labels"),
                &alerting.page_alert.labels,
            )?;
            check_alert_labels(
                &format!("{at}.alerting.ticket_alert.labels"),
                &alerting.ticket_alert.labels,
            )?;
        }
        Ok(())
    }
}

impl Slo {
    /// The SLO's id in the generated rules' `sloth_id` label: `<service>-<name>`.
    pub fn id(&self, service: &str) -> String {
        format!("{service}-{}", self.name)
    }
}

/// Service and SLO names go into label values and rule group names: keep them plain.
fn check_name(field: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else if name.is_empty() {
        Err(Error::new(field, "is empty"))
    } else {
        Err(Error::new(
            field,
            format!("`{name}` may only hold letters, digits, `-`, `_` and `.`"),
        ))
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn check_alert_labels(field: &str, labels: &Labels) -> Result<(), Error> {
    for name in labels.keys() {
        if !is_label_name(name) {
            return Err(Error::new(
                format!("{field}.{name}"),
                "is not a valid label name; use letters, digits and `_`, not starting with a digit",
            ));
        }
    }
    Ok(())
}

fn check_labels(field: &str, labels: &Labels) -> Result<(), Error> {
    check_alert_labels(field, labels)?;
    if let Some(name) = labels
        .keys()
        .find(|name| RESERVED_LABELS.contains(&name.as_str()))
    {
        return Err(Error::new(
            format!("{field}.{name}"),
            "is set by the generated rules; remove it",
        ));
    }
    Ok(())
}

/// A query must take the window (or every window gives the same ratio) and be valid PromQL.
fn check_query(field: &str, query: &str) -> Result<(), Error> {
    if query.trim().is_empty() {
        return Err(Error::new(field, "is empty"));
    }
    if !rules::has_window(query) {
        return Err(Error::new(
            field,
            "has no `{{.window}}`; use it as the range of the query's rates, as `[{{.window}}]`",
        ));
    }
    let rendered = rules::render_window(query, "5m");
    if rendered.contains("{{") {
        return Err(Error::new(
            field,
            "holds a template other than `{{.window}}`; only `{{.window}}` is replaced",
        ));
    }
    promql_parser::parser::parse(&rendered)
        .map_err(|message| Error::new(field, format!("invalid PromQL: {message}")))?;
    Ok(())
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
    fn an_objective_of_100_or_more_is_refused_with_its_field() {
        let text = SPEC.replace("objective: 99.9", "objective: 100.5");
        assert_eq!(
            error_of(&text),
            "slos[0].objective: 100.5 is not a percentage below 100; write the objective in percent, as `99.9`"
        );
        let text = SPEC.replace("objective: 99.9", "objective: 0");
        assert!(error_of(&text).starts_with("slos[0].objective: 0 is not"));
    }

    #[test]
    fn another_version_is_refused() {
        let text = SPEC.replace("prometheus/v1", "sloth.slok.dev/v1");
        assert_eq!(
            error_of(&text),
            "version: `sloth.slok.dev/v1` is not supported; use `prometheus/v1`"
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
    fn an_unknown_field_is_refused_with_its_path() {
        let text = SPEC.replace(
            "    objective: 99.9",
            "    objective: 99.9\n    objetive: 1",
        );
        let error = error_of(&text);
        assert!(
            error.starts_with("slos[0].objetive: unknown field `objetive`"),
            "{error}"
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
    fn reserved_and_invalid_labels_are_refused() {
        let text = SPEC.replace("team: payments", "sloth_id: x");
        assert_eq!(
            error_of(&text),
            "labels.sloth_id: is set by the generated rules; remove it"
        );
        let text = SPEC.replace("team: payments", "1team: payments");
        assert!(error_of(&text).starts_with("labels.1team: is not a valid label name"));
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
}
