//! Workspaces: the `workspaces` table, its row types and the
//! [`WorkspaceStore`] port (members' SQL is in [`crate::members`]).

use crate::{
    accounts::corrupt,
    db::{name_conflict, Arg},
    members,
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    accounts::{Account, AccountType},
    audit::AuditEvent,
    email::Email,
    ids::{AccountId, WorkspaceId},
    lists::{Page, SortField},
    store::{StoreError, StoreResult},
    time::Timestamp,
    workspaces::{
        Member, Role, Workspace, WorkspaceFilters, WorkspaceKey, WorkspaceStore, WorkspaceType,
    },
};

pub(crate) const WORKSPACE_COLUMNS: &str =
    "w.id, w.slug, w.display_name, w.status, w.workspace_type, \
     w.firm_size, w.metadata, w.owner_partner_id, w.created_at, w.updated_at";

struct WorkspaceRow {
    id: String,
    slug: String,
    display_name: String,
    status: String,
    workspace_type: String,
    firm_size: Option<String>,
    metadata: Option<String>,
    owner_partner_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl FromColumns for WorkspaceRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            slug: c.text()?,
            display_name: c.text()?,
            status: c.text()?,
            workspace_type: c.text()?,
            firm_size: c.opt_text()?,
            metadata: c.opt_text()?,
            owner_partner_id: c.opt_text()?,
            created_at: c.int()?,
            updated_at: c.int()?,
        })
    }
}

impl TryFrom<WorkspaceRow> for Workspace {
    type Error = StoreError;

    fn try_from(row: WorkspaceRow) -> Result<Self, StoreError> {
        Ok(Self {
            workspace_type: WorkspaceType::parse(&row.workspace_type).ok_or_else(|| {
                corrupt(format!(
                    "workspace {} has type `{}`",
                    row.id, row.workspace_type
                ))
            })?,
            metadata: row
                .metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|err| corrupt(format!("workspace {} metadata: {err}", row.id)))?,
            id: WorkspaceId::from_string(row.id),
            slug: row.slug,
            display_name: row.display_name,
            status: row.status,
            firm_size: row.firm_size,
            owner_partner_id: row.owner_partner_id.map(AccountId::from_string),
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

pub(crate) const WORKSPACE_KEY_COLUMNS: &str = "w.id, w.slug";

struct WorkspaceKeyRow {
    id: String,
    slug: String,
}

impl FromColumns for WorkspaceKeyRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            slug: c.text()?,
        })
    }
}

impl From<WorkspaceKeyRow> for WorkspaceKey {
    fn from(row: WorkspaceKeyRow) -> Self {
        Self {
            id: WorkspaceId::from_string(row.id),
            slug: row.slug,
        }
    }
}

/// A workspace with the asking account's role there, if any: [`WORKSPACE_COLUMNS`], then
/// the role.
struct WorkspaceRoleRow {
    workspace: WorkspaceRow,
    member_role: Option<String>,
}

impl FromColumns for WorkspaceRoleRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            workspace: WorkspaceRow::from_columns(c)?,
            member_role: c.opt_text()?,
        })
    }
}

/// `ORDER BY` for a page of workspaces; the id breaks ties so pages never overlap.
fn workspace_order(page: Page) -> String {
    let column = match page.sort {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Name => "display_name",
    };
    let dir = if page.descending { "DESC" } else { "ASC" };
    format!("ORDER BY w.{column} {dir}, w.id {dir}")
}

/// The SELECT of `columns` (aliasing the table `w`) for the workspaces `account` reaches, and
/// its text binds; `None` when a filter's list is empty, so nothing can match.
pub(crate) fn reached_by(
    account: &Account,
    filters: &WorkspaceFilters,
    page: Page,
    columns: &str,
) -> Option<(String, Vec<String>)> {
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
    sql.push_str(&workspace_order(page));
    sql.push_str(&format!(" LIMIT {} OFFSET {}", page.limit, page.offset));
    Some((sql, binds))
}

impl Store {
    /// A page of the workspaces `account` reaches, as rows of type `R` read from `columns`.
    async fn page_reached_by<R: FromColumns + Send + 'static>(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
        columns: &str,
    ) -> StoreResult<Vec<R>> {
        let Some((sql, binds)) = reached_by(account, filters, page, columns) else {
            return Ok(Vec::new());
        };
        let args: Vec<Arg<'_>> = binds.iter().map(Into::into).collect();
        self.db.fetch_page(&sql, &args, page).await
    }
}

#[async_trait]
impl WorkspaceStore for Store {
    #[tracing::instrument(level = "debug", skip_all, fields(workspace = %workspace.id))]
    async fn insert_workspace(&self, workspace: &Workspace, event: &AuditEvent) -> StoreResult<()> {
        let metadata = workspace.metadata.as_ref().map(ToString::to_string);
        self.db
            .execute_recorded(
                "INSERT INTO workspaces (id, slug, display_name, status, workspace_type, \
                 firm_size, metadata, owner_partner_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    workspace.id.as_str().into(),
                    workspace.slug.as_str().into(),
                    workspace.display_name.as_str().into(),
                    workspace.status.as_str().into(),
                    workspace.workspace_type.as_str().into(),
                    workspace.firm_size.as_deref().into(),
                    metadata.as_deref().into(),
                    workspace
                        .owner_partner_id
                        .as_ref()
                        .map(|a| a.as_str())
                        .into(),
                    workspace.created_at.as_millis().into(),
                    workspace.updated_at.as_millis().into(),
                ],
                std::slice::from_ref(event),
            )
            .await
            .map_err(|err| {
                name_conflict(err, |_| {
                    format!("a workspace with the slug `{}`", workspace.slug)
                })
            })?;
        Ok(())
    }

    async fn workspace_with_role(
        &self,
        id: &WorkspaceId,
        account: &AccountId,
    ) -> StoreResult<Option<(Workspace, Option<Role>)>> {
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS}, m.role FROM workspaces w \
             LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.account_id = $2 \
             WHERE w.id = $1"
        );
        let row: Option<WorkspaceRoleRow> = self
            .db
            .fetch_optional(&sql, &[id.as_str().into(), account.as_str().into()])
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role = row
            .member_role
            .as_deref()
            .map(members::parse_role)
            .transpose()?;
        Ok(Some((row.workspace.try_into()?, role)))
    }

    async fn workspaces_reached_by(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> StoreResult<Vec<Workspace>> {
        let rows: Vec<WorkspaceRow> = self
            .page_reached_by(account, filters, page, WORKSPACE_COLUMNS)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn workspace_keys_reached_by(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> StoreResult<Vec<WorkspaceKey>> {
        let rows: Vec<WorkspaceKeyRow> = self
            .page_reached_by(account, filters, page, WORKSPACE_KEY_COLUMNS)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn add_members(
        &self,
        workspace: &WorkspaceId,
        emails: &[Email],
        role: Role,
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<Vec<Member>> {
        members::add(&self.db, workspace, emails, role, now, event).await
    }

    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        account: &AccountId,
        event: &AuditEvent,
    ) -> StoreResult<bool> {
        members::remove(&self.db, workspace, account, event).await
    }

    async fn members_of(&self, workspace: &WorkspaceId, page: Page) -> StoreResult<Vec<Member>> {
        members::of_workspace(&self.db, workspace, page).await
    }
}

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
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("taxbridge.db");
        crate::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("migrated");
        let conn = rusqlite::Connection::open(&path).expect("open");
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
                for (columns, covering) in
                    [(WORKSPACE_KEY_COLUMNS, true), (WORKSPACE_COLUMNS, false)]
                {
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
