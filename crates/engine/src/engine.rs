//! Starting the engine: open the store, rebuild what the journal holds, and spawn the writer,
//! runs, sources and upkeep.

use std::sync::Arc;

use homeostat_core::clock::SharedClock;
use homeostat_core::rule::Compiled;
use homeostat_store::Store;

use crate::handle::{self, Changes, DisabledRules, GuardStatus, Handle};
use crate::metrics::Metrics;
use crate::recover;
use crate::runs::{self, Runs};
use crate::secrets;
use crate::writer::{self, Writer};

/// Why the engine could not start. Each variant says everything in its own message (the caller
/// prints only this one), so none is also a `source`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] homeostat_store::Error),
    #[error(transparent)]
    Open(#[from] crate::store::Error),
    #[error(transparent)]
    Locked(#[from] homeostat_store::sqlite::lock::Error),
    /// An API token's or a webhook source's secret: `what` names which.
    #[error("{what}: {error}")]
    Secret { what: String, error: secrets::Error },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Recover(#[from] recover::Error),
    #[error(transparent)]
    Kubernetes(#[from] crate::kubernetes::Error),
}

/// The running engine.
pub struct Engine {
    pub handle: Handle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// This process's hold on the store, when it opened the store itself; released on drop.
    lock: Option<homeostat_store::sqlite::lock::Lock>,
}

impl Engine {
    /// Stops the background tasks. Committed work is safe; runs in progress resume on the next start.
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.handle.sources().abort();
    }

    /// The lock file this engine holds its store with, if it opened the store itself.
    pub fn lock_path(&self) -> Option<&std::path::Path> {
        self.lock.as_ref().map(|lock| lock.path())
    }

    /// [`Engine::abort`], then lets the store finish its background work (the last checkpoint), for
    /// a clean stop.
    pub async fn shutdown(&self) {
        self.abort();
        self.handle.store().close().await;
    }
}

/// Takes the store's lock, opens it and starts everything the config asks for. A second engine
/// on the same store is refused with who holds it ([`Error::Locked`]).
pub async fn start(compiled: Compiled, clock: SharedClock) -> Result<Engine, Error> {
    let lock = lock(&compiled, &clock)?;
    start_locked(compiled, clock, lock).await
}

/// Takes the lock of the config's SQLite store for this process, or says who holds it. Taken
/// before anything else (`serve` takes it before binding its address), so a second daemon stops
/// before it touches the database. A PostgreSQL store has no file: its lock is an advisory lock
/// the store takes on its own connection when it opens ([`start_locked`]).
pub fn lock(
    compiled: &Compiled,
    clock: &SharedClock,
) -> Result<Option<homeostat_store::sqlite::lock::Lock>, Error> {
    if compiled.config.store.url.is_some() {
        return Ok(None);
    }
    Ok(Some(homeostat_store::sqlite::lock::Lock::acquire(
        &compiled.config.store.path,
        clock.now(),
    )?))
}

/// [`start`] with the store's file lock already held (or none, for PostgreSQL).
pub async fn start_locked(
    compiled: Compiled,
    clock: SharedClock,
    lock: Option<homeostat_store::sqlite::lock::Lock>,
) -> Result<Engine, Error> {
    let store = crate::store::open(&compiled.config.store).await?;
    store.lock_exclusive().await?;
    let mut engine = start_with_store(compiled, clock, store).await?;
    engine.lock = lock;
    Ok(engine)
}

pub async fn start_with_store(
    compiled: Compiled,
    clock: SharedClock,
    store: Arc<dyn Store>,
) -> Result<Engine, Error> {
    let config = compiled.config.clone();
    let (tokens, webhook_secrets) =
        crate::reload::resolve(&compiled).map_err(|(what, error)| Error::Secret { what, error })?;
    let metrics = Arc::new(Metrics::default());
    let compiled = Arc::new(compiled);
    // Handles first, so runners can hold one; the writer task starts once recovery is done.
    let (writer, queue) = Writer::new(config.server.queue_capacity);
    let http = reqwest::Client::builder()
        .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Http(error.to_string()))?;
    let cluster = crate::kubernetes::Cluster::connect(&config).await?;
    let changes = Changes::default();
    let runs = Runs::new(runs::Config {
        writer: writer.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        settings: runs::Settings::from_config(&config),
        http: http.clone(),
        cluster: cluster.clone(),
        changes: changes.clone(),
    });

    let resumed = recover::runs(&*store, &compiled).await?;
    let mut decider = recover::decider(&*store, &compiled, clock.now()).await?;
    // Whatever was committed but never decided comes first.
    let caught_up = recover::catch_up(&*store, &mut decider, &clock).await?;
    let disabled_rules = DisabledRules::default();
    let guards = GuardStatus::default();
    let mut tasks = vec![queue.spawn(writer::Stage {
        store: store.clone(),
        compiled: compiled.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        runs: runs.clone(),
        decider,
        disabled_rules: disabled_rules.clone(),
        guards: guards.clone(),
        changes: changes.clone(),
        max_writes: 8192,
    })];
    for start in resumed {
        runs.spawn(start);
    }
    for dispatch in caught_up {
        runs.spawn(crate::runs::Start {
            started_at: dispatch.planned_at,
            resumed: false,
            plan: dispatch.run,
            program: dispatch.program,
            event: Some(dispatch.event),
            replay: Vec::new(),
        });
    }

    let handle = Handle::new(handle::Parts {
        store,
        writer,
        compiled: compiled.clone(),
        metrics,
        clock,
        tokens,
        webhook_secrets,
        runs,
        disabled_rules,
        guards,
        changes,
        sources: crate::source::Sources::new(http, cluster),
    });
    handle.sources().apply(&handle, &compiled);
    handle.metrics().config_last_reload_successful.set(1);
    handle
        .metrics()
        .config_last_reload_success_timestamp
        .set(handle.clock().now().timestamp_millis() as f64 / 1000.0);
    tasks.push(tokio::spawn(crate::upkeep::watch_disk(
        handle.store().clone(),
        handle.writer().health().clone(),
        compiled.config.store.clone(),
        handle.metrics().clone(),
    )));
    tasks.push(tokio::spawn(crate::upkeep::retain(
        handle.store().clone(),
        handle.writer().clone(),
        compiled.config.store.retention.clone(),
        handle.clock().clone(),
        handle.metrics().clone(),
    )));
    handle.set_ready();
    Ok(Engine {
        handle,
        tasks,
        lock: None,
    })
}
