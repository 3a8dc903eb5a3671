//! One writer process per store: an exclusive lock on `<db>.lock` beside the database, held for
//! the life of the process that writes (the daemon, `retention --apply`).
//!
//! SQLite would let two daemons open one file and take turns committing; each would then decide
//! and resume runs as if it were alone, and their journal sequences collide. The lock is an
//! advisory `flock` (`File::try_lock`), so the kernel releases it when its holder dies, even by
//! `kill -9`: a stale file never blocks. The file holds the holder's pid, host and start time, for
//! the message that refuses a second writer; readers never take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the store `{store}` is in use by {holder} (lock `{lock}`); stop that homeostat first, or give this one its own `store.path`")]
    Held {
        store: String,
        lock: String,
        holder: String,
    },
    #[error("cannot lock the store: `{lock}`: {message}")]
    Io { lock: String, message: String },
}

/// An exclusive hold on a store; released when dropped or when the process ends.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    _file: File,
}

/// The lock file beside the database at `store`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl Lock {
    /// Takes the lock of the store at `store` for this process, started at `started_at`, or says
    /// who holds it.
    pub fn acquire(store: &Path, started_at: DateTime<Utc>) -> Result<Lock, Error> {
        let path = path_for(store);
        let io = |error: std::io::Error| Error::Io {
            lock: path.display().to_string(),
            message: error.to_string(),
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Not truncated on open: the holder's details must stay readable to whoever is refused.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                // Absolute: the second daemon may have been started from another directory than
                // the first, and a relative `homeostat.db` names neither.
                let absolute = |path: &Path| {
                    std::path::absolute(path)
                        .unwrap_or_else(|_| path.to_path_buf())
                        .display()
                        .to_string()
                };
                return Err(Error::Held {
                    store: absolute(store),
                    lock: absolute(&path),
                    holder: describe(&holder),
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let holder = serde_json::json!({
            "pid": std::process::id(),
            "host": hostname(),
            "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{holder}\n").as_bytes())
            .and_then(|()| file.flush())
            .map_err(io)?;
        Ok(Lock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder as people read it: "pid 41 on `db-1` since 2026-01-01T10:00:00Z".
fn describe(text: &str) -> String {
    let Ok(holder) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        // Written between its open and its write, or by something else.
        return "another process".into();
    };
    let field = |name: &str| {
        holder
            .get(name)
            .map(|value| match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "homeostat pid {} on `{}` since {}",
        field("pid"),
        field("host"),
        field("started_at")
    )
}

/// This machine's name, from the kernel; `HOSTNAME` where there is no `/proc`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_details_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("homeostat.db");
        let first = Lock::acquire(&store, at()).expect("first lock");
        assert_eq!(first.path(), dir.path().join("homeostat.db.lock"));
        // flock locks belong to the open file description, so a second open in the same process
        // is refused as another process would be.
        let refused = Lock::acquire(&store, at()).expect_err("second lock");
        let message = refused.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("since 2026-01-02T03:04:05Z")
                && message.contains("homeostat.db.lock"),
            "{message}"
        );
        drop(first);
        Lock::acquire(&store, at()).expect("taken again once released");
    }
}
