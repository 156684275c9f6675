//! Where connections are kept: rows, their sealed credentials, and the collect lease that
//! keeps two nodes from verifying one connection at once.

use super::model::*;
use crate::audit::AuditEvent;
use crate::{
    ids::{ConnectionId, WorkspaceId},
    lists::Page,
    store::StoreResult,
    time::Timestamp,
};
use async_trait::async_trait;

/// Where connections are kept.
#[async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
    /// Sealed credentials of connections with an id after `after`, by id, at most `limit`:
    /// what a key rotation walks.
    async fn sealed_credentials(
        &self,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> StoreResult<Vec<SealedCredentials>>;
    /// Takes the connection's collect lease until `until` if no unexpired lease holds it;
    /// false when another collect holds it.
    async fn take_collect_lease(
        &self,
        id: &ConnectionId,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives the lease back.
    async fn release_collect_lease(&self, id: &ConnectionId) -> StoreResult<()>;
    /// Replaces a connection's credentials if they are still `old`; false when they changed
    /// meanwhile (or are gone).
    async fn swap_credentials(&self, id: &ConnectionId, old: &str, new: &str) -> StoreResult<bool>;
    /// Inserts a connection and records `event` with it.
    async fn insert_connection(
        &self,
        connection: &Connection,
        event: &AuditEvent,
    ) -> StoreResult<()>;
    async fn connection_by_id(&self, id: &ConnectionId) -> StoreResult<Option<Connection>>;
    /// A page of a workspace's connections.
    async fn connections_of(
        &self,
        workspace: &WorkspaceId,
        filters: &ConnectionFilters,
        page: Page,
    ) -> StoreResult<Vec<Connection>>;
    /// Writes a connection's status, settings, credentials, detail, verification time,
    /// display name and `updated_at`; false when there is no such connection.
    /// Records `events` with the update (none when the connection is gone).
    async fn update_connection(
        &self,
        connection: &Connection,
        events: &[AuditEvent],
    ) -> StoreResult<bool>;
}
