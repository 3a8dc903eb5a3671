//! End to end through a real Prometheus, for anomaly detectors: a latency gauge with a little
//! jitter is scraped; the daemon's detector learns it, a spike becomes an `Anomaly` event with its
//! expected range and opens an incident; the detector's state survives `kill -9`, so after a
//! restart a second spike is flagged at once, with no new warm-up. A daemon that starts before
//! Prometheus reads the history once Prometheus is up, and shows its series in
//! `homeostat detectors status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use homeostat_core::config::Synchronous;
use homeostat_core::Status;
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{EventQuery, EventRecord, IncidentQuery, Store};

use crate::support::{
    base_config, free_port, scrape_config, serve, wait_for, Daemon, Prometheus, TOKEN,
};

/// A gauge around `level` with a jitter of a few percent that repeats every 7 scrapes.
struct LatencyTarget {
    port: u16,
    level: Arc<Mutex<f64>>,
    scrapes: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl LatencyTarget {
    async fn start(level: f64) -> LatencyTarget {
        let level = Arc::new(Mutex::new(level));
        let scrapes = Arc::new(AtomicU64::new(0));
        let router = {
            let (level, scrapes) = (Arc::clone(&level), Arc::clone(&scrapes));
            Router::new().route(
                "/metrics",
                get(move || {
                    let n = scrapes.fetch_add(1, Ordering::SeqCst);
                    let base = *level.lock().expect("the level lock");
                    let value = base * (1.0 + 0.01 * (n % 7) as f64);
                    async move {
                        format!(
                            "# TYPE checkout_latency_seconds gauge\n\
                             checkout_latency_seconds{{service=\"checkout\"}} {value}\n"
                        )
                    }
                }),
            )
        };
        let (port, server) = serve(router).await;
        LatencyTarget {
            port,
            level,
            scrapes,
            server,
        }
    }

    fn set(&self, level: f64) {
        *self.level.lock().expect("the level lock") = level;
    }
}

impl Drop for LatencyTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `backfill_secs: 0`: the detector learns only from what it sees, so after the restart it can
/// only score at once if its state came back from the snapshot.
fn homeostat_config(dir: &std::path::Path, prometheus: &Prometheus) -> String {
    base_config(dir, "normal")
        + &format!(
            r#"prometheus: {{url: {url:?}}}
incidents: {{group_by: [service], sweep_secs: 1}}
detectors:
  - name: checkout-latency
    query: checkout_latency_seconds
    interval_secs: 1
    backfill_secs: 0
    resolve_after: 2
    labels: {{severity: ticket}}
    settings: {{warmup_points: 40, cooldown_points: 5}}
"#,
            url = prometheus.url("")
        )
}

async fn anomalies(store: &SqliteStore) -> Vec<EventRecord> {
    store
        .events(&EventQuery {
            limit: 100,
            source: Some("detector".into()),
            ..Default::default()
        })
        .await
        .expect("read the events")
}

#[tokio::test]
async fn a_spike_is_an_anomaly_incident_and_the_detector_survives_kill_9() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let target = LatencyTarget::start(0.2).await;
    let prometheus = Prometheus::start(&scrape_config(target.port), "groups: []\n", &[]).await;
    let config = homeostat_config(dir.path(), &prometheus);
    let mut daemon = Daemon::start(dir.path(), "first", &config).await;
    let store = SqliteStore::open(&dir.path().join("homeostat.db"), Synchronous::Normal)
        .await
        .expect("open the daemon's store");
    let context = |daemon: &Daemon| {
        format!(
            "scrapes: {}\n--- homeostat stderr:\n{}\n--- prometheus stderr:\n{}",
            target.scrapes.load(Ordering::SeqCst),
            daemon.stderr_tail(),
            prometheus.stderr_tail()
        )
    };

    // Past the warm-up (40 values at 1 s) with room, the jitter raises nothing.
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert!(anomalies(&store).await.is_empty(), "{}", context(&daemon));

    // Latency five times its usual.
    target.set(1.0);
    let fired = wait_for(
        "the anomaly event",
        Duration::from_secs(20),
        || async {
            anomalies(&store)
                .await
                .into_iter()
                .find(|record| record.event.status == Status::Firing)
        },
        || context(&daemon),
    )
    .await;
    let event = &fired.event;
    assert_eq!(event.labels["alertname"], "Anomaly");
    assert_eq!(event.labels["detector"], "checkout-latency");
    assert_eq!(event.labels["service"], "checkout");
    assert_eq!(event.labels["severity"], "ticket");
    let summary = &event.annotations["summary"];
    assert!(summary.contains("x its usual"), "{summary}");
    let data = event.data.as_ref().expect("the scores");
    assert!(data["score"].as_f64().unwrap() >= 0.5, "{data}");
    assert!(data["expected_high"].as_f64().unwrap() < 1.0, "{data}");
    assert!(data["expected_low"].as_f64().unwrap() > 0.05, "{data}");
    let incident = wait_for(
        "an incident for the anomaly",
        Duration::from_secs(10),
        || async {
            store
                .incidents(&IncidentQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_iter()
                .next()
        },
        || context(&daemon),
    )
    .await;
    assert!(incident.title.contains("Anomaly") || !incident.title.is_empty());

    // Back to normal: the anomaly resolves.
    target.set(0.2);
    wait_for(
        "the anomaly to resolve",
        Duration::from_secs(30),
        || async {
            anomalies(&store)
                .await
                .into_iter()
                .find(|record| record.event.status == Status::Resolved)
        },
        || context(&daemon),
    )
    .await;

    // kill -9 and restart on the same store: the detector's state comes back from the snapshot
    // taken with the resolve (with `backfill_secs: 0` nothing else could give it a history).
    daemon.kill_9();
    let daemon = Daemon::start(dir.path(), "restarted", &config).await;
    wait_for(
        "the restarted detector to restore its state",
        Duration::from_secs(10),
        || async {
            let log = std::fs::read_to_string(&daemon.stderr_path).unwrap_or_default();
            log.contains(
                "detector state restored from its snapshot detector=checkout-latency series=1",
            )
            .then_some(())
        },
        || context(&daemon),
    )
    .await;
}

#[tokio::test]
async fn a_backfill_waits_for_prometheus_and_the_status_shows_the_series() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let target = LatencyTarget::start(0.2).await;
    // The daemon is told where Prometheus will be, and starts first.
    let port = free_port();
    let config = base_config(dir.path(), "normal")
        + &format!(
            r#"prometheus: {{url: "http://127.0.0.1:{port}"}}
detectors:
  - name: checkout-latency
    query: checkout_latency_seconds
    interval_secs: 1
    backfill_secs: 600
"#
        );
    let daemon = Daemon::start(dir.path(), "early", &config).await;
    let detector = |answer: serde_json::Value| answer["detectors"][0].clone();
    let pending = wait_for(
        "the backfill to fail and wait",
        Duration::from_secs(10),
        || async {
            let status = detector(daemon.get_json("/api/v1/detectors").await);
            (status["backfill"]["state"] == "pending"
                && status["backfill"]["attempts"].as_u64() >= Some(2))
            .then_some(status)
        },
        || daemon.stderr_tail(),
    )
    .await;
    assert!(pending["error"].is_string(), "{pending:#}");
    assert_eq!(pending["series"], serde_json::json!([]), "{pending:#}");

    let prometheus =
        Prometheus::start_on(port, &scrape_config(target.port), "groups: []\n", &[]).await;
    let context = || {
        format!(
            "{}\n--- prometheus stderr:\n{}",
            daemon.stderr_tail(),
            prometheus.stderr_tail()
        )
    };
    let learning = wait_for(
        "the backfill to be read and the series scored",
        Duration::from_secs(30),
        || async {
            let status = detector(daemon.get_json("/api/v1/detectors").await);
            let series = status["series"][0].clone();
            (status["backfill"]["state"] == "done" && series["input"]["scored"].as_u64() >= Some(2))
                .then_some(status)
        },
        context,
    )
    .await;
    assert!(learning["error"].is_null(), "{learning:#}");
    assert!(learning["evaluated_at"].is_string(), "{learning:#}");
    let series = &learning["series"][0];
    assert_eq!(series["labels"]["service"], "checkout", "{learning:#}");
    assert_eq!(series["state"], "learning", "{learning:#}");
    assert!(
        series["value"]
            .as_f64()
            .is_some_and(|value| (0.19..0.22).contains(&value)),
        "{learning:#}"
    );
    // The dashboard shows the same series, learning, with its value.
    let page = daemon.page("/detectors").await;
    assert!(page.contains("<code>checkout-latency</code>"), "{page}");
    assert!(
        page.contains("service=checkout") && page.contains(">learning<"),
        "{page}"
    );
    let one = daemon.get_json("/api/v1/detectors/checkout-latency").await;
    assert_eq!(one["name"], "checkout-latency");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args(["detectors", "status"])
        .env("HOMEOSTAT_SERVER", daemon.url(""))
        .env("HOMEOSTAT_TOKEN", TOKEN)
        .env_remove("HOMEOSTAT_CONFIG")
        .env("HOMEOSTAT_LOG", "warn")
        .output()
        .await
        .expect("homeostat detectors status runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        table.contains("checkout-latency{")
            && table.contains("service=checkout}")
            && table.contains("learning"),
        "{table}"
    );
}
