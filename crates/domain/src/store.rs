//! What every storage port shares: the error a store method returns, and the port that tells
//! whether the database answers. Each feature declares its own port beside its rules
//! ([`AccountStore`](crate::accounts::AccountStore), [`ApiKeyStore`](crate::api_keys::ApiKeyStore),
//! [`UsageStore`](crate::usage::UsageStore), [`WorkspaceStore`](crate::workspaces::WorkspaceStore));
//! the storage crate implements them all on one type. This module imports no feature, so no
//! feature's port can pull the others into an import circle.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; `what` names the thing that already exists.
    #[error("{what} already exists")]
    Conflict { what: String },
    /// The database cannot be reached right now (down, restarting, refusing connections, or
    /// every connection busy for longer than a request should wait). Callers answer "try
    /// again shortly" (`UNAVAILABLE`, HTTP 503); the worker waits and retries. Nothing was
    /// changed.
    #[error("the database cannot be reached")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database failed. Never shown to callers as is.
    #[error("the database failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether trying the same thing again later may succeed without anything else changing.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether the database answers: for `/readyz` and the logs.
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;
}
