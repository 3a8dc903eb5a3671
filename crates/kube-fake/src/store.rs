//! The fake cluster's state: objects, the global resourceVersion, the change history that
//! watches replay, open watches, recorded requests and injected faults.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::patch;
use crate::resources::{self, ResourceDef};
pub use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::Request;

/// How many changes watches can replay; older ones count as compacted, as etcd's are.
const HISTORY_LIMIT: usize = 10_000;

/// Where an object lives: resource index in [`State::resources`], namespace ("" when
/// cluster-scoped), name.
type Key = (usize, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write, kept so a watch from an older resourceVersion can replay it. `old` lets a
/// selector-filtered watch turn a change of labels into ADDED or DELETED, as the real one does.
struct Change {
    rv: u64,
    resource: usize,
    event: EventType,
    object: Value,
    old: Option<Value>,
}

/// What a watch (or list) is about.
pub struct Scope {
    pub resource: usize,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Scope {
    fn matches(&self, resource: usize, object: &Value) -> bool {
        resource == self.resource
            && self
                .namespace
                .as_deref()
                .is_none_or(|namespace| meta_str(object, "namespace") == Some(namespace))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event a watcher of this scope sees for a change, if any.
    fn event_for(
        &self,
        resource: usize,
        event: EventType,
        object: &Value,
        old: Option<&Value>,
    ) -> Option<EventType> {
        let now = self.matches(resource, object);
        match event {
            EventType::Added | EventType::Deleted => now.then_some(event),
            EventType::Modified => {
                let before = old.is_some_and(|old| self.matches(resource, old));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }
}

struct Watcher {
    scope: Scope,
    bookmarks: bool,
    sender: mpsc::UnboundedSender<Bytes>,
}

struct Fault {
    method: Option<String>,
    needle: String,
    status: u16,
    remaining: usize,
}

/// The parameters of a watch request.
pub struct WatchRequest {
    pub scope: Scope,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
}

pub struct State {
    pub resources: Vec<ResourceDef>,
    rv: u64,
    next_uid: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// Changes at or before this resourceVersion are forgotten: watching from an older one is
    /// 410 Gone.
    compacted: u64,
    watchers: Vec<Watcher>,
    pub requests: Vec<Request>,
    faults: Vec<Fault>,
}

impl Default for State {
    fn default() -> Self {
        State {
            resources: resources::builtin(),
            // Not 0: "0" means "any version" to lists and watches.
            rv: 1,
            next_uid: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            watchers: Vec::new(),
            requests: Vec::new(),
            faults: Vec::new(),
        }
    }
}

/// Options of a write, from the query and body.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|metadata| metadata.get(field))
        .and_then(Value::as_str)
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let object = object.as_object_mut().expect("made an object above");
    let metadata = object.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata.as_object_mut().expect("made an object above")
}

/// The object without metadata and status: what a change to bumps `generation`.
fn desired_state(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    object
}

/// A counter-derived RFC 3339 time: 2025-01-01T00:00:00Z plus `seconds`. The fake has no
/// clock (the workspace bans reading one), and tests want stable output anyway.
pub fn timestamp(seconds: u64) -> String {
    const BASE_DAYS: u64 = 20_089; // days from 1970-01-01 to 2025-01-01
    let days = BASE_DAYS + seconds / 86_400;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl State {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn resource(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.api_version() == api_version && r.kind == kind)
    }

    pub fn resource_by_plural(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
    }

    fn key(&self, resource: usize, namespace: Option<&str>, name: &str) -> Key {
        let namespace = if self.resources[resource].namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        (resource, namespace.to_string(), name.to_string())
    }

    pub fn get(&self, resource: usize, namespace: Option<&str>, name: &str) -> Option<&Value> {
        self.objects.get(&self.key(resource, namespace, name))
    }

    pub fn list(&self, scope: &Scope) -> Vec<Value> {
        self.objects
            .range((scope.resource, String::new(), String::new())..)
            .take_while(|((resource, _, _), _)| *resource == scope.resource)
            .filter(|(_, object)| scope.matches(scope.resource, object))
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// A `...List` answer for a list request.
    pub fn list_response(&self, scope: &Scope, exact: Option<u64>) -> Result<Value, ApiError> {
        if let Some(version) = exact {
            if version < self.compacted {
                return Err(self.too_old(version));
            }
        }
        let def = &self.resources[scope.resource];
        Ok(json!({
            "apiVersion": def.api_version(),
            "kind": format!("{}List", def.kind),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": self.list(scope),
        }))
    }

    fn too_old(&self, version: u64) -> ApiError {
        ApiError::expired(format!(
            "too old resource version: {version} ({})",
            self.compacted
        ))
    }

    pub fn record(&mut self, request: Request) {
        self.requests.push(request);
    }

    pub fn add_fault(&mut self, method: Option<&str>, needle: &str, status: u16, count: usize) {
        if count > 0 {
            self.faults.push(Fault {
                method: method.map(str::to_ascii_uppercase),
                needle: needle.to_string(),
                status,
                remaining: count,
            });
        }
    }

    /// The injected fault for this request, if one matches (consuming one of its count).
    pub fn take_fault(&mut self, method: &str, path_and_query: &str) -> Option<ApiError> {
        let index = self.faults.iter().position(|fault| {
            fault
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path_and_query.contains(&fault.needle)
        })?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let status = fault.status;
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        Some(ApiError::for_code(
            status,
            format!("injected fault: {method} {path_and_query} answers {status}"),
        ))
    }

    fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    /// A `generateName` suffix: five lowercase alphanumerics, as the real server appends.
    fn name_suffix(&mut self) -> String {
        self.next_uid += 1;
        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.next_uid.wrapping_mul(2_654_435_761);
        (0..5)
            .map(|_| {
                let c = alphabet[(n % alphabet.len() as u64) as usize] as char;
                n /= alphabet.len() as u64;
                c
            })
            .collect()
    }

    /// Stores `object` (or removes the object when `None`), bumping the resourceVersion and
    /// telling watches; with `dry_run` only computes what would be stored. `object` must already
    /// carry its identity; this fills in the system metadata.
    fn commit(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        object: Option<Value>,
        dry_run: bool,
    ) -> Value {
        let key = self.key(resource, namespace, name);
        let old = self.objects.get(&key).cloned();
        let def = self.resources[resource].clone();
        let next_rv = self.rv + 1;
        let Some(mut object) = object else {
            // A deletion: the DELETED event carries the deletion's resourceVersion.
            let mut object = old.unwrap_or(Value::Null);
            if dry_run {
                return object;
            }
            metadata_mut(&mut object).insert("resourceVersion".into(), json!(next_rv.to_string()));
            self.rv = next_rv;
            self.objects.remove(&key);
            self.emit(resource, EventType::Deleted, object.clone(), None);
            return object;
        };

        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), json!(def.api_version()));
            map.insert("kind".into(), json!(def.kind));
        }
        let uid = match old.as_ref().and_then(|old| meta_str(old, "uid")) {
            Some(uid) => uid.to_string(),
            None => match meta_str(&object, "uid") {
                Some(uid) if !uid.is_empty() => uid.to_string(),
                _ => self.new_uid(),
            },
        };
        let created = match old
            .as_ref()
            .and_then(|old| meta_str(old, "creationTimestamp"))
        {
            Some(created) => created.to_string(),
            None => match meta_str(&object, "creationTimestamp") {
                Some(created) if !created.is_empty() => created.to_string(),
                _ => timestamp(next_rv),
            },
        };
        let generation = match &old {
            Some(old) => {
                let generation = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if desired_state(old) == desired_state(&object) {
                    generation
                } else {
                    generation + 1
                }
            }
            None => 1,
        };
        let metadata = metadata_mut(&mut object);
        metadata.insert("name".into(), json!(name));
        if def.namespaced {
            metadata.insert("namespace".into(), json!(key.1));
        } else {
            metadata.remove("namespace");
        }
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(created));
        metadata.insert("generation".into(), json!(generation));
        // A deleted object waiting on finalizers keeps its deletion stamp; when a write takes
        // away its last finalizer, it goes.
        let old_stamp = old
            .as_ref()
            .and_then(|old| old.pointer("/metadata/deletionTimestamp"))
            .cloned();
        let mut finalizing = false;
        if let (Some(old), Some(stamp)) = (&old, old_stamp) {
            metadata.insert("deletionTimestamp".into(), stamp);
            if let Some(grace) = old.pointer("/metadata/deletionGracePeriodSeconds") {
                metadata.insert("deletionGracePeriodSeconds".into(), grace.clone());
            }
            let had_finalizers = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|finalizers| !finalizers.is_empty());
            let has_finalizers = metadata
                .get("finalizers")
                .and_then(Value::as_array)
                .is_some_and(|finalizers| !finalizers.is_empty());
            finalizing = had_finalizers && !has_finalizers;
        }
        if dry_run {
            match &old {
                Some(old) => {
                    let version = meta_str(old, "resourceVersion")
                        .unwrap_or_default()
                        .to_string();
                    metadata.insert("resourceVersion".into(), json!(version));
                }
                None => {
                    metadata.remove("resourceVersion");
                }
            }
            return object;
        }
        if finalizing {
            // The last finalizer is gone from an object being deleted: now it goes.
            self.objects.insert(key, object);
            return self.commit(resource, namespace, name, None, false);
        }
        metadata.insert("resourceVersion".into(), json!(next_rv.to_string()));
        self.rv = next_rv;
        self.objects.insert(key, object.clone());
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(resource, event, object.clone(), old);
        object
    }

    fn emit(&mut self, resource: usize, event: EventType, object: Value, old: Option<Value>) {
        self.watchers.retain(|watcher| {
            match watcher
                .scope
                .event_for(resource, event, &object, old.as_ref())
            {
                Some(seen) => watcher
                    .sender
                    .send(event_line(seen.as_str(), &object))
                    .is_ok(),
                None => !watcher.sender.is_closed(),
            }
        });
        self.history.push_back(Change {
            rv: self.rv,
            resource,
            event,
            object,
            old,
        });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
    }

    // ---- The test's own writes -------------------------------------------------------------

    /// Writes an object as a controller (or the test) would: creates or overwrites it whole,
    /// status included, without conflict checks.
    pub fn put(&mut self, object: Value) -> Result<Value, String> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or("the object has no apiVersion")?;
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("the object has no kind")?;
        let resource = self.resource(api_version, kind).ok_or_else(|| {
            format!("the fake does not serve {kind} in {api_version}; see FakeApi::add_resource")
        })?;
        let name = meta_str(&object, "name")
            .filter(|name| !name.is_empty())
            .ok_or("the object has no metadata.name")?
            .to_string();
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        Ok(self.commit(resource, namespace.as_deref(), &name, Some(object), false))
    }

    pub fn remove(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.get(resource, namespace, name)?;
        Some(self.commit(resource, namespace, name, None, false))
    }

    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    pub fn bookmark(&mut self) {
        let rv = self.rv.to_string();
        let resources = &self.resources;
        self.watchers.retain(|watcher| {
            if !watcher.bookmarks {
                return !watcher.sender.is_closed();
            }
            let def = &resources[watcher.scope.resource];
            let object = json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": {"resourceVersion": rv}});
            watcher.sender.send(event_line("BOOKMARK", &object)).is_ok()
        });
    }

    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    pub fn open_watches(&mut self) -> usize {
        self.watchers.retain(|watcher| !watcher.sender.is_closed());
        self.watchers.len()
    }

    // ---- Watches --------------------------------------------------------------------------

    /// Opens a watch: queues its initial or replayed events and registers it for live ones,
    /// all under the one lock so no change falls between the two.
    pub fn watch(
        &mut self,
        request: WatchRequest,
    ) -> Result<mpsc::UnboundedReceiver<Bytes>, ApiError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let def = self.resources[request.scope.resource].clone();
        let from = match request.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {text:?}: not a number"))
            })?),
        };
        if let Some(from) = from.filter(|from| *from < self.compacted) {
            // The real server answers 200 and puts the 410 in the stream, then ends it.
            let _ = sender.send(event_line("ERROR", &self.too_old(from).to_json()));
            return Ok(receiver);
        }
        match from {
            Some(from) if !request.send_initial_events => {
                for change in self.history.iter().filter(|change| change.rv > from) {
                    if let Some(seen) = request.scope.event_for(
                        change.resource,
                        change.event,
                        &change.object,
                        change.old.as_ref(),
                    ) {
                        let _ = sender.send(event_line(seen.as_str(), &change.object));
                    }
                }
            }
            _ => {
                for object in self.list(&request.scope) {
                    let _ = sender.send(event_line("ADDED", &object));
                }
                if request.send_initial_events && request.bookmarks {
                    let object = json!({
                        "kind": def.kind,
                        "apiVersion": def.api_version(),
                        "metadata": {
                            "resourceVersion": self.rv.to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    });
                    let _ = sender.send(event_line("BOOKMARK", &object));
                }
            }
        }
        self.watchers.push(Watcher {
            scope: request.scope,
            bookmarks: request.bookmarks,
            sender,
        });
        Ok(receiver)
    }

    // ---- The API's writes -----------------------------------------------------------------

    fn check_type(&self, resource: usize, body: &Value) -> Result<(), ApiError> {
        let def = &self.resources[resource];
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(api_version) = body.get("apiVersion").and_then(Value::as_str) {
            if api_version != def.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({api_version}) does not match the expected API version ({})",
                    def.api_version()
                )));
            }
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str) {
            if kind != def.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({kind}) does not match the expected kind ({})",
                    def.kind
                )));
            }
        }
        Ok(())
    }

    fn check_namespace(
        &self,
        resource: usize,
        namespace: Option<&str>,
        body: &Value,
    ) -> Result<(), ApiError> {
        if !self.resources[resource].namespaced {
            return Ok(());
        }
        match (meta_str(body, "namespace"), namespace) {
            (Some(given), Some(path)) if !given.is_empty() && given != path => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => Ok(()),
        }
    }

    fn existing(
        &self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get(resource, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.resources[resource].qualified(), name))
    }

    /// 409 when the write names a resourceVersion that is not the stored one.
    fn check_version(
        &self,
        resource: usize,
        name: &str,
        written: &Value,
        stored: &Value,
    ) -> Result<(), ApiError> {
        match meta_str(written, "resourceVersion") {
            Some(version)
                if !version.is_empty() && Some(version) != meta_str(stored, "resourceVersion") =>
            {
                Err(ApiError::conflict(
                    &self.resources[resource].qualified(),
                    name,
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn create(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        mut body: Value,
        options: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_type(resource, &body)?;
        self.check_namespace(resource, namespace, &body)?;
        let def = self.resources[resource].clone();
        if def.namespaced && namespace.is_none() {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource (post {})",
                    def.qualified()
                ),
            ));
        }
        if meta_str(&body, "resourceVersion").is_some_and(|version| !version.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match meta_str(&body, "name").filter(|name| !name.is_empty()) {
            Some(name) => name.to_string(),
            None => match meta_str(&body, "generateName").filter(|prefix| !prefix.is_empty()) {
                Some(prefix) => format!("{prefix}{}", self.name_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        &def.qualified(),
                        "",
                        format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", def.kind),
                    ))
                }
            },
        };
        if self.get(resource, namespace, &name).is_some() {
            return Err(ApiError::already_exists(&def.qualified(), &name));
        }
        // As the real strategies' PrepareForCreate: status is the system's, not the creator's.
        if def.status {
            if let Some(map) = body.as_object_mut() {
                map.remove("status");
                match (def.group.as_str(), def.kind.as_str()) {
                    ("", "Pod") => {
                        map.insert("status".into(), json!({"phase": "Pending"}));
                    }
                    ("", "Namespace") => {
                        map.insert("status".into(), json!({"phase": "Active"}));
                    }
                    _ => {}
                }
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            metadata_mut(&mut body).remove(field);
        }
        Ok(self.commit(resource, namespace, &name, Some(body), options.dry_run))
    }

    /// What a client's write of the main resource cannot change: the stored status, and the
    /// deletion stamp (only a DELETE sets it).
    fn keep_system_fields(&self, resource: usize, stored: &Value, object: &mut Value) {
        let metadata = metadata_mut(object);
        metadata.remove("deletionTimestamp");
        metadata.remove("deletionGracePeriodSeconds");
        if !self.resources[resource].status {
            return;
        }
        if let Some(map) = object.as_object_mut() {
            match stored.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
    }

    pub fn replace(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        options: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_type(resource, &body)?;
        self.check_namespace(resource, namespace, &body)?;
        if let Some(given) = meta_str(&body, "name").filter(|given| *given != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        let stored = self.existing(resource, namespace, name)?;
        self.check_version(resource, name, &body, &stored)?;
        let mut object = body;
        self.keep_system_fields(resource, &stored, &mut object);
        Ok(self.commit(resource, namespace, name, Some(object), options.dry_run))
    }

    pub fn patch(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
        options: WriteOptions,
    ) -> Result<Value, ApiError> {
        let stored = match (self.get(resource, namespace, name), patch) {
            (Some(stored), _) => stored.clone(),
            (None, Patch::Apply(body)) => {
                let mut body = body.clone();
                metadata_mut(&mut body).insert("name".into(), json!(name));
                return self.create(resource, namespace, body, options);
            }
            (None, _) => {
                return Err(ApiError::not_found(
                    &self.resources[resource].qualified(),
                    name,
                ))
            }
        };
        let mut object = self.apply_patch(resource, name, &stored, patch)?;
        self.check_version(resource, name, &object, &stored)?;
        self.keep_system_fields(resource, &stored, &mut object);
        Ok(self.commit(resource, namespace, name, Some(object), options.dry_run))
    }

    fn apply_patch(
        &self,
        resource: usize,
        name: &str,
        stored: &Value,
        patch: &Patch,
    ) -> Result<Value, ApiError> {
        let def = &self.resources[resource];
        let mut object = stored.clone();
        match patch {
            Patch::Merge(body) => patch::merge(&mut object, body),
            Patch::Strategic(body) | Patch::Apply(body) => patch::strategic(&mut object, body)
                .map_err(|error| ApiError::invalid(&def.qualified(), name, error))?,
            Patch::Json(body) => patch::json_patch(&mut object, body).map_err(|error| {
                ApiError::invalid(
                    &def.qualified(),
                    name,
                    format!("{} \"{name}\" is invalid: {error}", def.kind),
                )
            })?,
        }
        if !object.is_object() {
            return Err(ApiError::invalid(
                &def.qualified(),
                name,
                "the patched object is not a JSON object",
            ));
        }
        self.check_type(resource, &object)?;
        // The identity comes from the URL: a patch cannot rename or move the object.
        for field in ["name", "namespace"] {
            match stored.pointer(&format!("/metadata/{field}")) {
                Some(value) => metadata_mut(&mut object).insert(field.into(), value.clone()),
                None => metadata_mut(&mut object).remove(field),
            };
        }
        Ok(object)
    }

    pub fn delete(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
        write: WriteOptions,
    ) -> Result<Value, ApiError> {
        let stored = self.existing(resource, namespace, name)?;
        let qualified = self.resources[resource].qualified();
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
        {
            let actual = meta_str(&stored, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict(&qualified, name).with_message(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                )));
            }
        }
        if let Some(version) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            let actual = meta_str(&stored, "resourceVersion").unwrap_or_default();
            if version != actual {
                return Err(ApiError::conflict(&qualified, name).with_message(format!(
                    "Operation cannot be fulfilled on {qualified} \"{name}\": the ResourceVersion in the precondition ({version}) does not match the ResourceVersion in record ({actual}). The object might have been modified"
                )));
            }
        }
        let finalizers = stored
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            // The real server only marks it; whoever owns the finalizers removes them.
            if stored.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(stored);
            }
            if write.dry_run {
                return Ok(stored);
            }
            let key = self.key(resource, namespace, name);
            let mut object = stored.clone();
            let metadata = metadata_mut(&mut object);
            metadata.insert("deletionTimestamp".into(), json!(timestamp(self.rv + 1)));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            // `commit` keeps the old deletion stamp, so stamp the stored copy first.
            self.objects.insert(key, object.clone());
            let old = Some(stored);
            let result = self.commit(resource, namespace, name, Some(object), false);
            if let Some(Change {
                old: change_old, ..
            }) = self.history.back_mut()
            {
                *change_old = old;
            }
            return Ok(result);
        }
        Ok(self.commit(resource, namespace, name, None, write.dry_run))
    }

    pub fn delete_collection(
        &mut self,
        scope: &Scope,
        options: &Value,
        write: WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut deleted = Vec::new();
        for object in self.list(scope) {
            let name = meta_str(&object, "name").unwrap_or_default().to_string();
            let namespace = meta_str(&object, "namespace").map(str::to_string);
            deleted.push(self.delete(
                scope.resource,
                namespace.as_deref(),
                &name,
                options,
                write,
            )?);
        }
        let def = &self.resources[scope.resource];
        Ok(json!({
            "apiVersion": def.api_version(),
            "kind": format!("{}List", def.kind),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": deleted,
        }))
    }

    // ---- Subresources ---------------------------------------------------------------------

    fn require_status(&self, resource: usize) -> Result<(), ApiError> {
        if self.resources[resource].status {
            Ok(())
        } else {
            Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    }

    pub fn get_status(
        &self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.require_status(resource)?;
        self.existing(resource, namespace, name)
    }

    /// PUT or PATCH of `status`: only `.status` of the result is kept.
    pub fn write_status(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        write: StatusWrite<'_>,
        options: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.require_status(resource)?;
        let stored = self.existing(resource, namespace, name)?;
        let written = match write {
            StatusWrite::Replace(body) => {
                self.check_type(resource, body)?;
                body.clone()
            }
            StatusWrite::Patch(patch) => self.apply_patch(resource, name, &stored, patch)?,
        };
        self.check_version(resource, name, &written, &stored)?;
        let mut object = stored;
        if let Some(map) = object.as_object_mut() {
            match written.get("status") {
                Some(status) if !status.is_null() => map.insert("status".into(), status.clone()),
                _ => map.remove("status"),
            };
        }
        Ok(self.commit(resource, namespace, name, Some(object), options.dry_run))
    }

    fn require_scale(&self, resource: usize) -> Result<(), ApiError> {
        if self.resources[resource].scale {
            Ok(())
        } else {
            Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    }

    /// The `autoscaling/v1` Scale of a workload.
    fn scale_of(object: &Value) -> Value {
        let selector = object
            .pointer("/spec/selector")
            .and_then(|selector| LabelSelector::from_object(selector).ok())
            .map(|selector| selector.to_query())
            .unwrap_or_default();
        let mut metadata = Map::new();
        for field in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(value) = object.pointer(&format!("/metadata/{field}")) {
                metadata.insert(field.into(), value.clone());
            }
        }
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": metadata,
            // The real defaulting gives an unset spec.replicas 1.
            "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
            "status": {
                "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
                "selector": selector,
            },
        })
    }

    pub fn get_scale(
        &self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.require_scale(resource)?;
        Ok(Self::scale_of(&self.existing(resource, namespace, name)?))
    }

    pub fn write_scale(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        write: StatusWrite<'_>,
        options: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.require_scale(resource)?;
        let stored = self.existing(resource, namespace, name)?;
        let current = Self::scale_of(&stored);
        let scale = match write {
            StatusWrite::Replace(body) => body.clone(),
            StatusWrite::Patch(patch) => {
                let mut scale = current.clone();
                match patch {
                    Patch::Merge(body) => patch::merge(&mut scale, body),
                    Patch::Strategic(body) | Patch::Apply(body) => {
                        patch::strategic(&mut scale, body)
                            .map_err(|error| ApiError::invalid("scale", name, error))?
                    }
                    Patch::Json(body) => patch::json_patch(&mut scale, body).map_err(|error| {
                        ApiError::invalid(
                            "scale",
                            name,
                            format!("Scale \"{name}\" is invalid: {error}"),
                        )
                    })?,
                }
                scale
            }
        };
        if scale
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind != "Scale")
        {
            return Err(ApiError::bad_request(
                "the body of a scale request must be a Scale",
            ));
        }
        self.check_version(resource, name, &scale, &stored)?;
        let replicas = match scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(value) => value.as_i64().filter(|replicas| *replicas >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "scale",
                    name,
                    format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {value}: must be greater than or equal to 0"),
                )
            })?,
        };
        let mut object = stored;
        if let Some(map) = object.as_object_mut() {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.insert("replicas".into(), json!(replicas));
            }
        }
        let object = self.commit(resource, namespace, name, Some(object), options.dry_run);
        Ok(Self::scale_of(&object))
    }

    /// POST `pods/{name}/eviction`: the disruption-budget check, then the deletion.
    pub fn evict(
        &mut self,
        resource: usize,
        namespace: Option<&str>,
        name: &str,
        body: &Value,
        options: WriteOptions,
    ) -> Result<Value, ApiError> {
        let def = self.resources[resource].clone();
        if !def.group.is_empty() || def.kind != "Pod" {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        if let Some(kind) = body
            .get("kind")
            .and_then(Value::as_str)
            .filter(|kind| *kind != "Eviction")
        {
            return Err(ApiError::bad_request(format!(
                "the body of an eviction must be an Eviction, not a {kind}"
            )));
        }
        if let Some(given) = meta_str(body, "name").filter(|given| *given != name) {
            return Err(ApiError::bad_request(format!(
                "name in URL does not match name in Eviction object: {given}"
            )));
        }
        let pod = self.existing(resource, namespace, name)?;
        let dry_run = options.dry_run
            || body
                .pointer("/deleteOptions/dryRun")
                .and_then(Value::as_array)
                .is_some_and(|values| values.iter().any(|value| value == "All"));
        let delete_options = body
            .get("deleteOptions")
            .cloned()
            .unwrap_or_else(|| json!({}));
        // As the real server: pods that are not running cannot disrupt anything.
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ignore_budgets = matches!(phase, "Pending" | "Succeeded" | "Failed")
            || pod.pointer("/metadata/deletionTimestamp").is_some();
        let mut budget = None;
        if !ignore_budgets {
            let pdbs = self.resource("policy/v1", "PodDisruptionBudget");
            let namespace_name = meta_str(&pod, "namespace").map(str::to_string);
            let matching: Vec<Value> = pdbs
                .map(|pdbs| {
                    self.list(&Scope {
                        resource: pdbs,
                        namespace: namespace_name.clone(),
                        labels: LabelSelector::default(),
                        fields: FieldSelector::default(),
                    })
                })
                .unwrap_or_default()
                .into_iter()
                .filter(|pdb| {
                    // A null selector selects nothing; an empty one every pod (policy/v1).
                    pdb.pointer("/spec/selector")
                        .filter(|selector| !selector.is_null())
                        .and_then(|selector| LabelSelector::from_object(selector).ok())
                        .is_some_and(|selector| selector.matches(&pod))
                })
                .collect();
            if matching.len() > 1 {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = matching.into_iter().next() {
                let allowed = pdb
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if allowed < 1 {
                    let pdb_name = meta_str(&pdb, "name").unwrap_or_default();
                    let desired = pdb
                        .pointer("/status/desiredHealthy")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let current = pdb
                        .pointer("/status/currentHealthy")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    return Err(ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
                        .with_details(json!({"causes": [{
                            "reason": "DisruptionBudget",
                            "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"),
                        }]})));
                }
                budget = Some((pdb, allowed));
            }
        }
        if dry_run {
            return Ok(crate::status::success(201));
        }
        if let Some((mut pdb, allowed)) = budget {
            if let Some(status) = pdb.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("disruptionsAllowed".into(), json!(allowed - 1));
            }
            let pdb_name = meta_str(&pdb, "name").unwrap_or_default().to_string();
            let pdb_namespace = meta_str(&pdb, "namespace").map(str::to_string);
            if let Some(pdbs) = self.resource("policy/v1", "PodDisruptionBudget") {
                self.commit(pdbs, pdb_namespace.as_deref(), &pdb_name, Some(pdb), false);
            }
        }
        self.delete(
            resource,
            namespace,
            name,
            &delete_options,
            WriteOptions { dry_run: false },
        )?;
        Ok(crate::status::success(201))
    }
}

/// A patch body, by content type.
pub enum Patch {
    Merge(Value),
    Strategic(Value),
    Json(Value),
    /// Server-side apply, approximated as a strategic merge of the applied configuration.
    Apply(Value),
}

/// A write to a subresource: a whole replacement (PUT) or a patch.
pub enum StatusWrite<'a> {
    Replace(&'a Value),
    Patch(&'a Patch),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(state: &mut State, object: Value) -> Value {
        state.put(object).unwrap()
    }

    #[test]
    fn a_test_can_put_a_terminating_pod() {
        let mut state = State::default();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}});
        put(&mut state, pod.clone());
        let mut terminating = pod;
        terminating["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        let stored = put(&mut state, terminating);
        assert_eq!(
            stored["metadata"]["deletionTimestamp"],
            "2025-01-01T00:00:00Z"
        );
        let pods = state.resource("v1", "Pod").unwrap();
        assert!(state.get(pods, Some("ns"), "p").is_some());
        // A client cannot clear the stamp.
        let patched = state
            .patch(
                pods,
                Some("ns"),
                "p",
                &Patch::Merge(json!({"metadata": {"deletionTimestamp": null}})),
                WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(
            patched["metadata"]["deletionTimestamp"],
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut state = State::default();
        for index in 0..HISTORY_LIMIT + 5 {
            put(
                &mut state,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{}", index % 3), "namespace": "ns"}}),
            );
        }
        assert_eq!(state.history.len(), HISTORY_LIMIT);
        assert_eq!(state.compacted, 1 + 5);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(0), "2025-01-01T00:00:00Z");
        assert_eq!(timestamp(86_400 * 59 + 3_661), "2025-03-01T01:01:01Z");
        assert_eq!(timestamp(86_400 * 365), "2026-01-01T00:00:00Z");
    }
}
