//! Integration tests, linked once into one binary: in-process API and pipeline tests first, then
//! end-to-end tests against the real `homeostat` binary, Prometheus and Alertmanager on loopback.

mod api;
mod browser;
mod cli;
mod config_paths;
mod crash;
mod dashboard;
mod demo;
mod e2e_alertmanager;
mod e2e_alertmanager_api;
mod e2e_detector;
mod e2e_forecast;
mod e2e_incidents;
mod e2e_kubernetes;
mod e2e_slo;
mod examples;
mod faults;
mod formats_api;
mod hardening;
mod incidents_api;
mod pipeline;
#[cfg(feature = "postgres")]
mod postgres;
mod readme;
mod reload;
mod runbook_crash;
mod runbooks_api;
mod self_monitoring;
mod shadow;
mod slo_rules;
mod support;
mod systemd;
mod upkeep;
