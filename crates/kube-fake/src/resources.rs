//! The table of resources the fake serves: group, version, plural, kind and scope.

/// One resource type the fake knows about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// The API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether `.status` is owned by the `status` subresource (so writes to the main resource
    /// keep it), as for workloads and pods; config-like kinds (ConfigMap, Event) have none.
    pub status: bool,
    /// Whether the `scale` subresource exists (Deployments, StatefulSets, ReplicaSets).
    pub scale: bool,
}

impl ResourceDef {
    /// A resource definition, for [`crate::FakeApi::add_resource`] (custom resources).
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
            status: true,
            scale: false,
        }
    }

    /// `v1` for the core group, `group/version` otherwise, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`: how the real server names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The built-in resources (see the crate documentation).
pub fn builtin() -> Vec<ResourceDef> {
    let def =
        |group: &str, plural: &str, kind: &str, namespaced: bool, status: bool, scale: bool| {
            let version = "v1";
            ResourceDef {
                group: group.to_string(),
                version: version.to_string(),
                plural: plural.to_string(),
                kind: kind.to_string(),
                namespaced,
                status,
                scale,
            }
        };
    vec![
        def("", "pods", "Pod", true, true, false),
        def("", "events", "Event", true, false, false),
        def("", "nodes", "Node", false, true, false),
        def("", "namespaces", "Namespace", false, true, false),
        def("", "configmaps", "ConfigMap", true, false, false),
        def("", "services", "Service", true, true, false),
        def("", "serviceaccounts", "ServiceAccount", true, false, false),
        def("apps", "deployments", "Deployment", true, true, true),
        def("apps", "replicasets", "ReplicaSet", true, true, true),
        def("apps", "statefulsets", "StatefulSet", true, true, true),
        def("apps", "daemonsets", "DaemonSet", true, true, false),
        def(
            "apps",
            "controllerrevisions",
            "ControllerRevision",
            true,
            false,
            false,
        ),
        def(
            "policy",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            true,
            false,
        ),
        def("events.k8s.io", "events", "Event", true, false, false),
    ]
}
