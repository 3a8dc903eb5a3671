//! Runbook config: named runbooks with typed parameters and steps, as written in YAML.
//!
//! A rule's inline `steps:` use the same [`Step`] type; they form an anonymous runbook.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A named runbook: parameters and steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    pub steps: Vec<Step>,
    /// Values the runbook returns to a caller (`steps.CALL.outputs.NAME`), templated at its end.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

/// A typed runbook parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    /// A value must be given unless a `default` exists.
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// When not empty, the only values accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
    List,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::List => "list",
        }
    }
}

/// One step. Exactly one of `action`, `parallel`, `for_each`, `runbook`, `wait`, `approval` and
/// `assert` says what it does; the other fields say how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// An action: `exec`, `http_request`, `notify` or `log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The action's inputs; strings are templates.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub with: serde_json::Value,
    /// Branches that run at the same time; the step ends when all have ended (the join).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Vec<Branch>>,
    /// A CEL expression giving a list; `steps` run once per item, `item` and `index` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// How many `for_each` items run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The steps of a `for_each`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
    /// Calls another runbook with `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// The called runbook's parameters; strings are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// A check that fails the step (and so the run, by default) when it does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assert: Option<Check>,

    /// A CEL condition; the step is skipped when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// For an action, how long one attempt may take; for `wait` until a check and `approval`, how
    /// long to wait. Defaults: 60 s for actions, 3600 s for waits and approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Values later steps read as `steps.NAME.outputs.KEY`; templates over `result`, the action's
    /// output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// What undoes this step, run when a later failure rolls the run back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Box<Step>>,
    /// Safe to run again when a crash left its outcome unknown.
    #[serde(default)]
    pub idempotent: bool,
}

impl Step {
    /// A step whose only field is its action, for tests and programmatic use.
    pub fn action(name: &str, action: &str, with: serde_json::Value) -> Self {
        Step {
            name: name.into(),
            action: Some(action.into()),
            with,
            parallel: None,
            for_each: None,
            concurrency: None,
            steps: None,
            runbook: None,
            params: BTreeMap::new(),
            wait: None,
            approval: None,
            assert: None,
            when: None,
            timeout_secs: None,
            retries: None,
            outputs: BTreeMap::new(),
            on_failure: OnFailure::default(),
            rollback: None,
            idempotent: false,
        }
    }

    /// Which kinds are set, by their field names; a valid step has exactly one.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.action.is_some() {
            kinds.push("action");
        }
        if self.parallel.is_some() {
            kinds.push("parallel");
        }
        if self.for_each.is_some() {
            kinds.push("for_each");
        }
        if self.runbook.is_some() {
            kinds.push("runbook");
        }
        if self.wait.is_some() {
            kinds.push("wait");
        }
        if self.approval.is_some() {
            kinds.push("approval");
        }
        if self.assert.is_some() {
            kinds.push("assert");
        }
        kinds
    }
}

/// One branch of a `parallel` step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    pub name: String,
    pub steps: Vec<Step>,
}

/// Attempts after the first, with exponential backoff between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    pub count: u32,
    #[serde(default = "defaults::backoff_secs")]
    pub backoff_secs: f64,
    #[serde(default = "defaults::backoff_factor")]
    pub backoff_factor: f64,
    #[serde(default = "defaults::max_backoff_secs")]
    pub max_backoff_secs: f64,
}

impl Retries {
    /// The pause before attempt `next` (2 for the first retry).
    pub fn backoff(&self, next: u32) -> f64 {
        let exponent = next.saturating_sub(2).min(64) as i32;
        (self.backoff_secs * self.backoff_factor.powi(exponent)).min(self.max_backoff_secs)
    }
}

/// What a failed step does to its run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop, then run the rollbacks of the steps already done, newest first.
    #[default]
    Rollback,
    /// Stop without undoing anything.
    Abort,
    /// Record the failure and go on with the next step.
    Continue,
}

/// `wait`: a fixed pause, or until a check holds (polled every `interval_secs`, up to the step's
/// timeout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Check>,
    #[serde(default = "defaults::interval_secs")]
    pub interval_secs: f64,
}

/// A read-only check: a PromQL expression that holds when its result is not empty (an alerting
/// rule's semantics), or an HTTP request that answers with an expected status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promql: Option<String>,
    /// The Prometheus-compatible API to query; `prometheus.url` from the config by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub url: String,
    #[serde(default = "defaults::get")]
    pub method: String,
    /// Statuses that count as holding; any 2xx when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// When set, the body must contain this text too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

/// `approval`: the run waits for a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Names of the API tokens allowed to decide; any token with the `write` scope when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// What the approver is asked; a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A notifier told that an approval is waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// The approver must not be whoever started the run (four eyes): a run started by hand with
    /// an API token cannot be approved with that same token. A run a rule started has no person
    /// as its starter, so any approver may answer it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub distinct_from_starter: bool,
}

/// Top-level `prometheus:`: the API that PromQL checks query by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prometheus {
    pub url: String,
    #[serde(default = "defaults::prometheus_timeout")]
    pub timeout_secs: f64,
}

/// Top-level `runs:`: settings for every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runs {
    /// A notifier told when a run stops in `needs_attention` or fails its rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_notifier: Option<String>,
    /// The blast-radius budget: at most this many targets under automated remediation at once,
    /// across all rules. A rule's run beyond it is refused and the attention notifier is told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_targets: Option<u32>,
    /// Values of an event's `severity` label that page someone: when a guard holds a rule back on
    /// such an event (cooldown, rate, concurrency, a rule loop detection turned off), the
    /// attention notifier is told, since nobody would otherwise know the page was not acted on.
    #[serde(default = "defaults::page_severities")]
    pub page_severities: Vec<String>,
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            attention_notifier: None,
            max_targets: None,
            page_severities: defaults::page_severities(),
        }
    }
}

mod defaults {
    pub fn page_severities() -> Vec<String> {
        vec!["page".into(), "critical".into()]
    }
    pub fn backoff_secs() -> f64 {
        1.0
    }
    pub fn backoff_factor() -> f64 {
        2.0
    }
    pub fn max_backoff_secs() -> f64 {
        60.0
    }
    pub fn interval_secs() -> f64 {
        10.0
    }
    pub fn get() -> String {
        "GET".into()
    }
    pub fn prometheus_timeout() -> f64 {
        10.0
    }
}

/// The default timeout of a step of the given kind.
pub fn default_timeout_secs(step: &Step) -> f64 {
    if step.wait.is_some() || step.approval.is_some() {
        3600.0
    } else {
        60.0
    }
}
