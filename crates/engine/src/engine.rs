//! Starting the engine: open the store, recover unfinished work, and spawn the writer, decider, runs and sources.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use homeostat_core::clock::SharedClock;
use homeostat_core::config::{Scope, Source};
use homeostat_core::rule::Compiled;
use homeostat_core::Event;
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::writer::{Pending, Writer};
use homeostat_store::{steps_from_journal, RunQuery, RunStatus, Store, Write};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::decider::{rebuild_guards, restore_firing, DecideStage, CURSOR};
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::secrets::{self, Secret};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] homeostat_store::Error),
    #[error("api token `{name}`: {source}")]
    Token {
        name: String,
        source: secrets::Error,
    },
    #[error("source `{name}`: {source}")]
    SourceSecret {
        name: String,
        source: secrets::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Why an ingest request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the journal queue is full")]
    Overloaded,
    #[error("the journal is unavailable: {0}")]
    Unavailable(String),
}

/// A resolved API token: only its SHA-256 is kept in memory.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub scopes: Vec<Scope>,
    digest: [u8; 32],
}

impl Token {
    /// Whether `presented` is this token, compared in constant time over the digests.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|scope| {
            matches!(
                (scope, needed),
                (Scope::Write, _) | (Scope::Ingest, Scope::Ingest) | (Scope::Read, Scope::Read)
            )
        })
    }
}

/// What the API and sources use to talk to the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub compiled: Arc<Compiled>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    pub tokens: Arc<Vec<Token>>,
    pub webhook_secrets: Arc<HashMap<String, Secret>>,
    ready: Arc<AtomicBool>,
}

impl Handle {
    /// Queues events for a durable commit without waiting for room; await the result before answering 2xx.
    pub fn ingest(
        &self,
        source: &str,
        events: Vec<Event>,
    ) -> Result<(Pending, usize), IngestError> {
        let count = events.len();
        let pending = self
            .writer
            .try_submit(
                events
                    .into_iter()
                    .map(|event| Write::Event(event.into()))
                    .collect(),
            )
            .map_err(|error| {
                self.metrics.source_error(source, "overloaded");
                match error {
                    homeostat_store::Error::Overloaded => IngestError::Overloaded,
                    other => IngestError::Unavailable(other.to_string()),
                }
            })?;
        Ok((pending, count))
    }

    /// Counts accepted events once committed.
    pub fn accepted(&self, source: &str, count: usize) {
        self.metrics
            .events_received
            .get_or_create(&vec![("source", source.to_string())])
            .inc_by(count as u64);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// The running engine.
pub struct Engine {
    pub handle: Handle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Engine {
    /// Stops the background tasks. Committed work is safe; runs in progress resume on the next start.
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens the store and starts everything the config asks for.
pub async fn start(compiled: Compiled, clock: SharedClock) -> Result<Engine, Error> {
    let config = &compiled.config;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&config.store.path, config.store.synchronous).await?);
    start_with_store(compiled, clock, store).await
}

pub async fn start_with_store(
    compiled: Compiled,
    clock: SharedClock,
    store: Arc<dyn Store>,
) -> Result<Engine, Error> {
    let config = compiled.config.clone();
    let tokens = config
        .api_tokens
        .iter()
        .map(|token| {
            let secret = secrets::resolve(&token.token).map_err(|source| Error::Token {
                name: token.name.clone(),
                source,
            })?;
            Ok(Token {
                name: token.name.clone(),
                scopes: token.scopes.clone(),
                digest: Sha256::digest(secret.expose().as_bytes()).into(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut webhook_secrets = HashMap::new();
    for source in &config.sources {
        if let Source::Webhook(webhook) = source {
            let secret =
                secrets::resolve(&webhook.secret).map_err(|source| Error::SourceSecret {
                    name: webhook.name.clone(),
                    source,
                })?;
            webhook_secrets.insert(webhook.name.clone(), secret);
        }
    }
    let metrics = Arc::new(Metrics::default());
    let compiled = Arc::new(compiled);
    // Handles first, so runners can hold one; the writer task starts once recovery is done.
    let (writer, queue) = Writer::new(config.server.queue_capacity);
    let http = reqwest::Client::builder()
        .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Http(error.to_string()))?;
    let (finished_sender, finished_receiver) = mpsc::unbounded_channel();
    let runner = Runner {
        writer: writer.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        notifiers: config
            .notifiers
            .iter()
            .map(|n| (n.name().to_string(), n.clone()))
            .collect::<BTreeMap<_, _>>(),
        http: http.clone(),
        finished: finished_sender,
    };

    let resumed = recover(&*store, &clock).await?;
    let guards = rebuild_guards(&*store, &compiled, clock.now()).await?;
    let cursor = store.cursor(CURSOR).await?;
    let (_, firing) = restore_firing(&*store, cursor).await?;
    let mut stage = DecideStage::new(
        store.clone(),
        compiled.clone(),
        clock.clone(),
        metrics.clone(),
        runner.clone(),
        guards,
        firing,
        finished_receiver,
    );
    // Whatever was committed but never decided comes first.
    stage.catch_up(cursor).await?;
    let mut tasks = vec![queue.spawn(store.clone(), 8192, Box::new(stage))];
    for (run, from, attempt) in resumed {
        runner.spawn(run, from, attempt);
    }

    let handle = Handle {
        store,
        writer,
        compiled: compiled.clone(),
        metrics,
        clock,
        tokens: Arc::new(tokens),
        webhook_secrets: Arc::new(webhook_secrets),
        ready: Arc::new(AtomicBool::new(false)),
    };
    for source in &compiled.config.sources {
        if let Source::HttpProbe(probe) = source {
            tasks.push(tokio::spawn(crate::source::http_probe::run(
                probe.clone(),
                handle.clone(),
                http.clone(),
            )));
        }
    }
    handle.ready.store(true, Ordering::Relaxed);
    Ok(Engine { handle, tasks })
}

/// Decides what to do with runs a crash interrupted, before the writer starts.
///
/// A step that started but has no outcome is run again only if it is declared idempotent; otherwise
/// the run stops in `needs_attention`, because guessing could do a dangerous thing twice.
async fn recover(
    store: &dyn Store,
    clock: &SharedClock,
) -> Result<Vec<(homeostat_core::decide::PlannedRun, usize, u32)>, Error> {
    let now = clock.now();
    let unfinished = store
        .runs(&RunQuery {
            limit: 100_000,
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .await?;
    let mut resume = Vec::new();
    for run in unfinished {
        let steps = steps_from_journal(&store.journal_for_run(&run.id).await?);
        let plan = run.plan.clone();
        let last = steps.last();
        let decision = match last {
            None => Recovery::Resume(0, 1),
            Some(step) if step.status == "running" => {
                if run.dry_run
                    || plan
                        .steps
                        .get(step.index)
                        .is_some_and(|planned| planned.idempotent)
                {
                    Recovery::Resume(step.index, step.attempt + 1)
                } else {
                    Recovery::NeedsAttention(step.index, step.name.clone(), step.attempt)
                }
            }
            Some(step) if step.status == "succeeded" || step.status == "dry_run" => {
                Recovery::Resume(step.index + 1, 1)
            }
            Some(step) => Recovery::Finish(format!(
                "step {} `{}` {}",
                step.index + 1,
                step.name,
                step.status
            )),
        };
        match decision {
            Recovery::Resume(from, attempt) => {
                tracing::info!(run = %run.id, step = from, "resuming an interrupted run");
                resume.push((plan, from, attempt));
            }
            Recovery::NeedsAttention(index, name, attempt) => {
                let error = format!(
                    "step {} `{name}` was interrupted and its outcome is unknown; it is not idempotent, so it was not run again",
                    index + 1
                );
                tracing::warn!(run = %run.id, "{error}");
                store
                    .commit(&[
                        Write::StepFinished {
                            run_id: run.id.clone(),
                            step: index,
                            name,
                            attempt,
                            status: "unknown".into(),
                            output: serde_json::Value::Null,
                            error: Some("interrupted by a restart".into()),
                            at: now,
                        },
                        Write::RunFinished {
                            run_id: run.id.clone(),
                            status: RunStatus::NeedsAttention,
                            error: Some(error),
                            at: now,
                        },
                    ])
                    .await?;
            }
            Recovery::Finish(error) => {
                store
                    .commit(&[Write::RunFinished {
                        run_id: run.id.clone(),
                        status: RunStatus::Failed,
                        error: Some(error),
                        at: now,
                    }])
                    .await?;
            }
        }
    }
    Ok(resume)
}

enum Recovery {
    Resume(usize, u32),
    NeedsAttention(usize, String, u32),
    Finish(String),
}
