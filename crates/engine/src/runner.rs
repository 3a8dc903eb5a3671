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

/// A dry run executes nothing, so there is no intent to commit ahead of an effect: every step's
/// rendered inputs are recorded at once, and the decider commits them with the decision itself.
pub fn dry_run_steps(
    run: &PlannedRun,
    from: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<Write> {
    let mut writes = Vec::with_capacity(2 * run.steps.len());
    for (index, step) in run.steps.iter().enumerate().skip(from) {
        writes.push(Write::StepStarted {
            run_id: run.id.clone(),
            step: index,
            name: step.name.clone(),
            attempt: 1,
            at,
        });
        writes.push(Write::StepFinished {
            run_id: run.id.clone(),
            step: index,
            name: step.name.clone(),
            attempt: 1,
            status: "dry_run".into(),
            output: serde_json::json!({ "would_run": step.action }),
            error: None,
            at,
        });
    }
    writes
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
        let result = if run.dry_run {
            Ok((
                dry_run_steps(&run, from, self.clock.now()),
                RunStatus::DryRun,
                None,
            ))
        } else {
            self.steps(&run, from, first_attempt).await
        };
        match result {
            Ok((mut writes, status, error)) => {
                writes.push(Write::RunFinished {
                    run_id: run.id.clone(),
                    status,
                    error: error.clone(),
                    at: self.clock.now(),
                });
                if let Err(journal_error) = self.writer.submit(writes).await {
                    tracing::error!(run = %run.id, %journal_error, "cannot journal the end of a run");
                }
                tracing::info!(
                    run = %run.id,
                    rule = %run.rule,
                    target = %run.target,
                    status = status.as_str(),
                    error = error.as_deref().unwrap_or(""),
                    "run finished"
                );
            }
            Err(message) => {
                // The journal is unreachable: nothing more can be recorded, so stop here. The run stays
                // `running` in the store and the next start resolves it through recovery.
                tracing::error!(run = %run.id, %message, "cannot journal run progress; stopping the run");
            }
        }
        self.metrics.runs_active.dec();
        let _ = self.finished.send(Finished {
            rule: run.rule.clone(),
            run_id: run.id.clone(),
        });
    }

    /// Executes the steps. Each step's intent is committed before it runs; its outcome is committed
    /// with the next step's intent, or returned to be committed with the run's end.
    async fn steps(
        &self,
        run: &PlannedRun,
        from: usize,
        first_attempt: u32,
    ) -> Result<(Vec<Write>, RunStatus, Option<String>), String> {
        let mut pending = Vec::new();
        for (index, step) in run.steps.iter().enumerate().skip(from) {
            let attempt = if index == from { first_attempt } else { 1 };
            pending.push(Write::StepStarted {
                run_id: run.id.clone(),
                step: index,
                name: step.name.clone(),
                attempt,
                at: self.clock.now(),
            });
            self.writer
                .submit(std::mem::take(&mut pending))
                .await
                .map_err(|error| error.to_string())?;
            let outcome = self.execute_step(run, index, attempt).await;
            let failed = outcome.status != Status::Succeeded;
            let error = outcome.error.clone();
            pending.push(Write::StepFinished {
                run_id: run.id.clone(),
                step: index,
                name: step.name.clone(),
                attempt,
                status: outcome.status.as_str().to_string(),
                output: outcome.output,
                error: outcome.error,
                at: self.clock.now(),
            });
            if failed {
                let message = format!(
                    "step {} `{}` {}: {}",
                    index + 1,
                    step.name,
                    outcome.status.as_str(),
                    error.unwrap_or_default()
                );
                return Ok((pending, RunStatus::Failed, Some(message)));
            }
        }
        Ok((pending, RunStatus::Succeeded, None))
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
