//! Runbooks by hand: listing, starting, approving, cancelling and following runs through the API in
//! process (`oneshot`), then the same through the `homeostat` command line against the real daemon.

use std::process::Stdio;
use std::time::Duration;

use axum::http::{header, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tower::ServiceExt;

use crate::api::{get, post, Api, READ, WRITE, WRITE2};
use crate::support::{base_config, wait_for, Daemon, TOKEN};

/// How long a run gets to reach a state; runs of `log` steps take milliseconds.
const WITHIN: Duration = Duration::from_secs(15);

/// `w` is the write token's name in the in-process config.
const RUNBOOKS: &str = r#"
runbooks:
  - name: greet
    description: Say hello.
    params:
      who: {type: string, required: true, description: whom to greet}
      times: {type: integer, default: 1}
      mode: {default: soft, allowed: [soft, hard]}
    steps:
      - {name: hello, action: log, with: {message: "hello {{ params.who }}"}}
      - {name: again, action: log, with: {message: "again x{{ params.times }} ({{ params.mode }})"}}
  - name: gated
    steps:
      - name: prepare
        action: log
        with: {message: prepared}
        rollback: {name: unprepare, action: log, with: {message: undone}}
      - name: ok
        approval: {approvers: [w], message: "apply it?"}
      - {name: apply, action: log, with: {message: applied}}
  - name: guarded
    steps:
      - name: ok
        approval: {approvers: [alice]}
  - name: four-eyes
    params:
      service: {type: string, default: api}
    steps:
      - name: ok
        approval: {approvers: [w, w2], message: "restart {{ params.service }}?", distinct_from_starter: true}
        timeout_secs: 600
      - {name: restart, action: exec, with: {command: [systemctl, restart, "{{ params.service }}"]}}
  - name: settle
    steps:
      - name: healthy
        wait:
          until: {http: {url: "http://127.0.0.1:1/health"}}
          interval_secs: 0.05
        timeout_secs: 600
"#;

fn start_body(params: Value) -> String {
    json!({ "params": params }).to_string()
}

/// Starts `runbook` as the write token; the new run's id.
async fn start(api: &Api, runbook: &str, body: String) -> String {
    let (status, headers, answer) = api
        .call(post(
            &format!("/api/v1/runbooks/{runbook}/runs"),
            Some(WRITE),
            body,
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = answer["run_id"].as_str().expect("a run id").to_string();
    assert_eq!(
        headers[header::LOCATION].to_str().ok(),
        Some(format!("/api/v1/runs/{id}").as_str())
    );
    id
}

async fn show_run(api: &Api, id: &str) -> Value {
    let (status, _, run) = api
        .call(get(&format!("/api/v1/runs/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    run
}

/// Waits until run `id` has `status`; the run as `GET /api/v1/runs/{id}` shows it.
async fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    wait_for(
        &format!("run `{id}` to be `{status}`"),
        WITHIN,
        || async {
            let run = show_run(api, id).await;
            (run["run"]["status"] == status).then_some(run)
        },
        String::new,
    )
    .await
}

/// Waits until run `id` waits for an approval; the run.
async fn wait_approval(api: &Api, id: &str) -> Value {
    wait_for(
        &format!("run `{id}` to wait for an approval"),
        WITHIN,
        || async {
            let run = show_run(api, id).await;
            let waiting = run["pending_approvals"]
                .as_array()
                .is_some_and(|pending| !pending.is_empty());
            waiting.then_some(run)
        },
        String::new,
    )
    .await
}

fn step<'a>(run: &'a Value, path: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().rev().find(|step| step["step"] == path))
        .unwrap_or_else(|| panic!("no step `{path}` in {run:#}"))
}

#[tokio::test]
async fn runbooks_are_listed_and_shown() {
    let api = Api::start(RUNBOOKS).await;
    let (status, _, listed) = api.call(get("/api/v1/runbooks", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let names: Vec<&str> = listed["runbooks"]
        .as_array()
        .expect("runbooks")
        .iter()
        .filter_map(|runbook| runbook["name"].as_str())
        .collect();
    assert_eq!(names, ["four-eyes", "gated", "greet", "guarded", "settle"]);
    let greet = &listed["runbooks"][2];
    assert_eq!(greet["description"], "Say hello.");
    assert_eq!(greet["steps"], json!(["hello", "again"]));
    assert_eq!(
        greet["params"]["who"],
        json!({"type": "string", "required": true, "default": null, "allowed": [], "description": "whom to greet"})
    );
    assert_eq!(greet["params"]["times"]["default"], 1);
    assert_eq!(greet["params"]["mode"]["allowed"], json!(["soft", "hard"]));

    let (status, _, shown) = api.call(get("/api/v1/runbooks/gated", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["runbook"]["name"], "gated");
    assert_eq!(
        shown["runbook"]["steps"][0]["rollback"]["name"],
        "unprepare"
    );
    assert_eq!(
        shown["runbook"]["steps"][1]["approval"]["approvers"],
        json!(["w"])
    );

    let (status, _, error) = api.call(get("/api/v1/runbooks/nope", Some(READ))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "runbook_not_found");
    let (status, _, error) = api.call(get("/api/v1/runbooks", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["code"], "missing_token");
}

#[tokio::test]
async fn a_started_runbook_succeeds_and_records_who_started_it() {
    let api = Api::start(RUNBOOKS).await;
    let (status, _, answer) = api
        .call(post(
            "/api/v1/runbooks/greet/runs",
            Some(WRITE),
            json!({"params": {"who": "ops", "times": "3"}, "target": "api-1"}).to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"], "running");
    assert_eq!(answer["dry_run"], false);
    assert_eq!(answer["target"], "api-1");
    let id = answer["run_id"].as_str().expect("a run id");

    let run = wait_status(&api, id, "succeeded").await;
    assert_eq!(run["run"]["runbook"], "greet");
    assert_eq!(run["run"]["started_by"], "w");
    assert_eq!(run["run"]["rule"], "");
    assert_eq!(run["end"]["status"], "succeeded");
    assert_eq!(run["pending_approvals"], json!([]));
    let hello = step(&run, "hello");
    assert_eq!(hello["action"], "log");
    assert_eq!(hello["attempt"], 1);
    assert_eq!(hello["status"], "succeeded");
    assert_eq!(hello["inputs"]["message"], "hello ops");
    assert_eq!(hello["output"]["message"], "hello ops");
    assert!(hello["finished_at"].is_string(), "{hello}");
    assert_eq!(step(&run, "again")["inputs"]["message"], "again x3 (soft)");

    // Starting needs the write scope.
    let (status, _, error) = api
        .call(post(
            "/api/v1/runbooks/greet/runs",
            Some(READ),
            start_body(json!({"who": "ops"})),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "forbidden_scope");
}

#[tokio::test]
async fn bad_params_and_unknown_runbooks_are_refused_with_their_codes() {
    let api = Api::start(RUNBOOKS).await;
    for (params, named) in [
        (json!({}), "`who`"),
        (json!({"who": "ops", "times": "many"}), "`times`"),
        (json!({"who": "ops", "mode": "fast"}), "`mode`"),
        (json!({"who": "ops", "color": "red"}), "`color`"),
    ] {
        let (status, _, error) = api
            .call(post(
                "/api/v1/runbooks/greet/runs",
                Some(WRITE),
                start_body(params.clone()),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params}: {error}");
        assert_eq!(error["code"], "invalid_param", "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{params}: {message}");
    }

    let (status, _, error) = api
        .call(post("/api/v1/runbooks/nope/runs", Some(WRITE), "{}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "runbook_not_found");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`nope`") && message.contains("`greet`"),
        "{message}"
    );

    let (status, _, error) = api
        .call(post(
            "/api/v1/runbooks/greet/runs",
            Some(WRITE),
            r#"{"parms": {}}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "invalid_payload");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("parms"),
        "{error}"
    );
}

#[tokio::test]
async fn a_dry_run_renders_every_step_and_executes_nothing() {
    let api = Api::start(RUNBOOKS).await;
    let (status, _, answer) = api
        .call(post(
            "/api/v1/runbooks/greet/runs",
            Some(WRITE),
            json!({"params": {"who": "ops"}, "dry_run": true}).to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"], "dry_run");
    let run = show_run(&api, answer["run_id"].as_str().expect("a run id")).await;
    assert_eq!(run["run"]["status"], "dry_run");
    let hello = step(&run, "hello");
    assert_eq!(hello["status"], "dry_run");
    assert_eq!(hello["inputs"]["message"], "hello ops");
    assert!(hello["output"].is_null(), "{hello}");
}

#[tokio::test]
async fn an_approved_run_goes_on_and_succeeds() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "gated", "{}".into()).await;
    let run = wait_approval(&api, &id).await;
    assert_eq!(run["run"]["status"], "running");
    assert_eq!(run["end"], Value::Null);
    let pending = &run["pending_approvals"][0];
    assert_eq!(pending["step"], "ok");
    assert_eq!(pending["approvers"], json!(["w"]));
    assert_eq!(pending["message"], "apply it?");
    assert_eq!(step(&run, "ok")["status"], "waiting");

    let approval = format!("/api/v1/runs/{id}/approval");
    let (status, _, error) = api
        .call(post(
            &approval,
            Some(WRITE),
            r#"{"approve": true, "step": "apply"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["code"], "no_approval_waiting");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`ok`"),
        "{error}"
    );

    let (status, _, answer) = api
        .call(post(
            &approval,
            Some(WRITE),
            r#"{"approve": true, "comment": "lgtm"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"run_id": id, "step": "ok", "approved": true, "by": "w"})
    );
    let run = wait_status(&api, &id, "succeeded").await;
    let ok = step(&run, "ok");
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["outputs"]["by"], "w");
    assert_eq!(ok["outputs"]["comment"], "lgtm");
    assert_eq!(step(&run, "apply")["status"], "succeeded");

    let (status, _, error) = api
        .call(post(&approval, Some(WRITE), r#"{"approve": true}"#))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["code"], "run_not_running");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("succeeded"),
        "{error}"
    );
    let (status, _, error) = api
        .call(post(&approval, Some(WRITE), r#"{"approved": true}"#))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "invalid_payload");
}

#[tokio::test]
async fn a_rejected_run_rolls_back_what_it_did_and_ends_rejected_saying_who_and_why() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "gated", String::new()).await;
    wait_approval(&api, &id).await;
    let (status, _, answer) = api
        .call(post(
            &format!("/api/v1/runs/{id}/approval"),
            Some(WRITE),
            r#"{"approve": false, "comment": "not now"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["approved"], false);
    let run = wait_for(
        "the rejected run to end",
        WITHIN,
        || async {
            let run = show_run(&api, &id).await;
            (run["run"]["status"] != "running").then_some(run)
        },
        String::new,
    )
    .await;
    assert_eq!(run["run"]["status"], "rejected", "{run:#}");
    assert_eq!(run["end"]["status"], "rejected", "{run:#}");
    assert_eq!(
        run["end"]["rejected"],
        json!({"step": "ok", "by": "w", "comment": "not now"})
    );
    assert_eq!(
        run["run"]["error"], "step `ok` rejected by `w`: not now",
        "{run:#}"
    );
    assert_eq!(run["end"]["undone"], json!(["prepare"]));
    let ok = step(&run, "ok");
    assert_eq!(ok["status"], "rejected");
    assert!(
        ok["error"].as_str().unwrap_or_default().contains("not now"),
        "{ok}"
    );
    assert_eq!(step(&run, "prepare.rollback")["status"], "succeeded");
    assert!(
        run["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().all(|step| step["step"] != "apply")),
        "{run:#}"
    );
}

#[tokio::test]
async fn only_named_approvers_may_approve_and_a_parked_run_can_be_cancelled() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "guarded", String::new()).await;
    wait_approval(&api, &id).await;
    let approval = format!("/api/v1/runs/{id}/approval");
    let (status, _, error) = api
        .call(post(&approval, Some(WRITE), r#"{"approve": true}"#))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["code"], "not_an_approver");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("alice"),
        "{error}"
    );
    let (status, _, error) = api
        .call(post(&approval, Some(READ), r#"{"approve": true}"#))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "forbidden_scope");

    let cancel = format!("/api/v1/runs/{id}/cancel");
    let (status, _, answer) = api.call(post(&cancel, Some(WRITE), "")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "cancelling");
    let run = wait_status(&api, &id, "cancelled").await;
    assert_eq!(run["end"]["status"], "cancelled");
    assert_eq!(run["pending_approvals"], json!([]));

    let (status, _, error) = api.call(post(&cancel, Some(WRITE), "")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["code"], "run_not_running");
    let (status, _, error) = api
        .call(post("/api/v1/runs/nope/cancel", Some(WRITE), ""))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "not_found");
}

#[tokio::test]
async fn cancelling_a_run_waiting_for_approval_ends_it_cancelled() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "gated", String::new()).await;
    wait_approval(&api, &id).await;
    let (status, _, answer) = api
        .call(post(
            &format!("/api/v1/runs/{id}/cancel"),
            Some(WRITE),
            "{}",
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run = wait_status(&api, &id, "cancelled").await;
    assert!(
        run["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().all(|step| step["step"] != "apply")),
        "{run:#}"
    );
}

/// One Server-Sent Event as the test reads it.
#[derive(Debug)]
struct Sse {
    event: String,
    id: i64,
    data: Value,
}

fn parse_sse(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = String::new();
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().parse().ok();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            Some(Sse {
                event,
                id: id?,
                data: serde_json::from_str(&data).ok()?,
            })
        })
        .collect()
}

/// Reads a log stream to its end, or panics after `WITHIN`.
async fn read_body(body: axum::body::Body) -> String {
    let body = tokio::time::timeout(WITHIN, body.collect())
        .await
        .expect("the log stream ends after `run_finished`")
        .expect("the log stream reads")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn run_logs_stream_every_entry_through_run_finished() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "gated", String::new()).await;
    wait_approval(&api, &id).await;
    let logs = format!("/api/v1/runs/{id}/logs");
    let response = api
        .router
        .clone()
        .oneshot(get(&logs, Some(READ)))
        .await
        .expect("router answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE].to_str().ok(),
        Some("text/event-stream")
    );
    // The stream sends what is journaled, then stays open while the run waits; read up to the
    // approval step's start, answer it, and the rest arrives live.
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains(r#""action":"approval""#) {
        let frame = tokio::time::timeout(WITHIN, body.frame())
            .await
            .expect("the approval step's start is streamed")
            .expect("the stream stays open while the run waits")
            .expect("the stream reads");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let (status, _, answer) = api
        .call(post(
            &format!("/api/v1/runs/{id}/approval"),
            Some(WRITE),
            r#"{"approve": true}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    text.push_str(&read_body(body).await);
    let events = parse_sse(&text);
    let kinds: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{text}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{text}");
    for kind in ["step_started", "step_finished", "step_ended", "run_input"] {
        assert!(kinds.contains(&kind), "no `{kind}` in {kinds:?}");
    }
    assert!(
        events.windows(2).all(|pair| pair[0].id < pair[1].id),
        "ids increase: {text}"
    );
    for event in &events {
        assert_eq!(event.data["seq"], event.id, "{text}");
        assert_eq!(event.data["kind"], event.event.as_str(), "{text}");
        assert_eq!(event.data["run_id"], id.as_str(), "{text}");
    }
    assert_eq!(
        events.last().map(|e| &e.data["body"]["status"]),
        Some(&json!("succeeded"))
    );

    // After the end, the stream replays everything at once and ends; `Last-Event-ID` resumes.
    let response = api
        .router
        .clone()
        .oneshot(get(&logs, Some(READ)))
        .await
        .expect("router answers");
    let again = parse_sse(&read_body(response.into_body()).await);
    assert_eq!(again.len(), events.len());
    let middle = events[events.len() / 2].id;
    let mut request = get(&logs, Some(READ));
    request.headers_mut().insert(
        "last-event-id",
        middle.to_string().parse().expect("a header"),
    );
    let response = api
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let resumed = parse_sse(&read_body(response.into_body()).await);
    assert!(
        !resumed.is_empty() && resumed.iter().all(|event| event.id > middle),
        "{resumed:?}"
    );
    assert_eq!(
        resumed.last().map(|e| e.event.as_str()),
        Some("run_finished")
    );

    let (status, _, error) = api.call(get("/api/v1/runs/nope/logs", Some(READ))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "not_found");
}

#[tokio::test]
async fn the_runbook_endpoints_and_codes_are_documented() {
    let api = Api::start("").await;
    let (status, _, spec) = api.call(get("/api/v1/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/runbooks",
        "/api/v1/runbooks/{name}",
        "/api/v1/runbooks/{name}/runs",
        "/api/v1/runs/{id}/approval",
        "/api/v1/runs/{id}/cancel",
        "/api/v1/runs/{id}/logs",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is not documented");
    }
    let codes = &spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"];
    for code in [
        "invalid_param",
        "runbook_not_found",
        "run_not_running",
        "no_approval_waiting",
        "not_an_approver",
    ] {
        assert!(
            codes
                .as_array()
                .is_some_and(|codes| codes.contains(&json!(code))),
            "{code} is not documented"
        );
    }
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    for code in homeostat_api::error::Code::ALL {
        let anchor = format!("<a id=\"{}\"></a>", code.as_str().replace('_', "-"));
        assert!(docs.contains(&anchor), "docs/api.md lacks {anchor}");
    }
}

#[tokio::test]
async fn an_approval_shows_who_may_answer_what_and_until_when_and_refuses_the_starter() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "four-eyes", String::new()).await;
    let run = wait_approval(&api, &id).await;
    let pending = &run["pending_approvals"][0];
    assert_eq!(pending["step"], "ok");
    assert_eq!(pending["approvers"], json!(["w", "w2"]));
    assert_eq!(pending["message"], "restart api?");
    assert_eq!(pending["distinct_from_starter"], true);
    assert_eq!(pending["started_by"], "w");
    let started: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(run["run"]["started_at"].clone()).expect("a start time");
    let deadline: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(pending["deadline"].clone()).expect("a deadline");
    let waits = (deadline - started).num_seconds();
    assert!((599..=601).contains(&waits), "{deadline} - {started}");
    let ok = step(&run, "ok");
    assert_eq!(ok["status"], "waiting");
    assert_eq!(
        ok["summary"],
        "ask `w`, `w2` to approve, not `w`, who started the run: restart api?"
    );

    // The token that started the run may not answer it, yes or no.
    let approval = format!("/api/v1/runs/{id}/approval");
    for answer in [r#"{"approve": true}"#, r#"{"approve": false}"#] {
        let (status, _, error) = api.call(post(&approval, Some(WRITE), answer)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
        assert_eq!(error["code"], "approver_is_starter");
        assert_eq!(error["type"], "auth");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`w` started run")
                && message.contains("`distinct_from_starter`")
                && message.contains("ask another approver"),
            "{message}"
        );
    }
    assert_eq!(show_run(&api, &id).await["run"]["status"], "running");

    // Someone else may, and a rejection ends the run `rejected` with who and why.
    let (status, _, answer) = api
        .call(post(
            &approval,
            Some(WRITE2),
            r#"{"approve": false, "comment": "not during the sale"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["by"], "w2");
    let run = wait_status(&api, &id, "rejected").await;
    assert_eq!(
        run["end"]["rejected"],
        json!({"step": "ok", "by": "w2", "comment": "not during the sale"})
    );
    assert_eq!(run["pending_approvals"], json!([]));
    assert_eq!(step(&run, "ok")["status"], "rejected");
    assert!(
        run["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().all(|step| step["step"] != "restart")),
        "{run:#}"
    );
    let (status, _, error) = api
        .call(post(&approval, Some(WRITE2), r#"{"approve": true}"#))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("it is `rejected`"),
        "{error}"
    );
    let (status, _, listed) = api
        .call(get("/api/v1/runs?status=rejected", Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["runs"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_dry_run_shows_what_each_step_would_have_run() {
    let api = Api::start(RUNBOOKS).await;
    let (status, _, answer) = api
        .call(post(
            "/api/v1/runbooks/four-eyes/runs",
            Some(WRITE),
            r#"{"params": {"service": "checkout"}, "dry_run": true}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"], "dry_run");
    let run = show_run(&api, answer["run_id"].as_str().expect("an id")).await;
    assert_eq!(run["run"]["status"], "dry_run", "{run:#}");
    let restart = step(&run, "restart");
    assert_eq!(restart["status"], "dry_run");
    assert_eq!(
        restart["inputs"],
        json!({"command": ["systemctl", "restart", "checkout"]})
    );
    assert_eq!(restart["summary"], "run `systemctl restart checkout`");
    assert_eq!(
        step(&run, "ok")["summary"],
        "ask `w`, `w2` to approve, not `w`, who started the run: restart checkout?"
    );
}

#[tokio::test]
async fn a_polling_wait_shows_waiting_with_its_polls_and_what_it_last_saw() {
    let api = Api::start(RUNBOOKS).await;
    let id = start(&api, "settle", String::new()).await;
    let run = wait_for(
        "the wait to have polled three times",
        WITHIN,
        || async {
            let run = show_run(&api, &id).await;
            // The step may not have started yet: no record is not a failure, only not yet.
            let polls = run["steps"].as_array().and_then(|steps| {
                steps
                    .iter()
                    .rev()
                    .find(|step| step["step"] == "healthy")
                    .and_then(|step| step["polls"].as_u64())
            });
            (polls >= Some(3)).then_some(run)
        },
        String::new,
    )
    .await;
    let healthy = step(&run, "healthy");
    assert_eq!(healthy["status"], "waiting", "{run:#}");
    assert_eq!(run["run"]["status"], "running");
    assert_eq!(healthy["last_poll"]["status"], "failed");
    assert!(
        healthy["last_poll"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("http://127.0.0.1:1/health"),
        "{healthy}"
    );
    assert_eq!(
        healthy["summary"],
        "wait until GET http://127.0.0.1:1/health answers 2xx, for up to 600 s"
    );
    // One step however many polls: a poll is not a step of its own.
    let records = run["steps"].as_array().map(|steps| {
        steps
            .iter()
            .filter(|step| step["step"] == "healthy")
            .count()
    });
    assert_eq!(records, Some(1), "{run:#}");
    let (status, _, answer) = api
        .call(post(&format!("/api/v1/runs/{id}/cancel"), Some(WRITE), ""))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run = wait_status(&api, &id, "cancelled").await;
    assert_eq!(step(&run, "healthy")["status"], "cancelled");
}

// The command line against the real daemon.

/// The daemon's token is named `test` (see `support::base_config`).
fn cli_config(dir: &std::path::Path) -> String {
    format!(
        "{}\
runbooks:
  - name: gated
    params:
      tag: {{type: string, required: true}}
    steps:
      - name: prepare
        action: log
        with: {{message: \"prepare {{{{ params.tag }}}}\"}}
        rollback: {{name: unprepare, action: log, with: {{message: undone}}}}
      - name: ok
        approval: {{approvers: [test], message: \"apply {{{{ params.tag }}}}?\"}}
      - {{name: apply, action: exec, with: {{command: [/bin/sh, -c, \"echo applied {{{{ params.tag }}}}\"]}}}}
",
        base_config(dir, "normal")
    )
}

/// `homeostat ARGS` with the daemon's address and token in its environment, as a user would set them.
fn cli(daemon: &Daemon, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"));
    command
        .args(args)
        .env("HOMEOSTAT_SERVER", daemon.url(""))
        .env("HOMEOSTAT_TOKEN", TOKEN)
        .env_remove("HOMEOSTAT_CONFIG")
        .env("HOMEOSTAT_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs a short CLI command to its end: exit code, stdout, stderr.
async fn cli_output(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(WITHIN, cli(daemon, args).output())
        .await
        .unwrap_or_else(|_| panic!("`homeostat {}` did not end", args.join(" ")))
        .expect("the homeostat binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts `homeostat runbook run gated --follow` and reads the run id it prints first; the child
/// with the rest of its stdout still to read.
async fn follow_gated(
    daemon: &Daemon,
    tag: &str,
) -> (
    tokio::process::Child,
    String,
    BufReader<tokio::process::ChildStdout>,
) {
    let param = format!("tag={tag}");
    let mut child = cli(
        daemon,
        &["runbook", "run", "gated", "--param", &param, "--follow"],
    )
    .spawn()
    .expect("the homeostat binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    tokio::time::timeout(WITHIN, stdout.read_line(&mut first))
        .await
        .expect("the run id is printed")
        .expect("stdout reads");
    let run_id = first.trim().to_string();
    assert!(!run_id.is_empty(), "no run id printed");
    (child, run_id, stdout)
}

/// Waits for a following CLI to end: its exit code, the rest of its stdout, and its stderr.
async fn finish(
    mut child: tokio::process::Child,
    mut stdout: BufReader<tokio::process::ChildStdout>,
) -> (i32, String, String) {
    let mut rest = String::new();
    let mut stderr = String::new();
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let status = tokio::time::timeout(WITHIN, async {
        let (out, err) = tokio::join!(
            stdout.read_to_string(&mut rest),
            stderr_pipe.read_to_string(&mut stderr)
        );
        out.expect("stdout reads");
        err.expect("stderr reads");
        child.wait().await.expect("the child is reaped")
    })
    .await
    .expect("`runbook run --follow` ends with the run");
    (status.code().unwrap_or(-1), rest, stderr)
}

async fn wait_pending(daemon: &Daemon, run_id: &str) {
    wait_for(
        "the run to wait for its approval",
        WITHIN,
        || async {
            let run = daemon.get_json(&format!("/api/v1/runs/{run_id}")).await;
            run["pending_approvals"]
                .as_array()
                .is_some_and(|pending| !pending.is_empty())
                .then_some(())
        },
        || daemon.stderr_tail(),
    )
    .await;
}

#[tokio::test]
async fn the_cli_starts_follows_and_approves_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path(), "cli", &cli_config(dir.path())).await;

    let (code, stdout, stderr) = cli_output(&daemon, &["runbook", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("gated") && stdout.contains("tag: string (required)"),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli_output(&daemon, &["runbook", "show", "gated"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1. prepare  log"), "{stdout}");
    assert!(stdout.contains("rollback:"), "{stdout}");
    assert!(stdout.contains("2. ok  approval by test"), "{stdout}");

    let (follower, run_id, stdout) = follow_gated(&daemon, "v1").await;
    wait_pending(&daemon, &run_id).await;
    let (code, approved, stderr) =
        cli_output(&daemon, &["approve", &run_id, "--comment", "ship it"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(approved.contains("approved step `ok`"), "{approved}");
    let (code, followed, stderr) = finish(follower, stdout).await;
    assert_eq!(code, 0, "{followed}\n{stderr}\n{}", daemon.stderr_tail());
    for expected in ["prepare", "waiting", "apply v1?", "succeeded"] {
        assert!(
            followed.contains(expected),
            "no `{expected}` in:\n{followed}"
        );
    }
    assert!(
        stderr.contains(&format!("homeostat approve {run_id}")),
        "the follower says how to approve:\n{stderr}"
    );
    assert!(!followed.contains(TOKEN) && !stderr.contains(TOKEN));

    // `runs show` reads the database: each step with its action, status and output.
    let (code, shown, stderr) = cli_output(&daemon, &["runs", "show", &run_id]).await;
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "runbook    gated",
        "started by test",
        "apply",
        "exec",
        "applied v1",
        "\"comment\":\"ship it\"",
    ] {
        assert!(shown.contains(expected), "no `{expected}` in:\n{shown}");
    }
    let (code, listed, stderr) = cli_output(&daemon, &["runs"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(listed.contains(&run_id), "{listed}");

    // A finished run takes no answer; an unknown one is not there; a daemon that is not there is an error.
    let (code, _, stderr) = cli_output(&daemon, &["approve", &run_id]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("succeeded"),
        "{stderr}"
    );
    let (code, _, stderr) = cli_output(&daemon, &["runs", "cancel", "nope"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no run has the id `nope`"), "{stderr}");
    let (code, _, stderr) = cli_output(
        &daemon,
        &["approve", &run_id, "--server", "http://127.0.0.1:1"],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot reach the daemon"), "{stderr}");
    let (code, _, stderr) = cli_output(&daemon, &["runbook", "run", "gated"]).await;
    assert_eq!(code, 64, "a missing param is a usage error: {stderr}");
    assert!(stderr.contains("`tag`"), "{stderr}");
}

#[tokio::test]
async fn the_cli_follow_fails_when_the_run_is_rejected_or_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path(), "cli", &cli_config(dir.path())).await;

    let (follower, run_id, stdout) = follow_gated(&daemon, "v2").await;
    wait_pending(&daemon, &run_id).await;
    let (code, rejected, stderr) = cli_output(&daemon, &["approve", &run_id, "--reject"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(rejected.contains("rejected step `ok`"), "{rejected}");
    let (code, followed, stderr) = finish(follower, stdout).await;
    assert_eq!(code, 1, "{followed}\n{stderr}");
    assert!(followed.contains("rejected"), "{followed}");
    assert!(followed.contains("undone: prepare"), "{followed}");
    // `runs show` says the run was rejected, by whom, at which step, and what was undone.
    let (code, shown, stderr) = cli_output(&daemon, &["runs", "show", &run_id]).await;
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "status     rejected",
        "rejected   by `test` at step `ok`",
        "undone     prepare",
    ] {
        assert!(shown.contains(expected), "no `{expected}` in:\n{shown}");
    }

    let (follower, run_id, stdout) = follow_gated(&daemon, "v3").await;
    wait_pending(&daemon, &run_id).await;
    let (code, cancelled, stderr) = cli_output(&daemon, &["runs", "cancel", &run_id]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(cancelled.contains("cancelling"), "{cancelled}");
    let (code, followed, stderr) = finish(follower, stdout).await;
    assert_eq!(code, 1, "{followed}\n{stderr}");
    assert!(followed.contains("cancelled"), "{followed}");
}

#[tokio::test]
async fn the_cli_prints_a_dry_run_s_rendered_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path(), "cli", &cli_config(dir.path())).await;
    let (code, stdout, stderr) = cli_output(
        &daemon,
        &[
            "runbook",
            "run",
            "gated",
            "-p",
            "tag=v9",
            "--dry-run",
            "--follow",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("prepare v9"), "{stdout}");
    assert!(stdout.contains("echo applied v9"), "{stdout}");
    assert!(stdout.contains("dry_run"), "{stdout}");

    // `runs show` of the dry run says what each step would have run, as the dry run rendered it.
    let run_id = stdout.lines().next().unwrap_or_default().trim().to_string();
    let (code, shown, stderr) = cli_output(&daemon, &["runs", "show", &run_id]).await;
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "status     dry_run (dry run)",
        "prepare: would log: prepare v9",
        "ok: would ask `test` to approve: apply v9?",
        "apply: would run `/bin/sh -c 'echo applied v9'`",
    ] {
        assert!(shown.contains(expected), "no `{expected}` in:\n{shown}");
    }
}
