//! Taxbridge's storage: every storage port of the domain (`AccountStore`, `ApiKeyStore`,
//! `ConnectionStore`, `ImportStore`, `SignInStore`, `TaskStore`, `UploadStore`, `UsageStore`,
//! `WorkspaceStore`, `StoreHealth`) implemented on one type, [`Store`], over SQLite (the
//! zero-setup default, in WAL mode) or PostgreSQL (for many gateway nodes). The backend is
//! chosen once, from the database URL's scheme, by [`connect`]. Only the domain's services call
//! these ports (bytes are `taxbridge-blobs`' `BlobStore`).
//!
//! One file per feature (`accounts.rs`, `api_keys.rs`, `connections.rs`, `imports.rs`,
//! `members.rs`, `sign_in.rs`, `tasks.rs`, `uploads.rs`, `usage.rs`, `workspaces.rs`), each
//! holding its SQL, its row types and their decoding together, as plain functions over
//! [`db::Db`], the one type that knows there are two drivers. Below it: `read.rs` (SQLite
//! reads in place), `write.rs` (SQLite's one writer thread) and `row.rs`, what both share
//! (bound values, row decoding, driver errors), so no two of them import each other. Both backends run
//! the same SQL text: every column is TEXT or a 64-bit integer (instants are milliseconds since
//! the epoch, JSON is text), placeholders are `$n`, and upserts use `ON CONFLICT`. A query that
//! must differ (a task queue's `FOR UPDATE SKIP LOCKED`, say) matches on [`Db::backend`](db::Db)
//! where it is written. What else differs lives in each backend's migration folder and in
//! [`connect`]. SQL lives only in this crate.
//!
//! Errors: database failures become [`StoreError::Backend`]; unique violations become
//! [`StoreError::Conflict`] without a pre-check query.
//!
//! Writes carry `debug`-level spans naming the row they write (`RUST_LOG=taxbridge_store=debug`
//! shows them): at `info` a span per write was a percent of a request's time.

mod accounts;
mod api_keys;
mod audit;
mod connections;
mod db;
mod imports;
mod limits;
mod listing;
mod members;
mod read;
mod row;
mod sign_in;
mod tasks;
mod uploads;
mod usage;
mod workspaces;
mod write;

use anyhow::Context;
use async_trait::async_trait;
use db::Db;
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use std::{str::FromStr, time::Duration};
pub use taxbridge_domain::store::{StoreError, StoreHealth, StoreResult};

/// The gateway's one storage handle: it implements every domain port. Build services from an
/// `Arc<Store>`; each takes the port it needs.
pub struct Store {
    db: Db,
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
pub async fn connect(url: &str) -> anyhow::Result<Store> {
    let db = match Backend::of_url(url)? {
        Backend::Sqlite => connect_sqlite(url).await?,
        Backend::Postgres => connect_postgres(url).await?,
    };
    Ok(Store { db })
}

async fn connect_sqlite(url: &str) -> anyhow::Result<Db> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("Failed to read the SQLite URL `{url}`"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Admin commands and the server share the file: wait for a writer, don't fail.
        .busy_timeout(Duration::from_secs(10));
    let path = options.get_filename().to_owned();
    // sqlx creates and migrates the file; then the writer thread (`write::SqliteWriter`) and
    // the in-place readers (`read::SqliteReaders`) take over and this connection closes.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("Failed to open the SQLite database `{url}`"))?;
    sqlx::migrate!("migrations/sqlite")
        .run(&pool)
        .await
        .context("Failed to apply the SQLite migrations")?;
    pool.close().await;
    let writer = write::SqliteWriter::open(&path)
        .with_context(|| format!("Failed to open the SQLite database `{url}` for writing"))?;
    let readers = read::SqliteReaders::open(&path)
        .with_context(|| format!("Failed to open the SQLite database `{url}` for reading"))?;
    Ok(Db::Sqlite { writer, readers })
}

/// How long a PostgreSQL query waits for a connection before it answers UNAVAILABLE.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

async fn connect_postgres(url: &str) -> anyhow::Result<Db> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        // While the server is down or restarting, a request waits this long for a connection,
        // then answers UNAVAILABLE; connections broken by a restart are found by the check
        // before each use and replaced, so the pool recovers by itself.
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
        .with_context(|| format!("Failed to connect to PostgreSQL at `{}`", redact_url(url)))?;
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    Ok(Db::Postgres(pool))
}

#[async_trait]
impl StoreHealth for Store {
    fn backend(&self) -> &'static str {
        match self.db.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.execute("SELECT 1", &[]).await.map(drop)
    }
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
