//! State rebuilt from the journal: at start, the runs to resume and the decide stage's fold (its
//! correlator from the last snapshot, guards and loop counts from recent runs); after a failed
//! commit, the fold again, so nothing counts that was not recorded.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use homeostat_core::decide::PlannedRun;
use homeostat_core::guard::{GuardState, LoopCounts};
use homeostat_core::incident::correlate::{Correlator, Settings};
use homeostat_core::journal::{Entry, Write};
use homeostat_core::pipeline::{Decider, CURSOR};
use homeostat_core::rule::Compiled;
use homeostat_core::runbook::{Input, Program};
use homeostat_core::Event;
use homeostat_store::{EventQuery, RunQuery, RunStatus, Store};

use crate::runs::Start;

/// Events read per page when replaying the journal.
const PAGE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] homeostat_store::Error),
    #[error("run `{run}`: its journaled runbook does not compile: {message}")]
    Plan { run: String, message: String },
}

/// The decide stage's fold as the journal has it at `now`.
pub async fn decider(
    store: &dyn Store,
    compiled: &Arc<Compiled>,
    now: DateTime<Utc>,
) -> Result<Decider, homeostat_store::Error> {
    let cursor = store.cursor(CURSOR).await?;
    let correlator = correlator(store, Arc::clone(&compiled.incidents), cursor).await?;
    let guards = guards(store, compiled, now).await?;
    let loops = loops(store, compiled, &correlator, now).await?;
    Ok(Decider::new(
        Arc::clone(compiled),
        guards,
        correlator,
        loops,
        now,
    ))
}

/// The correlator as of `cursor`: the last snapshot, plus the events after it up to the cursor.
/// Without a usable snapshot the whole journal is replayed, which numbers incidents as they were.
pub async fn correlator(
    store: &dyn Store,
    settings: Arc<Settings>,
    cursor: i64,
) -> Result<Correlator, homeostat_store::Error> {
    let (snapshot_seq, mut correlator) = match store.snapshot(CURSOR).await? {
        Some((seq, body)) => match Correlator::restore(Arc::clone(&settings), &body) {
            Some(correlator) => (seq, correlator),
            None => {
                tracing::warn!(
                    "the correlation snapshot is from another version; replaying the journal"
                );
                (0, Correlator::new(settings, 0))
            }
        },
        None => (0, Correlator::new(settings, 0)),
    };
    let mut after = snapshot_seq;
    while after < cursor {
        let page = store
            .events(&EventQuery {
                limit: PAGE,
                after_seq: Some(after),
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in page.iter().filter(|record| record.seq <= cursor) {
            correlator.observe(&record.event);
        }
    }
    Ok(correlator)
}

/// Loop counts as the journal has them: recent runs of each (rule, target) for incidents that are
/// not resolved. A restart forgets a resolution between two runs of a reopened incident, which can
/// only make loop detection stop one run sooner.
pub async fn loops(
    store: &dyn Store,
    compiled: &Compiled,
    correlator: &Correlator,
    now: DateTime<Utc>,
) -> Result<LoopCounts, homeostat_store::Error> {
    let horizon = compiled
        .rules
        .iter()
        .filter_map(|rule| {
            rule.guards
                .loop_limit
                .as_ref()
                .map(|limit| limit.window_secs)
        })
        .max()
        .unwrap_or(0);
    if horizon == 0 {
        return Ok(LoopCounts::default());
    }
    let runs = store
        .runs(&RunQuery {
            limit: 100_000,
            started_after: Some(now - chrono::Duration::seconds(horizon as i64)),
            ..Default::default()
        })
        .await?;
    Ok(LoopCounts::from_runs(runs.into_iter().filter_map(|run| {
        let incident = run.incident_id?;
        correlator
            .incident(incident)
            .is_some_and(|record| !record.is_resolved())
            .then_some((run.rule, run.target, run.started_at, incident))
    })))
}

/// Guard state as the journal has it: cooldown and rate windows from recent runs, and the locks
/// and concurrency slots of runs still in progress.
pub async fn guards(
    store: &dyn Store,
    compiled: &Compiled,
    now: DateTime<Utc>,
) -> Result<GuardState, homeostat_store::Error> {
    let horizon = compiled
        .rules
        .iter()
        .map(|rule| {
            rule.guards
                .cooldown_secs
                .max(rule.guards.max_runs.as_ref().map_or(0, |m| m.window_secs))
        })
        .max()
        .unwrap_or(0);
    let mut runs = store
        .runs(&RunQuery {
            limit: 100_000,
            started_after: Some(now - chrono::Duration::seconds(horizon as i64)),
            ..Default::default()
        })
        .await?;
    let recent: std::collections::HashSet<String> = runs.iter().map(|run| run.id.clone()).collect();
    runs.extend(
        store
            .runs(&RunQuery {
                limit: 100_000,
                status: Some(RunStatus::Running),
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|run| !recent.contains(&run.id)),
    );
    runs.sort_by_key(|run| run.started_at);
    let rules: HashMap<&str, _> = compiled
        .rules
        .iter()
        .map(|rule| (rule.name.as_str(), rule))
        .collect();
    let mut guards = GuardState::default();
    let default_guards = homeostat_core::config::Guards::default();
    for run in &runs {
        let rule_guards = rules
            .get(run.rule.as_str())
            .map_or(&default_guards, |rule| &rule.guards);
        // Dry runs were counted in the dry runs' own books, and are rebuilt there.
        guards.start(
            &run.rule,
            rule_guards,
            &run.target,
            &run.id,
            run.dry_run,
            run.started_at,
        );
        if run.status != RunStatus::Running {
            guards.finish(&run.rule, &run.id);
        }
    }
    Ok(guards)
}

/// Decides events committed but never decided (journals written before decisions were made in the
/// commit path, or by a tool), committing straight to the store before the writer starts; returns
/// the runs it planned, for the caller to dispatch as the writer would.
pub async fn catch_up(
    store: &dyn Store,
    decider: &mut Decider,
    clock: &homeostat_core::clock::SharedClock,
) -> Result<Vec<homeostat_core::pipeline::Dispatch>, homeostat_store::Error> {
    let mut cursor = store.cursor(CURSOR).await?;
    let mut dispatch = Vec::new();
    loop {
        let page = store
            .events(&EventQuery {
                limit: PAGE,
                after_seq: Some(cursor),
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last().map(|record| record.seq) else {
            return Ok(dispatch);
        };
        let events: Vec<&Event> = page.iter().map(|record| &record.event).collect();
        let mut step = decider.apply(&events, &[], clock.now());
        // The fold's own cursor write is for the events of its batch; these are stored already.
        step.writes
            .retain(|write| !matches!(write, Write::CursorAtLastEvent { .. }));
        step.writes.push(Write::Cursor {
            name: CURSOR.into(),
            seq: last,
        });
        store.commit(&step.writes).await?;
        dispatch.append(&mut step.dispatch);
        cursor = last;
    }
}

/// Every unfinished run, rebuilt by replaying its journaled inputs, to be resumed once the writer
/// runs. What happens to an effect that started and has no outcome is the machine's decision
/// (`Input::Recover`): run again if idempotent, otherwise stop in `needs_attention`, because
/// guessing could do a dangerous thing twice.
pub async fn runs(store: &dyn Store, compiled: &Compiled) -> Result<Vec<Start>, Error> {
    let unfinished = store
        .runs(&RunQuery {
            limit: 1_000_000,
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .await?;
    let mut resume = Vec::with_capacity(unfinished.len());
    for run in unfinished {
        let journal = store.journal_for_run(&run.id).await?;
        let replay: Vec<(Input, _)> = journal
            .iter()
            .filter_map(|entry| match &entry.entry {
                Entry::StepFinished { input, .. } | Entry::RunInput(input) => {
                    Some((input.clone(), entry.at))
                }
                _ => None,
            })
            .collect();
        let program = program_for(compiled, &run.plan)?;
        let event = match run.event_id.as_str() {
            "" => None,
            id => store.event(id).await?.map(|record| record.event),
        };
        // Anything journaled besides the plan means the first transition committed, so its effects
        // may have started: the run must recover, even with no input to replay.
        let resumed = journal
            .iter()
            .any(|entry| !matches!(entry.entry, Entry::RunStarted(_)));
        resume.push(Start {
            started_at: run.started_at,
            plan: run.plan,
            program,
            event,
            replay,
            resumed,
        });
    }
    Ok(resume)
}

/// The compiled program for a planned run: the config's own when its definition is unchanged,
/// otherwise compiled from the definition the run journaled.
fn program_for(compiled: &Compiled, plan: &PlannedRun) -> Result<Arc<Program>, Error> {
    let current = compiled
        .rules
        .iter()
        .map(|rule| &rule.runbook)
        .chain(compiled.runbooks.values())
        .find(|program| program.spec == plan.spec && program.library == plan.library);
    match current {
        Some(program) => Ok(Arc::clone(program)),
        None => Program::compile(&plan.spec, &plan.library)
            .map(Arc::new)
            .map_err(|error| Error::Plan {
                run: plan.id.clone(),
                message: error.to_string(),
            }),
    }
}
