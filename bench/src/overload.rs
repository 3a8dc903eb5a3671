//! `overload`: homeostat under hostile and unlucky load, each phase bounded in time and stopping by
//! itself: its peak with large bodies, ten times that many clients, a flood of slow clients that
//! never finish their headers, and a signed webhook of 10,000 items. Throughout, `/healthz` is
//! probed and the daemon's RSS sampled; the peak is compared with the ceiling its limits state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::load::{ClosedLoop, Coverage, Target};
use crate::payload::{self, Flavor};
use crate::server::{HomeostatOptions, Server, BENCH_TOKEN, BENCH_WEBHOOK_SECRET};

#[derive(Args)]
pub struct OverloadArgs {
    /// The homeostat binary.
    #[arg(long)]
    homeostat: std::path::PathBuf,
    /// Length of each phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Connections at the peak; the overload phase uses ten times as many.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Alerts per request body (about 400 bytes each: 2,500 make a 1 MB body).
    #[arg(long, default_value_t = 2_500)]
    batch: usize,
    /// Slow clients in the flood.
    #[arg(long, default_value_t = 1_100)]
    slow_clients: usize,
    /// The daemon's `ulimit -n`, the common default.
    #[arg(long, default_value_t = 1_024)]
    max_open_files: u64,
    /// How long a client waits after a 429 before sending again: `Retry-After: 1` asks a second.
    #[arg(long, default_value_t = 1_000)]
    backoff_ms: u64,
    /// `server.max_inflight_bytes` for the daemon.
    #[arg(long, default_value_t = homeostat_core::config::Server::default().max_inflight_bytes as u64)]
    max_inflight_bytes: u64,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// What the limits promise for memory, as docs/config.md states it: the RSS the daemon's state
/// needs, plus a fixed 128 MiB (the writer's batch, SQLite's cache, the runtime), plus bodies in
/// flight at `INFLIGHT_FACTOR` times their size, plus 64 KiB of buffers per connection.
fn ceiling(state_rss: u64, max_inflight_bytes: u64) -> u64 {
    let max_connections = homeostat_core::config::Server::default().max_connections as u64;
    state_rss + (128 << 20) + INFLIGHT_FACTOR * max_inflight_bytes + max_connections * (64 << 10)
}

/// What a byte of request body costs while it is in flight: the bytes, the alerts parsed into
/// events, their JSON for the journal, the rows of the batch that commits them and the incident
/// writes correlation adds, and what the allocator keeps of it. Measured: 11.4 at 16 and 64 MiB.
const INFLIGHT_FACTOR: u64 = 12;

/// Samples the daemon's RSS every 20 ms and probes `/healthz` every 100 ms, until stopped.
struct Watch {
    stop: Arc<AtomicBool>,
    peak_rss: Arc<AtomicU64>,
    probes: Arc<AtomicU64>,
    probe_failures: Arc<AtomicU64>,
    probe_max_micros: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    fn start(server: &Server) -> Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_rss = Arc::new(AtomicU64::new(0));
        let probes = Arc::new(AtomicU64::new(0));
        let probe_failures = Arc::new(AtomicU64::new(0));
        let probe_max_micros = Arc::new(AtomicU64::new(0));
        let pid = server.pid;
        let sampler = tokio::spawn({
            let (stop, peak_rss) = (stop.clone(), peak_rss.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_of(pid) {
                        peak_rss.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        // Its own client, with a fresh connection per probe as a load balancer's check would open.
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .context("failed to build the probe client")?;
        let url = format!("{}/healthz", server.base_url);
        let prober = tokio::spawn({
            let (stop, probes, failures, max) = (
                stop.clone(),
                probes.clone(),
                probe_failures.clone(),
                probe_max_micros.clone(),
            );
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answered = client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|response| response.status().is_success());
                    probes.fetch_add(1, Ordering::Relaxed);
                    if !answered {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    max.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Ok(Watch {
            stop,
            peak_rss,
            probes,
            probe_failures,
            probe_max_micros,
            tasks: vec![sampler, prober],
        })
    }

    async fn stop(self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        json!({
            "peak_rss_bytes": self.peak_rss.load(Ordering::Relaxed),
            "healthz_probes": self.probes.load(Ordering::Relaxed),
            "healthz_failures": self.probe_failures.load(Ordering::Relaxed),
            "healthz_max_ms": self.probe_max_micros.load(Ordering::Relaxed) as f64 / 1000.0,
        })
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A closed loop of large bodies with `connections` clients; alerts per second accepted.
async fn large_bodies(
    server: &Server,
    connections: usize,
    batch: usize,
    duration: Duration,
    backoff: Duration,
) -> Result<Value> {
    // The same 20,000 alerts over and over: the daemon's state stays the same size, so what the
    // RSS shows is the cost of the load itself.
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let bodies = payload::build(Flavor::Webhook, batch, 20_000.max(batch), &starts_at);
    let body_bytes = bodies.mean_body_bytes();
    let target = Arc::new(Target {
        client: crate::load::client(connections, Duration::from_secs(30))?,
        url: format!("{}/api/v1/hooks/alertmanager", server.base_url),
        authorization: Some(crate::load::bearer(BENCH_TOKEN)?),
        bodies: Arc::new(bodies.bodies.clone()),
    });
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let watch = Watch::start(server)?;
    let outcome = ClosedLoop {
        connections,
        duration,
        max_requests: 1_000_000,
        backoff,
    }
    .run(&target, &coverage)
    .await;
    let mut result = watch.stop().await;
    let tally = &outcome.tally;
    let seconds = outcome.elapsed.as_secs_f64();
    result["connections"] = json!(connections);
    result["body_bytes"] = json!(body_bytes);
    result["accepted_requests"] = json!(tally.accepted);
    result["throttled_requests"] = json!(tally.throttled);
    result["rejected_requests"] = json!(tally.rejected);
    result["transport_errors"] = json!(tally.transport_errors);
    result["first_error"] = json!(tally.first_error);
    result["alerts_per_sec"] = json!((tally.accepted * batch as u64) as f64 / seconds);
    Ok(result)
}

/// `slow_clients` connections that send a request's first line and then one byte a second, never
/// finishing their headers, while a well-behaved client keeps sending alerts.
async fn slow_flood(server: &Server, slow_clients: usize, duration: Duration) -> Result<Value> {
    let address = server.base_url.trim_start_matches("http://").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..slow_clients {
        let (address, stop, connected, dropped) = (
            address.clone(),
            stop.clone(),
            connected.clone(),
            dropped.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Reconnects when the server closes it, as an attacker would.
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                connected.fetch_add(1, Ordering::Relaxed);
                let mut ok = stream
                    .write_all(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .is_ok();
                while ok && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    ok = stream.write_all(b"X").await.is_ok();
                }
                if !ok {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Let the flood take hold before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let bodies = payload::build(Flavor::Webhook, 100, 20_000, &starts_at);
    let target = Arc::new(Target {
        client: crate::load::client(8, Duration::from_secs(30))?,
        url: format!("{}/api/v1/hooks/alertmanager", server.base_url),
        authorization: Some(crate::load::bearer(BENCH_TOKEN)?),
        bodies: Arc::new(bodies.bodies.clone()),
    });
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let watch = Watch::start(server)?;
    let outcome = ClosedLoop {
        connections: 8,
        duration,
        max_requests: 1_000_000,
        backoff: Duration::from_millis(5),
    }
    .run(&target, &coverage)
    .await;
    let mut result = watch.stop().await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    result["slow_clients"] = json!(slow_clients);
    result["slow_connections_opened"] = json!(connected.load(Ordering::Relaxed));
    result["slow_connections_closed_by_server"] = json!(dropped.load(Ordering::Relaxed));
    result["alerts_per_sec_beside_the_flood"] =
        json!((outcome.tally.accepted * 100) as f64 / outcome.elapsed.as_secs_f64());
    result["well_behaved_failures"] =
        json!(outcome.tally.transport_errors + outcome.tally.rejected);
    Ok(result)
}

/// One signed webhook request with `items` items; how long it took and whether it was accepted.
async fn signed_webhook(server: &Server, items: usize) -> Result<Value> {
    let checks: Vec<Value> = (0..items)
        .map(|index| json!({"name": format!("check-{index}"), "state": "failing", "host": format!("host-{index}")}))
        .collect();
    let body = Bytes::from(serde_json::to_vec(&json!({"checks": checks}))?);
    // Signed as a sender does under the source's default replay protection: a delivery id and the
    // time, under the signature with the body.
    let delivery = format!("bench-{items}-{}", std::process::id());
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = homeostat_core::ingest::webhook::sign_delivery(
        BENCH_WEBHOOK_SECRET.as_bytes(),
        &delivery,
        &timestamp,
        &body,
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    let watch = Watch::start(server)?;
    let started = Instant::now();
    let response = client
        .post(format!("{}/api/v1/hooks/checks", server.base_url))
        .header("X-Homeostat-Signature", signature)
        .header("X-Homeostat-Delivery", delivery)
        .header("X-Homeostat-Timestamp", timestamp)
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await;
    let elapsed = started.elapsed();
    let (status, answer) = match response {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(error) => (0, crate::load::error_chain(&error)),
    };
    let mut result = watch.stop().await;
    result["items"] = json!(items);
    result["body_bytes"] = json!(body.len());
    result["status"] = json!(status);
    result["answer"] = json!(answer.chars().take(200).collect::<String>());
    result["seconds"] = json!(elapsed.as_secs_f64());
    Ok(result)
}

pub async fn run(args: OverloadArgs) -> Result<()> {
    let options = HomeostatOptions {
        queue_capacity: 4096,
        synchronous: "full",
        with_rule: false,
        ready_timeout: Duration::from_secs(30),
        server: format!("  max_inflight_bytes: {}\n", args.max_inflight_bytes),
        store: String::new(),
        extra: "sources:\n  - type: webhook\n    name: checks\n    secret: {env: HOMEOSTAT_BENCH_WEBHOOK_SECRET}\n    items: /checks\n    labels:\n      alertname: CheckFailing\n      check: \"{{ item.name }}\"\n      host: \"{{ item.host }}\"\n".into(),
        max_open_files: Some(args.max_open_files),
        postgres: false,
    };
    let duration = Duration::from_secs(args.duration_secs);
    let backoff = Duration::from_millis(args.backoff_ms);
    let server = Server::start_homeostat(&args.homeostat, &options).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_of(server.pid).unwrap_or(0);
    // The alerts the phases send, each once and one request at a time: the daemon's state is then
    // what it will be throughout, and the RSS after it is what the load adds to.
    eprintln!("settling the state: each of the 20,000 alerts once");
    let settle = large_bodies(&server, 1, args.batch, Duration::from_secs(3), backoff).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state_rss = rss_of(server.pid).unwrap_or(0);
    let stated = ceiling(state_rss, args.max_inflight_bytes);
    eprintln!(
        "homeostat ready (idle RSS {:.1} MiB, {:.1} MiB with its state; the stated ceiling is {:.1} MiB)",
        mib(idle_rss),
        mib(state_rss),
        mib(stated)
    );

    eprintln!(
        "peak: {} connections of {}-alert bodies",
        args.connections, args.batch
    );
    let peak = large_bodies(&server, args.connections, args.batch, duration, backoff).await?;
    eprintln!("{peak}");
    let overload_connections = args.connections * 10;
    eprintln!("10x overload: {overload_connections} connections of the same bodies");
    let overload =
        large_bodies(&server, overload_connections, args.batch, duration, backoff).await?;
    eprintln!("{overload}");
    eprintln!("slow-client flood: {} connections", args.slow_clients);
    let flood = slow_flood(&server, args.slow_clients, duration).await?;
    eprintln!("{flood}");
    eprintln!("signed webhooks of 1,000 and 10,000 items");
    let small = signed_webhook(&server, 1_000).await?;
    let large = signed_webhook(&server, 10_000).await?;
    eprintln!("{small}\n{large}");
    server.stop().await;

    let peak_rate = peak["alerts_per_sec"].as_f64().unwrap_or(0.0);
    let overload_rate = overload["alerts_per_sec"].as_f64().unwrap_or(0.0);
    let peaks = [&peak, &overload, &flood, &small, &large]
        .iter()
        .filter_map(|phase| phase["peak_rss_bytes"].as_u64())
        .max()
        .unwrap_or(0);
    let report = json!({
        "idle_rss_bytes": idle_rss,
        "state_rss_bytes": state_rss,
        "settle": settle,
        "max_inflight_bytes": args.max_inflight_bytes,
        "stated_ceiling_bytes": stated,
        "peak_rss_bytes": peaks,
        "peak": peak,
        "overload_10x": overload,
        "overload_ratio": if peak_rate > 0.0 { overload_rate / peak_rate } else { 0.0 },
        "slow_flood": flood,
        "webhook_1000": small,
        "webhook_10000": large,
        "webhook_cost_ratio": large["seconds"].as_f64().unwrap_or(0.0) / small["seconds"].as_f64().unwrap_or(1.0).max(1e-9),
    });
    println!("{}", text(&report));
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    // A refused webhook times the refusal, not the mapping: the figure would mean nothing.
    for webhook in [&report["webhook_1000"], &report["webhook_10000"]] {
        let status = webhook["status"].as_u64().unwrap_or(0);
        if !(200..300).contains(&status) {
            anyhow::bail!(
                "the signed webhook of {} items was answered {status}: {}",
                webhook["items"],
                webhook["answer"]
            );
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn text(report: &Value) -> String {
    let phase = |value: &Value| {
        format!(
            "{:>10.0} alerts/s, peak RSS {:>7.1} MiB, /healthz {} of {} failed (slowest {:.1} ms)",
            value["alerts_per_sec"]
                .as_f64()
                .or(value["alerts_per_sec_beside_the_flood"].as_f64())
                .unwrap_or(0.0),
            mib(value["peak_rss_bytes"].as_u64().unwrap_or(0)),
            value["healthz_failures"],
            value["healthz_probes"],
            value["healthz_max_ms"].as_f64().unwrap_or(0.0),
        )
    };
    format!(
        "overload (idle RSS {:.1} MiB, {:.1} MiB with its state; max_inflight_bytes {:.0} MiB; stated ceiling {:.1} MiB, peak {:.1} MiB)\n\
         peak ({} conns, {} B bodies):   {}\n\
         10x overload ({} conns):        {}  ({:.2}x the peak; {} x 429)\n\
         slow flood ({} slow clients): {}  ({} slow connections closed by the server)\n\
         signed webhook, 1,000 items:   {:.3} s (HTTP {})\n\
         signed webhook, 10,000 items:  {:.3} s (HTTP {}), {:.1}x the 1,000-item time\n",
        mib(report["idle_rss_bytes"].as_u64().unwrap_or(0)),
        mib(report["state_rss_bytes"].as_u64().unwrap_or(0)),
        mib(report["max_inflight_bytes"].as_u64().unwrap_or(0)),
        mib(report["stated_ceiling_bytes"].as_u64().unwrap_or(0)),
        mib(report["peak_rss_bytes"].as_u64().unwrap_or(0)),
        report["peak"]["connections"],
        report["peak"]["body_bytes"],
        phase(&report["peak"]),
        report["overload_10x"]["connections"],
        phase(&report["overload_10x"]),
        report["overload_ratio"].as_f64().unwrap_or(0.0),
        report["overload_10x"]["throttled_requests"],
        report["slow_flood"]["slow_clients"],
        phase(&report["slow_flood"]),
        report["slow_flood"]["slow_connections_closed_by_server"],
        report["webhook_1000"]["seconds"].as_f64().unwrap_or(0.0),
        report["webhook_1000"]["status"],
        report["webhook_10000"]["seconds"].as_f64().unwrap_or(0.0),
        report["webhook_10000"]["status"],
        report["webhook_cost_ratio"].as_f64().unwrap_or(0.0),
    )
}
