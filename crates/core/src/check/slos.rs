//! `slos:`: each item's spec (inline or read from its file by the binary), its interval, period
//! and Prometheus, and SLO ids unique across every spec; compiled into what the daemon evaluates.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Report;
use crate::config::slos::ReadFrom;
use crate::rule::SloTarget;
use crate::slo::burn::{Objective, Source as Read};

/// Checks `slos:` and compiles every SLO of every spec.
pub(crate) fn check(report: &mut Report) -> Vec<SloTarget> {
    let config = report.config;
    let mut targets: Vec<SloTarget> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, item) in config.slos.iter().enumerate() {
        let mut error = |field: &str, message: String, hint: Option<&str>| {
            report.error(
                "slos",
                Some(index),
                field,
                message,
                hint.map(str::to_string),
            );
        };
        let spec = match (&item.spec, &item.file, &item.loaded) {
            (Some(_), Some(_), _) => {
                error(
                    "file",
                    "is given with `spec`; keep one".into(),
                    Some("write the spec inline under `spec:`, or name its file with `file:`"),
                );
                continue;
            }
            (None, None, _) => {
                error(
                    "",
                    "has no spec".into(),
                    Some("name a Sloth `prometheus/v1` spec file with `file:`, or write it under `spec:`"),
                );
                continue;
            }
            (None, Some(file), None) => {
                error("file", format!("`{}` was not read", file.display()), None);
                continue;
            }
            (Some(spec), None, _) => match spec.validate() {
                Ok(()) => spec,
                Err(problem) => {
                    let field = if problem.field.is_empty() {
                        "spec".to_string()
                    } else {
                        format!("spec.{}", problem.field)
                    };
                    error(&field, problem.message, None);
                    continue;
                }
            },
            (None, Some(file), Some(spec)) => match spec.validate() {
                Ok(()) => spec,
                Err(problem) => {
                    error("file", format!("`{}`: {problem}", file.display()), None);
                    continue;
                }
            },
        };
        if !(item.interval_secs.is_finite() && item.interval_secs >= 1.0) {
            error(
                "interval_secs",
                format!(
                    "{} is not a number of seconds of at least 1",
                    item.interval_secs
                ),
                Some("evaluate every `30` seconds, say"),
            );
            continue;
        }
        let Some(prometheus_url) = config.prometheus_url(item.prometheus_url.as_deref()) else {
            error(
                "prometheus_url",
                "an SLO needs a Prometheus to ask".into(),
                Some("set `prometheus.url`, or `prometheus_url` here"),
            );
            continue;
        };
        let read = match item.from {
            ReadFrom::Queries => Read::Queries,
            ReadFrom::Recordings => Read::Recordings,
        };
        let period = match (item.period, item.loaded_period) {
            (Some(asked), Some(own)) if asked != own => {
                error(
                    "period",
                    format!(
                        "{}d differs from the {}d time window of the OpenSLO file",
                        asked.days(),
                        own.days()
                    ),
                    Some("drop `period`: the file's time window applies"),
                );
                continue;
            }
            (asked, own) => asked.or(own).unwrap_or_default(),
        };
        for objective in Objective::compile(spec, period, read) {
            if let Some(first) = seen.insert(objective.id.clone(), index) {
                error(
                    "",
                    format!(
                        "SLO `{}` is already evaluated by slos[{first}]; each SLO id (`<service>-<name>`) must be unique",
                        objective.id
                    ),
                    None,
                );
                continue;
            }
            targets.push(SloTarget {
                objective: Arc::new(objective),
                interval_secs: item.interval_secs,
                prometheus_url: prometheus_url.clone(),
            });
        }
    }
    targets
}
