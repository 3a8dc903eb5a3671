//! The `notify` action: sends a notification through a configured Slack, PagerDuty or webhook notifier.
//! Secrets (the Slack webhook URL, the PagerDuty routing key, signing keys) never reach the outcome:
//! it names only the notifier and its type.

use homeostat_core::action::Notify;
use homeostat_core::config::{Notifier, PagerdutyNotifier, SlackNotifier, WebhookNotifier};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, Reply};
use super::{Context, Outcome};
use crate::secrets::{self, Secret};

/// The severities PagerDuty accepts, which `notify` uses for every notifier.
const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];
const EVENT_ACTIONS: &[&str] = &["trigger", "acknowledge", "resolve"];

/// Slack refuses a header longer than this many characters.
const SLACK_HEADER_CHARS: usize = 150;
/// Slack refuses a section field longer than this many characters.
const SLACK_FIELD_CHARS: usize = 2000;
/// Slack allows this many fields per section and this many blocks per message.
const SLACK_FIELDS_PER_SECTION: usize = 10;
const SLACK_MAX_BLOCKS: usize = 50;
/// Slack cuts a message's `text` at this many characters.
const SLACK_TEXT_CHARS: usize = 40_000;
/// PagerDuty refuses a summary longer than this many characters.
const PAGERDUTY_SUMMARY_CHARS: usize = 1024;
/// PagerDuty refuses a `dedup_key` longer than this many characters.
const PAGERDUTY_DEDUP_KEY_CHARS: usize = 255;
/// PagerDuty refuses an event larger than 512 KB; the details get what the rest leaves.
const PAGERDUTY_DETAILS_BYTES: usize = 500_000;
/// Server answers quoted in errors are cut to this many characters to keep the error one line.
const MAX_ANSWER_CHARS: usize = 200;

const SIGNATURE_HEADER: &str = "x-homeostat-signature";

/// Sends `notify` through its notifier, waiting at most `context.timeout` for the answer.
pub async fn run(notify: &Notify, context: &Context) -> Outcome {
    let Some(notifier) = context.notifiers.get(&notify.notifier) else {
        let mut message = format!("no notifier named `{}`", notify.notifier);
        if !context.notifiers.is_empty() {
            let names: Vec<String> = context
                .notifiers
                .keys()
                .map(|name| format!("`{name}`"))
                .collect();
            message.push_str(&format!("; consider one of {}", names.join(", ")));
        }
        return Outcome::failed(json!({}), message);
    };
    let target = Target {
        name: notifier.name(),
        kind: kind(notifier),
    };
    tracing::debug!(
        notifier = target.name,
        kind = target.kind,
        "sending notification"
    );
    let result = match notifier {
        Notifier::Slack(slack) => send_slack(notify, slack, &target, context).await,
        Notifier::Pagerduty(pagerduty) => send_pagerduty(notify, pagerduty, &target, context).await,
        Notifier::Webhook(webhook) => send_webhook(notify, webhook, &target, context).await,
    };
    result.unwrap_or_else(|outcome| outcome)
}

fn kind(notifier: &Notifier) -> &'static str {
    match notifier {
        Notifier::Slack(_) => "slack",
        Notifier::Pagerduty(_) => "pagerduty",
        Notifier::Webhook(_) => "webhook",
    }
}

/// The notifier as the outcome may name it.
struct Target<'a> {
    name: &'a str,
    kind: &'static str,
}

impl Target<'_> {
    fn output(&self) -> Value {
        json!({ "notifier": self.name, "type": self.kind })
    }

    fn output_with(&self, extra: Value) -> Value {
        let mut output = self.output();
        if let (Some(output), Value::Object(extra)) = (output.as_object_mut(), extra) {
            output.extend(extra);
        }
        output
    }

    fn failed(&self, message: impl std::fmt::Display) -> Outcome {
        Outcome::failed(
            self.output(),
            format!("notifier `{}`: {message}", self.name),
        )
    }

    /// Sends and reads the answer. Every error is scrubbed of `secrets`, in case a server or a
    /// library echoes them.
    async fn post(
        &self,
        builder: reqwest::RequestBuilder,
        context: &Context,
        secrets: &[&Secret],
    ) -> Result<Reply, Outcome> {
        match tokio::time::timeout(context.timeout, http::send(builder)).await {
            Err(_elapsed) => Err(Outcome::timed_out(self.output(), context.timeout)),
            Ok(Err(error)) if error.is_timeout() => {
                Err(Outcome::timed_out(self.output(), context.timeout))
            }
            Ok(Err(error)) => {
                let message = if error.is_connect() {
                    format!("cannot reach {}: {}", self.kind, http::cause(error))
                } else {
                    format!("request to {} failed: {}", self.kind, http::cause(error))
                };
                Err(self.failed(redact(message, secrets)))
            }
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// Fails unless the answer is a 2xx, quoting the start of what the server said.
    fn check(&self, reply: &Reply, secrets: &[&Secret]) -> Result<(), Outcome> {
        if reply.status.is_success() {
            return Ok(());
        }
        Err(self.rejected(reply, first_line(&reply.text()), secrets))
    }

    fn rejected(&self, reply: &Reply, answer: Option<String>, secrets: &[&Secret]) -> Outcome {
        let status = reply.status.as_u16();
        let message = match answer {
            Some(answer) => format!("got status {status} from {}: {answer}", self.kind),
            None => format!("got status {status} from {}", self.kind),
        };
        let mut outcome = self.failed(redact(message, secrets));
        outcome.output = self.output_with(json!({ "status": status }));
        outcome
    }
}

async fn send_slack(
    notify: &Notify,
    slack: &SlackNotifier,
    target: &Target<'_>,
    context: &Context,
) -> Result<Outcome, Outcome> {
    let webhook_url = secrets::resolve(&slack.webhook_url).map_err(|error| target.failed(error))?;
    let url = reqwest::Url::parse(webhook_url.expose())
        // The parse error may quote the URL, so it is not shown.
        .map_err(|_| {
            target.failed(format!(
                "the webhook url in {} is not a valid url",
                slack.webhook_url
            ))
        })?;
    let payload = slack_payload(notify, slack.channel.as_deref());
    let builder = context.http.post(url).json(&payload);
    let reply = target.post(builder, context, &[&webhook_url]).await?;
    target.check(&reply, &[&webhook_url])?;
    Ok(Outcome::succeeded(
        target.output_with(json!({ "status": reply.status.as_u16() })),
    ))
}

/// A message whose `text` is the fallback shown in notifications, and whose blocks show the summary
/// as a header with severity and details as fields.
fn slack_payload(notify: &Notify, channel: Option<&str>) -> Value {
    let summary = if notify.summary.trim().is_empty() {
        "(no summary)"
    } else {
        notify.summary.as_str()
    };
    let field = |name: &str, value: &str| {
        json!({
            "type": "mrkdwn",
            "text": cut_chars(&format!("*{}*\n{}", slack_escape(name), slack_escape(value)), SLACK_FIELD_CHARS),
        })
    };
    let mut fields = vec![field("severity", &notify.severity)];
    fields.extend(
        notify
            .details
            .iter()
            .map(|(name, value)| field(name, value)),
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut_chars(summary, SLACK_HEADER_CHARS)}}),
    ];
    let sections: Vec<&[Value]> = fields.chunks(SLACK_FIELDS_PER_SECTION).collect();
    if sections.len() < SLACK_MAX_BLOCKS {
        blocks.extend(
            sections
                .iter()
                .map(|chunk| json!({"type": "section", "fields": chunk})),
        );
    } else {
        // One block is left for saying what did not fit, rather than Slack refusing the message.
        let shown = SLACK_MAX_BLOCKS - 2;
        blocks.extend(
            sections[..shown]
                .iter()
                .map(|chunk| json!({"type": "section", "fields": chunk})),
        );
        let hidden: usize = sections[shown..].iter().map(|chunk| chunk.len()).sum();
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("... {hidden} more details not shown")}]}));
    }
    let mut payload = json!({
        "text": cut_chars(
            &format!("[{}] {}", notify.severity.to_uppercase(), slack_escape(summary)),
            SLACK_TEXT_CHARS,
        ),
        "blocks": blocks,
    });
    if let Some(channel) = channel {
        payload["channel"] = json!(channel);
    }
    payload
}

/// Slack reads `&`, `<` and `>` in mrkdwn as markup; everything else is literal.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What PagerDuty answers, on success and on failure.
#[derive(Debug, Default, Deserialize)]
struct PagerdutyAnswer {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

async fn send_pagerduty(
    notify: &Notify,
    pagerduty: &PagerdutyNotifier,
    target: &Target<'_>,
    context: &Context,
) -> Result<Outcome, Outcome> {
    let event_action = notify.event_action.as_deref().unwrap_or("trigger");
    if !EVENT_ACTIONS.contains(&event_action) {
        return Err(target.failed(format!(
            "unknown event action `{event_action}`; use trigger, acknowledge or resolve"
        )));
    }
    let routing_key =
        secrets::resolve(&pagerduty.routing_key).map_err(|error| target.failed(error))?;
    let dedup_key = pagerduty_dedup_key(
        notify
            .dedup_key
            .as_deref()
            .unwrap_or(context.run_id.as_str()),
    );
    let mut event = json!({
        "routing_key": routing_key.expose(),
        "event_action": event_action,
        "dedup_key": dedup_key,
    });
    // Acknowledge and resolve only name the incident; PagerDuty ignores a payload on them.
    if event_action == "trigger" {
        event["payload"] = json!({
            "summary": cut_chars(&notify.summary, PAGERDUTY_SUMMARY_CHARS),
            "source": "homeostat",
            "severity": severity(notify),
            "custom_details": pagerduty_details(&notify.details),
        });
    }
    let builder = context.http.post(&pagerduty.url).json(&event);
    let reply = target.post(builder, context, &[&routing_key]).await?;
    let answer: PagerdutyAnswer = serde_json::from_slice(&reply.body).unwrap_or_default();
    if !reply.status.is_success() {
        let mut said: Vec<String> = answer.status.into_iter().chain(answer.message).collect();
        if !answer.errors.is_empty() {
            said.push(format!("({})", answer.errors.join("; ")));
        }
        let quoted = if said.is_empty() {
            first_line(&reply.text())
        } else {
            Some(cut_chars(&said.join(": "), MAX_ANSWER_CHARS))
        };
        return Err(target.rejected(&reply, quoted, &[&routing_key]));
    }
    Ok(Outcome::succeeded(target.output_with(json!({
        "status": reply.status.as_u16(),
        "event_action": event_action,
        // PagerDuty's answer is authoritative; it echoes ours when it accepted it.
        "dedup_key": answer.dedup_key.unwrap_or(dedup_key),
    }))))
}

/// A dedup key within PagerDuty's 255 characters. A longer one keeps its start and ends in a
/// hash of the whole, so the trigger, acknowledge and resolve of one alert still share it and two
/// keys with the same start stay apart.
fn pagerduty_dedup_key(key: &str) -> String {
    if key.chars().count() <= PAGERDUTY_DEDUP_KEY_CHARS {
        return key.to_string();
    }
    let hash = homeostat_core::event::fingerprint(&homeostat_core::Labels::from([(
        "dedup_key".to_string(),
        key.to_string(),
    )]));
    let keep: String = key
        .chars()
        .take(PAGERDUTY_DEDUP_KEY_CHARS - 3 - hash.len())
        .collect();
    format!("{keep}...{hash}")
}

/// The details, each value cut so that the event stays within PagerDuty's size limit.
fn pagerduty_details(details: &std::collections::BTreeMap<String, String>) -> Value {
    let total: usize = details
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if total <= PAGERDUTY_DETAILS_BYTES {
        return json!(details);
    }
    // Characters are at most four bytes each.
    let each = (PAGERDUTY_DETAILS_BYTES / details.len().max(1) / 4).max(64);
    json!(details
        .iter()
        .map(|(name, value)| (cut_chars(name, each), cut_chars(value, each)))
        .collect::<std::collections::BTreeMap<_, _>>())
}

/// The severity PagerDuty accepts. An unknown one is sent as `error` rather than failing, because
/// a typo should not stop someone from being paged.
fn severity(notify: &Notify) -> &str {
    if SEVERITIES.contains(&notify.severity.as_str()) {
        &notify.severity
    } else {
        tracing::warn!(severity = %notify.severity, notifier = %notify.notifier, "unknown severity sent as `error`");
        "error"
    }
}

async fn send_webhook(
    notify: &Notify,
    webhook: &WebhookNotifier,
    target: &Target<'_>,
    context: &Context,
) -> Result<Outcome, Outcome> {
    let (mut headers, header_secrets) =
        http::headers(&webhook.headers).map_err(|message| target.failed(message))?;
    http::set_idempotency_key(&mut headers, &context.idempotency_key)
        .map_err(|message| target.failed(message))?;
    let body = json!({
        "summary": notify.summary,
        "severity": notify.severity,
        "details": notify.details,
        "run_id": context.run_id,
        "idempotency_key": context.idempotency_key,
    });
    // Serialised once here so that the signature covers exactly the bytes sent.
    let body = serde_json::to_vec(&body)
        .map_err(|error| target.failed(format!("cannot encode the body: {error}")))?;
    let signing_key = match &webhook.secret {
        Some(reference) => {
            let key = secrets::resolve(reference).map_err(|error| target.failed(error))?;
            let signature = homeostat_core::ingest::webhook::sign(key.expose().as_bytes(), &body);
            let value = HeaderValue::from_str(&signature)
                .map_err(|_| target.failed("cannot encode the signature"))?;
            headers.insert(HeaderName::from_static(SIGNATURE_HEADER), value);
            Some(key)
        }
        None => None,
    };
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let secrets: Vec<&Secret> = header_secrets.iter().chain(signing_key.as_ref()).collect();
    let builder = context.http.post(&webhook.url).headers(headers).body(body);
    let reply = target.post(builder, context, &secrets).await?;
    target.check(&reply, &secrets)?;
    Ok(Outcome::succeeded(
        target.output_with(json!({ "status": reply.status.as_u16() })),
    ))
}

/// Replaces every secret value in `message`.
fn redact(message: String, secrets: &[&Secret]) -> String {
    secrets
        .iter()
        .map(|secret| secret.expose())
        .filter(|value| !value.is_empty())
        .fold(message, |message, value| {
            message.replace(value, "<redacted>")
        })
}

fn first_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(cut_chars(line, MAX_ANSWER_CHARS))
}

/// At most `max` characters, ending in `...` when cut.
fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(3)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}...", &text[..cut]),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use axum::http::StatusCode;
    use homeostat_core::config::{MaybeSecret, SecretRef};

    use super::*;
    use crate::action::http::tests::{closed_address, context, receiver};
    use crate::action::Status;

    fn notify(notifier: &str) -> Notify {
        Notify {
            notifier: notifier.into(),
            summary: "api is down".into(),
            details: BTreeMap::from([
                ("namespace".into(), "prod".into()),
                ("pod".into(), "api-0".into()),
            ]),
            severity: "critical".into(),
            event_action: None,
            dedup_key: None,
        }
    }

    fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> SecretRef {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        SecretRef::File(path)
    }

    fn slack(dir: &tempfile::TempDir, url: &str) -> Notifier {
        Notifier::Slack(SlackNotifier {
            name: "chat".into(),
            webhook_url: secret_file(dir, "slack-url", url),
            channel: Some("#ops".into()),
        })
    }

    fn assert_hidden(outcome: &Outcome, secret: &str) {
        let shown = serde_json::to_string(outcome).unwrap();
        assert!(!shown.contains(secret), "`{secret}` leaked into {shown}");
    }

    #[tokio::test]
    async fn unknown_notifier_fails() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(
            Duration::from_secs(10),
            vec![slack(&dir, "http://127.0.0.1:1/")],
        );
        let outcome = run(&notify("pager"), &context).await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error.as_deref(),
            Some("no notifier named `pager`; consider one of `chat`")
        );
    }

    #[tokio::test]
    async fn slack_posts_blocks_to_the_secret_url() {
        let (address, mut requests) = receiver(StatusCode::OK, "ok").await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://{address}/services/T000/B000/XXSLACKSECRETXX");
        let context = context(Duration::from_secs(10), vec![slack(&dir, &url)]);

        let outcome = run(&notify("chat"), &context).await;

        assert_eq!(
            outcome,
            Outcome::succeeded(json!({"notifier": "chat", "type": "slack", "status": 200}))
        );
        assert_hidden(&outcome, "XXSLACKSECRETXX");
        let received = requests.recv().await.unwrap();
        assert_eq!(received.path, "/services/T000/B000/XXSLACKSECRETXX");
        assert_eq!(
            received.json(),
            json!({
                "text": "[CRITICAL] api is down",
                "channel": "#ops",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "api is down"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*severity*\ncritical"},
                        {"type": "mrkdwn", "text": "*namespace*\nprod"},
                        {"type": "mrkdwn", "text": "*pod*\napi-0"},
                    ]},
                ],
            })
        );
    }

    #[tokio::test]
    async fn slack_failures_do_not_show_the_url() {
        let (address, _requests) = receiver(StatusCode::NOT_FOUND, "no_service").await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://{address}/services/XXSLACKSECRETXX");
        let outcome = run(
            &notify("chat"),
            &context(Duration::from_secs(10), vec![slack(&dir, &url)]),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error.as_deref(),
            Some("notifier `chat`: got status 404 from slack: no_service")
        );
        assert_hidden(&outcome, "XXSLACKSECRETXX");

        let closed = closed_address().await;
        let url = format!("http://{closed}/services/XXSLACKSECRETXX");
        let outcome = run(
            &notify("chat"),
            &context(Duration::from_secs(10), vec![slack(&dir, &url)]),
        )
        .await;
        assert_eq!(
            outcome.error.as_deref(),
            Some("notifier `chat`: cannot reach slack: connection refused")
        );
        assert_hidden(&outcome, "XXSLACKSECRETXX");
        assert_hidden(&outcome, &closed.to_string());
    }

    #[test]
    fn slack_splits_many_fields_and_escapes_markup() {
        let mut many = notify("chat");
        many.details = (0..25)
            .map(|index| (format!("k{index:02}"), "<a&b>".to_string()))
            .collect();
        let payload = slack_payload(&many, None);
        let blocks = payload["blocks"].as_array().unwrap();
        // The header, then 26 fields in sections of at most 10.
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[3]["fields"].as_array().unwrap().len(), 6);
        assert_eq!(blocks[1]["fields"][1]["text"], "*k00*\n&lt;a&amp;b&gt;");
        assert!(payload.get("channel").is_none());
    }

    fn pagerduty(dir: &tempfile::TempDir, url: String) -> Notifier {
        Notifier::Pagerduty(PagerdutyNotifier {
            name: "oncall".into(),
            routing_key: secret_file(dir, "routing-key", "R0UTINGKEY0123456789"),
            url,
        })
    }

    #[tokio::test]
    async fn pagerduty_triggers_then_resolves_with_the_dedup_key() {
        let (address, mut requests) = receiver(
            StatusCode::ACCEPTED,
            r#"{"status":"success","message":"Event processed","dedup_key":"run-1"}"#,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let context = context(
            Duration::from_secs(10),
            vec![pagerduty(&dir, format!("http://{address}/v2/enqueue"))],
        );

        let outcome = run(&notify("oncall"), &context).await;

        assert_eq!(
            outcome,
            Outcome::succeeded(json!({
                "notifier": "oncall", "type": "pagerduty", "status": 202,
                "event_action": "trigger", "dedup_key": "run-1",
            }))
        );
        assert_hidden(&outcome, "R0UTINGKEY0123456789");
        let received = requests.recv().await.unwrap();
        assert_eq!(received.path, "/v2/enqueue");
        assert_eq!(
            received.json(),
            json!({
                "routing_key": "R0UTINGKEY0123456789",
                "event_action": "trigger",
                // The run id, so the resolve of the same run finds the incident.
                "dedup_key": "run-1",
                "payload": {
                    "summary": "api is down",
                    "source": "homeostat",
                    "severity": "critical",
                    "custom_details": {"namespace": "prod", "pod": "api-0"},
                },
            })
        );

        let mut resolve = notify("oncall");
        resolve.event_action = Some("resolve".into());
        resolve.dedup_key = Some("incident-7".into());
        let outcome = run(&resolve, &context).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        assert_eq!(
            requests.recv().await.unwrap().json(),
            json!({"routing_key": "R0UTINGKEY0123456789", "event_action": "resolve", "dedup_key": "incident-7"})
        );
    }

    #[test]
    fn payloads_stay_within_the_receivers_published_limits() {
        // PagerDuty: summary 1,024 characters, dedup_key 255, the severity enum, 512 KB.
        let long_key = "k".repeat(400);
        let key = pagerduty_dedup_key(&long_key);
        assert_eq!(key.chars().count(), PAGERDUTY_DEDUP_KEY_CHARS);
        assert!(key.contains("..."), "{key}");
        assert_eq!(
            key,
            pagerduty_dedup_key(&long_key),
            "the same alert, the same key"
        );
        assert_ne!(
            key,
            pagerduty_dedup_key(&format!("{long_key}x")),
            "another key stays apart"
        );
        assert_eq!(pagerduty_dedup_key("short"), "short");
        let mut big = notify("pd");
        big.summary = "s".repeat(5000);
        assert_eq!(
            cut_chars(&big.summary, PAGERDUTY_SUMMARY_CHARS)
                .chars()
                .count(),
            1024
        );
        big.severity = "page".into();
        assert_eq!(severity(&big), "error");
        let details: BTreeMap<String, String> = (0..20)
            .map(|index| (format!("d{index}"), "x".repeat(100_000)))
            .collect();
        let cut = pagerduty_details(&details);
        assert!(
            cut.to_string().len() < 512 * 1024,
            "{}",
            cut.to_string().len()
        );
        assert!(cut["d0"]
            .as_str()
            .is_some_and(|value| value.ends_with("...")));

        // Slack: header 150, fields 2,000, 10 fields a section, 50 blocks, text 40,000.
        let mut many = notify("slack");
        many.summary = "h".repeat(60_000);
        many.details = (0..600)
            .map(|index| (format!("d{index:03}"), "v".repeat(3000)))
            .collect();
        let payload = slack_payload(&many, None);
        let blocks = payload["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), SLACK_MAX_BLOCKS);
        assert!(payload["text"].as_str().unwrap().chars().count() <= SLACK_TEXT_CHARS);
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= SLACK_HEADER_CHARS);
        for block in &blocks[1..SLACK_MAX_BLOCKS - 1] {
            let fields = block["fields"].as_array().expect("fields");
            assert!(fields.len() <= SLACK_FIELDS_PER_SECTION);
            assert!(fields
                .iter()
                .all(|field| field["text"].as_str().unwrap().chars().count() <= SLACK_FIELD_CHARS));
        }
        let last = &blocks[SLACK_MAX_BLOCKS - 1];
        assert_eq!(last["type"], "context");
        assert!(last["elements"][0]["text"]
            .as_str()
            .is_some_and(|text| text.contains("more details not shown")));
    }

    #[tokio::test]
    async fn pagerduty_rejection_quotes_the_answer() {
        let (address, _requests) = receiver(
            StatusCode::BAD_REQUEST,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["'routing_key' is invalid"]}"#,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let context = context(
            Duration::from_secs(10),
            vec![pagerduty(&dir, format!("http://{address}/v2/enqueue"))],
        );
        let outcome = run(&notify("oncall"), &context).await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.error.as_deref(),
            Some("notifier `oncall`: got status 400 from pagerduty: invalid event: Event object is invalid: ('routing_key' is invalid)")
        );
        assert_eq!(
            outcome.output,
            json!({"notifier": "oncall", "type": "pagerduty", "status": 400})
        );

        let mut bad = notify("oncall");
        bad.event_action = Some("snooze".into());
        let outcome = run(&bad, &context).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some("notifier `oncall`: unknown event action `snooze`; use trigger, acknowledge or resolve")
        );
    }

    #[tokio::test]
    async fn webhook_is_signed_and_carries_its_headers() {
        let (address, mut requests) = receiver(StatusCode::NO_CONTENT, "").await;
        let dir = tempfile::tempdir().unwrap();
        let webhook = Notifier::Webhook(WebhookNotifier {
            name: "hooks".into(),
            url: format!("http://{address}/hook"),
            secret: Some(secret_file(&dir, "signing-key", "XXSIGNINGKEYXX")),
            headers: BTreeMap::from([
                (
                    "Authorization".into(),
                    MaybeSecret::Secret(secret_file(&dir, "auth", "Bearer XXHEADERSECRETXX")),
                ),
                ("X-Team".into(), MaybeSecret::Plain("sre".into())),
            ]),
        });
        let context = context(Duration::from_secs(10), vec![webhook]);

        let outcome = run(&notify("hooks"), &context).await;

        assert_eq!(
            outcome,
            Outcome::succeeded(json!({"notifier": "hooks", "type": "webhook", "status": 204}))
        );
        assert_hidden(&outcome, "XXSIGNINGKEYXX");
        assert_hidden(&outcome, "XXHEADERSECRETXX");
        let received = requests.recv().await.unwrap();
        let signature = received.header("x-homeostat-signature").unwrap();
        assert!(signature.starts_with("sha256="));
        assert!(homeostat_core::ingest::webhook::verify_signature(
            b"XXSIGNINGKEYXX",
            &received.body,
            signature
        ));
        assert!(!homeostat_core::ingest::webhook::verify_signature(
            b"another key",
            &received.body,
            signature
        ));
        assert_eq!(
            received.header("authorization"),
            Some("Bearer XXHEADERSECRETXX")
        );
        assert_eq!(received.header("x-team"), Some("sre"));
        assert_eq!(received.header("content-type"), Some("application/json"));
        assert_eq!(received.header("idempotency-key"), Some("run-1/2/1"));
        assert_eq!(
            received.json(),
            json!({
                "summary": "api is down",
                "severity": "critical",
                "details": {"namespace": "prod", "pod": "api-0"},
                "run_id": "run-1",
                "idempotency_key": "run-1/2/1",
            })
        );
    }

    #[tokio::test]
    async fn webhook_timeout_and_missing_secret() {
        let router = axum::Router::new().fallback(|| async {
            // Longer than the action's timeout; the server task is dropped when the test ends.
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        });
        let address = crate::action::http::tests::serve(router).await;
        let webhook = |secret: Option<SecretRef>| {
            Notifier::Webhook(WebhookNotifier {
                name: "hooks".into(),
                url: format!("http://{address}/hook"),
                secret,
                headers: BTreeMap::new(),
            })
        };
        let outcome = run(
            &notify("hooks"),
            &context(Duration::from_millis(300), vec![webhook(None)]),
        )
        .await;
        assert_eq!(outcome.status, Status::TimedOut);
        assert_eq!(
            outcome.output,
            json!({"notifier": "hooks", "type": "webhook"})
        );

        let unset = SecretRef::Env("HOMEOSTAT_TEST_SURELY_UNSET_SIGNING_KEY".into());
        let outcome = run(
            &notify("hooks"),
            &context(Duration::from_millis(300), vec![webhook(Some(unset))]),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert!(outcome
            .error
            .unwrap()
            .starts_with("notifier `hooks`: secret env `HOMEOSTAT_TEST_SURELY_UNSET_SIGNING_KEY`"));
    }

    #[test]
    fn cuts_long_text() {
        assert_eq!(cut_chars("abcdef", 6), "abcdef");
        assert_eq!(cut_chars("abcdefg", 6), "abc...");
        assert_eq!(cut_chars("ééééééé", 6), "ééé...");
    }
}
