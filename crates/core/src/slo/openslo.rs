//! OpenSLO specs: `openslo/v1alpha` read exactly as Sloth reads it, and `openslo/v1`, which Sloth
//! does not read, mapped onto the same model where the meaning is the same.
//!
//! `v1` maps an `SLO` with a `ratioMetric` indicator (`good` or `bad` over `total`, or a `raw`
//! ratio) whose metric source is Prometheus, `Occurrences` budgeting, one objective and one rolling
//! time window. The indicator is inline or an `indicatorRef` to an `SLI` of the same file; labels
//! may be lists (joined with `,`). The file is a stream of documents or a YAML list (what the
//! OpenSLO SDK and `oslo` write). As in Sloth, queries hold `{{.window}}` where the range goes.
//! OpenSLO's alert policies have no burn-rate windows to map from, so every SLO gets the page and
//! ticket alerts, named after it (`checkout-availability` alerts as `CheckoutAvailabilitySLO`).
//!
//! What does not map is refused with the field that says so, never reinterpreted: timeslice
//! budgeting counts good minutes rather than good events, a threshold objective compares a value
//! rather than a ratio, calendar windows reset, and several objectives are several budgets.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::{
    check_name, Alerting, Document, Error, EventsSli, Format, Labels, Loaded, RawSli, Sli, Slo,
    Spec, Window, SPEC_VERSION,
};

/// The OpenSLO API version homeostat maps itself.
pub const API_VERSION: &str = "openslo/v1";
/// The OpenSLO API version Sloth reads.
pub const V1ALPHA: &str = "openslo/v1alpha";

/// Whether a YAML text is OpenSLO rather than a Sloth spec.
pub fn is_openslo(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim_start_matches(['-', ' '])
            .starts_with("apiVersion:")
            && line.contains("openslo/")
    })
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn field(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Sloth's mapping of an OpenSLO `v1alpha` `SLO`: one Sloth SLO per objective, named
/// `<name>-<index>`, with the raw error ratio `1 - good / total` and no alerts.
pub fn load_v1alpha(value: &Value) -> Result<Vec<Document>, Error> {
    if text(value, "kind") != Some("SLO") {
        // Sloth reads only `SLO` documents of this version; others carry nothing to generate.
        return Ok(Vec::new());
    }
    let name = text(value.get("metadata").unwrap_or(&Value::Null), "name")
        .unwrap_or_default()
        .to_string();
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let service = text(spec, "service").unwrap_or_default().to_string();
    let description = text(spec, "description").unwrap_or_default().to_string();
    let objectives = spec
        .get("objectives")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if objectives.is_empty() {
        return Err(Error::new(
            "spec.objectives",
            "is empty; at least one SLO is required",
        ));
    }
    let period = match spec.get("timeWindows").and_then(Value::as_sequence) {
        None => None,
        Some(windows) if windows.is_empty() => None,
        Some(windows) if windows.len() > 1 => {
            return Err(Error::new(
                "spec.timeWindows",
                "has several windows; only 1 time window is supported",
            ))
        }
        Some(windows) => {
            let window = &windows[0];
            let unit = text(window, "unit").unwrap_or_default();
            if !unit.eq_ignore_ascii_case("day") {
                return Err(Error::new(
                    "spec.timeWindows[0].unit",
                    format!(
                        "`{unit}` is not supported; only days based time windows are (`unit: Day`)"
                    ),
                ));
            }
            let count = window.get("count").and_then(Value::as_u64).unwrap_or(0);
            if count == 0 {
                return Err(Error::new(
                    "spec.timeWindows[0].count",
                    "is missing or zero; give the number of days",
                ));
            }
            Some(Window::days(count))
        }
    };
    let mut slos = Vec::new();
    for (index, objective) in objectives.iter().enumerate() {
        let at = format!("spec.objectives[{index}]");
        let Some(ratio) = objective.get("ratioMetrics") else {
            return Err(Error::new(
                format!("{at}.ratioMetrics"),
                "is missing; Sloth maps only ratio objectives",
            ));
        };
        let part = |key: &str| -> Result<String, Error> {
            let metric = ratio.get(key).unwrap_or(&Value::Null);
            let source = text(metric, "source").unwrap_or_default();
            if source != "prometheus" && source != "sloth" {
                return Err(Error::new(
                    format!("{at}.ratioMetrics.{key}.source"),
                    format!("`{source}` is not supported; a prometheus or sloth query ratio `{key}` source is required"),
                ));
            }
            let query_type = text(metric, "queryType").unwrap_or_default();
            if query_type != "promql" {
                return Err(Error::new(
                    format!("{at}.ratioMetrics.{key}.queryType"),
                    format!("`{query_type}` is not supported; use `promql`"),
                ));
            }
            Ok(text(metric, "query").unwrap_or_default().to_string())
        };
        let good = part("good")?;
        let total = part("total")?;
        let Some(target) = objective.get("target").and_then(Value::as_f64) else {
            return Err(Error::new(
                format!("{at}.target"),
                "is missing; give the objective as a ratio, as `0.999`",
            ));
        };
        slos.push(Slo {
            name: format!("{name}-{index}"),
            // OpenSLO uses ratios, Sloth percents.
            objective: target * 100.0,
            description: description.clone(),
            labels: Labels::new(),
            plugins: None,
            sli: Sli {
                events: None,
                raw: Some(RawSli {
                    error_ratio_query: format!(
                        "\n  1 - (\n    (\n      {good}\n    )\n    /\n    (\n      {total}\n    )\n  )\n"
                    ),
                }),
                plugin: None,
            },
            alerting: Alerting {
                page_alert: super::AlertTier {
                    disable: true,
                    ..Default::default()
                },
                ticket_alert: super::AlertTier {
                    disable: true,
                    ..Default::default()
                },
                ..Alerting::default()
            },
        });
    }
    let spec = Spec {
        version: SPEC_VERSION.to_string(),
        service,
        labels: Labels::new(),
        slo_plugins: None,
        slos,
    };
    spec.validate().map_err(|error| {
        // The model's fields are Sloth's; say which OpenSLO field they came from.
        let field = error
            .field
            .replace("slos[", "spec.objectives[")
            .replace("].sli.raw.error_ratio_query", "].ratioMetrics")
            .replace("service", "spec.service");
        Error::new(field, error.message)
    })?;
    Ok(vec![Document {
        spec,
        format: Format::OpenSloV1Alpha,
        period,
        kubernetes: None,
    }])
}

/// An SLO of an OpenSLO `v1` file, mapped.
struct Mapped {
    service: String,
    window: Window,
    slo: Slo,
}

/// Reads the `openslo/v1` objects of a file (documents or the items of a YAML list, `prefix`
/// naming them in messages) as Sloth specs, one per service and period.
pub fn load_v1(objects: Vec<&Value>, prefix: &str) -> Result<Loaded, Error> {
    let at = |index: usize, path: &str| {
        let object = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}[{index}]")
        };
        field(&object, path)
    };
    let mut slis: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut sources: BTreeMap<&str, &Value> = BTreeMap::new();
    for (index, object) in objects.iter().enumerate() {
        let api_version = text(object, "apiVersion").unwrap_or_default();
        if api_version != API_VERSION {
            return Err(Error::new(
                at(index, "apiVersion"),
                format!("`{api_version}` is not supported here; use `{API_VERSION}` for every object of the file"),
            ));
        }
        let name = object
            .get("metadata")
            .and_then(|metadata| text(metadata, "name"))
            .unwrap_or_default();
        match text(object, "kind") {
            Some("SLI") => {
                slis.insert(name, *object);
            }
            Some("DataSource") => {
                sources.insert(name, *object);
            }
            _ => {}
        }
    }
    let mut warnings = Vec::new();
    let mut mapped = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        if text(object, "kind") != Some("SLO") {
            continue;
        }
        let at = |path: &str| at(index, path);
        let one = map_slo(object, &slis, &sources, &at, &mut warnings)?;
        // Sloth's checks, on the SLO as it maps: name the OpenSLO object and the Sloth field.
        let spec = Spec {
            version: SPEC_VERSION.to_string(),
            service: one.service.clone(),
            labels: Labels::new(),
            slo_plugins: None,
            slos: vec![one.slo.clone()],
        };
        spec.validate().map_err(|error| {
            let sloth_field = error.field.trim_start_matches("slos[0].");
            Error::new(
                at("spec"),
                format!("maps to Sloth's `{sloth_field}`, which {}", error.message),
            )
        })?;
        mapped.push(one);
    }
    if mapped.is_empty() {
        return Err(Error::new(prefix, "has no `kind: SLO` object"));
    }
    // One spec per service and period, in the order the SLOs come.
    let mut documents: Vec<Document> = Vec::new();
    for Mapped {
        service,
        window,
        slo,
    } in mapped
    {
        match documents
            .iter_mut()
            .find(|document| document.spec.service == service && document.period == Some(window))
        {
            Some(document) => document.spec.slos.push(slo),
            None => documents.push(Document {
                spec: Spec {
                    version: SPEC_VERSION.to_string(),
                    service,
                    labels: Labels::new(),
                    slo_plugins: None,
                    slos: vec![slo],
                },
                format: Format::OpenSloV1,
                period: Some(window),
                kubernetes: None,
            }),
        }
    }
    for document in &documents {
        // Each SLO passed alone; together, two of a service may share a name.
        document
            .spec
            .validate()
            .map_err(|error| Error::new(prefix, error.message))?;
    }
    Ok(Loaded {
        documents,
        warnings,
    })
}

fn map_slo(
    object: &Value,
    slis: &BTreeMap<&str, &Value>,
    sources: &BTreeMap<&str, &Value>,
    at: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Mapped, Error> {
    let metadata = object.get("metadata").unwrap_or(&Value::Null);
    let name = text(metadata, "name").unwrap_or_default().to_string();
    check_name(&at("metadata.name"), &name)?;
    let labels = labels(metadata.get("labels"), &at("metadata.labels"))?;
    let Some(spec) = object.get("spec") else {
        return Err(Error::new(at("spec"), "is missing"));
    };
    let service = match text(spec, "service") {
        Some(service) if !service.is_empty() => service.to_string(),
        _ => {
            return Err(Error::new(
                at("spec.service"),
                "is missing; name the service",
            ))
        }
    };
    check_name(&at("spec.service"), &service)?;
    match text(spec, "budgetingMethod").unwrap_or("Occurrences") {
        "Occurrences" => {}
        method @ ("Timeslices" | "RatioTimeslices") => {
            return Err(Error::new(
                at("spec.budgetingMethod"),
                format!("`{method}` is not supported: it counts good time slices, not good events, and has no error ratio to burn; use `Occurrences`"),
            ))
        }
        other => {
            return Err(Error::new(
                at("spec.budgetingMethod"),
                format!("`{other}` is not an OpenSLO budgeting method; use `Occurrences`"),
            ))
        }
    }
    let window = time_window(spec, at)?;
    let objective = objective(spec, at)?;
    // The indicator: inline, or the `SLI` that `indicatorRef` names.
    let (indicator, indicator_at) = match (spec.get("indicator"), text(spec, "indicatorRef")) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                at("spec.indicatorRef"),
                "is given with `indicator`; keep one",
            ))
        }
        (Some(indicator), None) => (
            indicator.get("spec").unwrap_or(&Value::Null),
            at("spec.indicator.spec"),
        ),
        (None, Some(reference)) => match slis.get(reference) {
            Some(sli) => (
                sli.get("spec").unwrap_or(&Value::Null),
                format!("{} (SLI `{reference}`).spec", at("spec.indicatorRef")),
            ),
            None => {
                return Err(Error::new(
                    at("spec.indicatorRef"),
                    format!("`{reference}` names no `kind: SLI` object in the file; add it, or write the indicator inline under `indicator`"),
                ))
            }
        },
        (None, None) => {
            return Err(Error::new(
                at("spec"),
                "has neither `indicator` nor `indicatorRef`; give one",
            ))
        }
    };
    let sli = indicator_sli(indicator, &indicator_at, sources)?;
    if spec
        .get("alertPolicies")
        .and_then(Value::as_sequence)
        .is_some_and(|policies| !policies.is_empty())
    {
        warnings.push(format!(
            "{}: alert policies are not mapped (they have no burn-rate windows); the SLO gets the standard page and ticket alerts",
            at("spec.alertPolicies")
        ));
    }
    Ok(Mapped {
        service,
        window,
        slo: Slo {
            alerting: Alerting {
                name: alert_name(&name),
                ..Alerting::default()
            },
            name,
            objective,
            description: text(spec, "description").unwrap_or_default().to_string(),
            labels,
            plugins: None,
            sli,
        },
    })
}

/// OpenSLO labels: a value or a list of values, the list joined with `,` (a Prometheus label
/// holds one value).
fn labels(value: Option<&Value>, at: &str) -> Result<Labels, Error> {
    let mut labels = Labels::new();
    let Some(Value::Mapping(map)) = value else {
        return Ok(labels);
    };
    for (key, value) in map {
        let key = key.as_str().unwrap_or_default().to_string();
        let value = match value {
            Value::Sequence(items) => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                parts.map(|parts| parts.join(","))
            }
            value => scalar(value),
        };
        let Some(value) = value else {
            return Err(Error::new(
                format!("{at}.{key}"),
                "is not a value or a list of values",
            ));
        };
        labels.insert(key, value);
    }
    super::check_labels(at, &labels)?;
    Ok(labels)
}

/// A YAML scalar as label text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn time_window(spec: &Value, at: &dyn Fn(&str) -> String) -> Result<Window, Error> {
    let windows = spec
        .get("timeWindow")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let [window] = windows.as_slice() else {
        return Err(Error::new(
            at("spec.timeWindow"),
            "give exactly one rolling window, as `[{duration: 30d, isRolling: true}]`",
        ));
    };
    if window.get("calendar").is_some()
        || window.get("isRolling").and_then(Value::as_bool) != Some(true)
    {
        return Err(Error::new(
            at("spec.timeWindow[0].isRolling"),
            "calendar windows are not supported: the budget would reset at each period's start; use a rolling window (`isRolling: true`)",
        ));
    }
    let duration = text(window, "duration").unwrap_or_default();
    Window::parse(duration).ok_or_else(|| {
        Error::new(
            at("spec.timeWindow[0].duration"),
            format!("`{duration}` is not a fixed duration; give days or weeks, as `28d` or `30d` (months, quarters and years vary in length)"),
        )
    })
}

fn objective(spec: &Value, at: &dyn Fn(&str) -> String) -> Result<f64, Error> {
    let objectives = spec
        .get("objectives")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let [objective] = objectives.as_slice() else {
        return Err(Error::new(
            at("spec.objectives"),
            format!(
                "has {} objectives; give exactly one: each objective is its own error budget, so write one SLO per objective",
                objectives.len()
            ),
        ));
    };
    for (key, why) in [
        ("op", "a threshold objective compares each value with `value`, which has no error ratio; use a `ratioMetric` indicator whose bad events are the values over the threshold"),
        ("value", "a threshold objective compares each value with `value`, which has no error ratio; use a `ratioMetric` indicator whose bad events are the values over the threshold"),
        ("timeSliceTarget", "timeslice objectives count good time slices, not good events"),
        ("timeSliceWindow", "timeslice objectives count good time slices, not good events"),
        ("indicator", "a composite objective with its own indicator is several SLOs; write one SLO per indicator"),
        ("indicatorRef", "a composite objective with its own indicator is several SLOs; write one SLO per indicator"),
        ("compositeWeight", "composite SLOs weigh several budgets into one, which has no single error ratio"),
    ] {
        if objective.get(key).is_some() {
            return Err(Error::new(
                at(&format!("spec.objectives[0].{key}")),
                format!("is not supported: {why}"),
            ));
        }
    }
    match (
        objective.get("target").and_then(Value::as_f64),
        objective.get("targetPercent").and_then(Value::as_f64),
    ) {
        (Some(target), None) => Ok(target * 100.0),
        (None, Some(percent)) => Ok(percent),
        _ => Err(Error::new(
            at("spec.objectives[0]"),
            "give one of `target` (0.999) and `targetPercent` (99.9)",
        )),
    }
}

/// The SLI of an indicator's spec (`ratioMetric`), its queries from a Prometheus metric source.
fn indicator_sli(
    indicator: &Value,
    at: &str,
    sources: &BTreeMap<&str, &Value>,
) -> Result<Sli, Error> {
    if indicator.get("thresholdMetric").is_some() {
        return Err(Error::new(
            format!("{at}.thresholdMetric"),
            "threshold indicators are not supported: they measure a value, not good and bad events; use a `ratioMetric`",
        ));
    }
    let Some(ratio) = indicator.get("ratioMetric") else {
        return Err(Error::new(
            format!("{at}.ratioMetric"),
            "is missing; give `good` or `bad` with `total`",
        ));
    };
    let query = |key: &str| -> Result<Option<String>, Error> {
        let Some(metric) = ratio.get(key) else {
            return Ok(None);
        };
        let field = format!("{at}.ratioMetric.{key}.metricSource");
        let source = metric.get("metricSource").unwrap_or(&Value::Null);
        let kind = match text(source, "type") {
            Some(kind) => kind.to_string(),
            None => match text(source, "metricSourceRef") {
                Some(reference) => match sources.get(reference) {
                    Some(data_source) => data_source
                        .get("spec")
                        .and_then(|spec| text(spec, "type"))
                        .unwrap_or_default()
                        .to_string(),
                    None => {
                        return Err(Error::new(
                            format!("{field}.metricSourceRef"),
                            format!("`{reference}` names no `kind: DataSource` object in the file; add it, or give `type: Prometheus`"),
                        ))
                    }
                },
                None => String::new(),
            },
        };
        if !kind.eq_ignore_ascii_case("prometheus") {
            return Err(Error::new(
                format!("{field}.type"),
                format!("`{kind}` is not supported; use `Prometheus`"),
            ));
        }
        match source.get("spec").and_then(|spec| text(spec, "query")) {
            Some(query) if !super::rules::has_window(query) => Err(Error::new(
                format!("{field}.spec.query"),
                "has no `{{.window}}`; as in Sloth, use it as the range of the query's rates, as `[{{.window}}]`",
            )),
            Some(query) => Ok(Some(query.to_string())),
            None => Err(Error::new(
                format!("{field}.spec.query"),
                "is missing; give the PromQL query, with `{{.window}}` as its range",
            )),
        }
    };
    if ratio.get("raw").is_some() {
        let raw = query("raw")?.unwrap_or_default();
        let error_ratio_query = match text(ratio, "rawType") {
            Some("failure") => raw,
            Some("success") => format!("1 - ({raw})"),
            other => {
                return Err(Error::new(
                    format!("{at}.ratioMetric.rawType"),
                    format!(
                        "`{}` is not a raw type; use `success` or `failure`",
                        other.unwrap_or_default()
                    ),
                ))
            }
        };
        return Ok(Sli {
            raw: Some(RawSli { error_ratio_query }),
            ..Sli::default()
        });
    }
    let Some(total) = query("total")? else {
        return Err(Error::new(
            format!("{at}.ratioMetric.total"),
            "is missing; give the query of all events",
        ));
    };
    match (query("good")?, query("bad")?) {
        (Some(good), None) => Ok(Sli {
            raw: Some(RawSli {
                error_ratio_query: format!("1 - (({good}) / ({total}))"),
            }),
            ..Sli::default()
        }),
        (None, Some(bad)) => Ok(Sli {
            events: Some(EventsSli {
                error_query: bad,
                total_query: total,
            }),
            ..Sli::default()
        }),
        _ => Err(Error::new(
            format!("{at}.ratioMetric"),
            "give one of `good` and `bad`, with `total`",
        )),
    }
}

/// `checkout-availability` as `CheckoutAvailabilitySLO`.
fn alert_name(name: &str) -> String {
    let mut alert: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if alert.starts_with(|c: char| c.is_ascii_digit()) {
        alert.insert(0, '_');
    }
    alert + "SLO"
}

#[cfg(test)]
mod tests;
