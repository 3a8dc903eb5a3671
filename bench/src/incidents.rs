//! `incidents`: the correlator alone, in process, and Alertmanager grouping the same alerts in the
//! same run. Events per second through `Correlator::observe` (new alerts, re-sends, resolves and
//! re-fires), and memory per active alert, beside Alertmanager's ingest rate over its API and its
//! RSS per active alert for the same groupings.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use homeostat_core::config::incidents::Incidents;
use homeostat_core::event::{fingerprint, new_id};
use homeostat_core::incident::correlate::{Correlator, Settings};
use homeostat_core::{Event, EventKind, Labels, Status};
use serde_json::json;

#[derive(Args)]
pub struct IncidentArgs {
    /// Distinct alerts, all firing at once.
    #[arg(long, default_value_t = 100_000)]
    alerts: usize,
    /// Values of the `service` label, so `group_by: [service]` makes this many groups.
    #[arg(long, default_value_t = 10_000)]
    groups: usize,
    /// Groupings measured, each one `group_by` key (`...` is one group per alert); the targets
    /// are stated for the first.
    #[arg(long, value_delimiter = ',', default_value = "service,alertname,...")]
    group_by: Vec<String>,
    /// Times each correlation pass is measured, each on a fresh correlator; the median is the figure.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Measure homeostat only.
    #[arg(long)]
    skip_alertmanager: bool,
    /// The Alertmanager binary; by default `alertmanager`, then `prometheus-alertmanager`, on `PATH`.
    #[arg(long)]
    alertmanager: Option<PathBuf>,
    /// Alerts per `POST /api/v2/alerts`.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Requests to Alertmanager kept in flight.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long Alertmanager is left alone after grouping every alert, before its RSS is read.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// The most one Alertmanager run may take, start to stop; past it the run is abandoned.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Measure only the correlator's memory for this grouping (`incidents` runs this in a fresh
    /// child process per grouping, so that memory freed by the other measures is not reused).
    #[arg(long, hide = true)]
    memory_only: Option<String>,
}

/// Alert names, so `group_by: [alertname]` makes ten large groups.
const ALERT_NAMES: [&str; 10] = [
    "HighErrorRate",
    "HighLatencyP99",
    "PodCrashLooping",
    "DiskWillFillIn4Hours",
    "MemoryPressure",
    "CPUThrottlingHigh",
    "TargetDown",
    "CertificateExpiringSoon",
    "ReplicasMismatch",
    "QueueBacklogGrowing",
];

/// One alert's labels, annotations and generator URL, as Prometheus would send them.
struct Alert {
    labels: Labels,
    annotations: Labels,
    generator_url: String,
}

/// Alert `index`: services cycle fastest, so each of `groups` services gets one alert of each name
/// before any repeats a name; `instance` makes every label set distinct.
fn alert(index: usize, groups: usize) -> Alert {
    let service = format!("svc-{:05}", index % groups);
    let alertname = ALERT_NAMES[(index / groups) % ALERT_NAMES.len()];
    let instance = format!("{service}-{}.prod.internal:8080", index / groups);
    let severity = if (index / groups) % ALERT_NAMES.len() < 3 {
        "critical"
    } else {
        "warning"
    };
    let labels: Labels = [
        ("alertname", alertname),
        ("instance", &instance),
        ("job", "kubernetes-pods"),
        ("namespace", "prod"),
        ("service", &service),
        ("severity", severity),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let annotations: Labels = [
        ("summary", format!("{alertname} on {instance}")),
        (
            "description",
            format!("{service} has fired {alertname} on {instance} for more than 5 minutes; see the service dashboard."),
        ),
        ("runbook_url", format!("https://runbooks.example.com/alerts/{alertname}")),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    Alert {
        generator_url: format!(
            "http://prometheus.monitoring:9090/graph?g0.expr=alert%3A{alertname}%7Bservice%3D%22{service}%22%7D"
        ),
        labels,
        annotations,
    }
}

/// The event homeostat's `alertmanager` source makes of this alert.
fn event(
    alert: &Alert,
    status: Status,
    starts_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> Event {
    Event {
        id: new_id(received_at),
        source: "alertmanager".into(),
        kind: EventKind::Alert,
        status,
        fingerprint: fingerprint(&alert.labels),
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        starts_at: Some(starts_at),
        ends_at: (status == Status::Resolved).then_some(received_at),
        received_at,
        data: Some(json!({
            "generator_url": alert.generator_url,
            "receiver": "homeostat",
            "group_key": "{}:{}",
            "external_url": "http://alertmanager.monitoring:9093",
        })),
        ingested_by: Some("alertmanager".into()),
    }
}

/// Whether alert `index` is one of the tenth resolved and re-fired in the mixed pass: spread by a
/// hash rather than a stride, so no group loses all its members at once and incidents stay open.
fn resolved_in_mixed_pass(index: usize) -> bool {
    let mut x = (index as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)).is_multiple_of(10)
}

fn settings(group_by: &str) -> Result<Arc<Settings>> {
    let config = Incidents {
        group_by: vec![group_by.to_string()],
        ..Incidents::default()
    };
    Settings::compile(&config)
        .map(Arc::new)
        .map_err(|(field, message)| anyhow!("incidents.{field}: {message}"))
}

/// A fixed origin for the correlator's time, which is each event's `received_at`.
fn origin() -> DateTime<Utc> {
    DateTime::from_timestamp(1_798_761_600, 0).unwrap_or_default()
}

fn millis(count: usize) -> TimeDelta {
    TimeDelta::milliseconds(count as i64)
}

/// The events of the three passes, built before anything is timed.
struct Passes {
    new: Vec<Event>,
    repeats: Vec<Event>,
    mixed: Vec<Event>,
}

fn build_passes(alerts: &[Alert]) -> Passes {
    let started = origin() - TimeDelta::minutes(5);
    let pass_start = |pass: i64| origin() + TimeDelta::minutes(5 * pass);
    let new = alerts
        .iter()
        .enumerate()
        .map(|(index, alert)| {
            event(
                alert,
                Status::Firing,
                started,
                pass_start(0) + millis(index),
            )
        })
        .collect();
    // Alertmanager re-sends every firing alert each `repeat_interval`: same labels, same `startsAt`.
    let repeats = alerts
        .iter()
        .enumerate()
        .map(|(index, alert)| {
            event(
                alert,
                Status::Firing,
                started,
                pass_start(1) + millis(index),
            )
        })
        .collect();
    let mut mixed: Vec<Event> = alerts
        .iter()
        .enumerate()
        .map(|(index, alert)| {
            let status = if resolved_in_mixed_pass(index) {
                Status::Resolved
            } else {
                Status::Firing
            };
            event(alert, status, started, pass_start(2) + millis(index))
        })
        .collect();
    // The resolved tenth fires again, as a new occurrence with its own `startsAt`.
    let refired = pass_start(3);
    mixed.extend(
        alerts
            .iter()
            .enumerate()
            .filter(|(index, _)| resolved_in_mixed_pass(*index))
            .map(|(index, alert)| event(alert, Status::Firing, refired, refired + millis(index))),
    );
    Passes {
        new,
        repeats,
        mixed,
    }
}

/// One pass through the correlator: its rate, and what became of the events.
struct Pass {
    events: usize,
    secs: f64,
    changes: usize,
    verdicts: BTreeMap<&'static str, usize>,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }

    fn verdicts_text(&self) -> String {
        self.verdicts
            .iter()
            .map(|(verdict, count)| format!("{verdict} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Feeds `events` in, counting verdicts and dropping what `observe` returns, as the engine would
/// once it has stored the changes.
fn feed(correlator: &mut Correlator, events: &[Event]) -> Pass {
    let mut verdicts = BTreeMap::new();
    let mut changes = 0;
    let began = Instant::now();
    for event in events {
        let observed = correlator.observe(event);
        changes += observed.changes.len();
        let label = observed
            .verdict
            .as_ref()
            .map_or("none", |verdict| verdict.label());
        *verdicts.entry(label).or_insert(0) += 1;
    }
    Pass {
        events: events.len(),
        secs: began.elapsed().as_secs_f64(),
        changes,
        verdicts,
    }
}

/// The median-rate pass of each kind, for one grouping.
struct Throughput {
    group_by: String,
    new: Pass,
    repeats: Pass,
    mixed: Pass,
    tracked: usize,
}

fn throughput(group_by: &str, passes: &Passes, repeat: usize) -> Result<Throughput> {
    let settings = settings(group_by)?;
    let mut runs: [Vec<Pass>; 3] = Default::default();
    let mut tracked = 0;
    for _ in 0..repeat.max(1) {
        let mut correlator = Correlator::new(Arc::clone(&settings), 0);
        runs[0].push(feed(&mut correlator, &passes.new));
        if correlator.active_alerts() != passes.new.len() {
            bail!(
                "{} active alerts after {} new ones",
                correlator.active_alerts(),
                passes.new.len()
            );
        }
        tracked = correlator.tracked().count();
        runs[1].push(feed(&mut correlator, &passes.repeats));
        runs[2].push(feed(&mut correlator, &passes.mixed));
    }
    let [new, repeats, mixed] = runs.map(|mut measured| {
        measured.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        measured.swap_remove(measured.len() / 2)
    });
    Ok(Throughput {
        group_by: group_by.to_string(),
        new,
        repeats,
        mixed,
        tracked,
    })
}

/// The correlator's memory for one grouping, measured in a fresh child process.
struct Memory {
    group_by: String,
    active: usize,
    tracked: usize,
    rss_before: u64,
    rss_after: u64,
    snapshot_bytes: usize,
}

impl Memory {
    fn per_alert(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.active.max(1) as f64
    }

    fn line(&self) -> String {
        format!(
            "memory group_by={} active={} tracked={} rss_before={} rss_after={} snapshot_bytes={}",
            self.group_by,
            self.active,
            self.tracked,
            self.rss_before,
            self.rss_after,
            self.snapshot_bytes
        )
    }

    fn parse(text: &str) -> Option<Memory> {
        let line = text.lines().find(|line| line.starts_with("memory "))?;
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|field| field.split_once('='))
            .collect();
        let number = |key: &str| fields.get(key)?.parse::<u64>().ok();
        Some(Memory {
            group_by: fields.get("group_by")?.to_string(),
            active: number("active")? as usize,
            tracked: number("tracked")? as usize,
            rss_before: number("rss_before")?,
            rss_after: number("rss_after")?,
            snapshot_bytes: number("snapshot_bytes")? as usize,
        })
    }
}

/// Resident memory of a process, from `/proc/PID/status` (`self` for this one).
fn vm_rss_bytes(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("failed to read `/proc/{pid}/status`"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kilobytes| kilobytes.parse::<u64>().ok())
        .map(|kilobytes| kilobytes * 1024)
        .ok_or_else(|| anyhow!("no `VmRSS` in `/proc/{pid}/status`"))
}

/// The child's side: each event is made, observed and dropped with what `observe` returned, so
/// the growth of RSS is the correlator's state alone.
fn memory(group_by: &str, alerts: usize, groups: usize) -> Result<Memory> {
    let settings = settings(group_by)?;
    let started = origin() - TimeDelta::minutes(5);
    // Warm the allocator up on a throwaway correlator with other alerts, so the one-off cost of
    // its first pages is not counted per alert.
    {
        let mut warm = Correlator::new(Arc::clone(&settings), 0);
        for index in 0..1000 {
            let mut alert = alert(index, groups);
            alert.labels.insert("warm_up".into(), "true".into());
            let _ = warm.observe(&event(&alert, Status::Firing, started, origin()));
        }
    }
    let rss_before = vm_rss_bytes("self")?;
    let mut correlator = Correlator::new(settings, 0);
    for index in 0..alerts {
        let event = event(
            &alert(index, groups),
            Status::Firing,
            started,
            origin() + millis(index),
        );
        drop(correlator.observe(&event));
    }
    let rss_after = vm_rss_bytes("self")?;
    Ok(Memory {
        group_by: group_by.to_string(),
        active: correlator.active_alerts(),
        tracked: correlator.tracked().count(),
        rss_before,
        rss_after,
        snapshot_bytes: correlator.snapshot().len(),
    })
}

async fn memory_in_child(group_by: &str, args: &IncidentArgs) -> Result<Memory> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "incidents".to_string(),
            format!("--memory-only={group_by}"),
            format!("--alerts={}", args.alerts),
            format!("--groups={}", args.groups),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .context("failed to run the memory measure in a fresh process")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the memory measure for `group_by: [{group_by}]` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Memory::parse(&stdout)
        .ok_or_else(|| anyhow!("unexpected output of the memory measure: {stdout}"))
}

/// One Alertmanager run: ingest over its API, and its memory once every alert is grouped.
struct AlertmanagerRun {
    group_by: String,
    ingest_secs: f64,
    grouped_secs: f64,
    active: f64,
    groups: f64,
    rss_start: u64,
    rss_after: u64,
    heap_start: f64,
    heap_after: f64,
}

impl AlertmanagerRun {
    fn rate(&self, alerts: usize) -> f64 {
        alerts as f64 / self.ingest_secs
    }

    fn per_alert(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_start) as f64 / self.active.max(1.0)
    }
}

/// `alertmanager`, then `prometheus-alertmanager` (Debian's name), on `PATH`.
fn find_alertmanager() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["alertmanager", "prometheus-alertmanager"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
}

/// The same alerts as Alertmanager API v2 bodies, `batch` alerts each, firing for an hour from now.
fn alertmanager_bodies(alerts: &[Alert], batch: usize) -> Vec<bytes::Bytes> {
    let now = Utc::now();
    let stamp = |time: DateTime<Utc>| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (starts_at, ends_at) = (
        stamp(now - TimeDelta::minutes(5)),
        stamp(now + TimeDelta::hours(1)),
    );
    alerts
        .chunks(batch.max(1))
        .map(|chunk| {
            let body: Vec<_> = chunk
                .iter()
                .map(|alert| {
                    json!({
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "startsAt": starts_at,
                        "endsAt": ends_at,
                        "generatorURL": alert.generator_url,
                    })
                })
                .collect();
            bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
        })
        .collect()
}

/// The sum of a metric's samples in Prometheus text format (all label sets), `None` if absent.
fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

async fn scrape(client: &reqwest::Client, base_url: &str) -> Result<String> {
    let url = format!("{base_url}/metrics");
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("failed to scrape `{url}`"))?;
    Ok(response.text().await?)
}

fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn alertmanager_run(
    binary: &Path,
    group_by: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
    alerts: usize,
    connections: usize,
    settle: Duration,
) -> Result<AlertmanagerRun> {
    let dir = tempfile::Builder::new()
        .prefix("alertmanager-incidents-")
        .tempdir()
        .context("failed to create a temporary directory for alertmanager")?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("failed to find a free loopback port")?
        .port();
    let config_path = dir.path().join("alertmanager.yml");
    // One route to a receiver with no integrations: Alertmanager stores and groups the alerts and
    // notifies nobody.
    std::fs::write(
        &config_path,
        format!("route:\n  receiver: 'null'\n  group_by: ['{group_by}']\nreceivers:\n  - name: 'null'\n"),
    )
    .with_context(|| format!("failed to write `{}`", config_path.display()))?;
    let stderr_path = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // An empty cluster address turns gossip off, so nothing listens beyond loopback.
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).context("failed to create alertmanager's stderr log")?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start alertmanager from `{}`", binary.display()))?;
    let pid = child
        .id()
        .context("alertmanager exited at once")?
        .to_string();
    let base_url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("failed to build the HTTP client")?;
    let result = async {
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "alertmanager exited with {status}\n{}",
                    stderr_tail(&stderr_path)
                );
            }
            let ready = client.get(format!("{base_url}/-/ready")).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            if Instant::now() > ready_by {
                bail!(
                    "alertmanager was not ready within 30 s\n{}",
                    stderr_tail(&stderr_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let start-up garbage be collected before the baseline.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_start = vm_rss_bytes(&pid)?;
        let heap_start = metric(
            &scrape(&client, &base_url).await?,
            "go_memstats_heap_inuse_bytes",
        )
        .unwrap_or(0.0);
        let url = format!("{base_url}/api/v2/alerts");
        let next = Arc::new(AtomicUsize::new(0));
        let began = Instant::now();
        let mut senders = Vec::new();
        for _ in 0..connections.max(1) {
            let (client, url, bodies, next) = (
                client.clone(),
                url.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
            );
            senders.push(tokio::spawn(async move {
                while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|error| {
                            anyhow!("`POST {url}`: {}", crate::load::error_chain(&error))
                        })?;
                    let status = response.status();
                    if !status.is_success() {
                        let text = response.text().await.unwrap_or_default();
                        bail!(
                            "`POST {url}` answered HTTP {status}: {}",
                            text.chars().take(200).collect::<String>()
                        );
                    }
                }
                Ok(())
            }));
        }
        for sender in senders {
            sender.await??;
        }
        let ingest_secs = began.elapsed().as_secs_f64();
        // Every alert is stored and has passed through the dispatcher into its aggregation group.
        let text = loop {
            let text = scrape(&client, &base_url).await?;
            let stored = metric(&text, "alertmanager_alerts").unwrap_or(0.0);
            let dispatched = metric(
                &text,
                "alertmanager_dispatcher_alert_processing_duration_seconds_count",
            )
            .unwrap_or(0.0);
            if stored >= alerts as f64 && dispatched >= alerts as f64 {
                break text;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "alertmanager exited with {status}\n{}",
                    stderr_tail(&stderr_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let grouped_secs = began.elapsed().as_secs_f64();
        let active = metric(&text, "alertmanager_alerts").unwrap_or(0.0);
        // Settle, as the baseline did, so the figure is the memory held rather than a GC's peak.
        tokio::time::sleep(settle).await;
        let rss_after = vm_rss_bytes(&pid)?;
        let text = scrape(&client, &base_url).await?;
        Ok(AlertmanagerRun {
            group_by: group_by.to_string(),
            ingest_secs,
            grouped_secs,
            active,
            groups: metric(&text, "alertmanager_dispatcher_aggregation_groups").unwrap_or(0.0),
            rss_start,
            rss_after,
            heap_start,
            heap_after: metric(&text, "go_memstats_heap_inuse_bytes").unwrap_or(0.0),
        })
    }
    .await;
    // A kill that fails means it is already gone; the directory goes when `dir` drops, after it.
    let _ = child.kill().await;
    result
}

/// `123,456`: counts and rates in the tables.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut text = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// Events per second the issue asks of correlation, and bytes per active alert.
const TARGET_EVENTS_PER_SEC: f64 = 200_000.0;
const TARGET_BYTES_PER_ALERT: f64 = 500.0;

pub async fn run(args: IncidentArgs) -> Result<()> {
    if args.alerts == 0 || args.groups == 0 {
        bail!("`--alerts` and `--groups` must be positive");
    }
    if args.group_by.is_empty() {
        bail!("`--group-by` needs at least one grouping");
    }
    if let Some(group_by) = &args.memory_only {
        let measured = memory(group_by, args.alerts, args.groups)?;
        println!("{}", measured.line());
        return Ok(());
    }
    for group_by in &args.group_by {
        settings(group_by).with_context(|| format!("`--group-by {group_by}`"))?;
    }
    let alerts: Vec<Alert> = (0..args.alerts)
        .map(|index| alert(index, args.groups))
        .collect();
    println!(
        "{} distinct alerts: {} alert names x {} services, 6 labels and 3 annotations each",
        thousands(args.alerts as f64),
        ALERT_NAMES.len().min(args.alerts.div_ceil(args.groups)),
        thousands(args.groups.min(args.alerts) as f64)
    );

    // homeostat: the correlator in this process, then its memory in a fresh process per grouping.
    eprintln!("building {} events per pass", args.alerts);
    let passes = {
        let alerts = &alerts;
        tokio::task::block_in_place(|| build_passes(alerts))
    };
    let mut throughputs = Vec::new();
    for group_by in &args.group_by {
        eprintln!("correlating, group_by: [{group_by}]");
        throughputs.push(tokio::task::block_in_place(|| {
            throughput(group_by, &passes, args.repeat)
        })?);
    }
    drop(passes);
    println!();
    println!(
        "homeostat correlator, in process (Correlator::observe, events built beforehand; median of {}):",
        args.repeat.max(1)
    );
    println!(
        "{:<10}  {:>9}  {:<22}  {:>7}  {:>10}  {:>8}  verdicts",
        "group_by", "incidents", "pass", "events", "events/s", "changes"
    );
    for measured in &throughputs {
        for (name, pass) in [
            ("1 new alerts", &measured.new),
            ("2 re-sends (repeats)", &measured.repeats),
            ("3 resolve+re-fire 10%", &measured.mixed),
        ] {
            println!(
                "{:<10}  {:>9}  {:<22}  {:>7}  {:>10}  {:>8}  {}",
                measured.group_by,
                measured.tracked,
                name,
                pass.events,
                thousands(pass.rate()),
                pass.changes,
                pass.verdicts_text()
            );
        }
    }

    let mut memories = Vec::new();
    for group_by in &args.group_by {
        eprintln!("measuring memory in a fresh process, group_by: [{group_by}]");
        memories.push(memory_in_child(group_by, &args).await?);
    }
    println!();
    println!("homeostat correlator memory (fresh process per grouping; each event dropped after observe):");
    println!(
        "{:<10}  {:>7}  {:>9}  {:>13}  {:>12}  {:>7}  {:>14}",
        "group_by",
        "active",
        "incidents",
        "RSS before MB",
        "RSS after MB",
        "B/alert",
        "snapshot B/alert"
    );
    for memory in &memories {
        println!(
            "{:<10}  {:>7}  {:>9}  {:>13.1}  {:>12.1}  {:>7.0}  {:>16.0}",
            memory.group_by,
            memory.active,
            memory.tracked,
            memory.rss_before as f64 / 1e6,
            memory.rss_after as f64 / 1e6,
            memory.per_alert(),
            memory.snapshot_bytes as f64 / memory.active.max(1) as f64
        );
    }

    // Alertmanager: the same alerts over its API, once per grouping.
    let mut alertmanager: Vec<Result<AlertmanagerRun, String>> = Vec::new();
    let binary = args.alertmanager.clone().or_else(find_alertmanager);
    println!();
    match (&binary, args.skip_alertmanager) {
        (_, true) => println!("Alertmanager: skipped (--skip-alertmanager)"),
        (None, false) => {
            let line = "Alertmanager: not measured, neither `alertmanager` nor `prometheus-alertmanager` is on PATH \
                        (`apt-get install prometheus-alertmanager`, or `--alertmanager BIN`)";
            eprintln!("{line}");
            println!("{line}");
        }
        (Some(binary), false) => {
            let version = crate::version_of(binary, "--version")
                .await
                .unwrap_or_else(|| "version unknown".into());
            let bodies = Arc::new(alertmanager_bodies(&alerts, args.batch));
            for group_by in &args.group_by {
                eprintln!("alertmanager, group_by: ['{group_by}']");
                let run = tokio::time::timeout(
                    Duration::from_secs(args.timeout_secs),
                    alertmanager_run(
                        binary,
                        group_by,
                        Arc::clone(&bodies),
                        args.alerts,
                        args.connections,
                        Duration::from_secs(args.settle_secs),
                    ),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow!(
                        "abandoned after {} s (`--timeout-secs`)",
                        args.timeout_secs
                    ))
                });
                if let Err(error) = &run {
                    eprintln!("alertmanager, group_by: ['{group_by}'] failed: {error:#}");
                }
                alertmanager.push(run.map_err(|error| format!("{error:#}")));
            }
            println!(
                "Alertmanager `{}` ({version}): POST /api/v2/alerts over HTTP on loopback, {} alerts per request, {} in flight:",
                binary.display(),
                args.batch,
                args.connections
            );
            println!(
                "{:<10}  {:>7}  {:>6}  {:>8}  {:>10}  {:>9}  {:>13}  {:>12}  {:>7}  {:>14}",
                "group_by",
                "active",
                "groups",
                "ingest s",
                "alerts/s",
                "grouped s",
                "RSS before MB",
                "RSS after MB",
                "B/alert",
                "Go heap +MB"
            );
            for (group_by, run) in args.group_by.iter().zip(&alertmanager) {
                match run {
                    Ok(run) => println!(
                        "{:<10}  {:>7.0}  {:>6.0}  {:>8.2}  {:>10}  {:>9.2}  {:>13.1}  {:>12.1}  {:>7.0}  {:>14.1}",
                        run.group_by,
                        run.active,
                        run.groups,
                        run.ingest_secs,
                        thousands(run.rate(args.alerts)),
                        run.grouped_secs,
                        run.rss_start as f64 / 1e6,
                        run.rss_after as f64 / 1e6,
                        run.per_alert(),
                        (run.heap_after - run.heap_start) / 1e6
                    ),
                    Err(error) => println!("{group_by:<10}  failed: {}", error.lines().next().unwrap_or("")),
                }
            }
        }
    }

    println!();
    println!("side by side (homeostat in process, Alertmanager over HTTP: the rates are not the same measure):");
    println!(
        "{:<10}  {:>11}  {:>10}  {:>14}  {:>13}  {:>14}  {:>12}",
        "group_by",
        "homeostat B",
        "AM B",
        "AM / homeostat",
        "homeostat ev/s",
        "AM alerts/s",
        "ev/s ratio"
    );
    for (index, group_by) in args.group_by.iter().enumerate() {
        let homeostat_bytes = memories[index].per_alert();
        let homeostat_rate = throughputs[index].new.rate();
        let (am_bytes, am_rate) = match alertmanager.get(index) {
            Some(Ok(run)) => (Some(run.per_alert()), Some(run.rate(args.alerts))),
            _ => (None, None),
        };
        let show = |value: Option<f64>| value.map_or("-".to_string(), thousands);
        let ratio =
            |value: Option<f64>| value.map_or("-".to_string(), |value| format!("{value:.1}x"));
        println!(
            "{:<10}  {:>11}  {:>10}  {:>14}  {:>13}  {:>14}  {:>12}",
            group_by,
            thousands(homeostat_bytes),
            show(am_bytes),
            ratio(am_bytes.map(|bytes| bytes / homeostat_bytes.max(1.0))),
            thousands(homeostat_rate),
            show(am_rate),
            ratio(am_rate.map(|rate| homeostat_rate / rate))
        );
    }
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let (first, memory) = (&throughputs[0], &memories[0]);
    println!();
    println!(
        "targets, group_by: [{}] ({} incidents): bytes per active alert {:.0} < {TARGET_BYTES_PER_ALERT:.0}: {}",
        first.group_by,
        first.tracked,
        memory.per_alert(),
        verdict(memory.per_alert() < TARGET_BYTES_PER_ALERT)
    );
    for (name, pass) in [
        ("new alerts", &first.new),
        ("re-sends", &first.repeats),
        ("resolve+re-fire", &first.mixed),
    ] {
        println!(
            "targets, group_by: [{}]: {name} {} events/s > {}: {}",
            first.group_by,
            thousands(pass.rate()),
            thousands(TARGET_EVENTS_PER_SEC),
            verdict(pass.rate() > TARGET_EVENTS_PER_SEC)
        );
    }
    if alertmanager.iter().any(Result::is_err) {
        bail!("at least one Alertmanager run failed; see above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_distinct_and_grouped_by_service() {
        let alerts: Vec<Alert> = (0..200).map(|index| alert(index, 20)).collect();
        let fingerprints: std::collections::HashSet<_> = alerts
            .iter()
            .map(|alert| fingerprint(&alert.labels))
            .collect();
        assert_eq!(fingerprints.len(), 200);
        let services: std::collections::HashSet<_> = alerts
            .iter()
            .map(|alert| &alert.labels["service"])
            .collect();
        assert_eq!(services.len(), 20);
        let names: std::collections::HashSet<_> = alerts
            .iter()
            .map(|alert| &alert.labels["alertname"])
            .collect();
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn the_passes_open_repeat_resolve_and_fire_again() {
        let alerts: Vec<Alert> = (0..1000).map(|index| alert(index, 100)).collect();
        let passes = build_passes(&alerts);
        let measured = throughput("service", &passes, 1).unwrap();
        assert_eq!(measured.tracked, 100);
        assert_eq!(measured.new.verdicts["opened"], 100);
        assert_eq!(measured.new.verdicts["joined"], 900);
        assert_eq!(measured.repeats.verdicts["repeat"], 1000);
        let resolved = (0..1000)
            .filter(|index| resolved_in_mixed_pass(*index))
            .count();
        assert_eq!(measured.mixed.verdicts["member_resolved"], resolved);
        assert_eq!(measured.mixed.verdicts["fired_again"], resolved);
    }

    #[test]
    fn memory_lines_round_trip() {
        let memory = Memory {
            group_by: "...".into(),
            active: 10,
            tracked: 3,
            rss_before: 100,
            rss_after: 200,
            snapshot_bytes: 510,
        };
        let parsed = Memory::parse(&memory.line()).unwrap();
        assert_eq!(parsed.line(), memory.line());
    }

    #[test]
    fn metrics_are_summed_over_label_sets() {
        let text = "alertmanager_alerts{state=\"active\"} 5\nalertmanager_alerts{state=\"suppressed\"} 2\n\
                    alertmanager_alerts_received_total 9\nalertmanager_dispatcher_aggregation_groups 3\n";
        assert_eq!(metric(text, "alertmanager_alerts"), Some(7.0));
        assert_eq!(
            metric(text, "alertmanager_dispatcher_aggregation_groups"),
            Some(3.0)
        );
        assert_eq!(metric(text, "missing"), None);
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
