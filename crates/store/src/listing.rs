//! The SELECT of one page of a list: a scope (`WHERE <column> = $1`), filters that each name
//! a set of values (`AND <column> IN (...)`), and spec §7's order and paging. Every list of
//! the store builds its page with this, so the order (sort column, then id) and the binds are
//! the same everywhere.

use taxbridge_domain::lists::{Page, SortField};

pub(crate) struct ListQuery {
    sql: String,
    binds: Vec<String>,
    alias: &'static str,
}

impl ListQuery {
    /// `SELECT <columns> FROM <table> <alias> WHERE <alias>.<scope> = $1`.
    pub(crate) fn new(
        columns: &str,
        table: &str,
        alias: &'static str,
        scope: &str,
        value: &str,
    ) -> Self {
        Self {
            sql: format!("SELECT {columns} FROM {table} {alias} WHERE {alias}.{scope} = $1"),
            binds: vec![value.to_owned()],
            alias,
        }
    }

    /// Adds `AND <alias>.<column> IN (...)` when a filter is given. An empty filter matches
    /// nothing: returns false, and the caller answers an empty page without a query.
    pub(crate) fn any_of(&mut self, column: &str, values: Option<Vec<String>>) -> bool {
        let Some(values) = values else { return true };
        if values.is_empty() {
            return false;
        }
        let start = self.binds.len() + 1;
        self.binds.extend(values);
        let marks: Vec<String> = (start..=self.binds.len())
            .map(|i| format!("${i}"))
            .collect();
        self.sql.push_str(&format!(
            " AND {}.{column} IN ({})",
            self.alias,
            marks.join(", ")
        ));
        true
    }

    /// Orders by the page's sort field (`name_column` for [`SortField::Name`]), then id, and
    /// pages. Returns the SQL and its text binds.
    pub(crate) fn finish(mut self, page: Page, name_column: &str) -> (String, Vec<String>) {
        let column = match page.sort {
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
            SortField::Name => name_column,
        };
        let dir = if page.descending { "DESC" } else { "ASC" };
        let a = self.alias;
        self.sql.push_str(&format!(
            " ORDER BY {a}.{column} {dir}, {a}.id {dir} LIMIT {} OFFSET {}",
            page.limit, page.offset
        ));
        (self.sql, self.binds)
    }
}
