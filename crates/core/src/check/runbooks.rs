//! `runbooks:`, and the steps of rules: static checks of steps, params, calls and the variables
//! templates and CEL expressions read; every problem at once, each at the field it is about, with a
//! hint that says the fix.
//!
//! They run before any [`crate::runbook::Program`] is compiled, so compilation may assume that step
//! kinds, names, calls and references are sound. Nothing here does IO: a notifier or token is checked
//! against the config, never against the world.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;

use serde_json::Value;

use super::cel::cel_paths;
use super::valid_name;
use super::words::{and_list, article, did_you_mean, list, names, or_list, show};
use crate::config::{
    Check, Config, Diagnostic, OnFailure, Param, ParamType, Runbook, Severity, Step,
};
use crate::template::{Template, TemplatesBuilder};

/// Variables that every template and CEL expression of a step may read.
const VARIABLES: &[&str] = &[
    "params",
    "steps",
    "event",
    "labels",
    "annotations",
    "status",
    "fingerprint",
    "source",
    "run",
];

/// What `steps.NAME` holds for the steps after it.
const STEP_FIELDS: &[&str] = &["status", "outputs"];

/// A step's kinds, in the order [`Step::kinds`] names them.
const KINDS: &[&str] = &[
    "action", "parallel", "for_each", "runbook", "wait", "approval", "assert",
];

/// HTTP methods that read without changing anything, so an `http_request` with one needs no rollback.
const SAFE_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];

/// Methods an `http` check may use.
const CHECK_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// At most this many retries; beyond it, longer backoffs are the better tool.
const MAX_RETRIES: u32 = 100;

/// Checks every runbook, every rule's `runbook:` or inline `steps:`, and the calls between runbooks.
pub fn check(config: &Config) -> Vec<Diagnostic> {
    let mut checker = Checker::new(config);
    checker.runbooks();
    checker.rules();
    checker.cycles();
    checker.runs();
    checker.finish()
}

/// A runbook or a rule, by section and index in the merged config.
#[derive(Clone, Copy)]
struct Site {
    section: &'static str,
    index: usize,
}

/// Whose `params` a step reads.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Runbook(&'a str),
    Rule(&'a str),
}

/// What a step may read: its params, the steps that ran before it, and which of them it cannot.
#[derive(Clone)]
struct Scope<'a> {
    site: Site,
    owner: Owner<'a>,
    params: BTreeSet<&'a str>,
    /// Steps that end before this one starts, by name.
    earlier: BTreeMap<&'a str, &'a Step>,
    /// This step, later siblings, and steps of enclosing blocks from the enclosing step on.
    later: BTreeSet<&'a str>,
    /// The `parallel` and `for_each` steps this step is inside.
    enclosing: BTreeSet<&'a str>,
    /// The step being checked.
    current: Option<&'a Step>,
    /// Where each step nested in a branch or loop sits, for hints about steps out of sight.
    places: Rc<BTreeMap<&'a str, Place<'a>>>,
    in_for_each: bool,
    /// In a rollback: the step it undoes, whose outputs it reads as `outputs`.
    undoing: Option<&'a Step>,
}

/// A call from a runbook to another one, for finding cycles.
struct Call<'a> {
    caller: usize,
    callee: &'a str,
    /// The call step's `runbook` field, under the caller.
    field: String,
}

struct Checker<'a> {
    config: &'a Config,
    /// Runbooks by name; the first one wins where names repeat (that is reported).
    library: BTreeMap<&'a str, &'a Runbook>,
    notifiers: Vec<&'a str>,
    tokens: Vec<&'a str>,
    builder: TemplatesBuilder,
    environment: minijinja::Environment<'static>,
    /// Functions every template may call (`range`, `dict`, ...), which look like variables.
    globals: BTreeSet<String>,
    calls: Vec<Call<'a>>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(config: &'a Config) -> Self {
        let mut library = BTreeMap::new();
        for runbook in &config.runbooks {
            library.entry(runbook.name.as_str()).or_insert(runbook);
        }
        let environment = minijinja::Environment::new();
        let globals = environment
            .globals()
            .map(|(name, _)| name.to_string())
            .collect();
        Checker {
            config,
            library,
            notifiers: config.notifiers.iter().map(|n| n.name()).collect(),
            tokens: config.api_tokens.iter().map(|t| t.name.as_str()).collect(),
            builder: TemplatesBuilder::new(),
            environment,
            globals,
            calls: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    fn finish(self) -> Vec<Diagnostic> {
        // One template can name a missing step several times; say it once.
        let mut seen = HashSet::new();
        self.diagnostics
            .into_iter()
            .filter(|d| {
                seen.insert((
                    d.path.clone(),
                    d.message.clone(),
                    d.severity == Severity::Error,
                ))
            })
            .collect()
    }

    fn push(
        &mut self,
        severity: Severity,
        site: Site,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let diagnostic = self.config.diagnostic(
            severity,
            site.section,
            Some(site.index),
            field,
            message,
            hint,
        );
        self.diagnostics.push(diagnostic);
    }

    fn error(&mut self, site: Site, field: &str, message: impl Into<String>, hint: impl Hint) {
        self.push(Severity::Error, site, field, message, hint.into_hint());
    }

    fn warning(&mut self, site: Site, field: &str, message: impl Into<String>, hint: impl Hint) {
        self.push(Severity::Warning, site, field, message, hint.into_hint());
    }

    fn runbooks(&mut self) {
        let config = self.config;
        let mut seen = HashSet::new();
        for (index, runbook) in config.runbooks.iter().enumerate() {
            let site = Site {
                section: "runbooks",
                index,
            };
            if !valid_name(&runbook.name) {
                self.error(
                    site,
                    "name",
                    format!("invalid runbook name `{}`", runbook.name),
                    "use letters, digits, `-` and `_`",
                );
            }
            if !seen.insert(runbook.name.as_str()) {
                self.error(
                    site,
                    "name",
                    format!("the name `{}` is used twice in `runbooks`", runbook.name),
                    "names must be unique; rename one",
                );
            }
            for (name, param) in &runbook.params {
                self.param_spec(site, name, param);
            }
            if runbook.steps.is_empty() {
                self.error(
                    site,
                    "steps",
                    "a runbook needs at least one step",
                    "add a step, such as `- {name: restart, action: exec, with: {command: [...]}}`",
                );
            }
            let scope = Scope {
                site,
                owner: Owner::Runbook(&runbook.name),
                params: runbook.params.keys().map(String::as_str).collect(),
                earlier: BTreeMap::new(),
                later: BTreeSet::new(),
                enclosing: BTreeSet::new(),
                current: None,
                places: Rc::new(places(&runbook.steps)),
                in_for_each: false,
                undoing: None,
            };
            self.block(&scope, "steps", &runbook.steps);
            // A runbook's outputs are rendered at its end, when all of its own steps have run.
            let mut end = scope.clone();
            end.earlier = runbook
                .steps
                .iter()
                .map(|step| (step.name.as_str(), step))
                .collect();
            for (key, text) in &runbook.outputs {
                self.template(&end, &format!("outputs.{key}"), text, false);
            }
        }
    }

    /// The checks of one parameter declaration.
    fn param_spec(&mut self, site: Site, name: &str, param: &Param) {
        let kind = param.kind;
        if let Some(default) = &param.default {
            if !has_type(kind, default) {
                self.error(
                    site,
                    &format!("params.{name}.default"),
                    format!("the default `{default}` is not {}", article(kind)),
                    format!("write {}, or change `type`", article(kind)),
                );
            } else if !param.allowed.is_empty() && !contains(&param.allowed, default) {
                self.error(
                    site,
                    &format!("params.{name}.default"),
                    format!("the default `{default}` is not one of `allowed`"),
                    format!(
                        "use one of {}, or add it to `allowed`",
                        list(&param.allowed)
                    ),
                );
            }
            if param.required {
                self.warning(
                    site,
                    &format!("params.{name}.required"),
                    "a default makes required meaningless",
                    "remove `required: true`, or the `default`",
                );
            }
        }
        for (position, value) in param.allowed.iter().enumerate() {
            if !has_type(kind, value) {
                self.error(
                    site,
                    &format!("params.{name}.allowed[{position}]"),
                    format!("`{value}` is not {}", article(kind)),
                    format!(
                        "`allowed` values must have the param's type; write {}, or change `type`",
                        article(kind)
                    ),
                );
            }
        }
    }

    fn rules(&mut self) {
        let config = self.config;
        for (index, rule) in config.rules.iter().enumerate() {
            let site = Site {
                section: "rules",
                index,
            };
            match (&rule.runbook, rule.steps.is_empty()) {
                (Some(name), false) => self.error(
                    site,
                    "runbook",
                    "a rule runs either a `runbook` or its own `steps`, not both",
                    format!("move the steps into runbook `{name}`, or remove `runbook:`"),
                ),
                (None, true) => self.error(
                    site,
                    "steps",
                    "the rule has neither `runbook` nor `steps`, so it does nothing",
                    "name a runbook with `runbook: NAME`, or list `steps:`",
                ),
                _ => {}
            }
            if let Some(name) = &rule.runbook {
                match self.library.get(name.as_str()).copied() {
                    Some(callee) => {
                        let given: BTreeMap<String, Value> = rule
                            .params
                            .iter()
                            .map(|(key, text)| (key.clone(), Value::String(text.clone())))
                            .collect();
                        self.call_params(site, "params", callee, &given, true);
                    }
                    None => {
                        let hint = self.known_runbooks(name);
                        self.error(
                            site,
                            "runbook",
                            format!("runbook `{name}` is not defined"),
                            hint,
                        );
                    }
                }
            }
            if !rule.steps.is_empty() {
                let scope = Scope {
                    site,
                    owner: Owner::Rule(&rule.name),
                    params: rule.params.keys().map(String::as_str).collect(),
                    earlier: BTreeMap::new(),
                    later: BTreeSet::new(),
                    enclosing: BTreeSet::new(),
                    current: None,
                    places: Rc::new(places(&rule.steps)),
                    in_for_each: false,
                    undoing: None,
                };
                self.block(&scope, "steps", &rule.steps);
            }
        }
    }

    /// `runs.attention_notifier` and `incidents.escalation_notifier` name notifiers.
    fn runs(&mut self) {
        let named = [
            (
                "runs",
                "attention_notifier",
                &self.config.runs.attention_notifier,
            ),
            (
                "incidents",
                "escalation_notifier",
                &self.config.incidents.escalation_notifier,
            ),
        ];
        for (section, field, name) in named {
            let Some(name) = name else {
                continue;
            };
            if !self.notifiers.contains(&name.as_str()) {
                let diagnostic = self.config.diagnostic(
                    Severity::Error,
                    section,
                    None,
                    field,
                    format!("no notifier is named `{name}`"),
                    Some(self.known_notifiers(name)),
                );
                self.diagnostics.push(diagnostic);
            }
        }
    }

    /// Checks a list of steps that run one after the other; `field` is the list's path.
    fn block(&mut self, outer: &Scope<'a>, field: &str, steps: &'a [Step]) {
        let mut names = HashSet::new();
        for (position, step) in steps.iter().enumerate() {
            let base = format!("{field}[{position}]");
            if !names.insert(step.name.as_str()) {
                self.error(
                    outer.site,
                    &format!("{base}.name"),
                    format!("the step name `{}` is used twice in this list", step.name),
                    "step names must be unique among their siblings; rename one",
                );
            }
            let mut scope = outer.clone();
            scope
                .earlier
                .extend(steps[..position].iter().map(|s| (s.name.as_str(), s)));
            scope
                .later
                .extend(steps[position..].iter().map(|s| s.name.as_str()));
            scope.current = Some(step);
            self.step(&scope, &base, step, false);
        }
    }

    fn step(&mut self, scope: &Scope<'a>, base: &str, step: &'a Step, in_rollback: bool) {
        let site = scope.site;
        let field = |name: &str| format!("{base}.{name}");
        if !valid_name(&step.name) {
            self.error(
                site,
                &field("name"),
                format!("invalid step name `{}`", step.name),
                "use letters, digits, `-` and `_`",
            );
        }
        let kinds = step.kinds();
        if in_rollback && !kinds.contains(&"action") {
            self.error(
                site,
                base,
                "a `rollback` must be an `action` step",
                "undo with one action, such as `action: exec` with `with: {command: [...]}`",
            );
            return;
        }
        match kinds.as_slice() {
            [] => self.error(
                site,
                base,
                format!("step `{}` does nothing", step.name),
                format!("give it one of {}", or_list(KINDS)),
            ),
            [_] => {}
            [.., last] => self.error(
                site,
                &field(last),
                format!("step `{}` has {}", step.name, and_list(&kinds)),
                "a step does one thing; split it into one step for each",
            ),
        }
        self.misplaced_fields(scope, base, step, &kinds);
        self.limits(site, base, step);

        if let Some(text) = &step.when {
            self.expression(scope, &field("when"), text);
        }
        if let Some(action) = &step.action {
            self.action(scope, base, step, action);
        }
        if let Some(branches) = &step.parallel {
            self.parallel(scope, base, step, branches);
        }
        if let Some(items) = &step.for_each {
            self.expression(scope, &field("for_each"), items);
            match step.steps.as_deref() {
                Some(steps) if !steps.is_empty() => {
                    let mut inner = scope.clone();
                    inner.enclosing.insert(&step.name);
                    inner.in_for_each = true;
                    inner.current = None;
                    self.block(&inner, &field("steps"), steps);
                }
                _ => self.error(
                    site,
                    &field(if step.steps.is_some() {
                        "steps"
                    } else {
                        "for_each"
                    }),
                    "a `for_each` needs at least one step in `steps`",
                    "list the steps to run for each item under `steps:`",
                ),
            }
        }
        if let Some(callee) = &step.runbook {
            self.call(scope, base, step, callee);
        }
        if let Some(wait) = &step.wait {
            match (&wait.duration_secs, &wait.until) {
                (None, None) => self.error(
                    site,
                    &field("wait"),
                    "a `wait` needs `duration_secs` or `until`",
                    "pause with `duration_secs: 30`, or wait for a check with `until: {promql: ...}`",
                ),
                (Some(_), Some(_)) => self.error(
                    site,
                    &field("wait.until"),
                    "a `wait` has `duration_secs` or `until`, not both",
                    "keep one; to bound an `until`, set the step's `timeout_secs`",
                ),
                _ => {}
            }
            if let Some(duration) = wait.duration_secs {
                if !(duration.is_finite() && duration >= 0.0) {
                    self.error(
                        site,
                        &field("wait.duration_secs"),
                        format!("`duration_secs` must be 0 or more seconds, not {duration}"),
                        "write a number of seconds, such as `duration_secs: 30`",
                    );
                }
            }
            if !(wait.interval_secs.is_finite() && wait.interval_secs > 0.0) {
                self.error(
                    site,
                    &field("wait.interval_secs"),
                    format!(
                        "`interval_secs` must be more than 0 seconds, not {}",
                        wait.interval_secs
                    ),
                    "write how often to check, such as `interval_secs: 10`",
                );
            }
            if let Some(until) = &wait.until {
                self.check_check(scope, &field("wait.until"), until);
            }
        }
        if let Some(approval) = &step.approval {
            if let Some(notifier) = &approval.notify {
                if !self.notifiers.contains(&notifier.as_str()) {
                    let hint = self.known_notifiers(notifier);
                    self.error(
                        site,
                        &field("approval.notify"),
                        format!("no notifier is named `{notifier}`"),
                        hint,
                    );
                }
            }
            for (position, approver) in approval.approvers.iter().enumerate() {
                if !self.tokens.contains(&approver.as_str()) {
                    let hint = if self.tokens.is_empty() {
                        "approvers are names of `api_tokens`; define one there".to_string()
                    } else {
                        format!(
                            "{}approvers are names of `api_tokens`: {}",
                            did_you_mean(approver, self.tokens.iter().copied()),
                            names(self.tokens.iter().copied())
                        )
                    };
                    self.warning(
                        site,
                        &field(&format!("approval.approvers[{position}]")),
                        format!("no API token named `{approver}`"),
                        hint,
                    );
                }
            }
            if let [only] = approval.approvers.as_slice() {
                if approval.distinct_from_starter {
                    self.warning(
                        site,
                        &field("approval.distinct_from_starter"),
                        format!("`{only}` is the only approver, so a run `{only}` starts by hand can never be approved"),
                        format!("name a second approver, or let `{only}` start this runbook only through rules"),
                    );
                }
            }
            if let Some(message) = &approval.message {
                self.template(scope, &field("approval.message"), message, false);
            }
        }
        if let Some(check) = &step.assert {
            self.check_check(scope, &field("assert"), check);
        }
        for (key, text) in &step.outputs {
            self.template(scope, &field(&format!("outputs.{key}")), text, true);
        }

        if let Some(rollback) = &step.rollback {
            if in_rollback {
                self.error(
                    site,
                    &field("rollback"),
                    "a rollback has no `rollback` of its own",
                    "remove it; if undoing can fail, make the rollback `idempotent` and safe to retry",
                );
            } else {
                let mut undo = scope.clone();
                undo.undoing = Some(step);
                self.step(&undo, &field("rollback"), rollback, true);
            }
        } else if !in_rollback && mutates(step) && step.on_failure != OnFailure::Abort {
            // `on_failure: abort` is how a runbook says "this cannot be undone": no warning then.
            self.warning(
                site,
                &field("rollback"),
                format!("step `{}` changes things but has no `rollback`", step.name),
                "add `rollback:` to undo it when a later step fails, or `on_failure: abort` to say it cannot be undone",
            );
        }
    }

    /// Fields that belong to another kind of step.
    fn misplaced_fields(&mut self, scope: &Scope<'a>, base: &str, step: &Step, kinds: &[&str]) {
        let site = scope.site;
        let field = |name: &str| format!("{base}.{name}");
        if !step.with.is_null() && step.action.is_none() {
            let hint = if step.runbook.is_some() {
                "a runbook call takes its inputs as `params`"
            } else {
                "remove it; `with` gives an `action` its inputs"
            };
            self.error(
                site,
                &field("with"),
                "`with` is only for `action` steps",
                hint,
            );
        }
        if step.for_each.is_none() {
            if step.concurrency.is_some() {
                self.error(
                    site,
                    &field("concurrency"),
                    "`concurrency` is only for `for_each` steps",
                    "remove it; `parallel` branches all run at once",
                );
            }
            if step.steps.is_some() {
                let hint = if step.parallel.is_some() {
                    "give each branch its steps: `parallel: [{name: a, steps: [...]}]`"
                } else {
                    "remove it, or add `for_each:` to run the steps once per item"
                };
                self.error(
                    site,
                    &field("steps"),
                    "`steps` is only for `for_each` steps",
                    hint,
                );
            }
        }
        if step.concurrency == Some(0) {
            self.error(
                site,
                &field("concurrency"),
                "`concurrency` must be at least 1",
                "write how many items run at once, such as `concurrency: 1`",
            );
        }
        if !step.params.is_empty() && step.runbook.is_none() {
            let hint = if step.action.is_some() {
                "an action takes its inputs as `with`"
            } else {
                "remove it; `params` are for calls with `runbook: NAME`"
            };
            self.error(
                site,
                &field("params"),
                "`params` is only for `runbook` calls",
                hint,
            );
        }
        if let [kind @ ("wait" | "parallel" | "for_each")] = kinds {
            if !step.outputs.is_empty() {
                self.error(
                    site,
                    &field("outputs"),
                    format!("a `{kind}` step has no outputs"),
                    "remove `outputs`; declare them on the steps that produce values",
                );
            }
        }
    }

    /// `timeout_secs` and `retries`.
    fn limits(&mut self, site: Site, base: &str, step: &Step) {
        let field = |name: &str| format!("{base}.{name}");
        if let Some(timeout) = step.timeout_secs {
            if !(timeout.is_finite() && timeout > 0.0) {
                self.error(
                    site,
                    &field("timeout_secs"),
                    format!("`timeout_secs` must be more than 0 seconds, not {timeout}"),
                    "write a number of seconds, such as `timeout_secs: 60`",
                );
            }
        }
        let Some(retries) = &step.retries else {
            return;
        };
        if retries.count > MAX_RETRIES {
            self.error(
                site,
                &field("retries.count"),
                format!(
                    "{} retries is too many; at most {MAX_RETRIES}",
                    retries.count
                ),
                "to keep trying for longer, raise `backoff_secs` or `max_backoff_secs`",
            );
        }
        if !(retries.backoff_secs.is_finite() && retries.backoff_secs >= 0.0) {
            self.error(
                site,
                &field("retries.backoff_secs"),
                format!(
                    "`backoff_secs` must be 0 or more seconds, not {}",
                    retries.backoff_secs
                ),
                "write the first pause in seconds, such as `backoff_secs: 1`",
            );
        }
        if !(retries.backoff_factor.is_finite() && retries.backoff_factor >= 1.0) {
            self.error(
                site,
                &field("retries.backoff_factor"),
                format!(
                    "`backoff_factor` must be at least 1, not {}",
                    retries.backoff_factor
                ),
                "use 1 for equal pauses, 2 to double each pause",
            );
        }
        if !(retries.max_backoff_secs.is_finite()
            && retries.max_backoff_secs >= retries.backoff_secs)
        {
            self.error(
                site,
                &field("retries.max_backoff_secs"),
                format!(
                    "`max_backoff_secs` ({}) must be at least `backoff_secs` ({})",
                    retries.max_backoff_secs, retries.backoff_secs
                ),
                "raise `max_backoff_secs`, or lower `backoff_secs`",
            );
        }
    }

    fn action(&mut self, scope: &Scope<'a>, base: &str, step: &Step, action: &str) {
        let site = scope.site;
        if let Err(error) = crate::action::parse(action, &step.with) {
            let field = match error.field.as_str() {
                "" | "." => "with",
                field => field,
            };
            self.error(site, &format!("{base}.{field}"), error.message, error.hint);
        }
        if action == "notify" {
            if let Some(Value::String(notifier)) = step.with.get("notifier") {
                if !is_template(notifier) && !self.notifiers.contains(&notifier.as_str()) {
                    let hint = self.known_notifiers(notifier);
                    self.error(
                        site,
                        &format!("{base}.with.notifier"),
                        format!("no notifier is named `{notifier}`"),
                        hint,
                    );
                }
            }
        }
        if action == "exec" && step.with.get("shell") == Some(&Value::Bool(true)) {
            let templated = step
                .with
                .get("command")
                .is_some_and(|command| match command {
                    Value::String(text) => is_template(text),
                    Value::Array(items) => items.iter().any(|item| !is_literal(item)),
                    _ => false,
                });
            if templated {
                self.warning(
                    site,
                    &format!("{base}.with.command"),
                    "`shell: true` runs this templated command through `/bin/sh`: a value with `;`, `$(...)` or a quote in it (an event's label, say) runs commands of its own",
                    "drop `shell` and list the program and its arguments, one value an argument: `[systemctl, restart, \"{{ labels.job }}\"]`; or pass the value in `env` (`env: {UNIT: \"{{ labels.job }}\"}`) and quote it in the script: `systemctl restart \"$UNIT\"`",
                );
            }
        }
        self.templates_in(scope, &format!("{base}.with"), &step.with);
    }

    fn parallel(
        &mut self,
        scope: &Scope<'a>,
        base: &str,
        step: &'a Step,
        branches: &'a [crate::config::Branch],
    ) {
        let site = scope.site;
        if branches.is_empty() {
            self.error(
                site,
                &format!("{base}.parallel"),
                "a `parallel` needs at least one branch",
                "add branches: `parallel: [{name: a, steps: [...]}, {name: b, steps: [...]}]`",
            );
        }
        let mut inner = scope.clone();
        inner.enclosing.insert(&step.name);
        inner.current = None;
        let mut seen = HashSet::new();
        for (position, branch) in branches.iter().enumerate() {
            let branch_base = format!("{base}.parallel[{position}]");
            if !valid_name(&branch.name) {
                self.error(
                    site,
                    &format!("{branch_base}.name"),
                    format!("invalid branch name `{}`", branch.name),
                    "use letters, digits, `-` and `_`",
                );
            }
            if !seen.insert(branch.name.as_str()) {
                self.error(
                    site,
                    &format!("{branch_base}.name"),
                    format!(
                        "the branch name `{}` is used twice in this `parallel`",
                        branch.name
                    ),
                    "branch names must be unique within a `parallel`; rename one",
                );
            }
            if branch.steps.is_empty() {
                self.error(
                    site,
                    &format!("{branch_base}.steps"),
                    format!("branch `{}` has no steps", branch.name),
                    "add a step, or remove the branch",
                );
            }
            self.block(&inner, &format!("{branch_base}.steps"), &branch.steps);
        }
    }

    fn call(&mut self, scope: &Scope<'a>, base: &str, step: &'a Step, callee_name: &'a str) {
        let site = scope.site;
        if site.section == "runbooks" {
            self.calls.push(Call {
                caller: site.index,
                callee: callee_name,
                field: format!("{base}.runbook"),
            });
        }
        for (key, value) in &step.params {
            self.templates_in(scope, &format!("{base}.params.{key}"), value);
        }
        match self.library.get(callee_name).copied() {
            Some(callee) => {
                self.call_params(site, &format!("{base}.params"), callee, &step.params, false)
            }
            None => {
                let hint = self.known_runbooks(callee_name);
                self.error(
                    site,
                    &format!("{base}.runbook"),
                    format!("runbook `{callee_name}` is not defined"),
                    hint,
                );
            }
        }
    }

    /// The parameters given to a runbook, by a call step or by a rule (`from_rule`: text templates).
    fn call_params(
        &mut self,
        site: Site,
        field: &str,
        callee: &Runbook,
        given: &BTreeMap<String, Value>,
        from_rule: bool,
    ) {
        let name = &callee.name;
        for (param, spec) in &callee.params {
            if spec.required && spec.default.is_none() && !given.contains_key(param) {
                let hint = if from_rule {
                    format!(
                        "add it to the rule's `params:`, such as `{param}: \"{{{{ labels.{param} }}}}\"`"
                    )
                } else {
                    format!("add `{param}:` ({}) under `params:`", article(spec.kind))
                };
                self.error(
                    site,
                    field,
                    format!("runbook `{name}` needs param `{param}`"),
                    hint,
                );
            }
        }
        for (param, value) in given {
            let at = format!("{field}.{param}");
            let Some(spec) = callee.params.get(param) else {
                let hint = if callee.params.is_empty() {
                    format!("runbook `{name}` takes no params; remove it")
                } else {
                    format!(
                        "runbook `{name}` takes {}",
                        names(callee.params.keys().map(String::as_str))
                    )
                };
                self.error(
                    site,
                    &at,
                    format!("runbook `{name}` has no param `{param}`"),
                    hint,
                );
                continue;
            };
            if !is_literal(value) {
                continue;
            }
            match crate::runbook::program::coerce(spec.kind, value) {
                Err(_) => self.error(
                    site,
                    &at,
                    format!(
                        "param `{param}` of runbook `{name}` is {}, not `{}`",
                        article(spec.kind),
                        show(value)
                    ),
                    format!("write {}", article(spec.kind)),
                ),
                Ok(coerced) if !spec.allowed.is_empty() && !contains(&spec.allowed, &coerced) => {
                    self.error(
                        site,
                        &at,
                        format!(
                            "`{}` is not allowed for param `{param}` of runbook `{name}`",
                            show(value)
                        ),
                        format!("use one of {}", list(&spec.allowed)),
                    )
                }
                Ok(_) => {}
            }
        }
    }

    /// A `promql` or `http` check, of an `assert` or a `wait.until`.
    fn check_check(&mut self, scope: &Scope<'a>, base: &str, check: &Check) {
        let site = scope.site;
        match (&check.promql, &check.http) {
            (None, None) => self.error(
                site,
                base,
                "a check needs `promql` or `http`",
                "query with `promql: 'up{job=\"api\"} == 1'`, or request with `http: {url: ...}`",
            ),
            (Some(_), Some(_)) => self.error(
                site,
                &format!("{base}.http"),
                "a check has `promql` or `http`, not both",
                "split it into two steps",
            ),
            _ => {}
        }
        if let Some(promql) = &check.promql {
            let field = format!("{base}.promql");
            self.template(scope, &field, promql, false);
            // A templated query is only whole at run time.
            if !is_template(promql) {
                if let Err(message) = promql_parser::parser::parse(promql) {
                    self.error(
                        site,
                        &field,
                        format!("invalid PromQL `{promql}`: {}", first_line(&message)),
                        "check the query in Prometheus' expression browser",
                    );
                }
            }
            if check.prometheus_url.is_none() && self.config.prometheus.is_none() {
                self.error(
                    site,
                    &field,
                    "there is no Prometheus to query",
                    "set prometheus.url at the top level, or `prometheus_url` on this check",
                );
            }
        }
        if let Some(url) = &check.prometheus_url {
            let field = format!("{base}.prometheus_url");
            self.template(scope, &field, url, false);
            if check.promql.is_none() {
                self.error(
                    site,
                    &field,
                    "`prometheus_url` is only for `promql` checks",
                    "remove it",
                );
            }
        }
        if let Some(http) = &check.http {
            self.template(scope, &format!("{base}.http.url"), &http.url, false);
            if !CHECK_METHODS.contains(&http.method.as_str()) {
                self.error(
                    site,
                    &format!("{base}.http.method"),
                    format!("unknown method `{}`", http.method),
                    format!("use {}", or_list(CHECK_METHODS)),
                );
            }
        }
    }

    /// Every string inside a JSON value is a template.
    fn templates_in(&mut self, scope: &Scope<'a>, field: &str, value: &Value) {
        match value {
            Value::String(text) => self.template(scope, field, text, false),
            Value::Array(items) => {
                for (position, item) in items.iter().enumerate() {
                    self.templates_in(scope, &format!("{field}[{position}]"), item);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.templates_in(scope, &format!("{field}.{key}"), item);
                }
            }
            _ => {}
        }
    }

    /// A template's syntax and the variables it reads; `result` is readable in `outputs` only.
    fn template(&mut self, scope: &Scope<'a>, field: &str, text: &str, result: bool) {
        match self.builder.add(text) {
            Err(error) => self.error(scope.site, field, error.to_string(), None),
            Ok(Template::Literal(_)) => {}
            Ok(Template::Compiled { .. }) => {
                let variables = match self.environment.template_from_str(text) {
                    Ok(template) => template.undeclared_variables(true),
                    Err(_) => return,
                };
                let mut paths: Vec<Vec<String>> = variables
                    .into_iter()
                    .map(|path| path.split('.').map(str::to_string).collect())
                    .collect();
                paths.sort();
                for path in paths {
                    if self.globals.contains(&path[0]) {
                        continue;
                    }
                    self.reference(scope, field, &path, result);
                }
            }
        }
    }

    /// A CEL expression's syntax and the variables it reads.
    fn expression(&mut self, scope: &Scope<'a>, field: &str, text: &str) {
        match crate::runbook::program::compile_cel(text) {
            Err(error) => self.error(
                scope.site,
                field,
                format!("invalid CEL `{text}`: {}", first_line(&error)),
                "write a CEL expression, such as `steps.check.outputs.count > 0`",
            ),
            Ok(program) => {
                let mut paths = Vec::new();
                cel_paths(program.expression(), &mut Vec::new(), &mut paths);
                paths.sort();
                for path in paths {
                    self.reference(scope, field, &path, false);
                }
            }
        }
    }

    /// One variable path read by a template or expression, such as `steps.check.outputs.status`.
    fn reference(&mut self, scope: &Scope<'a>, field: &str, path: &[String], result: bool) {
        let site = scope.site;
        let second = path.get(1).map(String::as_str);
        match path[0].as_str() {
            "steps" => {
                if let Some(name) = second {
                    self.step_reference(scope, field, name, &path[2..]);
                }
            }
            "params" => {
                let Some(param) = second else { return };
                if scope.params.contains(param) {
                    return;
                }
                let (message, hint) = match scope.owner {
                    Owner::Runbook(owner) => (
                        format!("runbook `{owner}` has no param `{param}`"),
                        if scope.params.is_empty() {
                            format!("declare it under the runbook's `params:`, such as `{param}: {{type: string, required: true}}`")
                        } else {
                            format!(
                                "its params are {}; or declare `{param}` under `params:`",
                                names(scope.params.iter().copied())
                            )
                        },
                    ),
                    Owner::Rule(owner) => (
                        format!("rule `{owner}` has no param `{param}`"),
                        if scope.params.is_empty() {
                            format!("add it to the rule's `params:`, such as `{param}: \"{{{{ labels.{param} }}}}\"`")
                        } else {
                            format!(
                                "its params are {}; or add `{param}` to the rule's `params:`",
                                names(scope.params.iter().copied())
                            )
                        },
                    ),
                };
                self.error(site, field, message, hint);
            }
            "result" if result => {}
            "item" | "index" if scope.in_for_each => {}
            "outputs" if scope.undoing.is_some() => {
                if let Some(undoing) = scope.undoing {
                    self.step_fields(site, field, undoing, path);
                }
            }
            name if VARIABLES.contains(&name) => {}
            "result" => self.error(
                site,
                field,
                "`result` is only set in `outputs`",
                "read the action's output as `result` under `outputs:`; later steps read `steps.NAME.outputs.KEY`",
            ),
            name @ ("item" | "index") => self.error(
                site,
                field,
                format!("`{name}` is only set inside a `for_each`"),
                "move this step into the `steps` of a `for_each`",
            ),
            "outputs" => self.error(
                site,
                field,
                "`outputs` is only set in a `rollback`",
                "read a step's outputs as `steps.NAME.outputs.KEY`",
            ),
            name => {
                let mut allowed: Vec<&str> = VARIABLES.to_vec();
                if result {
                    allowed.push("result");
                }
                if scope.in_for_each {
                    allowed.extend(["item", "index"]);
                }
                if scope.undoing.is_some() {
                    allowed.push("outputs");
                }
                self.error(
                    site,
                    field,
                    format!("unknown variable `{name}`"),
                    format!(
                        "{}use one of {}",
                        did_you_mean(name, allowed.iter().copied()),
                        names(allowed.iter().copied())
                    ),
                );
            }
        }
    }

    /// `steps.NAME...`: NAME must have run before this step, and what follows must exist.
    fn step_reference(&mut self, scope: &Scope<'a>, field: &str, name: &str, rest: &[String]) {
        let site = scope.site;
        let current = scope.current.map(|step| step.name.as_str());
        if let Some(step) = scope.earlier.get(name).copied() {
            self.step_fields(site, field, step, rest);
        } else if current == Some(name) && scope.undoing.is_some() {
            self.error(
                site,
                field,
                format!("step `{name}` is the step this rollback undoes"),
                "read its outputs as `outputs.KEY`",
            );
        } else if current == Some(name) {
            self.error(
                site,
                field,
                format!("step `{name}` is this step itself"),
                "read the action's output as `result` under `outputs:`, or move this to a later step",
            );
        } else if scope.later.contains(name) {
            let hint = if scope.enclosing.contains(name) {
                format!("this step is inside `{name}`, which ends after it")
            } else {
                format!("move `{name}` before this step, or read it in a later step")
            };
            self.error(
                site,
                field,
                format!("step `{name}` runs after this one"),
                hint,
            );
        } else {
            let dashed = scope
                .places
                .keys()
                .chain(scope.earlier.keys())
                .chain(scope.later.iter())
                .find(|other| {
                    other
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('-'))
                });
            let hint = if let Some(place) = scope.places.get(name) {
                if scope.earlier.contains_key(place.container) {
                    format!(
                        "`{name}` is in {}; read it as `{}`",
                        place.description, place.access
                    )
                } else {
                    format!(
                        "`{name}` is in {}, out of sight here; steps there are seen by later steps of the same list, and after `{}` as `{}`",
                        place.description, place.container, place.access
                    )
                }
            } else if let Some(dashed) = dashed {
                format!("a name with `-` needs brackets: `steps['{dashed}']`")
            } else if scope.earlier.is_empty() {
                "no step runs before this one".to_string()
            } else {
                format!(
                    "steps before this one: {}",
                    names(scope.earlier.keys().copied())
                )
            };
            self.error(
                site,
                field,
                format!("no step `{name}` before this one"),
                hint,
            );
        }
    }

    /// What follows `steps.NAME` (or a rollback's `outputs`) for a step that ran: `status`, or
    /// `outputs` and one it has. A `parallel` step's outputs are its branches' steps, a `for_each`'s
    /// its items'.
    fn step_fields(&mut self, site: Site, field: &str, step: &'a Step, rest: &[String]) {
        let name = step.name.as_str();
        match rest.first().map(String::as_str) {
            None => return,
            Some("outputs") => {}
            Some(known) if STEP_FIELDS.contains(&known) => return,
            Some(other) => {
                self.error(
                    site,
                    field,
                    format!("step `{name}` has no field `{other}`"),
                    format!("use `steps.{name}.status` or `steps.{name}.outputs.KEY`"),
                );
                return;
            }
        }
        let Some(key) = rest.get(1) else { return };
        if let Some(branches) = &step.parallel {
            if key != "branches" {
                self.error(
                    site,
                    field,
                    format!("step `{name}` has no output `{key}`"),
                    format!("a `parallel` step's outputs are `steps.{name}.outputs.branches.BRANCH.steps.STEP`"),
                );
                return;
            }
            let Some(wanted) = rest.get(2) else { return };
            let Some(branch) = branches.iter().find(|branch| &branch.name == wanted) else {
                self.error(
                    site,
                    field,
                    format!("step `{name}` has no branch `{wanted}`"),
                    format!(
                        "its branches are {}",
                        names(branches.iter().map(|branch| branch.name.as_str()))
                    ),
                );
                return;
            };
            match rest.get(3).map(String::as_str) {
                None => {}
                Some("steps") => {
                    let Some(inner) = rest.get(4) else { return };
                    match branch.steps.iter().find(|step| &step.name == inner) {
                        Some(inner) => self.step_fields(site, field, inner, &rest[5..]),
                        None => self.error(
                            site,
                            field,
                            format!("branch `{wanted}` of `{name}` has no step `{inner}`"),
                            format!(
                                "its steps are {}",
                                names(branch.steps.iter().map(|step| step.name.as_str()))
                            ),
                        ),
                    }
                }
                Some(other) => self.error(
                    site,
                    field,
                    format!("branch `{wanted}` of `{name}` has no field `{other}`"),
                    format!(
                        "read its steps as `steps.{name}.outputs.branches.{wanted}.steps.STEP`"
                    ),
                ),
            }
            return;
        }
        if step.for_each.is_some() {
            if key != "items" {
                self.error(
                    site,
                    field,
                    format!("step `{name}` has no output `{key}`"),
                    format!("a `for_each` step's outputs are `steps.{name}.outputs.items[INDEX].steps.STEP`"),
                );
            }
            return;
        }
        if let Some(declared) = self.outputs_of(step) {
            if !declared.contains(key.as_str()) {
                self.error(
                    site,
                    field,
                    format!("step `{name}` has no output `{key}`"),
                    declare_hint(name, &declared),
                );
            }
        }
    }

    /// The outputs a step declares, or `None` when they cannot be known (a call to a missing runbook).
    fn outputs_of(&self, step: &'a Step) -> Option<BTreeSet<&'a str>> {
        let mut declared: BTreeSet<&str> = step.outputs.keys().map(String::as_str).collect();
        if let Some(callee) = &step.runbook {
            let callee = self.library.get(callee.as_str())?;
            declared.extend(callee.outputs.keys().map(String::as_str));
        }
        Some(declared)
    }

    /// Calls between runbooks must not form a cycle; each cycle is reported once, on a call step.
    fn cycles(&mut self) {
        let count = self.config.runbooks.len();
        let mut edges: Vec<Vec<(usize, String)>> = vec![Vec::new(); count];
        for call in &self.calls {
            let Some(callee) = self
                .config
                .runbooks
                .iter()
                .position(|runbook| runbook.name == call.callee)
            else {
                continue;
            };
            let from = &mut edges[call.caller];
            if !from.iter().any(|(to, _)| *to == callee) {
                from.push((callee, call.field.clone()));
            }
        }
        let mut state = vec![Visit::New; count];
        let mut stack = Vec::new();
        let mut found = Vec::new();
        for start in 0..count {
            if state[start] == Visit::New {
                visit(start, &edges, &mut state, &mut stack, &mut found);
            }
        }
        for cycle in found {
            let first = cycle[0];
            let next = cycle.get(1).copied().unwrap_or(first);
            let field = edges[first]
                .iter()
                .find(|(to, _)| *to == next)
                .map(|(_, field)| field.clone())
                .unwrap_or_default();
            let name = |index: usize| self.config.runbooks[index].name.as_str();
            let message = if cycle.len() == 1 {
                format!("runbook `{}` calls itself", name(first))
            } else {
                let through: Vec<String> = cycle[1..]
                    .iter()
                    .chain([&first])
                    .map(|&index| format!("`{}`", name(index)))
                    .collect();
                format!(
                    "runbook `{}` calls itself through {}",
                    name(first),
                    through.join(" -> ")
                )
            };
            self.error(
                Site {
                    section: "runbooks",
                    index: first,
                },
                &field,
                message,
                "a runbook may not call itself, directly or not; remove one of these calls",
            );
        }
    }

    /// The hint for a runbook named that is not defined: the nearest name, and the names there are.
    fn known_runbooks(&self, name: &str) -> String {
        if self.library.is_empty() {
            "define it under `runbooks:`".to_string()
        } else {
            format!(
                "{}known runbooks: {}",
                did_you_mean(name, self.library.keys().copied()),
                names(self.library.keys().copied())
            )
        }
    }

    /// The hint for a notifier named that is not defined.
    fn known_notifiers(&self, name: &str) -> String {
        if self.notifiers.is_empty() {
            "define it under `notifiers:`".to_string()
        } else {
            format!(
                "{}known notifiers: {}",
                did_you_mean(name, self.notifiers.iter().copied()),
                names(self.notifiers.iter().copied())
            )
        }
    }
}

/// What a hint argument may be: text or nothing.
trait Hint {
    fn into_hint(self) -> Option<String>;
}

impl Hint for &str {
    fn into_hint(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Hint for String {
    fn into_hint(self) -> Option<String> {
        Some(self)
    }
}

impl Hint for Option<String> {
    fn into_hint(self) -> Option<String> {
        self
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    OnStack,
    Done,
}

/// Depth-first search; every edge back to a runbook on the stack closes one cycle.
fn visit(
    node: usize,
    edges: &[Vec<(usize, String)>],
    state: &mut [Visit],
    stack: &mut Vec<usize>,
    found: &mut Vec<Vec<usize>>,
) {
    state[node] = Visit::OnStack;
    stack.push(node);
    for (next, _) in &edges[node] {
        match state[*next] {
            Visit::OnStack => {
                let start = stack.iter().position(|index| index == next).unwrap_or(0);
                found.push(stack[start..].to_vec());
            }
            Visit::New => visit(*next, edges, state, stack, found),
            Visit::Done => {}
        }
    }
    stack.pop();
    state[node] = Visit::Done;
}

/// Where a step nested in a branch or a `for_each` sits, and how steps after its container read it.
struct Place<'a> {
    /// Such as "branch `a` of `fan`".
    description: String,
    /// The `parallel` or `for_each` step it is directly inside.
    container: &'a str,
    /// Such as `steps.fan.outputs.branches.a.steps.restart`.
    access: String,
}

/// Where each step nested in a branch or a `for_each` sits; the first place wins for repeated names.
fn places(steps: &[Step]) -> BTreeMap<&str, Place<'_>> {
    fn walk<'s>(
        steps: &'s [Step],
        container: Option<(&'s str, &str, &str)>,
        out: &mut BTreeMap<&'s str, Place<'s>>,
    ) {
        for step in steps {
            if let Some((container, description, access)) = container {
                out.entry(step.name.as_str()).or_insert_with(|| Place {
                    description: description.to_string(),
                    container,
                    access: format!("{access}.steps.{}", step.name),
                });
            }
            for branch in step.parallel.iter().flatten() {
                let description = format!("branch `{}` of `{}`", branch.name, step.name);
                let access = format!("steps.{}.outputs.branches.{}", step.name, branch.name);
                walk(
                    &branch.steps,
                    Some((&step.name, &description, &access)),
                    out,
                );
            }
            if let Some(inner) = &step.steps {
                let description = format!("the `for_each` of `{}`", step.name);
                let access = format!("steps.{}.outputs.items[INDEX]", step.name);
                walk(inner, Some((&step.name, &description, &access)), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(steps, None, &mut out);
    out
}

/// Whether a step changes things outside homeostat, and so should say how to undo it.
fn mutates(step: &Step) -> bool {
    match step.action.as_deref() {
        Some("exec") => true,
        Some("http_request") => {
            let method = step
                .with
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("GET")
                .to_ascii_uppercase();
            !SAFE_METHODS.contains(&method.as_str())
        }
        _ => false,
    }
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// A value with no template anywhere in it, whose type can be checked now.
fn is_literal(value: &Value) -> bool {
    match value {
        Value::String(text) => !is_template(text),
        Value::Array(items) => items.iter().all(is_literal),
        Value::Object(map) => map.values().all(is_literal),
        _ => true,
    }
}

/// Whether a value has a declared type exactly, as defaults and `allowed` values must.
fn has_type(kind: ParamType, value: &Value) -> bool {
    match kind {
        ParamType::String => value.is_string(),
        ParamType::Integer => value.is_i64() || value.is_u64(),
        ParamType::Number => value.is_number(),
        ParamType::Boolean => value.is_boolean(),
        ParamType::List => value.is_array(),
    }
}

/// Membership where `1` and `1.0` are the same number.
fn contains(allowed: &[Value], value: &Value) -> bool {
    allowed.iter().any(|candidate| match (candidate, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    })
}

fn declare_hint(step: &str, declared: &BTreeSet<&str>) -> String {
    if declared.is_empty() {
        format!("step `{step}` declares no outputs; add them under its `outputs:`")
    } else {
        format!(
            "step `{step}` has {}; or declare it under its `outputs:`",
            names(declared.iter().copied())
        )
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
