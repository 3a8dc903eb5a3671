//! Silences, with Alertmanager's semantics: matchers in its syntax, a start and an end, who made it
//! and why. A silenced event is journaled but opens nothing and starts nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::Labels;
use crate::matcher::{self, Matcher};

/// A silence as stored and shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// Alertmanager matchers, each as written: `service="checkout"`, `severity=~"warn|info"`.
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// Who expired it early, if anyone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

/// Where a silence is in time, as Alertmanager names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// Why a silence cannot be created, naming the field and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("matchers: a silence needs at least one matcher, such as `service=\"checkout\"`")]
    NoMatchers,
    #[error("matchers[{index}]: {error}")]
    Matcher { index: usize, error: matcher::Error },
    #[error("matchers: every matcher matches the empty string, so this silence would mute every alert; add one that needs a value, such as `service=\"checkout\"`")]
    MatchesEverything,
    #[error("ends_at: `{ends_at}` is not after starts_at `{starts_at}`; give a later end or a positive duration")]
    EndsBeforeStart {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    #[error("comment: say why the alerts are silenced")]
    NoComment,
    #[error("created_by: say who silences them")]
    NoAuthor,
}

impl Silence {
    /// Checks a silence before it is stored; the compiled form is what matches.
    pub fn compile(&self) -> Result<CompiledSilence, Error> {
        if self.matchers.is_empty() {
            return Err(Error::NoMatchers);
        }
        let mut matchers = Vec::with_capacity(self.matchers.len());
        for (index, text) in self.matchers.iter().enumerate() {
            // One entry may hold several, `{a="b", c="d"}` as amtool takes them.
            let parsed =
                matcher::parse_list(text).map_err(|error| Error::Matcher { index, error })?;
            matchers.extend(parsed);
        }
        if matchers.is_empty() {
            return Err(Error::NoMatchers);
        }
        // As Alertmanager: a silence whose matchers all match an empty label set would mute all.
        if matchers
            .iter()
            .all(|matcher| matcher.matches(&Labels::new()))
        {
            return Err(Error::MatchesEverything);
        }
        // An expired silence may end where it started (expired before it began).
        let expired_early = self.expired_by.is_some() && self.ends_at == self.starts_at;
        if self.ends_at <= self.starts_at && !expired_early {
            return Err(Error::EndsBeforeStart {
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            });
        }
        if self.comment.trim().is_empty() {
            return Err(Error::NoComment);
        }
        if self.created_by.trim().is_empty() {
            return Err(Error::NoAuthor);
        }
        Ok(CompiledSilence {
            id: self.id.clone(),
            matchers,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        })
    }

    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        state(self.starts_at, self.ends_at, now)
    }
}

fn state(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, now: DateTime<Utc>) -> SilenceState {
    if now < starts_at {
        SilenceState::Pending
    } else if now < ends_at {
        SilenceState::Active
    } else {
        SilenceState::Expired
    }
}

/// A checked silence, ready to match.
#[derive(Clone, Debug)]
pub struct CompiledSilence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl CompiledSilence {
    /// Whether it mutes an alert with these labels at `at`: active then, and every matcher matches.
    pub fn mutes(&self, labels: &Labels, at: DateTime<Utc>) -> bool {
        state(self.starts_at, self.ends_at, at) == SilenceState::Active
            && matcher::all_match(&self.matchers, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(matchers: &[&str]) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: matchers.iter().map(|text| text.to_string()).collect(),
            starts_at: DateTime::from_timestamp(100, 0).unwrap_or_default(),
            ends_at: DateTime::from_timestamp(200, 0).unwrap_or_default(),
            created_by: "alice".into(),
            comment: "maintenance".into(),
            created_at: DateTime::from_timestamp(90, 0).unwrap_or_default(),
            expired_by: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap_or_default()
    }

    #[test]
    fn mutes_matching_alerts_only_while_active() {
        let compiled = silence(&[r#"service="checkout""#, r#"severity=~"warn|info""#])
            .compile()
            .expect("valid");
        let warn = labels(&[("service", "checkout"), ("severity", "warn")]);
        let page = labels(&[("service", "checkout"), ("severity", "page")]);
        assert!(!compiled.mutes(&warn, at(99)), "pending");
        assert!(compiled.mutes(&warn, at(100)));
        assert!(!compiled.mutes(&page, at(150)));
        assert!(!compiled.mutes(&warn, at(200)), "expired at its end");
    }

    #[test]
    fn a_braced_list_counts_as_its_matchers() {
        let compiled = silence(&[r#"{service="checkout", env!="dev"}"#])
            .compile()
            .expect("valid");
        assert_eq!(compiled.matchers.len(), 2);
        assert!(compiled.mutes(&labels(&[("service", "checkout")]), at(150)));
        assert!(!compiled.mutes(&labels(&[("service", "checkout"), ("env", "dev")]), at(150)));
    }

    #[test]
    fn bad_silences_name_the_field() {
        let cases: Vec<(Silence, &str)> = vec![
            (
                silence(&[]),
                "matchers: a silence needs at least one matcher",
            ),
            (
                silence(&["service"]),
                "matchers[0]: matcher `service` is invalid: end of input: expected an operator such as '=', '!=', '=~' or '!~'; consider `name=\"value\"`",
            ),
            (
                silence(&[r#"service=~".*""#]),
                "matchers: every matcher matches the empty string",
            ),
            (
                Silence {
                    ends_at: at(100),
                    ..silence(&["a=b"])
                },
                "ends_at: ",
            ),
            (
                Silence {
                    comment: " ".into(),
                    ..silence(&["a=b"])
                },
                "comment: say why",
            ),
        ];
        for (silence, expected) in cases {
            let error = silence.compile().expect_err("invalid").to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn state_follows_time() {
        let silence = silence(&["a=b"]);
        assert_eq!(silence.state(at(0)), SilenceState::Pending);
        assert_eq!(silence.state(at(150)), SilenceState::Active);
        assert_eq!(silence.state(at(250)), SilenceState::Expired);
    }
}
