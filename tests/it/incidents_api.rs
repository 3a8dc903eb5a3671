//! Incidents and silences: correlated alerts shown with their timeline and context, acknowledged,
//! annotated and resolved, a postmortem drafted, alerts silenced and silences expired, a rule that
//! loop detection disabled listed and enabled again, through the API in process (`oneshot`), then
//! the same through the `homeostat` command line against the real daemon.

use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::api::{get, post, Api, READ, WRITE};
use crate::support::{base_config, wait_for, Daemon, TOKEN};

const WITHIN: Duration = Duration::from_secs(15);

/// The PromQL the alerts' generator URLs carry, and the URL, encoded as Prometheus encodes it.
const EXPR: &str = "sum(rate(http_errors_total[5m])) > 1";
const GENERATOR_URL: &str =
    "http://prometheus:9090/graph?g0.expr=sum%28rate%28http_errors_total%5B5m%5D%29%29+%3E+1&g0.tab=1";

/// An Alertmanager webhook with one alert per name, all of `service`.
fn alerts(service: &str, names: &[&str], status: &str) -> String {
    let alerts: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({"status": status, "labels": {"alertname": name, "service": service},
                   "annotations": {"runbook_url": "https://runbooks.example/errors"},
                   "generatorURL": GENERATOR_URL})
        })
        .collect();
    json!({"version": "4", "status": status, "receiver": "homeostat", "alerts": alerts}).to_string()
}

/// A deploy of `service`, as a native `change` event.
fn deploy(service: &str, summary: &str) -> String {
    json!({"kind": "change", "labels": {"service": service, "version": "v2"},
           "annotations": {"summary": summary}})
    .to_string()
}

async fn send(api: &Api, path: &str, body: String) {
    let (status, _, answer) = api.call(post(path, Some(WRITE), body)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
}

fn delete(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::delete(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

/// Waits until `GET /api/v1/incidents?{query}` lists one incident with `members` members; it.
async fn wait_incident(api: &Api, query: &str, members: u64) -> Value {
    wait_for(
        &format!("one incident with {members} members for `{query}`"),
        WITHIN,
        || async {
            let (status, _, listed) = api
                .call(get(&format!("/api/v1/incidents?{query}"), Some(READ)))
                .await;
            assert_eq!(status, StatusCode::OK, "{listed}");
            let incidents = listed["incidents"].as_array()?;
            (incidents.len() == 1 && incidents[0]["members_total"] == members)
                .then(|| incidents[0].clone())
        },
        String::new,
    )
    .await
}

async fn show(api: &Api, id: &Value) -> Value {
    let (status, _, shown) = api
        .call(get(&format!("/api/v1/incidents/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    shown
}

fn kinds(shown: &Value) -> Vec<String> {
    shown["timeline"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn summaries(shown: &Value) -> Vec<String> {
    shown["timeline"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["summary"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn message(error: &Value) -> &str {
    error["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn correlated_alerts_are_shown_acknowledged_noted_and_resolved() {
    let api = Api::start("").await;
    send(
        &api,
        "/api/v1/events",
        deploy("checkout", "deploy checkout v2"),
    )
    .await;
    send(&api, "/api/v1/events", deploy("search", "deploy search v9")).await;
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("checkout", &["HighErrorRate", "HighLatency"], "firing"),
    )
    .await;
    let incident = wait_incident(&api, "limit=10", 2).await;
    let id = incident["id"].clone();
    assert_eq!(incident["state"], "open");
    assert_eq!(incident["labels"], json!({"service": "checkout"}));

    let shown = show(&api, &id).await;
    assert_eq!(
        shown["members"].as_array().map(Vec::len),
        Some(2),
        "{shown:#}"
    );
    let timeline = kinds(&shown);
    assert!(
        timeline.contains(&"opened".to_string()) && timeline.contains(&"member_added".to_string()),
        "{timeline:?}"
    );
    for item in shown["timeline"].as_array().into_iter().flatten() {
        assert!(
            item["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{item}"
        );
        assert!(item["seq"].is_i64() && item["at"].is_string(), "{item}");
    }
    let context = &shown["context"];
    let changes = context["recent_changes"]
        .as_array()
        .expect("recent changes");
    assert_eq!(changes.len(), 1, "only the group's change: {context:#}");
    assert_eq!(changes[0]["summary"], "deploy checkout v2");
    assert!(changes[0]["event_id"].is_string());
    assert_eq!(context["queries"], json!([EXPR]));
    assert_eq!(
        context["runbooks"],
        json!([{"url": "https://runbooks.example/errors"}])
    );
    assert_eq!(context["related"], json!([]));

    // Acknowledge, with a comment; only once.
    let ack = format!("/api/v1/incidents/{id}/ack");
    let (status, _, error) = api
        .call(post(&ack, Some(READ), r#"{"comment": "x"}"#))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "forbidden_scope");
    let (status, _, acked) = api
        .call(post(&ack, Some(WRITE), r#"{"comment": "looking"}"#))
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["incident"]["state"], "acknowledged");
    assert_eq!(acked["incident"]["acknowledged_by"], "w");
    let shown = show(&api, &id).await;
    let acknowledged = shown["timeline"]
        .as_array()
        .and_then(|items| items.iter().find(|item| item["kind"] == "acknowledged"))
        .unwrap_or_else(|| panic!("no `acknowledged` entry: {shown:#}"));
    let summary = acknowledged["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains('w') && summary.contains("looking"),
        "{summary}"
    );
    let (status, _, error) = api.call(post(&ack, Some(WRITE), "")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["code"], "already_acknowledged");
    assert!(message(&error).contains("by w"), "{error}");

    // A note, and bad bodies.
    let notes = format!("/api/v1/incidents/{id}/notes");
    let (status, _, noted) = api
        .call(post(&notes, Some(WRITE), r#"{"text": "rolled back v2"}"#))
        .await;
    assert_eq!(status, StatusCode::OK, "{noted}");
    assert!(
        summaries(&show(&api, &id).await)
            .iter()
            .any(|summary| summary.contains("rolled back v2")),
        "the note is on the timeline"
    );
    for body in [r#"{"text": "  "}"#, r#"{}"#, r#"{"text": "x", "by": "me"}"#] {
        let (status, _, error) = api.call(post(&notes, Some(WRITE), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["code"], "invalid_payload");
    }

    // Unknown incidents.
    for path in [
        "/api/v1/incidents/999",
        "/api/v1/incidents/abc",
        "/api/v1/incidents/999/postmortem",
    ] {
        let (status, _, error) = api.call(get(path, Some(READ))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error["code"], "incident_not_found");
    }
    let (status, _, error) = api
        .call(post("/api/v1/incidents/999/resolve", Some(WRITE), ""))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "incident_not_found");

    // Listing filters.
    let (_, _, listed) = api
        .call(get("/api/v1/incidents?label=service=checkout", Some(READ)))
        .await;
    assert_eq!(listed["incidents"].as_array().map(Vec::len), Some(1));
    let (_, _, listed) = api
        .call(get("/api/v1/incidents?label=service=search", Some(READ)))
        .await;
    assert_eq!(listed["incidents"], json!([]));
    for query in ["label=service", "limit=0", "colour=red"] {
        let (status, _, error) = api
            .call(get(&format!("/api/v1/incidents?{query}"), Some(READ)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert_eq!(error["code"], "invalid_query");
    }

    // Resolve, once; a resolved incident takes no acknowledgement.
    let resolve = format!("/api/v1/incidents/{id}/resolve");
    let (status, _, resolved) = api
        .call(post(
            &resolve,
            Some(WRITE),
            r#"{"comment": "fixed by rollback"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["incident"]["state"], "resolved");
    assert_eq!(resolved["incident"]["resolved_by"], "w");
    for path in [&resolve, &ack] {
        let (status, _, error) = api.call(post(path, Some(WRITE), "")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {error}");
        assert_eq!(error["code"], "incident_resolved");
    }
    let (_, _, open) = api
        .call(get("/api/v1/incidents?open=true", Some(READ)))
        .await;
    assert_eq!(open["incidents"], json!([]));
    assert!(kinds(&show(&api, &id).await).contains(&"resolved".to_string()));

    // The postmortem draft.
    let response = api
        .router
        .clone()
        .oneshot(get(
            &format!("/api/v1/incidents/{id}/postmortem"),
            Some(READ),
        ))
        .await
        .expect("router answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|kind| kind.starts_with("text/markdown")),
        "{:?}",
        response.headers()
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let markdown = String::from_utf8_lossy(&bytes);
    let title = incident["title"].as_str().expect("a title");
    for expected in [
        format!("# Postmortem: incident {id} — {title}"),
        "## Timeline".to_string(),
        "deploy checkout v2".to_string(),
        EXPR.to_string(),
        "https://runbooks.example/errors".to_string(),
        "resolved by w".to_string(),
        "rolled back v2".to_string(),
    ] {
        assert!(
            markdown.contains(&expected),
            "no {expected:?} in:\n{markdown}"
        );
    }
}

#[tokio::test]
async fn a_remediation_run_is_on_the_incident_s_timeline_and_in_its_postmortem() {
    let api = Api::start(
        r#"
rules:
  - name: restart-payments
    match: ['alertname="PaymentsDown"']
    target: "{{ labels.service }}"
    steps:
      - {name: restart, action: log, with: {message: "restarting {{ labels.service }}"}}
"#,
    )
    .await;
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("payments", &["PaymentsDown"], "firing"),
    )
    .await;
    let incident = wait_incident(&api, "limit=10", 1).await;
    let id = incident["id"].clone();
    // A run that succeeds mitigates its incident.
    let shown = wait_for(
        "the run to mitigate the incident",
        WITHIN,
        || async {
            let shown = show(&api, &id).await;
            (shown["incident"]["state"] == "mitigated").then_some(shown)
        },
        String::new,
    )
    .await;
    let summaries = summaries(&shown);
    let run_id = shown["timeline"]
        .as_array()
        .and_then(|items| items.iter().find_map(|item| item["run_id"].as_str()))
        .expect("a run on the timeline")
        .to_string();
    for expected in [
        format!(
            "run {run_id} of the rule's own steps started by rule `restart-payments` on target `payments`"
        ),
        "step `restart` started (log)".to_string(),
        "step `restart` succeeded".to_string(),
        format!("run {run_id} succeeded"),
        format!("rule `restart-payments` started run {run_id} on `payments`"),
    ] {
        assert!(
            summaries.contains(&expected),
            "no {expected:?} in {summaries:#?}"
        );
    }
    assert!(kinds(&shown).contains(&"mitigated".to_string()));
    assert_eq!(
        shown["context"]["runbooks"][0],
        json!({"runbook": "rule:restart-payments", "rule": "restart-payments"})
    );

    let (status, _, markdown) = api
        .call(get(
            &format!("/api/v1/incidents/{id}/postmortem"),
            Some(READ),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let markdown = markdown.as_str().unwrap_or_default();
    assert!(
        markdown.contains(&format!(
            "runbook `rule:restart-payments` (rule `restart-payments`), run `{run_id}`: succeeded"
        )),
        "{markdown}"
    );
}

#[tokio::test]
async fn silences_mute_matching_alerts_until_they_expire() {
    let api = Api::start("").await;
    let create = |body: Value| post("/api/v1/silences", Some(WRITE), body.to_string());

    // Bad silences name the field.
    for (body, code, named) in [
        (
            json!({"matchers": ["service"], "duration": "2h", "comment": "x"}),
            "invalid_silence",
            "matchers[0]",
        ),
        (
            json!({"matchers": [], "duration": "2h", "comment": "x"}),
            "invalid_silence",
            "matchers",
        ),
        (
            json!({"matchers": ["service=\"search\""], "comment": "x"}),
            "invalid_silence",
            "ends_at",
        ),
        (
            json!({"matchers": ["service=\"search\""], "duration": "2 hours", "comment": "x"}),
            "invalid_silence",
            "duration",
        ),
        (
            json!({"matchers": ["service=\"search\""], "duration": "2h", "comment": " "}),
            "invalid_silence",
            "comment",
        ),
        (
            json!({"matchers": ["service=\"search\""], "duration": "2h", "ends_at": "2099-01-01T00:00:00Z", "comment": "x"}),
            "invalid_silence",
            "duration",
        ),
        (
            json!({"matchers": ["service=\"search\""], "ends_at": "2001-01-01T00:00:00Z", "comment": "x"}),
            "invalid_silence",
            "ends_at",
        ),
        (
            json!({"matchers": ["service=\"search\""], "duration": "2h", "comment": "x", "createdBy": "me"}),
            "invalid_payload",
            "createdBy",
        ),
    ] {
        let (status, _, error) = api.call(create(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["code"], code, "{body}: {error}");
        assert!(
            message(&error).starts_with(named) || message(&error).contains(named),
            "{body}: {error}"
        );
    }
    let (status, _, error) = api
        .call(post(
            "/api/v1/silences",
            Some(READ),
            json!({"matchers": ["a=b"], "duration": "1h", "comment": "x"}).to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");

    // A silence, in force at once.
    let (status, headers, created) = api
        .call(create(json!({
            "matchers": ["service=\"search\""], "duration": "2h", "comment": "reindexing",
            "starts_at": "2001-01-01T00:00:00Z"
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let silence = &created["silence"];
    let id = silence["id"].as_str().expect("an id").to_string();
    assert_eq!(
        headers[header::LOCATION].to_str().ok(),
        Some(format!("/api/v1/silences/{id}").as_str())
    );
    assert_eq!(silence["state"], "active", "a start in the past is now");
    assert_eq!(silence["created_by"], "w");
    assert_eq!(silence["comment"], "reindexing");
    assert_eq!(silence["matchers"], json!(["service=\"search\""]));
    assert_ne!(silence["starts_at"], "2001-01-01T00:00:00Z");

    // It mutes `search`, not `checkout`.
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("search", &["IndexLag"], "firing"),
    )
    .await;
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("checkout", &["HighErrorRate"], "firing"),
    )
    .await;
    wait_incident(&api, "label=service=checkout", 1).await;
    let (_, _, listed) = api
        .call(get("/api/v1/incidents?label=service=search", Some(READ)))
        .await;
    assert_eq!(
        listed["incidents"],
        json!([]),
        "the silenced alert opened nothing"
    );

    let listed = |query: &'static str| {
        let api = &api;
        async move {
            let (status, _, listed) = api
                .call(get(&format!("/api/v1/silences{query}"), Some(READ)))
                .await;
            assert_eq!(status, StatusCode::OK, "{listed}");
            listed["silences"].as_array().cloned().unwrap_or_default()
        }
    };
    let silences = listed("").await;
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(silences[0]["state"], "active");
    let (status, _, one) = api
        .call(get(&format!("/api/v1/silences/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["silence"]["state"], "active");

    // Expired early, it mutes nothing more.
    let (status, _, error) = api
        .call(delete(&format!("/api/v1/silences/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let (status, _, expired) = api
        .call(delete(&format!("/api/v1/silences/{id}"), Some(WRITE)))
        .await;
    assert_eq!(status, StatusCode::OK, "{expired}");
    assert_eq!(expired["silence"]["state"], "expired");
    assert_eq!(expired["silence"]["expired_by"], "w");
    let (status, _, error) = api
        .call(delete(&format!("/api/v1/silences/{id}"), Some(WRITE)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["code"], "silence_expired");
    for (request, code) in [
        (
            delete("/api/v1/silences/nope", Some(WRITE)),
            "silence_not_found",
        ),
        (
            get("/api/v1/silences/nope", Some(READ)),
            "silence_not_found",
        ),
    ] {
        let (status, _, error) = api.call(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error["code"], code);
    }
    assert_eq!(listed("").await, Vec::<Value>::new());
    let all = listed("?expired=true").await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["state"], "expired");
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("search", &["IndexLag2"], "firing"),
    )
    .await;
    wait_incident(&api, "label=service=search", 1).await;

    // A silence that has not begun can be expired too.
    let (status, _, pending) = api
        .call(create(json!({
            "matchers": ["service=\"cart\""], "starts_at": "2099-01-01T00:00:00Z",
            "ends_at": "2099-01-02T00:00:00Z", "comment": "next year"
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pending}");
    assert_eq!(pending["silence"]["state"], "pending");
    let pending_id = pending["silence"]["id"].as_str().expect("an id");
    let (status, _, expired) = api
        .call(delete(
            &format!("/api/v1/silences/{pending_id}"),
            Some(WRITE),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{expired}");
    assert_eq!(expired["silence"]["state"], "expired");
}

#[tokio::test]
async fn the_incident_and_silence_endpoints_and_codes_are_documented() {
    let api = Api::start("").await;
    let (status, _, spec) = api.call(get("/api/v1/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    for (path, methods) in [
        ("/api/v1/incidents", &["get"][..]),
        ("/api/v1/incidents/{id}", &["get"]),
        ("/api/v1/incidents/{id}/ack", &["post"]),
        ("/api/v1/incidents/{id}/resolve", &["post"]),
        ("/api/v1/incidents/{id}/notes", &["post"]),
        ("/api/v1/incidents/{id}/postmortem", &["get"]),
        ("/api/v1/silences", &["get", "post"]),
        ("/api/v1/silences/{id}", &["get", "delete"]),
        ("/api/v1/rules/disabled", &["get"]),
        ("/api/v1/rules/{rule}/enable", &["post"]),
    ] {
        for method in methods {
            assert!(
                spec["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
    for schema in [
        "Incident",
        "Member",
        "TimelineItem",
        "IncidentContext",
        "Silence",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "no schema {schema}"
        );
    }
    let codes = &spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"];
    for code in [
        "incident_not_found",
        "incident_resolved",
        "already_acknowledged",
        "invalid_silence",
        "silence_not_found",
        "silence_expired",
        "rule_not_found",
        "rule_not_disabled",
    ] {
        assert!(
            codes
                .as_array()
                .is_some_and(|codes| codes.contains(&json!(code))),
            "{code} is not documented"
        );
    }
}

// The command line against the real daemon.

/// `homeostat ARGS` with the daemon's address and token in its environment; exit code, stdout,
/// stderr.
async fn cli(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(
        WITHIN,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
            .args(args)
            .env("HOMEOSTAT_SERVER", daemon.url(""))
            .env("HOMEOSTAT_TOKEN", TOKEN)
            .env_remove("HOMEOSTAT_CONFIG")
            .env("HOMEOSTAT_LOG", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("`homeostat {}` did not end", args.join(" ")))
    .expect("the homeostat binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_lists_shows_acknowledges_and_silences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path(), "cli", &base_config(dir.path(), "normal")).await;
    let response = daemon
        .client()
        .post(daemon.url("/api/v1/hooks/alertmanager"))
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .body(alerts("cart", &["CartErrors", "CartLatency"], "firing"))
        .send()
        .await
        .expect("the daemon answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let id = wait_for(
        "the incident",
        WITHIN,
        || async {
            let listed = daemon.get_json("/api/v1/incidents").await;
            let incident = listed["incidents"].get(0)?;
            (incident["members_total"] == 2).then(|| incident["id"].to_string())
        },
        || daemon.stderr_tail(),
    )
    .await;

    let (code, stdout, stderr) = cli(&daemon, &["incidents"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ID") && stdout.contains("open") && stdout.contains("{service=\"cart\"}"),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli(&daemon, &["incidents", "show", &id]).await;
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "members   2 (2 firing)",
        "CartErrors",
        "timeline",
        "opened",
        EXPR,
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }

    let (code, stdout, stderr) =
        cli(&daemon, &["incidents", "ack", &id, "--comment", "on it"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("acknowledged"), "{stdout}");
    let (code, _, stderr) = cli(&daemon, &["incidents", "ack", &id]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("already acknowledged by test"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&daemon, &["incidents", "note", &id, "cache", "flushed"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cli(&daemon, &["incidents", "show", "999"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no incident has the id `999`"), "{stderr}");

    let (code, markdown, stderr) = cli(&daemon, &["postmortem", &id]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        markdown.contains(&format!("# Postmortem: incident {id}"))
            && markdown.contains("## Timeline")
            && markdown.contains("test: cache flushed"),
        "{markdown}"
    );
    let file = dir.path().join("postmortem.md");
    let file_arg = file.display().to_string();
    let (code, stdout, stderr) = cli(&daemon, &["postmortem", &id, "--output", &file_arg]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let written = std::fs::read_to_string(&file).expect("the draft is written");
    assert!(written.contains("## Timeline"), "{written}");

    // Silences.
    let (code, _, stderr) = cli(&daemon, &["silence", "add", "service", "--comment", "x"]).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("matchers[0]"), "{stderr}");
    let (code, stdout, stderr) = cli(
        &daemon,
        &[
            "silence",
            "add",
            "service=\"cart\"",
            "severity=~\"warn|page\"",
            "--comment",
            "migration",
            "--duration",
            "2h",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let silence = stdout.trim().to_string();
    assert!(!silence.is_empty(), "no id printed: {stderr}");
    assert!(stderr.contains("homeostat silence expire"), "{stderr}");
    let (code, stdout, stderr) = cli(&daemon, &["silence", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&silence) && stdout.contains("active") && stdout.contains("migration"),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli(&daemon, &["silence", "expire", &silence]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("expired"), "{stdout}");
    let (code, _, stderr) = cli(&daemon, &["silence", "expire", &silence]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already expired"), "{stderr}");
    let (code, stdout, _) = cli(&daemon, &["silence", "list"]).await;
    assert_eq!(code, 0);
    assert!(!stdout.contains(&silence), "{stdout}");
    let (code, stdout, _) = cli(&daemon, &["silence", "list", "--expired"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&silence) && stdout.contains("expired"),
        "{stdout}"
    );

    let (code, stdout, stderr) = cli(&daemon, &["incidents", "resolve", &id]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("resolved"), "{stdout}");
    let (code, stdout, stderr) = cli(&daemon, &["incidents", "--open"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("no open incidents"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains(TOKEN));

    // No rule looped, so none is disabled, and an unknown one cannot be enabled.
    let (code, stdout, stderr) = cli(&daemon, &["rules", "disabled"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("no rule is disabled"),
        "{stdout}{stderr}"
    );
    let (code, stdout, stderr) = cli(&daemon, &["rules", "disabled", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "[]");
    let (code, _, stderr) = cli(
        &daemon,
        &["rules", "enable", "no-such-rule", "--target", "cart"],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no rule is named `no-such-rule`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_rule_disabled_by_loop_detection_is_listed_and_enabled_again() {
    let api = Api::start(
        r#"
incidents: {sweep_secs: 1}
rules:
  - name: restart-orders
    match: ['service="orders"']
    on_incident: [opened, escalated]
    target: "{{ labels.service }}"
    verify: {within_secs: 1}
    guards: {loop: {runs: 1, window_secs: 3600}, cooldown_secs: 0}
    steps:
      - {name: restart, action: log, with: {message: "restarting {{ labels.service }}"}}
"#,
    )
    .await;
    let (status, _, listed) = api.call(get("/api/v1/rules/disabled", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!({"disabled": []}));

    // The alert never resolves: the run succeeds, verification fails after a second, the incident
    // escalates, and the rule's second run on `orders` is a loop, so it is stopped and disabled.
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("orders", &["OrdersDown"], "firing"),
    )
    .await;
    let pair = json!({"rule": "restart-orders", "target": "orders"});
    wait_for(
        "loop detection to disable the rule for `orders`",
        WITHIN,
        || async {
            let (status, _, listed) = api.call(get("/api/v1/rules/disabled", Some(READ))).await;
            assert_eq!(status, StatusCode::OK, "{listed}");
            (listed["disabled"] == json!([pair])).then_some(())
        },
        String::new,
    )
    .await;

    let enable = |rule: &str, target: &str| {
        post(
            &format!("/api/v1/rules/{rule}/enable"),
            Some(WRITE),
            json!({ "target": target }).to_string(),
        )
    };
    let (status, _, error) = api
        .call(post(
            "/api/v1/rules/restart-orders/enable",
            Some(READ),
            json!({"target": "orders"}).to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let (status, _, enabled) = api.call(enable("restart-orders", "orders")).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(
        enabled,
        json!({"rule": "restart-orders", "target": "orders", "enabled": true})
    );
    // The list is published after the command's commit, which is before the call returns.
    let (status, _, listed) = api.call(get("/api/v1/rules/disabled", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!({"disabled": []}));

    let (status, _, error) = api.call(enable("restart-orders", "orders")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["code"], "rule_not_disabled");
    assert!(
        message(&error).contains("rule `restart-orders` is not disabled for `orders`"),
        "{error}"
    );
    let (status, _, error) = api.call(enable("no-such-rule", "orders")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error["code"], "rule_not_found");
    let (status, _, error) = api
        .call(post(
            "/api/v1/rules/restart-orders/enable",
            Some(WRITE),
            json!({"target": " "}).to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "invalid_payload");
}

#[tokio::test]
async fn a_verification_check_that_holds_verifies_the_fix_before_the_alerts_resolve() {
    // The service's health endpoint answers 200 once the fix is in; the alert lags behind.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let _ = axum::serve(listener, app).await;
    });
    let api = Api::start(&format!(
        r#"
incidents: {{sweep_secs: 1}}
rules:
  - name: restart-cart
    match: ['service="cart"']
    on_incident: [opened]
    target: "{{{{ labels.service }}}}"
    verify:
      within_secs: 2
      check: {{http: {{url: "http://{address}/healthz"}}}}
    steps:
      - {{name: restart, action: log, with: {{message: "restarting cart"}}}}
"#
    ))
    .await;
    send(
        &api,
        "/api/v1/hooks/alertmanager",
        alerts("cart", &["CartDown"], "firing"),
    )
    .await;
    let incident = wait_incident(&api, "open=true", 1).await;
    let id = incident["id"].clone();
    let shown = wait_for(
        "the verification check to verify the fix",
        WITHIN,
        || async {
            let shown = show(&api, &id).await;
            kinds(&shown)
                .iter()
                .any(|kind| kind == "verified")
                .then_some(shown)
        },
        String::new,
    )
    .await;
    assert!(
        summaries(&shown)
            .iter()
            .any(|summary| summary.contains(&format!("GET http://{address}/healthz holds"))),
        "{shown:#}"
    );
    // Past the deadline: a verified fix does not escalate, though the alert still fires.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = show(&api, &id).await;
    assert!(
        !kinds(&shown).iter().any(|kind| kind == "escalated"),
        "{shown:#}"
    );
    assert_eq!(shown["incident"]["escalated"], false, "{shown:#}");
    assert_eq!(shown["incident"]["state"], "mitigated", "{shown:#}");
}
