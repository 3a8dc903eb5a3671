//! The `kubernetes_events` source: one watch per resource type and namespace
//! (`homeostat_kubernetes::watch`), each batch of events journaled in the same commit as the
//! stream's resume state, so a restart resumes from exactly the resourceVersion it had recorded:
//! nothing lost, nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use homeostat_core::config::kubernetes::KubernetesEventsSource;
use homeostat_kubernetes::events::Settings;
use homeostat_kubernetes::watch::{self, Batch, Resume, Watcher};
use homeostat_store::Write;
use tokio::sync::mpsc;

use crate::Handle;

fn snapshot_name(source: &str, key: &str) -> String {
    format!("kubernetes:{source}:{key}")
}

fn settings(config: &KubernetesEventsSource) -> Settings {
    Settings {
        source: config.name.clone(),
        namespaces: config.namespaces.clone(),
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        event_types: config.event_types.clone(),
        pods: config.pods,
        deployments: config.deployments,
        max_age_secs: config.max_age_secs,
        ..Settings::default()
    }
}

/// Runs the source until the engine stops.
pub async fn run(config: KubernetesEventsSource, client: kube::Client, handle: Handle) {
    let settings = Arc::new(settings(&config));
    let mut saved = BTreeMap::new();
    for stream in watch::streams(&settings) {
        let key = stream.key();
        let restored = match handle
            .store()
            .snapshot(&snapshot_name(&config.name, &key))
            .await
        {
            Ok(Some((_, body))) => serde_json::from_slice::<Resume>(&body)
                .map(Some)
                .map_err(|error| error.to_string()),
            Ok(None) => Ok(None),
            Err(error) => Err(error.to_string()),
        };
        match restored {
            Ok(Some(resume)) => {
                saved.insert(key, resume);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(source = %config.name, stream = %key, %error, "cannot read the stream's resume state; listing afresh")
            }
        }
    }
    if !saved.is_empty() {
        tracing::info!(source = %config.name, streams = saved.len(), "resuming the Kubernetes watches where they stopped");
    }
    // Small: a watch waits for its batch to be journaled before it reads on.
    let (sender, mut receiver) = mpsc::channel::<Batch>(16);
    let watcher = Watcher::spawn(client, settings, saved, sender, handle.clock().clone());
    let stats = watcher.stats();
    let mut counted = (0, 0);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        let batch = tokio::select! {
            batch = receiver.recv() => batch,
            _ = tick.tick() => {
                count_errors(&handle, &config.name, &stats, &mut counted);
                continue;
            }
        };
        let Some(batch) = batch else { break };
        count_errors(&handle, &config.name, &stats, &mut counted);
        let Batch {
            key,
            mut events,
            resume,
        } = batch;
        for event in &mut events {
            for (name, value) in &config.labels {
                event
                    .labels
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        let snapshot = match serde_json::to_vec(&resume) {
            Ok(body) => Some(Write::Snapshot {
                name: snapshot_name(&config.name, &key),
                seq: 0,
                body,
            }),
            Err(error) => {
                tracing::warn!(source = %config.name, stream = %key, %error, "cannot save the stream's resume state");
                None
            }
        };
        for event in &events {
            tracing::info!(source = %config.name, stream = %key, kind = event.kind.as_str(), status = event.status.as_str(), summary = %event.annotations.get("summary").map(String::as_str).unwrap_or(""), "kubernetes");
        }
        handle.journal_own(&config.name, events, snapshot).await;
    }
    drop(watcher);
}

/// Adds the watches' failed requests and relists since the last call to `source_errors`.
fn count_errors(handle: &Handle, source: &str, stats: &watch::Stats, counted: &mut (u64, u64)) {
    use std::sync::atomic::Ordering;
    let now = (
        stats.errors.load(Ordering::Relaxed),
        stats.relists.load(Ordering::Relaxed),
    );
    for (error_type, total, before) in [
        ("api_error", now.0, counted.0),
        ("watch_expired", now.1, counted.1),
    ] {
        if total > before {
            handle
                .metrics()
                .source_errors
                .get_or_create(&vec![
                    ("source", source.to_string()),
                    ("error_type", error_type.to_string()),
                ])
                .inc_by(total - before);
        }
    }
    *counted = now;
}
