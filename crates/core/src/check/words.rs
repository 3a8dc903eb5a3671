//! The English the checks' messages and hints are written in: articles and lists joined as a
//! person would write them ("`a`, `b` or `c`"), so every message reads the same way.

use serde_json::Value;

use crate::config::ParamType;

/// "an integer", "a string": a parameter type with its article.
pub(crate) fn article(kind: ParamType) -> String {
    match kind {
        ParamType::Integer => "an integer".to_string(),
        other => format!("a {}", other.as_str()),
    }
}

/// A value as written: text without JSON quotes.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Values as written, joined by commas: "soft, hard".
pub(crate) fn list(values: &[Value]) -> String {
    values.iter().map(show).collect::<Vec<_>>().join(", ")
}

/// Names joined by commas: "chat, pager".
pub(crate) fn names<'n>(names: impl IntoIterator<Item = &'n str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// "`a`, `b` or `c`".
pub(crate) fn or_list(items: &[&str]) -> String {
    join_last(items, "or")
}

/// "`a` and `b`".
pub(crate) fn and_list(items: &[&str]) -> String {
    join_last(items, "and")
}

/// The items in backticks, the last joined by `word`: "`a`, `b` or `c`".
pub(crate) fn join_last(items: &[&str], word: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {word} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        assert_eq!(or_list(&[]), "");
        assert_eq!(or_list(&["a"]), "`a`");
        assert_eq!(and_list(&["a", "b"]), "`a` and `b`");
        assert_eq!(or_list(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(names(["chat", "pager"]), "chat, pager");
        assert_eq!(list(&[Value::from("soft"), Value::from(2)]), "soft, 2");
        assert_eq!(article(ParamType::Integer), "an integer");
        assert_eq!(article(ParamType::List), "a list");
    }
}
