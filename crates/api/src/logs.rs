//! `GET /api/v1/runs/{id}/logs`: a run's journal as Server-Sent Events, live until it finishes.
//!
//! Each journal entry is one event: `event:` its kind, `id:` its sequence number, `data:` the entry
//! as JSON. The stream sends what is journaled already, then each entry as it commits, and ends
//! after `run_finished`. A client that reconnects with `Last-Event-ID` gets only later entries.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use homeostat_core::config::Scope;
use homeostat_engine::Handle;
use homeostat_store::JournalEntry;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::auth::authorize;
use crate::error::{ApiError, Code};

/// How often the journal is read even without a notification. Notifications come through a bounded
/// broadcast channel that drops the oldest for a slow reader, and the store is the truth anyway.
const POLL: Duration = Duration::from_secs(1);

pub async fn logs(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let follow = Follow::start(handle, id, &headers).await?;
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let entry = follow.next().await?;
        Some((Ok(event(&entry)), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn event(entry: &JournalEntry) -> Event {
    // Compact JSON has no newlines, so it is one `data:` line.
    let data = serde_json::to_string(entry).unwrap_or_else(|_| "null".into());
    Event::default()
        .event(entry.entry.kind())
        .id(entry.seq.to_string())
        .data(data)
}

/// The reading side of one stream: what was sent, what is waiting to be sent, and how to learn of more.
pub(crate) struct Follow {
    handle: Handle,
    run_id: String,
    /// `None` once the engine's channel closed; polling goes on alone.
    changes: Option<broadcast::Receiver<String>>,
    poll: tokio::time::Interval,
    last_seq: i64,
    pending: VecDeque<JournalEntry>,
    read_now: bool,
    finished: bool,
}

enum Wake {
    Read,
    Other,
    Closed,
}

impl Follow {
    /// Follows run `id`'s journal from after the `Last-Event-ID` the request carries, if any.
    pub(crate) async fn start(
        handle: Handle,
        id: String,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        // Subscribe before the first read: an entry committed between the two is then announced
        // to us instead of waiting for the next poll.
        let changes = handle.runs().subscribe();
        let run = handle
            .store()
            .run(&id)
            .await
            .map_err(|error| ApiError::new(Code::Unavailable, error.to_string()))?;
        if run.is_none() {
            return Err(ApiError::new(
                Code::NotFound,
                format!("no run has the id `{id}`"),
            ));
        }
        let after = headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<i64>().ok())
            .unwrap_or(i64::MIN);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick of an interval is immediate; the first read needs no tick.
        poll.reset();
        Ok(Follow {
            handle,
            run_id: id,
            changes: Some(changes),
            poll,
            last_seq: after,
            pending: VecDeque::new(),
            read_now: true,
            finished: false,
        })
    }

    /// The next entry to send, or `None` once `run_finished` was sent.
    pub(crate) async fn next(&mut self) -> Option<JournalEntry> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                if matches!(entry.entry, homeostat_store::Entry::RunFinished(_)) {
                    self.finished = true;
                    self.pending.clear();
                }
                return Some(entry);
            }
            if self.finished {
                return None;
            }
            if !self.read_now {
                self.wait().await;
            }
            self.read_now = false;
            match self.handle.store().journal_for_run(&self.run_id).await {
                Ok(entries) => {
                    for entry in entries {
                        if entry.seq > self.last_seq {
                            self.last_seq = entry.seq;
                            self.pending.push_back(entry);
                        }
                    }
                }
                // The next poll tries again; the client keeps its place.
                Err(error) => {
                    tracing::warn!(run = %self.run_id, %error, "cannot read the run's journal for its log stream")
                }
            }
        }
    }

    /// Returns when this run's journal may have grown: a notification for it, a lagged receiver
    /// (which may have missed one), or the poll.
    async fn wait(&mut self) {
        loop {
            let wake = match self.changes.as_mut() {
                None => {
                    self.poll.tick().await;
                    Wake::Read
                }
                Some(changes) => tokio::select! {
                    received = changes.recv() => match received {
                        Ok(run) if run == self.run_id => Wake::Read,
                        Ok(_) => Wake::Other,
                        Err(RecvError::Lagged(_)) => Wake::Read,
                        Err(RecvError::Closed) => Wake::Closed,
                    },
                    _ = self.poll.tick() => Wake::Read,
                },
            };
            match wake {
                Wake::Read => return,
                Wake::Other => continue,
                Wake::Closed => self.changes = None,
            }
        }
    }
}
