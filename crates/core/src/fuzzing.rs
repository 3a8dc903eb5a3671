//! Fuzz harnesses: one function per parser that takes arbitrary bytes, for the coverage-guided
//! targets in `fuzz/` and for the corpus replay and property tests that `cargo test` runs.
//!
//! Every parser here reads text from the network or from a person; none may panic on any input.
//! A harness returns nothing: a panic (or an abort) is the only failure the fuzzer looks for, and
//! the few invariants worth checking on the way are asserted.

use std::sync::OnceLock;

use chrono::DateTime;

use crate::event::{EventKind, Labels};
use crate::ingest::{alertmanager, native, webhook};
use crate::template::{Templates, TemplatesBuilder};

/// A harness: arbitrary bytes in, a panic the only failure.
pub type Harness = fn(&[u8]);

/// The targets, by the names `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*` use.
pub const TARGETS: &[(&str, Harness)] = &[
    ("alertmanager", alertmanager),
    ("native", native),
    ("cloudevents", cloudevents),
    ("webhook", webhook),
    ("matchers", matchers),
    ("config", config),
    ("templates", templates),
    ("cel", cel),
];

/// The Alertmanager webhook (version 4).
pub fn alertmanager(data: &[u8]) {
    if let Ok(events) = alertmanager::parse(data, "am", DateTime::UNIX_EPOCH) {
        for event in events {
            assert!(
                !event.fingerprint.is_empty(),
                "an event without a fingerprint"
            );
        }
    }
}

/// Native events as `POST /api/v1/events` takes them.
pub fn native(data: &[u8]) {
    let _ = native::parse(data, "api", DateTime::UNIX_EPOCH);
}

/// CloudEvents in structured mode go through the same endpoint; the input is wrapped in an envelope
/// whose `data` it becomes when it is not JSON itself, so the fuzzer spends its time past the
/// required attributes.
pub fn cloudevents(data: &[u8]) {
    let _ = native::parse(data, "api", DateTime::UNIX_EPOCH);
    let data_value: serde_json::Value = serde_json::from_slice(data)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(data).into_owned()));
    let envelope = serde_json::json!({
        "specversion": "1.0", "id": "1", "source": "fuzz", "type": "fuzz", "data": data_value,
    });
    let body = serde_json::to_vec(&envelope).expect("a JSON value serializes");
    let _ = native::parse(&body, "api", DateTime::UNIX_EPOCH);
}

/// The generic webhook: the signature check over the first line as the header value, and a
/// mapping with items, a status, a fingerprint, labels and annotations over the rest.
pub fn webhook(data: &[u8]) {
    let (header, body) = match data.iter().position(|byte| *byte == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    assert!(!webhook::verify_signature(b"fuzz", body, &header) || header.len() >= 64);
    assert!(webhook::verify_signature(
        b"fuzz",
        body,
        &webhook::sign(b"fuzz", body)
    ));
    let (mapping, templates) = webhook_mapping();
    for mapping in mapping {
        let _ = webhook::map(mapping, templates, body, "hook", DateTime::UNIX_EPOCH);
    }
}

fn webhook_mapping() -> (&'static [webhook::Mapping; 2], &'static Templates) {
    static MAPPING: OnceLock<([webhook::Mapping; 2], Templates)> = OnceLock::new();
    let (mappings, templates) = MAPPING.get_or_init(|| {
        let mut builder = TemplatesBuilder::new();
        let mut add = |text: &str| builder.add(text).expect("the harness's templates compile");
        let items = webhook::Mapping {
            items: Some("/alerts".into()),
            kind: EventKind::Alert,
            status: add("{{ 'resolved' if item.ok else 'firing' }}"),
            fingerprint: Some(add("{{ body.host }}/{{ item.name }}")),
            labels: vec![
                ("check".into(), add("{{ item.name }}")),
                ("host".into(), add("{{ body.host | default('') }}")),
            ],
            annotations: vec![("summary".into(), add("{{ item.summary | default('') }}"))],
        };
        let whole = webhook::Mapping {
            items: None,
            kind: EventKind::Change,
            status: add("{{ item.status | default('firing') }}"),
            fingerprint: None,
            labels: vec![("name".into(), add("{{ item.name }}"))],
            annotations: vec![],
        };
        ([items, whole], builder.build())
    });
    (mappings, templates)
}

/// Alertmanager matchers, alone and as lists, then matched against labels.
pub fn matchers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let labels: Labels = [("alertname", "A"), ("service", "")]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    if let Ok(matcher) = crate::matcher::Matcher::parse(&text) {
        let _ = matcher.matches(&labels);
    }
    if let Ok(list) = crate::matcher::parse_list(&text) {
        let _ = crate::matcher::all_match(&list, &labels);
    }
}

/// A config file, parsed and, when it parses, compiled (matchers, CEL, templates, runbooks).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [(std::path::PathBuf::from("fuzz.yaml"), text.to_string())];
    if let Ok(config) = crate::config::parse(&files) {
        let _ = crate::rule::compile(&config);
    }
}

/// A template, compiled as text and as a URL, and rendered over an event's context.
pub fn templates(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let context = serde_json::json!({
        "labels": {"service": "api", "path": "../../admin?x=1#", "empty": ""},
        "params": {"host": "h:80", "list": ["a", "b/c"], "n": 3},
        "item": {"name": "disk"},
    });
    let mut builder = TemplatesBuilder::new();
    let plain = builder.add(&text);
    let url = builder.add_url(&text);
    let templates = builder.build();
    if let Ok(template) = plain {
        let _ = templates.render(&template, &context);
    }
    if let Ok(template) = url {
        let _ = templates.render(&template, &context);
    }
}

/// A CEL condition, compiled and evaluated over an event.
pub fn cel(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(condition) = crate::rule::Condition::compile(text) {
        let _ = condition.evaluate(&event());
    }
}

/// The event conditions are evaluated over.
fn event() -> crate::Event {
    crate::Event {
        id: "e".into(),
        source: "am".into(),
        kind: EventKind::Alert,
        status: crate::Status::Firing,
        fingerprint: "f".into(),
        labels: [("alertname".to_string(), "A".to_string())].into(),
        annotations: Labels::new(),
        starts_at: None,
        ends_at: None,
        received_at: DateTime::UNIX_EPOCH,
        data: None,
        ingested_by: None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::TARGETS;

    /// Every input the fuzzer kept (`fuzz/corpus/TARGET/*`), and every crash it found
    /// (`fuzz/regressions/TARGET/*`), replayed through its harness: a parser that panics again
    /// fails `cargo test`.
    #[test]
    fn the_fuzz_corpus_replays_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut replayed = 0;
        for (name, harness) in TARGETS {
            let mut inputs = 0;
            for folder in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(folder).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("a readable corpus folder").path();
                    // A fuzzer running meanwhile replaces inputs with smaller ones.
                    let Ok(data) = std::fs::read(&path) else {
                        continue;
                    };
                    let outcome = std::panic::catch_unwind(|| harness(&data));
                    assert!(
                        outcome.is_ok(),
                        "`{name}` panicked on {}: {:?}",
                        path.display(),
                        String::from_utf8_lossy(&data)
                    );
                    inputs += 1;
                }
            }
            assert!(
                inputs > 0,
                "no corpus for `{name}` under {}",
                root.display()
            );
            replayed += inputs;
        }
        assert!(replayed >= TARGETS.len());
    }

    /// Pieces of the syntaxes the parsers read.
    const TOKENS: &[&str] = &[
        "{", "}", "[", "]", "\"", ":", ",", "=~", "!=", "{{", "}}", "{%", "%}", "|", "labels",
        "alerts", "status", "firing", ".", "/", "\n", "  ", "- ", "rules:", "name: ", "&&", "(",
        ")", "'", "?", "#", "1e999", "\\u",
    ];

    /// The first panic the `cel` target found: the `cel` crate reaches a `todo!` for a macro called
    /// on a number. The condition must fail, not the decide stage.
    #[test]
    fn a_panic_of_the_cel_crate_is_the_conditions_error() {
        let condition = crate::rule::Condition::compile("[1, 2, 3]-4.map(x,!x + 2)[0] == 2")
            .expect("it parses");
        let error = condition.evaluate(&super::event()).unwrap_err();
        assert!(error.contains("the CEL interpreter failed"), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes, for the targets whose corpus may not reach an input class.
        #[test]
        fn no_harness_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for (_, harness) in TARGETS {
                harness(&data);
            }
        }

        /// Text that looks like what each parser reads, so the cases get past the first byte.
        #[test]
        fn no_harness_panics_on_syntax_soup(parts in proptest::collection::vec(prop_oneof![
            proptest::sample::select(TOKENS).prop_map(String::from),
            "[a-z0-9]{1,5}",
        ], 0..40)) {
            let text = parts.concat();
            for (_, harness) in TARGETS {
                harness(text.as_bytes());
            }
        }
    }
}
