//! `slos:`: Sloth specs whose SLOs the daemon evaluates against Prometheus on an interval.

use std::path::PathBuf;

use serde::Deserialize;

use crate::slo::{Period, Spec};

/// One item of `slos:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSource {
    /// The Sloth `prometheus/v1` spec, inline.
    #[serde(default)]
    pub spec: Option<Spec>,
    /// Or the path of a spec file, relative to the config file that names it: the same file
    /// `homeostat slo rules` reads (Sloth, or OpenSLO where it maps).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The spec read from `file` by the config loader.
    #[serde(skip)]
    pub loaded: Option<Spec>,
    /// Custom alert windows and period: a Sloth `AlertWindows` file, relative to the config file.
    #[serde(default)]
    pub alert_windows: Option<PathBuf>,
    /// The period an OpenSLO `file` gives in its time window, or `alert_windows` when given (the
    /// config loader reads them).
    #[serde(skip)]
    pub loaded_period: Option<Period>,
    /// The period the error budget is spent over: `28d` or `30d` (default `30d`, or an OpenSLO
    /// file's time window).
    #[serde(default)]
    pub period: Option<Period>,
    /// How often to evaluate, in seconds.
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
    /// `queries` (the spec's SLI queries) or `recordings` (the rules of `homeostat slo rules`,
    /// loaded into Prometheus: cheaper, and what the dashboards show).
    #[serde(default)]
    pub from: ReadFrom,
    /// The Prometheus-compatible API to query; `prometheus.url` by default.
    #[serde(default)]
    pub prometheus_url: Option<String>,
}

impl SloSource {
    /// The spec, inline or loaded from its file.
    pub fn spec(&self) -> Option<&Spec> {
        self.spec.as_ref().or(self.loaded.as_ref())
    }
}

/// Where the error ratios are read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Queries,
    Recordings,
}

fn default_interval() -> f64 {
    30.0
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{parse, Diagnostics};
    use crate::rule::{compile, Compiled};

    fn compiled(text: &str) -> Result<Compiled, Diagnostics> {
        let config = parse(&[(PathBuf::from("homeostat.yaml"), text.to_string())])?;
        compile(&config)
    }

    /// One `slos:` item with an inline spec, and `extra` fields after it.
    fn item(objective: &str, extra: &str) -> String {
        format!(
            r#"  - spec:
      version: prometheus/v1
      service: checkout
      slos:
        - name: availability
          objective: {objective}
          sli: {{raw: {{error_ratio_query: "rate(errors[{{{{.window}}}}])"}}}}
          alerting: {{name: CheckoutAvailability}}
{extra}"#
        )
    }

    #[test]
    fn an_inline_spec_compiles_one_target_per_slo() {
        let text = format!(
            "prometheus: {{url: http://prom:9090}}\nslos:\n{}",
            item("99.9", "    period: 28d\n    interval_secs: 10\n")
        );
        let compiled = compiled(&text).expect("compiles");
        assert_eq!(compiled.slos.len(), 1);
        let target = &compiled.slos[0];
        assert_eq!(target.objective.id, "checkout-availability");
        assert_eq!(target.objective.period.days(), 28);
        assert_eq!(target.interval_secs, 10.0);
        assert_eq!(target.prometheus_url, "http://prom:9090");
    }
}
