//! Raw calls to the Kubernetes API for the actions: exact verbs, paths, queries and bodies.
//!
//! The actions build their requests by hand rather than through kube's typed `Api`: a JSON
//! patch (what `kubectl rollout undo` sends) needs kube's `jsonpatch` feature and another crate,
//! and owning the request makes what each action sends plain to read and to test. kube's
//! `Client` still carries them, with its authentication, TLS and base address.

use std::fmt;

use http::{Method, Request};
use serde_json::Value;

/// A resource type the actions touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    /// As in the object's `kind`: `Deployment`.
    pub kind: &'static str,
    /// As in `apiVersion`: `apps/v1`, or `v1` for the core group.
    pub api_version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Kind {
    pub const DEPLOYMENT: Kind = Kind::new("Deployment", "apps/v1", "deployments", true);
    pub const STATEFUL_SET: Kind = Kind::new("StatefulSet", "apps/v1", "statefulsets", true);
    pub const DAEMON_SET: Kind = Kind::new("DaemonSet", "apps/v1", "daemonsets", true);
    pub const REPLICA_SET: Kind = Kind::new("ReplicaSet", "apps/v1", "replicasets", true);
    pub const POD: Kind = Kind::new("Pod", "v1", "pods", true);
    pub const NODE: Kind = Kind::new("Node", "v1", "nodes", false);
    pub const SERVICE: Kind = Kind::new("Service", "v1", "services", true);
    pub const CONFIG_MAP: Kind = Kind::new("ConfigMap", "v1", "configmaps", true);
    pub const NAMESPACE: Kind = Kind::new("Namespace", "v1", "namespaces", false);
    pub const POD_DISRUPTION_BUDGET: Kind = Kind::new(
        "PodDisruptionBudget",
        "policy/v1",
        "poddisruptionbudgets",
        true,
    );

    const fn new(
        kind: &'static str,
        api_version: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Kind {
        Kind {
            kind,
            api_version,
            plural,
            namespaced,
        }
    }

    /// How messages name the kind: `deployment`.
    pub fn label(self) -> String {
        self.kind.to_lowercase()
    }

    /// `/apis/apps/v1` or `/api/v1`.
    fn prefix(self) -> String {
        if self.api_version.contains('/') {
            format!("/apis/{}", self.api_version)
        } else {
            format!("/api/{}", self.api_version)
        }
    }

    /// The collection's path, in a namespace or across all of them (`None`).
    pub fn collection_path(self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("{}/namespaces/{namespace}/{}", self.prefix(), self.plural)
            }
            _ => format!("{}/{}", self.prefix(), self.plural),
        }
    }
}

/// One object: its kind, namespace (`None` when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Object {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl Object {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Object {
        Object {
            kind,
            namespace: kind.namespaced.then(|| namespace.to_string()),
            name: name.to_string(),
        }
    }

    pub fn path(&self) -> String {
        format!(
            "{}/{}",
            self.kind.collection_path(self.namespace.as_deref()),
            self.name
        )
    }

    /// `shop/checkout`, or `node-1` for a cluster-scoped object.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// How messages name the object: ``deployment `shop/checkout` ``.
    pub fn describe(&self) -> String {
        format!("{} `{}`", self.kind.label(), self.qualified_name())
    }

    /// The namespace as outputs give it: empty for cluster-scoped objects, since a rollback's
    /// template renders it back into a string.
    pub fn namespace_output(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

/// How a PATCH body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

/// What the API server answered instead of success, or why no answer came.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Refusal {
    Status {
        code: u16,
        reason: String,
        message: String,
        /// `details.causes[].message`: where an eviction's refusal names the budget.
        causes: Vec<String>,
    },
    Transport(String),
}

/// A failed call, with what it was for, so the message can name the request, the object and
/// the permission that is missing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CallError {
    pub method: Method,
    /// `deployments/checkout/scale`, as messages show the request.
    pub target: String,
    /// `deployments/scale`: the resource an RBAC rule names.
    pub resource: String,
    /// The object the request was about, for "not found"; `None` for lists.
    pub object: Option<Object>,
    pub refusal: Refusal,
}

impl CallError {
    pub fn code(&self) -> Option<u16> {
        match &self.refusal {
            Refusal::Status { code, .. } => Some(*code),
            Refusal::Transport(_) => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// The server's message and the causes it gave.
    pub fn server_message(&self) -> String {
        match &self.refusal {
            Refusal::Status {
                message, causes, ..
            } => {
                let mut text = message.clone();
                for cause in causes {
                    if !text.contains(cause.as_str()) {
                        text.push_str(&format!(" ({cause})"));
                    }
                }
                text
            }
            Refusal::Transport(error) => error.clone(),
        }
    }

    /// The RBAC verb the request needed.
    fn verb(&self) -> &'static str {
        match self.method {
            Method::GET if self.object.is_none() => "list",
            Method::GET => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "get",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = format!("`{} {}`", self.method, self.target);
        match &self.refusal {
            Refusal::Transport(error) => write!(
                f,
                "kubernetes api unreachable for {request}: {error}; check the api server's address and that homeostat can reach it"
            ),
            Refusal::Status { code: 404, .. } if self.object.is_some() => {
                let object = self.object.as_ref().map(Object::describe).unwrap_or_default();
                write!(f, "{object} not found")
            }
            Refusal::Status { code, reason, .. } => {
                let reason = words(reason);
                let message = self.server_message();
                write!(f, "kubernetes api refused {request}: {code} {reason}: {message}")?;
                match code {
                    401 => write!(
                        f,
                        "; check homeostat's kubernetes credentials (its service account token or kubeconfig)"
                    ),
                    403 => write!(
                        f,
                        "; grant the `{}` verb on `{}` to homeostat's service account (deploy/kubernetes/rbac.yaml)",
                        self.verb(),
                        self.resource
                    ),
                    409 => write!(
                        f,
                        "; the object kept changing while homeostat retried, so try again later"
                    ),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// `TooManyRequests` as `too many requests`.
fn words(reason: &str) -> String {
    let mut text = String::new();
    for (index, character) in reason.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            text.push(' ');
        }
        text.extend(character.to_lowercase());
    }
    if text.is_empty() {
        "error".into()
    } else {
        text
    }
}

/// The client with the step's dry-run flag and field manager, which every write carries.
pub(crate) struct Api<'a> {
    pub client: &'a kube::Client,
    pub dry_run: bool,
    pub field_manager: &'a str,
}

struct Call {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<(ContentType, Value)>,
    target: String,
    resource: String,
    object: Option<Object>,
}

/// The content type of a body: a patch's, or plain JSON for a POST.
enum ContentType {
    Patch(PatchType),
    Json,
}

impl Api<'_> {
    /// GET an object, or one of its subresources (`scale`).
    pub async fn get(
        &self,
        object: &Object,
        subresource: Option<&str>,
    ) -> Result<Value, CallError> {
        self.send(self.call(Method::GET, object, subresource)).await
    }

    /// GET a list, with `labelSelector` or `fieldSelector` as `query` gives.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        query: Vec<(&'static str, String)>,
    ) -> Result<Value, CallError> {
        self.send(Call {
            method: Method::GET,
            path: kind.collection_path(namespace),
            query,
            body: None,
            target: kind.plural.to_string(),
            resource: kind.plural.to_string(),
            object: None,
        })
        .await
    }

    /// PATCH an object or a subresource, with `fieldManager` and, in a dry run, `dryRun=All`.
    pub async fn patch(
        &self,
        object: &Object,
        subresource: Option<&str>,
        patch_type: PatchType,
        body: Value,
    ) -> Result<Value, CallError> {
        let mut call = self.call(Method::PATCH, object, subresource);
        call.query = self.write_query(true);
        call.body = Some((ContentType::Patch(patch_type), body));
        self.send(call).await
    }

    /// DELETE an object, with `gracePeriodSeconds` when given; `fieldManager` does not apply.
    pub async fn delete(
        &self,
        object: &Object,
        grace_period: Option<i64>,
    ) -> Result<Value, CallError> {
        let mut call = self.call(Method::DELETE, object, None);
        call.query = self.write_query(false);
        if let Some(seconds) = grace_period {
            call.query.push(("gracePeriodSeconds", seconds.to_string()));
        }
        self.send(call).await
    }

    /// POST a `policy/v1` Eviction for a pod.
    pub async fn evict(&self, pod: &Object, grace_period: Option<i64>) -> Result<Value, CallError> {
        let mut delete_options = serde_json::Map::new();
        if let Some(seconds) = grace_period {
            delete_options.insert("gracePeriodSeconds".into(), seconds.into());
        }
        if self.dry_run {
            // The eviction's own options carry the dry run to the delete it makes.
            delete_options.insert("dryRun".into(), serde_json::json!(["All"]));
        }
        let mut body = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace_output()},
        });
        if !delete_options.is_empty() {
            body["deleteOptions"] = Value::Object(delete_options);
        }
        let mut call = self.call(Method::POST, pod, Some("eviction"));
        call.query = self.write_query(true);
        call.body = Some((ContentType::Json, body));
        self.send(call).await
    }

    fn write_query(&self, field_manager: bool) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if self.dry_run {
            query.push(("dryRun", "All".to_string()));
        }
        if field_manager && !self.field_manager.is_empty() {
            query.push(("fieldManager", self.field_manager.to_string()));
        }
        query
    }

    fn call(&self, method: Method, object: &Object, subresource: Option<&str>) -> Call {
        let (path, target, resource) = match subresource {
            Some(sub) => (
                format!("{}/{sub}", object.path()),
                format!("{}/{}/{sub}", object.kind.plural, object.name),
                format!("{}/{sub}", object.kind.plural),
            ),
            None => (
                object.path(),
                format!("{}/{}", object.kind.plural, object.name),
                object.kind.plural.to_string(),
            ),
        };
        Call {
            method,
            path,
            query: Vec::new(),
            body: None,
            target,
            resource,
            object: Some(object.clone()),
        }
    }

    async fn send(&self, call: Call) -> Result<Value, CallError> {
        let fail = |refusal: Refusal| CallError {
            method: call.method.clone(),
            target: call.target.clone(),
            resource: call.resource.clone(),
            object: call.object.clone(),
            refusal,
        };
        let mut uri = call.path.clone();
        if !call.query.is_empty() {
            let query: Vec<String> = call
                .query
                .iter()
                .map(|(key, value)| format!("{key}={}", encode(value)))
                .collect();
            uri.push('?');
            uri.push_str(&query.join("&"));
        }
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        let mut bytes = Vec::new();
        if let Some((content_type, body)) = &call.body {
            let content_type = match content_type {
                ContentType::Patch(patch_type) => patch_type.content_type(),
                ContentType::Json => "application/json",
            };
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
            bytes = serde_json::to_vec(body)
                .map_err(|error| fail(Refusal::Transport(error.to_string())))?;
        }
        let request = builder
            .body(bytes)
            .map_err(|error| fail(Refusal::Transport(error.to_string())))?;
        tracing::debug!(method = %call.method, path = %call.path, dry_run = self.dry_run, "kubernetes request");
        match self.client.request_text(request).await {
            Ok(text) if text.trim().is_empty() => Ok(Value::Null),
            Ok(text) => serde_json::from_str(&text).map_err(|error| {
                fail(Refusal::Transport(format!(
                    "the answer is not JSON ({error})"
                )))
            }),
            Err(kube::Error::Api(status)) => {
                let causes = status
                    .details
                    .as_ref()
                    .map(|details| {
                        details
                            .causes
                            .iter()
                            .map(|cause| cause.message.clone())
                            .filter(|message| !message.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                Err(fail(Refusal::Status {
                    code: status.code,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                    causes,
                }))
            }
            Err(error) => Err(fail(Refusal::Transport(error.to_string()))),
        }
    }
}

/// Percent-encodes a query value (selectors hold `=`, `,`, `!` and spaces).
fn encode(value: &str) -> String {
    let mut encoded = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_messages() {
        let deployment = Object::new(Kind::DEPLOYMENT, "shop", "checkout");
        assert_eq!(
            deployment.path(),
            "/apis/apps/v1/namespaces/shop/deployments/checkout"
        );
        let node = Object::new(Kind::NODE, "shop", "n1");
        assert_eq!(node.path(), "/api/v1/nodes/n1");
        assert_eq!(node.namespace_output(), "");
        assert_eq!(Kind::POD.collection_path(None), "/api/v1/pods");
        assert_eq!(encode("app in (a,b),!x"), "app%20in%20%28a%2Cb%29%2C%21x");
        assert_eq!(words("TooManyRequests"), "too many requests");
        let error = CallError {
            method: Method::PATCH,
            target: "deployments/checkout".into(),
            resource: "deployments".into(),
            object: Some(deployment),
            refusal: Refusal::Status {
                code: 403,
                reason: "Forbidden".into(),
                message: "no".into(),
                causes: vec![],
            },
        };
        assert_eq!(
            error.to_string(),
            "kubernetes api refused `PATCH deployments/checkout`: 403 forbidden: no; grant the `patch` verb on `deployments` to homeostat's service account (deploy/kubernetes/rbac.yaml)"
        );
    }
}
