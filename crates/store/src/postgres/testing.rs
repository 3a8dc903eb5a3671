//! A PostgreSQL server for tests: the Debian package's binaries, its own data directory in a
//! temporary directory, a free port on 127.0.0.1, password authentication; stopped when dropped.
//!
//! `initdb` and `postgres` refuse to run as root, so as root the server runs as the `postgres`
//! user the package creates. Tests skip (with a message) only when the binaries are absent; with
//! `HOMEOSTAT_REQUIRE_POSTGRES=1` (CI) that is a failure instead.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection;

/// Where the Debian package puts the server's binaries (`/usr/lib/postgresql/<major>/bin`), or
/// `HOMEOSTAT_POSTGRES_BIN`.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HOMEOSTAT_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of a user, from `/etc/passwd`.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
    })
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A running server; stopped (immediately: tests need no clean shutdown) when dropped.
pub struct Server {
    bin: PathBuf,
    data: PathBuf,
    /// The user the server runs as, when the tests run as root.
    user: Option<(u32, u32)>,
    port: u16,
    password: String,
    // Last, so the server stops before its directory goes.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server for tests, or `None` when the binaries are absent (after saying so on
    /// stderr), unless `HOMEOSTAT_REQUIRE_POSTGRES` is set, when their absence fails the test.
    /// Durability is not under test (the crash tests kill the daemon, not the server): no fsync.
    pub fn start() -> Option<Server> {
        Self::start_with(&["fsync=off", "full_page_writes=off"])
    }

    /// As [`Server::start`], with these `-c` settings over PostgreSQL's defaults; none keeps its
    /// defaults, durable commits included (benchmarks).
    pub fn start_with(settings: &[&str]) -> Option<Server> {
        let Some(bin) = binaries() else {
            let required = std::env::var_os("HOMEOSTAT_REQUIRE_POSTGRES")
                .is_some_and(|value| !value.is_empty() && value != "0");
            assert!(
                !required,
                "HOMEOSTAT_REQUIRE_POSTGRES is set but no PostgreSQL server binaries were found \
                 in /usr/lib/postgresql/*/bin; install the `postgresql` package"
            );
            eprintln!(
                "skipped: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; install \
                 the `postgresql` package to run the PostgreSQL tests"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let running_as_root = std::fs::metadata("/proc/self")
            .map(|meta| meta.uid() == 0)
            .unwrap_or(false);
        let user = running_as_root.then(|| {
            user_ids("postgres").expect(
                "running as root, the server needs the `postgres` user, which the `postgresql` \
                 package creates",
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let password = format!("homeostat-test-{port}");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, &password).expect("write the password file");
        let data = dir.path().join("data");
        let server = Server {
            bin,
            data,
            user,
            port,
            password,
            _dir: dir,
        };
        if let Some((uid, gid)) = user {
            for path in [server._dir.path(), password_file.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .expect("give the temporary directory to the postgres user");
            }
        }
        run(
            server
                .command("initdb")
                .arg("--pgdata")
                .arg(&server.data)
                .args(["--username", "homeostat", "--auth", "scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display()))
                .args(["--encoding", "UTF8", "--no-sync", "--no-instructions"]),
            "initdb",
        );
        let mut options = format!(
            "-h 127.0.0.1 -p {} -k {} -c max_connections=200",
            server.port,
            server._dir.path().display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        run(
            server
                .command("pg_ctl")
                .arg("start")
                .arg("--pgdata")
                .arg(&server.data)
                .args(["--wait", "--timeout", "120", "--silent", "-o", &options])
                .arg("--log")
                .arg(server._dir.path().join("server.log")),
            "pg_ctl start",
        );
        Some(server)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self._dir.path());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// The url of database `name`, created empty.
    pub async fn database(&self, name: &str) -> String {
        let mut connection = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test server");
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut connection)
            .await
            .expect("create a database");
        self.url(name)
    }

    /// The url of database `name`, with the password.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://homeostat:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let stopped = self
            .command("pg_ctl")
            .arg("stop")
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--mode", "immediate", "--wait", "--silent"])
            .output();
        if let Err(error) = stopped {
            eprintln!("cannot stop the test PostgreSQL server: {error}");
        }
    }
}
