//! API errors: one table of stable codes, answered as `{message, code, type, link}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error the API answers, with a stable code clients can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidPayload,
    InvalidQuery,
    InvalidParam,
    MissingToken,
    InvalidToken,
    InvalidSignature,
    StaleDelivery,
    ForbiddenScope,
    NotAnApprover,
    ApproverIsStarter,
    NoTokensConfigured,
    NotFound,
    RunbookNotFound,
    RunNotRunning,
    NoApprovalWaiting,
    IncidentNotFound,
    IncidentResolved,
    AlreadyAcknowledged,
    InvalidSilence,
    SilenceNotFound,
    SilenceExpired,
    RuleNotFound,
    RuleNotDisabled,
    InvalidConfig,
    ReloadUnavailable,
    ReplayedDelivery,
    PayloadTooLarge,
    RequestTimeout,
    Overloaded,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidPayload => "invalid_payload",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidParam => "invalid_param",
            Code::MissingToken => "missing_token",
            Code::InvalidToken => "invalid_token",
            Code::InvalidSignature => "invalid_signature",
            Code::StaleDelivery => "stale_delivery",
            Code::ReplayedDelivery => "replayed_delivery",
            Code::ForbiddenScope => "forbidden_scope",
            Code::NotAnApprover => "not_an_approver",
            Code::ApproverIsStarter => "approver_is_starter",
            Code::NoTokensConfigured => "no_tokens_configured",
            Code::NotFound => "not_found",
            Code::RunbookNotFound => "runbook_not_found",
            Code::RunNotRunning => "run_not_running",
            Code::NoApprovalWaiting => "no_approval_waiting",
            Code::IncidentNotFound => "incident_not_found",
            Code::IncidentResolved => "incident_resolved",
            Code::AlreadyAcknowledged => "already_acknowledged",
            Code::InvalidSilence => "invalid_silence",
            Code::SilenceNotFound => "silence_not_found",
            Code::SilenceExpired => "silence_expired",
            Code::RuleNotFound => "rule_not_found",
            Code::RuleNotDisabled => "rule_not_disabled",
            Code::InvalidConfig => "invalid_config",
            Code::ReloadUnavailable => "reload_unavailable",
            Code::PayloadTooLarge => "payload_too_large",
            Code::RequestTimeout => "request_timeout",
            Code::Overloaded => "overloaded",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidPayload
            | Code::InvalidQuery
            | Code::InvalidParam
            | Code::InvalidSilence
            | Code::InvalidConfig => StatusCode::BAD_REQUEST,
            Code::MissingToken
            | Code::InvalidToken
            | Code::InvalidSignature
            | Code::StaleDelivery
            | Code::NoTokensConfigured => StatusCode::UNAUTHORIZED,
            Code::ForbiddenScope | Code::NotAnApprover | Code::ApproverIsStarter => {
                StatusCode::FORBIDDEN
            }
            Code::NotFound
            | Code::RunbookNotFound
            | Code::IncidentNotFound
            | Code::SilenceNotFound
            | Code::RuleNotFound => StatusCode::NOT_FOUND,
            Code::RunNotRunning
            | Code::NoApprovalWaiting
            | Code::IncidentResolved
            | Code::AlreadyAcknowledged
            | Code::SilenceExpired
            | Code::ReplayedDelivery
            | Code::RuleNotDisabled
            | Code::ReloadUnavailable => StatusCode::CONFLICT,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Code::InvalidPayload
            | Code::InvalidQuery
            | Code::InvalidParam
            | Code::NotFound
            | Code::RunbookNotFound
            | Code::RunNotRunning
            | Code::NoApprovalWaiting
            | Code::IncidentNotFound
            | Code::IncidentResolved
            | Code::AlreadyAcknowledged
            | Code::InvalidSilence
            | Code::SilenceNotFound
            | Code::SilenceExpired
            | Code::RuleNotFound
            | Code::RuleNotDisabled
            | Code::InvalidConfig
            | Code::ReloadUnavailable
            | Code::ReplayedDelivery
            | Code::PayloadTooLarge
            | Code::RequestTimeout => "invalid_request",
            Code::MissingToken
            | Code::InvalidToken
            | Code::InvalidSignature
            | Code::StaleDelivery
            | Code::ForbiddenScope
            | Code::NotAnApprover
            | Code::ApproverIsStarter
            | Code::NoTokensConfigured => "auth",
            Code::Overloaded | Code::Unavailable | Code::Internal => "system",
        }
    }

    pub const ALL: &'static [Code] = &[
        Code::InvalidPayload,
        Code::InvalidQuery,
        Code::InvalidParam,
        Code::MissingToken,
        Code::InvalidToken,
        Code::InvalidSignature,
        Code::StaleDelivery,
        Code::ReplayedDelivery,
        Code::ForbiddenScope,
        Code::NotAnApprover,
        Code::ApproverIsStarter,
        Code::NoTokensConfigured,
        Code::NotFound,
        Code::RunbookNotFound,
        Code::RunNotRunning,
        Code::NoApprovalWaiting,
        Code::IncidentNotFound,
        Code::IncidentResolved,
        Code::AlreadyAcknowledged,
        Code::InvalidSilence,
        Code::SilenceNotFound,
        Code::SilenceExpired,
        Code::RuleNotFound,
        Code::RuleNotDisabled,
        Code::InvalidConfig,
        Code::ReloadUnavailable,
        Code::PayloadTooLarge,
        Code::RequestTimeout,
        Code::Overloaded,
        Code::Unavailable,
        Code::Internal,
    ];
}

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    code: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    link: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // 5xx bodies say nothing internal; the detail goes to the log.
        let message = match self.code {
            Code::Internal => {
                tracing::error!(code = self.code.as_str(), detail = %self.message, "request failed");
                "internal error; see the server log".to_string()
            }
            Code::Unavailable => {
                // The journal logs once when it stops taking work and once when it starts again;
                // a line per refused request would flood the log exactly when it matters.
                tracing::debug!(code = self.code.as_str(), detail = %self.message, "request refused");
                "the journal cannot take work now; nothing of this request was recorded; retry later"
                    .to_string()
            }
            _ => self.message,
        };
        let body = Body {
            message: &message,
            code: self.code.as_str(),
            kind: self.code.kind(),
            link: format!("docs/api.md#{}", self.code.as_str().replace('_', "-")),
        };
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        match self.code {
            Code::Overloaded => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Code::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        if matches!(
            self.code,
            Code::MissingToken | Code::InvalidToken | Code::NoTokensConfigured
        ) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
