//! The Kubernetes actions against the in-process fake API server: the exact requests each one
//! sends, its outputs, and the rollbacks its outputs feed.

use std::time::Duration;

use homeostat_core::action::{self, kubernetes::declared_rollback, Action, KubeAction};
use homeostat_core::template::TemplatesBuilder;
use homeostat_kube_fake::FakeApi;
use homeostat_kubernetes::actions::{execute, Context, Failure};
use homeostat_kubernetes::permissions;
use serde_json::{json, Value};

/// The fake and a client whose default namespace is `shop`, without kube's own retries of 429,
/// 503 and 504, as the daemon's client (`client::connect`) has it.
async fn start() -> (FakeApi, kube::Client) {
    start_with(false).await
}

/// With `retry: false`, every refusal reaches the action at once: the requests are exact.
async fn start_with(retry: bool) -> (FakeApi, kube::Client) {
    let fake = FakeApi::start().await;
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.default_namespace = "shop".into();
    config.default_retry = retry;
    let client = kube::Client::try_from(config).unwrap();
    (fake, client)
}

fn context(dry_run: bool) -> Context {
    Context {
        dry_run,
        timeout: Duration::from_secs(10),
        now: "2025-03-01T12:00:00Z".parse().unwrap(),
        field_manager: "homeostat".into(),
    }
}

fn parse(name: &str, with: Value) -> KubeAction {
    match action::parse(name, &with) {
        Ok(Action::Kubernetes(action)) => action,
        other => panic!("{name} {with}: {other:?}"),
    }
}

async fn run(
    client: &kube::Client,
    name: &str,
    with: Value,
    dry_run: bool,
) -> Result<Value, Failure> {
    RAN.with(|ran| {
        ran.borrow_mut().push(
            permissions::ACTIONS
                .iter()
                .find(|known| **known == name)
                .copied()
                .unwrap_or("unknown"),
        )
    });
    execute(client, &parse(name, with), &context(dry_run)).await
}

thread_local! {
    /// The actions run since the requests were last read: every request they made must be one
    /// that `permissions::rules` grants them, or the RBAC homeostat ships would refuse it.
    /// (Each `#[tokio::test]` runs on a thread of its own.)
    static RAN: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The RBAC verb, API group and resource (or `resource/subresource`) of a request.
fn rbac(request: &homeostat_kube_fake::Request) -> (String, String, String) {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not an API path: {}", request.path),
    };
    let rest: &[&str] = match rest {
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _name] => (plural.to_string(), true),
        [plural, _name, sub] => (format!("{plural}/{sub}"), true),
        _ => panic!("an unexpected path: {}", request.path),
    };
    let verb = match (request.method.as_str(), named) {
        ("GET", _) if request.watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (method, _) => panic!("an unexpected method {method}"),
    };
    (verb.to_string(), group.to_string(), resource)
}

/// Fails the test if a request of the actions just run is not granted to them.
fn check_granted(fake: &FakeApi) {
    let actions = RAN.with(|ran| std::mem::take(&mut *ran.borrow_mut()));
    if actions.is_empty() {
        return;
    }
    let granted = permissions::rules(&actions, None);
    for request in fake.requests() {
        let (verb, group, resource) = rbac(&request);
        assert!(
            granted.iter().any(|permission| permission.group == group
                && permission.resource == resource
                && permission.verbs.contains(&verb.as_str())),
            "{actions:?} sent `{} {}`, which needs `{verb}` on `{group}/{resource}`: not in permissions::rules, so the RBAC would refuse it",
            request.method,
            request.path
        );
    }
}

/// The requests the fake received, as `[method, path, query, content type, body]`.
fn requests(fake: &FakeApi) -> Vec<Value> {
    check_granted(fake);
    let requests = fake
        .requests()
        .into_iter()
        .map(|request| {
            json!([
                request.method,
                request.path,
                request.query,
                request.content_type,
                request.body
            ])
        })
        .collect();
    fake.clear_requests();
    requests
}

fn get(path: &str) -> Value {
    json!(["GET", path, {}, null, null])
}

/// A write with `fieldManager=homeostat`, and `dryRun=All` in a dry run.
fn write(method: &str, path: &str, content_type: &str, body: Value, dry_run: bool) -> Value {
    let query = if dry_run {
        json!({"dryRun": "All", "fieldManager": "homeostat"})
    } else {
        json!({"fieldManager": "homeostat"})
    };
    json!([method, path, query, content_type, body])
}

/// Renders the rollback `action` declares over its output (`result`), as the engine does, into
/// the action it would run.
fn rollback(action: &str, outputs: &Value) -> KubeAction {
    let (name, with) = declared_rollback(action).expect("a declared rollback");
    let mut builder = TemplatesBuilder::new();
    let inputs = builder.add_inputs(&with, "with").unwrap();
    let templates = builder.build();
    let rendered = templates
        // The action's output, under the name the templates read it by.
        .render_inputs(&inputs, &json!({ "result": outputs }))
        .unwrap();
    parse(name, rendered)
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";

fn deployment(fake: &FakeApi, replicas: i64) -> Value {
    fake.put_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [
                    {"name": "app", "image": "shop/checkout:v3", "env": [
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "REGION", "value": "eu"},
                    ]},
                    {"name": "proxy", "image": "envoy:1", "env": [
                        {"name": "REGION", "value": "eu"},
                    ]},
                ]},
            },
        },
    }))
}

fn stored_deployment(fake: &FakeApi) -> Value {
    fake.get_json("apps/v1", "Deployment", Some("shop"), "checkout")
        .unwrap()
}

// ---- rollout_restart ----------------------------------------------------------------------

#[tokio::test]
async fn rollout_restart_stamps_the_template() {
    let (fake, client) = start().await;
    let seeded = deployment(&fake, 2);
    let version = seeded["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-03-01T12:00:00Z"
    }}}}});
    let output = run(
        &client,
        "kubernetes.rollout_restart",
        json!({"namespace": "shop", "name": "checkout"}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        requests(&fake),
        vec![
            get(&format!("{DEPLOYMENTS}/checkout")),
            write(
                "PATCH",
                &format!("{DEPLOYMENTS}/checkout"),
                "application/strategic-merge-patch+json",
                patch,
                false
            ),
        ]
    );
    let stored = stored_deployment(&fake);
    let new_version = stored["metadata"]["resourceVersion"].as_str().unwrap();
    assert_eq!(
        output,
        json!({
            "kind": "Deployment", "namespace": "shop", "name": "checkout",
            "changed": true, "dry_run": false,
            "restarted_at": "2025-03-01T12:00:00Z",
            "before": {"restartedAt": null, "generation": 1, "resourceVersion": version},
            "after": {"restartedAt": "2025-03-01T12:00:00Z", "generation": 2, "resourceVersion": new_version},
        })
    );
    assert_eq!(
        stored["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2025-03-01T12:00:00Z"
    );
}

// ---- scale --------------------------------------------------------------------------------

#[tokio::test]
async fn scale_is_clamped_by_max_and_its_rollback_restores_the_replicas() {
    let (fake, client) = start().await;
    let seeded = deployment(&fake, 2);
    let version = seeded["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let scale = format!("{DEPLOYMENTS}/checkout/scale");

    let output = run(
        &client,
        "kubernetes.scale",
        json!({"name": "checkout", "replicas": 10, "max": 5}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        requests(&fake),
        vec![
            get(&scale),
            write(
                "PATCH",
                &scale,
                "application/merge-patch+json",
                json!({"metadata": {"resourceVersion": version}, "spec": {"replicas": 5}}),
                false
            ),
        ]
    );
    let stored = stored_deployment(&fake);
    assert_eq!(stored["spec"]["replicas"], 5);
    let new_version = stored["metadata"]["resourceVersion"].as_str().unwrap();
    assert_eq!(
        output,
        json!({
            "kind": "Deployment", "namespace": "shop", "name": "checkout",
            "changed": true, "dry_run": false,
            "requested": 10, "replicas": 5, "clamped": true, "previous_replicas": 2,
            "min": 1, "max": 5,
            "before": {"replicas": 2, "resourceVersion": version},
            "after": {"replicas": 5, "resourceVersion": new_version},
        })
    );

    // The declared rollback scales back to 2.
    let undo = rollback("kubernetes.scale", &output);
    let output = execute(&client, &undo, &context(false)).await.unwrap();
    assert_eq!(output["replicas"], 2);
    assert_eq!(output["clamped"], false);
    assert_eq!(stored_deployment(&fake)["spec"]["replicas"], 2);
}

#[tokio::test]
async fn a_conflict_on_a_read_modify_write_reads_again() {
    let (fake, client) = start().await;
    let seeded = deployment(&fake, 2);
    let version = seeded["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let scale = format!("{DEPLOYMENTS}/checkout/scale");
    fake.fail_next(Some("PATCH"), "/scale", 409, 1);
    let output = run(
        &client,
        "kubernetes.scale",
        json!({"name": "checkout", "replicas": 4, "max": 4}),
        false,
    )
    .await
    .unwrap();
    let patch = write(
        "PATCH",
        &scale,
        "application/merge-patch+json",
        json!({"metadata": {"resourceVersion": version}, "spec": {"replicas": 4}}),
        false,
    );
    assert_eq!(
        requests(&fake),
        vec![get(&scale), patch.clone(), get(&scale), patch]
    );
    assert_eq!(output["changed"], true);
    assert_eq!(stored_deployment(&fake)["spec"]["replicas"], 4);

    // A write that keeps conflicting: five reads and writes, then a message that says so.
    fake.fail_next(Some("PATCH"), "/scale", 409, 10);
    let failure = run(
        &client,
        "kubernetes.scale",
        json!({"name": "checkout", "replicas": 1, "max": 4}),
        false,
    )
    .await
    .unwrap_err();
    assert!(
        failure.message.starts_with(
            "kubernetes api refused `PATCH deployments/checkout/scale`: 409 conflict:"
        ),
        "{}",
        failure.message
    );
    assert!(failure
        .message
        .ends_with("; the object kept changing while homeostat retried, so try again later"));
    assert_eq!(
        requests(&fake).len(),
        10,
        "five attempts of a read and a write"
    );
}

// ---- rollout_undo -------------------------------------------------------------------------

fn replica_set(
    fake: &FakeApi,
    name: &str,
    owner: (&str, &str),
    revision: &str,
    image: &str,
    annotations: Value,
) {
    let mut all = json!({"deployment.kubernetes.io/revision": revision});
    all.as_object_mut()
        .unwrap()
        .extend(annotations.as_object().unwrap().clone());
    fake.put_json(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": "checkout", "pod-template-hash": name},
            "annotations": all,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": owner.0, "uid": owner.1,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "checkout", "pod-template-hash": name}},
            "template": {
                "metadata": {"labels": {"app": "checkout", "pod-template-hash": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }));
}

/// A Deployment at revision 3 (`v3`) with the ReplicaSets `revisions` gives, and one more of
/// revision 2 that another Deployment with the same labels controls.
fn history(fake: &FakeApi, revisions: &[(&str, &str)]) -> Value {
    let seeded = fake.put_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "kubernetes.io/change-cause": "deploy v3",
                "team": "payments",
            },
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "shop/checkout:v3"}]},
            },
        },
    }));
    let uid = seeded["metadata"]["uid"].as_str().unwrap().to_string();
    for (revision, image) in revisions {
        replica_set(
            fake,
            &format!("checkout-{revision}"),
            ("checkout", &uid),
            revision,
            image,
            json!({
                "kubernetes.io/change-cause": format!("deploy {image}"),
                "deployment.kubernetes.io/desired-replicas": "2",
            }),
        );
    }
    replica_set(
        fake,
        "checkout-canary-2",
        ("checkout-canary", "another-uid"),
        "2",
        "shop/checkout:canary",
        json!({}),
    );
    seeded
}

#[tokio::test]
async fn rollout_undo_goes_back_to_the_previous_revision_of_its_own_replica_sets() {
    let (fake, client) = start().await;
    let seeded = history(&fake, &[("1", "v1"), ("3", "v3")]);
    fake.clear_requests();
    let output = run(
        &client,
        "kubernetes.rollout_undo",
        json!({"name": "checkout"}),
        false,
    )
    .await
    .unwrap();
    let patch = json!([
        {"op": "replace", "path": "/spec/template", "value": {
            "metadata": {"labels": {"app": "checkout"}},
            "spec": {"containers": [{"name": "app", "image": "v1"}]},
        }},
        {"op": "replace", "path": "/metadata/annotations", "value": {
            "deployment.kubernetes.io/revision": "3",
            "kubernetes.io/change-cause": "deploy v1",
        }},
    ]);
    assert_eq!(
        requests(&fake),
        vec![
            get(&format!("{DEPLOYMENTS}/checkout")),
            json!(["GET", "/apis/apps/v1/namespaces/shop/replicasets", {"labelSelector": "app=checkout"}, null, null]),
            write(
                "PATCH",
                &format!("{DEPLOYMENTS}/checkout"),
                "application/json-patch+json",
                patch,
                false
            ),
        ]
    );
    let stored = stored_deployment(&fake);
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        "v1"
    );
    assert_eq!(
        output,
        json!({
            "kind": "Deployment", "namespace": "shop", "name": "checkout",
            "changed": true, "dry_run": false,
            "from_revision": 3, "to_revision": 1,
            "before": {
                "revision": 3, "images": {"app": "shop/checkout:v3"},
                "generation": 1, "resourceVersion": seeded["metadata"]["resourceVersion"],
            },
            "after": {
                "images": {"app": "v1"},
                "generation": 2, "resourceVersion": stored["metadata"]["resourceVersion"],
            },
        })
    );

    // The declared rollback goes to `from_revision`: the revision 3 ReplicaSet's template.
    let undo = rollback("kubernetes.rollout_undo", &output);
    let output = execute(&client, &undo, &context(false)).await.unwrap();
    assert_eq!(output["to_revision"], 3);
    assert_eq!(
        stored_deployment(&fake)["spec"]["template"]["spec"]["containers"][0]["image"],
        "v3"
    );
}

#[tokio::test]
async fn rollout_undo_without_to_revision_goes_to_the_revision_before_the_current_one() {
    let (fake, client) = start().await;
    history(
        &fake,
        &[("1", "v1"), ("2", "v2"), ("3", "shop/checkout:v3")],
    );
    // 2, its own, not the other Deployment's.
    let output = run(
        &client,
        "kubernetes.rollout_undo",
        json!({"name": "checkout"}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            output["from_revision"].clone(),
            output["to_revision"].clone()
        ),
        (json!(3), json!(2))
    );
    assert_eq!(output["after"]["images"], json!({"app": "v2"}));
}

// ---- delete_pod ---------------------------------------------------------------------------

fn pod(fake: &FakeApi, name: &str, node: &str, owner: Option<(&str, &str)>, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name.split('-').next().unwrap()}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running"},
    });
    if let Some((kind, owner)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": format!("{owner}-uid"), "controller": true,
        }]);
    }
    merge(&mut pod, extra);
    fake.put_json(pod)
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

#[tokio::test]
async fn delete_pod_reports_its_node_and_owner() {
    let (fake, client) = start().await;
    let seeded = pod(
        &fake,
        "web-1",
        "n1",
        Some(("ReplicaSet", "web-abc")),
        json!({}),
    );
    let path = "/api/v1/namespaces/shop/pods/web-1";
    let output = run(
        &client,
        "kubernetes.delete_pod",
        json!({"name": "web-1", "grace_period_secs": 30}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        requests(&fake),
        vec![
            get(path),
            json!(["DELETE", path, {"gracePeriodSeconds": "30"}, null, null])
        ]
    );
    assert_eq!(
        output,
        json!({
            "kind": "Pod", "namespace": "shop", "name": "web-1", "changed": true, "dry_run": false,
            "node": "n1", "owner": {"kind": "ReplicaSet", "name": "web-abc"}, "phase": "Running",
            "grace_period_secs": 30,
            "before": {
                "uid": seeded["metadata"]["uid"], "phase": "Running",
                "resourceVersion": seeded["metadata"]["resourceVersion"],
            },
            "after": output["after"].clone(),
        })
    );
    assert!(fake.get_json("v1", "Pod", Some("shop"), "web-1").is_none());
}

// ---- cordon / uncordon --------------------------------------------------------------------

fn node(fake: &FakeApi, name: &str, unschedulable: bool) -> Value {
    let mut node = k8s_openapi::api::core::v1::Node::default();
    node.metadata.name = Some(name.to_string());
    node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        unschedulable: unschedulable.then_some(true),
        ..Default::default()
    });
    fake.put(&node)
}

fn stored_node(fake: &FakeApi, name: &str) -> Value {
    fake.get_json("v1", "Node", None, name).unwrap()
}

#[tokio::test]
async fn cordon_and_uncordon_patch_unschedulable_once() {
    let (fake, client) = start().await;
    let seeded = node(&fake, "n1", false);
    let path = "/api/v1/nodes/n1";
    let cordon = |unschedulable: bool| {
        write(
            "PATCH",
            path,
            "application/merge-patch+json",
            json!({"spec": {"unschedulable": unschedulable}}),
            false,
        )
    };

    let output = run(&client, "kubernetes.cordon", json!({"node": "n1"}), false)
        .await
        .unwrap();
    assert_eq!(requests(&fake), vec![get(path), cordon(true)]);
    let stored = stored_node(&fake, "n1");
    assert_eq!(stored["spec"]["unschedulable"], true);
    assert_eq!(
        output,
        json!({
            "kind": "Node", "namespace": "", "name": "n1", "node": "n1",
            "changed": true, "dry_run": false,
            "before": {"unschedulable": false, "resourceVersion": seeded["metadata"]["resourceVersion"]},
            "after": {"unschedulable": true, "resourceVersion": stored["metadata"]["resourceVersion"]},
        })
    );

    // Already cordoned: nothing written, nothing to roll back.
    let again = run(&client, "kubernetes.cordon", json!({"node": "n1"}), false)
        .await
        .unwrap();
    assert_eq!(requests(&fake), vec![get(path)]);
    assert_eq!(again["changed"], false);

    // The declared rollback of the cordon uncordons.
    let undo = rollback("kubernetes.cordon", &output);
    assert_eq!(undo, parse("kubernetes.uncordon", json!({"node": "n1"})));
    let output = execute(&client, &undo, &context(false)).await.unwrap();
    assert_eq!(requests(&fake), vec![get(path), cordon(false)]);
    assert_eq!(output["changed"], true);
    assert_eq!(stored_node(&fake, "n1")["spec"]["unschedulable"], false);
}

// ---- drain --------------------------------------------------------------------------------

fn budget(fake: &FakeApi, allowed: i64) {
    fake.put_json(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
        "status": {"disruptionsAllowed": allowed, "desiredHealthy": 1, "currentHealthy": 1, "expectedPods": 1},
    }));
}

/// Drain's requests after the node's GET and PATCH and the pod list, which run in order; the
/// pods are evicted concurrently, so the rest is sorted.
fn drain_requests(fake: &FakeApi, dry_run: bool) -> Vec<Value> {
    let mut sent = requests(fake);
    assert_eq!(
        sent[..3].to_vec(),
        vec![
            get("/api/v1/nodes/n1"),
            write(
                "PATCH",
                "/api/v1/nodes/n1",
                "application/merge-patch+json",
                json!({"spec": {"unschedulable": true}}),
                dry_run
            ),
            json!(["GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=n1"}, null, null]),
        ]
    );
    let mut rest = sent.split_off(3);
    rest.sort_by_key(|request| request.to_string());
    rest
}

fn eviction(name: &str, body_extra: Value, dry_run: bool) -> Value {
    let mut body = json!({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": "shop"},
    });
    merge(&mut body, body_extra);
    write(
        "POST",
        &format!("/api/v1/namespaces/shop/pods/{name}/eviction"),
        "application/json",
        body,
        dry_run,
    )
}

#[tokio::test]
async fn drain_evicts_through_the_budget_and_leaves_daemonset_and_mirror_pods() {
    let (fake, client) = start().await;
    node(&fake, "n1", false);
    budget(&fake, 1);
    pod(&fake, "db-0", "n1", Some(("StatefulSet", "db")), json!({}));
    pod(
        &fake,
        "logs-x",
        "n1",
        Some(("DaemonSet", "logs")),
        json!({}),
    );
    pod(
        &fake,
        "etcd-n1",
        "n1",
        None,
        json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}}}),
    );
    pod(
        &fake,
        "job-1",
        "n1",
        None,
        json!({"status": {"phase": "Succeeded"}}),
    );
    pod(&fake, "web-2", "n2", Some(("ReplicaSet", "web")), json!({}));
    fake.clear_requests();

    let output = run(
        &client,
        "kubernetes.drain",
        json!({"node": "n1", "grace_period_secs": 5, "timeout_secs": 5}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        drain_requests(&fake, false),
        vec![
            json!(["DELETE", "/api/v1/namespaces/shop/pods/job-1", {"gracePeriodSeconds": "5"}, null, null]),
            get("/api/v1/namespaces/shop/pods/db-0"),
            get("/api/v1/namespaces/shop/pods/job-1"),
            eviction(
                "db-0",
                json!({"deleteOptions": {"gracePeriodSeconds": 5}}),
                false
            ),
        ]
    );
    assert_eq!(
        output,
        json!({
            "kind": "Node", "namespace": "", "name": "n1", "node": "n1",
            "changed": true, "cordoned": true, "dry_run": false,
            "before": output["before"].clone(), "after": output["after"].clone(),
            "evicted": ["shop/db-0"],
            "deleted": ["shop/job-1"],
            "skipped": [
                {"pod": "shop/etcd-n1", "reason": "mirror pod of a static pod; the kubelet owns it"},
                {"pod": "shop/logs-x", "reason": "managed by DaemonSet `logs`"},
            ],
            "refused": [],
        })
    );
    assert_eq!(output["after"]["unschedulable"], true);
    assert!(fake.get_json("v1", "Pod", Some("shop"), "db-0").is_none());
    assert!(fake.get_json("v1", "Pod", Some("shop"), "logs-x").is_some());
    assert!(fake.get_json("v1", "Pod", Some("shop"), "web-2").is_some());
    let pdb = fake
        .get_json("policy/v1", "PodDisruptionBudget", Some("shop"), "db")
        .unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);

    // The declared rollback uncordons what the drain cordoned.
    let undo = rollback("kubernetes.drain", &output);
    assert_eq!(undo, parse("kubernetes.uncordon", json!({"node": "n1"})));
}

/// A drain of `n1` for at most 1 s, whose one pod a budget allowing no disruption protects; with
/// `retry`, through a client that retries refusals itself.
async fn drain_behind_a_budget(retry: bool) -> (FakeApi, Failure) {
    let (fake, client) = start_with(retry).await;
    node(&fake, "n1", false);
    budget(&fake, 0);
    pod(&fake, "db-0", "n1", Some(("StatefulSet", "db")), json!({}));
    fake.clear_requests();
    let failure = run(
        &client,
        "kubernetes.drain",
        json!({"node": "n1", "timeout_secs": 1}),
        false,
    )
    .await
    .unwrap_err();
    (fake, failure)
}

#[tokio::test]
async fn drain_retries_an_eviction_the_budget_refuses_until_its_timeout() {
    let (fake, failure) = drain_behind_a_budget(false).await;
    let refusal = "eviction of pod `shop/db-0` refused by PodDisruptionBudget `db`: Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget db needs 1 healthy pods and has 1 currently)";
    assert_eq!(
        failure.message,
        format!("drain of node `n1` stopped after 1 s with 1 pod not evicted: {refusal}; the node stays cordoned")
    );
    // Retried every tenth of `timeout_secs` (at least 0.1 s): about ten times in 1 s.
    let rest = drain_requests(&fake, false);
    assert!((3..=12).contains(&rest.len()), "retried: {}", rest.len());
    assert!(rest
        .iter()
        .all(|request| *request == eviction("db-0", json!({}), false)));
    assert_eq!(failure.output["cordoned"], true);
    assert_eq!(failure.output["changed"], true);
    assert_eq!(failure.output["evicted"], json!([]));
    assert_eq!(
        failure.output["not_evicted"],
        json!([{"pod": "shop/db-0", "reason": refusal}])
    );
    assert!(fake.get_json("v1", "Pod", Some("shop"), "db-0").is_some());
}

#[tokio::test]
async fn drain_names_the_budget_when_the_client_retries_the_refusals_itself() {
    // kube's default client retries a 429 for minutes without showing it (the daemon turns that
    // off, a library user might not): the drain still ends at its timeout, and names the budget
    // from the namespace's PodDisruptionBudgets.
    let (fake, failure) = drain_behind_a_budget(true).await;
    assert_eq!(
        failure.message,
        "drain of node `n1` stopped after 1 s with 1 pod not evicted: eviction of pod `shop/db-0` refused by PodDisruptionBudget `db`: it allows 0 disruptions now (1 healthy pods needed, 1 healthy); the node stays cordoned"
    );
    let rest = drain_requests(&fake, false);
    assert_eq!(
        rest[0],
        get("/apis/policy/v1/namespaces/shop/poddisruptionbudgets")
    );
    assert!(rest[1..]
        .iter()
        .all(|request| *request == eviction("db-0", json!({}), false)));
}

#[tokio::test]
async fn drain_refuses_unreplicated_and_emptydir_pods_before_evicting_any() {
    let (fake, client) = start().await;
    node(&fake, "n1", false);
    pod(&fake, "db-0", "n1", Some(("StatefulSet", "db")), json!({}));
    pod(&fake, "debug", "n1", None, json!({}));
    pod(
        &fake,
        "cache-1",
        "n1",
        Some(("ReplicaSet", "cache")),
        json!({"spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}}),
    );
    pod(
        &fake,
        "logs-x",
        "n1",
        Some(("DaemonSet", "logs")),
        json!({}),
    );
    fake.clear_requests();

    let failure = run(
        &client,
        "kubernetes.drain",
        json!({"node": "n1", "ignore_daemonsets": false}),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(
        failure.message,
        "drain of node `n1` refused before evicting anything: 3 pods cannot be evicted: \
         `shop/cache-1` has emptyDir volume `scratch`, whose data eviction deletes; set `delete_emptydir_data: true`; \
         `shop/debug` has no controller to recreate it; set `force: true` to delete it anyway; \
         `shop/logs-x` is managed by DaemonSet `logs`, which would recreate it at once; set `ignore_daemonsets: true` to leave it; \
         the node stays cordoned"
    );
    assert_eq!(drain_requests(&fake, false), Vec::<Value>::new());
    assert_eq!(failure.output["refused"].as_array().unwrap().len(), 3);
    assert_eq!(failure.output["cordoned"], true);

    // Allowed, they are evicted.
    let output = run(
        &client,
        "kubernetes.drain",
        json!({"node": "n1", "force": true, "delete_emptydir_data": true, "timeout_secs": 5}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        output["evicted"],
        json!(["shop/cache-1", "shop/db-0", "shop/debug"])
    );
    assert_eq!(output["cordoned"], false, "the first drain cordoned it");
    assert_eq!(output["changed"], false);
}

#[tokio::test]
async fn drain_in_a_dry_run_evicts_nothing_and_shows_what_a_budget_would_refuse() {
    let (fake, client) = start_with(false).await;
    let seeded_node = node(&fake, "n1", false);
    budget(&fake, 0);
    let db = pod(&fake, "db-0", "n1", Some(("StatefulSet", "db")), json!({}));
    let web = pod(&fake, "web-1", "n1", Some(("ReplicaSet", "web")), json!({}));
    fake.clear_requests();

    let output = run(&client, "kubernetes.drain", json!({"node": "n1"}), true)
        .await
        .unwrap();
    let dry = json!({"deleteOptions": {"dryRun": ["All"]}});
    assert_eq!(
        drain_requests(&fake, true),
        vec![
            eviction("db-0", dry.clone(), true),
            eviction("web-1", dry, true)
        ]
    );
    assert_eq!(output["evicted"], json!(["shop/web-1"]));
    assert_eq!(
        output["blocked"],
        json!([{"pod": "shop/db-0", "reason": "eviction of pod `shop/db-0` refused by PodDisruptionBudget `db`: Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget db needs 1 healthy pods and has 1 currently)"}])
    );
    assert_eq!(output["dry_run"], true);
    assert_eq!(stored_node(&fake, "n1"), seeded_node);
    assert_eq!(
        fake.get_json("v1", "Pod", Some("shop"), "db-0").unwrap(),
        db
    );
    assert_eq!(
        fake.get_json("v1", "Pod", Some("shop"), "web-1").unwrap(),
        web
    );
}

// ---- patch --------------------------------------------------------------------------------

fn flags(fake: &FakeApi) -> Value {
    fake.put_json(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "flags", "namespace": "shop", "labels": {"tier": "web", "old": "x"}},
        "data": {"secret-ish": "not journaled"},
    }))
}

#[tokio::test]
async fn patch_labels_and_annotations_and_undo_them() {
    let (fake, client) = start().await;
    let seeded = flags(&fake);
    let version = seeded["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let path = "/api/v1/namespaces/shop/configmaps/flags";
    let with = json!({
        "kind": "ConfigMap", "name": "flags",
        "labels": {"tier": "web", "old": null, "paused": "true"},
        "annotations": {"homeostat.io/why": "incident 42"},
    });

    let body = json!({"metadata": {
        "resourceVersion": version,
        "labels": {"old": null, "paused": "true"},
        "annotations": {"homeostat.io/why": "incident 42"},
    }});
    let output = run(&client, "kubernetes.patch", with, false).await.unwrap();
    assert_eq!(
        requests(&fake),
        vec![
            get(path),
            write("PATCH", path, "application/merge-patch+json", body, false)
        ]
    );
    let stored = fake
        .get_json("v1", "ConfigMap", Some("shop"), "flags")
        .unwrap();
    assert_eq!(
        stored["metadata"]["labels"],
        json!({"tier": "web", "paused": "true"})
    );
    assert_eq!(
        output,
        json!({
            "kind": "ConfigMap", "namespace": "shop", "name": "flags",
            "changed": true, "dry_run": false,
            "before": {
                "labels": {"tier": "web", "old": "x", "paused": null},
                "annotations": {"homeostat.io/why": null},
                "resourceVersion": version,
                "generation": 1,
            },
            "after": {
                "labels": {"tier": "web", "old": null, "paused": "true"},
                "annotations": {"homeostat.io/why": "incident 42"},
                "resourceVersion": stored["metadata"]["resourceVersion"],
                "generation": 1,
            },
            "undo": {
                "labels": {"old": "x", "paused": null},
                "annotations": {"homeostat.io/why": null},
                "env": {},
                "container": "",
            },
        })
    );

    // The declared rollback restores the labels and annotations as they were.
    let undo = rollback("kubernetes.patch", &output);
    execute(&client, &undo, &context(false)).await.unwrap();
    let restored = fake
        .get_json("v1", "ConfigMap", Some("shop"), "flags")
        .unwrap();
    assert_eq!(restored["metadata"]["labels"], seeded["metadata"]["labels"]);
    assert_eq!(
        restored["metadata"]
            .get("annotations")
            .cloned()
            .unwrap_or(json!({})),
        json!({})
    );
}

#[tokio::test]
async fn patch_env_adds_changes_and_removes_with_the_right_undo() {
    let (fake, client) = start().await;
    let seeded = deployment(&fake, 2);
    let version = seeded["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("{DEPLOYMENTS}/checkout");
    fake.clear_requests();

    // Only `app`: add FEATURE, change LOG_LEVEL, remove REGION.
    let output = run(
        &client,
        "kubernetes.patch",
        json!({
            "name": "checkout", "container": "app",
            "env": {"FEATURE": "on", "LOG_LEVEL": "debug", "REGION": null, "ABSENT": null},
        }),
        false,
    )
    .await
    .unwrap();
    let body = json!({
        "metadata": {"resourceVersion": version},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [
            {"name": "FEATURE", "value": "on"},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "REGION", "$patch": "delete"},
        ]}]}}},
    });
    assert_eq!(
        requests(&fake),
        vec![
            get(&path),
            write(
                "PATCH",
                &path,
                "application/strategic-merge-patch+json",
                body,
                false
            )
        ]
    );
    let stored = stored_deployment(&fake);
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "LOG_LEVEL", "value": "debug"}, {"name": "FEATURE", "value": "on"}])
    );
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][1]["env"],
        json!([{"name": "REGION", "value": "eu"}]),
        "the other container is untouched"
    );
    assert_eq!(
        output["undo"],
        json!({
            "labels": {}, "annotations": {},
            "env": {"FEATURE": null, "LOG_LEVEL": "info", "REGION": "eu"},
            "container": "app",
        })
    );
    assert_eq!(
        output["before"],
        json!({
            "env": {"app": {"ABSENT": null, "FEATURE": null, "LOG_LEVEL": "info", "REGION": "eu"}},
            "generation": 1, "resourceVersion": version,
        })
    );
    assert_eq!(
        output["after"]["env"],
        json!({"app": {"ABSENT": null, "FEATURE": "on", "LOG_LEVEL": "debug", "REGION": null}})
    );

    // The declared rollback puts the template's env back as it was.
    let undo = rollback("kubernetes.patch", &output);
    execute(&client, &undo, &context(false)).await.unwrap();
    let restored = stored_deployment(&fake);
    let mut env = restored["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    env.sort_by_key(|entry| entry.to_string());
    assert_eq!(
        env,
        vec![
            json!({"name": "LOG_LEVEL", "value": "info"}),
            json!({"name": "REGION", "value": "eu"})
        ]
    );

    // Every container: REGION is `eu` in both, so one undo restores both.
    fake.clear_requests();
    let output = run(
        &client,
        "kubernetes.patch",
        json!({"name": "checkout", "env": {"REGION": "us"}}),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        requests(&fake)[1][4]["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "app", "env": [{"name": "REGION", "value": "us"}]},
            {"name": "proxy", "env": [{"name": "REGION", "value": "us"}]},
        ])
    );
    assert_eq!(output["undo"]["env"], json!({"REGION": "eu"}));
    assert_eq!(output["undo"]["container"], "");
}

#[tokio::test]
async fn patch_env_reads_again_after_a_conflict() {
    let (fake, client) = start().await;
    deployment(&fake, 2);
    let with = json!({"name": "checkout", "container": "app", "env": {"LOG_LEVEL": "debug"}});
    // Another writer changes the Deployment between the read and the write: the patch's
    // resourceVersion is stale, the server answers 409, and the action reads again.
    fake.fail_next(Some("PATCH"), "deployments/checkout", 409, 1);
    let output = run(&client, "kubernetes.patch", with, false).await.unwrap();
    let sent: Vec<String> = requests(&fake)
        .iter()
        .map(|request| request[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["GET", "PATCH", "GET", "PATCH"]);
    assert_eq!(output["undo"]["env"], json!({"LOG_LEVEL": "info"}));
    assert_eq!(
        stored_deployment(&fake)["spec"]["template"]["spec"]["containers"][0]["env"][0],
        json!({"name": "LOG_LEVEL", "value": "debug"})
    );
}

// ---- wait_rollout -------------------------------------------------------------------------

fn rolling(fake: &FakeApi, updated: i64, available: i64, total: i64, conditions: Value) -> Value {
    let mut object = stored_deployment(fake);
    let generation = object["metadata"]["generation"].clone();
    object["status"] = json!({
        "observedGeneration": generation,
        "replicas": total,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "readyReplicas": available,
        "conditions": conditions,
    });
    fake.put_json(object)
}

#[tokio::test]
async fn wait_rollout_waits_until_the_rollout_is_complete() {
    let (fake, client) = start().await;
    deployment(&fake, 3);
    rolling(&fake, 1, 1, 4, json!([]));
    fake.clear_requests();
    let completer = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            rolling(&fake, 3, 3, 3, json!([]));
        })
    };
    let output = run(
        &client,
        "kubernetes.wait_rollout",
        json!({"name": "checkout", "poll_secs": 0.1}),
        false,
    )
    .await
    .unwrap();
    completer.await.unwrap();
    let sent = requests(&fake);
    assert!(sent.len() >= 3, "polled: {sent:?}");
    assert!(sent
        .iter()
        .all(|request| *request == get(&format!("{DEPLOYMENTS}/checkout"))));
    let waited = output["waited_secs"].as_f64().unwrap();
    assert!((0.4..3.0).contains(&waited), "{waited}");
    assert_eq!(
        output,
        json!({
            "kind": "Deployment", "namespace": "shop", "name": "checkout",
            "changed": false, "dry_run": false, "complete": true,
            "revision": 3, "replicas": 3, "updated": 3, "available": 3,
            "waited_secs": waited,
        })
    );
}

#[tokio::test]
async fn wait_rollout_fails_a_little_before_the_step_timeout_saying_where_it_stands() {
    let (fake, client) = start().await;
    deployment(&fake, 3);
    // No deadline condition, and it never completes.
    rolling(&fake, 2, 1, 4, json!([]));
    let context = Context {
        timeout: Duration::from_secs(1),
        ..context(false)
    };
    let failure = execute(
        &client,
        &parse(
            "kubernetes.wait_rollout",
            json!({"name": "checkout", "poll_secs": 0.2}),
        ),
        &context,
    )
    .await
    .unwrap_err();
    let (start, end) = failure.message.split_once(" s: ").unwrap();
    assert!(
        start.starts_with("rollout of deployment `shop/checkout` not complete after "),
        "{start}"
    );
    let waited: f64 = start.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.8..=1.0).contains(&waited), "{waited}");
    assert_eq!(
        end,
        "2 of 3 replicas updated, 1 available (2 out of 3 new replicas have been updated)"
    );
    assert_eq!(failure.output["complete"], false);
    assert_eq!(failure.output["updated"], 2);
}

// ---- scenarios ----------------------------------------------------------------------------

/// One action run once against a fake that holds what `seed` puts there, and what must come of
/// it. The tables below are the cases whose whole story is the requests sent and a few fields
/// of the answer; stories of several runs (an action, then its rollback) are tests of their own.
struct Scenario {
    /// What it shows; a failure names it.
    name: &'static str,
    seed: fn(&FakeApi),
    action: &'static str,
    with: Value,
    dry_run: bool,
    /// Every request it sends, as `METHOD path`, in order.
    requests: &'static [&'static str],
    expect: Expect,
}

enum Expect {
    /// It succeeds, and its output has these values at these JSON pointers.
    Output(Value),
    /// It fails with this whole message (what people read in the journal), and its output has
    /// these values at these JSON pointers.
    Failure(&'static str, Value),
}

/// Runs the scenario on a fake of its own, checking also that every request is one the RBAC
/// grants, and that a dry run sends every write with `dryRun=All` and stores nothing.
async fn check_action(scenario: Scenario) {
    let name = scenario.name;
    let (fake, client) = start().await;
    (scenario.seed)(&fake);
    fake.clear_requests();
    let stored = fake.resource_version();
    let result = run(&client, scenario.action, scenario.with, scenario.dry_run).await;
    let sent = requests(&fake);
    let lines: Vec<String> = sent
        .iter()
        .map(|request| {
            format!(
                "{} {}",
                request[0].as_str().unwrap(),
                request[1].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(lines, scenario.requests, "{name}: the requests");
    if scenario.dry_run {
        for request in sent.iter().filter(|request| request[0] != "GET") {
            assert_eq!(request[2]["dryRun"], "All", "{name}: {request}");
        }
        assert_eq!(
            fake.resource_version(),
            stored,
            "{name}: a dry run stored something"
        );
    }
    let (output, fields) = match (result, scenario.expect) {
        (Ok(output), Expect::Output(fields)) => (output, fields),
        (Err(failure), Expect::Failure(message, fields)) => {
            assert_eq!(failure.message, message, "{name}");
            (failure.output, fields)
        }
        (Ok(output), Expect::Failure(message, _)) => {
            panic!("{name}: succeeded with {output}, not failed with {message:?}")
        }
        (Err(failure), Expect::Output(_)) => panic!("{name}: failed: {}", failure.message),
    };
    for (pointer, value) in fields.as_object().expect("fields by JSON pointer") {
        assert_eq!(
            output.pointer(pointer),
            Some(value),
            "{name}: `{pointer}` in {output}"
        );
    }
}

const RELEASES: &[(&str, &str)] = &[("1", "v1"), ("2", "v2"), ("3", "shop/checkout:v3")];

fn refusals() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "a forbidden write says which permission to grant",
            seed: |fake| {
                deployment(fake, 2);
                fake.fail_next(Some("PATCH"), "deployments/checkout", 403, 1);
            },
            action: "kubernetes.rollout_restart",
            with: json!({"name": "checkout"}),
            dry_run: false,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "PATCH /apis/apps/v1/namespaces/shop/deployments/checkout",
            ],
            expect: Expect::Failure(
                "kubernetes api refused `PATCH deployments/checkout`: 403 forbidden: injected fault: PATCH /apis/apps/v1/namespaces/shop/deployments/checkout?fieldManager=homeostat answers 403; grant the `patch` verb on `deployments` to homeostat's service account (deploy/kubernetes/rbac.yaml)",
                json!({"": {"kind": "Deployment", "namespace": "shop", "name": "checkout", "changed": false, "dry_run": false}}),
            ),
        },
        Scenario {
            name: "a missing workload",
            seed: |fake| {
                deployment(fake, 2);
            },
            action: "kubernetes.rollout_restart",
            with: json!({"kind": "StatefulSet", "name": "db"}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/statefulsets/db"],
            expect: Expect::Failure("statefulset `shop/db` not found", json!({})),
        },
        Scenario {
            name: "an undo to a revision that is not there",
            seed: |fake| {
                history(fake, RELEASES);
            },
            action: "kubernetes.rollout_undo",
            with: json!({"name": "checkout", "to_revision": 7}),
            dry_run: false,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "GET /apis/apps/v1/namespaces/shop/replicasets",
            ],
            expect: Expect::Failure(
                "deployment `shop/checkout` has no revision 7; its revisions are 1, 2, 3",
                json!({}),
            ),
        },
        Scenario {
            name: "an undo of a paused rollout",
            seed: |fake| {
                let mut paused = history(fake, RELEASES);
                paused["spec"]["paused"] = json!(true);
                fake.put_json(paused);
            },
            action: "kubernetes.rollout_undo",
            with: json!({"name": "checkout"}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/deployments/checkout"],
            expect: Expect::Failure(
                "deployment `shop/checkout` is paused and cannot be rolled back; resume it first (`kubectl rollout resume deployment/checkout`)",
                json!({}),
            ),
        },
        Scenario {
            name: "an undo with one revision has nothing to go back to",
            seed: |fake| {
                history(fake, &[("3", "shop/checkout:v3")]);
            },
            action: "kubernetes.rollout_undo",
            with: json!({"name": "checkout"}),
            dry_run: false,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "GET /apis/apps/v1/namespaces/shop/replicasets",
            ],
            expect: Expect::Failure(
                "deployment `shop/checkout` has no revision before 3 to go back to",
                json!({}),
            ),
        },
        Scenario {
            name: "a pod already gone",
            seed: |_| {},
            action: "kubernetes.delete_pod",
            with: json!({"name": "web-1"}),
            dry_run: false,
            requests: &["GET /api/v1/namespaces/shop/pods/web-1"],
            expect: Expect::Failure("pod `shop/web-1` not found; it may already be gone", json!({})),
        },
        Scenario {
            name: "a missing node",
            seed: |fake| {
                node(fake, "n1", true);
            },
            action: "kubernetes.uncordon",
            with: json!({"node": "n9"}),
            dry_run: false,
            requests: &["GET /api/v1/nodes/n9"],
            expect: Expect::Failure("node `n9` not found", json!({})),
        },
        Scenario {
            name: "env that differs between containers could not be undone in one",
            seed: |fake| {
                deployment(fake, 2);
            },
            action: "kubernetes.patch",
            with: json!({"name": "checkout", "env": {"LOG_LEVEL": "warn"}}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/deployments/checkout"],
            expect: Expect::Failure(
                "the containers of deployment `shop/checkout` differ on env `LOG_LEVEL` (`app`: `info`, `proxy`: unset), so one undo could not restore them; name the `container` to change",
                json!({}),
            ),
        },
        Scenario {
            name: "env for a container that is not there",
            seed: |fake| {
                deployment(fake, 2);
            },
            action: "kubernetes.patch",
            with: json!({"name": "checkout", "container": "web", "env": {"A": "1"}}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/deployments/checkout"],
            expect: Expect::Failure(
                "deployment `shop/checkout` has no container `web`; its containers are `app`, `proxy`",
                json!({}),
            ),
        },
        Scenario {
            name: "a rollout past its progress deadline fails at once",
            seed: |fake| {
                deployment(fake, 3);
                rolling(
                    fake,
                    1,
                    0,
                    4,
                    json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]),
                );
            },
            action: "kubernetes.wait_rollout",
            with: json!({"name": "checkout"}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/deployments/checkout"],
            expect: Expect::Failure(
                "rollout of deployment `shop/checkout` exceeded its progress deadline (`ProgressDeadlineExceeded`): 1 of 3 replicas updated, 0 available; look at the new pods' events, or undo it with `kubernetes.rollout_undo`",
                json!({}),
            ),
        },
        Scenario {
            name: "a DaemonSet that is not rolling-updated has no rollout status",
            seed: |fake| {
                fake.put_json(json!({
                    "apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "logs", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"app": "logs"}}, "template": {}, "updateStrategy": {"type": "OnDelete"}},
                    "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3},
                }));
            },
            action: "kubernetes.wait_rollout",
            with: json!({"kind": "DaemonSet", "name": "logs"}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/daemonsets/logs"],
            expect: Expect::Failure(
                "rollout status of daemonset `shop/logs` is only known for the `RollingUpdate` strategy, not `OnDelete`",
                json!({}),
            ),
        },
    ]
}

#[tokio::test]
async fn refusals_say_what_is_wrong_and_what_to_do() {
    for scenario in refusals() {
        check_action(scenario).await;
    }
}

fn nothing_to_do() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "scale to the replicas it has",
            seed: |fake| {
                deployment(fake, 3);
            },
            action: "kubernetes.scale",
            with: json!({"name": "checkout", "replicas": 3, "min": 2, "max": 6}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/deployments/checkout/scale"],
            expect: Expect::Output(json!({
                "/changed": false,
                "/previous_replicas": 3,
                "/before/replicas": 3,
                "/after/replicas": 3,
            })),
        },
        Scenario {
            name: "undo to the revision whose template is the current one",
            seed: |fake| {
                history(fake, RELEASES);
            },
            action: "kubernetes.rollout_undo",
            with: json!({"name": "checkout", "to_revision": 3}),
            dry_run: false,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "GET /apis/apps/v1/namespaces/shop/replicasets",
            ],
            expect: Expect::Output(json!({
                "/changed": false,
                "/note": "already at revision 3's template",
            })),
        },
        Scenario {
            name: "labels already as asked",
            seed: |fake| {
                flags(fake);
            },
            action: "kubernetes.patch",
            with: json!({"kind": "ConfigMap", "name": "flags", "labels": {"tier": "web"}}),
            dry_run: false,
            requests: &["GET /api/v1/namespaces/shop/configmaps/flags"],
            expect: Expect::Output(json!({"/changed": false})),
        },
        Scenario {
            name: "wait for a StatefulSet whose rollout is complete",
            seed: |fake| {
                fake.put_json(json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": "db", "namespace": "shop"},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": {}},
                    "status": {
                        "observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                        "availableReplicas": 2, "currentRevision": "db-7", "updateRevision": "db-7",
                    },
                }));
            },
            action: "kubernetes.wait_rollout",
            with: json!({"kind": "StatefulSet", "name": "db"}),
            dry_run: false,
            requests: &["GET /apis/apps/v1/namespaces/shop/statefulsets/db"],
            expect: Expect::Output(json!({"/complete": true, "/revision": "db-7"})),
        },
    ]
}

#[tokio::test]
async fn asking_for_what_already_holds_writes_nothing() {
    for scenario in nothing_to_do() {
        check_action(scenario).await;
    }
}

fn dry_runs() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "rollout_restart shows the stamp it would set",
            seed: |fake| {
                deployment(fake, 2);
            },
            action: "kubernetes.rollout_restart",
            with: json!({"name": "checkout"}),
            dry_run: true,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "PATCH /apis/apps/v1/namespaces/shop/deployments/checkout",
            ],
            expect: Expect::Output(json!({
                "/dry_run": true,
                "/after/restartedAt": "2025-03-01T12:00:00Z",
            })),
        },
        Scenario {
            name: "scale to zero",
            seed: |fake| {
                deployment(fake, 2);
            },
            action: "kubernetes.scale",
            with: json!({"name": "checkout", "replicas": 0, "min": 0, "max": 4}),
            dry_run: true,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout/scale",
                "PATCH /apis/apps/v1/namespaces/shop/deployments/checkout/scale",
            ],
            expect: Expect::Output(json!({
                "/changed": true,
                "/dry_run": true,
                "/after/replicas": 0,
            })),
        },
        Scenario {
            name: "rollout_undo to a revision",
            seed: |fake| {
                history(fake, RELEASES);
            },
            action: "kubernetes.rollout_undo",
            with: json!({"name": "checkout", "to_revision": "1"}),
            dry_run: true,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "GET /apis/apps/v1/namespaces/shop/replicasets",
                "PATCH /apis/apps/v1/namespaces/shop/deployments/checkout",
            ],
            expect: Expect::Output(json!({
                "/to_revision": 1,
                "/after/images": {"app": "v1"},
            })),
        },
        Scenario {
            name: "delete_pod",
            seed: |fake| {
                pod(
                    fake,
                    "web-1",
                    "n1",
                    Some(("ReplicaSet", "web-abc")),
                    json!({}),
                );
            },
            action: "kubernetes.delete_pod",
            with: json!({"name": "web-1", "grace_period_secs": 30}),
            dry_run: true,
            requests: &[
                "GET /api/v1/namespaces/shop/pods/web-1",
                "DELETE /api/v1/namespaces/shop/pods/web-1",
            ],
            expect: Expect::Output(json!({"/dry_run": true, "/grace_period_secs": 30})),
        },
        Scenario {
            name: "cordon",
            seed: |fake| {
                node(fake, "n1", false);
            },
            action: "kubernetes.cordon",
            with: json!({"node": "n1"}),
            dry_run: true,
            requests: &["GET /api/v1/nodes/n1", "PATCH /api/v1/nodes/n1"],
            expect: Expect::Output(json!({"/dry_run": true, "/after/unschedulable": true})),
        },
        Scenario {
            name: "patch labels and annotations",
            seed: |fake| {
                flags(fake);
            },
            action: "kubernetes.patch",
            with: json!({
                "kind": "ConfigMap", "name": "flags",
                "labels": {"tier": "web", "old": null, "paused": "true"},
                "annotations": {"homeostat.io/why": "incident 42"},
            }),
            dry_run: true,
            requests: &[
                "GET /api/v1/namespaces/shop/configmaps/flags",
                "PATCH /api/v1/namespaces/shop/configmaps/flags",
            ],
            expect: Expect::Output(json!({
                "/after/labels": {"tier": "web", "old": null, "paused": "true"},
            })),
        },
        Scenario {
            name: "patch env",
            seed: |fake| {
                deployment(fake, 2);
            },
            action: "kubernetes.patch",
            with: json!({"name": "checkout", "container": "app", "env": {"LOG_LEVEL": "debug"}}),
            dry_run: true,
            requests: &[
                "GET /apis/apps/v1/namespaces/shop/deployments/checkout",
                "PATCH /apis/apps/v1/namespaces/shop/deployments/checkout",
            ],
            expect: Expect::Output(json!({"/after/env": {"app": {"LOG_LEVEL": "debug"}}})),
        },
        Scenario {
            name: "wait_rollout says once where the rollout stands, without waiting",
            seed: |fake| {
                deployment(fake, 3);
                rolling(fake, 2, 1, 4, json!([]));
            },
            action: "kubernetes.wait_rollout",
            with: json!({"name": "checkout"}),
            dry_run: true,
            requests: &["GET /apis/apps/v1/namespaces/shop/deployments/checkout"],
            expect: Expect::Output(json!({
                "/complete": false,
                "/waiting": "2 out of 3 new replicas have been updated",
            })),
        },
    ]
}

#[tokio::test]
async fn dry_runs_send_every_write_with_dry_run_all_and_store_nothing() {
    for scenario in dry_runs() {
        check_action(scenario).await;
    }
}
