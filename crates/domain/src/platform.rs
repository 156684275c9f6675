//! The port to a provider's platform (partner protocol v1) and the words both sides of it
//! share: how the gateway reaches a platform ([`PlatformAccess`], [`Puller`]), what it asks
//! ([`VerifyCall`]), what comes back ([`VerifiedFirm`], [`PlatformClient`], [`PlatformFile`]),
//! how it fails ([`PlatformFailure`]) and what one request may read ([`PullBudget`]).
//! `connections` (verify on collect) and `pulls` (clients and files) both use it; the outbound
//! crate implements it. It imports neither feature, so neither imports the other through it.

use crate::{ids::ConnectionId, time::Timestamp};
use async_trait::async_trait;

/// A connection's way into its platform: where it is and the credentials, opened. Kept only
/// for the length of a call; its `Debug` shows no secret.
#[derive(Clone)]
pub struct PlatformAccess {
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub security_token: Option<String>,
    pub workspace_id: String,
    pub firm_reference: Option<String>,
}

impl std::fmt::Debug for PlatformAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformAccess")
            .field("base_url", &self.base_url)
            .field("workspace_id", &self.workspace_id)
            .finish_non_exhaustive()
    }
}

/// One `GET /v1/verify` of partner protocol v1: where, with what, for whom.
pub struct VerifyCall<'a> {
    pub base_url: &'a str,
    pub api_key: Option<&'a str>,
    pub security_token: Option<&'a str>,
    pub workspace_id: &'a str,
    pub firm_reference: Option<&'a str>,
}

/// What a platform said about the firm whose credentials it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedFirm {
    pub firm_id: String,
    pub firm_name: Option<String>,
}

/// The outbound side of partner protocol v1, as the domain sees it: implemented over the
/// egress policy in the outbound crate. The error is what went wrong, in words an integrator
/// can act on (`Rejected` is the credentials' fault, the rest the platform's or the URL's).
#[async_trait]
pub trait PartnerPlatform: Send + Sync + 'static {
    async fn verify(&self, call: VerifyCall<'_>) -> Result<VerifiedFirm, PlatformFailure>;
    /// `GET /v1/clients` with these query parameters: at most `limit` clients, the answer
    /// read as it streams and charged to `budget`.
    async fn clients(
        &self,
        puller: &Puller,
        params: &[(String, String)],
        limit: usize,
        budget: &PullBudget,
    ) -> Result<Vec<PlatformClient>, PlatformFailure>;
    /// `GET /v1/clients/{id}`; `None` when the platform answers 404.
    async fn client(
        &self,
        puller: &Puller,
        id: &str,
        budget: &PullBudget,
    ) -> Result<Option<PlatformClient>, PlatformFailure>;
    /// `GET /v1/clients/{id}/files` with these query parameters: at most `limit` files.
    async fn files(
        &self,
        puller: &Puller,
        client_id: &str,
        params: &[(String, String)],
        limit: usize,
        budget: &PullBudget,
    ) -> Result<Vec<PlatformFile>, PlatformFailure>;
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformFailure {
    #[error("the platform rejected the credentials (HTTP {0}); check the apiKey and securityToken, then collect again")]
    Rejected(u16),
    #[error("{0}")]
    Unreachable(String),
    #[error("the platform answered HTTP {0}; try again later or check the baseUrl")]
    Status(u16),
    #[error("the platform's answer was not a partner protocol v1 answer: {0}")]
    BadAnswer(String),
    /// The request's pulls have read their shared byte budget ([`PullBudget`]).
    #[error("this request's pulls have read the {0}-byte budget one request may read from platforms; ask for fewer items (options.limit) or fewer clients' files per request")]
    OverBudget(u64),
}

/// The bytes one request's pulls may still read from platforms, shared by all of them: a
/// hostile platform's answers cost the gateway at most this much, however many pulls one
/// query makes.
#[derive(Debug)]
pub struct PullBudget {
    total: u64,
    left: std::sync::atomic::AtomicU64,
}

impl PullBudget {
    pub fn new(bytes: u64) -> Self {
        Self {
            total: bytes,
            left: std::sync::atomic::AtomicU64::new(bytes),
        }
    }

    /// Takes `bytes` from the budget; `Err` (with the budget's size) once it is spent.
    pub fn take(&self, bytes: u64) -> Result<(), PlatformFailure> {
        use std::sync::atomic::Ordering;
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .map(|_| ())
            .map_err(|_| {
                // Spent for every later pull of the request too.
                self.left.store(0, Ordering::Relaxed);
                PlatformFailure::OverBudget(self.total)
            })
    }
}

/// A client as the platform lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformClient {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub kind: Option<String>,
    pub last_modified: Option<Timestamp>,
}

/// A client's file as the platform lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformFile {
    pub id: String,
    pub file_name: String,
    pub file_size: Option<i64>,
    pub mime_type: Option<String>,
    pub download_url: Option<String>,
    pub date_created: Option<Timestamp>,
}

/// What pulls from one connection need: its id, and its platform's address and credentials,
/// read once per connection a request pulls from.
#[derive(Clone, Debug)]
pub struct Puller {
    /// Who pulls: a rejection recorded by the pull names them.
    pub who: crate::audit::Who,
    pub connection_id: ConnectionId,
    pub access: PlatformAccess,
    pub base_url: String,
}
