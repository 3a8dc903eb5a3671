//! Every structural error of a config file in one pass: serde stops at the first error, so after
//! each one the YAML tree is repaired (an unknown field removed, a wrong value or a missing field
//! replaced by a placeholder) and deserialized again, until it deserializes or nothing more can be
//! repaired.
//!
//! Each top-level section, and each item of a list section, is checked on its own, so an item that
//! cannot be repaired hides nothing of the others. The repaired tree is thrown away: it only lets
//! serde reach the next error. Errors inside a placeholder (its own missing fields) are the
//! repair's, not the user's, and are not reported.

use std::collections::HashMap;

use serde_yaml_ng::{Mapping, Value};

/// A file type's deserialization from a YAML tree, failing with the first error's path (`None`
/// where serde could not follow it) and message.
pub(super) type Deserialize = dyn Fn(&Value) -> Result<(), (Option<Vec<Segment>>, String)>;

/// Enough for any config a person writes; it bounds the work on hostile input (each round is a
/// deserialization of one section or item).
const MAX_ROUNDS: usize = 64;

/// One structural error: where (as serde_path_to_error writes paths) and what serde said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub path: String,
    pub message: String,
}

/// One step of a path into the YAML tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

fn display(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The structural errors of a whole file, given as a YAML tree, in the order of its sections.
/// `deserialize` is the file type's deserialization, which fails with the first error: its path
/// (`None` where serde could not follow it) and message.
pub(super) fn problems(root: &Value, deserialize: &Deserialize) -> Vec<Problem> {
    let Value::Mapping(sections) = root else {
        return unit(root.clone(), deserialize);
    };
    let mut found = Vec::new();
    for (key, value) in sections {
        let Value::String(name) = key else {
            // A key that is not text is an unknown field whatever it says; serde says so.
            let mut single = Mapping::new();
            single.insert(key.clone(), value.clone());
            found.extend(unit(Value::Mapping(single), deserialize));
            continue;
        };
        match value {
            Value::Sequence(items) if !items.is_empty() => {
                for (index, item) in items.iter().enumerate() {
                    let mut single = Mapping::new();
                    single.insert(key.clone(), Value::Sequence(vec![item.clone()]));
                    // The item is the only one of its list here: its index in the file goes back
                    // into the paths reported.
                    let from = format!("{name}[0]");
                    let to = format!("{name}[{index}]");
                    for mut problem in unit(Value::Mapping(single), deserialize) {
                        if let Some(rest) = problem.path.strip_prefix(&from) {
                            problem.path = format!("{to}{rest}");
                        }
                        found.push(problem);
                    }
                }
            }
            _ => {
                let mut single = Mapping::new();
                single.insert(key.clone(), value.clone());
                found.extend(unit(Value::Mapping(single), deserialize));
            }
        }
    }
    found
}

/// Repairs and deserializes one section or item until it deserializes or cannot be repaired.
fn unit(mut tree: Value, deserialize: &Deserialize) -> Vec<Problem> {
    let mut found: Vec<Problem> = Vec::new();
    // Where placeholders went, and how many each has been given: errors at or under these are
    // the repair's own.
    let mut placed: HashMap<String, usize> = HashMap::new();
    for _ in 0..MAX_ROUNDS {
        let Err((parts, message)) = deserialize(&tree) else {
            break;
        };
        let Some(parts) = parts else {
            report(&mut found, &placed, String::new(), message);
            break;
        };
        let mut path = parts;
        // serde's path ends at the struct for some errors (missing fields, and everything inside
        // an internally tagged enum, whose content serde buffers); the field is in the message.
        if let Some(field) = between(&message, "unknown field `", "`") {
            if !ends_with_key(&path, field) {
                path.push(Segment::Key(field.to_string()));
            }
            report(&mut found, &placed, display(&path), message.clone());
            if !remove(&mut tree, &path) {
                break;
            }
            continue;
        }
        if let Some(field) = between(&message, "missing field `", "`") {
            let shown = display(&path);
            report(&mut found, &placed, shown, message.clone());
            path.push(Segment::Key(field.to_string()));
        } else {
            // Inside an internally tagged enum serde reports at the item, not at the field: the
            // field is the one child that holds the refused value (the tag, for its variant).
            let item = display(&path);
            let mut tag_guessed = false;
            if let Some(Value::Mapping(map)) = node(&mut tree, &path) {
                if let Some(key) = holder(map, &message) {
                    path.push(Segment::Key(key));
                    if let Some(variant) = between(&message, "unknown variant `", "`") {
                        let expected = message.split("expected ").nth(1).unwrap_or("");
                        // With no near variant, the placeholder's fields are not the user's.
                        tag_guessed =
                            crate::check::words::nearest(variant, backticked(expected)).is_none();
                    }
                }
            }
            report(&mut found, &placed, display(&path), message.clone());
            if tag_guessed {
                placed.entry(item).or_insert(0);
            }
        }
        let key = display(&path);
        let attempt = placed.entry(key).or_insert(0);
        let Some(placeholder) = placeholders(&message).into_iter().nth(*attempt) else {
            break;
        };
        *attempt += 1;
        if !put(&mut tree, &path, placeholder) {
            break;
        }
    }
    found
}

/// Records a problem unless a placeholder caused it or it was recorded already.
fn report(
    found: &mut Vec<Problem>,
    placed: &HashMap<String, usize>,
    path: String,
    message: String,
) {
    let ours = placed.keys().any(|place| under(&path, place));
    let problem = Problem { path, message };
    if !ours && !found.contains(&problem) {
        found.push(problem);
    }
}

/// Whether `path` is `place` or inside it.
fn under(path: &str, place: &str) -> bool {
    match path.strip_prefix(place) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// The key of the child of `map` that holds the value serde's message refuses: `unknown variant
/// `x`` or `invalid type: string "x"` (or an integer or a boolean), when exactly one child does.
fn holder(map: &Mapping, message: &str) -> Option<String> {
    let refused: Value = if let Some(variant) = between(message, "unknown variant `", "`") {
        Value::from(variant)
    } else if let Some(text) = between(message, "invalid type: string \"", "\"") {
        Value::from(text)
    } else if let Some(number) = between(message, "invalid type: integer `", "`") {
        Value::from(number.parse::<i64>().ok()?)
    } else if let Some(boolean) = between(message, "invalid type: boolean `", "`") {
        Value::from(boolean.parse::<bool>().ok()?)
    } else {
        return None;
    };
    let mut holders = map.iter().filter_map(|(key, value)| match key {
        Value::String(key) if *value == refused => Some(key.clone()),
        _ => None,
    });
    let key = holders.next()?;
    holders.next().is_none().then_some(key)
}

/// What to try in place of a value serde refused, in order: the variant nearest to the one
/// refused and the others it expects, then a value of each YAML type, and a secret reference.
fn placeholders(message: &str) -> Vec<Value> {
    let mut values = Vec::new();
    if let Some(expected) = message.split("expected ").nth(1) {
        let mut variants = backticked(expected);
        if let Some(variant) = between(message, "unknown variant `", "`") {
            if let Some(near) = crate::check::words::nearest(variant, variants.iter().copied()) {
                variants.retain(|other| *other != near);
                variants.insert(0, near);
            }
        }
        values.extend(variants.into_iter().map(Value::from));
    }
    values.extend([
        Value::from("x"),
        Value::from(1),
        Value::from(true),
        Value::Sequence(Vec::new()),
        Value::Mapping(Mapping::new()),
        serde_yaml_ng::from_str("{env: X}").unwrap_or(Value::Null),
        Value::Null,
    ]);
    values
}

/// The words in backticks of a text: serde's "one of `a`, `b`".
pub(super) fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn ends_with_key(path: &[Segment], field: &str) -> bool {
    matches!(path.last(), Some(Segment::Key(key)) if key == field)
}

fn node<'t>(tree: &'t mut Value, path: &[Segment]) -> Option<&'t mut Value> {
    let mut current = tree;
    for segment in path {
        current = match segment {
            Segment::Key(key) => current
                .as_mapping_mut()?
                .get_mut(Value::String(key.clone()))?,
            Segment::Index(index) => current.as_sequence_mut()?.get_mut(*index)?,
        };
    }
    Some(current)
}

/// Removes the mapping entry at `path`; false if there is none.
fn remove(tree: &mut Value, path: &[Segment]) -> bool {
    let Some((Segment::Key(key), parent)) = path.split_last() else {
        return false;
    };
    match node(tree, parent).and_then(Value::as_mapping_mut) {
        Some(map) => map.remove(Value::String(key.clone())).is_some(),
        None => false,
    }
}

/// Puts `value` at `path`, adding the last key to its mapping if it is missing.
fn put(tree: &mut Value, path: &[Segment], value: Value) -> bool {
    let Some((last, parent)) = path.split_last() else {
        *tree = value;
        return true;
    };
    match (last, node(tree, parent)) {
        (Segment::Key(key), Some(Value::Mapping(map))) => {
            map.insert(Value::String(key.clone()), value);
            true
        }
        (Segment::Index(index), Some(Value::Sequence(items))) => match items.get_mut(*index) {
            Some(item) => {
                *item = value;
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}
