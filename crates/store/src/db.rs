//! [`Db`]: the only code that knows there are two database drivers.
//!
//! Store code is written as ordinary functions over a [`Db`]: SQL text, a slice of [`Arg`]s
//! bound to its `$n` placeholders, and a row type that implements [`FromColumns`]. The same
//! text runs on both databases (every column is TEXT or a 64-bit integer, placeholders are
//! `$n`, upserts use `ON CONFLICT`). A query that truly has to differ asks [`Db::backend`] and
//! `match`es on it in plain sight.
//!
//! - Reads ([`Db::fetch`], [`Db::fetch_optional`], [`Db::fetch_page`]) on SQLite run in place
//!   on rusqlite connections ([`crate::read`] says why); on PostgreSQL they go through sqlx.
//! - Writes ([`Db::execute`]) and transactions ([`Db::begin`], then [`Tx`]) go to the
//!   SQLite writer thread, which groups concurrent writes into one commit
//!   ([`crate::write`] says why); on PostgreSQL they go through sqlx.
//!
//! Errors: a unique violation becomes [`StoreError::Conflict`] whose `what` is the violated
//! constraint (callers rename it with [`name_conflict`]); a database that cannot be reached
//! (down, restarting, no free connection in time) is [`StoreError::Unavailable`]; anything
//! else is [`StoreError::Backend`].

use crate::read::{SqliteReaders, DEEP_OFFSET};
pub(crate) use crate::row::Arg;
use crate::row::{Columns, FromColumns};
use crate::write::{Session, SqliteWriter};
use crate::Backend;
use sqlx::{PgPool, Postgres};
use taxbridge_domain::{
    audit::AuditEvent,
    lists::Page,
    store::{StoreError, StoreResult},
};

/// The open database: SQLite's writer thread and in-place readers, or a PostgreSQL pool.
pub(crate) enum Db {
    Sqlite {
        writer: SqliteWriter,
        readers: SqliteReaders,
    },
    Postgres(PgPool),
}

impl Db {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Every row of a read.
    pub(crate) async fn fetch<T: FromColumns>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        match self {
            Db::Sqlite { readers, .. } => readers.fetch_all(sql, args),
            Db::Postgres(pool) => {
                let rows = bind(sqlx::query::<Postgres>(sql), args)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error)?;
                decode_all(&rows)
            }
        }
    }

    /// The first row of a read, if any.
    pub(crate) async fn fetch_optional<T: FromColumns>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    /// A page of a list. On SQLite a page deep into a long list walks many index entries
    /// (milliseconds at an offset of 100,000), which must not hold an async worker: it runs on
    /// the blocking pool instead.
    pub(crate) async fn fetch_page<T: FromColumns + Send + 'static>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        page: Page,
    ) -> StoreResult<Vec<T>> {
        match self {
            Db::Sqlite { readers, .. } if page.offset > DEEP_OFFSET => {
                readers.fetch_all_off_thread(sql, args).await
            }
            _ => self.fetch(sql, args).await,
        }
    }

    /// Runs one write; the number of rows it changed.
    pub(crate) async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        match self {
            Db::Sqlite { writer, .. } => writer.execute(sql, args).await,
            Db::Postgres(pool) => bind(sqlx::query::<Postgres>(sql), args)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
                .map_err(db_error),
        }
    }

    /// One write and the audit events that record it, in one transaction. The events are
    /// written only when the write changed a row: a change that did not happen records
    /// nothing.
    pub(crate) async fn execute_recorded(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        events: &[AuditEvent],
    ) -> StoreResult<u64> {
        if let Db::Sqlite { writer, .. } = self {
            return writer.execute_recorded(sql, args, events.to_vec()).await;
        }
        let mut tx = self.begin().await?;
        let changed = tx.execute(sql, args).await?;
        if changed > 0 {
            crate::audit::record(&mut tx, events).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// One write that returns a row (`… RETURNING …`), committed on its own: on PostgreSQL
    /// one round trip; on SQLite a transaction of the writer thread.
    pub(crate) async fn write_fetch_optional<T: FromColumns + Send + 'static>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        match self {
            Db::Sqlite { .. } => {
                let mut tx = self.begin().await?;
                let row = tx.fetch_optional(sql, args).await?;
                tx.commit().await?;
                Ok(row)
            }
            Db::Postgres(pool) => {
                let rows = bind(sqlx::query::<Postgres>(sql), args)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error)?;
                Ok(decode_all(&rows)?.into_iter().next())
            }
        }
    }

    /// Starts a transaction; it rolls back when dropped without [`Tx::commit`].
    pub(crate) async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin()?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(db_error)?),
        })
    }
}

/// A row read only to lock it.
struct Locked;

impl FromColumns for Locked {
    fn from_columns(_: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self)
    }
}

/// A transaction, with the same calls as [`Db`].
pub(crate) enum Tx {
    Sqlite(Session),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    /// Locks one row of `table` (by `id`) until the transaction ends, so that this
    /// transaction's next statements see everything committed by whoever held it before. On
    /// PostgreSQL that is `SELECT … FOR UPDATE` (no new row version, unlike a no-op `UPDATE`);
    /// on SQLite a transaction has the writer to itself, so there is nothing to lock. `table`
    /// is always a literal of the caller's.
    pub(crate) async fn lock_row(&mut self, table: &'static str, id: &str) -> StoreResult<()> {
        self.lock(table, id, "FOR NO KEY UPDATE").await
    }

    /// As [`Tx::lock_row`], but shared (`FOR SHARE`): holders of a shared lock run side by
    /// side, and exclude only those who [`Tx::lock_row`] it.
    pub(crate) async fn share_row(&mut self, table: &'static str, id: &str) -> StoreResult<()> {
        self.lock(table, id, "FOR SHARE").await
    }

    async fn lock(&mut self, table: &'static str, id: &str, mode: &str) -> StoreResult<()> {
        if let Tx::Postgres(_) = self {
            let sql = format!("SELECT id FROM {table} WHERE id = $1 {mode}");
            let _: Vec<Locked> = self.fetch(&sql, &[id.into()]).await?;
        }
        Ok(())
    }

    pub(crate) async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        match self {
            Tx::Sqlite(session) => session.execute(sql, args).await,
            Tx::Postgres(tx) => bind(sqlx::query::<Postgres>(sql), args)
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected())
                .map_err(db_error),
        }
    }

    pub(crate) async fn fetch<T: FromColumns + Send + 'static>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        match self {
            Tx::Sqlite(session) => session.fetch(sql, args).await,
            Tx::Postgres(tx) => {
                let rows = bind(sqlx::query::<Postgres>(sql), args)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db_error)?;
                decode_all(&rows)
            }
        }
    }

    pub(crate) async fn fetch_optional<T: FromColumns + Send + 'static>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    /// Appends audit events inside this transaction (see [`crate::audit::record`]).
    pub(crate) async fn record(&mut self, events: &[AuditEvent]) -> StoreResult<()> {
        crate::audit::record(self, events).await
    }

    pub(crate) async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(session) => session.commit().await,
            Tx::Postgres(tx) => tx.commit().await.map_err(db_error),
        }
    }
}

/// Binds `args` to a sqlx query, in `$n` order.
fn bind<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    args.iter().fold(query, |query, arg| match *arg {
        Arg::Text(text) => query.bind(text),
        Arg::Int(int) => query.bind(int),
    })
}

/// Columns of a row that sqlx read, in `SELECT` order.
struct SqlxColumns<'r, R> {
    row: &'r R,
    next: usize,
}

impl<R: sqlx::Row> SqlxColumns<'_, R>
where
    usize: sqlx::ColumnIndex<R>,
{
    fn get<T>(&mut self) -> StoreResult<T>
    where
        T: for<'v> sqlx::Decode<'v, R::Database> + sqlx::Type<R::Database>,
    {
        let value = self.row.try_get(self.next).map_err(db_error)?;
        self.next += 1;
        Ok(value)
    }
}

impl<R: sqlx::Row> Columns for SqlxColumns<'_, R>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'v> sqlx::Decode<'v, R::Database> + sqlx::Type<R::Database>,
    i64: for<'v> sqlx::Decode<'v, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&mut self) -> StoreResult<String> {
        self.get()
    }
    fn opt_text(&mut self) -> StoreResult<Option<String>> {
        self.get()
    }
    fn int(&mut self) -> StoreResult<i64> {
        self.get()
    }
    fn opt_int(&mut self) -> StoreResult<Option<i64>> {
        self.get()
    }
}

fn decode_all<R: sqlx::Row, T: FromColumns>(rows: &[R]) -> StoreResult<Vec<T>>
where
    for<'r> SqlxColumns<'r, R>: Columns,
{
    rows.iter()
        .map(|row| T::from_columns(&mut SqlxColumns { row, next: 0 }))
        .collect()
}

/// A sqlx error as the domain's: unique violations become conflicts named by the constraint.
pub(crate) fn db_error(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            let what = db
                .constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned());
            return StoreError::Conflict { what };
        }
    }
    if unreachable(&err) {
        return StoreError::Unavailable(Box::new(err));
    }
    StoreError::Backend(Box::new(err))
}

/// Whether `err` says the database could not be reached (rather than that it refused what was
/// asked): no connection could be made or kept, the pool had none free in time, or the server
/// is shutting down, starting up or out of connection slots (SQLSTATE classes 08 and 57P,
/// and 53300).
fn unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// Renames a conflict for the caller: `what` gets the violated constraint (or, where the
/// database names none, its message) and says what already exists.
pub(crate) fn name_conflict(err: StoreError, what: impl FnOnce(&str) -> String) -> StoreError {
    match err {
        StoreError::Conflict { what: detail } => StoreError::Conflict {
            what: what(&detail),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_out_of_reach_is_unavailable_and_anything_else_is_not() {
        for reach in [
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
        ] {
            assert!(db_error(reach).is_unavailable());
        }
        for other in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
            sqlx::Error::Protocol("bad message".into()),
        ] {
            let err = db_error(other);
            assert!(
                matches!(err, StoreError::Backend(_)),
                "{err:?} is not a backend error"
            );
        }
    }
}
