//! `kubernetes.cordon`, `kubernetes.uncordon` and `kubernetes.drain`, as kubectl does them.
//!
//! A drain cordons the node, then evicts its pods through the Eviction API, so the API server
//! holds every eviction to the PodDisruptionBudgets: a refused one (429) is retried until the
//! drain's time is up, and the failure then names the budget.

use std::time::Duration;

use homeostat_core::action::kubernetes::Drain;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::api::{Api, CallError, Kind, Object, PatchType};
use super::{
    count, failed, identity, number, retry_conflicts, selector, text, Context, Deadline, Error,
    Failure,
};

/// How long a dry run waits for the server's answer to its evictions: kube's client retries a
/// refusal (429) itself, so a refused dry-run eviction may not come back at all.
const DRY_RUN_ANSWER: Duration = Duration::from_secs(2);

/// How long naming the budget behind a refusal may take, once the drain's time is up.
const BUDGET_LOOKUP: Duration = Duration::from_secs(1);

/// The annotation the kubelet puts on a static pod's mirror: the API cannot evict those.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// `kubernetes.cordon` (`unschedulable: true`) and `kubernetes.uncordon` (`false`).
pub(crate) async fn cordon(
    api: &Api<'_>,
    node: &str,
    unschedulable: bool,
) -> Result<Value, Failure> {
    let object = Object::new(Kind::NODE, "", node);
    let change = set_unschedulable(api, &object, unschedulable)
        .await
        .map_err(|error| node_failure(&object, api.dry_run, error))?;
    let mut output = node_identity(&object, api.dry_run);
    change.record(&mut output);
    Ok(Value::Object(output))
}

struct Change {
    changed: bool,
    before: Value,
    after: Value,
}

impl Change {
    fn record(self, output: &mut Map<String, Value>) {
        output.insert("changed".into(), json!(self.changed));
        output.insert("before".into(), self.before);
        output.insert("after".into(), self.after);
    }
}

async fn set_unschedulable(
    api: &Api<'_>,
    node: &Object,
    unschedulable: bool,
) -> Result<Change, Error> {
    retry_conflicts(|| async {
        let current = api.get(node, None).await?;
        let before = unschedulable_of(&current);
        if before["unschedulable"] == json!(unschedulable) {
            return Ok(Change {
                changed: false,
                after: before.clone(),
                before,
            });
        }
        let answer = api
            .patch(
                node,
                None,
                PatchType::Merge,
                json!({"spec": {"unschedulable": unschedulable}}),
            )
            .await?;
        Ok(Change {
            changed: true,
            before,
            after: unschedulable_of(&answer),
        })
    })
    .await
}

fn unschedulable_of(node: &Value) -> Value {
    json!({
        "unschedulable": node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false),
        "resourceVersion": text(node, "/metadata/resourceVersion"),
    })
}

/// A node's outputs: `node` besides `name`, which the declared uncordon reads.
fn node_identity(node: &Object, dry_run: bool) -> Map<String, Value> {
    let mut output = identity(node, dry_run);
    output.insert("node".into(), json!(node.name));
    output
}

fn node_failure(node: &Object, dry_run: bool, error: impl Into<Error>) -> Failure {
    let mut failure = failed(node, dry_run, error);
    failure.output["node"] = json!(node.name);
    failure
}

/// How a pod leaves the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// Through the Eviction API, which keeps to PodDisruptionBudgets.
    Evict,
    /// A finished pod (Succeeded or Failed) disrupts nothing: deleted outright.
    Delete,
}

struct Planned {
    pod: Object,
    uid: String,
    labels: Option<Map<String, Value>>,
    removal: Removal,
}

/// What became of one pod.
enum Outcome {
    /// Evicted (or deleted) and gone, or evicted in a dry run.
    Gone,
    /// Evicted, but still there when the time was up.
    Terminating,
    /// Every eviction refused by a PodDisruptionBudget (429) until the time was up; `None` when
    /// no answer came back in time, which is how kube's client shows the refusals it retries
    /// itself (429, 503 and 504, for minutes) before giving up.
    Blocked(Option<CallError>),
    /// Refused for another reason.
    Failed(CallError),
}

pub(crate) async fn drain(
    api: &Api<'_>,
    context: &Context,
    input: &Drain,
) -> Result<Value, Failure> {
    let node = Object::new(Kind::NODE, "", &input.node);
    let mut output = node_identity(&node, api.dry_run);
    output.insert("cordoned".into(), json!(false));
    let settings = (|| {
        let timeout = number("timeout_secs", &input.timeout_secs)?;
        let grace = match &input.grace_period_secs {
            Some(value) => Some(number("grace_period_secs", value)?),
            None => None,
        };
        Ok::<_, String>((timeout, grace))
    })();
    let (timeout_secs, grace) =
        settings.map_err(|message| node_failure(&node, api.dry_run, message))?;
    let deadline = Deadline::new(
        context,
        Some(Duration::from_secs(timeout_secs.max(1).unsigned_abs())),
    );
    let limit = deadline.limit();

    let unanswered = |what: &str| {
        format!(
            "drain of node `{}`: the api server did not answer the {what} within the drain's {} s",
            node.name,
            seconds(limit)
        )
    };
    let change = tokio::time::timeout_at(deadline.for_call(), set_unschedulable(api, &node, true))
        .await
        .map_err(|_| node_failure(&node, api.dry_run, unanswered("cordon")))?
        .map_err(|error| node_failure(&node, api.dry_run, error))?;
    // `changed` is whether this drain cordoned the node: what the declared uncordon undoes.
    output.insert("cordoned".into(), json!(change.changed));
    change.record(&mut output);
    let fail = |output: &Map<String, Value>, message: String| Failure {
        message,
        output: Value::Object(output.clone()),
    };

    let list = api.list(
        Kind::POD,
        None,
        vec![("fieldSelector", format!("spec.nodeName={}", node.name))],
    );
    let list = tokio::time::timeout_at(deadline.for_call(), list)
        .await
        .map_err(|_| fail(&output, unanswered("list of its pods")))?
        .map_err(|error| fail(&output, Error::from(error).message()))?;
    let pods = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (planned, skipped, refused) = plan(&pods, input);
    let entries = |list: &[(String, String)]| {
        list.iter()
            .map(|(pod, reason)| json!({"pod": pod, "reason": reason}))
            .collect::<Vec<_>>()
    };
    output.insert("skipped".into(), json!(entries(&skipped)));
    output.insert("refused".into(), json!(entries(&refused)));
    output.insert("evicted".into(), json!([]));
    output.insert("deleted".into(), json!([]));
    if !refused.is_empty() {
        // As kubectl: nothing is evicted while any pod cannot be, so the node is not left
        // half-drained; it stays cordoned.
        let reasons: Vec<String> = refused
            .iter()
            .map(|(pod, reason)| format!("`{pod}` {reason}"))
            .collect();
        return Err(fail(
            &output,
            format!(
                "drain of node `{}` refused before evicting anything: {} cannot be evicted: {}; {}",
                node.name,
                count(refused.len(), "pod"),
                reasons.join("; "),
                if api.dry_run {
                    "nothing was cordoned (dry run)"
                } else {
                    "the node stays cordoned"
                }
            ),
        ));
    }

    let retry = (limit / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let poll = (limit / 20).clamp(Duration::from_millis(100), Duration::from_secs(1));
    // A dry run does not wait for refusals to pass, only for the server's answer.
    let removal_deadline = if api.dry_run {
        let answer = Instant::now() + DRY_RUN_ANSWER;
        Deadline {
            soft: deadline.soft.min(answer),
            hard: deadline.hard.min(answer),
            ..deadline
        }
    } else {
        deadline
    };
    let outcomes = futures::future::join_all(
        planned
            .iter()
            .map(|pod| remove(api, pod, grace, removal_deadline, retry, poll)),
    )
    .await;

    let mut evicted = Vec::new();
    let mut deleted = Vec::new();
    let mut terminating = Vec::new();
    let mut problems = Vec::new();
    let mut not_evicted = Vec::new();
    let mut blocked = Vec::new();
    for (pod, outcome) in planned.iter().zip(outcomes) {
        let name = pod.pod.qualified_name();
        let removed = match pod.removal {
            Removal::Evict => &mut evicted,
            Removal::Delete => &mut deleted,
        };
        match outcome {
            Outcome::Gone => removed.push(name),
            Outcome::Terminating => {
                removed.push(name.clone());
                terminating.push(name);
            }
            Outcome::Blocked(error) => {
                let message = budget_refusal(api, pod, error.as_ref()).await;
                not_evicted.push(json!({"pod": name, "reason": message}));
                blocked.push(json!({"pod": name, "reason": message}));
                problems.push(message);
            }
            Outcome::Failed(error) => {
                let message = Error::from(error).message();
                not_evicted.push(json!({"pod": name, "reason": message}));
                problems.push(message);
            }
        }
    }
    output.insert("evicted".into(), json!(evicted));
    output.insert("deleted".into(), json!(deleted));
    if api.dry_run {
        // A dry run does not retry or wait: it shows what the server would refuse right now,
        // which the real drain would retry until `timeout_secs`.
        output.insert("blocked".into(), json!(blocked));
        if problems.len() > blocked.len() {
            output.insert("not_evicted".into(), json!(not_evicted));
            return Err(fail(
                &output,
                format!(
                    "drain of node `{}` (dry run): {}",
                    node.name,
                    problems.join("; ")
                ),
            ));
        }
        return Ok(Value::Object(output));
    }
    let elapsed = seconds(deadline.elapsed());
    if !problems.is_empty() {
        output.insert("not_evicted".into(), json!(not_evicted));
        output.insert("terminating".into(), json!(terminating));
        return Err(fail(
            &output,
            format!(
                "drain of node `{}` stopped after {elapsed} s with {} not evicted: {}; the node stays cordoned",
                node.name,
                count(problems.len(), "pod"),
                problems.join("; ")
            ),
        ));
    }
    if !terminating.is_empty() {
        output.insert("terminating".into(), json!(terminating));
        return Err(fail(
            &output,
            format!(
                "drain of node `{}` not complete after {elapsed} s: {} evicted but still terminating: `{}`; raise `timeout_secs`, or lower `grace_period_secs`",
                node.name,
                count(terminating.len(), "pod"),
                terminating.join("`, `")
            ),
        ));
    }
    Ok(Value::Object(output))
}

/// Sorts a node's pods as `kubectl drain` does: the ones to remove, the ones left alone
/// (with why), and the ones that stop the drain (with the input that would allow them).
#[allow(clippy::type_complexity)]
fn plan(
    pods: &[Value],
    input: &Drain,
) -> (Vec<Planned>, Vec<(String, String)>, Vec<(String, String)>) {
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    for pod in pods {
        let namespace = text(pod, "/metadata/namespace").unwrap_or_default();
        let name = text(pod, "/metadata/name").unwrap_or_default();
        let object = Object::new(Kind::POD, namespace, name);
        let qualified = object.qualified_name();
        let phase = text(pod, "/status/phase").unwrap_or_default();
        let finished = phase == "Succeeded" || phase == "Failed";
        let controller = super::pod::controller_of(pod);
        let controller_kind = controller.get("kind").and_then(Value::as_str);
        let controller_name = controller
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut removal = Removal::Evict;
        if pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|annotations| annotations.contains_key(MIRROR_ANNOTATION))
        {
            skipped.push((
                qualified,
                "mirror pod of a static pod; the kubelet owns it".into(),
            ));
            continue;
        }
        if finished {
            removal = Removal::Delete;
        } else if controller_kind == Some("DaemonSet") {
            if input.ignore_daemonsets {
                skipped.push((
                    qualified,
                    format!("managed by DaemonSet `{controller_name}`"),
                ));
            } else {
                refused.push((
                    qualified,
                    format!(
                        "is managed by DaemonSet `{controller_name}`, which would recreate it at once; set `ignore_daemonsets: true` to leave it"
                    ),
                ));
            }
            continue;
        } else {
            let empty_dirs: Vec<&str> = pod
                .pointer("/spec/volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|volume| volume.get("emptyDir").is_some())
                .filter_map(|volume| volume.get("name").and_then(Value::as_str))
                .collect();
            if !empty_dirs.is_empty() && !input.delete_emptydir_data {
                refused.push((
                    qualified,
                    format!(
                        "has emptyDir volume `{}`, whose data eviction deletes; set `delete_emptydir_data: true`",
                        empty_dirs.join("`, `")
                    ),
                ));
                continue;
            }
            if controller.is_null() && !input.force {
                refused.push((
                    qualified,
                    "has no controller to recreate it; set `force: true` to delete it anyway"
                        .into(),
                ));
                continue;
            }
        }
        planned.push(Planned {
            pod: object,
            uid: text(pod, "/metadata/uid").unwrap_or_default().to_string(),
            labels: pod
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned(),
            removal,
        });
    }
    (planned, skipped, refused)
}

/// Evicts (or deletes) one pod, retrying refusals by a PodDisruptionBudget until the deadline,
/// then waits for it to be gone: not found, or a new pod of the same name (another uid).
async fn remove(
    api: &Api<'_>,
    planned: &Planned,
    grace: Option<i64>,
    deadline: Deadline,
    retry: Duration,
    poll: Duration,
) -> Outcome {
    loop {
        let call = async {
            match planned.removal {
                Removal::Evict => api.evict(&planned.pod, grace).await,
                Removal::Delete => api.delete(&planned.pod, grace).await,
            }
        };
        // Every call is bounded by the deadline: kube's client may be retrying it unseen.
        let Ok(result) = tokio::time::timeout_at(deadline.for_call(), call).await else {
            return Outcome::Blocked(None);
        };
        match result {
            Ok(_) => break,
            // Gone already: what the drain wanted.
            Err(error) if error.is_not_found() => return Outcome::Gone,
            Err(error) if error.code() == Some(429) => {
                if api.dry_run || deadline.passed() {
                    return Outcome::Blocked(Some(error));
                }
                tokio::time::sleep(retry.min(deadline.left())).await;
            }
            Err(error) => return Outcome::Failed(error),
        }
    }
    if api.dry_run {
        return Outcome::Gone;
    }
    loop {
        match tokio::time::timeout_at(deadline.for_call(), api.get(&planned.pod, None)).await {
            Ok(Err(error)) if error.is_not_found() => return Outcome::Gone,
            Ok(Ok(pod)) if text(&pod, "/metadata/uid").unwrap_or_default() != planned.uid => {
                return Outcome::Gone
            }
            // A failed look is not the pod's fault: look again until the deadline.
            _ => {}
        }
        if deadline.passed() {
            return Outcome::Terminating;
        }
        tokio::time::sleep(poll.min(deadline.left())).await;
    }
}

/// The message for an eviction a PodDisruptionBudget refused, naming the budget: from the
/// server's message (`The disruption budget db needs 1 healthy pods ...`), or else from the
/// budgets of the pod's namespace whose selector matches the pod (when the refusal never came
/// back because the client kept retrying it).
async fn budget_refusal(api: &Api<'_>, planned: &Planned, error: Option<&CallError>) -> String {
    let pod = planned.pod.qualified_name();
    let message = error.map(CallError::server_message);
    let mut names = Vec::new();
    if let Some(rest) = message
        .as_deref()
        .and_then(|m| m.split("disruption budget ").nth(1))
    {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .collect();
        let name = name.trim_end_matches('.').to_string();
        if !name.is_empty() {
            names.push(name);
        }
    }
    let mut states = Vec::new();
    if names.is_empty() {
        let list = api.list(
            Kind::POD_DISRUPTION_BUDGET,
            planned.pod.namespace.as_deref(),
            vec![],
        );
        // Past the deadline already: a short look, or none.
        if let Ok(Ok(list)) = tokio::time::timeout(BUDGET_LOOKUP, list).await {
            for budget in list
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let selector = budget.pointer("/spec/selector").unwrap_or(&Value::Null);
                if !selector::matches(selector, planned.labels.as_ref()) {
                    continue;
                }
                if let Some(name) = text(budget, "/metadata/name") {
                    names.push(name.to_string());
                    let status = |field: &str| {
                        super::integer(budget, &format!("/status/{field}")).unwrap_or(0)
                    };
                    states.push(format!(
                        "it allows {} disruptions now ({} healthy pods needed, {} healthy)",
                        status("disruptionsAllowed"),
                        status("desiredHealthy"),
                        status("currentHealthy")
                    ));
                }
            }
        }
    }
    let message = match message {
        Some(message) => message,
        None if !states.is_empty() => states.join("; "),
        None => {
            return format!(
                "eviction of pod `{pod}` got no answer before the drain's deadline (the api server kept answering 429, 503 or 504, which the client retries)"
            )
        }
    };
    let by = match names.as_slice() {
        [] => "a PodDisruptionBudget".to_string(),
        [name] => format!("PodDisruptionBudget `{name}`"),
        names => format!("PodDisruptionBudgets `{}`", names.join("`, `")),
    };
    format!("eviction of pod `{pod}` refused by {by}: {message}")
}

/// Seconds for messages: `118`, or `1.5` under ten.
pub(crate) fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 10.0 {
        format!("{}", secs.round())
    } else {
        format!("{}", (secs * 10.0).round() / 10.0)
    }
}
