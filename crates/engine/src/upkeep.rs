//! Keeping the store within its bounds: the disk watch that gates ingest, and retention.

use std::sync::Arc;
use std::time::Duration;

use homeostat_core::clock::SharedClock;
use homeostat_core::config;
use homeostat_store::writer::Health;
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

/// Applies `store.retention` every `interval_secs`, the first time a minute after start.
pub(crate) async fn retain(
    store: Arc<dyn Store>,
    policy: config::Retention,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut interval = tokio::time::interval(Duration::from_secs(policy.interval_secs.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match store.retain(&policy, clock.now(), false).await {
            Ok(report) => {
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
                let deleted = report.events
                    + report.decisions
                    + report.run_details
                    + report.incident_details
                    + report.runs
                    + report.incidents
                    + report.by_size;
                if deleted > 0 {
                    tracing::info!(
                        events = report.events,
                        decisions = report.decisions,
                        run_details = report.run_details,
                        incident_details = report.incident_details,
                        runs = report.runs,
                        incidents = report.incidents,
                        by_size = report.by_size,
                        bytes_before = report.bytes_before,
                        bytes_after = report.bytes_after,
                        "retention applied"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "retention failed; will try again"),
        }
    }
}
