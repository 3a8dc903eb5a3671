//! Starting, probing and stopping the servers under test: a homeostat daemon and a real Alertmanager.
//!
//! Each server gets a fresh temporary directory, a free loopback port, and its stdout and stderr in files there,
//! so a server that fails to start can be explained by the tail of what it printed.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// The bearer token the bench gives homeostat through `HOMEOSTAT_BENCH_TOKEN` and sends on every request.
pub const BENCH_TOKEN: &str = "bench-token";

/// The HMAC key of the bench's signed webhook source, through `HOMEOSTAT_BENCH_WEBHOOK_SECRET`.
pub const BENCH_WEBHOOK_SECRET: &str = "bench-webhook-secret";

/// How homeostat is configured for a run.
pub struct HomeostatOptions {
    pub queue_capacity: usize,
    /// `full` or `normal`, written to `store.synchronous`.
    pub synchronous: &'static str,
    /// Adds a rule that matches every bench alert and dispatches a cheap dry-run step.
    pub with_rule: bool,
    pub ready_timeout: Duration,
    /// More config, appended (sources, `server:` limits are set by [`HomeostatOptions::server`]).
    pub extra: String,
    /// More `server:` fields, as YAML lines indented by two spaces.
    pub server: String,
    /// More `store:` fields, the same way.
    pub store: String,
    /// Starts the daemon with this `ulimit -n`, as a common default of 1,024 would hold it.
    pub max_open_files: Option<u64>,
    /// Puts the store on a PostgreSQL server started for this daemon (from the Debian package,
    /// its default durability, its own data directory and port) instead of SQLite.
    pub postgres: bool,
}

/// A running server under test; killed and its directory removed by [`Server::stop`] or on drop.
pub struct Server {
    pub name: &'static str,
    pub base_url: String,
    child: Child,
    pub pid: u32,
    stderr_path: PathBuf,
    /// The daemon's PostgreSQL server, if its store is there: stopped when this is dropped, after
    /// the daemon was killed.
    database: Option<homeostat_store::postgres::testing::Server>,
    // Kept for its `Drop`, which removes the directory after the child is gone.
    _dir: TempDir,
}

/// A snapshot of a process's memory and CPU, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSample {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu_secs: f64,
}

impl Server {
    pub async fn start_homeostat(binary: &Path, options: &HomeostatOptions) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("homeostat-bench-")
            .tempdir()
            .context("failed to create a temporary directory for homeostat")?;
        let port = free_port()?;
        let mut database = None;
        let mut store = None;
        if options.postgres {
            let (server, block) = postgres_store(dir.path()).await?;
            store = Some(block);
            database = Some(server);
        }
        let config_path = dir.path().join("homeostat.yaml");
        std::fs::write(
            &config_path,
            homeostat_config(port, dir.path(), options, store.as_deref()),
        )
        .with_context(|| format!("failed to write `{}`", config_path.display()))?;
        let binary = &resolve(binary)?;
        let mut command = match options.max_open_files {
            // `exec` keeps the pid, so the samples read the daemon's own /proc entry.
            Some(limit) => {
                let mut command = Command::new("bash");
                command
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("HOMEOSTAT_BENCH_TOKEN", BENCH_TOKEN)
            .env("HOMEOSTAT_BENCH_WEBHOOK_SECRET", BENCH_WEBHOOK_SECRET)
            // Per-request logging would cost the server CPU that the two-core machine cannot spare.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let mut server = Server::spawn("homeostat", command, binary, dir, port)?;
        server.database = database;
        server.wait_ready("/readyz", options.ready_timeout).await
    }

    pub async fn start_alertmanager(binary: &Path, ready_timeout: Duration) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("alertmanager-bench-")
            .tempdir()
            .context("failed to create a temporary directory for alertmanager")?;
        let port = free_port()?;
        let config_path = dir.path().join("alertmanager.yml");
        // One route to a receiver with no integrations: Alertmanager stores and groups alerts and notifies nobody.
        std::fs::write(
            &config_path,
            "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
        )
        .with_context(|| format!("failed to write `{}`", config_path.display()))?;
        let binary = &resolve(binary)?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // An empty cluster address turns gossip off, so nothing listens beyond loopback.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let server = Server::spawn("alertmanager", command, binary, dir, port)?;
        server.wait_ready("/-/ready", ready_timeout).await
    }

    /// Spawns `command` in `dir`; call [`resolve`] on the binary first, as a relative path would then miss.
    fn spawn(
        name: &'static str,
        mut command: Command,
        binary: &Path,
        dir: TempDir,
        port: u16,
    ) -> Result<Server> {
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout =
            File::create(&stdout_path).context("failed to create the server's stdout log")?;
        let stderr =
            File::create(&stderr_path).context("failed to create the server's stderr log")?;
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {name} from `{}`", binary.display()))?;
        let pid = child
            .id()
            .context("the server exited before its pid could be read")?;
        Ok(Server {
            name,
            base_url: format!("http://127.0.0.1:{port}"),
            child,
            pid,
            stderr_path,
            database: None,
            _dir: dir,
        })
    }

    async fn wait_ready(mut self, path: &str, timeout: Duration) -> Result<Server> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .context("failed to build the readiness client")?;
        let url = format!("{}{path}", self.base_url);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("failed to poll the server process")?
            {
                bail!(
                    "{} exited with {status} before `{url}` was ready\n{}",
                    self.name,
                    self.stderr_tail(30)
                );
            }
            let last = match client.get(&url).bearer_auth(BENCH_TOKEN).send().await {
                Ok(response) if response.status().is_success() => return Ok(self),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(error) => crate::load::error_chain(&error),
            };
            if started.elapsed() >= timeout {
                let (name, tail) = (self.name, self.stderr_tail(30));
                self.stop().await;
                bail!("{name} did not answer 200 on `{url}` within {timeout:?} (last: {last})\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills homeostat as a crash would (SIGKILL) and starts it again on the same directory,
    /// config and port; returns it once `/readyz` answers 200, and how long that took from the
    /// start of the new process.
    pub async fn restart_homeostat(mut self, binary: &Path) -> Result<(Server, Duration)> {
        let _ = self.child.kill().await;
        let port: u16 = self
            .base_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .context("the server's address has no port")?;
        let Server {
            _dir: dir,
            database,
            ..
        } = self;
        let config_path = dir.path().join("homeostat.yaml");
        let binary = &resolve(binary)?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("HOMEOSTAT_BENCH_TOKEN", BENCH_TOKEN)
            .env("HOMEOSTAT_BENCH_WEBHOOK_SECRET", BENCH_WEBHOOK_SECRET)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let started = Instant::now();
        let mut server = Server::spawn("homeostat", command, binary, dir, port)?;
        server.database = database;
        let server = server
            .wait_ready("/readyz", Duration::from_secs(3_600))
            .await?;
        Ok((server, started.elapsed()))
    }

    /// The server's own temporary directory (homeostat's database is there).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Fails with the stderr tail if the server has died, for instance during the load.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("failed to poll the server process")?
        {
            bail!(
                "{} exited with {status} during the run\n{}",
                self.name,
                self.stderr_tail(30)
            );
        }
        Ok(())
    }

    /// The daemon's memory and CPU; with its store on PostgreSQL, the CPU of the PostgreSQL
    /// server's processes is added (SQLite's work is inside the daemon's own process), while its
    /// memory is not (shared buffers are a cache, as SQLite's page cache outside `VmRSS` is).
    pub fn sample(&self) -> Result<ProcessSample> {
        let mut sample = sample_process(&self.pid.to_string())?;
        if let Some(database) = &self.database {
            sample.cpu_secs += postgres_cpu_secs(database.data_dir())?;
        }
        Ok(sample)
    }

    /// Kills the server and waits for it, so that its directory can be removed.
    pub async fn stop(mut self) {
        // For digging into a run: `HOMEOSTAT_BENCH_METRICS_DIR=DIR` keeps each server's last `/metrics`
        // and its stderr.
        if let Ok(dir) = std::env::var("HOMEOSTAT_BENCH_METRICS_DIR") {
            let url = format!("{}/metrics", self.base_url);
            if let Ok(response) = reqwest::get(&url).await {
                if let Ok(text) = response.text().await {
                    let path = Path::new(&dir).join(format!("{}-{}.prom", self.name, self.pid));
                    let _ = std::fs::write(path, text);
                }
            }
            let log = Path::new(&dir).join(format!("{}-{}.stderr.log", self.name, self.pid));
            let _ = std::fs::copy(&self.stderr_path, log);
        }
        // A kill that fails means the process is already gone, which is what stopping wants.
        let _ = self.child.kill().await;
    }

    fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        if tail.is_empty() {
            return format!("({} printed nothing on stderr)", self.name);
        }
        format!(
            "last {} lines of {}'s stderr:\n{}",
            tail.len(),
            self.name,
            tail.join("\n")
        )
    }
}

/// The daemon's config; `store` replaces the SQLite `store:` block (and its extra fields).
fn homeostat_config(
    port: u16,
    dir: &Path,
    options: &HomeostatOptions,
    store: Option<&str>,
) -> String {
    let rules = if options.with_rule {
        r#"rules:
  - name: bench-dispatch
    match: ['alertname="Bench"']
    target: "{{ labels.instance }}"
    guards: {dry_run: true, lock: false}
    steps:
      - name: noop
        action: exec
        with: {command: ["true"]}
"#
    } else if options.extra.starts_with("rules:") || options.extra.contains("\nrules:") {
        // The extra config brings its own rules (the scale bench's rule sets).
        ""
    } else {
        "rules: []\n"
    };
    let store = match store {
        Some(store) => store.to_string(),
        None => format!(
            "store:\n  path: {db}\n  synchronous: {sync}\n{store}",
            db = dir.join("homeostat.db").display(),
            sync = options.synchronous,
            store = options.store,
        ),
    };
    format!(
        "server:\n  listen: 127.0.0.1:{port}\n  queue_capacity: {queue}\n{server}{store}\
         api_tokens:\n  - name: bench\n    scopes: [write]\n    token: {{env: HOMEOSTAT_BENCH_TOKEN}}\n{rules}{extra}",
        queue = options.queue_capacity,
        server = options.server,
        extra = options.extra,
    )
}

/// Makes a binary path absolute, because the server runs in its temporary directory where a relative path such
/// as `target/release/homeostat` would not be found; a bare name is left for the `PATH` lookup.
fn resolve(binary: &Path) -> Result<PathBuf> {
    if binary.components().count() <= 1 {
        return Ok(binary.to_path_buf());
    }
    std::fs::canonicalize(binary).with_context(|| format!("failed to find `{}`", binary.display()))
}

/// Asks the kernel for a free loopback port; the tiny window before the server binds it is acceptable here.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("failed to find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The bench's own process, to show how much of the two cores the generator took.
/// A PostgreSQL server for one store, from the Debian package with its default durability, and
/// the `store:` block that reaches it: the url (with its password) by a secret file in `dir`, as a
/// deployment would give it. The server stops when dropped.
pub async fn postgres_store(
    dir: &Path,
) -> Result<(homeostat_store::postgres::testing::Server, String)> {
    let server = homeostat_store::postgres::testing::Server::start_with(&[]).context(
        "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; install `postgresql`",
    )?;
    let secret = dir.join("database.url");
    std::fs::write(&secret, server.database("bench").await)
        .context("failed to write the database url")?;
    let block = format!(
        "store:\n  url: {{file: {:?}}}\n",
        secret.display().to_string()
    );
    Ok((server, block))
}

/// The CPU time of a PostgreSQL server: its postmaster (with the backends that exited, which it
/// waited for) and every process it runs now.
fn postgres_cpu_secs(data_dir: &Path) -> Result<f64> {
    let pid_file = data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("failed to read `{}`", pid_file.display()))?;
    let postmaster: u32 = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("no pid in `{}`", pid_file.display()))?;
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(fields) = stat_fields(&pid.to_string()) else {
            continue;
        };
        let field = |index: usize| -> u64 {
            fields
                .get(index)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        // `ppid` is the 4th field, the 2nd after the command name; `cutime` and `cstime` the 16th
        // and 17th.
        if pid == postmaster {
            ticks += field(11) + field(12) + field(13) + field(14);
        } else if field(1) == u64::from(postmaster) {
            ticks += field(11) + field(12);
        }
    }
    Ok(ticks as f64 / 100.0)
}

/// The fields of `/proc/PID/stat` after the command name, which may hold spaces.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

pub fn sample_self() -> Result<ProcessSample> {
    sample_process("self")
}

fn sample_process(pid: &str) -> Result<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("failed to read `/proc/{pid}/status`"))?;
    let kilobytes = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    // `utime` and `stime` are the 14th and 15th fields, the 12th and 13th after the command name.
    let fields = stat_fields(pid).with_context(|| format!("failed to read `/proc/{pid}/stat`"))?;
    let ticks = |index: usize| -> u64 {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    // Linux reports CPU time in USER_HZ, which is 100 on every architecture it supports.
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / 100.0;
    Ok(ProcessSample {
        rss_bytes: kilobytes("VmRSS:") * 1024,
        peak_rss_bytes: kilobytes("VmHWM:") * 1024,
        cpu_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_its_own_process() {
        let sample = sample_self().unwrap();
        assert!(sample.rss_bytes > 0);
        assert!(sample.peak_rss_bytes >= sample.rss_bytes);
    }

    #[test]
    fn config_includes_the_rule_only_when_asked() {
        let mut options = HomeostatOptions {
            queue_capacity: 4096,
            synchronous: "full",
            with_rule: false,
            ready_timeout: Duration::from_secs(30),
            extra: String::new(),
            server: String::new(),
            store: String::new(),
            max_open_files: None,
            postgres: false,
        };
        let plain = homeostat_config(9000, Path::new("/tmp/x"), &options, None);
        assert!(plain.contains("rules: []"));
        assert!(plain.contains("synchronous: full"));
        assert!(plain.contains("path: /tmp/x/homeostat.db"));
        options.with_rule = true;
        let with_rule = homeostat_config(9000, Path::new("/tmp/x"), &options, None);
        assert!(with_rule.contains("name: bench-dispatch"));
        assert!(with_rule.contains("target: \"{{ labels.instance }}\""));
        // A PostgreSQL store replaces the SQLite block, whose path and synchronous it cannot take.
        let store = "store:\n  url: {file: \"/tmp/x/database.url\"}\n";
        let on_postgres = homeostat_config(9000, Path::new("/tmp/x"), &options, Some(store));
        assert!(on_postgres.contains(store));
        assert!(!on_postgres.contains("synchronous"));
        assert!(!on_postgres.contains("homeostat.db"));
        homeostat_core::config::parse(&[(Path::new("/tmp/x/homeostat.yaml").into(), on_postgres)])
            .expect("the PostgreSQL config parses");
    }
}
