//! `http_probe`: requests a URL on an interval and emits a firing event after `failure_threshold`
//! consecutive failures and a resolved event after `success_threshold` consecutive successes.
//!
//! Only transitions become events, so a probe that stays down does not flood the journal.

use std::time::Duration;

use homeostat_core::clock::Clock;
use homeostat_core::config::HttpProbeSource;
use homeostat_core::event::{fingerprint, Labels};
use homeostat_core::{Event, Status};

use crate::Handle;

/// One probe's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Healthy { status: u16, latency_ms: u64 },
    Unhealthy { reason: String },
}

/// The probe's hysteresis: counts consecutive results and says when to fire or resolve.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub firing: bool,
    failures: u32,
    successes: u32,
    /// When the current firing episode started.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

impl State {
    /// Feeds one result; returns the status to emit when the probe crosses a threshold.
    pub fn observe(
        &mut self,
        healthy: bool,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> Option<Status> {
        if healthy {
            self.failures = 0;
            self.successes += 1;
            if self.firing && self.successes >= success_threshold {
                self.firing = false;
                return Some(Status::Resolved);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if !self.firing && self.failures >= failure_threshold {
                self.firing = true;
                return Some(Status::Firing);
            }
        }
        None
    }
}

pub fn labels(config: &HttpProbeSource) -> Labels {
    let mut labels = config.labels.clone();
    labels.insert("alertname".into(), "ProbeFailed".into());
    labels.insert("probe".into(), config.name.clone());
    labels.insert("url".into(), config.url.clone());
    labels
}

pub async fn check(
    config: &HttpProbeSource,
    client: &reqwest::Client,
    clock: &dyn Clock,
) -> Verdict {
    let method =
        reqwest::Method::from_bytes(config.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let began = clock.monotonic();
    let response = client
        .request(method, &config.url)
        .timeout(Duration::from_secs_f64(config.timeout_secs))
        .send()
        .await;
    let latency_ms = clock.monotonic().saturating_sub(began).as_millis() as u64;
    match response {
        Err(error) if error.is_timeout() => Verdict::Unhealthy {
            reason: format!("no answer within {}s", config.timeout_secs),
        },
        Err(error) => Verdict::Unhealthy {
            reason: format!("cannot reach `{}`: {}", config.url, root_cause(&error)),
        },
        Ok(response) => {
            let status = response.status().as_u16();
            let expected = if config.expect_status.is_empty() {
                response.status().is_success()
            } else {
                config.expect_status.contains(&status)
            };
            if !expected {
                Verdict::Unhealthy {
                    reason: format!("got status {status}"),
                }
            } else if config.max_latency_ms.is_some_and(|max| latency_ms > max) {
                Verdict::Unhealthy {
                    reason: format!(
                        "answered in {latency_ms} ms, over {} ms",
                        config.max_latency_ms.unwrap_or(0)
                    ),
                }
            } else {
                Verdict::Healthy { status, latency_ms }
            }
        }
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

pub async fn run(config: HttpProbeSource, handle: Handle, client: reqwest::Client) {
    let labels = labels(&config);
    let fingerprint = fingerprint(&labels);
    let mut state = State::default();
    // A probe that was firing before a restart must still be able to resolve.
    if let Ok(Some(last)) = handle.store().last_event(&config.name).await {
        if last.event.status == Status::Firing && last.event.fingerprint == fingerprint {
            state.firing = true;
            state.since = last.event.starts_at;
        }
    }
    let mut interval = tokio::time::interval(Duration::from_secs_f64(config.interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let verdict = check(&config, &client, &**handle.clock()).await;
        let healthy = matches!(verdict, Verdict::Healthy { .. });
        if !healthy {
            handle.metrics().source_error(&config.name, "probe_failed");
        }
        let Some(status) =
            state.observe(healthy, config.failure_threshold, config.success_threshold)
        else {
            continue;
        };
        let now = handle.clock().now();
        if status == Status::Firing {
            state.since = Some(now);
        }
        let mut annotations = Labels::new();
        match &verdict {
            Verdict::Unhealthy { reason } => {
                annotations.insert(
                    "summary".into(),
                    format!("probe `{}` is failing: {reason}", config.name),
                );
            }
            Verdict::Healthy { status, latency_ms } => {
                annotations.insert(
                    "summary".into(),
                    format!(
                        "probe `{}` is healthy again: status {status} in {latency_ms} ms",
                        config.name
                    ),
                );
            }
        }
        let event = Event::raised(
            &config.name,
            status,
            labels.clone(),
            annotations,
            state.since,
            now,
            None,
        );
        tracing::info!(probe = %config.name, status = status.as_str(), "probe changed state");
        handle.journal_own(&config.name, vec![event], None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;

    fn probe(url: String) -> HttpProbeSource {
        HttpProbeSource {
            name: "p".into(),
            url,
            method: "GET".into(),
            interval_secs: 1.0,
            timeout_secs: 1.0,
            expect_status: vec![],
            max_latency_ms: None,
            failure_threshold: 1,
            success_threshold: 1,
            labels: Default::default(),
        }
    }

    #[tokio::test]
    async fn checks_status_latency_and_reachability() {
        let router = axum::Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
            )
            .route(
                "/teapot",
                get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        let clock = homeostat_core::clock::SystemClock::default();
        let url = |path: &str| format!("http://{address}{path}");

        assert!(matches!(
            check(&probe(url("/ok")), &client, &clock).await,
            Verdict::Healthy { status: 200, .. }
        ));
        assert_eq!(
            check(&probe(url("/broken")), &client, &clock).await,
            Verdict::Unhealthy {
                reason: "got status 500".into()
            }
        );
        let mut teapot = probe(url("/teapot"));
        teapot.expect_status = vec![418];
        assert!(matches!(
            check(&teapot, &client, &clock).await,
            Verdict::Healthy { status: 418, .. }
        ));
        let mut slow = probe(url("/slow"));
        slow.max_latency_ms = Some(50);
        let Verdict::Unhealthy { reason } = check(&slow, &client, &clock).await else {
            panic!("slow passed")
        };
        assert!(reason.contains("over 50 ms"), "{reason}");
        slow.timeout_secs = 0.05;
        slow.max_latency_ms = None;
        assert_eq!(
            check(&slow, &client, &clock).await,
            Verdict::Unhealthy {
                reason: "no answer within 0.05s".into()
            }
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address");
        let Verdict::Unhealthy { reason } =
            check(&probe(format!("http://{closed}/")), &client, &clock).await
        else {
            panic!("a closed port passed")
        };
        assert!(
            reason.contains("connection refused") || reason.contains("Connection refused"),
            "{reason}"
        );
    }

    #[test]
    fn fires_and_resolves_on_thresholds_only() {
        let mut state = State::default();
        let mut seen = Vec::new();
        for healthy in [
            true, false, true, false, false, false, true, true, false, true, true,
        ] {
            seen.push(state.observe(healthy, 2, 2));
        }
        use Status::*;
        assert_eq!(
            seen,
            vec![
                None,
                None,
                None,
                None,
                Some(Firing),
                None,
                None,
                Some(Resolved),
                None,
                None,
                None
            ]
        );
    }
}
