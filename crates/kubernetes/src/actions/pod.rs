//! `kubernetes.delete_pod`: deletes one pod, so its controller replaces it.

use homeostat_core::action::kubernetes::DeletePod;
use serde_json::{json, Value};

use super::api::{Api, CallError, Kind, Object};
use super::{failed, identity, namespace_of, number, text, Failure};

pub(crate) async fn delete(api: &Api<'_>, input: &DeletePod) -> Result<Value, Failure> {
    let object = Object::new(Kind::POD, &namespace_of(api, &input.namespace), &input.name);
    let grace_period = match &input.grace_period_secs {
        Some(value) => {
            Some(number("grace_period_secs", value).map_err(|m| failed(&object, api.dry_run, m))?)
        }
        None => None,
    };
    let gone = |error: CallError| {
        if error.is_not_found() {
            failed(
                &object,
                api.dry_run,
                format!("{} not found; it may already be gone", object.describe()),
            )
        } else {
            failed(&object, api.dry_run, error)
        }
    };
    let pod = api.get(&object, None).await.map_err(gone)?;
    let answer = api.delete(&object, grace_period).await.map_err(gone)?;
    let owner = controller_of(&pod);
    let mut output = identity(&object, api.dry_run);
    output.insert("changed".into(), json!(true));
    output.insert("node".into(), json!(text(&pod, "/spec/nodeName")));
    output.insert("owner".into(), owner);
    output.insert("phase".into(), json!(text(&pod, "/status/phase")));
    output.insert("grace_period_secs".into(), json!(grace_period));
    output.insert(
        "before".into(),
        json!({
            "uid": text(&pod, "/metadata/uid"),
            "phase": text(&pod, "/status/phase"),
            "resourceVersion": text(&pod, "/metadata/resourceVersion"),
        }),
    );
    // A graceful delete answers the pod marked for deletion; an immediate one may answer a
    // `Status` instead.
    let after = if text(&answer, "/kind") == Some("Pod") {
        json!({
            "deletionTimestamp": text(&answer, "/metadata/deletionTimestamp"),
            "resourceVersion": text(&answer, "/metadata/resourceVersion"),
        })
    } else {
        json!({"deleted": true})
    };
    output.insert("after".into(), after);
    Ok(Value::Object(output))
}

/// The pod's controller (`{kind, name}`), or null when nothing recreates it.
pub(crate) fn controller_of(pod: &Value) -> Value {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners
                .iter()
                .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
        })
        .map(|owner| json!({"kind": owner.get("kind"), "name": owner.get("name")}))
        .unwrap_or(Value::Null)
}
