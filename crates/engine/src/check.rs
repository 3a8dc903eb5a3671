//! Read-only checks for `wait` until and `assert` steps: a PromQL query against a Prometheus-compatible
//! API, or an HTTP request with an expected status.
//!
//! A PromQL check holds when the query returns at least one series (an alerting rule's semantics:
//! `up{job="api"} == 1` holds while some `api` target is up), or a non-zero scalar.

use std::time::Duration;

use homeostat_core::config::{Check, Prometheus};
use reqwest::{Method, Url};
use serde_json::{json, Value};

use crate::action::Outcome;

/// Evaluates `check` within `timeout`. Never panics; an unreachable endpoint is a failed outcome.
pub async fn evaluate(
    check: &Check,
    prometheus: Option<&Prometheus>,
    http: &reqwest::Client,
    timeout: Duration,
) -> Outcome {
    let evaluation = async {
        match (&check.promql, &check.http) {
            (Some(query), _) => promql(query, check, prometheus, http, timeout).await,
            (None, Some(request)) => {
                let method = Method::from_bytes(request.method.as_bytes())
                    .map_err(|_| format!("unknown method `{}`", request.method))?;
                let url = Url::parse(&request.url)
                    .map_err(|error| format!("invalid url `{}`: {error}", request.url))?;
                let reply = http
                    .request(method, url)
                    .send()
                    .await
                    .map_err(|error| format!("GET `{}`: {error}", request.url))?;
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                let status_ok = if request.expect_status.is_empty() {
                    status.is_success()
                } else {
                    request.expect_status.contains(&status.as_u16())
                };
                let body_ok = request
                    .body_contains
                    .as_deref()
                    .is_none_or(|needle| body.contains(needle));
                // Why it does not hold, for a `wait` step's last poll.
                let reason = if !status_ok {
                    let expected = if request.expect_status.is_empty() {
                        "2xx".to_string()
                    } else {
                        request
                            .expect_status
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    };
                    format!(
                        "{} `{}` answered {}, not {expected}",
                        request.method,
                        request.url,
                        status.as_u16()
                    )
                } else {
                    format!(
                        "the body of `{}` lacks `{}`",
                        request.url,
                        request.body_contains.as_deref().unwrap_or_default()
                    )
                };
                Ok((
                    status_ok && body_ok,
                    json!({ "status": status.as_u16() }),
                    reason,
                ))
            }
            (None, None) => Err("the check has neither `promql` nor `http`".to_string()),
        }
    };
    match tokio::time::timeout(timeout, evaluation).await {
        Err(_) => Outcome::timed_out(json!({}), timeout),
        Ok(Err(message)) => Outcome::failed(json!({}), message),
        Ok(Ok((true, output, _))) => Outcome::succeeded(output),
        Ok(Ok((false, output, reason))) => Outcome::failed(output, reason),
    }
}

async fn promql(
    query: &str,
    check: &Check,
    prometheus: Option<&Prometheus>,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<(bool, Value, String), String> {
    let base = check
        .prometheus_url
        .as_deref()
        .or(prometheus.map(|prometheus| prometheus.url.as_str()))
        .ok_or("no Prometheus to query; set `prometheus.url` in the config")?;
    let data = crate::prometheus::query(http, base, query, timeout).await?;
    let holds = match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => data["result"]
            .as_array()
            .is_some_and(|series| !series.is_empty()),
        Some("scalar") => data["result"][1]
            .as_str()
            .and_then(|value| value.parse::<f64>().ok())
            .is_some_and(|value| value != 0.0),
        _ => false,
    };
    let series = data["result"].as_array().map(Vec::len).unwrap_or(0);
    // The value read: a scalar's, or the first series' latest sample.
    let value = match data["resultType"].as_str() {
        Some("scalar") => data["result"][1].clone(),
        Some("vector") => data["result"][0]["value"][1].clone(),
        Some("matrix") => data["result"][0]["values"]
            .as_array()
            .and_then(|values| values.last())
            .map(|sample| sample[1].clone())
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let reason = if series == 0 && !value.is_string() {
        format!("`{query}` returned no series")
    } else {
        format!("`{query}` is {}", value.as_str().unwrap_or("0"))
    };
    let mut output = json!({ "query": query, "series": series });
    if !value.is_null() {
        output["value"] = value;
    }
    Ok((holds, output, reason))
}
