//! What the read path, the write path and the backend switch share, so none of them imports
//! another: the values bound to `$n` placeholders ([`Arg`], [`OwnedArg`]), the row decoding
//! ([`Columns`], [`FromColumns`]), running one statement on a rusqlite connection
//! ([`run_statement`]), and turning driver errors into the domain's [`StoreError`].

use taxbridge_domain::store::{StoreError, StoreResult};

/// A value bound to a `$n` placeholder. Nulls carry their column's type, which PostgreSQL needs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Arg::Text(Some(value))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(value: &'a String) -> Self {
        Arg::Text(Some(value))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Arg::Text(value)
    }
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

/// A cursor over one row's columns, in `SELECT` order.
pub(crate) trait Columns {
    fn text(&mut self) -> StoreResult<String>;
    fn opt_text(&mut self) -> StoreResult<Option<String>>;
    fn int(&mut self) -> StoreResult<i64>;
    fn opt_int(&mut self) -> StoreResult<Option<i64>>;
}

/// A row type that a read decodes, column by column.
pub(crate) trait FromColumns: Sized {
    fn from_columns(columns: &mut dyn Columns) -> StoreResult<Self>;
}

pub(crate) fn backend<E: std::error::Error + Send + Sync + 'static>(err: E) -> StoreError {
    StoreError::Backend(Box::new(err))
}

/// A rusqlite error as the domain's: a unique violation becomes a conflict carrying SQLite's
/// message (`UNIQUE constraint failed: <table>.<column>`), as sqlx reports it.
pub(crate) fn statement_error(err: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, message) = &err {
        const UNIQUE: std::ffi::c_int = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
        const PRIMARY_KEY: std::ffi::c_int = rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
        if matches!(code.extended_code, UNIQUE | PRIMARY_KEY) {
            return StoreError::Conflict {
                what: message.clone().unwrap_or_else(|| err.to_string()),
            };
        }
    }
    backend(err)
}

struct RusqliteColumns<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    next: usize,
}

impl RusqliteColumns<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&mut self) -> StoreResult<T> {
        let value = self.row.get(self.next).map_err(backend)?;
        self.next += 1;
        Ok(value)
    }
}

impl Columns for RusqliteColumns<'_, '_> {
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

/// An [`Arg`] that owns its text, to cross to another thread.
#[derive(Clone, Debug)]
pub(crate) enum OwnedArg {
    Text(Option<String>),
    Int(Option<i64>),
}

impl OwnedArg {
    pub(crate) fn as_arg(&self) -> Arg<'_> {
        match self {
            OwnedArg::Text(text) => Arg::Text(text.as_deref()),
            OwnedArg::Int(int) => Arg::Int(*int),
        }
    }
}

impl From<&Arg<'_>> for OwnedArg {
    fn from(arg: &Arg<'_>) -> Self {
        match *arg {
            Arg::Text(text) => OwnedArg::Text(text.map(str::to_owned)),
            Arg::Int(int) => OwnedArg::Int(int),
        }
    }
}

/// Runs `sql` on `conn` with `args` bound to its `$n` placeholders and decodes every row.
pub(crate) fn run_statement<T: FromColumns>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(backend)?;
    // `$n` is a named parameter to SQLite, numbered by first appearance: bind by name.
    for (n, arg) in args.iter().enumerate() {
        let name = format!("${}", n + 1);
        let Some(index) = statement.parameter_index(&name).map_err(backend)? else {
            continue;
        };
        match *arg {
            Arg::Text(text) => statement.raw_bind_parameter(index, text),
            Arg::Int(int) => statement.raw_bind_parameter(index, int),
        }
        .map_err(backend)?;
    }
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(statement_error)? {
        out.push(T::from_columns(&mut RusqliteColumns { row, next: 0 })?);
    }
    Ok(out)
}
