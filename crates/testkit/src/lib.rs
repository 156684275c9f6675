//! What Taxbridge's test suites share, and nothing the server runs:
//!
//! - fresh databases: a temporary SQLite file, or a new database on the PostgreSQL server
//!   named by `TAXBRIDGE_TEST_POSTGRES_URL` (`scripts/test.sh` starts one; the README says how
//!   to run one locally);
//! - the real components other suites drive: a headless Chromium ([`browser`]) and an SMTP
//!   receiver with an HTTP API ([`mail`]);
//! - [`per_database!`], which runs each named test once per database, so the store's contract
//!   suite and the API suite say it the same way.

pub mod browser;
pub mod mail;

use anyhow::Context;
use sqlx::Connection;

/// The two databases a suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// Runs each named test once per database, as `sqlite::name` and `postgres::name`.
///
/// `setup` is an async function from a [`Database`] to `Option<T>`: `None` skips the test (a
/// PostgreSQL half with no server outside CI). Each test is an async function taking that `T`.
///
/// ```ignore
/// taxbridge_testkit::per_database!(TestApp::spawn; login_works, me_answers);
/// ```
#[macro_export]
macro_rules! per_database {
    ($setup:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(subject) = $setup($crate::Database::Sqlite).await {
                    super::$name(subject).await
                }
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(subject) = $setup($crate::Database::Postgres).await {
                    super::$name(subject).await
                }
            })*
        }
    };
}

/// The env var naming a PostgreSQL server that tests may create databases on.
pub const POSTGRES_ENV: &str = "TAXBRIDGE_TEST_POSTGRES_URL";

/// A database that exists for one test. SQLite files go away with the guard; PostgreSQL test
/// databases are left for the throwaway server to take with it.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The PostgreSQL server to test against, if any. Under CI (`CI` set) a missing server is an
/// error, so the PostgreSQL half of a suite can never be skipped silently there.
pub fn postgres_server() -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{POSTGRES_ENV} must name a PostgreSQL server when CI is set")
        }
        _ => None,
    }
}

/// A new, empty database of the given kind; `None` when PostgreSQL is asked for and no server
/// is named (outside CI).
pub async fn fresh_database(database: Database) -> anyhow::Result<Option<TestDatabase>> {
    match database {
        Database::Sqlite => {
            let dir = tempfile::tempdir().context("Failed to create a temporary directory")?;
            let url = format!("sqlite://{}/taxbridge.db", dir.path().display());
            Ok(Some(TestDatabase {
                url,
                _dir: Some(dir),
            }))
        }
        Database::Postgres => {
            let Some(server) = postgres_server() else {
                return Ok(None);
            };
            let name = format!("tb_test_{}", uuid_like());
            let mut admin = sqlx::PgConnection::connect(&server)
                .await
                .with_context(|| format!("Failed to connect to {POSTGRES_ENV}"))?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .context("Failed to create a test database")?;
            let (base, query) = match server.split_once('?') {
                Some((base, query)) => (base, format!("?{query}")),
                None => (server.as_str(), String::new()),
            };
            let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
            Ok(Some(TestDatabase {
                url: format!("{root}/{name}{query}"),
                _dir: None,
            }))
        }
    }
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Drops a table under a running server, to test how failures of the database look to callers.
pub async fn drop_table(url: &str, table: &str) -> anyhow::Result<()> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut conn)
            .await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(&format!("DROP TABLE {table} CASCADE"))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

/// The official tus server that `scripts/test-tus.sh` started: its endpoint and the folder its
/// file store writes to. `None` (the test skips) when none is named, except under CI (`CI`
/// set), where a missing server is a failure.
pub fn tus_server() -> Option<(String, std::path::PathBuf)> {
    match (
        std::env::var("TAXBRIDGE_TEST_TUS_URL"),
        std::env::var("TAXBRIDGE_TEST_TUS_DIR"),
    ) {
        (Ok(url), Ok(dir)) => Some((url, dir.into())),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TAXBRIDGE_TEST_TUS_URL must name a tus server when CI is set (scripts/test-tus.sh)")
        }
        _ => {
            eprintln!("skipped: no tus server (eval \"$(scripts/test-tus.sh start)\")");
            None
        }
    }
}
