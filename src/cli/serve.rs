//! `homeostat serve`: the daemon. SIGHUP reloads its config, as `POST /-/reload` does.

use std::path::Path;
use std::sync::Arc;

use homeostat_core::clock::{SharedClock, SystemClock};
use tokio::signal::unix::{signal, SignalKind};

use super::{config, EXIT_ERROR};

pub async fn run(config_path: &Path, listen: Option<String>) -> u8 {
    // First, so that a SIGHUP during start-up waits for the engine instead of ending the process.
    let hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /-/reload");
            None
        }
    };
    let mut compiled = match config::load(config_path) {
        Ok(compiled) => compiled,
        Err(error) => return error.report(),
    };
    if let Some(listen) = &listen {
        compiled.config.server.listen = listen.clone();
    }
    let clock: SharedClock = Arc::new(SystemClock::default());
    // Before binding: a second daemon on this store is told who holds it, not that the port is taken.
    let lock = match homeostat_engine::engine::lock(&compiled, &clock) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_ERROR;
        }
    };
    let address = compiled.config.server.listen.clone();
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on `{address}`: {error}; is another homeostat running? consider --listen");
            return EXIT_ERROR;
        }
    };
    let engine = match homeostat_engine::start_locked(compiled, clock, lock).await {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return EXIT_ERROR;
        }
    };
    // A reload reads the same file, with the same `--listen`, and prints nothing: its warnings go
    // to the log and the answer.
    let path = config_path.to_path_buf();
    engine.handle.set_loader(Arc::new(move || {
        let mut compiled = config::load_with(&path, false).map_err(|error| error.text())?;
        if let Some(listen) = &listen {
            compiled.config.server.listen = listen.clone();
        }
        Ok(compiled)
    }));
    if let Some(mut hangups) = hangups {
        let handle = engine.handle.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                // The handle logs and counts the outcome.
                let _ = handle.reload().await;
            }
        });
    }
    let compiled = engine.handle.compiled();
    tracing::info!(
        listen = %address,
        rules = compiled.rules.len(),
        sources = compiled.config.sources.len(),
        dry_run = compiled.config.dry_run,
        store = %homeostat_engine::store::describe(&compiled.config.store),
        lock = %engine.lock_path().map(|path| path.display().to_string()).unwrap_or_default(),
        "homeostat is serving"
    );
    let router = homeostat_api::router(engine.handle.clone());
    let served = homeostat_api::server::serve(
        listener,
        router,
        homeostat_api::server::Limits::from_config(&compiled.config.server),
        engine.handle.clock().clone(),
        engine.handle.metrics().clone(),
        shutdown_signal(),
    )
    .await;
    engine.shutdown().await;
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(error) => {
            eprintln!("error: the server failed: {error}");
            EXIT_ERROR
        }
    }
}

/// Resolves on SIGINT or SIGTERM. Committed work is safe either way; runs in progress resume on restart.
async fn shutdown_signal() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
