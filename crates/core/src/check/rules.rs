//! `rules:`: matchers, the CEL condition, `on`, the params' and target's templates, guards and
//! `verify`. A rule's steps are checked with the runbooks' ([`super::runbooks`]); its name is
//! unique ([`super::names`]).

use super::Report;
use crate::config::Rule;
use crate::matcher::{self, Matcher};
use crate::rule::Condition;
use crate::template::{Template, TemplatesBuilder};

/// What the checks of one rule make, when they all pass.
pub(crate) struct Checked {
    pub matchers: Vec<Matcher>,
    pub condition: Option<Condition>,
    pub params: Vec<(String, Template)>,
    pub target: Template,
}

/// Checks rule `index`; its parts, compiled, when nothing in them is an error.
pub(crate) fn check(
    report: &mut Report,
    templates: &mut TemplatesBuilder,
    index: usize,
    rule: &Rule,
) -> Option<Checked> {
    let error = |report: &mut Report, field: &str, message: String, hint: Option<&str>| {
        report.error(
            "rules",
            Some(index),
            field,
            message,
            hint.map(str::to_string),
        );
    };
    let mut ok = true;
    let mut matchers = Vec::new();
    for (matcher_index, text) in rule.matchers.iter().enumerate() {
        match matcher::parse_list(text) {
            // Alertmanager reads `{}` (or an empty string) as no matcher at all; in a rule that
            // would select every event without anyone having asked for it.
            Ok(parsed) if parsed.is_empty() => {
                ok = false;
                error(
                    report,
                    &format!("match[{matcher_index}]"),
                    format!("`{text}` holds no matcher, so it selects every event"),
                    Some("write a matcher such as `alertname=\"ApiDown\"`, or remove the entry"),
                );
            }
            Ok(parsed) => matchers.extend(parsed),
            Err(matcher_error) => {
                ok = false;
                error(
                    report,
                    &format!("match[{matcher_index}]"),
                    matcher_error.to_string(),
                    None,
                );
            }
        }
    }
    if rule.matchers.is_empty() && rule.condition.is_none() {
        report.warning(
            "rules",
            Some(index),
            "match",
            "the rule has no matchers and no condition, so it matches every event",
            Some("add `match: ['alertname=\"...\"']`".into()),
        );
    }
    let condition = match rule.condition.as_deref().map(Condition::compile) {
        Some(Ok(condition)) => Some(condition),
        Some(Err(message)) => {
            ok = false;
            error(
                report,
                "condition",
                format!("invalid CEL condition: {message}"),
                Some("variables are labels, annotations, status, source, kind and fingerprint"),
            );
            None
        }
        None => None,
    };
    if rule.on.is_empty() {
        ok = false;
        error(
            report,
            "on",
            "`on` is empty, so the rule never runs".into(),
            None,
        );
    }
    let mut params = Vec::new();
    for (name, text) in &rule.params {
        match templates.add(text) {
            Ok(template) => params.push((name.clone(), template)),
            Err(template_error) => {
                ok = false;
                error(
                    report,
                    &format!("params.{name}"),
                    template_error.to_string(),
                    None,
                );
            }
        }
    }
    let target = match templates.add(rule.target.as_deref().unwrap_or("{{ fingerprint }}")) {
        Ok(template) => Some(template),
        Err(template_error) => {
            ok = false;
            error(report, "target", template_error.to_string(), None);
            None
        }
    };
    if let Some(max_runs) = &rule.guards.max_runs {
        if max_runs.count == 0 || max_runs.window_secs == 0 {
            error(
                report,
                "guards.max_runs",
                "count and window_secs must be at least 1".into(),
                Some("to stop a rule from running, set `guards.dry_run: true` or remove it"),
            );
            ok = false;
        }
    }
    if rule.guards.max_concurrent == Some(0) {
        ok = false;
        error(
            report,
            "guards.max_concurrent",
            "must be at least 1".into(),
            None,
        );
    }
    let target = target?;
    ok.then_some(Checked {
        matchers,
        condition,
        params,
        target,
    })
}

/// Every rule's `verify.check`: exactly one of `promql` or `http`, PromQL that parses, and a
/// Prometheus to ask. A pass of its own, after every rule's other checks, as it always was.
pub(crate) fn verify(report: &mut Report) {
    let config = report.config;
    for (index, rule) in config.rules.iter().enumerate() {
        let Some(check) = rule
            .verify
            .as_ref()
            .and_then(|verify| verify.check.as_ref())
        else {
            continue;
        };
        let problem = match (&check.promql, &check.http) {
            (Some(_), Some(_)) | (None, None) => {
                Some("give exactly one of `promql` or `http`".to_string())
            }
            (Some(promql), None) => promql_parser::parser::parse(promql)
                .err()
                .map(|message| format!("`{promql}` is not valid PromQL: {message}")),
            (None, Some(_)) => None,
        };
        if let Some(message) = problem {
            report.error("rules", Some(index), "verify.check", message, None);
        }
        if check.promql.is_some() && check.prometheus_url.is_none() && config.prometheus.is_none() {
            report.error(
                "rules",
                Some(index),
                "verify.check.promql",
                "a PromQL check needs a Prometheus to ask",
                Some("set `prometheus.url` or `verify.check.prometheus_url`".into()),
            );
        }
    }
}
