//! Executes actions. Each action turns a [`homeostat_core::action::Action`] into an [`Outcome`]; none
//! of them panics or returns early without one, so a failed step is always recorded.

pub mod exec;
pub mod http;
pub mod kubernetes;
pub mod notify;

use std::collections::BTreeMap;
use std::time::Duration;

use homeostat_core::action::Action;
use homeostat_core::config::Notifier;
use serde::{Deserialize, Serialize};

/// Everything an action may need besides its inputs.
#[derive(Clone, Debug)]
pub struct Context {
    /// `run_id/step/attempt`: sent on as `Idempotency-Key` (HTTP) or used as PagerDuty's default dedup key.
    pub idempotency_key: String,
    pub run_id: String,
    pub timeout: Duration,
    /// Notifiers by name, from the config.
    pub notifiers: BTreeMap<String, Notifier>,
    pub http: reqwest::Client,
    /// The run is a dry run: an action that can ask its API for a dry run does (Kubernetes'
    /// `dryRun=All`); others are never executed in one.
    pub dry_run: bool,
    /// When the step started, for actions that stamp a time (a rollout restart).
    pub now: chrono::DateTime<chrono::Utc>,
    pub cluster: kubernetes::Cluster,
}

/// How an action ended: the status its outcome is journaled with.
pub use homeostat_core::journal::OutcomeStatus as Status;

/// What an action did. `output` is journaled, so it must never contain a secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// Action-specific results: exit code, stdout and stderr; HTTP status and body; and so on.
    pub output: serde_json::Value,
    /// Why it failed, in one line, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    pub fn succeeded(output: serde_json::Value) -> Self {
        Self {
            status: Status::Succeeded,
            output,
            error: None,
        }
    }

    pub fn failed(output: serde_json::Value, error: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            output,
            error: Some(error.into()),
        }
    }

    pub fn timed_out(output: serde_json::Value, timeout: Duration) -> Self {
        Self {
            status: Status::TimedOut,
            output,
            error: Some(format!("timed out after {:.1}s", timeout.as_secs_f64())),
        }
    }
}

/// Runs one action to completion or timeout.
pub async fn execute(action: &Action, context: &Context) -> Outcome {
    match action {
        Action::Exec(exec) => exec::run(exec, context).await,
        Action::HttpRequest(request) => http::run(request, context).await,
        Action::Notify(notify) => notify::run(notify, context).await,
        Action::Log(log) => {
            tracing::info!(run = %context.run_id, message = %log.message, "runbook log");
            Outcome::succeeded(serde_json::json!({ "message": log.message }))
        }
        Action::Kubernetes(action) => context.cluster.execute(action, context).await,
    }
}
