//! `api_tokens:`: every token has a scope. Their names are unique ([`super::names`]).

use super::Report;

pub(crate) fn check(report: &mut Report) {
    let config = report.config;
    for (index, token) in config.api_tokens.iter().enumerate() {
        if token.scopes.is_empty() {
            report.error(
                "api_tokens",
                Some(index),
                "scopes",
                "a token needs at least one scope",
                Some("use `read`, `ingest` or `write`".into()),
            );
        }
    }
}
