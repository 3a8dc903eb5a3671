//! The YAML config: its types, how a folder of files merges, and diagnostics that name file, line and field.
//!
//! Parsing is pure: callers read the files and pass their text in, so this crate stays free of IO.
//! Semantic checks (matchers, CEL, templates, references) are [`crate::check`]'s, which
//! [`crate::rule::compile`] runs.

pub mod detectors;
pub mod forecasts;
pub mod incidents;
pub mod kubernetes;
pub mod locate;
mod paths;
mod repair;
pub mod runbook;
pub mod slos;
pub use runbook::{
    Approval, Branch, Check, HttpCheck, OnFailure, Param, ParamType, Prometheus, Retries, Runbook,
    Runs, Step, Wait,
};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::event::{EventKind, Labels, Status};

/// Where a secret comes from. Secrets are never written inline in config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            env: Option<String>,
            file: Option<PathBuf>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Raw(Raw),
            // Only its presence matters: it is refused with a hint.
            Inline(#[allow(dead_code)] String),
        }
        match Either::deserialize(deserializer)? {
            Either::Inline(_) => Err(serde::de::Error::custom(
                "secrets are not written inline; use `{env: NAME}` or `{file: /path/to/secret}`",
            )),
            Either::Raw(Raw {
                env: Some(name),
                file: None,
            }) if !name.is_empty() => Ok(SecretRef::Env(name)),
            Either::Raw(Raw {
                env: None,
                file: Some(path),
            }) => Ok(SecretRef::File(path)),
            Either::Raw(_) => Err(serde::de::Error::custom(
                "a secret reference needs exactly one of `env: NAME` or `file: /path`",
            )),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env `{name}`"),
            SecretRef::File(path) => write!(f, "file `{}`", path.display()),
        }
    }
}

/// A string value that may instead be a secret reference, for headers and environment variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaybeSecret {
    Plain(String),
    Secret(SecretRef),
}

/// One config file as written; every section optional so that a folder of files can split them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<Server>,
    store: Option<Store>,
    dry_run: Option<bool>,
    #[serde(default)]
    api_tokens: Vec<ApiToken>,
    #[serde(default)]
    sources: Vec<Source>,
    #[serde(default)]
    notifiers: Vec<Notifier>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    runbooks: Vec<Runbook>,
    prometheus: Option<Prometheus>,
    kubernetes: Option<kubernetes::Kubernetes>,
    runs: Option<Runs>,
    incidents: Option<incidents::Incidents>,
    #[serde(default)]
    slos: Vec<slos::SloSource>,
    #[serde(default)]
    detectors: Vec<detectors::Detector>,
    #[serde(default)]
    forecasts: Vec<forecasts::Forecast>,
}

/// The merged config of one file or a folder of files.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub server: Server,
    pub store: Store,
    /// When true no rule executes anything: every run is a dry run.
    pub dry_run: bool,
    pub api_tokens: Vec<ApiToken>,
    pub sources: Vec<Source>,
    pub notifiers: Vec<Notifier>,
    pub rules: Vec<Rule>,
    pub runbooks: Vec<Runbook>,
    /// The Prometheus-compatible API that PromQL checks query by default.
    pub prometheus: Option<Prometheus>,
    /// The cluster connection of the `kubernetes_events` source and the Kubernetes actions.
    pub kubernetes: Option<kubernetes::Kubernetes>,
    pub runs: Runs,
    pub incidents: incidents::Incidents,
    /// The SLOs the daemon evaluates.
    pub slos: Vec<slos::SloSource>,
    /// The anomaly detectors the daemon runs.
    pub detectors: Vec<detectors::Detector>,
    /// The capacity forecasts the daemon keeps.
    pub forecasts: Vec<forecasts::Forecast>,
    /// Where each list item came from, to point diagnostics at the right file and line.
    pub origins: Origins,
}

#[derive(Clone, Debug, Default)]
pub struct Origins {
    pub files: Vec<SourceFile>,
    /// For each section name, the (file index, index within that file) of each merged item.
    pub items: HashMap<&'static str, Vec<(usize, usize)>>,
    /// For singletons (`server`, `store`, `dry_run`), the file that set it.
    pub singletons: HashMap<&'static str, usize>,
}

#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub lines: HashMap<String, usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address the HTTP API listens on.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Larger request bodies are refused with 413.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Requests waiting for the journal beyond this are refused with 429 and `Retry-After`.
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// The request bodies being read, parsed or committed may hold at most this many bytes in all:
    /// a request that does not fit is refused with 429 before its body is read. With
    /// `max_connections`, this is what bounds the daemon's memory under load.
    #[serde(default = "defaults::max_inflight_bytes")]
    pub max_inflight_bytes: usize,
    /// Open connections beyond this evict the idlest one (a client that sends nothing, or too slowly).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// A request's headers must arrive within this; a slow client is disconnected.
    #[serde(default = "defaults::header_timeout_secs")]
    pub header_timeout_secs: f64,
    /// A request's body must arrive within this, counted from its headers; else 408.
    #[serde(default = "defaults::body_timeout_secs")]
    pub body_timeout_secs: f64,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(default = "defaults::idle_timeout_secs")]
    pub idle_timeout_secs: f64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            max_body_bytes: defaults::max_body_bytes(),
            queue_capacity: defaults::queue_capacity(),
            max_inflight_bytes: defaults::max_inflight_bytes(),
            max_connections: defaults::max_connections(),
            header_timeout_secs: defaults::header_timeout_secs(),
            body_timeout_secs: defaults::body_timeout_secs(),
            idle_timeout_secs: defaults::idle_timeout_secs(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The SQLite database file; a relative path is relative to the config file's directory.
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// A PostgreSQL database instead of SQLite: `postgres://user@host:port/database`, or, since
    /// a url with a password is a secret, a reference `{env: NAME}` or `{file: /path}` to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<MaybeSecret>,
    /// `full` survives power loss; `normal` survives a process crash and is faster.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Ingest is refused (503, not ready) while the store's file system has less free space than
    /// this, so that runs in progress can still journal their outcomes.
    #[serde(default = "defaults::min_free_bytes")]
    pub min_free_bytes: u64,
    /// A file of this size kept beside the database and given back when the disk fills up anyway
    /// (another process filled it), so the journal can still record what runs did.
    #[serde(default = "defaults::reserve_bytes")]
    pub reserve_bytes: u64,
    /// The write-ahead log is checkpointed and truncated when it grows past this, when the store
    /// is idle, and on a clean stop.
    #[serde(default = "defaults::wal_max_bytes")]
    pub wal_max_bytes: u64,
    /// What is kept, for how long.
    #[serde(default)]
    pub retention: Retention,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            path: defaults::store_path(),
            url: None,
            synchronous: Synchronous::default(),
            min_free_bytes: defaults::min_free_bytes(),
            reserve_bytes: defaults::reserve_bytes(),
            wal_max_bytes: defaults::wal_max_bytes(),
            retention: Retention::default(),
        }
    }
}

/// How long the journal keeps things. Events and their decisions go first; runs and incidents keep
/// their summary rows (status, times, target, title) longer than their step-by-step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Events, and the decisions made for them, older than this are deleted.
    #[serde(default = "defaults::events_max_age_secs")]
    pub events_max_age_secs: u64,
    /// The step-by-step journal of finished runs, and the timelines of resolved incidents, older
    /// than this are deleted; their summary rows stay.
    #[serde(default = "defaults::details_max_age_secs")]
    pub details_max_age_secs: u64,
    /// Summary rows of finished runs and resolved incidents older than this are deleted.
    #[serde(default = "defaults::summaries_max_age_secs")]
    pub summaries_max_age_secs: u64,
    /// When the database holds more than this, the oldest events and journal rows go first, whatever
    /// their age. `0` sets no limit.
    #[serde(default)]
    pub max_bytes: u64,
    /// How often the daemon applies the policy.
    #[serde(default = "defaults::retention_interval_secs")]
    pub interval_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events_max_age_secs: defaults::events_max_age_secs(),
            details_max_age_secs: defaults::details_max_age_secs(),
            summaries_max_age_secs: defaults::summaries_max_age_secs(),
            max_bytes: 0,
            interval_secs: defaults::retention_interval_secs(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub token: SecretRef,
}

/// What a token may do. `write` implies `ingest` and `read`; `ingest` implies nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Ingest,
    Write,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// An extra Alertmanager webhook endpoint at `/api/v1/hooks/{name}` (the default one needs no config).
    Alertmanager(AlertmanagerSource),
    /// A generic JSON webhook at `/api/v1/hooks/{name}`, HMAC-signed, mapped to events by templates.
    Webhook(WebhookSource),
    /// Probes a URL on an interval and emits firing and resolved events.
    HttpProbe(HttpProbeSource),
    /// Watches a Kubernetes cluster: Events, pod states, Deployment rollouts.
    KubernetesEvents(kubernetes::KubernetesEventsSource),
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Alertmanager(source) => &source.name,
            Source::Webhook(source) => &source.name,
            Source::HttpProbe(source) => &source.name,
            Source::KubernetesEvents(source) => &source.name,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSource {
    pub name: String,
    /// Labels added to every event from this endpoint (say, the cluster it watches).
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    pub name: String,
    /// The HMAC-SHA256 key the sender signs bodies with.
    pub secret: SecretRef,
    #[serde(default = "defaults::signature_header")]
    pub signature_header: String,
    /// Replay protection: the signature covers a delivery id and a timestamp, deliveries outside
    /// the window or seen before are refused. On by default; `replay: null` signs the body only.
    #[serde(default = "defaults::replay")]
    pub replay: Option<Replay>,
    /// A JSON pointer to an array in the body whose elements each become an event.
    #[serde(default)]
    pub items: Option<String>,
    #[serde(default)]
    pub kind: EventKind,
    /// Template that gives `firing` or `resolved`.
    #[serde(default = "defaults::firing")]
    pub status: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `sources[].replay` of a webhook: how a signed delivery proves it is fresh and new.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// A delivery whose timestamp is further than this from now, either way, is refused.
    #[serde(default = "defaults::replay_window_secs")]
    pub window_secs: u64,
    /// Holds the Unix time in seconds when the delivery was signed.
    #[serde(default = "defaults::timestamp_header")]
    pub timestamp_header: String,
    /// Holds the delivery's unique id, the same on the sender's retries.
    #[serde(default = "defaults::delivery_header")]
    pub delivery_header: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeSource {
    pub name: String,
    pub url: String,
    #[serde(default = "defaults::get")]
    pub method: String,
    #[serde(default = "defaults::probe_interval")]
    pub interval_secs: f64,
    #[serde(default = "defaults::probe_timeout")]
    pub timeout_secs: f64,
    /// Statuses that count as healthy; any 2xx when empty.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// A slower answer counts as a failure.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
    /// Consecutive failures before the probe fires.
    #[serde(default = "defaults::one")]
    pub failure_threshold: u32,
    /// Consecutive successes before a firing probe resolves.
    #[serde(default = "defaults::one")]
    pub success_threshold: u32,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notifier {
    /// A Slack incoming webhook; the URL is the secret.
    Slack(SlackNotifier),
    /// PagerDuty Events API v2.
    Pagerduty(PagerdutyNotifier),
    /// A generic JSON webhook, optionally HMAC-signed.
    Webhook(WebhookNotifier),
}

impl Notifier {
    pub fn name(&self) -> &str {
        match self {
            Notifier::Slack(notifier) => &notifier.name,
            Notifier::Pagerduty(notifier) => &notifier.name,
            Notifier::Webhook(notifier) => &notifier.name,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackNotifier {
    pub name: String,
    pub webhook_url: SecretRef,
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyNotifier {
    pub name: String,
    pub routing_key: SecretRef,
    #[serde(default = "defaults::pagerduty_url")]
    pub url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookNotifier {
    pub name: String,
    pub url: String,
    /// When set, bodies are signed into `X-Homeostat-Signature: sha256=<hex>`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    #[serde(default)]
    pub headers: BTreeMap<String, MaybeSecret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Label matchers in Alertmanager syntax; all must match.
    #[serde(default, rename = "match")]
    pub matchers: Vec<String>,
    /// A CEL expression over the event that must be true as well.
    #[serde(default)]
    pub condition: Option<String>,
    /// Which event statuses trigger the rule. Firing only by default: a rule that restarts things must
    /// not restart them again when the alert resolves.
    #[serde(default = "defaults::on")]
    pub on: Vec<Status>,
    /// Trigger on incident transitions (`opened`, `reopened`, `escalated`) instead of on events:
    /// matchers and the condition then see the incident's labels (its group and the causing event's)
    /// plus `incident` and `transition`.
    #[serde(default)]
    pub on_incident: Vec<crate::incident::correlate::Transition>,
    /// After a run for an incident succeeds, its alerts must resolve within this long (300 s by
    /// default; `verify: null` turns it off); if they do not, the incident is escalated.
    #[serde(default = "defaults::verify")]
    pub verify: Option<Verify>,
    /// Parameters templated from the event, readable by steps as `params.NAME`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The thing acted on, templated; keys the cooldown and the lock. The event fingerprint by default.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub guards: Guards,
    /// The runbook to run, by name; or inline `steps`.
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// Record what would run, run nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// After a run starts for a target, further runs for it are skipped for this long.
    #[serde(default)]
    pub cooldown_secs: u64,
    /// At most this many runs of the rule (all targets) within a sliding window.
    #[serde(default)]
    pub max_runs: Option<MaxRuns>,
    /// At most this many runs of the rule at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// One run at a time per target.
    #[serde(default = "defaults::yes")]
    pub lock: bool,
    /// Loop detection: this many runs of the rule on one target for one incident within the window,
    /// without the incident resolving, disable the rule for that target and escalate. On by
    /// default (3 in an hour); `loop: null` turns it off.
    #[serde(default = "defaults::loop_limit", rename = "loop")]
    pub loop_limit: Option<LoopLimit>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoopLimit {
    pub runs: u32,
    pub window_secs: u64,
}

/// `rules[].verify`: what must follow a successful remediation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// The incident must resolve within this long after the run succeeded.
    #[serde(default = "defaults::verify_within_secs")]
    pub within_secs: u64,
    /// A PromQL or HTTP check that, when it holds before the deadline, verifies the fix even though
    /// the alerts have not resolved yet (they may lag behind the recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            dry_run: false,
            cooldown_secs: 0,
            max_runs: None,
            max_concurrent: None,
            lock: true,
            loop_limit: defaults::loop_limit(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MaxRuns {
    pub count: u32,
    pub window_secs: u64,
}

pub(crate) mod defaults {
    use super::*;
    pub fn loop_limit() -> Option<LoopLimit> {
        Some(LoopLimit {
            runs: 3,
            window_secs: 3600,
        })
    }
    pub fn verify_within_secs() -> u64 {
        300
    }
    /// On by default: a remediation is only done when its incident resolves. `verify: null` is off.
    pub fn verify() -> Option<Verify> {
        Some(Verify {
            within_secs: verify_within_secs(),
            check: None,
        })
    }
    pub fn listen() -> String {
        "127.0.0.1:9393".into()
    }
    pub fn max_body_bytes() -> usize {
        4 << 20
    }
    pub fn queue_capacity() -> usize {
        4096
    }
    pub fn max_inflight_bytes() -> usize {
        32 << 20
    }
    pub fn max_connections() -> usize {
        512
    }
    pub fn header_timeout_secs() -> f64 {
        10.0
    }
    pub fn body_timeout_secs() -> f64 {
        30.0
    }
    pub fn idle_timeout_secs() -> f64 {
        120.0
    }
    pub fn min_free_bytes() -> u64 {
        64 << 20
    }
    pub fn reserve_bytes() -> u64 {
        16 << 20
    }
    pub fn wal_max_bytes() -> u64 {
        64 << 20
    }
    pub fn events_max_age_secs() -> u64 {
        30 * 86_400
    }
    pub fn details_max_age_secs() -> u64 {
        90 * 86_400
    }
    pub fn summaries_max_age_secs() -> u64 {
        400 * 86_400
    }
    pub fn retention_interval_secs() -> u64 {
        600
    }
    pub fn store_path() -> PathBuf {
        "homeostat.db".into()
    }
    /// On by default; `replay: null` turns it off.
    pub fn replay() -> Option<Replay> {
        Some(Replay {
            window_secs: replay_window_secs(),
            timestamp_header: timestamp_header(),
            delivery_header: delivery_header(),
        })
    }
    /// Five minutes, as Slack and Standard Webhooks allow.
    pub fn replay_window_secs() -> u64 {
        300
    }
    pub fn timestamp_header() -> String {
        "X-Homeostat-Timestamp".into()
    }
    pub fn delivery_header() -> String {
        "X-Homeostat-Delivery".into()
    }
    pub fn signature_header() -> String {
        "X-Homeostat-Signature".into()
    }
    pub fn firing() -> String {
        "firing".into()
    }
    pub fn get() -> String {
        "GET".into()
    }
    pub fn probe_interval() -> f64 {
        10.0
    }
    pub fn probe_timeout() -> f64 {
        2.0
    }
    pub fn one() -> u32 {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn pagerduty_url() -> String {
        "https://events.pagerduty.com/v2/enqueue".into()
    }
    pub fn on() -> Vec<Status> {
        vec![Status::Firing]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the config, with where it is and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// The field, as `rules[2].steps[0].with.command`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All problems found; the config is invalid if any is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0
            .iter()
            .any(|diagnostic| diagnostic.severity == Severity::Error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Config {
    /// The Prometheus-compatible API a section queries: its own `prometheus_url`, else
    /// `prometheus.url`.
    pub fn prometheus_url(&self, own: Option<&str>) -> Option<String> {
        own.or(self.prometheus.as_ref().map(|p| p.url.as_str()))
            .map(str::to_string)
    }

    /// Builds a diagnostic for a field of a merged list item, such as `("rules", 3, "steps[0].name")`.
    pub fn diagnostic(
        &self,
        severity: Severity,
        section: &'static str,
        index: Option<usize>,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let (file_index, local_path) = match index {
            Some(index) => match self
                .origins
                .items
                .get(section)
                .and_then(|items| items.get(index))
            {
                Some((file, local)) => (
                    Some(*file),
                    join_path(&format!("{section}[{local}]"), field),
                ),
                None => (None, join_path(&format!("{section}[{index}]"), field)),
            },
            None => (
                self.origins.singletons.get(section).copied(),
                join_path(section, field),
            ),
        };
        let file = file_index.and_then(|index| self.origins.files.get(index));
        Diagnostic {
            severity,
            file: file.map(|file| file.path.clone()),
            line: file.and_then(|file| locate::find(&file.lines, &local_path)),
            path: local_path,
            message: message.into(),
            hint,
        }
    }
}

fn join_path(prefix: &str, field: &str) -> String {
    match field {
        "" => prefix.to_string(),
        field if prefix.is_empty() => field.to_string(),
        field if field.starts_with('[') => format!("{prefix}{field}"),
        field => format!("{prefix}.{field}"),
    }
}

/// Parses and merges config files given as `(path, text)`, in order. Lists concatenate; a singleton
/// section (`server`, `store`, `dry_run`) may be set by one file only.
pub fn parse(files: &[(PathBuf, String)]) -> Result<Config, Diagnostics> {
    let mut config = Config::default();
    let mut diagnostics = Vec::new();
    for (file_index, (path, text)) in files.iter().enumerate() {
        let lines = locate::lines(text);
        let parsed = parse_file(path, text, &lines);
        config.origins.files.push(SourceFile {
            path: path.clone(),
            lines,
        });
        let file = match parsed {
            Ok(file) => file,
            Err(found) => {
                diagnostics.extend(found);
                continue;
            }
        };
        let mut singleton =
            |name: &'static str, present: bool, diagnostics: &mut Vec<Diagnostic>| {
                if !present {
                    return false;
                }
                if let Some(previous) = config.origins.singletons.insert(name, file_index) {
                    diagnostics.push(Diagnostic {
                        severity: Severity::Error,
                        file: Some(path.clone()),
                        line: locate::find(&config.origins.files[file_index].lines, name),
                        path: name.to_string(),
                        message: format!("`{name}` is set in two files"),
                        hint: Some(format!(
                            "remove it here or from `{}`",
                            files[previous].0.display()
                        )),
                    });
                }
                true
            };
        if singleton("server", file.server.is_some(), &mut diagnostics) {
            config.server = file.server.unwrap_or_default();
        }
        if singleton("store", file.store.is_some(), &mut diagnostics) {
            config.store = file.store.unwrap_or_default();
        }
        if singleton("dry_run", file.dry_run.is_some(), &mut diagnostics) {
            config.dry_run = file.dry_run.unwrap_or_default();
        }
        if singleton("prometheus", file.prometheus.is_some(), &mut diagnostics) {
            config.prometheus = file.prometheus;
        }
        if singleton("kubernetes", file.kubernetes.is_some(), &mut diagnostics) {
            config.kubernetes = file.kubernetes;
        }
        if singleton("runs", file.runs.is_some(), &mut diagnostics) {
            config.runs = file.runs.unwrap_or_default();
        }
        if singleton("incidents", file.incidents.is_some(), &mut diagnostics) {
            config.incidents = file.incidents.unwrap_or_default();
        }
        merge(
            &mut config.origins,
            "api_tokens",
            file_index,
            &mut config.api_tokens,
            file.api_tokens,
        );
        merge(
            &mut config.origins,
            "sources",
            file_index,
            &mut config.sources,
            file.sources,
        );
        merge(
            &mut config.origins,
            "notifiers",
            file_index,
            &mut config.notifiers,
            file.notifiers,
        );
        merge(
            &mut config.origins,
            "rules",
            file_index,
            &mut config.rules,
            file.rules,
        );
        merge(
            &mut config.origins,
            "runbooks",
            file_index,
            &mut config.runbooks,
            file.runbooks,
        );
        merge(
            &mut config.origins,
            "slos",
            file_index,
            &mut config.slos,
            file.slos,
        );
        merge(
            &mut config.origins,
            "detectors",
            file_index,
            &mut config.detectors,
            file.detectors,
        );
        merge(
            &mut config.origins,
            "forecasts",
            file_index,
            &mut config.forecasts,
            file.forecasts,
        );
    }
    if diagnostics.is_empty() {
        paths::resolve(&mut config);
        Ok(config)
    } else {
        Err(Diagnostics(diagnostics))
    }
}

fn merge<T>(
    origins: &mut Origins,
    section: &'static str,
    file_index: usize,
    into: &mut Vec<T>,
    items: Vec<T>,
) {
    let entry = origins.items.entry(section).or_default();
    for (local, item) in items.into_iter().enumerate() {
        entry.push((file_index, local));
        into.push(item);
    }
}

fn parse_file(
    path: &Path,
    text: &str,
    lines: &HashMap<String, usize>,
) -> Result<ConfigFile, Vec<Diagnostic>> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let error = match serde_path_to_error::deserialize(deserializer) {
        Ok(file) => return Ok(file),
        Err(error) => error,
    };
    let field = error.path().to_string();
    let inner = error.into_inner();
    let first = diagnose(
        path,
        text,
        lines,
        field,
        &inner.to_string(),
        inner.location(),
    );
    // serde stopped at the first error; the others are found by repairing a tree of the file.
    // A file that is not even a tree (bad YAML syntax, a key written twice) has only that one.
    let Ok(root) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Err(vec![first]);
    };
    let problems = repair::problems(&root, &|tree| {
        serde_path_to_error::deserialize::<_, ConfigFile>(tree)
            .map(drop)
            .map_err(|error| {
                let mut segments = Some(Vec::new());
                for segment in error.path().iter() {
                    match (segment, segments.as_mut()) {
                        (serde_path_to_error::Segment::Map { key }, Some(list)) => {
                            list.push(repair::Segment::Key(key.clone()))
                        }
                        (serde_path_to_error::Segment::Seq { index }, Some(list)) => {
                            list.push(repair::Segment::Index(*index))
                        }
                        (serde_path_to_error::Segment::Enum { .. }, _) => {}
                        _ => segments = None,
                    }
                }
                (segments, error.into_inner().to_string())
            })
    });
    if problems.is_empty() {
        return Err(vec![first]);
    }
    let mut diagnostics: Vec<Diagnostic> = problems
        .into_iter()
        .map(|problem| diagnose(path, text, lines, problem.path, &problem.message, None))
        .collect();
    // Top to bottom, as the semantic checks report: a missing field is found after the item's
    // other fields but is reported at the item's first line.
    diagnostics.sort_by_key(|diagnostic| diagnostic.line);
    Err(diagnostics)
}

/// The diagnostic of a structural error at `field` with serde's message, and a hint: the nearest
/// known name for an unknown field or variant.
fn diagnose(
    path: &Path,
    text: &str,
    lines: &HashMap<String, usize>,
    mut field: String,
    full: &str,
    location: Option<serde_yaml_ng::Location>,
) -> Diagnostic {
    if field == "." || field == "?" {
        field.clear();
    }
    // serde_yaml appends " at line L column C"; the location moves into the diagnostic's own fields.
    let message = match full.find(" at line ") {
        Some(index) => full[..index].to_string(),
        None => full.to_string(),
    };
    let message = message
        .trim_start_matches(&format!("{field}: "))
        .to_string();
    let mut hint = None;
    let mut duplicate_line = None;
    if let Some(unknown) = between(&message, "unknown field `", "`") {
        // serde_path_to_error's path already ends in the unknown field, except inside an
        // internally tagged enum, whose content serde buffers.
        if field != unknown && !field.ends_with(&format!(".{unknown}")) {
            field = join_path(&field, unknown);
        }
        if let Some(expected) = message.split("expected ").nth(1) {
            hint = Some(
                match crate::check::words::nearest(unknown, repair::backticked(expected)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("remove it, or use {expected}"),
                },
            );
        }
    } else if let Some(missing) = between(&message, "missing field `", "`") {
        hint = Some(format!("add `{missing}:`"));
    } else if let Some(duplicate) = between(&message, "duplicate field `", "`") {
        field = join_path(&field, duplicate);
        hint = Some(format!(
            "a file may say `{duplicate}:` once; merge the two into one list or map"
        ));
        // Point at the second occurrence, the one to remove.
        let key = format!("{duplicate}:");
        duplicate_line = text
            .lines()
            .enumerate()
            .filter(|(_, line)| line.trim_start().starts_with(&key))
            .nth(1)
            .map(|(index, _)| index + 1);
    } else if let Some(variant) = between(&message, "unknown variant `", "`") {
        if let Some(expected) = message.split("expected ").nth(1) {
            // serde says "expected one of `a`, `b`" or "expected `a` or `b`".
            let expected = expected.strip_prefix("one of ").unwrap_or(expected);
            hint = Some(
                match crate::check::words::nearest(variant, repair::backticked(expected)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("`{variant}` is not known here; use one of {expected}"),
                },
            );
        }
    }
    let line = duplicate_line
        .or_else(|| location.map(|location| location.line()))
        .or_else(|| locate::find(lines, &field));
    Diagnostic {
        severity: Severity::Error,
        file: Some(path.to_path_buf()),
        line,
        path: field,
        message,
        hint,
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Config, Diagnostics> {
        parse(&[(PathBuf::from("homeostat.yaml"), text.to_string())])
    }

    #[test]
    fn parses_a_full_config_with_defaults() {
        let config = parse_one(
            "server: {listen: '0.0.0.0:9393'}\nrules:\n  - name: r\n    match: ['a=\"b\"']\n    steps:\n      - name: s\n        action: exec\n        with: {command: [true]}\n",
        )
        .unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:9393");
        assert_eq!(config.rules[0].on, vec![Status::Firing]);
        assert!(config.rules[0].guards.lock);
        assert_eq!(config.rules[0].steps[0].timeout_secs, None);
    }

    #[test]
    fn unknown_fields_name_the_path_line_and_alternatives() {
        let error = parse_one("rules:\n  - name: r\n    stpes: []\n").unwrap_err();
        let diagnostic = &error.0[0];
        assert_eq!(diagnostic.path, "rules[0].stpes");
        assert_eq!(diagnostic.line, Some(3));
        assert!(
            diagnostic.hint.as_deref().unwrap_or("").contains("steps"),
            "{diagnostic}"
        );
    }

    #[test]
    fn every_structural_error_is_reported_in_one_pass() {
        let error = parse_one(
            "server: {listne: x}\nrules:\n  - name: a\n    stpes: []\n    guards: {cooldown_secs: soon}\n  - name: b\n    steps: [{name: s, action: log, timeout_sec: 1}]\nsources:\n  - {type: http_probe, url: u}\n",
        )
        .unwrap_err();
        let found: Vec<(&str, Option<usize>)> = error
            .0
            .iter()
            .map(|diagnostic| (diagnostic.path.as_str(), diagnostic.line))
            .collect();
        assert_eq!(
            found,
            [
                ("server.listne", Some(1)),
                ("rules[0].stpes", Some(4)),
                ("rules[0].guards.cooldown_secs", Some(5)),
                ("rules[1].steps[0].timeout_sec", Some(7)),
                ("sources[0]", Some(9)),
            ],
            "{error}"
        );
        assert!(
            error.0[4].message.contains("missing field `name`"),
            "{error}"
        );
    }

    #[test]
    fn what_is_not_a_tree_reports_its_one_error() {
        for text in [
            "rules: [",
            "rules: []\nrules: []\n",
            "- a\n- b\n",
            "42",
            "rules: {a: b}",
        ] {
            let error = parse_one(text).unwrap_err();
            assert_eq!(error.0.len(), 1, "{text}: {error}");
        }
    }

    proptest::proptest! {
        /// However many items of a list carry a typo, each is reported, at its own item.
        #[test]
        fn a_typo_in_each_item_is_each_reported(typos in proptest::collection::vec(
            proptest::sample::select(vec!["stpes", "targt", "conditon", "descripton"]), 1..12)
        ) {
            let mut text = String::from("rules:\n");
            for (index, typo) in typos.iter().enumerate() {
                text.push_str(&format!("  - name: r{index}\n    {typo}: x\n    steps: [{{name: s, action: log}}]\n"));
            }
            let error = parse_one(&text).unwrap_err();
            let paths: Vec<String> = error.0.iter().map(|diagnostic| diagnostic.path.clone()).collect();
            let expected: Vec<String> = typos
                .iter()
                .enumerate()
                .map(|(index, typo)| format!("rules[{index}].{typo}"))
                .collect();
            proptest::prop_assert_eq!(paths, expected);
            for diagnostic in &error.0 {
                proptest::prop_assert!(diagnostic.hint.as_deref().unwrap_or("").starts_with("did you mean"), "{}", diagnostic);
            }
        }
    }

    #[test]
    fn a_section_written_twice_names_it_and_says_how_to_fix_it() {
        let error = parse_one("rules: []\nsources: []\nrules: []\n").unwrap_err();
        let diagnostic = &error.0[0];
        assert_eq!(
            (diagnostic.path.as_str(), diagnostic.line),
            ("rules", Some(3)),
            "{diagnostic}"
        );
        assert!(
            diagnostic.hint.as_deref().unwrap_or("").contains("merge"),
            "{diagnostic}"
        );
    }

    #[test]
    fn inline_secrets_are_refused() {
        let error =
            parse_one("notifiers:\n  - type: slack\n    name: s\n    webhook_url: https://hooks.slack.com/x\n").unwrap_err();
        assert!(error.to_string().contains("not written inline"), "{error}");
    }

    #[test]
    fn folders_merge_lists_and_refuse_two_servers() {
        let files = vec![
            (
                PathBuf::from("a.yaml"),
                "server: {}\nrules: []\n".to_string(),
            ),
            (PathBuf::from("b.yaml"), "server: {}\n".to_string()),
        ];
        let error = parse(&files).unwrap_err();
        assert_eq!(error.0[0].file.as_deref(), Some(Path::new("b.yaml")));
        assert!(error.0[0].message.contains("two files"));
    }
}
