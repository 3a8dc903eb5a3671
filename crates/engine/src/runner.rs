//! Executes planned runs step by step: each step's intent is committed before it runs and its outcome after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use homeostat_core::clock::SharedClock;
use homeostat_core::config::Notifier;
use homeostat_core::decide::PlannedRun;
use homeostat_store::writer::Writer;
use homeostat_store::{RunStatus, Write};
use tokio::sync::mpsc;

use crate::action::{self, Outcome, Status};
use crate::metrics::Metrics;

/// A run that ended, reported back to the decider so it can release the run's guards.
#[derive(Debug)]
pub struct Finished {
    pub rule: String,
    pub run_id: String,
}

#[derive(Clone)]
pub struct Runner {
    pub writer: Writer,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub notifiers: BTreeMap<String, Notifier>,
    pub http: reqwest::Client,
    pub finished: mpsc::UnboundedSender<Finished>,
}

impl Runner {
    /// Starts a run in its own task, from step `from` (0 for a new run), attempt numbers from `attempt`.
    pub fn spawn(
        &self,
        run: PlannedRun,
        from: usize,
        first_attempt: u32,
    ) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move { runner.execute(run, from, first_attempt).await })
    }

    async fn execute(&self, run: PlannedRun, from: usize, first_attempt: u32) {
        self.metrics.runs_active.inc();
        let result = self.steps(&run, from, first_attempt).await;
        let (status, error) = match result {
            Ok(()) if run.dry_run => (RunStatus::DryRun, None),
            Ok(()) => (RunStatus::Succeeded, None),
            Err(StepFailure::Failed(message)) => (RunStatus::Failed, Some(message)),
            Err(StepFailure::Journal(message)) => {
                // The journal is unreachable: nothing more can be recorded, so stop here. The run stays
                // `running` in the store and the next start resolves it through recovery.
                tracing::error!(run = %run.id, %message, "cannot journal run progress; stopping the run");
                self.metrics.runs_active.dec();
                let _ = self.finished.send(Finished {
                    rule: run.rule.clone(),
                    run_id: run.id.clone(),
                });
                return;
            }
        };
        let at = self.clock.now();
        if let Err(journal_error) = self
            .writer
            .submit(vec![Write::RunFinished {
                run_id: run.id.clone(),
                status,
                error: error.clone(),
                at,
            }])
            .await
        {
            tracing::error!(run = %run.id, %journal_error, "cannot journal the end of a run");
        }
        tracing::info!(run = %run.id, rule = %run.rule, target = %run.target, status = status.as_str(), error = error.as_deref().unwrap_or(""), "run finished");
        self.metrics.runs_active.dec();
        let _ = self.finished.send(Finished {
            rule: run.rule.clone(),
            run_id: run.id.clone(),
        });
    }

    async fn steps(
        &self,
        run: &PlannedRun,
        from: usize,
        first_attempt: u32,
    ) -> Result<(), StepFailure> {
        for (index, step) in run.steps.iter().enumerate().skip(from) {
            let attempt = if index == from { first_attempt } else { 1 };
            let started = self.clock.now();
            self.writer
                .submit(vec![Write::StepStarted {
                    run_id: run.id.clone(),
                    step: index,
                    name: step.name.clone(),
                    attempt,
                    at: started,
                }])
                .await
                .map_err(|error| StepFailure::Journal(error.to_string()))?;
            let (status, output, error) = if run.dry_run {
                let rendered = serde_json::to_value(&step.action).unwrap_or_default();
                (
                    "dry_run".to_string(),
                    serde_json::json!({ "would_run": rendered }),
                    None,
                )
            } else {
                let outcome = self.execute_step(run, index, attempt).await;
                (
                    outcome.status.as_str().to_string(),
                    outcome.output,
                    outcome.error,
                )
            };
            let failed = !(status == "succeeded" || status == "dry_run");
            self.writer
                .submit(vec![Write::StepFinished {
                    run_id: run.id.clone(),
                    step: index,
                    name: step.name.clone(),
                    attempt,
                    status: status.clone(),
                    output,
                    error: error.clone(),
                    at: self.clock.now(),
                }])
                .await
                .map_err(|journal_error| StepFailure::Journal(journal_error.to_string()))?;
            if failed {
                return Err(StepFailure::Failed(format!(
                    "step {} `{}` {status}: {}",
                    index + 1,
                    step.name,
                    error.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// Runs one step's action in its own task, so a panic becomes a failed step, not a dead daemon.
    async fn execute_step(&self, run: &PlannedRun, index: usize, attempt: u32) -> Outcome {
        let step = &run.steps[index];
        let timeout = Duration::from_secs_f64(step.timeout_secs);
        let context = action::Context {
            idempotency_key: format!("{}/{}/{}", run.id, index, attempt),
            run_id: run.id.clone(),
            timeout,
            notifiers: self.notifiers.clone(),
            http: self.http.clone(),
        };
        let action = step.action.clone();
        let name = action.name();
        let began = self.clock.monotonic();
        let task = tokio::spawn(async move { action::execute(&action, &context).await });
        // Actions enforce their own timeout; this outer one only guards against an action that does not.
        let outcome = match tokio::time::timeout(timeout + Duration::from_secs(5), task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join_error)) => Outcome::failed(
                serde_json::Value::Null,
                format!("the action panicked: {join_error}"),
            ),
            Err(_) => Outcome::timed_out(serde_json::Value::Null, timeout),
        };
        let elapsed = self.clock.monotonic().saturating_sub(began);
        self.metrics
            .actions
            .get_or_create(&vec![
                ("action", name.to_string()),
                ("outcome", outcome.status.as_str().to_string()),
            ])
            .inc();
        self.metrics
            .action_duration
            .get_or_create(&vec![("action", name.to_string())])
            .observe(elapsed.as_secs_f64());
        if outcome.status != Status::Succeeded {
            tracing::warn!(run = %run.id, step = %step.name, status = outcome.status.as_str(), error = outcome.error.as_deref().unwrap_or(""), "step did not succeed");
        }
        outcome
    }
}

enum StepFailure {
    Failed(String),
    Journal(String),
}
