//! Group commit: concurrent writers share one transaction, so durability costs one fsync per batch, not per request.
//!
//! Requests queue on a bounded channel. The writer task takes the first, drains whatever else is
//! already waiting (up to a limit), lets its [`Stage`] add writes for the batch's events (the engine
//! decides there), commits everything in one transaction and answers each request. The bound is what
//! turns overload into `429 Too Many Requests` instead of unbounded memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use homeostat_core::Event;
use tokio::sync::{mpsc, oneshot};

use crate::{Committed, Error, Result, Store, Write};

/// Work that rides along with each commit.
#[async_trait]
pub trait Stage: Send {
    /// Called with the events of a batch, in commit order, before the batch commits. Writes added to
    /// `writes` commit in the same transaction, so whatever they record is exactly as durable as the
    /// events themselves.
    fn before_commit(&mut self, events: &[&Event], writes: &mut Vec<Write>);
    /// Called after the commit, with its outcome and duration, before any request is answered.
    async fn after_commit(
        &mut self,
        result: std::result::Result<&Committed, &Error>,
        took: Duration,
    );
}

/// A stage that adds nothing, for tests and tools.
pub struct NoStage;

#[async_trait]
impl Stage for NoStage {
    fn before_commit(&mut self, _: &[&Event], _: &mut Vec<Write>) {}
    async fn after_commit(&mut self, _: std::result::Result<&Committed, &Error>, _: Duration) {}
}

/// Whether the journal can take work: the writer records each commit's outcome here, the engine
/// adds what it sees of the disk, and ingest and `/readyz` read it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<HealthState>);

#[derive(Default)]
struct HealthState {
    /// The last commit of a non-empty batch failed.
    failing: AtomicBool,
    /// ... and it failed because the disk is full.
    full: AtomicBool,
    /// The disk has less free space than the configured floor.
    low_space: AtomicBool,
    reason: Mutex<String>,
}

impl Health {
    /// `Ok` when new work may be accepted; otherwise why not, for a 503 and `/readyz`.
    pub fn accepting(&self) -> std::result::Result<(), String> {
        let state = &self.0;
        if state.failing.load(Ordering::Relaxed) || state.low_space.load(Ordering::Relaxed) {
            let reason = state
                .reason
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            return Err(reason);
        }
        Ok(())
    }

    /// Whether the last commit failed, and whether for a full disk.
    pub fn failing(&self) -> (bool, bool) {
        (
            self.0.failing.load(Ordering::Relaxed),
            self.0.full.load(Ordering::Relaxed),
        )
    }

    fn set_reason(&self, reason: String) {
        *self
            .0
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    fn committed(&self) {
        if self.0.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the journal commits again");
        }
        self.0.full.store(false, Ordering::Relaxed);
    }

    fn commit_failed(&self, error: &Error) {
        self.0
            .full
            .store(matches!(error, Error::Full(_)), Ordering::Relaxed);
        self.set_reason(format!("the journal cannot commit: {error}"));
        self.0.failing.store(true, Ordering::Relaxed);
    }

    /// Lets work in again after a failed commit, when whatever failed may have passed (space came
    /// back, some time went by). The next commit decides: if it fails too, it fails before any
    /// request is answered 2xx.
    pub fn retry(&self) {
        self.0.failing.store(false, Ordering::Relaxed);
    }

    /// Records whether the disk is below its free-space floor.
    pub fn set_low_space(&self, low: Option<String>) {
        match low {
            Some(reason) => {
                if !self.0.low_space.load(Ordering::Relaxed) {
                    tracing::warn!(%reason, "refusing new work until disk space returns");
                }
                self.set_reason(reason);
                self.0.low_space.store(true, Ordering::Relaxed);
            }
            None => {
                if self.0.low_space.swap(false, Ordering::Relaxed) {
                    tracing::info!("disk space is back above the floor: accepting work again");
                }
            }
        }
    }
}

struct Request {
    batch: Vec<Write>,
    reply: oneshot::Sender<Result<Committed>>,
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<Request>,
    health: Health,
}

/// A submitted batch; await it for the commit.
pub struct Pending(oneshot::Receiver<Result<Committed>>);

impl Pending {
    pub async fn committed(self) -> Result<Committed> {
        self.0.await.unwrap_or(Err(Error::WriterStopped))
    }
}

/// The writer's queue, until [`Queue::spawn`] starts the task that drains it.
pub struct Queue(mpsc::Receiver<Request>, Health);

impl Queue {
    /// Starts the writer task. `max_writes` bounds one transaction.
    pub fn spawn(
        self,
        store: Arc<dyn Store>,
        max_writes: usize,
        stage: Box<dyn Stage>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(store, self.0, max_writes.max(1), stage, self.1))
    }
}

impl Writer {
    /// A writer handle and its queue; `capacity` bounds waiting requests. Handles can be given out
    /// before the task runs: what they submit waits in the queue.
    pub fn new(capacity: usize) -> (Self, Queue) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let health = Health::default();
        (
            Self {
                sender,
                health: health.clone(),
            },
            Queue(receiver, health),
        )
    }

    /// Whether the journal can take work, as of the last commit and the last look at the disk.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// [`Writer::new`] and [`Queue::spawn`] in one step.
    pub fn spawn(
        store: Arc<dyn Store>,
        capacity: usize,
        max_writes: usize,
        stage: Box<dyn Stage>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (writer, queue) = Self::new(capacity);
        (writer, queue.spawn(store, max_writes, stage))
    }

    /// Queues a batch without waiting for room: fails with [`Error::Overloaded`] when the queue is full.
    pub fn try_submit(&self, batch: Vec<Write>) -> Result<Pending> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .try_send(Request { batch, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Error::WriterStopped,
            })?;
        Ok(Pending(receiver))
    }

    /// Queues a batch, waiting for room, and waits for its commit. For internal writers that must not drop.
    pub async fn submit(&self, batch: Vec<Write>) -> Result<Committed> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .send(Request { batch, reply })
            .await
            .map_err(|_| Error::WriterStopped)?;
        Pending(receiver).committed().await
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<Request>,
    max_writes: usize,
    mut stage: Box<dyn Stage>,
    health: Health,
) {
    let mut requests: Vec<Request> = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut writes = first.batch.len();
        requests.push(first);
        while writes < max_writes {
            match receiver.try_recv() {
                Ok(request) => {
                    writes += request.batch.len();
                    requests.push(request);
                }
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(writes);
        let mut sizes = Vec::with_capacity(requests.len());
        for request in &mut requests {
            let events = request
                .batch
                .iter()
                .filter(|write| matches!(write, Write::Event(_)))
                .count();
            sizes.push(events);
            batch.append(&mut request.batch);
        }
        let mut staged = Vec::new();
        {
            let events: Vec<&Event> = batch
                .iter()
                .filter_map(|write| match write {
                    Write::Event(encoded) => Some(encoded.event()),
                    _ => None,
                })
                .collect();
            stage.before_commit(&events, &mut staged);
        }
        batch.append(&mut staged);
        // tokio's clock, so tests on paused time see paused durations.
        let began = tokio::time::Instant::now();
        // An empty batch (a tick, with nothing due) has nothing to commit, and its success would say
        // nothing about whether the journal can take writes.
        let result = if batch.is_empty() {
            Ok(Committed::default())
        } else {
            let result = store.commit(&batch).await;
            match &result {
                Ok(_) => health.committed(),
                Err(error) => health.commit_failed(error),
            }
            result
        };
        let took = began.elapsed();
        stage.after_commit(result.as_ref(), took).await;
        match result {
            Ok(committed) => {
                let mut offset = 0;
                for (request, events) in requests.drain(..).zip(sizes) {
                    let event_seqs = committed.event_seqs[offset..offset + events].to_vec();
                    offset += events;
                    let _ = request.reply.send(Ok(Committed { event_seqs }));
                }
            }
            Err(error) => {
                tracing::error!(%error, writes, "journal commit failed; nothing of the batch is acknowledged");
                for request in requests.drain(..) {
                    let error = match &error {
                        Error::Full(message) => Error::Full(message.clone()),
                        other => Error::Database(other.to_string()),
                    };
                    let _ = request.reply.send(Err(error));
                }
            }
        }
    }
}
