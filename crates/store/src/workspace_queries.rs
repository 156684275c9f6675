//! The SQL of the workspace methods of the `Store` port, expanded into each backend's `impl`
//! by [`impl_store!`](crate::queries).

/// `ORDER BY` for a page of workspaces; the id breaks ties so pages never overlap.
pub(crate) fn workspace_order(page: taxbridge_domain::lists::Page, table: &str) -> String {
    use taxbridge_domain::lists::SortField;
    let column = match page.sort {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Name => "display_name",
    };
    let dir = if page.descending { "DESC" } else { "ASC" };
    format!("ORDER BY {table}{column} {dir}, {table}id {dir}")
}

/// The SELECT of `columns` (aliasing the table `w`) for the workspaces `account` reaches, and
/// its text binds; `None` when a filter's list is empty, so nothing can match.
pub(crate) fn reached_by(
    account: &taxbridge_domain::accounts::Account,
    filters: &taxbridge_domain::workspaces::WorkspaceFilters,
    page: taxbridge_domain::lists::Page,
    columns: &str,
) -> Option<(String, Vec<String>)> {
    use taxbridge_domain::accounts::AccountType;
    if filters.ids.as_ref().is_some_and(Vec::is_empty)
        || filters.slugs.as_ref().is_some_and(Vec::is_empty)
    {
        return None;
    }
    let mut binds: Vec<String> = vec![account.id.to_string()];
    let mut sql = match account.account_type {
        AccountType::Partner => {
            format!("SELECT {columns} FROM workspaces w WHERE w.owner_partner_id = $1")
        }
        AccountType::Customer => format!(
            "SELECT {columns} FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.account_id = $1"
        ),
    };
    let mut add_in = |column: &str, values: &mut dyn Iterator<Item = String>| {
        let start = binds.len() + 1;
        binds.extend(values);
        let marks: Vec<String> = (start..=binds.len()).map(|i| format!("${i}")).collect();
        sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
    };
    if let Some(ids) = &filters.ids {
        add_in("w.id", &mut ids.iter().map(ToString::to_string));
    }
    if let Some(slugs) = &filters.slugs {
        add_in("w.slug", &mut slugs.iter().cloned());
    }
    sql.push(' ');
    sql.push_str(&workspace_order(page, "w."));
    sql.push_str(&format!(" LIMIT {} OFFSET {}", page.limit, page.offset));
    Some((sql, binds))
}

/// Emits the backend's whole `impl Store` (async-trait must see every method at once): the
/// identity methods passed in, then the workspace methods below.
macro_rules! store_impl_with_workspaces {
    ($store:ty, { $($identity:tt)* }) => {
        #[async_trait::async_trait]
        impl taxbridge_domain::store::Store for $store {
        $($identity)*
        #[tracing::instrument(skip_all, fields(workspace = %workspace.id))]
        async fn insert_workspace(
            &self,
            workspace: &taxbridge_domain::workspaces::Workspace,
        ) -> taxbridge_domain::store::StoreResult<()> {
            sqlx::query(
                "INSERT INTO workspaces (id, slug, display_name, status, workspace_type, firm_size, \
                 metadata, owner_partner_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(workspace.id.as_str())
            .bind(workspace.slug.as_str())
            .bind(workspace.display_name.as_str())
            .bind(workspace.status.as_str())
            .bind(workspace.workspace_type.as_str())
            .bind(workspace.firm_size.as_deref())
            .bind(workspace.metadata.as_ref().map(|m| m.to_string()))
            .bind(workspace.owner_partner_id.as_ref().map(|a| a.as_str()))
            .bind(workspace.created_at.as_millis())
            .bind(workspace.updated_at.as_millis())
            .execute(&self.pool)
            .await
            .map_err(|err| $crate::store_error(err, |_| format!("a workspace with the slug `{}`", workspace.slug)))?;
            Ok(())
        }

        async fn slugs_starting_with(&self, base: &str) -> taxbridge_domain::store::StoreResult<Vec<String>> {
            // A range rather than LIKE, so both databases walk the unique index ('.' follows '-').
            let (dash, dot) = (format!("{base}-"), format!("{base}."));
            let rows: Vec<$crate::rows::Text> = self
                .fetch_all(
                    "SELECT slug FROM workspaces WHERE slug = $1 OR (slug >= $2 AND slug < $3)",
                    &[base.into(), (&dash).into(), (&dot).into()],
                )
                .await?;
            Ok(rows.into_iter().map(|slug| slug.0).collect())
        }

        async fn workspace_with_role(
            &self,
            id: &taxbridge_domain::ids::WorkspaceId,
            account: &taxbridge_domain::ids::AccountId,
        ) -> taxbridge_domain::store::StoreResult<
            Option<(taxbridge_domain::workspaces::Workspace, Option<taxbridge_domain::workspaces::Role>)>,
        > {
            let sql = format!(
                "SELECT {}, m.role AS member_role FROM workspaces w \
                 LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.account_id = $2 \
                 WHERE w.id = $1",
                $crate::rows::WORKSPACE_COLUMNS
            );
            let rows: Vec<$crate::rows::WorkspaceRoleRow> =
                self.fetch_all(&sql, &[id.as_str().into(), account.as_str().into()]).await?;
            rows.into_iter().next().map(|r| r.into_domain()).transpose()
        }

        async fn workspaces_reached_by(
            &self,
            account: &taxbridge_domain::accounts::Account,
            filters: &taxbridge_domain::workspaces::WorkspaceFilters,
            page: taxbridge_domain::lists::Page,
        ) -> taxbridge_domain::store::StoreResult<Vec<taxbridge_domain::workspaces::Workspace>> {
            let Some((sql, binds)) = $crate::workspace_queries::reached_by(
                account, filters, page, $crate::rows::WORKSPACE_COLUMNS,
            ) else {
                return Ok(Vec::new());
            };
            let args: Vec<$crate::read::Arg<'_>> = binds.iter().map(Into::into).collect();
            let rows: Vec<$crate::rows::WorkspaceRow> = self.fetch_page(&sql, &args, page).await?;
            rows.into_iter().map(TryInto::try_into).collect()
        }

        async fn workspace_keys_reached_by(
            &self,
            account: &taxbridge_domain::accounts::Account,
            filters: &taxbridge_domain::workspaces::WorkspaceFilters,
            page: taxbridge_domain::lists::Page,
        ) -> taxbridge_domain::store::StoreResult<Vec<taxbridge_domain::workspaces::WorkspaceKey>> {
            let Some((sql, binds)) = $crate::workspace_queries::reached_by(
                account, filters, page, $crate::rows::WORKSPACE_KEY_COLUMNS,
            ) else {
                return Ok(Vec::new());
            };
            let args: Vec<$crate::read::Arg<'_>> = binds.iter().map(Into::into).collect();
            let rows: Vec<$crate::rows::WorkspaceKeyRow> = self.fetch_page(&sql, &args, page).await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        #[tracing::instrument(skip_all, fields(workspace = %workspace, emails = emails.len()))]
        async fn add_members(
            &self,
            workspace: &taxbridge_domain::ids::WorkspaceId,
            emails: &[taxbridge_domain::email::Email],
            role: taxbridge_domain::workspaces::Role,
            now: taxbridge_domain::time::Timestamp,
        ) -> taxbridge_domain::store::StoreResult<Vec<taxbridge_domain::workspaces::Member>> {
            let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
            // Rows are written in email order whatever order the caller gave, so two calls with
            // overlapping emails take their row locks in the same order and cannot deadlock
            // (PostgreSQL aborts one side of a deadlock); answers keep the caller's order.
            let mut order: Vec<usize> = (0..emails.len()).collect();
            order.sort_by(|&a, &b| emails[a].as_str().cmp(emails[b].as_str()));
            let mut members: Vec<Option<taxbridge_domain::workspaces::Member>> = vec![None; emails.len()];
            let sql = format!(
                "SELECT {} FROM workspace_members m JOIN accounts a ON a.id = m.account_id \
                 WHERE m.workspace_id = $1 AND a.email = $2",
                $crate::rows::MEMBER_COLUMNS
            );
            for &at in &order {
                let email = &emails[at];
                sqlx::query(
                    "INSERT INTO accounts (id, email, name, account_type, provider_key, disabled_at, \
                     created_at, updated_at) VALUES ($1, $2, NULL, 'customer', NULL, NULL, $3, $3) \
                     ON CONFLICT (email) DO NOTHING",
                )
                .bind(taxbridge_domain::ids::AccountId::generate().as_str())
                .bind(email.as_str())
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                sqlx::query(
                    "INSERT INTO workspace_members (workspace_id, account_id, role, created_at) \
                     SELECT $1, id, $2, $3 FROM accounts WHERE email = $4 \
                     ON CONFLICT (workspace_id, account_id) DO NOTHING",
                )
                .bind(workspace.as_str())
                .bind(role.as_str())
                .bind(now.as_millis())
                .bind(email.as_str())
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                let row = sqlx::query(&sql)
                    .bind(workspace.as_str())
                    .bind(email.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let member: $crate::rows::MemberRow = $crate::read::FromColumns::from_columns(
                    &mut $crate::read::SqlxColumns::new(&row),
                )?;
                members[at] = Some(member.try_into()?);
            }
            tx.commit().await.map_err($crate::backend_error)?;
            Ok(members.into_iter().flatten().collect())
        }

        async fn remove_member(
            &self,
            workspace: &taxbridge_domain::ids::WorkspaceId,
            account: &taxbridge_domain::ids::AccountId,
        ) -> taxbridge_domain::store::StoreResult<bool> {
            let done = sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1 AND account_id = $2")
                .bind(workspace.as_str())
                .bind(account.as_str())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
            Ok(done.rows_affected() == 1)
        }

        async fn members_of(
            &self,
            workspace: &taxbridge_domain::ids::WorkspaceId,
            page: taxbridge_domain::lists::Page,
        ) -> taxbridge_domain::store::StoreResult<Vec<taxbridge_domain::workspaces::Member>> {
            let sql = format!(
                "SELECT {} FROM workspace_members m JOIN accounts a ON a.id = m.account_id \
                 WHERE m.workspace_id = $1 ORDER BY m.created_at, m.account_id LIMIT {} OFFSET {}",
                $crate::rows::MEMBER_COLUMNS,
                page.limit,
                page.offset
            );
            let rows: Vec<$crate::rows::MemberRow> =
                self.fetch_page(&sql, &[workspace.as_str().into()], page).await?;
            rows.into_iter().map(TryInto::try_into).collect()
        }
        }
    };
}

pub(crate) use store_impl_with_workspaces;

#[cfg(test)]
mod tests {
    use super::*;
    use taxbridge_domain::{
        accounts::Account,
        email::Email,
        lists::{Page, SortField},
        time::Timestamp,
        workspaces::WorkspaceFilters,
    };

    /// A partner's page, in any order, walks one index in that order (no sort step, so the
    /// first page costs the same however many workspaces there are), and a page of keys reads
    /// nothing but that index.
    #[tokio::test]
    async fn partner_pages_walk_one_index_and_keys_need_no_table() {
        let db = crate::testing::fresh_database(crate::Backend::Sqlite)
            .await
            .expect("database")
            .expect("SQLite is always there");
        crate::connect(&db.url).await.expect("migrated");
        let path = db.url.trim_start_matches("sqlite://");
        let conn = rusqlite::Connection::open(path).expect("open");
        let partner = Account::new_partner(
            Email::parse("eng@qount.io").expect("email"),
            "Qount".into(),
            "qount".into(),
            Timestamp::now(),
        );
        for sort in [SortField::CreatedAt, SortField::UpdatedAt, SortField::Name] {
            for descending in [false, true] {
                let page = Page {
                    limit: 50,
                    offset: 0,
                    sort,
                    descending,
                };
                for (columns, covering) in [
                    (crate::rows::WORKSPACE_KEY_COLUMNS, true),
                    (crate::rows::WORKSPACE_COLUMNS, false),
                ] {
                    let (sql, _) =
                        reached_by(&partner, &WorkspaceFilters::default(), page, columns)
                            .expect("a query");
                    let mut explain = conn
                        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                        .expect("explain");
                    let plan: Vec<String> = explain
                        .query_map([partner.id.as_str()], |row| row.get::<_, String>(3))
                        .expect("plan")
                        .collect::<Result<_, _>>()
                        .expect("plan rows");
                    let plan = plan.join("; ");
                    assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
                    assert_eq!(plan.contains("COVERING INDEX"), covering, "{sql}: {plan}");
                }
            }
        }
    }
}
