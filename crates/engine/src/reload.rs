//! Reloading the config while the daemon runs (SIGHUP, `POST /-/reload`): load and check it as
//! `homeostat check` does, then swap it in at one point of the event stream, keeping what the
//! engine has learned.
//!
//! What is kept: guard state (cooldowns, rate windows, locks, loop counts, rules disabled), the
//! incidents and silences, runs in progress on the definitions they journaled, and every source
//! task whose config did not change. What changes: rules, runbooks, notifiers, tokens, webhook
//! secrets, `incidents:`, `runs:`, `dry_run` and the sources that changed, restarted. `server:`,
//! `store:` and `kubernetes:` are read once at start; a reload that changes them applies the rest
//! and says which of them wait for a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use homeostat_core::config::Source;
use homeostat_core::rule::Compiled;
use serde::Serialize;

use crate::handle::Token;
use crate::secrets::{self, Secret};
use crate::source;

/// Loads and checks the config from where the daemon was started from, as `homeostat check`
/// does; on failure, the text `check` prints (every diagnostic, then the count).
pub type Loader = Arc<dyn Fn() -> Result<Compiled, String> + Send + Sync>;

/// Why a reload was refused; the config in use stays.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What `homeostat check` prints of the config: every diagnostic, then the count.
    #[error("{0}")]
    Invalid(String),
    #[error("this engine was started without a config file to reload from")]
    NoLoader,
    #[error("the config now needs a Kubernetes cluster ({why}) and none is connected; connecting one takes a restart")]
    NeedsCluster { why: String },
    #[error("the journal writer has stopped")]
    WriterStopped,
}

/// What a reload changed, for the answer of `POST /-/reload` and the log.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub sources: source::Changes,
    pub rules_added: Vec<String>,
    pub rules_removed: Vec<String>,
    pub rules_changed: Vec<String>,
    pub runbooks_added: Vec<String>,
    pub runbooks_removed: Vec<String>,
    pub runbooks_changed: Vec<String>,
    /// Settings that changed in the file and take effect only on a restart (`server.listen`,
    /// `store.path`, ...); the running values stay.
    pub needs_restart: Vec<String>,
    /// The config's warnings, as `check` prints them.
    pub warnings: Vec<String>,
}

/// A config's API tokens and webhook secrets by source name.
pub(crate) type Resolved = (Vec<Token>, HashMap<String, Secret>);

/// The tokens and webhook secrets of a config, resolved; only their digests and values are kept.
pub(crate) fn resolve(compiled: &Compiled) -> Result<Resolved, (String, secrets::Error)> {
    let config = &compiled.config;
    let tokens = config
        .api_tokens
        .iter()
        .map(|token| {
            let secret = secrets::resolve(&token.token)
                .map_err(|error| (format!("api token `{}`", token.name), error))?;
            Ok(Token::new(
                token.name.clone(),
                token.scopes.clone(),
                secret.expose(),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut webhook_secrets = HashMap::new();
    for source in &config.sources {
        if let Source::Webhook(webhook) = source {
            let secret = secrets::resolve(&webhook.secret)
                .map_err(|error| (format!("source `{}`", webhook.name), error))?;
            webhook_secrets.insert(webhook.name.clone(), secret);
        }
    }
    Ok((tokens, webhook_secrets))
}

/// Keeps the running values of what only a restart can change, and names the fields of them that
/// `new` changes (`server.listen`).
pub(crate) fn keep_restart_only(running: &Compiled, new: &mut Compiled) -> Vec<String> {
    let mut changed = Vec::new();
    diff_fields(
        "server",
        &serde_json::to_value(&running.config.server).unwrap_or_default(),
        &serde_json::to_value(&new.config.server).unwrap_or_default(),
        &mut changed,
    );
    diff_fields(
        "store",
        &serde_json::to_value(&running.config.store).unwrap_or_default(),
        &serde_json::to_value(&new.config.store).unwrap_or_default(),
        &mut changed,
    );
    diff_fields(
        "kubernetes",
        &serde_json::to_value(&running.config.kubernetes).unwrap_or_default(),
        &serde_json::to_value(&new.config.kubernetes).unwrap_or_default(),
        &mut changed,
    );
    new.config.server = running.config.server.clone();
    new.config.store = running.config.store.clone();
    new.config.kubernetes = running.config.kubernetes.clone();
    changed
}

/// The dotted paths under `prefix` whose values differ between `old` and `new`.
fn diff_fields(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    match (old, new) {
        (serde_json::Value::Object(old), serde_json::Value::Object(new)) => {
            let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            let null = serde_json::Value::Null;
            for key in keys {
                diff_fields(
                    &format!("{prefix}.{key}"),
                    old.get(key).unwrap_or(&null),
                    new.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (old, new) if old != new => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Rules and runbooks added, removed and changed (their definition as compiled).
pub(crate) fn compare(running: &Compiled, new: &Compiled, summary: &mut Summary) {
    let rules = |compiled: &Compiled| -> BTreeMap<String, String> {
        compiled
            .config
            .rules
            .iter()
            .map(|rule| (rule.name.clone(), format!("{rule:?}")))
            .collect()
    };
    let runbooks = |compiled: &Compiled| -> BTreeMap<String, String> {
        compiled
            .config
            .runbooks
            .iter()
            .map(|runbook| (runbook.name.clone(), format!("{runbook:?}")))
            .collect()
    };
    let (added, removed, changed) = differences(&rules(running), &rules(new));
    summary.rules_added = added;
    summary.rules_removed = removed;
    summary.rules_changed = changed;
    let (added, removed, changed) = differences(&runbooks(running), &runbooks(new));
    summary.runbooks_added = added;
    summary.runbooks_removed = removed;
    summary.runbooks_changed = changed;
}

type Names = Vec<String>;

fn differences(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> (Names, Names, Names) {
    let added = new
        .keys()
        .filter(|name| !old.contains_key(*name))
        .cloned()
        .collect();
    let removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
    let changed = new
        .iter()
        .filter(|(name, spec)| old.get(*name).is_some_and(|old| old != *spec))
        .map(|(name, _)| name.clone())
        .collect();
    (added, removed, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_fields_names_each_changed_leaf() {
        let old = serde_json::json!({"listen": "127.0.0.1:1", "max_body_bytes": 10, "x": {"a": 1}});
        let new = serde_json::json!({"listen": "127.0.0.1:2", "max_body_bytes": 10, "x": {"a": 2, "b": 3}});
        let mut changed = Vec::new();
        diff_fields("server", &old, &new, &mut changed);
        assert_eq!(changed, ["server.listen", "server.x.a", "server.x.b"]);
    }

    #[test]
    fn differences_sorts_names_into_added_removed_and_changed() {
        let old: BTreeMap<String, String> = [("a", "1"), ("b", "1"), ("c", "1")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let new: BTreeMap<String, String> = [("b", "1"), ("c", "2"), ("d", "1")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let (added, removed, changed) = differences(&old, &new);
        assert_eq!(
            (added, removed, changed),
            (
                vec!["d".to_string()],
                vec!["a".to_string()],
                vec!["c".to_string()]
            )
        );
    }
}
