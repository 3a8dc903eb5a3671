//! Load generators: a closed loop that measures throughput and an open loop at a fixed rate that measures latency.
//!
//! Both are bounded by a deadline and a request count, so a run always ends by itself, and both send only to the
//! loopback servers that the bench started.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::{Semaphore, TryAcquireError};

/// Where the load goes and what it sends.
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub authorization: Option<HeaderValue>,
    pub bodies: Arc<Vec<Bytes>>,
}

/// A client whose pool keeps one idle connection per load task, so that the steady state opens no connections.
pub fn client(connections: usize, request_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        // The servers are on loopback: a proxy from the environment must not intercept the load.
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(request_timeout)
        .build()
        .context("failed to build the HTTP client")
}

pub fn bearer(token: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the token is not a valid header value")
}

/// Which bodies were sent and which were accepted, shared by the warm-up and the measured phase of one server.
pub struct Coverage {
    next: AtomicU64,
    accepted: Vec<AtomicBool>,
}

impl Coverage {
    pub fn new(body_count: usize) -> Coverage {
        Coverage {
            next: AtomicU64::new(0),
            accepted: (0..body_count).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Bodies answered 2xx at least once; times the batch size, that is the number of distinct active alerts.
    pub fn bodies_accepted(&self) -> usize {
        self.accepted
            .iter()
            .filter(|flag| flag.load(Ordering::Relaxed))
            .count()
    }

    /// The next body in rotation, by sequence number, so that concurrent tasks cover all bodies evenly.
    fn next_index(&self) -> (u64, usize) {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        (sequence, (sequence % self.accepted.len() as u64) as usize)
    }

    pub fn sent(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// Counts of what the server answered, with a latency histogram in microseconds for 2xx answers.
pub struct Tally {
    pub accepted: u64,
    pub throttled: u64,
    pub rejected: u64,
    pub transport_errors: u64,
    pub first_error: Option<String>,
    pub latency_micros: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            accepted: 0,
            throttled: 0,
            rejected: 0,
            transport_errors: 0,
            first_error: None,
            latency_micros: micros_histogram(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.accepted += other.accepted;
        self.throttled += other.throttled;
        self.rejected += other.rejected;
        self.transport_errors += other.transport_errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        // Both histograms have the same bounds and saturate on record, so adding cannot fail.
        let _ = self.latency_micros.add(&other.latency_micros);
    }

    pub fn requests(&self) -> u64 {
        self.accepted + self.throttled + self.rejected + self.transport_errors
    }

    fn record_failure(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Accepted => {}
            Outcome::Throttled => self.throttled += 1,
            Outcome::Rejected(message) => {
                self.rejected += 1;
                self.first_error.get_or_insert_with(|| message.clone());
            }
            Outcome::Failed(message) => {
                self.transport_errors += 1;
                self.first_error.get_or_insert_with(|| message.clone());
            }
        }
    }
}

/// One microsecond to one minute at three significant digits: finer than any bucket a server exposes.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("the bounds are valid constants")
}

fn record_micros(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_micros().max(1).try_into().unwrap_or(u64::MAX));
}

enum Outcome {
    Accepted,
    Throttled,
    Rejected(String),
    Failed(String),
}

async fn send(target: &Target, index: usize) -> Outcome {
    let mut request = target
        .client
        .post(&target.url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(target.bodies[index].clone());
    if let Some(authorization) = &target.authorization {
        request = request.header(AUTHORIZATION, authorization.clone());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            // The body is read to the end so that the connection goes back to the pool.
            let body = response.bytes().await;
            if status.is_success() {
                Outcome::Accepted
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                Outcome::Throttled
            } else {
                let text = body.map(|bytes| {
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(300)
                        .collect::<String>()
                });
                Outcome::Rejected(format!("HTTP {status}: {}", text.unwrap_or_default()))
            }
        }
        Err(error) => Outcome::Failed(error_chain(&error)),
    }
}

/// An error with its causes, since reqwest's own message leaves out why a connection failed.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The closed loop: `connections` tasks, each sending its next request as soon as the previous one is answered.
pub struct ClosedLoop {
    pub connections: usize,
    pub duration: Duration,
    /// A cap on requests for the phase, in case the server answers faster than anything expected.
    pub max_requests: u64,
    /// Pause after a 429 or an error, so that back-pressure is honoured and a dead server is not hammered.
    pub backoff: Duration,
}

/// What one closed-loop phase did.
pub struct ClosedOutcome {
    pub tally: Tally,
    pub elapsed: Duration,
}

impl ClosedLoop {
    pub async fn run(&self, target: &Arc<Target>, coverage: &Arc<Coverage>) -> ClosedOutcome {
        let started = Instant::now();
        let deadline = started + self.duration;
        let last_sequence = coverage.sent().saturating_add(self.max_requests);
        let tasks: Vec<_> = (0..self.connections.max(1))
            .map(|_| {
                let (target, coverage, backoff) =
                    (Arc::clone(target), Arc::clone(coverage), self.backoff);
                tokio::spawn(async move {
                    let mut tally = Tally::new();
                    while Instant::now() < deadline {
                        let (sequence, index) = coverage.next_index();
                        if sequence >= last_sequence {
                            break;
                        }
                        let sent = Instant::now();
                        let outcome = send(&target, index).await;
                        if let Outcome::Accepted = outcome {
                            tally.accepted += 1;
                            record_micros(&mut tally.latency_micros, sent.elapsed());
                            coverage.accepted[index].store(true, Ordering::Relaxed);
                        } else {
                            tally.record_failure(&outcome);
                            tokio::time::sleep(backoff).await;
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut tally = Tally::new();
        for task in tasks {
            match task.await {
                Ok(task_tally) => tally.merge(task_tally),
                Err(error) => {
                    tally
                        .first_error
                        .get_or_insert_with(|| format!("a load task failed: {error}"));
                }
            }
        }
        // The phase lasts until the last in-flight request is answered, so slow answers lower the rate.
        ClosedOutcome {
            tally,
            elapsed: started.elapsed(),
        }
    }
}

/// The open loop: requests start on a fixed schedule whatever the server does, up to `max_in_flight` at once.
pub struct OpenLoop {
    pub rate_per_sec: u64,
    pub duration: Duration,
    pub max_in_flight: usize,
}

/// What one open-loop run did. Latency is measured from each request's intended start, so time a request spent
/// waiting behind a slow one counts against the server (no coordinated omission).
pub struct OpenOutcome {
    pub tally: Tally,
    /// From the actual send, which hides queueing in the generator; shown beside the corrected one.
    pub service_micros: Histogram<u64>,
    /// How late requests left compared with their schedule: the pacing thread's timer and CPU share, and the wait
    /// for an in-flight slot when the server holds `max_in_flight` requests.
    pub schedule_lag_micros: Histogram<u64>,
    pub scheduled: u64,
    /// Requests actually started: fewer than scheduled when sending fell more than a second behind.
    pub sent: u64,
    pub elapsed: Duration,
}

impl OpenLoop {
    pub async fn run(&self, target: &Arc<Target>, coverage: &Arc<Coverage>) -> OpenOutcome {
        struct Shared {
            tally: Tally,
            service_micros: Histogram<u64>,
            schedule_lag_micros: Histogram<u64>,
        }
        let shared = Arc::new(Mutex::new(Shared {
            tally: Tally::new(),
            service_micros: micros_histogram(),
            schedule_lag_micros: micros_histogram(),
        }));
        let max_in_flight = self
            .max_in_flight
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let rate = self.rate_per_sec.max(1);
        let scheduled = rate.saturating_mul(self.duration.as_secs().max(1));
        let interval_nanos = 1e9 / rate as f64;
        let started = Instant::now();
        let send_deadline = started + self.duration + Duration::from_secs(1);
        let pacer = {
            let (target, coverage, shared, in_flight) = (
                Arc::clone(target),
                Arc::clone(coverage),
                Arc::clone(&shared),
                Arc::clone(&in_flight),
            );
            let runtime = tokio::runtime::Handle::current();
            // Pacing runs on its own thread with the OS sleep, which wakes within tens of microseconds; tokio's
            // timer ticks each millisecond and would add up to a millisecond of lag to every request.
            tokio::task::spawn_blocking(move || {
                let mut sent_count = 0;
                for request_number in 0..scheduled {
                    let intended = started
                        + Duration::from_nanos((request_number as f64 * interval_nanos) as u64);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    } else if now > send_deadline {
                        // The server or the generator fell this far behind: stop rather than run on unbounded.
                        break;
                    }
                    let permit = match Arc::clone(&in_flight).try_acquire_owned() {
                        Ok(permit) => permit,
                        // The server is behind: wait for a slot; the delay shows up against `intended`.
                        Err(TryAcquireError::NoPermits) => {
                            match runtime.block_on(Arc::clone(&in_flight).acquire_owned()) {
                                Ok(permit) => permit,
                                Err(_) => break,
                            }
                        }
                        Err(TryAcquireError::Closed) => break,
                    };
                    let (target, coverage, shared) = (
                        Arc::clone(&target),
                        Arc::clone(&coverage),
                        Arc::clone(&shared),
                    );
                    runtime.spawn(async move {
                        let (_, index) = coverage.next_index();
                        let sent = Instant::now();
                        let outcome = send(&target, index).await;
                        let done = Instant::now();
                        if let Outcome::Accepted = outcome {
                            coverage.accepted[index].store(true, Ordering::Relaxed);
                        }
                        // The permit is held until the outcome is recorded, so that the final wait sees every record.
                        let _permit = permit;
                        // A poisoned lock means another recording task panicked; its counts are still usable.
                        let mut shared = shared
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        record_micros(
                            &mut shared.schedule_lag_micros,
                            sent.saturating_duration_since(intended),
                        );
                        if let Outcome::Accepted = outcome {
                            shared.tally.accepted += 1;
                            record_micros(
                                &mut shared.tally.latency_micros,
                                done.saturating_duration_since(intended),
                            );
                            record_micros(
                                &mut shared.service_micros,
                                done.saturating_duration_since(sent),
                            );
                        } else {
                            shared.tally.record_failure(&outcome);
                        }
                    });
                    sent_count += 1;
                }
                sent_count
            })
        };
        let sent = match pacer.await {
            Ok(sent) => sent,
            Err(error) => {
                let mut shared = shared
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                shared
                    .tally
                    .first_error
                    .get_or_insert_with(|| format!("the pacing thread failed: {error}"));
                0
            }
        };
        // Every task holds a permit until its answer, so taking them all back waits for the last answer.
        let _all = in_flight.acquire_many(max_in_flight as u32).await;
        let elapsed = started.elapsed();
        let mut shared = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tally = std::mem::replace(&mut shared.tally, Tally::new());
        OpenOutcome {
            tally,
            service_micros: shared.service_micros.clone(),
            schedule_lag_micros: shared.schedule_lag_micros.clone(),
            scheduled,
            sent,
            elapsed,
        }
    }
}
