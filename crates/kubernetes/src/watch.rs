//! The resumable list+watch loop: one stream per watched resource type and namespace, each
//! sending [`Batch`]es of events with the [`Resume`] state after them.
//!
//! Written on `Api::list` and `Api::watch` rather than kube-runtime's watcher because the
//! resourceVersion to resume from is ours: the engine stores each batch's `Resume` in the same
//! transaction as its events, and a restart continues from exactly there (nothing lost, nothing
//! twice). Without a saved one, a stream lists (the current state, and a resourceVersion) and
//! watches from there; a watch that expires (`410 Gone`) is relisted, and the translation tells
//! what changed meanwhile. Other failures are retried with exponential backoff and jitter.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use homeostat_core::clock::SharedClock;
use homeostat_core::Event;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::core::Status;
use kube::{Api, Client, Resource as _};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::events::{self, Context, Firing, Rollout, Settings, Translate, Watermark};

/// Watch events folded into one batch at most, when a burst has several ready at once.
const MAX_BATCH: usize = 256;

/// Objects per list page: a big namespace is listed in several requests, not one huge answer.
const PAGE: u32 = 500;

/// A watch that sends nothing for its timeout plus this long is taken for a dead connection.
const IDLE_SLACK: Duration = Duration::from_secs(30);

/// A watch that ends without an event sooner than this is restarted after a backoff, not at once,
/// so a server (or proxy) that keeps closing streams cannot make a tight loop.
const SHORT_WATCH: Duration = Duration::from_secs(1);

/// Errors of a stream; all are retried, and logged at warn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot list `{key}`: {source}")]
    List {
        key: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot watch `{key}` from resourceVersion `{version}`: {source}")]
    Watch {
        key: String,
        version: String,
        #[source]
        source: kube::Error,
    },
    #[error("the watch of `{key}` failed with `{code}` `{reason}`: {message}")]
    Status {
        key: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("the watch of `{key}` sent nothing for `{secs}`s")]
    Idle { key: String, secs: u64 },
    #[error("the watch of `{key}` ended at once, without an event")]
    Ended { key: String },
    #[error("the list of `{key}` has no resourceVersion to watch from")]
    NoVersion { key: String },
}

/// Where a stream resumes, and what its translation must remember: small and serializable, to be
/// stored with the events of the batch it came in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The last resourceVersion seen, from an object, a list or a bookmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The selectors `resource_version` was seen with: when they change, the stream relists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selectors: String,
    /// When the stream last sent a batch: after a restart, first sightings since are news.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Events: the newest Event time told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Watermark>,
    /// Pods and Deployments: the alerts firing, by fingerprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub firing: BTreeMap<String, Firing>,
    /// Pods: the last OOM kill told per `<namespace>/<pod>/<container>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ooms: BTreeMap<String, String>,
    /// Deployments: the last rollout seen per `<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, Rollout>,
}

impl Resume {
    /// Resolved events for every alert this state has firing: for a stream no longer configured
    /// (a namespace removed), whose alerts would otherwise stay open.
    pub fn resolve_all(&self, source: &str, now: DateTime<Utc>) -> Vec<Event> {
        self.firing
            .iter()
            .map(|(fingerprint, firing)| {
                let mut event = Event::raised(
                    source,
                    homeostat_core::Status::Resolved,
                    firing.labels.clone(),
                    [(
                        "summary".to_string(),
                        format!("no longer watching {}", firing.object),
                    )]
                    .into(),
                    Some(firing.since),
                    now,
                    None,
                );
                event.fingerprint = fingerprint.clone();
                event
            })
            .collect()
    }
}

/// Events from one stream, with the stream's state after them: store both at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The stream, as [`Stream::key`]: `events/shop`, `pods/*`.
    pub key: String,
    /// Possibly none: a list that changed nothing, a bookmark.
    pub events: Vec<Event>,
    pub resume: Resume,
}

/// A watched resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Events,
    Pods,
    Deployments,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Events => "events",
            Resource::Pods => "pods",
            Resource::Deployments => "deployments",
        }
    }
}

/// One list+watch: a resource type in one namespace, or in all.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stream {
    pub resource: Resource,
    /// `None` for all namespaces.
    pub namespace: Option<String>,
}

impl Stream {
    /// `<resource>/<namespace>`, `*` for all namespaces: what a saved [`Resume`] belongs to.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.resource.as_str(),
            self.namespace.as_deref().unwrap_or("*")
        )
    }

    /// The label and field selectors this stream watches with.
    pub fn selectors(&self, settings: &Settings) -> (Option<String>, Option<String>) {
        match self.resource {
            Resource::Events => {
                let mut fields: Vec<String> = settings.field_selector.iter().cloned().collect();
                // One type wanted: let the server drop the rest (mostly Normal events).
                if let [only] = settings.event_types.as_slice() {
                    fields.push(format!("type={only}"));
                }
                (None, (!fields.is_empty()).then(|| fields.join(",")))
            }
            Resource::Pods | Resource::Deployments => (settings.label_selector.clone(), None),
        }
    }
}

/// The streams the settings call for.
pub fn streams(settings: &Settings) -> Vec<Stream> {
    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .namespaces
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|namespace| Some(namespace.clone()))
            .collect()
    };
    let resources = [
        (settings.events, Resource::Events),
        (settings.pods, Resource::Pods),
        (settings.deployments, Resource::Deployments),
    ];
    resources
        .into_iter()
        .filter(|(on, _)| *on)
        .flat_map(|(_, resource)| {
            namespaces.iter().map(move |namespace| Stream {
                resource,
                namespace: namespace.clone(),
            })
        })
        .collect()
}

/// Counters over all streams, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Relists after a watch expired (`410 Gone`).
    pub relists: AtomicU64,
    /// Failed requests and broken watches, each retried after a backoff.
    pub errors: AtomicU64,
    pub batches: AtomicU64,
    pub events: AtomicU64,
}

/// All the streams the settings call for, each on its own task; dropping it stops them.
#[derive(Debug)]
pub struct Watcher {
    tasks: JoinSet<()>,
    stats: Arc<Stats>,
    keys: Vec<String>,
}

impl Watcher {
    /// Starts every stream of [`streams`], each from its saved state in `saved` (by key) if any.
    pub fn spawn(
        client: Client,
        settings: Arc<Settings>,
        mut saved: BTreeMap<String, Resume>,
        sender: mpsc::Sender<Batch>,
        clock: SharedClock,
    ) -> Watcher {
        let context = Arc::new(Context::new(client.clone(), settings.clone(), clock));
        let stats = Arc::new(Stats::default());
        let mut tasks = JoinSet::new();
        let mut keys = Vec::new();
        for stream in streams(&settings) {
            let key = stream.key();
            let resume = saved.remove(&key);
            keys.push(key);
            tasks.spawn(run_with(
                client.clone(),
                context.clone(),
                stream,
                resume,
                sender.clone(),
                stats.clone(),
            ));
        }
        Watcher { tasks, stats, keys }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The keys of the streams running.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Waits until every stream has stopped, which they do once the receiver is dropped.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs one stream until the receiver of `sender` is dropped (or the task is aborted: a batch is
/// sent whole or not at all, so aborting loses nothing the saved state does not cover).
pub async fn run(
    client: Client,
    settings: Arc<Settings>,
    stream: Stream,
    resume: Option<Resume>,
    sender: mpsc::Sender<Batch>,
    clock: SharedClock,
    stats: Arc<Stats>,
) {
    let context = Arc::new(Context::new(client.clone(), settings, clock));
    run_with(client, context, stream, resume, sender, stats).await;
}

async fn run_with(
    client: Client,
    context: Arc<Context>,
    stream: Stream,
    resume: Option<Resume>,
    sender: mpsc::Sender<Batch>,
    stats: Arc<Stats>,
) {
    match stream.resource {
        Resource::Events => {
            let translate = events::Events {
                context: context.clone(),
            };
            Loop::new(client, context, stream, sender, stats, translate)
                .run(resume)
                .await
        }
        Resource::Pods => {
            let translate = events::Pods {
                context: context.clone(),
            };
            Loop::new(client, context, stream, sender, stats, translate)
                .run(resume)
                .await
        }
        Resource::Deployments => {
            let translate = events::Deployments {
                context: context.clone(),
            };
            Loop::new(client, context, stream, sender, stats, translate)
                .run(resume)
                .await
        }
    }
}

/// Exponential backoff with jitter: each wait is between half and all of the current step.
struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    fn new(settings: &Settings) -> Self {
        let initial = Duration::from_millis(settings.backoff_initial_ms.max(1));
        Backoff {
            initial,
            max: Duration::from_millis(settings.backoff_max_ms).max(initial),
            step: initial,
            random: RandomState::new(),
            draws: 0,
        }
    }

    fn reset(&mut self) {
        self.step = self.initial;
    }

    fn next(&mut self) -> Duration {
        self.draws += 1;
        let fraction = (self.random.hash_one(self.draws) % 1000) as f64 / 1000.0;
        let wait = self.step.mul_f64(0.5 + fraction / 2.0);
        self.step = (self.step * 2).min(self.max);
        wait
    }
}

/// Whether a failure means the resourceVersion is too old to watch from.
fn expired(status: &Status) -> bool {
    status.code == 410 || status.reason == "Expired" || status.reason == "Gone"
}

/// How one watch ended.
enum End {
    /// The server closed it (its timeout): watch again from where it stopped.
    Closed { events: usize },
    /// The resourceVersion expired: list again.
    Expired,
    /// Something failed: back off, then watch again.
    Failed(Error),
    /// The receiver is gone: stop.
    Stopped,
}

/// One stream's state while it runs.
struct Loop<T: Translate> {
    api: Api<T::Object>,
    context: Arc<Context>,
    key: String,
    list: ListParams,
    watch: WatchParams,
    selectors: String,
    sender: mpsc::Sender<Batch>,
    stats: Arc<Stats>,
    translate: T,
    backoff: Backoff,
}

impl<T: Translate> Loop<T>
where
    T::Object: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    fn new(
        client: Client,
        context: Arc<Context>,
        stream: Stream,
        sender: mpsc::Sender<Batch>,
        stats: Arc<Stats>,
        translate: T,
    ) -> Self {
        let settings = context.settings.clone();
        let api = match &stream.namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        };
        let (labels, fields) = stream.selectors(&settings);
        let mut list = ListParams::default().limit(PAGE);
        // Bookmarks are on by default: they advance the resourceVersion on quiet streams, so a
        // restart resumes from a recent one rather than one etcd has already compacted.
        let mut watch = WatchParams::default().timeout(settings.timeout_secs.max(1));
        if let Some(labels) = &labels {
            list = list.labels(labels);
            watch = watch.labels(labels);
        }
        if let Some(fields) = &fields {
            list = list.fields(fields);
            watch = watch.fields(fields);
        }
        let selectors = format!(
            "{}|{}",
            labels.unwrap_or_default(),
            fields.unwrap_or_default()
        );
        Loop {
            api,
            key: stream.key(),
            list,
            watch,
            selectors: if selectors == "|" {
                String::new()
            } else {
                selectors
            },
            sender,
            stats,
            translate,
            backoff: Backoff::new(&settings),
            context,
        }
    }

    async fn run(mut self, saved: Option<Resume>) {
        let mut fresh = saved.is_none();
        let mut resume = saved.unwrap_or_default();
        if resume.selectors != self.selectors && resume.resource_version.is_some() {
            tracing::info!(key = %self.key, "the selectors changed; listing again");
            resume.resource_version = None;
            // Deployments the new selectors leave out were not deleted, nor were the ones they
            // take in created: start their rollouts over. (Alerts about objects left out resolve.)
            resume.deployments.clear();
            fresh = true;
        }
        resume.selectors = self.selectors.clone();
        // Whether the version watched from came from a list just made.
        let mut listed = false;
        loop {
            let Some(version) = resume.resource_version.clone() else {
                match self.relist(&mut resume, &mut fresh).await {
                    Ok(true) => {
                        listed = true;
                        continue;
                    }
                    Ok(false) => return,
                    Err(error) => {
                        self.fail(error).await;
                        continue;
                    }
                }
            };
            let end = self.watch(&mut resume, &version).await;
            let from_list = std::mem::take(&mut listed);
            match end {
                End::Closed { events } => {
                    tracing::debug!(key = %self.key, events, "watch closed; watching again");
                }
                End::Expired => {
                    self.stats.relists.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        key = %self.key,
                        version = %version,
                        "resourceVersion expired; listing again"
                    );
                    resume.resource_version = None;
                    if from_list {
                        // A version fresh from a list cannot have expired on a sane server: back
                        // off rather than list and watch in a tight loop.
                        self.fail(Error::Status {
                            key: self.key.clone(),
                            code: 410,
                            reason: "Expired".into(),
                            message: format!(
                                "the listed resourceVersion `{version}` expired at once"
                            ),
                        })
                        .await;
                    }
                }
                End::Failed(error) => self.fail(error).await,
                End::Stopped => return,
            }
        }
    }

    async fn fail(&mut self, error: Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let wait = self.backoff.next();
        tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "kubernetes watch failed");
        tokio::time::sleep(wait).await;
    }

    /// Lists everything (in pages), tells what changed, and sends the state with the list's
    /// resourceVersion. `Ok(false)` when the receiver is gone.
    async fn relist(&mut self, resume: &mut Resume, fresh: &mut bool) -> Result<bool, Error> {
        let mut params = self.list.clone();
        let mut objects = Vec::new();
        let version = loop {
            let page = self.api.list(&params).await.map_err(|source| Error::List {
                key: self.key.clone(),
                source,
            })?;
            objects.extend(page.items);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break page.metadata.resource_version,
            }
        };
        let mut next = resume.clone();
        let events = self.translate.listed(&mut next, &objects, *fresh).await;
        next.resource_version = version.filter(|version| !version.is_empty());
        *resume = next;
        if !self.send(resume, events).await {
            return Ok(false);
        }
        *fresh = false;
        if resume.resource_version.is_none() {
            // Nothing to watch from: list again, after a backoff rather than at once. What the
            // list told is remembered in `resume`, so listing again repeats none of it.
            return Err(Error::NoVersion {
                key: self.key.clone(),
            });
        }
        self.backoff.reset();
        Ok(true)
    }

    /// One watch, until it ends; each watch event (or a burst of them) is sent as a batch.
    async fn watch(&mut self, resume: &mut Resume, version: &str) -> End {
        let started = tokio::time::Instant::now();
        let stream = match self.api.watch(&self.watch, version).await {
            Ok(stream) => stream,
            Err(kube::Error::Api(status)) if expired(&status) => return End::Expired,
            Err(source) => {
                return End::Failed(Error::Watch {
                    key: self.key.clone(),
                    version: version.into(),
                    source,
                })
            }
        };
        let mut stream = std::pin::pin!(stream);
        let idle = Duration::from_secs(u64::from(self.watch.timeout.unwrap_or(290))) + IDLE_SLACK;
        let mut seen = 0;
        loop {
            let first = match tokio::time::timeout(idle, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return End::Failed(Error::Idle {
                        key: self.key.clone(),
                        secs: idle.as_secs(),
                    })
                }
            };
            let mut next = resume.clone();
            let mut events = Vec::new();
            let mut end = None;
            let mut item = first;
            let mut folded = 0;
            loop {
                match item {
                    None => {
                        end = Some(if seen == 0 && started.elapsed() < SHORT_WATCH {
                            End::Failed(Error::Ended {
                                key: self.key.clone(),
                            })
                        } else {
                            End::Closed { events: seen }
                        });
                    }
                    Some(Ok(event)) => {
                        seen += 1;
                        if let Some(ended) = self.apply(&mut next, event, &mut events).await {
                            end = Some(ended);
                        }
                    }
                    Some(Err(kube::Error::Api(status))) if expired(&status) => {
                        end = Some(End::Expired)
                    }
                    Some(Err(source)) => {
                        end = Some(End::Failed(Error::Watch {
                            key: self.key.clone(),
                            version: next.resource_version.clone().unwrap_or_default(),
                            source,
                        }))
                    }
                }
                folded += 1;
                if end.is_some() || folded >= MAX_BATCH {
                    break;
                }
                // Fold whatever else is ready into this batch: a burst is stored in one go.
                match stream.next().now_or_never() {
                    Some(ready) => item = ready,
                    None => break,
                }
            }
            if next != *resume || !events.is_empty() {
                *resume = next;
                if !self.send(resume, events).await {
                    return End::Stopped;
                }
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Folds one watch event into `resume` and `events`; says how the watch ends if it does.
    async fn apply(
        &mut self,
        resume: &mut Resume,
        event: WatchEvent<T::Object>,
        events: &mut Vec<Event>,
    ) -> Option<End> {
        let version = |object: &T::Object| object.meta().resource_version.clone();
        match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                events.extend(self.translate.applied(resume, &object).await);
                resume.resource_version = version(&object).or(resume.resource_version.take());
            }
            WatchEvent::Deleted(object) => {
                events.extend(self.translate.deleted(resume, &object).await);
                resume.resource_version = version(&object).or(resume.resource_version.take());
            }
            WatchEvent::Bookmark(bookmark) => {
                resume.resource_version = Some(bookmark.metadata.resource_version);
            }
            WatchEvent::Error(status) if expired(&status) => return Some(End::Expired),
            WatchEvent::Error(status) => {
                return Some(End::Failed(Error::Status {
                    key: self.key.clone(),
                    code: status.code,
                    reason: status.reason,
                    message: status.message,
                }))
            }
        }
        // The watch works again: the next failure starts over from the shortest wait.
        self.backoff.reset();
        None
    }

    /// Sends a batch; false when the receiver is gone.
    async fn send(&self, resume: &mut Resume, events: Vec<Event>) -> bool {
        resume.updated_at = Some(self.context.clock.now());
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let batch = Batch {
            key: self.key.clone(),
            events,
            resume: resume.clone(),
        };
        self.sender.send(batch).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_per_resource_and_namespace() {
        let settings = Settings {
            namespaces: vec!["shop".into(), "pay".into(), "shop".into()],
            deployments: false,
            ..Settings::default()
        };
        let keys: Vec<String> = streams(&settings).iter().map(Stream::key).collect();
        assert_eq!(keys, ["events/pay", "events/shop", "pods/pay", "pods/shop"]);
        let all: Vec<String> = streams(&Settings::default())
            .iter()
            .map(Stream::key)
            .collect();
        assert_eq!(all, ["events/*", "pods/*", "deployments/*"]);
    }

    #[test]
    fn event_streams_filter_the_type_on_the_server() {
        let settings = Settings {
            field_selector: Some("involvedObject.kind=Pod".into()),
            label_selector: Some("app=checkout".into()),
            ..Settings::default()
        };
        let events = Stream {
            resource: Resource::Events,
            namespace: None,
        };
        assert_eq!(
            events.selectors(&settings),
            (None, Some("involvedObject.kind=Pod,type=Warning".into()))
        );
        let pods = Stream {
            resource: Resource::Pods,
            namespace: None,
        };
        assert_eq!(
            pods.selectors(&settings),
            (Some("app=checkout".into()), None)
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(&Settings::default());
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] <= Duration::from_millis(500));
        assert!(waits[1] >= Duration::from_millis(500) && waits[1] <= Duration::from_millis(1000));
        assert!(waits[9] >= Duration::from_secs(15) && waits[9] <= Duration::from_secs(30));
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(500));
    }
}
