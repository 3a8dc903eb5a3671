//! Named failure points for crash tests: `HOMEOSTAT_FAILPOINT=NAME` (or `NAME@N`, the N-th time it is
//! reached) makes the daemon kill itself with SIGKILL at that point, as a power cut or an OOM kill
//! would, with nothing flushed and no destructor run.
//!
//! Unset, a failure point costs one relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Before a transition that starts effects is committed.
pub const BEFORE_INTENT_COMMIT: &str = "before_intent_commit";
/// After the intent is committed, before the effect starts.
pub const AFTER_INTENT_COMMIT: &str = "after_intent_commit";
/// After the effect ran, before its outcome is committed.
pub const AFTER_EFFECT: &str = "after_effect";
/// After the outcome is committed, before anything else happens.
pub const AFTER_OUTCOME_COMMIT: &str = "after_outcome_commit";

pub const ALL: &[&str] = &[
    BEFORE_INTENT_COMMIT,
    AFTER_INTENT_COMMIT,
    AFTER_EFFECT,
    AFTER_OUTCOME_COMMIT,
];

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("HOMEOSTAT_FAILPOINT").ok()?;
            let (name, nth) = match spec.split_once('@') {
                Some((name, nth)) => (name.to_string(), nth.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills the process if `name` is the armed failure point and this is its N-th hit.
pub fn hit(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name != name {
        return;
    }
    if armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth {
        eprintln!("failpoint `{name}` reached: killing the process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this only waits for it to land.
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}
