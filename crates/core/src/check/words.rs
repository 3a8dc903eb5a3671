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

/// The known name nearest to a misspelt one, if one is near enough to be what was meant: a
/// typo or two (`cooldwon_secs`), or a prefix of it (`cooldown` for `cooldown_secs`). Jaro-Winkler
/// favours a shared beginning, which is how names here differ from their typos.
pub(crate) fn nearest<'n>(word: &str, known: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    let word_lower = word.to_lowercase();
    known
        .into_iter()
        .filter(|name| !name.is_empty())
        .filter_map(|name| {
            let name_lower = name.to_lowercase();
            let typos = strsim::damerau_levenshtein(&word_lower, &name_lower);
            let similarity = strsim::jaro_winkler(&word_lower, &name_lower);
            let allowed = (name.chars().count().max(word.chars().count()) / 4).max(1);
            let prefix = word_lower.chars().count() >= 3 && name_lower.starts_with(&word_lower);
            // A word of a snake_case name: `tokens` for `api_tokens`, `secs` for `timeout_secs`.
            let part = word_lower.chars().count() >= 4
                && name_lower.split('_').count() > 1
                && name_lower.split('_').any(|piece| piece == word_lower);
            (typos <= allowed || similarity >= 0.88 || prefix || part)
                .then_some((name, typos, similarity))
        })
        .max_by(|a, b| {
            b.1.cmp(&a.1)
                .then(a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal))
        })
        .map(|(name, ..)| name)
}

/// " did you mean `name`?" after a message about `word`, or nothing.
pub(crate) fn did_you_mean<'n>(word: &str, known: impl IntoIterator<Item = &'n str>) -> String {
    match nearest(word, known) {
        Some(name) => format!("did you mean `{name}`? "),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_name_is_suggested_only_when_near() {
        let fields = [
            "name",
            "match",
            "steps",
            "cooldown_secs",
            "max_runs",
            "target",
        ];
        assert_eq!(nearest("stpes", fields), Some("steps"));
        assert_eq!(nearest("cooldwon_secs", fields), Some("cooldown_secs"));
        assert_eq!(nearest("cooldown", fields), Some("cooldown_secs"));
        assert_eq!(nearest("Name", fields), Some("name"));
        assert_eq!(nearest("maxruns", fields), Some("max_runs"));
        assert_eq!(nearest("colour", fields), None);
        assert_eq!(nearest("x", fields), None);
        assert_eq!(nearest("steps", []), None);
        let actions = ["exec", "http_request", "notify", "log", "kubernetes.scale"];
        assert_eq!(nearest("exce", actions), Some("exec"));
        assert_eq!(
            nearest("kubernetes.scael", actions),
            Some("kubernetes.scale")
        );
        assert_eq!(nearest("http", actions), Some("http_request"));
        assert_eq!(did_you_mean("lgo", actions), "did you mean `log`? ");
        assert_eq!(did_you_mean("deploy", actions), "");
        // A word of a snake_case name: the section people call by its last word.
        let top = ["server", "store", "api_tokens", "rules", "runbooks"];
        assert_eq!(nearest("tokens", top), Some("api_tokens"));
        assert_eq!(nearest("colour", top), None);
    }

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
