//! `kubernetes:` (the cluster connection the source and the actions share) and the
//! `kubernetes_events` source.

use serde::{Deserialize, Serialize};

/// Top-level `kubernetes:`. With no field set, homeostat uses the pod's service account when it
/// runs in a cluster, else `~/.kube/config` and its current context.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// A kubeconfig file to read instead of the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context; its current context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The API server's URL with no authentication, as `kubectl proxy` serves it (and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The namespace of actions that name none; the kubeconfig's or service account's otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `sources: - type: kubernetes_events`: Events, pod states and rollouts from the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesEventsSource {
    pub name: String,
    /// The namespaces to watch; every namespace when empty (which needs cluster-wide list and
    /// watch permissions).
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_selector: Option<String>,
    /// Which Event types become homeostat events.
    #[serde(default = "warning")]
    pub event_types: Vec<String>,
    /// Also watch Pods for states: crash loops, image pull failures, OOM kills.
    #[serde(default = "yes")]
    pub pods: bool,
    /// Also watch Deployments: rollouts become `change` events, stuck rollouts fire.
    #[serde(default = "yes")]
    pub deployments: bool,
    /// On a first start, Events older than this are history, not news.
    #[serde(default = "max_age_secs")]
    pub max_age_secs: u64,
    /// Labels added to every event from this source (say, the cluster's name).
    #[serde(default)]
    pub labels: crate::Labels,
}

fn warning() -> Vec<String> {
    vec!["Warning".into()]
}

fn yes() -> bool {
    true
}

fn max_age_secs() -> u64 {
    300
}
