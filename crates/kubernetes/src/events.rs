//! Turning Kubernetes objects into homeostat events: Warning `Event`s as momentary events, pod
//! states (crash loops, image pulls, OOM kills) and stuck rollouts as alerts that fire and
//! resolve, and deployment rollouts as changes.
//!
//! Every event names its workload the way kube-state-metrics does (`namespace`, `pod`,
//! `container`, `replicaset`, `deployment`, `statefulset`, `daemonset`, `job`, `node`), owners
//! included, so a Prometheus alert about the same workload correlates with it.
//!
//! What the translation must remember across a restart or a relist (the newest event time
//! emitted, the alerts firing, the images last rolled out) lives in [`Resume`], which the engine
//! stores with the events in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use homeostat_core::clock::SharedClock;
use homeostat_core::event::Labels;
use homeostat_core::{Event, EventKind, Status};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Event as KubeEvent, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::watch::Resume;

/// The default source name of the events.
pub const SOURCE: &str = "kubernetes";

/// Alerts firing, deployments and OOM kills remembered per stream, at most; past it new ones are
/// not tracked (and a warning says so) rather than letting a huge cluster grow [`Resume`] without
/// end.
const MAX_TRACKED: usize = 10_000;

/// A summary longer than this is cut: Event messages can quote whole stack traces.
const MAX_SUMMARY: usize = 1_000;

/// The annotation the deployment controller keeps the current revision in.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// What to watch and how to translate it; the engine fills it from its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The events' `source`.
    pub source: String,
    /// Namespaces to watch, one stream each; empty watches all namespaces with one stream.
    pub namespaces: Vec<String>,
    /// Restricts the Pods and Deployments watched. Events carry no labels of their own, so it does
    /// not apply to them.
    pub label_selector: Option<String>,
    /// Restricts the Events watched, such as `involvedObject.kind=Pod`. Field selectors name
    /// fields of one resource type, so it applies to Events only.
    pub field_selector: Option<String>,
    /// Event `type`s turned into events (`Warning`, `Normal`).
    pub event_types: Vec<String>,
    /// Whether to watch core/v1 Events.
    pub events: bool,
    /// Whether to watch Pods for crash loops, image pull failures and OOM kills.
    pub pods: bool,
    /// Whether to watch Deployments for rollouts and stuck rollouts.
    pub deployments: bool,
    /// On a first start, Events and OOM kills older than this are not reported.
    pub max_age_secs: u64,
    /// The API server ends each watch after this long, and it is started again.
    pub timeout_secs: u32,
    /// The first wait after a failed request; it doubles with each failure in a row.
    pub backoff_initial_ms: u64,
    /// The longest wait between failed requests.
    pub backoff_max_ms: u64,
    /// Owners (of pods, replica sets, jobs) remembered, to spare the API server a GET per event.
    pub owner_cache: usize,
    /// How long an owner lookup is remembered.
    pub owner_ttl_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            source: SOURCE.into(),
            namespaces: Vec::new(),
            label_selector: None,
            field_selector: None,
            event_types: vec!["Warning".into()],
            events: true,
            pods: true,
            deployments: true,
            max_age_secs: 300,
            timeout_secs: 290,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            owner_cache: 4096,
            owner_ttl_secs: 600,
        }
    }
}

/// Errors looking up an object's owners. They never stop a stream: the owners are then guessed
/// from names, and the error is logged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot get {kind} `{namespace}/{name}` to find its owners: {source}")]
    Owner {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The newest Event time emitted, and which Events had exactly that time, so a relist emits
/// only what is newer (timestamps are whole seconds; two Events can share one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    pub at: DateTime<Utc>,
    /// `<namespace>/<name>@<resourceVersion>` of the Events seen at `at`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub keys: BTreeSet<String>,
}

impl Watermark {
    fn is_new(this: Option<&Watermark>, at: DateTime<Utc>, key: &str) -> bool {
        match this {
            None => true,
            Some(mark) => at > mark.at || (at == mark.at && !mark.keys.contains(key)),
        }
    }

    fn advance(this: &mut Option<Watermark>, at: DateTime<Utc>, key: &str) {
        match this {
            Some(mark) if at < mark.at => {}
            Some(mark) if at == mark.at => {
                mark.keys.insert(key.to_string());
            }
            _ => {
                *this = Some(Watermark {
                    at,
                    keys: [key.to_string()].into(),
                })
            }
        }
    }
}

/// An alert firing, kept so it can resolve with the same labels even after its object is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// `<namespace>/<name>` of the Pod or Deployment it is about.
    pub object: String,
    pub labels: Labels,
    pub since: DateTime<Utc>,
}

/// What a Deployment last rolled out: its revision and its containers' images.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Container name to image.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
}

/// What a translation needs besides the object: settings, clock and the owner lookups.
#[derive(Debug)]
pub(crate) struct Context {
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    pub owners: Owners,
}

impl Context {
    pub fn new(client: Client, settings: Arc<Settings>, clock: SharedClock) -> Self {
        let owners = Owners::new(client, &settings, clock.clone());
        Context {
            settings,
            clock,
            owners,
        }
    }

    /// An event of `kind` with our source, and a fingerprint of its object rather than of its
    /// labels: owners can be guessed first and known later, and the alert must still resolve.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        kind: EventKind,
        status: Status,
        fingerprint: String,
        labels: Labels,
        annotations: Labels,
        starts_at: Option<DateTime<Utc>>,
        data: Option<serde_json::Value>,
    ) -> Event {
        let now = self.clock.now();
        let mut event = Event::raised(
            &self.settings.source,
            status,
            labels,
            annotations,
            starts_at,
            now,
            data,
        );
        event.kind = kind;
        event.fingerprint = fingerprint;
        event
    }

    /// Before this, a first sighting (an Event, an OOM kill) is old news not worth reporting.
    fn horizon(&self, resume: &Resume) -> DateTime<Utc> {
        let by_age =
            self.clock.now() - chrono::Duration::seconds(self.settings.max_age_secs as i64);
        // A stream that was stopped reports what happened while it was away, however long ago.
        match resume.updated_at {
            Some(at) if at < by_age => at,
            _ => by_age,
        }
    }
}

/// One watched resource type's translation into events.
pub(crate) trait Translate: Send + Sync + 'static {
    type Object: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;

    /// An object added or modified while watching.
    fn applied(
        &self,
        resume: &mut Resume,
        object: &Self::Object,
    ) -> impl Future<Output = Vec<Event>> + Send;

    /// An object deleted while watching.
    fn deleted(
        &self,
        resume: &mut Resume,
        object: &Self::Object,
    ) -> impl Future<Output = Vec<Event>> + Send;

    /// The whole current state, from a list: on a first start (`fresh`, no saved [`Resume`]), or
    /// again after a watch expired, when what changed meanwhile must be told.
    fn listed(
        &self,
        resume: &mut Resume,
        objects: &[Self::Object],
        fresh: bool,
    ) -> impl Future<Output = Vec<Event>> + Send;
}

/// `<namespace>/<name>` of an object.
fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

fn to_chrono(timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    i64::try_from(timestamp.as_nanosecond())
        .ok()
        .map(DateTime::from_timestamp_nanos)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `Kube` + the reason, keeping only what is valid in an alert name.
fn alertname(reason: &str) -> String {
    let mut name = String::from("Kube");
    name.extend(reason.chars().filter(char::is_ascii_alphanumeric));
    name
}

// ---------------------------------------------------------------------------------------------
// Owners

/// Looks up the controllers above an object (Pod → ReplicaSet → Deployment) as labels, with a small cache: Events about one pod come in bursts.
pub(crate) struct Owners {
    client: Client,
    clock: SharedClock,
    capacity: usize,
    ttl: Duration,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owners")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Oldest-first eviction; an owner lookup never changes for an object's life, so recency adds
/// little over insertion order.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Labels, Duration)>,
    order: VecDeque<String>,
}

impl Owners {
    fn new(client: Client, settings: &Settings, clock: SharedClock) -> Self {
        Owners {
            client,
            clock,
            capacity: settings.owner_cache.max(1),
            ttl: Duration::from_secs(settings.owner_ttl_secs),
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cached(&self, key: &str) -> Option<Labels> {
        let now = self.clock.monotonic();
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        cache
            .entries
            .get(key)
            .filter(|(_, at)| now.saturating_sub(*at) < self.ttl)
            .map(|(labels, _)| labels.clone())
    }

    fn remember(&self, key: String, labels: &Labels) {
        let now = self.clock.monotonic();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if cache
            .entries
            .insert(key.clone(), (labels.clone(), now))
            .is_none()
        {
            cache.order.push_back(key);
        }
        while cache.entries.len() > self.capacity {
            let Some(oldest) = cache.order.pop_front() else {
                break;
            };
            cache.entries.remove(&oldest);
        }
    }

    async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|source| Error::Owner {
                kind: K::kind(&()).into_owned(),
                namespace: namespace.into(),
                name: name.into(),
                source,
            })
    }

    /// The owners of a pod known only by name (an Event's involved object): from the pod, or,
    /// when it is gone, guessed from its name.
    pub async fn of_pod(&self, namespace: &str, name: &str) -> Labels {
        let key = format!("Pod/{namespace}/{name}");
        if let Some(labels) = self.cached(&key) {
            return labels;
        }
        let labels = match self.get::<Pod>(namespace, name).await {
            Ok(Some(pod)) => self.of_refs(namespace, pod.owner_references()).await,
            Ok(None) => guess_from_pod_name(name),
            Err(error) => {
                tracing::warn!(%error, "guessing the owners from the pod's name");
                guess_from_pod_name(name)
            }
        };
        self.remember(key, &labels);
        labels
    }

    /// The labels for an object's controller and the controllers above it.
    pub async fn of_refs(&self, namespace: &str, refs: &[OwnerReference]) -> Labels {
        let Some(owner) = refs.iter().find(|owner| owner.controller == Some(true)) else {
            return Labels::new();
        };
        self.of_owner(namespace, &owner.kind, &owner.name).await
    }

    /// The labels naming an owner of `kind` and, for a ReplicaSet, its Deployment. (A Job's
    /// CronJob is not looked up: the RBAC the deployment grants has no `get` on jobs.)
    pub async fn of_owner(&self, namespace: &str, kind: &str, name: &str) -> Labels {
        let mut labels = Labels::new();
        labels.insert(kind.to_ascii_lowercase(), name.to_string());
        if kind == "ReplicaSet" {
            labels.extend(self.above::<ReplicaSet>(namespace, name).await);
        }
        labels
    }

    /// The controller above a ReplicaSet, as labels.
    async fn above<K>(&self, namespace: &str, name: &str) -> Labels
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&());
        let key = format!("{kind}/{namespace}/{name}");
        if let Some(labels) = self.cached(&key) {
            return labels;
        }
        let labels = match self.get::<K>(namespace, name).await {
            Ok(Some(object)) => object
                .owner_references()
                .iter()
                .find(|owner| owner.controller == Some(true))
                .map(|owner| Labels::from([(owner.kind.to_ascii_lowercase(), owner.name.clone())]))
                .unwrap_or_default(),
            Ok(None) if kind == "ReplicaSet" => guess_from_replicaset_name(name),
            Ok(None) => Labels::new(),
            Err(error) => {
                tracing::warn!(%error, "guessing the owner from the name");
                if kind == "ReplicaSet" {
                    guess_from_replicaset_name(name)
                } else {
                    Labels::new()
                }
            }
        };
        self.remember(key, &labels);
        labels
    }
}

/// Whether `text` could be a pod-template-hash or a generated name suffix: the alphabet
/// Kubernetes' `SafeEncodeString` uses (no vowels, no digits that read as letters).
fn safe_encoded(text: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&text.len())
        && text
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
}

/// A deployment's pod is named `<deployment>-<pod-template-hash>-<5 chars>`; anything else is
/// not guessed at (a StatefulSet's `web-0`, a DaemonSet's `agent-x7k2p`).
pub fn guess_from_pod_name(pod: &str) -> Labels {
    let Some((replicaset, suffix)) = pod.rsplit_once('-') else {
        return Labels::new();
    };
    if !safe_encoded(suffix, 5..=5) {
        return Labels::new();
    }
    let deployment = guess_from_replicaset_name(replicaset);
    if deployment.is_empty() {
        return Labels::new();
    }
    let mut labels = deployment;
    labels.insert("replicaset".into(), replicaset.into());
    labels
}

/// A deployment's ReplicaSet is named `<deployment>-<pod-template-hash>`; the hash is a 32-bit
/// number's decimal digits, safe-encoded, so 6 to 10 characters in practice.
fn guess_from_replicaset_name(replicaset: &str) -> Labels {
    match replicaset.rsplit_once('-') {
        Some((deployment, hash)) if !deployment.is_empty() && safe_encoded(hash, 6..=10) => {
            Labels::from([("deployment".to_string(), deployment.to_string())])
        }
        _ => Labels::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// core/v1 Events

/// Warning (or other configured) core/v1 Events as momentary `Info` events.
pub(crate) struct Events {
    pub context: Arc<Context>,
}

/// When an Event last happened: its series, its last timestamp, its creation.
pub fn event_time(event: &KubeEvent) -> Option<DateTime<Utc>> {
    event
        .series
        .as_ref()
        .and_then(|series| series.last_observed_time.as_ref())
        .map(|time| &time.0)
        .or(event.last_timestamp.as_ref().map(|time| &time.0))
        .or(event.event_time.as_ref().map(|time| &time.0))
        .or(event.first_timestamp.as_ref().map(|time| &time.0))
        .or(event
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|time| &time.0))
        .and_then(to_chrono)
}

/// One occurrence of an Event: each repeat updates the object, and so its resourceVersion.
fn occurrence(event: &KubeEvent) -> String {
    format!(
        "{}@{}",
        object_key(event),
        event
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    )
}

impl Events {
    fn wanted(&self, event: &KubeEvent) -> bool {
        let kind = event.type_.as_deref().unwrap_or("Normal");
        self.context
            .settings
            .event_types
            .iter()
            .any(|wanted| wanted.eq_ignore_ascii_case(kind))
    }

    /// The homeostat event for a Kubernetes Event.
    pub async fn translate(&self, event: &KubeEvent, at: Option<DateTime<Utc>>) -> Event {
        let involved = &event.involved_object;
        let kind = involved.kind.as_deref().unwrap_or("Unknown");
        let name = involved.name.as_deref().unwrap_or_default();
        let namespace = involved.namespace.as_deref().unwrap_or_default();
        let reason = event.reason.as_deref().unwrap_or("Unknown");
        let type_ = event.type_.as_deref().unwrap_or("Normal");
        let mut labels = Labels::new();
        labels.insert("alertname".into(), alertname(reason));
        labels.insert("reason".into(), reason.into());
        labels.insert("kind".into(), kind.into());
        labels.insert(
            "severity".into(),
            if type_ == "Warning" {
                "warning"
            } else {
                "info"
            }
            .into(),
        );
        if !namespace.is_empty() {
            labels.insert("namespace".into(), namespace.into());
        }
        // `spec.containers{checkout}` names the container an Event is about.
        if let Some(container) = involved.field_path.as_deref().and_then(|path| {
            path.split_once('{')
                .and_then(|(_, rest)| rest.strip_suffix('}'))
        }) {
            labels.insert("container".into(), container.into());
        }
        let owners = match kind {
            "Pod" if !namespace.is_empty() => self.context.owners.of_pod(namespace, name).await,
            "ReplicaSet" if !namespace.is_empty() => {
                self.context.owners.of_owner(namespace, kind, name).await
            }
            _ => Labels::new(),
        };
        labels.extend(owners);
        labels.insert(kind.to_ascii_lowercase(), name.into());

        let what = if namespace.is_empty() {
            format!("{} {name}", kind.to_ascii_lowercase())
        } else {
            format!("{} {namespace}/{name}", kind.to_ascii_lowercase())
        };
        let message = event.message.as_deref().unwrap_or(reason).trim();
        let count = event
            .series
            .as_ref()
            .and_then(|series| series.count)
            .or(event.count)
            .unwrap_or(1);
        let reporter = event
            .reporting_component
            .as_deref()
            .filter(|component| !component.is_empty())
            .or_else(|| {
                event
                    .source
                    .as_ref()
                    .and_then(|source| source.component.as_deref())
            })
            .unwrap_or("unknown");
        let mut description = format!("{type_} event {reason} on {what}, reported by {reporter}");
        if let Some(host) = event
            .source
            .as_ref()
            .and_then(|source| source.host.as_deref())
        {
            description.push_str(&format!(" on {host}"));
        }
        if count > 1 {
            description.push_str(&format!(", seen {count} times"));
        }
        description.push_str(&format!(": {message}"));
        let annotations = Labels::from([
            (
                "summary".to_string(),
                truncate(format!("{what}: {message}"), MAX_SUMMARY),
            ),
            (
                "description".to_string(),
                truncate(description, 4 * MAX_SUMMARY),
            ),
        ]);
        let data = json!({
            "event": {
                "namespace": event.metadata.namespace,
                "name": event.metadata.name,
                "uid": event.metadata.uid,
            },
            "type": type_,
            "count": count,
            "reportingComponent": reporter,
            "host": event.source.as_ref().and_then(|source| source.host.clone()),
            "firstTimestamp": event.first_timestamp.as_ref().and_then(|time| to_chrono(&time.0)),
        });
        self.context.event(
            EventKind::Info,
            Status::Firing,
            format!("kubernetes/event/{namespace}/{kind}/{name}/{reason}"),
            labels,
            annotations,
            at,
            Some(data),
        )
    }
}

impl Translate for Events {
    type Object = KubeEvent;

    async fn applied(&self, resume: &mut Resume, event: &KubeEvent) -> Vec<Event> {
        if !self.wanted(event) {
            return Vec::new();
        }
        // The watch itself never repeats an occurrence (it resumes from a resourceVersion), so
        // everything it brings is told; the watermark is for the next relist.
        let at = event_time(event);
        if let Some(at) = at {
            Watermark::advance(&mut resume.events, at, &occurrence(event));
        }
        vec![self.translate(event, at).await]
    }

    async fn deleted(&self, _: &mut Resume, _: &KubeEvent) -> Vec<Event> {
        // Events expire (an hour by default); that is not news.
        Vec::new()
    }

    async fn listed(&self, resume: &mut Resume, events: &[KubeEvent], _fresh: bool) -> Vec<Event> {
        // A list brings every retained Event again: tell only those newer than the watermark,
        // or, with none yet, those younger than `max_age_secs`.
        let horizon = self.context.horizon(resume);
        let mut wanted: Vec<(DateTime<Utc>, String, &KubeEvent)> = events
            .iter()
            .filter(|event| self.wanted(event))
            .filter_map(|event| Some((event_time(event)?, occurrence(event), event)))
            .collect();
        wanted.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut out = Vec::new();
        for (at, key, event) in wanted {
            let new = Watermark::is_new(resume.events.as_ref(), at, &key);
            if new && (resume.events.is_some() || at >= horizon) {
                out.push(self.translate(event, Some(at)).await);
            }
            Watermark::advance(&mut resume.events, at, &key);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Pods

/// Pod states as alerts: crash loops and image pull failures fire and resolve; OOM kills are
/// momentary.
pub(crate) struct Pods {
    pub context: Arc<Context>,
}

/// An alert a pod's status calls for.
struct PodAlert {
    alertname: &'static str,
    container: String,
    reason: String,
    message: String,
}

/// An OOM kill seen in a container's status.
struct OomKill {
    container: String,
    /// The killed container's ID (else its finish time): the same kill appears first as the
    /// container's state, then as its last state once it restarted.
    occurrence: String,
    finished_at: Option<DateTime<Utc>>,
    restart_count: i32,
}

fn pod_alert_fingerprint(pod: &str, container: &str, alertname: &str) -> String {
    format!("kubernetes/pod/{pod}/{container}/{alertname}")
}

impl Pods {
    fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
        pod.status.iter().flat_map(|status| {
            status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten())
        })
    }

    /// The alerts the pod's status calls for, by fingerprint.
    fn alerts(pod: &Pod) -> BTreeMap<String, PodAlert> {
        let key = object_key(pod);
        let mut alerts = BTreeMap::new();
        for status in Self::statuses(pod) {
            let Some(waiting) = status
                .state
                .as_ref()
                .and_then(|state| state.waiting.as_ref())
            else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or_default();
            let alertname = match reason {
                "CrashLoopBackOff" => "KubePodCrashLooping",
                "ImagePullBackOff" | "ErrImagePull" => "KubePodImagePullBackOff",
                _ => continue,
            };
            alerts.insert(
                pod_alert_fingerprint(&key, &status.name, alertname),
                PodAlert {
                    alertname,
                    container: status.name.clone(),
                    reason: reason.into(),
                    message: waiting.message.clone().unwrap_or_default(),
                },
            );
        }
        alerts
    }

    fn oom_kills(pod: &Pod) -> Vec<OomKill> {
        let mut kills = Vec::new();
        for status in Self::statuses(pod) {
            let terminated = [status.state.as_ref(), status.last_state.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|state| state.terminated.as_ref())
                .find(|terminated| terminated.reason.as_deref() == Some("OOMKilled"));
            let Some(terminated) = terminated else {
                continue;
            };
            let finished_at = terminated
                .finished_at
                .as_ref()
                .and_then(|time| to_chrono(&time.0));
            let Some(occurrence) = terminated
                .container_id
                .clone()
                .filter(|id| !id.is_empty())
                .or_else(|| finished_at.map(|at| at.to_rfc3339()))
            else {
                continue;
            };
            kills.push(OomKill {
                container: status.name.clone(),
                occurrence,
                finished_at,
                restart_count: status.restart_count,
            });
        }
        kills
    }

    /// The labels every event about this pod carries.
    async fn labels(&self, pod: &Pod) -> Labels {
        let namespace = pod.namespace().unwrap_or_default();
        let mut labels = self
            .context
            .owners
            .of_refs(&namespace, pod.owner_references())
            .await;
        labels.insert("namespace".into(), namespace);
        labels.insert("pod".into(), pod.name_any());
        labels
    }

    /// Fires what the pod's status calls for and is not firing yet, resolves what it no longer
    /// calls for, and tells new OOM kills.
    async fn observe(&self, resume: &mut Resume, pod: &Pod, horizon: DateTime<Utc>) -> Vec<Event> {
        let key = object_key(pod);
        let now = self.context.clock.now();
        let alerts = Self::alerts(pod);
        let mut out = resolve_gone(&self.context, resume, &key, |fingerprint| {
            alerts.contains_key(fingerprint)
        });
        let new: Vec<_> = alerts
            .iter()
            .filter(|(fingerprint, _)| !resume.firing.contains_key(*fingerprint))
            .collect();
        let kills: Vec<_> = Self::oom_kills(pod)
            .into_iter()
            .filter_map(|kill| {
                let slot = format!("{key}/{}", kill.container);
                let seen = resume.ooms.get(&slot);
                if seen == Some(&kill.occurrence) {
                    return None;
                }
                // A kill after one already recorded is news; a first sighting only if recent.
                let report = seen.is_some() || kill.finished_at.is_some_and(|at| at >= horizon);
                if resume.ooms.len() < MAX_TRACKED || seen.is_some() {
                    resume.ooms.insert(slot, kill.occurrence.clone());
                }
                report.then_some(kill)
            })
            .collect();
        if new.is_empty() && kills.is_empty() {
            return out;
        }
        let base = self.labels(pod).await;
        for (fingerprint, alert) in new {
            if resume.firing.len() >= MAX_TRACKED {
                tracing::warn!(pod = %key, "too many alerts firing; not tracking more");
                break;
            }
            let mut labels = base.clone();
            labels.insert("alertname".into(), alert.alertname.into());
            labels.insert("container".into(), alert.container.clone());
            labels.insert("severity".into(), "warning".into());
            let what = match alert.alertname {
                "KubePodCrashLooping" => "is crash-looping",
                _ => "cannot pull its image",
            };
            let mut summary = format!("pod {key} container {} {what}", alert.container);
            if !alert.message.is_empty() {
                summary.push_str(&format!(": {}", alert.message));
            }
            let annotations = Labels::from([
                ("summary".to_string(), truncate(summary, MAX_SUMMARY)),
                (
                    "description".to_string(),
                    format!(
                        "container {} is waiting with reason {}",
                        alert.container, alert.reason
                    ),
                ),
            ]);
            resume.firing.insert(
                fingerprint.clone(),
                Firing {
                    object: key.clone(),
                    labels: labels.clone(),
                    since: now,
                },
            );
            out.push(self.context.event(
                EventKind::Alert,
                Status::Firing,
                fingerprint.clone(),
                labels,
                annotations,
                Some(now),
                Some(json!({"reason": alert.reason})),
            ));
        }
        for kill in kills {
            let mut labels = base.clone();
            labels.insert("alertname".into(), "KubeContainerOOMKilled".into());
            labels.insert("container".into(), kill.container.clone());
            labels.insert("severity".into(), "warning".into());
            labels.insert("reason".into(), "OOMKilled".into());
            let annotations = Labels::from([
                (
                    "summary".to_string(),
                    format!("pod {key} container {} was OOM-killed", kill.container),
                ),
                (
                    "description".to_string(),
                    format!(
                        "container {} ran out of memory and was killed; it has restarted {} times",
                        kill.container, kill.restart_count
                    ),
                ),
            ]);
            out.push(self.context.event(
                EventKind::Info,
                Status::Firing,
                pod_alert_fingerprint(&key, &kill.container, "KubeContainerOOMKilled"),
                labels,
                annotations,
                kill.finished_at.or(Some(now)),
                Some(json!({"restartCount": kill.restart_count, "occurrence": kill.occurrence})),
            ));
        }
        out
    }
}

/// Resolves the alerts firing about `object` that `still` no longer holds.
fn resolve_gone(
    context: &Context,
    resume: &mut Resume,
    object: &str,
    still: impl Fn(&str) -> bool,
) -> Vec<Event> {
    let gone: Vec<String> = resume
        .firing
        .iter()
        .filter(|(fingerprint, firing)| firing.object == object && !still(fingerprint))
        .map(|(fingerprint, _)| fingerprint.clone())
        .collect();
    gone.into_iter()
        .filter_map(|fingerprint| {
            let firing = resume.firing.remove(&fingerprint)?;
            Some(resolved(context, fingerprint, firing))
        })
        .collect()
}

fn resolved(context: &Context, fingerprint: String, firing: Firing) -> Event {
    let alertname = firing.labels.get("alertname").cloned().unwrap_or_default();
    let annotations = Labels::from([(
        "summary".to_string(),
        format!("{alertname} on {} has cleared", firing.object),
    )]);
    context.event(
        EventKind::Alert,
        Status::Resolved,
        fingerprint,
        firing.labels,
        annotations,
        Some(firing.since),
        None,
    )
}

impl Translate for Pods {
    type Object = Pod;

    async fn applied(&self, resume: &mut Resume, pod: &Pod) -> Vec<Event> {
        let horizon = self.context.horizon(resume);
        self.observe(resume, pod, horizon).await
    }

    async fn deleted(&self, resume: &mut Resume, pod: &Pod) -> Vec<Event> {
        let key = object_key(pod);
        let prefix = format!("{key}/");
        resume.ooms.retain(|slot, _| !slot.starts_with(&prefix));
        resolve_gone(&self.context, resume, &key, |_| false)
    }

    async fn listed(&self, resume: &mut Resume, pods: &[Pod], _fresh: bool) -> Vec<Event> {
        let horizon = self.context.horizon(resume);
        let listed: BTreeSet<String> = pods.iter().map(object_key).collect();
        // Pods deleted while we were away: their alerts resolve, their kills are forgotten.
        let mut out = Vec::new();
        let vanished: BTreeSet<String> = resume
            .firing
            .values()
            .map(|firing| firing.object.clone())
            .filter(|object| !listed.contains(object))
            .collect();
        for object in vanished {
            out.extend(resolve_gone(&self.context, resume, &object, |_| false));
        }
        resume.ooms.retain(|slot, _| {
            slot.rsplit_once('/')
                .is_some_and(|(pod, _)| listed.contains(pod))
        });
        for pod in pods {
            out.extend(self.observe(resume, pod, horizon).await);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Deployments

/// Deployment rollouts as changes, and stuck rollouts as alerts.
pub(crate) struct Deployments {
    pub context: Arc<Context>,
}

const ROLLOUT_STUCK: &str = "KubeDeploymentRolloutStuck";

fn rollout_of(deployment: &Deployment) -> Rollout {
    Rollout {
        revision: deployment.annotations().get(REVISION).cloned(),
        images: deployment
            .spec
            .iter()
            .flat_map(|spec| spec.template.spec.iter())
            .flat_map(|spec| spec.containers.iter())
            .map(|container| {
                (
                    container.name.clone(),
                    container.image.clone().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

/// An image reference's repository and its tag or digest (empty when it has neither). A colon
/// followed by a slash is a registry's port, not a tag.
fn split_image(image: &str) -> (&str, &str) {
    image
        .rsplit_once('@')
        .or_else(|| image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')))
        .unwrap_or((image, ""))
}

/// `ghcr.io/acme/checkout:v1.4.1` shown against `ghcr.io/acme/checkout:v1.4.2` as `v1.4.1`.
fn short_image<'a>(before: &'a str, after: &str) -> &'a str {
    let (repository, tag) = split_image(before);
    if !tag.is_empty() && repository == split_image(after).0 {
        tag
    } else {
        before
    }
}

/// What changed between two rollouts, in words: `image checkout=…:v1.4.2 (was v1.4.1), revision 7`.
fn describe_rollout(before: &Rollout, after: &Rollout) -> String {
    let mut parts = Vec::new();
    for (container, image) in &after.images {
        match before.images.get(container) {
            Some(old) if old == image => {}
            Some(old) => parts.push(format!(
                "image {container}={image} (was {})",
                short_image(old, image)
            )),
            None if before.images.is_empty() => parts.push(format!("image {container}={image}")),
            None => parts.push(format!("image {container}={image} (new container)")),
        }
    }
    for container in before.images.keys() {
        if !after.images.contains_key(container) {
            parts.push(format!("container {container} removed"));
        }
    }
    if let Some(revision) = &after.revision {
        match &before.revision {
            Some(old) if old != revision && parts.is_empty() => {
                parts.push(format!("revision {revision} (was {old})"))
            }
            _ => parts.push(format!("revision {revision}")),
        }
    }
    parts.join(", ")
}

impl Deployments {
    fn change(
        &self,
        key: &str,
        what: &str,
        before: Option<&Rollout>,
        after: Option<&Rollout>,
    ) -> Event {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let labels = Labels::from([
            ("namespace".to_string(), namespace.to_string()),
            ("deployment".to_string(), name.to_string()),
            ("kind".to_string(), "Deployment".to_string()),
        ]);
        let empty = Rollout::default();
        let details = match (what, after) {
            ("deleted", _) | (_, None) => String::new(),
            (_, Some(after)) => describe_rollout(before.unwrap_or(&empty), after),
        };
        let summary = if details.is_empty() {
            format!("deployment {key} {what}")
        } else {
            format!("deployment {key} {what}: {details}")
        };
        let data = json!({
            "change": what,
            "revision": {
                "before": before.and_then(|rollout| rollout.revision.clone()),
                "after": after.and_then(|rollout| rollout.revision.clone()),
            },
            "images": {
                "before": before.map(|rollout| &rollout.images),
                "after": after.map(|rollout| &rollout.images),
            },
        });
        let now = self.context.clock.now();
        self.context.event(
            EventKind::Change,
            Status::Firing,
            format!("kubernetes/deployment/{key}/rollout"),
            labels,
            Labels::from([("summary".to_string(), summary)]),
            Some(now),
            Some(data),
        )
    }

    /// Compares with the rollout last seen; `announce_new` tells a deployment never seen before
    /// as created (while watching, or after a relist with a saved state).
    fn rollout(
        &self,
        resume: &mut Resume,
        deployment: &Deployment,
        announce_new: bool,
    ) -> Vec<Event> {
        let key = object_key(deployment);
        let current = rollout_of(deployment);
        let Some(previous) = resume.deployments.get(&key) else {
            if resume.deployments.len() >= MAX_TRACKED {
                tracing::warn!(deployment = %key, "too many deployments; not tracking more");
                return Vec::new();
            }
            let out = if announce_new {
                vec![self.change(&key, "created", None, Some(&current))]
            } else {
                Vec::new()
            };
            resume.deployments.insert(key, current);
            return out;
        };
        let revised = match (&previous.revision, &current.revision) {
            (Some(old), Some(new)) => old != new,
            _ => false,
        };
        let reimaged = previous.images != current.images;
        // The controller bumps the revision a moment after the template changes: wait for it, so
        // one rollout makes one change. Without revisions (nothing manages them), images decide.
        let controlled = previous.revision.is_some() && current.revision.is_some();
        if revised || (reimaged && !controlled) {
            let event = self.change(&key, "rolled out", Some(previous), Some(&current));
            resume.deployments.insert(key, current);
            vec![event]
        } else {
            if previous.revision.is_none() && current.revision.is_some() {
                // The controller's first revision of a new deployment: nothing rolled out.
                resume.deployments.insert(key, current);
            }
            Vec::new()
        }
    }

    /// Fires or resolves `KubeDeploymentRolloutStuck`.
    fn stuck(&self, resume: &mut Resume, deployment: &Deployment) -> Vec<Event> {
        let key = object_key(deployment);
        let fingerprint = format!("kubernetes/deployment/{key}/{ROLLOUT_STUCK}");
        let condition = deployment
            .status
            .iter()
            .flat_map(|status| status.conditions.iter().flatten())
            .find(|condition| {
                condition.type_ == "Progressing"
                    && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
        let Some(condition) = condition else {
            return resolve_gone(&self.context, resume, &key, |_| false);
        };
        if resume.firing.contains_key(&fingerprint) || resume.firing.len() >= MAX_TRACKED {
            return Vec::new();
        }
        let now = self.context.clock.now();
        let since = condition
            .last_transition_time
            .as_ref()
            .and_then(|time| to_chrono(&time.0))
            .unwrap_or(now);
        let labels = Labels::from([
            ("alertname".to_string(), ROLLOUT_STUCK.to_string()),
            (
                "namespace".to_string(),
                deployment.namespace().unwrap_or_default(),
            ),
            ("deployment".to_string(), deployment.name_any()),
            ("kind".to_string(), "Deployment".to_string()),
            ("severity".to_string(), "warning".to_string()),
        ]);
        let mut summary = format!("deployment {key} rollout is stuck");
        if let Some(message) = &condition.message {
            summary.push_str(&format!(": {message}"));
        }
        resume.firing.insert(
            fingerprint.clone(),
            Firing {
                object: key,
                labels: labels.clone(),
                since,
            },
        );
        vec![self.context.event(
            EventKind::Alert,
            Status::Firing,
            fingerprint,
            labels,
            Labels::from([("summary".to_string(), truncate(summary, MAX_SUMMARY))]),
            Some(since),
            Some(json!({"revision": deployment.annotations().get(REVISION)})),
        )]
    }
}

impl Translate for Deployments {
    type Object = Deployment;

    async fn applied(&self, resume: &mut Resume, deployment: &Deployment) -> Vec<Event> {
        let mut out = self.rollout(resume, deployment, true);
        out.extend(self.stuck(resume, deployment));
        out
    }

    async fn deleted(&self, resume: &mut Resume, deployment: &Deployment) -> Vec<Event> {
        let key = object_key(deployment);
        let mut out = resolve_gone(&self.context, resume, &key, |_| false);
        if let Some(previous) = resume.deployments.remove(&key) {
            out.push(self.change(&key, "deleted", Some(&previous), None));
        }
        out
    }

    async fn listed(
        &self,
        resume: &mut Resume,
        deployments: &[Deployment],
        fresh: bool,
    ) -> Vec<Event> {
        let listed: BTreeSet<String> = deployments.iter().map(object_key).collect();
        let mut out = Vec::new();
        let vanished: Vec<String> = resume
            .deployments
            .keys()
            .chain(resume.firing.values().map(|firing| &firing.object))
            .filter(|key| !listed.contains(*key))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for key in vanished {
            out.extend(resolve_gone(&self.context, resume, &key, |_| false));
            if let Some(previous) = resume.deployments.remove(&key) {
                out.push(self.change(&key, "deleted", Some(&previous), None));
            }
        }
        for deployment in deployments {
            // A first start knows nothing to compare with: the current rollouts are the baseline.
            out.extend(self.rollout(resume, deployment, !fresh));
            out.extend(self.stuck(resume, deployment));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_deployments_only_from_hash_shaped_names() {
        let labels = guess_from_pod_name("checkout-7d9f5c4b8-x2k9z");
        assert_eq!(labels["deployment"], "checkout");
        assert_eq!(labels["replicaset"], "checkout-7d9f5c4b8");
        let labels = guess_from_pod_name("shop-checkout-6b7c8d9f5-abcdz");
        assert!(labels.is_empty(), "a vowel in the suffix: {labels:?}");
        assert!(guess_from_pod_name("web-0").is_empty());
        assert!(guess_from_pod_name("node-exporter-x7k2p").is_empty());
        assert!(guess_from_pod_name("checkout").is_empty());
    }

    #[test]
    fn describes_rollouts() {
        let before = Rollout {
            revision: Some("6".into()),
            images: [("checkout".into(), "ghcr.io/acme/checkout:v1.4.1".into())].into(),
        };
        let after = Rollout {
            revision: Some("7".into()),
            images: [("checkout".into(), "ghcr.io/acme/checkout:v1.4.2".into())].into(),
        };
        assert_eq!(
            describe_rollout(&before, &after),
            "image checkout=ghcr.io/acme/checkout:v1.4.2 (was v1.4.1), revision 7"
        );
        let env_only = Rollout {
            revision: Some("8".into()),
            ..after.clone()
        };
        assert_eq!(describe_rollout(&after, &env_only), "revision 8 (was 7)");
        assert_eq!(
            short_image("localhost:5000/app:v1", "localhost:5000/app:v2"),
            "v1"
        );
        assert_eq!(short_image("app:v1", "other:v2"), "app:v1");
    }

    #[test]
    fn watermark_admits_same_second_siblings_once() {
        let at = DateTime::from_timestamp(1_000, 0).unwrap();
        let mut mark = None;
        Watermark::advance(&mut mark, at, "a");
        assert!(!Watermark::is_new(mark.as_ref(), at, "a"));
        assert!(Watermark::is_new(mark.as_ref(), at, "b"));
        Watermark::advance(&mut mark, at, "b");
        assert!(!Watermark::is_new(mark.as_ref(), at, "b"));
        let earlier = DateTime::from_timestamp(999, 0).unwrap();
        assert!(!Watermark::is_new(mark.as_ref(), earlier, "c"));
        Watermark::advance(&mut mark, earlier, "c");
        assert_eq!(mark.as_ref().unwrap().at, at);
    }

    #[test]
    fn alert_names_keep_only_name_characters() {
        assert_eq!(alertname("BackOff"), "KubeBackOff");
        assert_eq!(alertname("Failed Mount!"), "KubeFailedMount");
    }
}
