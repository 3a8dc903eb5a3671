//! Group commit: concurrent writers share one transaction, so durability costs one fsync per batch, not per request.
//!
//! Requests queue on a bounded channel. The writer task takes the first, drains whatever else is
//! already waiting (up to a limit), commits them together and answers each. The bound is what turns
//! overload into `429 Too Many Requests` instead of unbounded memory.

use std::sync::Arc;

use homeostat_core::Event;
use tokio::sync::{mpsc, oneshot};

use crate::{Committed, Error, Result, Store, Write};

/// Called after every commit with the committed events and their sequence numbers, in order, and how
/// long the commit took.
pub type OnCommit = Box<dyn FnMut(Vec<(i64, Event)>, std::time::Duration) + Send>;

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

impl Writer {
    /// Starts the writer task. `capacity` bounds waiting requests; `max_writes` bounds one transaction.
    pub fn spawn(
        store: Arc<dyn Store>,
        capacity: usize,
        max_writes: usize,
        on_commit: OnCommit,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let handle = tokio::spawn(run(store, receiver, max_writes.max(1), on_commit));
        (Self { sender }, handle)
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
    mut on_commit: OnCommit,
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
        // tokio's clock, so tests on paused time see paused durations.
        let began = tokio::time::Instant::now();
        let result = store.commit(&batch).await;
        let took = began.elapsed();
        match result {
            Ok(committed) => {
                let all_seqs = committed.event_seqs;
                // Hand events on first: dispatch latency matters more than the answer's latency.
                let numbered: Vec<(i64, Event)> = batch
                    .into_iter()
                    .filter_map(|write| match write {
                        Write::Event(encoded) => Some(encoded.into_event()),
                        _ => None,
                    })
                    .zip(all_seqs.iter().copied())
                    .map(|(event, seq)| (seq, event))
                    .collect();
                on_commit(numbered, took);
                let mut offset = 0;
                for (request, events) in requests.drain(..).zip(sizes) {
                    let event_seqs = all_seqs[offset..offset + events].to_vec();
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
