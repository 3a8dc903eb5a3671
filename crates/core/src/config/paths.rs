//! Relative paths in a config file are relative to the directory of the file that says them, as
//! Prometheus and Alertmanager read theirs: the store, secret files, SLO spec files, alert windows
//! and the kubeconfig. Absolute paths are kept as they are.
//!
//! Pure: the directory comes from the path the file was read from, so a config read as
//! `etc/homeostat.yaml` gives paths under `etc/`, relative to the same working directory; the
//! binary reads config from an absolute path, so what it opens and reports is absolute.

use std::path::{Path, PathBuf};

use super::{Config, MaybeSecret, Notifier, SecretRef, Source, Step};

/// Makes every relative path of `config` relative to its file's directory.
pub(super) fn resolve(config: &mut Config) {
    let directories: Vec<PathBuf> = config
        .origins
        .files
        .iter()
        .map(|file| {
            file.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .collect();
    let of_singleton = |name: &str| {
        // A section no file sets (the default store) is the first file's, whose folder holds
        // every file of a folder config.
        let index = config.origins.singletons.get(name).copied().unwrap_or(0);
        directories.get(index).cloned().unwrap_or_default()
    };
    let of_item = |section: &str, index: usize| {
        config
            .origins
            .items
            .get(section)
            .and_then(|items| items.get(index))
            .and_then(|(file, _)| directories.get(*file))
            .cloned()
            .unwrap_or_default()
    };
    let store_dir = of_singleton("store");
    let kubernetes_dir = of_singleton("kubernetes");
    let token_dirs: Vec<PathBuf> = (0..config.api_tokens.len())
        .map(|index| of_item("api_tokens", index))
        .collect();
    let source_dirs: Vec<PathBuf> = (0..config.sources.len())
        .map(|index| of_item("sources", index))
        .collect();
    let notifier_dirs: Vec<PathBuf> = (0..config.notifiers.len())
        .map(|index| of_item("notifiers", index))
        .collect();
    let rule_dirs: Vec<PathBuf> = (0..config.rules.len())
        .map(|index| of_item("rules", index))
        .collect();
    let runbook_dirs: Vec<PathBuf> = (0..config.runbooks.len())
        .map(|index| of_item("runbooks", index))
        .collect();
    let slo_dirs: Vec<PathBuf> = (0..config.slos.len())
        .map(|index| of_item("slos", index))
        .collect();

    // With `store.url` (PostgreSQL) the path is unused, and left as written so that `check` can
    // tell one given beside the url from the default.
    if config.store.url.is_none() {
        join(&store_dir, &mut config.store.path);
    }
    if let Some(kubeconfig) = config
        .kubernetes
        .as_mut()
        .and_then(|kubernetes| kubernetes.kubeconfig.as_mut())
    {
        let mut path = PathBuf::from(&*kubeconfig);
        join(&kubernetes_dir, &mut path);
        *kubeconfig = path.to_string_lossy().into_owned();
    }
    for (token, dir) in config.api_tokens.iter_mut().zip(&token_dirs) {
        secret(dir, &mut token.token);
    }
    for (source, dir) in config.sources.iter_mut().zip(&source_dirs) {
        if let Source::Webhook(webhook) = source {
            secret(dir, &mut webhook.secret);
        }
    }
    for (notifier, dir) in config.notifiers.iter_mut().zip(&notifier_dirs) {
        match notifier {
            Notifier::Slack(slack) => secret(dir, &mut slack.webhook_url),
            Notifier::Pagerduty(pagerduty) => secret(dir, &mut pagerduty.routing_key),
            Notifier::Webhook(webhook) => {
                if let Some(reference) = webhook.secret.as_mut() {
                    secret(dir, reference);
                }
                for value in webhook.headers.values_mut() {
                    if let MaybeSecret::Secret(reference) = value {
                        secret(dir, reference);
                    }
                }
            }
        }
    }
    for (rule, dir) in config.rules.iter_mut().zip(&rule_dirs) {
        steps(dir, &mut rule.steps);
    }
    for (runbook, dir) in config.runbooks.iter_mut().zip(&runbook_dirs) {
        steps(dir, &mut runbook.steps);
    }
    for (slo, dir) in config.slos.iter_mut().zip(&slo_dirs) {
        if let Some(file) = slo.file.as_mut() {
            join(dir, file);
        }
        if let Some(windows) = slo.alert_windows.as_mut() {
            join(dir, windows);
        }
    }
}

fn join(dir: &Path, path: &mut PathBuf) {
    if path.is_relative() && !dir.as_os_str().is_empty() {
        *path = dir.join(&*path);
    }
}

fn secret(dir: &Path, reference: &mut SecretRef) {
    if let SecretRef::File(path) = reference {
        join(dir, path);
    }
}

/// Secret files in actions' inputs: `{file: ...}` as a value of an `exec` step's `env` or an
/// `http_request`'s `headers`, the inputs that take secrets. A templated path is left as written.
fn steps(dir: &Path, list: &mut [Step]) {
    for step in list {
        for field in ["env", "headers"] {
            if let Some(serde_json::Value::Object(values)) = step.with.get_mut(field) {
                for value in values.values_mut() {
                    let serde_json::Value::Object(reference) = value else {
                        continue;
                    };
                    if reference.len() != 1 {
                        continue;
                    }
                    if let Some(serde_json::Value::String(file)) = reference.get_mut("file") {
                        if !file.contains("{{") {
                            let mut path = PathBuf::from(&*file);
                            join(dir, &mut path);
                            *file = path.to_string_lossy().into_owned();
                        }
                    }
                }
            }
        }
        if let Some(nested) = step.steps.as_mut() {
            steps(dir, nested);
        }
        for branch in step.parallel.iter_mut().flatten() {
            steps(dir, &mut branch.steps);
        }
        if let Some(rollback) = step.rollback.as_mut() {
            steps(dir, std::slice::from_mut(rollback.as_mut()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{parse, MaybeSecret, Notifier, SecretRef};

    #[test]
    fn relative_paths_follow_the_file_that_says_them_and_absolute_ones_stay() {
        let files = vec![
            (
                PathBuf::from("/etc/homeostat/a.yaml"),
                "store: {path: data/homeostat.db}\n\
                 api_tokens:\n  - {name: a, scopes: [read], token: {file: secrets/a}}\n  - {name: b, scopes: [read], token: {file: /run/b}}\n  - {name: c, scopes: [read], token: {env: C}}\n\
                 rules:\n  - name: r\n    steps:\n      - name: s\n        action: exec\n        with: {command: [x], env: {K: {file: k}, T: {file: '{{ labels.f }}'}, P: plain}}\n"
                    .to_string(),
            ),
            (
                PathBuf::from("/srv/more/b.yaml"),
                "kubernetes: {kubeconfig: kube/config}\n\
                 notifiers:\n  - {type: webhook, name: w, url: 'http://x', secret: {file: w}, headers: {X: {file: h}}}\n\
                 slos:\n  - {file: slo/checkout.yaml, alert_windows: windows.yaml}\n"
                    .to_string(),
            ),
        ];
        let config = parse(&files).unwrap();
        assert_eq!(
            config.store.path,
            Path::new("/etc/homeostat/data/homeostat.db")
        );
        let tokens: Vec<&SecretRef> = config.api_tokens.iter().map(|t| &t.token).collect();
        assert_eq!(
            tokens,
            [
                &SecretRef::File("/etc/homeostat/secrets/a".into()),
                &SecretRef::File("/run/b".into()),
                &SecretRef::Env("C".into()),
            ]
        );
        let env = &config.rules[0].steps[0].with["env"];
        assert_eq!(env["K"]["file"], "/etc/homeostat/k");
        assert_eq!(env["T"]["file"], "{{ labels.f }}");
        assert_eq!(env["P"], "plain");
        assert_eq!(
            config.kubernetes.unwrap().kubeconfig.as_deref(),
            Some("/srv/more/kube/config")
        );
        let Notifier::Webhook(webhook) = &config.notifiers[0] else {
            panic!("a webhook notifier")
        };
        assert_eq!(webhook.secret, Some(SecretRef::File("/srv/more/w".into())));
        assert_eq!(
            webhook.headers["X"],
            MaybeSecret::Secret(SecretRef::File("/srv/more/h".into()))
        );
        assert_eq!(
            config.slos[0].file.as_deref(),
            Some(Path::new("/srv/more/slo/checkout.yaml"))
        );
        assert_eq!(
            config.slos[0].alert_windows.as_deref(),
            Some(Path::new("/srv/more/windows.yaml"))
        );
    }

    #[test]
    fn the_default_store_is_beside_the_first_file_and_a_bare_file_name_stays_relative() {
        let config =
            parse(&[(PathBuf::from("/etc/homeostat/h.yaml"), "rules: []\n".into())]).unwrap();
        assert_eq!(config.store.path, Path::new("/etc/homeostat/homeostat.db"));
        let config = parse(&[(PathBuf::from("h.yaml"), "rules: []\n".into())]).unwrap();
        assert_eq!(config.store.path, Path::new("homeostat.db"));
    }
}
