//! Faults under load, with the real binary: the store's disk fills up while alerts stream in and
//! runbooks run, then space comes back; and SIGKILL at random moments of the same load. Afterwards
//! every alert answered 2xx is in the journal, every effect that happened has its intent journaled,
//! and no non-idempotent effect happened twice.
//!
//! Each test runs one trial by default; `HOMEOSTAT_DISK_FULL_TRIALS` and `HOMEOSTAT_KILL_TRIALS` ask
//! for more (`tests/soak/faults.sh` runs 100 and 1,000).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{RunQuery, Store};
use tokio::time::Instant;

use crate::crash::{client_task, stored_ids, Tally};
use crate::support::{wait_for, Daemon};

/// Client tasks posting at once.
const CLIENTS: u64 = 6;
/// Every N-th alert starts a run.
const RUNS_EVERY: u64 = 25;

fn trials(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A config whose rule runs a runbook of two non-idempotent steps and an idempotent one on every
/// alert labelled `run="yes"`; each step appends `TAG STEP` to `effects`, the ground truth of what
/// happened.
fn config(store: &Path, effects: &Path, store_settings: &str) -> String {
    let effects = effects.display().to_string();
    let append = |step: &str| {
        format!("[\"/bin/sh\", \"-c\", \"echo {{{{ params.tag }}}} {step} >> {effects}\"]")
    };
    format!(
        "server: {{max_body_bytes: 4194304, queue_capacity: 4096}}\n\
         store: {{path: {db:?}, synchronous: normal{store_settings}}}\n\
         api_tokens:\n  - {{name: test, scopes: [write], token: {{env: HOMEOSTAT_TEST_TOKEN}}}}\n\
runbooks:
  - name: chain
    params:
      tag: {{type: string, required: true}}
    steps:
      - {{name: charge, action: exec, with: {{command: {charge}}}}}
      - {{name: sync, action: exec, with: {{command: {sync}}}, idempotent: true}}
      - {{name: pause, wait: {{duration_secs: 0.05}}}}
      - {{name: ship, action: exec, with: {{command: {ship}}}}}
rules:
  - name: chain-on-alert
    match: ['run=\"yes\"']
    target: \"{{{{ labels.id }}}}\"
    runbook: chain
    params: {{tag: \"{{{{ labels.id }}}}\"}}
    verify: null
    guards: {{lock: false, loop: null}}
",
        db = store.join("homeostat.db").display().to_string(),
        charge = append("charge"),
        sync = append("sync"),
        ship = append("ship"),
    )
}

/// The clients of one load, and how to stop them.
struct Load {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
}

impl Load {
    fn start(daemon: &Daemon, next_id: &Arc<AtomicU64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let url = daemon.url("/api/v1/hooks/alertmanager");
        let tasks = (0..CLIENTS)
            .map(|task| {
                tokio::spawn(client_task(
                    daemon.client().clone(),
                    url.clone(),
                    task,
                    next_id.clone(),
                    stop.clone(),
                    tally.clone(),
                    RUNS_EVERY,
                ))
            })
            .collect();
        Load { tasks, stop, tally }
    }

    async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a client task panicked");
        }
        self.tally
    }
}

/// What the effects file and the journal say after the daemon stopped.
#[derive(Debug, Default)]
struct Effects {
    /// Lines in the effects file.
    executed: usize,
    /// Non-idempotent (`charge`, `ship`) effects that happened more than once.
    repeated: Vec<String>,
    /// Effects with no `step_started` intent journaled for their run and step.
    without_intent: Vec<String>,
    runs: usize,
}

impl Effects {
    /// What the trial did, for its line of the report.
    fn counts(&self) -> String {
        format!(
            "{} runs, {} effects, {} repeated, {} without intent",
            self.runs,
            self.executed,
            self.repeated.len(),
            self.without_intent.len()
        )
    }

    /// Fails `what` (a trial, a round) if an acknowledged alert is missing or an effect was
    /// repeated or happened without its intent; `context` follows the lists (a daemon's stderr).
    fn assert_clean(&self, what: &str, missing: &[u64], context: &str) {
        assert!(
            missing.is_empty() && self.repeated.is_empty() && self.without_intent.is_empty(),
            "{what}: acknowledged alerts missing {:?}, non-idempotent effects repeated {:?}, \
             effects without an intent {:?}\n{context}",
            &missing[..missing.len().min(20)],
            self.repeated,
            self.without_intent
        );
    }
}

async fn effects(store_dir: &Path, effects: &Path) -> Effects {
    let text = std::fs::read_to_string(effects).unwrap_or_default();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in text.lines() {
        let (tag, step) = line.split_once(' ').expect("`TAG STEP`");
        *counts
            .entry((tag.to_string(), step.to_string()))
            .or_default() += 1;
    }
    let store = SqliteStore::open(&store_dir.join("homeostat.db"), Default::default())
        .await
        .expect("open the store after the daemon stopped");
    let runs = store
        .runs(&RunQuery {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .expect("read the runs");
    let mut intents: BTreeSet<(String, String)> = BTreeSet::new();
    for run in &runs {
        let tag = run.plan.params["tag"].as_str().unwrap_or("").to_string();
        for entry in store
            .journal_for_run(&run.id)
            .await
            .expect("read a run's journal")
        {
            if entry.kind() == "step_started" {
                let step = entry.body()["step"].as_str().unwrap_or("").to_string();
                intents.insert((tag.clone(), step));
            }
        }
    }
    let mut report = Effects {
        executed: text.lines().count(),
        runs: runs.len(),
        ..Effects::default()
    };
    for ((tag, step), count) in &counts {
        if *count > 1 && step != "sync" {
            report.repeated.push(format!("{tag} {step} x{count}"));
        }
        if !intents.contains(&(tag.clone(), step.clone())) {
            report.without_intent.push(format!("{tag} {step}"));
        }
    }
    store.close().await;
    report
}

/// Waits until no run is `running`, asking the API.
async fn runs_settle(daemon: &Daemon) {
    wait_for(
        "every run to end",
        Duration::from_secs(60),
        || async {
            let runs = daemon.get_json("/api/v1/runs?status=running&limit=1").await;
            runs["runs"]
                .as_array()
                .is_some_and(|runs| runs.is_empty())
                .then_some(())
        },
        || daemon.stderr_tail(),
    )
    .await;
}

/// A tmpfs of `size` mounted at `path` for the test's lifetime: a small disk the test can fill.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {}: this test fills a small file system of its own and needs \
             root (or CAP_SYS_ADMIN) for it, as CI has",
            path.display()
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system under `path` with a file until it is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(count) => written += count as u64,
        }
    }
    let _ = file.sync_all();
    written
}

/// `/readyz` polled every 20 ms until stopped: whether it said 503 while `full` was set, and
/// whether it said 200 then.
struct Readiness {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    unready_while_full: Arc<AtomicUsize>,
}

impl Readiness {
    fn watch(daemon: &Daemon, full: Arc<AtomicBool>) -> Readiness {
        let stop = Arc::new(AtomicBool::new(false));
        let unready_while_full = Arc::new(AtomicUsize::new(0));
        let url = daemon.url("/readyz");
        let client = daemon.client().clone();
        let task = tokio::spawn({
            let stop = stop.clone();
            let unready = unready_while_full.clone();
            async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(response) = client.get(&url).send().await {
                        if full.load(Ordering::SeqCst)
                            && response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
                        {
                            unready.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Readiness {
            task,
            stop,
            unready_while_full,
        }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.unready_while_full.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_loses_nothing_acknowledged_and_the_daemon_recovers_by_itself() {
    let trials = trials("HOMEOSTAT_DISK_FULL_TRIALS", 1);
    let (mut lost, mut repeated, mut without_intent) = (0, 0, 0);
    let (mut acknowledged_total, mut refused_total, mut executed_total) = (0, 0, 0);
    for trial in 0..trials {
        let dir = tempfile::tempdir().expect("tempdir");
        let store_dir = dir.path().join("store");
        let _tmpfs = Tmpfs::mount(&store_dir, "48m");
        let effects_path = dir.path().join("effects.log");
        let config = config(
            &store_dir,
            &effects_path,
            ", min_free_bytes: 4194304, reserve_bytes: 4194304, wal_max_bytes: 8388608",
        );
        let daemon = Daemon::start(dir.path(), "first", &config).await;
        let next_id = Arc::new(AtomicU64::new(0));
        let load = Load::start(&daemon, &next_id);
        let full = Arc::new(AtomicBool::new(false));
        let readiness = Readiness::watch(&daemon, full.clone());
        {
            let tally = load.tally.clone();
            wait_for(
                "acknowledged requests before the disk fills",
                Duration::from_secs(30),
                move || {
                    let tally = tally.clone();
                    async move {
                        (tally.acknowledged_requests.load(Ordering::SeqCst) >= 100).then_some(())
                    }
                },
                || daemon.stderr_tail(),
            )
            .await;
        }

        // Another process fills the disk, holds it full for a while, then frees it.
        let filler = store_dir.join("filler");
        let written = tokio::task::spawn_blocking({
            let filler = filler.clone();
            move || fill(&filler)
        })
        .await
        .expect("the filler");
        full.store(true, Ordering::SeqCst);
        let refused_before = load.tally.refused_requests.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let refused_while_full =
            load.tally.refused_requests.load(Ordering::SeqCst) - refused_before;
        full.store(false, Ordering::SeqCst);
        std::fs::remove_file(&filler).expect("free the disk");

        // It recovers by itself: ready again, and taking alerts again, with no restart.
        let acknowledged_at_free = load.tally.acknowledged_requests.load(Ordering::SeqCst);
        {
            let tally = load.tally.clone();
            let daemon = &daemon;
            wait_for(
                "the daemon to take alerts again after the disk was freed",
                Duration::from_secs(30),
                move || {
                    let tally = tally.clone();
                    async move {
                        let ready = daemon
                            .client()
                            .get(daemon.url("/readyz"))
                            .send()
                            .await
                            .is_ok_and(|response| response.status().is_success());
                        (ready
                            && tally.acknowledged_requests.load(Ordering::SeqCst)
                                > acknowledged_at_free + 50)
                            .then_some(())
                    }
                },
                || daemon.stderr_tail(),
            )
            .await;
        }
        let unready_while_full = readiness.stop().await;
        let tally = load.stop().await;
        runs_settle(&daemon).await;
        let first_stderr = daemon.stderr_tail();
        drop(daemon);

        let acknowledged = tally.acknowledged();
        let restarted = Daemon::start(dir.path(), "restarted", &config).await;
        let stored = stored_ids(&restarted.config_path).await;
        drop(restarted);
        let missing: Vec<u64> = acknowledged.difference(&stored).copied().collect();
        let report = effects(&store_dir, &effects_path).await;
        println!(
            "disk full, trial {trial}: filled {written} bytes; {} alerts acknowledged, {} requests refused \
             ({refused_while_full} while full), /readyz 503 {unready_while_full} times while full; \
             {} missing after restart; {}",
            acknowledged.len(),
            tally.refused_requests.load(Ordering::SeqCst),
            missing.len(),
            report.counts(),
        );
        assert!(
            refused_while_full > 0,
            "no request was refused while the disk was full: the fill did not bite\n{first_stderr}"
        );
        assert!(
            unready_while_full > 0,
            "/readyz never said 503 while the disk was full\n{first_stderr}"
        );
        lost += missing.len();
        repeated += report.repeated.len();
        without_intent += report.without_intent.len();
        acknowledged_total += acknowledged.len();
        refused_total += tally.refused_requests.load(Ordering::SeqCst);
        executed_total += report.executed;
        report.assert_clean(&format!("trial {trial}"), &missing, &first_stderr);
    }
    println!(
        "disk full, {trials} trials: {acknowledged_total} alerts acknowledged, {refused_total} requests refused, \
         {executed_total} effects; lost {lost}, repeated {repeated}, without intent {without_intent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_nothing_acknowledged_and_repeats_no_effect() {
    let trials = trials("HOMEOSTAT_KILL_TRIALS", 3);
    // Trials share a store in rounds of this many, each round checked before the next starts on a
    // fresh store: a store grown to gigabytes over a thousand trials with no retention would time
    // the restarts rather than the crashes (each round is still a hundred kills of one store).
    let round_size = self::trials("HOMEOSTAT_KILL_ROUND", 100).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let next_id = Arc::new(AtomicU64::new(0));
    // A fixed sequence of pauses before the kill, spread over 50-800 ms.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut total = Effects::default();
    let (mut acknowledged_total, mut stored_total) = (0, 0);
    for (round, first) in (0..trials).step_by(round_size).enumerate() {
        let round_dir = dir.path().join(format!("round-{round}"));
        let store_dir = round_dir.join("store");
        std::fs::create_dir_all(&store_dir).expect("create the store dir");
        let effects_path = round_dir.join("effects.log");
        let config = config(&store_dir, &effects_path, "");
        let mut acknowledged = BTreeSet::new();
        for trial in first..trials.min(first + round_size) {
            let mut daemon =
                Daemon::start(&round_dir, &format!("trial-{}", trial % 4), &config).await;
            let load = Load::start(&daemon, &next_id);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pause = Duration::from_millis(50 + seed % 750);
            let started = Instant::now();
            while started.elapsed() < pause || load.tally.in_flight.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            daemon.kill_9();
            let tally = load.stop().await;
            acknowledged.extend(tally.acknowledged());
            drop(daemon);
        }
        let last = Daemon::start(&round_dir, "last", &config).await;
        runs_settle(&last).await;
        let stored = stored_ids(&last.config_path).await;
        drop(last);
        let missing: Vec<u64> = acknowledged.difference(&stored).copied().collect();
        let report = effects(&store_dir, &effects_path).await;
        println!(
            "sigkill round {round} (trials {first}..{}): {} acknowledged, {} missing; {}",
            trials.min(first + round_size),
            acknowledged.len(),
            missing.len(),
            report.counts(),
        );
        report.assert_clean(&format!("round {round}"), &missing, "");
        acknowledged_total += acknowledged.len();
        stored_total += stored.len();
        total.runs += report.runs;
        total.executed += report.executed;
        // The round passed: its store is not needed any more (a thousand trials would fill a disk).
        std::fs::remove_dir_all(&round_dir).expect("remove the round's store");
    }
    println!(
        "sigkill, {trials} trials: {acknowledged_total} alerts acknowledged, {stored_total} stored, 0 missing; \
         {} runs, {} effects, 0 non-idempotent effects repeated, 0 without intent",
        total.runs, total.executed,
    );
}
