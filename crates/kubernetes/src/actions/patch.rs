//! `kubernetes.patch`: labels and annotations on any of the kinds it takes, and environment
//! variables on a workload's pod template. It reads the object first, so the outputs say what
//! each value was (`before`) and how to put it back (`undo`, which the declared rollback sends
//! as its own inputs).

use std::collections::BTreeMap;

use homeostat_core::action::kubernetes::{Changes, Patch, PatchKind};
use serde_json::{json, Map, Value};

use super::api::{Api, Kind, Object, PatchType};
use super::{failed, identity, namespace_of, retry_conflicts, text, versions, Error, Failure};

pub(crate) async fn patch(api: &Api<'_>, input: &Patch) -> Result<Value, Failure> {
    let kind = match input.kind {
        PatchKind::Deployment => Kind::DEPLOYMENT,
        PatchKind::StatefulSet => Kind::STATEFUL_SET,
        PatchKind::DaemonSet => Kind::DAEMON_SET,
        PatchKind::Pod => Kind::POD,
        PatchKind::Node => Kind::NODE,
        PatchKind::Service => Kind::SERVICE,
        PatchKind::ConfigMap => Kind::CONFIG_MAP,
        PatchKind::Namespace => Kind::NAMESPACE,
    };
    let object = Object::new(kind, &namespace_of(api, &input.namespace), &input.name);
    if !input.env.is_empty() && !input.kind.has_pod_template() {
        return Err(failed(
            &object,
            api.dry_run,
            format!(
                "{} has no pod template to set `env` in; set `env` on a Deployment, StatefulSet or DaemonSet",
                object.describe()
            ),
        ));
    }
    retry_conflicts(|| attempt(api, &object, input))
        .await
        .map_err(|error| failed(&object, api.dry_run, error))
}

async fn attempt(api: &Api<'_>, object: &Object, input: &Patch) -> Result<Value, Error> {
    let current = api.get(object, None).await?;
    let mut before = versions(&current);
    let mut undo = Map::new();
    let mut metadata = Map::new();
    for (field, changes) in [
        ("labels", &input.labels),
        ("annotations", &input.annotations),
    ] {
        let plan = plan_map(&current, field, changes);
        if !changes.is_empty() {
            before.insert(field.into(), Value::Object(plan.before));
        }
        undo.insert(field.into(), Value::Object(plan.undo));
        if !plan.patch.is_empty() {
            metadata.insert(field.into(), Value::Object(plan.patch));
        }
    }
    let container = input
        .container
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty());
    let env = if input.env.is_empty() {
        EnvPlan::default()
    } else {
        plan_env(&current, object, &input.env, container)?
    };
    if !input.env.is_empty() {
        before.insert("env".into(), json!(env.before));
    }
    let env_changed = !env.undo.is_empty();
    undo.insert("env".into(), Value::Object(env.undo));
    // The rollback sends `container` with `env`; with no env to undo it names none, since a
    // container without env is refused as input.
    let undo_container = match container {
        Some(name) if env_changed => name,
        _ => "",
    };
    undo.insert("container".into(), json!(undo_container));

    let mut output = identity(object, api.dry_run);
    if metadata.is_empty() && env.patch.is_empty() {
        output.insert("after".into(), Value::Object(before.clone()));
        output.insert("before".into(), Value::Object(before));
        output.insert("undo".into(), Value::Object(undo));
        return Ok(Value::Object(output));
    }
    // The read's resourceVersion makes the write conditional, so `undo` holds exactly the
    // values this write replaced; a conflict reads again.
    if let Some(version) = text(&current, "/metadata/resourceVersion") {
        metadata.insert("resourceVersion".into(), json!(version));
    }
    let mut body = json!({"metadata": metadata});
    let patch_type = if env.patch.is_empty() {
        PatchType::Merge
    } else {
        // A strategic merge patch merges `containers` and `env` by name, and `$patch: delete`
        // removes one entry: a merge patch would replace the whole lists.
        let containers: Vec<Value> = env
            .patch
            .into_iter()
            .map(|(name, entries)| json!({"name": name, "env": entries}))
            .collect();
        body["spec"] = json!({"template": {"spec": {"containers": containers}}});
        PatchType::Strategic
    };
    let answer = api.patch(object, None, patch_type, body).await?;
    let mut after = versions(&answer);
    for (field, changes) in [
        ("labels", &input.labels),
        ("annotations", &input.annotations),
    ] {
        if !changes.is_empty() {
            after.insert(
                field.into(),
                Value::Object(plan_map(&answer, field, changes).before),
            );
        }
    }
    if !input.env.is_empty() {
        let names: Vec<&String> = env.before.keys().collect();
        let mut values = BTreeMap::new();
        for name in names {
            let mut entries = Map::new();
            for key in input.env.0.keys() {
                entries.insert(key.clone(), json!(env_value(&answer, name, key)));
            }
            values.insert(name.clone(), entries);
        }
        after.insert("env".into(), json!(values));
    }
    output.insert("changed".into(), json!(true));
    output.insert("before".into(), Value::Object(before));
    output.insert("after".into(), Value::Object(after));
    output.insert("undo".into(), Value::Object(undo));
    Ok(Value::Object(output))
}

/// For a metadata map: each asked key's current value, the patch for the ones that differ,
/// and the values that undo it (null for a key that was absent).
struct MapPlan {
    before: Map<String, Value>,
    patch: Map<String, Value>,
    undo: Map<String, Value>,
}

fn plan_map(object: &Value, field: &str, changes: &Changes) -> MapPlan {
    let existing = object
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_object);
    let mut plan = MapPlan {
        before: Map::new(),
        patch: Map::new(),
        undo: Map::new(),
    };
    for (key, wanted) in &changes.0 {
        let now = existing
            .and_then(|map| map.get(key))
            .and_then(Value::as_str)
            .map(str::to_string);
        plan.before.insert(key.clone(), json!(now));
        if now != *wanted {
            plan.patch.insert(key.clone(), json!(wanted));
            plan.undo.insert(key.clone(), json!(now));
        }
    }
    plan
}

#[derive(Default)]
struct EnvPlan {
    /// Container name -> each asked variable's current value.
    before: BTreeMap<String, Map<String, Value>>,
    /// Container name -> the strategic-merge `env` entries to send.
    patch: BTreeMap<String, Vec<Value>>,
    undo: Map<String, Value>,
}

fn plan_env(
    object: &Value,
    target: &Object,
    changes: &Changes,
    container: Option<&str>,
) -> Result<EnvPlan, Error> {
    let containers: Vec<&str> = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|container| container.get("name").and_then(Value::as_str))
        .collect();
    let targets: Vec<&str> = match container {
        Some(name) if containers.contains(&name) => vec![name],
        Some(name) => {
            return Err(Error::Message(format!(
                "{} has no container `{name}`; its containers are `{}`",
                target.describe(),
                containers.join("`, `")
            )))
        }
        None => containers.clone(),
    };
    let mut plan = EnvPlan::default();
    for (key, wanted) in &changes.0 {
        let mut previous: Vec<(&str, Option<String>)> = Vec::new();
        for name in &targets {
            let entry = env_entry(object, name, key);
            if entry.is_some_and(|entry| entry.get("valueFrom").is_some()) {
                // Its source (a Secret, a field) cannot be written back as a plain value, so
                // neither the change nor its undo could be faithful.
                return Err(Error::Message(format!(
                    "env `{key}` of container `{name}` in {} comes from `valueFrom`; homeostat only sets plain values, so change it in the manifest",
                    target.describe()
                )));
            }
            previous.push((name, env_value(object, name, key)));
        }
        if let Some((_, first)) = previous.first() {
            if previous.iter().any(|(_, value)| value != first) {
                let values: Vec<String> = previous
                    .iter()
                    .map(|(name, value)| match value {
                        Some(value) => format!("`{name}`: `{value}`"),
                        None => format!("`{name}`: unset"),
                    })
                    .collect();
                return Err(Error::Message(format!(
                    "the containers of {} differ on env `{key}` ({}), so one undo could not restore them; name the `container` to change",
                    target.describe(),
                    values.join(", ")
                )));
            }
        }
        for (name, value) in &previous {
            plan.before
                .entry(name.to_string())
                .or_default()
                .insert(key.clone(), json!(value));
            if value != wanted {
                let entry = match wanted {
                    Some(wanted) => json!({"name": key, "value": wanted}),
                    None => json!({"name": key, "$patch": "delete"}),
                };
                plan.patch.entry(name.to_string()).or_default().push(entry);
                plan.undo.insert(key.clone(), json!(value));
            }
        }
    }
    Ok(plan)
}

fn env_entry<'a>(object: &'a Value, container: &str, key: &str) -> Option<&'a Value> {
    object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))?
        .get("env")
        .and_then(Value::as_array)?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(key))
}

/// A variable's plain value; an entry without `value` means the empty string.
fn env_value(object: &Value, container: &str, key: &str) -> Option<String> {
    env_entry(object, container, key).map(|entry| {
        entry
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    })
}
