//! `homeostat check` from fixtures: each `tests/data/check/NAME.yaml` is a config file, and
//! `NAME.snap` beside it is everything checking it reports, as people read it (file, line, field,
//! message and hint). A new case is a new YAML file and its name in [`fixtures!`]; review its
//! snapshot with `cargo insta review`, or write it with `INSTA_UPDATE=always`.

use std::path::{Path, PathBuf};

use homeostat_core::config::{self, Diagnostics};
use homeostat_core::rule;

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/check")
}

/// What checking the fixture reports: whether the config is valid, then every diagnostic.
fn report(name: &str) -> String {
    let file = format!("{name}.yaml");
    let text = std::fs::read_to_string(folder().join(&file))
        .unwrap_or_else(|error| panic!("cannot read fixture `{file}`: {error}"));
    let parsed = match config::parse(&[(PathBuf::from(&file), text)]) {
        Ok(parsed) => parsed,
        Err(diagnostics) => return format!("does not parse:\n{diagnostics}"),
    };
    match rule::compile(&parsed) {
        Ok(compiled) if compiled.warnings.is_empty() => "valid".to_string(),
        Ok(compiled) => format!("valid, with warnings:\n{}", Diagnostics(compiled.warnings)),
        Err(diagnostics) => format!("invalid:\n{diagnostics}"),
    }
}

fn check(name: &str) {
    insta::with_settings!({
        snapshot_path => folder(),
        prepend_module_to_snapshot => false,
        input_file => folder().join(format!("{name}.yaml")),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, report(name));
    });
}

/// One test per fixture, named after its file.
macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        const FIXTURES: &[&str] = &[$(stringify!($name)),*];
    };
}

fixtures! {
    actions,
    actions_kubernetes_valid,
    detectors,
    forecasts,
    incidents,
    incidents_escalation_notifier,
    kubernetes,
    names_unique,
    rules_fields,
    rules_matchers,
    rules_semantic_errors,
    rules_verify,
    runbooks_actions,
    runbooks_approvals,
    runbooks_blocks_need_steps,
    runbooks_calls,
    runbooks_cel_references,
    runbooks_checks,
    runbooks_cycles,
    runbooks_dashed_step_names,
    runbooks_file_and_line,
    runbooks_misplaced_fields,
    runbooks_names,
    runbooks_outputs,
    runbooks_param_specs,
    runbooks_params_read,
    runbooks_rollback_warnings,
    runbooks_rollbacks,
    runbooks_rules,
    runbooks_shell_templates,
    runbooks_step_kinds,
    runbooks_step_names,
    runbooks_steps_out_of_sight,
    runbooks_steps_run_before,
    runbooks_templates,
    runbooks_timeouts_and_retries,
    runbooks_valid,
    runbooks_variables,
    runbooks_wait,
    runbooks_when_and_for_each,
    runs_attention_notifier,
    slos,
    slos_period,
    slos_prometheus,
    sources_http_probe,
    sources_kubernetes_events,
    sources_webhook,
    sources_webhook_replay,
    store_postgres_not_a_url,
    store_postgres_password_inline,
    store_postgres_secret_url,
    store_postgres_valid,
    structure_every_error,
    suggestions,
    tokens,
}

/// A fixture without a test, or a test without its fixture, fails here rather than going unseen.
#[test]
fn every_fixture_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(folder())
        .expect("the fixture folder")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "yaml").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    found.sort();
    let mut listed: Vec<&str> = FIXTURES.to_vec();
    listed.sort();
    assert_eq!(found, listed);
}
