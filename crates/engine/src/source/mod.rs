//! Sources that run inside the engine (the HTTP ones are handlers in the API crate): one task per
//! HTTP probe, Kubernetes watch, SLO, detector and forecast, kept by [`Sources`] so that a reload
//! restarts only those whose config changed.

pub mod detector;
pub mod forecast;
pub mod http_probe;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod slo;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use homeostat_core::config::Source;
use homeostat_core::rule::Compiled;

use crate::Handle;

/// A source task the config asks for, before it is spawned.
enum Task {
    HttpProbe(homeostat_core::config::HttpProbeSource),
    #[cfg(feature = "kubernetes")]
    Kubernetes(homeostat_core::config::kubernetes::KubernetesEventsSource),
    Slo(homeostat_core::rule::SloTarget),
    Detector(homeostat_core::config::detectors::Detector, String),
    Forecast(homeostat_core::config::forecasts::Forecast, String),
}

/// A running source task and the config it was started with.
struct Running {
    /// The task's config as `Debug` text: equal text, unchanged source. (Every map in it is a
    /// `BTreeMap`, so the text does not depend on hashing.)
    spec: String,
    task: tokio::task::JoinHandle<()>,
}

/// What a reload did to the sources, by key (`http_probe/<name>`, `slo/<id>`, ...).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Changes {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The running source tasks. Cheap to clone: clones share them.
#[derive(Clone)]
pub struct Sources {
    running: Arc<Mutex<BTreeMap<String, Running>>>,
    http: reqwest::Client,
    cluster: crate::kubernetes::Cluster,
}

impl Sources {
    pub(crate) fn new(http: reqwest::Client, cluster: crate::kubernetes::Cluster) -> Self {
        Self {
            running: Arc::default(),
            http,
            cluster,
        }
    }

    /// Brings the running tasks in line with `compiled`: a source whose config is the same keeps
    /// its task and whatever it holds in memory (a probe's consecutive failures, a detector's
    /// model); a changed one is stopped and started afresh; a removed one is stopped.
    pub(crate) fn apply(&self, handle: &Handle, compiled: &Compiled) -> Changes {
        let wanted = tasks(compiled, &self.cluster);
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changes = Changes::default();
        let gone: Vec<String> = running
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = running.remove(&key) {
                old.task.abort();
                forget(handle, &key);
                changes.stopped.push(key);
            }
        }
        for (key, task) in wanted {
            let spec = task.spec();
            match running.get(&key) {
                Some(old) if old.spec == spec => {
                    changes.unchanged.push(key);
                    continue;
                }
                Some(old) => {
                    old.task.abort();
                    forget(handle, &key);
                    changes.restarted.push(key.clone());
                }
                None => changes.started.push(key.clone()),
            }
            let task = task.spawn(handle, &self.http, &self.cluster);
            running.insert(key, Running { spec, task });
        }
        changes
    }

    /// The cluster the Kubernetes sources watch (connected at start, or none).
    pub(crate) fn cluster(&self) -> &crate::kubernetes::Cluster {
        &self.cluster
    }

    /// Stops every source task.
    pub(crate) fn abort(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for source in running.values() {
            source.task.abort();
        }
    }
}

/// Drops the published status of a source that stopped, so the API does not show it as current.
fn forget(handle: &Handle, key: &str) {
    if let Some(id) = key.strip_prefix("slo/") {
        handle.slos().remove(id);
    } else if let Some(name) = key.strip_prefix("detector/") {
        handle.detectors().remove(name);
    }
}

/// Every source task the config asks for, by key.
fn tasks(compiled: &Compiled, cluster: &crate::kubernetes::Cluster) -> BTreeMap<String, Task> {
    let config = &compiled.config;
    let mut tasks = BTreeMap::new();
    for source in &config.sources {
        match source {
            Source::HttpProbe(probe) => {
                tasks.insert(
                    format!("http_probe/{}", probe.name),
                    Task::HttpProbe(probe.clone()),
                );
            }
            #[cfg(feature = "kubernetes")]
            Source::KubernetesEvents(watch) if cluster.client().is_some() => {
                tasks.insert(
                    format!("kubernetes_events/{}", watch.name),
                    Task::Kubernetes(watch.clone()),
                );
            }
            _ => {}
        }
    }
    #[cfg(not(feature = "kubernetes"))]
    let _ = cluster;
    for target in &compiled.slos {
        tasks.insert(
            format!("slo/{}", target.objective.id),
            Task::Slo(target.clone()),
        );
    }
    for detector in &config.detectors {
        if let Some(url) = config.prometheus_url(detector.prometheus_url.as_deref()) {
            tasks.insert(
                format!("detector/{}", detector.name),
                Task::Detector(detector.clone(), url),
            );
        }
    }
    for forecast in &config.forecasts {
        if let Some(url) = config.prometheus_url(forecast.prometheus_url.as_deref()) {
            tasks.insert(
                format!("forecast/{}", forecast.name),
                Task::Forecast(forecast.clone(), url),
            );
        }
    }
    tasks
}

impl Task {
    fn spec(&self) -> String {
        match self {
            Task::HttpProbe(probe) => format!("{probe:?}"),
            #[cfg(feature = "kubernetes")]
            Task::Kubernetes(watch) => format!("{watch:?}"),
            Task::Slo(target) => format!("{target:?}"),
            Task::Detector(detector, url) => format!("{detector:?} {url}"),
            Task::Forecast(forecast, url) => format!("{forecast:?} {url}"),
        }
    }

    fn spawn(
        self,
        handle: &Handle,
        http: &reqwest::Client,
        cluster: &crate::kubernetes::Cluster,
    ) -> tokio::task::JoinHandle<()> {
        #[cfg(not(feature = "kubernetes"))]
        let _ = cluster;
        match self {
            Task::HttpProbe(probe) => {
                tokio::spawn(http_probe::run(probe, handle.clone(), http.clone()))
            }
            #[cfg(feature = "kubernetes")]
            Task::Kubernetes(watch) => match cluster.client() {
                Some(client) => {
                    tokio::spawn(kubernetes::run(watch, client.clone(), handle.clone()))
                }
                None => tokio::spawn(async {}),
            },
            Task::Slo(target) => tokio::spawn(slo::run(
                target,
                handle.clone(),
                handle.slos().clone(),
                http.clone(),
            )),
            Task::Detector(detector, url) => tokio::spawn(detector::run(
                detector,
                url,
                handle.clone(),
                handle.detectors().clone(),
                http.clone(),
            )),
            Task::Forecast(forecast, url) => {
                tokio::spawn(forecast::run(forecast, url, handle.clone(), http.clone()))
            }
        }
    }
}
