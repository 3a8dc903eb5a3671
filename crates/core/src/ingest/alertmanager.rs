//! Alertmanager's webhook payload, version 4, as Alertmanager really sends it, every field kept.
//!
//! Firing alerts carry the zero time `0001-01-01T00:00:00Z` as `endsAt`; unknown fields (such as
//! `notification_reason` in newer releases) are ignored so that upgrades of Alertmanager never break
//! ingest. The notification's own fields (`receiver`, `status`, `groupKey`, `groupLabels`,
//! `commonLabels`, `commonAnnotations`, `externalURL`, `truncatedAlerts`) and each alert's
//! `generatorURL` are kept in every event's `data`, under the names of [`Notification`].

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::{from_json, strict_labels, Error};
use crate::event::{fingerprint, new_id, Event, EventKind, Labels, Status};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub group_key: String,
    #[serde(default, deserialize_with = "strict_labels")]
    pub group_labels: Labels,
    #[serde(default, deserialize_with = "strict_labels")]
    pub common_labels: Labels,
    #[serde(default, deserialize_with = "strict_labels")]
    pub common_annotations: Labels,
    /// Alertmanager spells it `externalURL`, which camelCase renaming would miss.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    #[serde(deserialize_with = "strict_labels")]
    pub labels: Labels,
    #[serde(default, deserialize_with = "strict_labels")]
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

/// What an event from a webhook keeps of the notification that carried it, in its `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub receiver: String,
    /// The notification's status (`firing` while any alert of the group fires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    pub group_key: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub external_url: String,
    /// How many alerts Alertmanager left out of this notification (`max_alerts`).
    pub truncated_alerts: u64,
    pub generator_url: String,
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
    let Payload {
        receiver,
        status,
        group_key,
        group_labels,
        common_labels,
        common_annotations,
        external_url,
        truncated_alerts,
        alerts,
        ..
    } = payload;
    alerts
        .into_iter()
        .enumerate()
        .map(|(index, alert)| {
            if alert.labels.is_empty() {
                return Err(Error::new(
                    format!("alerts[{index}].labels"),
                    "an alert needs at least one label",
                ));
            }
            let notification = Notification {
                receiver: receiver.clone(),
                status,
                group_key: group_key.clone(),
                group_labels: group_labels.clone(),
                common_labels: common_labels.clone(),
                common_annotations: common_annotations.clone(),
                external_url: external_url.clone(),
                truncated_alerts,
                generator_url: alert.generator_url,
            };
            Ok(alert_event(
                source,
                received_at,
                alert.status,
                alert.labels,
                alert.annotations,
                alert.starts_at,
                alert.ends_at,
                alert.fingerprint,
                serde_json::to_value(notification).ok(),
            ))
        })
        .collect()
}

/// One alert as a client posts it to Alertmanager's API v2 (`POST /api/v2/alerts`), as
/// Prometheus does: the state is in the times, not in a status field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostableAlert {
    #[serde(deserialize_with = "strict_labels")]
    pub labels: Labels,
    #[serde(default, deserialize_with = "strict_labels")]
    pub annotations: Labels,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
}

/// Parses the body of `POST /api/v2/alerts` (a JSON array; empty is accepted with nothing in
/// it). As in Alertmanager, an alert whose `endsAt` has passed is resolved, any other fires;
/// its fingerprint is its labels' (Alertmanager's own: FNV-1a over the sorted labels).
pub fn parse_postable(
    body: &[u8],
    source: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<Event>, Error> {
    let alerts: Vec<PostableAlert> = from_json(body)?;
    alerts
        .into_iter()
        .enumerate()
        .map(|(index, alert)| {
            let at = |field: &str| format!("[{index}].{field}");
            if alert.labels.is_empty() {
                return Err(Error::new(
                    at("labels"),
                    "an alert needs at least one label",
                ));
            }
            let starts_at = alert.starts_at.filter(not_zero_time);
            let ends_at = alert.ends_at.filter(not_zero_time);
            if let (Some(starts), Some(ends)) = (starts_at, ends_at) {
                if ends < starts {
                    return Err(Error::new(
                        at("endsAt"),
                        "start time must be before end time",
                    ));
                }
            }
            let status = match ends_at {
                Some(ends) if ends <= received_at => Status::Resolved,
                _ => Status::Firing,
            };
            let data = (!alert.generator_url.is_empty())
                .then(|| serde_json::json!({ "generator_url": alert.generator_url }));
            Ok(alert_event(
                source,
                received_at,
                status,
                alert.labels,
                alert.annotations,
                starts_at,
                ends_at,
                None,
                data,
            ))
        })
        .collect()
}

/// An alert as an event: the fingerprint Alertmanager gave it, else its labels'; Go's zero times
/// are none.
#[allow(clippy::too_many_arguments)] // The fields of an alert, as both Alertmanager formats give them.
pub(crate) fn alert_event(
    source: &str,
    received_at: DateTime<Utc>,
    status: Status,
    labels: Labels,
    annotations: Labels,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    fingerprint_given: Option<String>,
    data: Option<serde_json::Value>,
) -> Event {
    let fingerprint = fingerprint_given
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fingerprint(&labels));
    Event {
        id: new_id(received_at),
        source: source.to_string(),
        kind: EventKind::Alert,
        status,
        fingerprint,
        labels,
        annotations,
        starts_at: starts_at.filter(not_zero_time),
        ends_at: ends_at.filter(not_zero_time),
        received_at,
        data,
        ingested_by: None,
    }
}

/// Go's zero `time.Time` marks "not set" in Alertmanager's JSON.
pub(crate) fn not_zero_time(time: &DateTime<Utc>) -> bool {
    time.year() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_PAYLOAD: &str = r#"{
      "receiver": "homeostat", "status": "firing", "truncatedAlerts": 2,
      "alerts": [
        {"status": "firing", "labels": {"alertname": "ApiDown", "instance": "api:8080", "severity": "page"},
         "annotations": {"summary": "api is down", "runbook_url": "https://wiki/api"},
         "startsAt": "2026-11-24T10:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus:9090/graph?g0.expr=up", "fingerprint": "b2c1f7a0d1e2f3a4"},
        {"status": "resolved", "labels": {"alertname": "DiskFull", "instance": "db:9100"},
         "annotations": {}, "startsAt": "2026-11-24T09:00:00Z", "endsAt": "2026-11-24T09:30:00Z",
         "generatorURL": "", "fingerprint": ""}
      ],
      "groupLabels": {"alertname": "ApiDown"}, "commonLabels": {"severity": "page"}, "commonAnnotations": {"summary": "api is down"},
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
    fn keeps_every_field_of_the_notification() {
        let events = parse(
            REAL_PAYLOAD.as_bytes(),
            "alertmanager",
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
        let data: Notification =
            serde_json::from_value(events[0].data.clone().expect("data")).expect("notification");
        assert_eq!(data.external_url, "http://alertmanager:9093");
        assert_eq!(data.group_key, "{}:{alertname=\"ApiDown\"}");
        assert_eq!(data.receiver, "homeostat");
        assert_eq!(data.status, Some(Status::Firing));
        assert_eq!(data.truncated_alerts, 2);
        assert_eq!(data.group_labels["alertname"], "ApiDown");
        assert_eq!(data.common_labels["severity"], "page");
        assert_eq!(data.common_annotations["summary"], "api is down");
        assert_eq!(
            data.generator_url,
            "http://prometheus:9090/graph?g0.expr=up"
        );
    }

    #[test]
    fn refuses_what_a_lenient_parser_would_guess_at() {
        let now = DateTime::UNIX_EPOCH;
        let alert = r#"{"status":"firing","labels":{"a":"b"}}"#;
        let body = format!(r#"{{"version":"4","alerts":[{alert}]}} trailing"#);
        assert_eq!(
            parse(body.as_bytes(), "am", now).unwrap_err().field,
            "(body)"
        );
        let twice = r#"{"version":"4","alerts":[{"status":"firing","labels":{"a":"b","a":"c"}}]}"#;
        let error = parse(twice.as_bytes(), "am", now).unwrap_err();
        assert_eq!(error.field, "alerts[0].labels");
        assert!(error.message.contains("`a` is given twice"), "{error}");
        let replaced = r#"{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"},"labels":{"c":"d"}}]}"#;
        let error = parse(replaced.as_bytes(), "am", now).unwrap_err();
        assert!(
            error.message.contains("duplicate field `labels`"),
            "{error}"
        );
        let empty = r#"{"version":"4","alerts":[{"status":"firing","labels":{"":"b"}}]}"#;
        let error = parse(empty.as_bytes(), "am", now).unwrap_err();
        assert_eq!(error.field, "alerts[0].labels");
        assert!(error.message.contains("name is empty"), "{error}");
        // An empty batch is accepted, with nothing in it.
        let none = r#"{"version":"4","alerts":[]}"#;
        assert!(parse(none.as_bytes(), "am", now).unwrap().is_empty());
    }

    #[test]
    fn postable_alerts_fire_until_their_end_passes() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // As Prometheus sends them: a firing alert ends in the future, a resolved one has ended.
        let body = r#"[
          {"labels": {"alertname": "ApiDown", "instance": "api-1"}, "annotations": {"summary": "down"},
           "startsAt": "2026-11-24T09:58:00Z", "endsAt": "2026-11-24T10:04:00Z",
           "generatorURL": "http://prometheus:9090/graph?g0.expr=up"},
          {"labels": {"alertname": "DiskFull"}, "startsAt": "2026-11-24T09:00:00Z", "endsAt": "2026-11-24T09:59:00Z"},
          {"labels": {"alertname": "NoTimes"}}
        ]"#;
        let events = parse_postable(body.as_bytes(), "alertmanager_api", now).unwrap();
        let statuses: Vec<Status> = events.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [Status::Firing, Status::Resolved, Status::Firing]);
        assert_eq!(events[0].fingerprint, fingerprint(&events[0].labels));
        assert_eq!(
            events[0].data.as_ref().unwrap()["generator_url"],
            "http://prometheus:9090/graph?g0.expr=up"
        );
        assert!(parse_postable(b"[]", "a", now).unwrap().is_empty());
        let backwards = r#"[{"labels": {"a": "b"}, "startsAt": "2026-11-24T10:00:00Z", "endsAt": "2026-11-24T09:00:00Z"}]"#;
        assert_eq!(
            parse_postable(backwards.as_bytes(), "a", now)
                .unwrap_err()
                .field,
            "[0].endsAt"
        );
        let no_labels = r#"[{"labels": {}}]"#;
        assert_eq!(
            parse_postable(no_labels.as_bytes(), "a", now)
                .unwrap_err()
                .field,
            "[0].labels"
        );
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
