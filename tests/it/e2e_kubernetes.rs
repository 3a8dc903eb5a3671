//! End to end with Kubernetes, as far as this machine allows: the real `homeostat serve`, a real
//! Prometheus and Alertmanager, and an in-process Kubernetes API server (`homeostat-kube-fake`)
//! that speaks the API's JSON and watch streams, since no real API server can run here.
//!
//! A Deployment is rolled out to a new image; its new pod crash-loops; Prometheus alerts on the
//! same Deployment. The pod's state, its BackOff Event and the alert become one incident, which
//! knows of the rollout just before it; the rule rolls the Deployment back to the previous
//! ReplicaSet's template, and the journal holds the object's before and after.

use std::path::Path;
use std::time::Duration;

use homeostat_core::config::Synchronous;
use homeostat_core::incident::Incident;
use homeostat_kube_fake::FakeApi;
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{IncidentQuery, RunQuery, RunRecord, RunStatus, Store};
use serde_json::{json, Value};

use crate::support::{
    alerting_config, alertmanager_config, base_config, wait_for, Alertmanager, Daemon, Prometheus,
    ScrapeTarget,
};

const DEADLINE: Duration = Duration::from_secs(60);

const OLD_IMAGE: &str = "ghcr.io/acme/checkout:v1.4.1";
const NEW_IMAGE: &str = "ghcr.io/acme/checkout:v1.4.2";

/// The alert names the workload the way kube-state-metrics labels do: `namespace`, `deployment`.
const ALERT_RULES: &str = r#"groups:
  - name: checkout
    rules:
      - alert: CheckoutErrors
        expr: homeostat_e2e_up{service="checkout"} == 0
        for: 0s
        labels: {severity: page, namespace: shop, deployment: checkout}
        annotations: {summary: "checkout answers with errors"}
"#;

fn homeostat_config(dir: &Path, api: &FakeApi) -> String {
    base_config(dir, "normal")
        + &format!(
            r#"kubernetes:
  url: {url:?}
incidents:
  group_by: [namespace, deployment]
sources:
  - type: kubernetes_events
    name: cluster
    namespaces: [shop]
rules:
  - name: undo-recent-rollout
    match: ['namespace="shop"', 'deployment=~".+"']
    on_incident: [opened]
    # Only when the incident began within ten minutes of a change to the same Deployment.
    condition: "'last_change_secs_before' in annotations && int(annotations.last_change_secs_before) < 600"
    target: "{{{{ labels.namespace }}}}/{{{{ labels.deployment }}}}"
    verify: null
    steps:
      - name: undo
        action: kubernetes.rollout_undo
        with:
          namespace: "{{{{ labels.namespace }}}}"
          name: "{{{{ labels.deployment }}}}"
        timeout_secs: 20
"#,
            url = api.url()
        )
}

fn template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "checkout", "image": image}]}
    })
}

fn deployment(revision: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "labels": {"app": "checkout"},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": template(image)
        }
    })
}

/// A ReplicaSet of the Deployment, as its controller makes them: the pod template with a
/// `pod-template-hash` label, the revision annotation and a controller reference.
fn replica_set(hash: &str, revision: u32, image: &str, owner_uid: &str) -> Value {
    let mut template = template(image);
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("checkout-{hash}"),
            "namespace": "shop",
            "labels": {"app": "checkout", "pod-template-hash": hash},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout",
                "uid": owner_uid, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "checkout", "pod-template-hash": hash}},
            "template": template
        }
    })
}

fn crash_looping_pod(name: &str, replica_set: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5d"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": replica_set["metadata"]["name"],
                "uid": replica_set["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "checkout", "image": NEW_IMAGE}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "checkout", "image": NEW_IMAGE, "imageID": "", "ready": false,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 40s restarting failed container=checkout"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
            }]
        }
    })
}

fn back_off_event(pod: &str, at: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{pod}.17f3a1b2c3d4e5f6"), "namespace": "shop"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": "shop",
            "fieldPath": "spec.containers{checkout}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container checkout in pod checkout",
        "type": "Warning",
        "count": 5,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "source": {"component": "kubelet", "host": "node-1"}
    })
}

/// What a failure message shows: the requests the API server received, and the daemon's log.
fn seen(api: &FakeApi, daemon: &Daemon) -> String {
    let requests: Vec<String> = api
        .requests()
        .iter()
        .map(|r| format!("{} {} {:?} {:?}", r.method, r.path, r.query, r.body))
        .collect();
    format!(
        "--- requests to the API server:\n{requests:#?}\n--- homeostat stderr:\n{}",
        daemon.stderr_tail()
    )
}

async fn incidents(store: &SqliteStore) -> Vec<Incident> {
    store
        .incidents(&IncidentQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("read the incidents")
}

async fn runs(store: &SqliteStore) -> Vec<RunRecord> {
    store
        .runs(&RunQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("read the runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_after_a_rollout_and_an_alert_become_one_incident_that_rolls_it_back() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let api = FakeApi::start().await;
    api.put_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    // Revision 1 runs the old image.
    let created = api.put_json(deployment(1, OLD_IMAGE));
    let uid = created["metadata"]["uid"]
        .as_str()
        .expect("the fake sets a uid")
        .to_string();
    api.put_json(replica_set("5c6d7e8f9a", 1, OLD_IMAGE, &uid));

    let target = ScrapeTarget::start(1.0).await;
    let daemon = Daemon::start(dir.path(), "homeostat", &homeostat_config(dir.path(), &api)).await;
    let store = SqliteStore::open(&dir.path().join("homeostat.db"), Synchronous::Normal)
        .await
        .expect("open the daemon's store");
    let alertmanager =
        Alertmanager::start(&alertmanager_config(&daemon, "[alertname]", "1h")).await;
    let prometheus = Prometheus::start(
        &alerting_config(target.port, alertmanager.port),
        ALERT_RULES,
        &["--rules.alert.resend-delay=1s"],
    )
    .await;
    let context = || {
        format!(
            "{}\n--- alertmanager stderr:\n{}\n--- prometheus stderr:\n{}",
            seen(&api, &daemon),
            alertmanager.stderr_tail(),
            prometheus.stderr_tail()
        )
    };
    // The daemon watches Events, Pods and Deployments in `shop`.
    wait_for(
        "the daemon to watch the API server",
        DEADLINE,
        || async { (api.open_watches() >= 3).then_some(()) },
        &context,
    )
    .await;

    // The rollout: the Deployment's controller makes revision 2 with the new image.
    api.put_json(deployment(2, NEW_IMAGE));
    let new_set = api.put_json(replica_set("7d9f8b6c5d", 2, NEW_IMAGE, &uid));
    let rollout = wait_for(
        "the rollout to be journaled as a change",
        DEADLINE,
        || async {
            let events = store
                .events(&homeostat_store::EventQuery {
                    limit: 10,
                    kind: Some(homeostat_core::EventKind::Change),
                    ..Default::default()
                })
                .await
                .expect("read the events");
            events.into_iter().next()
        },
        &context,
    )
    .await;
    assert_eq!(
        rollout.event.labels.get("deployment").map(String::as_str),
        Some("checkout")
    );
    let summary = rollout
        .event
        .annotations
        .get("summary")
        .cloned()
        .unwrap_or_default();
    assert!(
        summary.contains(NEW_IMAGE) || summary.contains("v1.4.2"),
        "{summary}"
    );

    // Its new pod crash-loops, and the kubelet says so.
    let pod = "checkout-7d9f8b6c5d-x2x9q";
    api.put_json(crash_looping_pod(pod, &new_set));
    // The kubelet stamps Events with the cluster's clock; this test's stands in for it.
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    api.put_json(back_off_event(pod, &now));
    // And Prometheus sees the errors.
    target.set(0.0);

    // One incident, with the pod's state, its event and the alert as members.
    let incident = wait_for(
        "one incident with the Kubernetes members and the Prometheus alert",
        DEADLINE,
        || async {
            let incidents = incidents(&store).await;
            let incident = incidents.first()?.clone();
            let members = store.incident_members(incident.id).await.ok()?;
            let names: Vec<String> = members
                .iter()
                .filter_map(|member| member.labels.get("alertname").cloned())
                .collect();
            (names.iter().any(|name| name == "CheckoutErrors")
                && names.iter().any(|name| name == "KubePodCrashLooping")
                && names.iter().any(|name| name == "KubeBackOff"))
            .then_some((incidents, incident, members))
        },
        &context,
    )
    .await;
    let (all, incident, members) = incident;
    assert_eq!(all.len(), 1, "one incident, not several: {all:#?}");
    for member in &members {
        assert_eq!(
            member.labels.get("deployment").map(String::as_str),
            Some("checkout"),
            "{member:#?}"
        );
        assert_eq!(
            member.labels.get("namespace").map(String::as_str),
            Some("shop"),
            "{member:#?}"
        );
    }

    // The rule rolled the Deployment back to revision 1's template.
    let run = wait_for(
        "the rollback run to end",
        DEADLINE,
        || async {
            runs(&store)
                .await
                .into_iter()
                .find(|run| run.rule == "undo-recent-rollout" && run.status != RunStatus::Running)
        },
        &context,
    )
    .await;
    assert_eq!(run.status.as_str(), "succeeded", "{run:#?}\n{}", context());
    assert_eq!(run.target, "shop/checkout");
    let stored = api
        .get_json("apps/v1", "Deployment", Some("shop"), "checkout")
        .expect("the deployment");
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        OLD_IMAGE
    );
    assert!(
        stored["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none(),
        "kubectl drops the ReplicaSet's pod-template-hash: {stored:#}"
    );
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|request| request.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(
        patches[0].path,
        "/apis/apps/v1/namespaces/shop/deployments/checkout"
    );
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert!(!patches[0].dry_run());

    // The journal holds what it changed: revision 2's image before, revision 1's after.
    let journal = store
        .journal_for_run(&run.id)
        .await
        .expect("the run's journal");
    let finished = journal
        .iter()
        .find(|entry| entry.kind() == "step_finished")
        .expect("a step_finished entry");
    let body = finished.body();
    let output = &body["output"];
    assert_eq!(output["from_revision"], json!(2), "{output:#}");
    assert_eq!(output["to_revision"], json!(1), "{output:#}");
    assert_eq!(
        output["before"]["images"]["checkout"], NEW_IMAGE,
        "{output:#}"
    );
    assert_eq!(
        output["after"]["images"]["checkout"], OLD_IMAGE,
        "{output:#}"
    );
    assert_eq!(output["changed"], json!(true));

    // The incident says what changed just before it began.
    let shown = daemon
        .get_json(&format!("/api/v1/incidents/{}", incident.id))
        .await;
    let changes = shown["context"]["recent_changes"].to_string();
    assert!(changes.contains("v1.4.2"), "{shown:#}");
    drop(prometheus);
}

const MAKE_ROOM: &str = r#"
runbooks:
  - name: make-room
    description: scale checkout up and take node-1 out, then check; undone if the check fails
    steps:
      - name: scale-up
        action: kubernetes.scale
        with: {namespace: shop, name: checkout, replicas: 5, max: 4}
      - name: cordon
        action: kubernetes.cordon
        with: {node: node-1}
      - name: check
        action: exec
        with: {command: ["false"]}
"#;

async fn finished_run(daemon: &Daemon, id: &str, context: &dyn Fn() -> String) -> Value {
    wait_for(
        "the run to end",
        DEADLINE,
        || async {
            let run = daemon.get_json(&format!("/api/v1/runs/{id}")).await;
            (run["run"]["status"] != "running").then_some(run)
        },
        context,
    )
    .await
}

async fn start_run(daemon: &Daemon, dry_run: bool) -> String {
    let response = daemon
        .client()
        .post(daemon.url("/api/v1/runbooks/make-room/runs"))
        .json(&json!({ "dry_run": dry_run }))
        .send()
        .await
        .expect("POST the run");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(body["status"], "running", "{body:#}");
    body["run_id"].as_str().expect("a run id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_asks_the_api_server_and_a_failed_run_undoes_what_its_actions_declared() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let api = FakeApi::start().await;
    api.put_json(deployment(1, OLD_IMAGE));
    api.put_json(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "spec": {}}),
    );
    let config = base_config(dir.path(), "normal")
        + &format!("kubernetes:\n  url: {:?}\n", api.url())
        + MAKE_ROOM;
    let daemon = Daemon::start(dir.path(), "homeostat", &config).await;
    let context = || seen(&api, &daemon);

    // The dry run: the server is asked (`dryRun=All`) and nothing changes; `exec` never runs.
    let id = start_run(&daemon, true).await;
    let run = finished_run(&daemon, &id, &context).await;
    assert_eq!(run["run"]["status"], "dry_run", "{run:#}\n{}", context());
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|request| request.method != "GET")
        .collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert!(
        writes.iter().all(|request| request.dry_run()),
        "{writes:#?}"
    );
    assert_eq!(
        writes[0].path,
        "/apis/apps/v1/namespaces/shop/deployments/checkout/scale"
    );
    assert_eq!(writes[1].path, "/api/v1/nodes/node-1");
    let steps = run["steps"].to_string();
    // The step's output is what the server said it would do: 4 replicas, `max` holding the 5 back.
    assert!(steps.contains("\"clamped\":true"), "{run:#}");
    let stored = api
        .get_json("apps/v1", "Deployment", Some("shop"), "checkout")
        .expect("the deployment");
    assert_eq!(stored["spec"]["replicas"], json!(2));
    let node = api
        .get_json("v1", "Node", None, "node-1")
        .expect("the node");
    assert_ne!(node["spec"]["unschedulable"], json!(true));

    // The real run: the check fails, and the rollbacks the actions declared put things back,
    // newest first.
    api.clear_requests();
    let id = start_run(&daemon, false).await;
    let run = finished_run(&daemon, &id, &context).await;
    assert_eq!(
        run["run"]["status"],
        "rolled_back",
        "{run:#}\n{}",
        context()
    );
    let writes: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|request| request.method != "GET" && !request.watch)
        .map(|request| {
            format!(
                "{} {} {}",
                request.method,
                request.path,
                request.body.unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(writes.len(), 4, "{writes:#?}");
    assert!(
        writes[0].contains("/scale") && writes[0].contains("\"replicas\":4"),
        "{writes:#?}"
    );
    assert!(
        writes[1].contains("/nodes/node-1") && writes[1].contains("\"unschedulable\":true"),
        "{writes:#?}"
    );
    assert!(
        writes[2].contains("/nodes/node-1") && writes[2].contains("\"unschedulable\":false"),
        "{writes:#?}"
    );
    assert!(
        writes[3].contains("/scale") && writes[3].contains("\"replicas\":2"),
        "{writes:#?}"
    );
    let stored = api
        .get_json("apps/v1", "Deployment", Some("shop"), "checkout")
        .expect("the deployment");
    assert_eq!(stored["spec"]["replicas"], json!(2));
    let node = api
        .get_json("v1", "Node", None, "node-1")
        .expect("the node");
    assert_ne!(node["spec"]["unschedulable"], json!(true));
}

/// The events the daemon journaled from the `cluster` source, by alert name, oldest first.
async fn journaled(store: &SqliteStore) -> Vec<(String, String)> {
    let mut events = store
        .events(&homeostat_store::EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("read the events");
    events.sort_by_key(|record| record.seq);
    events
        .into_iter()
        .filter(|record| record.event.source == "cluster")
        .map(|record| {
            (
                record
                    .event
                    .labels
                    .get("alertname")
                    .cloned()
                    .unwrap_or_default(),
                record.event.labels.get("pod").cloned().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_watch_resumes_from_the_journaled_resource_version() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let api = FakeApi::start().await;
    let config = base_config(dir.path(), "normal")
        + &format!(
            "kubernetes:\n  url: {:?}\nsources:\n  - {{type: kubernetes_events, name: cluster, namespaces: [shop], pods: false, deployments: false}}\n",
            api.url()
        );
    #[allow(clippy::disallowed_methods)] // The cluster's clock, as in the test above.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut daemon = Daemon::start(dir.path(), "first", &config).await;
    let store = SqliteStore::open(&dir.path().join("homeostat.db"), Synchronous::Normal)
        .await
        .expect("open the daemon's store");
    let context = |daemon: &Daemon| seen(&api, daemon);
    wait_for(
        "the watch",
        DEADLINE,
        || async { (api.open_watches() >= 1).then_some(()) },
        || context(&daemon),
    )
    .await;
    api.put_json(back_off_event("api-0", &now));
    wait_for(
        "the first event",
        DEADLINE,
        || async { (journaled(&store).await.len() == 1).then_some(()) },
        || context(&daemon),
    )
    .await;

    // A crash; while the daemon is down the cluster goes on.
    daemon.kill_9();
    api.put_json(back_off_event("api-1", &now));
    api.put_json(back_off_event("api-2", &now));
    api.clear_requests();
    let daemon = Daemon::start(dir.path(), "second", &config).await;
    wait_for(
        "the events from while it was down",
        DEADLINE,
        || async { (journaled(&store).await.len() >= 3).then_some(()) },
        || context(&daemon),
    )
    .await;
    // Give a duplicate the time to show up, were there one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = journaled(&store).await;
    let pods: Vec<&str> = events.iter().map(|(_, pod)| pod.as_str()).collect();
    assert_eq!(
        pods,
        ["api-0", "api-1", "api-2"],
        "nothing lost, nothing twice: {events:?}"
    );
    // It resumed the watch where the journal says it stopped, without listing again.
    let requests = api.requests();
    let event_requests: Vec<_> = requests
        .iter()
        .filter(|request| request.path.ends_with("/namespaces/shop/events"))
        .collect();
    assert!(!event_requests.is_empty(), "{}", context(&daemon));
    assert!(
        event_requests[0].watch,
        "resumed with a watch, not a list: {event_requests:#?}"
    );
    let resumed_from: u64 = event_requests[0].query["resourceVersion"]
        .parse()
        .expect("a resourceVersion");
    assert!(resumed_from > 0, "{event_requests:#?}");

    // A watch the server breaks, and a request it fails: the watch comes back, and the failure
    // is counted where an operator looks.
    api.fail_next(Some("GET"), "watch", 500, 1);
    api.close_watches();
    wait_for(
        "the failure in /metrics",
        DEADLINE,
        || async {
            let metrics = daemon
                .client()
                .get(daemon.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .lines()
                .any(|line| {
                    line.starts_with("homeostat_source_errors_total{")
                        && line.contains("source=\"cluster\"")
                        && line.contains("error_type=\"api_error\"")
                })
                .then_some(())
        },
        || context(&daemon),
    )
    .await;
    api.put_json(back_off_event("api-3", &now));
    wait_for(
        "an event after the watch came back",
        DEADLINE,
        || async { (journaled(&store).await.len() == 4).then_some(()) },
        || context(&daemon),
    )
    .await;
}
