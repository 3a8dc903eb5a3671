//! The watch source against the in-process fake API server: what events Kubernetes objects
//! become, and that resuming, relisting and retrying lose nothing and repeat nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use homeostat_core::clock::ManualClock;
use homeostat_core::{Event, EventKind, Status};
use homeostat_kube_fake::{FakeApi, Request};
use homeostat_kubernetes::client::{connect, ClientSettings};
use homeostat_kubernetes::events::Settings;
use homeostat_kubernetes::watch::{Batch, Resume, Watcher};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Waiting for a condition gives up after this long.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long to listen for events that should not come.
const QUIET: Duration = Duration::from_millis(300);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn settings() -> Settings {
    Settings {
        namespaces: vec!["shop".into()],
        events: false,
        pods: false,
        deployments: false,
        backoff_initial_ms: 100,
        backoff_max_ms: 800,
        ..Settings::default()
    }
}

/// A running watcher and what it has sent so far.
struct Sink {
    watcher: Watcher,
    receiver: mpsc::Receiver<Batch>,
    events: Vec<Event>,
    resumes: BTreeMap<String, Resume>,
    batches: Vec<Batch>,
}

impl Sink {
    async fn start(fake: &FakeApi, settings: Settings, saved: BTreeMap<String, Resume>) -> Sink {
        let client = connect(&ClientSettings {
            url: Some(fake.url()),
            ..ClientSettings::default()
        })
        .await
        .expect("client for the fake");
        let (sender, receiver) = mpsc::channel(64);
        let clock = Arc::new(ManualClock::new(now()));
        let watcher = Watcher::spawn(client, Arc::new(settings), saved, sender, clock);
        Sink {
            watcher,
            receiver,
            events: Vec::new(),
            resumes: BTreeMap::new(),
            batches: Vec::new(),
        }
    }

    fn take(&mut self, batch: Batch) {
        self.events.extend(batch.events.iter().cloned());
        self.resumes.insert(batch.key.clone(), batch.resume.clone());
        self.batches.push(batch);
    }

    /// Receives batches until `done` holds, or fails the test naming `what`.
    async fn until(&mut self, what: &str, done: impl Fn(&Sink) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Ok(Some(batch)) => self.take(batch),
                Ok(None) => panic!("the watcher stopped while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {PATIENCE:?}; events so far: {:#?}",
                    self.events
                ),
            }
        }
    }

    /// Waits until every stream has listed (or resumed) and sent its first batch.
    async fn ready(&mut self) {
        let keys = self.watcher.keys().to_vec();
        self.until("a first batch from every stream", |sink| {
            keys.iter().all(|key| sink.resumes.contains_key(key))
        })
        .await;
    }

    /// Receives whatever else comes within a short while.
    async fn settle(&mut self) {
        while let Ok(Some(batch)) = tokio::time::timeout(QUIET, self.receiver.recv()).await {
            self.take(batch);
        }
    }

    async fn events(&mut self, count: usize) -> Vec<Event> {
        self.until(&format!("{count} events"), |sink| {
            sink.events.len() >= count
        })
        .await;
        self.settle().await;
        std::mem::take(&mut self.events)
    }
}

fn summary(events: &[Event]) -> Vec<String> {
    let mut lines: Vec<String> = events
        .iter()
        .map(|event| {
            format!(
                "{} {} {}",
                event.kind.as_str(),
                event.status.as_str(),
                event.fingerprint
            )
        })
        .collect();
    lines.sort();
    lines
}

// ---- objects ------------------------------------------------------------------------------

fn owner(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}])
}

fn deployment(name: &str, image: &str, revision: Option<&str>) -> Value {
    let mut annotations = json!({});
    if let Some(revision) = revision {
        annotations["deployment.kubernetes.io/revision"] = json!(revision);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })
}

fn replicaset(name: &str, deployment: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "shop", "ownerReferences": owner("Deployment", deployment)},
        "spec": {"selector": {"matchLabels": {"app": deployment}}},
    })
}

fn container(name: &str, state: Value, last_state: Value, restarts: i32) -> Value {
    json!({
        "name": name, "image": "ghcr.io/acme/app:v1", "imageID": "", "ready": false,
        "restartCount": restarts, "state": state, "lastState": last_state,
    })
}

fn waiting(reason: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": "back-off 5m0s restarting failed container"}})
}

fn running() -> Value {
    json!({"running": {"startedAt": "2025-01-01T11:00:00Z"}})
}

fn pod(name: &str, replicaset: &str, statuses: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "ownerReferences": owner("ReplicaSet", replicaset)},
        "spec": {"containers": [{"name": "checkout", "image": "ghcr.io/acme/app:v1"}]},
        "status": {"phase": "Running", "containerStatuses": statuses},
    })
}

fn warning(name: &str, pod: &str, reason: &str, at: DateTime<Utc>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "shop"},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": "shop",
            "fieldPath": "spec.containers{checkout}",
        },
        "reason": reason, "type": "Warning",
        "message": format!("{reason} for container checkout in pod {pod}"),
        "count": 3, "firstTimestamp": stamp(at - chrono::Duration::seconds(60)),
        "lastTimestamp": stamp(at),
        "source": {"component": "kubelet", "host": "n1"},
    })
}

/// A deployment `checkout` with its ReplicaSet, for pods to belong to.
fn checkout(fake: &FakeApi) {
    fake.put_json(deployment(
        "checkout",
        "ghcr.io/acme/checkout:v1.4.1",
        Some("6"),
    ));
    fake.put_json(replicaset("checkout-7d9f5c4b8", "checkout"));
}

const POD: &str = "checkout-7d9f5c4b8-x2k9z";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const EVENTS: &str = "/api/v1/namespaces/shop/events";

fn is_list(request: &Request, path: &str) -> bool {
    request.method == "GET" && request.path == path && !request.watch
}

fn is_watch(request: &Request, path: &str) -> bool {
    request.method == "GET" && request.path == path && request.watch
}

// ---- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn warning_events_carry_the_owner_chain() {
    let fake = FakeApi::start().await;
    checkout(&fake);
    fake.put_json(pod(POD, "checkout-7d9f5c4b8", vec![]));
    // Before the start: one too old to tell, one recent, one Normal.
    fake.put_json(warning(
        "old",
        POD,
        "Unhealthy",
        now() - chrono::Duration::hours(1),
    ));
    fake.put_json(warning(
        "recent",
        POD,
        "Unhealthy",
        now() - chrono::Duration::seconds(60),
    ));
    let mut normal = warning("normal", POD, "Pulled", now());
    normal["type"] = json!("Normal");
    fake.put_json(normal);

    let mut sink = Sink::start(
        &fake,
        Settings {
            events: true,
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    let initial = sink.events(1).await;
    assert_eq!(
        summary(&initial),
        [format!(
            "info firing kubernetes/event/shop/Pod/{POD}/Unhealthy"
        )]
    );
    assert_eq!(
        initial[0].starts_at,
        Some(now() - chrono::Duration::seconds(60))
    );

    fake.put_json(warning("backoff", POD, "BackOff", now()));
    let events = sink.events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.kind, EventKind::Info);
    assert_eq!(event.source, "kubernetes");
    assert_eq!(
        event.fingerprint,
        format!("kubernetes/event/shop/Pod/{POD}/BackOff")
    );
    let labels: BTreeMap<&str, &str> = event
        .labels
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        labels,
        BTreeMap::from([
            ("alertname", "KubeBackOff"),
            ("container", "checkout"),
            ("deployment", "checkout"),
            ("kind", "Pod"),
            ("namespace", "shop"),
            ("pod", POD),
            ("reason", "BackOff"),
            ("replicaset", "checkout-7d9f5c4b8"),
            ("severity", "warning"),
        ])
    );
    assert_eq!(
        event.annotations["summary"],
        format!("pod shop/{POD}: BackOff for container checkout in pod {POD}")
    );
    assert!(
        event.annotations["description"].contains("reported by kubelet on n1, seen 3 times"),
        "{}",
        event.annotations["description"]
    );
    assert_eq!(event.starts_at, Some(now()));
    assert_eq!(event.received_at, now());

    // A pod that is gone: its owners are guessed from its name.
    fake.put_json(warning(
        "gone",
        "cart-6c8d9f7b5-qwxzt",
        "FailedMount",
        now(),
    ));
    let events = sink.events(1).await;
    assert_eq!(events[0].labels["deployment"], "cart");
    assert_eq!(events[0].labels["replicaset"], "cart-6c8d9f7b5");
    assert_eq!(events[0].labels["alertname"], "KubeFailedMount");

    // The owners were looked up once for the three events about the pod (cache).
    let requests = fake.requests();
    let gets = |path: &str| {
        requests
            .iter()
            .filter(|request| request.method == "GET" && request.path == path)
            .count()
    };
    assert_eq!(gets(&format!("{PODS}/{POD}")), 1);
    assert_eq!(
        gets("/apis/apps/v1/namespaces/shop/replicasets/checkout-7d9f5c4b8"),
        1
    );
}

#[tokio::test]
async fn pod_states_fire_and_resolve() {
    let fake = FakeApi::start().await;
    checkout(&fake);
    let crashing = |name: &str| {
        pod(
            name,
            "checkout-7d9f5c4b8",
            vec![container(
                "checkout",
                waiting("CrashLoopBackOff"),
                json!({}),
                5,
            )],
        )
    };
    let healthy = |name: &str| {
        pod(
            name,
            "checkout-7d9f5c4b8",
            vec![container("checkout", running(), json!({}), 5)],
        )
    };
    // Crash-looping before the start: a state, so it fires on the first list.
    fake.put_json(crashing("checkout-7d9f5c4b8-aaaaa"));
    fake.put_json(healthy("checkout-7d9f5c4b8-bbbbb"));
    let mut sink = Sink::start(
        &fake,
        Settings {
            pods: true,
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert firing kubernetes/pod/shop/checkout-7d9f5c4b8-aaaaa/checkout/KubePodCrashLooping"]
    );
    let fired = &events[0];
    assert_eq!(fired.labels["alertname"], "KubePodCrashLooping");
    assert_eq!(fired.labels["container"], "checkout");
    assert_eq!(fired.labels["pod"], "checkout-7d9f5c4b8-aaaaa");
    assert_eq!(fired.labels["namespace"], "shop");
    assert_eq!(fired.labels["replicaset"], "checkout-7d9f5c4b8");
    assert_eq!(fired.labels["deployment"], "checkout");
    assert_eq!(fired.labels["severity"], "warning");

    // Fixed: resolved, with the same labels.
    fake.put_json(healthy("checkout-7d9f5c4b8-aaaaa"));
    let events = sink.events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].status, Status::Resolved);
    assert_eq!(events[0].fingerprint, fired.fingerprint);
    assert_eq!(events[0].labels, fired.labels);
    assert_eq!(events[0].ends_at, Some(now()));

    // Another starts crash-looping, stays so through an update, then is deleted.
    fake.put_json(crashing("checkout-7d9f5c4b8-bbbbb"));
    fake.put_json(crashing("checkout-7d9f5c4b8-bbbbb"));
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert firing kubernetes/pod/shop/checkout-7d9f5c4b8-bbbbb/checkout/KubePodCrashLooping"]
    );
    fake.remove("v1", "Pod", Some("shop"), "checkout-7d9f5c4b8-bbbbb");
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert resolved kubernetes/pod/shop/checkout-7d9f5c4b8-bbbbb/checkout/KubePodCrashLooping"]
    );

    // An image that cannot be pulled: one alert through ErrImagePull and ImagePullBackOff.
    let pulling = |reason: &str| {
        pod(
            "checkout-7d9f5c4b8-ccccc",
            "checkout-7d9f5c4b8",
            vec![container("checkout", waiting(reason), json!({}), 0)],
        )
    };
    fake.put_json(pulling("ErrImagePull"));
    fake.put_json(pulling("ImagePullBackOff"));
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert firing kubernetes/pod/shop/checkout-7d9f5c4b8-ccccc/checkout/KubePodImagePullBackOff"]
    );

    // An OOM kill is told once, however often the pod is updated after; a second kill again.
    let oom = |id: &str, restarts: i32| {
        pod(
            "checkout-7d9f5c4b8-ddddd",
            "checkout-7d9f5c4b8",
            vec![container(
                "checkout",
                running(),
                json!({"terminated": {
                    "reason": "OOMKilled", "exitCode": 137, "containerID": id,
                    "finishedAt": stamp(now() - chrono::Duration::seconds(30)),
                }}),
                restarts,
            )],
        )
    };
    fake.put_json(oom("containerd://one", 1));
    fake.put_json(oom("containerd://one", 1));
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["info firing kubernetes/pod/shop/checkout-7d9f5c4b8-ddddd/checkout/KubeContainerOOMKilled"]
    );
    assert_eq!(events[0].labels["deployment"], "checkout");
    fake.put_json(oom("containerd://two", 2));
    let events = sink.events(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.as_ref().unwrap()["restartCount"], 2);
}

#[tokio::test]
async fn a_rollout_is_one_change_and_the_first_list_none() {
    let fake = FakeApi::start().await;
    fake.put_json(deployment(
        "checkout",
        "ghcr.io/acme/checkout:v1.4.1",
        Some("6"),
    ));
    let mut sink = Sink::start(
        &fake,
        Settings {
            deployments: true,
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    sink.ready().await;
    sink.settle().await;
    assert!(sink.events.is_empty(), "{:#?}", sink.events);

    // The template changes; the controller bumps the revision a moment later: one change.
    fake.put_json(deployment(
        "checkout",
        "ghcr.io/acme/checkout:v1.4.2",
        Some("6"),
    ));
    fake.put_json(deployment(
        "checkout",
        "ghcr.io/acme/checkout:v1.4.2",
        Some("7"),
    ));
    let mut progressing = deployment("checkout", "ghcr.io/acme/checkout:v1.4.2", Some("7"));
    progressing["status"] = json!({"replicas": 2, "updatedReplicas": 2});
    fake.put_json(progressing);
    let events = sink.events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let change = &events[0];
    assert_eq!(change.kind, EventKind::Change);
    assert_eq!(
        change.fingerprint,
        "kubernetes/deployment/shop/checkout/rollout"
    );
    assert_eq!(
        change.labels,
        [
            ("deployment".to_string(), "checkout".to_string()),
            ("kind".to_string(), "Deployment".to_string()),
            ("namespace".to_string(), "shop".to_string()),
        ]
        .into()
    );
    assert_eq!(
        change.annotations["summary"],
        "deployment shop/checkout rolled out: image checkout=ghcr.io/acme/checkout:v1.4.2 (was v1.4.1), revision 7"
    );
    let data = change.data.as_ref().unwrap();
    assert_eq!(data["revision"], json!({"before": "6", "after": "7"}));
    assert_eq!(
        data["images"],
        json!({
            "before": {"checkout": "ghcr.io/acme/checkout:v1.4.1"},
            "after": {"checkout": "ghcr.io/acme/checkout:v1.4.2"},
        })
    );

    // A deployment created while watching is a change; so is its deletion. The controller's
    // first revision right after is not.
    fake.put_json(deployment("cart", "ghcr.io/acme/cart:v2", None));
    fake.put_json(deployment("cart", "ghcr.io/acme/cart:v2", Some("1")));
    fake.remove("apps/v1", "Deployment", Some("shop"), "cart");
    let events = sink.events(2).await;
    let summaries: Vec<&str> = events
        .iter()
        .map(|event| event.annotations["summary"].as_str())
        .collect();
    assert_eq!(
        summaries,
        [
            "deployment shop/cart created: image cart=ghcr.io/acme/cart:v2",
            "deployment shop/cart deleted",
        ]
    );

    // A rollout past its deadline fires, and resolves once it progresses again.
    let mut stuck = deployment("checkout", "ghcr.io/acme/checkout:v1.4.2", Some("7"));
    stuck["status"] = json!({"conditions": [{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet \"checkout-7d9f5c4b8\" has timed out progressing.",
    }]});
    fake.put_json(stuck.clone());
    fake.put_json(stuck);
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert firing kubernetes/deployment/shop/checkout/KubeDeploymentRolloutStuck"]
    );
    assert_eq!(events[0].labels["deployment"], "checkout");
    let mut done = deployment("checkout", "ghcr.io/acme/checkout:v1.4.2", Some("7"));
    done["status"] = json!({"conditions": [{
        "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
    }]});
    fake.put_json(done);
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert resolved kubernetes/deployment/shop/checkout/KubeDeploymentRolloutStuck"]
    );
}

#[tokio::test]
async fn a_restart_resumes_with_exactly_what_happened_meanwhile() {
    let fake = FakeApi::start().await;
    checkout(&fake);
    let crashing = |name: &str| {
        pod(
            name,
            "checkout-7d9f5c4b8",
            vec![container(
                "checkout",
                waiting("CrashLoopBackOff"),
                json!({}),
                5,
            )],
        )
    };
    let healthy = |name: &str| {
        pod(
            name,
            "checkout-7d9f5c4b8",
            vec![container("checkout", running(), json!({}), 5)],
        )
    };
    fake.put_json(crashing("checkout-7d9f5c4b8-aaaaa"));
    fake.put_json(healthy("checkout-7d9f5c4b8-bbbbb"));
    let all = Settings {
        events: true,
        pods: true,
        deployments: true,
        ..settings()
    };
    let mut sink = Sink::start(&fake, all.clone(), BTreeMap::new()).await;
    sink.ready().await;
    let first = sink.events(1).await;
    assert_eq!(first.len(), 1, "{first:#?}");
    fake.put_json(warning("seen", POD, "BackOff", now()));
    sink.events(1).await;
    let saved = sink.resumes.clone();
    assert_eq!(
        saved.keys().collect::<Vec<_>>(),
        ["deployments/shop", "events/shop", "pods/shop"]
    );
    drop(sink);

    // While away: a new Warning event, a pod fixed, another crash-looping, a rollout.
    fake.put_json(warning("meanwhile", POD, "Unhealthy", now()));
    fake.put_json(healthy("checkout-7d9f5c4b8-aaaaa"));
    fake.put_json(crashing("checkout-7d9f5c4b8-bbbbb"));
    fake.put_json(deployment(
        "checkout",
        "ghcr.io/acme/checkout:v1.4.2",
        Some("7"),
    ));
    fake.clear_requests();

    let mut sink = Sink::start(&fake, all.clone(), saved).await;
    let events = sink.events(4).await;
    assert_eq!(
        summary(&events),
        [
            "alert firing kubernetes/pod/shop/checkout-7d9f5c4b8-bbbbb/checkout/KubePodCrashLooping",
            "alert resolved kubernetes/pod/shop/checkout-7d9f5c4b8-aaaaa/checkout/KubePodCrashLooping",
            "change firing kubernetes/deployment/shop/checkout/rollout",
            &format!("info firing kubernetes/event/shop/Pod/{POD}/Unhealthy"),
        ]
    );
    // Resumed by watching from the saved resourceVersions: nothing was listed.
    let requests = fake.requests();
    assert!(
        !requests
            .iter()
            .any(|request| is_list(request, PODS) || is_list(request, EVENTS)),
        "{requests:#?}"
    );

    // And again, with nothing changed: nothing at all.
    sink.ready().await;
    let saved = sink.resumes.clone();
    drop(sink);
    let mut sink = Sink::start(&fake, all, saved).await;
    sink.settle().await;
    assert!(sink.events.is_empty(), "{:#?}", sink.events);
}

#[tokio::test]
async fn an_expired_watch_relists_without_repeating_events() {
    let fake = FakeApi::start().await;
    checkout(&fake);
    fake.put_json(pod(
        "checkout-7d9f5c4b8-aaaaa",
        "checkout-7d9f5c4b8",
        vec![container(
            "checkout",
            waiting("CrashLoopBackOff"),
            json!({}),
            5,
        )],
    ));
    let both = Settings {
        events: true,
        pods: true,
        ..settings()
    };
    let mut sink = Sink::start(&fake, both.clone(), BTreeMap::new()).await;
    sink.ready().await;
    fake.put_json(warning("first", POD, "BackOff", now()));
    let events = sink.events(2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let saved = sink.resumes.clone();
    let stats = sink.watcher.stats();
    assert_eq!(stats.relists.load(Ordering::Relaxed), 0);
    drop(sink);

    // While away: another Warning event in the same second as the one told (timestamps are
    // whole seconds), the pod is fixed, and etcd compacts the history.
    fake.put_json(warning("second", POD, "Unhealthy", now()));
    fake.put_json(pod(
        "checkout-7d9f5c4b8-aaaaa",
        "checkout-7d9f5c4b8",
        vec![container("checkout", running(), json!({}), 5)],
    ));
    fake.compact();
    fake.clear_requests();

    let mut sink = Sink::start(&fake, both, saved.clone()).await;
    let events = sink.events(2).await;
    assert_eq!(
        summary(&events),
        [
            "alert resolved kubernetes/pod/shop/checkout-7d9f5c4b8-aaaaa/checkout/KubePodCrashLooping".to_string(),
            format!("info firing kubernetes/event/shop/Pod/{POD}/Unhealthy"),
        ]
    );
    assert_eq!(sink.watcher.stats().relists.load(Ordering::Relaxed), 2);

    // Each stream watched from its saved version, got 410, listed, and watched from the list's.
    let requests = fake.requests();
    for (path, key) in [(EVENTS, "events/shop"), (PODS, "pods/shop")] {
        let old = saved[key].resource_version.clone().unwrap();
        let sequence: Vec<String> = requests
            .iter()
            .filter(|request| request.path == path)
            .map(|request| {
                let version = request.query.get("resourceVersion").cloned();
                match (request.watch, version) {
                    (true, Some(version)) if version == old => "watch old".to_string(),
                    (true, _) => "watch new".to_string(),
                    (false, _) => "list".to_string(),
                }
            })
            .collect();
        assert_eq!(sequence, ["watch old", "list", "watch new"], "{path}");
    }
}

#[tokio::test]
async fn bookmarks_advance_the_resource_version() {
    let fake = FakeApi::start().await;
    let mut sink = Sink::start(
        &fake,
        Settings {
            pods: true,
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    sink.ready().await;
    assert!(fake.wait_for_watches(1).await);
    let listed = sink.resumes["pods/shop"].resource_version.clone();
    assert_eq!(listed, Some(fake.resource_version().to_string()));

    // Writes the stream does not see (another namespace) move the resourceVersion on...
    let mut elsewhere = pod("other-7d9f5c4b8-aaaaa", "other-7d9f5c4b8", vec![]);
    elsewhere["metadata"]["namespace"] = json!("pay");
    fake.put_json(elsewhere.clone());
    fake.put_json(elsewhere);
    // ...and a bookmark brings the stream there, in a batch without events.
    fake.bookmark();
    let target = fake.resource_version().to_string();
    sink.until("the bookmark", |sink| {
        sink.resumes["pods/shop"].resource_version.as_deref() == Some(target.as_str())
    })
    .await;
    let last = sink.batches.last().unwrap();
    assert!(last.events.is_empty());
    assert_eq!(last.key, "pods/shop");

    // A watch the server ends is started again from there, without a list.
    fake.clear_requests();
    fake.close_watches();
    sink.settle().await;
    assert!(fake.wait_for_watches(1).await);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(is_watch(&requests[0], PODS));
    assert_eq!(requests[0].query["resourceVersion"], target);
}

#[tokio::test]
async fn failures_are_retried_with_backoff() {
    let fake = FakeApi::start().await;
    checkout(&fake);
    fake.fail_next(Some("GET"), PODS, 500, 2);
    let began = tokio::time::Instant::now();
    let mut sink = Sink::start(
        &fake,
        Settings {
            pods: true,
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    sink.ready().await;
    // Two waits: 50-100 ms, then 100-200 ms.
    assert!(began.elapsed() >= Duration::from_millis(150));
    assert!(fake.wait_for_watches(1).await);
    let stats = sink.watcher.stats();
    assert_eq!(stats.errors.load(Ordering::Relaxed), 2);

    // A watch that fails to restart is retried too, and then sees what happened meanwhile.
    let crashing = pod(
        "checkout-7d9f5c4b8-aaaaa",
        "checkout-7d9f5c4b8",
        vec![container(
            "checkout",
            waiting("CrashLoopBackOff"),
            json!({}),
            5,
        )],
    );
    fake.put_json(crashing.clone());
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert firing kubernetes/pod/shop/checkout-7d9f5c4b8-aaaaa/checkout/KubePodCrashLooping"]
    );
    let version = sink.resumes["pods/shop"].resource_version.clone().unwrap();
    fake.clear_requests();
    fake.fail_next(Some("GET"), "watch=true", 500, 2);
    fake.close_watches();
    fake.remove("v1", "Pod", Some("shop"), "checkout-7d9f5c4b8-aaaaa");
    let events = sink.events(1).await;
    assert_eq!(
        summary(&events),
        ["alert resolved kubernetes/pod/shop/checkout-7d9f5c4b8-aaaaa/checkout/KubePodCrashLooping"]
    );
    assert_eq!(stats.errors.load(Ordering::Relaxed), 4);
    let requests = fake.requests();
    let watches: Vec<&Request> = requests
        .iter()
        .filter(|request| is_watch(request, PODS))
        .collect();
    assert_eq!(watches.len(), 3, "{requests:#?}");
    // All from where the stream was, none lost to a relist.
    assert!(watches
        .iter()
        .all(|request| request.query["resourceVersion"] == version));
    assert!(!requests.iter().any(|request| is_list(request, PODS)));
}

#[tokio::test]
async fn selectors_and_bookmarks_are_asked_for() {
    let fake = FakeApi::start().await;
    let mut sink = Sink::start(
        &fake,
        Settings {
            events: true,
            pods: true,
            deployments: true,
            label_selector: Some("app=checkout".into()),
            field_selector: Some("involvedObject.kind=Pod".into()),
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    sink.ready().await;
    assert!(fake.wait_for_watches(3).await);
    let requests = fake.requests();
    let find = |path: &str, watch: bool| {
        requests
            .iter()
            .find(|request| request.path == path && request.watch == watch)
            .unwrap_or_else(|| panic!("no request to {path}: {requests:#?}"))
            .query
            .clone()
    };
    let deployments = "/apis/apps/v1/namespaces/shop/deployments";
    for path in [PODS, deployments] {
        assert_eq!(find(path, false)["labelSelector"], "app=checkout");
        let watch = find(path, true);
        assert_eq!(watch["labelSelector"], "app=checkout");
        assert_eq!(watch["allowWatchBookmarks"], "true");
        assert_eq!(watch["timeoutSeconds"], "290");
        assert!(!watch.contains_key("fieldSelector"));
    }
    let list = find(EVENTS, false);
    assert_eq!(
        list["fieldSelector"],
        "involvedObject.kind=Pod,type=Warning"
    );
    assert!(!list.contains_key("labelSelector"));
    let watch = find(EVENTS, true);
    assert_eq!(
        watch["fieldSelector"],
        "involvedObject.kind=Pod,type=Warning"
    );
    assert_eq!(watch["allowWatchBookmarks"], "true");
    assert_eq!(
        watch["resourceVersion"],
        sink.resumes["events/shop"]
            .resource_version
            .clone()
            .unwrap()
    );
}

#[tokio::test]
async fn a_gone_answer_to_a_watch_relists_too() {
    let fake = FakeApi::start().await;
    checkout(&fake);
    let mut sink = Sink::start(
        &fake,
        Settings {
            pods: true,
            ..settings()
        },
        BTreeMap::new(),
    )
    .await;
    sink.ready().await;
    fake.put_json(pod(
        "checkout-7d9f5c4b8-aaaaa",
        "checkout-7d9f5c4b8",
        vec![container(
            "checkout",
            waiting("CrashLoopBackOff"),
            json!({}),
            5,
        )],
    ));
    assert_eq!(sink.events(1).await.len(), 1);

    // The watch is answered 410 itself (not in the stream): list, then watch from the list.
    fake.clear_requests();
    fake.fail_next(Some("GET"), "watch=true", 410, 1);
    fake.close_watches();
    sink.settle().await;
    assert!(fake.wait_for_watches(1).await);
    assert!(sink.events.is_empty(), "told again: {:#?}", sink.events);
    assert_eq!(sink.watcher.stats().relists.load(Ordering::Relaxed), 1);
    let sequence: Vec<&str> = fake
        .requests()
        .iter()
        .filter(|request| request.path == PODS)
        .map(|request| if request.watch { "watch" } else { "list" })
        .collect();
    assert_eq!(sequence, ["watch", "list", "watch"]);
}
