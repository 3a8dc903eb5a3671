//! `runbooks`: the runbook engine alone, in process. Durable steps per second through the engine
//! with no-op (`log`) steps, each step's intent and outcome committed to the journal; and the memory
//! each run costs while parked on an approval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use homeostat_core::clock::SystemClock;

#[derive(Args)]
pub struct RunbookArgs {
    /// Runs started for the throughput measure, all at once.
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// `log` steps per run.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Runs parked on an approval for the memory measure.
    #[arg(long, default_value_t = 10_000)]
    parked: usize,
    /// `full` (fsync per commit) or `normal` (durable against a process crash).
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    synchronous: Vec<String>,
    /// Measure only the parked runs, in a process that has run nothing else: memory freed by the
    /// throughput measure would otherwise be reused and hide part of the cost.
    #[arg(long)]
    parked_only: bool,
}

fn config(dir: &std::path::Path, synchronous: &str, steps: usize) -> String {
    let mut text = format!(
        "store: {{path: {:?}, synchronous: {synchronous}}}\nrunbooks:\n  - name: noop\n    steps:\n",
        dir.join("homeostat.db").display().to_string()
    );
    for index in 0..steps {
        text.push_str(&format!(
            "      - {{name: s{index}, action: log, with: {{message: \"step {index}\"}}}}\n"
        ));
    }
    text.push_str(
        "  - name: parked\n    steps:\n      - {name: ask, approval: {approvers: [oncall], message: \"go?\"}, timeout_secs: 86400}\n",
    );
    text
}

async fn engine(dir: &std::path::Path, text: String) -> Result<homeostat_engine::Engine> {
    let config = homeostat_core::config::parse(&[(dir.join("homeostat.yaml"), text)])
        .map_err(|diagnostics| anyhow!("{diagnostics}"))?;
    let compiled =
        homeostat_core::rule::compile(&config).map_err(|diagnostics| anyhow!("{diagnostics}"))?;
    Ok(homeostat_engine::start(compiled, Arc::new(SystemClock::default())).await?)
}

/// Resident memory of this process, from `/proc/self/statm`.
fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("unexpected /proc/self/statm: {statm}"))?
        .parse()?;
    Ok(pages * 4096)
}

async fn wait_idle(handle: &homeostat_engine::Handle, limit: Duration) -> Result<()> {
    let began = tokio::time::Instant::now();
    while handle.runs.live_count() > 0 {
        if began.elapsed() > limit {
            return Err(anyhow!(
                "{} runs still in progress after {limit:?}",
                handle.runs.live_count()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub async fn run(args: RunbookArgs) -> Result<()> {
    if !args.parked_only {
        throughput(&args).await?;
    }
    parked(&args).await
}

async fn throughput(args: &RunbookArgs) -> Result<()> {
    println!("synchronous  runs  steps/run  durable steps/s  journal rows/s  elapsed s");
    for synchronous in &args.synchronous {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let engine = engine(dir.path(), config(dir.path(), synchronous, args.steps)).await?;
        let handle = engine.handle.clone();
        let began = tokio::time::Instant::now();
        let mut starts = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let handle = handle.clone();
            starts.push(tokio::spawn(async move {
                handle
                    .start_runbook("noop", &BTreeMap::new(), None, false, "bench")
                    .await
                    .map(|plan| plan.id)
            }));
        }
        let mut ids = Vec::with_capacity(args.runs);
        for start in starts {
            ids.push(start.await?.map_err(|error| anyhow!("{error}"))?);
        }
        wait_idle(&handle, Duration::from_secs(600)).await?;
        let elapsed = began.elapsed().as_secs_f64();
        // Spot-check that the runs really ran to the end, with every step journaled.
        let last = handle
            .store
            .run(&ids[ids.len() - 1])
            .await?
            .context("the last run")?;
        let journal = handle.store.journal_for_run(&last.id).await?;
        if last.status != homeostat_store::RunStatus::Succeeded {
            return Err(anyhow!("run {} ended {:?}", last.id, last.status));
        }
        let steps = args.runs * args.steps;
        println!(
            "{synchronous:<11}  {:<4}  {:<9}  {:>15.0}  {:>14.0}  {elapsed:>9.2}",
            args.runs,
            args.steps,
            steps as f64 / elapsed,
            (args.runs * journal.len()) as f64 / elapsed,
        );
        engine.abort();
    }
    Ok(())
}

async fn parked(args: &RunbookArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let engine = engine(dir.path(), config(dir.path(), "normal", 1)).await?;
    let handle = engine.handle.clone();
    // Warm up allocator arenas and caches with a few parked runs first, so the measure is per run.
    for _ in 0..100 {
        handle
            .start_runbook("parked", &BTreeMap::new(), None, false, "bench")
            .await
            .map_err(|error| anyhow!("{error}"))?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes()?;
    let mut ids = Vec::with_capacity(args.parked);
    for chunk in 0..args.parked.div_ceil(500) {
        let mut starts = Vec::new();
        for _ in (chunk * 500)..((chunk + 1) * 500).min(args.parked) {
            let handle = handle.clone();
            starts.push(tokio::spawn(async move {
                handle
                    .start_runbook("parked", &BTreeMap::new(), None, false, "bench")
                    .await
                    .map(|plan| plan.id)
            }));
        }
        for start in starts {
            ids.push(start.await?.map_err(|error| anyhow!("{error}"))?);
        }
    }
    // Parked means waiting on the approval, not merely started.
    let began = tokio::time::Instant::now();
    while ids.iter().rev().take(50).any(|id| {
        handle
            .runs
            .pending_approvals(id)
            .is_none_or(|p| p.is_empty())
    }) {
        if began.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!("runs did not park on their approvals"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes()?;
    let live = handle.runs.live_count();
    println!();
    println!("parked runs  live  RSS before MB  RSS after MB  bytes per parked run");
    println!(
        "{:<11}  {live:<4}  {:>13.1}  {:>12.1}  {:>20.0}",
        args.parked,
        before as f64 / 1e6,
        after as f64 / 1e6,
        after.saturating_sub(before) as f64 / args.parked as f64
    );
    engine.abort();
    Ok(())
}
