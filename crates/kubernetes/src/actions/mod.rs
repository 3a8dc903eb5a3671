//! The Kubernetes remediation actions: what `kubernetes.*` steps do against the API server.
//!
//! [`execute`] runs one [`KubeAction`] and answers its outputs: a JSON object naming the object
//! (`kind`, `namespace`, `name` or `node`), whether anything changed (`changed`, which decides
//! whether the engine registers the declared rollback), `dry_run`, and `before` / `after`, the
//! few fields the action touched, journaled as the record of the change. The outputs also hold
//! what the rollbacks declared in `homeostat_core::action::kubernetes::declared_rollback` read
//! (`previous_replicas`, `from_revision`, `undo`, ...).
//!
//! In a dry run every write carries `dryRun=All`, so the server validates it, runs admission and
//! answers what it would have stored, and stores nothing; reads behave as usual.

mod api;
mod node;
mod patch;
mod pod;
mod rollout;
mod scale;
mod selector;

use std::future::Future;
use std::time::Duration;

use homeostat_core::action::kubernetes::Int;
use homeostat_core::action::KubeAction;
use serde_json::{json, Map, Value};

use api::{Api, CallError, Object};

/// What a step gives every Kubernetes action.
#[derive(Clone, Debug)]
pub struct Context {
    /// Send `dryRun=All` on every mutating request; read-only steps behave normally.
    pub dry_run: bool,
    /// The step's timeout: long actions (drain, wait_rollout) end with a clear failure a little
    /// before it, so the failure says where they stood instead of the engine's bare timeout.
    pub timeout: Duration,
    /// The time to stamp (`restartedAt`): the actions never read the clock themselves.
    pub now: chrono::DateTime<chrono::Utc>,
    /// Sent as `fieldManager` on writes: `homeostat`.
    pub field_manager: String,
}

/// A failed action: why, and what it had done by then (pods evicted before a timeout, a node it
/// cordoned), so the journal holds it and a rollback can undo it.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub message: String,
    pub output: Value,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Runs one Kubernetes action and answers its outputs.
pub async fn execute(
    client: &kube::Client,
    action: &KubeAction,
    context: &Context,
) -> Result<Value, Failure> {
    let api = Api {
        client,
        dry_run: context.dry_run,
        field_manager: &context.field_manager,
    };
    match action {
        KubeAction::RolloutRestart(input) => rollout::restart(&api, context, input).await,
        KubeAction::Scale(input) => scale::scale(&api, input).await,
        KubeAction::RolloutUndo(input) => rollout::undo(&api, input).await,
        KubeAction::DeletePod(input) => pod::delete(&api, input).await,
        KubeAction::Cordon(input) => node::cordon(&api, &input.node, true).await,
        KubeAction::Uncordon(input) => node::cordon(&api, &input.node, false).await,
        KubeAction::Drain(input) => node::drain(&api, context, input).await,
        KubeAction::Patch(input) => patch::patch(&api, input).await,
        KubeAction::WaitRollout(input) => rollout::wait(&api, context, input).await,
    }
}

/// Why an action stopped: a call the server refused, or a message of the action's own.
#[derive(Debug)]
pub(crate) enum Error {
    Call(Box<CallError>),
    Message(String),
}

impl From<CallError> for Error {
    fn from(error: CallError) -> Self {
        Error::Call(Box::new(error))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Message(message)
    }
}

impl Error {
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Call(error) if error.is_conflict())
    }

    pub fn message(&self) -> String {
        match self {
            Error::Call(error) => error.to_string(),
            Error::Message(message) => message.clone(),
        }
    }
}

/// How many times a read-modify-write is tried when the object changes under it (409).
const CONFLICT_ATTEMPTS: usize = 5;

/// Runs `attempt` (which reads, decides and writes) again while the write meets a conflict:
/// another writer changed the object since it was read, so what was decided from the read may
/// be wrong and must be decided again from a fresh one.
pub(crate) async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if error.is_conflict() && tries < CONFLICT_ATTEMPTS => {
                tracing::debug!(tries, "conflict on a kubernetes write; reading again");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// The namespace an input names, or the client's default one when absent or empty (a
/// rollback's template renders a cluster-scoped object's namespace as "").
pub(crate) fn namespace_of(api: &Api<'_>, namespace: &Option<String>) -> String {
    match namespace.as_deref().map(str::trim) {
        Some(namespace) if !namespace.is_empty() => namespace.to_string(),
        _ => api.client.default_namespace().to_string(),
    }
}

/// When a long action (drain, wait_rollout) must stop, measured from its start on tokio's clock.
/// After `soft` it starts nothing new (no retry, no further waiting); a call sent by then may
/// answer until `hard`, so the last look at the deadline is not cut off. Both fall before the
/// step's timeout, less a margin (a tenth, at most 2 s), so the action fails with its own
/// account of where it stands instead of being cancelled by the engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    pub started: tokio::time::Instant,
    pub soft: tokio::time::Instant,
    pub hard: tokio::time::Instant,
}

impl Deadline {
    /// From now, for `limit` (the action's own, such as a drain's `timeout_secs`) or the
    /// step's timeout, whichever ends first.
    pub fn new(context: &Context, limit: Option<Duration>) -> Deadline {
        let margin = (context.timeout / 10).min(Duration::from_secs(2));
        let budget = context.timeout.saturating_sub(margin);
        let limit = limit.map_or(budget, |limit| limit.min(budget));
        let hard = (limit + Duration::from_secs(1)).min(context.timeout.saturating_sub(margin / 2));
        let started = tokio::time::Instant::now();
        Deadline {
            started,
            soft: started + limit,
            hard: started + hard.max(limit),
        }
    }

    /// When a call sent now must have answered: by `soft`, or (for a call sent close to or at
    /// it, the last look) up to a second later, never past `hard`.
    pub fn for_call(&self) -> tokio::time::Instant {
        (tokio::time::Instant::now() + Duration::from_secs(1))
            .max(self.soft)
            .min(self.hard)
    }

    /// How long the action may take.
    pub fn limit(&self) -> Duration {
        self.soft - self.started
    }

    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.started)
    }

    pub fn passed(&self) -> bool {
        tokio::time::Instant::now() >= self.soft
    }

    /// What is left until `soft`.
    pub fn left(&self) -> Duration {
        self.soft
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// The outputs every action starts from: the object and the dry-run flag.
pub(crate) fn identity(object: &Object, dry_run: bool) -> Map<String, Value> {
    let mut output = Map::new();
    output.insert("kind".into(), json!(object.kind.kind));
    output.insert("namespace".into(), json!(object.namespace_output()));
    output.insert("name".into(), json!(object.name));
    output.insert("changed".into(), json!(false));
    output.insert("dry_run".into(), json!(dry_run));
    output
}

/// A failure whose outputs say only which object and that nothing changed.
pub(crate) fn failed(object: &Object, dry_run: bool, error: impl Into<Error>) -> Failure {
    Failure {
        message: error.into().message(),
        output: Value::Object(identity(object, dry_run)),
    }
}

/// An input number, or a failure naming the input that was not rendered to one.
pub(crate) fn number(field: &str, value: &Int) -> Result<i64, String> {
    value.value().map_err(|error| format!("`{field}`: {error}"))
}

/// A string field of an object, by JSON pointer.
pub(crate) fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// An integer field of an object, by JSON pointer.
pub(crate) fn integer(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

/// `metadata.resourceVersion` and `metadata.generation`, which every `before` and `after`
/// carries so the journal ties the change to a version of the object.
pub(crate) fn versions(object: &Value) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(version) = text(object, "/metadata/resourceVersion") {
        fields.insert("resourceVersion".into(), json!(version));
    }
    if let Some(generation) = integer(object, "/metadata/generation") {
        fields.insert("generation".into(), json!(generation));
    }
    fields
}

/// `1 pod` / `2 pods`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
