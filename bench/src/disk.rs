//! `disk`: the store's size on disk through millions of events with retention on: the database file
//! and its WAL, sampled throughout, against `retention.max_bytes` and `store.wal_max_bytes`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::load::{ClosedLoop, Coverage, Target};
use crate::payload::{self, Flavor};
use crate::server::{HomeostatOptions, Server, BENCH_TOKEN};

#[derive(Args)]
pub struct DiskArgs {
    /// The homeostat binary.
    #[arg(long)]
    homeostat: std::path::PathBuf,
    /// Events to send in all.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// `store.retention.max_bytes`.
    #[arg(long, default_value_t = 512 << 20)]
    max_bytes: u64,
    /// `store.wal_max_bytes`.
    #[arg(long, default_value_t = 64 << 20)]
    wal_max_bytes: u64,
    /// Alerts per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Distinct alerts, re-sent in rotation (the daemon's state stays this size; every event is
    /// journaled all the same).
    #[arg(long, default_value_t = 100_000)]
    distinct_alerts: usize,
    /// Stop after this long even if not every event was sent.
    #[arg(long, default_value_t = 1_800)]
    max_secs: u64,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
}

pub async fn run(args: DiskArgs) -> Result<()> {
    let options = HomeostatOptions {
        queue_capacity: 4096,
        synchronous: "normal",
        with_rule: false,
        ready_timeout: Duration::from_secs(30),
        server: String::new(),
        store: format!(
            "  wal_max_bytes: {}\n  retention: {{max_bytes: {}, interval_secs: 60}}\n",
            args.wal_max_bytes, args.max_bytes
        ),
        extra: String::new(),
        max_open_files: None,
        postgres: false,
    };
    let server = Server::start_homeostat(&args.homeostat, &options).await?;
    let database = server.dir().join("homeostat.db");
    let wal = server.dir().join("homeostat.db-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let (max_db, max_wal) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let samples = tokio::spawn({
        let (stop, max_db, max_wal, database, wal) = (
            stop.clone(),
            max_db.clone(),
            max_wal.clone(),
            database.clone(),
            wal.clone(),
        );
        async move {
            let mut trace = Vec::new();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let (db, wal) = (file_len(&database), file_len(&wal));
                max_db.fetch_max(db, Ordering::Relaxed);
                max_wal.fetch_max(wal, Ordering::Relaxed);
                trace.push((started.elapsed().as_secs_f64(), db, wal));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            trace
        }
    });
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let bodies = payload::build_with_services(
        Flavor::Webhook,
        args.batch,
        args.distinct_alerts,
        &starts_at,
        100,
    );
    let target = Arc::new(Target {
        client: crate::load::client(16, Duration::from_secs(30))?,
        url: format!("{}/api/v1/hooks/alertmanager", server.base_url),
        authorization: Some(crate::load::bearer(BENCH_TOKEN)?),
        bodies: Arc::new(bodies.bodies.clone()),
    });
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let requests = args.events.div_ceil(args.batch as u64);
    eprintln!(
        "sending {} events in {requests} requests of {}; retention.max_bytes {} MiB, wal_max_bytes {} MiB",
        args.events,
        args.batch,
        args.max_bytes >> 20,
        args.wal_max_bytes >> 20
    );
    let started = Instant::now();
    let outcome = ClosedLoop {
        connections: 16,
        duration: Duration::from_secs(args.max_secs),
        max_requests: requests,
        backoff: Duration::from_millis(5),
    }
    .run(&target, &coverage)
    .await;
    let elapsed = started.elapsed();
    // Retention catches up with the last writes, and the idle store truncates its WAL.
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, Ordering::Relaxed);
    let trace = samples.await.context("the sampler failed")?;
    let metrics = reqwest::get(format!("{}/metrics", server.base_url))
        .await?
        .text()
        .await?;
    let deleted: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("homeostat_retention_deleted_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let (final_db, final_wal) = (file_len(&database), file_len(&wal));
    server.stop().await;
    let accepted_events = outcome.tally.accepted * args.batch as u64;
    let report = json!({
        "events_accepted": accepted_events,
        "seconds": elapsed.as_secs_f64(),
        "events_per_sec": accepted_events as f64 / elapsed.as_secs_f64(),
        "max_bytes": args.max_bytes,
        "wal_max_bytes": args.wal_max_bytes,
        "database_bytes_max": max_db.load(Ordering::Relaxed),
        "wal_bytes_max": max_wal.load(Ordering::Relaxed),
        "database_bytes_final": final_db,
        "wal_bytes_final": final_wal,
        "rows_deleted_by_retention": deleted,
        "errors": outcome.tally.rejected + outcome.tally.transport_errors,
        "first_error": outcome.tally.first_error,
        "trace_every_200ms": trace.iter().step_by(25).map(|(t, db, wal)| json!([t, db, wal])).collect::<Vec<_>>(),
    });
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "disk: {} events in {:.0} s ({:.0}/s); database at most {:.1} MiB (limit {:.0} MiB; {:.1} MiB at the end), \
         WAL at most {:.1} MiB (limit {:.0} MiB; {:.1} MiB at the end); {:.0} rows deleted by retention",
        accepted_events,
        elapsed.as_secs_f64(),
        accepted_events as f64 / elapsed.as_secs_f64(),
        mib(max_db.load(Ordering::Relaxed)),
        mib(args.max_bytes),
        mib(final_db),
        mib(max_wal.load(Ordering::Relaxed)),
        mib(args.wal_max_bytes),
        mib(final_wal),
        deleted,
    );
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(())
}
