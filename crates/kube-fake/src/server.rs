//! The HTTP side: parses Kubernetes API paths and queries, records each request, applies
//! injected faults and answers with the real API's JSON (streams for watches).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Patch, Scope, State, StatusWrite, WatchRequest, WriteOptions};
use crate::Request;

pub type Shared = Arc<Mutex<State>>;

/// The state, even if a panicking test thread poisoned the lock: the fake must keep answering.
pub fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bodies larger than this are refused (413); the real server's limit is 3 MiB per object.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

pub async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query: BTreeMap<String, String> = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|Query(pairs)| {
            pairs
                .into_iter()
                .filter(|(key, _)| !key.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error(&ApiError::for_code(
                413,
                "the request body is too large or could not be read",
            ))
        }
    };
    let body = if bytes.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let recorded = Request {
        method: method.to_string(),
        path: path.clone(),
        query,
        content_type,
        body,
        watch,
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| path.clone());

    let fault = {
        let mut state = lock(&state);
        state.record(recorded.clone());
        state.take_fault(method.as_str(), &path_and_query)
    };
    if let Some(fault) = fault {
        return error(&fault);
    }
    match route(&state, &method, &recorded) {
        Ok(response) => response,
        Err(failure) => error(&failure),
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(failure: &ApiError) -> Response {
    json_response(failure.code, &failure.to_json())
}

/// The parsed location of a resource request.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

fn route(state: &Shared, method: &Method, request: &Request) -> Result<Response, ApiError> {
    let segments: Vec<&str> = request
        .path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] if method == Method::GET => return Ok(json_response(200, &version_info())),
        ["api"] if method == Method::GET => {
            return Ok(json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ))
        }
        ["apis"] if method == Method::GET => {
            return Ok(json_response(200, &group_list(&lock(state))))
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path(&request.path)),
    };
    if rest.is_empty() {
        if method != Method::GET {
            return Err(ApiError::for_code(405, "only GET is allowed on discovery"));
        }
        return resource_list(&lock(state), group, version)
            .map(|list| json_response(200, &list))
            .ok_or_else(|| not_found_path(&request.path));
    }
    let target = {
        let state = lock(state);
        parse_target(&state, group, version, rest).ok_or_else(|| not_found_path(&request.path))?
    };
    dispatch(state, method, request, &target)
}

/// Resolves `{plural}[/{name}[/{sub}]]` or `namespaces/{ns}/{plural}[/{name}[/{sub}]]`.
fn parse_target(state: &State, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let namespaced_plural = |plural: &str| {
        state
            .resource_by_plural(group, version, plural)
            .filter(|resource| state.resources[*resource].namespaced)
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, rest @ ..] if namespaced_plural(plural).is_some() => {
            (Some(namespace.to_string()), [&[*plural][..], rest].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, subresource] => (
            *plural,
            Some(name.to_string()),
            Some(subresource.to_string()),
        ),
        _ => return None,
    };
    let resource = state.resource_by_plural(group, version, plural)?;
    // A namespaced resource is only addressed by name inside its namespace.
    if state.resources[resource].namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

fn write_options(request: &Request) -> WriteOptions {
    WriteOptions {
        dry_run: request.dry_run(),
    }
}

fn scope(request: &Request, target: &Target) -> Result<Scope, ApiError> {
    let labels = LabelSelector::parse(
        request
            .query
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(|message| ApiError::bad_request(format!("unable to parse requirement: {message}")))?;
    let mut fields = request
        .query
        .get("fieldSelector")
        .cloned()
        .unwrap_or_default();
    if let Some(name) = &target.name {
        // The legacy `.../pods/{name}?watch=true` form watches one object.
        fields = if fields.is_empty() {
            format!("metadata.name={name}")
        } else {
            format!("{fields},metadata.name={name}")
        };
    }
    let fields = FieldSelector::parse(&fields)
        .map_err(|message| ApiError::bad_request(format!("invalid field selector: {message}")))?;
    Ok(Scope {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels,
        fields,
    })
}

fn body(request: &Request) -> Result<&Value, ApiError> {
    match &request.body {
        Some(body) if body.is_object() || body.is_array() => Ok(body),
        Some(_) => Err(ApiError::bad_request(
            "the request body is not JSON (the fake speaks JSON only)",
        )),
        None => Err(ApiError::bad_request("the request has no body")),
    }
}

fn patch_of(request: &Request) -> Result<Patch, ApiError> {
    let media = request
        .content_type
        .as_deref()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let unsupported = || {
        ApiError::for_code(
            415,
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {media:?})"),
        )
    };
    match media.as_str() {
        "application/merge-patch+json" => Ok(Patch::Merge(body(request)?.clone())),
        "application/strategic-merge-patch+json" => Ok(Patch::Strategic(body(request)?.clone())),
        "application/json-patch+json" => Ok(Patch::Json(body(request)?.clone())),
        "application/apply-patch+yaml" => {
            if request
                .query
                .get("fieldManager")
                .is_none_or(String::is_empty)
            {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            // kube-rs sends the applied object as JSON (valid YAML); real YAML is not parsed.
            match &request.body {
                Some(body @ Value::Object(_)) => Ok(Patch::Apply(body.clone())),
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}

fn dispatch(
    state: &Shared,
    method: &Method,
    request: &Request,
    target: &Target,
) -> Result<Response, ApiError> {
    let namespace = target.namespace.as_deref();
    let options = write_options(request);
    let ok = |value: Value| Ok(json_response(200, &value));
    match (&target.name, target.subresource.as_deref()) {
        (None, _) => match *method {
            Method::GET if request.watch => watch(state, request, target),
            Method::GET => {
                let exact = match (
                    request
                        .query
                        .get("resourceVersionMatch")
                        .map(String::as_str),
                    request.query.get("resourceVersion"),
                ) {
                    (Some("Exact"), Some(version)) => {
                        Some(version.parse::<u64>().map_err(|_| {
                            ApiError::bad_request(format!("invalid resourceVersion {version:?}"))
                        })?)
                    }
                    _ => None,
                };
                let scope = scope(request, target)?;
                ok(lock(state).list_response(&scope, exact)?)
            }
            Method::POST => {
                let created = lock(state).create(
                    target.resource,
                    namespace,
                    body(request)?.clone(),
                    options,
                )?;
                Ok(json_response(201, &created))
            }
            Method::DELETE => {
                let scope = scope(request, target)?;
                ok(lock(state).delete_collection(&scope, &delete_options(request), options)?)
            }
            _ => Err(ApiError::for_code(
                405,
                format!("{method} is not allowed on a collection"),
            )),
        },
        (Some(name), None) => match *method {
            Method::GET if request.watch => watch(state, request, target),
            Method::GET => {
                let state = lock(state);
                let object = state.get(target.resource, namespace, name).cloned();
                object.map_or_else(
                    || {
                        Err(ApiError::not_found(
                            &state.resources[target.resource].qualified(),
                            name,
                        ))
                    },
                    ok,
                )
            }
            Method::PUT => ok(lock(state).replace(
                target.resource,
                namespace,
                name,
                body(request)?.clone(),
                options,
            )?),
            Method::PATCH => {
                let patch = patch_of(request)?;
                let mut state = lock(state);
                let existed = state.get(target.resource, namespace, name).is_some();
                let object = state.patch(target.resource, namespace, name, &patch, options)?;
                Ok(json_response(if existed { 200 } else { 201 }, &object))
            }
            Method::DELETE => ok(lock(state).delete(
                target.resource,
                namespace,
                name,
                &delete_options(request),
                options,
            )?),
            _ => Err(ApiError::for_code(
                405,
                format!("{method} is not allowed on an object"),
            )),
        },
        (Some(name), Some("status")) => match *method {
            Method::GET => ok(lock(state).get_status(target.resource, namespace, name)?),
            Method::PUT => ok(lock(state).write_status(
                target.resource,
                namespace,
                name,
                StatusWrite::Replace(body(request)?),
                options,
            )?),
            Method::PATCH => {
                let patch = patch_of(request)?;
                ok(lock(state).write_status(
                    target.resource,
                    namespace,
                    name,
                    StatusWrite::Patch(&patch),
                    options,
                )?)
            }
            _ => Err(ApiError::for_code(
                405,
                format!("{method} is not allowed on status"),
            )),
        },
        (Some(name), Some("scale")) => match *method {
            Method::GET => ok(lock(state).get_scale(target.resource, namespace, name)?),
            Method::PUT => ok(lock(state).write_scale(
                target.resource,
                namespace,
                name,
                StatusWrite::Replace(body(request)?),
                options,
            )?),
            Method::PATCH => {
                let patch = patch_of(request)?;
                ok(lock(state).write_scale(
                    target.resource,
                    namespace,
                    name,
                    StatusWrite::Patch(&patch),
                    options,
                )?)
            }
            _ => Err(ApiError::for_code(
                405,
                format!("{method} is not allowed on scale"),
            )),
        },
        (Some(name), Some("eviction")) if *method == Method::POST => {
            let status =
                lock(state).evict(target.resource, namespace, name, body(request)?, options)?;
            Ok(json_response(201, &status))
        }
        _ => Err(not_found_path(&request.path)),
    }
}

/// `DeleteOptions` from the body, with the query's `gracePeriodSeconds`, `propagationPolicy`
/// and `dryRun` folded in (the body wins).
fn delete_options(request: &Request) -> Value {
    let mut options = match &request.body {
        Some(body @ Value::Object(_)) => body.clone(),
        _ => json!({}),
    };
    if let (Some(map), Some(seconds)) = (
        options.as_object_mut(),
        request.query.get("gracePeriodSeconds"),
    ) {
        if let Ok(seconds) = seconds.parse::<i64>() {
            map.entry("gracePeriodSeconds").or_insert(json!(seconds));
        }
    }
    if let (Some(map), Some(policy)) = (
        options.as_object_mut(),
        request.query.get("propagationPolicy"),
    ) {
        map.entry("propagationPolicy").or_insert(json!(policy));
    }
    options
}

fn watch(state: &Shared, request: &Request, target: &Target) -> Result<Response, ApiError> {
    let flag = |key: &str| {
        matches!(
            request.query.get(key).map(String::as_str),
            Some("true" | "1")
        )
    };
    let watch_request = WatchRequest {
        scope: scope(request, target)?,
        resource_version: request.query.get("resourceVersion").cloned(),
        bookmarks: flag("allowWatchBookmarks"),
        send_initial_events: flag("sendInitialEvents"),
    };
    let timeout =
        match request.query.get("timeoutSeconds") {
            Some(seconds) => Some(seconds.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {seconds:?}"))
            })?),
            None => None,
        };
    let receiver = lock(state).watch(watch_request)?;
    // Each line goes out as its own chunk as soon as it is queued; the stream ends when the
    // watch is dropped from the state (close_watches) or the timeout passes.
    let lines = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|line| (Ok::<Bytes, Infallible>(line), receiver))
    });
    let body = match timeout {
        Some(seconds) => {
            Body::from_stream(lines.take_until(tokio::time::sleep(Duration::from_secs(seconds))))
        }
        None => Body::from_stream(lines),
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "emulationMajor": "1",
        "emulationMinor": "34",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": "v1.34.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group_list(state: &State) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for def in state.resources.iter().filter(|def| !def.group.is_empty()) {
        let versions = groups.entry(def.group.as_str()).or_default();
        if !versions.contains(&def.version.as_str()) {
            versions.push(def.version.as_str());
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> =
                versions.iter().map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version})).collect();
            json!({"name": group, "versions": versions.clone(), "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(state: &State, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = state
        .resources
        .iter()
        .filter(|def| def.group == group && def.version == version)
        .collect();
    let first = defs.first()?;
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for def in &defs {
        resources.push(json!({"name": def.plural, "singularName": def.kind.to_ascii_lowercase(), "namespaced": def.namespaced, "kind": def.kind, "verbs": verbs}));
        if def.status {
            resources.push(json!({"name": format!("{}/status", def.plural), "singularName": "", "namespaced": def.namespaced, "kind": def.kind, "verbs": ["get", "patch", "update"]}));
        }
        if def.scale {
            resources.push(json!({"name": format!("{}/scale", def.plural), "singularName": "", "namespaced": def.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if def.group.is_empty() && def.kind == "Pod" {
            resources.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": first.api_version(), "resources": resources}),
    )
}
