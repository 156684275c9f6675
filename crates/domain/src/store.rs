//! The storage port: everything Taxbridge persists goes through [`Store`]. The storage crate
//! implements it for SQLite and PostgreSQL, and one contract suite holds both to it.

use crate::{
    accounts::Account,
    api_keys::{ApiKey, KeyHash},
    email::Email,
    ids::WorkspaceId,
    ids::{AccountId, ApiKeyId},
    lists::Page,
    time::Timestamp,
    usage::UsageCount,
    workspaces::{Member, Role, Workspace, WorkspaceFilters, WorkspaceKey},
};
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; `what` names the thing that already exists.
    #[error("{what} already exists")]
    Conflict { what: String },
    /// The database failed or could not be reached. Never shown to callers as is.
    #[error("the database failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A key together with the account it belongs to: what authentication needs, in one read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    pub key: ApiKey,
    pub account: Account,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    async fn count_accounts(&self) -> StoreResult<u64>;
    /// Fails with [`StoreError::Conflict`] when the email, or a partner's provider key, is taken.
    async fn insert_account(&self, account: &Account) -> StoreResult<()>;
    async fn account_by_id(&self, id: &AccountId) -> StoreResult<Option<Account>>;
    async fn account_by_email(&self, email: &Email) -> StoreResult<Option<Account>>;
    /// Disables (`Some`) or re-enables (`None`) an account; false when there is no such account.
    async fn set_account_disabled(
        &self,
        id: &AccountId,
        disabled_at: Option<Timestamp>,
    ) -> StoreResult<bool>;

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    async fn grant_by_key_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyGrant>>;
    async fn grant_by_key_id(&self, id: &ApiKeyId) -> StoreResult<Option<KeyGrant>>;
    /// An account's keys, oldest first.
    async fn api_keys_of(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked; false when there is no such key or it was already revoked.
    async fn revoke_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<bool>;
    /// Records use of a key, unless it was recorded less than a minute before `at`.
    async fn touch_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<()>;

    /// Adds counts to the usage table, summing with what is there.
    async fn add_usage(&self, counts: &[UsageCount]) -> StoreResult<()>;
    /// Every usage row of `since_day` (`YYYY-MM-DD`) and later, by day then key, platform and
    /// operation.
    async fn usage_since(&self, since_day: &str) -> StoreResult<Vec<UsageCount>>;

    /// Fails with [`StoreError::Conflict`] when the slug is taken.
    async fn insert_workspace(&self, workspace: &Workspace) -> StoreResult<()>;
    /// Slugs equal to `base` or starting with `base-`.
    async fn slugs_starting_with(&self, base: &str) -> StoreResult<Vec<String>>;
    /// A workspace and, if the account is a member, its role there.
    async fn workspace_with_role(
        &self,
        id: &WorkspaceId,
        account: &AccountId,
    ) -> StoreResult<Option<(Workspace, Option<Role>)>>;
    /// The workspaces an account reaches: its memberships, or for a partner the workspaces it
    /// created.
    async fn workspaces_reached_by(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> StoreResult<Vec<Workspace>>;
    /// [`workspaces_reached_by`](Self::workspaces_reached_by) reading only ids and slugs: the
    /// same workspaces in the same order.
    async fn workspace_keys_reached_by(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> StoreResult<Vec<WorkspaceKey>>;
    /// Adds the accounts with these emails (creating customer accounts that do not exist) as
    /// members with `role`, leaving existing members as they are. One member per email, in
    /// order, all in one transaction.
    async fn add_members(
        &self,
        workspace: &WorkspaceId,
        emails: &[Email],
        role: Role,
        now: Timestamp,
    ) -> StoreResult<Vec<Member>>;
    /// False when the account was not a member.
    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        account: &AccountId,
    ) -> StoreResult<bool>;
    /// Members, oldest membership first.
    async fn members_of(&self, workspace: &WorkspaceId, page: Page) -> StoreResult<Vec<Member>>;
}
