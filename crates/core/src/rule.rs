//! Compiles the config into what the pipeline runs: rules with parsed matchers, CEL programs and
//! templates, and webhook mappings. Every semantic check of `homeostat check` that needs no IO is here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{
    Config, Diagnostic, Diagnostics, Guards, Param, ParamType, Rule, Runbook, Severity, Source,
};
use crate::event::{Event, Status};
use crate::ingest::webhook::Mapping;
use crate::matcher::{self, Matcher};
use crate::runbook::program::Expr;
use crate::runbook::Program;
use crate::template::{Template, Templates, TemplatesBuilder};

/// A compiled CEL condition over an event.
#[derive(Clone, Debug)]
pub struct Condition(Expr);

impl Condition {
    pub fn compile(source_text: &str) -> Result<Self, String> {
        Expr::compile(source_text).map(Self)
    }

    /// Evaluates against an event: `labels`, `annotations`, `status`, `source`, `kind`, `fingerprint`.
    pub fn evaluate(&self, event: &Event) -> Result<bool, String> {
        // Built directly rather than through serde: this runs for every event a rule's matchers pass.
        let mut context = cel::Context::default();
        let labels: HashMap<String, String> = event.labels.clone().into_iter().collect();
        let annotations: HashMap<String, String> = event.annotations.clone().into_iter().collect();
        context.add_variable_from_value("labels", labels);
        context.add_variable_from_value("annotations", annotations);
        context.add_variable_from_value("status", event.status.as_str().to_string());
        context.add_variable_from_value("source", event.source.clone());
        context.add_variable_from_value("kind", event.kind.as_str().to_string());
        context.add_variable_from_value("fingerprint", event.fingerprint.clone());
        let source_text = &self.0.source_text;
        match self.0.execute(&context) {
            Ok(cel::Value::Bool(value)) => Ok(value),
            Ok(other) => Err(format!(
                "condition `{source_text}` gave {other:?}, not a boolean"
            )),
            Err(error) => Err(format!("condition `{source_text}` failed: {error}")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub condition: Option<Condition>,
    pub on: Vec<Status>,
    pub params: Vec<(String, Template)>,
    pub target: Template,
    pub guards: Guards,
    /// What the rule runs: its named runbook, or its inline steps as an anonymous runbook.
    pub runbook: Arc<Program>,
    /// Incident transitions it triggers on; empty for a rule that triggers on events.
    pub on_incident: Vec<crate::incident::correlate::Transition>,
    pub verify: Option<crate::config::Verify>,
}

/// Whether a rule applies to an event, and if not, why not (for the journal and dry runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Match {
    Yes,
    No,
    /// Matched the labels, but the rule does not act on this status (a resolved alert, say).
    WrongStatus,
    /// The CEL condition could not be evaluated; the rule does not run.
    ConditionError {
        message: String,
    },
}

impl CompiledRule {
    pub fn matches(&self, event: &Event) -> Match {
        if !matcher::all_match(&self.matchers, &event.labels) {
            return Match::No;
        }
        if let Some(condition) = &self.condition {
            match condition.evaluate(event) {
                Ok(true) => {}
                Ok(false) => return Match::No,
                Err(message) => return Match::ConditionError { message },
            }
        }
        if !self.on.contains(&event.status) {
            return Match::WrongStatus;
        }
        Match::Yes
    }
}

/// A webhook source ready to map bodies.
#[derive(Clone, Debug)]
pub struct CompiledWebhook {
    pub source: crate::config::WebhookSource,
    pub mapping: Mapping,
}

/// Everything the pipeline needs from the config.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub config: Config,
    pub rules: Vec<CompiledRule>,
    /// The named runbooks, compiled.
    pub runbooks: BTreeMap<String, Arc<Program>>,
    pub templates: Templates,
    pub webhooks: BTreeMap<String, CompiledWebhook>,
    /// `incidents:`, checked.
    pub incidents: Arc<crate::incident::correlate::Settings>,
    /// `slos:`, one entry per SLO of every spec.
    pub slos: Vec<SloTarget>,
    pub warnings: Vec<Diagnostic>,
}

/// An SLO the daemon evaluates.
#[derive(Clone, Debug)]
pub struct SloTarget {
    pub objective: Arc<crate::slo::burn::Objective>,
    pub interval_secs: f64,
    /// The Prometheus-compatible API to query.
    pub prometheus_url: String,
}

/// Checks and compiles a parsed config. Errors and warnings come back together.
pub fn compile(config: &Config) -> Result<Compiled, Diagnostics> {
    let mut diagnostics = Vec::new();
    let mut builder = TemplatesBuilder::new();
    let error = |section, index, field: &str, message: String, hint: Option<String>| {
        config.diagnostic(Severity::Error, section, Some(index), field, message, hint)
    };

    check_unique(
        config,
        "sources",
        config.sources.iter().map(Source::name),
        &mut diagnostics,
    );
    check_unique(
        config,
        "notifiers",
        config.notifiers.iter().map(|n| n.name()),
        &mut diagnostics,
    );
    check_unique(
        config,
        "rules",
        config.rules.iter().map(|r| r.name.as_str()),
        &mut diagnostics,
    );
    check_unique(
        config,
        "api_tokens",
        config.api_tokens.iter().map(|t| t.name.as_str()),
        &mut diagnostics,
    );

    for (index, token) in config.api_tokens.iter().enumerate() {
        if token.scopes.is_empty() {
            diagnostics.push(error(
                "api_tokens",
                index,
                "scopes",
                "a token needs at least one scope".into(),
                Some("use `read`, `ingest` or `write`".into()),
            ));
        }
    }

    let mut webhooks = BTreeMap::new();
    for (index, source) in config.sources.iter().enumerate() {
        if !valid_name(source.name()) || source.name() == "alertmanager" {
            diagnostics.push(error(
                "sources",
                index,
                "name",
                format!("invalid source name `{}`", source.name()),
                Some(
                    "use letters, digits, `-` and `_`; `alertmanager` is the built-in endpoint"
                        .into(),
                ),
            ));
        }
        match source {
            Source::Webhook(webhook) => {
                let mut add =
                    |field: &str, text: &str, diagnostics: &mut Vec<Diagnostic>| match builder
                        .add(text)
                    {
                        Ok(template) => Some(template),
                        Err(template_error) => {
                            diagnostics.push(error(
                                "sources",
                                index,
                                field,
                                template_error.to_string(),
                                None,
                            ));
                            None
                        }
                    };
                let status = add("status", &webhook.status, &mut diagnostics);
                let fingerprint = webhook
                    .fingerprint
                    .as_deref()
                    .map(|text| add("fingerprint", text, &mut diagnostics));
                let labels: Vec<_> = webhook
                    .labels
                    .iter()
                    .map(|(name, text)| {
                        (
                            name.clone(),
                            add(&format!("labels.{name}"), text, &mut diagnostics),
                        )
                    })
                    .collect();
                let annotations: Vec<_> = webhook
                    .annotations
                    .iter()
                    .map(|(name, text)| {
                        (
                            name.clone(),
                            add(&format!("annotations.{name}"), text, &mut diagnostics),
                        )
                    })
                    .collect();
                if webhook.labels.is_empty() {
                    diagnostics.push(error(
                        "sources",
                        index,
                        "labels",
                        "a webhook mapping needs at least one label".into(),
                        Some(
                            "map a field of the body: `labels: {service: \"{{ body.service }}\"}`"
                                .into(),
                        ),
                    ));
                }
                if let Some(items) = &webhook.items {
                    if !items.starts_with('/') {
                        diagnostics.push(error(
                            "sources",
                            index,
                            "items",
                            format!("`{items}` is not a JSON pointer"),
                            Some(format!("write it as `/{items}`")),
                        ));
                    }
                }
                let complete =
                    |pairs: Vec<(String, Option<Template>)>| -> Option<Vec<(String, Template)>> {
                        pairs
                            .into_iter()
                            .map(|(name, template)| template.map(|t| (name, t)))
                            .collect()
                    };
                let fingerprint_ok = fingerprint.as_ref().is_none_or(Option::is_some);
                if let (Some(status), Some(labels), Some(annotations), true) = (
                    status,
                    complete(labels),
                    complete(annotations),
                    fingerprint_ok,
                ) {
                    webhooks.insert(
                        webhook.name.clone(),
                        CompiledWebhook {
                            source: webhook.clone(),
                            mapping: Mapping {
                                items: webhook.items.clone(),
                                kind: webhook.kind,
                                status,
                                fingerprint: fingerprint.flatten(),
                                labels,
                                annotations,
                            },
                        },
                    );
                }
            }
            Source::HttpProbe(probe) => {
                if !(probe.url.starts_with("http://") || probe.url.starts_with("https://")) {
                    diagnostics.push(error(
                        "sources",
                        index,
                        "url",
                        format!("`{}` is not an http or https URL", probe.url),
                        None,
                    ));
                }
                if probe.interval_secs.is_nan()
                    || probe.interval_secs <= 0.0
                    || probe.timeout_secs.is_nan()
                    || probe.timeout_secs <= 0.0
                {
                    diagnostics.push(error(
                        "sources",
                        index,
                        "interval_secs",
                        "interval and timeout must be positive".into(),
                        None,
                    ));
                }
                if probe.failure_threshold == 0 || probe.success_threshold == 0 {
                    diagnostics.push(error(
                        "sources",
                        index,
                        "failure_threshold",
                        "thresholds start at 1".into(),
                        None,
                    ));
                }
            }
            Source::KubernetesEvents(watch) => {
                for (position, kind) in watch.event_types.iter().enumerate() {
                    if !["Warning", "Normal"].contains(&kind.as_str()) {
                        diagnostics.push(error(
                            "sources",
                            index,
                            &format!("event_types[{position}]"),
                            format!("unknown Event type `{kind}`"),
                            Some("Kubernetes Events are `Warning` or `Normal`".into()),
                        ));
                    }
                }
                if watch
                    .namespaces
                    .iter()
                    .any(|namespace| namespace.is_empty())
                {
                    diagnostics.push(error(
                        "sources",
                        index,
                        "namespaces",
                        "a namespace is empty".into(),
                        Some("name each namespace, or leave the list empty to watch all".into()),
                    ));
                }
            }
            Source::Alertmanager(_) => {}
        }
    }
    if let Some(kubernetes) = &config.kubernetes {
        if kubernetes.url.is_some() && kubernetes.kubeconfig.is_some() {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: None,
                line: None,
                path: "kubernetes.url".into(),
                message: "both `url` and `kubeconfig` are set".into(),
                hint: Some("keep `kubeconfig`, or `url` for an unauthenticated proxy".into()),
            });
        }
    }

    let runbook_diagnostics = crate::runbook::check::check(config);
    let runbook_errors = runbook_diagnostics
        .iter()
        .any(|diagnostic| diagnostic.severity == Severity::Error);
    diagnostics.extend(runbook_diagnostics);
    let library: BTreeMap<String, Runbook> = config
        .runbooks
        .iter()
        .map(|runbook| (runbook.name.clone(), runbook.clone()))
        .collect();
    let mut runbooks = BTreeMap::new();
    if !runbook_errors {
        for (index, runbook) in config.runbooks.iter().enumerate() {
            match Program::compile(runbook, &library) {
                Ok(program) => {
                    runbooks.insert(runbook.name.clone(), Arc::new(program));
                }
                Err(program_error) => diagnostics.push(error(
                    "runbooks",
                    index,
                    "steps",
                    program_error.to_string(),
                    None,
                )),
            }
        }
    }

    let mut rules = Vec::new();
    for (index, rule) in config.rules.iter().enumerate() {
        let mut ok = true;
        let mut matchers = Vec::new();
        for (matcher_index, text) in rule.matchers.iter().enumerate() {
            match matcher::parse_list(text) {
                // Alertmanager reads `{}` (or an empty string) as no matcher at all; in a rule that
                // would select every event without anyone having asked for it.
                Ok(parsed) if parsed.is_empty() => {
                    ok = false;
                    diagnostics.push(error(
                        "rules",
                        index,
                        &format!("match[{matcher_index}]"),
                        format!("`{text}` holds no matcher, so it selects every event"),
                        Some(
                            "write a matcher such as `alertname=\"ApiDown\"`, or remove the entry"
                                .into(),
                        ),
                    ));
                }
                Ok(parsed) => matchers.extend(parsed),
                Err(matcher_error) => {
                    ok = false;
                    diagnostics.push(error(
                        "rules",
                        index,
                        &format!("match[{matcher_index}]"),
                        matcher_error.to_string(),
                        None,
                    ));
                }
            }
        }
        if rule.matchers.is_empty() && rule.condition.is_none() {
            diagnostics.push(config.diagnostic(
                Severity::Warning,
                "rules",
                Some(index),
                "match",
                "the rule has no matchers and no condition, so it matches every event",
                Some("add `match: ['alertname=\"...\"']`".into()),
            ));
        }
        let condition = match rule.condition.as_deref().map(Condition::compile) {
            Some(Ok(condition)) => Some(condition),
            Some(Err(message)) => {
                ok = false;
                diagnostics.push(error(
                    "rules",
                    index,
                    "condition",
                    format!("invalid CEL condition: {message}"),
                    Some(
                        "variables are labels, annotations, status, source, kind and fingerprint"
                            .into(),
                    ),
                ));
                None
            }
            None => None,
        };
        if rule.on.is_empty() {
            ok = false;
            diagnostics.push(error(
                "rules",
                index,
                "on",
                "`on` is empty, so the rule never runs".into(),
                None,
            ));
        }
        let mut params = Vec::new();
        for (name, text) in &rule.params {
            match builder.add(text) {
                Ok(template) => params.push((name.clone(), template)),
                Err(template_error) => {
                    ok = false;
                    diagnostics.push(error(
                        "rules",
                        index,
                        &format!("params.{name}"),
                        template_error.to_string(),
                        None,
                    ));
                }
            }
        }
        let target = match builder.add(rule.target.as_deref().unwrap_or("{{ fingerprint }}")) {
            Ok(template) => Some(template),
            Err(template_error) => {
                ok = false;
                diagnostics.push(error(
                    "rules",
                    index,
                    "target",
                    template_error.to_string(),
                    None,
                ));
                None
            }
        };
        if let Some(max_runs) = &rule.guards.max_runs {
            if max_runs.count == 0 || max_runs.window_secs == 0 {
                diagnostics.push(error(
                    "rules",
                    index,
                    "guards.max_runs",
                    "count and window_secs must be at least 1".into(),
                    Some(
                        "to stop a rule from running, set `guards.dry_run: true` or remove it"
                            .into(),
                    ),
                ));
                ok = false;
            }
        }
        if rule.guards.max_concurrent == Some(0) {
            ok = false;
            diagnostics.push(error(
                "rules",
                index,
                "guards.max_concurrent",
                "must be at least 1".into(),
                None,
            ));
        }
        let program = if runbook_errors {
            None
        } else {
            match rule_program(rule, &library) {
                Ok(program) => Some(program),
                Err(program_error) => {
                    diagnostics.push(error(
                        "rules",
                        index,
                        if rule.runbook.is_some() {
                            "runbook"
                        } else {
                            "steps"
                        },
                        program_error.to_string(),
                        None,
                    ));
                    None
                }
            }
        };
        if let (true, Some(target), Some(program)) = (ok, target, program) {
            rules.push(CompiledRule {
                name: rule.name.clone(),
                matchers,
                condition,
                on: rule.on.clone(),
                params,
                target,
                guards: rule.guards.clone(),
                runbook: Arc::new(program),
                on_incident: rule.on_incident.clone(),
                verify: rule.verify.clone(),
            });
        }
    }

    // In file order, so that a config reads top to bottom whichever check found what.
    for (index, rule) in config.rules.iter().enumerate() {
        if let Some(check) = rule
            .verify
            .as_ref()
            .and_then(|verify| verify.check.as_ref())
        {
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
                diagnostics.push(config.diagnostic(
                    Severity::Error,
                    "rules",
                    Some(index),
                    "verify.check",
                    message,
                    None,
                ));
            }
            if check.promql.is_some()
                && check.prometheus_url.is_none()
                && config.prometheus.is_none()
            {
                diagnostics.push(config.diagnostic(
                    Severity::Error,
                    "rules",
                    Some(index),
                    "verify.check.promql",
                    "a PromQL check needs a Prometheus to ask",
                    Some("set `prometheus.url` or `verify.check.prometheus_url`".into()),
                ));
            }
        }
    }
    let incidents = match crate::incident::correlate::Settings::compile(&config.incidents) {
        Ok(settings) => Some(settings),
        Err((field, message)) => {
            diagnostics.push(config.diagnostic(
                Severity::Error,
                "incidents",
                None,
                &field,
                message,
                None,
            ));
            None
        }
    };
    let slos = compile_slos(config, &mut diagnostics);
    check_detectors(config, &mut diagnostics);
    check_forecasts(config, &mut diagnostics);
    diagnostics.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let diagnostics = Diagnostics(diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    Ok(Compiled {
        incidents: Arc::new(incidents.expect("no errors means the incident settings compiled")),
        config: config.clone(),
        rules,
        runbooks,
        templates: builder.build(),
        webhooks,
        slos,
        warnings: diagnostics.0,
    })
}

/// Checks `detectors:`.
fn check_detectors(config: &Config, diagnostics: &mut Vec<Diagnostic>) {
    check_unique(
        config,
        "detectors",
        config.detectors.iter().map(|d| d.name.as_str()),
        diagnostics,
    );
    for (index, detector) in config.detectors.iter().enumerate() {
        let mut error = |field: &str, message: String, hint: &str| {
            diagnostics.push(config.diagnostic(
                Severity::Error,
                "detectors",
                Some(index),
                field,
                message,
                Some(hint.to_string()),
            ))
        };
        if detector.name.trim().is_empty() {
            error(
                "name",
                "is empty".into(),
                "name the detector: `checkout-latency`",
            );
        }
        if let Err(problem) = promql_parser::parser::parse(&detector.query) {
            error(
                "query",
                format!("is not valid PromQL: {problem}"),
                "write an instant-vector query, as in a Prometheus alert rule",
            );
        }
        if !(detector.interval_secs.is_finite() && detector.interval_secs >= 1.0) {
            error(
                "interval_secs",
                format!(
                    "{} is not a number of seconds of at least 1",
                    detector.interval_secs
                ),
                "score every `60` seconds, say",
            );
        }
        let threshold = detector.threshold();
        if !(threshold > 0.0 && threshold <= 1.0) {
            error(
                "threshold",
                format!("{threshold} is not a score above 0 and at most 1"),
                "`0.5` fires on about a one-in-100,000 deviation",
            );
        }
        if !(detector.backfill_secs.is_finite() && detector.backfill_secs >= 0.0) {
            error(
                "backfill_secs",
                format!("{} is not a number of seconds", detector.backfill_secs),
                "`604800` learns from the last week; `0` from now on",
            );
        }
        if !(detector.forget_after_secs.is_finite()
            && detector.forget_after_secs >= detector.interval_secs)
        {
            error(
                "forget_after_secs",
                format!(
                    "{} is shorter than the interval",
                    detector.forget_after_secs
                ),
                "forget a series after an hour without it: `3600`",
            );
        }
        if detector.max_series == 0 || detector.resolve_after == 0 {
            let field = if detector.max_series == 0 {
                "max_series"
            } else {
                "resolve_after"
            };
            error(field, "is 0".into(), "give a count of at least 1");
        }
        if config
            .prometheus_url(detector.prometheus_url.as_deref())
            .is_none()
        {
            error(
                "prometheus_url",
                "a detector needs a Prometheus to ask".into(),
                "set `prometheus.url`, or `prometheus_url` here",
            );
        }
    }
}

/// Checks `forecasts:`.
fn check_forecasts(config: &Config, diagnostics: &mut Vec<Diagnostic>) {
    check_unique(
        config,
        "forecasts",
        config.forecasts.iter().map(|f| f.name.as_str()),
        diagnostics,
    );
    for (index, forecast) in config.forecasts.iter().enumerate() {
        let mut error = |field: &str, message: String, hint: &str| {
            diagnostics.push(config.diagnostic(
                Severity::Error,
                "forecasts",
                Some(index),
                field,
                message,
                Some(hint.to_string()),
            ))
        };
        if forecast.name.trim().is_empty() {
            error(
                "name",
                "is empty".into(),
                "name the forecast: `checkout-rps`",
            );
        }
        if let Err(problem) = promql_parser::parser::parse(&forecast.query) {
            error(
                "query",
                format!("is not valid PromQL: {problem}"),
                "write the query whose value must stay under `capacity`",
            );
        }
        if !forecast.capacity.is_finite() {
            error(
                "capacity",
                "is not a number".into(),
                "`1200` requests per second, say",
            );
        }
        let seconds = [
            ("step_secs", forecast.step_secs, 1.0),
            ("interval_secs", forecast.interval_secs, 1.0),
            ("horizon_secs", forecast.horizon_secs, forecast.step_secs),
            (
                "history_secs",
                forecast.history_secs,
                3.0 * forecast.step_secs,
            ),
        ];
        for (field, value, least) in seconds {
            if !(value.is_finite() && value >= least) {
                error(
                    field,
                    format!("{value} is under {least} seconds"),
                    "the horizon must hold a step, and the history at least three",
                );
            }
        }
        if forecast.history_secs / forecast.step_secs > 11_000.0 {
            error(
                "history_secs",
                format!(
                    "{} steps of {} s; Prometheus answers at most 11,000 points",
                    (forecast.history_secs / forecast.step_secs).round(),
                    forecast.step_secs
                ),
                "lengthen `step_secs` or shorten `history_secs`",
            );
        }
        if !matches!(forecast.bound.as_str(), "upper" | "point" | "lower") {
            error(
                "bound",
                format!("`{}` is not a bound", forecast.bound),
                "use `upper`, `point` or `lower`",
            );
        }
        if !(forecast.level > 0.0 && forecast.level < 1.0) {
            error(
                "level",
                format!("{} is not a coverage between 0 and 1", forecast.level),
                "`0.95` for a 95% interval",
            );
        }
        if forecast
            .seasonal_periods
            .as_ref()
            .is_some_and(|periods| periods.iter().any(|p| *p < 2))
        {
            error(
                "seasonal_periods",
                "has a period under 2 steps".into(),
                "give periods in steps: `[288]` is a day of 5-minute steps",
            );
        }
        if forecast.max_series == 0 {
            error("max_series", "is 0".into(), "give a count of at least 1");
        }
        if config
            .prometheus_url(forecast.prometheus_url.as_deref())
            .is_none()
        {
            error(
                "prometheus_url",
                "a forecast needs a Prometheus to ask".into(),
                "set `prometheus.url`, or `prometheus_url` here",
            );
        }
    }
}

/// Checks `slos:` and compiles every SLO of every spec.
fn compile_slos(config: &Config, diagnostics: &mut Vec<Diagnostic>) -> Vec<SloTarget> {
    use crate::config::slos::ReadFrom;
    use crate::slo::burn::{Objective, Source as Read};
    let mut targets: Vec<SloTarget> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, item) in config.slos.iter().enumerate() {
        let error = |field: &str, message: String, hint: Option<&str>| {
            config.diagnostic(
                Severity::Error,
                "slos",
                Some(index),
                field,
                message,
                hint.map(str::to_string),
            )
        };
        let spec = match (&item.spec, &item.file, &item.loaded) {
            (Some(_), Some(_), _) => {
                diagnostics.push(error(
                    "file",
                    "is given with `spec`; keep one".into(),
                    Some("write the spec inline under `spec:`, or name its file with `file:`"),
                ));
                continue;
            }
            (None, None, _) => {
                diagnostics.push(error(
                    "",
                    "has no spec".into(),
                    Some("name a Sloth `prometheus/v1` spec file with `file:`, or write it under `spec:`"),
                ));
                continue;
            }
            (None, Some(file), None) => {
                diagnostics.push(error(
                    "file",
                    format!("`{}` was not read", file.display()),
                    None,
                ));
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
                    diagnostics.push(error(&field, problem.message, None));
                    continue;
                }
            },
            (None, Some(file), Some(spec)) => match spec.validate() {
                Ok(()) => spec,
                Err(problem) => {
                    diagnostics.push(error(
                        "file",
                        format!("`{}`: {problem}", file.display()),
                        None,
                    ));
                    continue;
                }
            },
        };
        if !(item.interval_secs.is_finite() && item.interval_secs >= 1.0) {
            diagnostics.push(error(
                "interval_secs",
                format!(
                    "{} is not a number of seconds of at least 1",
                    item.interval_secs
                ),
                Some("evaluate every `30` seconds, say"),
            ));
            continue;
        }
        let Some(prometheus_url) = config.prometheus_url(item.prometheus_url.as_deref()) else {
            diagnostics.push(error(
                "prometheus_url",
                "an SLO needs a Prometheus to ask".into(),
                Some("set `prometheus.url`, or `prometheus_url` here"),
            ));
            continue;
        };
        let read = match item.from {
            ReadFrom::Queries => Read::Queries,
            ReadFrom::Recordings => Read::Recordings,
        };
        let period = match (item.period, item.loaded_period) {
            (Some(asked), Some(own)) if asked != own => {
                diagnostics.push(error(
                    "period",
                    format!(
                        "{}d differs from the {}d time window of the OpenSLO file",
                        asked.days(),
                        own.days()
                    ),
                    Some("drop `period`: the file's time window applies"),
                ));
                continue;
            }
            (asked, own) => asked.or(own).unwrap_or_default(),
        };
        for objective in Objective::compile(spec, period, read) {
            if let Some(first) = seen.insert(objective.id.clone(), index) {
                diagnostics.push(error(
                    "",
                    format!(
                        "SLO `{}` is already evaluated by slos[{first}]; each SLO id (`<service>-<name>`) must be unique",
                        objective.id
                    ),
                    None,
                ));
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

/// The program a rule runs. Inline steps become a runbook named after the rule whose parameters are
/// the rule's `params`, as text.
fn rule_program(
    rule: &Rule,
    library: &BTreeMap<String, Runbook>,
) -> Result<Program, crate::runbook::program::Error> {
    match &rule.runbook {
        Some(name) => {
            let spec = library.get(name).ok_or_else(|| {
                crate::runbook::program::Error::UnknownRunbook {
                    runbook: name.clone(),
                }
            })?;
            Program::compile(spec, library)
        }
        None => {
            let spec = Runbook {
                name: format!("rule:{}", rule.name),
                description: rule.description.clone(),
                params: rule
                    .params
                    .keys()
                    .map(|name| {
                        let param = Param {
                            kind: ParamType::String,
                            required: false,
                            default: None,
                            allowed: Vec::new(),
                            description: None,
                        };
                        (name.clone(), param)
                    })
                    .collect(),
                steps: rule.steps.clone(),
                outputs: BTreeMap::new(),
            };
            Program::compile(&spec, library)
        }
    }
}

fn check_unique<'a>(
    config: &Config,
    section: &'static str,
    names: impl Iterator<Item = &'a str>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut seen = HashSet::new();
    for (index, name) in names.enumerate() {
        if !seen.insert(name) {
            diagnostics.push(config.diagnostic(
                Severity::Error,
                section,
                Some(index),
                "name",
                format!("the name `{name}` is used twice in `{section}`"),
                Some("names must be unique; rename one".into()),
            ));
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_sees_labels_and_status() {
        let condition =
            Condition::compile(r#"labels.env == "prod" && status == "firing""#).unwrap();
        let mut event = crate::event::test_event(Status::Firing, &[("env", "prod")]);
        assert_eq!(condition.evaluate(&event), Ok(true));
        event.status = Status::Resolved;
        assert_eq!(condition.evaluate(&event), Ok(false));
        let missing = Condition::compile(r#"labels.nope == "x""#).unwrap();
        assert!(missing.evaluate(&event).is_err());
    }
}

#[cfg(test)]
mod arithmetic {
    /// Conditions come from config and see untrusted labels: arithmetic faults are errors (the rule
    /// does not run, and the verdict says why), never panics in the writer.
    #[test]
    fn overflow_and_division_by_zero_are_errors() {
        let event = crate::event::test_event(crate::Status::Firing, &[]);
        for expression in [
            "9223372036854775807 + 1 > 0",
            "-9223372036854775808 / -1 > 0",
            "1 / 0 > 0",
            "1 % 0 > 0",
        ] {
            let condition = super::Condition::compile(expression).expect("compiles");
            let result = std::panic::catch_unwind(|| condition.evaluate(&event)).expect("no panic");
            assert!(result.is_err(), "{expression}: {result:?}");
        }
    }
}
