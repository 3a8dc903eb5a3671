//! Generic JSON webhooks: HMAC-SHA256 signature checks and the config-driven mapping from any JSON body to events.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{from_json, Error};
use crate::event::{fingerprint, new_id, Event, EventKind, Labels, Status};
use crate::template::{Template, Templates};

/// Verifies `X-...-Signature: sha256=<hex>` (or bare hex) over the raw body, in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    let hex_digest = header_value.trim();
    let hex_digest = hex_digest.strip_prefix("sha256=").unwrap_or(hex_digest);
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Computes the signature header value a sender would send; used by tests and the webhook notifier.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The longest delivery id accepted; ids are journaled in every event's id derivation.
pub const MAX_DELIVERY_ID_CHARS: usize = 128;

/// What a sender signs when the source has replay protection: `<delivery>.<timestamp>.<body>`, the
/// layout of Standard Webhooks, so that neither the delivery id nor the time can be changed without
/// the key. Neither may contain a `.` ([`valid_delivery_id`], a timestamp is digits), so the parts
/// cannot be shifted against each other.
pub fn signed_content(delivery: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(delivery.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(delivery.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The signature header value for one delivery with replay protection; for senders and tests.
pub fn sign_delivery(secret: &[u8], delivery: &str, timestamp: &str, body: &[u8]) -> String {
    sign(secret, &signed_content(delivery, timestamp, body))
}

/// Whether a delivery id is usable: 1 to [`MAX_DELIVERY_ID_CHARS`] letters, digits, `-`, `_` or
/// `:` (GUIDs, ULIDs, `msg_...` ids).
pub fn valid_delivery_id(delivery: &str) -> bool {
    !delivery.is_empty()
        && delivery.len() <= MAX_DELIVERY_ID_CHARS
        && delivery
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b':'))
}

/// The id of the `index`th event of a delivery: the same for every copy of the delivery, so the
/// journal itself remembers which deliveries it holds, across restarts (a UUIDv8 from SHA-256).
pub fn delivery_event_id(source: &str, delivery: &str, index: usize) -> String {
    use sha2::Digest;
    let mut hash = Sha256::new();
    for part in ["homeostat-delivery", source, delivery, &index.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A compiled mapping from a JSON body to events. Templates see `body` (the whole document) and
/// `item` (the current element when `items` selects an array, else the body).
#[derive(Clone, Debug)]
pub struct Mapping {
    /// A JSON pointer (`/alerts`) to an array whose elements each become an event.
    pub items: Option<String>,
    pub kind: EventKind,
    pub status: Template,
    pub fingerprint: Option<Template>,
    pub labels: Vec<(String, Template)>,
    pub annotations: Vec<(String, Template)>,
}

pub fn map(
    mapping: &Mapping,
    templates: &Templates,
    body: &[u8],
    source: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<Event>, Error> {
    let document: serde_json::Value = from_json(body)?;
    // The document becomes a template value once; each item's context shares it (a reference
    // count, not a copy), so a body of n items costs O(n), not n copies of the whole body.
    let body_value = minijinja::Value::from_serialize(&document);
    let items: &[serde_json::Value] = match &mapping.items {
        Some(pointer) => match document.pointer(pointer) {
            Some(serde_json::Value::Array(items)) => items,
            Some(_) => {
                return Err(Error::new(
                    pointer.clone(),
                    "expected an array here, as the source's `items` says",
                ))
            }
            None => {
                return Err(Error::new(
                    pointer.clone(),
                    "missing; the source's `items` points here",
                ))
            }
        },
        None => std::slice::from_ref(&document),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let context = minijinja::context! {
                body => body_value.clone(),
                item => minijinja::Value::from_serialize(item),
            };
            let field = |name: &str| match &mapping.items {
                Some(pointer) => format!("{pointer}/{index} ({name})"),
                None => name.to_string(),
            };
            let render = |name: &str, template: &Template| {
                templates
                    .render(template, &context)
                    .map_err(|error| Error::new(field(name), error.to_string()))
            };
            let status = match render("status", &mapping.status)?.trim() {
                "firing" | "" => Status::Firing,
                "resolved" => Status::Resolved,
                other => {
                    return Err(Error::new(
                        field("status"),
                        format!(
                        "the status template gave `{other}`; it must give `firing` or `resolved`"
                    ),
                    ))
                }
            };
            let mut labels = Labels::new();
            for (name, template) in &mapping.labels {
                let value = render(&format!("labels.{name}"), template)?;
                if !value.is_empty() {
                    labels.insert(name.clone(), value);
                }
            }
            if labels.is_empty() {
                return Err(Error::new(
                    field("labels"),
                    "the mapping produced no labels; an event needs at least one",
                ));
            }
            let mut annotations = Labels::new();
            for (name, template) in &mapping.annotations {
                annotations.insert(
                    name.clone(),
                    render(&format!("annotations.{name}"), template)?,
                );
            }
            let fingerprint = match &mapping.fingerprint {
                Some(template) => render("fingerprint", template)?,
                None => fingerprint(&labels),
            };
            Ok(Event {
                id: new_id(received_at),
                source: source.to_string(),
                kind: mapping.kind,
                status,
                fingerprint,
                labels,
                annotations,
                starts_at: None,
                ends_at: None,
                received_at,
                data: Some(item.clone()),
                ingested_by: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplatesBuilder;

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let body = br#"{"a":1}"#;
        let signature = sign(b"s3cret", body);
        assert!(verify_signature(b"s3cret", body, &signature));
        assert!(verify_signature(
            b"s3cret",
            body,
            signature.trim_start_matches("sha256=")
        ));
        assert!(!verify_signature(b"other", body, &signature));
        assert!(!verify_signature(b"s3cret", br#"{"a":2}"#, &signature));
        assert!(!verify_signature(b"s3cret", body, "sha256=zz"));
    }

    #[test]
    fn deliveries_sign_their_id_and_time_and_name_their_events() {
        let body = br#"{"a":1}"#;
        let signature = sign_delivery(b"s3cret", "d-1", "1700000000", body);
        let content = signed_content("d-1", "1700000000", body);
        assert!(verify_signature(b"s3cret", &content, &signature));
        // Another id or time does not verify with the same signature.
        for (delivery, timestamp) in [("d-2", "1700000000"), ("d-1", "1700000001")] {
            let content = signed_content(delivery, timestamp, body);
            assert!(!verify_signature(b"s3cret", &content, &signature));
        }
        assert!(!verify_signature(b"s3cret", body, &signature));
        assert!(valid_delivery_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        for bad in [
            "",
            "a.b",
            "a b",
            "é",
            &"x".repeat(MAX_DELIVERY_ID_CHARS + 1),
        ] {
            assert!(!valid_delivery_id(bad), "{bad:?}");
        }
        let id = delivery_event_id("ci", "d-1", 0);
        assert_eq!(id, delivery_event_id("ci", "d-1", 0));
        assert_ne!(id, delivery_event_id("ci", "d-1", 1));
        assert_ne!(id, delivery_event_id("cd", "d-1", 0));
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 8);
    }

    #[test]
    fn maps_array_items_to_events() {
        let mut builder = TemplatesBuilder::new();
        let mapping = Mapping {
            items: Some("/checks".into()),
            kind: EventKind::Alert,
            status: builder
                .add("{{ 'resolved' if item.ok else 'firing' }}")
                .unwrap(),
            fingerprint: Some(builder.add("{{ body.host }}/{{ item.name }}").unwrap()),
            labels: vec![("check".into(), builder.add("{{ item.name }}").unwrap())],
            annotations: vec![],
        };
        let templates = builder.build();
        let body = br#"{"host": "h1", "checks": [{"name": "disk", "ok": false}, {"name": "cpu", "ok": true}]}"#;
        let events = map(&mapping, &templates, body, "nagios", DateTime::UNIX_EPOCH).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].status, events[0].fingerprint.as_str()),
            (Status::Firing, "h1/disk")
        );
        assert_eq!(events[1].status, Status::Resolved);
        let error = map(
            &mapping,
            &templates,
            br#"{"host": "h1"}"#,
            "nagios",
            DateTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(error.field, "/checks");
    }
}
