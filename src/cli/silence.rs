//! `homeostat silence add|list|expire`, through the daemon's API: a silence mutes the alerts its
//! matchers match, from its start to its end, as Alertmanager's do.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::output::Format;
use super::remote::Remote;
use super::runbook::segment;
use super::show::emit;
use super::Global;

/// How long a silence lasts when neither `--duration` nor `--end` is given, as amtool's default.
pub const DEFAULT_DURATION: &str = "1h";

/// Parses `--start` and `--end`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is not an RFC 3339 time, such as 2026-01-02T15:04:05Z"))
}

/// What `homeostat silence add` was asked.
pub struct Add {
    pub matchers: Vec<String>,
    pub comment: String,
    pub duration: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// `homeostat silence add MATCHER...`: prints the new silence's id.
pub async fn add(global: &Global, add: Add) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let mut body = json!({ "matchers": add.matchers, "comment": add.comment });
    if let Some(start) = add.start {
        body["starts_at"] = Value::from(start.to_rfc3339());
    }
    match (add.end, add.duration) {
        (Some(end), _) => body["ends_at"] = Value::from(end.to_rfc3339()),
        (None, duration) => {
            body["duration"] = Value::from(duration.unwrap_or_else(|| DEFAULT_DURATION.into()))
        }
    }
    let answer = match remote.post("/api/v1/silences", &body).await {
        Ok(answer) => answer,
        Err(failure) => return failure.report(),
    };
    let silence = &answer["silence"];
    let id = silence["id"].as_str().unwrap_or("?");
    emit(&format!("{id}\n"));
    eprintln!(
        "silenced {} from {} until {}; expire it early with `homeostat silence expire {id}`",
        matchers(silence),
        time(&silence["starts_at"]),
        time(&silence["ends_at"])
    );
    0
}

/// `homeostat silence list [--expired]`.
pub async fn list(global: &Global, format: Format, expired: bool) -> u8 {
    let path = if expired {
        "/api/v1/silences?expired=true"
    } else {
        "/api/v1/silences"
    };
    let silences = match Remote::list(global, path, "silences").await {
        Ok(list) => list,
        Err(code) => return code,
    };
    if format.print_data(&silences) {
        return 0;
    }
    if silences.is_empty() {
        eprintln!(
            "no {}silences{}",
            if expired { "" } else { "active or pending " },
            if expired {
                ""
            } else {
                "; --expired lists expired ones too"
            }
        );
        return 0;
    }
    let rows = silences
        .iter()
        .map(|silence| {
            vec![
                text(&silence["id"]),
                text(&silence["state"]),
                time(&silence["starts_at"]),
                time(&silence["ends_at"]),
                text(&silence["created_by"]),
                matchers(silence),
                text(&silence["comment"]),
            ]
        })
        .collect();
    format.print_table(
        &[
            "ID",
            "STATE",
            "STARTS (UTC)",
            "ENDS (UTC)",
            "BY",
            "MATCHERS",
            "COMMENT",
        ],
        rows,
    );
    0
}

/// `homeostat silence expire ID`.
pub async fn expire(global: &Global, id: &str) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    match remote
        .delete(&format!("/api/v1/silences/{}", segment(id)))
        .await
    {
        Ok(answer) => {
            let silence = &answer["silence"];
            emit(&format!(
                "silence {} expired at {}\n",
                text(&silence["id"]),
                time(&silence["ends_at"])
            ));
            0
        }
        Err(failure) => failure.report(),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

fn matchers(silence: &Value) -> String {
    silence["matchers"]
        .as_array()
        .map(|matchers| {
            matchers
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn time(value: &Value) -> String {
    value
        .as_str()
        .and_then(|text| text.parse::<DateTime<Utc>>().ok())
        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(
            parse_time("2026-01-02T15:04:05+01:00").map(|at| at.to_rfc3339()),
            Ok("2026-01-02T14:04:05+00:00".to_string())
        );
        assert!(parse_time("tomorrow").is_err());
    }
}
