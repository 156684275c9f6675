//! Rows as the database returns them, and their conversion into domain types. Both backends
//! decode the same structs, since every column is TEXT or a 64-bit integer. Each row type reads
//! its columns in the order of the column list beside it ([`FromColumns`]).

use crate::read::{Columns, FromColumns};
use taxbridge_domain::{
    accounts::{Account, AccountType},
    api_keys::{ApiKey, KeyHash, KeyKind},
    email::Email,
    ids::{AccountId, ApiKeyId},
    store::{KeyGrant, StoreError, StoreResult},
    time::Timestamp,
    usage::UsageCount,
};

/// A lone `COUNT(*)`.
pub(crate) struct Count(pub(crate) u64);

impl FromColumns for Count {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(u64::try_from(c.int()?).unwrap_or(0)))
    }
}

/// A lone text column.
pub(crate) struct Text(pub(crate) String);

impl FromColumns for Text {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?))
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::Backend(what.into())
}

fn ts(millis: Option<i64>) -> Option<Timestamp> {
    millis.map(Timestamp::from_millis)
}

pub(crate) const ACCOUNT_COLUMNS: &str =
    "id, email, name, account_type, provider_key, disabled_at, created_at, updated_at";

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

impl FromColumns for AccountRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            email: c.text()?,
            name: c.opt_text()?,
            account_type: c.text()?,
            provider_key: c.opt_text()?,
            disabled_at: c.opt_int()?,
            created_at: c.int()?,
            updated_at: c.int()?,
        })
    }
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

pub(crate) const KEY_COLUMNS: &str = "k.id, k.account_id, k.name, k.kind, k.key_hash, \
     k.display_prefix, k.created_at, k.last_used_at, k.expires_at, k.revoked_at";

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

impl FromColumns for ApiKeyRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            account_id: c.text()?,
            name: c.text()?,
            kind: c.text()?,
            key_hash: c.text()?,
            display_prefix: c.text()?,
            created_at: c.int()?,
            last_used_at: c.opt_int()?,
            expires_at: c.opt_int()?,
            revoked_at: c.opt_int()?,
        })
    }
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

/// A key and its account, read in one join: the key's columns, then the account's.
pub(crate) const GRANT_SELECT: &str = "SELECT k.id, k.account_id, k.name, k.kind, k.key_hash, \
     k.display_prefix, k.created_at, k.last_used_at, k.expires_at, k.revoked_at, \
     a.id, a.email, a.name, a.account_type, a.provider_key, a.disabled_at, a.created_at, \
     a.updated_at FROM api_keys k JOIN accounts a ON a.id = k.account_id";

pub(crate) struct GrantRow {
    key: ApiKeyRow,
    account: AccountRow,
}

impl FromColumns for GrantRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            key: ApiKeyRow::from_columns(c)?,
            account: AccountRow::from_columns(c)?,
        })
    }
}

impl TryFrom<GrantRow> for KeyGrant {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> Result<Self, StoreError> {
        Ok(KeyGrant {
            key: row.key.try_into()?,
            account: row.account.try_into()?,
        })
    }
}

pub(crate) struct UsageRow {
    day: String,
    api_key_id: String,
    source_platform: String,
    operation: String,
    count: i64,
}

impl FromColumns for UsageRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            day: c.text()?,
            api_key_id: c.text()?,
            source_platform: c.text()?,
            operation: c.text()?,
            count: c.int()?,
        })
    }
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

pub(crate) const WORKSPACE_COLUMNS: &str =
    "w.id, w.slug, w.display_name, w.status, w.workspace_type, \
     w.firm_size, w.metadata, w.owner_partner_id, w.created_at, w.updated_at";

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

pub(crate) const WORKSPACE_KEY_COLUMNS: &str = "w.id, w.slug";

pub(crate) struct WorkspaceKeyRow {
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

impl From<WorkspaceKeyRow> for taxbridge_domain::workspaces::WorkspaceKey {
    fn from(row: WorkspaceKeyRow) -> Self {
        Self {
            id: taxbridge_domain::ids::WorkspaceId::from_string(row.id),
            slug: row.slug,
        }
    }
}

/// A workspace with the asking account's role there, if any: [`WORKSPACE_COLUMNS`], then
/// the role.
pub(crate) struct WorkspaceRoleRow {
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

pub(crate) const MEMBER_COLUMNS: &str = "a.id, a.email, a.name, a.account_type, a.provider_key, \
     a.disabled_at, a.created_at, a.updated_at, m.role";

pub(crate) struct MemberRow {
    account: AccountRow,
    role: String,
}

impl FromColumns for MemberRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            account: AccountRow::from_columns(c)?,
            role: c.text()?,
        })
    }
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
