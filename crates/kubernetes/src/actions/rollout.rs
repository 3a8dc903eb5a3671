//! `kubernetes.rollout_restart`, `kubernetes.rollout_undo` and `kubernetes.wait_rollout`, as
//! `kubectl rollout restart`, `undo` and `status` do them.

use std::time::Duration;

use chrono::SecondsFormat;
use homeostat_core::action::kubernetes::{RolloutRestart, RolloutUndo, WaitRollout, WorkloadKind};
use serde_json::{json, Map, Value};

use super::api::{Api, Kind, Object, PatchType};
use super::node::seconds;
use super::{
    failed, identity, integer, namespace_of, number, retry_conflicts, selector, text, versions,
    Context, Deadline, Error, Failure,
};

/// The pod template annotation `kubectl rollout restart` sets.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// A Deployment's and its ReplicaSets' revision.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label a Deployment adds to each ReplicaSet's template, not part of the Deployment's.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotations `kubectl rollout undo` keeps from the Deployment rather than copying from
/// the ReplicaSet (kubectl's `annotationsToSkip`).
const ANNOTATIONS_TO_SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

fn workload(kind: WorkloadKind) -> Kind {
    match kind {
        WorkloadKind::Deployment => Kind::DEPLOYMENT,
        WorkloadKind::StatefulSet => Kind::STATEFUL_SET,
        WorkloadKind::DaemonSet => Kind::DAEMON_SET,
    }
}

pub(crate) async fn restart(
    api: &Api<'_>,
    context: &Context,
    input: &RolloutRestart,
) -> Result<Value, Failure> {
    let object = Object::new(
        workload(input.kind),
        &namespace_of(api, &input.namespace),
        &input.name,
    );
    let stamp = context.now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let restarted = |value: &Value| {
        let mut fields = versions(value);
        let annotation = value
            .pointer("/spec/template/metadata/annotations")
            .and_then(|annotations| annotations.get(RESTARTED_AT))
            .cloned()
            .unwrap_or(Value::Null);
        fields.insert("restartedAt".into(), annotation);
        Value::Object(fields)
    };
    let result = retry_conflicts(|| async {
        let current = api.get(&object, None).await?;
        if current.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            return Err(Error::Message(format!(
                "{} is paused, so a restart would not roll out; resume it first (`kubectl rollout resume deployment/{}`)",
                object.describe(),
                object.name
            )));
        }
        // As kubectl: a strategic merge patch of the one annotation; the controller sees a new
        // template and replaces every pod.
        let patch = json!({
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
        });
        let answer = api
            .patch(&object, None, PatchType::Strategic, patch)
            .await?;
        Ok((restarted(&current), restarted(&answer)))
    })
    .await;
    let (before, after) = result.map_err(|error| failed(&object, api.dry_run, error))?;
    let mut output = identity(&object, api.dry_run);
    output.insert("changed".into(), json!(true));
    output.insert("restarted_at".into(), json!(stamp));
    output.insert("before".into(), before);
    output.insert("after".into(), after);
    Ok(Value::Object(output))
}

pub(crate) async fn undo(api: &Api<'_>, input: &RolloutUndo) -> Result<Value, Failure> {
    let object = Object::new(
        Kind::DEPLOYMENT,
        &namespace_of(api, &input.namespace),
        &input.name,
    );
    let to_revision = match &input.to_revision {
        Some(value) => number("to_revision", value).map_err(|m| failed(&object, api.dry_run, m))?,
        None => 0,
    };
    if to_revision < 0 {
        return Err(failed(
            &object,
            api.dry_run,
            format!("`to_revision` must be a revision number, not {to_revision}"),
        ));
    }
    retry_conflicts(|| undo_attempt(api, &object, to_revision))
        .await
        .map_err(|error| failed(&object, api.dry_run, error))
}

async fn undo_attempt(api: &Api<'_>, object: &Object, to_revision: i64) -> Result<Value, Error> {
    let deployment = api.get(object, None).await?;
    if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(Error::Message(format!(
            "{} is paused and cannot be rolled back; resume it first (`kubectl rollout resume deployment/{}`)",
            object.describe(),
            object.name
        )));
    }
    let uid = text(&deployment, "/metadata/uid").unwrap_or_default();
    let selector = deployment
        .pointer("/spec/selector")
        .map(selector::to_query)
        .unwrap_or_default();
    let list = api
        .list(
            Kind::REPLICA_SET,
            object.namespace.as_deref(),
            vec![("labelSelector", selector)],
        )
        .await?;
    // The Deployment's ReplicaSets: those it controls, not merely those its selector matches
    // (another Deployment's may share labels).
    let mut revisions: Vec<(i64, Value)> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|set| controlled_by(set, uid))
        .filter_map(|set| Some((revision_of(set)?, set.clone())))
        .collect();
    revisions.sort_by_key(|(revision, _)| *revision);
    let current = revision_of(&deployment)
        .or_else(|| revisions.last().map(|(revision, _)| *revision))
        .unwrap_or(0);
    let listed = || {
        revisions
            .iter()
            .map(|(revision, _)| revision.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let target = if to_revision > 0 {
        revisions
            .iter()
            .find(|(revision, _)| *revision == to_revision)
            .ok_or_else(|| {
                Error::Message(format!(
                    "{} has no revision {to_revision}; its revisions are {}",
                    object.describe(),
                    if revisions.is_empty() {
                        "none".to_string()
                    } else {
                        listed()
                    }
                ))
            })?
    } else {
        revisions
            .iter()
            .rev()
            .find(|(revision, _)| *revision < current)
            .ok_or_else(|| {
                Error::Message(format!(
                    "{} has no revision before {current} to go back to",
                    object.describe()
                ))
            })?
    };
    let (target_revision, target_set) = target;
    let mut template = target_set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let current_template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut output = identity(object, api.dry_run);
    output.insert("from_revision".into(), json!(current));
    output.insert("to_revision".into(), json!(target_revision));
    let mut before = versions(&deployment);
    before.insert("revision".into(), json!(current));
    before.insert("images".into(), images(&current_template));
    if same_template(&template, &current_template) {
        output.insert(
            "note".into(),
            json!(format!("already at revision {target_revision}'s template")),
        );
        output.insert("after".into(), Value::Object(before.clone()));
        output.insert("before".into(), Value::Object(before));
        return Ok(Value::Object(output));
    }
    // kubectl's annotations: the Deployment's own bookkeeping ones, then the ReplicaSet's
    // others (the change-cause of that revision among them).
    let mut annotations = Map::new();
    let deployment_annotations = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(value) = deployment_annotations.and_then(|a| a.get(*key)) {
            annotations.insert(key.to_string(), value.clone());
        }
    }
    for (key, value) in target_set
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !ANNOTATIONS_TO_SKIP.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let patch = json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]);
    let answer = api.patch(object, None, PatchType::Json, patch).await?;
    let mut after = versions(&answer);
    after.insert(
        "images".into(),
        images(answer.pointer("/spec/template").unwrap_or(&Value::Null)),
    );
    output.insert("changed".into(), json!(true));
    output.insert("before".into(), Value::Object(before));
    output.insert("after".into(), Value::Object(after));
    Ok(Value::Object(output))
}

fn controlled_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|owner| {
            owner.get("controller").and_then(Value::as_bool) == Some(true)
                && owner.get("uid").and_then(Value::as_str) == Some(uid)
        })
}

fn revision_of(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|revision| revision.trim().parse().ok())
}

/// Container name -> image, the part of a template a rollback is usually about.
fn images(template: &Value) -> Value {
    let mut images = Map::new();
    for container in template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = container.get("name").and_then(Value::as_str) {
            images.insert(
                name.to_string(),
                container.get("image").cloned().unwrap_or(Value::Null),
            );
        }
    }
    Value::Object(images)
}

/// Whether two pod templates are equal but for the `pod-template-hash` label, treating empty
/// and absent fields alike (as the Go types, which kubectl compares, do).
fn same_template(left: &Value, right: &Value) -> bool {
    let strip = |template: &Value| {
        let mut template = template.clone();
        if let Some(labels) = template
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(POD_TEMPLATE_HASH);
        }
        prune(template)
    };
    strip(left) == strip(right)
}

/// Drops nulls, empty objects and empty arrays, at every depth.
fn prune(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, prune(value)))
                .filter(|(_, value)| !is_empty(value))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Where a rollout stands, as `kubectl rollout status` reads it.
struct Progress {
    done: bool,
    /// Fails the wait at once (ProgressDeadlineExceeded, an OnDelete strategy).
    fatal: Option<String>,
    /// What it waits for, in kubectl's words.
    waiting: String,
    revision: Value,
    replicas: i64,
    updated: i64,
    available: i64,
}

fn progress(kind: Kind, object: &Value, describe: &str) -> Progress {
    let int = |pointer: &str| integer(object, pointer).unwrap_or(0);
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    let strategy = text(object, "/spec/updateStrategy/type").unwrap_or("RollingUpdate");
    let mut progress = Progress {
        done: false,
        fatal: None,
        waiting: "waiting for the controller to observe the new spec".into(),
        revision: Value::Null,
        replicas: 0,
        updated: int("/status/updatedReplicas"),
        available: int("/status/availableReplicas"),
    };
    match kind.kind {
        "Deployment" => {
            progress.revision = json!(revision_of(object));
            progress.replicas = integer(object, "/spec/replicas").unwrap_or(1);
            if observed >= generation {
                let deadline_exceeded = object
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|condition| {
                        condition.get("type").and_then(Value::as_str) == Some("Progressing")
                            && condition.get("reason").and_then(Value::as_str)
                                == Some("ProgressDeadlineExceeded")
                    });
                let total = int("/status/replicas");
                if deadline_exceeded {
                    progress.fatal = Some(format!(
                        "rollout of {describe} exceeded its progress deadline (`ProgressDeadlineExceeded`): {} of {} replicas updated, {} available; look at the new pods' events, or undo it with `kubernetes.rollout_undo`",
                        progress.updated, progress.replicas, progress.available
                    ));
                } else if progress.updated < progress.replicas {
                    progress.waiting = format!(
                        "{} out of {} new replicas have been updated",
                        progress.updated, progress.replicas
                    );
                } else if total > progress.updated {
                    progress.waiting = format!(
                        "{} old replicas are pending termination",
                        total - progress.updated
                    );
                } else if progress.available < progress.updated {
                    progress.waiting = format!(
                        "{} of {} updated replicas are available",
                        progress.available, progress.updated
                    );
                } else {
                    progress.done = true;
                }
            }
        }
        "StatefulSet" => {
            progress.revision = object
                .pointer("/status/updateRevision")
                .cloned()
                .unwrap_or(Value::Null);
            progress.replicas = integer(object, "/spec/replicas").unwrap_or(1);
            let ready = int("/status/readyReplicas");
            if integer(object, "/status/availableReplicas").is_none() {
                progress.available = ready;
            }
            if strategy != "RollingUpdate" {
                progress.fatal = Some(format!(
                    "rollout status of {describe} is only known for the `RollingUpdate` strategy, not `{strategy}`"
                ));
            } else if observed > 0 && observed >= generation {
                let partition = integer(object, "/spec/updateStrategy/rollingUpdate/partition");
                if ready < progress.replicas {
                    progress.waiting = format!("{} of {} pods are ready", ready, progress.replicas);
                } else if let Some(partition) = partition.filter(|p| *p > 0) {
                    let wanted = (progress.replicas - partition).max(0);
                    if progress.updated < wanted {
                        progress.waiting = format!(
                            "{} of {wanted} pods updated (partition {partition})",
                            progress.updated
                        );
                    } else {
                        progress.done = true;
                    }
                } else if text(object, "/status/updateRevision")
                    != text(object, "/status/currentRevision")
                {
                    progress.waiting = format!(
                        "{} of {} pods at the update revision",
                        progress.updated, progress.replicas
                    );
                } else {
                    progress.done = true;
                }
            }
        }
        _ => {
            progress.replicas = int("/status/desiredNumberScheduled");
            progress.updated = int("/status/updatedNumberScheduled");
            progress.available = int("/status/numberAvailable");
            // A DaemonSet's revisions live in ControllerRevisions, not on the object.
            progress.revision = Value::Null;
            if strategy != "RollingUpdate" {
                progress.fatal = Some(format!(
                    "rollout status of {describe} is only known for the `RollingUpdate` strategy, not `{strategy}`"
                ));
            } else if observed >= generation {
                if progress.updated < progress.replicas {
                    progress.waiting = format!(
                        "{} out of {} new pods have been updated",
                        progress.updated, progress.replicas
                    );
                } else if progress.available < progress.replicas {
                    progress.waiting = format!(
                        "{} of {} updated pods are available",
                        progress.available, progress.replicas
                    );
                } else {
                    progress.done = true;
                }
            }
        }
    }
    progress
}

pub(crate) async fn wait(
    api: &Api<'_>,
    context: &Context,
    input: &WaitRollout,
) -> Result<Value, Failure> {
    let object = Object::new(
        workload(input.kind),
        &namespace_of(api, &input.namespace),
        &input.name,
    );
    let describe = object.describe();
    let poll = Duration::try_from_secs_f64(input.poll_secs)
        .unwrap_or(Duration::from_secs(2))
        .max(Duration::from_millis(10));
    let deadline = Deadline::new(context, None);
    let report = |progress: &Progress| {
        let mut output = identity(&object, api.dry_run);
        output.insert("complete".into(), json!(progress.done));
        output.insert("revision".into(), progress.revision.clone());
        output.insert("replicas".into(), json!(progress.replicas));
        output.insert("updated".into(), json!(progress.updated));
        output.insert("available".into(), json!(progress.available));
        output.insert(
            "waited_secs".into(),
            json!((deadline.elapsed().as_secs_f64() * 10.0).round() / 10.0),
        );
        if !progress.done {
            output.insert("waiting".into(), json!(progress.waiting));
        }
        Value::Object(output)
    };
    let not_complete = |progress: &Progress| {
        Failure {
        message: format!(
            "rollout of {describe} not complete after {} s: {} of {} replicas updated, {} available ({})",
            seconds(deadline.elapsed()),
            progress.updated,
            progress.replicas,
            progress.available,
            progress.waiting
        ),
        output: report(progress),
    }
    };
    let mut last: Option<Progress> = None;
    loop {
        // Bounded: kube's client retries 429, 503 and 504 on its own, for minutes.
        let Ok(answer) = tokio::time::timeout_at(deadline.for_call(), api.get(&object, None)).await
        else {
            return Err(match &last {
                Some(progress) => not_complete(progress),
                None => failed(
                    &object,
                    api.dry_run,
                    format!(
                        "rollout of {describe} not known after {} s: the api server did not answer in time",
                        seconds(deadline.elapsed())
                    ),
                ),
            });
        };
        let current = answer.map_err(|error| failed(&object, api.dry_run, error))?;
        let progress = progress(object.kind, &current, &describe);
        if let Some(message) = &progress.fatal {
            return Err(Failure {
                message: message.clone(),
                output: report(&progress),
            });
        }
        // A dry run reports where the rollout stands without waiting for it.
        if progress.done || api.dry_run {
            return Ok(report(&progress));
        }
        if deadline.passed() {
            return Err(not_complete(&progress));
        }
        tokio::time::sleep(poll.min(deadline.left())).await;
        last = Some(progress);
    }
}
