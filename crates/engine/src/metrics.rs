//! homeostat's own metrics, served at `/metrics` in the Prometheus text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric, registered once. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<Labels, Counter>,
    pub source_errors: Family<Labels, Counter>,
    pub events_duplicate: Counter,
    pub rules_matched: Family<Labels, Counter>,
    pub guard_verdicts: Family<Labels, Counter>,
    pub actions: Family<Labels, Counter>,
    pub action_duration: Family<Labels, Histogram>,
    pub dispatch_latency: Histogram,
    pub commit_duration: Histogram,
    pub runs_active: Gauge,
    /// Runs that ended, by status: `succeeded`, `failed`, `needs_attention`, ...
    pub runs_finished: Family<Labels, Counter>,
    pub correlation_verdicts: Family<Labels, Counter>,
    pub incident_transitions: Family<Labels, Counter>,
    pub incidents_open: Gauge,
    pub active_alerts: Gauge,
    /// From an incident's start to each milestone, observed when it resolves, by phase:
    /// `detect`, `acknowledge`, `mitigate`, `resolve`.
    pub incident_durations: Family<Labels, Histogram>,
    pub slo_evaluations: Family<Labels, Counter>,
    pub slo_budget_remaining: Family<Labels, FloatGauge>,
    pub slo_burn_rate: Family<Labels, FloatGauge>,
    pub detector_series: Family<Labels, Gauge>,
    /// Failed commits, by reason: `disk_full` or `database`.
    pub commit_failures: Family<Labels, Counter>,
    /// 1 while the journal takes new work, 0 while ingest is refused (a failing commit, a full disk).
    pub journal_accepting: Gauge,
    /// The store's disk, by what: `free`, `reserve`, `database`, `wal`.
    pub store_bytes: Family<Labels, Gauge>,
    /// Rows retention deleted, by kind.
    pub retention_deleted: Family<Labels, Counter>,
    /// Runs whose progress could not be journaled yet, waiting to retry.
    pub runs_waiting_for_journal: Gauge,
    /// Open HTTP connections.
    pub http_connections: Gauge,
    /// Connections closed to make room or for being too slow, by reason: `evicted`,
    /// `header_timeout`.
    pub http_connections_closed: Family<Labels, Counter>,
    /// Bytes of request bodies admitted and not yet done with.
    pub http_inflight_bytes: Gauge,
    /// Requests refused before their body was read, by reason.
    pub http_refused: Family<Labels, Counter>,
    /// 1 when the last reload of the config (or the start) succeeded, 0 when it was refused.
    pub config_last_reload_successful: Gauge,
    /// When the config in use was loaded, in seconds since the epoch.
    pub config_last_reload_success_timestamp: FloatGauge,
}

fn incident_histogram() -> Histogram {
    // 1s to ~1.5 days: detection is seconds, resolution can be hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 18))
}

fn latency_histogram() -> Histogram {
    // 50us to ~100s: dispatch latency lives at the bottom, slow actions at the top.
    Histogram::new(exponential_buckets(0.00005, 2.0, 22))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("homeostat");
        let events_received = Family::<Labels, Counter>::default();
        registry.register(
            "events_received",
            "Events accepted and committed, by source",
            events_received.clone(),
        );
        let source_errors = Family::<Labels, Counter>::default();
        registry.register(
            "source_errors",
            "Requests or probes a source could not turn into events, by error type",
            source_errors.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Firing events for an alert already firing since the same time (re-notifications), not decided again",
            events_duplicate.clone(),
        );
        let rules_matched = Family::<Labels, Counter>::default();
        registry.register(
            "rules_matched",
            "Events whose labels matched a rule, by rule",
            rules_matched.clone(),
        );
        let guard_verdicts = Family::<Labels, Counter>::default();
        registry.register(
            "guard_verdicts",
            "Decisions by rule and verdict",
            guard_verdicts.clone(),
        );
        let actions = Family::<Labels, Counter>::default();
        registry.register(
            "actions",
            "Actions executed, by action and outcome",
            actions.clone(),
        );
        let action_duration = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "action_duration_seconds",
            "How long actions took, by action",
            action_duration.clone(),
        );
        let dispatch_latency = latency_histogram();
        registry.register(
            "dispatch_latency_seconds",
            "From an event's receipt to its run's dispatch",
            dispatch_latency.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register(
            "journal_commit_seconds",
            "Duration of one group commit",
            commit_duration.clone(),
        );
        let runs_active = Gauge::default();
        registry.register("runs_active", "Runs in progress", runs_active.clone());
        let runs_finished = Family::<Labels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs that ended, by status",
            runs_finished.clone(),
        );
        let correlation_verdicts = Family::<Labels, Counter>::default();
        registry.register(
            "correlation_verdicts",
            "What correlation made of each event: opened, joined, repeat, silenced, inhibited, flapping, ...",
            correlation_verdicts.clone(),
        );
        let incident_transitions = Family::<Labels, Counter>::default();
        registry.register(
            "incident_transitions",
            "Incident state changes, by transition",
            incident_transitions.clone(),
        );
        let incidents_open = Gauge::default();
        registry.register(
            "incidents_open",
            "Incidents not resolved",
            incidents_open.clone(),
        );
        let active_alerts = Gauge::default();
        registry.register(
            "alerts_active",
            "Alerts firing, as correlation sees them (muted ones included)",
            active_alerts.clone(),
        );
        let incident_durations = Family::<Labels, Histogram>::new_with_constructor(
            incident_histogram as fn() -> Histogram,
        );
        registry.register(
            "incident_duration_seconds",
            "From a resolved incident's start to its detection, acknowledgement, mitigation and resolution, by phase",
            incident_durations.clone(),
        );
        let slo_evaluations = Family::<Labels, Counter>::default();
        registry.register(
            "slo_evaluations",
            "SLO evaluations against Prometheus, by SLO and result (`ok`, `error`)",
            slo_evaluations.clone(),
        );
        let slo_budget_remaining = Family::<Labels, FloatGauge>::default();
        registry.register(
            "slo_error_budget_remaining_ratio",
            "The share of the period's error budget left, by SLO (negative once overspent)",
            slo_budget_remaining.clone(),
        );
        let slo_burn_rate = Family::<Labels, FloatGauge>::default();
        registry.register(
            "slo_burn_rate_ratio",
            "The error ratio over a window divided by the error budget, by SLO and window",
            slo_burn_rate.clone(),
        );
        let detector_series = Family::<Labels, Gauge>::default();
        registry.register(
            "detector_series",
            "Series an anomaly detector tracks, by detector",
            detector_series.clone(),
        );
        let commit_failures = Family::<Labels, Counter>::default();
        registry.register(
            "journal_commit_failures",
            "Failed journal commits, by reason (disk_full, database); nothing of a failed batch is acknowledged",
            commit_failures.clone(),
        );
        let journal_accepting = Gauge::default();
        registry.register(
            "journal_accepting",
            "1 while the journal takes new work, 0 while ingest is refused (a failing commit, a full disk)",
            journal_accepting.clone(),
        );
        let store_bytes = Family::<Labels, Gauge>::default();
        registry.register(
            "store_bytes",
            "The store's disk: free space, the reserve held back for run outcomes, the database and WAL files",
            store_bytes.clone(),
        );
        let retention_deleted = Family::<Labels, Counter>::default();
        registry.register(
            "retention_deleted",
            "Rows deleted by the retention policy, by kind",
            retention_deleted.clone(),
        );
        let runs_waiting_for_journal = Gauge::default();
        registry.register(
            "runs_waiting_for_journal",
            "Runs whose progress could not be journaled yet; they wait and retry, running nothing meanwhile",
            runs_waiting_for_journal.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "http_connections",
            "Open HTTP connections",
            http_connections.clone(),
        );
        let http_connections_closed = Family::<Labels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "Connections closed by the server to stay within its limits, by reason",
            http_connections_closed.clone(),
        );
        let http_inflight_bytes = Gauge::default();
        registry.register(
            "http_inflight_bytes",
            "Bytes of request bodies admitted and not yet done with",
            http_inflight_bytes.clone(),
        );
        let http_refused = Family::<Labels, Counter>::default();
        registry.register(
            "http_refused",
            "Requests refused before their body was read, by reason",
            http_refused.clone(),
        );
        // Prometheus' and Alertmanager's names, so the alerts written for them fit.
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            config_last_reload_successful.clone(),
        );
        let config_last_reload_success_timestamp = FloatGauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            config_last_reload_success_timestamp.clone(),
        );
        Self {
            registry,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
            commit_failures,
            journal_accepting,
            store_bytes,
            retention_deleted,
            runs_waiting_for_journal,
            http_connections,
            http_connections_closed,
            http_inflight_bytes,
            http_refused,
            events_received,
            source_errors,
            events_duplicate,
            rules_matched,
            guard_verdicts,
            actions,
            action_duration,
            dispatch_latency,
            commit_duration,
            runs_active,
            runs_finished,
            correlation_verdicts,
            incident_transitions,
            incidents_open,
            active_alerts,
            incident_durations,
            slo_evaluations,
            slo_budget_remaining,
            slo_burn_rate,
            detector_series,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// The time-to-X distributions of an incident that just resolved (time to mitigate is observed
    /// when a remediation mitigates it, which may come after the resolve).
    pub fn incident_resolved(&self, incident: &homeostat_core::incident::Incident) {
        let phases = [
            ("detect", Some(incident.time_to_detect())),
            ("acknowledge", incident.time_to_acknowledge()),
            ("resolve", incident.time_to_resolve()),
        ];
        for (phase, seconds) in phases {
            if let Some(seconds) = seconds {
                self.incident_durations
                    .get_or_create(&vec![("phase", phase.to_string())])
                    .observe(seconds);
            }
        }
    }

    pub fn source_error(&self, source: &str, error_type: &str) {
        self.source_errors
            .get_or_create(&vec![
                ("source", source.to_string()),
                ("error_type", error_type.to_string()),
            ])
            .inc();
    }
}
