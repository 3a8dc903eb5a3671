//! Keeping the store within its bounds: the disk watch that gates ingest, and retention.

use std::sync::Arc;
use std::time::Duration;

use crate::writer::{Health, Writer};
use homeostat_core::clock::SharedClock;
use homeostat_core::config;
use homeostat_core::journal::Write;
use homeostat_store::Store;

use crate::metrics::Metrics;

/// How often the disk is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// After a commit failed for another reason than a full disk, work is let in again once this many
/// looks (one to two seconds) saw it failing: the next commit tells whether the trouble passed.
const RETRY_AFTER_LOOKS: u32 = 2;

/// Watches the store's disk: below `store.min_free_bytes` ingest is refused (503, not ready) so
/// the space left goes to runs' outcomes; after a failed commit, work is let in again once space is
/// back or some time went by. Publishes the figures in `/metrics`.
pub(crate) async fn watch_disk(
    store: Arc<dyn Store>,
    health: Health,
    settings: config::Store,
    metrics: Arc<Metrics>,
) {
    let mut interval = tokio::time::interval(WATCH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_looks = 0u32;
    loop {
        interval.tick().await;
        let space = store.space().await;
        // While the reserve is given back, its share stays off limits too: ingest must not eat
        // the room that was freed for runs' outcomes.
        let floor = |space: &homeostat_store::Space| {
            settings.min_free_bytes + settings.reserve_bytes.saturating_sub(space.reserve_bytes)
        };
        let low = space.filter(|space| space.free_bytes < floor(space));
        if let Some(space) = space {
            for (what, bytes) in [
                ("free", space.free_bytes),
                ("reserve", space.reserve_bytes),
                ("database", space.database_bytes),
                ("wal", space.wal_bytes),
            ] {
                metrics
                    .store_bytes
                    .get_or_create(&vec![("what", what.to_string())])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        health.set_low_space(low.map(|space| {
            format!(
                "the store's disk has {} bytes free, below the {} that `store.min_free_bytes` and \
                 `store.reserve_bytes` ask for; free space on it",
                space.free_bytes,
                floor(&space)
            )
        }));
        let (failing, full) = health.failing();
        if failing {
            failing_looks += 1;
            let space_back = full && space.is_some() && low.is_none();
            if space_back || (!full && failing_looks >= RETRY_AFTER_LOOKS) {
                tracing::info!(
                    disk_full = full,
                    "letting work in again after a failed commit; the next commit tells"
                );
                health.retry();
                failing_looks = 0;
            }
        } else {
            failing_looks = 0;
        }
        metrics
            .journal_accepting
            .set(i64::from(health.accepting().is_ok()));
    }
}

/// How often the size limit (`retention.max_bytes`) is checked: a busy store writes tens of
/// megabytes a second (36 MB/s at 42,000 alerts/s), and what it writes between two checks is how
/// far it can pass the point where size retention starts.
const SIZE_EVERY: Duration = Duration::from_secs(1);

/// Prunes (of up to 2,000 rows each) that one commit takes. One a commit deleted 64,000 rows a
/// second, fewer than ingest at 42,000 alerts/s adds (an event and a decision each), so the
/// database outgrew its limit; eight a commit delete about 190,000 rows a second, and ingest slows
/// to what the writer can both add and delete.
const PRUNES_PER_COMMIT: usize = 8;

/// Applies `store.retention`: the whole policy every `interval_secs` (the first time a minute
/// after start), and its size limit, if it has one, every second in between. The store plans
/// (reads only); the deletes go through the writer a chunk at a time, taking turns with ingest,
/// since SQLite has one writer and a second connection would wait on it, or make it wait.
pub(crate) async fn retain(
    store: Arc<dyn Store>,
    writer: Writer,
    policy: config::Retention,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) {
    let full_every = Duration::from_secs(policy.interval_secs.max(1));
    // The same policy with no age limits: only the size limit applies.
    let size_only = config::Retention {
        events_max_age_secs: u64::MAX,
        details_max_age_secs: u64::MAX,
        summaries_max_age_secs: u64::MAX,
        ..policy.clone()
    };
    let mut since_full = full_every.saturating_sub(Duration::from_secs(60));
    let tick = if policy.max_bytes > 0 {
        SIZE_EVERY.min(full_every)
    } else {
        full_every.min(Duration::from_secs(60))
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        since_full += tick;
        let applied = if since_full >= full_every {
            since_full = Duration::ZERO;
            &policy
        } else if policy.max_bytes > 0 {
            &size_only
        } else {
            continue;
        };
        let planning = tokio::time::Instant::now();
        let plan = match store.plan_retention(applied, clock.now()).await {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "cannot plan retention; will try again");
                continue;
            }
        };
        let planned_in = planning.elapsed();
        let applying = tokio::time::Instant::now();
        let mut deleted = 0u64;
        let mut prunes = plan.prunes.into_iter().peekable();
        while prunes.peek().is_some() {
            let group: Vec<Write> = prunes
                .by_ref()
                .take(PRUNES_PER_COMMIT)
                .map(Write::Prune)
                .collect();
            match writer.submit(group).await {
                Ok(committed) => deleted += committed.pruned,
                Err(error) => {
                    tracing::warn!(%error, "retention could not delete; will try again");
                    break;
                }
            }
        }
        record(
            &metrics,
            &plan.report,
            deleted,
            planned_in,
            applying.elapsed(),
        );
    }
}

fn record(
    metrics: &Metrics,
    report: &homeostat_store::RetentionReport,
    deleted: u64,
    planned_in: Duration,
    applied_in: Duration,
) {
    for (kind, count) in [
        ("events", report.events),
        ("decisions", report.decisions),
        ("run_details", report.run_details),
        ("incident_details", report.incident_details),
        ("runs", report.runs),
        ("incidents", report.incidents),
        ("by_size", report.by_size),
    ] {
        metrics
            .retention_deleted
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc_by(count);
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            events = report.events,
            decisions = report.decisions,
            run_details = report.run_details,
            incident_details = report.incident_details,
            runs = report.runs,
            incidents = report.incidents,
            by_size = report.by_size,
            bytes_before = report.bytes_before,
            planned_ms = planned_in.as_millis() as u64,
            applied_ms = applied_in.as_millis() as u64,
            "retention applied"
        );
    }
}
