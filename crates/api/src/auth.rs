//! Bearer-token authentication with scopes. Tokens come from config by reference; only digests are held.

use axum::http::{header, HeaderMap};
use homeostat_core::config::Scope;
use homeostat_engine::Handle;

use crate::error::{ApiError, Code};

/// Checks the request's bearer token for `scope`; answers the name of the token on success.
pub fn authorize(handle: &Handle, headers: &HeaderMap, scope: Scope) -> Result<String, ApiError> {
    if !handle.has_tokens() {
        return Err(ApiError::new(
            Code::NoTokensConfigured,
            "no api tokens are configured, so the API refuses this call; add `api_tokens` to the config",
        ));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            Code::MissingToken,
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    let presented = value
        .to_str()
        .ok()
        // RFC 7235: the scheme is case-insensitive.
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(ApiError::new(
            Code::InvalidToken,
            "the `Authorization` header must be `Bearer <token>`",
        ));
    };
    let Some(token) = handle.authenticate(presented) else {
        return Err(ApiError::new(Code::InvalidToken, "unknown token"));
    };
    if !token.allows(scope) {
        let needed = match scope {
            Scope::Read => "read",
            Scope::Ingest => "ingest",
            Scope::Write => "write",
        };
        return Err(ApiError::new(
            Code::ForbiddenScope,
            format!("token `{}` lacks the `{needed}` scope", token.name),
        ));
    }
    Ok(token.name.clone())
}
