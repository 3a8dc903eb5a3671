//! Durability under `kill -9`: every alert the daemon acknowledged with 2xx is in the store after a
//! crash in the middle of concurrent ingest, and a daemon restarted on the same file serves again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::{base_config, wait_for, Daemon};

/// Client tasks posting at once; enough to keep several commits queued behind the journal writer.
const CLIENTS: u64 = 8;

/// The load runs at least this long, and until `MIN_ACKNOWLEDGED` requests succeeded, before the kill.
const LOAD: Duration = Duration::from_secs(1);
const MIN_ACKNOWLEDGED: usize = 50;

/// An Alertmanager v4 payload with one alert per id, each with its own `id` label; with
/// `runs_every` N > 0, every N-th alert also has `run="yes"`, for a rule that starts a run on it.
pub(crate) fn payload(ids: &[u64], runs_every: u64) -> Value {
    let alerts: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut labels = json!({"alertname": "CrashLoad", "id": id.to_string()});
            if runs_every > 0 && id % runs_every == 0 {
                labels["run"] = json!("yes");
            }
            json!({
                "status": "firing",
                "labels": labels,
                "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "",
            })
        })
        .collect();
    json!({
        "version": "4",
        "status": "firing",
        "receiver": "crash",
        "groupKey": "{}:{alertname=\"CrashLoad\"}",
        "alerts": alerts,
    })
}

#[derive(Default)]
pub(crate) struct Tally {
    /// Ids of alerts in requests answered 2xx.
    pub(crate) acknowledged: Mutex<Vec<u64>>,
    pub(crate) acknowledged_requests: AtomicUsize,
    /// Requests answered with anything but 2xx (429 under load, 503 while the journal cannot commit).
    pub(crate) refused_requests: AtomicUsize,
    /// Requests that got no answer: the connection failed or broke.
    pub(crate) unanswered_requests: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
}

impl Tally {
    pub(crate) fn acknowledged(&self) -> BTreeSet<u64> {
        self.acknowledged
            .lock()
            .expect("the tally lock")
            .iter()
            .copied()
            .collect()
    }
}

/// Posts batches of 1 and 10 alerts until `stop`, counting what was acknowledged.
pub(crate) async fn client_task(
    client: reqwest::Client,
    url: String,
    task: u64,
    next_id: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    runs_every: u64,
) {
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // Batches of 1 and 10 alternate, offset per task, so both sizes are always in flight.
        let size = if (task + round).is_multiple_of(2) {
            1
        } else {
            10
        };
        round += 1;
        let first = next_id.fetch_add(size, Ordering::SeqCst);
        let ids: Vec<u64> = (first..first + size).collect();
        tally.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = client
            .post(&url)
            .json(&payload(&ids, runs_every))
            .send()
            .await;
        let answer = match answer {
            Ok(response) => {
                let status = response.status();
                // A 2xx counts only with its whole body read: the daemon answers after the commit.
                response.json::<Value>().await.map(|body| (status, body))
            }
            Err(error) => Err(error),
        };
        tally.in_flight.fetch_sub(1, Ordering::SeqCst);
        match answer {
            Ok((status, body)) if status.is_success() => {
                assert_eq!(
                    body["accepted"],
                    json!(size),
                    "a 2xx names every alert: {body}"
                );
                tally
                    .acknowledged
                    .lock()
                    .expect("the tally lock")
                    .extend(&ids);
                tally.acknowledged_requests.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {
                tally.refused_requests.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                tally.unanswered_requests.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Every `id` label of the `CrashLoad` alerts in the store, read by `homeostat events --store`
/// straight from the config's SQLite file (`store.path`, relative to the config's folder, beside it
/// by default as in [`base_config`]) rather than through the API, whose pages stop at 1000.
///
/// [`base_config`]: crate::support::base_config
pub(crate) async fn stored_ids(config: &std::path::Path) -> BTreeSet<u64> {
    let folder = config
        .parent()
        .expect("the config is in the test's directory");
    let text = std::fs::read_to_string(config).expect("read the config");
    let parsed: Value = serde_yaml_ng::from_str(&text).expect("the config is YAML");
    let database = folder.join(parsed["store"]["path"].as_str().unwrap_or("homeostat.db"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .arg("events")
        .arg("--store")
        .arg(&database)
        .args(["--json", "--limit", "1000000"])
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run `homeostat events`");
    assert!(
        output.status.success(),
        "`homeostat events` failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = serde_json::from_slice(&output.stdout)
        .expect("`homeostat events --json` prints a JSON array");
    events
        .iter()
        .filter(|event| event["labels"]["alertname"] == "CrashLoad")
        .filter_map(|event| event["labels"]["id"].as_str()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_alerts_survive_kill_9() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let config = base_config(dir.path(), "full");
    let mut daemon = Daemon::start(dir.path(), "first", &config).await;

    let next_id = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let url = daemon.url("/api/v1/hooks/alertmanager");
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            tokio::spawn(client_task(
                daemon.client().clone(),
                url.clone(),
                task,
                next_id.clone(),
                stop.clone(),
                tally.clone(),
                0,
            ))
        })
        .collect();

    let load_started = Instant::now();
    {
        let tally = &tally;
        wait_for(
            "enough acknowledged requests under load",
            Duration::from_secs(30),
            move || async move {
                let enough = tally.acknowledged_requests.load(Ordering::SeqCst) >= MIN_ACKNOWLEDGED;
                (enough && load_started.elapsed() >= LOAD).then_some(())
            },
            || daemon.stderr_tail(),
        )
        .await;
    }
    let in_flight_at_kill = tally.in_flight.load(Ordering::SeqCst);
    daemon.kill_9();
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a client task panicked");
    }
    let first_stderr = daemon.stderr_tail();
    drop(daemon);

    let acknowledged = tally.acknowledged();
    assert!(
        in_flight_at_kill > 0,
        "no request was in flight at the kill, so the crash did not interrupt ingest"
    );

    let restarted = Daemon::start(dir.path(), "restarted", &config).await;
    let stored = stored_ids(&restarted.config_path).await;
    let missing: Vec<u64> = acknowledged.difference(&stored).copied().collect();
    println!(
        "crash: {} alerts acknowledged in {} requests ({} refused, {} unanswered, {} in flight at the kill); {} stored; {} ids sent",
        acknowledged.len(),
        tally.acknowledged_requests.load(Ordering::SeqCst),
        tally.refused_requests.load(Ordering::SeqCst),
        tally.unanswered_requests.load(Ordering::SeqCst),
        in_flight_at_kill,
        stored.len(),
        next_id.load(Ordering::SeqCst),
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged alerts are missing after kill -9, first ids {:?}\n--- first daemon stderr:\n{first_stderr}\n--- restarted daemon stderr:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        restarted.stderr_tail(),
    );

    // The restarted daemon takes new events and lists them first.
    let response = restarted
        .client()
        .post(restarted.url("/api/v1/hooks/alertmanager"))
        .json(&payload(&[u64::MAX], 0))
        .send()
        .await
        .expect("post to the restarted daemon");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body, json!({"accepted": 1}));
    let newest = restarted.get_json("/api/v1/events?limit=1").await;
    assert_eq!(
        newest["events"][0]["labels"]["id"],
        u64::MAX.to_string(),
        "{newest:#}"
    );
}
