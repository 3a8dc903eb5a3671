//! The RBAC permissions homeostat needs, per Kubernetes action and per watch-source setting.
//!
//! This table is the one source of truth for the deployment: `deploy/kubernetes/rbac.yaml` and
//! the Helm chart's `templates/_permissions.tpl` write the same grants by hand (with a comment per
//! action), and `tests/it/deploy.rs` checks that both equal [`rules`] exactly, so a new API call in
//! an action fails CI until the manifests grant it, and a grant no action uses fails it too.
//!
//! Each entry is what the kube-rs requests of the action or source send: a `get` before every
//! change (to report `before`), `patch` for changes (server-side merge patches, never `update`,
//! so no `update` verb), and `list`/`watch` only where something lists or watches.

use std::collections::{BTreeMap, BTreeSet};

use homeostat_core::action::KubeKind;
use k8s_openapi::api::rbac::v1::PolicyRule;

/// The Kubernetes actions, as `action:` names them in a step.
pub const ACTIONS: &[&str] = &homeostat_core::action::kubernetes::NAMES;

/// Where a grant has to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// In a Role in each namespace homeostat watches and acts on.
    Namespaced,
    /// In a ClusterRole: cluster-scoped resources (nodes, namespaces), and namespaced ones that
    /// are used across every namespace (drain's pods on a node, a source watching everything).
    Cluster,
}

/// What the `kubernetes_events` source is configured to watch, which decides what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceNeeds {
    /// `pods: true`: pod states (CrashLoopBackOff, ...) from a pod list/watch.
    pub pods: bool,
    /// `deployments: true`: rollouts from a deployment list/watch.
    pub deployments: bool,
    /// `namespaces: []`: the source watches every namespace, so its grants are cluster-wide.
    pub all_namespaces: bool,
}

impl Default for SourceNeeds {
    /// The source as the example config sets it: pods and deployments, in named namespaces.
    fn default() -> Self {
        Self {
            pods: true,
            deployments: true,
            all_namespaces: false,
        }
    }
}

/// One grant: verbs on one resource of one API group (`""` is the core group).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub scope: Scope,
    pub group: &'static str,
    /// A resource or a subresource (`deployments/scale`, `pods/eviction`).
    pub resource: &'static str,
    /// Sorted, without duplicates.
    pub verbs: Vec<&'static str>,
}

impl From<&Permission> for PolicyRule {
    fn from(permission: &Permission) -> Self {
        PolicyRule {
            api_groups: Some(vec![permission.group.to_string()]),
            resources: Some(vec![permission.resource.to_string()]),
            verbs: permission
                .verbs
                .iter()
                .map(|verb| verb.to_string())
                .collect(),
            ..PolicyRule::default()
        }
    }
}

impl From<Permission> for PolicyRule {
    fn from(permission: Permission) -> Self {
        PolicyRule::from(&permission)
    }
}

/// An unmerged grant: scope, group, resources, verbs.
type Grant = (
    Scope,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const POLICY: &str = "policy";
const APPS: &str = "apps";
const CORE: &str = "";
const WORKLOADS: &[&str] = &["deployments", "statefulsets", "daemonsets"];

/// What one action's requests need.
fn action_grants(action: KubeKind) -> Vec<Grant> {
    use Scope::{Cluster, Namespaced};
    match action {
        // Reads the workload, then patches its pod template's restartedAt annotation.
        KubeKind::RolloutRestart => vec![(Namespaced, APPS, WORKLOADS, &["get", "patch"])],
        // Reads and patches the scale subresource, never the workload itself.
        KubeKind::Scale => vec![(
            Namespaced,
            APPS,
            &[
                "deployments/scale",
                "statefulsets/scale",
                "replicasets/scale",
            ],
            &["get", "patch"],
        )],
        // Finds the previous revision among the Deployment's ReplicaSets, then patches its
        // template back into the Deployment.
        KubeKind::RolloutUndo => vec![
            (Namespaced, APPS, &["deployments"], &["get", "patch"]),
            (Namespaced, APPS, &["replicasets"], &["list"]),
        ],
        KubeKind::DeletePod => vec![(Namespaced, CORE, &["pods"], &["get", "delete"])],
        KubeKind::Cordon | KubeKind::Uncordon => {
            vec![(Cluster, CORE, &["nodes"], &["get", "patch"])]
        }
        // Cordons, lists the node's pods in every namespace (fieldSelector spec.nodeName), evicts
        // them (so PodDisruptionBudgets hold) and deletes the ones already finished; when an
        // eviction is refused without naming the budget, lists the budgets to say which.
        KubeKind::Drain => vec![
            (Cluster, CORE, &["nodes"], &["get", "patch"]),
            (Cluster, CORE, &["pods"], &["list", "get", "delete"]),
            (Cluster, CORE, &["pods/eviction"], &["create"]),
            (Cluster, POLICY, &["poddisruptionbudgets"], &["list"]),
        ],
        // Labels, annotations and (on workloads) env, on exactly the kinds PatchKind names.
        KubeKind::Patch => vec![
            (Namespaced, APPS, WORKLOADS, &["get", "patch"]),
            (
                Namespaced,
                CORE,
                &["pods", "services", "configmaps"],
                &["get", "patch"],
            ),
            (Cluster, CORE, &["nodes", "namespaces"], &["get", "patch"]),
        ],
        // Polls the workload's status only.
        KubeKind::WaitRollout => vec![(Namespaced, APPS, WORKLOADS, &["get"])],
    }
}

/// What the `kubernetes_events` source's requests need.
fn source_grants(source: SourceNeeds) -> Vec<Grant> {
    let scope = if source.all_namespaces {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    // Events always; the pod and ReplicaSet gets find the Deployment an event's pod belongs to.
    let mut grants: Vec<Grant> = vec![
        (scope, CORE, &["events"], &["list", "watch"]),
        (scope, CORE, &["pods"], &["get"]),
        (scope, APPS, &["replicasets"], &["get"]),
    ];
    if source.pods {
        grants.push((scope, CORE, &["pods"], &["list", "watch"]));
    }
    if source.deployments {
        grants.push((scope, APPS, &["deployments"], &["list", "watch"]));
    }
    grants
}

/// The permissions for these actions and, when homeostat runs the `kubernetes_events` source,
/// for that source: one [`Permission`] per scope, group and resource, with the verbs of every
/// grant merged, sorted by scope, group and resource.
///
/// # Panics
///
/// On a name that is not one of [`ACTIONS`]: a typo must not quietly grant nothing.
pub fn rules(actions: &[&str], source: Option<SourceNeeds>) -> Vec<Permission> {
    let mut grants = Vec::new();
    for action in actions {
        match KubeKind::from_name(action) {
            Some(kind) => grants.extend(action_grants(kind)),
            None => panic!(
                "`{action}` is not a Kubernetes action; use one of {}",
                ACTIONS.join(", ")
            ),
        }
    }
    if let Some(source) = source {
        grants.extend(source_grants(source));
    }
    merge(grants)
}

fn merge(grants: Vec<Grant>) -> Vec<Permission> {
    let mut merged: BTreeMap<(Scope, &'static str, &'static str), BTreeSet<&'static str>> =
        BTreeMap::new();
    for (scope, group, resources, verbs) in grants {
        for resource in resources {
            merged
                .entry((scope, group, resource))
                .or_default()
                .extend(verbs.iter().copied());
        }
    }
    merged
        .into_iter()
        .map(|((scope, group, resource), verbs)| Permission {
            scope,
            group,
            resource,
            verbs: verbs.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permissions as `scope group/resource: verbs` lines, to compare at a glance.
    fn lines(actions: &[&str], source: Option<SourceNeeds>) -> Vec<String> {
        rules(actions, source)
            .iter()
            .map(|p| {
                let scope = match p.scope {
                    Scope::Namespaced => "ns",
                    Scope::Cluster => "cluster",
                };
                let group = if p.group.is_empty() { "core" } else { p.group };
                format!("{scope} {group}/{}: {}", p.resource, p.verbs.join(","))
            })
            .collect()
    }

    #[test]
    fn every_kubernetes_action_core_accepts_has_grants() {
        let core: Vec<&str> = homeostat_core::action::NAMES
            .iter()
            .copied()
            .filter(|name| KubeKind::from_name(name).is_some())
            .collect();
        assert_eq!(ACTIONS, core.as_slice());
        for kind in KubeKind::ALL {
            assert!(
                !action_grants(kind).is_empty(),
                "{} has no grants",
                kind.name()
            );
        }
    }

    #[test]
    fn rollout_restart_gets_and_patches_workloads() {
        assert_eq!(
            lines(&["kubernetes.rollout_restart"], None),
            [
                "ns apps/daemonsets: get,patch",
                "ns apps/deployments: get,patch",
                "ns apps/statefulsets: get,patch",
            ]
        );
    }

    #[test]
    fn scale_uses_only_the_scale_subresources() {
        assert_eq!(
            lines(&["kubernetes.scale"], None),
            [
                "ns apps/deployments/scale: get,patch",
                "ns apps/replicasets/scale: get,patch",
                "ns apps/statefulsets/scale: get,patch",
            ]
        );
    }

    #[test]
    fn rollout_undo_lists_replicasets_and_patches_the_deployment() {
        assert_eq!(
            lines(&["kubernetes.rollout_undo"], None),
            [
                "ns apps/deployments: get,patch",
                "ns apps/replicasets: list"
            ]
        );
    }

    #[test]
    fn delete_pod_gets_and_deletes_pods() {
        assert_eq!(
            lines(&["kubernetes.delete_pod"], None),
            ["ns core/pods: delete,get"]
        );
    }

    #[test]
    fn cordon_and_uncordon_patch_nodes_cluster_wide() {
        for action in ["kubernetes.cordon", "kubernetes.uncordon"] {
            assert_eq!(
                lines(&[action], None),
                ["cluster core/nodes: get,patch"],
                "{action}"
            );
        }
    }

    #[test]
    fn drain_evicts_pods_in_every_namespace() {
        assert_eq!(
            lines(&["kubernetes.drain"], None),
            [
                "cluster core/nodes: get,patch",
                "cluster core/pods: delete,get,list",
                "cluster core/pods/eviction: create",
                "cluster policy/poddisruptionbudgets: list",
            ]
        );
    }

    #[test]
    fn patch_reaches_exactly_the_patchable_kinds() {
        assert_eq!(
            lines(&["kubernetes.patch"], None),
            [
                "ns core/configmaps: get,patch",
                "ns core/pods: get,patch",
                "ns core/services: get,patch",
                "ns apps/daemonsets: get,patch",
                "ns apps/deployments: get,patch",
                "ns apps/statefulsets: get,patch",
                "cluster core/namespaces: get,patch",
                "cluster core/nodes: get,patch",
            ]
        );
    }

    #[test]
    fn wait_rollout_only_reads() {
        assert_eq!(
            lines(&["kubernetes.wait_rollout"], None),
            [
                "ns apps/daemonsets: get",
                "ns apps/deployments: get",
                "ns apps/statefulsets: get",
            ]
        );
    }

    #[test]
    fn the_source_watches_only_what_it_is_configured_for() {
        assert_eq!(
            lines(&[], Some(SourceNeeds::default())),
            [
                "ns core/events: list,watch",
                "ns core/pods: get,list,watch",
                "ns apps/deployments: list,watch",
                "ns apps/replicasets: get",
            ]
        );
        let events_only = SourceNeeds {
            pods: false,
            deployments: false,
            all_namespaces: true,
        };
        assert_eq!(
            lines(&[], Some(events_only)),
            [
                "cluster core/events: list,watch",
                "cluster core/pods: get",
                "cluster apps/replicasets: get",
            ]
        );
    }

    #[test]
    fn grants_merge_per_resource_and_scope() {
        let all = rules(ACTIONS, Some(SourceNeeds::default()));
        let deployments = all
            .iter()
            .find(|p| p.scope == Scope::Namespaced && p.resource == "deployments")
            .map(|p| p.verbs.clone());
        assert_eq!(deployments, Some(vec!["get", "list", "patch", "watch"]));
        // Drain's cluster-wide pod grants stay apart from the namespaced ones delete_pod needs.
        let pods: Vec<Scope> = all
            .iter()
            .filter(|p| p.resource == "pods")
            .map(|p| p.scope)
            .collect();
        assert_eq!(pods, [Scope::Namespaced, Scope::Cluster]);
        let unique: BTreeSet<_> = all.iter().map(|p| (p.scope, p.group, p.resource)).collect();
        assert_eq!(unique.len(), all.len());
        // No action escalates: none of these verbs can create or bind roles, or read secrets.
        assert!(all.iter().all(|p| !p.resource.starts_with("secrets")
            && !p
                .verbs
                .iter()
                .any(|v| ["*", "bind", "escalate", "impersonate"].contains(v))));
    }

    #[test]
    fn a_permission_becomes_a_policy_rule() {
        let rule = PolicyRule::from(&rules(&["kubernetes.scale"], None)[0]);
        assert_eq!(rule.api_groups, Some(vec!["apps".to_string()]));
        assert_eq!(rule.resources, Some(vec!["deployments/scale".to_string()]));
        assert_eq!(rule.verbs, ["get", "patch"]);
        assert_eq!(rule.resource_names, None);
    }

    #[test]
    #[should_panic(expected = "not a Kubernetes action")]
    fn an_unknown_action_is_refused() {
        rules(&["kubernetes.rollout_restrat"], None);
    }
}
