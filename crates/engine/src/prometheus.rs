//! Queries against a Prometheus-compatible HTTP API (`/api/v1/query`, `/api/v1/query_range`), for
//! the sources that read metrics (SLOs, anomaly detectors, forecasts) and for PromQL checks.

use std::collections::BTreeMap;
use std::time::Duration;

use homeostat_core::event::Labels;
use serde_json::Value;

async fn call(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
    query: &str,
    timeout: Duration,
) -> Result<Value, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let reply = client
        .get(&url)
        .query(params)
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| format!("querying `{url}`: {error}"))?;
    let status = reply.status();
    let body: Value = reply
        .json()
        .await
        .map_err(|error| format!("`{url}` did not answer JSON: {error}"))?;
    if !status.is_success() || body["status"] != "success" {
        let message = body["error"].as_str().unwrap_or("no error message");
        return Err(format!(
            "`{query}`: Prometheus answered {status}: {message}"
        ));
    }
    Ok(body["data"].clone())
}

/// One instant query's `data`, as Prometheus answered it; an error names the URL or the query.
pub async fn query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    timeout: Duration,
) -> Result<Value, String> {
    call(
        client,
        base,
        "/api/v1/query",
        &[("query", query.to_string())],
        query,
        timeout,
    )
    .await
}

fn number(text: &Value) -> Option<f64> {
    text.as_str().and_then(|text| text.parse::<f64>().ok())
}

/// One instant query; the value of each series by its labels (`__name__` included).
pub async fn instant(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    timeout: Duration,
) -> Result<BTreeMap<Labels, f64>, String> {
    instant_at(client, base, query, timeout)
        .await
        .map(|values| {
            values
                .into_iter()
                .map(|(labels, (_, value))| (labels, value))
                .collect()
        })
}

/// One instant query; the (unix seconds, value) of each series by its labels.
pub async fn instant_at(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    timeout: Duration,
) -> Result<BTreeMap<Labels, (f64, f64)>, String> {
    let data = self::query(client, base, query, timeout).await?;
    let sample = |pair: &Value| Some((pair[0].as_f64()?, number(&pair[1])?));
    let mut values = BTreeMap::new();
    match data["resultType"].as_str() {
        Some("vector") => {
            for series in data["result"].as_array().into_iter().flatten() {
                let labels: Labels =
                    serde_json::from_value(series["metric"].clone()).unwrap_or_default();
                if let Some(value) = sample(&series["value"]) {
                    values.insert(labels, value);
                }
            }
        }
        Some("scalar") => {
            if let Some(value) = sample(&data["result"]) {
                values.insert(Labels::new(), value);
            }
        }
        other => {
            return Err(format!(
                "`{query}` gave a {}, not an instant vector",
                other.unwrap_or("result of no type")
            ))
        }
    }
    Ok(values)
}

/// A range query from `start` to `end` (unix seconds) every `step` seconds; each series' samples
/// in time order, by its labels.
pub async fn range(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    (start, end, step): (f64, f64, f64),
    timeout: Duration,
) -> Result<BTreeMap<Labels, Vec<(f64, f64)>>, String> {
    let data = call(
        client,
        base,
        "/api/v1/query_range",
        &[
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ],
        query,
        timeout,
    )
    .await?;
    let mut all = BTreeMap::new();
    for series in data["result"].as_array().into_iter().flatten() {
        let labels: Labels = serde_json::from_value(series["metric"].clone()).unwrap_or_default();
        let samples: Vec<(f64, f64)> = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| Some((pair[0].as_f64()?, number(&pair[1])?)))
            .collect();
        all.insert(labels, samples);
    }
    Ok(all)
}
