//! The read path: how a `SELECT` reaches each database and how its rows come back.
//!
//! Every read of the store is written once, as SQL plus a row type that implements
//! [`FromColumns`], and runs through [`Db::fetch`](crate::db::Db::fetch) on either backend:
//!
//! - **PostgreSQL** reads go through the sqlx pool, like the writes.
//! - **SQLite** reads run on [`SqliteReaders`]: query-only rusqlite connections used on the
//!   calling thread. sqlx's SQLite driver runs each connection on a thread of its own and hands
//!   every command and every row across channels; measured on a page of 50 workspaces, those
//!   hand-offs cost several times the read itself (a one-row read: about 2 µs in place against
//!   tens of µs of thread wake-ups). A read here is a short walk of an index, and in WAL mode a
//!   reader never waits for a writer, so it is cheaper to do it in place than to hop threads.
//!   Writes, transactions and migrations stay on sqlx, whose write lock waiting belongs on its
//!   own threads.
//!
//! Columns are read in the order the `SELECT` lists them (a [`Columns`] cursor), which keeps
//! each decoder next to the column list it reads and costs no name lookups.

use crate::row::{backend, run_statement, Arg, OwnedArg};
pub(crate) use crate::row::{Columns, FromColumns};
use std::sync::{Arc, Mutex};
use taxbridge_domain::store::StoreResult;

/// Query-only SQLite connections, used on the calling thread. The pool grows to the number of
/// reads in flight at once (at most the threads that read) and keeps them open.
#[derive(Clone)]
pub(crate) struct SqliteReaders(Arc<Readers>);

pub(crate) struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Long reads at once: one per core. More would only share the cores, each on a connection
    /// of its own with a cold page cache.
    long_reads: tokio::sync::Semaphore,
}

impl std::ops::Deref for SqliteReaders {
    type Target = Readers;
    fn deref(&self) -> &Readers {
        &self.0
    }
}

/// Pages that skip more rows than this make SQLite walk that many index entries (milliseconds
/// at 100,000), which is too long to hold an async worker: they run on the blocking pool.
pub(crate) const DEEP_OFFSET: u64 = 1_000;

impl SqliteReaders {
    /// Like [`Readers::fetch_all`], on tokio's blocking pool: for reads that may walk many rows.
    pub(crate) async fn fetch_all_off_thread<T: FromColumns + Send + 'static>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        let _turn = self.long_reads.acquire().await.map_err(backend)?;
        let readers = self.clone();
        let sql = sql.to_owned();
        let args: Vec<OwnedArg> = args.iter().map(OwnedArg::from).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<Arg<'_>> = args.iter().map(OwnedArg::as_arg).collect();
            readers.fetch_all(&sql, &args)
        })
        .await
        .map_err(backend)?
    }
}

impl SqliteReaders {
    /// Readers of the database file at `path`, which must already exist (the sqlx pool creates
    /// and migrates it first). Opens one connection now so a bad path fails at start.
    pub(crate) fn open(path: &std::path::Path) -> StoreResult<Self> {
        let readers = Self(Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            long_reads: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
        }));
        let first = readers.connect()?;
        readers.put_back(first);
        Ok(readers)
    }
}

impl Readers {
    fn connect(&self) -> StoreResult<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        // Opened read-write but `query_only`: a read-only open of a WAL database depends on the
        // `-shm` file's state, while this refuses writes all the same.
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(backend)?;
        // A reader only waits while another connection recovers the WAL index after a crash.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn take(&self) -> StoreResult<rusqlite::Connection> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn put_back(&self, conn: rusqlite::Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `sql` with `args` bound to its `$n` placeholders and decodes every row.
    pub(crate) fn fetch_all<T: FromColumns>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        let conn = self.take()?;
        let result = run_statement(&conn, sql, args);
        // A connection goes back after an error too: errors here are about the statement.
        self.put_back(conn);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taxbridge_domain::store::StoreError;

    struct Text(String);

    impl FromColumns for Text {
        fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
            Ok(Self(c.text()?))
        }
    }

    struct Pair(String, Option<i64>);

    impl FromColumns for Pair {
        fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
            Ok(Self(c.text()?, c.opt_int()?))
        }
    }

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("read.db");
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT NOT NULL, n INTEGER); \
             INSERT INTO t VALUES ('a', 1), ('b', NULL), ('c', 3);",
        )
        .expect("seed");
        (dir, path)
    }

    #[test]
    fn placeholders_bind_by_number_whatever_order_they_appear_in() {
        let (_dir, path) = database();
        let readers = SqliteReaders::open(&path).expect("readers");
        let rows: Vec<Pair> = readers
            .fetch_all(
                "SELECT name, n FROM t WHERE n = $2 OR name = $1 ORDER BY name",
                &["b".into(), 3.into()],
            )
            .expect("read");
        let got: Vec<(String, Option<i64>)> = rows.into_iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(got, [("b".to_owned(), None), ("c".to_owned(), Some(3))]);
    }

    #[test]
    fn a_failed_read_is_an_error_and_the_connection_serves_the_next_one() {
        let (_dir, path) = database();
        let readers = SqliteReaders::open(&path).expect("readers");
        // `n` is NULL for `b`: reading it as text must fail, not panic.
        let bad = readers.fetch_all::<Text>("SELECT n FROM t WHERE name = $1", &["b".into()]);
        assert!(matches!(bad, Err(StoreError::Backend(_))));
        assert!(readers
            .fetch_all::<Text>("SELECT nope FROM t", &[])
            .is_err());
        let good: Vec<Text> = readers
            .fetch_all("SELECT name FROM t ORDER BY name", &[])
            .expect("read");
        assert_eq!(good.len(), 3);
        assert_eq!(readers.idle.lock().map(|idle| idle.len()).unwrap_or(0), 1);
    }

    #[test]
    fn readers_refuse_writes_and_see_writes_committed_elsewhere() {
        let (_dir, path) = database();
        let readers = SqliteReaders::open(&path).expect("readers");
        assert!(readers
            .fetch_all::<Text>("INSERT INTO t VALUES ('x', 9) RETURNING name", &[])
            .is_err());
        let writer = rusqlite::Connection::open(&path).expect("open");
        writer
            .execute("INSERT INTO t VALUES ('d', 4)", [])
            .expect("write");
        drop(writer);
        let rows: Vec<Text> = readers
            .fetch_all("SELECT name FROM t ORDER BY name", &[])
            .expect("read");
        let names: Vec<String> = rows.into_iter().map(|t| t.0).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }
}
