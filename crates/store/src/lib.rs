//! Taxbridge's storage: the domain's [`Store`] port on SQLite (the zero-setup default, in WAL
//! mode) and on PostgreSQL (for many gateway nodes). The backend is chosen once, from the
//! database URL's scheme, by [`connect`].
//!
//! Both backends run the same SQL, written once in [`queries`]: every column is TEXT or a
//! 64-bit integer (instants are milliseconds since the epoch, JSON is text), placeholders are
//! `$n`, and upserts use `ON CONFLICT`, all of which both databases read alike. What differs
//! lives in each backend's own migration folder and connection setup. SQL lives only here.
//! Writes go through sqlx on both; reads go through [`read`], which on SQLite runs them in
//! place on rusqlite connections (the module says why).
//!
//! Errors: database failures become [`StoreError::Backend`]; unique violations become
//! [`StoreError::Conflict`] without a pre-check query.

mod queries;
mod read;
mod rows;
pub mod testing;
mod workspace_queries;

use anyhow::Context;
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, SqlitePool,
};
use std::{str::FromStr, sync::Arc, time::Duration};
use taxbridge_domain::store::StoreResult;
pub use taxbridge_domain::store::{Store, StoreError};

/// The SQLite backend: sqlx for writes, [`read::SqliteReaders`] for reads.
pub struct SqliteStore {
    pool: SqlitePool,
    readers: read::SqliteReaders,
}

/// The PostgreSQL backend.
pub struct PgStore {
    pool: PgPool,
}

/// Which database a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            anyhow::bail!(
                "the database URL must start with `sqlite:` or `postgres://` (got `{}`)",
                redact_url(url)
            )
        }
    }
}

/// A database URL with any password replaced by `***`, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens the database named by `url` and brings its schema up to date.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::of_url(url)? {
        Backend::Sqlite => Arc::new(SqliteStore::connect(url).await?),
        Backend::Postgres => Arc::new(PgStore::connect(url).await?),
    })
}

impl SqliteStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("Failed to read the SQLite URL `{url}`"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Admin commands and the server share the file: wait for a writer, don't fail.
            .busy_timeout(Duration::from_secs(10));
        let path = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .with_context(|| format!("Failed to open the SQLite database `{url}`"))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .context("Failed to apply the SQLite migrations")?;
        let readers = read::SqliteReaders::open(&path)
            .with_context(|| format!("Failed to open the SQLite database `{url}` for reading"))?;
        Ok(Self { pool, readers })
    }

    async fn fetch_all<T: read::FromColumns>(
        &self,
        sql: &str,
        args: &[read::Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        self.readers.fetch_all(sql, args)
    }

    /// A page of a list: in place, unless its offset makes it a long walk.
    async fn fetch_page<T: read::FromColumns + Send + 'static>(
        &self,
        sql: &str,
        args: &[read::Arg<'_>],
        page: taxbridge_domain::lists::Page,
    ) -> StoreResult<Vec<T>> {
        if page.offset <= read::DEEP_OFFSET {
            return self.readers.fetch_all(sql, args);
        }
        let args = args.iter().map(Into::into).collect();
        self.readers
            .fetch_all_off_thread(sql.to_owned(), args)
            .await
    }
}

impl PgStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .with_context(|| format!("Failed to connect to PostgreSQL at `{}`", redact_url(url)))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .context("Failed to apply the PostgreSQL migrations")?;
        Ok(Self { pool })
    }

    async fn fetch_all<T: read::FromColumns>(
        &self,
        sql: &str,
        args: &[read::Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        let rows = read::bind_pg(sql, args)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_error)?;
        read::decode_all(&rows)
    }

    async fn fetch_page<T: read::FromColumns>(
        &self,
        sql: &str,
        args: &[read::Arg<'_>],
        _page: taxbridge_domain::lists::Page,
    ) -> StoreResult<Vec<T>> {
        self.fetch_all(sql, args).await
    }
}

queries::impl_store!(SqliteStore, "sqlite");
queries::impl_store!(PgStore, "postgres");

/// Maps a database error to the domain's, turning unique violations into conflicts named by
/// `what` (the constraint or column text tells which rule was broken).
pub(crate) fn store_error(err: sqlx::Error, what: impl FnOnce(&str) -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            let detail = db
                .constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned());
            return StoreError::Conflict {
                what: what(&detail),
            };
        }
    }
    StoreError::Backend(Box::new(err))
}

pub(crate) fn backend_error(err: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_their_backend() {
        assert_eq!(
            Backend::of_url("sqlite://data/t.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of_url("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = Backend::of_url("mysql://root:hunter2@h/db").expect_err("unsupported");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://tb:s3cret@db:5432/tb"),
            "postgres://tb:***@db:5432/tb"
        );
        assert_eq!(redact_url("postgres://tb@db/tb"), "postgres://tb@db/tb");
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }
}
