//! `homeostat serve`: the daemon.

use std::path::Path;
use std::sync::Arc;

use homeostat_core::clock::SystemClock;

use super::{config, EXIT_ERROR};

pub async fn run(config_path: &Path, listen: Option<String>) -> u8 {
    let mut compiled = match config::load(config_path) {
        Ok(compiled) => compiled,
        Err(error) => return error.report(),
    };
    if let Some(listen) = listen {
        compiled.config.server.listen = listen;
    }
    let listen = compiled.config.server.listen.clone();
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on `{listen}`: {error}; is another homeostat running? consider --listen");
            return EXIT_ERROR;
        }
    };
    let engine = match homeostat_engine::start(compiled, Arc::new(SystemClock::default())).await {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return EXIT_ERROR;
        }
    };
    let compiled = &engine.handle.compiled();
    tracing::info!(
        %listen,
        rules = compiled.rules.len(),
        sources = compiled.config.sources.len(),
        dry_run = compiled.config.dry_run,
        store = %homeostat_engine::store::describe(&compiled.config.store),
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
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
