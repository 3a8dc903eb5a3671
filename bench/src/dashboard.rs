//! `dashboard`: how long the dashboard's pages take to load from a daemon with many incidents: the
//! incident list (first page of the open ones, first and deep page of all), and an incident whose
//! timeline has about a thousand entries, each the median of timed GETs with a session cookie.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::load::{self, Coverage, Target};
use crate::payload::{self, Flavor};
use crate::scale::{newest, options, send};
use crate::server::{Server, BENCH_TOKEN};

#[derive(clap::Args)]
pub struct DashboardArgs {
    /// The homeostat binary.
    #[arg(long)]
    homeostat: PathBuf,
    /// Incidents in the store, each opened by an alert of its own.
    #[arg(long, default_value_t = 100_000)]
    incidents: usize,
    /// Alerts of one service that fire and resolve, making one incident with a timeline of about
    /// four entries each (joined, its decision, resolved, its decision).
    #[arg(long, default_value_t = 250)]
    members: usize,
    /// Timed loads of each page; the median and the slowest are reported.
    #[arg(long, default_value_t = 21)]
    samples: usize,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(args: DashboardArgs) -> Result<()> {
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    eprintln!("dashboard: starting homeostat");
    let server = Server::start_homeostat(&args.homeostat, &options(String::new())).await?;
    let base = server.base_url.clone();
    let result = measure(&args, &server, &base, &starts_at).await;
    server.stop().await;
    let points = result?;

    println!(
        "dashboard page loads, {} incidents in the store, {} timed loads each",
        points[0]["incidents"], args.samples
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "page", "median ms", "max ms", "KiB"
    );
    for point in &points {
        println!(
            "{:<44} {:>10.1} {:>10.1} {:>10.1}",
            point["page"].as_str().unwrap_or(""),
            point["median_ms"].as_f64().unwrap_or(0.0),
            point["max_ms"].as_f64().unwrap_or(0.0),
            point["bytes"].as_f64().unwrap_or(0.0) / 1024.0,
        );
    }
    if let Some(path) = &args.out {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&json!({ "pages": points }))?,
        )
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(())
}

async fn measure(
    args: &DashboardArgs,
    server: &Server,
    base: &str,
    starts_at: &str,
) -> Result<Vec<Value>> {
    // The many: one incident per alert.
    let bodies = payload::build(Flavor::Webhook, 100, args.incidents, starts_at);
    let target = Arc::new(Target {
        client: load::client(16, Duration::from_secs(60))?,
        url: format!("{}/api/v1/hooks/alertmanager", server.base_url),
        authorization: Some(load::bearer(BENCH_TOKEN)?),
        bodies: Arc::new(bodies.bodies.clone()),
    });
    let coverage = Arc::new(Coverage::new(bodies.bodies.len()));
    let rate = send(&target, &coverage, &bodies, 16, bodies.bodies.len() as u64).await?;
    eprintln!("dashboard: {} alerts in at {rate:.0}/s", args.incidents);

    // The long one: alerts of one service that join one incident, then resolve.
    let client = load::client(1, Duration::from_secs(60))?;
    for status in ["firing", "resolved"] {
        for chunk in (0..args.members).collect::<Vec<_>>().chunks(100) {
            let alerts: Vec<Value> = chunk
                .iter()
                .map(|n| {
                    json!({"status": status, "startsAt": starts_at,
                           "labels": {"alertname": format!("Member{n}"), "service": "long-timeline"}})
                })
                .collect();
            let body =
                json!({"version": "4", "status": status, "receiver": "bench", "alerts": alerts});
            let response = client
                .post(format!("{base}/api/v1/hooks/alertmanager"))
                .bearer_auth(BENCH_TOKEN)
                .json(&body)
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("the long incident's alerts: {}", response.status());
            }
        }
    }
    let incidents = newest(&client, base, "incidents", "id").await?;
    let found: Value = client
        .get(format!(
            "{base}/api/v1/incidents?limit=1&label=service%3Dlong-timeline"
        ))
        .bearer_auth(BENCH_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let long = found["incidents"][0]["id"]
        .as_u64()
        .context("the long incident")?;
    let shown: Value = client
        .get(format!("{base}/api/v1/incidents/{long}"))
        .bearer_auth(BENCH_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let entries = shown["timeline"].as_array().map_or(0, Vec::len);
    eprintln!("dashboard: {incidents} incidents; #{long} has {entries} timeline entries");

    // Sign in as a browser would, and keep the session cookie.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let signed = browser
        .post(format!("{base}/login"))
        .form(&[("token", BENCH_TOKEN), ("next", "/incidents")])
        .send()
        .await?;
    let cookie = signed
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .context("no session cookie from /login")?
        .to_string();

    let pages = [
        (
            "incidents, open, first page".to_string(),
            "/incidents".to_string(),
        ),
        (
            "incidents, all, first page".to_string(),
            "/incidents?state=all".to_string(),
        ),
        (
            "incidents, all, deep page (halfway)".to_string(),
            format!("/incidents?state=all&before={}", incidents / 2),
        ),
        (
            "incidents, matcher search".to_string(),
            "/incidents?state=all&q=%7Bservice%3D%22long-timeline%22%7D".to_string(),
        ),
        (
            format!("incident with {entries} timeline entries"),
            format!("/incidents/{long}"),
        ),
        ("runs, first page".to_string(), "/runs".to_string()),
    ];
    let mut points = Vec::new();
    for (name, path) in pages {
        let mut times = Vec::with_capacity(args.samples);
        let mut bytes = 0;
        for _ in 0..args.samples.max(1) {
            let started = Instant::now();
            let response = browser
                .get(format!("{base}{path}"))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            if !response.status().is_success() {
                bail!("GET {path}: {}", response.status());
            }
            bytes = response.bytes().await?.len();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let point = json!({
            "page": name,
            "path": path,
            "incidents": incidents,
            "median_ms": times[times.len() / 2],
            "max_ms": times[times.len() - 1],
            "bytes": bytes,
        });
        eprintln!("dashboard: {point}");
        points.push(point);
    }
    Ok(points)
}
