//! The results of a run: the human tables printed on stdout and the JSON written with `--out`.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::load::{OpenOutcome, Tally};
use crate::promhist::{self, Quantile};
use crate::server::ProcessSample;

/// The targets from the issue, so that each table says whether they were met.
pub const TARGET_RATIO: f64 = 5.0;
pub const TARGET_P99_SECONDS: f64 = 0.001;
pub const TARGET_BYTES_PER_ALERT: f64 = 1024.0;

/// One server at one batch size in the ingest benchmark.
pub struct IngestRow {
    pub server: &'static str,
    pub batch: usize,
    pub result: Result<IngestMeasure, String>,
}

pub struct IngestMeasure {
    pub tally: Tally,
    pub elapsed: Duration,
    /// Distinct alerts that were answered 2xx at least once, warm-up included.
    pub active_alerts: usize,
    pub server_before: ProcessSample,
    pub server_after: ProcessSample,
    pub generator_cpu_secs: f64,
    pub server_cpu_secs: f64,
}

impl IngestMeasure {
    pub fn alerts_per_sec(&self, batch: usize) -> f64 {
        (self.tally.accepted * batch as u64) as f64 / self.elapsed.as_secs_f64()
    }

    fn requests_per_sec(&self) -> f64 {
        self.tally.accepted as f64 / self.elapsed.as_secs_f64()
    }

    fn rss_growth(&self) -> i64 {
        self.server_after.rss_bytes as i64 - self.server_before.rss_bytes as i64
    }

    pub fn bytes_per_active_alert(&self) -> Option<f64> {
        (self.active_alerts > 0).then(|| self.rss_growth() as f64 / self.active_alerts as f64)
    }
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1e3
}

fn cpu_percent(cpu_secs: f64, elapsed: Duration) -> f64 {
    100.0 * cpu_secs / elapsed.as_secs_f64()
}

fn mebibytes(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

/// homeostat's rate over Alertmanager's at one batch size, when both ran.
pub fn ratio(rows: &[IngestRow], batch: usize) -> Option<f64> {
    let rate = |server: &str| {
        rows.iter()
            .find(|row| row.batch == batch && row.server == server)
            .and_then(|row| row.result.as_ref().ok())
            .map(|measure| measure.alerts_per_sec(batch))
    };
    let (homeostat, alertmanager) = (rate("homeostat")?, rate("alertmanager")?);
    (alertmanager > 0.0).then(|| homeostat / alertmanager)
}

pub fn ingest_table(rows: &[IngestRow], batches: &[usize]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<12} {:>10} {:>9} {:>9} {:>7} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "batch",
        "server",
        "alerts/s",
        "req/s",
        "2xx",
        "429",
        "errors",
        "p50 ms",
        "p99 ms",
        "active",
        "RSS +MiB",
        "B/alert",
        "srv CPU",
        "gen CPU"
    );
    for row in rows {
        match &row.result {
            Ok(measure) => {
                let latency = &measure.tally.latency_micros;
                let _ = writeln!(
                    out,
                    "{:>5}  {:<12} {:>10.0} {:>9.0} {:>9} {:>7} {:>6} {:>8.3} {:>8.3} {:>8} {:>9.1} {:>9} {:>6.0}% {:>6.0}%",
                    row.batch,
                    row.server,
                    measure.alerts_per_sec(row.batch),
                    measure.requests_per_sec(),
                    measure.tally.accepted,
                    measure.tally.throttled,
                    measure.tally.rejected + measure.tally.transport_errors,
                    millis(latency.value_at_quantile(0.5)),
                    millis(latency.value_at_quantile(0.99)),
                    measure.active_alerts,
                    mebibytes(measure.rss_growth()),
                    measure.bytes_per_active_alert().map_or("n/a".into(), |bytes| format!("{bytes:.0}")),
                    cpu_percent(measure.server_cpu_secs, measure.elapsed),
                    cpu_percent(measure.generator_cpu_secs, measure.elapsed),
                );
                if let Some(error) = &measure.tally.first_error {
                    let _ = writeln!(out, "{:>5}  {:<12} first error: {error}", "", "");
                }
            }
            Err(error) => {
                let _ = writeln!(
                    out,
                    "{:>5}  {:<12} failed: {}",
                    row.batch,
                    row.server,
                    first_line(error)
                );
            }
        }
    }
    out.push('\n');
    for &batch in batches {
        match ratio(rows, batch) {
            Some(ratio) => {
                let _ = writeln!(
                    out,
                    "homeostat / alertmanager, batch {batch}: {ratio:.2}x (target >= {TARGET_RATIO}x: {})",
                    verdict(ratio >= TARGET_RATIO)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "homeostat / alertmanager, batch {batch}: n/a (both servers must run)"
                );
            }
        }
    }
    for row in rows.iter().filter(|row| row.server == "homeostat") {
        if let Some(bytes) = row
            .result
            .as_ref()
            .ok()
            .and_then(IngestMeasure::bytes_per_active_alert)
        {
            let _ = writeln!(
                out,
                "homeostat memory, batch {}: {bytes:.0} bytes of RSS growth per active alert (target < {TARGET_BYTES_PER_ALERT:.0}: {})",
                row.batch,
                verdict(bytes < TARGET_BYTES_PER_ALERT)
            );
        }
    }
    out.push_str(
        "\nLatency columns are client-side per request (2xx only). RSS +MiB is VmRSS after minus before the load; \
         B/alert divides it by the distinct alerts accepted. homeostat also writes every alert to its store on disk \
         (SQLite, or PostgreSQL with `--store postgres`), which RSS does not show; Alertmanager keeps them in memory \
         only. CPU is percent of one core over the measured phase (the machine's cores are shared by the generator \
         and the server); with `--store postgres`, homeostat's includes PostgreSQL's processes.\n",
    );
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

pub fn ingest_json(rows: &[IngestRow], batches: &[usize], parameters: Value) -> Value {
    let rows_json: Vec<Value> = rows
        .iter()
        .map(|row| match &row.result {
            Ok(measure) => json!({
                "server": row.server,
                "batch": row.batch,
                "alerts_per_sec": measure.alerts_per_sec(row.batch),
                "requests_per_sec": measure.requests_per_sec(),
                "elapsed_secs": measure.elapsed.as_secs_f64(),
                "answers": tally_json(&measure.tally),
                "client_latency_ms": histogram_json(&measure.tally.latency_micros),
                "active_alerts": measure.active_alerts,
                "rss_before_bytes": measure.server_before.rss_bytes,
                "rss_after_bytes": measure.server_after.rss_bytes,
                "rss_peak_bytes": measure.server_after.peak_rss_bytes,
                "rss_growth_bytes": measure.rss_growth(),
                "bytes_per_active_alert": measure.bytes_per_active_alert(),
                "server_cpu_secs": measure.server_cpu_secs,
                "generator_cpu_secs": measure.generator_cpu_secs,
            }),
            Err(error) => json!({"server": row.server, "batch": row.batch, "error": error}),
        })
        .collect();
    let ratios: Vec<Value> = batches
        .iter()
        .map(|&batch| {
            let ratio = ratio(rows, batch);
            json!({"batch": batch, "homeostat_over_alertmanager": ratio, "target": TARGET_RATIO,
                   "met": ratio.map(|ratio| ratio >= TARGET_RATIO)})
        })
        .collect();
    json!({"benchmark": "ingest", "parameters": parameters, "results": rows_json, "ratios": ratios})
}

fn tally_json(tally: &Tally) -> Value {
    json!({
        "accepted": tally.accepted,
        "throttled_429": tally.throttled,
        "rejected": tally.rejected,
        "transport_errors": tally.transport_errors,
        "first_error": tally.first_error,
    })
}

fn histogram_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": millis(histogram.value_at_quantile(0.5)),
        "p99": millis(histogram.value_at_quantile(0.99)),
        "p999": millis(histogram.value_at_quantile(0.999)),
        "max": millis(histogram.max()),
        "mean": histogram.mean() / 1e3,
    })
}

/// The latency benchmark's results.
pub struct LatencyReport {
    pub rate_per_sec: u64,
    pub outcome: OpenOutcome,
    /// The window of `homeostat_dispatch_latency_seconds`, or why it could not be read.
    pub dispatch: Result<promhist::Histogram, String>,
    pub server_before: ProcessSample,
    pub server_after: ProcessSample,
    pub active_alerts: usize,
    pub generator_cpu_secs: f64,
}

fn histogram_line(name: &str, histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return format!("{name:<44} n/a\n");
    }
    format!(
        "{name:<44} p50 {:>8.3} ms   p99 {:>8.3} ms   p999 {:>8.3} ms   max {:>8.3} ms\n",
        millis(histogram.value_at_quantile(0.5)),
        millis(histogram.value_at_quantile(0.99)),
        millis(histogram.value_at_quantile(0.999)),
        millis(histogram.max()),
    )
}

pub fn latency_text(report: &LatencyReport, metric: &str) -> String {
    let outcome = &report.outcome;
    let tally = &outcome.tally;
    let mut out = String::new();
    let elapsed = outcome.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "scheduled {} single-alert requests at {}/s; {} answered 2xx ({:.0}/s over {elapsed:.2} s), {} 429, {} errors",
        outcome.scheduled,
        report.rate_per_sec,
        tally.accepted,
        tally.accepted as f64 / elapsed,
        tally.throttled,
        tally.rejected + tally.transport_errors,
    );
    if outcome.sent < outcome.scheduled {
        let _ = writeln!(
            out,
            "only {} of {} requests were sent: sending fell more than a second behind schedule",
            outcome.sent, outcome.scheduled
        );
    }
    if let Some(error) = &tally.first_error {
        let _ = writeln!(out, "first error: {error}");
    }
    out.push('\n');
    match &report.dispatch {
        Ok(histogram) => {
            let p99 = histogram.quantile(0.99);
            let _ = writeln!(
                out,
                "receipt to dispatch (server-side, percentiles interpolated within the buckets of `{metric}`):"
            );
            let _ = writeln!(
                out,
                "  dispatches {:.0}   p50 {}   p99 {}   mean {}",
                histogram.count,
                histogram.quantile(0.5),
                p99,
                histogram.mean().map_or(Quantile::Empty, Quantile::Value),
            );
            let met = matches!(p99, Quantile::Value(value) if value < TARGET_P99_SECONDS);
            let _ = writeln!(out, "  target p99 < 1 ms: {}", verdict(met));
            let bounds: Vec<String> = histogram
                .buckets
                .iter()
                .map(|(bound, _)| {
                    if bound.is_finite() {
                        format!("{bound}")
                    } else {
                        "+Inf".into()
                    }
                })
                .collect();
            let _ = writeln!(out, "  bucket bounds (s): {}", bounds.join(" "));
        }
        Err(error) => {
            let _ = writeln!(out, "receipt to dispatch: unavailable: {error}");
        }
    }
    out.push('\n');
    out.push_str("client side (2xx only):\n");
    out.push_str(&histogram_line(
        "  request latency from intended send",
        &tally.latency_micros,
    ));
    out.push_str(&histogram_line(
        "  service time from actual send",
        &outcome.service_micros,
    ));
    out.push_str(&histogram_line(
        "  send delay behind schedule",
        &outcome.schedule_lag_micros,
    ));
    let growth = report.server_after.rss_bytes as i64 - report.server_before.rss_bytes as i64;
    let _ = writeln!(
        out,
        "\nserver RSS {:.1} MiB -> {:.1} MiB ({:+.1} MiB, {} distinct alerts accepted); generator CPU {:.0}% of a core",
        mebibytes(report.server_before.rss_bytes as i64),
        mebibytes(report.server_after.rss_bytes as i64),
        mebibytes(growth),
        report.active_alerts,
        cpu_percent(report.generator_cpu_secs, outcome.elapsed),
    );
    out
}

pub fn latency_json(report: &LatencyReport, metric: &str, parameters: Value) -> Value {
    let outcome = &report.outcome;
    let dispatch = match &report.dispatch {
        Ok(histogram) => json!({
            "metric": metric,
            "source": "interpolated within histogram buckets",
            "count": histogram.count,
            "p50_seconds": histogram.quantile(0.5).to_json(),
            "p99_seconds": histogram.quantile(0.99).to_json(),
            "mean_seconds": histogram.mean(),
            "buckets": histogram.buckets.iter().map(|(bound, count)| {
                json!({"le": if bound.is_finite() { json!(bound) } else { json!("+Inf") }, "count": count})
            }).collect::<Vec<_>>(),
            "target_p99_seconds": TARGET_P99_SECONDS,
        }),
        Err(error) => json!({"metric": metric, "error": error}),
    };
    json!({
        "benchmark": "latency",
        "parameters": parameters,
        "scheduled": outcome.scheduled,
        "sent": outcome.sent,
        "elapsed_secs": outcome.elapsed.as_secs_f64(),
        "answers": tally_json(&outcome.tally),
        "receipt_to_dispatch": dispatch,
        "client_latency_from_intended_ms": histogram_json(&outcome.tally.latency_micros),
        "client_service_time_ms": histogram_json(&outcome.service_micros),
        "send_delay_behind_schedule_ms": histogram_json(&outcome.schedule_lag_micros),
        "active_alerts": report.active_alerts,
        "rss_before_bytes": report.server_before.rss_bytes,
        "rss_after_bytes": report.server_after.rss_bytes,
        "generator_cpu_secs": report.generator_cpu_secs,
    })
}
