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
    /// Times each throughput case is measured, each on a fresh engine and database; the median is
    /// the figure to report (commit latency on this machine varies from run to run).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Runs parked on an approval for the memory measure.
    #[arg(long, default_value_t = 10_000)]
    parked: usize,
    /// `full` (fsync per commit) or `normal` (durable against a process crash).
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    synchronous: Vec<String>,
    /// Measure only the parked runs (`runbooks` alone runs this in a child process): memory freed by the
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
    // The same steps, each rendering its message from the params, the run and the step before.
    text.push_str(
        "  - name: templated\n    params: {who: {type: string, default: bench}}\n    steps:\n",
    );
    for index in 0..steps {
        let before = if index == 0 {
            "none".to_string()
        } else {
            format!("{{{{ steps.s{}.status }}}}", index - 1)
        };
        text.push_str(&format!(
            "      - {{name: s{index}, action: log, with: {{message: \"{{{{ params.who }}}} in {{{{ run.id }}}}: step {index} after {before}\"}}}}\n"
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
    while handle.runs().live_count() > 0 {
        if began.elapsed() > limit {
            return Err(anyhow!(
                "{} runs still in progress after {limit:?}",
                handle.runs().live_count()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub async fn run(args: RunbookArgs) -> Result<()> {
    if args.parked_only {
        return parked(&args).await;
    }
    throughput(&args).await?;
    // Memory freed by the throughput measure would be reused by the parked runs and hide part of
    // their cost, so they are measured in a fresh process.
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "runbooks",
            "--parked-only",
            "--parked",
            &args.parked.to_string(),
        ])
        .status()
        .await
        .context("running the parked measure in a fresh process")?;
    if !status.success() {
        return Err(anyhow!("the parked measure failed: {status}"));
    }
    Ok(())
}

async fn throughput(args: &RunbookArgs) -> Result<()> {
    println!("synchronous  steps      runs  steps/run  durable steps/s  journal rows/s  elapsed s");
    // Every setting with constant inputs (the target's no-op steps), then the first with templates.
    let mut cases: Vec<(&str, &'static str)> = args
        .synchronous
        .iter()
        .map(|synchronous| (synchronous.as_str(), "noop"))
        .collect();
    if let Some(first) = args.synchronous.first() {
        cases.push((first.as_str(), "templated"));
    }
    for (synchronous, runbook) in cases {
        let mut rates = Vec::new();
        for _ in 0..args.repeat.max(1) {
            rates.push(throughput_once(args, synchronous, runbook).await?);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{synchronous:<11}  {runbook:<9}  median of {}: {:.0} durable steps/s",
            rates.len(),
            rates[rates.len() / 2]
        );
    }
    Ok(())
}

/// One measure on a fresh engine: prints its row and returns its durable steps per second.
async fn throughput_once(
    args: &RunbookArgs,
    synchronous: &str,
    runbook: &'static str,
) -> Result<f64> {
    {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let engine = engine(dir.path(), config(dir.path(), synchronous, args.steps)).await?;
        let handle = engine.handle.clone();
        let began = tokio::time::Instant::now();
        let mut starts = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let handle = handle.clone();
            starts.push(tokio::spawn(async move {
                handle
                    .start_runbook(runbook, &BTreeMap::new(), None, false, "bench")
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
            .store()
            .run(&ids[ids.len() - 1])
            .await?
            .context("the last run")?;
        let journal = handle.store().journal_for_run(&last.id).await?;
        if last.status != homeostat_store::RunStatus::Succeeded {
            return Err(anyhow!("run {} ended {:?}", last.id, last.status));
        }
        let steps = args.runs * args.steps;
        println!(
            "{synchronous:<11}  {runbook:<9}  {:<4}  {:<9}  {:>15.0}  {:>14.0}  {elapsed:>9.2}",
            args.runs,
            args.steps,
            steps as f64 / elapsed,
            (args.runs * journal.len()) as f64 / elapsed,
        );
        engine.abort();
        Ok(steps as f64 / elapsed)
    }
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
            .runs()
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
    let live = handle.runs().live_count();
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
