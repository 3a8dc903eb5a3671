//! `pipeline`: the engine alone, in this process, without HTTP: events parsed from Alertmanager
//! payloads go through `Handle::ingest`, the group-commit writer, the decide stage and (with
//! `--with-rule`) a dispatched dry run. It shows the engine's own ceiling, apart from the HTTP
//! server and the load generator that share the machine in `ingest` and `latency`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use homeostat_core::clock::{Clock, SystemClock};

#[derive(Args)]
pub struct PipelineArgs {
    /// Alerts per ingest call; several sizes run one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batch: Vec<usize>,
    /// Concurrent callers, each waiting for its commit before the next call (a closed loop).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// `full` (fsync per commit) or `normal`.
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Add the dispatching dry-run rule of `latency`, so every event also leads to a run.
    #[arg(long)]
    with_rule: bool,
    /// `sqlite`, or `postgres`: a PostgreSQL server started for the run from the Debian package
    /// (`/usr/lib/postgresql/*/bin`), with its default durability (`fsync`, `synchronous_commit`
    /// on), on 127.0.0.1 with its own data directory, stopped after.
    #[arg(long, default_value = "sqlite")]
    store: String,
}

const RULE: &str = r#"rules:
  - name: bench-dispatch
    match: ['alertname="Bench"']
    target: "{{ labels.instance }}"
    guards: {dry_run: true, lock: false}
    steps:
      - {name: noop, action: exec, with: {command: ["true"]}}
"#;

pub async fn run(args: PipelineArgs) -> Result<()> {
    println!("store     batch  connections  synchronous  rule   events/s  commits/s  mean commit ms  mean dispatch ms");
    for batch in args.batch.iter().copied() {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        // Held until the batch size is measured: dropping it stops the server.
        let mut _server = None;
        let mut text = match args.store.as_str() {
            "sqlite" => format!(
                "store: {{path: {:?}, synchronous: {}}}\n",
                dir.path().join("homeostat.db").display().to_string(),
                args.synchronous
            ),
            "postgres" => {
                let (server, block) = crate::server::postgres_store(dir.path()).await?;
                _server = Some(server);
                block
            }
            other => return Err(anyhow!("`--store {other}`: use `sqlite` or `postgres`")),
        };
        if args.with_rule {
            text.push_str(RULE);
        }
        let config = homeostat_core::config::parse(&[(dir.path().join("homeostat.yaml"), text)])
            .map_err(|diagnostics| anyhow!("{diagnostics}"))?;
        let compiled = homeostat_core::rule::compile(&config)
            .map_err(|diagnostics| anyhow!("{diagnostics}"))?;
        let clock = Arc::new(SystemClock::default());
        let engine = homeostat_engine::start(compiled, clock.clone()).await?;
        let handle = engine.handle.clone();
        let counter = Arc::new(AtomicUsize::new(0));
        let began = clock.monotonic();
        let duration = Duration::from_secs(args.duration_secs);
        let mut callers = Vec::new();
        for _ in 0..args.connections.max(1) {
            let (handle, counter, clock) = (handle.clone(), counter.clone(), clock.clone());
            callers.push(tokio::spawn(async move {
                let mut accepted = 0usize;
                while clock.monotonic() - began < duration {
                    let alerts: Vec<String> = (0..batch)
                        .map(|_| {
                            format!(
                                r#"{{"status":"firing","labels":{{"alertname":"Bench","instance":"host-{}"}},"startsAt":"2026-11-24T10:00:00Z","endsAt":"0001-01-01T00:00:00Z"}}"#,
                                counter.fetch_add(1, Ordering::Relaxed)
                            )
                        })
                        .collect();
                    let body = format!(r#"{{"version":"4","alerts":[{}]}}"#, alerts.join(","));
                    let Ok(events) =
                        homeostat_core::ingest::alertmanager::parse(body.as_bytes(), "alertmanager", clock.now())
                    else {
                        continue;
                    };
                    match handle.ingest("alertmanager", events) {
                        Ok((pending, count)) => {
                            if pending.committed().await.is_ok() {
                                accepted += count;
                            }
                        }
                        // A full queue: back off like a client that got 429.
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                accepted
            }));
        }
        let mut accepted = 0;
        for caller in callers {
            accepted += caller.await.unwrap_or(0);
        }
        let seconds = (clock.monotonic() - began).as_secs_f64();
        // Let the last dispatches land before reading the histograms.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = handle.metrics().render();
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|line| {
                    line.strip_prefix(name)
                        .and_then(|rest| rest.trim().parse::<f64>().ok())
                })
                .unwrap_or(0.0)
        };
        let commits = value("homeostat_journal_commit_seconds_count");
        let commit_mean = 1000.0 * value("homeostat_journal_commit_seconds_sum") / commits.max(1.0);
        let dispatches = value("homeostat_dispatch_latency_seconds_count");
        let dispatch_mean =
            1000.0 * value("homeostat_dispatch_latency_seconds_sum") / dispatches.max(1.0);
        println!(
            "{:<8}  {batch:>5}  {:>11}  {:>11}  {:>4}  {:>9.0}  {:>9.0}  {commit_mean:>14.3}  {}",
            args.store,
            args.connections,
            args.synchronous,
            if args.with_rule { "yes" } else { "no" },
            accepted as f64 / seconds,
            commits / seconds,
            if args.with_rule {
                format!("{dispatch_mean:>16.3}")
            } else {
                format!("{:>16}", "-")
            },
        );
        engine.shutdown().await;
    }
    Ok(())
}
