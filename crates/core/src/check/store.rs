//! `store:`: a PostgreSQL `url` is a url, holds no password in the clear, and is not set beside
//! SQLite's `path`; SQLite's own settings beside a `url` do nothing, and say so.

use super::Report;
use crate::config::{defaults, MaybeSecret, Store, Synchronous};

pub(crate) fn check(report: &mut Report) {
    let store = &report.config.store;
    let Some(url) = &store.url else { return };
    if let MaybeSecret::Plain(url) = url {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"));
        match rest {
            None => report.error(
                "store",
                None,
                "url",
                "`store.url` is not a PostgreSQL url",
                Some("write `postgres://user@host:5432/database`".into()),
            ),
            Some(rest) if has_password(rest) => report.error(
                "store",
                None,
                "url",
                "the url holds a password in the clear",
                Some(
                    "secrets are not written inline; put the whole url in one and refer to it: \
                     `url: {env: HOMEOSTAT_DATABASE_URL}` or `url: {file: /run/secrets/database_url}`"
                        .into(),
                ),
            ),
            Some(_) => {}
        }
    }
    if store.path != defaults::store_path() {
        report.error(
            "store",
            None,
            "path",
            "`store.path` is SQLite's database file, and `store.url` chooses PostgreSQL",
            Some("keep one of them".into()),
        );
    }
    let default = Store::default();
    for (field, set) in [
        ("synchronous", store.synchronous != Synchronous::default()),
        (
            "min_free_bytes",
            store.min_free_bytes != default.min_free_bytes,
        ),
        (
            "reserve_bytes",
            store.reserve_bytes != default.reserve_bytes,
        ),
        (
            "wal_max_bytes",
            store.wal_max_bytes != default.wal_max_bytes,
        ),
    ] {
        if set {
            report.warning(
                "store",
                None,
                field,
                format!("`store.{field}` is SQLite's and does nothing for a PostgreSQL store"),
                Some(
                    "remove it; PostgreSQL's server settings govern its durability and disk".into(),
                ),
            );
        }
    }
    if store.retention.max_bytes > 0 {
        report.warning(
            "store",
            None,
            "retention.max_bytes",
            "on PostgreSQL the limit counts the tables' size, and the space of deleted rows is \
             reused but not given back, so the size falls only after a `VACUUM FULL`",
            Some(
                "prefer the age limits, or set the limit well above the size the age limits keep"
                    .into(),
            ),
        );
    }
}

/// Whether the part after the scheme has `user:password@` or a `password=` parameter.
fn has_password(rest: &str) -> bool {
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let userinfo_password = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let parameter = rest
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("password=")));
    userinfo_password || parameter
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_found_in_the_userinfo_and_the_parameters() {
        for (rest, expected) in [
            ("homeostat@db:5432/homeostat", false),
            ("db/homeostat", false),
            ("homeostat:hunter2@db/homeostat", true),
            (
                "homeostat@db/homeostat?sslmode=require&password=hunter2",
                true,
            ),
            ("homeostat@[::1]:5432/homeostat", false),
        ] {
            assert_eq!(super::has_password(rest), expected, "{rest}");
        }
    }
}
