//! Alertmanager's webhook payload, version 4, as Alertmanager really sends it.
//!
//! Firing alerts carry the zero time `0001-01-01T00:00:00Z` as `endsAt`; unknown fields (such as
//! `notification_reason` in newer releases) are ignored so that upgrades of Alertmanager never break
//! ingest.

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use super::{from_json, Error};
use crate::event::{fingerprint, new_id, Event, EventKind, Labels, Status};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Parses a webhook body into one event per alert.
pub fn parse(body: &[u8], source: &str, received_at: DateTime<Utc>) -> Result<Vec<Event>, Error> {
    let payload: Payload = from_json(body)?;
    if payload.version != "4" {
        return Err(Error::new(
            "version",
            format!(
                "unsupported webhook version `{}`; homeostat reads Alertmanager's version `4`",
                payload.version
            ),
        ));
    }
    payload
        .alerts
        .into_iter()
        .enumerate()
        .map(|(index, alert)| {
            if alert.labels.is_empty() {
                return Err(Error::new(
                    format!("alerts[{index}].labels"),
                    "an alert needs at least one label",
                ));
            }
            let fingerprint = alert
                .fingerprint
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| fingerprint(&alert.labels));
            let data =
                (!alert.generator_url.is_empty() || !payload.receiver.is_empty()).then(|| {
                    serde_json::json!({
                        "generator_url": alert.generator_url,
                        "receiver": payload.receiver,
                        "group_key": payload.group_key,
                        "external_url": payload.external_url,
                    })
                });
            Ok(Event {
                id: new_id(received_at),
                source: source.to_string(),
                kind: EventKind::Alert,
                status: alert.status,
                fingerprint,
                labels: alert.labels,
                annotations: alert.annotations,
                starts_at: alert.starts_at.filter(not_zero_time),
                ends_at: alert.ends_at.filter(not_zero_time),
                received_at,
                data,
                ingested_by: None,
            })
        })
        .collect()
}

/// Go's zero `time.Time` marks "not set" in Alertmanager's JSON.
fn not_zero_time(time: &DateTime<Utc>) -> bool {
    time.year() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_PAYLOAD: &str = r#"{
      "receiver": "homeostat", "status": "firing", "truncatedAlerts": 0,
      "alerts": [
        {"status": "firing", "labels": {"alertname": "ApiDown", "instance": "api:8080", "severity": "page"},
         "annotations": {"summary": "api is down", "runbook_url": "https://wiki/api"},
         "startsAt": "2026-11-24T10:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus:9090/graph?g0.expr=up", "fingerprint": "b2c1f7a0d1e2f3a4"},
        {"status": "resolved", "labels": {"alertname": "DiskFull", "instance": "db:9100"},
         "annotations": {}, "startsAt": "2026-11-24T09:00:00Z", "endsAt": "2026-11-24T09:30:00Z",
         "generatorURL": "", "fingerprint": ""}
      ],
      "groupLabels": {"alertname": "ApiDown"}, "commonLabels": {}, "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093", "version": "4",
      "groupKey": "{}:{alertname=\"ApiDown\"}", "notification_reason": "new alerts"
    }"#;

    #[test]
    fn parses_real_payload_with_zero_ends_at_and_unknown_fields() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        let events = parse(REAL_PAYLOAD.as_bytes(), "alertmanager", now).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].status, Status::Firing);
        assert_eq!(events[0].fingerprint, "b2c1f7a0d1e2f3a4");
        assert_eq!(events[0].ends_at, None);
        assert_eq!(events[0].labels["alertname"], "ApiDown");
        assert_eq!(events[1].status, Status::Resolved);
        assert_eq!(
            events[1].fingerprint,
            fingerprint(&events[1].labels),
            "empty fingerprint is computed"
        );
        assert!(events[1].ends_at.is_some());
    }

    #[test]
    fn names_the_bad_field() {
        let now = DateTime::UNIX_EPOCH;
        let bad_status = r#"{"version":"4","alerts":[{"status":"burning","labels":{"a":"b"}}]}"#;
        let error = parse(bad_status.as_bytes(), "am", now).unwrap_err();
        assert_eq!(error.field, "alerts[0].status");
        let no_alerts = r#"{"version":"4"}"#;
        assert!(parse(no_alerts.as_bytes(), "am", now)
            .unwrap_err()
            .message
            .contains("alerts"));
        let bad_version = r#"{"version":"3","alerts":[]}"#;
        assert_eq!(
            parse(bad_version.as_bytes(), "am", now).unwrap_err().field,
            "version"
        );
        assert_eq!(parse(b"{not json", "am", now).unwrap_err().field, "(body)");
    }
}
