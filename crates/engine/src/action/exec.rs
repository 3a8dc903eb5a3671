//! The `exec` action: runs a program directly, or through `/bin/sh -c` only when `shell: true` asks
//! for it, in its own process group so that a timeout kills everything the program started.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use homeostat_core::action::Exec;
use homeostat_core::config::MaybeSecret;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Context, Outcome};
use crate::secrets::{self, Secret};

/// How long to wait, after killing a timed-out group, for its last output and its exit status.
/// The group is dead by then, so this only matters when a process left the group (`setsid`) and
/// still holds a pipe; the action must end anyway.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

/// The daemon's environment variables an `exec` child gets: where programs are, who runs them,
/// the locale, the time zone and the temporary directory. Nothing here carries a secret; anything
/// else a step needs it names in `env`.
pub const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// `PATH` for a child when the daemon has none, as a login shell would set it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A secret shorter than this is not scrubbed from output: it would blank out ordinary text.
const MIN_SCRUBBED_SECRET_CHARS: usize = 4;

/// The last line of stderr quoted in an error is cut to this many characters to keep it one short line.
const MAX_ERROR_LINE_CHARS: usize = 200;

/// Runs `exec` to completion or until `context.timeout`.
///
/// The action ends when the program has exited and closed its output: a background process that
/// keeps stdout or stderr open holds the action until the timeout, which then kills the group.
/// Background processes that closed their output are left running when the program exits normally,
/// because starting a daemon can be the point of the command.
pub async fn run(exec: &Exec, context: &Context) -> Outcome {
    let (program, args) = match program_and_args(exec) {
        Ok(parts) => parts,
        Err(message) => return Outcome::failed(json!({}), message),
    };

    let mut command = tokio::process::Command::new(program);
    command.args(args);
    // The daemon's environment holds its secrets (`{env: NAME}` references for tokens, webhook
    // keys, notifier URLs); a child starts from the few variables programs expect instead, and
    // gets a secret only when its step names it.
    command.env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", DEFAULT_PATH);
    }
    let mut revealed = Vec::new();
    for (name, value) in &exec.env {
        match secrets::resolve_maybe(value) {
            Ok(secret) => {
                command.env(name, secret.expose());
                if matches!(value, MaybeSecret::Secret(_)) {
                    revealed.push(secret);
                }
            }
            // The secrets error names the reference, never the value.
            Err(error) => {
                return Outcome::failed(json!({}), format!("cannot set env `{name}`: {error}"))
            }
        }
    }
    if let Some(dir) = &exec.working_dir {
        // Checked here because a missing directory makes spawning fail with the same "no such
        // file" as a missing program, which would blame the wrong thing.
        match tokio::fs::metadata(dir).await {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Outcome::failed(
                    json!({}),
                    format!("working directory `{dir}` is not a directory"),
                )
            }
            Err(error) => {
                return Outcome::failed(
                    json!({}),
                    format!(
                        "working directory `{dir}` cannot be used: {}",
                        io_cause(&error)
                    ),
                )
            }
        }
        command.current_dir(dir);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so a timeout can kill the grandchildren too.
        .process_group(0)
        // Backstop if this future is dropped; `ProcessGroup` kills the rest of the group.
        .kill_on_drop(true);

    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Outcome::failed(json!({}), spawn_error(program, &error)),
    };
    // Declared after `child` so that it drops first: the group is killed while the leader is
    // still unreaped, so its id cannot have been reused.
    let mut group = ProcessGroup {
        leader: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    tracing::debug!(program, pid = ?group.leader, "started exec action");

    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let mut stdout = Captured::new(exec.max_output_bytes);
    let mut stderr = Captured::new(exec.max_output_bytes);
    let mut exit: Option<std::io::Result<ExitStatus>> = None;

    let finished = tokio::time::timeout(
        context.timeout,
        collect(
            &mut child,
            &mut stdout_pipe,
            &mut stderr_pipe,
            &mut stdout,
            &mut stderr,
            &mut exit,
        ),
    )
    .await
    .is_ok();

    if !finished {
        group.kill();
        // Whatever the group wrote before it died is still in the pipes.
        let _drained = tokio::time::timeout(
            DRAIN_AFTER_KILL,
            collect(
                &mut child,
                &mut stdout_pipe,
                &mut stderr_pipe,
                &mut stdout,
                &mut stderr,
                &mut exit,
            ),
        )
        .await;
        let status = match exit {
            Some(Ok(status)) => {
                group.reaped();
                Some(status)
            }
            _ => None,
        };
        return Outcome::timed_out(output(status, &stdout, &stderr, &revealed), context.timeout);
    }

    let status = match exit {
        Some(Ok(status)) => {
            group.reaped();
            status
        }
        Some(Err(error)) => {
            return Outcome::failed(
                output(None, &stdout, &stderr, &revealed),
                format!("cannot wait for `{program}`: {}", io_cause(&error)),
            )
        }
        // `collect` only finishes once the wait has finished.
        None => {
            return Outcome::failed(
                output(None, &stdout, &stderr, &revealed),
                format!("lost track of `{program}`"),
            )
        }
    };
    let result = output(Some(status), &stdout, &stderr, &revealed);
    if status.success() {
        Outcome::succeeded(result)
    } else {
        Outcome::failed(result, scrub(exit_error(status, &stderr), &revealed))
    }
}

/// Splits the command into what to start and its arguments. Parsing already checks this, but
/// actions run on rendered inputs and must not trust them.
fn program_and_args(exec: &Exec) -> Result<(&str, Vec<&str>), String> {
    match exec.command.as_slice() {
        [] => Err("the command is empty".to_string()),
        [first, ..] if first.is_empty() => Err("the command is empty".to_string()),
        [script] if exec.shell => Ok(("/bin/sh", vec!["-c", script.as_str()])),
        _ if exec.shell => Err("with `shell: true` the command must be one string".to_string()),
        [program, args @ ..] => Ok((program.as_str(), args.iter().map(String::as_str).collect())),
    }
}

/// Reads both pipes to their end and waits for the child, all at once so that neither pipe can
/// fill up and block the child. Safe to call again after being cancelled: each part resumes.
async fn collect(
    child: &mut tokio::process::Child,
    stdout_pipe: &mut Option<tokio::process::ChildStdout>,
    stderr_pipe: &mut Option<tokio::process::ChildStderr>,
    stdout: &mut Captured,
    stderr: &mut Captured,
    exit: &mut Option<std::io::Result<ExitStatus>>,
) {
    let wait = async {
        if exit.is_none() {
            *exit = Some(child.wait().await);
        }
    };
    tokio::join!(
        stdout.drain(stdout_pipe.as_mut()),
        stderr.drain(stderr_pipe.as_mut()),
        wait
    );
}

/// The first `limit` bytes of one output stream.
#[derive(Debug)]
struct Captured {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
    done: bool,
}

impl Captured {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            truncated: false,
            done: false,
        }
    }

    /// Reads until end of file, keeping the first `limit` bytes and discarding the rest, because a
    /// child blocked on a full pipe would never exit.
    ///
    /// Cancel-safe: `read` consumes nothing when cancelled, and each chunk is stored before the next await.
    async fn drain<R: AsyncRead + Unpin>(&mut self, reader: Option<&mut R>) {
        let Some(reader) = reader else {
            self.done = true;
            return;
        };
        let mut chunk = vec![0_u8; 8 * 1024];
        while !self.done {
            match reader.read(&mut chunk).await {
                Ok(0) => self.done = true,
                Ok(read) => {
                    let room = self.limit.saturating_sub(self.bytes.len());
                    let keep = read.min(room);
                    self.bytes.extend_from_slice(&chunk[..keep]);
                    if keep < read {
                        self.truncated = true;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot read the output of an exec action");
                    self.done = true;
                }
            }
        }
    }

    fn text(&self) -> String {
        lossy_prefix(&self.bytes, self.truncated)
    }
}

/// Decodes bytes as UTF-8, replacing invalid sequences. When the bytes were cut, a character split
/// by the cut is dropped rather than shown as a replacement character.
pub(crate) fn lossy_prefix(bytes: &[u8], truncated: bool) -> String {
    let bytes = match std::str::from_utf8(bytes) {
        // `error_len() == None` means the bytes end inside a character.
        Err(error) if truncated && error.error_len().is_none() => &bytes[..error.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the action returns, journaled; the secrets the step was given are blanked out of it.
fn output(
    status: Option<ExitStatus>,
    stdout: &Captured,
    stderr: &Captured,
    secrets: &[Secret],
) -> serde_json::Value {
    json!({
        "exit_code": status.and_then(|status| status.code()),
        "signal": status.and_then(|status| status.signal()),
        "stdout": scrub(stdout.text(), secrets),
        "stderr": scrub(stderr.text(), secrets),
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
    })
}

/// Replaces every occurrence of a secret in `text` with `<redacted>`, as CI systems mask theirs in
/// logs: a program that prints its environment or echoes a token must not put it in the journal.
fn scrub(mut text: String, secrets: &[Secret]) -> String {
    for secret in secrets {
        let value = secret.expose();
        if value.chars().count() >= MIN_SCRUBBED_SECRET_CHARS && text.contains(value) {
            text = text.replace(value, "<redacted>");
        }
    }
    text
}

fn exit_error(status: ExitStatus, stderr: &Captured) -> String {
    let summary = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(number)) => match Signal::try_from(number) {
            Ok(signal) => format!("killed by signal {number} ({})", signal.as_str()),
            Err(_) => format!("killed by signal {number}"),
        },
        (None, None) => format!("exited abnormally ({status})"),
    };
    match last_line(&stderr.text()) {
        Some(line) => format!("{summary}: {line}"),
        None => summary,
    }
}

/// The last non-blank line, which is where programs usually say what went wrong.
fn last_line(text: &str) -> Option<String> {
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    Some(match line.char_indices().nth(MAX_ERROR_LINE_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    })
}

fn spawn_error(program: &str, error: &std::io::Error) -> String {
    let cause = io_cause(error);
    if error.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
        format!("cannot start `{program}`: {cause}; consider an absolute path, or check that it is on homeostat's `PATH`")
    } else {
        format!("cannot start `{program}`: {cause}")
    }
}

/// An IO error as the operating system describes it, without Rust's "(os error 2)" suffix.
fn io_cause(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => error.to_string(),
    }
}

/// The child's process group, killed on timeout and whenever the action is dropped before its child
/// has been reaped.
struct ProcessGroup {
    /// The group's id, which is the child's pid; `None` once the child has been reaped, because
    /// then the id could belong to someone else.
    leader: Option<Pid>,
}

impl ProcessGroup {
    fn kill(&self) {
        let Some(leader) = self.leader else { return };
        match killpg(leader, Signal::SIGKILL) {
            // The whole group has already exited.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => tracing::warn!(
                pgid = leader.as_raw(),
                error = errno.desc(),
                "cannot kill an exec action's process group"
            ),
        }
    }

    fn reaped(&mut self) {
        self.leader = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use homeostat_core::config::{MaybeSecret, SecretRef};

    use super::*;
    use crate::action::Status;

    fn context(timeout: Duration) -> Context {
        Context {
            idempotency_key: "run-1/0/1".into(),
            run_id: "run-1".into(),
            timeout,
            notifiers: BTreeMap::new(),
            http: reqwest::Client::new(),
            dry_run: false,
            now: chrono::DateTime::UNIX_EPOCH,
            cluster: Default::default(),
        }
    }

    fn exec(command: &[&str]) -> Exec {
        Exec {
            command: command.iter().map(|part| part.to_string()).collect(),
            shell: false,
            env: BTreeMap::new(),
            working_dir: None,
            max_output_bytes: 64 * 1024,
        }
    }

    fn shell(script: &str) -> Exec {
        Exec {
            shell: true,
            ..exec(&[script])
        }
    }

    /// Gone, or a zombie waiting for a parent that may never reap it (in containers, pid 1 often does not).
    fn is_dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // The state follows the parenthesised command name, which may itself contain spaces.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr() {
        let outcome = run(
            &exec(&["sh", "-c", "echo hello; echo warning >&2"]),
            &context(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        assert_eq!(
            outcome.output,
            json!({
                "exit_code": 0, "signal": null, "stdout": "hello\n", "stderr": "warning\n",
                "stdout_truncated": false, "stderr_truncated": false,
            })
        );
        assert_eq!(outcome.error, None);
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_the_last_stderr_line() {
        let outcome = run(
            &shell("echo first >&2; echo 'unit api.service not found' >&2; exit 3"),
            &context(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error.as_deref(),
            Some("exited with status 3: unit api.service not found")
        );
        assert_eq!(outcome.output["exit_code"], 3);

        let silent = run(&shell("exit 1"), &context(Duration::from_secs(10))).await;
        assert_eq!(silent.error.as_deref(), Some("exited with status 1"));
    }

    #[tokio::test]
    async fn missing_program_fails_to_start() {
        let outcome = run(
            &exec(&["/nonexistent/homeostat-test-program"]),
            &context(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error.as_deref(),
            Some("cannot start `/nonexistent/homeostat-test-program`: No such file or directory")
        );

        let bare = run(
            &exec(&["homeostat-surely-not-a-program"]),
            &context(Duration::from_secs(10)),
        )
        .await;
        assert!(bare.error.unwrap().starts_with(
            "cannot start `homeostat-surely-not-a-program`: No such file or directory; consider"
        ));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        // The background `sleep` is a grandchild: killing only the shell would leave it running.
        let mut action =
            shell("echo $$ > \"$PIDFILE\"; sleep 30 & echo $! >> \"$PIDFILE\"; echo started; wait");
        action.env.insert(
            "PIDFILE".into(),
            MaybeSecret::Plain(pidfile.display().to_string()),
        );

        let outcome = run(&action, &context(Duration::from_millis(500))).await;

        assert_eq!(outcome.status, Status::TimedOut, "{outcome:?}");
        assert_eq!(outcome.error.as_deref(), Some("timed out after 0.5s"));
        // Output written before the timeout is kept.
        assert_eq!(outcome.output["stdout"], "started\n");
        assert_eq!(outcome.output["signal"], 9);
        let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
            .expect("the shell should have written its pid file before the timeout")
            .lines()
            .map(|line| line.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "{pids:?}");
        // A killed process closes its descriptors before the kernel marks it dead, so give the
        // marking a moment; a survivor of the kill would still be alive after it.
        for pid in pids {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !is_dead(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(is_dead(pid), "process {pid} survived the timeout");
        }
    }

    #[tokio::test]
    async fn output_is_truncated_without_blocking_the_child() {
        // Far more than a pipe buffer holds: the child only exits if the rest is read and dropped.
        let mut action = shell("head -c 1000000 /dev/zero | tr '\\0' a; echo done >&2");
        action.max_output_bytes = 100;
        let outcome = run(&action, &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        assert_eq!(outcome.output["stdout"], "a".repeat(100));
        assert_eq!(outcome.output["stdout_truncated"], true);
        assert_eq!(outcome.output["stderr"], "done\n");
        assert_eq!(outcome.output["stderr_truncated"], false);
    }

    #[test]
    fn a_cut_character_is_dropped() {
        let bytes = "héllo".as_bytes();
        assert_eq!(lossy_prefix(&bytes[..2], true), "h");
        assert_eq!(lossy_prefix(&bytes[..2], false), "h\u{fffd}");
        assert_eq!(lossy_prefix(b"a\xffb", true), "a\u{fffd}b");
    }

    #[tokio::test]
    async fn env_comes_from_a_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        let mut action = exec(&["sh", "-c", "printf %s \"$API_TOKEN\""]);
        action.env.insert(
            "API_TOKEN".into(),
            MaybeSecret::Secret(SecretRef::File(path)),
        );
        let outcome = run(&action, &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        // The program got the value; the journaled output only a mask.
        assert_eq!(outcome.output["stdout"], "<redacted>");
        action.command = vec![
            "sh".into(),
            "-c".into(),
            "test \"$API_TOKEN\" = s3cr3t-token && echo given; echo \"$API_TOKEN\" >&2; exit 3"
                .into(),
        ];
        let outcome = run(&action, &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.output["stdout"], "given\n");
        assert_eq!(outcome.output["stderr"], "<redacted>\n");
        assert_eq!(
            outcome.error.as_deref(),
            Some("exited with status 3: <redacted>")
        );
    }

    /// Finding 7 of issue 11: every secret the daemon read from its environment was readable by
    /// every runbook command, and an `env` step journaled them all.
    #[tokio::test]
    async fn children_get_a_minimal_environment_and_only_the_secrets_they_name() {
        let name = format!("HOMEOSTAT_TEST_DAEMON_SECRET_{}", std::process::id());
        std::env::set_var(&name, "daemon-only-secret-value");
        let outcome = run(&exec(&["env"]), &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        let stdout = outcome.output["stdout"].as_str().unwrap().to_string();
        assert!(!stdout.contains("daemon-only-secret-value"), "{stdout}");
        let names: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        assert!(names.contains(&"PATH"), "{stdout}");
        assert!(
            names.iter().all(|name| INHERITED_ENV.contains(name)),
            "{names:?}"
        );

        let mut asks = exec(&["env"]);
        asks.env.insert(
            "API_KEY".into(),
            MaybeSecret::Secret(SecretRef::Env(name.clone())),
        );
        asks.env
            .insert("UNIT".into(), MaybeSecret::Plain("api.service".into()));
        let outcome = run(&asks, &context(Duration::from_secs(10))).await;
        std::env::remove_var(&name);
        let stdout = outcome.output["stdout"].as_str().unwrap();
        assert!(
            stdout.lines().any(|line| line == "API_KEY=<redacted>"),
            "{stdout}"
        );
        assert!(
            stdout.lines().any(|line| line == "UNIT=api.service"),
            "{stdout}"
        );
        assert!(!stdout.contains("daemon-only-secret-value"), "{stdout}");
    }

    #[tokio::test]
    async fn missing_secret_names_the_variable() {
        let mut action = exec(&["true"]);
        action.env.insert(
            "API_TOKEN".into(),
            MaybeSecret::Secret(SecretRef::Env("HOMEOSTAT_TEST_SURELY_UNSET_TOKEN".into())),
        );
        let outcome = run(&action, &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.status, Status::Failed);
        let error = outcome.error.unwrap();
        assert!(
            error.starts_with(
                "cannot set env `API_TOKEN`: secret env `HOMEOSTAT_TEST_SURELY_UNSET_TOKEN`"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn without_shell_arguments_are_not_interpreted() {
        let outcome = run(
            &exec(&["echo", "$HOME", "*", "a;b"]),
            &context(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        assert_eq!(outcome.output["stdout"], "$HOME * a;b\n");
    }

    #[tokio::test]
    async fn runs_in_the_working_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut action = exec(&["pwd", "-P"]);
        action.working_dir = Some(dir.path().display().to_string());
        let outcome = run(&action, &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        let expected = dir.path().canonicalize().unwrap();
        assert_eq!(
            outcome.output["stdout"],
            format!("{}\n", expected.display())
        );

        action.working_dir = Some("/nonexistent/homeostat-test-dir".into());
        let missing = run(&action, &context(Duration::from_secs(10))).await;
        assert_eq!(
            missing.error.as_deref(),
            Some("working directory `/nonexistent/homeostat-test-dir` cannot be used: No such file or directory")
        );
    }

    #[tokio::test]
    async fn killed_by_a_signal_is_a_failure() {
        let outcome = run(&shell("kill -TERM $$"), &context(Duration::from_secs(10))).await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(outcome.output["signal"], 15);
        assert_eq!(
            outcome.error.as_deref(),
            Some("killed by signal 15 (SIGTERM)")
        );
    }

    #[tokio::test]
    async fn malformed_commands_fail_instead_of_panicking() {
        let empty = run(&exec(&[]), &context(Duration::from_secs(10))).await;
        assert_eq!(empty.error.as_deref(), Some("the command is empty"));
        let two = run(
            &Exec {
                shell: true,
                ..exec(&["a", "b"])
            },
            &context(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(two.status, Status::Failed);
    }
}
