//! Talking to the running daemon over its HTTP API, which every command that is not inherently
//! local goes through: where it is, which token to send, and how its errors become exit codes.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use serde_json::Value;

use super::{config, Global, EXIT_ERROR, EXIT_FAILED, EXIT_USAGE};

/// Where the daemon listens when neither `--server` nor the config says.
const DEFAULT_SERVER: &str = "http://127.0.0.1:9393";

/// How long a request that is not a stream may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the daemon did not give what was asked.
#[derive(Debug)]
pub enum Failure {
    /// The daemon answered with an error body.
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The daemon could not be reached, or answered something that is not its API.
    Connection(String),
}

impl Failure {
    /// Prints the failure as `error: ...` and gives the exit code (docs/cli.md): 1 when the daemon
    /// refused what was asked (not there, not running, already done), 64 for a request it found
    /// invalid, 2 when it could not be asked or the token may not ask.
    pub fn report(&self) -> u8 {
        match self {
            Failure::Api {
                status,
                code,
                message,
            } => {
                let hint = match code.as_str() {
                    "missing_token" | "invalid_token" => {
                        "; pass --token or --token-file, or set HOMEOSTAT_TOKEN, to one of the config's `api_tokens`"
                    }
                    "forbidden_scope" => {
                        "; use a token with that scope (--token, --token-file or HOMEOSTAT_TOKEN)"
                    }
                    _ => "",
                };
                eprintln!("error: {message}{hint}");
                match (status.as_u16(), code.as_str()) {
                    (400 | 413, _) => EXIT_USAGE,
                    (401, _) | (403, "forbidden_scope") => EXIT_ERROR,
                    (status, _) if status >= 500 => EXIT_ERROR,
                    _ => EXIT_FAILED,
                }
            }
            Failure::Connection(message) => {
                eprintln!("error: {message}");
                EXIT_ERROR
            }
        }
    }
}

/// A client for one daemon.
pub struct Remote {
    base: String,
    client: reqwest::Client,
}

impl Remote {
    /// Resolves the daemon's address from `--server`, the config given with `--config`, or the
    /// default, and the token from `--token-file`, `--token` or `HOMEOSTAT_TOKEN`.
    pub fn new(global: &Global) -> Result<Self, u8> {
        let base = match (&global.server, &global.config) {
            (Some(server), _) => normalize(server),
            (None, Some(config)) => {
                server_from_config(config).unwrap_or_else(|| DEFAULT_SERVER.to_string())
            }
            (None, None) => DEFAULT_SERVER.to_string(),
        };
        let token = match &global.token_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some(text.lines().next().unwrap_or("").to_string()),
                Err(error) => {
                    eprintln!(
                        "error: cannot read the token file `{}`: {error}; check --token-file or HOMEOSTAT_TOKEN_FILE",
                        path.display()
                    );
                    return Err(EXIT_USAGE);
                }
            },
            None => global.token.clone(),
        };
        let mut headers = HeaderMap::new();
        // An empty token is no token, so the daemon's answer says one is missing.
        if let Some(token) = token.as_deref().filter(|token| !token.trim().is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| {
                    eprintln!("error: the token has characters a header cannot carry; check --token, --token-file or HOMEOSTAT_TOKEN");
                    EXIT_USAGE
                })?;
            // Keeps the token out of reqwest's debug output.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("homeostat-cli/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| {
                eprintln!("error: cannot build the HTTP client: {error}");
                EXIT_ERROR
            })?;
        Ok(Self { base, client })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` of a list for a command: the array under `key` (empty when absent), or the exit
    /// code once the failure has been reported.
    pub async fn list(global: &Global, path: &str, key: &str) -> Result<Vec<Value>, u8> {
        let remote = Remote::new(global)?;
        let answer = remote.get(path).await.map_err(|failure| failure.report())?;
        Ok(answer[key].as_array().cloned().unwrap_or_default())
    }

    /// Up to `limit` items of a paged list (`path` with its filters, no `limit`), following the
    /// API's `next` cursors: a page holds at most 1,000, so `--limit 5000` reads five.
    pub async fn pages(&self, path: &str, key: &str, limit: usize) -> Result<Vec<Value>, Failure> {
        const PAGE: usize = 1000;
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut before: Option<String> = None;
        // At least one request: the API refuses `limit=0` with its own words.
        loop {
            let want = (limit - items.len()).min(PAGE);
            let mut url = format!("{path}{separator}limit={want}");
            if let Some(cursor) = &before {
                url.push_str(&format!("&before={}", super::runbook::segment(cursor)));
            }
            let answer = self.get(&url).await?;
            let page = answer[key].as_array().cloned().unwrap_or_default();
            let full = page.len() == want;
            items.extend(page);
            match answer["next"].as_str() {
                Some(next) if full && items.len() < limit => before = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(items)
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        let request = self.client.get(self.url(path)).timeout(REQUEST_TIMEOUT);
        self.json(request).await.map(|(_, body)| body)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let request = self
            .client
            .post(self.url(path))
            .json(body)
            .timeout(REQUEST_TIMEOUT);
        self.json(request).await.map(|(_, body)| body)
    }

    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        let request = self.client.delete(self.url(path)).timeout(REQUEST_TIMEOUT);
        self.json(request).await.map(|(_, body)| body)
    }

    /// `GET` of a text body (a Markdown document), not JSON.
    pub async fn get_text(&self, path: &str) -> Result<String, Failure> {
        let response = self
            .client
            .get(self.url(path))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if !status.is_success() {
            return Err(api_failure(status, &text));
        }
        Ok(text)
    }

    /// Opens an event stream, resuming after `last_event_id` when given. No timeout: it lasts as
    /// long as the run.
    pub async fn stream(
        &self,
        path: &str,
        last_event_id: Option<i64>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self
            .client
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(seq) = last_event_id {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(api_failure(status, &text))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), Failure> {
        let response = request
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if !status.is_success() {
            return Err(api_failure(status, &text));
        }
        serde_json::from_str(&text).map(|body| (status, body)).map_err(|error| {
            Failure::Connection(format!(
                "`{}` answered {status} with a body that is not JSON ({error}); is it a homeostat daemon? consider --server",
                self.base
            ))
        })
    }

    pub fn unreachable(&self, error: &reqwest::Error) -> Failure {
        // reqwest's own message is terse ("error sending request"); the cause says why.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        Failure::Connection(format!(
            "cannot reach the daemon at `{}`: {message}; is `homeostat serve` running there? point --server (or HOMEOSTAT_SERVER) at it",
            self.base
        ))
    }
}

/// `homeostat reload`: asks the daemon to read its config again (`POST /-/reload`, as Prometheus and
/// Alertmanager have it).
pub async fn reload(global: &Global) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let response = match remote
        .client
        .post(remote.url("/-/reload"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return remote.unreachable(&error).report(),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status == StatusCode::NOT_FOUND {
        eprintln!(
            "error: the daemon at `{}` has no `POST /-/reload`: it is older than this CLI; restart it to load the new config, or upgrade it",
            remote.base
        );
        return EXIT_ERROR;
    }
    if !status.is_success() {
        return api_failure(status, &text).report();
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match body["message"].as_str() {
        Some(message) => eprintln!("{message}"),
        None => eprintln!("the daemon at `{}` reloaded its config", remote.base),
    }
    0
}

/// The API's `{message, code}` error, or the status alone when the body is not one.
fn api_failure(status: StatusCode, text: &str) -> Failure {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    Failure::Api {
        status,
        code: field("code").unwrap_or_default(),
        message: field("message").unwrap_or_else(|| match text.trim() {
            // A plain-text answer (a proxy's, or an older daemon's) says more than the status.
            plain if !plain.is_empty() && plain.len() <= 500 && !body.is_object() => {
                format!("the daemon answered {status}: {plain}")
            }
            _ => format!("the daemon answered {status}"),
        }),
    }
}

/// `server.listen` from the config as a URL, if the config can be read. An unspecified address
/// (`0.0.0.0`, `[::]`) means every interface, so loopback reaches it.
fn server_from_config(config_path: &Path) -> Option<String> {
    let files = config::read(config_path).ok()?;
    let parsed = homeostat_core::config::parse(&files).ok()?;
    let listen = parsed.server.listen;
    let listen = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen
    };
    Some(normalize(&listen))
}

/// Adds `http://` when no scheme is given and drops a trailing slash.
fn normalize(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}
