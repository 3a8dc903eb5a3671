//! Loading config from a file or a folder, and the checks that need IO (secrets, addresses).

use std::path::{Path, PathBuf};

use homeostat_core::config::{
    self, Config, Diagnostic, Diagnostics, MaybeSecret, Notifier, SecretRef, Severity, Source,
};
use homeostat_core::rule::{self, Compiled};
use homeostat_engine::secrets;

use super::{EXIT_ERROR, EXIT_USAGE};

/// Why config could not be loaded.
pub enum LoadError {
    /// The files could not be read.
    Io(String),
    /// The config is invalid.
    Invalid(Diagnostics),
}

impl LoadError {
    /// Prints the problem and gives the exit code.
    pub fn report(&self) -> u8 {
        eprintln!("{}", self.text());
        match self {
            LoadError::Io(_) => EXIT_ERROR,
            LoadError::Invalid(_) => EXIT_USAGE,
        }
    }

    /// The problem as `check` prints it; a refused reload answers the same.
    pub fn text(&self) -> String {
        match self {
            LoadError::Io(message) => format!("error: {message}"),
            LoadError::Invalid(diagnostics) => {
                let errors = diagnostics
                    .0
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .count();
                format!(
                    "{diagnostics}\nerror: the config is invalid ({errors} error{})",
                    if errors == 1 { "" } else { "s" }
                )
            }
        }
    }
}

/// Reads `path` (a file, or every `.yaml`/`.yml` file in a folder, sorted by name).
pub fn read(path: &Path) -> Result<Vec<(PathBuf, String)>, LoadError> {
    let metadata = std::fs::metadata(path).map_err(|error| {
        LoadError::Io(format!(
            "cannot read config `{}`: {error}; pass a file or folder with --config",
            path.display()
        ))
    })?;
    let mut paths = Vec::new();
    if metadata.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|error| {
            LoadError::Io(format!(
                "cannot list config folder `{}`: {error}",
                path.display()
            ))
        })?;
        for entry in entries.flatten() {
            let file = entry.path();
            if file
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                paths.push(file);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(LoadError::Io(format!(
                "config folder `{}` has no .yaml files",
                path.display()
            )));
        }
    } else {
        paths.push(path.to_path_buf());
    }
    paths
        .into_iter()
        .map(|file| {
            std::fs::read_to_string(&file)
                .map(|text| (file.clone(), text))
                .map_err(|error| {
                    LoadError::Io(format!("cannot read config `{}`: {error}", file.display()))
                })
        })
        .collect()
}

/// Reads, parses, compiles and checks config; warnings are printed to stderr.
pub fn load(path: &Path) -> Result<Compiled, LoadError> {
    load_with(path, true)
}

/// [`load`], choosing whether warnings are printed (the demo's own config has expected ones).
pub fn load_with(path: &Path, print_warnings: bool) -> Result<Compiled, LoadError> {
    let files = read(path)?;
    let mut parsed = config::parse(&files).map_err(LoadError::Invalid)?;
    let unread = read_slo_specs(&mut parsed);
    if !unread.is_empty() {
        return Err(LoadError::Invalid(Diagnostics(unread)));
    }
    let mut compiled = rule::compile(&parsed).map_err(LoadError::Invalid)?;
    let io_problems = check_io(&parsed);
    if io_problems.iter().any(|d| d.severity == Severity::Error) {
        let mut all = compiled.warnings.clone();
        all.extend(io_problems);
        return Err(LoadError::Invalid(Diagnostics(all)));
    }
    compiled.warnings.extend(io_problems);
    if print_warnings {
        for warning in &compiled.warnings {
            eprintln!("{warning}");
        }
    }
    Ok(compiled)
}

/// Reads the spec files `slos:` names (`config::parse` made them relative to the config file
/// naming each); errors name the path tried, absolute.
fn read_slo_specs(config: &mut Config) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for index in 0..config.slos.len() {
        if let Some(windows) = config.slos[index].alert_windows.clone() {
            let path = absolute(&windows);
            let read = std::fs::read_to_string(&path)
                .map_err(|error| format!("cannot read `{}`: {error}", path.display()))
                .and_then(|text| {
                    homeostat_core::slo::AlertWindows::parse(&text)
                        .map_err(|error| format!("`{}`: {error}", path.display()))
                });
            match read {
                Ok(_) if config.slos[index].period.is_some() => problems.push(config.diagnostic(
                    Severity::Error,
                    "slos",
                    Some(index),
                    "period",
                    "is given with `alert_windows`, which sets the period".to_string(),
                    Some("drop `period`".into()),
                )),
                Ok(windows) => {
                    config.slos[index].loaded_period =
                        Some(homeostat_core::slo::Period::Custom(windows));
                }
                Err(problem) => problems.push(config.diagnostic(
                    Severity::Error,
                    "slos",
                    Some(index),
                    "alert_windows",
                    problem,
                    None,
                )),
            }
        }
        let Some(file) = config.slos[index].file.clone() else {
            continue;
        };
        let path = absolute(&file);
        let problem = match std::fs::read_to_string(&path) {
            Err(error) => format!("cannot read `{}`: {error}", path.display()),
            Ok(text) => match homeostat_core::slo::load_one(&text) {
                Ok((spec, own)) => {
                    config.slos[index].loaded = Some(spec);
                    match (config.slos[index].loaded_period, own) {
                        (Some(windows), Some(own)) if windows.window() != own => {
                            format!(
                                "`{}` has a {own} time window, `alert_windows` a {} period",
                                path.display(),
                                windows.window()
                            )
                        }
                        (None, Some(own)) => match own.to_string().parse() {
                            Ok(period) => {
                                config.slos[index].loaded_period = Some(period);
                                continue;
                            }
                            Err(_) => format!(
                                "`{}` has a {own} time window, which has no built-in alert windows; give `alert_windows` with a {own} period",
                                path.display()
                            ),
                        },
                        _ => continue,
                    }
                }
                Err(error) => format!("`{}`: {error}", path.display()),
            },
        };
        problems.push(config.diagnostic(
            Severity::Error,
            "slos",
            Some(index),
            "file",
            problem,
            None,
        ));
    }
    problems
}

/// `path` made absolute against the working directory, for what is opened and reported.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `homeostat check`.
pub fn check(path: &Path) -> u8 {
    match load(path) {
        Ok(compiled) => {
            let config = &compiled.config;
            eprintln!(
                "ok: {} rule{}, {} runbook{}, {} source{}, {} notifier{}, {} api token{}",
                config.rules.len(),
                plural(config.rules.len()),
                config.runbooks.len(),
                plural(config.runbooks.len()),
                config.sources.len(),
                plural(config.sources.len()),
                config.notifiers.len(),
                plural(config.notifiers.len()),
                config.api_tokens.len(),
                plural(config.api_tokens.len()),
            );
            if !compiled.slos.is_empty() {
                eprintln!(
                    "    {} SLO{} evaluated: {}",
                    compiled.slos.len(),
                    plural(compiled.slos.len()),
                    compiled
                        .slos
                        .iter()
                        .map(|target| target.objective.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            0
        }
        Err(error) => error.report(),
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// Checks what needs the environment: that every referenced secret resolves and the address parses.
fn check_io(config: &Config) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut secret =
        |section: &'static str, index: Option<usize>, field: String, reference: &SecretRef| {
            if let Err(error) = secrets::resolve(reference) {
                problems.push(config.diagnostic(
                    Severity::Error,
                    section,
                    index,
                    &field,
                    error.to_string(),
                    None,
                ));
            }
        };
    if let Some(MaybeSecret::Secret(reference)) = &config.store.url {
        secret("store", None, "url".into(), reference);
    }
    for (index, token) in config.api_tokens.iter().enumerate() {
        secret("api_tokens", Some(index), "token".into(), &token.token);
    }
    for (index, source) in config.sources.iter().enumerate() {
        if let Source::Webhook(webhook) = source {
            secret("sources", Some(index), "secret".into(), &webhook.secret);
        }
    }
    for (index, notifier) in config.notifiers.iter().enumerate() {
        match notifier {
            Notifier::Slack(slack) => secret(
                "notifiers",
                Some(index),
                "webhook_url".into(),
                &slack.webhook_url,
            ),
            Notifier::Pagerduty(pagerduty) => secret(
                "notifiers",
                Some(index),
                "routing_key".into(),
                &pagerduty.routing_key,
            ),
            Notifier::Webhook(webhook) => {
                if let Some(reference) = &webhook.secret {
                    secret("notifiers", Some(index), "secret".into(), reference);
                }
                for (name, value) in &webhook.headers {
                    if let MaybeSecret::Secret(reference) = value {
                        secret(
                            "notifiers",
                            Some(index),
                            format!("headers.{name}"),
                            reference,
                        );
                    }
                }
            }
        }
    }
    for (index, rule) in config.rules.iter().enumerate() {
        for (step_index, step) in rule.steps.iter().enumerate() {
            let mut found = Vec::new();
            secret_refs(&step.with, &format!("steps[{step_index}].with"), &mut found);
            for (field, reference) in found {
                secret("rules", Some(index), field, &reference);
            }
        }
    }
    if config
        .server
        .listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        problems.push(config.diagnostic(
            Severity::Error,
            "server",
            None,
            "listen",
            format!("`{}` is not an address", config.server.listen),
            Some("write it as `127.0.0.1:9393` or `0.0.0.0:9393`".into()),
        ));
    }
    if config.api_tokens.is_empty() {
        problems.push(config.diagnostic(
            Severity::Warning,
            "api_tokens",
            None,
            "",
            "no api tokens: the API will refuse ingest and reads",
            Some("add `api_tokens: [{name: alertmanager, scopes: [ingest], token: {env: HOMEOSTAT_TOKEN}}]`".into()),
        ));
    }
    problems
}

/// Secret references inside a step's `with` (`env` values and headers given as `{env: ...}`).
fn secret_refs(value: &serde_json::Value, path: &str, out: &mut Vec<(String, SecretRef)>) {
    match value {
        serde_json::Value::Object(map) => {
            if map.len() == 1 && !path.ends_with(".json") {
                if let Ok(reference) = serde_json::from_value::<SecretRef>(value.clone()) {
                    if !reference_is_template(&reference) {
                        out.push((path.to_string(), reference));
                    }
                    return;
                }
            }
            for (key, inner) in map {
                secret_refs(inner, &format!("{path}.{key}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                secret_refs(item, &format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
}

fn reference_is_template(reference: &SecretRef) -> bool {
    match reference {
        SecretRef::Env(name) => name.contains("{{"),
        SecretRef::File(path) => path.to_string_lossy().contains("{{"),
    }
}
