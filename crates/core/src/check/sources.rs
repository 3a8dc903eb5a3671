//! `sources:`: names, webhooks' replay protection and mappings (compiled here, as their templates
//! are the check), HTTP probes and Kubernetes watches. Their names are unique ([`super::names`]).

use std::collections::BTreeMap;

use super::{valid_name, Report};
use crate::config::Source;
use crate::ingest::webhook::Mapping;
use crate::rule::CompiledWebhook;
use crate::template::{Template, TemplatesBuilder};

/// Checks every source; the webhook sources whose mappings compiled, by name.
pub(crate) fn check(
    report: &mut Report,
    templates: &mut TemplatesBuilder,
) -> BTreeMap<String, CompiledWebhook> {
    let config = report.config;
    let mut webhooks = BTreeMap::new();
    for (index, source) in config.sources.iter().enumerate() {
        let error = |report: &mut Report, field: &str, message: String, hint: Option<&str>| {
            report.error(
                "sources",
                Some(index),
                field,
                message,
                hint.map(str::to_string),
            );
        };
        if !valid_name(source.name()) || source.name() == "alertmanager" {
            error(
                report,
                "name",
                format!("invalid source name `{}`", source.name()),
                Some("use letters, digits, `-` and `_`; `alertmanager` is the built-in endpoint"),
            );
        }
        match source {
            Source::Webhook(webhook) => {
                match &webhook.replay {
                    None => report.warning(
                        "sources",
                        Some(index),
                        "replay",
                        "without replay protection, a captured delivery can be sent again and act again (a `firing` after its `resolved`)",
                        Some("remove `replay: null` and have the sender sign `<delivery>.<timestamp>.<body>` with `X-Homeostat-Delivery` and `X-Homeostat-Timestamp`".into()),
                    ),
                    Some(replay) if replay.window_secs == 0 => error(
                        report,
                        "replay.window_secs",
                        "the replay window must be at least 1 second".into(),
                        Some("300 (five minutes) allows for clock skew and retries"),
                    ),
                    Some(_) => {}
                }
                let mut add = |report: &mut Report, field: &str, text: &str| {
                    template(report, templates, index, field, text)
                };
                let status = add(report, "status", &webhook.status);
                let fingerprint = webhook
                    .fingerprint
                    .as_deref()
                    .map(|text| add(report, "fingerprint", text));
                let labels: Vec<_> = webhook
                    .labels
                    .iter()
                    .map(|(name, text)| {
                        (name.clone(), add(report, &format!("labels.{name}"), text))
                    })
                    .collect();
                let annotations: Vec<_> = webhook
                    .annotations
                    .iter()
                    .map(|(name, text)| {
                        (
                            name.clone(),
                            add(report, &format!("annotations.{name}"), text),
                        )
                    })
                    .collect();
                if webhook.labels.is_empty() {
                    error(
                        report,
                        "labels",
                        "a webhook mapping needs at least one label".into(),
                        Some(
                            "map a field of the body: `labels: {service: \"{{ body.service }}\"}`",
                        ),
                    );
                }
                if let Some(items) = &webhook.items {
                    if !items.starts_with('/') {
                        let hint = format!("write it as `/{items}`");
                        error(
                            report,
                            "items",
                            format!("`{items}` is not a JSON pointer"),
                            Some(&hint),
                        );
                    }
                }
                let complete =
                    |pairs: Vec<(String, Option<Template>)>| -> Option<Vec<(String, Template)>> {
                        pairs
                            .into_iter()
                            .map(|(name, template)| template.map(|t| (name, t)))
                            .collect()
                    };
                let fingerprint_ok = fingerprint.as_ref().is_none_or(Option::is_some);
                if let (Some(status), Some(labels), Some(annotations), true) = (
                    status,
                    complete(labels),
                    complete(annotations),
                    fingerprint_ok,
                ) {
                    webhooks.insert(
                        webhook.name.clone(),
                        CompiledWebhook {
                            source: webhook.clone(),
                            mapping: Mapping {
                                items: webhook.items.clone(),
                                kind: webhook.kind,
                                status,
                                fingerprint: fingerprint.flatten(),
                                labels,
                                annotations,
                            },
                        },
                    );
                }
            }
            Source::HttpProbe(probe) => {
                if !(probe.url.starts_with("http://") || probe.url.starts_with("https://")) {
                    error(
                        report,
                        "url",
                        format!("`{}` is not an http or https URL", probe.url),
                        None,
                    );
                }
                if probe.interval_secs.is_nan()
                    || probe.interval_secs <= 0.0
                    || probe.timeout_secs.is_nan()
                    || probe.timeout_secs <= 0.0
                {
                    error(
                        report,
                        "interval_secs",
                        "interval and timeout must be positive".into(),
                        None,
                    );
                }
                if probe.failure_threshold == 0 || probe.success_threshold == 0 {
                    error(
                        report,
                        "failure_threshold",
                        "thresholds start at 1".into(),
                        None,
                    );
                }
            }
            Source::KubernetesEvents(watch) => {
                for (position, kind) in watch.event_types.iter().enumerate() {
                    if !["Warning", "Normal"].contains(&kind.as_str()) {
                        error(
                            report,
                            &format!("event_types[{position}]"),
                            format!("unknown Event type `{kind}`"),
                            Some("Kubernetes Events are `Warning` or `Normal`"),
                        );
                    }
                }
                if watch
                    .namespaces
                    .iter()
                    .any(|namespace| namespace.is_empty())
                {
                    error(
                        report,
                        "namespaces",
                        "a namespace is empty".into(),
                        Some("name each namespace, or leave the list empty to watch all"),
                    );
                }
            }
            Source::Alertmanager(_) => {}
        }
    }
    webhooks
}

/// A template of a webhook mapping, or `None` after reporting why it does not parse.
fn template(
    report: &mut Report,
    templates: &mut TemplatesBuilder,
    index: usize,
    field: &str,
    text: &str,
) -> Option<Template> {
    match templates.add(text) {
        Ok(template) => Some(template),
        Err(error) => {
            report.error("sources", Some(index), field, error.to_string(), None);
            None
        }
    }
}
