//! Ingest endpoints. A request is answered 2xx only after its events are committed to the journal.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use homeostat_core::config::{Scope, Source};
use homeostat_core::ingest::{self, alertmanager, cloudevents, native, webhook};
use homeostat_core::Event;
use homeostat_engine::{Handle, IngestError};

use crate::auth::authorize;
use crate::error::{ApiError, Code};

/// `POST /api/v1/hooks/alertmanager`: Alertmanager's webhook, version 4.
pub async fn alertmanager_hook(
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(alertmanager_events(&handle, "alertmanager", &headers, body, None).await)
}

/// `POST /api/v1/events`: native events, or CloudEvents in structured (one or a batch) or binary
/// mode.
pub async fn events(State(handle): State<Handle>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let token = authorize(&handle, &headers, Scope::Ingest)?;
        let bytes = read_body(&handle, &headers, body).await?;
        let now = handle.clock().now();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        // A `ce-specversion` header makes it a binary-mode CloudEvent: the body is its data.
        let parsed = if cloudevents::is_binary(headers.keys().map(|name| name.as_str())) {
            let pairs = headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
            cloudevents::parse_binary(pairs, content_type, &bytes, now).map(|event| vec![event])
        } else {
            native::parse_as(
                native::Body::from_content_type(content_type),
                &bytes,
                "api",
                now,
            )
        };
        let events = parsed.map_err(|error| invalid(&handle, "api", error))?;
        commit(&handle, "api", token, events).await
    }
    .await;
    respond(result)
}

/// `POST /api/v1/hooks/{source}`: a configured Alertmanager endpoint or HMAC-signed generic webhook.
pub async fn source_hook(
    State(handle): State<Handle>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let source = handle
        .compiled()
        .config
        .sources
        .iter()
        .find(|source| source.name() == name)
        .cloned();
    let result = match source {
        Some(Source::Alertmanager(config)) => {
            alertmanager_events(&handle, &config.name, &headers, body, Some(&config.labels)).await
        }
        Some(Source::Webhook(_)) => webhook_events(&handle, &name, &headers, body).await,
        Some(Source::HttpProbe(_) | Source::KubernetesEvents(_)) | None => Err(ApiError::new(
            Code::NotFound,
            format!("no webhook source is named `{name}`; configure one under `sources:` with `type: webhook`"),
        )),
    };
    respond(result)
}

async fn alertmanager_events(
    handle: &Handle,
    source: &str,
    headers: &HeaderMap,
    body: Body,
    extra_labels: Option<&homeostat_core::Labels>,
) -> Result<usize, ApiError> {
    let token = authorize(handle, headers, Scope::Ingest)?;
    let bytes = read_body(handle, headers, body).await?;
    let mut events = alertmanager::parse(&bytes, source, handle.clock().now())
        .map_err(|error| invalid(handle, source, error))?;
    if let Some(extra) = extra_labels {
        for event in &mut events {
            for (name, value) in extra {
                event
                    .labels
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
    }
    commit(handle, source, token, events).await
}

async fn webhook_events(
    handle: &Handle,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<usize, ApiError> {
    // One config for the whole request, should a reload swap it meanwhile.
    let config = handle.compiled();
    let compiled = config
        .webhooks
        .get(name)
        .ok_or_else(|| ApiError::new(Code::Internal, "webhook not compiled"))?;
    let bytes = read_body(handle, headers, body).await?;
    let header_name = &compiled.source.signature_header;
    fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        headers.get(name).and_then(|value| value.to_str().ok())
    }
    let secret = handle
        .webhook_secret(name)
        .ok_or_else(|| ApiError::new(Code::Internal, "webhook secret missing"))?;
    let refuse = |code: Code, message: String| {
        handle.metrics().source_error(name, "unauthenticated");
        ApiError::new(code, message)
    };
    // With replay protection the signature covers `<delivery>.<timestamp>.<body>`.
    let delivery = match &compiled.source.replay {
        None => None,
        Some(replay) => {
            let how = "sign `<delivery>.<timestamp>.<body>` with HMAC-SHA256; see docs/config.md#replay-protection";
            let delivery = header(headers, &replay.delivery_header)
                .filter(|delivery| webhook::valid_delivery_id(delivery))
                .ok_or_else(|| {
                    refuse(
                        Code::InvalidSignature,
                        format!(
                            "missing or invalid `{}` header: give each delivery a unique id of up to {} letters, digits, `-`, `_` or `:`, and {how}",
                            replay.delivery_header,
                            webhook::MAX_DELIVERY_ID_CHARS
                        ),
                    )
                })?;
            let timestamp = header(headers, &replay.timestamp_header)
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    refuse(
                        Code::InvalidSignature,
                        format!(
                            "missing or invalid `{}` header: give the Unix time in seconds when the delivery was signed, and {how}",
                            replay.timestamp_header
                        ),
                    )
                })?;
            Some((replay, delivery, timestamp))
        }
    };
    let content = match &delivery {
        Some((_, delivery, timestamp)) => webhook::signed_content(delivery, timestamp, &bytes),
        None => bytes.to_vec(),
    };
    match header(headers, header_name) {
        None => {
            return Err(refuse(
                Code::InvalidSignature,
                format!("missing `{header_name}` header; sign the body with HMAC-SHA256 as `sha256=<hex>`"),
            ));
        }
        Some(signature)
            if !webhook::verify_signature(secret.expose().as_bytes(), &content, signature) =>
        {
            let what = if delivery.is_some() {
                "`<delivery>.<timestamp>.<body>`"
            } else {
                "the body"
            };
            return Err(refuse(
                Code::InvalidSignature,
                format!("the `{header_name}` signature does not match {what}"),
            ));
        }
        Some(_) => {}
    }
    // Only a verified delivery is checked for freshness, so nobody learns the window unsigned.
    let mut in_flight = None;
    if let Some((replay, delivery, timestamp)) = &delivery {
        let now = handle.clock().now().timestamp();
        let signed_at = timestamp.parse::<i64>().unwrap_or(i64::MAX);
        let window = i64::try_from(replay.window_secs).unwrap_or(i64::MAX);
        if signed_at.saturating_sub(now).saturating_abs() > window {
            handle.metrics().source_error(name, "replayed");
            return Err(ApiError::new(
                Code::StaleDelivery,
                format!(
                    "delivery `{delivery}` was signed at {signed_at}, more than {window} seconds from now ({now}); a replay is refused: sign it again with the current time, and check the sender's clock"
                ),
            ));
        }
        // The journal remembers deliveries through their events' ids, across restarts; the
        // in-flight set covers copies that arrive before the first one commits.
        let first = webhook::delivery_event_id(name, delivery, 0);
        let seen = match InFlight::claim(handle, &first) {
            Some(claim) => {
                in_flight = Some(claim);
                handle.store().event(&first).await.map_err(|error| {
                    ApiError::new(
                        Code::Unavailable,
                        format!("cannot read the journal: {error}"),
                    )
                })?
            }
            None => None,
        };
        if in_flight.is_none() || seen.is_some() {
            handle.metrics().source_error(name, "replayed");
            return Err(ApiError::new(
                Code::ReplayedDelivery,
                format!(
                    "delivery `{delivery}` of source `{name}` was accepted already; a copy is refused (a sender retrying after a lost answer can take this as success)"
                ),
            ));
        }
    }
    let mut events = webhook::map(
        &compiled.mapping,
        &config.templates,
        &bytes,
        name,
        handle.clock().now(),
    )
    .map_err(|error| invalid(handle, name, error))?;
    if let Some((_, delivery, _)) = &delivery {
        for (index, event) in events.iter_mut().enumerate() {
            event.id = webhook::delivery_event_id(name, delivery, index);
        }
    }
    let accepted = commit(handle, name, format!("hmac:{name}"), events).await;
    drop(in_flight);
    accepted
}

/// Webhook deliveries being committed, per daemon (keyed by its store), so that a copy sent
/// while the first is still on its way to the journal is refused too.
struct InFlight {
    key: (usize, String),
}

static IN_FLIGHT: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashSet<(usize, String)>>,
> = std::sync::LazyLock::new(Default::default);

impl InFlight {
    /// Claims an event id, or `None` when a request holds it already.
    fn claim(handle: &Handle, id: &str) -> Option<InFlight> {
        let key = (
            std::sync::Arc::as_ptr(handle.store()).cast::<()>() as usize,
            id.to_string(),
        );
        let mut set = IN_FLIGHT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Lazily: a claim made and dropped here would lock the set again while it is held.
        set.insert(key.clone()).then(|| InFlight { key })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut set = IN_FLIGHT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        set.remove(&self.key);
    }
}

/// Stamps who sent the events, for the audit trail, and commits them.
pub(crate) async fn commit(
    handle: &Handle,
    source: &str,
    by: String,
    mut events: Vec<Event>,
) -> Result<usize, ApiError> {
    for event in &mut events {
        event.ingested_by = Some(by.clone());
    }
    if events.is_empty() {
        return Ok(0);
    }
    let (pending, count) = handle.ingest(source, events).map_err(|error| match error {
        IngestError::Overloaded => ApiError::new(
            Code::Overloaded,
            "too many requests are waiting for the journal; retry after a second",
        ),
        IngestError::Unavailable(message) => ApiError::new(Code::Unavailable, message),
    })?;
    pending.committed().await.map_err(|error| {
        handle.metrics().source_error(source, "journal");
        ApiError::new(Code::Unavailable, error.to_string())
    })?;
    handle.accepted(source, count);
    Ok(count)
}

pub(crate) fn invalid(handle: &Handle, source: &str, error: ingest::Error) -> ApiError {
    handle.metrics().source_error(source, "invalid_payload");
    ApiError::new(Code::InvalidPayload, error.to_string())
}

/// A request body read in full, holding its admission among the bytes in flight until dropped:
/// keep it until the request is answered.
pub struct ReadBody {
    bytes: bytes::Bytes,
    _admitted: homeostat_engine::Admitted,
}

impl std::ops::Deref for ReadBody {
    type Target = bytes::Bytes;

    fn deref(&self) -> &bytes::Bytes {
        &self.bytes
    }
}

/// Reads the body up to `server.max_body_bytes` and within `server.body_timeout_secs`. Before any
/// of it is read, its declared length (or, undeclared, the largest allowed) must fit among the
/// bytes in flight (`server.max_inflight_bytes`), else 429: an overload is refused at the cost of a
/// header, not of a body read and parsed. Larger bodies get 413 without being read in full.
pub async fn read_body(
    handle: &Handle,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReadBody, ApiError> {
    let compiled = handle.compiled();
    let server = &compiled.config.server;
    let limit = server.max_body_bytes;
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("the body is larger than {limit} bytes; send fewer events per request or raise `server.max_body_bytes`"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let Some(admitted) = handle.admit(declared.unwrap_or(limit)) else {
        handle
            .metrics()
            .http_refused
            .get_or_create(&vec![("reason", "inflight_bytes".to_string())])
            .inc();
        return Err(ApiError::new(
            Code::Overloaded,
            format!(
                "the request bodies in progress already hold `server.max_inflight_bytes` ({} bytes); retry after a second",
                server.max_inflight_bytes
            ),
        ));
    };
    let deadline = std::time::Duration::from_secs_f64(server.body_timeout_secs.max(0.001));
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        handle
            .metrics()
            .http_refused
            .get_or_create(&vec![("reason", "body_timeout".to_string())])
            .inc();
        return Err(ApiError::new(
            Code::RequestTimeout,
            format!(
                "the body did not arrive within `server.body_timeout_secs` ({}s)",
                server.body_timeout_secs
            ),
        ));
    };
    match read {
        Ok(bytes) => Ok(ReadBody {
            bytes,
            _admitted: admitted,
        }),
        Err(error) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(current) = source {
                if current.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = current.source();
            }
            Err(ApiError::new(
                Code::InvalidPayload,
                format!("cannot read the body: {error}"),
            ))
        }
    }
}

fn respond(result: Result<usize, ApiError>) -> Response {
    match result {
        Ok(accepted) => (
            StatusCode::OK,
            Json(serde_json::json!({ "accepted": accepted })),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}
