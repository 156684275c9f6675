//! Provider connections: the `provider_connections` table, its row type and the
//! [`ConnectionStore`] port. Credentials arrive and leave sealed: nothing here can read them.

use crate::{
    accounts::corrupt,
    db::Arg,
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    audit::AuditEvent,
    connections::{
        Connection, ConnectionFilters, ConnectionStatus, ConnectionStore, SealedCredentials,
    },
    ids::{ConnectionId, WorkspaceId},
    lists::{Page, SortField},
    store::{StoreError, StoreResult},
    time::Timestamp,
};

const CONNECTION_COLUMNS: &str = "c.id, c.workspace_id, c.provider_key, c.category, c.status, \
     c.display_name, c.settings, c.credentials, c.status_detail, c.last_verified_at, \
     c.created_at, c.updated_at";

struct ConnectionRow {
    id: String,
    workspace_id: String,
    provider_key: String,
    category: String,
    status: String,
    display_name: Option<String>,
    settings: String,
    credentials: Option<String>,
    status_detail: Option<String>,
    last_verified_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl FromColumns for ConnectionRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            workspace_id: c.text()?,
            provider_key: c.text()?,
            category: c.text()?,
            status: c.text()?,
            display_name: c.opt_text()?,
            settings: c.text()?,
            credentials: c.opt_text()?,
            status_detail: c.opt_text()?,
            last_verified_at: c.opt_int()?,
            created_at: c.int()?,
            updated_at: c.int()?,
        })
    }
}

impl TryFrom<ConnectionRow> for Connection {
    type Error = StoreError;

    fn try_from(row: ConnectionRow) -> Result<Self, StoreError> {
        let settings = match serde_json::from_str(&row.settings) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(corrupt(format!("connection {} settings", row.id))),
        };
        Ok(Connection {
            status: ConnectionStatus::parse(&row.status).ok_or_else(|| {
                corrupt(format!("connection {} has status `{}`", row.id, row.status))
            })?,
            id: ConnectionId::from_string(row.id),
            workspace_id: WorkspaceId::from_string(row.workspace_id),
            provider_key: row.provider_key,
            category: row.category,
            display_name: row.display_name,
            settings,
            credentials: row.credentials,
            status_detail: row.status_detail,
            last_verified_at: row.last_verified_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

/// The SELECT for a page of a workspace's connections, and its text binds.
fn page_query(
    workspace: &WorkspaceId,
    filters: &ConnectionFilters,
    page: Page,
) -> Option<(String, Vec<String>)> {
    let mut binds = vec![workspace.to_string()];
    let mut sql = format!(
        "SELECT {CONNECTION_COLUMNS} FROM provider_connections c WHERE c.workspace_id = $1"
    );
    let mut add_in = |column: &str, values: Vec<String>| -> bool {
        if values.is_empty() {
            return false;
        }
        let start = binds.len() + 1;
        binds.extend(values);
        let marks: Vec<String> = (start..=binds.len()).map(|i| format!("${i}")).collect();
        sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
        true
    };
    let lists = [
        (
            "c.id",
            filters
                .ids
                .as_ref()
                .map(|ids| ids.iter().map(ToString::to_string).collect()),
        ),
        (
            "c.status",
            filters
                .statuses
                .as_ref()
                .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect()),
        ),
        ("c.provider_key", filters.provider_keys.clone()),
        ("c.category", filters.categories.clone()),
    ];
    for (column, values) in lists {
        if let Some(values) = values {
            if !add_in(column, values) {
                return None;
            }
        }
    }
    let column = match page.sort {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Name => "display_name",
    };
    let dir = if page.descending { "DESC" } else { "ASC" };
    sql.push_str(&format!(
        " ORDER BY c.{column} {dir}, c.id {dir} LIMIT {} OFFSET {}",
        page.limit, page.offset
    ));
    Some((sql, binds))
}

/// A connection id and its sealed credentials.
struct SealedRow(String, String, String);

impl FromColumns for SealedRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?, c.text()?, c.text()?))
    }
}

#[async_trait]
impl ConnectionStore for Store {
    async fn sealed_credentials(
        &self,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> StoreResult<Vec<SealedCredentials>> {
        let sql = format!(
            "SELECT id, credentials, settings FROM provider_connections \
             WHERE credentials IS NOT NULL AND id > $1 ORDER BY id LIMIT {limit}"
        );
        let rows: Vec<SealedRow> = self
            .db
            .fetch(&sql, &[after.map_or("", |id| id.as_str()).into()])
            .await?;
        Ok(rows
            .into_iter()
            .map(|SealedRow(id, sealed, settings)| SealedCredentials {
                id: ConnectionId::from_string(id),
                sealed,
                base_url: serde_json::from_str::<serde_json::Value>(&settings)
                    .ok()
                    .and_then(|s| s.get("baseUrl")?.as_str().map(str::to_owned)),
            })
            .collect())
    }

    async fn take_collect_lease(
        &self,
        id: &ConnectionId,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let changed = self
            .db
            .execute(
                "UPDATE provider_connections SET collect_lease_until = $1 WHERE id = $2 \
                 AND (collect_lease_until IS NULL OR collect_lease_until < $3)",
                &[
                    until.as_millis().into(),
                    id.as_str().into(),
                    now.as_millis().into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_collect_lease(&self, id: &ConnectionId) -> StoreResult<()> {
        self.db
            .execute(
                "UPDATE provider_connections SET collect_lease_until = NULL WHERE id = $1",
                &[id.as_str().into()],
            )
            .await?;
        Ok(())
    }

    async fn swap_credentials(&self, id: &ConnectionId, old: &str, new: &str) -> StoreResult<bool> {
        let changed = self
            .db
            .execute(
                "UPDATE provider_connections SET credentials = $1 WHERE id = $2 AND credentials = $3",
                &[new.into(), id.as_str().into(), old.into()],
            )
            .await?;
        Ok(changed == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(connection = %connection.id))]
    async fn insert_connection(
        &self,
        connection: &Connection,
        event: &AuditEvent,
    ) -> StoreResult<()> {
        let settings = serde_json::Value::Object(connection.settings.clone()).to_string();
        self.db
            .execute_recorded(
                "INSERT INTO provider_connections (id, workspace_id, provider_key, category, \
                 status, display_name, settings, credentials, status_detail, last_verified_at, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    connection.id.as_str().into(),
                    connection.workspace_id.as_str().into(),
                    connection.provider_key.as_str().into(),
                    connection.category.as_str().into(),
                    connection.status.as_str().into(),
                    connection.display_name.as_deref().into(),
                    settings.as_str().into(),
                    connection.credentials.as_deref().into(),
                    connection.status_detail.as_deref().into(),
                    connection.last_verified_at.map(Timestamp::as_millis).into(),
                    connection.created_at.as_millis().into(),
                    connection.updated_at.as_millis().into(),
                ],
                std::slice::from_ref(event),
            )
            .await?;
        Ok(())
    }

    async fn connection_by_id(&self, id: &ConnectionId) -> StoreResult<Option<Connection>> {
        let sql =
            format!("SELECT {CONNECTION_COLUMNS} FROM provider_connections c WHERE c.id = $1");
        let row: Option<ConnectionRow> =
            self.db.fetch_optional(&sql, &[id.as_str().into()]).await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn connections_of(
        &self,
        workspace: &WorkspaceId,
        filters: &ConnectionFilters,
        page: Page,
    ) -> StoreResult<Vec<Connection>> {
        let Some((sql, binds)) = page_query(workspace, filters, page) else {
            return Ok(Vec::new());
        };
        let args: Vec<Arg<'_>> = binds.iter().map(Into::into).collect();
        let rows: Vec<ConnectionRow> = self.db.fetch_page(&sql, &args, page).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(connection = %connection.id))]
    async fn update_connection(
        &self,
        connection: &Connection,
        events: &[AuditEvent],
    ) -> StoreResult<bool> {
        let settings = serde_json::Value::Object(connection.settings.clone()).to_string();
        let changed = self
            .db
            .execute_recorded(
                "UPDATE provider_connections SET status = $1, display_name = $2, settings = $3, \
                 credentials = $4, status_detail = $5, last_verified_at = $6, updated_at = $7 \
                 WHERE id = $8",
                &[
                    connection.status.as_str().into(),
                    connection.display_name.as_deref().into(),
                    settings.as_str().into(),
                    connection.credentials.as_deref().into(),
                    connection.status_detail.as_deref().into(),
                    connection.last_verified_at.map(Timestamp::as_millis).into(),
                    connection.updated_at.as_millis().into(),
                    connection.id.as_str().into(),
                ],
                events,
            )
            .await?;
        Ok(changed == 1)
    }
}
