//! What a provider connection is: its row, its status and next action, how lists filter it,
//! and the errors the service answers.

use crate::words::Word;
use crate::{
    ids::{ConnectionId, WorkspaceId},
    providers::Provider,
    store::StoreError,
    time::Timestamp,
    workspaces::WorkspaceError,
};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ConnectionStatus {
    Pending,
    Active,
    Failed,
    Disconnected,
}

impl ConnectionStatus {
    /// The next step a caller takes: `collect` while pending, `reconnect` when failed.
    pub fn action(self) -> Option<&'static str> {
        match self {
            Self::Pending => Some("collect"),
            Self::Failed => Some("reconnect"),
            Self::Active | Self::Disconnected => None,
        }
    }
}

impl Word for ConnectionStatus {}

#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub provider_key: String,
    /// The provider's category when the connection started: what `categories` filters by.
    pub category: String,
    pub status: ConnectionStatus,
    pub display_name: Option<String>,
    /// The non-secret inputs, a JSON object.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The secret inputs, sealed; `None` once disconnected (or when there were none).
    pub credentials: Option<String>,
    pub status_detail: Option<String>,
    pub last_verified_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What `Workspace.connections(filters)` narrows by; each list is capped by the API.
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilters {
    pub ids: Option<Vec<ConnectionId>>,
    pub statuses: Option<Vec<ConnectionStatus>>,
    pub provider_keys: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
}

/// A connection's sealed credentials, as a key rotation reads them.
#[derive(Clone, Debug)]
pub struct SealedCredentials {
    pub id: ConnectionId,
    pub sealed: String,
    /// The `baseUrl` of the connection's settings: part of what the seal is bound to.
    pub base_url: Option<String>,
}

/// A connection together with the provider it connects to.
#[derive(Clone, Debug)]
pub struct ConnectionView {
    pub connection: Connection,
    pub provider: Provider,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("No connection has this id, or it is not one you can reach.")]
    NotFound,
    /// The provider's platform failed a pull; the message says how.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
