//! The formats other tools speak, through the in-process API: CloudEvents in binary and batch
//! mode, empty batches, strict JSON with the field named, the bearer scheme in any case, and
//! Alertmanager's API v2 silences and alerts.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::api::{alertmanager_payload, get, post, Api, INGEST, READ, WRITE};

#[tokio::test]
async fn a_binary_mode_cloud_event_keeps_its_attributes() {
    let api = Api::start("").await;
    let request = Request::post("/api/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "deploy-42")
        .header("ce-source", "/ci/deploy")
        .header("ce-type", "dev.ci.deploy")
        .header("ce-region", "eu%2Dwest")
        .header("ce-kind", "change")
        .body(Body::from(
            r#"{"labels": {"service": "checkout"}, "image": "v1.4.2"}"#,
        ))
        .expect("request");
    let (status, _, body) = api.call(request).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"accepted": 1})));
    let (_, _, listed) = api.call(get("/api/v1/events", Some(READ))).await;
    let event = &listed["events"][0];
    assert_eq!(event["kind"], "change", "{event:#}");
    assert_eq!(event["labels"]["service"], "checkout");
    assert_eq!(event["annotations"]["ce_id"], "deploy-42");
    assert_eq!(event["annotations"]["ce_region"], "eu-west");
    assert_eq!(
        event["annotations"]["ce_datacontenttype"],
        "application/json"
    );
    assert_eq!(event["data"]["image"], "v1.4.2");
}

#[tokio::test]
async fn empty_batches_are_accepted_in_every_format() {
    let api = Api::start("").await;
    let cases = [
        ("/api/v1/events", "application/json", "[]".to_string()),
        (
            "/api/v1/events",
            "application/cloudevents-batch+json",
            "[]".to_string(),
        ),
        (
            "/api/v1/hooks/alertmanager",
            "application/json",
            alertmanager_payload(&[]),
        ),
        ("/api/v2/alerts", "application/json", "[]".to_string()),
    ];
    for (path, content_type, body) in cases {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {INGEST}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request");
        let (status, _, answer) = api.call(request).await;
        assert_eq!(status, StatusCode::OK, "{path} {content_type}: {answer}");
    }
}

#[tokio::test]
async fn lenient_json_is_refused_with_the_field_named() {
    let api = Api::start("").await;
    let cases = [
        (
            r#"{"labels": {"a": "1"}} trailing"#,
            "(body)",
            "text after the JSON value",
        ),
        (
            r#"{"labels": {"a": "1", "a": "2"}}"#,
            "labels",
            "`a` is given twice",
        ),
        (
            r#"{"labels": {"a": "1"}, "labels": {"b": "2"}}"#,
            "labels",
            "given twice",
        ),
        (r#"{"labels": {"": "1"}}"#, "labels", "name is empty"),
        (
            r#"{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "!!"}"#,
            "data_base64",
            "is not base64",
        ),
    ];
    for (body, field, says) in cases {
        let (status, _, answer) = api.call(post("/api/v1/events", Some(INGEST), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{field}`")) && message.contains(says),
            "{body}: {message}"
        );
    }
    assert_eq!(api.handle.store().event_count().await.expect("count"), 0);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = Api::start("").await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request = Request::get("/api/v1/events")
            .header(header::AUTHORIZATION, format!("{scheme} {READ}"))
            .body(Body::empty())
            .expect("request");
        let (status, _, answer) = api.call(request).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {answer}");
    }
}

#[tokio::test]
async fn alertmanager_v2_silences_round_trip_and_take_their_scopes() {
    let api = Api::start("").await;
    let silence = json!({
        "matchers": [
            {"name": "alertname", "value": "ApiDown", "isRegex": false, "isEqual": true},
            {"name": "instance", "value": "web-\\d+", "isRegex": true},
            {"name": "service.name", "value": "checkout", "isRegex": false, "isEqual": false}
        ],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "oncall",
        "comment": "maintenance"
    });
    // A read token may not create one; an ingest token may not either.
    for token in [READ, INGEST] {
        let (status, _, _) = api
            .call(post("/api/v2/silences", Some(token), silence.to_string()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _, created) = api
        .call(post("/api/v2/silences", Some(WRITE), silence.to_string()))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["silenceID"].as_str().expect("an id").to_string();
    let (status, _, shown) = api
        .call(get(&format!("/api/v2/silence/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"]["state"], "active");
    assert_eq!(
        shown["matchers"],
        json!([
            {"name": "alertname", "value": "ApiDown", "isRegex": false, "isEqual": true},
            {"name": "instance", "value": "web-\\d+", "isRegex": true, "isEqual": true},
            {"name": "service.name", "value": "checkout", "isRegex": false, "isEqual": false}
        ])
    );
    // `filter` uses Alertmanager's matcher syntax, UTF-8 names included.
    let (_, _, listed) = api
        .call(get(
            "/api/v2/silences?filter=alertname%3D%22ApiDown%22",
            Some(READ),
        ))
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let (_, _, listed) = api
        .call(get("/api/v2/silences?filter=alertname%3DOther", Some(READ)))
        .await;
    assert_eq!(listed, json!([]));
    let (status, _, refused) = api
        .call(get("/api/v2/silences?filter=%7Ba%3Db%7D", Some(READ)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    let delete = Request::delete(format!("/api/v2/silence/{id}"))
        .header(header::AUTHORIZATION, format!("Bearer {WRITE}"))
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = api.call(delete).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, shown) = api
        .call(get(&format!("/api/v2/silence/{id}"), Some(READ)))
        .await;
    assert_eq!(shown["status"]["state"], "expired");

    // A silence whose matchers match everything is refused, as by Alertmanager.
    let everything = json!({"matchers": [{"name": "a", "value": ".*", "isRegex": true}],
        "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2999-01-01T00:00:00Z", "createdBy": "x", "comment": "y"});
    let (status, _, _) = api
        .call(post(
            "/api/v2/silences",
            Some(WRITE),
            everything.to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn alertmanager_v2_alerts_in_and_out() {
    let api = Api::start("").await;
    let alerts = json!([{"labels": {"alertname": "ApiDown", "service": "checkout"},
        "annotations": {"summary": "down"}, "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph?g0.expr=up"}]);
    let (status, _, _) = api
        .call(post("/api/v2/alerts", Some(READ), alerts.to_string()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "posting alerts takes ingest");
    let (status, _, answer) = api
        .call(post("/api/v2/alerts", Some(INGEST), alerts.to_string()))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _, listed) = api.call(get("/api/v2/alerts", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let alert: &Value = &listed[0];
    assert_eq!(alert["labels"]["alertname"], "ApiDown", "{listed}");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(alert["receivers"], json!([{"name": "homeostat"}]));
    assert_eq!(alert["generatorURL"], "http://prometheus/graph?g0.expr=up");
    let (_, _, none) = api
        .call(get("/api/v2/alerts?filter=service%3D%22db%22", Some(READ)))
        .await;
    assert_eq!(none, json!([]));
    let (_, _, groups) = api.call(get("/api/v2/alerts/groups", Some(READ))).await;
    assert_eq!(
        groups[0]["alerts"][0]["labels"]["service"], "checkout",
        "{groups}"
    );
    let (status, _, status_body) = api.call(get("/api/v2/status", Some(READ))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_body["cluster"]["status"], "disabled");
}
