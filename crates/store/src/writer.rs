//! Group commit: concurrent writers share one transaction, so durability costs one fsync per batch, not per request.
//!
//! Requests queue on a bounded channel. The writer task takes the first, drains whatever else is
//! already waiting (up to a limit), lets its [`Stage`] add writes for the batch's events (the engine
//! decides there), commits everything in one transaction and answers each request. The bound is what
//! turns overload into `429 Too Many Requests` instead of unbounded memory.

use std::sync::Arc;
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

struct Request {
    batch: Vec<Write>,
    reply: oneshot::Sender<Result<Committed>>,
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<Request>,
}

/// A submitted batch; await it for the commit.
pub struct Pending(oneshot::Receiver<Result<Committed>>);

impl Pending {
    pub async fn committed(self) -> Result<Committed> {
        self.0.await.unwrap_or(Err(Error::WriterStopped))
    }
}

/// The writer's queue, until [`Queue::spawn`] starts the task that drains it.
pub struct Queue(mpsc::Receiver<Request>);

impl Queue {
    /// Starts the writer task. `max_writes` bounds one transaction.
    pub fn spawn(
        self,
        store: Arc<dyn Store>,
        max_writes: usize,
        stage: Box<dyn Stage>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(store, self.0, max_writes.max(1), stage))
    }
}

impl Writer {
    /// A writer handle and its queue; `capacity` bounds waiting requests. Handles can be given out
    /// before the task runs: what they submit waits in the queue.
    pub fn new(capacity: usize) -> (Self, Queue) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Self { sender }, Queue(receiver))
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
        let result = store.commit(&batch).await;
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
                tracing::error!(%error, writes, "journal commit failed");
                let message = error.to_string();
                for request in requests.drain(..) {
                    let _ = request.reply.send(Err(Error::Database(message.clone())));
                }
            }
        }
    }
}
