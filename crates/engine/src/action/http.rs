//! The `http_request` action: sends one HTTP request and lets the response status decide success.
//! Also the HTTP plumbing that notifiers share: headers from secrets, bounded bodies, one-line errors.

use std::collections::BTreeMap;

use homeostat_core::action::HttpRequest;
use homeostat_core::config::MaybeSecret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::json;

use super::{Context, Outcome};
use crate::secrets::{self, Secret};

/// Response bodies are kept up to this many bytes; the rest is not read.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Sends `request` and waits for the status and the start of the body, or until `context.timeout`.
pub async fn run(request: &HttpRequest, context: &Context) -> Outcome {
    let (builder, shown_url) = match prepare(request, context) {
        Ok(prepared) => prepared,
        Err(message) => return Outcome::failed(json!({}), message),
    };
    tracing::debug!(method = %request.method, url = %shown_url, "sending http_request action");
    let reply = match tokio::time::timeout(context.timeout, send(builder)).await {
        Err(_elapsed) => return Outcome::timed_out(json!({}), context.timeout),
        // The client may carry a timeout of its own.
        Ok(Err(error)) if error.is_timeout() => {
            return Outcome::timed_out(json!({}), context.timeout)
        }
        Ok(Err(error)) => return Outcome::failed(json!({}), request_error(&shown_url, error)),
        Ok(Ok(reply)) => reply,
    };
    let output = json!({ "status": reply.status.as_u16(), "body": reply.text() });
    let expected = if request.expect_status.is_empty() {
        reply.status.is_success()
    } else {
        request.expect_status.contains(&reply.status.as_u16())
    };
    if expected {
        Outcome::succeeded(output)
    } else {
        let wanted = describe_expected(&request.expect_status);
        Outcome::failed(
            output,
            format!("got status {}, expected {wanted}", reply.status.as_u16()),
        )
    }
}

/// Builds the request; an `Err` is the one-line reason it cannot be sent.
fn prepare(
    request: &HttpRequest,
    context: &Context,
) -> Result<(reqwest::RequestBuilder, String), String> {
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("unknown method `{}`", request.method))?;
    let url = Url::parse(&request.url)
        .map_err(|error| format!("invalid url `{}`: {error}", request.url))?;
    let shown_url = shown_url(&url);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported url `{shown_url}`: the scheme must be http or https"
        ));
    }
    let (mut headers, _secrets) = headers(&request.headers)?;
    set_idempotency_key(&mut headers, &context.idempotency_key)?;
    let mut builder = context.http.request(method, url).headers(headers);
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    } else if let Some(value) = &request.json {
        // Sets `Content-Type: application/json` unless a header above already did.
        builder = builder.json(value);
    }
    Ok((builder, shown_url))
}

/// Resolves configured headers. The resolved secrets come back too, so that callers can scrub
/// them from anything a server echoes.
pub(crate) fn headers(
    configured: &BTreeMap<String, MaybeSecret>,
) -> Result<(HeaderMap, Vec<Secret>), String> {
    let mut headers = HeaderMap::new();
    let mut resolved = Vec::new();
    for (name, value) in configured {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let secret = secrets::resolve_maybe(value)
            .map_err(|error| format!("cannot set header `{name}`: {error}"))?;
        // The value is not quoted: it may be a secret.
        let mut header_value = HeaderValue::from_str(secret.expose()).map_err(|_| {
            format!("the value of header `{name}` contains characters a header cannot carry")
        })?;
        if let MaybeSecret::Secret(_) = value {
            // Keeps it out of the client's `Debug` output.
            header_value.set_sensitive(true);
            resolved.push(secret);
        }
        headers.append(header_name, header_value);
    }
    Ok((headers, resolved))
}

/// Adds `Idempotency-Key` unless the user set one, so that a retried step can be recognised.
pub(crate) fn set_idempotency_key(headers: &mut HeaderMap, key: &str) -> Result<(), String> {
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        let value = HeaderValue::from_str(key)
            .map_err(|_| format!("the idempotency key `{key}` is not a valid header value"))?;
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), value);
    }
    Ok(())
}

/// A response: its status and the first [`MAX_BODY_BYTES`] of its body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub truncated: bool,
}

impl Reply {
    pub fn text(&self) -> String {
        super::exec::lossy_prefix(&self.body, self.truncated)
    }
}

/// Sends the request and reads at most [`MAX_BODY_BYTES`] of the body, so a huge or endless
/// response cannot exhaust memory.
pub(crate) async fn send(builder: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let mut response = builder.send().await?;
    let status = response.status();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        let keep = chunk.len().min(room);
        body.extend_from_slice(&chunk[..keep]);
        if keep < chunk.len() {
            truncated = true;
            break;
        }
    }
    Ok(Reply {
        status,
        body,
        truncated,
    })
}

fn request_error(shown_url: &str, error: reqwest::Error) -> String {
    if error.is_connect() {
        format!("cannot reach `{shown_url}`: {}", cause(error))
    } else if error.is_body() || error.is_decode() {
        format!(
            "cannot read the response from `{shown_url}`: {}",
            cause(error)
        )
    } else {
        format!("request to `{shown_url}` failed: {}", cause(error))
    }
}

/// The root cause of a client error in a few lowercase words, such as "connection refused".
///
/// Only the innermost error is used: reqwest's own message repeats its sources and names the URL,
/// which for a Slack notifier is the secret.
pub(crate) fn cause(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut innermost: &(dyn std::error::Error + 'static) = &error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let Some(io) = innermost.downcast_ref::<std::io::Error>() else {
        return lowercase_first(&innermost.to_string());
    };
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => match io.raw_os_error() {
            // Without Rust's "(os error 101)" suffix.
            Some(code) => lowercase_first(nix::errno::Errno::from_raw(code).desc()),
            None => lowercase_first(&io.to_string()),
        },
    }
}

/// "Connection refused" becomes "connection refused", but "TLS handshake" stays as it is.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_string(),
    }
}

/// The URL as it may be shown: without a password in it.
fn shown_url(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Only fails for URLs that cannot have credentials, and this one has them.
    let _ = shown.set_password(Some("redacted"));
    shown.to_string()
}

fn describe_expected(expect_status: &[u16]) -> String {
    match expect_status {
        [] => "2xx".to_string(),
        [only] => only.to_string(),
        many => format!(
            "one of {}",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, StatusCode, Uri};
    use homeostat_core::config::{Notifier, SecretRef};
    use tokio::sync::mpsc;

    use super::*;
    use crate::action::Status;

    pub(crate) fn context(timeout: Duration, notifiers: Vec<Notifier>) -> Context {
        Context {
            idempotency_key: "run-1/2/1".into(),
            run_id: "run-1".into(),
            timeout,
            notifiers: notifiers
                .into_iter()
                .map(|notifier| (notifier.name().to_string(), notifier))
                .collect(),
            http: reqwest::Client::new(),
            dry_run: false,
            now: chrono::DateTime::UNIX_EPOCH,
            cluster: Default::default(),
        }
    }

    /// One request as a test server saw it.
    #[derive(Debug)]
    pub(crate) struct Received {
        pub path: String,
        pub headers: HeaderMap,
        pub body: Bytes,
    }

    impl Received {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }

        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|value| value.to_str().unwrap())
        }
    }

    /// Serves `router` on a free loopback port until the test ends.
    pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    /// A server that answers every request with `status` and a JSON or text `body`, and hands each
    /// request it received to the returned channel.
    pub(crate) async fn receiver(
        status: StatusCode,
        body: &str,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let body = body.to_string();
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        };
        let router = axum::Router::new().fallback(
            move |uri: Uri, headers: HeaderMap, request_body: Bytes| {
                let sender = sender.clone();
                let body = body.clone();
                async move {
                    let _ = sender.send(Received {
                        path: uri.path().to_string(),
                        headers,
                        body: request_body,
                    });
                    (status, [(header::CONTENT_TYPE, content_type)], body)
                }
            },
        );
        (serve(router).await, receiver)
    }

    /// A loopback address where nothing listens.
    pub(crate) async fn closed_address() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    fn get(url: String) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url,
            headers: BTreeMap::new(),
            body: None,
            json: None,
            expect_status: Vec::new(),
        }
    }

    #[tokio::test]
    async fn succeeds_on_2xx_with_status_and_body() {
        let (address, _requests) = receiver(StatusCode::OK, "healthy").await;
        let outcome = run(
            &get(format!("http://{address}/health")),
            &context(Duration::from_secs(10), vec![]),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::succeeded(json!({"status": 200, "body": "healthy"}))
        );
    }

    #[tokio::test]
    async fn unexpected_status_fails() {
        let (address, _requests) = receiver(StatusCode::INTERNAL_SERVER_ERROR, "boom").await;
        let outcome = run(
            &get(format!("http://{address}/restart")),
            &context(Duration::from_secs(10), vec![]),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error.as_deref(),
            Some("got status 500, expected 2xx")
        );
        assert_eq!(outcome.output, json!({"status": 500, "body": "boom"}));

        let (address, _requests) = receiver(StatusCode::OK, "").await;
        let mut request = get(format!("http://{address}/"));
        request.expect_status = vec![201, 202];
        let outcome = run(&request, &context(Duration::from_secs(10), vec![])).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some("got status 200, expected one of 201, 202")
        );
    }

    #[tokio::test]
    async fn connection_refused_is_one_clear_line() {
        let address = closed_address().await;
        let outcome = run(
            &get(format!("http://{address}/x")),
            &context(Duration::from_secs(10), vec![]),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error,
            Some(format!(
                "cannot reach `http://{address}/x`: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let router = axum::Router::new().fallback(|| async {
            // Longer than the action's timeout; the server task is dropped when the test ends.
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        });
        let address = serve(router).await;
        let outcome = run(
            &get(format!("http://{address}/slow")),
            &context(Duration::from_millis(300), vec![]),
        )
        .await;
        assert_eq!(outcome.status, Status::TimedOut, "{outcome:?}");
        assert_eq!(outcome.error.as_deref(), Some("timed out after 0.3s"));
    }

    #[tokio::test]
    async fn sends_idempotency_key_headers_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "Bearer t0ps3cret\n").unwrap();
        let (address, mut requests) = receiver(StatusCode::ACCEPTED, "{\"queued\":true}").await;
        let mut request = get(format!("http://{address}/scale"));
        request.method = "POST".into();
        request.json = Some(json!({"replicas": 3}));
        request.headers.insert(
            "Authorization".into(),
            MaybeSecret::Secret(SecretRef::File(token_path)),
        );
        request
            .headers
            .insert("X-Team".into(), MaybeSecret::Plain("sre".into()));

        let outcome = run(&request, &context(Duration::from_secs(10), vec![])).await;

        assert_eq!(
            outcome,
            Outcome::succeeded(json!({"status": 202, "body": "{\"queued\":true}"}))
        );
        let received = requests.recv().await.unwrap();
        assert_eq!(received.path, "/scale");
        assert_eq!(received.header("idempotency-key"), Some("run-1/2/1"));
        assert_eq!(received.header("authorization"), Some("Bearer t0ps3cret"));
        assert_eq!(received.header("x-team"), Some("sre"));
        assert_eq!(received.header("content-type"), Some("application/json"));
        assert_eq!(received.json(), json!({"replicas": 3}));
        assert!(!serde_json::to_string(&outcome)
            .unwrap()
            .contains("t0ps3cret"));

        // A key the user chose wins.
        request
            .headers
            .insert("Idempotency-Key".into(), MaybeSecret::Plain("mine".into()));
        run(&request, &context(Duration::from_secs(10), vec![])).await;
        let received = requests.recv().await.unwrap();
        assert_eq!(
            received
                .headers
                .get_all("idempotency-key")
                .iter()
                .collect::<Vec<_>>(),
            ["mine"]
        );
    }

    #[tokio::test]
    async fn body_is_cut_to_64_kib() {
        let (address, _requests) = receiver(StatusCode::OK, &"x".repeat(100_000)).await;
        let outcome = run(
            &get(format!("http://{address}/big")),
            &context(Duration::from_secs(10), vec![]),
        )
        .await;
        assert_eq!(outcome.status, Status::Succeeded);
        assert_eq!(
            outcome.output["body"].as_str().unwrap().len(),
            MAX_BODY_BYTES
        );
    }

    #[tokio::test]
    async fn bad_inputs_fail_before_sending() {
        let context = context(Duration::from_secs(10), vec![]);
        let outcome = run(&get("not a url".into()), &context).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some("invalid url `not a url`: relative URL without a base")
        );
        let outcome = run(&get("ftp://example.com/x".into()), &context).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some("unsupported url `ftp://example.com/x`: the scheme must be http or https")
        );
        let mut request = get("http://127.0.0.1/".into());
        request.headers.insert(
            "Authorization".into(),
            MaybeSecret::Secret(SecretRef::Env("HOMEOSTAT_TEST_SURELY_UNSET_HEADER".into())),
        );
        let outcome = run(&request, &context).await;
        assert!(outcome
            .error
            .unwrap()
            .starts_with("cannot set header `Authorization`: secret env"));
    }

    #[test]
    fn passwords_are_not_shown() {
        let url = Url::parse("https://user:hunter2@example.com/path").unwrap();
        assert_eq!(shown_url(&url), "https://user:redacted@example.com/path");
    }
}
