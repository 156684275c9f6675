//! Rows as the database returns them, and their conversion into domain types. Both backends
//! decode the same structs, since every column is TEXT or a 64-bit integer.

use taxbridge_domain::{
    accounts::{Account, AccountType},
    api_keys::{ApiKey, KeyHash, KeyKind},
    email::Email,
    ids::{AccountId, ApiKeyId},
    store::{KeyGrant, StoreError},
    time::Timestamp,
    usage::UsageCount,
};

fn corrupt(what: String) -> StoreError {
    StoreError::Backend(what.into())
}

fn ts(millis: Option<i64>) -> Option<Timestamp> {
    millis.map(Timestamp::from_millis)
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    id: String,
    email: String,
    name: Option<String>,
    account_type: String,
    provider_key: Option<String>,
    disabled_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            email: Email::parse(&row.email)
                .map_err(|err| corrupt(format!("account {}: {err}", row.id)))?,
            account_type: AccountType::parse(&row.account_type).ok_or_else(|| {
                corrupt(format!(
                    "account {} has type `{}`",
                    row.id, row.account_type
                ))
            })?,
            id: AccountId::from_string(row.id),
            name: row.name,
            provider_key: row.provider_key,
            disabled_at: ts(row.disabled_at),
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: String,
    account_id: String,
    name: String,
    kind: String,
    key_hash: String,
    display_prefix: String,
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            kind: KeyKind::parse(&row.kind)
                .ok_or_else(|| corrupt(format!("API key {} has kind `{}`", row.id, row.kind)))?,
            id: ApiKeyId::from_string(row.id),
            account_id: AccountId::from_string(row.account_id),
            name: row.name,
            hash: KeyHash::from_hex(row.key_hash),
            display_prefix: row.display_prefix,
            created_at: Timestamp::from_millis(row.created_at),
            last_used_at: ts(row.last_used_at),
            expires_at: ts(row.expires_at),
            revoked_at: ts(row.revoked_at),
        })
    }
}

/// A key and its account, read in one join.
#[derive(sqlx::FromRow)]
pub(crate) struct GrantRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    a_id: String,
    a_email: String,
    a_name: Option<String>,
    a_account_type: String,
    a_provider_key: Option<String>,
    a_disabled_at: Option<i64>,
    a_created_at: i64,
    a_updated_at: i64,
}

impl TryFrom<GrantRow> for KeyGrant {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> Result<Self, StoreError> {
        let account = AccountRow {
            id: row.a_id,
            email: row.a_email,
            name: row.a_name,
            account_type: row.a_account_type,
            provider_key: row.a_provider_key,
            disabled_at: row.a_disabled_at,
            created_at: row.a_created_at,
            updated_at: row.a_updated_at,
        };
        Ok(KeyGrant {
            key: row.key.try_into()?,
            account: account.try_into()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UsageRow {
    day: String,
    api_key_id: String,
    source_platform: String,
    operation: String,
    count: i64,
}

impl From<UsageRow> for UsageCount {
    fn from(row: UsageRow) -> Self {
        UsageCount {
            day: row.day,
            api_key_id: (!row.api_key_id.is_empty()).then(|| ApiKeyId::from_string(row.api_key_id)),
            source_platform: row.source_platform,
            operation: row.operation,
            count: u64::try_from(row.count).unwrap_or(0),
        }
    }
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct WorkspaceRow {
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

impl TryFrom<WorkspaceRow> for taxbridge_domain::workspaces::Workspace {
    type Error = StoreError;

    fn try_from(row: WorkspaceRow) -> Result<Self, StoreError> {
        use taxbridge_domain::workspaces::WorkspaceType;
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
            id: taxbridge_domain::ids::WorkspaceId::from_string(row.id),
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

/// A workspace with the asking account's role there, if any.
#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRoleRow {
    #[sqlx(flatten)]
    workspace: WorkspaceRow,
    member_role: Option<String>,
}

impl WorkspaceRoleRow {
    pub(crate) fn into_domain(
        self,
    ) -> Result<
        (
            taxbridge_domain::workspaces::Workspace,
            Option<taxbridge_domain::workspaces::Role>,
        ),
        StoreError,
    > {
        let role = self
            .member_role
            .map(|r| {
                taxbridge_domain::workspaces::Role::parse(&r)
                    .ok_or_else(|| corrupt(format!("role `{r}`")))
            })
            .transpose()?;
        Ok((self.workspace.try_into()?, role))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    #[sqlx(flatten)]
    account: AccountRow,
    role: String,
}

impl TryFrom<MemberRow> for taxbridge_domain::workspaces::Member {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> Result<Self, StoreError> {
        Ok(Self {
            role: taxbridge_domain::workspaces::Role::parse(&row.role)
                .ok_or_else(|| corrupt(format!("role `{}`", row.role)))?,
            account: row.account.try_into()?,
        })
    }
}
