//! `kubernetes.scale`: sets the replicas through the `scale` subresource, kept within `min` and
//! `max` whatever the rule asked.

use homeostat_core::action::kubernetes::{Scale, ScaleKind};
use serde_json::{json, Value};

use super::api::{Api, Kind, Object, PatchType};
use super::{
    failed, identity, integer, namespace_of, number, retry_conflicts, text, Error, Failure,
};

pub(crate) async fn scale(api: &Api<'_>, input: &Scale) -> Result<Value, Failure> {
    let kind = match input.kind {
        ScaleKind::Deployment => Kind::DEPLOYMENT,
        ScaleKind::StatefulSet => Kind::STATEFUL_SET,
        ScaleKind::ReplicaSet => Kind::REPLICA_SET,
    };
    let object = Object::new(kind, &namespace_of(api, &input.namespace), &input.name);
    let bounds = (|| {
        let requested = number("replicas", &input.replicas)?;
        let min = number("min", &input.min)?;
        let max = number("max", &input.max)?;
        if min > max {
            return Err(format!(
                "`min` ({min}) is above `max` ({max}) for {}",
                object.describe()
            ));
        }
        Ok((requested, min, max))
    })();
    let (requested, min, max) = bounds.map_err(|message| failed(&object, api.dry_run, message))?;
    let replicas = requested.clamp(min, max);
    retry_conflicts(|| attempt(api, &object, requested, replicas, min, max))
        .await
        .map_err(|error| failed(&object, api.dry_run, error))
}

async fn attempt(
    api: &Api<'_>,
    object: &Object,
    requested: i64,
    replicas: i64,
    min: i64,
    max: i64,
) -> Result<Value, Error> {
    let current = api.get(object, Some("scale")).await?;
    // A Scale's `spec.replicas` is omitted when zero.
    let previous = integer(&current, "/spec/replicas").unwrap_or(0);
    let version = text(&current, "/metadata/resourceVersion").unwrap_or_default();
    let before = json!({"replicas": previous, "resourceVersion": version});
    let mut output = identity(object, api.dry_run);
    output.insert("requested".into(), json!(requested));
    output.insert("replicas".into(), json!(replicas));
    output.insert("clamped".into(), json!(replicas != requested));
    output.insert("previous_replicas".into(), json!(previous));
    output.insert("min".into(), json!(min));
    output.insert("max".into(), json!(max));
    output.insert("before".into(), before.clone());
    if previous == replicas {
        output.insert("after".into(), before);
        return Ok(Value::Object(output));
    }
    // The read's resourceVersion makes the write conditional: `previous_replicas` is what the
    // rollback restores, so it must be the value this write replaced.
    let patch = json!({
        "metadata": {"resourceVersion": version},
        "spec": {"replicas": replicas},
    });
    let answer = api
        .patch(object, Some("scale"), PatchType::Merge, patch)
        .await?;
    output.insert("changed".into(), json!(true));
    output.insert(
        "after".into(),
        json!({
            "replicas": integer(&answer, "/spec/replicas").unwrap_or(0),
            "resourceVersion": text(&answer, "/metadata/resourceVersion").unwrap_or_default(),
        }),
    );
    Ok(Value::Object(output))
}
