//! The actions a step can run, as data. The engine executes them; this module only defines and checks them.

pub mod kubernetes;

use std::collections::BTreeMap;

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::config::MaybeSecret;
pub use kubernetes::{KubeAction, KubeKind};

/// One action with its inputs, after templating.
///
/// Written and journaled as `{"action": NAME, "with": INPUTS}`, the shape of a step in the config;
/// [`Kind::name`] and [`KubeKind::name`] are the one place each name is spelled.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Runs a program. Never through a shell unless `shell: true` says so.
    Exec(Exec),
    /// Sends one HTTP request and checks the status.
    HttpRequest(HttpRequest),
    /// Sends a notification through a configured notifier.
    Notify(Notify),
    /// Records a message in the run's journal; touches nothing outside homeostat.
    Log(Log),
    /// One of the `kubernetes.*` actions, which `homeostat-kubernetes` executes.
    Kubernetes(KubeAction),
}

/// What an action is, without its inputs: what a step's `action:` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Exec,
    HttpRequest,
    Notify,
    Log,
    Kubernetes(KubeKind),
}

impl Kind {
    /// Every action, in the order hints list them.
    pub const ALL: [Kind; 4 + KubeKind::ALL.len()] = {
        let mut all = [Kind::Exec; 4 + KubeKind::ALL.len()];
        all[1] = Kind::HttpRequest;
        all[2] = Kind::Notify;
        all[3] = Kind::Log;
        let mut index = 0;
        while index < KubeKind::ALL.len() {
            all[4 + index] = Kind::Kubernetes(KubeKind::ALL[index]);
            index += 1;
        }
        all
    };

    /// The name `action:` gives it.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::HttpRequest => "http_request",
            Kind::Notify => "notify",
            Kind::Log => "log",
            Kind::Kubernetes(kind) => kind.name(),
        }
    }

    /// The action `action:` names, if any.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Kubernetes actions run in dry runs too, with the API server's `dryRun=All`, so a dry run
    /// shows what the server would have done (and whether it would have refused).
    pub const fn server_dry_run(self) -> bool {
        matches!(self, Kind::Kubernetes(_))
    }

    /// Whether it is safe to run again whatever an interrupted attempt did, because it changes
    /// nothing outside homeostat (`log`) or only reads (`kubernetes.wait_rollout`). After a crash,
    /// a step running one starts again on its own, as if it said `idempotent: true`, instead of
    /// stopping its run in `needs_attention`.
    pub const fn idempotent_by_nature(self) -> bool {
        match self {
            Kind::Log => true,
            Kind::Exec | Kind::HttpRequest | Kind::Notify => false,
            Kind::Kubernetes(kind) => kind.only_reads(),
        }
    }

    /// The inputs that are URLs, whose templates encode the values they interpolate
    /// (`crate::template::url`).
    pub const fn url_inputs(self) -> &'static [&'static str] {
        match self {
            Kind::HttpRequest => &["with.url"],
            Kind::Exec | Kind::Notify | Kind::Log | Kind::Kubernetes(_) => &[],
        }
    }
}

impl Action {
    pub fn kind(&self) -> Kind {
        match self {
            Action::Exec(_) => Kind::Exec,
            Action::HttpRequest(_) => Kind::HttpRequest,
            Action::Notify(_) => Kind::Notify,
            Action::Log(_) => Kind::Log,
            Action::Kubernetes(action) => Kind::Kubernetes(action.kind()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether a dry run executes this action, as a server-side dry run ([`Kind::server_dry_run`]).
    pub fn server_dry_run(&self) -> bool {
        self.kind().server_dry_run()
    }

    /// Reads the inputs of the action `kind` names, without checking them further.
    fn from_inputs(kind: Kind, with: Value) -> Result<Action, Error> {
        Ok(match kind {
            Kind::Exec => Action::Exec(inputs(with)?),
            Kind::HttpRequest => Action::HttpRequest(inputs(with)?),
            Kind::Notify => Action::Notify(inputs(with)?),
            Kind::Log => Action::Log(inputs(with)?),
            Kind::Kubernetes(kind) => Action::Kubernetes(KubeAction::from_inputs(kind, with)?),
        })
    }
}

/// [`Kind::idempotent_by_nature`], for a step's `action:`.
pub fn idempotent_by_nature(action: &str) -> bool {
    Kind::from_name(action).is_some_and(Kind::idempotent_by_nature)
}

/// [`Kind::url_inputs`], for a step's `action:`.
pub fn url_inputs(action: &str) -> &'static [&'static str] {
    Kind::from_name(action).map_or(&[], Kind::url_inputs)
}

/// The names `action:` accepts, for error hints.
pub const NAMES: &[&str] = &{
    let mut names = [""; Kind::ALL.len()];
    let mut index = 0;
    while index < Kind::ALL.len() {
        names[index] = Kind::ALL[index].name();
        index += 1;
    }
    names
};

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Action::Exec(with) => tagged(serializer, self.name(), with),
            Action::HttpRequest(with) => tagged(serializer, self.name(), with),
            Action::Notify(with) => tagged(serializer, self.name(), with),
            Action::Log(with) => tagged(serializer, self.name(), with),
            Action::Kubernetes(action) => action.serialize(serializer),
        }
    }
}

/// `{"action": NAME, "with": INPUTS}`.
fn tagged<S: Serializer>(
    serializer: S,
    name: &'static str,
    with: &impl Serialize,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut state = serializer.serialize_struct("Action", 2)?;
    state.serialize_field("action", name)?;
    state.serialize_field("with", with)?;
    state.end()
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tagged {
            action: String,
            #[serde(default)]
            with: Value,
        }
        let Tagged { action, with } = Tagged::deserialize(deserializer)?;
        let kind =
            Kind::from_name(&action).ok_or_else(|| de::Error::unknown_variant(&action, NAMES))?;
        Action::from_inputs(kind, with)
            .map_err(|error| de::Error::custom(format!("{}: {}", error.field, error.message)))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The program and its arguments. With `shell: true`, exactly one string run by `/bin/sh -c`.
    pub command: Vec<String>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, MaybeSecret>,
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Captured stdout and stderr are each cut to this many bytes.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
}

fn default_max_output_bytes() -> usize {
    64 * 1024
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, MaybeSecret>,
    /// A raw body; use `json` for a JSON one.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Statuses that count as success; any 2xx when empty.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The name of a configured notifier.
    pub notifier: String,
    pub summary: String,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// `critical`, `error`, `warning` or `info` (PagerDuty's severities).
    #[serde(default = "default_severity")]
    pub severity: String,
    /// For PagerDuty: `trigger`, `acknowledge` or `resolve`.
    #[serde(default)]
    pub event_action: Option<String>,
    /// For PagerDuty: the incident key that links trigger and resolve. The run's key by default.
    #[serde(default)]
    pub dedup_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub message: String,
}

fn default_severity() -> String {
    "error".into()
}

/// A problem with a step's inputs, with the field path inside `with`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct Error {
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Parses an action name and its `with` inputs into an [`Action`], checking what can be checked
/// without IO.
pub fn parse(action: &str, with: &Value) -> Result<Action, Error> {
    let Some(kind) = Kind::from_name(action) else {
        return Err(Error {
            field: "action".into(),
            message: format!("unknown action `{action}`"),
            hint: Some(format!(
                "{}use one of {}",
                crate::check::words::did_you_mean(action, NAMES.iter().copied()),
                NAMES.join(", ")
            )),
        });
    };
    let with = if with.is_null() {
        serde_json::json!({})
    } else {
        with.clone()
    };
    let parsed = Action::from_inputs(kind, with)?;
    validate(&parsed)?;
    Ok(parsed)
}

/// Deserializes an action's `with` into its input type. The error's field is the path under
/// `with`, which ends in an unknown field's name when that is the problem.
fn inputs<T: DeserializeOwned>(with: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(with).map_err(|error| {
        let field = match error.path().to_string().as_str() {
            "." => "with".to_string(),
            path => format!("with.{path}"),
        };
        let message = error.into_inner().to_string();
        // serde names the fields it expected: the nearest is likely what was meant.
        let hint = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .and_then(|(unknown, rest)| {
                let expected = rest.split('`').skip(1).step_by(2);
                crate::check::words::nearest(unknown, expected)
            })
            .map(|near| format!("did you mean `{near}`?"));
        Error {
            field,
            message,
            hint,
        }
    })
}

/// The checks of an action's inputs that their types cannot make.
fn validate(action: &Action) -> Result<(), Error> {
    match action {
        Action::Exec(exec) => validate_exec(exec),
        Action::HttpRequest(request) => validate_http_request(request),
        Action::Notify(notify) => validate_notify(notify),
        Action::Log(_) => Ok(()),
        Action::Kubernetes(action) => action.validate(),
    }
}

/// A failed check of `field` under the step, with the fix.
fn invalid(field: &str, message: impl Into<String>, hint: &str) -> Result<(), Error> {
    Err(Error {
        field: field.into(),
        message: message.into(),
        hint: Some(hint.into()),
    })
}

fn validate_exec(exec: &Exec) -> Result<(), Error> {
    if exec.command.is_empty() || exec.command[0].is_empty() {
        return invalid(
            "with.command",
            "the command is empty",
            "give the program and its arguments: `[systemctl, restart, api]`",
        );
    }
    if exec.shell && exec.command.len() != 1 {
        return invalid(
            "with.command",
            "with `shell: true` the command must be one string",
            "write `command: [\"cmd | other\"]`, or drop `shell` and list the arguments",
        );
    }
    Ok(())
}

fn validate_http_request(request: &HttpRequest) -> Result<(), Error> {
    if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&request.method.as_str()) {
        return invalid(
            "with.method",
            format!("unknown method `{}`", request.method),
            "use GET, POST, PUT, PATCH, DELETE or HEAD",
        );
    }
    if request.body.is_some() && request.json.is_some() {
        return invalid(
            "with.body",
            "both `body` and `json` are set",
            "keep one of them",
        );
    }
    Ok(())
}

fn validate_notify(notify: &Notify) -> Result<(), Error> {
    if notify
        .event_action
        .as_deref()
        .is_some_and(|a| !["trigger", "acknowledge", "resolve"].contains(&a))
    {
        return invalid(
            "with.event_action",
            "unknown event action",
            "use trigger, acknowledge or resolve",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_action_and_names_bad_fields() {
        assert!(matches!(
            parse("exec", &json!({"command": ["true"]})),
            Ok(Action::Exec(_))
        ));
        assert!(matches!(
            parse("http_request", &json!({"url": "http://x"})),
            Ok(Action::HttpRequest(_))
        ));
        assert!(matches!(
            parse("notify", &json!({"notifier": "n", "summary": "s"})),
            Ok(Action::Notify(_))
        ));
        assert_eq!(
            parse("exec", &json!({"comand": ["x"]})).unwrap_err().field,
            "with.comand"
        );
        assert_eq!(
            parse("exec", &json!({"command": []})).unwrap_err().field,
            "with.command"
        );
        assert_eq!(
            parse("exec", &json!({"command": ["a", "b"], "shell": true}))
                .unwrap_err()
                .field,
            "with.command"
        );
        assert_eq!(parse("reboot", &json!({})).unwrap_err().field, "action");
        assert_eq!(
            parse("http_request", &json!({"url": "u", "method": "FETCH"}))
                .unwrap_err()
                .field,
            "with.method"
        );
    }

    #[test]
    fn every_name_reads_back_as_its_action() {
        let mut seen = std::collections::HashSet::new();
        for kind in Kind::ALL {
            assert!(
                seen.insert(kind.name()),
                "`{}` is listed twice",
                kind.name()
            );
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert_eq!(
                kind.server_dry_run(),
                kind.name().starts_with("kubernetes."),
                "{kind:?}"
            );
        }
        assert_eq!(NAMES.len(), Kind::ALL.len());
        for kind in KubeKind::ALL {
            assert_eq!(KubeKind::from_name(kind.name()), Some(kind));
            assert_eq!(Kind::from_name(kind.name()), Some(Kind::Kubernetes(kind)));
        }
        assert_eq!(Kind::from_name("kubernetes.reboot"), None);
    }

    /// A run's plan as the journal holds it (`run_started`), written before the Kubernetes actions
    /// were nested under `Action::Kubernetes`, and actions as effects wrote them: both still read.
    #[test]
    fn journaled_plans_and_actions_from_before_still_read() {
        let plan = r#"{"id":"0195f7c2-6c1e-7b3a-9d1e-2f4a5b6c7d8e","rule":"drain-bad-node","runbook":"drain-node","target":"node-1","event_id":"0195f7c2-6c1d-7000-8000-000000000001","dry_run":false,"incident":4,"params":{"node":"node-1"},"spec":{"name":"drain-node","params":{"node":{"type":"string","required":true}},"steps":[{"name":"scale","action":"kubernetes.scale","with":{"max":10,"name":"checkout","namespace":"shop","replicas":6},"on_failure":"rollback","idempotent":false},{"name":"drain","action":"kubernetes.drain","with":{"node":"{{ params.node }}","timeout_secs":120},"timeout_secs":180.0,"on_failure":"rollback","idempotent":false}]}}"#;
        let written = plan;
        let plan: crate::decide::PlannedRun = serde_json::from_str(plan).expect("the plan reads");
        assert_eq!(serde_json::to_string(&plan).unwrap(), written);
        let program =
            crate::runbook::Program::compile(&plan.spec, &plan.library).expect("the plan compiles");
        assert!(program.asks_server_dry_run());
        let step = &plan.spec.steps[0];
        let action = parse(step.action.as_deref().unwrap(), &step.with).expect("the step parses");
        let Action::Kubernetes(KubeAction::Scale(scale)) = &action else {
            panic!("not a scale: {action:?}");
        };
        assert_eq!((scale.replicas.value(), scale.max.value()), (Ok(6), Ok(10)));
        assert_eq!(
            crate::action::kubernetes::declared_rollback(action.name()).map(|(name, _)| name),
            Some("kubernetes.scale")
        );

        for written in [
            r#"{"action":"kubernetes.scale","with":{"kind":"Deployment","namespace":"shop","name":"checkout","replicas":6,"min":1,"max":10}}"#,
            r#"{"action":"kubernetes.drain","with":{"node":"node-1","timeout_secs":120,"grace_period_secs":null,"ignore_daemonsets":true,"delete_emptydir_data":false,"force":false}}"#,
            r#"{"action":"kubernetes.patch","with":{"kind":"Deployment","namespace":null,"name":"web","labels":{"a":"1","b":null},"annotations":{},"env":{},"container":null}}"#,
            r#"{"action":"kubernetes.cordon","with":{"node":"n"}}"#,
            r#"{"action":"exec","with":{"command":["true"],"shell":false,"env":{},"working_dir":null,"max_output_bytes":65536}}"#,
        ] {
            let action: Action = serde_json::from_str(written).expect(written);
            assert_eq!(serde_json::to_string(&action).unwrap(), written);
        }
        let unknown = serde_json::from_str::<Action>(r#"{"action":"kubernetes.reboot","with":{}}"#);
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown variant `kubernetes.reboot`"));
    }
}
