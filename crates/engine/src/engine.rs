//! Starting the engine: open the store, rebuild what the journal holds, and spawn the writer,
//! runs, sources and upkeep.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use homeostat_core::clock::SharedClock;
use homeostat_core::config::Source;
use homeostat_core::rule::Compiled;
use homeostat_store::Store;

use crate::handle::{self, DisabledRules, GuardStatus, Handle, Token};
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
    #[error("api token `{name}`: {error}")]
    Token { name: String, error: secrets::Error },
    #[error("source `{name}`: {error}")]
    SourceSecret { name: String, error: secrets::Error },
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
}

impl Engine {
    /// Stops the background tasks. Committed work is safe; runs in progress resume on the next start.
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// [`Engine::abort`], then lets the store finish its background work (the last checkpoint), for
    /// a clean stop.
    pub async fn shutdown(&self) {
        self.abort();
        self.handle.store().close().await;
    }
}

/// Opens the store, takes its lock (one daemon per store) and starts everything the config asks
/// for.
pub async fn start(compiled: Compiled, clock: SharedClock) -> Result<Engine, Error> {
    let store = crate::store::open(&compiled.config.store).await?;
    store.lock_exclusive().await?;
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
            let secret = secrets::resolve(&token.token).map_err(|error| Error::Token {
                name: token.name.clone(),
                error,
            })?;
            Ok(Token::new(
                token.name.clone(),
                token.scopes.clone(),
                secret.expose(),
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut webhook_secrets = HashMap::new();
    for source in &config.sources {
        if let Source::Webhook(webhook) = source {
            let secret =
                secrets::resolve(&webhook.secret).map_err(|error| Error::SourceSecret {
                    name: webhook.name.clone(),
                    error,
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
    let cluster = crate::kubernetes::Cluster::connect(&config).await?;
    let runs = Runs::new(runs::Config {
        writer: writer.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        notifiers: config
            .notifiers
            .iter()
            .map(|n| (n.name().to_string(), n.clone()))
            .collect::<BTreeMap<_, _>>(),
        prometheus: config.prometheus.clone(),
        attention_notifier: config.runs.attention_notifier.clone(),
        http: http.clone(),
        cluster: cluster.clone(),
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
    });
    tasks.extend(crate::source::spawn(&handle, &http, &cluster));
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
    Ok(Engine { handle, tasks })
}
