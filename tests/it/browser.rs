//! The dashboard in a real browser: Debian's Chromium, headless, started and stopped by each test
//! and driven over the DevTools protocol (a WebSocket), against the daemon's router on a loopback
//! port. What a person does: sign in, watch an alert appear without reloading, open its incident
//! and the run that fixed it, acknowledge it, approve a waiting run and watch its steps finish,
//! preview and create a silence; and a read-only token that sees no control and whose forged POST
//! is refused.
//!
//! Without Chromium these tests say so and pass, unless `HOMEOSTAT_REQUIRE_CHROMIUM=1` (CI sets
//! it), as the PostgreSQL tests do. `HOMEOSTAT_SCREENSHOTS=DIR` keeps the screenshots the last test
//! takes of every page, light and dark (docs/dashboard.md shows them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::http::StatusCode;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{get, ingest, ingest_body, post, Api, READ, WRITE};

const WITHIN: Duration = Duration::from_secs(20);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One headless Chromium with one page, and its own profile (so its own cookies).
struct Chromium {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    session: String,
    next_id: u64,
}

/// The Chromium binary, or `None` (and a note) when it is not installed and not required.
fn chromium_binary() -> Option<PathBuf> {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(output) = std::process::Command::new("which").arg(candidate).output() {
            if output.status.success() {
                let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
                return Some(PathBuf::from(path));
            }
        }
    }
    assert!(
        std::env::var("HOMEOSTAT_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "Chromium is required (HOMEOSTAT_REQUIRE_CHROMIUM=1) but not installed: apt-get install chromium"
    );
    eprintln!("skipped: Chromium is not installed (apt-get install chromium)");
    None
}

impl Chromium {
    async fn start(binary: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = tokio::process::Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // It says where its DevTools endpoint is on stderr.
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let endpoint = tokio::time::timeout(WITHIN, async {
            while let Some(line) = lines.next_line().await.expect("stderr") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited before it listened");
        })
        .await
        .expect("chromium's DevTools endpoint within the deadline");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("connect to DevTools");
        let mut browser = Self {
            child,
            _profile: profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// Sends a command (to the page once attached); its id.
    async fn send(&mut self, method: &str, params: &Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send to DevTools");
        id
    }

    /// Sends a command and waits for its answer, passing events and other answers by.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, &params).await;
        let answer = tokio::time::timeout(WITHIN, async {
            while let Some(frame) = self.socket.next().await {
                let Ok(Message::Text(text)) = frame else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
                if value["id"] == id {
                    return value;
                }
            }
            panic!("DevTools closed");
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {params}"));
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Evaluates JavaScript in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    async fn wait_until(&mut self, expression: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            if self.eval(expression).await == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!("{what}: not within {WITHIN:?}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` and waits for the page to load.
    async fn open(&mut self, url: &str) {
        self.eval("window.__loaded = false").await;
        // Its answer comes when the navigation commits, which a page's open event stream can
        // hold up; the load is what counts, so it is not awaited.
        self.send("Page.navigate", &json!({"url": url})).await;
        self.wait_for_load(url).await;
    }

    /// Waits for a new document (after a navigation or a form's submission) to finish loading.
    async fn wait_for_load(&mut self, what: &str) {
        self.wait_until(
            "window.__loaded !== false && document.readyState === 'complete'",
            &format!("{what} to load"),
        )
        .await;
    }

    /// Clicks the element `selector` finds, then waits for the page it submits to.
    async fn click_and_load(&mut self, selector: &str) {
        self.eval("window.__loaded = false").await;
        let clicked = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); if (!el) return false; el.click(); return true; }})()"
            ))
            .await;
        assert_eq!(clicked, json!(true), "nothing to click at {selector}");
        self.wait_for_load(selector).await;
    }

    async fn sign_in(&mut self, base: &str, token: &str) {
        self.open(&format!("{base}/incidents")).await;
        assert_eq!(
            self.eval("location.pathname").await,
            json!("/login"),
            "a page asks to sign in first"
        );
        self.eval(&format!(
            "document.querySelector('#token').value = {token:?}"
        ))
        .await;
        self.click_and_load("form[action='/login'] button[type=submit]")
            .await;
        assert_eq!(self.eval("location.pathname").await, json!("/incidents"));
        // The cookie is HttpOnly: the page's scripts cannot read it.
        assert_eq!(self.eval("document.cookie").await, json!(""));
    }

    async fn screenshot(&mut self, path: &Path, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let bytes = base64_decode(shot["data"].as_str().expect("image data"));
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, bytes).expect("write the screenshot");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |byte: u8| -> u32 {
        match byte {
            b'A'..=b'Z' => u32::from(byte - b'A'),
            b'a'..=b'z' => u32::from(byte - b'a') + 26,
            b'0'..=b'9' => u32::from(byte - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|byte| *byte != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|byte| **byte == b'=').count();
        let n = chunk
            .iter()
            .fold(0u32, |acc, byte| (acc << 6) | value(*byte));
        let n = n << (6 * (4 - chunk.len()));
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    out
}

const CONFIG: &str = r#"
rules:
  - name: clean-disk
    match: ['alertname="DiskFull"']
    target: "{{ labels.instance }}"
    steps:
      - {name: clean, action: log, with: {message: "cleaning {{ labels.instance }}"}}
runbooks:
  - name: gated
    steps:
      - {name: prepare, action: log, with: {message: prepared}}
      - name: ok
        approval: {approvers: [w], message: "apply it?"}
      - {name: apply, action: log, with: {message: applied}}
"#;

#[tokio::test]
async fn an_on_call_engineer_works_an_incident_in_the_browser() {
    let Some(binary) = chromium_binary() else {
        return;
    };
    let api = Api::start(CONFIG).await;
    let (port, _server) = crate::support::serve(api.router.clone()).await;
    let base = format!("http://127.0.0.1:{port}");
    let mut browser = Chromium::start(&binary).await;
    browser.sign_in(&base, WRITE).await;

    // An alert arrives and appears in the list without a reload.
    browser.eval("window.__still = 'the same page'").await;
    ingest(&api, &[("DiskFull", "firing")]).await;
    browser
        .wait_until(
            "document.querySelector('a[href=\"/incidents/1\"]') !== null",
            "the new incident in the list",
        )
        .await;
    assert_eq!(browser.eval("window.__still").await, json!("the same page"));

    // Its incident shows the run that fixed it.
    browser
        .click_and_load("a[href='/incidents/1']:not(.label)")
        .await;
    browser
        .wait_until(
            "document.body.innerText.includes('rule:clean-disk')",
            "the rule's run on the incident",
        )
        .await;
    browser
        .click_and_load("section[aria-labelledby='runs-h'] a[href^='/runs/']")
        .await;
    browser
        .wait_until(
            "document.querySelector('h1 .badge.run-succeeded') !== null && document.querySelectorAll('tr.step-succeeded').length === 1",
            "the run's step and its success",
        )
        .await;

    // Acknowledge it.
    browser.open(&format!("{base}/incidents/1")).await;
    browser
        .eval("document.querySelector('#ack-text').value = 'on it'")
        .await;
    browser
        .click_and_load("form[action='/incidents/1/ack'] button")
        .await;
    browser
        .wait_until(
            "document.body.innerText.includes('acknowledged by w: on it')",
            "the incident acknowledged",
        )
        .await;
    let (_, _, shown) = api.call(get("/api/v1/incidents/1", Some(READ))).await;
    assert_eq!(shown["incident"]["acknowledged_by"], "w");

    // Approve a waiting run and watch its steps complete.
    let (status, _, started) = api
        .call(post("/api/v1/runbooks/gated/runs", Some(WRITE), "{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let run = started["run_id"].as_str().unwrap().to_string();
    browser.open(&format!("{base}/approvals")).await;
    browser
        .wait_until(
            "document.body.innerText.includes('apply it?')",
            "the approval waiting",
        )
        .await;
    browser
        .click_and_load(&format!(
            "form[action='/runs/{run}/approve'] button:not(.danger)"
        ))
        .await;
    browser.open(&format!("{base}/runs/{run}")).await;
    browser
        .wait_until(
            "document.querySelector('h1 .badge.run-succeeded') !== null && document.body.innerText.includes('apply')",
            "the approved run succeeded through its last step",
        )
        .await;
    browser
        .wait_until(
            "document.querySelector('pre.log').getAttribute('data-ended') === 'true' && document.querySelector('pre.log').innerText.includes('run_finished: ')",
            "the run's log streamed to its end",
        )
        .await;

    // Preview a silence, then create it.
    browser.open(&format!("{base}/silences")).await;
    browser
        .eval("document.querySelector('#matchers').value = 'alertname=\"DiskFull\"'; document.querySelector('#comment').value = 'disk swap'")
        .await;
    browser.click_and_load("button[value='preview']").await;
    browser
        .wait_until(
            "document.body.innerText.includes('It would mute 1 alert firing now')",
            "the silence's preview",
        )
        .await;
    browser.click_and_load("button[value='create']").await;
    browser
        .wait_until(
            "document.querySelector('.badge.silence-active') !== null",
            "the silence active",
        )
        .await;
}

#[tokio::test]
async fn a_read_only_token_sees_no_control_in_the_browser_and_its_forged_post_is_refused() {
    let Some(binary) = chromium_binary() else {
        return;
    };
    let api = Api::start(CONFIG).await;
    ingest(&api, &[("DiskFull", "firing")]).await;
    let (port, _server) = crate::support::serve(api.router.clone()).await;
    let base = format!("http://127.0.0.1:{port}");
    let mut browser = Chromium::start(&binary).await;
    browser.sign_in(&base, READ).await;
    // More pages than a browser keeps connections to one server: each page's event stream must
    // close when it is left.
    for path in [
        "/incidents",
        "/incidents/1",
        "/runs",
        "/approvals",
        "/silences",
        "/rules",
        "/incidents",
        "/runs",
    ] {
        browser.open(&format!("{base}{path}")).await;
        let controls = browser
            .eval("[...document.querySelectorAll('form[method=post]')].map(f => f.getAttribute('action')).filter(a => a !== '/logout')")
            .await;
        assert_eq!(controls, json!([]), "{path}");
    }
    // A POST forged from the page itself, with the session's own CSRF token, is refused.
    browser.open(&format!("{base}/incidents/1")).await;
    let status = browser
        .eval(
            "(async () => { const csrf = document.querySelector('input[name=csrf]').value; \
             const answer = await fetch('/incidents/1/ack', {method: 'POST', body: new URLSearchParams({csrf, text: 'x'})}); \
             return answer.status; })()",
        )
        .await;
    assert_eq!(status, json!(403));
    let (_, _, shown) = api.call(get("/api/v1/incidents/1", Some(READ))).await;
    assert!(shown["incident"]["acknowledged_at"].is_null(), "{shown}");
}

/// Every page, light and dark, from a store with a few hundred incidents and a remediated one; kept
/// in `HOMEOSTAT_SCREENSHOTS` when set.
#[tokio::test]
async fn every_page_renders_in_the_browser_light_and_dark() {
    let Some(binary) = chromium_binary() else {
        return;
    };
    // Incidents per service, alert and round, some resolved, as a busy week would leave them.
    let api = Api::start(&format!(
        "incidents: {{group_by: [service, alertname, round]}}\n{CONFIG}"
    ))
    .await;
    let services = [
        "checkout", "payments", "search", "catalog", "auth", "orders", "cart",
    ];
    let alerts = [
        "HighLatency",
        "ErrorBudgetBurn",
        "PodCrashLooping",
        "DiskFilling",
        "Saturation",
    ];
    let mut sent = 0;
    for (round, status) in (0..8)
        .map(|round| (round, "firing"))
        .chain((0..4).map(|round| (round, "resolved")))
    {
        for service in services {
            let payload: Vec<Value> = alerts
                .iter()
                .map(|alert| {
                    json!({"status": status,
                           "labels": {"alertname": alert, "service": service, "round": round.to_string(),
                                      "severity": if *alert == "ErrorBudgetBurn" { "page" } else { "ticket" }},
                           "annotations": {"summary": format!("{alert} on {service}")}})
                })
                .collect();
            let body = json!({"version": "4", "status": status, "receiver": "homeostat", "alerts": payload});
            ingest_body(&api, body.to_string()).await;
            sent += alerts.len();
        }
    }
    assert_eq!(sent, 420);
    ingest(&api, &[("DiskFull", "firing")]).await;
    let (status, _, started) = api
        .call(post("/api/v1/runbooks/gated/runs", Some(WRITE), "{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let run = started["run_id"].as_str().unwrap().to_string();
    let (port, _server) = crate::support::serve(api.router.clone()).await;
    let base = format!("http://127.0.0.1:{port}");
    let kept = std::env::var("HOMEOSTAT_SCREENSHOTS")
        .ok()
        .map(PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = kept.clone().unwrap_or_else(|| dir.path().to_path_buf());
    std::fs::create_dir_all(&out).expect("screenshot dir");
    let mut browser = Chromium::start(&binary).await;
    browser.sign_in(&base, WRITE).await;
    let (_, _, listed) = api.call(get("/api/v1/incidents?limit=1", Some(READ))).await;
    let incident = listed["incidents"][0]["id"]
        .as_i64()
        .expect("the DiskFull incident");
    for (name, path) in [
        ("incidents", "/incidents".to_string()),
        ("incident", format!("/incidents/{incident}")),
        ("runs", "/runs".to_string()),
        ("run", format!("/runs/{run}")),
        ("approvals", "/approvals".to_string()),
        ("silences", "/silences".to_string()),
        ("rules", "/rules".to_string()),
        ("slos", "/slos".to_string()),
        ("detectors", "/detectors".to_string()),
        ("health", "/health".to_string()),
    ] {
        browser.open(&format!("{base}{path}")).await;
        let heading = browser
            .eval("document.querySelector('h1') ? document.querySelector('h1').innerText : ''")
            .await;
        assert!(
            !heading.as_str().unwrap_or("").is_empty() && heading != json!("That did not work"),
            "{path}: {heading}"
        );
        for dark in [false, true] {
            let file = out.join(format!(
                "{name}-{}.png",
                if dark { "dark" } else { "light" }
            ));
            browser.screenshot(&file, dark).await;
            assert!(std::fs::metadata(&file).expect("written").len() > 10_000);
        }
    }
    if let Some(kept) = kept {
        eprintln!("screenshots in {}", kept.display());
    }
}
