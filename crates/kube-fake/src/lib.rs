//! An in-process fake Kubernetes API server for homeostat's tests: real JSON over HTTP, so the
//! real kube-rs client runs against it unchanged.
//!
//! ```no_run
//! # async fn example() {
//! use homeostat_kube_fake::FakeApi;
//! let fake = FakeApi::start().await;
//! // In the test: let client = kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
//! fake.put_json(serde_json::json!({
//!     "apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "checkout", "namespace": "shop"},
//!     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "checkout"}}},
//! }));
//! # }
//! ```
//!
//! # What it emulates
//!
//! - Resources: core `v1` pods, events, nodes, namespaces, configmaps, services,
//!   serviceaccounts; `apps/v1` deployments, replicasets, statefulsets, daemonsets,
//!   controllerrevisions; `policy/v1` poddisruptionbudgets; `events.k8s.io/v1` events (stored
//!   apart from core events); more with [`FakeApi::add_resource`]. Unknown paths are 404.
//! - Verbs: get, list (all namespaces too), watch, create (`generateName` too), replace,
//!   patch (merge, strategic merge, JSON patch; server-side apply approximated as a strategic
//!   merge that creates when absent), delete, deletecollection; the `status` subresource, the
//!   `scale` subresource (deployments, replicasets, statefulsets), pod `eviction` with
//!   PodDisruptionBudget checks (429), `GET /version`, minimal discovery (`/api`, `/apis`,
//!   `/api/v1`, `/apis/{group}/{version}`).
//! - Metadata: one global `resourceVersion` counter bumped by every write, `uid`,
//!   `creationTimestamp` (counter-derived: 2025-01-01T00:00:00Z plus the resourceVersion in
//!   seconds; there is no clock), `generation` (1 on create, bumped when anything outside
//!   `metadata` and `status` changes). Writes to the main resource keep the stored `status`;
//!   `status` writes change only `status`. An HTTP create drops the given status (pods get
//!   `phase: Pending`, namespaces `phase: Active`); [`FakeApi::put`] stores it as given.
//! - Concurrency: a stale `metadata.resourceVersion` on replace, patch, status or scale is 409
//!   Conflict; delete preconditions (uid, resourceVersion) too. Create of an existing name is
//!   409 AlreadyExists.
//! - Watches: newline-delimited JSON events, flushed one by one; from "0"/absent a synthetic
//!   ADDED per object; from N a replay of the changes after N; label and field selectors filter
//!   (an object leaving the selection is DELETED, entering it ADDED); bookmarks on
//!   [`FakeApi::bookmark`]; `sendInitialEvents` with its end-of-initial-events bookmark;
//!   `timeoutSeconds`; 410 Expired (an ERROR event) from a compacted version. The last 10,000
//!   changes are kept; older ones count as compacted.
//! - `dryRun=All` (query, or `dryRun: ["All"]` in a DeleteOptions or an Eviction's
//!   deleteOptions): every check runs, nothing is stored, no resourceVersion is bumped, no
//!   watch event is sent.
//! - Deletion of an object with finalizers sets `deletionTimestamp`; it goes when a write
//!   empties `finalizers`. Pod deletion is otherwise immediate (no grace period, no kubelet).
//! - Faults: [`FakeApi::fail_next`], [`FakeApi::compact`], [`FakeApi::close_watches`].
//! - Every error is a `Status` object (kube-rs: `kube::Error::Api(status)`).
//!
//! # What it does not
//!
//! - No controllers: nothing creates ReplicaSets or pods, scales, schedules, garbage-collects
//!   owned objects, or updates any status; status changes only when a test writes it (with
//!   [`FakeApi::put`] or through the `status` subresource). A successful eviction decrements
//!   the PodDisruptionBudget's `status.disruptionsAllowed`, and that is all.
//! - No admission, defaulting (beyond Scale's `spec.replicas` of 1), validation of object
//!   contents, RBAC, authentication, namespace existence or lifecycle checks.
//! - JSON only: no protobuf, no YAML (server-side apply bodies must be JSON, as kube-rs sends
//!   them), no tables, no managedFields or field ownership conflicts.
//! - `limit`/`continue` are ignored (lists are whole); a list at an exact older
//!   `resourceVersion` returns the current state (or 410 when compacted).
//! - Strategic merge knows no schema: list merge keys are guessed from the field name
//!   (`name` for containers, env, volumes...; `containerPort`/`port` for ports; `mountPath`
//!   for volumeMounts; `type` for conditions); other lists are replaced.
//! - No metadata-only (`as=PartialObjectMetadata`) or table answers: full objects come back
//!   (kube-rs's `PartialObjectMeta` still deserializes them).
//!
//! # Notes for kube-rs users
//!
//! - kube 5's client retries 429, 503 and 504 on its own (`Config::default_retry`, up to 15
//!   times with exponential backoff): a `fail_next(.., 503, 1)` is invisible to the caller, and
//!   an eviction refused by a budget (429) takes minutes to surface. Tests that want to see
//!   those answers set `config.default_retry = false`.
//! - `Patch::Json` needs kube's `jsonpatch` feature, which the workspace leaves off.
//! - `EvictParams::delete_options` goes out as `delete_options` (snake case), which the real
//!   API ignores, and so does the fake; a dry-run eviction through kube-rs uses
//!   `EvictParams { post_options: PostParams { dry_run: true, .. }, .. }` (the query).
//! - kube-rs errors: `kube::Error::Api(status)` with `status.code`, `status.reason`,
//!   `status.message` and `status.details`.

mod patch;
mod resources;
mod selector;
mod server;
mod status;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use resources::ResourceDef;
use server::{lock, Shared};
use store::{FieldSelector, LabelSelector, Scope};

/// A running fake API server. Clones share it; the server stops when the last clone drops.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Inner>,
}

struct Inner {
    state: Shared,
    address: SocketAddr,
    server: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.abort();
        lock(&self.state).close_watches();
    }
}

/// One HTTP request the fake received.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// "GET", "PATCH", ...
    pub method: String,
    /// The path without the query: "/apis/apps/v1/namespaces/shop/deployments/checkout/scale".
    pub path: String,
    /// The decoded query; a repeated key keeps its last value.
    pub query: BTreeMap<String, String>,
    /// "application/merge-patch+json", ...
    pub content_type: Option<String>,
    /// The body as JSON; a body that is not JSON is kept as a JSON string.
    pub body: Option<Value>,
    /// Whether it is a watch (`watch=true` or `watch=1`).
    pub watch: bool,
}

impl Request {
    /// Whether the request is a dry run: `dryRun=All` in the query, or `dryRun: ["All"]` in
    /// a DeleteOptions body or an Eviction's `deleteOptions` (where kube-rs puts it for
    /// deletes and evictions).
    pub fn dry_run(&self) -> bool {
        let in_body = |pointer: &str| {
            self.body
                .as_ref()
                .and_then(|body| body.pointer(pointer))
                .and_then(Value::as_array)
                .is_some_and(|values| values.iter().any(|value| value == "All"))
        };
        self.query.get("dryRun").is_some_and(|value| value == "All")
            || (self.method == "DELETE" && in_body("/dryRun"))
            || (self.path.ends_with("/eviction") && in_body("/deleteOptions/dryRun"))
    }
}

impl FakeApi {
    /// Binds 127.0.0.1 on a free port and serves in a tokio task.
    ///
    /// # Panics
    /// If no local port can be bound (the test cannot run anyway).
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1:0 for the fake Kubernetes API");
        let address = listener
            .local_addr()
            .expect("the fake Kubernetes API's local address");
        let state: Shared = Arc::new(Mutex::new(store::State::default()));
        let router = axum::Router::new()
            .fallback(server::handle)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            // Serving only ends when the task is aborted; an accept error has nowhere to go.
            let _ = axum::serve(listener, router).await;
        });
        FakeApi {
            inner: Arc::new(Inner {
                state,
                address,
                server: server.abort_handle(),
            }),
        }
    }

    /// "http://127.0.0.1:PORT", for `kube::Config::new(url.parse()?)`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.address)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, store::State> {
        lock(&self.inner.state)
    }

    /// Stores a typed object as a controller would write it (status included, no conflict
    /// check); returns it as stored.
    ///
    /// # Panics
    /// If the kind is not served or the object has no name: a bug in the test.
    pub fn put<K: k8s_openapi::Resource + serde::Serialize>(&self, object: &K) -> Value {
        let mut value =
            serde_json::to_value(object).expect("a k8s-openapi object serializes to JSON");
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), Value::from(K::API_VERSION));
            map.insert("kind".into(), Value::from(K::KIND));
        }
        self.put_json(value)
    }

    /// Stores an object given as JSON; it needs `apiVersion`, `kind` and `metadata.name`
    /// (`metadata.namespace` defaults to "default" for namespaced kinds). Creates or
    /// overwrites it whole, bumps the resourceVersion, sets uid, creationTimestamp and
    /// generation, and sends ADDED or MODIFIED to the watches. Returns it as stored.
    ///
    /// # Panics
    /// If a required field is missing or the kind is not served: a bug in the test.
    pub fn put_json(&self, object: Value) -> Value {
        match self.state().put(object) {
            Ok(stored) => stored,
            Err(message) => panic!("FakeApi::put_json: {message}"),
        }
    }

    /// The stored object, typed.
    ///
    /// # Panics
    /// If the stored JSON does not deserialize as `K` (the test stored something malformed).
    pub fn get<K: k8s_openapi::Resource + serde::de::DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        let value = self.get_json(K::API_VERSION, K::KIND, namespace, name)?;
        match serde_json::from_value(value) {
            Ok(object) => Some(object),
            Err(error) => panic!(
                "FakeApi::get: the stored {} {name} is not a valid {}: {error}",
                K::KIND,
                K::KIND
            ),
        }
    }

    /// The stored object as JSON, if present.
    pub fn get_json(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let state = self.state();
        let resource = state.resource(api_version, kind)?;
        state.get(resource, namespace, name).cloned()
    }

    /// The stored objects of a kind, in one namespace or (with `None`) all, ordered by
    /// namespace then name.
    pub fn list_json(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let state = self.state();
        let Some(resource) = state.resource(api_version, kind) else {
            return Vec::new();
        };
        state.list(&Scope {
            resource,
            namespace: namespace.map(str::to_string),
            labels: LabelSelector::default(),
            fields: FieldSelector::default(),
        })
    }

    /// Deletes an object (sending DELETED to the watches); returns it as it was deleted.
    pub fn remove(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut state = self.state();
        let resource = state.resource(api_version, kind)?;
        state.remove(resource, namespace, name)
    }

    /// The current global resourceVersion (that of the latest write).
    pub fn resource_version(&self) -> u64 {
        self.state().resource_version()
    }

    /// Serves one more resource type (a custom resource, say).
    pub fn add_resource(&self, def: ResourceDef) {
        let mut state = self.state();
        if !state.resources.contains(&def) {
            state.resources.push(def);
        }
    }

    /// Every request received, in order (watches included).
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Forgets the watch history up to now: a watch, or a list with
    /// `resourceVersionMatch=Exact`, from an older resourceVersion then gets 410 Gone
    /// ("Expired").
    pub fn compact(&self) {
        self.state().compact();
    }

    /// Sends a BOOKMARK at the current resourceVersion on every open watch that allowed
    /// bookmarks.
    pub fn bookmark(&self) {
        self.state().bookmark();
    }

    /// Ends every open watch stream, as an apiserver's timeout does.
    pub fn close_watches(&self) {
        self.state().close_watches();
    }

    /// The next `count` requests with this method (any if `None`) whose path and query string
    /// contain `path_contains` get a `Status` error with code `status` (the reason the real
    /// server gives it: 500 InternalError, 503 ServiceUnavailable, 403 Forbidden, 409
    /// Conflict...). Checked before anything else; the request is still recorded.
    pub fn fail_next(&self, method: Option<&str>, path_contains: &str, status: u16, count: usize) {
        self.state().add_fault(method, path_contains, status, count);
    }

    /// How many watch streams are open now.
    pub fn open_watches(&self) -> usize {
        self.state().open_watches()
    }

    /// Waits (up to 5 s) until at least `count` watch streams are open; `false` on timeout.
    pub async fn wait_for_watches(&self, count: usize) -> bool {
        for _ in 0..1000 {
            if self.open_watches() >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}
