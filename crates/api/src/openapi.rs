//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. A test checks it lists every route.

use axum::Json;
use serde_json::{json, Value};

use homeostat_core::journal::{RunStatus, StepStatus};

use crate::error::Code;

pub async fn document() -> Json<Value> {
    Json(spec())
}

fn error_responses(codes: &[u16]) -> Value {
    let mut responses = serde_json::Map::new();
    for code in codes {
        let description = match code {
            400 => "Malformed payload, query or parameter; `message` names the field",
            401 => "Missing or wrong credentials",
            403 => "The token lacks the needed scope, or is not one of the step's approvers, or started the run and the step asks for someone else",
            404 => "No such resource",
            409 => "The resource is not in a state that allows it: the run is not in progress or has no approval waiting, the incident is resolved or already acknowledged, the silence has expired, the rule is not disabled for the target",
            413 => "The body is larger than `server.max_body_bytes`",
            429 => "The journal queue is full; retry after `Retry-After` seconds",
            _ => "The journal is unavailable",
        };
        responses.insert(
            code.to_string(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(responses)
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    base
}

fn accepted() -> Value {
    json!({"200": {"description": "Committed to the journal", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"accepted": {"type": "integer", "description": "events committed"}}}}}}})
}

pub fn spec() -> Value {
    let mut spec = base_spec();
    if let Some(paths) = spec.get_mut("paths") {
        *paths = with(paths.take(), runbook_paths());
        *paths = with(paths.take(), incident_paths());
        *paths = with(paths.take(), rule_paths());
        *paths = with(paths.take(), slo_paths());
        *paths = with(paths.take(), alertmanager_paths());
        *paths = with(paths.take(), detector_paths());
    }
    if let Some(schemas) = spec.pointer_mut("/components/schemas") {
        *schemas = with(schemas.take(), incident_schemas());
    }
    spec
}

fn base_spec() -> Value {
    let codes: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    let run_statuses = RunStatus::ALL.map(RunStatus::as_str);
    let step_statuses = StepStatus::ALL.map(StepStatus::as_str);
    // Apart from the document's one `json!`, which would nest too deep for the macro.
    let step_schema = json!({"type": "object", "description": "One attempt of one step, folded from the journal", "properties": {
        "step": {"type": "string", "description": "the step's path: `name`, `parallel.branch.name`, `each[2].name`, `call.name`, `name.rollback`"},
        "name": {"type": "string"}, "attempt": {"type": "integer"},
        "action": {"type": "string", "description": "the action, or the step's kind (`wait`, `approval`, `parallel`, ...)"},
        "status": {"type": "string", "enum": step_statuses,
            "description": "`waiting`: an approval, or a `wait` whose check has not held yet (see `polls` and `last_poll`)"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "inputs": {"description": "the rendered inputs"}, "output": {"description": "what the action returned (for exec: exit code, stdout, stderr)"},
        "outputs": {"description": "the step's declared outputs"}, "error": {"type": ["string", "null"]},
        "resumed": {"type": "boolean", "description": "started again after a restart"},
        "summary": {"type": "string", "description": "what the step does, in words, from its rendered inputs: `run `systemctl restart api``, `POST https://...`, the Kubernetes object and its change; in a dry run, what would have run"},
        "polls": {"type": "integer", "description": "a `wait` until a check: how many times the check ran"},
        "last_poll": {"type": "object", "description": "a `wait` until a check: what the latest check observed", "properties": {
            "at": {"type": "string", "format": "date-time"}, "status": {"type": "string", "enum": ["succeeded", "failed", "timed_out"]},
            "output": {"description": "for PromQL: the query, its number of series and the first value; for HTTP: the status"},
            "error": {"type": "string", "description": "why the check did not hold"}}}}});
    let run_end_schema = json!({"type": "object", "properties": {
        "status": {"$ref": "#/components/schemas/RunStatus"}, "error": {"type": ["string", "null"]},
        "undone": {"type": "array", "items": {"type": "string"}, "description": "steps whose rollbacks ran and succeeded, in order"},
        "outputs": {},
        "rejected": {"type": "object", "description": "a `rejected` run: the approval step, the token that rejected it and its comment", "properties": {
            "step": {"type": "string"}, "by": {"type": "string"}, "comment": {"type": "string"}}}}});
    let pending_approval_schema = json!({"type": "object", "properties": {
        "step": {"type": "string"},
        "approvers": {"type": "array", "items": {"type": "string"}, "description": "the tokens that may answer; any `write` token when empty"},
        "message": {"type": ["string", "null"]}, "deadline": {"type": "string", "format": "date-time"},
        "distinct_from_starter": {"type": "boolean", "description": "the token that started the run may not answer (403 `approver_is_starter`)"},
        "started_by": {"type": ["string", "null"], "description": "the token that started the run by hand; null for a rule's run"}}});
    let limit = json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "homeostat", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Event-driven automation that makes infrastructure heal itself."},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/hooks/alertmanager": {"post": {
                "summary": "Alertmanager webhook receiver (payload version 4)",
                "operationId": "alertmanagerHook",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertmanagerWebhook"}}}},
                "responses": with(accepted(), error_responses(&[400, 401, 403, 413, 429, 503]))
            }},
            "/api/v1/hooks/{source}": {"post": {
                "summary": "A configured webhook source: an extra Alertmanager endpoint, or a generic JSON webhook authenticated by an HMAC-SHA256 signature header",
                "operationId": "sourceHook",
                "security": [{"bearer": []}, {"hmac": []}],
                "parameters": [{"name": "source", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {}}}},
                "responses": with(accepted(), error_responses(&[400, 401, 403, 404, 413, 429, 503]))
            }},
            "/api/v1/events": {
                "post": {
                    "summary": "Native events or CloudEvents 1.0 (structured JSON mode), one or an array",
                    "operationId": "postEvents",
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"oneOf": [
                            {"$ref": "#/components/schemas/EventInput"}, {"$ref": "#/components/schemas/CloudEvent"},
                            {"type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/EventInput"}, {"$ref": "#/components/schemas/CloudEvent"}]}}]}},
                        "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}}}},
                    "responses": with(accepted(), error_responses(&[400, 401, 403, 413, 429, 503]))
                },
                "get": {
                    "summary": "Recent events, newest first",
                    "operationId": "listEvents",
                    "parameters": [limit, {"name": "source", "in": "query", "schema": {"type": "string"}}, {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "the `next` of the previous page"}],
                    "responses": with(json!({"200": {"description": "Events", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}, "next": {"type": ["string", "null"], "description": "give it back as `before` for the next page; null on the last page"}}}}}}}),
                        error_responses(&[400, 401, 403, 503]))
                }
            },
            "/api/v1/events/{id}": {"get": {
                "summary": "One event with its journal (decisions, runs it started)",
                "operationId": "getEvent",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with(json!({"200": {"description": "The event", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"event": {"$ref": "#/components/schemas/Event"},
                    "journal": {"type": "array", "items": {"$ref": "#/components/schemas/JournalEntry"}}}}}}}}),
                    error_responses(&[401, 403, 404, 503]))
            }},
            "/api/v1/runs": {"get": {
                "summary": "Recent runs, newest first",
                "operationId": "listRuns",
                "parameters": [limit,
                    {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/RunStatus"}},
                    {"name": "rule", "in": "query", "schema": {"type": "string"}}, {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "the `next` of the previous page"}],
                "responses": with(json!({"200": {"description": "Runs", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}, "next": {"type": ["string", "null"], "description": "give it back as `before` for the next page; null on the last page"}}}}}}}),
                    error_responses(&[400, 401, 403, 503]))
            }},
            "/api/v1/runs/{id}": {"get": {
                "summary": "One run with each step's status, timing, output and error, how it ended, and the approvals it waits for",
                "operationId": "getRun",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with(json!({"200": {"description": "The run", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"run": {"$ref": "#/components/schemas/Run"},
                    "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                    "end": {"oneOf": [{"$ref": "#/components/schemas/RunEnd"}, {"type": "null"}]},
                    "pending_approvals": {"type": "array", "items": {"$ref": "#/components/schemas/PendingApproval"}},
                    "journal": {"type": "array", "items": {"$ref": "#/components/schemas/JournalEntry"}}}}}}}}),
                    error_responses(&[401, 403, 404, 503]))
            }},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/-/reload": {"post": {
                "summary": "Reloads the config from its file, as SIGHUP does: checked as `homeostat check` checks it, swapped in between two batches; runs in progress keep their journaled definitions, unchanged sources keep their tasks, guard state is kept. A refused config leaves the one in use running. Needs the `write` scope",
                "operationId": "reload",
                "responses": with(json!({"200": {"description": "Reloaded: what changed", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "reloaded": {"type": "boolean"},
                        "sources": {"type": "object", "description": "source keys (`http_probe/<name>`, `slo/<id>`, `detector/<name>`, `forecast/<name>`, `kubernetes_events/<name>`)",
                            "properties": {"started": {"type": "array", "items": {"type": "string"}}, "restarted": {"type": "array", "items": {"type": "string"}},
                                           "stopped": {"type": "array", "items": {"type": "string"}}, "unchanged": {"type": "array", "items": {"type": "string"}}}},
                        "rules_added": {"type": "array", "items": {"type": "string"}},
                        "rules_removed": {"type": "array", "items": {"type": "string"}},
                        "rules_changed": {"type": "array", "items": {"type": "string"}},
                        "runbooks_added": {"type": "array", "items": {"type": "string"}},
                        "runbooks_removed": {"type": "array", "items": {"type": "string"}},
                        "runbooks_changed": {"type": "array", "items": {"type": "string"}},
                        "needs_restart": {"type": "array", "items": {"type": "string"}, "description": "fields of `server:`, `store:` and `kubernetes:` that changed in the file; the running values stay until a restart"},
                        "warnings": {"type": "array", "items": {"type": "string"}}}}}}}}),
                    with(error_responses(&[401, 403, 409, 503]), json!({"400": {"description": "The config is invalid (`invalid_config`); `message` is what `homeostat check` prints. The config in use stays", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}})))
            }},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "security": [],
                "responses": {"200": {"description": "OpenMetrics text"}}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
                "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {"summary": "Readiness: recovery done and the store answers", "operationId": "readyz", "security": [],
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Starting or store unavailable"}}}}
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `api_tokens`, with scope read, ingest or write"},
                "hmac": {"type": "apiKey", "in": "header", "name": "X-Homeostat-Signature",
                         "description": "sha256=<hex HMAC-SHA256 of the raw body>; the header name is configurable per source"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["message", "code", "type", "link"], "properties": {
                    "message": {"type": "string"}, "code": {"type": "string", "enum": codes},
                    "type": {"type": "string", "enum": ["invalid_request", "auth", "system"]}, "link": {"type": "string"}}},
                "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "Status": {"type": "string", "enum": ["firing", "resolved"]},
                "RunStatus": {"type": "string", "enum": run_statuses,
                    "description": "`rejected`: a person rejected an approval the run waited for (`end.rejected` says who and why)"},
                "AlertmanagerWebhook": {"type": "object", "required": ["version", "alerts"], "properties": {
                    "version": {"const": "4"}, "receiver": {"type": "string"}, "groupKey": {"type": "string"},
                    "alerts": {"type": "array", "items": {"type": "object", "required": ["status", "labels"], "properties": {
                        "status": {"$ref": "#/components/schemas/Status"}, "labels": {"$ref": "#/components/schemas/Labels"},
                        "annotations": {"$ref": "#/components/schemas/Labels"}, "startsAt": {"type": "string", "format": "date-time"},
                        "endsAt": {"type": "string", "format": "date-time"}, "generatorURL": {"type": "string"},
                        "fingerprint": {"type": "string"}}}}}},
                "EventInput": {"type": "object", "required": ["labels"], "additionalProperties": false, "properties": {
                    "source": {"type": "string"}, "kind": {"type": "string", "enum": ["alert", "change", "info"]},
                    "status": {"$ref": "#/components/schemas/Status"}, "fingerprint": {"type": "string"},
                    "labels": {"$ref": "#/components/schemas/Labels"}, "annotations": {"$ref": "#/components/schemas/Labels"},
                    "starts_at": {"type": "string", "format": "date-time"}, "ends_at": {"type": "string", "format": "date-time"},
                    "data": {}}},
                "CloudEvent": {"type": "object", "required": ["specversion", "id", "source", "type"], "properties": {
                    "specversion": {"const": "1.0"}, "id": {"type": "string"}, "source": {"type": "string"},
                    "type": {"type": "string"}, "subject": {"type": "string"}, "time": {"type": "string", "format": "date-time"},
                    "status": {"$ref": "#/components/schemas/Status"}, "kind": {"type": "string"}, "fingerprint": {"type": "string"},
                    "data": {}}},
                "Event": {"type": "object", "properties": {
                    "seq": {"type": "integer"}, "id": {"type": "string"}, "source": {"type": "string"},
                    "kind": {"type": "string"}, "status": {"$ref": "#/components/schemas/Status"},
                    "fingerprint": {"type": "string"}, "labels": {"$ref": "#/components/schemas/Labels"},
                    "annotations": {"$ref": "#/components/schemas/Labels"},
                    "starts_at": {"type": "string", "format": "date-time"}, "received_at": {"type": "string", "format": "date-time"},
                    "ingested_by": {"type": "string", "description": "the API token's name, or hmac:<source> for a signed webhook"},
                    "verdicts": {"type": "array", "items": {"$ref": "#/components/schemas/Verdict"},
                        "description": "what became of the event, one per thing that happened to it; empty for events journaled before verdicts were"}}},
                "Verdict": {"type": "object", "required": ["kind", "detail"], "properties": {
                    "kind": {"type": "string", "enum": ["acted", "dry_run", "skipped", "ignored", "error", "no_match", "repeat", "silenced", "inhibited", "flapping"]},
                    "detail": {"type": "string", "description": "a sentence for people"},
                    "rule": {"type": "string"},
                    "until": {"type": "string", "format": "date-time", "description": "when the guard that held the rule back lets it act again (cooldown, rate limit)"},
                    "run": {"type": "string", "description": "the run started, or the dry run recorded"},
                    "incident": {"type": "integer"}}},
                "JournalEntry": {"type": "object", "properties": {
                    "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                    "kind": {"type": "string", "enum": ["decision", "run_started", "step_started", "step_finished", "step_ended",
                        "step_skipped", "rollback_started", "run_input", "run_finished"]},
                    "event_id": {"type": "string"}, "run_id": {"type": "string"}, "body": {}}},
                "Run": {"type": "object", "properties": {
                    "id": {"type": "string"}, "rule": {"type": "string", "description": "empty for a run started by hand"},
                    "runbook": {"type": "string"}, "started_by": {"type": ["string", "null"], "description": "the API token that started it by hand"},
                    "target": {"type": "string"},
                    "event_id": {"type": "string"}, "status": {"$ref": "#/components/schemas/RunStatus"},
                    "dry_run": {"type": "boolean"}, "started_at": {"type": "string", "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"}, "error": {"type": ["string", "null"]},
                    "plan": {"type": "object"}}},
                "Step": step_schema,
                "RunEnd": run_end_schema,
                "PendingApproval": pending_approval_schema,
                "RunbookSummary": {"type": "object", "properties": {
                    "name": {"type": "string"}, "description": {"type": ["string", "null"]},
                    "params": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                        "type": {"type": "string", "enum": ["string", "integer", "number", "boolean", "list"]},
                        "required": {"type": "boolean"}, "default": {}, "allowed": {"type": "array"},
                        "description": {"type": ["string", "null"]}}}},
                    "steps": {"type": "array", "items": {"type": "string"}}}}
            }
        }
    })
}

/// The paths of runbooks and runs by hand, apart so that no one `json!` nests too deep.
fn runbook_paths() -> Value {
    let run_id =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let runbook_name =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
            "/api/v1/runs/{id}/logs": {"get": {
                "summary": "The run's journal as Server-Sent Events: every entry so far, then each as it commits; the stream ends after `run_finished`",
                "description": "Each event has `event:` the entry's kind, `id:` its sequence number and `data:` the JournalEntry as JSON. Send `Last-Event-ID` to resume after an entry.",
                "operationId": "runLogs",
                "parameters": [run_id, {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}}],
                "responses": with(json!({"200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}),
                    error_responses(&[401, 403, 404, 503]))
            }},
            "/api/v1/runs/{id}/approval": {"post": {
                "summary": "Approve or reject a waiting approval step, as the calling token (write scope)",
                "operationId": "approveRun",
                "parameters": [run_id],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["approve"], "additionalProperties": false, "properties": {
                    "approve": {"type": "boolean"},
                    "step": {"type": "string", "description": "the approval step's path; may be left out when only one waits"},
                    "comment": {"type": "string"}}}}}},
                "responses": with(json!({"200": {"description": "The answer was given to the run", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"run_id": {"type": "string"}, "step": {"type": "string"},
                    "approved": {"type": "boolean"}, "by": {"type": "string"}}}}}}}),
                    error_responses(&[400, 401, 403, 404, 409, 503]))
            }},
            "/api/v1/runs/{id}/cancel": {"post": {
                "summary": "Cancel a run in progress (write scope): waits and approvals end at once, actions in flight are awaited",
                "operationId": "cancelRun",
                "parameters": [run_id],
                "responses": with(json!({"202": {"description": "The run was asked to stop", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"run_id": {"type": "string"}, "status": {"const": "cancelling"}, "by": {"type": "string"}}}}}}}),
                    error_responses(&[401, 403, 404, 409, 503]))
            }},
            "/api/v1/approvals": {"get": {
                "summary": "The approvals runs wait for that the calling token may give (write scope, and named by the step's approvers or none named), soonest deadline first",
                "operationId": "listApprovals",
                "parameters": [{"name": "all", "in": "query", "schema": {"type": "boolean", "default": false}, "description": "list the approvals this token may not give too"}],
                "responses": with(json!({"200": {"description": "Waiting approvals", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"approvals": {"type": "array", "items": waiting_approval()}}}}}}}),
                    error_responses(&[400, 401, 403]))
            }},
            "/api/v1/runbooks": {"get": {
                "summary": "The named runbooks with their parameters and top-level steps",
                "operationId": "listRunbooks",
                "responses": with(json!({"200": {"description": "Runbooks", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"runbooks": {"type": "array", "items": {"$ref": "#/components/schemas/RunbookSummary"}}}}}}}}),
                    error_responses(&[401, 403]))
            }},
            "/api/v1/runbooks/{name}": {"get": {
                "summary": "One runbook's full spec, as the config declares it",
                "operationId": "getRunbook",
                "parameters": [runbook_name],
                "responses": with(json!({"200": {"description": "The runbook", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"runbook": {"type": "object", "description": "the `runbooks:` entry, fields as in the config"}}}}}}}),
                    error_responses(&[401, 403, 404]))
            }},
            "/api/v1/runbooks/{name}/runs": {"post": {
                "summary": "Start a run of the runbook, for the calling token (write scope); a dry run renders every step and executes none",
                "operationId": "startRun",
                "parameters": [runbook_name],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": false, "properties": {
                    "params": {"type": "object", "description": "values as JSON, or text that converts to the declared type"},
                    "target": {"type": "string", "description": "what the run acts on (keys locks and cooldowns); the runbook's name by default"},
                    "dry_run": {"type": "boolean", "default": false},
                    "incident": {"type": "integer", "description": "the incident the run is for: it is linked to it (its steps on the incident's timeline, the caller credited in the postmortem); its end does not change the incident's state"}}}}}},
                "responses": with(json!({"201": {"description": "The run is committed and started (or, for a dry run, complete)",
                    "headers": {"Location": {"schema": {"type": "string"}, "description": "/api/v1/runs/{id}"}},
                    "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"run_id": {"type": "string"}, "runbook": {"type": "string"}, "target": {"type": "string"},
                    "dry_run": {"type": "boolean"}, "incident": {"type": ["integer", "null"]}, "status": {"type": "string", "enum": ["running", "dry_run"]}}}}}}}),
                    error_responses(&[400, 401, 403, 404, 413, 503]))
            }}
    })
}

/// The paths of incidents and silences.
fn incident_paths() -> Value {
    let incident_id = json!({"name": "id", "in": "path", "required": true,
        "schema": {"type": "integer", "minimum": 1}, "description": "the incident's number"});
    let silence_id =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let limit = json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}});
    let one_incident = json!({"200": {"description": "The incident after the change", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"incident": {"$ref": "#/components/schemas/Incident"}}}}}}});
    let comment = json!({"content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false, "properties": {
        "comment": {"type": "string", "description": "recorded on the timeline"}}}}}});
    let one_silence = |description: &str| {
        json!({"description": description, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"silence": {"$ref": "#/components/schemas/Silence"}}}}}})
    };
    json!({
        "/api/v1/incidents": {"get": {
            "summary": "Incidents, newest (highest number) first",
            "operationId": "listIncidents",
            "parameters": [limit,
                {"name": "open", "in": "query", "schema": {"type": "boolean", "default": false}, "description": "only incidents not resolved"},
                {"name": "label", "in": "query", "schema": {"type": "string"}, "description": "`name=value`: only incidents grouped by this label value"}, {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "the `next` of the previous page"}],
            "responses": with(json!({"200": {"description": "Incidents", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"incidents": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}}, "next": {"type": ["string", "null"], "description": "give it back as `before` for the next page; null on the last page"}}}}}}}),
                error_responses(&[400, 401, 403, 503]))
        }},
        "/api/v1/incidents/{id}": {"get": {
            "summary": "One incident with its member alerts, its timeline in words, and its context (runbooks, recent changes, related incidents, the alerts' queries)",
            "operationId": "getIncident",
            "parameters": [incident_id],
            "responses": with(json!({"200": {"description": "The incident", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"incident": {"$ref": "#/components/schemas/Incident"},
                "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
                "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineItem"}},
                "context": {"$ref": "#/components/schemas/IncidentContext"}}}}}}}),
                error_responses(&[401, 403, 404, 503]))
        }},
        "/api/v1/incidents/{id}/ack": {"post": {
            "summary": "Acknowledge the incident as the calling token (write scope)",
            "operationId": "acknowledgeIncident",
            "parameters": [incident_id],
            "requestBody": comment,
            "responses": with(one_incident.clone(), error_responses(&[400, 401, 403, 404, 409, 413, 429, 503]))
        }},
        "/api/v1/incidents/{id}/resolve": {"post": {
            "summary": "Resolve the incident as the calling token (write scope)",
            "operationId": "resolveIncident",
            "parameters": [incident_id],
            "requestBody": comment,
            "responses": with(one_incident.clone(), error_responses(&[400, 401, 403, 404, 409, 413, 429, 503]))
        }},
        "/api/v1/incidents/{id}/notes": {"post": {
            "summary": "Add a note to the incident's timeline as the calling token (write scope)",
            "operationId": "noteIncident",
            "parameters": [incident_id],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["text"], "additionalProperties": false, "properties": {
                "text": {"type": "string"}}}}}},
            "responses": with(one_incident, error_responses(&[400, 401, 403, 404, 409, 413, 429, 503]))
        }},
        "/api/v1/incidents/{id}/postmortem": {"get": {
            "summary": "A blameless postmortem draft in Markdown, written from the incident's journal",
            "operationId": "incidentPostmortem",
            "parameters": [incident_id],
            "responses": with(json!({"200": {"description": "The draft", "content": {"text/markdown": {"schema": {"type": "string"}}}}}),
                error_responses(&[401, 403, 404, 503]))
        }},
        "/api/v1/silences": {
            "get": {
                "summary": "Pending and active silences, newest first; with `expired=true`, expired ones too",
                "operationId": "listSilences",
                "parameters": [{"name": "expired", "in": "query", "schema": {"type": "boolean", "default": false}}],
                "responses": with(json!({"200": {"description": "Silences", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"silences": {"type": "array", "items": {"$ref": "#/components/schemas/Silence"}}}}}}}}),
                    error_responses(&[400, 401, 403, 503]))
            },
            "post": {
                "summary": "Create a silence as the calling token (write scope); it mutes matching alerts from its start to its end",
                "operationId": "createSilence",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["matchers", "comment"], "additionalProperties": false, "properties": {
                    "matchers": {"type": "array", "items": {"type": "string"}, "description": "Alertmanager matchers: `service=\"checkout\"`, `severity=~\"warn|info\"`"},
                    "starts_at": {"type": "string", "format": "date-time", "description": "now by default; a start in the past is now"},
                    "ends_at": {"type": "string", "format": "date-time"},
                    "duration": {"type": "string", "description": "instead of `ends_at`: from the start, numbers with s, m, h or d, such as `2h` or `1h30m`"},
                    "comment": {"type": "string"}}}}}},
                "responses": with(json!({"201": with(one_silence("The silence is in force from its start"),
                    json!({"headers": {"Location": {"schema": {"type": "string"}, "description": "/api/v1/silences/{id}"}}}))}),
                    error_responses(&[400, 401, 403, 413, 429, 503]))
            }
        },
        "/api/v1/silences/{id}": {
            "get": {
                "summary": "One silence",
                "operationId": "getSilence",
                "parameters": [silence_id.clone()],
                "responses": with(json!({"200": one_silence("The silence")}), error_responses(&[401, 403, 404, 503]))
            },
            "delete": {
                "summary": "Expire the silence now, as the calling token (write scope)",
                "operationId": "expireSilence",
                "parameters": [silence_id],
                "responses": with(json!({"200": one_silence("The silence, expired")}), error_responses(&[401, 403, 404, 409, 429, 503]))
            }
        }
    })
}

/// The paths of the SLOs the daemon evaluates.
/// Alertmanager's API v2, as far as homeostat speaks it; the shapes are Alertmanager's
/// (`api/v2/openapi.yaml`), summarized here.
fn alertmanager_paths() -> Value {
    let array = |description: &str| json!({"200": {"description": description, "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}});
    let filter = json!({"name": "filter", "in": "query", "style": "form", "explode": true,
        "description": "Matchers in Alertmanager's syntax, one per `filter`; all must match",
        "schema": {"type": "array", "items": {"type": "string"}}});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
        "/api/v2/alerts": {
            "post": {
                "summary": "Alertmanager API v2: alerts as Prometheus posts them (ingest scope); an alert whose endsAt has passed is resolved",
                "operationId": "postAlertsV2",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "array", "items": {
                    "type": "object", "required": ["labels"], "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        "startsAt": {"type": "string", "format": "date-time"}, "endsAt": {"type": "string", "format": "date-time"},
                        "generatorURL": {"type": "string"}}}}}}},
                "responses": with(json!({"200": {"description": "Committed to the journal"}}), error_responses(&[400, 401, 403, 413, 429, 503]))
            },
            "get": {
                "summary": "Alertmanager API v2: the active alerts (firing members of open incidents), read scope",
                "operationId": "getAlertsV2",
                "parameters": [filter.clone(),
                    {"name": "active", "in": "query", "schema": {"type": "boolean", "default": true}},
                    {"name": "silenced", "in": "query", "schema": {"type": "boolean", "default": true}},
                    {"name": "inhibited", "in": "query", "schema": {"type": "boolean", "default": true}},
                    {"name": "unprocessed", "in": "query", "schema": {"type": "boolean", "default": true}},
                    {"name": "receiver", "in": "query", "schema": {"type": "string"}}],
                "responses": with(array("Gettable alerts"), error_responses(&[400, 401, 403, 503]))
            }
        },
        "/api/v2/alerts/groups": {"get": {
            "summary": "Alertmanager API v2: the active alerts grouped by incident, read scope",
            "operationId": "getAlertGroupsV2", "parameters": [filter.clone()],
            "responses": with(array("Alert groups"), error_responses(&[400, 401, 403, 503]))
        }},
        "/api/v2/silences": {
            "get": {
                "summary": "Alertmanager API v2: every silence, expired ones too, read scope",
                "operationId": "getSilencesV2", "parameters": [filter],
                "responses": with(array("Gettable silences"), error_responses(&[400, 401, 403, 503]))
            },
            "post": {
                "summary": "Alertmanager API v2: create a silence, or replace the one `id` names (write scope)",
                "operationId": "postSilencesV2",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "required": ["matchers", "startsAt", "endsAt", "createdBy", "comment"], "properties": {
                        "id": {"type": "string"},
                        "matchers": {"type": "array", "items": {"type": "object", "required": ["name", "value", "isRegex"], "properties": {
                            "name": {"type": "string"}, "value": {"type": "string"}, "isRegex": {"type": "boolean"}, "isEqual": {"type": "boolean", "default": true}}}},
                        "startsAt": {"type": "string", "format": "date-time"}, "endsAt": {"type": "string", "format": "date-time"},
                        "createdBy": {"type": "string"}, "comment": {"type": "string"}}}}}},
                "responses": with(json!({"200": {"description": "The silence's id", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"silenceID": {"type": "string"}}}}}}}), error_responses(&[400, 401, 403, 404, 413, 429, 503]))
            }
        },
        "/api/v2/silence/{id}": {
            "get": {
                "summary": "Alertmanager API v2: one silence, read scope", "operationId": "getSilenceV2", "parameters": [id.clone()],
                "responses": with(json!({"200": {"description": "The silence"}}), error_responses(&[401, 403, 404, 503]))
            },
            "delete": {
                "summary": "Alertmanager API v2: expire the silence now (write scope)", "operationId": "deleteSilenceV2", "parameters": [id],
                "responses": with(json!({"200": {"description": "Expired"}}), error_responses(&[401, 403, 404, 409, 429, 503]))
            }
        },
        "/api/v2/receivers": {"get": {
            "summary": "Alertmanager API v2: the one receiver, `homeostat`", "operationId": "getReceiversV2",
            "responses": with(array("Receivers"), error_responses(&[401, 403]))
        }},
        "/api/v2/status": {"get": {
            "summary": "Alertmanager API v2: cluster (disabled), version and uptime, read scope", "operationId": "getStatusV2",
            "responses": with(json!({"200": {"description": "Status"}}), error_responses(&[401, 403]))
        }}
    })
}

fn slo_paths() -> Value {
    let ratios = json!({"type": "object", "description": "By window (`5m`, `30m`, `1h`, `2h`, `6h`, `1d`, `3d`, and the period, `30d` or `28d`); null where the query had no value",
        "additionalProperties": {"type": ["number", "null"]}});
    let slo = json!({"type": "object", "required": ["id", "service", "slo", "objective", "error_budget", "period_days", "series", "evaluated_at", "error", "interval_secs"], "properties": {
        "id": {"type": "string", "description": "`<service>-<name>`, the generated rules' `sloth_id`"},
        "service": {"type": "string"},
        "slo": {"type": "string"},
        "objective": {"type": "number", "description": "In percent"},
        "error_budget": {"type": "number", "description": "The error budget as a ratio: 0.001 for 99.9%"},
        "period_days": {"type": "integer"},
        "interval_secs": {"type": "number"},
        "evaluated_at": {"type": ["string", "null"], "format": "date-time", "description": "When Prometheus last answered every query"},
        "error": {"type": ["string", "null"], "description": "Why the latest evaluation failed; the status is then the previous one"},
        "series": {"type": "array", "items": {"type": "object", "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "The series' labels; empty for an aggregated SLI"},
            "error_ratio": ratios.clone(),
            "burn_rate": ratios,
            "budget_remaining_percent": {"type": ["number", "null"], "description": "The share of the period's error budget left; negative once overspent"},
            "exhausted_in_secs": {"type": ["number", "null"], "description": "Until the budget is gone at the last hour's burn rate"},
            "firing": {"type": "array", "items": {"type": "string", "enum": ["page", "ticket"]}}}}}}});
    json!({
        "/api/v1/slos": {"get": {
            "summary": "Every SLO the daemon evaluates, with its error budget and burn rates as of its latest evaluation",
            "operationId": "listSlos",
            "responses": with(json!({"200": {"description": "The SLOs, by id", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"slos": {"type": "array", "items": slo.clone()}}}}}}}),
                error_responses(&[401, 403]))
        }},
        "/api/v1/slos/{id}": {"get": {
            "summary": "One SLO by its id",
            "operationId": "getSlo",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": with(json!({"200": {"description": "The SLO", "content": {"application/json": {"schema": slo}}}}),
                error_responses(&[401, 403, 404]))
        }}
    })
}

/// The paths of the anomaly detectors the daemon runs.
fn detector_paths() -> Value {
    let maybe = |description: &str| json!({"type": ["number", "null"], "description": description});
    let series = json!({"type": "object", "required": ["labels", "state", "input"], "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "state": {"type": "string", "enum": ["learning", "normal", "firing"], "description": "`learning` during the warm-up (scores are 0)"},
        "at": {"type": ["string", "null"], "format": "date-time", "description": "The latest value's time"},
        "value": maybe("The latest value scored"),
        "score": maybe("Its anomaly score, 0 to 1"),
        "expected": maybe("The value the detector expected then"),
        "expected_low": maybe("The range within which a deviation is not rarer than one in 100,000 for this series; null when unbounded"),
        "expected_high": maybe("See `expected_low`"),
        "firing_since": {"type": ["string", "null"], "format": "date-time"},
        "input": {"type": "object", "description": "What the detector made of the series' samples since it started", "properties": {
            "scored": {"type": "integer"},
            "steps_back": {"type": "integer", "description": "Timestamps before the previous one, scored at the previous one's time"},
            "largest_step_back_secs": {"type": "integer"},
            "repeats": {"type": "integer", "description": "Timestamps equal to the previous one"},
            "gaps": {"type": "integer", "description": "Intervals over twice the usual one"},
            "non_finite": {"type": "integer", "description": "Values that were not numbers, skipped"}}}}});
    let detector = json!({"type": "object", "required": ["name", "query", "interval_secs", "threshold", "evaluated_at", "error", "backfill", "ignored_series", "series"], "properties": {
        "name": {"type": "string"},
        "query": {"type": "string"},
        "interval_secs": {"type": "number"},
        "threshold": {"type": "number", "description": "The score at or above which a series' anomaly fires"},
        "evaluated_at": {"type": ["string", "null"], "format": "date-time", "description": "When Prometheus last answered the query"},
        "error": {"type": ["string", "null"], "description": "Why the latest query failed; the series are then as of the one before"},
        "backfill": {"type": "object", "required": ["state"], "description": "Learning the series' history: `pending` is retried every interval (Prometheus not up yet)", "properties": {
            "state": {"type": "string", "enum": ["skipped", "pending", "done", "failed"]},
            "attempts": {"type": "integer"},
            "points": {"type": "integer"},
            "error": {"type": ["string", "null"]}}},
        "ignored_series": {"type": "integer", "description": "Series beyond `max_series` in the latest evaluation, not tracked"},
        "series": {"type": "array", "items": series}}});
    json!({
        "/api/v1/detectors": {"get": {
            "summary": "Every anomaly detector the daemon runs, with each series' latest score, expected range and state",
            "operationId": "listDetectors",
            "responses": with(json!({"200": {"description": "The detectors, by name", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"detectors": {"type": "array", "items": detector.clone()}}}}}}}),
                error_responses(&[401, 403]))
        }},
        "/api/v1/detectors/{name}": {"get": {
            "summary": "One anomaly detector by its name",
            "operationId": "getDetector",
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": with(json!({"200": {"description": "The detector", "content": {"application/json": {"schema": detector}}}}),
                error_responses(&[401, 403, 404]))
        }}
    })
}

/// One approval a run waits for, as `GET /api/v1/approvals` lists it.
fn waiting_approval() -> Value {
    json!({"type": "object", "properties": {
        "run_id": {"type": "string"}, "runbook": {"type": "string"},
        "rule": {"type": "string", "description": "empty for a run started by hand"},
        "started_by": {"type": ["string", "null"]}, "target": {"type": "string"},
        "incident": {"type": ["integer", "null"]}, "params": {"type": "object"},
        "dry_run": {"type": "boolean"}, "started_at": {"type": "string", "format": "date-time"},
        "step": {"type": "string", "description": "the approval step's path"},
        "approvers": {"type": "array", "items": {"type": "string"}},
        "message": {"type": ["string", "null"]}, "deadline": {"type": "string", "format": "date-time"},
        "then": {"type": "array", "items": {"type": "string"}, "description": "the steps after it, `name (action)`"},
        "may_approve": {"type": "boolean"}}})
}

/// The paths of rules and their guards, and of rules that loop detection disabled.
fn rule_paths() -> Value {
    let pair = json!({"type": "object", "required": ["rule", "target"], "properties": {
        "rule": {"type": "string"}, "target": {"type": "string"}}});
    let time = json!({"type": "string", "format": "date-time"});
    let rule = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "description": {"type": ["string", "null"]},
        "match": {"type": "array", "items": {"type": "string"}}, "condition": {"type": ["string", "null"]},
        "on": {"type": "array", "items": {"type": "string"}}, "on_incident": {"type": "array", "items": {"type": "string"}},
        "target": {"type": ["string", "null"], "description": "the target template; the event's fingerprint when null"},
        "runbook": {"type": "string", "description": "the named runbook, or `rule:<name>` for inline steps"},
        "dry_run": {"type": "boolean", "description": "the rule's or the config's `dry_run`"},
        "guards": {"type": "object", "description": "`guards:` as configured, defaults filled in"},
        "state": {"type": "object", "description": "what the guards hold at the request's time, from the last commit that changed them", "properties": {
            "cooldowns": {"type": "array", "items": {"type": "object", "properties": {"target": {"type": "string"}, "until": time}}},
            "rate": {"type": ["object", "null"], "properties": {"count": {"type": "integer"}, "max": {"type": "integer"},
                "window_secs": {"type": "integer"}, "next_allowed_at": {"type": ["string", "null"], "format": "date-time"}}},
            "running": {"type": "array", "items": {"type": "object", "properties": {"run": {"type": "string"}, "target": {"type": "string"}, "holds_lock": {"type": "boolean"}}}},
            "disabled_targets": {"type": "array", "items": {"type": "string"}}}}}});
    json!({
        "/api/v1/rules": {"get": {
            "summary": "Every rule of the config with what its guards hold now: cooldowns, runs in the rate window, runs in progress and their locks, targets loop detection disabled it for",
            "operationId": "listRules",
            "responses": with(json!({"200": {"description": "Rules, in the config's order", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"rules": {"type": "array", "items": rule.clone()}}}}}}}),
                error_responses(&[401, 403]))
        }},
        "/api/v1/rules/{rule}": {"get": {
            "summary": "One rule with what its guards hold now",
            "operationId": "getRule",
            "parameters": [{"name": "rule", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": with(json!({"200": {"description": "The rule", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"rule": rule}}}}}}),
                error_responses(&[401, 403, 404]))
        }},
        "/api/v1/rules/disabled": {"get": {
            "summary": "The rules loop detection disabled, each for one target, as of the last commit",
            "operationId": "listDisabledRules",
            "responses": with(json!({"200": {"description": "Disabled pairs, by rule then target", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"disabled": {"type": "array", "items": pair}}}}}}}),
                error_responses(&[401, 403]))
        }},
        "/api/v1/rules/{rule}/enable": {"post": {
            "summary": "Turn a rule that loop detection disabled back on for a target, as the calling token (write scope)",
            "operationId": "enableRule",
            "parameters": [{"name": "rule", "in": "path", "required": true, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["target"], "additionalProperties": false, "properties": {
                "target": {"type": "string"}}}}}},
            "responses": with(json!({"200": {"description": "Enabled: the command is committed and the rule acts on the target again", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"rule": {"type": "string"}, "target": {"type": "string"}, "enabled": {"type": "boolean"}}}}}}}),
                error_responses(&[400, 401, 403, 404, 409, 413, 429, 503]))
        }}
    })
}

/// The schemas of incidents and silences.
fn incident_schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let optional_time = json!({"type": ["string", "null"], "format": "date-time"});
    json!({
        "Incident": {"type": "object", "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": ["open", "acknowledged", "mitigated", "resolved"]},
            "title": {"type": "string"}, "group_key": {"type": "string", "description": "the grouping labels as matchers: `{service=\"checkout\"}`"},
            "labels": {"$ref": "#/components/schemas/Labels"},
            "flapping": {"type": "boolean"}, "escalated": {"type": "boolean"},
            "members_firing": {"type": "integer"}, "members_total": {"type": "integer"}, "reopened": {"type": "integer"},
            "started_at": time, "opened_at": time,
            "acknowledged_at": optional_time, "acknowledged_by": {"type": ["string", "null"]},
            "mitigated_at": optional_time, "resolved_at": optional_time, "resolved_by": {"type": ["string", "null"]},
            "escalated_at": optional_time, "updated_at": time}},
        "Member": {"type": "object", "description": "One alert (one fingerprint) of an incident", "properties": {
            "incident": {"type": "integer"}, "fingerprint": {"type": "string"}, "source": {"type": "string"},
            "status": {"$ref": "#/components/schemas/Status"},
            "labels": {"$ref": "#/components/schemas/Labels"}, "annotations": {"$ref": "#/components/schemas/Labels"},
            "first_event_id": {"type": "string"}, "last_event_id": {"type": "string"},
            "first_seen": time, "last_seen": time, "starts_at": optional_time,
            "generator_url": {"type": ["string", "null"]}}},
        "TimelineItem": {"type": "object", "required": ["seq", "at", "kind", "summary"], "properties": {
            "seq": {"type": "integer"}, "at": time,
            "kind": {"type": "string", "description": "`opened`, `member_added`, `member_fired_again`, `member_resolved`, `acknowledged`, `mitigated`, `resolved`, `reopened`, `flapping`, `flapping_cleared`, `escalated`, `note`; `decision` for the rules' decisions on its alerts; and the journal kinds of its runs (`run_started`, `step_started`, `step_finished`, ..., `run_finished`)"},
            "summary": {"type": "string", "description": "one line in words"},
            "event_id": {"type": "string"}, "run_id": {"type": "string"},
            "verdicts": {"type": "array", "items": {"$ref": "#/components/schemas/Verdict"}, "description": "on a `decision` line, what became of its event"}}},
        "IncidentContext": {"type": "object", "properties": {
            "runbooks": {"type": "array", "description": "the runbooks its runs ran (with their rules), then those its alerts link to (`runbook_url`, `runbook` annotations)",
                "items": {"type": "object", "properties": {"runbook": {"type": "string"}, "rule": {"type": "string"}, "url": {"type": "string"}}}},
            "recent_changes": {"type": "array", "description": "`change` events with one of its grouping labels (or a member's `service`), from `incidents.change_lookback_secs` before it began",
                "items": {"type": "object", "properties": {"at": time, "summary": {"type": "string"}, "event_id": {"type": "string"}}}},
            "related": {"type": "array", "description": "other incidents of the same group, most recent first (at most 5)",
                "items": {"type": "object", "properties": {"id": {"type": "integer"}, "title": {"type": "string"}, "state": {"type": "string"}, "opened_at": time}}},
            "queries": {"type": "array", "items": {"type": "string"}, "description": "the PromQL behind its alerts: `g0.expr` of Prometheus' generator URL, or a `query`/`expr` annotation"}}},
        "Silence": {"type": "object", "properties": {
            "id": {"type": "string"}, "matchers": {"type": "array", "items": {"type": "string"}},
            "starts_at": time, "ends_at": time, "created_by": {"type": "string"}, "comment": {"type": "string"},
            "created_at": time, "expired_by": {"type": ["string", "null"]},
            "state": {"type": "string", "enum": ["pending", "active", "expired"]}}}
    })
}
