//! Label selectors (`matchLabels`, `matchExpressions`): as a `labelSelector` query, and matched
//! against an object's labels.

use serde_json::{Map, Value};

/// The `labelSelector` query text of a selector, as kubectl's `metav1.LabelSelectorAsSelector`
/// writes it: `app=checkout,tier in (web,api),!canary`.
pub(crate) fn to_query(selector: &Value) -> String {
    let mut terms = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            terms.push(format!("{key}={}", value.as_str().unwrap_or_default()));
        }
    }
    for expression in expressions(selector) {
        let (key, operator, values) = expression;
        let list = values.join(",");
        terms.push(match operator {
            "In" => format!("{key} in ({list})"),
            "NotIn" => format!("{key} notin ({list})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({list})"),
        });
    }
    terms.join(",")
}

/// Whether labels match a selector. An empty selector matches everything; an absent (null)
/// one nothing, as for a PodDisruptionBudget.
pub(crate) fn matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    if selector.is_null() {
        return false;
    }
    let label = |key: &str| {
        labels
            .and_then(|labels| labels.get(key))
            .and_then(Value::as_str)
    };
    if let Some(wanted) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in wanted {
            if label(key) != value.as_str() {
                return false;
            }
        }
    }
    expressions(selector).all(|(key, operator, values)| match operator {
        "In" => label(key).is_some_and(|value| values.contains(&value)),
        "NotIn" => label(key).is_none_or(|value| !values.contains(&value)),
        "Exists" => label(key).is_some(),
        "DoesNotExist" => label(key).is_none(),
        _ => false,
    })
}

fn expressions(selector: &Value) -> impl Iterator<Item = (&str, &str, Vec<&str>)> {
    selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|expression| {
            let key = expression
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let operator = expression
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let values = expression
                .get("values")
                .and_then(Value::as_array)
                .map(|values| values.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            (key, operator, values)
        })
}
