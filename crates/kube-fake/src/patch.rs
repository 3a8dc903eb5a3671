//! The three patch formats the apiserver accepts: JSON merge patch (RFC 7386), strategic merge
//! patch (approximated without the OpenAPI schema) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Strategic merge patch, as `kubectl patch` and controllers use it. The real server knows each
/// list's merge key from the schema; here it is guessed from the list's field name (see
/// [`merge_key`]), which covers the lists a remediation touches (containers, env, volumes,
/// ports, volumeMounts, conditions). Directives: `$patch: delete|replace` on maps and list
/// items, `$retainKeys`, `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` is
/// accepted and ignored (order is kept as in the original, new items appended).
pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    strategic_field(target, patch, "")
}

fn strategic_field(target: &mut Value, patch: &Value, field: &str) -> Result<(), String> {
    match patch {
        Value::Object(patch_map) => {
            match patch_map.get("$patch").and_then(Value::as_str) {
                Some("replace") => {
                    let mut replacement = patch_map.clone();
                    replacement.remove("$patch");
                    *target = Value::Object(replacement);
                    return Ok(());
                }
                Some("delete") => {
                    *target = Value::Null;
                    return Ok(());
                }
                Some("merge") | None => {}
                Some(other) => return Err(format!("unknown patch type {other:?}")),
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Value::Object(target_map) = target else {
                return Ok(());
            };
            for (key, value) in patch_map {
                if let Some(list_field) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(items)), Value::Array(remove)) =
                        (target_map.get_mut(list_field), value)
                    {
                        items.retain(|item| !remove.contains(item));
                    }
                    continue;
                }
                if key.starts_with('$') {
                    continue;
                }
                if value.is_null() {
                    target_map.remove(key);
                    continue;
                }
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_field(slot, value, key)?;
                if slot.is_null() {
                    target_map.remove(key);
                }
            }
            if let Some(Value::Array(retain)) = patch_map.get("$retainKeys") {
                let retain: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
                target_map.retain(|key, _| retain.contains(&key.as_str()));
            }
            Ok(())
        }
        Value::Array(patch_items) => {
            let replace = patch_items.iter().any(|item| {
                item.get("$patch").and_then(Value::as_str) == Some("replace")
                    && item.as_object().is_some_and(|m| m.len() == 1)
            });
            let Some(key) = (!replace).then(|| merge_key(field, patch_items)).flatten() else {
                *target = Value::Array(
                    patch_items
                        .iter()
                        .filter(|item| {
                            !(item.get("$patch").is_some()
                                && item.as_object().is_some_and(|m| m.len() == 1))
                        })
                        .cloned()
                        .collect(),
                );
                return Ok(());
            };
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            let Value::Array(items) = target else {
                return Ok(());
            };
            for patch_item in patch_items {
                let id = &patch_item[key];
                let position = items.iter().position(|item| item.get(key) == Some(id));
                let delete = patch_item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(position), true) => {
                        items.remove(position);
                    }
                    (None, true) => {}
                    (Some(position), false) => {
                        strategic_field(&mut items[position], patch_item, "")?
                    }
                    (None, false) => {
                        let mut item = Value::Null;
                        strategic_field(&mut item, patch_item, "")?;
                        items.push(item);
                    }
                }
            }
            Ok(())
        }
        other => {
            *target = other.clone();
            Ok(())
        }
    }
}

/// The merge key of a list, or `None` for lists that are replaced whole (primitives,
/// tolerations, args...). Every item must be an object carrying the key.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let candidates: &[&'static str] = match field {
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        // Container ports merge on containerPort, Service ports on port.
        "ports" => &["containerPort", "port", "name"],
        "conditions" => &["type"],
        "hostAliases" => &["ip"],
        "ownerReferences" => &["uid"],
        "imagePullSecrets"
        | "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes" => &["name"],
        _ => &["name"],
    };
    if items.is_empty() {
        return None;
    }
    candidates.iter().copied().find(|key| {
        items
            .iter()
            .all(|item| item.as_object().is_some_and(|m| m.contains_key(*key)))
    })
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy and test. `Err` describes the
/// operation that failed (a failed `test` included); the caller answers 422.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let operations = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for (index, operation) in operations.iter().enumerate() {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .ok_or(format!("operation {index} has no op"))?;
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .ok_or(format!("operation {index} has no path"))?;
        let value = || {
            operation
                .get("value")
                .cloned()
                .ok_or(format!("operation {index} ({op}) has no value"))
        };
        let from = || {
            operation
                .get("from")
                .and_then(Value::as_str)
                .ok_or(format!("operation {index} ({op}) has no from"))
        };
        match op {
            "add" => add(target, path, value()?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value()?)?;
            }
            "move" => {
                let moved = remove(target, from()?)?;
                add(target, path, moved)?;
            }
            "copy" => {
                let copied = target
                    .pointer(from()?)
                    .cloned()
                    .ok_or(format!("copy: path {} does not exist", from()?))?;
                add(target, path, copied)?;
            }
            "test" => {
                let expected = value()?;
                if target.pointer(path) != Some(&expected) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// Splits a JSON pointer into its parent pointer and its unescaped last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("the whole document cannot be added or removed".to_string());
    }
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    let cut = path.rfind('/').unwrap_or(0);
    Ok((
        &path[..cut],
        path[cut + 1..].replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, token) = split_pointer(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(token, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if token == "-" {
                items.len()
            } else {
                token
                    .parse::<usize>()
                    .map_err(|_| format!("invalid array index in {path}"))?
            };
            if index > items.len() {
                return Err(format!("add operation index out of bounds: {path}"));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path}"
        )),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path}");
    match target.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&token).ok_or_else(missing),
        Some(Value::Array(items)) => {
            let index = token.parse::<usize>().map_err(|_| missing())?;
            if index >= items.len() {
                return Err(missing());
            }
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_named_lists() {
        let mut doc = json!({"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 80}], "args": ["x"]},
            {"name": "side", "image": "s:1"},
        ]}});
        strategic(
            &mut doc,
            &json!({"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}, {"name": "A", "value": "9"}],
                 "ports": [{"containerPort": 8080}], "args": ["y"]},
            ], "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}]}}),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "A", "value": "9"}, {"name": "C", "value": "3"}],
                 "ports": [{"containerPort": 80}, {"containerPort": 8080}], "args": ["y"]},
                {"name": "side", "image": "s:1"},
            ]}})
        );
    }

    #[test]
    fn strategic_directives() {
        let mut doc =
            json!({"m": {"a": 1, "b": 2}, "n": {"x": 1}, "f": ["a", "b"], "l": [{"name": "x"}]});
        strategic(
            &mut doc,
            &json!({"m": {"$patch": "replace", "c": 3}, "n": {"$patch": "delete"}, "$deleteFromPrimitiveList/f": ["a"],
                    "l": [{"$patch": "replace"}, {"name": "y"}]}),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"m": {"c": 3}, "f": ["b"], "l": [{"name": "y"}]})
        );
    }

    #[test]
    fn json_patch_operations() {
        let mut doc =
            json!({"spec": {"replicas": 1, "list": ["a"]}, "metadata": {"labels": {"a/b": "x"}}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/list/-", "value": "b"},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
                {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"replicas": 3, "list": ["a", "b"], "moved": 3}, "metadata": {"labels": {}}})
        );
        assert!(json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 1}])
        )
        .is_err());
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(
            &mut doc,
            &json!([{"op": "replace", "path": "/nope", "value": 1}])
        )
        .is_err());
    }
}
