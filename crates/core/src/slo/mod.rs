//! Service level objectives: the specs homeostat reads (Sloth's `prometheus/v1` and its
//! Kubernetes `PrometheusServiceLevel`, OpenSLO `v1alpha` as Sloth reads it, and OpenSLO `v1` in
//! [`openslo`]), their validation, and the Prometheus rules generated from them ([`rules`]),
//! equal to Sloth's.
//!
//! Sloth's own behaviour is the reference: what it accepts is accepted (fields it ignores are
//! ignored with a warning), what it refuses is refused, and the rules are Sloth's to the byte.
//! What homeostat cannot do the same way (Sloth's SLI and SLO plugins run Go code) is refused with
//! a message that says what to write instead.

pub mod burn;
mod gofmt;
pub mod openslo;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde_yaml_ng::Value;

pub use gofmt::{format_f, format_g};
pub use rules::{generate, generate_with, AlertWindows, Options, Period, RuleFile, Window};

/// The version of Sloth's plain spec.
pub const SPEC_VERSION: &str = "prometheus/v1";
/// The API version of Sloth's Kubernetes `PrometheusServiceLevel` (and `AlertWindows`).
pub const KUBERNETES_API_VERSION: &str = "sloth.slok.dev/v1";

/// Labels on a spec, an SLO or an alert.
pub type Labels = BTreeMap<String, String>;

/// A Sloth `prometheus/v1` spec: one service and its SLOs. Field names are Sloth's snake_case ones;
/// the camelCase spellings of its Kubernetes form are accepted too, as Sloth accepts them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub version: String,
    pub service: String,
    #[serde(default)]
    pub labels: Labels,
    /// Sloth SLO plugins for every SLO: refused, homeostat does not run them.
    #[serde(default, alias = "sloPlugins")]
    pub slo_plugins: Option<Value>,
    #[serde(default)]
    pub slos: Vec<Slo>,
}

/// One SLO of a spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    /// The objective in percent, such as `99.9`.
    pub objective: f64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: Labels,
    /// Sloth SLO plugins for this SLO: refused, homeostat does not run them.
    #[serde(default)]
    pub plugins: Option<Value>,
    #[serde(default)]
    pub sli: Sli,
    #[serde(default)]
    pub alerting: Alerting,
}

/// How the error ratio of an SLO is measured: exactly one of `events` and `raw`. Queries hold
/// `{{.window}}` where the range goes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sli {
    #[serde(default)]
    pub events: Option<EventsSli>,
    #[serde(default)]
    pub raw: Option<RawSli>,
    /// A Sloth SLI plugin: refused with what to write instead.
    #[serde(default)]
    pub plugin: Option<SliPlugin>,
}

/// Bad events over all events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSli {
    #[serde(alias = "errorQuery")]
    pub error_query: String,
    #[serde(alias = "totalQuery")]
    pub total_query: String,
}

/// A query that is already the error ratio.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSli {
    #[serde(alias = "errorRatioQuery")]
    pub error_ratio_query: String,
}

/// A Sloth SLI plugin reference.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SliPlugin {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub options: Option<Value>,
}

/// The alerts of an SLO: a fast-burn page and a slow-burn ticket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(default, alias = "pageAlert")]
    pub page_alert: AlertTier,
    #[serde(default, alias = "ticketAlert")]
    pub ticket_alert: AlertTier,
}

/// The page or the ticket alert of an SLO.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTier {
    #[serde(default)]
    pub disable: bool,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
}

/// Where a spec came from, which Sloth writes on `sloth_slo_info` (`sloth_mode`, `sloth_spec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Sloth's `prometheus/v1`.
    #[default]
    Sloth,
    /// Sloth's Kubernetes `PrometheusServiceLevel`; the rules come out as a `PrometheusRule`.
    SlothKubernetes,
    /// OpenSLO `v1alpha`, mapped as Sloth maps it.
    OpenSloV1Alpha,
    /// OpenSLO `v1`, which Sloth does not read; mapped by homeostat ([`openslo`]).
    OpenSloV1,
}

impl Format {
    /// `sloth_mode`.
    pub fn mode(self) -> &'static str {
        match self {
            Format::Sloth => "cli-gen-prom",
            Format::SlothKubernetes => "cli-gen-k8s",
            Format::OpenSloV1Alpha | Format::OpenSloV1 => "cli-gen-openslo",
        }
    }

    /// `sloth_spec`.
    pub fn spec(self) -> &'static str {
        match self {
            Format::Sloth => SPEC_VERSION,
            Format::SlothKubernetes => KUBERNETES_API_VERSION,
            Format::OpenSloV1Alpha => openslo::V1ALPHA,
            Format::OpenSloV1 => openslo::API_VERSION,
        }
    }
}

/// The metadata of a Kubernetes `PrometheusServiceLevel`, which its `PrometheusRule` keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubernetesMeta {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub annotations: Labels,
}

/// One spec of a file, with what generating its rules needs besides.
#[derive(Debug, Clone)]
pub struct Document {
    pub spec: Spec,
    pub format: Format,
    /// The period the document sets itself (OpenSLO time windows); `None` takes the default.
    pub period: Option<Window>,
    /// Set for a Kubernetes `PrometheusServiceLevel`.
    pub kubernetes: Option<KubernetesMeta>,
}

/// A file's specs, in order, and what was accepted but ignored.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    /// Fields ignored, as Sloth ignores them, each naming its field.
    pub warnings: Vec<String>,
}

/// Why a spec was refused: the field, what is wrong, and the fix where it is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Error {
    /// The field's path, as `slos[0].objective`; empty for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl Error {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error under `prefix` (`documents[1]`, `spec`).
    fn within(mut self, prefix: &str) -> Error {
        if prefix.is_empty() {
            return self;
        }
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Reads every spec of a file: Sloth `prometheus/v1` and Kubernetes `PrometheusServiceLevel`
/// documents, OpenSLO `v1alpha` documents as Sloth reads them, and OpenSLO `v1` (documents or a
/// YAML list) where it maps ([`openslo`]). Documents are separated by `---`; empty ones are
/// skipped, as Sloth skips them.
pub fn load(text: &str) -> Result<Loaded, Error> {
    let mut values = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|error| yaml_error(&error))?;
        if !value.is_null() {
            values.push(value);
        }
    }
    if values.is_empty() {
        return Err(Error::new("", "holds no spec; the file is empty"));
    }
    // A YAML list of objects is OpenSLO's list form (what the OpenSLO SDK and oslo write).
    if let [Value::Sequence(items)] = values.as_slice() {
        return openslo::load_v1(items.iter().collect(), "items");
    }
    let many = values.len() > 1;
    let prefix = |index: usize| {
        if many {
            format!("documents[{index}]")
        } else {
            String::new()
        }
    };
    let mut loaded = Loaded::default();
    // OpenSLO v1 documents refer to each other (an SLO's `indicatorRef` names an `SLI`), so they
    // are read together, where the first of them stands.
    let mut openslo_v1: Option<(usize, Vec<(usize, &Value)>)> = None;
    for (index, value) in values.iter().enumerate() {
        let at = prefix(index);
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let kind = value.get("kind").and_then(Value::as_str);
        match (api_version, kind) {
            (Some(api), _) if api == openslo::API_VERSION => {
                openslo_v1
                    .get_or_insert_with(|| (loaded.documents.len(), Vec::new()))
                    .1
                    .push((index, value));
            }
            (Some(api), _) if api == openslo::V1ALPHA => {
                let documents = openslo::load_v1alpha(value).map_err(|error| error.within(&at))?;
                loaded.documents.extend(documents);
            }
            (Some(KUBERNETES_API_VERSION), Some("PrometheusServiceLevel")) => {
                let (document, warnings) =
                    load_kubernetes(value).map_err(|error| error.within(&at))?;
                loaded.documents.push(document);
                loaded
                    .warnings
                    .extend(warnings.into_iter().map(|w| within(&at, w)));
            }
            _ if value.get("version").is_some() => {
                let (spec, warnings) = load_sloth(value).map_err(|error| error.within(&at))?;
                loaded.documents.push(Document {
                    spec,
                    format: Format::Sloth,
                    period: None,
                    kubernetes: None,
                });
                loaded
                    .warnings
                    .extend(warnings.into_iter().map(|w| within(&at, w)));
            }
            (Some(api), kind) => {
                return Err(Error::new(
                    if at.is_empty() { "apiVersion".to_string() } else { format!("{at}.apiVersion") },
                    format!(
                        "`{api}`{} is not a spec homeostat reads; use Sloth's `version: prometheus/v1` or `{KUBERNETES_API_VERSION}` `PrometheusServiceLevel`, or OpenSLO `openslo/v1`",
                        kind.map(|kind| format!(" `{kind}`")).unwrap_or_default()
                    ),
                ))
            }
            (None, _) => {
                return Err(Error::new(
                    at,
                    "is neither a Sloth spec (`version: prometheus/v1`) nor a Kubernetes or OpenSLO object (`apiVersion`)",
                ))
            }
        }
    }
    if let Some((position, documents)) = openslo_v1 {
        let values: Vec<&Value> = documents.iter().map(|(_, value)| *value).collect();
        let indexes: Vec<usize> = documents.iter().map(|(index, _)| *index).collect();
        let read = openslo::load_v1(values, if many { "documents" } else { "" }).map_err(
            |mut error| {
                error.field = renumber(&error.field, &indexes);
                error
            },
        )?;
        // Field paths name the documents of the file, not of the OpenSLO subset.
        let fix = |text: String| renumber(&text, &indexes);
        for (offset, document) in read.documents.into_iter().enumerate() {
            loaded.documents.insert(position + offset, document);
        }
        loaded.warnings.extend(read.warnings.into_iter().map(fix));
    }
    if loaded.documents.is_empty() {
        return Err(Error::new("", "has no SLO; declare at least one"));
    }
    // Two documents with the same SLO id would record the same series twice.
    let mut ids = BTreeMap::new();
    for (index, document) in loaded.documents.iter().enumerate() {
        for slo in &document.spec.slos {
            let id = slo.id(&document.spec.service);
            if let Some(first) = ids.insert(id.clone(), index) {
                if first != index {
                    return Err(Error::new(
                        "",
                        format!("SLO id `{id}` is in spec {} and spec {} of the file; SLO ids (`<service>-<name>`) must be unique, as Sloth's `validate` requires", first + 1, index + 1),
                    ));
                }
            }
        }
    }
    Ok(loaded)
}

/// `documents[k]` of an OpenSLO subset as `documents[indexes[k]]` of the file.
fn renumber(text: &str, indexes: &[usize]) -> String {
    static DOCUMENT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"documents\[(\d+)\]").expect("a valid regex"));
    DOCUMENT
        .replace_all(text, |captures: &regex::Captures| {
            let index: usize = captures[1].parse().unwrap_or(0);
            format!(
                "documents[{}]",
                indexes.get(index).copied().unwrap_or(index)
            )
        })
        .into_owned()
}

fn within(prefix: &str, warning: String) -> String {
    if prefix.is_empty() {
        warning
    } else {
        format!("{prefix}.{warning}")
    }
}

/// Reads a file that holds one spec, for the daemon's `slos:` (one spec per item), with the period
/// the spec sets itself, if any.
pub fn load_one(text: &str) -> Result<(Spec, Option<Window>), Error> {
    let mut loaded = load(text)?;
    if loaded.documents.len() > 1 {
        return Err(Error::new(
            "",
            format!(
                "holds {} specs; the daemon evaluates one spec per `slos:` item, so split the file or name each document's file in its own item",
                loaded.documents.len()
            ),
        ));
    }
    let document = loaded.documents.remove(0);
    Ok((document.spec, document.period))
}

/// What a field that Sloth does not know holds: nothing to read but its place.
#[derive(Clone, Copy)]
enum Shape {
    Any,
    Map(&'static [(&'static str, Shape)]),
    Seq(&'static Shape),
}

const TIER: Shape = Shape::Map(&[
    ("disable", Shape::Any),
    ("labels", Shape::Any),
    ("annotations", Shape::Any),
]);

const SLO: Shape = Shape::Map(&[
    ("name", Shape::Any),
    ("objective", Shape::Any),
    ("description", Shape::Any),
    ("labels", Shape::Any),
    ("plugins", Shape::Any),
    (
        "sli",
        Shape::Map(&[
            (
                "events",
                Shape::Map(&[
                    ("error_query", Shape::Any),
                    ("errorQuery", Shape::Any),
                    ("total_query", Shape::Any),
                    ("totalQuery", Shape::Any),
                ]),
            ),
            (
                "raw",
                Shape::Map(&[
                    ("error_ratio_query", Shape::Any),
                    ("errorRatioQuery", Shape::Any),
                ]),
            ),
            ("plugin", Shape::Any),
        ]),
    ),
    (
        "alerting",
        Shape::Map(&[
            ("name", Shape::Any),
            ("labels", Shape::Any),
            ("annotations", Shape::Any),
            ("page_alert", TIER),
            ("pageAlert", TIER),
            ("ticket_alert", TIER),
            ("ticketAlert", TIER),
        ]),
    ),
]);

const SLOTH_SPEC: Shape = Shape::Map(&[
    ("version", Shape::Any),
    ("service", Shape::Any),
    ("labels", Shape::Any),
    ("slo_plugins", Shape::Any),
    ("sloPlugins", Shape::Any),
    ("slos", Shape::Seq(&SLO)),
]);

/// Removes the fields Sloth does not read (it ignores them), with a warning for each.
fn prune(value: &mut Value, shape: Shape, path: &str, warnings: &mut Vec<String>) {
    match (shape, value) {
        (Shape::Map(fields), Value::Mapping(map)) => {
            let mut unknown = Vec::new();
            for (key, child) in map.iter_mut() {
                let name = key.as_str().unwrap_or_default();
                match fields.iter().find(|(known, _)| *known == name) {
                    Some((_, shape)) => prune(child, *shape, &join(path, name), warnings),
                    None => unknown.push(key.clone()),
                }
            }
            for key in unknown {
                let name = match &key {
                    Value::String(name) => name.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                warnings.push(format!(
                    "{}: is not a field of the spec; ignored, as Sloth ignores it (check its spelling)",
                    join(path, &name)
                ));
                map.remove(&key);
            }
        }
        (Shape::Seq(item), Value::Sequence(items)) => {
            for (index, child) in items.iter_mut().enumerate() {
                prune(child, *item, &format!("{path}[{index}]"), warnings);
            }
        }
        _ => {}
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// A serde error as a field and a message.
fn serde_error(error: serde_path_to_error::Error<serde_yaml_ng::Error>) -> Error {
    let mut field = error.path().to_string();
    if field == "." || field == "?" {
        field.clear();
    }
    let mut message = error.into_inner().to_string();
    // serde_yaml_ng may start its message with the path (or its parent) again.
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.is_empty() && field.starts_with(head) {
            message = rest.to_string();
        }
    }
    let number = message.starts_with("invalid type: integer")
        || message.starts_with("invalid type: floating point");
    if number && message.contains("expected a string") {
        message.push_str("; quote it, as `\"2\"`");
    }
    Error::new(field, message)
}

fn yaml_error(error: &serde_yaml_ng::Error) -> Error {
    Error::new("", format!("invalid YAML: {error}"))
}

/// Reads one Sloth `prometheus/v1` document.
fn load_sloth(value: &Value) -> Result<(Spec, Vec<String>), Error> {
    let mut value = value.clone();
    let mut warnings = Vec::new();
    prune(&mut value, SLOTH_SPEC, "", &mut warnings);
    let spec: Spec = serde_path_to_error::deserialize(value).map_err(serde_error)?;
    spec.validate()?;
    warnings.extend(spec.warnings());
    Ok((spec, warnings))
}

/// Reads one Kubernetes `PrometheusServiceLevel`: its `spec` is a Sloth spec with camelCase names,
/// its metadata goes on the `PrometheusRule` written for it.
fn load_kubernetes(value: &Value) -> Result<(Document, Vec<String>), Error> {
    let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
    let string_map = |field: &str| -> Result<Labels, Error> {
        match metadata.get(field) {
            None | Some(Value::Null) => Ok(Labels::new()),
            Some(value) => serde_yaml_ng::from_value(value.clone())
                .map_err(|error| Error::new(format!("metadata.{field}"), error.to_string())),
        }
    };
    let text = |field: &str| {
        metadata
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let meta = KubernetesMeta {
        name: text("name"),
        namespace: text("namespace"),
        labels: string_map("labels")?,
        annotations: string_map("annotations")?,
    };
    if meta.name.is_empty() {
        return Err(Error::new(
            "metadata.name",
            "is missing; the `PrometheusRule` written for it takes its name",
        ));
    }
    let mut warnings = Vec::new();
    let mut spec = match value.get("spec") {
        Some(Value::Mapping(spec)) => spec.clone(),
        _ => return Err(Error::new("spec", "is missing; give `service` and `slos`")),
    };
    for key in ["version"] {
        if spec.contains_key(key) {
            spec.remove(key);
            warnings.push(format!(
                "spec.{key}: is not a field of a `PrometheusServiceLevel`; ignored"
            ));
        }
    }
    spec.insert(Value::from("version"), Value::from(SPEC_VERSION));
    let mut spec = Value::Mapping(spec);
    let mut pruned = Vec::new();
    prune(&mut spec, SLOTH_SPEC, "", &mut pruned);
    warnings.extend(pruned.into_iter().map(|w| format!("spec.{w}")));
    let spec: Spec = serde_path_to_error::deserialize(spec)
        .map_err(serde_error)
        .map_err(|error| error.within("spec"))?;
    spec.validate().map_err(|error| error.within("spec"))?;
    warnings.extend(spec.warnings().into_iter().map(|w| format!("spec.{w}")));
    Ok((
        Document {
            spec,
            format: Format::SlothKubernetes,
            period: None,
            kubernetes: Some(meta),
        },
        warnings,
    ))
}

/// Labels the generated rules set themselves; a spec that sets them overrides them, as in Sloth.
const RESERVED_LABELS: &[&str] = &["sloth_id", "sloth_service", "sloth_slo", "sloth_window"];

/// Parses a Sloth `prometheus/v1` spec from YAML and validates it. Fields Sloth ignores are
/// ignored here too; [`load`] reports them.
pub fn parse(text: &str) -> Result<Spec, Error> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|error| yaml_error(&error))?;
    load_sloth(&value).map(|(spec, _)| spec)
}

/// Names as Sloth allows them: letters, digits, `-`, `_` and `.`, starting and ending with a letter
/// or digit.
static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$").expect("a valid regex"));

impl Spec {
    /// Checks what serde cannot, as Sloth's validation does: names, the objective, one SLI whose
    /// queries take the window and are valid PromQL, labels, alert names, and no plugins.
    pub fn validate(&self) -> Result<(), Error> {
        if self.version != SPEC_VERSION {
            return Err(Error::new(
                "version",
                format!("`{}` is not supported; use `{SPEC_VERSION}`", self.version),
            ));
        }
        check_name("service", &self.service)?;
        check_plugins("slo_plugins", self.slo_plugins.as_ref())?;
        check_labels("labels", &self.labels)?;
        if self.slos.is_empty() {
            return Err(Error::new("slos", "is empty; declare at least one SLO"));
        }
        let mut seen = BTreeMap::new();
        for (index, slo) in self.slos.iter().enumerate() {
            let at = format!("slos[{index}]");
            check_name(&format!("{at}.name"), &slo.name)?;
            check_name(&format!("{at}.name"), &slo.id(&self.service))?;
            if let Some(first) = seen.insert(slo.name.as_str(), index) {
                return Err(Error::new(
                    format!("{at}.name"),
                    format!(
                        "`{}` is already the name of slos[{first}]; SLO names must be unique",
                        slo.name
                    ),
                ));
            }
            if !(slo.objective > 0.0 && slo.objective <= 100.0) {
                return Err(Error::new(
                    format!("{at}.objective"),
                    format!(
                        "{} is not a percentage above 0 and at most 100; write the objective in percent, as `99.9`",
                        format_g(slo.objective)
                    ),
                ));
            }
            check_plugins(&format!("{at}.plugins"), slo.plugins.as_ref())?;
            check_labels(&format!("{at}.labels"), &slo.labels)?;
            if let Some(plugin) = &slo.sli.plugin {
                return Err(Error::new(
                    format!("{at}.sli.plugin"),
                    format!(
                        "`{}` is a Sloth SLI plugin, which runs Go code homeostat does not run; write the error ratio query the plugin would build as `sli.raw.error_ratio_query` (or the bad and total queries as `sli.events`), with `{{{{.window}}}}` as its range",
                        plugin.id
                    ),
                ));
            }
            match (&slo.sli.events, &slo.sli.raw) {
                (Some(events), None) => {
                    check_query(&format!("{at}.sli.events.error_query"), &events.error_query)?;
                    check_query(&format!("{at}.sli.events.total_query"), &events.total_query)?;
                    if events.error_query == events.total_query {
                        return Err(Error::new(
                            format!("{at}.sli.events"),
                            "has the same `error_query` and `total_query`; the error query counts only the bad events",
                        ));
                    }
                }
                (None, Some(raw)) => {
                    check_query(
                        &format!("{at}.sli.raw.error_ratio_query"),
                        &raw.error_ratio_query,
                    )?;
                }
                (Some(_), Some(_)) => {
                    return Err(Error::new(
                        format!("{at}.sli"),
                        "has both `events` and `raw`; keep one",
                    ));
                }
                (None, None) => {
                    return Err(Error::new(
                        format!("{at}.sli"),
                        "is empty; give `events` (`error_query` and `total_query`) or `raw` (`error_ratio_query`)",
                    ));
                }
            }
            let alerting = &slo.alerting;
            let alerts_on = !alerting.page_alert.disable || !alerting.ticket_alert.disable;
            if alerts_on && alerting.name.trim().is_empty() {
                return Err(Error::new(
                    format!("{at}.alerting.name"),
                    "is missing; name the alert, or set `page_alert.disable` and `ticket_alert.disable`",
                ));
            }
            for (field, tier) in [
                ("page_alert", &alerting.page_alert),
                ("ticket_alert", &alerting.ticket_alert),
            ] {
                if tier.disable {
                    continue;
                }
                check_labels(&format!("{at}.alerting.labels"), &alerting.labels)?;
                check_annotations(&format!("{at}.alerting.annotations"), &alerting.annotations)?;
                check_labels(&format!("{at}.alerting.{field}.labels"), &tier.labels)?;
                check_annotations(
                    &format!("{at}.alerting.{field}.annotations"),
                    &tier.annotations,
                )?;
            }
        }
        Ok(())
    }

    /// What is accepted, as Sloth accepts it, but probably not meant: labels that override the
    /// ones the rules set.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut reserved = |field: String, labels: &Labels| {
            for name in labels.keys() {
                if RESERVED_LABELS.contains(&name.as_str()) {
                    warnings.push(format!(
                        "{field}.{name}: overrides the label the rules set; dashboards and alerts find SLOs by it"
                    ));
                }
            }
        };
        reserved("labels".to_string(), &self.labels);
        for (index, slo) in self.slos.iter().enumerate() {
            reserved(format!("slos[{index}].labels"), &slo.labels);
        }
        warnings
    }
}

impl Slo {
    /// The SLO's id in the generated rules' `sloth_id` label: `<service>-<name>`.
    pub fn id(&self, service: &str) -> String {
        format!("{service}-{}", self.name)
    }
}

/// Service and SLO names go into label values and rule group names: Sloth's rule.
fn check_name(field: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        Err(Error::new(field, "is empty"))
    } else if NAME.is_match(name) {
        Ok(())
    } else {
        Err(Error::new(
            field,
            format!("`{name}` may only hold letters, digits, `-`, `_` and `.`, and must start and end with a letter or digit"),
        ))
    }
}

fn check_plugins(field: &str, plugins: Option<&Value>) -> Result<(), Error> {
    let Some(plugins) = plugins else {
        return Ok(());
    };
    let ids: Vec<String> = plugins
        .get("chain")
        .and_then(Value::as_sequence)
        .map(|chain| {
            chain
                .iter()
                .map(|plugin| {
                    plugin
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty()
        && plugins
            .get("overridePrevious")
            .is_none_or(|o| o.as_bool() != Some(true))
    {
        return Ok(());
    }
    Err(Error::new(
        field,
        format!(
            "{} Sloth SLO plugins, which run Go code homeostat does not run; remove `{}` to get Sloth's default rules, and add what the plugin added (an alert's `for`, extra labels) to the generated file yourself",
            if ids.is_empty() {
                "replaces the default rules with".to_string()
            } else {
                format!(
                    "names {}, which are",
                    ids.iter()
                        .map(|id| format!("`{id}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            field.rsplit('.').next().unwrap_or(field)
        ),
    ))
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Label names as Prometheus allows them (not `__name__`), and values that are not empty.
fn check_labels(field: &str, labels: &Labels) -> Result<(), Error> {
    check_names(field, labels, "label")
}

fn check_annotations(field: &str, annotations: &Labels) -> Result<(), Error> {
    check_names(field, annotations, "annotation")
}

fn check_names(field: &str, map: &Labels, what: &str) -> Result<(), Error> {
    for (name, value) in map {
        if !is_label_name(name) || name == "__name__" {
            return Err(Error::new(
                format!("{field}.{name}"),
                format!("is not a valid {what} name; use letters, digits and `_`, not starting with a digit"),
            ));
        }
        if value.is_empty() {
            return Err(Error::new(
                format!("{field}.{name}"),
                format!("is empty; give the {what} a value or remove it"),
            ));
        }
    }
    Ok(())
}

/// A query must take the window (or every window gives the same ratio) and be valid PromQL.
fn check_query(field: &str, query: &str) -> Result<(), Error> {
    if query.trim().is_empty() {
        return Err(Error::new(field, "is empty"));
    }
    if !rules::has_window(query) {
        return Err(Error::new(
            field,
            "has no `{{.window}}`; use it as the range of the query's rates, as `[{{.window}}]`",
        ));
    }
    let rendered = rules::render_window(query, "1m");
    if rendered.contains("{{") {
        return Err(Error::new(
            field,
            "holds a template other than `{{.window}}`; only `{{.window}}` is replaced",
        ));
    }
    promql_parser::parser::parse(&rendered)
        .map_err(|message| Error::new(field, format!("invalid PromQL: {message}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
