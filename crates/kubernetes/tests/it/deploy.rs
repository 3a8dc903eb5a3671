//! The deployment files checked as a cluster would read them: `deploy/kubernetes/` (and what
//! `kubectl kustomize` makes of it, where kubectl is installed) and the Helm chart rendered by
//! `helm template` with several values (where helm is installed; `deploy/ci/install-helm.sh`
//! installs it).
//!
//! - Every object parses into its k8s-openapi type and serializes back to exactly the input, so a
//!   misspelled or misplaced field, which serde would silently drop, fails naming the field.
//! - The Roles and ClusterRoles grant exactly `permissions::rules` for the enabled actions.
//! - The ConfigMap holds a homeostat config that parses and compiles.
//! - The Deployment probes `/healthz` and `/readyz` on the port the config listens on, as non-root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use homeostat_kubernetes::permissions::{self, Scope, SourceNeeds};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/homeostat")
}

/// One YAML document, with where it came from for messages.
#[derive(Clone, Debug)]
struct Doc {
    origin: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }

    fn typed<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.value.clone())
            .unwrap_or_else(|error| panic!("{}: {error}", self.origin))
    }
}

/// Every non-empty document of a multi-document YAML text.
fn documents(text: &str, origin: &str) -> Vec<Doc> {
    serde_yaml_ng::Deserializer::from_str(text)
        .enumerate()
        .filter_map(|(index, document)| {
            let value = Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{origin}, document {}: {error}", index + 1));
            (!value.is_null()).then(|| Doc {
                origin: format!("{origin}, document {}", index + 1),
                value,
            })
        })
        .map(|mut doc| {
            doc.origin = format!(
                "{} ({} {})",
                doc.origin,
                doc.kind(),
                match doc.namespace() {
                    Some(namespace) => format!("{namespace}/{}", doc.name()),
                    None => doc.name().to_string(),
                }
            );
            doc
        })
        .collect()
}

/// The manifests kustomization.yaml applies, in its order.
fn manifest_docs() -> Vec<Doc> {
    kustomization()
        .resources
        .iter()
        .flat_map(|file| {
            let path = manifests_dir().join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            documents(&text, &format!("deploy/kubernetes/{file}"))
        })
        .collect()
}

/// The fields of kustomization.yaml these manifests use; any other is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
}

fn kustomization() -> Kustomization {
    let path = manifests_dir().join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/kubernetes/kustomization.yaml");
    serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Strict schema checks: typed parse, then serialize back and compare.

/// The Prometheus Operator's ServiceMonitor (a CRD k8s-openapi does not have): the fields the
/// manifests use, and no others.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<NamespaceSelector>,
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scrape_timeout: Option<String>,
}

/// Parses `doc` as `T` and requires that serializing it gives back the input exactly.
fn round_trip<T: Serialize + DeserializeOwned>(doc: &Doc) -> Result<(), String> {
    let typed: T = serde_path_to_error::deserialize(doc.value.clone()).map_err(|error| {
        let path = error.path().to_string();
        format!("{}: at `{path}`: {}", doc.origin, error.into_inner())
    })?;
    let back = serde_json::to_value(&typed).map_err(|error| format!("{}: {error}", doc.origin))?;
    match first_difference(&doc.value, &back, "") {
        None => Ok(()),
        Some(difference) => Err(format!(
            "{}: {difference} (k8s-openapi's {} type has no such field there: misspelled or misplaced?)",
            doc.origin,
            std::any::type_name::<T>().rsplit("::").next().unwrap_or("")
        )),
    }
}

/// Where `input` and what the typed value serialized to differ first, as a field path.
fn first_difference(input: &Value, back: &Value, path: &str) -> Option<String> {
    match (input, back) {
        (Value::Object(input), Value::Object(back)) => {
            for (key, value) in input {
                let field = format!("{path}.{key}");
                match back.get(key) {
                    None => return Some(format!("field `{}` was dropped", &field[1..])),
                    Some(other) => {
                        if let Some(difference) = first_difference(value, other, &field) {
                            return Some(difference);
                        }
                    }
                }
            }
            back.keys()
                .find(|key| !input.contains_key(*key))
                .map(|key| format!("field `{}.{key}` appeared", path.trim_start_matches('.')))
        }
        (Value::Array(input), Value::Array(back)) if input.len() == back.len() => input
            .iter()
            .zip(back)
            .enumerate()
            .find_map(|(index, (a, b))| first_difference(a, b, &format!("{path}[{index}]"))),
        (input, back) if input == back => None,
        (input, back) => Some(format!(
            "`{}` is {input} in the manifest but {back} as typed",
            path.trim_start_matches('.')
        )),
    }
}

/// Checks one document against the type of its apiVersion and kind.
fn check_schema(doc: &Doc) -> Result<(), String> {
    let api_version = doc.value["apiVersion"].as_str().unwrap_or("");
    match (api_version, doc.kind()) {
        ("v1", "Namespace") => round_trip::<Namespace>(doc),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(doc),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(doc),
        ("v1", "Secret") => round_trip::<Secret>(doc),
        ("v1", "Service") => round_trip::<Service>(doc),
        ("v1", "PersistentVolumeClaim") => round_trip::<PersistentVolumeClaim>(doc),
        ("apps/v1", "Deployment") => round_trip::<Deployment>(doc),
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<ClusterRoleBinding>(doc)
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => round_trip::<ServiceMonitor>(doc),
        (api_version, kind) => Err(format!(
            "{}: no schema for {api_version} {kind}; add its type to check_schema",
            doc.origin
        )),
    }
}

fn assert_schemas(docs: &[Doc]) {
    let problems: Vec<String> = docs
        .iter()
        .filter_map(|doc| check_schema(doc).err())
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// RBAC: rendered rules against permissions::rules.

/// One granted verb: group, resource, verb.
type Grant = (String, String, String);

/// What Roles (per namespace) and ClusterRoles grant, flattened to single verbs.
#[derive(Debug, Default, PartialEq)]
struct Granted {
    namespaced: BTreeMap<String, BTreeSet<Grant>>,
    cluster: BTreeSet<Grant>,
}

fn flatten(rules: &[PolicyRule], origin: &str) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{origin}: a rule with resourceNames or nonResourceURLs, which permissions.rs never grants"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    grants.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

fn granted(docs: &[Doc]) -> Granted {
    let mut granted = Granted::default();
    for doc in docs {
        match doc.kind() {
            "Role" => {
                let role: Role = doc.typed();
                let namespace = doc.namespace().expect("a Role has a namespace").to_string();
                granted
                    .namespaced
                    .entry(namespace)
                    .or_default()
                    .extend(flatten(role.rules.as_deref().unwrap_or(&[]), &doc.origin));
            }
            "ClusterRole" => {
                let role: ClusterRole = doc.typed();
                granted
                    .cluster
                    .extend(flatten(role.rules.as_deref().unwrap_or(&[]), &doc.origin));
            }
            _ => {}
        }
    }
    granted
}

/// What `permissions::rules` says the enabled actions and source need, in the given namespaces
/// (none: every namespace, so the namespaced grants are made cluster-wide).
fn expected(actions: &[&str], source: Option<SourceNeeds>, namespaces: &[&str]) -> Granted {
    let mut expected = Granted::default();
    let all_namespaces = namespaces.is_empty();
    let source = source.map(|source| SourceNeeds {
        all_namespaces,
        ..source
    });
    let mut namespaced = BTreeSet::new();
    for permission in permissions::rules(actions, source) {
        for verb in &permission.verbs {
            let grant = (
                permission.group.to_string(),
                permission.resource.to_string(),
                verb.to_string(),
            );
            if permission.scope == Scope::Cluster || all_namespaces {
                expected.cluster.insert(grant);
            } else {
                namespaced.insert(grant);
            }
        }
    }
    if !namespaced.is_empty() {
        for namespace in namespaces {
            expected
                .namespaced
                .insert(namespace.to_string(), namespaced.clone());
        }
    }
    expected
}

/// Fails listing the grants one side has and the other lacks, per namespace and cluster-wide.
fn assert_grants(actual: &Granted, expected: &Granted, context: &str) {
    let named = |group: &str| if group.is_empty() { "core" } else { group }.to_string();
    let mut problems = Vec::new();
    let mut compare = |place: &str,
                       actual: Option<&BTreeSet<Grant>>,
                       expected: Option<&BTreeSet<Grant>>| {
        let empty = BTreeSet::new();
        let (actual, expected) = (actual.unwrap_or(&empty), expected.unwrap_or(&empty));
        for (group, resource, verb) in actual.difference(expected) {
            problems.push(format!(
                "{place}: grants `{verb}` on {}/{resource}, which no enabled action or source needs",
                named(group)
            ));
        }
        for (group, resource, verb) in expected.difference(actual) {
            problems.push(format!(
                "{place}: lacks `{verb}` on {}/{resource}, which permissions::rules needs",
                named(group)
            ));
        }
    };
    let namespaces: BTreeSet<&String> = actual
        .namespaced
        .keys()
        .chain(expected.namespaced.keys())
        .collect();
    for namespace in namespaces {
        compare(
            &format!("Role in {namespace}"),
            actual.namespaced.get(namespace),
            expected.namespaced.get(namespace),
        );
    }
    compare(
        "ClusterRole",
        Some(&actual.cluster),
        Some(&expected.cluster),
    );
    assert!(problems.is_empty(), "{context}:\n{}", problems.join("\n"));
}

/// Every Role and ClusterRole is bound, by a binding of the same name and namespace, to
/// exactly the Deployment's service account.
fn assert_bound(docs: &[Doc]) {
    let deployment: Deployment = find(docs, "Deployment").typed();
    let account = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|spec| spec.service_account_name)
        .expect("the Deployment names its service account");
    let account_namespace = find(docs, "Deployment").namespace().map(str::to_string);
    for role in docs
        .iter()
        .filter(|doc| matches!(doc.kind(), "Role" | "ClusterRole"))
    {
        let binding_kind = format!("{}Binding", role.kind());
        let binding = docs
            .iter()
            .find(|doc| {
                doc.kind() == binding_kind
                    && doc.name() == role.name()
                    && doc.namespace() == role.namespace()
            })
            .unwrap_or_else(|| panic!("{}: no {binding_kind} binds it", role.origin));
        let (role_ref, subjects) = if binding_kind == "RoleBinding" {
            let binding: RoleBinding = binding.typed();
            (binding.role_ref, binding.subjects.unwrap_or_default())
        } else {
            let binding: ClusterRoleBinding = binding.typed();
            (binding.role_ref, binding.subjects.unwrap_or_default())
        };
        assert_eq!(
            (role_ref.kind.as_str(), role_ref.name.as_str()),
            (role.kind(), role.name()),
            "{}",
            binding.origin
        );
        assert_eq!(subjects.len(), 1, "{}: one subject", binding.origin);
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].name.as_str(),
                subjects[0].namespace.clone()
            ),
            (
                "ServiceAccount",
                account.as_str(),
                account_namespace.clone()
            ),
            "{}: binds the Deployment's service account",
            binding.origin
        );
    }
}

fn find<'a>(docs: &'a [Doc], kind: &str) -> &'a Doc {
    let mut found = docs.iter().filter(|doc| doc.kind() == kind);
    let doc = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} among the documents"));
    assert!(found.next().is_none(), "more than one {kind}");
    doc
}

// ---------------------------------------------------------------------------------------------
// The config in the ConfigMap, and the Deployment and Service around it.

/// The config file the ConfigMap holds, its name and text.
fn config_text(docs: &[Doc]) -> (String, String) {
    let doc = find(docs, "ConfigMap");
    let config_map: ConfigMap = doc.typed();
    let data = config_map.data.unwrap_or_default();
    assert_eq!(data.len(), 1, "{}: one config file", doc.origin);
    let (file, text) = data.into_iter().next().expect("one file");
    assert!(
        file.ends_with(".yaml"),
        "{}: the daemon reads .yaml files",
        doc.origin
    );
    (format!("{} {file}", doc.origin), text)
}

/// Parses and compiles the config as `homeostat serve` does before it starts (the checks that
/// need IO, such as reading secrets, aside).
fn assert_config_valid(docs: &[Doc]) {
    let (origin, text) = config_text(docs);
    let parsed = homeostat_core::config::parse(&[(PathBuf::from(&origin), text)])
        .unwrap_or_else(|diagnostics| panic!("{origin}: the config is invalid:\n{diagnostics}"));
    let compiled = homeostat_core::rule::compile(&parsed).unwrap_or_else(|diagnostics| {
        panic!("{origin}: the config does not compile:\n{diagnostics}")
    });
    assert!(!compiled.rules.is_empty(), "{origin}: the example rule");
}

/// The config as plain YAML, for the fields the deployment depends on.
fn config_value(docs: &[Doc]) -> Value {
    let (origin, text) = config_text(docs);
    serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{origin}: {error}"))
}

/// The `kubernetes_events` source of the config: what it needs, and the namespaces it watches.
fn config_source(config: &Value) -> Option<(SourceNeeds, Vec<String>)> {
    let sources = config["sources"].as_array()?;
    let source = sources
        .iter()
        .find(|source| source["type"] == "kubernetes_events")?;
    let namespaces: Vec<String> = source["namespaces"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|namespace| namespace.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // The config's defaults: both true.
    let needs = SourceNeeds {
        pods: source["pods"].as_bool().unwrap_or(true),
        deployments: source["deployments"].as_bool().unwrap_or(true),
        all_namespaces: namespaces.is_empty(),
    };
    Some((needs, namespaces))
}

/// The Deployment runs one non-root, locked-down `homeostat serve` on the config, probed on the
/// port the config listens on, and the Service exposes that port by name.
fn assert_deployment(docs: &[Doc]) {
    let config = config_value(docs);
    let listen = config["server"]["listen"].as_str().expect("server.listen");
    let port: i32 = listen
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("server.listen ends in a port");
    assert!(
        !listen.starts_with("127.") && !listen.starts_with("localhost"),
        "server.listen `{listen}` is loopback: neither the Service nor the probes would reach it"
    );

    let doc = find(docs, "Deployment");
    let deployment: Deployment = doc.typed();
    let spec = deployment.spec.expect("spec");
    assert_eq!(
        spec.replicas,
        Some(1),
        "{}: the store is single-writer",
        doc.origin
    );
    assert_eq!(
        spec.strategy.and_then(|strategy| strategy.type_).as_deref(),
        Some("Recreate"),
        "{}",
        doc.origin
    );
    let pod = spec.template.spec.expect("pod spec");
    let pod_security = pod.security_context.clone().unwrap_or_default();
    assert_eq!(pod_security.run_as_non_root, Some(true), "{}", doc.origin);
    assert!(
        pod_security.run_as_user.is_some_and(|uid| uid != 0),
        "{}: a non-root uid",
        doc.origin
    );
    assert_eq!(
        pod_security
            .seccomp_profile
            .map(|profile| profile.type_)
            .as_deref(),
        Some("RuntimeDefault"),
        "{}",
        doc.origin
    );
    assert_eq!(pod.containers.len(), 1, "{}", doc.origin);
    let container = &pod.containers[0];

    let security = container.security_context.clone().unwrap_or_default();
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "{}",
        doc.origin
    );
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "{}",
        doc.origin
    );
    assert_ne!(security.run_as_user, Some(0), "{}", doc.origin);
    assert_ne!(security.run_as_non_root, Some(false), "{}", doc.origin);
    assert_ne!(security.privileged, Some(true), "{}", doc.origin);
    let dropped = security
        .capabilities
        .and_then(|capabilities| capabilities.drop)
        .unwrap_or_default();
    assert!(
        dropped.iter().any(|c| c == "ALL"),
        "{}: drops ALL capabilities",
        doc.origin
    );

    let ports = container.ports.clone().unwrap_or_default();
    assert!(
        ports
            .iter()
            .any(|p| p.name.as_deref() == Some("http") && p.container_port == port),
        "{}: container port `http` is {port}, server.listen's",
        doc.origin
    );
    let http = |probe: &Option<k8s_openapi::api::core::v1::Probe>, path: &str, which: &str| {
        let get = probe
            .as_ref()
            .and_then(|probe| probe.http_get.as_ref())
            .unwrap_or_else(|| panic!("{}: no HTTP {which} probe", doc.origin));
        assert_eq!(
            get.path.as_deref(),
            Some(path),
            "{}: {which} probe",
            doc.origin
        );
        assert_eq!(
            get.port,
            IntOrString::String("http".into()),
            "{}: {which} probe on the named port",
            doc.origin
        );
    };
    http(&container.liveness_probe, "/healthz", "liveness");
    http(&container.readiness_probe, "/readyz", "readiness");
    http(&container.startup_probe, "/healthz", "startup");

    // `homeostat serve --config DIR`, DIR being where the ConfigMap is mounted.
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "{}",
        doc.origin
    );
    let config_dir = args
        .iter()
        .position(|arg| arg == "--config")
        .and_then(|index| args.get(index + 1))
        .unwrap_or_else(|| panic!("{}: serve --config DIR", doc.origin));
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    let volume_at = |path: &str| {
        let mount = mounts
            .iter()
            .find(|mount| mount.mount_path == path)
            .unwrap_or_else(|| panic!("{}: nothing is mounted at {path}", doc.origin));
        volumes
            .iter()
            .find(|volume| volume.name == mount.name)
            .unwrap_or_else(|| panic!("{}: no volume {}", doc.origin, mount.name))
            .clone()
    };
    let config_map = find(docs, "ConfigMap").name().to_string();
    assert_eq!(
        volume_at(config_dir).config_map.map(|source| source.name),
        Some(config_map),
        "{}: the ConfigMap is mounted at --config",
        doc.origin
    );
    // The store's folder is a volume of its own (a PersistentVolumeClaim unless turned off).
    let store = Path::new(config["store"]["path"].as_str().expect("store.path"));
    let store_dir = store.parent().and_then(Path::to_str).expect("store folder");
    let store_volume = volume_at(store_dir);
    assert!(
        store_volume.persistent_volume_claim.is_some() || store_volume.empty_dir.is_some(),
        "{}: the store's folder {store_dir} is a volume",
        doc.origin
    );
    if let Some(claim) = store_volume.persistent_volume_claim {
        if let Some(pvc) = docs
            .iter()
            .find(|doc| doc.kind() == "PersistentVolumeClaim")
        {
            assert_eq!(pvc.name(), claim.claim_name, "{}", doc.origin);
        }
    }
    // The secrets, as environment variables from a Secret.
    assert!(
        container
            .env_from
            .iter()
            .flatten()
            .any(|source| source.secret_ref.is_some()),
        "{}: the Secret's keys as environment variables",
        doc.origin
    );

    let service_doc = find(docs, "Service");
    let service: Service = service_doc.typed();
    let service_ports = service.spec.and_then(|spec| spec.ports).unwrap_or_default();
    assert!(
        service_ports
            .iter()
            .any(|p| p.name.as_deref() == Some("http")
                && p.port == port
                && p.target_port == Some(IntOrString::String("http".into()))),
        "{}: port `http` {port} to the container's `http`",
        service_doc.origin
    );
}

/// The ServiceMonitor, where there is one, scrapes `/metrics` on the Service's `http` port: its
/// selector matches the Service's labels, in the Service's namespace.
fn assert_service_monitor(docs: &[Doc]) {
    let Some(doc) = docs.iter().find(|doc| doc.kind() == "ServiceMonitor") else {
        return;
    };
    let monitor: ServiceMonitor = doc.typed();
    let service = find(docs, "Service");
    let labels = &service.value["metadata"]["labels"];
    for (key, value) in monitor.spec.selector.match_labels.iter().flatten() {
        assert_eq!(
            labels[key].as_str(),
            Some(value.as_str()),
            "{}: selects the Service by {key}",
            doc.origin
        );
    }
    assert!(
        monitor
            .spec
            .selector
            .match_labels
            .is_some_and(|labels| !labels.is_empty()),
        "{}: selects by labels",
        doc.origin
    );
    let namespaces = monitor
        .spec
        .namespace_selector
        .map(|selector| selector.match_names)
        .unwrap_or_default();
    assert!(
        namespaces
            .iter()
            .any(|ns| Some(ns.as_str()) == service.namespace()),
        "{}: in the Service's namespace",
        doc.origin
    );
    assert_eq!(monitor.spec.endpoints.len(), 1, "{}", doc.origin);
    let endpoint = &monitor.spec.endpoints[0];
    assert_eq!(
        (endpoint.port.as_str(), endpoint.path.as_str()),
        ("http", "/metrics"),
        "{}",
        doc.origin
    );
}

// ---------------------------------------------------------------------------------------------
// The plain manifests.

#[test]
fn kustomization_applies_every_manifest_but_the_secret_example() {
    let kustomization = kustomization();
    assert_eq!(
        (
            kustomization.api_version.as_str(),
            kustomization.kind.as_str()
        ),
        ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    );
    let mut files: Vec<String> = std::fs::read_dir(manifests_dir())
        .expect("deploy/kubernetes")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .filter(|name| name != "kustomization.yaml" && name != "secret.example.yaml")
        .collect();
    files.sort();
    let mut listed = kustomization.resources.clone();
    listed.sort();
    assert_eq!(listed, files, "kustomization.yaml's resources");
}

#[test]
fn manifests_match_the_kubernetes_schemas_exactly() {
    let mut docs = manifest_docs();
    let example = manifests_dir().join("secret.example.yaml");
    docs.extend(documents(
        &std::fs::read_to_string(example).expect("secret.example.yaml"),
        "deploy/kubernetes/secret.example.yaml",
    ));
    assert_schemas(&docs);
}

#[test]
fn the_schema_check_names_a_misplaced_field() {
    let docs = documents(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  \
         selector: {}\n  template:\n    spec:\n      containers:\n        - name: x\n          \
         readOnlyRootFilesystem: true\n",
        "inline",
    );
    let error = check_schema(&docs[0]).expect_err("the field belongs in securityContext");
    assert!(
        error.contains("spec.template.spec.containers[0].readOnlyRootFilesystem"),
        "{error}"
    );
    let monitor = documents(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n\
         spec: {selector: {}, endpoints: [{port: http, path: /metrics, intervall: 30s}]}\n",
        "inline",
    );
    let error = check_schema(&monitor[0]).expect_err("a misspelled endpoint field");
    assert!(error.contains("intervall"), "{error}");
}

#[test]
fn manifest_rbac_grants_exactly_what_the_actions_and_source_need() {
    let docs = manifest_docs();
    let config = config_value(&docs);
    let (source, namespaces) = config_source(&config).expect("a kubernetes_events source");
    let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    assert_grants(
        &granted(&docs),
        &expected(permissions::ACTIONS, Some(source), &namespaces),
        "deploy/kubernetes/rbac.yaml against permissions::rules (every action, the config's source)",
    );
    assert_bound(&docs);
}

#[test]
fn manifest_config_is_a_valid_homeostat_config() {
    let docs = manifest_docs();
    assert_config_valid(&docs);
    // Actions that name no namespace act in one the Role covers.
    let config = config_value(&docs);
    let (_, namespaces) = config_source(&config).expect("a kubernetes_events source");
    let default_namespace = config["kubernetes"]["namespace"].as_str();
    assert!(
        default_namespace.is_some_and(|ns| namespaces.iter().any(|n| n == ns)),
        "kubernetes.namespace {default_namespace:?} is one of the watched {namespaces:?}"
    );
}

#[test]
fn manifest_deployment_is_probed_locked_down_and_exposed() {
    assert_deployment(&manifest_docs());
    assert_service_monitor(&manifest_docs());
}

#[test]
fn kubectl_kustomize_renders_the_same_objects() {
    let output = match Command::new("kubectl")
        .arg("kustomize")
        .arg(manifests_dir())
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            println!("note: kubectl is not installed ({error}); kustomize rendering not checked");
            return;
        }
    };
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/kubernetes failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = documents(
        &String::from_utf8_lossy(&output.stdout),
        "kubectl kustomize",
    );
    assert_schemas(&rendered);
    let identity = |docs: &[Doc]| -> BTreeSet<(String, Option<String>, String)> {
        docs.iter()
            .map(|doc| {
                (
                    doc.kind().to_string(),
                    doc.namespace().map(str::to_string),
                    doc.name().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(identity(&rendered), identity(&manifest_docs()));
    assert_grants(
        &granted(&rendered),
        &granted(&manifest_docs()),
        "kubectl kustomize's RBAC against rbac.yaml's",
    );
}

#[test]
fn the_image_runs_as_the_user_the_manifests_expect() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    // The runtime stage is the last FROM; its USER is what the image runs as.
    let runtime = instructions
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .expect("a FROM");
    let user = instructions[runtime..]
        .iter()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid: i64 = user
        .split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("a numeric uid");
    assert_ne!(uid, 0, "the image runs as non-root");
    assert!(
        instructions
            .iter()
            .any(|line| line.contains("cargo build --release --locked")),
        "the image is built with cargo build --release --locked"
    );
    let deployment: Deployment = find(&manifest_docs(), "Deployment").typed();
    let pod = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .expect("pod spec");
    assert_eq!(
        pod.security_context.and_then(|context| context.run_as_user),
        Some(uid)
    );
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    assert_eq!(
        values["podSecurityContext"]["runAsUser"].as_i64(),
        Some(uid)
    );
    // The build context keeps what cargo needs.
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for needed in [
        "crates",
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "bench",
        "tests",
    ] {
        assert!(
            !ignored
                .lines()
                .any(|line| line.trim().trim_end_matches('/') == needed),
            ".dockerignore leaves out {needed}, which the build needs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The Helm chart.

/// The helm to render the chart with: `$HELM`, else `helm` on PATH. None when there is none, and
/// then the chart tests say so and pass, unless HOMEOSTAT_REQUIRE_HELM is set (for a CI that
/// installed helm and must not pass without it).
fn helm() -> Option<String> {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let found = Command::new(&helm)
        .args(["version", "--short"])
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        return Some(helm);
    }
    assert!(
        std::env::var_os("HOMEOSTAT_REQUIRE_HELM").is_none(),
        "HOMEOSTAT_REQUIRE_HELM is set but `{helm}` does not run; bash deploy/ci/install-helm.sh"
    );
    println!(
        "note: helm is not installed, so the chart was not rendered or checked; \
         `bash deploy/ci/install-helm.sh` installs it"
    );
    None
}

/// `helm template` of the chart as release `homeostat` in namespace `homeostat`, with `values`
/// (JSON, which is YAML) over the chart's defaults. Err with helm's message when it refuses.
fn render(helm: &str, values: &Value) -> Result<Vec<Doc>, String> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).expect("write values");
    let output = Command::new(helm)
        .args(["template", "homeostat"])
        .arg(chart_dir())
        .args(["--namespace", "homeostat", "--values"])
        .arg(&file)
        .output()
        .expect("run helm");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(documents(
        &String::from_utf8_lossy(&output.stdout),
        &format!("helm template with {values}"),
    ))
}

/// Renders, then checks schemas, RBAC against permissions.rs, bindings, config and Deployment.
fn check_chart(
    helm: &str,
    values: Value,
    actions: &[&str],
    source: Option<SourceNeeds>,
    namespaces: &[&str],
) {
    let docs = render(helm, &values)
        .unwrap_or_else(|error| panic!("helm template with {values}: {error}"));
    assert_schemas(&docs);
    let rbac_create = values["rbac"]["create"].as_bool().unwrap_or(true);
    let want = if rbac_create {
        expected(actions, source, namespaces)
    } else {
        Granted::default()
    };
    assert_grants(
        &granted(&docs),
        &want,
        &format!("the chart's RBAC with {values} against permissions::rules({actions:?}, {source:?}) in {namespaces:?}"),
    );
    if !rbac_create {
        assert!(
            !docs.iter().any(|doc| doc.kind().contains("Binding")),
            "rbac.create: false renders no bindings"
        );
    }
    assert_bound(&docs);
    assert_config_valid(&docs);
    assert_deployment(&docs);
    assert_service_monitor(&docs);
}

#[test]
fn chart_default_values_render_the_same_deployment_as_the_manifests() {
    let Some(helm) = helm() else { return };
    let lint = Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .output()
        .expect("run helm lint");
    assert!(
        lint.status.success(),
        "helm lint --strict:\n{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    check_chart(
        &helm,
        serde_json::json!({}),
        permissions::ACTIONS,
        Some(SourceNeeds::default()),
        &["shop"],
    );
    // The chart's default config is the manifests' config, and its RBAC the manifests' RBAC.
    let docs = render(&helm, &serde_json::json!({})).expect("render");
    assert_eq!(config_value(&docs), config_value(&manifest_docs()));
    assert_grants(
        &granted(&docs),
        &granted(&manifest_docs()),
        "the chart's RBAC against rbac.yaml's",
    );
    // rbac.source and watchNamespaces agree with the config's source by default.
    let (source, namespaces) = config_source(&config_value(&docs)).expect("source");
    assert_eq!(source, SourceNeeds::default());
    assert_eq!(namespaces, ["shop"]);
}

#[test]
fn chart_grants_only_what_the_enabled_actions_need() {
    let Some(helm) = helm() else { return };
    // Namespaced actions only, and a source without pods: no ClusterRole at all.
    let some = [
        "kubernetes.rollout_restart",
        "kubernetes.scale",
        "kubernetes.wait_rollout",
    ];
    let source = SourceNeeds {
        pods: false,
        ..SourceNeeds::default()
    };
    check_chart(
        &helm,
        serde_json::json!({"rbac": {"actions": some, "source": {"enabled": true, "pods": false, "deployments": true}}}),
        &some,
        Some(source),
        &["shop"],
    );
    let docs = render(&helm, &serde_json::json!({"rbac": {"actions": some}})).expect("render");
    assert!(!docs.iter().any(|doc| doc.kind().starts_with("Cluster")));

    // Drain alone, no source, two namespaces: cluster-wide grants only, so no Role.
    check_chart(
        &helm,
        serde_json::json!({
            "rbac": {"actions": ["kubernetes.drain"], "source": {"enabled": false, "pods": true, "deployments": true}},
            "watchNamespaces": ["shop", "payments"],
        }),
        &["kubernetes.drain"],
        None,
        &["shop", "payments"],
    );

    // Several namespaces: a Role and a RoleBinding in each.
    check_chart(
        &helm,
        serde_json::json!({"watchNamespaces": ["shop", "payments"]}),
        permissions::ACTIONS,
        Some(SourceNeeds::default()),
        &["shop", "payments"],
    );
}

#[test]
fn chart_watching_every_namespace_grants_cluster_wide() {
    let Some(helm) = helm() else { return };
    check_chart(
        &helm,
        serde_json::json!({"watchNamespaces": []}),
        permissions::ACTIONS,
        Some(SourceNeeds::default()),
        &[],
    );
}

#[test]
fn chart_without_rbac_and_with_the_options_on() {
    let Some(helm) = helm() else { return };
    check_chart(
        &helm,
        serde_json::json!({
            "rbac": {"create": false},
            "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
            "existingSecret": "homeostat-secrets",
            "persistence": {"enabled": false},
            "logJson": false,
        }),
        &[],
        None,
        &["shop"],
    );
    let docs = render(
        &helm,
        &serde_json::json!({"serviceMonitor": {"enabled": true}, "persistence": {"existingClaim": "mine"}}),
    )
    .expect("render");
    let monitor = find(&docs, "ServiceMonitor");
    assert_eq!(monitor.value["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor.value["spec"]["endpoints"][0]["path"], "/metrics");
    assert!(!docs.iter().any(|doc| doc.kind() == "PersistentVolumeClaim"));
    assert_eq!(
        find(&docs, "Deployment").value["spec"]["template"]["spec"]["volumes"][1]
            ["persistentVolumeClaim"]["claimName"],
        "mine"
    );
}

#[test]
fn chart_values_schema_refuses_what_would_break_the_daemon() {
    let Some(helm) = helm() else { return };
    for (values, why) in [
        (serde_json::json!({"replicas": 2}), "replicas"),
        (
            serde_json::json!({"rbac": {"actions": ["kubernetes.rollout_restrat"]}}),
            "rbac.actions",
        ),
        (serde_json::json!({"replicaCount": 1}), "replicaCount"),
        (
            serde_json::json!({"config": {"server": {"listen": "9393"}}}),
            "listen",
        ),
    ] {
        let error = render(&helm, &values).expect_err(&format!("{values} is refused"));
        assert!(error.contains(why), "{values}: {error}");
    }
}
