//! Prebuilt request bodies: Alertmanager webhook v4 payloads for homeostat and v2 alert arrays for Alertmanager.
//!
//! Bodies are serialized once before the load starts so that the generator spends its CPU on sending, not on JSON.
//! Body `i` carries the alerts for instances `i * batch .. (i + 1) * batch`, so rotating over all bodies covers
//! every distinct label set, and a body that was accepted once tells exactly which alerts are active.

use bytes::Bytes;
use serde_json::{json, Value};

/// Which API a body is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `POST /api/v1/hooks/alertmanager` on homeostat: one webhook v4 notification.
    Webhook,
    /// `POST /api/v2/alerts` on Alertmanager: a JSON array of postable alerts.
    AlertmanagerV2,
}

/// A rotation of bodies that together carry `bodies.len() * batch` distinct alerts.
pub struct Bodies {
    pub bodies: Vec<Bytes>,
    pub batch: usize,
}

impl Bodies {
    /// Distinct alerts across all bodies: `distinct_alerts` rounded up to a whole number of batches.
    pub fn distinct_alerts(&self) -> usize {
        self.bodies.len() * self.batch
    }

    pub fn mean_body_bytes(&self) -> usize {
        let total: usize = self.bodies.iter().map(Bytes::len).sum();
        total / self.bodies.len().max(1)
    }
}

/// Builds bodies of `batch` alerts each covering at least `distinct_alerts` label sets.
///
/// `starts_at` is one RFC 3339 instant shared by all alerts: both servers treat a re-sent alert with the same
/// labels as the same active alert, so repeating a body refreshes it rather than adding one.
pub fn build(flavor: Flavor, batch: usize, distinct_alerts: usize, starts_at: &str) -> Bodies {
    build_with_services(flavor, batch, distinct_alerts, starts_at, 0)
}

/// As [`build`], with a `service` label cycling over `services` values when it is not 0, so the
/// alerts group into that many incidents.
pub fn build_with_services(
    flavor: Flavor,
    batch: usize,
    distinct_alerts: usize,
    starts_at: &str,
    services: usize,
) -> Bodies {
    let batch = batch.max(1);
    let body_count = distinct_alerts.max(1).div_ceil(batch);
    let bodies = (0..body_count)
        .map(|body_index| {
            let alerts: Vec<Value> = (0..batch)
                .map(|offset| {
                    let mut alert = alert(flavor, body_index * batch + offset, starts_at);
                    if services > 0 {
                        alert["labels"]["service"] =
                            json!(format!("svc-{}", (body_index * batch + offset) % services));
                    }
                    alert
                })
                .collect();
            let body = match flavor {
                Flavor::Webhook => json!({
                    "version": "4",
                    "status": "firing",
                    "receiver": "bench",
                    "groupLabels": {},
                    "commonLabels": {},
                    "commonAnnotations": {},
                    "externalURL": "",
                    "groupKey": "bench",
                    "truncatedAlerts": 0,
                    "alerts": alerts,
                }),
                Flavor::AlertmanagerV2 => Value::Array(alerts),
            };
            Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serializes"))
        })
        .collect();
    Bodies { bodies, batch }
}

fn alert(flavor: Flavor, instance: usize, starts_at: &str) -> Value {
    let labels =
        json!({"alertname": "Bench", "instance": format!("host-{instance}"), "job": "bench"});
    match flavor {
        Flavor::Webhook => json!({
            "status": "firing",
            "labels": labels,
            "annotations": {},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": format!("{:016x}", splitmix64(instance as u64)),
        }),
        // The v2 API takes no status or fingerprint (it derives both), and `generatorURL` is optional.
        Flavor::AlertmanagerV2 => json!({
            "labels": labels,
            "annotations": {},
            "startsAt": starts_at,
        }),
    }
}

/// A bijective mix, so that distinct instances get distinct fingerprints that look like Alertmanager's.
fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_cover_every_instance_once() {
        let bodies = build(Flavor::AlertmanagerV2, 3, 10, "2024-01-01T00:00:00Z");
        assert_eq!(bodies.bodies.len(), 4);
        assert_eq!(bodies.distinct_alerts(), 12);
        let mut instances = Vec::new();
        for body in &bodies.bodies {
            let alerts: Vec<Value> = serde_json::from_slice(body).unwrap();
            assert_eq!(alerts.len(), 3);
            instances.extend(
                alerts
                    .iter()
                    .map(|alert| alert["labels"]["instance"].as_str().unwrap().to_owned()),
            );
        }
        let expected: Vec<String> = (0..12).map(|index| format!("host-{index}")).collect();
        assert_eq!(instances, expected);
    }

    #[test]
    fn webhook_body_has_the_v4_envelope_and_fingerprints() {
        let bodies = build(Flavor::Webhook, 2, 2, "2024-01-01T00:00:00Z");
        let body: Value = serde_json::from_slice(&bodies.bodies[0]).unwrap();
        assert_eq!(body["version"], "4");
        let alerts = body["alerts"].as_array().unwrap();
        let first = alerts[0]["fingerprint"].as_str().unwrap();
        assert_eq!(first.len(), 16);
        assert_ne!(first, alerts[1]["fingerprint"].as_str().unwrap());
    }
}
