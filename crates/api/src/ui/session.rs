//! Dashboard sessions: an API token entered once becomes an HttpOnly, SameSite=Strict cookie.
//!
//! The cookie holds a random session id, never the token. The session keeps the token as the
//! engine resolved it (its name, scopes and digest, not its secret) and asks the engine again on
//! every request ([`Handle::token_still`]), so a reload that removes a token or changes its scopes
//! takes effect at once. Each session has its own CSRF token, which every form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use axum::http::{header, HeaderMap, HeaderValue};
use homeostat_core::config::Scope;
use homeostat_engine::{Handle, Token};

/// The session cookie's name.
pub const COOKIE: &str = "homeostat_session";

/// A session unused this long is gone: a night shift, not a week.
const IDLE: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept; signing in past it drops the least recently used one. Only holders of
/// a valid token can make sessions, so this bounds memory against a script, not an attacker.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token: Token,
    csrf: String,
    last_seen: DateTime<Utc>,
}

/// Who is looking at a page, as of this request.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub name: String,
    pub can_write: bool,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Starts a session for `token`; answers the cookie's value.
    pub fn start(&self, token: Token, now: DateTime<Utc>) -> String {
        let id = random_token();
        let mut sessions = self.lock();
        sessions.retain(|_, session| !idle(session, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                token,
                csrf: random_token(),
                last_seen: now,
            },
        );
        id
    }

    /// The viewer of the session the request's cookie names, if it is live and its token still
    /// is one. Needs at least the `read` scope: an ingest-only token sees nothing here.
    pub fn viewer(&self, handle: &Handle, headers: &HeaderMap) -> Option<Viewer> {
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        let now = handle.clock().now();
        if idle(session, now) {
            sessions.remove(id);
            return None;
        }
        let Some(token) = handle.token_still(&session.token) else {
            sessions.remove(id);
            return None;
        };
        if !token.allows(Scope::Read) {
            return None;
        }
        session.last_seen = now;
        Some(Viewer {
            name: token.name.clone(),
            can_write: token.allows(Scope::Write),
            csrf: session.csrf.clone(),
        })
    }

    /// Ends the request's session.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn idle(session: &Session, now: DateTime<Utc>) -> bool {
    (now - session.last_seen).to_std().unwrap_or_default() >= IDLE
}

/// `Set-Cookie` for a session id; an empty id clears the cookie.
pub fn set_cookie(id: &str) -> HeaderValue {
    let max_age = if id.is_empty() { 0 } else { IDLE.as_secs() };
    // Not `Secure`: the daemon serves plain HTTP on loopback or behind a proxy that adds TLS;
    // `HttpOnly` keeps it from scripts and `SameSite=Strict` from other sites' requests.
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("the cookie is ASCII")
}

/// Compares a form's CSRF token with the session's in constant time.
pub fn csrf_matches(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// 244 random bits from the operating system's generator (two version-4 UUIDs), as hex.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("homeostat_session=abc; c=3"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "homeostat"), None);
    }

    #[test]
    fn csrf_compares_whole_tokens() {
        assert!(csrf_matches("abcd", "abcd"));
        assert!(!csrf_matches("abcd", "abce"));
        assert!(!csrf_matches("abcd", "abc"));
        assert!(!csrf_matches("abcd", ""));
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 64);
    }
}
