//! Opening the store the config names: SQLite at `store.path`, or PostgreSQL at `store.url`, whose
//! url may be a secret reference and is never printed.

use std::sync::Arc;

use homeostat_core::config;
use homeostat_store::sqlite::{Options, SqliteStore};
use homeostat_store::Store;

use crate::secrets;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] homeostat_store::Error),
    #[error("`store.url`: {0}")]
    Url(secrets::Error),
    #[error(
        "`store.url` asks for PostgreSQL, which this build of homeostat leaves out; consider a \
         build with the `postgres` feature (the default), or `store.path` for SQLite"
    )]
    NoPostgres,
}

/// The backend and where it is, for logs: the SQLite file, or PostgreSQL's host, port and
/// database without the password.
pub fn describe(settings: &config::Store) -> String {
    match &settings.url {
        None => format!("sqlite:{}", settings.path.display()),
        Some(config::MaybeSecret::Secret(reference)) => format!("postgres (url from {reference})"),
        Some(config::MaybeSecret::Plain(_)) => "postgres".to_string(),
    }
}

/// Opens (creating and migrating) the store `settings` name. The daemon then takes its lock
/// ([`Store::lock_exclusive`]); the command-line tools read without it.
pub async fn open(settings: &config::Store) -> Result<Arc<dyn Store>, Error> {
    match &settings.url {
        None => Ok(Arc::new(
            SqliteStore::open_with(&settings.path, Options::from_config(settings)).await?,
        )),
        Some(url) => {
            let url = secrets::resolve_maybe(url).map_err(Error::Url)?;
            open_postgres(url.expose()).await
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn Store>, Error> {
    Ok(Arc::new(
        homeostat_store::postgres::PostgresStore::open(url).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Arc<dyn Store>, Error> {
    Err(Error::NoPostgres)
}
