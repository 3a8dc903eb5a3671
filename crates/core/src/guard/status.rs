//! What the guards hold for a rule, for people: a read-only [`Snapshot`] of [`GuardState`] and
//! [`Snapshot::rule`], which says at a given time which cooldowns still run, how many runs the rate
//! window counts, which runs are in progress and which locks they hold.
//!
//! The engine publishes a snapshot after each commit that can change the guards (`GET
//! /api/v1/rules` reads it); like the rest of this crate it reads no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::GuardState;
use crate::config::Guards;

/// A copy of the guard state as of one commit, in sorted maps so that it reads the same every time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    rules: BTreeMap<String, RuleCopy>,
    /// Target to the run holding its lock.
    locks: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct RuleCopy {
    starts: Vec<DateTime<Utc>>,
    last_start: BTreeMap<String, DateTime<Utc>>,
    /// Run id to target.
    running: BTreeMap<String, String>,
}

impl GuardState {
    /// A copy for readers outside the decide stage: the live ledger, as dry runs hold nothing
    /// back from live runs (shadow mode).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            rules: self
                .live
                .rules
                .iter()
                .map(|(name, state)| {
                    let copy = RuleCopy {
                        starts: state.starts.iter().copied().collect(),
                        last_start: state
                            .last_start
                            .iter()
                            .map(|(target, at)| (target.clone(), *at))
                            .collect(),
                        running: state
                            .running
                            .iter()
                            .map(|(run, target)| (run.clone(), target.clone()))
                            .collect(),
                    };
                    (name.clone(), copy)
                })
                .collect(),
            locks: self
                .live
                .locks
                .iter()
                .map(|(target, run)| (target.clone(), run.clone()))
                .collect(),
        }
    }
}

/// What the guards hold for one rule at one time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleGuards {
    /// Targets in their cooldown, with when it ends; soonest first.
    pub cooldowns: Vec<Cooldown>,
    /// The rule's runs counted by `max_runs`, when it has one.
    pub rate: Option<Rate>,
    /// The rule's runs in progress, with the lock each holds.
    pub running: Vec<Running>,
    /// Targets loop detection disabled the rule for.
    pub disabled_targets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    pub target: String,
    pub until: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Runs started within the window ending now.
    pub count: u32,
    pub max: u32,
    pub window_secs: u64,
    /// When the next run is allowed, while the window is full.
    pub next_allowed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub run: String,
    pub target: String,
    /// Whether the run holds the target's lock (which keeps every rule off the target).
    pub holds_lock: bool,
}

impl Snapshot {
    /// What the guards hold for `rule`, configured with `guards`, at `now`; `disabled` are the
    /// (rule, target) pairs loop detection turned off, of every rule.
    pub fn rule<'a>(
        &self,
        rule: &str,
        guards: &Guards,
        disabled: impl IntoIterator<Item = &'a (String, String)>,
        now: DateTime<Utc>,
    ) -> RuleGuards {
        let mut disabled_targets: Vec<String> = disabled
            .into_iter()
            .filter(|(name, _)| name == rule)
            .map(|(_, target)| target.clone())
            .collect();
        disabled_targets.sort();
        let empty = RuleCopy::default();
        let state = self.rules.get(rule).unwrap_or(&empty);
        let cooldown = Duration::seconds(i64::try_from(guards.cooldown_secs).unwrap_or(i64::MAX));
        let mut cooldowns: Vec<Cooldown> = if guards.cooldown_secs == 0 {
            Vec::new()
        } else {
            state
                .last_start
                .iter()
                .map(|(target, at)| Cooldown {
                    target: target.clone(),
                    until: *at + cooldown,
                })
                .filter(|cooldown| cooldown.until > now)
                .collect()
        };
        cooldowns.sort_by(|a, b| a.until.cmp(&b.until).then(a.target.cmp(&b.target)));
        // The same arithmetic as `GuardState::check`, so what is shown is what the next check says.
        let rate = guards.max_runs.as_ref().map(|max_runs| {
            let window = Duration::seconds(i64::try_from(max_runs.window_secs).unwrap_or(i64::MAX));
            let recent: Vec<&DateTime<Utc>> = state
                .starts
                .iter()
                .filter(|start| **start > now - window)
                .collect();
            let count = recent.len() as u32;
            let next_allowed_at = (max_runs.count > 0 && count >= max_runs.count)
                .then(|| *recent[recent.len() - max_runs.count as usize] + window);
            Rate {
                count,
                max: max_runs.count,
                window_secs: max_runs.window_secs,
                next_allowed_at,
            }
        });
        let running = state
            .running
            .iter()
            .map(|(run, target)| Running {
                run: run.clone(),
                target: target.clone(),
                holds_lock: self.locks.get(target) == Some(run),
            })
            .collect();
        RuleGuards {
            cooldowns,
            rate,
            running,
            disabled_targets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaxRuns;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(seconds)
    }

    fn guards() -> Guards {
        Guards {
            cooldown_secs: 60,
            max_runs: Some(MaxRuns {
                count: 2,
                window_secs: 300,
            }),
            ..Guards::default()
        }
    }

    #[test]
    fn a_rule_shows_what_the_next_check_would_say() {
        let guards = guards();
        let mut state = GuardState::default();
        state.start("r", &guards, "a", "run1", false, at(0));
        state.start("r", &guards, "b", "run2", false, at(10));
        state.finish("r", "run1");
        state.start("other", &guards, "c", "run3", false, at(10));
        let disabled = [
            ("r".to_string(), "z".to_string()),
            ("other".to_string(), "y".to_string()),
        ];
        let shown = state.snapshot().rule("r", &guards, &disabled, at(30));
        assert_eq!(
            shown,
            RuleGuards {
                cooldowns: vec![
                    Cooldown {
                        target: "a".into(),
                        until: at(60)
                    },
                    Cooldown {
                        target: "b".into(),
                        until: at(70)
                    },
                ],
                rate: Some(Rate {
                    count: 2,
                    max: 2,
                    window_secs: 300,
                    next_allowed_at: Some(at(300)),
                }),
                running: vec![Running {
                    run: "run2".into(),
                    target: "b".into(),
                    holds_lock: true,
                }],
                disabled_targets: vec!["z".into()],
            }
        );
        // The check agrees on when the rate window lets a run through.
        assert!(matches!(
            state.check("r", &guards, "new", false, at(30)),
            Err(crate::guard::Skip::RateLimited { until, .. }) if until == at(300)
        ));

        state.finish("r", "run2");
        let later = state.snapshot().rule("r", &guards, [], at(65));
        assert_eq!(
            later.cooldowns,
            vec![Cooldown {
                target: "b".into(),
                until: at(70)
            }],
            "an ended cooldown is not shown"
        );
        assert!(later.running.is_empty());
        let much_later = state.snapshot().rule("r", &guards, [], at(400));
        assert_eq!(
            much_later
                .rate
                .map(|rate| (rate.count, rate.next_allowed_at)),
            Some((0, None))
        );
    }

    #[test]
    fn a_rule_that_never_ran_holds_nothing() {
        let shown = GuardState::default()
            .snapshot()
            .rule("r", &Guards::default(), [], at(0));
        assert_eq!(shown, RuleGuards::default());
    }
}
