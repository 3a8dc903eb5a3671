//! Compiles the config into what the pipeline runs: rules with parsed matchers, CEL programs and
//! templates, runbooks' programs, webhook mappings and SLOs. The semantic checks of `homeostat
//! check` that need no IO are [`crate::check`]'s; [`compile`] runs them and compiles what passed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::check;
use crate::config::{
    Config, Diagnostic, Diagnostics, Guards, Param, ParamType, Rule, Runbook, Severity,
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

/// Checks and compiles a parsed config: the checks of [`crate::check`], one pass per section over
/// one report, and the compiling of what they passed. Errors and warnings come back together.
pub fn compile(config: &Config) -> Result<Compiled, Diagnostics> {
    let mut report = check::Report::new(config);
    let mut templates = TemplatesBuilder::new();
    check::names(&mut report);
    check::tokens::check(&mut report);
    check::store::check(&mut report);
    let webhooks = check::sources::check(&mut report, &mut templates);
    check::kubernetes::check(&mut report);
    // Programs are compiled only from steps that passed their checks: compiling assumes that
    // step kinds, names, calls and references are sound.
    let steps = check::runbooks::check(config);
    let steps_sound = !steps.iter().any(|d| d.severity == Severity::Error);
    report.extend(steps);
    let library: BTreeMap<String, Runbook> = config
        .runbooks
        .iter()
        .map(|runbook| (runbook.name.clone(), runbook.clone()))
        .collect();
    let runbooks = if steps_sound {
        compile_runbooks(&mut report, &library)
    } else {
        BTreeMap::new()
    };
    let rules = compile_rules(&mut report, &mut templates, &library, steps_sound);
    check::rules::verify(&mut report);
    let incidents = check::incidents::check(&mut report);
    let slos = check::slos::check(&mut report);
    check::detectors::check(&mut report);
    check::forecasts::check(&mut report);
    let warnings = report.finish()?;
    Ok(Compiled {
        incidents: Arc::new(incidents.expect("no errors means the incident settings compiled")),
        config: config.clone(),
        rules,
        runbooks,
        templates: templates.build(),
        webhooks,
        slos,
        warnings,
    })
}

/// The named runbooks' programs.
fn compile_runbooks(
    report: &mut check::Report,
    library: &BTreeMap<String, Runbook>,
) -> BTreeMap<String, Arc<Program>> {
    let config = report.config;
    let mut runbooks = BTreeMap::new();
    for (index, runbook) in config.runbooks.iter().enumerate() {
        match Program::compile(runbook, library) {
            Ok(program) => {
                runbooks.insert(runbook.name.clone(), Arc::new(program));
            }
            Err(program_error) => report.error(
                "runbooks",
                Some(index),
                "steps",
                program_error.to_string(),
                None,
            ),
        }
    }
    runbooks
}

/// The rules whose checks passed, with their programs (when the steps were sound).
fn compile_rules(
    report: &mut check::Report,
    templates: &mut TemplatesBuilder,
    library: &BTreeMap<String, Runbook>,
    steps_sound: bool,
) -> Vec<CompiledRule> {
    let config = report.config;
    let mut rules = Vec::new();
    for (index, rule) in config.rules.iter().enumerate() {
        let checked = check::rules::check(report, templates, index, rule);
        let program = if steps_sound {
            match rule_program(rule, library) {
                Ok(program) => Some(program),
                Err(program_error) => {
                    let field = if rule.runbook.is_some() {
                        "runbook"
                    } else {
                        "steps"
                    };
                    report.error("rules", Some(index), field, program_error.to_string(), None);
                    None
                }
            }
        } else {
            None
        };
        if let (Some(checked), Some(program)) = (checked, program) {
            rules.push(CompiledRule {
                name: rule.name.clone(),
                matchers: checked.matchers,
                condition: checked.condition,
                on: rule.on.clone(),
                params: checked.params,
                target: checked.target,
                guards: rule.guards.clone(),
                runbook: Arc::new(program),
                on_incident: rule.on_incident.clone(),
                verify: rule.verify.clone(),
            });
        }
    }
    rules
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
