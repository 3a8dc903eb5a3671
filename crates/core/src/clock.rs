//! The one place where homeostat reads time, so tests can drive time by hand.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A source of wall-clock time and of monotonic time.
///
/// Everything that needs "now" takes a `Clock`, so cooldowns, rate windows and timeouts can be
/// tested on a manual clock in microseconds instead of real seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time, for timestamps that are stored and shown.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time since an arbitrary origin, for measuring durations.
    fn monotonic(&self) -> Duration;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        // The one sanctioned call: every other part of homeostat goes through this type.
        #[allow(clippy::disallowed_methods)]
        let origin = std::time::Instant::now();
        Self { origin }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        #[allow(clippy::disallowed_methods)]
        Utc::now()
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that only moves when told to; shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
    origin_millis: i64,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        let origin_millis = start.timestamp_millis();
        Self {
            millis: Arc::new(AtomicI64::new(origin_millis)),
            origin_millis,
        }
    }

    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.millis.load(Ordering::SeqCst))
            .single()
            .unwrap_or_default()
    }

    fn monotonic(&self) -> Duration {
        Duration::from_millis(
            (self.millis.load(Ordering::SeqCst) - self.origin_millis).max(0) as u64,
        )
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
