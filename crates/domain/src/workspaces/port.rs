//! Where workspaces and their members are kept.

use super::model::*;
use crate::{
    accounts::Account,
    audit::AuditEvent,
    email::Email,
    ids::{AccountId, WorkspaceId},
    lists::Page,
    store::StoreResult,
    time::Timestamp,
};
use async_trait::async_trait;

/// Where workspaces and their members are kept.
#[async_trait]
pub trait WorkspaceStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the slug is taken.
    async fn insert_workspace(&self, workspace: &Workspace, event: &AuditEvent) -> StoreResult<()>;
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
    /// order, all in one transaction. Records a copy of `event` (see
    /// [`AuditEvent::copy`]) for each account that became a member, targeting it.
    async fn add_members(
        &self,
        workspace: &WorkspaceId,
        emails: &[Email],
        role: Role,
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<Vec<Member>>;
    /// False when the account was not a member (then `event` is not recorded).
    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        account: &AccountId,
        event: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Members, oldest membership first.
    async fn members_of(&self, workspace: &WorkspaceId, page: Page) -> StoreResult<Vec<Member>>;
}
