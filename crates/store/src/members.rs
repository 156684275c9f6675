//! Workspace members: the `workspace_members` table, read with each member's account. The
//! [`WorkspaceStore`](taxbridge_domain::workspaces::WorkspaceStore) impl in
//! [`crate::workspaces`] calls these.

use crate::{
    accounts::{corrupt, AccountRow, ACCOUNT_COLUMNS},
    db::Db,
    read::{Columns, FromColumns},
};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    audit::AuditEvent,
    email::Email,
    ids::{AccountId, WorkspaceId},
    lists::Page,
    store::{StoreError, StoreResult},
    time::Timestamp,
    workspaces::{Member, Role},
};

/// A member: the account's columns, then its role.
struct MemberRow {
    account: AccountRow,
    role: String,
}

fn member_select() -> String {
    format!(
        "SELECT {ACCOUNT_COLUMNS}, m.role FROM workspace_members m \
         JOIN accounts a ON a.id = m.account_id"
    )
}

impl FromColumns for MemberRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            account: AccountRow::from_columns(c)?,
            role: c.text()?,
        })
    }
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> Result<Self, StoreError> {
        Ok(Self {
            role: parse_role(&row.role)?,
            account: row.account.try_into()?,
        })
    }
}

pub(crate) fn parse_role(role: &str) -> StoreResult<Role> {
    Role::parse(role).ok_or_else(|| corrupt(format!("role `{role}`")))
}

#[tracing::instrument(level = "debug", skip_all, fields(workspace = %workspace, emails = emails.len()))]
pub(crate) async fn add(
    db: &Db,
    workspace: &WorkspaceId,
    emails: &[Email],
    role: Role,
    now: Timestamp,
    event: &AuditEvent,
) -> StoreResult<Vec<Member>> {
    let mut tx = db.begin().await?;
    let mut events = Vec::new();
    // Rows are written in email order whatever order the caller gave, so two calls with
    // overlapping emails take their row locks in the same order and cannot deadlock
    // (PostgreSQL aborts one side of a deadlock); answers keep the caller's order.
    let mut order: Vec<usize> = (0..emails.len()).collect();
    order.sort_by(|&a, &b| emails[a].as_str().cmp(emails[b].as_str()));
    let mut members: Vec<Option<Member>> = vec![None; emails.len()];
    let select = format!(
        "{} WHERE m.workspace_id = $1 AND a.email = $2",
        member_select()
    );
    for &at in &order {
        let email = emails[at].as_str();
        tx.execute(
            "INSERT INTO accounts (id, email, name, account_type, provider_key, disabled_at, \
             created_at, updated_at) VALUES ($1, $2, NULL, 'customer', NULL, NULL, $3, $3) \
             ON CONFLICT (email) DO NOTHING",
            &[
                AccountId::generate().as_str().into(),
                email.into(),
                now.as_millis().into(),
            ],
        )
        .await?;
        let joined = tx
            .execute(
                "INSERT INTO workspace_members (workspace_id, account_id, role, created_at) \
             SELECT $1, id, $2, $3 FROM accounts WHERE email = $4 \
             ON CONFLICT (workspace_id, account_id) DO NOTHING",
                &[
                    workspace.as_str().into(),
                    role.as_str().into(),
                    now.as_millis().into(),
                    email.into(),
                ],
            )
            .await?;
        let row: MemberRow = tx
            .fetch_optional(&select, &[workspace.as_str().into(), email.into()])
            .await?
            .ok_or_else(|| corrupt(format!("member {email} vanished inside its transaction")))?;
        let member: Member = row.try_into()?;
        if joined > 0 {
            events.push(
                event
                    .copy()
                    .target("account", &member.account.id)
                    .with("email", email)
                    .with("role", role.as_str()),
            );
        }
        members[at] = Some(member);
    }
    tx.record(&events).await?;
    tx.commit().await?;
    Ok(members.into_iter().flatten().collect())
}

pub(crate) async fn remove(
    db: &Db,
    workspace: &WorkspaceId,
    account: &AccountId,
    event: &AuditEvent,
) -> StoreResult<bool> {
    let changed = db
        .execute_recorded(
            "DELETE FROM workspace_members WHERE workspace_id = $1 AND account_id = $2",
            &[workspace.as_str().into(), account.as_str().into()],
            std::slice::from_ref(event),
        )
        .await?;
    Ok(changed == 1)
}

pub(crate) async fn of_workspace(
    db: &Db,
    workspace: &WorkspaceId,
    page: Page,
) -> StoreResult<Vec<Member>> {
    let sql = format!(
        "{} WHERE m.workspace_id = $1 ORDER BY m.created_at, m.account_id LIMIT {} OFFSET {}",
        member_select(),
        page.limit,
        page.offset
    );
    let rows: Vec<MemberRow> = db
        .fetch_page(&sql, &[workspace.as_str().into()], page)
        .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}
