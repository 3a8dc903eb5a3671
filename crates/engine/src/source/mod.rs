//! Sources that run inside the engine (the HTTP ones are handlers in the API crate).

pub mod detector;
pub mod forecast;
pub mod http_probe;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod slo;

use homeostat_core::config::Source;

use crate::Handle;

/// Starts one task per source the config asks for: each HTTP probe, Kubernetes watch, SLO,
/// detector and forecast.
pub(crate) fn spawn(
    handle: &Handle,
    http: &reqwest::Client,
    cluster: &crate::kubernetes::Cluster,
) -> Vec<tokio::task::JoinHandle<()>> {
    let compiled = handle.compiled().clone();
    let config = &compiled.config;
    let mut tasks = Vec::new();
    for source in &config.sources {
        match source {
            Source::HttpProbe(probe) => tasks.push(tokio::spawn(http_probe::run(
                probe.clone(),
                handle.clone(),
                http.clone(),
            ))),
            #[cfg(feature = "kubernetes")]
            Source::KubernetesEvents(watch) => {
                if let Some(client) = cluster.client() {
                    tasks.push(tokio::spawn(kubernetes::run(
                        watch.clone(),
                        client.clone(),
                        handle.clone(),
                    )));
                }
            }
            _ => {}
        }
    }
    #[cfg(not(feature = "kubernetes"))]
    let _ = cluster;
    for target in &compiled.slos {
        tasks.push(tokio::spawn(slo::run(
            target.clone(),
            handle.clone(),
            handle.slos().clone(),
            http.clone(),
        )));
    }
    for detector in &config.detectors {
        if let Some(url) = config.prometheus_url(detector.prometheus_url.as_deref()) {
            tasks.push(tokio::spawn(detector::run(
                detector.clone(),
                url,
                handle.clone(),
                handle.detectors().clone(),
                http.clone(),
            )));
        }
    }
    for forecast in &config.forecasts {
        if let Some(url) = config.prometheus_url(forecast.prometheus_url.as_deref()) {
            tasks.push(tokio::spawn(forecast::run(
                forecast.clone(),
                url,
                handle.clone(),
                http.clone(),
            )));
        }
    }
    tasks
}
