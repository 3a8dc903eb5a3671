//! In-process API tests: the axum router called with `oneshot`, no socket. Every bad input gets its
//! status and stable code; nothing is acknowledged before it is committed.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use homeostat_core::clock::SystemClock;
use homeostat_core::ingest::webhook::{sign, sign_delivery};
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{Committed, Store};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A test engine with its router. Tokens come from files in the temp dir.
pub struct Api {
    pub router: axum::Router,
    pub handle: homeostat_engine::Handle,
    pub engine: homeostat_engine::Engine,
    /// Held so the database and secrets outlive the engine.
    pub _dir: tempfile::TempDir,
}

pub const WRITE: &str = "write-token";
/// A second `write` token, `w2`: someone other than `w`, for approvals that want another person.
pub const WRITE2: &str = "write-token-2";
pub const READ: &str = "read-token";
pub const INGEST: &str = "ingest-token";
pub const HMAC_KEY: &str = "hmac-key";

/// Compiles `extra` YAML appended to a base config with three tokens and a webhook source.
pub fn compile(dir: &std::path::Path, extra: &str) -> homeostat_core::rule::Compiled {
    let store = format!(
        "{{path: {db:?}, synchronous: normal}}",
        db = dir.join("h.db").display().to_string()
    );
    compile_with_store(dir, extra, &store)
}

/// [`compile`] with another `store:` section.
pub fn compile_with_store(
    dir: &std::path::Path,
    extra: &str,
    store: &str,
) -> homeostat_core::rule::Compiled {
    for (name, value) in [
        ("write", WRITE),
        ("write2", WRITE2),
        ("read", READ),
        ("ingest", INGEST),
        ("hmac", HMAC_KEY),
    ] {
        std::fs::write(dir.join(name), value).expect("write secret");
    }
    let text = format!(
        r#"
server: {{max_body_bytes: 2048, queue_capacity: 2}}
store: {store}
api_tokens:
  - {{name: w, scopes: [write], token: {{file: {w:?}}}}}
  - {{name: w2, scopes: [write], token: {{file: {w2:?}}}}}
  - {{name: r, scopes: [read], token: {{file: {r:?}}}}}
  - {{name: i, scopes: [ingest], token: {{file: {i:?}}}}}
sources:
  - type: webhook
    name: ci
    secret: {{file: {h:?}}}
    kind: change
    fingerprint: "{{{{ body.deploy_id }}}}"
    labels: {{service: "{{{{ body.service }}}}", version: "{{{{ body.version }}}}"}}
{extra}"#,
        w = dir.join("write").display().to_string(),
        w2 = dir.join("write2").display().to_string(),
        r = dir.join("read").display().to_string(),
        i = dir.join("ingest").display().to_string(),
        h = dir.join("hmac").display().to_string(),
    );
    let config =
        homeostat_core::config::parse(&[(dir.join("c.yaml"), text)]).expect("valid config");
    homeostat_core::rule::compile(&config).expect("compiles")
}

impl Api {
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let compiled = compile(dir.path(), extra);
        Self::start_compiled(dir, compiled).await
    }

    /// An engine for `compiled`, whose files are in `dir`.
    pub async fn start_compiled(
        dir: tempfile::TempDir,
        compiled: homeostat_core::rule::Compiled,
    ) -> Self {
        let engine = homeostat_engine::start(compiled, Arc::new(SystemClock::default()))
            .await
            .expect("engine starts");
        let handle = engine.handle.clone();
        Self {
            router: homeostat_api::router(handle.clone()),
            handle,
            engine,
            _dir: dir,
        }
    }

    pub async fn call(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, value)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.engine.abort();
    }
}

pub fn post(path: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body.into()).expect("request")
}

pub fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

/// Sends `alerts` (name, status) to the Alertmanager hook as the ingest token; panics unless 200.
pub async fn ingest(api: &Api, alerts: &[(&str, &str)]) {
    ingest_body(api, alertmanager_payload(alerts)).await;
}

/// Sends an Alertmanager webhook body as the ingest token; panics unless 200.
pub async fn ingest_body(api: &Api, body: String) {
    let (status, _, answer) = api
        .call(post("/api/v1/hooks/alertmanager", Some(INGEST), body))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

pub fn alertmanager_payload(alerts: &[(&str, &str)]) -> String {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(name, status)| {
            json!({"status": status, "labels": {"alertname": name, "instance": "i1"}, "annotations": {},
                   "startsAt": "2026-11-24T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""})
        })
        .collect();
    json!({"version": "4", "status": "firing", "receiver": "homeostat", "groupKey": "{}", "alerts": alerts,
           "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0})
    .to_string()
}

#[tokio::test]
async fn alertmanager_hook_commits_before_answering() {
    let api = Api::start("").await;
    let (status, _, body) = api
        .call(post(
            "/api/v1/hooks/alertmanager",
            Some(INGEST),
            alertmanager_payload(&[("A", "firing"), ("B", "firing")]),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2);
    // The answer came after the commit, so the events are readable at once.
    assert_eq!(api.handle.store().event_count().await.expect("count"), 2);
    let (status, _, body) = api.call(get("/api/v1/events?limit=10", Some(READ))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2));
    let id = body["events"][0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        body["events"][0]["ingested_by"], "i",
        "the journal says which token sent it"
    );
    let (status, _, body) = api
        .call(get(&format!("/api/v1/events/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["event"]["id"], id.as_str());
}

#[tokio::test]
async fn lists_page_by_cursor_without_skipping_or_repeating() {
    let api = Api::start("").await;
    let names: Vec<String> = (0..7).map(|index| format!("A{index}")).collect();
    let alerts: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "firing")).collect();
    let (status, _, body) = api
        .call(post(
            "/api/v1/hooks/alertmanager",
            Some(INGEST),
            alertmanager_payload(&alerts),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (list, key) in [("events", "seq"), ("incidents", "id")] {
        let mut seen = Vec::new();
        let mut path = format!("/api/v1/{list}?limit=3");
        let mut pages = 0;
        loop {
            let (status, _, body) = api.call(get(&path, Some(READ))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            pages += 1;
            seen.extend(
                body[list]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|item| item[key].as_i64().expect("a number")),
            );
            match body["next"].as_str() {
                Some(next) => path = format!("/api/v1/{list}?limit=3&before={next}"),
                None => break,
            }
        }
        let expected: Vec<i64> = (1..=7).rev().collect();
        assert_eq!(seen, expected, "{list}: newest first, each once");
        assert_eq!(pages, 3, "{list}: 3 + 3 + 1");
    }
    let (status, _, body) = api
        .call(get("/api/v1/incidents?before=tomorrow", Some(READ)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_query");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("`before`"),
        "{body}"
    );
}

#[tokio::test]
async fn every_auth_failure_has_its_code() {
    let api = Api::start("").await;
    let payload = alertmanager_payload(&[("A", "firing")]);
    let cases = [
        (None, StatusCode::UNAUTHORIZED, "missing_token"),
        (Some("nope"), StatusCode::UNAUTHORIZED, "invalid_token"),
        (Some(READ), StatusCode::FORBIDDEN, "forbidden_scope"),
    ];
    for (token, expected, code) in cases {
        let (status, headers, body) = api
            .call(post("/api/v1/hooks/alertmanager", token, payload.clone()))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (expected, Some(code)),
            "{body}"
        );
        assert_eq!(body["type"], "auth");
        assert!(body["link"]
            .as_str()
            .is_some_and(|link| link.contains(&code.replace('_', "-"))));
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                headers
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap_or("")),
                Some("Bearer")
            );
        }
    }
    // An ingest token may not read, a read token may read.
    let (status, _, _) = api.call(get("/api/v1/runs", Some(INGEST))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = api.call(get("/api/v1/runs", Some(READ))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api.handle.store().event_count().await.expect("count"),
        0,
        "nothing unauthenticated was stored"
    );
}

#[tokio::test]
async fn no_configured_tokens_means_no_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "store: {{path: {:?}}}\n",
        dir.path().join("h.db").display().to_string()
    );
    let config =
        homeostat_core::config::parse(&[(dir.path().join("c.yaml"), text)]).expect("config");
    let compiled = homeostat_core::rule::compile(&config).expect("compiles");
    let engine = homeostat_engine::start(compiled, Arc::new(SystemClock::default()))
        .await
        .expect("starts");
    let router = homeostat_api::router(engine.handle.clone());
    let response = router
        .oneshot(post(
            "/api/v1/hooks/alertmanager",
            Some("anything"),
            alertmanager_payload(&[("A", "firing")]),
        ))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    engine.abort();
}

#[tokio::test]
async fn malformed_payloads_name_the_field() {
    let api = Api::start("").await;
    let cases = [
        (
            "/api/v1/hooks/alertmanager",
            "{not json".to_string(),
            "(body)",
        ),
        (
            "/api/v1/hooks/alertmanager",
            r#"{"version":"4","alerts":[{"status":"burning","labels":{"a":"b"}}]}"#.into(),
            "alerts[0].status",
        ),
        (
            "/api/v1/hooks/alertmanager",
            r#"{"version":"4"}"#.into(),
            "alerts",
        ),
        (
            "/api/v1/hooks/alertmanager",
            r#"{"version":"3","alerts":[]}"#.into(),
            "version",
        ),
        (
            "/api/v1/events",
            r#"[{"labels":{"a":"1"}},{"labels":{"a":2}}]"#.into(),
            "[1].labels.a",
        ),
        (
            "/api/v1/events",
            r#"{"specversion":"1.0","id":"1","source":"s"}"#.into(),
            "type",
        ),
    ];
    for (path, payload, field) in cases {
        let (status, _, body) = api.call(post(path, Some(WRITE), payload.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{payload}: {body}");
        assert_eq!(body["code"], "invalid_payload");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{payload}: {body}"
        );
    }
    assert_eq!(
        api.handle.store().event_count().await.expect("count"),
        0,
        "a bad batch stores nothing"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let api = Api::start("").await;
    let big = "x".repeat(4096);
    let (status, _, body) = api
        .call(post("/api/v1/events", Some(WRITE), big.clone()))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    // Without a Content-Length (a streamed body), the limit still holds.
    let stream =
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(big)) });
    let request = Request::post("/api/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {WRITE}"))
        .body(Body::from_stream(stream))
        .expect("request");
    let (status, _, _) = api.call(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn signed_webhooks_map_to_events_and_bad_signatures_are_refused() {
    let api = Api::start("").await;
    let body = r#"{"deploy_id": "d-42", "service": "checkout", "version": "v1.4.2"}"#;
    // Replay protection is on by default: the signature covers a delivery id and the time.
    let timestamp = api.handle.clock().now().timestamp().to_string();
    let signed = |signature: Option<String>| {
        let mut builder = Request::post("/api/v1/hooks/ci")
            .header("X-Homeostat-Delivery", "d-42")
            .header("X-Homeostat-Timestamp", &timestamp);
        if let Some(signature) = signature {
            builder = builder.header("X-Homeostat-Signature", signature);
        }
        builder.body(Body::from(body)).expect("request")
    };
    let (status, _, answer) = api
        .call(signed(Some(sign_delivery(
            HMAC_KEY.as_bytes(),
            "d-42",
            &timestamp,
            body.as_bytes(),
        ))))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _, answer) = api
        .call(signed(Some(sign(HMAC_KEY.as_bytes(), body.as_bytes()))))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let (status, _, answer) = api
        .call(signed(Some(sign_delivery(
            b"wrong key",
            "d-42",
            &timestamp,
            body.as_bytes(),
        ))))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let (status, _, answer) = api.call(signed(None)).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let events = api
        .handle
        .store()
        .events(&homeostat_store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    let event = &events[0].event;
    assert_eq!(
        (event.fingerprint.as_str(), event.labels["version"].as_str()),
        ("d-42", "v1.4.2")
    );
    assert_eq!(event.kind, homeostat_core::EventKind::Change);
    assert_eq!(event.ingested_by.as_deref(), Some("hmac:ci"));
    let (status, _, answer) = api
        .call(post("/api/v1/hooks/nope", Some(WRITE), "{}"))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn native_and_cloud_events_are_accepted() {
    let api = Api::start("").await;
    let native =
        r#"[{"labels": {"alertname": "X"}}, {"labels": {"alertname": "Y"}, "status": "resolved"}]"#;
    let (status, _, body) = api.call(post("/api/v1/events", Some(INGEST), native)).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let cloud = r#"{"specversion": "1.0", "id": "a1", "source": "/ci", "type": "dev.ci.deploy", "kind": "change"}"#;
    let (status, _, _) = api.call(post("/api/v1/events", Some(INGEST), cloud)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn reads_validate_queries_and_report_missing_things() {
    let api = Api::start("").await;
    let cases = [
        (
            "/api/v1/runs?status=exploded",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/runs?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/events?limit=abc",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/events?colour=red",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/runs/does-not-exist",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/events/does-not-exist",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("/api/v1/nothing-here", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, expected, code) in cases {
        let (status, _, body) = api.call(get(path, Some(READ))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (expected, Some(code)),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let api = Api::start("").await;
    let (status, _, _) = api.call(get("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = api.call(get("/readyz", None)).await;
    assert_eq!(status, StatusCode::OK);
    api.call(post(
        "/api/v1/hooks/alertmanager",
        Some(INGEST),
        alertmanager_payload(&[("A", "firing")]),
    ))
    .await;
    let (status, _, metrics) = api.call(get("/metrics", None)).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("homeostat_events_received_total{source=\"alertmanager\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("homeostat_dispatch_latency_seconds_bucket"),
        "{metrics}"
    );
    let (status, _, spec) = api.call(get("/api/v1/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    let documented: Vec<&str> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/api/v1/hooks/alertmanager",
        "/api/v1/hooks/{source}",
        "/api/v1/events",
        "/api/v1/events/{id}",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/runs/{id}/approval",
        "/api/v1/runs/{id}/cancel",
        "/api/v1/runs/{id}/logs",
        "/api/v1/runbooks",
        "/api/v1/runbooks/{name}",
        "/api/v1/runbooks/{name}/runs",
        "/api/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/readyz",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/incidents/{id}/ack",
        "/api/v1/incidents/{id}/resolve",
        "/api/v1/incidents/{id}/notes",
        "/api/v1/incidents/{id}/postmortem",
        "/api/v1/silences",
        "/api/v1/silences/{id}",
        "/api/v1/rules",
        "/api/v1/rules/{rule}",
        "/api/v1/rules/disabled",
        "/api/v1/rules/{rule}/enable",
        "/api/v1/approvals",
        "/api/v1/slos",
        "/api/v1/slos/{id}",
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/v2/silences",
        "/api/v2/silence/{id}",
        "/api/v2/receivers",
        "/api/v2/status",
        "/api/v1/detectors",
        "/api/v1/detectors/{name}",
        "/-/reload",
    ] {
        assert!(
            documented.contains(&path),
            "{path} is routed but not documented"
        );
    }
    assert_eq!(
        documented.len(),
        40,
        "every documented path is routed: {documented:?}"
    );
    let codes = spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .expect("codes");
    assert!(codes.iter().any(|code| code == "overloaded"));
}

/// A store whose commits wait until the test opens the gate, to fill the queue on purpose, and fail
/// while `fail` is set, as a full disk would.
struct GatedStore {
    inner: SqliteStore,
    gate: tokio::sync::Semaphore,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store for GatedStore {
    async fn commit(&self, batch: &[homeostat_store::Write]) -> homeostat_store::Result<Committed> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| homeostat_store::Error::WriterStopped)?;
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(homeostat_store::Error::Database(
                "injected: disk full".into(),
            ));
        }
        self.inner.commit(batch).await
    }
    async fn events(
        &self,
        query: &homeostat_store::EventQuery,
    ) -> homeostat_store::Result<Vec<homeostat_store::EventRecord>> {
        self.inner.events(query).await
    }
    async fn event(
        &self,
        id: &str,
    ) -> homeostat_store::Result<Option<homeostat_store::EventRecord>> {
        self.inner.event(id).await
    }
    async fn journal_for_event(
        &self,
        id: &str,
    ) -> homeostat_store::Result<Vec<homeostat_store::JournalEntry>> {
        self.inner.journal_for_event(id).await
    }
    async fn decisions_for_events(
        &self,
        ids: &[String],
    ) -> homeostat_store::Result<Vec<homeostat_store::JournalEntry>> {
        self.inner.decisions_for_events(ids).await
    }
    async fn journal_for_run(
        &self,
        id: &str,
    ) -> homeostat_store::Result<Vec<homeostat_store::JournalEntry>> {
        self.inner.journal_for_run(id).await
    }
    async fn runs(
        &self,
        query: &homeostat_store::RunQuery,
    ) -> homeostat_store::Result<Vec<homeostat_store::RunRecord>> {
        self.inner.runs(query).await
    }
    async fn run(&self, id: &str) -> homeostat_store::Result<Option<homeostat_store::RunRecord>> {
        self.inner.run(id).await
    }
    async fn cursor(&self, name: &str) -> homeostat_store::Result<i64> {
        self.inner.cursor(name).await
    }
    async fn snapshot(&self, name: &str) -> homeostat_store::Result<Option<(i64, Vec<u8>)>> {
        self.inner.snapshot(name).await
    }
    async fn last_event(
        &self,
        source: &str,
    ) -> homeostat_store::Result<Option<homeostat_store::EventRecord>> {
        self.inner.last_event(source).await
    }
    async fn event_count(&self) -> homeostat_store::Result<i64> {
        self.inner.event_count().await
    }
    async fn incident(
        &self,
        id: i64,
    ) -> homeostat_store::Result<Option<homeostat_core::incident::Incident>> {
        self.inner.incident(id).await
    }
    async fn incident_counts(&self) -> homeostat_store::Result<homeostat_store::IncidentCounts> {
        self.inner.incident_counts().await
    }
    async fn incidents(
        &self,
        query: &homeostat_store::IncidentQuery,
    ) -> homeostat_store::Result<Vec<homeostat_core::incident::Incident>> {
        self.inner.incidents(query).await
    }
    async fn incident_members(
        &self,
        id: i64,
    ) -> homeostat_store::Result<Vec<homeostat_core::incident::Member>> {
        self.inner.incident_members(id).await
    }
    async fn incident_timeline(
        &self,
        id: i64,
    ) -> homeostat_store::Result<Vec<homeostat_store::JournalEntry>> {
        self.inner.incident_timeline(id).await
    }
    async fn incidents_max_id(&self) -> homeostat_store::Result<i64> {
        self.inner.incidents_max_id().await
    }
    async fn silences(
        &self,
        include_expired: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> homeostat_store::Result<Vec<homeostat_core::incident::silence::Silence>> {
        self.inner.silences(include_expired, now).await
    }
    async fn silence(
        &self,
        id: &str,
    ) -> homeostat_store::Result<Option<homeostat_core::incident::silence::Silence>> {
        self.inner.silence(id).await
    }
    async fn plan_retention(
        &self,
        policy: &homeostat_core::config::Retention,
        now: chrono::DateTime<chrono::Utc>,
    ) -> homeostat_store::Result<homeostat_store::RetentionPlan> {
        self.inner.plan_retention(policy, now).await
    }
    async fn backup(&self, to: &std::path::Path) -> homeostat_store::Result<u64> {
        self.inner.backup(to).await
    }
    async fn export_events(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
        until: Option<chrono::DateTime<chrono::Utc>>,
        after_seq: i64,
        limit: usize,
    ) -> homeostat_store::Result<Vec<homeostat_store::EventRecord>> {
        self.inner
            .export_events(since, until, after_seq, limit)
            .await
    }
    async fn export_journal(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
        until: Option<chrono::DateTime<chrono::Utc>>,
        after_seq: i64,
        limit: usize,
    ) -> homeostat_store::Result<Vec<homeostat_store::JournalEntry>> {
        self.inner
            .export_journal(since, until, after_seq, limit)
            .await
    }
    async fn ping(&self) -> homeostat_store::Result<()> {
        self.inner.ping().await
    }
}

/// An engine on a [`GatedStore`] with `permits` commits allowed and failing commits while `fail`.
async fn gated_engine(
    dir: &std::path::Path,
    rules: &str,
    permits: usize,
    fail: bool,
) -> (Arc<GatedStore>, homeostat_engine::Engine, axum::Router) {
    let compiled = compile(dir, rules);
    let inner = SqliteStore::open(
        &dir.join("gated.db"),
        homeostat_core::config::Synchronous::Normal,
    )
    .await
    .expect("open");
    let store = Arc::new(GatedStore {
        inner,
        gate: tokio::sync::Semaphore::new(permits),
        fail: fail.into(),
    });
    let engine = homeostat_engine::start_with_store(
        compiled,
        Arc::new(SystemClock::default()),
        store.clone(),
    )
    .await
    .expect("starts");
    let router = homeostat_api::router(engine.handle.clone());
    (store, engine, router)
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, engine, router) = gated_engine(dir.path(), "", 0, false).await;
    // queue_capacity is 2: the writer holds one batch, two wait, the rest are refused.
    let mut waiting = Vec::new();
    let mut refused = 0;
    for index in 0..8 {
        let request = post(
            "/api/v1/hooks/alertmanager",
            Some(INGEST),
            alertmanager_payload(&[(&format!("A{index}"), "firing")]),
        );
        let mut call = Box::pin(router.clone().oneshot(request));
        // Poll once: a refused request answers at once, an accepted one waits for the gate.
        match futures::FutureExt::now_or_never(call.as_mut()) {
            Some(Ok(response)) => {
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                assert_eq!(
                    response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .map(|v| v.to_str().unwrap_or("")),
                    Some("1")
                );
                refused += 1;
            }
            Some(Err(error)) => panic!("router failed: {error}"),
            None => waiting.push(call),
        }
        tokio::task::yield_now().await;
    }
    assert!(refused >= 1, "some requests were refused");
    assert!(!waiting.is_empty(), "some requests were queued");
    store.gate.add_permits(1000);
    let accepted = waiting.len();
    for call in waiting {
        assert_eq!(call.await.expect("answer").status(), StatusCode::OK);
    }
    assert_eq!(store.event_count().await.expect("count") as usize, accepted);
    engine.abort();
}

#[tokio::test]
async fn a_failed_commit_acknowledges_nothing_and_the_retry_is_decided_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("restarts.log");
    let rules = format!(
        "rules:\n  - name: restart\n    match: ['alertname=\"Down\"']\n    target: \"{{{{ labels.instance }}}}\"\n    guards: {{cooldown_secs: 600}}\n    steps:\n      - {{name: s, action: exec, with: {{command: [\"/bin/sh\", \"-c\", \"echo x >> {log}\"]}}}}\n",
        log = log.display()
    );
    let (store, engine, router) = gated_engine(dir.path(), &rules, 1000, true).await;
    let send = || {
        let router = router.clone();
        async move {
            let request = post(
                "/api/v1/hooks/alertmanager",
                Some(INGEST),
                alertmanager_payload(&[("Down", "firing")]),
            );
            router.oneshot(request).await.expect("answer")
        }
    };
    let refused = send().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(
        &refused
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes(),
    )
    .expect("json");
    assert_eq!(body["code"], "unavailable");
    assert!(
        !body["message"].as_str().unwrap_or("").contains("disk full"),
        "5xx bodies say nothing internal: {body}"
    );
    assert_eq!(store.event_count().await.expect("count"), 0);

    // Until the journal is let in again, nothing is taken, and /readyz says why.
    let readyz = router
        .clone()
        .oneshot(get("/readyz", None))
        .await
        .expect("answer");
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send().await.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The disk has room again; once the daemon lets work in (/readyz), the sender's retry of the
    // same alert is taken.
    store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let readyz = router
            .clone()
            .oneshot(get("/readyz", None))
            .await
            .expect("answer");
        if readyz.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon never let work in again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(send().await.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let runs = store
            .runs(&homeostat_store::RunQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("runs");
        if runs
            .iter()
            .any(|run| run.status == homeostat_store::RunStatus::Succeeded)
        {
            assert_eq!(runs.len(), 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retried alert never ran: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Not mistaken for a repeat of the refused attempt, nor held back by its cooldown.
    assert_eq!(
        std::fs::read_to_string(&log).expect("log").lines().count(),
        1
    );
    assert!(engine
        .handle
        .metrics()
        .render()
        .contains("homeostat_events_duplicate_total 0"));
    engine.abort();
}
