//! How cost grows: ingest against the number of rules and the incidents in history, restart time
//! against the journal's length, and list pages (first and deep) against the rows in the store.
//!
//! Each curve is a table on stdout, a JSON file with `--out`, and an SVG plot per curve with
//! `--plots DIR` (`bench/run-all.sh` turns them into PNG files with headless Chromium). The SVG is
//! a few lines of our own: four line charts do not need a plotting crate and its font stack.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::load::{self, ClosedLoop, Coverage, Target};
use crate::payload::{self, Bodies, Flavor};
use crate::server::{HomeostatOptions, Server, BENCH_TOKEN};

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// The homeostat binary.
    #[arg(long)]
    homeostat: PathBuf,
    /// Rule counts for the ingest-against-rules curve; no rule matches the load, so what is
    /// measured is the cost of finding that out.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    rules: Vec<usize>,
    /// Incidents in history for the ingest and list curves: every alert is new and opens one.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    history: Vec<usize>,
    /// Events in the journal for the restart curve: re-sends of `--restart-alerts` alerts.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
    journal: Vec<usize>,
    /// Distinct alerts re-sent to grow the journal for the restart curve.
    #[arg(long, default_value_t = 10_000)]
    restart_alerts: usize,
    /// Alerts sent to measure each point's ingest rate.
    #[arg(long, default_value_t = 100_000)]
    measure_alerts: usize,
    /// Alerts per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Timed requests per list page measured; the median is reported.
    #[arg(long, default_value_t = 21)]
    page_samples: usize,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write one SVG plot per curve into this folder.
    #[arg(long)]
    plots: Option<PathBuf>,
}

pub async fn run(args: ScaleArgs) -> Result<()> {
    if args.batch == 0 || args.measure_alerts < args.batch {
        bail!("`--batch` must be at least 1 and at most `--measure-alerts`");
    }
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let rules = rules_curve(&args, &started).await?;
    let history = history_curve(&args, &started).await?;
    let restart = restart_curve(&args, &started).await?;

    println!(
        "ingest against rules (batch {}, {} connections; no rule matches)",
        args.batch, args.connections
    );
    println!("{:>8} {:>14}", "rules", "alerts/s");
    for point in &rules {
        println!(
            "{:>8} {:>14.0}",
            point["rules"],
            point["alerts_per_sec"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
    println!("ingest and list pages against incidents in history (each alert opens one)");
    println!(
        "{:>10} {:>12} {:>16} {:>16} {:>16} {:>16}",
        "incidents", "alerts/s", "incidents 1st", "incidents deep", "events 1st", "events deep"
    );
    for point in &history {
        let ms = |key: &str| point[key].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>10} {:>12.0} {:>13.2} ms {:>13.2} ms {:>13.2} ms {:>13.2} ms",
            point["incidents"],
            ms("alerts_per_sec"),
            ms("incidents_first_page_ms"),
            ms("incidents_deep_page_ms"),
            ms("events_first_page_ms"),
            ms("events_deep_page_ms"),
        );
    }
    println!();
    println!("restart (SIGKILL, then start until /readyz) against events in the journal");
    println!("{:>12} {:>12}", "events", "restart");
    for point in &restart {
        println!(
            "{:>12} {:>10.2} s",
            point["events"],
            point["restart_secs"].as_f64().unwrap_or(f64::NAN)
        );
    }

    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
        let series = |points: &[Value], x: &str, y: &str| -> Vec<(f64, f64)> {
            points
                .iter()
                .filter_map(|point| Some((point[x].as_f64()?, point[y].as_f64()?)))
                .collect()
        };
        plot(
            &dir.join("scale-rules.svg"),
            "Ingest against rules",
            "rules",
            "alerts/s",
            &[("homeostat", series(&rules, "rules", "alerts_per_sec"))],
        )?;
        plot(
            &dir.join("scale-history.svg"),
            "Ingest against incidents in history",
            "incidents in the store",
            "alerts/s",
            &[("homeostat", series(&history, "incidents", "alerts_per_sec"))],
        )?;
        plot(
            &dir.join("scale-pages.svg"),
            "List pages against rows in the store",
            "incidents in the store (events: the same number)",
            "ms, median",
            &[
                (
                    "incidents, first page",
                    series(&history, "incidents", "incidents_first_page_ms"),
                ),
                (
                    "incidents, deep page",
                    series(&history, "incidents", "incidents_deep_page_ms"),
                ),
                (
                    "events, first page",
                    series(&history, "incidents", "events_first_page_ms"),
                ),
                (
                    "events, deep page",
                    series(&history, "incidents", "events_deep_page_ms"),
                ),
            ],
        )?;
        plot(
            &dir.join("scale-restart.svg"),
            "Restart against the journal's length",
            "events in the journal",
            "seconds to ready",
            &[("homeostat", series(&restart, "events", "restart_secs"))],
        )?;
    }
    if let Some(path) = &args.out {
        let value = json!({"rules": rules, "history": history, "restart": restart,
            "batch": args.batch, "connections": args.connections});
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(())
}

pub(crate) fn options(extra: String) -> HomeostatOptions {
    // The history curve opens up to 1.1 million incidents that never resolve: the correlator's
    // worst case, which `incidents.max_open` (50,000 by default) would cut short.
    let extra = format!("incidents: {{max_open: 0}}\n{extra}");
    HomeostatOptions {
        queue_capacity: 4096,
        synchronous: "full",
        with_rule: false,
        ready_timeout: Duration::from_secs(600),
        extra,
        server: String::new(),
        store: String::new(),
        max_open_files: None,
        postgres: false,
    }
}

/// `count` rules, none matching the load's `alertname="Bench"`: each would run a step on its own
/// alert name, as a real rule set is mostly rules for other alerts.
fn rules_config(count: usize) -> String {
    let mut text = String::from("rules:\n");
    for index in 0..count {
        let _ = write!(
            text,
            "  - name: rule-{index}\n    match: ['alertname=\"Other{index}\"', 'severity=\"page\"']\n    target: \"{{{{ labels.instance }}}}\"\n    steps:\n      - {{name: say, action: log, with: {{message: hi}}}}\n"
        );
    }
    text
}

/// Sends `requests` more bodies of `bodies`, in order from where the coverage stands; alerts/s.
pub(crate) async fn send(
    target: &Arc<Target>,
    coverage: &Arc<Coverage>,
    bodies: &Bodies,
    connections: usize,
    requests: u64,
) -> Result<f64> {
    let phase = ClosedLoop {
        connections,
        duration: Duration::from_secs(3_600),
        max_requests: requests,
        backoff: Duration::from_millis(5),
    };
    let outcome = phase.run(target, coverage).await;
    if let Some(error) = &outcome.tally.first_error {
        if outcome.tally.accepted == 0 {
            bail!("no request was accepted: {error}");
        }
    }
    Ok(outcome.tally.accepted as f64 * bodies.batch as f64 / outcome.elapsed.as_secs_f64())
}

fn load_target(args: &ScaleArgs, server: &Server, bodies: &Bodies) -> Result<Arc<Target>> {
    Ok(Arc::new(Target {
        client: load::client(args.connections, Duration::from_secs(60))?,
        url: format!("{}/api/v1/hooks/alertmanager", server.base_url),
        authorization: Some(load::bearer(BENCH_TOKEN)?),
        bodies: Arc::new(bodies.bodies.clone()),
    }))
}

async fn rules_curve(args: &ScaleArgs, starts_at: &str) -> Result<Vec<Value>> {
    let bodies = payload::build(Flavor::Webhook, args.batch, 10_000, starts_at);
    let requests = (args.measure_alerts / args.batch) as u64;
    let mut points = Vec::new();
    for &count in &args.rules {
        eprintln!("rules {count}: starting homeostat");
        let server =
            Server::start_homeostat(&args.homeostat, &options(rules_config(count))).await?;
        let target = load_target(args, &server, &bodies)?;
        let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
        // A warm-up of the same size: the first pass opens the incidents, the measured one repeats.
        send(&target, &coverage, &bodies, args.connections, requests).await?;
        let rate = send(&target, &coverage, &bodies, args.connections, requests).await?;
        eprintln!("rules {count}: {rate:.0} alerts/s");
        points.push(json!({"rules": count, "alerts_per_sec": rate}));
        server.stop().await;
    }
    Ok(points)
}

/// The median time of `samples` GETs of `path`.
async fn page_ms(client: &reqwest::Client, base: &str, path: &str, samples: usize) -> Result<f64> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(BENCH_TOKEN)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        if !response.status().is_success() {
            bail!("GET {path}: {}", response.status());
        }
        response.bytes().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The newest key of a list (`events` by `seq`, `incidents` by `id`): how many the store holds,
/// read from the store rather than counted by the generator, whose tasks claim a few more bodies
/// than they send at the end of each phase.
pub(crate) async fn newest(
    client: &reqwest::Client,
    base: &str,
    list: &str,
    key: &str,
) -> Result<u64> {
    let body: Value = client
        .get(format!("{base}/api/v1/{list}?limit=1"))
        .bearer_auth(BENCH_TOKEN)
        .send()
        .await
        .with_context(|| format!("GET /api/v1/{list}"))?
        .json()
        .await?;
    Ok(body[list][0][key].as_u64().unwrap_or(0))
}

/// Grows one store to each size in turn and measures there. The deep page starts halfway down
/// each list; following `next` that far would take longer than the point, so its cursor is made
/// from the key (events by sequence number, incidents by number), which is what `next` holds.
async fn history_curve(args: &ScaleArgs, starts_at: &str) -> Result<Vec<Value>> {
    let Some(&largest) = args.history.iter().max() else {
        return Ok(Vec::new());
    };
    // Room for the measured alerts after the largest size, and for what the phases skip.
    let total = largest + 2 * args.measure_alerts * args.history.len();
    let bodies = payload::build(Flavor::Webhook, args.batch, total, starts_at);
    eprintln!("history: starting homeostat; up to {total} alerts, each its own incident");
    let server = Server::start_homeostat(&args.homeostat, &options(String::new())).await?;
    let target = load_target(args, &server, &bodies)?;
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let client = load::client(1, Duration::from_secs(60))?;
    let base = server.base_url.clone();
    let mut sorted = args.history.clone();
    sorted.sort_unstable();
    let mut points = Vec::new();
    for size in sorted {
        let stored = newest(&client, &base, "incidents", "id").await? as usize;
        let fill = size.saturating_sub(stored).div_ceil(args.batch) as u64;
        if fill > 0 {
            let rate = send(&target, &coverage, &bodies, args.connections, fill).await?;
            eprintln!("history: filled to {size} incidents at {rate:.0} alerts/s");
        }
        let requests = (args.measure_alerts / args.batch) as u64;
        let rate = send(&target, &coverage, &bodies, args.connections, requests).await?;
        let incidents = newest(&client, &base, "incidents", "id").await?;
        let events = newest(&client, &base, "events", "seq").await?;
        let samples = args.page_samples;
        let incidents_deep = format!("/api/v1/incidents?limit=100&before={}", incidents / 2 + 1);
        let events_deep = format!("/api/v1/events?limit=100&before={}", events / 2 + 1);
        let point = json!({
            "incidents": incidents,
            "events": events,
            "alerts_per_sec": rate,
            "incidents_first_page_ms": page_ms(&client, &base, "/api/v1/incidents?limit=100", samples).await?,
            "incidents_deep_page_ms": page_ms(&client, &base, &incidents_deep, samples).await?,
            "events_first_page_ms": page_ms(&client, &base, "/api/v1/events?limit=100", samples).await?,
            "events_deep_page_ms": page_ms(&client, &base, &events_deep, samples).await?,
        });
        eprintln!("history: {point}");
        points.push(point);
    }
    server.stop().await;
    Ok(points)
}

async fn restart_curve(args: &ScaleArgs, starts_at: &str) -> Result<Vec<Value>> {
    let bodies = payload::build(Flavor::Webhook, args.batch, args.restart_alerts, starts_at);
    eprintln!("restart: starting homeostat");
    let mut server = Server::start_homeostat(&args.homeostat, &options(String::new())).await?;
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let client = load::client(1, Duration::from_secs(60))?;
    let mut sorted = args.journal.clone();
    sorted.sort_unstable();
    let mut points = Vec::new();
    for events in sorted {
        let stored = newest(&client, &server.base_url, "events", "seq").await? as usize;
        let more = events.saturating_sub(stored).div_ceil(args.batch) as u64;
        if more > 0 {
            let target = load_target(args, &server, &bodies)?;
            let rate = send(&target, &coverage, &bodies, args.connections, more).await?;
            eprintln!("restart: journal at {events} events ({rate:.0} alerts/s)");
        }
        let stored = newest(&client, &server.base_url, "events", "seq").await?;
        let (restarted, took) = server.restart_homeostat(&args.homeostat).await?;
        server = restarted;
        eprintln!(
            "restart: {stored} events, ready after {:.2} s",
            took.as_secs_f64()
        );
        points.push(json!({"events": stored, "restart_secs": took.as_secs_f64()}));
    }
    server.stop().await;
    Ok(points)
}

/// A line chart of `series` on log-scaled x (the curves span orders of magnitude), linear y from
/// zero, as a standalone SVG.
fn plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let (width, height, left, right, top, bottom) = (760.0, 460.0, 80.0, 20.0, 50.0, 70.0);
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, points)| points.iter().copied())
        .filter(|(x, y)| *x > 0.0 && y.is_finite())
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let x_min = points
        .iter()
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor();
    let x_max = points
        .iter()
        .map(|p| p.0)
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(x_min + 1.0);
    let y_max = nice_ceiling(points.iter().map(|p| p.1).fold(0.0, f64::max));
    let sx = |x: f64| left + (x.log10() - x_min) / (x_max - x_min) * (width - left - right);
    let sy = |y: f64| height - bottom - y / y_max * (height - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"17\">{title}</text>\n",
        width / 2.0
    );
    for tick in 0..=5 {
        let value = y_max * tick as f64 / 5.0;
        let y = sy(value);
        let _ = writeln!(svg, "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", width - right, left - 6.0, y + 4.0, short(value));
    }
    let mut decade = x_min;
    while decade <= x_max {
        let x = sx(10f64.powf(decade));
        let _ = writeln!(svg, "<line x1=\"{x}\" x2=\"{x}\" y1=\"{top}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>", height - bottom, height - bottom + 18.0, short(10f64.powf(decade)));
        decade += 1.0;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>",
        (left + width - right) / 2.0,
        height - 22.0
    );
    let _ = writeln!(
        svg,
        "<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">{y_label}</text>",
        (top + height - bottom) / 2.0
    );
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|(x, y)| *x > 0.0 && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for point in &path {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3.5\" fill=\"{color}\"/>"
            );
        }
        let legend_y = top + 8.0 + index as f64 * 18.0;
        let _ = writeln!(svg, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{name}</text>", width - right - 230.0, legend_y - 10.0, width - right - 212.0, legend_y);
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).with_context(|| format!("failed to write `{}`", path.display()))
}

/// The next round number at or above `value`, for the top of an axis.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn short(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v if v >= 10.0 || v == 0.0 => format!("{v:.0}"),
        v => format!("{v:.2}"),
    }
}
