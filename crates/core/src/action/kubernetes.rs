//! The Kubernetes actions' inputs, as data. `homeostat-kubernetes` executes them.
//!
//! Every action acts on one object named by kind, namespace and name (or a node), reports what it
//! changed (`changed`, `before`, `after`) and, where the change can be undone, declares its
//! rollback ([`declared_rollback`]) so a run that fails later undoes it without the runbook saying
//! how.

use std::collections::BTreeMap;
use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize};

/// A workload with a pod template that a rollout replaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }
}

/// A workload with a `scale` subresource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScaleKind {
    #[default]
    Deployment,
    StatefulSet,
    ReplicaSet,
}

impl ScaleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleKind::Deployment => "Deployment",
            ScaleKind::StatefulSet => "StatefulSet",
            ScaleKind::ReplicaSet => "ReplicaSet",
        }
    }
}

/// What `kubernetes.patch` may change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PatchKind {
    #[default]
    Deployment,
    StatefulSet,
    DaemonSet,
    Pod,
    Node,
    Service,
    ConfigMap,
    Namespace,
}

impl PatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchKind::Deployment => "Deployment",
            PatchKind::StatefulSet => "StatefulSet",
            PatchKind::DaemonSet => "DaemonSet",
            PatchKind::Pod => "Pod",
            PatchKind::Node => "Node",
            PatchKind::Service => "Service",
            PatchKind::ConfigMap => "ConfigMap",
            PatchKind::Namespace => "Namespace",
        }
    }

    /// Workloads have a pod template, so `env` applies to them.
    pub fn has_pod_template(self) -> bool {
        matches!(
            self,
            PatchKind::Deployment | PatchKind::StatefulSet | PatchKind::DaemonSet
        )
    }

    /// Nodes and namespaces are cluster-scoped.
    pub fn namespaced(self) -> bool {
        !matches!(self, PatchKind::Node | PatchKind::Namespace)
    }
}

/// A whole number that may still be a template when the config is checked (`"{{ params.n }}"`);
/// after rendering it must be a number or a string of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Int {
    Value(i64),
    Template(String),
}

impl Int {
    /// The number, or a message naming what is wrong.
    pub fn value(&self) -> Result<i64, String> {
        match self {
            Int::Value(value) => Ok(*value),
            Int::Template(text) => Err(format!("`{text}` was not rendered to a number")),
        }
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Int, E> {
                Ok(Int::Value(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Int, E> {
                i64::try_from(value)
                    .map(Int::Value)
                    .map_err(|_| E::custom(format!("{value} is too large")))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Int, E> {
                if value.fract() == 0.0 && value.abs() < 9e15 {
                    Ok(Int::Value(value as i64))
                } else {
                    Err(E::custom(format!("expected a whole number, not {value}")))
                }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Int, E> {
                let trimmed = text.trim();
                if let Ok(value) = trimmed.parse::<i64>() {
                    return Ok(Int::Value(value));
                }
                if let Ok(value) = trimmed.parse::<f64>() {
                    return self.visit_f64(value);
                }
                if text.contains("{{") || text.contains("{%") {
                    return Ok(Int::Template(text.to_string()));
                }
                Err(E::custom(format!("expected a whole number, not `{text}`")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A map of names to values, where a null value removes the name. Also taken as the JSON text of
/// such a map, which is what a template renders (`"{{ result.undo.labels | tojson }}"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Changes(pub BTreeMap<String, Option<String>>);

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Map(BTreeMap<String, Option<Scalar>>),
            Text(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Number(serde_json::Number),
            Bool(bool),
        }
        let scalar = |value: Option<Scalar>| {
            value.map(|value| match value {
                Scalar::Text(text) => text,
                Scalar::Number(number) => number.to_string(),
                Scalar::Bool(flag) => flag.to_string(),
            })
        };
        match Raw::deserialize(deserializer).map_err(|_| {
            de::Error::custom("expected a map of names to strings (null removes a name)")
        })? {
            Raw::Map(map) => Ok(Changes(
                map.into_iter()
                    .map(|(key, value)| (key, scalar(value)))
                    .collect(),
            )),
            Raw::Text(text) if text.trim().is_empty() => Ok(Changes::default()),
            Raw::Text(text) if text.contains("{{") || text.contains("{%") => {
                // Checked before rendering: the template renders the map.
                Ok(Changes::default())
            }
            Raw::Text(text) => {
                let map: BTreeMap<String, Option<Scalar>> =
                    serde_json::from_str(&text).map_err(|error| {
                        de::Error::custom(format!(
                            "expected a map or its JSON text, not `{text}`: {error}"
                        ))
                    })?;
                Ok(Changes(
                    map.into_iter()
                        .map(|(key, value)| (key, scalar(value)))
                        .collect(),
                ))
            }
        }
    }
}

/// `kubernetes.rollout_restart`: as `kubectl rollout restart`, stamps the pod template with
/// `kubectl.kubernetes.io/restartedAt` so the controller replaces every pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRestart {
    #[serde(default)]
    pub kind: WorkloadKind,
    /// The client's default namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
}

/// `kubernetes.scale`: sets the replicas through the `scale` subresource, kept within `min` and
/// `max` whatever the rule asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    #[serde(default)]
    pub kind: ScaleKind,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    pub replicas: Int,
    /// The fewest replicas this step may leave; 1 unless set, so nothing scales to zero by
    /// accident.
    #[serde(default = "one")]
    pub min: Int,
    /// The most replicas this step may set. Required: a bound the rule cannot exceed.
    pub max: Int,
}

fn one() -> Int {
    Int::Value(1)
}

/// `kubernetes.rollout_undo`: as `kubectl rollout undo`, puts back the pod template of the
/// previous ReplicaSet revision (or `to_revision`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutUndo {
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Deployment.
    pub name: String,
    /// The revision to go back to; the one before the current when absent.
    #[serde(default)]
    pub to_revision: Option<Int>,
}

/// `kubernetes.delete_pod`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePod {
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    /// The pod's own grace period when absent.
    #[serde(default)]
    pub grace_period_secs: Option<Int>,
}

/// `kubernetes.cordon` and `kubernetes.uncordon`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    pub node: String,
}

/// `kubernetes.drain`: cordons the node, then evicts its pods through the Eviction API, so
/// PodDisruptionBudgets are respected (a refused eviction is retried until `timeout_secs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    pub node: String,
    /// How long evictions may be retried and pods waited for; keep it under the step's timeout.
    #[serde(default = "drain_timeout")]
    pub timeout_secs: Int,
    /// The pods' own grace periods when absent.
    #[serde(default)]
    pub grace_period_secs: Option<Int>,
    /// DaemonSet pods are left alone (their controller would recreate them at once).
    #[serde(default = "yes")]
    pub ignore_daemonsets: bool,
    /// Pods with `emptyDir` volumes lose that data when evicted; refused unless true.
    #[serde(default)]
    pub delete_emptydir_data: bool,
    /// Pods without a controller are never recreated; refused unless true.
    #[serde(default)]
    pub force: bool,
}

fn drain_timeout() -> Int {
    Int::Value(50)
}

fn yes() -> bool {
    true
}

/// `kubernetes.patch`: labels, annotations, and (for workloads) container environment variables.
/// A null value removes the name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    #[serde(default)]
    pub kind: PatchKind,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub labels: Changes,
    #[serde(default)]
    pub annotations: Changes,
    /// Environment variables of the pod template's containers.
    #[serde(default)]
    pub env: Changes,
    /// The container whose `env` changes; every container when absent.
    #[serde(default)]
    pub container: Option<String>,
}

/// `kubernetes.wait_rollout`: until the rollout is complete (every replica updated and
/// available, no old ones left), or the step's timeout. Fails at once when the Deployment reports
/// `ProgressDeadlineExceeded`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRollout {
    #[serde(default)]
    pub kind: WorkloadKind,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    /// How often to look, in seconds.
    #[serde(default = "poll_secs")]
    pub poll_secs: f64,
}

fn poll_secs() -> f64 {
    2.0
}

/// What an action declares undoes it: the rollback's action and its inputs, templates over the
/// action's output (`result`). The runbook compiler adds it to a step that declares none of its own. A step
/// whose outputs say `changed: false` registers no rollback.
pub fn declared_rollback(action: &str) -> Option<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let object = json!({
        "kind": "{{ result.kind }}",
        "namespace": "{{ result.namespace }}",
        "name": "{{ result.name }}",
    });
    let with = |extra: serde_json::Value| {
        let mut inputs = object.clone();
        if let (Some(inputs), Some(extra)) = (inputs.as_object_mut(), extra.as_object()) {
            inputs.extend(extra.clone());
        }
        inputs
    };
    match action {
        "kubernetes.scale" => Some((
            "kubernetes.scale",
            with(json!({
                "replicas": "{{ result.previous_replicas }}",
                "min": "{{ result.previous_replicas }}",
                "max": "{{ result.previous_replicas }}",
            })),
        )),
        "kubernetes.cordon" | "kubernetes.drain" => Some((
            "kubernetes.uncordon",
            json!({ "node": "{{ result.node }}" }),
        )),
        "kubernetes.uncordon" => {
            Some(("kubernetes.cordon", json!({ "node": "{{ result.node }}" })))
        }
        "kubernetes.rollout_undo" => Some((
            "kubernetes.rollout_undo",
            json!({
                "namespace": "{{ result.namespace }}",
                "name": "{{ result.name }}",
                "to_revision": "{{ result.from_revision }}",
            }),
        )),
        "kubernetes.patch" => Some((
            "kubernetes.patch",
            with(json!({
                "labels": "{{ result.undo.labels | tojson }}",
                "annotations": "{{ result.undo.annotations | tojson }}",
                "env": "{{ result.undo.env | tojson }}",
                "container": "{{ result.undo.container }}",
            })),
        )),
        _ => None,
    }
}
