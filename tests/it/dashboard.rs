//! The web dashboard through the router in process: signing in with a token, the incident list and
//! its filters, an incident acknowledged and annotated from its page, an approval given, the live
//! stream, and a read-only session that sees no controls and whose forged POSTs are refused.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::api::{get, ingest, ingest_body, post, Api, INGEST, READ, WRITE};
use crate::support::wait_for;

const WITHIN: Duration = Duration::from_secs(15);

const RUNBOOKS: &str = r#"
runbooks:
  - name: greet
    params:
      who: {type: string, required: true}
      times: {type: integer, default: 1}
    steps:
      - {name: hello, action: log, with: {message: "hello {{ params.who }} x{{ params.times }}"}}
  - name: gated
    steps:
      - {name: prepare, action: log, with: {message: prepared}}
      - name: ok
        approval: {approvers: [w], message: "apply it?"}
      - {name: apply, action: log, with: {message: applied}}
"#;

/// A browser's view of the dashboard: one session cookie, pages as text.
struct Browser<'a> {
    api: &'a Api,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no form on the page:\n{}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(api: &'a Api) -> Self {
        Self { api, cookie: None }
    }

    async fn send(&mut self, mut request: Request<Body>) -> Page {
        if let Some(cookie) = &self.cookie {
            request
                .headers_mut()
                .insert(header::COOKIE, cookie.parse().expect("cookie"));
        }
        let response = self
            .api
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(set) = headers.get(header::SET_COOKIE) {
            let pair = set.to_str().expect("ascii").split(';').next().unwrap_or("");
            self.cookie = Some(pair.to_string()).filter(|pair| !pair.ends_with('='));
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(form_request(path, fields)).await
    }

    /// The same form as another site's page would post it.
    async fn cross_site_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut request = form_request(path, fields);
        request
            .headers_mut()
            .insert("sec-fetch-site", "cross-site".parse().expect("header"));
        self.send(request).await
    }

    /// A streamed answer (server-sent events) with the session cookie, unread.
    async fn stream(&self, path: &str) -> axum::response::Response {
        let mut request = Request::get(path).body(Body::empty()).expect("request");
        if let Some(cookie) = &self.cookie {
            request
                .headers_mut()
                .insert(header::COOKIE, cookie.parse().expect("cookie"));
        }
        self.api
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router answers")
    }

    /// Reloads `path` until it contains `text`; the page that does.
    async fn wait_for(&mut self, path: &str, text: &str) -> Page {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let page = self.get(path).await;
            if page.body.contains(text) {
                return page;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never showed {text}: {}",
                page.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sign_in(&mut self, token: &str) {
        let page = self
            .form("/login", &[("token", token), ("next", "/incidents")])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert!(self.cookie.is_some());
    }
}

/// A form's `POST`, URL-encoded as a browser sends it.
fn form_request(path: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let body: String = fields
        .iter()
        .map(|(name, value)| {
            let value: String = value
                .bytes()
                .map(|byte| match byte {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (byte as char).to_string(),
                    _ => format!("%{byte:02X}"),
                })
                .collect();
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&");
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request")
}

#[tokio::test]
async fn pages_ask_to_sign_in_and_a_token_becomes_a_strict_http_only_cookie() {
    let api = Api::start("").await;
    let mut browser = Browser::new(&api);

    let page = browser.get("/").await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/incidents")
    );
    let page = browser.get("/incidents?state=all").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2Fincidents%3Fstate%3Dall");
    let page = browser.get(page.location()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains(r#"<input id="token" name="token" type="password""#));
    assert!(
        page.body.contains(r#"incidents?state=all""#),
        "{}",
        page.body
    );
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");

    let page = browser.form("/login", &[("token", "guess")]).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("not one of the configured"),
        "{}",
        page.body
    );
    let page = browser.form("/login", &[("token", INGEST)]).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("no `read` scope"), "{}", page.body);
    assert!(browser.cookie.is_none());

    // Another site cannot sign a browser in, nor post a form with a session.
    let forged = browser.cross_site_form("/login", &[("token", WRITE)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert!(browser.cookie.is_none());

    // Only a path on this server is followed after signing in.
    let page = browser
        .form("/login", &[("token", WRITE), ("next", "//evil.example/")])
        .await;
    assert_eq!(page.location(), "/incidents");
    let cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("homeostat_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains(WRITE),
        "the cookie holds a session id, not the token"
    );
    let page = browser.get("/incidents").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(">w</span>") || page.body.contains(">w "),
        "{}",
        page.body
    );

    // Signing out needs the page's CSRF token; then the cookie no longer opens anything.
    let csrf = page.csrf();
    let stolen = browser.cookie.clone();
    browser.form("/logout", &[("csrf", &csrf)]).await;
    assert!(browser.cookie.is_none());
    browser.cookie = stolen;
    assert_eq!(
        browser.get("/incidents").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn an_alert_appears_in_the_list_and_is_acknowledged_and_noted_from_its_page() {
    let api = Api::start("").await;
    let mut browser = Browser::new(&api);
    browser.sign_in(WRITE).await;

    let page = browser.get("/incidents").await;
    assert!(page.body.contains("All quiet"), "{}", page.body);
    ingest(&api, &[("DiskFull", "firing")]).await;
    let page = browser.get("/incidents").await;
    assert!(
        page.body.contains(r#"<a href="/incidents/1">DiskFull</a>"#),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(r#"<span class="count" data-count="open">1</span>"#));

    let page = browser.get("/incidents/1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Time to detect"));
    assert!(page.body.contains(r#"action="/incidents/1/ack""#));
    let csrf = page.csrf();

    // From another site a POST is refused even with the page's CSRF token.
    let forged = browser
        .cross_site_form("/incidents/1/ack", &[("csrf", &csrf), ("text", "x")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    // Without the page's CSRF token a POST is refused, whatever cookie it carries.
    let forged = browser.form("/incidents/1/ack", &[("text", "x")]).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);
    let forged = browser
        .form("/incidents/1/ack", &[("csrf", "0123"), ("text", "x")])
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let (_, _, incident) = api.call(get("/api/v1/incidents/1", Some(READ))).await;
    assert_eq!(incident["incident"]["state"], "open");

    let page = browser
        .form("/incidents/1/ack", &[("csrf", &csrf), ("text", "on it")])
        .await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/incidents/1"),
        "{}",
        page.body
    );
    let page = browser
        .form(
            "/incidents/1/note",
            &[("csrf", &csrf), ("text", "disk at 99%, <b>cleaning</b>")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let page = browser.get("/incidents/1").await;
    assert!(page
        .body
        .contains(r#"<span class="badge acknowledged">acknowledged</span>"#));
    assert!(
        !page.body.contains(r#"action="/incidents/1/ack""#),
        "acknowledged once"
    );
    // A note is text: the markup someone typed is escaped.
    assert!(
        page.body
            .contains("disk at 99%, &lt;b&gt;cleaning&lt;&#x2f;b&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>cleaning</b>"));
    let (_, _, incident) = api.call(get("/api/v1/incidents/1", Some(READ))).await;
    assert_eq!(incident["incident"]["acknowledged_by"], "w");

    // The postmortem draft the page links to opens in the browser, with the session.
    assert!(page.body.contains(r#"href="/incidents/1/postmortem.md""#));
    let draft = browser.get("/incidents/1/postmortem.md").await;
    assert_eq!(draft.status, StatusCode::OK);
    assert!(draft.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    assert!(
        draft.body.contains("DiskFull") && draft.body.contains("disk at 99%"),
        "{}",
        draft.body
    );

    // Acknowledging again says why not.
    let page = browser
        .form("/incidents/1/ack", &[("csrf", &csrf), ("text", "")])
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.body.contains("already acknowledged by w"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_read_only_token_sees_no_controls_and_its_forged_posts_are_refused() {
    let api = Api::start(RUNBOOKS).await;
    ingest(&api, &[("DiskFull", "firing")]).await;
    let (status, _, started) = api
        .call(post("/api/v1/runbooks/gated/runs", Some(WRITE), "{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let run = started["run_id"].as_str().unwrap().to_string();
    wait_for(
        "the run to wait for its approval",
        WITHIN,
        || async {
            let (_, _, shown) = api
                .call(get(&format!("/api/v1/runs/{run}"), Some(READ)))
                .await;
            (!shown["pending_approvals"].as_array()?.is_empty()).then_some(())
        },
        String::new,
    )
    .await;

    let mut reader = Browser::new(&api);
    reader.sign_in(READ).await;
    for path in [
        "/incidents",
        "/incidents/1",
        "/runs",
        &format!("/runs/{run}"),
        "/approvals",
    ] {
        let page = reader.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains("read-only"), "{path}");
        // Its only form is signing out.
        assert_eq!(
            page.body.matches(r#"<form method="post""#).count(),
            1,
            "{path}: {}",
            page.body
        );
    }
    let approvals = reader.get("/approvals").await;
    assert!(approvals.body.contains("apply it?"));
    assert!(
        approvals.body.contains("Only w may answer"),
        "{}",
        approvals.body
    );

    // With its own valid CSRF token, a forged POST is still refused: the token cannot write.
    let csrf = approvals.csrf();
    for (path, fields) in [
        ("/incidents/1/ack", vec![("csrf", csrf.as_str())]),
        ("/incidents/1/resolve", vec![("csrf", csrf.as_str())]),
        (
            "/incidents/1/note",
            vec![("csrf", csrf.as_str()), ("text", "x")],
        ),
        (
            &format!("/runs/{run}/approve"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            &format!("/runs/{run}/cancel"),
            vec![("csrf", csrf.as_str())],
        ),
    ] {
        let page = reader.form(path, &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(page.body.contains("lacks the `write` scope"), "{path}");
    }
    let (_, _, shown) = api
        .call(get(&format!("/api/v1/runs/{run}"), Some(READ)))
        .await;
    assert_eq!(shown["run"]["status"], "running");
    let (_, _, incident) = api.call(get("/api/v1/incidents/1", Some(READ))).await;
    assert_eq!(incident["incident"]["state"], "open");
    assert!(incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["kind"] != "note"));

    // The approver approves from the approvals page and sees the run finish.
    let mut approver = Browser::new(&api);
    approver.sign_in(WRITE).await;
    let page = approver.get(&format!("/runs/{run}")).await;
    assert!(
        page.body
            .contains("Waiting for approval at <code>ok</code>"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(&format!(r#"formaction="/runs/{run}/reject""#)));
    let page = approver.get("/approvals").await;
    assert!(page
        .body
        .contains(&format!(r#"action="/runs/{run}/approve""#)));
    let csrf = page.csrf();
    let page = approver
        .form(
            &format!("/runs/{run}/approve"),
            &[("csrf", &csrf), ("step", "ok"), ("back", "approvals")],
        )
        .await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/approvals"),
        "{}",
        page.body
    );
    let page = approver
        .wait_for(
            &format!("/runs/{run}"),
            r#"<span class="badge run-succeeded">succeeded</span>"#,
        )
        .await;
    for step in ["prepare", "ok", "apply"] {
        assert!(
            page.body.contains(&format!("<code>{step}</code>")),
            "{step}"
        );
    }
    assert!(approver
        .get("/approvals")
        .await
        .body
        .contains("Nothing waits"));
}

#[tokio::test]
async fn the_list_filters_by_state_label_and_matchers_and_groups_and_pages() {
    let api = Api::start("").await;
    let mut browser = Browser::new(&api);
    browser.sign_in(READ).await;
    // 60 incidents of their own (no grouping labels configured, so one per alert name).
    let names: Vec<String> = (0..60).map(|n| format!("Alert{n:02}")).collect();
    let alerts: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "firing")).collect();
    for chunk in alerts.chunks(5) {
        ingest(&api, chunk).await;
    }
    ingest(&api, &[("Alert00", "resolved")]).await;

    let page = browser.get("/incidents").await;
    assert!(
        page.body.contains(r#"data-count="active">59<"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-count="resolved">1<"#));
    assert!(page.body.contains(r#"data-count="all">60<"#));
    assert_eq!(page.body.matches(r#"<tr class="state-"#).count(), 50);
    // Newest first, and the next page goes on from the last shown.
    assert!(page.body.contains(r#"href="/incidents/60""#));
    let older = page
        .body
        .split(r#"rel="next""#)
        .next()
        .and_then(|head| head.rsplit("href=\"").next())
        .map(|href| href.trim_end_matches("\" ").replace("&amp;", "&"))
        .expect("an older link");
    assert!(
        older.starts_with("/incidents?state=active&before="),
        "{older}"
    );
    let page = browser.get(&older).await;
    assert_eq!(
        page.body.matches(r#"<tr class="state-"#).count(),
        9,
        "{}",
        page.body
    );
    assert!(!page.body.contains(r#"rel="next""#));

    let page = browser.get("/incidents?state=resolved").await;
    assert_eq!(page.body.matches(r#"<tr class="state-"#).count(), 1);
    assert!(page.body.contains(">Alert00<"));

    // Incidents group by their grouping labels, which are none here; matchers and label filters
    // see the same labels.
    let page = browser
        .get("/incidents?state=all&q=%7Bservice%3D%22checkout%22%7D")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("match these filters"), "{}", page.body);
    let page = browser
        .get("/incidents?state=all&q=%7Bservice%3D%22%22%7D")
        .await;
    assert_eq!(page.body.matches(r#"<tr class="state-"#).count(), 50);
    let page = browser.get("/incidents?group=service").await;
    assert!(page.body.contains(r#"<tr class="group">"#));
    assert!(page.body.contains("service=(none)"));

    for (query, says) in [
        ("state=bogus", "state: `bogus` is not one of"),
        ("q=%7Bservice%3D~%22((%22%7D", "search:"),
        ("label=service", "`label` is `service`; use `name=value`"),
        ("before=x", "before"),
    ] {
        let page = browser.get(&format!("/incidents?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(page.body.contains(says), "{query}: {}", page.body);
    }
}

#[tokio::test]
async fn the_live_stream_says_when_the_journal_changed() {
    let api = Api::start("").await;
    let mut browser = Browser::new(&api);
    let refused = browser.get("/live").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    browser.sign_in(READ).await;
    let response = browser.stream("/live").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut stream = response.into_body().into_data_stream();
    ingest(&api, &[("DiskFull", "firing")]).await;
    let event = tokio::time::timeout(WITHIN, stream.next())
        .await
        .expect("an event within the deadline")
        .expect("the stream goes on")
        .expect("bytes");
    let text = String::from_utf8_lossy(&event);
    assert!(text.contains("event: changed"), "{text}");
    // The page the script then reads has the new incident in its live part.
    let page = browser.get("/incidents").await;
    assert!(page.body.contains("DiskFull"));

    // A page drawn before a change that came before its stream opened hears of it at once.
    let drawn = page
        .body
        .split(r#"<body data-version=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's count")
        .to_string();
    ingest(&api, &[("HighLatency", "firing")]).await;
    let response = browser.stream(&format!("/live?since={drawn}")).await;
    let mut stream = response.into_body().into_data_stream();
    let event = tokio::time::timeout(Duration::from_millis(300), stream.next())
        .await
        .expect("at once, not after the next change")
        .expect("the stream goes on")
        .expect("bytes");
    assert!(String::from_utf8_lossy(&event).contains("event: changed"));
}

#[tokio::test]
async fn a_silence_is_previewed_created_and_expired_from_the_page() {
    let api = Api::start("").await;
    ingest(&api, &[("DiskFull", "firing"), ("HighLatency", "firing")]).await;
    let mut browser = Browser::new(&api);
    browser.sign_in(WRITE).await;
    // An incident's firing alert links to a silence of exactly its labels.
    let incident = browser.get("/incidents/1").await;
    let link = incident
        .body
        .split(r#"<a href="/silences?matchers="#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|rest| format!("/silences?matchers={}", rest.replace("&amp;", "&")))
        .expect("a silence link");
    let page = browser.get(&link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("alertname=&quot;DiskFull&quot;\ninstance=&quot;i1&quot;"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"value="incident #1""#),
        "{}",
        page.body
    );
    assert!(page.body.contains("No silences in effect"));
    let csrf = page.csrf();

    let preview = |matchers: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("matchers", matchers.to_string()),
            ("duration", "2h".to_string()),
            ("comment", "disk swap".to_string()),
            ("action", "preview".to_string()),
        ]
    };
    let fields = preview("alertname=\"DiskFull\"\ninstance=~\"i.*\"");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = browser.form("/silences", &fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("It would mute 1 alert firing now"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<strong>DiskFull</strong>"));
    assert!(!page.body.contains("<strong>HighLatency</strong>"));
    // The form keeps what was typed, and nothing was created.
    assert!(page.body.contains("disk swap"));
    assert!(page.body.contains("No silences in effect"));

    let fields = preview("alertname=~\"((\"");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = browser.form("/silences", &fields).await;
    assert!(page.body.contains(r#"class="notice bad""#), "{}", page.body);

    let page = browser
        .form(
            "/silences",
            &[
                ("csrf", &csrf),
                ("matchers", "alertname=\"DiskFull\""),
                ("duration", "2h"),
                ("comment", "disk swap"),
                ("action", "create"),
            ],
        )
        .await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/silences"),
        "{}",
        page.body
    );
    let page = browser.get("/silences").await;
    assert!(
        page.body
            .contains(r#"<span class="badge silence-active">active</span>"#),
        "{}",
        page.body
    );
    let (_, _, listed) = api.call(get("/api/v1/silences", Some(READ))).await;
    let id = listed["silences"][0]["id"]
        .as_str()
        .expect("a silence")
        .to_string();
    assert_eq!(listed["silences"][0]["created_by"], "w");
    assert!(page
        .body
        .contains(&format!(r#"action="/silences/{id}/expire""#)));

    // A reader sees it without the button, and cannot expire it.
    let mut reader = Browser::new(&api);
    reader.sign_in(READ).await;
    let page = reader.get("/silences").await;
    assert!(page.body.contains("disk swap") && !page.body.contains("/expire"));
    let refused = reader
        .form(&format!("/silences/{id}/expire"), &[("csrf", &page.csrf())])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let page = browser
        .form(&format!("/silences/{id}/expire"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(browser
        .get("/silences")
        .await
        .body
        .contains("No silences in effect"));
    let page = browser.get("/silences?expired=1").await;
    assert!(page
        .body
        .contains(r#"<span class="badge silence-expired">expired</span>"#));
    assert!(page.body.contains("expired by w"));
}

#[tokio::test]
async fn rules_show_their_guards_and_a_rule_disabled_by_loop_detection_is_enabled_again() {
    let api = Api::start(
        r#"
incidents: {sweep_secs: 1}
rules:
  - name: restart-orders
    description: Restart orders when it is down.
    match: ['service="orders"']
    on_incident: [opened, escalated]
    target: "{{ labels.service }}"
    verify: {within_secs: 1}
    guards: {loop: {runs: 1, window_secs: 3600}, cooldown_secs: 0, max_runs: {count: 5, window_secs: 600}}
    steps:
      - {name: restart, action: log, with: {message: "restarting {{ labels.service }}"}}
"#,
    )
    .await;
    let mut browser = Browser::new(&api);
    browser.sign_in(WRITE).await;
    let page = browser.get("/rules").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for shown in [
        "<code>restart-orders</code>",
        "Restart orders when it is down.",
        r#"<code class="label">service=&quot;orders&quot;</code>"#,
        "0 of 5 in 10m 0s",
        "1 run in 1h 0m",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(!page.body.contains("Disabled by loop detection"));

    // The alert never resolves, so the second run on `orders` is a loop: stopped and disabled.
    let payload = serde_json::json!({"version": "4", "status": "firing", "receiver": "homeostat",
        "alerts": [{"status": "firing", "labels": {"alertname": "OrdersDown", "service": "orders"}}]});
    ingest_body(&api, payload.to_string()).await;
    let page = browser
        .wait_for("/rules", "Disabled by loop detection")
        .await;
    assert!(page
        .body
        .contains(r#"action="/rules/restart-orders/enable""#));
    let mut reader = Browser::new(&api);
    reader.sign_in(READ).await;
    let seen = reader.get("/rules").await;
    assert!(
        seen.body.contains("Disabled by loop detection") && !seen.body.contains("Enable again")
    );

    let page = browser
        .form(
            "/rules/restart-orders/enable",
            &[("csrf", &page.csrf()), ("target", "orders")],
        )
        .await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/rules"),
        "{}",
        page.body
    );
    assert!(!browser
        .get("/rules")
        .await
        .body
        .contains("Disabled by loop detection"));
    let (_, _, listed) = api.call(get("/api/v1/rules/disabled", Some(READ))).await;
    assert_eq!(listed["disabled"], serde_json::json!([]));
}

#[tokio::test]
async fn a_runbook_is_run_against_an_incident_from_its_page() {
    let api = Api::start(RUNBOOKS).await;
    ingest(&api, &[("DiskFull", "firing")]).await;
    let mut browser = Browser::new(&api);
    browser.sign_in(WRITE).await;
    let page = browser.get("/incidents/1").await;
    assert!(
        page.body.contains(r#"action="/incidents/1/run""#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<option value="greet">greet (times, who*)</option>"#),
        "{}",
        page.body
    );
    let csrf = page.csrf();

    // A parameter of the wrong type is refused with the API's message, and nothing runs.
    let refused = browser
        .form(
            "/incidents/1/run",
            &[
                ("csrf", &csrf),
                ("runbook", "greet"),
                ("params", "who=ops\ntimes=many"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.body.contains("param `times`"), "{}", refused.body);
    let refused = browser
        .form(
            "/incidents/1/run",
            &[("csrf", &csrf), ("runbook", "greet"), ("params", "who")],
        )
        .await;
    assert!(
        refused.body.contains("is not `name=value`"),
        "{}",
        refused.body
    );

    let started = browser
        .form(
            "/incidents/1/run",
            &[
                ("csrf", &csrf),
                ("runbook", "greet"),
                ("params", "who = ops\ntimes=3"),
            ],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let run_page = started.location().to_string();
    assert!(run_page.starts_with("/runs/"), "{run_page}");
    let page = browser
        .wait_for(
            &run_page,
            r#"<span class="badge run-succeeded">succeeded</span>"#,
        )
        .await;
    assert!(
        page.body.contains(r#"<a href="/incidents/1">#1</a>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("hello ops x3"), "{}", page.body);

    // The run's log as lines of text, ending once the run has.
    let response = browser.stream(&format!("{run_page}/log")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let log = tokio::time::timeout(WITHIN, response.into_body().collect())
        .await
        .expect("the stream ends with the run")
        .expect("the log")
        .to_bytes();
    let log = String::from_utf8_lossy(&log);
    for line in [
        "event: line",
        "run_started: ",
        "step_finished: ",
        "run_finished: ",
        "event: end",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    let incident = browser.get("/incidents/1").await;
    assert!(
        incident.body.contains("started by `w`"),
        "{}",
        incident.body
    );

    // Started again with the same parameters, target and incident: a new run.
    assert!(page.body.contains("Start again with the same parameters"));
    let again = browser
        .form(&format!("{run_page}/again"), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    assert_ne!(again.location(), run_page);
    let first = run_page.trim_start_matches("/runs/");
    let second = again.location().trim_start_matches("/runs/");
    let (_, _, one) = api
        .call(get(&format!("/api/v1/runs/{first}"), Some(READ)))
        .await;
    let (_, _, two) = api
        .call(get(&format!("/api/v1/runs/{second}"), Some(READ)))
        .await;
    for field in ["runbook", "target", "incident_id"] {
        assert_eq!(one["run"][field], two["run"][field], "{field}");
    }
    assert_eq!(one["run"]["plan"]["params"], two["run"]["plan"]["params"]);
}

#[tokio::test]
async fn the_health_page_shows_ingest_the_journal_and_detection_times() {
    let api = Api::start("").await;
    ingest(&api, &[("DiskFull", "firing"), ("HighLatency", "firing")]).await;
    ingest(&api, &[("DiskFull", "resolved")]).await;
    let mut browser = Browser::new(&api);
    browser.sign_in(READ).await;
    let page = browser.get("/health").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for shown in [
        r#"<span class="badge resolved">taking work</span>"#,
        "<code>alertmanager</code>",
        "Runs that need a person",
        "None: no run stopped with an outcome unknown.",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    // This week: two incidents opened, one resolved.
    let week = page
        .body
        .split("<tbody>")
        .nth(2)
        .and_then(|rows| rows.split("</tr>").next())
        .expect("this week's row");
    assert!(week.contains(r#"<td class="num">2</td>"#), "{week}");
    assert!(week.contains(r#"<td class="num">1</td>"#), "{week}");
}
