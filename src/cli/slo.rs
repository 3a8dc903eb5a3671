//! `homeostat slo rules`: Prometheus recording and alerting rules from Sloth and OpenSLO specs,
//! equal to Sloth's;
//! `homeostat slo status`: the daemon's evaluation of its SLOs.

use std::path::Path;

use homeostat_core::slo::{self, Period};
use serde_json::Value;

use super::output::Format;
use super::remote::Remote;
use super::{Global, EXIT_ERROR, EXIT_USAGE};

/// `--extra-labels KEY=VALUE`: a Prometheus label name and a value that is not empty.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not `KEY=VALUE`"));
    };
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || name == "__name__" {
        return Err(format!(
            "`{name}` is not a label name; use letters, digits and `_`, not starting with a digit"
        ));
    }
    if value.is_empty() {
        return Err(format!("`{name}` has no value; write `{name}=VALUE`"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `homeostat slo rules`: what to read and how to generate, as Sloth's `generate` flags.
pub struct RulesArgs<'a> {
    pub spec: &'a Path,
    pub out: Option<&'a Path>,
    /// `--period`; an OpenSLO file's own time window must agree.
    pub period: Option<Period>,
    /// `--windows`: custom alert windows, whose period is the period.
    pub windows: Option<&'a Path>,
    pub disable_alerts: bool,
    pub disable_recordings: bool,
    pub extra_labels: Vec<(String, String)>,
}

/// Writes the rules of every spec of a file to `out`, or to stdout: one YAML document per spec
/// document, as Sloth writes them.
pub fn rules(args: RulesArgs<'_>) -> u8 {
    let spec_path = args.spec;
    let asked = match args.windows {
        None => args.period,
        Some(path) => match std::fs::read_to_string(path) {
            Err(error) => {
                eprintln!(
                    "error: cannot read alert windows `{}`: {error}",
                    path.display()
                );
                return EXIT_ERROR;
            }
            Ok(text) => match slo::AlertWindows::parse(&text) {
                Ok(windows) => Some(Period::Custom(windows)),
                Err(error) => {
                    eprintln!("error: {}: {error}", path.display());
                    return EXIT_USAGE;
                }
            },
        },
    };
    let text = match std::fs::read_to_string(spec_path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "error: cannot read SLO spec `{}`: {error}",
                spec_path.display()
            );
            return EXIT_ERROR;
        }
    };
    let loaded = match slo::load(&text) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {}: {error}", spec_path.display());
            eprintln!("error: the SLO spec is invalid");
            return EXIT_USAGE;
        }
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {}: {warning}", spec_path.display());
    }
    let mut extra_labels = slo::Labels::new();
    for (name, value) in args.extra_labels {
        extra_labels.insert(name, value);
    }
    let many = loaded.documents.len() > 1;
    let mut output = String::new();
    let mut slos = 0;
    let mut plain_documents = 0;
    for (index, document) in loaded.documents.iter().enumerate() {
        let which = if many {
            format!("document {} of `{}`", index + 1, spec_path.display())
        } else {
            format!("`{}`", spec_path.display())
        };
        let period = match (asked, document.period) {
            (Some(asked), Some(own)) if asked.window() != own => {
                eprintln!(
                    "error: the {} period asked differs from the {own} time window of {which}; drop --period or --windows",
                    asked.window()
                );
                return EXIT_USAGE;
            }
            (Some(asked), _) => asked,
            (None, Some(own)) => match own.to_string().parse::<Period>() {
                Ok(period) => period,
                Err(_) => {
                    eprintln!(
                        "error: {which} has a {own} time window, which has no built-in alert windows; give --windows with a {own} period"
                    );
                    return EXIT_USAGE;
                }
            },
            (None, None) => Period::default(),
        };
        let options = slo::Options {
            disable_alerts: args.disable_alerts,
            disable_recordings: args.disable_recordings,
            extra_labels: extra_labels.clone(),
            version: slo::rules::VERSION.to_string(),
            format: document.format,
        };
        let rules = slo::generate_with(&document.spec, period, &options);
        if rules.groups.is_empty() {
            eprintln!(
                "error: {which} gives no rules: its alerts are disabled and --disable-recordings drops the recordings"
            );
            return EXIT_USAGE;
        }
        slos += document.spec.slos.len();
        if many {
            output.push_str("---\n");
        }
        output.push_str(&format!(
            "# Generated by `homeostat slo rules` from `{}` for a {} period; do not edit.\n",
            spec_path.display(),
            period.window()
        ));
        match &document.kubernetes {
            Some(meta) => output.push_str(&rules.to_prometheus_rule(meta)),
            None => {
                plain_documents += 1;
                output.push_str(&rules.to_yaml());
            }
        }
    }
    if plain_documents > 1 {
        eprintln!(
            "warning: the rules are {plain_documents} YAML documents, one per spec document, as Sloth writes them; Prometheus reads only the first document of a rule file, so give each spec its own file"
        );
    }
    match args.out {
        None => {
            print!("{output}");
            0
        }
        Some(out) => match std::fs::write(out, output) {
            Ok(()) => {
                eprintln!(
                    "ok: wrote the rules of {slos} SLO{} to `{}`",
                    if slos == 1 { "" } else { "s" },
                    out.display()
                );
                0
            }
            Err(error) => {
                eprintln!("error: cannot write `{}`: {error}", out.display());
                EXIT_ERROR
            }
        },
    }
}

/// `homeostat slo status`: every SLO the daemon evaluates, with its error budget and burn rates.
pub async fn status(global: &Global, format: Format) -> u8 {
    let slos = match Remote::list(global, "/api/v1/slos", "slos").await {
        Ok(list) => list,
        Err(code) => return code,
    };
    if format.print_data(&slos) {
        return 0;
    }
    if slos.is_empty() {
        eprintln!("the daemon evaluates no SLO; add a spec under `slos:` in the config");
        return 0;
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for slo in &slos {
        let id = slo["id"].as_str().unwrap_or_default();
        if let Some(error) = slo["error"].as_str() {
            errors.push(format!("{id}: {error}"));
        }
        let series = slo["series"].as_array().cloned().unwrap_or_default();
        if series.is_empty() {
            rows.push(vec![
                id.to_string(),
                format!("{}%", slo["objective"]),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                if slo["evaluated_at"].is_null() {
                    "not evaluated yet".into()
                } else {
                    "no data".into()
                },
            ]);
            continue;
        }
        for one in series {
            let labels = one["labels"]
                .as_object()
                .filter(|labels| !labels.is_empty())
                .map(|labels| {
                    let pairs: Vec<String> = labels
                        .iter()
                        .map(|(name, value)| format!("{name}={}", value.as_str().unwrap_or("")))
                        .collect();
                    format!("{{{}}}", pairs.join(","))
                })
                .unwrap_or_default();
            let burn = |window: &str| match one["burn_rate"][window].as_f64() {
                Some(rate) => format!("{rate:.2}x"),
                None => "-".into(),
            };
            let firing: Vec<&str> = one["firing"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            rows.push(vec![
                format!("{id}{labels}"),
                format!("{}%", slo["objective"]),
                one["budget_remaining_percent"]
                    .as_f64()
                    .map_or("-".into(), |left| format!("{left:.1}%")),
                burn("5m"),
                burn("1h"),
                burn("6h"),
                one["exhausted_in_secs"]
                    .as_f64()
                    .map_or("-".into(), human_duration),
                if firing.is_empty() {
                    "ok".into()
                } else {
                    firing.join(",")
                },
            ]);
        }
    }
    format.print_table(
        &[
            "SLO",
            "OBJECTIVE",
            "BUDGET LEFT",
            "BURN 5M",
            "BURN 1H",
            "BURN 6H",
            "EXHAUSTED IN",
            "ALERTS",
        ],
        rows,
    );
    for error in &errors {
        eprintln!("warning: the latest evaluation failed: {error}");
    }
    0
}

/// `90061` seconds as `1d 1h`: the two largest units are enough to act on.
fn human_duration(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, unit) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}
