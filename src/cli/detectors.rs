//! `homeostat detectors status`: the daemon's anomaly detectors, each series' latest score,
//! expected range and state.

use serde_json::Value;

use super::output::Format;
use super::remote::Remote;
use super::Global;

/// `homeostat detectors status`: every series of every detector the daemon runs.
pub async fn status(global: &Global, format: Format) -> u8 {
    let detectors = match Remote::list(global, "/api/v1/detectors", "detectors").await {
        Ok(list) => list,
        Err(code) => return code,
    };
    if format.print_data(&detectors) {
        return 0;
    }
    if detectors.is_empty() {
        eprintln!("the daemon runs no anomaly detector; add one under `detectors:` in the config");
        return 0;
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for detector in &detectors {
        let name = detector["name"].as_str().unwrap_or_default();
        if let Some(error) = detector["error"].as_str() {
            notes.push(format!(
                "warning: `{name}`: the latest query failed: {error}"
            ));
        }
        let backfill = &detector["backfill"];
        match backfill["state"].as_str() {
            Some("pending") => notes.push(format!(
                "note: `{name}`: its history is not read yet ({} attempts{}); retried every interval",
                backfill["attempts"],
                backfill["error"]
                    .as_str()
                    .map(|error| format!(", last: {error}"))
                    .unwrap_or_default()
            )),
            Some("failed") => notes.push(format!(
                "warning: `{name}`: its history could not be read ({}); it learns from now on",
                backfill["error"].as_str().unwrap_or_default()
            )),
            _ => {}
        }
        if let Some(ignored) = detector["ignored_series"].as_u64().filter(|n| *n > 0) {
            notes.push(format!(
                "warning: `{name}`: {ignored} series beyond `max_series` are not tracked"
            ));
        }
        let series = detector["series"].as_array().cloned().unwrap_or_default();
        if series.is_empty() {
            rows.push(vec![
                name.to_string(),
                if detector["evaluated_at"].is_null() {
                    "not evaluated yet".into()
                } else {
                    "no series".into()
                },
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            continue;
        }
        for one in series {
            let labels = one["labels"]
                .as_object()
                .filter(|labels| !labels.is_empty())
                .map(|labels| {
                    let pairs: Vec<String> = labels
                        .iter()
                        .map(|(label, value)| format!("{label}={}", value.as_str().unwrap_or("")))
                        .collect();
                    format!("{{{}}}", pairs.join(","))
                })
                .unwrap_or_default();
            let input = &one["input"];
            let odd: Vec<String> = [
                ("steps_back", "back"),
                ("repeats", "repeated"),
                ("gaps", "gaps"),
                ("non_finite", "NaN"),
            ]
            .iter()
            .filter_map(|(field, word)| {
                input[*field]
                    .as_u64()
                    .filter(|count| *count > 0)
                    .map(|count| format!("{count} {word}"))
            })
            .collect();
            rows.push(vec![
                format!("{name}{labels}"),
                one["state"].as_str().unwrap_or("-").to_string(),
                one["score"]
                    .as_f64()
                    .map_or("-".into(), |score| format!("{score:.2}")),
                number(&one["value"]),
                format!(
                    "{} ({}..{})",
                    number(&one["expected"]),
                    number(&one["expected_low"]),
                    number(&one["expected_high"])
                ),
                input["scored"].to_string(),
                if odd.is_empty() {
                    "-".into()
                } else {
                    odd.join(", ")
                },
            ]);
        }
    }
    format.print_table(
        &[
            "SERIES", "STATE", "SCORE", "VALUE", "EXPECTED", "VALUES", "INPUT",
        ],
        rows,
    );
    for note in &notes {
        eprintln!("{note}");
    }
    0
}

/// A number as people read it: four significant digits; `-` when absent (or unbounded).
fn number(value: &Value) -> String {
    let Some(number) = value.as_f64() else {
        return "-".into();
    };
    if number == 0.0 || !number.is_finite() {
        return format!("{number}");
    }
    let digits = (3 - number.abs().log10().floor() as i32).max(0) as usize;
    format!("{number:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(&serde_json::json!(0.123456)), "0.1235");
        assert_eq!(number(&serde_json::json!(12345.6)), "12346");
        assert_eq!(number(&Value::Null), "-");
    }
}
