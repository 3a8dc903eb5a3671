//! The Kubernetes actions' inputs, as data. `homeostat-kubernetes` executes them.
//!
//! Every action acts on one object named by kind, namespace and name (or a node), reports what it
//! changed (`changed`, `before`, `after`) and, where the change can be undone, declares its
//! rollback ([`declared_rollback`]) so a run that fails later undoes it without the runbook saying
//! how.

use std::collections::BTreeMap;
use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{inputs, invalid, tagged, Error};

/// A Kubernetes action with its inputs: `Action::Kubernetes`.
#[derive(Clone, Debug, PartialEq)]
pub enum KubeAction {
    RolloutRestart(RolloutRestart),
    Scale(Scale),
    RolloutUndo(RolloutUndo),
    DeletePod(DeletePod),
    Cordon(NodeRef),
    Uncordon(NodeRef),
    Drain(Drain),
    Patch(Patch),
    WaitRollout(WaitRollout),
}

/// Which Kubernetes action, without its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KubeKind {
    RolloutRestart,
    Scale,
    RolloutUndo,
    DeletePod,
    Cordon,
    Uncordon,
    Drain,
    Patch,
    WaitRollout,
}

impl KubeKind {
    /// Every Kubernetes action, in the order hints list them. A new kind must be added here too:
    /// `action:` finds actions by name in this list.
    pub const ALL: [KubeKind; 9] = [
        KubeKind::RolloutRestart,
        KubeKind::Scale,
        KubeKind::RolloutUndo,
        KubeKind::DeletePod,
        KubeKind::Cordon,
        KubeKind::Uncordon,
        KubeKind::Drain,
        KubeKind::Patch,
        KubeKind::WaitRollout,
    ];

    /// The name `action:` gives it: the one place each name is spelled.
    pub const fn name(self) -> &'static str {
        match self {
            KubeKind::RolloutRestart => "kubernetes.rollout_restart",
            KubeKind::Scale => "kubernetes.scale",
            KubeKind::RolloutUndo => "kubernetes.rollout_undo",
            KubeKind::DeletePod => "kubernetes.delete_pod",
            KubeKind::Cordon => "kubernetes.cordon",
            KubeKind::Uncordon => "kubernetes.uncordon",
            KubeKind::Drain => "kubernetes.drain",
            KubeKind::Patch => "kubernetes.patch",
            KubeKind::WaitRollout => "kubernetes.wait_rollout",
        }
    }

    /// Whether it only reads from the cluster, and so is safe to run again after a crash.
    pub const fn only_reads(self) -> bool {
        match self {
            KubeKind::WaitRollout => true,
            KubeKind::RolloutRestart
            | KubeKind::Scale
            | KubeKind::RolloutUndo
            | KubeKind::DeletePod
            | KubeKind::Cordon
            | KubeKind::Uncordon
            | KubeKind::Drain
            | KubeKind::Patch => false,
        }
    }

    /// The Kubernetes action `action:` names, if it names one.
    pub fn from_name(name: &str) -> Option<KubeKind> {
        KubeKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// What undoes this action: the rollback's action and its inputs, templates over the
    /// action's output (`result`). See [`declared_rollback`].
    pub fn declared_rollback(self) -> Option<(KubeKind, Value)> {
        use serde_json::json;
        let object = json!({
            "kind": "{{ result.kind }}",
            "namespace": "{{ result.namespace }}",
            "name": "{{ result.name }}",
        });
        let with = |extra: Value| {
            let mut inputs = object.clone();
            if let (Some(inputs), Some(extra)) = (inputs.as_object_mut(), extra.as_object()) {
                inputs.extend(extra.clone());
            }
            inputs
        };
        match self {
            KubeKind::Scale => Some((
                KubeKind::Scale,
                with(json!({
                    "replicas": "{{ result.previous_replicas }}",
                    "min": "{{ result.previous_replicas }}",
                    "max": "{{ result.previous_replicas }}",
                })),
            )),
            KubeKind::Cordon | KubeKind::Drain => {
                Some((KubeKind::Uncordon, json!({ "node": "{{ result.node }}" })))
            }
            KubeKind::Uncordon => Some((KubeKind::Cordon, json!({ "node": "{{ result.node }}" }))),
            KubeKind::RolloutUndo => Some((
                KubeKind::RolloutUndo,
                json!({
                    "namespace": "{{ result.namespace }}",
                    "name": "{{ result.name }}",
                    "to_revision": "{{ result.from_revision }}",
                }),
            )),
            KubeKind::Patch => Some((
                KubeKind::Patch,
                with(json!({
                    "labels": "{{ result.undo.labels | tojson }}",
                    "annotations": "{{ result.undo.annotations | tojson }}",
                    "env": "{{ result.undo.env | tojson }}",
                    "container": "{{ result.undo.container }}",
                })),
            )),
            // A restart and a deletion replace pods, which nothing puts back; waiting changes
            // nothing.
            KubeKind::RolloutRestart | KubeKind::DeletePod | KubeKind::WaitRollout => None,
        }
    }
}

/// The names of the Kubernetes actions, as `action:` gives them.
pub const NAMES: [&str; KubeKind::ALL.len()] = {
    let mut names = [""; KubeKind::ALL.len()];
    let mut index = 0;
    while index < KubeKind::ALL.len() {
        names[index] = KubeKind::ALL[index].name();
        index += 1;
    }
    names
};

impl KubeAction {
    pub fn kind(&self) -> KubeKind {
        match self {
            KubeAction::RolloutRestart(_) => KubeKind::RolloutRestart,
            KubeAction::Scale(_) => KubeKind::Scale,
            KubeAction::RolloutUndo(_) => KubeKind::RolloutUndo,
            KubeAction::DeletePod(_) => KubeKind::DeletePod,
            KubeAction::Cordon(_) => KubeKind::Cordon,
            KubeAction::Uncordon(_) => KubeKind::Uncordon,
            KubeAction::Drain(_) => KubeKind::Drain,
            KubeAction::Patch(_) => KubeKind::Patch,
            KubeAction::WaitRollout(_) => KubeKind::WaitRollout,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Reads the inputs of the action `kind` names.
    pub(super) fn from_inputs(kind: KubeKind, with: Value) -> Result<KubeAction, Error> {
        Ok(match kind {
            KubeKind::RolloutRestart => KubeAction::RolloutRestart(inputs(with)?),
            KubeKind::Scale => KubeAction::Scale(inputs(with)?),
            KubeKind::RolloutUndo => KubeAction::RolloutUndo(inputs(with)?),
            KubeKind::DeletePod => KubeAction::DeletePod(inputs(with)?),
            KubeKind::Cordon => KubeAction::Cordon(inputs(with)?),
            KubeKind::Uncordon => KubeAction::Uncordon(inputs(with)?),
            KubeKind::Drain => KubeAction::Drain(inputs(with)?),
            KubeKind::Patch => KubeAction::Patch(inputs(with)?),
            KubeKind::WaitRollout => KubeAction::WaitRollout(inputs(with)?),
        })
    }

    /// The checks of the inputs that their types cannot make.
    pub(super) fn validate(&self) -> Result<(), Error> {
        match self {
            KubeAction::Scale(scale) => validate_scale(scale),
            KubeAction::Patch(patch) => validate_patch(patch),
            KubeAction::Drain(drain) => match drain.timeout_secs {
                Int::Value(secs) if secs <= 0 => invalid(
                    "with.timeout_secs",
                    "`timeout_secs` must be positive",
                    "give the seconds evictions may take, under the step's `timeout_secs`",
                ),
                _ => Ok(()),
            },
            KubeAction::WaitRollout(wait) if wait.poll_secs.is_nan() || wait.poll_secs <= 0.0 => {
                invalid(
                    "with.poll_secs",
                    "`poll_secs` must be positive",
                    "look every few seconds: `poll_secs: 2`",
                )
            }
            KubeAction::WaitRollout(_)
            | KubeAction::RolloutRestart(_)
            | KubeAction::RolloutUndo(_)
            | KubeAction::DeletePod(_)
            | KubeAction::Cordon(_)
            | KubeAction::Uncordon(_) => Ok(()),
        }
    }
}

/// As `Action` writes it: `{"action": NAME, "with": INPUTS}`.
impl Serialize for KubeAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let name = self.name();
        match self {
            KubeAction::RolloutRestart(with) => tagged(serializer, name, with),
            KubeAction::Scale(with) => tagged(serializer, name, with),
            KubeAction::RolloutUndo(with) => tagged(serializer, name, with),
            KubeAction::DeletePod(with) => tagged(serializer, name, with),
            KubeAction::Cordon(with) | KubeAction::Uncordon(with) => tagged(serializer, name, with),
            KubeAction::Drain(with) => tagged(serializer, name, with),
            KubeAction::Patch(with) => tagged(serializer, name, with),
            KubeAction::WaitRollout(with) => tagged(serializer, name, with),
        }
    }
}

fn validate_scale(scale: &Scale) -> Result<(), Error> {
    for (field, value) in [
        ("with.replicas", &scale.replicas),
        ("with.min", &scale.min),
        ("with.max", &scale.max),
    ] {
        if let Int::Value(number) = value {
            if *number < 0 || *number > i64::from(i32::MAX) {
                return invalid(
                    field,
                    format!("`{}` must be a replica count, not {number}", &field[5..]),
                    "use a whole number from 0",
                );
            }
        }
    }
    if let (Int::Value(min), Int::Value(max)) = (&scale.min, &scale.max) {
        if min > max {
            return invalid(
                "with.min",
                format!("`min` ({min}) is above `max` ({max})"),
                "set `min` at or below `max`",
            );
        }
    }
    Ok(())
}

fn validate_patch(patch: &Patch) -> Result<(), Error> {
    if !patch.env.is_empty() && !patch.kind.has_pod_template() {
        return invalid(
            "with.env",
            format!(
                "a {} has no pod template to set `env` in",
                patch.kind.as_str()
            ),
            "set `env` on a Deployment, StatefulSet or DaemonSet",
        );
    }
    if patch.container.as_deref().is_some_and(|c| !c.is_empty()) && patch.env.is_empty() {
        return invalid(
            "with.container",
            "`container` names where `env` goes, and `env` is empty",
            "add `env`, or drop `container`",
        );
    }
    Ok(())
}

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
pub fn declared_rollback(action: &str) -> Option<(&'static str, Value)> {
    let (undo, with) = KubeKind::from_name(action)?.declared_rollback()?;
    Some((undo.name(), with))
}
