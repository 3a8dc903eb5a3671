//! Helpers for the end-to-end tests: free ports, the real `homeostat` binary, real Prometheus and
//! Alertmanager on loopback, and a scrape target whose gauge a test sets.

// Each helper is used by some end-to-end modules and not others.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;
use tokio::time::Instant;

/// The bearer token every test daemon accepts, with the `write` scope. It reaches the daemon through
/// the child's environment only, so tests running in parallel never share it through ours.
pub const TOKEN: &str = "homeostat-e2e-token-0123456789abcdef";

/// The environment variable the config points `api_tokens[0].token` at.
pub const TOKEN_ENV: &str = "HOMEOSTAT_TEST_TOKEN";

/// How long a started process gets to answer its readiness endpoint.
// Generous: a debug build replaying up to a snapshot interval of events (100,000) on a loaded
// two-core machine can take tens of seconds, and a passing test never waits for it.
const READY_DEADLINE: Duration = Duration::from_secs(120);

/// How often readiness and test conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);

/// A loopback port that was free a moment ago. Another process may take it before ours binds it;
/// the kernel hands out bound-to-zero ports at a random offset, which makes that rare.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read `{}`: {error})", path.display()),
    }
}

/// Polls `condition` until it answers `Some`, or panics with `what` and `context()` after `within`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    within: Duration,
    mut condition: F,
    context: impl Fn() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The head of a homeostat config that every end-to-end test shares: the listen address comes from
/// `--listen`, so only the store, the token and the tuning knobs are here. Tests append `rules:`.
pub fn base_config(dir: &Path, synchronous: &str) -> String {
    base_config_with_store(&format!(
        "{{path: {db:?}, synchronous: {synchronous}}}",
        db = dir.join("homeostat.db").display().to_string(),
    ))
}

/// [`base_config`] with another `store:` section (a PostgreSQL url, say), written inline.
pub fn base_config_with_store(store: &str) -> String {
    format!(
        "server: {{max_body_bytes: 4194304, queue_capacity: 4096}}\n\
         store: {store}\n\
         api_tokens:\n  - {{name: test, scopes: [write], token: {{env: {TOKEN_ENV}}}}}\n",
    )
}

/// A PostgreSQL store for daemons under test: a server of the test's own, and the `store:`
/// section that names a database on it by a url in a secret file, as a deployment would. `None`
/// (the test returns) only when the server binaries are absent and not required.
#[cfg(feature = "postgres")]
pub async fn postgres_store(
    dir: &Path,
    database: &str,
) -> Option<(homeostat_store::postgres::testing::Server, String)> {
    let server = homeostat_store::postgres::testing::Server::start()?;
    let url = server.database(database).await;
    let secret = dir.join(format!("{database}.url"));
    fs::write(&secret, url).expect("write the url secret");
    Some((
        server,
        format!("{{url: {{file: {:?}}}}}", secret.display().to_string()),
    ))
}

/// The real `homeostat serve`, killed when dropped. Its files live in a directory the test owns, so
/// that a second daemon can start on the same database after the first is killed.
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    client: reqwest::Client,
}

impl Daemon {
    /// Writes `config` to `{dir}/{name}.yaml`, starts the daemon on a free port with its output in
    /// `{dir}/{name}.stdout.log` and `.stderr.log`, and waits until `/readyz` answers 200.
    pub async fn start(dir: &Path, name: &str, config: &str) -> Daemon {
        Self::start_with_env(dir, name, config, &[]).await
    }

    /// As [`Daemon::start`], with extra environment variables (a failure point, say).
    pub async fn start_with_env(
        dir: &Path,
        name: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let config_path = dir.join(format!("{name}.yaml"));
        fs::write(&config_path, config).expect("write the daemon config");
        let stdout_path = dir.join(format!("{name}.stdout.log"));
        let stderr_path = dir.join(format!("{name}.stderr.log"));
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_homeostat"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env(TOKEN_ENV, TOKEN)
            .envs(env.iter().copied())
            .env("HOMEOSTAT_LOG", "info")
            .env_remove("RUST_LOG")
            .env_remove("HOMEOSTAT_CONFIG")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("create the stdout log"))
            .stderr(fs::File::create(&stderr_path).expect("create the stderr log"))
            .spawn()
            .expect("start the homeostat binary");
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("a valid header value"),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the http client");
        let mut daemon = Daemon {
            child,
            port,
            config_path,
            stderr_path,
            client,
        };
        daemon.wait_ready().await;
        daemon
    }

    async fn wait_ready(&mut self) {
        let url = self.url("/readyz");
        wait_until_ready(&mut self.child, "homeostat", &url, &self.stderr_path).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A client that sends the test token on every request.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET path` with the token; panics unless the answer is 200 with a JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, reqwest::StatusCode::OK, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
    }

    /// A dashboard page as a browser that signed in with the test token sees it; panics unless
    /// it is 200.
    pub async fn page(&self, path: &str) -> String {
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the http client");
        let signed = plain
            .post(self.url("/login"))
            .form(&[("token", TOKEN), ("next", path)])
            .send()
            .await
            .expect("sign in");
        let cookie = signed
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .expect("a session cookie")
            .to_string();
        let response = plain
            .get(self.url(path))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, reqwest::StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// The end of the daemon's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_path, 40)
    }

    /// Waits up to `timeout` for the daemon to exit by itself; its status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (SIGHUP, say) to the daemon.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        signal::kill(pid, signal).expect("signal the daemon");
    }

    /// SIGKILL, as a crash would: no shutdown code runs.
    pub fn kill_9(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        // It may already be dead; the wait below reaps it either way.
        let _ = signal::kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A child process with its own temporary directory, killed and reaped when dropped.
struct Managed {
    child: Child,
    dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(binary: &str, package: &str) {
    assert!(
        Path::new(binary).exists(),
        "`{binary}` is missing: install the Debian package `{package}`; .ci/run does"
    );
}

/// Starts `binary` with `args` in `managed`'s directory, and waits until `GET {base}/-/ready` is 200.
async fn start_managed(
    binary: &str,
    dir: tempfile::TempDir,
    args: Vec<String>,
    port: u16,
) -> Managed {
    let stderr_path = dir.path().join("stderr.log");
    let child = Command::new(binary)
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path().join("stdout.log")).expect("create the stdout log"))
        .stderr(fs::File::create(&stderr_path).expect("create the stderr log"))
        .spawn()
        .unwrap_or_else(|error| panic!("start `{binary}`: {error}"));
    let mut managed = Managed {
        child,
        dir,
        stderr_path,
    };
    let url = format!("http://127.0.0.1:{port}/-/ready");
    wait_until_ready(
        &mut managed.child,
        &format!("`{binary}`"),
        &url,
        &managed.stderr_path,
    )
    .await;
    managed
}

/// Polls `url` until it answers 200; panics with the end of the child's stderr if the child exits
/// first or the deadline passes.
async fn wait_until_ready(child: &mut Child, what: &str, url: &str, stderr_path: &Path) {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build the http client");
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            panic!(
                "{what} exited with {status} before it was ready; the end of its stderr:\n{}",
                tail(stderr_path, 40)
            );
        }
        if let Ok(response) = probe.get(url).send().await {
            if response.status() == reqwest::StatusCode::OK {
                return;
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "{what} did not answer `GET {url}` with 200 within {READY_DEADLINE:?}; the end of its stderr:\n{}",
                tail(stderr_path, 40)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Serves `router` on a loopback port until the handle is aborted. Bound here, not through
/// `free_port`, so there is no window for another process to take the port.
pub async fn serve(router: Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, server)
}

/// A Prometheus config that scrapes the target on `port` every second as job `e2e`, and evaluates
/// `rules.yml` every second too.
pub fn scrape_config(port: u16) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: e2e
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"#
    )
}

/// [`scrape_config`], plus sending alerts to the Alertmanager on `alertmanager_port`.
pub fn alerting_config(target_port: u16, alertmanager_port: u16) -> String {
    scrape_config(target_port)
        + &format!(
            r#"alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{alertmanager_port}"]
"#
        )
}

/// An Alertmanager config that sends every alert, and its resolution, to the daemon's
/// Alertmanager webhook with the test token: grouped by `group_by` (`"[alertname]"`), at once,
/// and again every `repeat_interval` (`"2s"`) while it fires.
pub fn alertmanager_config(homeostat: &Daemon, group_by: &str, repeat_interval: &str) -> String {
    format!(
        r#"route:
  receiver: homeostat
  group_by: {group_by}
  group_wait: 0s
  group_interval: 1s
  repeat_interval: {repeat_interval}
receivers:
  - name: homeostat
    webhook_configs:
      - url: {url:?}
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {TOKEN:?}}}
"#,
        url = homeostat.url("/api/v1/hooks/alertmanager"),
    )
}

/// A real Prometheus on a free loopback port with its own TSDB directory.
pub struct Prometheus {
    managed: Managed,
    pub port: u16,
}

impl Prometheus {
    pub const BINARY: &'static str = "/usr/bin/prometheus";

    /// Starts Prometheus with `config` as `prometheus.yml`; `rules` is written beside it as
    /// `rules.yml`, which `rule_files: [rules.yml]` in `config` finds because Prometheus resolves
    /// rule files relative to its config file.
    pub async fn start(config: &str, rules: &str, extra_args: &[&str]) -> Prometheus {
        Self::start_on(free_port(), config, rules, extra_args).await
    }

    /// As [`Prometheus::start`], on `port`: for a daemon told where Prometheus will be before it is.
    pub async fn start_on(port: u16, config: &str, rules: &str, extra_args: &[&str]) -> Prometheus {
        require(Self::BINARY, "prometheus");
        let dir = tempfile::tempdir().expect("create a temp dir");
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("write prometheus.yml");
        fs::write(dir.path().join("rules.yml"), rules).expect("write rules.yml");
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let managed = start_managed(Self::BINARY, dir, args, port).await;
        Prometheus { managed, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stderr_tail(&self) -> String {
        tail(&self.managed.stderr_path, 20)
    }

    pub fn dir(&self) -> &Path {
        self.managed.dir.path()
    }
}

/// A real Alertmanager on a free loopback port, with gossip off and its own storage directory.
pub struct Alertmanager {
    managed: Managed,
    pub port: u16,
}

impl Alertmanager {
    pub const BINARY: &'static str = "/usr/bin/prometheus-alertmanager";

    pub async fn start(config: &str) -> Alertmanager {
        require(Self::BINARY, "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("create a temp dir");
        let config_path = dir.path().join("alertmanager.yml");
        fs::write(&config_path, config).expect("write alertmanager.yml");
        let port = free_port();
        let args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // An empty address turns clustering off, so no gossip port is needed.
            "--cluster.listen-address=".to_string(),
        ];
        let managed = start_managed(Self::BINARY, dir, args, port).await;
        Alertmanager { managed, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stderr_tail(&self) -> String {
        tail(&self.managed.stderr_path, 20)
    }
}

/// An in-process scrape target serving `homeostat_e2e_up{service="checkout"}` at `/metrics`, with a
/// value the test sets. It counts scrapes so a test can wait for Prometheus to have seen a value.
pub struct ScrapeTarget {
    pub port: u16,
    value: Arc<AtomicU64>,
    scrapes: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl ScrapeTarget {
    pub async fn start(initial: f64) -> ScrapeTarget {
        let value = Arc::new(AtomicU64::new(initial.to_bits()));
        let scrapes = Arc::new(AtomicU64::new(0));
        let router = {
            let value = value.clone();
            let scrapes = scrapes.clone();
            Router::new().route(
                "/metrics",
                get(move || {
                    let value = f64::from_bits(value.load(Ordering::SeqCst));
                    scrapes.fetch_add(1, Ordering::SeqCst);
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            format!(
                                "# HELP homeostat_e2e_up Whether the e2e service is up.\n\
                                 # TYPE homeostat_e2e_up gauge\n\
                                 homeostat_e2e_up{{service=\"checkout\"}} {value}\n"
                            ),
                        )
                    }
                }),
            )
        };
        let (port, server) = serve(router).await;
        ScrapeTarget {
            port,
            value,
            scrapes,
            server,
        }
    }

    pub fn set(&self, value: f64) {
        self.value.store(value.to_bits(), Ordering::SeqCst);
    }

    pub fn value(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::SeqCst))
    }

    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::SeqCst)
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}
