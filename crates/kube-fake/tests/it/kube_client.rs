//! The fake driven by the real kube-rs client: every verb the project's Kubernetes code uses,
//! the watch protocol (410, bookmarks) and the injected faults.

use std::time::Duration;

use futures::{Stream, StreamExt};
use homeostat_kube_fake::FakeApi;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::response::StatusSummary;
use kube::Client;
use serde_json::{json, Value};

/// A client without kube-rs 5's default retries: they repeat 429, 503 and 504 up to 15 times
/// with exponential backoff, which would hide the fake's answers (and take minutes).
fn client(fake: &FakeApi) -> Client {
    let mut config = kube::Config::new(fake.url().parse().expect("the fake's URL parses"));
    config.default_retry = false;
    Client::try_from(config).expect("a client for the fake")
}

/// The Status of a failed call (kube-rs: `Error::Api`).
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A JSON patch (RFC 6902) through the kube client.
async fn json_patch<K: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    patch: Value,
) -> kube::Result<K> {
    let request = axum::http::Request::patch(path)
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&patch).unwrap())
        .unwrap();
    client.request(request).await
}

fn pod(namespace: &str, name: &str, labels: Value, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
    }))
    .expect("a valid pod")
}

fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                ]}]},
            },
        },
        "status": {"replicas": 2, "readyReplicas": 2},
    })
}

/// The next watch event, failing the test after 5 s rather than hanging.
async fn next<K, S>(stream: &mut S) -> WatchEvent<K>
where
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watch error: {error}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no watch event within 5 s"),
    }
}

/// Whether the stream ends (within 5 s) without another event.
async fn ends<K, S>(stream: &mut S) -> bool
where
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await,
        Ok(None)
    )
}

fn name_of<K: kube::Resource>(event: &WatchEvent<K>) -> (&'static str, String) {
    match event {
        WatchEvent::Added(object) => ("ADDED", object.meta().name.clone().unwrap_or_default()),
        WatchEvent::Modified(object) => {
            ("MODIFIED", object.meta().name.clone().unwrap_or_default())
        }
        WatchEvent::Deleted(object) => ("DELETED", object.meta().name.clone().unwrap_or_default()),
        WatchEvent::Bookmark(bookmark) => ("BOOKMARK", bookmark.metadata.resource_version.clone()),
        WatchEvent::Error(status) => ("ERROR", status.code.to_string()),
    }
}

#[tokio::test]
async fn create_get_and_list_with_selectors() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(client(&fake), "shop");
    let before = fake.resource_version();
    let created = pods
        .create(
            &PostParams::default(),
            &pod(
                "shop",
                "web-1",
                json!({"app": "web", "tier": "front"}),
                "n1",
            ),
        )
        .await
        .unwrap();
    let metadata = &created.metadata;
    assert_eq!(
        metadata.resource_version.as_deref(),
        Some((before + 1).to_string().as_str())
    );
    assert!(metadata.uid.is_some() && metadata.creation_timestamp.is_some());
    assert_eq!(metadata.generation, Some(1));
    assert_eq!(
        created.status.and_then(|status| status.phase).as_deref(),
        Some("Pending")
    );
    pods.create(
        &PostParams::default(),
        &pod(
            "shop",
            "web-2",
            json!({"app": "web", "canary": "yes"}),
            "n2",
        ),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("shop", "db-1", json!({"app": "db"}), "n1"),
    )
    .await
    .unwrap();
    fake.put(&pod("other", "web-9", json!({"app": "web"}), "n1"));

    let got = pods.get("web-1").await.unwrap();
    assert_eq!(got.spec.unwrap().node_name.as_deref(), Some("n1"));
    let missing = api_error(pods.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    let again = api_error(
        pods.create(
            &PostParams::default(),
            &pod("shop", "web-1", json!({}), "n1"),
        )
        .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let names = |list: kube::core::ObjectList<Pod>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|pod| pod.metadata.name.unwrap_or_default())
            .collect()
    };
    let list = |selector: ListParams| {
        let pods = pods.clone();
        async move { names(pods.list(&selector).await.unwrap()) }
    };
    assert_eq!(
        list(ListParams::default()).await,
        ["db-1", "web-1", "web-2"]
    );
    assert_eq!(
        list(ListParams::default().labels("app=web")).await,
        ["web-1", "web-2"]
    );
    assert_eq!(
        list(ListParams::default().labels("app==web,!canary")).await,
        ["web-1"]
    );
    assert_eq!(
        list(ListParams::default().labels("app in (db,cache)")).await,
        ["db-1"]
    );
    assert_eq!(
        list(ListParams::default().labels("app notin (db),canary")).await,
        ["web-2"]
    );
    assert_eq!(
        list(ListParams::default().labels("app!=web")).await,
        ["db-1"]
    );
    assert_eq!(
        list(ListParams::default().fields("spec.nodeName=n1")).await,
        ["db-1", "web-1"]
    );
    assert_eq!(
        list(ListParams::default().fields("spec.nodeName!=n1,metadata.name=web-2")).await,
        ["web-2"]
    );
    assert_eq!(
        list(
            ListParams::default()
                .fields("status.phase=Pending")
                .labels("tier")
        )
        .await,
        ["web-1"]
    );

    let all: Api<Pod> = Api::all(client(&fake));
    let everywhere = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(
        everywhere.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );
    assert_eq!(names(everywhere), ["web-9", "web-1", "web-2"]);

    let bad = api_error(pods.list(&ListParams::default().labels("app in (x")).await);
    assert_eq!(bad.code, 400);

    // Cluster-scoped kinds and the version endpoint.
    let nodes: Api<Node> = Api::all(client(&fake));
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    assert!(nodes.get("n1").await.unwrap().metadata.namespace.is_none());
    let version = client(&fake).apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );
}

#[tokio::test]
async fn watch_sees_added_modified_deleted() {
    let fake = FakeApi::start().await;
    let client = client(&fake);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    fake.put_json(deployment("shop", "checkout"));
    let mut stream = deployments
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ADDED", "checkout".into())
    );
    assert!(fake.wait_for_watches(1).await);

    deployments
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    match next(&mut stream).await {
        WatchEvent::Modified(deployment) => assert_eq!(deployment.spec.unwrap().replicas, Some(3)),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    fake.put_json(deployment("shop", "cart"));
    assert_eq!(name_of(&next(&mut stream).await), ("ADDED", "cart".into()));
    // Another namespace is not this watch's business.
    fake.put_json(deployment("other", "cart"));
    deployments
        .delete("checkout", &DeleteParams::default())
        .await
        .unwrap();
    match next(&mut stream).await {
        WatchEvent::Deleted(deployment) => {
            assert_eq!(
                deployment.metadata.resource_version,
                Some(fake.resource_version().to_string())
            );
        }
        other => panic!("expected DELETED, got {other:?}"),
    }

    // A selector-filtered watch sees an object leave the selection as DELETED, and resumes
    // from a resourceVersion by replaying what came after it.
    let from = fake.resource_version().to_string();
    let mut selected = deployments
        .watch(&WatchParams::default().labels("app=cart"), &from)
        .await
        .unwrap()
        .boxed();
    let mut relabelled = deployment("shop", "cart");
    relabelled["metadata"]["labels"] = json!({"app": "basket"});
    fake.put_json(relabelled);
    assert_eq!(
        name_of(&next(&mut selected).await),
        ("DELETED", "cart".into())
    );
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("MODIFIED", "cart".into())
    );
    let mut replay = deployments
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        name_of(&next(&mut replay).await),
        ("MODIFIED", "cart".into())
    );

    // close_watches ends every stream, as an apiserver timeout does; so does timeoutSeconds.
    assert!(fake.wait_for_watches(3).await);
    fake.close_watches();
    assert!(ends(&mut stream).await && ends(&mut selected).await && ends(&mut replay).await);
    let mut short = deployments
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(name_of(&next(&mut short).await), ("ADDED", "cart".into()));
    assert!(ends(&mut short).await);
    assert_eq!(fake.open_watches(), 0);
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let fake = FakeApi::start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client(&fake), "shop");
    let old = fake.resource_version().to_string();
    for name in ["a", "b"] {
        fake.put_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}}));
    }
    fake.compact();
    let mut stream = config_maps
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status
                    .message
                    .starts_with(&format!("too old resource version: {old} (")),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410, got {other:?}"),
    }
    assert!(ends(&mut stream).await);

    // An exact list at the old version is Gone too; from the current version all is well.
    let exact = ListParams::default()
        .at(&old)
        .matching(kube::api::VersionMatch::Exact);
    assert_eq!(api_error(config_maps.list(&exact).await).code, 410);
    let now = fake.resource_version().to_string();
    let mut fresh = config_maps
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    fake.put_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}));
    assert_eq!(name_of(&next(&mut fresh).await), ("ADDED", "c".into()));
}

#[tokio::test]
async fn bookmarks_reach_watches_that_asked() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(client(&fake), "shop");
    let mut with = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut without = pods
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(fake.wait_for_watches(2).await);
    fake.put(&pod("shop", "p", json!({}), "n1"));
    fake.bookmark();
    assert_eq!(name_of(&next(&mut with).await), ("ADDED", "p".into()));
    match next(&mut with).await {
        WatchEvent::Bookmark(bookmark) => {
            assert_eq!(
                bookmark.metadata.resource_version,
                fake.resource_version().to_string()
            );
            assert_eq!(
                (
                    bookmark.types.kind.as_str(),
                    bookmark.types.api_version.as_str()
                ),
                ("Pod", "v1")
            );
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    assert_eq!(name_of(&next(&mut without).await), ("ADDED", "p".into()));
    fake.remove("v1", "Pod", Some("shop"), "p");
    assert_eq!(name_of(&next(&mut without).await), ("DELETED", "p".into()));

    // Streaming lists: the initial objects, then a bookmark marking their end.
    let mut streaming = pods
        .watch(&WatchParams::default().initial_events(), "")
        .await
        .unwrap()
        .boxed();
    match next(&mut streaming).await {
        WatchEvent::Bookmark(bookmark) => {
            assert_eq!(
                bookmark
                    .metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
        }
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn merge_strategic_and_json_patches() {
    let fake = FakeApi::start().await;
    let deployments: Api<Deployment> = Api::namespaced(client(&fake), "shop");
    fake.put_json(deployment("shop", "checkout"));
    let params = PatchParams::default();

    let merged = deployments
        .patch(
            "checkout",
            &params,
            &Patch::Merge(json!({"metadata": {"labels": {"team": "pay", "app": null}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged
            .metadata
            .labels
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [("team".to_string(), "pay".to_string())]
    );
    assert_eq!(
        merged.metadata.generation,
        Some(1),
        "a metadata change is no new generation"
    );

    let strategic = deployments
        .patch(
            "checkout",
            &params,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "B", "$patch": "delete"}, {"name": "A", "value": "10"}, {"name": "C", "value": "3"}]},
            ]}}}})),
        )
        .await
        .unwrap();
    let container = &strategic
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("app:1"),
        "merged by name, not replaced"
    );
    let env: Vec<(String, Option<String>)> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|env| (env.name, env.value))
        .collect();
    assert_eq!(
        env,
        [
            ("A".into(), Some("10".into())),
            ("C".into(), Some("3".into()))
        ]
    );
    assert_eq!(strategic.metadata.generation, Some(2));

    // kube's `Patch::Json` needs its `jsonpatch` feature, which the workspace leaves off; the
    // request is built by hand, as kube-rs would send it.
    let json_patched: Deployment = json_patch(
        &client(&fake),
        "/apis/apps/v1/namespaces/shop/deployments/checkout",
        json!([
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(json_patched.spec.unwrap().replicas, Some(4));
    let failed = api_error(
        json_patch::<Deployment>(
            &client(&fake),
            "/apis/apps/v1/namespaces/shop/deployments/checkout",
            json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
        )
        .await,
    );
    assert_eq!((failed.code, failed.reason.as_str()), (422, "Invalid"));

    // The main resource cannot change status; a patch naming a stale version conflicts.
    let status_kept = deployments
        .patch(
            "checkout",
            &params,
            &Patch::Merge(json!({"status": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(status_kept.status.unwrap().replicas, Some(2));
    let stale = api_error(
        deployments
            .patch(
                "checkout",
                &params,
                &Patch::Merge(
                    json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}),
                ),
            )
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    let missing = api_error(
        deployments
            .patch("nope", &params, &Patch::Merge(json!({})))
            .await,
    );
    assert_eq!(missing.code, 404);

    // Server-side apply, approximately: creates when absent, merges when present.
    let applied = deployments
        .patch(
            "applied",
            &PatchParams::apply("homeostat"),
            &Patch::Apply(deployment("shop", "applied")),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("applied"));
}

#[tokio::test]
async fn status_subresource_changes_only_status() {
    let fake = FakeApi::start().await;
    let deployments: Api<Deployment> = Api::namespaced(client(&fake), "shop");
    fake.put_json(deployment("shop", "checkout"));
    let patched = deployments
        .patch_status(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}, "status": {"readyReplicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(patched.status.as_ref().unwrap().ready_replicas, Some(1));
    assert_eq!(patched.metadata.generation, Some(1));
    let mut replaced = patched.clone();
    replaced.status.as_mut().unwrap().available_replicas = Some(1);
    replaced.spec.as_mut().unwrap().paused = Some(true);
    let replaced = deployments
        .replace_status("checkout", &PostParams::default(), &replaced)
        .await;
    let replaced = replaced.unwrap();
    assert_eq!(replaced.status.unwrap().available_replicas, Some(1));
    assert_eq!(replaced.spec.unwrap().paused, None);
    let stale = api_error(
        deployments
            .replace_status("checkout", &PostParams::default(), &patched)
            .await,
    );
    assert_eq!(stale.code, 409);
    assert_eq!(
        deployments
            .get_status("checkout")
            .await
            .unwrap()
            .status
            .unwrap()
            .ready_replicas,
        Some(1)
    );
}

#[tokio::test]
async fn dry_run_stores_nothing_and_tells_no_watch() {
    let fake = FakeApi::start().await;
    let client = client(&fake);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    fake.put_json(deployment("shop", "checkout"));
    fake.put(&pod("shop", "p", json!({"app": "checkout"}), "n1"));
    let mut stream = deployments
        .watch(
            &WatchParams::default(),
            &fake.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    assert!(fake.wait_for_watches(1).await);
    let version = fake.resource_version();
    let stored = fake.get_json("apps/v1", "Deployment", Some("shop"), "checkout");

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = deployments
        .create(
            &dry,
            &serde_json::from_value(deployment("shop", "new")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("new"));
    let dry_patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let patched = deployments
        .patch(
            "checkout",
            &dry_patch,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(5));
    let scaled = deployments
        .patch_scale(
            "checkout",
            &dry_patch,
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(6));
    deployments
        .delete(
            "checkout",
            &DeleteParams {
                dry_run: true,
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    let evict = EvictParams {
        post_options: dry.clone(),
        ..EvictParams::default()
    };
    pods.evict("p", &evict).await.unwrap();
    // A dry run still checks: creating what exists conflicts.
    let conflict = api_error(
        deployments
            .create(
                &dry,
                &serde_json::from_value(deployment("shop", "checkout")).unwrap(),
            )
            .await,
    );
    assert_eq!(conflict.code, 409);

    assert_eq!(fake.resource_version(), version);
    assert!(fake
        .get_json("apps/v1", "Deployment", Some("shop"), "new")
        .is_none());
    assert_eq!(
        fake.get_json("apps/v1", "Deployment", Some("shop"), "checkout"),
        stored
    );
    assert!(fake.get::<Pod>(Some("shop"), "p").is_some());
    assert!(fake
        .requests()
        .iter()
        .filter(|request| request.method != "GET")
        .all(|request| request.dry_run()));
    // The first event the watch sees is the next real write.
    fake.put_json(deployment("shop", "after"));
    assert_eq!(name_of(&next(&mut stream).await), ("ADDED", "after".into()));
}

#[tokio::test]
async fn scale_subresource() {
    let fake = FakeApi::start().await;
    let deployments: Api<Deployment> = Api::namespaced(client(&fake), "shop");
    fake.put_json(deployment("shop", "checkout"));
    let scale = deployments.get_scale("checkout").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    let status = scale.status.unwrap();
    assert_eq!(
        (status.replicas, status.selector.as_deref()),
        (2, Some("app=checkout"))
    );

    let patched = deployments
        .patch_scale(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(5));
    let stored: Deployment = fake.get(Some("shop"), "checkout").unwrap();
    assert_eq!(
        (stored.spec.unwrap().replicas, stored.metadata.generation),
        (Some(5), Some(2))
    );
    assert_eq!(
        stored.status.unwrap().replicas,
        Some(2),
        "nothing scales the pods"
    );

    let mut scale = deployments.get_scale("checkout").await.unwrap();
    scale.spec.as_mut().unwrap().replicas = Some(1);
    let replaced = deployments
        .replace_scale("checkout", &PostParams::default(), &scale)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(1));
    // The same Scale again carries a now stale resourceVersion.
    let stale = api_error(
        deployments
            .replace_scale("checkout", &PostParams::default(), &scale)
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    let negative = api_error(
        deployments
            .patch_scale(
                "checkout",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": -1}})),
            )
            .await,
    );
    assert_eq!(negative.code, 422);
    let missing = api_error(deployments.get_scale("nope").await);
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn eviction_respects_disruption_budgets() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(client(&fake), "shop");
    let mut running = pod("shop", "web-1", json!({"app": "web"}), "n1");
    running.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
    fake.put(&running);
    let budget = |allowed: i32| -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2},
        }))
        .unwrap()
    };
    fake.put(&budget(0));
    let refused = api_error(pods.evict("web-1", &EvictParams::default()).await);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (429, "TooManyRequests")
    );
    assert_eq!(
        refused.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &refused.details.as_ref().unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.message.as_str()),
        (
            "DisruptionBudget",
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        )
    );
    assert!(fake.get::<Pod>(Some("shop"), "web-1").is_some());

    fake.put(&budget(1));
    let accepted = pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert_eq!(
        (accepted.status, accepted.code),
        (Some(StatusSummary::Success), 201)
    );
    assert!(fake.get::<Pod>(Some("shop"), "web-1").is_none());
    let after: PodDisruptionBudget = fake.get(Some("shop"), "web").unwrap();
    assert_eq!(after.status.unwrap().disruptions_allowed, 0);
    assert_eq!(
        api_error(pods.evict("web-1", &EvictParams::default()).await).code,
        404
    );
    let request = fake
        .requests()
        .into_iter()
        .rfind(|request| request.path.ends_with("/eviction"))
        .unwrap();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/api/v1/namespaces/shop/pods/web-1/eviction")
    );

    // A dry run in the Eviction's deleteOptions (as the real API reads it; kube-rs's
    // `EvictParams::delete_options` goes out as `delete_options`, which the real API ignores).
    fake.put(&running);
    fake.put(&budget(1));
    let version = fake.resource_version();
    let request = axum::http::Request::post("/api/v1/namespaces/shop/pods/web-1/eviction")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({
                "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "shop"},
                "deleteOptions": {"dryRun": ["All"]},
            }))
            .unwrap(),
        )
        .unwrap();
    let status: kube::core::Status = client(&fake).request(request).await.unwrap();
    assert_eq!(status.code, 201);
    assert_eq!(fake.resource_version(), version);
    assert!(fake.requests().last().unwrap().dry_run());
    pods.evict("web-1", &EvictParams::default()).await.unwrap();

    // Pods a budget does not select go freely.
    fake.put(&pod("shop", "db-1", json!({"app": "db"}), "n1"));
    pods.evict("db-1", &EvictParams::default()).await.unwrap();
}

#[tokio::test]
async fn replace_with_a_stale_version_conflicts() {
    let fake = FakeApi::start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client(&fake), "shop");
    let created = config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some([("a".to_string(), "2".to_string())].into());
    let replaced = config_maps
        .replace("cfg", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    let stale = api_error(
        config_maps
            .replace("cfg", &PostParams::default(), &first)
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.details.as_ref().map(|details| details.name.as_str()),
        Some("cfg")
    );
    let mut absent = first.clone();
    absent.metadata.name = Some("absent".into());
    absent.metadata.resource_version = None;
    assert_eq!(
        api_error(
            config_maps
                .replace("absent", &PostParams::default(), &absent)
                .await
        )
        .code,
        404
    );

    let deleted = config_maps
        .delete("cfg", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        deleted.left().and_then(|cfg| cfg.metadata.name).as_deref(),
        Some("cfg")
    );
    assert_eq!(
        api_error(config_maps.delete("cfg", &DeleteParams::default()).await).code,
        404
    );
}

#[tokio::test]
async fn fail_next_and_the_request_log() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(client(&fake), "shop");
    fake.fail_next(Some("GET"), "/pods", 500, 1);
    let failed = api_error(pods.list(&ListParams::default()).await);
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    assert!(pods.list(&ListParams::default()).await.is_ok());
    fake.fail_next(None, "/pods/p", 503, 2);
    assert_eq!(api_error(pods.get("p").await).code, 503);
    assert_eq!(
        api_error(pods.delete("p", &DeleteParams::default()).await).reason,
        "ServiceUnavailable"
    );
    assert_eq!(api_error(pods.get("p").await).code, 404);
    assert_eq!(fake.requests().len(), 5, "failed requests are recorded too");

    fake.clear_requests();
    fake.put(&pod("shop", "p", json!({}), "n1"));
    let params = PatchParams {
        dry_run: true,
        field_manager: Some("homeostat".into()),
        ..PatchParams::default()
    };
    pods.patch(
        "p",
        &params,
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let patch = &requests[0];
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", "/api/v1/namespaces/shop/pods/p")
    );
    assert_eq!(patch.query.get("dryRun").map(String::as_str), Some("All"));
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("homeostat")
    );
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patch.body,
        Some(json!({"metadata": {"labels": {"x": "y"}}}))
    );
    assert!(patch.dry_run() && !patch.watch);
    assert_eq!(requests[1].method, "DELETE");
    assert_eq!(requests[1].body, Some(json!({"gracePeriodSeconds": 0})));
}

#[tokio::test]
async fn finalizers_hold_a_deletion() {
    let fake = FakeApi::start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client(&fake), "shop");
    fake.put_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": "shop", "finalizers": ["x/y"]}}));
    let deleted = config_maps
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let held = deleted.left().unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(config_maps.get("held").await.is_ok());
    config_maps
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(api_error(config_maps.get("held").await).code, 404);
}

#[tokio::test]
async fn the_default_client_retries_unavailable() {
    let fake = FakeApi::start().await;
    let retrying = Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
    let pods: Api<Pod> = Api::namespaced(retrying, "shop");
    fake.fail_next(Some("GET"), "/pods", 503, 1);
    assert!(pods.list(&ListParams::default()).await.is_ok());
    assert_eq!(
        fake.requests().len(),
        2,
        "kube-rs retried the 503 on its own"
    );
    fake.fail_next(Some("GET"), "/pods", 500, 1);
    assert_eq!(api_error(pods.list(&ListParams::default()).await).code, 500);
}
