//! The HTTP server around the router, bounded against hostile and unlucky clients: a connection
//! limit that evicts the idlest connection to make room, a deadline for a request's headers, and
//! one for a keep-alive connection's silence. (The body's deadline and its admission by bytes are
//! the handlers', in `ingest::read_body`.)
//!
//! Written on hyper directly because `axum::serve` has neither a connection limit nor timeouts. A
//! slow client (slowloris) costs one slot until its header deadline, and under a flood of them the
//! newest connection takes the slot of the one that has sent least recently, so clients that send
//! their requests promptly, `/healthz` among them, keep being served.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use homeostat_core::clock::SharedClock;
use homeostat_engine::metrics::Metrics;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The bounds on connections, from `server:` in the config.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_config(server: &homeostat_core::config::Server) -> Self {
        let secs = |value: f64| Duration::from_secs_f64(value.max(0.001));
        Self {
            max_connections: server.max_connections.max(1),
            header_timeout: secs(server.header_timeout_secs),
            idle_timeout: secs(server.idle_timeout_secs),
        }
    }
}

/// How often deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// How long a clean stop waits for requests in progress.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// What a connection is doing, for its deadlines and for eviction.
const IDLE: u8 = 0;
const READING_HEAD: u8 = 1;
const ACTIVE: u8 = 2;

/// What the server tells a connection.
const RUN: u8 = 0;
const DRAIN: u8 = 1;
const CLOSE: u8 = 2;

struct Tracker {
    phase: AtomicU8,
    /// When the phase began, in milliseconds of the clock's monotonic time.
    since_ms: AtomicU64,
    control: watch::Sender<u8>,
}

impl Tracker {
    fn set(&self, phase: u8, now: Duration) {
        self.since_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    connections: HashMap<u64, Arc<Tracker>>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in progress finish
/// (for up to five seconds).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let sweeper = tokio::spawn(sweep(
        registry.clone(),
        limits.clone(),
        clock.clone(),
        metrics.clone(),
    ));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait for connections to close rather than
                // spin on the error.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let now = clock.monotonic();
        let tracker = {
            let mut registry = lock(&registry);
            if registry.connections.len() >= limits.max_connections {
                // Every connection busy with a request: the new one is closed, not queued.
                let reason = if evict_idlest(&registry) {
                    "evicted"
                } else {
                    "limit"
                };
                metrics
                    .http_connections_closed
                    .get_or_create(&vec![("reason", reason.to_string())])
                    .inc();
                if reason == "limit" {
                    continue;
                }
            }
            let (control, _) = watch::channel(RUN);
            let tracker = Arc::new(Tracker {
                phase: AtomicU8::new(IDLE),
                since_ms: AtomicU64::new(now.as_millis() as u64),
                control,
            });
            let id = registry.next_id;
            registry.next_id += 1;
            registry.connections.insert(id, tracker.clone());
            (id, tracker)
        };
        metrics.http_connections.inc();
        connections.spawn(connection(
            stream,
            router.clone(),
            tracker,
            registry.clone(),
            clock.clone(),
            metrics.clone(),
        ));
        // Reap finished connection tasks as we go, so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    sweeper.abort();
    for tracker in lock(&registry).connections.values() {
        let _ = tracker.control.send(DRAIN);
    }
    let drained = tokio::time::timeout(DRAIN_FOR, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still in progress after {DRAIN_FOR:?}; closing their connections");
        connections.abort_all();
    }
    Ok(())
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Closes the connection that has waited longest without a request in progress; false when every
/// connection is in the middle of one.
fn evict_idlest(registry: &Registry) -> bool {
    let idlest = registry
        .connections
        .values()
        .filter(|tracker| tracker.phase.load(Ordering::Relaxed) != ACTIVE)
        .min_by_key(|tracker| tracker.since_ms.load(Ordering::Relaxed));
    match idlest {
        Some(tracker) => {
            // Marked active so that a second eviction before it is gone picks another one.
            tracker.phase.store(ACTIVE, Ordering::Relaxed);
            let _ = tracker.control.send(CLOSE);
            true
        }
        None => false,
    }
}

/// Closes connections past their deadlines: headers begun and not finished within
/// `header_timeout`, silence between requests beyond `idle_timeout`.
async fn sweep(
    registry: Arc<Mutex<Registry>>,
    limits: Limits,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) {
    let mut interval = tokio::time::interval(SWEEP_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = clock.monotonic().as_millis() as u64;
        let registry = lock(&registry);
        for tracker in registry.connections.values() {
            let since = tracker.since_ms.load(Ordering::Relaxed);
            let waited = Duration::from_millis(now.saturating_sub(since));
            let reason = match tracker.phase.load(Ordering::Relaxed) {
                READING_HEAD if waited > limits.header_timeout => "header_timeout",
                IDLE if waited > limits.idle_timeout => "idle_timeout",
                _ => continue,
            };
            tracker.phase.store(ACTIVE, Ordering::Relaxed);
            let _ = tracker.control.send(CLOSE);
            metrics
                .http_connections_closed
                .get_or_create(&vec![("reason", reason.to_string())])
                .inc();
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    (id, tracker): (u64, Arc<Tracker>),
    registry: Arc<Mutex<Registry>>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        tracker: tracker.clone(),
        clock: clock.clone(),
    });
    let service = hyper::service::service_fn({
        let tracker = tracker.clone();
        move |request: hyper::Request<Incoming>| {
            let router = router.clone();
            let tracker = tracker.clone();
            let clock = clock.clone();
            tracker.set(ACTIVE, clock.monotonic());
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                // Idle once the response body is sent, not when the handler returns: a streamed
                // body (a run's log) keeps the connection active.
                response.map(|response| {
                    response.map(|body| {
                        axum::body::Body::new(Tracked {
                            body,
                            _idle: IdleWhenSent { tracker, clock },
                        })
                    })
                })
            }
        }
    });
    let mut control = tracker.control.subscribe();
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            changed = control.changed(), if !draining => {
                let signal = if changed.is_ok() { *control.borrow() } else { DRAIN };
                if signal == CLOSE {
                    break;
                }
                draining = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    lock(&registry).connections.remove(&id);
    metrics.http_connections.dec();
}

/// The socket, noting when a new request's first bytes arrive so its header deadline can start.
struct Watched {
    inner: tokio::net::TcpStream,
    tracker: Arc<Tracker>,
    clock: SharedClock,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.tracker.phase.load(Ordering::Relaxed) == IDLE {
            let now = self.clock.monotonic();
            self.tracker.set(READING_HEAD, now);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks its connection idle when dropped: when the response body it rides with is sent.
struct IdleWhenSent {
    tracker: Arc<Tracker>,
    clock: SharedClock,
}

impl Drop for IdleWhenSent {
    fn drop(&mut self) {
        if self.tracker.phase.load(Ordering::Relaxed) == ACTIVE {
            self.tracker.set(IDLE, self.clock.monotonic());
        }
    }
}

/// A response body with its [`IdleWhenSent`].
struct Tracked {
    body: axum::body::Body,
    _idle: IdleWhenSent,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
