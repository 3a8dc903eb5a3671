//! Guard state: cooldowns, rate windows, concurrency limits, per-target locks and loop counts, as
//! plain data.
//!
//! The engine owns one [`GuardState`]; [`crate::decide::decide`] reads and updates it. Nothing here
//! reads the clock: `now` is passed in, so every guard is tested on hand-made time.
//!
//! Dry runs keep books of their own (shadow mode): they are checked against, and counted in, the
//! dry-run ledger only, so a rule tried in dry run first arms no live cooldown, spends nothing of
//! `max_runs`, the concurrency limit or the blast-radius budget, and holds no lock a live run
//! would wait on. Their own ledger is what lets a dry run still say "would be skipped: cooldown".

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Guards, LoopLimit};
use crate::incident::IncidentId;

pub mod status;

/// Why a guard held a run back. Journaled as the decision's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub enum Skip {
    /// Another run holds the lock on this target (any rule).
    Locked { target: String, run_id: String },
    /// The rule already has `max` runs in progress.
    Concurrency { running: u32, max: u32 },
    /// The rule ran for this target recently.
    Cooldown {
        target: String,
        until: DateTime<Utc>,
    },
    /// The rule ran `count` times within the window.
    RateLimited {
        count: u32,
        window_secs: u64,
        until: DateTime<Utc>,
    },
    /// The fleet-wide blast-radius budget is spent: `targets` are under remediation, at most `max`.
    BlastRadius { targets: u32, max: u32 },
    /// Loop detection turned the rule off for this target.
    Disabled { target: String },
    /// This run would be the rule's `runs`-th on this target for one incident within the window,
    /// without the incident resolving: a loop. The rule is now disabled for the target.
    Loop {
        target: String,
        runs: u32,
        window_secs: u64,
    },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Locked { target, run_id } => {
                write!(f, "skipped: target `{target}` is locked by run `{run_id}`")
            }
            Skip::Concurrency { running, max } => {
                write!(f, "skipped: {running} runs in progress, at most {max}")
            }
            Skip::Cooldown { target, until } => {
                write!(
                    f,
                    "skipped: cooldown for `{target}` until {}",
                    until.to_rfc3339()
                )
            }
            Skip::RateLimited {
                count,
                window_secs,
                until,
            } => write!(
                f,
                "skipped: {count} runs within {window_secs}s already, next allowed at {}",
                until.to_rfc3339()
            ),
            Skip::BlastRadius { targets, max } => write!(
                f,
                "refused: {targets} targets are under automated remediation, the blast-radius budget is {max}"
            ),
            Skip::Disabled { target } => write!(
                f,
                "skipped: loop detection disabled this rule for `{target}`"
            ),
            Skip::Loop {
                target,
                runs,
                window_secs,
            } => write!(
                f,
                "stopped: this would be run {runs} on `{target}` within {window_secs}s for one incident that did not resolve; the rule is now disabled for `{target}`"
            ),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct RuleState {
    /// Start times of recent runs, oldest first, for `max_runs`.
    starts: VecDeque<DateTime<Utc>>,
    /// Last start per target, for the cooldown.
    last_start: HashMap<String, DateTime<Utc>>,
    /// Runs in progress: run id to target.
    running: HashMap<String, String>,
}

/// One set of books: every rule's recent starts and runs in progress, and the per-target locks.
#[derive(Debug, Default, Clone)]
struct Ledger {
    rules: HashMap<String, RuleState>,
    /// Target to the run that holds it. Shared by all rules: two rules must not act on one pod at once.
    locks: HashMap<String, String>,
}

/// Guard bookkeeping for every rule, plus the global per-target locks: live runs and dry runs in
/// separate ledgers.
#[derive(Debug, Default, Clone)]
pub struct GuardState {
    live: Ledger,
    /// What dry runs would have spent, apart from the live books.
    dry: Ledger,
    /// `runs.max_targets`: the fleet-wide blast-radius budget.
    pub max_targets: Option<u32>,
    /// (rule, target) pairs loop detection turned off; kept in step with the correlator's.
    pub disabled: std::collections::HashSet<(String, String)>,
}

impl GuardState {
    fn ledger(&self, dry_run: bool) -> &Ledger {
        if dry_run {
            &self.dry
        } else {
            &self.live
        }
    }

    /// Checks every guard of `rule` for `target` at `now`, in the order lock, concurrency, cooldown,
    /// rate; a dry run against the dry-run ledger only.
    pub fn check(
        &self,
        rule: &str,
        guards: &Guards,
        target: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<(), Skip> {
        let ledger = self.ledger(dry_run);
        if self
            .disabled
            .contains(&(rule.to_string(), target.to_string()))
        {
            return Err(Skip::Disabled {
                target: target.to_string(),
            });
        }
        if let Some(max) = self.max_targets {
            let targets: std::collections::HashSet<&str> = ledger
                .rules
                .values()
                .flat_map(|state| state.running.values().map(String::as_str))
                .collect();
            // A target already under remediation does not spend more of the budget.
            if !targets.contains(target) && targets.len() as u32 >= max {
                return Err(Skip::BlastRadius {
                    targets: targets.len() as u32,
                    max,
                });
            }
        }
        if guards.lock {
            if let Some(run_id) = ledger.locks.get(target) {
                return Err(Skip::Locked {
                    target: target.to_string(),
                    run_id: run_id.clone(),
                });
            }
        }
        let Some(state) = ledger.rules.get(rule) else {
            return Ok(());
        };
        if let Some(max) = guards.max_concurrent {
            let running = state.running.len() as u32;
            if running >= max {
                return Err(Skip::Concurrency { running, max });
            }
        }
        if guards.cooldown_secs > 0 {
            if let Some(last) = state.last_start.get(target) {
                let until = *last + Duration::seconds(guards.cooldown_secs as i64);
                if now < until {
                    return Err(Skip::Cooldown {
                        target: target.to_string(),
                        until,
                    });
                }
            }
        }
        if let Some(max_runs) = &guards.max_runs {
            let window = Duration::seconds(max_runs.window_secs as i64);
            let recent: Vec<&DateTime<Utc>> = state
                .starts
                .iter()
                .filter(|start| **start > now - window)
                .collect();
            if recent.len() as u32 >= max_runs.count {
                // The oldest run inside the window leaves it first.
                let until = *recent[recent.len() - max_runs.count as usize] + window;
                return Err(Skip::RateLimited {
                    count: recent.len() as u32,
                    window_secs: max_runs.window_secs,
                    until,
                });
            }
        }
        Ok(())
    }

    /// Records that a run started (a dry run in the dry-run ledger); it holds the target's lock
    /// until [`GuardState::finish`].
    pub fn start(
        &mut self,
        rule: &str,
        guards: &Guards,
        target: &str,
        run_id: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) {
        let ledger = if dry_run {
            &mut self.dry
        } else {
            &mut self.live
        };
        let state = ledger.rules.entry(rule.to_string()).or_default();
        state.starts.push_back(now);
        // Keep only what the rate window can still need, so memory stays bounded per rule.
        let keep = guards
            .max_runs
            .as_ref()
            .map_or(0, |max_runs| max_runs.count as usize);
        while state.starts.len() > keep.max(1) {
            state.starts.pop_front();
        }
        // Only a cooldown reads the last start per target; without one, keeping it would grow with
        // every target ever acted on.
        if guards.cooldown_secs > 0 {
            state.last_start.insert(target.to_string(), now);
        }
        state.running.insert(run_id.to_string(), target.to_string());
        if guards.lock {
            ledger.locks.insert(target.to_string(), run_id.to_string());
        }
    }

    /// Records that a run ended, releasing its lock and concurrency slot (in whichever ledger
    /// holds it: run ids are unique).
    pub fn finish(&mut self, rule: &str, run_id: &str) {
        for ledger in [&mut self.live, &mut self.dry] {
            if let Some(state) = ledger.rules.get_mut(rule) {
                if let Some(target) = state.running.remove(run_id) {
                    if ledger
                        .locks
                        .get(&target)
                        .is_some_and(|holder| holder == run_id)
                    {
                        ledger.locks.remove(&target);
                    }
                }
            }
        }
    }

    /// Forgets cooldown entries that can no longer matter, so the state stays bounded by active targets.
    pub fn prune(&mut self, longest_cooldown_secs: u64, now: DateTime<Utc>) {
        let horizon = now - Duration::seconds(longest_cooldown_secs as i64);
        for ledger in [&mut self.live, &mut self.dry] {
            for state in ledger.rules.values_mut() {
                state.last_start.retain(|_, start| *start > horizon);
            }
            ledger.rules.retain(|_, state| {
                !(state.running.is_empty()
                    && state.last_start.is_empty()
                    && state.starts.is_empty())
            });
        }
    }
}

/// Loop detection: per (rule, target), the runs started for incidents that have not resolved
/// since, with when. A run that would be a rule's `loop.runs + 1`-th on one target for one
/// incident within the window is a loop: it is stopped, the rule is disabled for the target and
/// the incident escalates.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoopCounts(HashMap<(String, String), Vec<Attempt>>);

/// A run started for an incident: when, and for which.
type Attempt = (DateTime<Utc>, IncidentId);

impl LoopCounts {
    /// Counts rebuilt from recent runs (rule, target, start, incident) of incidents not resolved.
    pub fn from_runs(
        runs: impl IntoIterator<Item = (String, String, DateTime<Utc>, IncidentId)>,
    ) -> Self {
        let mut counts = Self::default();
        for (rule, target, at, incident) in runs {
            counts
                .0
                .entry((rule, target))
                .or_default()
                .push((at, incident));
        }
        for list in counts.0.values_mut() {
            list.sort();
        }
        counts
    }

    /// Counts a run about to start for `incident`; `Err` with the runs already made when it would
    /// pass the limit, in which case it is not counted.
    pub fn admit(
        &mut self,
        rule: &str,
        target: &str,
        incident: IncidentId,
        limit: &LoopLimit,
        now: DateTime<Utc>,
    ) -> Result<(), u32> {
        let window = Duration::seconds(i64::try_from(limit.window_secs).unwrap_or(i64::MAX));
        let attempts = self
            .0
            .entry((rule.to_string(), target.to_string()))
            .or_default();
        attempts.retain(|(at, _)| *at > now - window);
        let count = attempts
            .iter()
            .filter(|(_, attempt)| *attempt == incident)
            .count() as u32;
        if count >= limit.runs {
            return Err(count);
        }
        attempts.push((now, incident));
        Ok(())
    }

    /// An incident resolved: the remediations so far worked, so they stop counting.
    pub fn resolved(&mut self, incident: IncidentId) {
        for attempts in self.0.values_mut() {
            attempts.retain(|(_, attempt)| *attempt != incident);
        }
        self.0.retain(|_, attempts| !attempts.is_empty());
    }

    /// A person turned a rule back on for a target: its count starts afresh.
    pub fn forget(&mut self, rule: &str, target: &str) {
        self.0.remove(&(rule.to_string(), target.to_string()));
    }

    /// What was tried for an incident, in words, sorted: "rule `r` on `t` (2 runs)".
    pub fn tried(&self, incident: IncidentId) -> Vec<String> {
        let mut tried: Vec<String> = self
            .0
            .iter()
            .filter_map(|((rule, target), attempts)| {
                let runs = attempts
                    .iter()
                    .filter(|(_, attempt)| *attempt == incident)
                    .count();
                (runs > 0).then(|| {
                    format!(
                        "rule `{rule}` on `{target}` ({runs} run{})",
                        if runs == 1 { "" } else { "s" }
                    )
                })
            })
            .collect();
        tried.sort();
        tried
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaxRuns;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(seconds)
    }

    #[test]
    fn each_guard_gives_its_verdict() {
        let guards = Guards {
            cooldown_secs: 60,
            max_runs: Some(MaxRuns {
                count: 2,
                window_secs: 300,
            }),
            max_concurrent: Some(2),
            lock: true,
            dry_run: false,
            loop_limit: None,
        };
        let mut state = GuardState::default();
        assert_eq!(state.check("r", &guards, "a", false, at(0)), Ok(()));
        state.start("r", &guards, "a", "run1", false, at(0));
        assert!(matches!(
            state.check("r", &guards, "a", false, at(1)),
            Err(Skip::Locked { .. })
        ));
        assert!(
            matches!(
                state.check("other", &guards, "a", false, at(1)),
                Err(Skip::Locked { .. })
            ),
            "locks span rules"
        );
        state.start("r", &guards, "b", "run2", false, at(1));
        assert_eq!(
            state.check("r", &guards, "c", false, at(2)),
            Err(Skip::Concurrency { running: 2, max: 2 })
        );
        state.finish("r", "run1");
        state.finish("r", "run2");
        assert_eq!(
            state.check("r", &guards, "a", false, at(30)),
            Err(Skip::Cooldown {
                target: "a".into(),
                until: at(60)
            })
        );
        assert_eq!(
            state.check("r", &guards, "c", false, at(30)),
            Err(Skip::RateLimited {
                count: 2,
                window_secs: 300,
                until: at(300)
            })
        );
        assert_eq!(state.check("r", &guards, "c", false, at(301)), Ok(()));
        assert_eq!(state.check("r", &guards, "a", false, at(301)), Ok(()));
    }

    #[test]
    fn the_blast_radius_budget_spans_rules_and_disabled_pairs_are_skipped() {
        let guards = Guards {
            lock: false,
            ..Guards::default()
        };
        let mut state = GuardState {
            max_targets: Some(2),
            ..GuardState::default()
        };
        state.start("r1", &guards, "a", "run1", false, at(0));
        state.start("r2", &guards, "b", "run2", false, at(0));
        assert_eq!(
            state.check("r3", &guards, "c", false, at(1)),
            Err(Skip::BlastRadius { targets: 2, max: 2 })
        );
        assert_eq!(
            state.check("r3", &guards, "a", false, at(1)),
            Ok(()),
            "a target already under remediation spends nothing more"
        );
        state.finish("r1", "run1");
        assert_eq!(state.check("r3", &guards, "c", false, at(2)), Ok(()));
        state.disabled.insert(("r3".into(), "c".into()));
        assert_eq!(
            state.check("r3", &guards, "c", false, at(2)),
            Err(Skip::Disabled { target: "c".into() })
        );
    }

    #[test]
    fn dry_runs_keep_books_of_their_own() {
        let guards = Guards {
            cooldown_secs: 600,
            max_runs: Some(MaxRuns {
                count: 1,
                window_secs: 3600,
            }),
            max_concurrent: Some(1),
            lock: true,
            ..Guards::default()
        };
        let mut state = GuardState {
            max_targets: Some(1),
            ..GuardState::default()
        };
        state.start("r", &guards, "a", "dry1", true, at(0));
        // Nothing live was spent: no lock, slot, budget, cooldown or rate.
        assert_eq!(state.check("r", &guards, "a", false, at(1)), Ok(()));
        assert_eq!(state.check("r", &guards, "b", false, at(1)), Ok(()));
        // The dry run's own books still say what it would have met.
        assert!(matches!(
            state.check("r", &guards, "a", true, at(1)),
            Err(Skip::Locked { .. })
        ));
        state.finish("r", "dry1");
        assert!(matches!(
            state.check("r", &guards, "a", true, at(1)),
            Err(Skip::Cooldown { .. })
        ));
        // A live run spends nothing of the dry books either.
        state.start("r", &guards, "a", "live1", false, at(2));
        state.finish("r", "live1");
        assert!(matches!(
            state.check("r", &guards, "a", false, at(3)),
            Err(Skip::Cooldown { .. })
        ));
        assert!(matches!(
            state.check("r", &guards, "a", true, at(601)),
            Err(Skip::RateLimited { .. })
        ));
        assert_eq!(state.check("r", &guards, "a", true, at(3601)), Ok(()));
    }

    #[test]
    fn lock_can_be_turned_off() {
        let guards = Guards {
            lock: false,
            ..Guards::default()
        };
        let mut state = GuardState::default();
        state.start("r", &guards, "a", "run1", false, at(0));
        assert_eq!(state.check("r", &guards, "a", false, at(0)), Ok(()));
    }
}
