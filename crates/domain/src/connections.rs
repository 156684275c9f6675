//! Provider connections (spec §5): a workspace's link to one provider's platform, started with
//! the firm's credentials, verified by a live call (collect), and listed on the workspace.
//!
//! Who may start one (spec §3): a member of the workspace, with any catalog provider; a partner,
//! on its own workspaces and only with its own provider key. An unknown provider key is
//! `Invalid` for every caller and checked first; `Forbidden` is only for another existing key.
//!
//! Inputs split in two: settings (`baseUrl`, `firmReferenceId`, and what the provider declares
//! not secret), kept as JSON and returned by the API; and secrets, sealed together with the
//! key ring and bound to the connection id and the origin of its base URL
//! ([`credentials_binding`]), so a row whose base URL was changed does not open. Secrets are
//! never returned, logged, or put in an error.
//!
//! Stored secrets go only to the origin they were entered for: a collect (or the connect
//! page's retry) that moves the base URL to another origin must give every stored secret
//! again in the same call, and then only the new ones are kept.

use crate::{
    accounts::{AccountStore, AccountType},
    crypto::Keys,
    identity::Caller,
    ids::{ConnectionId, WorkspaceId},
    lists::Page,
    platform::{PartnerPlatform, PlatformAccess, PlatformFailure, VerifyCall},
    providers::{partner_entry, Catalog, Provider},
    store::{StoreError, StoreResult},
    time::Timestamp,
    workspaces::{WorkspaceAccess, WorkspaceError, Workspaces},
};
use async_trait::async_trait;
use std::{collections::HashMap, sync::Arc};

/// How long a collect may hold its connection: longer than the outbound call's own timeout.
pub const COLLECT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The most bytes a connection's `inputs` may have, as JSON.
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum ConnectionStatus {
    Pending,
    Active,
    Failed,
    Disconnected,
}

impl ConnectionStatus {
    pub const ALL: [ConnectionStatus; 4] = [
        Self::Pending,
        Self::Active,
        Self::Failed,
        Self::Disconnected,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }

    /// The next step a caller takes: `collect` while pending, `reconnect` when failed.
    pub fn action(self) -> Option<&'static str> {
        match self {
            Self::Pending => Some("collect"),
            Self::Failed => Some("reconnect"),
            Self::Active | Self::Disconnected => None,
        }
    }
}

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

/// The origin (scheme, host, port) of a URL as text, e.g. `https://api.example.com:443`;
/// `None` for one that does not parse or has no host.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or(0)
    ))
}

/// What a connection's sealed credentials are bound to (the AEAD's associated data): its id
/// and the origin of the `baseUrl` stored in its settings, or the provider's own base URL when
/// it has none (an operator's catalog, trusted as the operator is).
pub fn credentials_binding(id: &ConnectionId, base_url: Option<&str>) -> String {
    let origin = match base_url {
        Some(url) => origin_of(url).unwrap_or_else(|| format!("unparsed {url}")),
        None => "the provider's base URL".to_owned(),
    };
    format!("{id} at {origin}")
}

/// Opens credentials sealed with [`credentials_binding`]; those sealed before the origin was
/// bound (to the id alone) still open, and are sealed bound at their next write or
/// `taxbridge encryption rotate`.
pub fn open_bound(
    open: impl Fn(&str, &str) -> Result<Vec<u8>, crate::crypto::CryptoError>,
    sealed: &str,
    id: &ConnectionId,
    base_url: Option<&str>,
) -> Result<Vec<u8>, crate::crypto::CryptoError> {
    match open(sealed, &credentials_binding(id, base_url)) {
        Err(crate::crypto::CryptoError::Damaged) => open(sealed, id.as_str()),
        other => other,
    }
}

/// A connection's sealed credentials, as a key rotation reads them.
#[derive(Clone, Debug)]
pub struct SealedCredentials {
    pub id: ConnectionId,
    pub sealed: String,
    /// The `baseUrl` of the connection's settings: part of what the seal is bound to.
    pub base_url: Option<String>,
}

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
    async fn insert_connection(&self, connection: &Connection) -> StoreResult<()>;
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
    async fn update_connection(&self, connection: &Connection) -> StoreResult<bool>;
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

fn invalid(field: &str, message: impl Into<String>) -> ConnectionError {
    ConnectionError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Splits inputs into settings and secrets, by what the provider declares secret.
#[allow(clippy::type_complexity)]
fn split(
    provider: &Provider,
    inputs: serde_json::Map<String, serde_json::Value>,
) -> Result<
    (
        serde_json::Map<String, serde_json::Value>,
        serde_json::Map<String, serde_json::Value>,
    ),
    ConnectionError,
> {
    let mut settings = serde_json::Map::new();
    let mut secrets = serde_json::Map::new();
    for (name, value) in inputs {
        if provider.is_secret(&name) {
            secrets.insert(name, value);
        } else {
            if name == "baseUrl" && !value.is_string() {
                return Err(invalid("inputs.baseUrl", "baseUrl must be a URL string"));
            }
            settings.insert(name, value);
        }
    }
    Ok((settings, secrets))
}

/// A connection together with the provider it connects to.
#[derive(Clone, Debug)]
pub struct ConnectionView {
    pub connection: Connection,
    pub provider: Provider,
}

pub struct Connections {
    pub(crate) store: Arc<dyn ConnectionStore>,
    accounts: Arc<dyn AccountStore>,
    workspaces: Arc<Workspaces>,
    catalog: Arc<Catalog>,
    keys: Arc<Keys>,
    pub(crate) platform: Arc<dyn PartnerPlatform>,
    /// One collect at a time per connection on this node.
    collecting: std::sync::Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
    /// Registered partners' catalog entries as last read, by provider key, with when.
    partner_entries: std::sync::RwLock<HashMap<String, (std::time::Instant, Provider)>>,
}

/// How long a partner's catalog entry (its name) is served from memory. Every connection a
/// page lists and every start names a provider; for a partner's key that was a database
/// read each. Only found entries are kept, so a newly registered partner is known at once;
/// a rename shows within this time. Access is never decided by the entry.
const PARTNER_ENTRY_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Connections {
    pub fn new<S: ConnectionStore + AccountStore>(
        store: Arc<S>,
        workspaces: Arc<Workspaces>,
        catalog: Arc<Catalog>,
        keys: Arc<Keys>,
        platform: Arc<dyn PartnerPlatform>,
    ) -> Self {
        Self {
            store: store.clone(),
            accounts: store,
            workspaces,
            catalog,
            keys,
            platform,
            collecting: std::sync::Mutex::default(),
            partner_entries: std::sync::RwLock::default(),
        }
    }

    /// A provider by its key: the catalog's, or a registered partner's.
    pub async fn provider(&self, key: &str) -> Result<Option<Provider>, ConnectionError> {
        if let Some(provider) = self.catalog.get(key) {
            return Ok(Some(provider.clone()));
        }
        if let Ok(kept) = self.partner_entries.read() {
            if let Some((at, provider)) = kept.get(key) {
                if at.elapsed() < PARTNER_ENTRY_TTL {
                    return Ok(Some(provider.clone()));
                }
            }
        }
        let Some(partner) = self.accounts.partner_by_provider_key(key).await? else {
            return Ok(None);
        };
        let provider = partner_entry(key, partner.name.as_deref().unwrap_or(key));
        if let Ok(mut kept) = self.partner_entries.write() {
            // Bounded by the number of registered partners: only found keys are kept.
            kept.insert(
                key.to_owned(),
                (std::time::Instant::now(), provider.clone()),
            );
        }
        Ok(Some(provider))
    }

    /// `providers(categories)`: the catalog and every registered partner, by key.
    pub async fn providers(
        &self,
        categories: Option<&[String]>,
    ) -> Result<Vec<Provider>, ConnectionError> {
        let mut all: Vec<Provider> = self.catalog.iter().cloned().collect();
        for partner in self.accounts.partners().await? {
            if let Some(key) = partner.provider_key.as_deref() {
                if self.catalog.get(key).is_none() {
                    all.push(partner_entry(key, partner.name.as_deref().unwrap_or(key)));
                }
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(categories) = categories {
            all.retain(|p| categories.contains(&p.category));
        }
        Ok(all)
    }

    async fn view(&self, connection: Connection) -> Result<ConnectionView, ConnectionError> {
        let provider = self
            .provider(&connection.provider_key)
            .await?
            .unwrap_or_else(|| Provider {
                key: connection.provider_key.clone(),
                name: connection.provider_key.clone(),
                category: connection.category.clone(),
                base_url: None,
                inputs: Vec::new(),
            });
        Ok(ConnectionView {
            connection,
            provider,
        })
    }

    /// `startProviderConnection`. The provider key is checked first, for every caller: the
    /// catalog is public, so an unknown key says nothing about anyone's workspaces.
    pub async fn start(
        &self,
        caller: &Caller,
        workspace_id: &str,
        provider_key: &str,
        inputs: Option<serde_json::Value>,
    ) -> Result<ConnectionView, ConnectionError> {
        let provider = self.provider(provider_key).await?.ok_or_else(|| {
            invalid(
                "providerKey",
                format!("`{provider_key}` is not a provider key this gateway knows (keys are case-sensitive); the `providers` query lists them"),
            )
        })?;
        let access = self.workspaces.reach(caller, workspace_id).await?;
        let account = caller.account();
        if account.account_type == AccountType::Partner
            && account.provider_key.as_deref() != Some(provider_key)
        {
            return Err(ConnectionError::Forbidden(format!(
                "A partner connects workspaces with its own provider key only: this account holds `{}`.",
                account.provider_key.as_deref().unwrap_or_default()
            )));
        }
        let inputs = match inputs {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(map)) => map,
            Some(_) => {
                return Err(invalid(
                    "inputs",
                    "inputs must be a JSON object, e.g. {\"apiKey\": \"…\", \"baseUrl\": \"https://…\"}",
                ))
            }
        };
        if serde_json::to_vec(&inputs).map_or(0, |v| v.len()) > MAX_INPUT_BYTES {
            return Err(invalid("inputs", "inputs are larger than 16 KiB"));
        }
        let id = ConnectionId::generate();
        let (settings, secrets) = split(&provider, inputs)?;
        let credentials = self.seal(&id, &settings, secrets);
        let now = Timestamp::now();
        let connection = Connection {
            id,
            workspace_id: access.workspace().id.clone(),
            provider_key: provider.key.clone(),
            category: provider.category.clone(),
            status: ConnectionStatus::Pending,
            display_name: None,
            settings,
            credentials,
            status_detail: None,
            last_verified_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_connection(&connection).await?;
        Ok(ConnectionView {
            connection,
            provider,
        })
    }

    /// Seals `secrets` bound to the connection and the base URL in `settings`; `None` for none.
    fn seal(
        &self,
        id: &ConnectionId,
        settings: &serde_json::Map<String, serde_json::Value>,
        secrets: serde_json::Map<String, serde_json::Value>,
    ) -> Option<String> {
        (!secrets.is_empty()).then(|| {
            let plaintext = serde_json::to_vec(&secrets).unwrap_or_default();
            let base_url = settings.get("baseUrl").and_then(|v| v.as_str());
            self.keys
                .seal(&plaintext, &credentials_binding(id, base_url))
        })
    }

    /// The connection with this id, if the caller reaches its workspace; `NotFound` otherwise,
    /// exactly as for a missing one.
    pub async fn reach(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Connection, WorkspaceAccess), ConnectionError> {
        let connection = self
            .store
            .connection_by_id(&ConnectionId::from_string(id))
            .await?
            .ok_or(ConnectionError::NotFound)?;
        let access = match self
            .workspaces
            .reach(caller, connection.workspace_id.as_str())
            .await
        {
            Ok(access) => access,
            Err(WorkspaceError::NotFound) => return Err(ConnectionError::NotFound),
            Err(other) => return Err(other.into()),
        };
        Ok((connection, access))
    }

    /// Connect a workspace to a provider in one step, as the connect page does: start a
    /// connection and collect it; or, with `retry` (a connection that failed), collect that one
    /// again with the corrected `inputs` rather than starting another. A retried id must be a
    /// connection of this workspace and of this provider; `NotFound` otherwise, as for a
    /// missing one. The same `start` and `collect` the API's two mutations run.
    pub async fn connect(
        &self,
        caller: &Caller,
        workspace: &WorkspaceAccess,
        provider_key: &str,
        inputs: serde_json::Value,
        retry: Option<&str>,
    ) -> Result<ConnectionView, ConnectionError> {
        match retry {
            Some(id) => {
                let (found, _) = self.reach(caller, id).await?;
                if found.workspace_id != workspace.workspace().id
                    || found.provider_key != provider_key
                {
                    return Err(ConnectionError::NotFound);
                }
                self.collect(caller, id, Some(inputs)).await
            }
            None => {
                let workspace_id = workspace.workspace().id.as_str();
                let started = self
                    .start(caller, workspace_id, provider_key, Some(inputs))
                    .await?;
                self.collect(caller, started.connection.id.as_str(), None)
                    .await
            }
        }
    }

    /// `collectProviderConnection`: merges `inputs` into the connection, then verifies the
    /// stored credentials with one live call. The mutation succeeds either way: the outcome is
    /// the connection's status (`active`, or `failed` with `statusDetail` saying why). Two
    /// collects of one connection on this node run one after the other.
    pub async fn collect(
        &self,
        caller: &Caller,
        id: &str,
        inputs: Option<serde_json::Value>,
    ) -> Result<ConnectionView, ConnectionError> {
        let (connection, _) = self.reach(caller, id).await?;
        // One collect at a time: in this process by a lock (so waiting costs nothing), across
        // nodes by a lease in the database (so a second node waits too).
        let turn = {
            let mut collecting = self.collecting.lock().unwrap_or_else(|p| p.into_inner());
            collecting.retain(|_, lock| Arc::strong_count(lock) > 1);
            collecting.entry(connection.id.clone()).or_default().clone()
        };
        let _turn = turn.lock().await;
        self.take_lease(&connection.id).await?;
        let outcome = self.collect_holding_lease(&connection.id, inputs).await;
        if let Err(err) = self.store.release_collect_lease(&connection.id).await {
            tracing::warn!(error = %err, connection = %connection.id, "could not release a collect lease; it lapses by itself");
        }
        outcome
    }

    /// Waits for the connection's collect lease: another node's collect holds it for at most
    /// [`COLLECT_LEASE`], and a dead node's lapses.
    async fn take_lease(&self, id: &ConnectionId) -> Result<(), ConnectionError> {
        let started = std::time::Instant::now();
        loop {
            let now = Timestamp::now();
            let until = Timestamp::from_millis(now.as_millis() + COLLECT_LEASE.as_millis() as i64);
            if self.store.take_collect_lease(id, now, until).await? {
                return Ok(());
            }
            if started.elapsed() > COLLECT_LEASE * 2 {
                return Err(ConnectionError::Conflict(
                    "Another collect of this connection is still running; try again in a minute."
                        .into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn collect_holding_lease(
        &self,
        id: &ConnectionId,
        inputs: Option<serde_json::Value>,
    ) -> Result<ConnectionView, ConnectionError> {
        // Read under the lease: an earlier collect may have changed it.
        let mut connection = self
            .store
            .connection_by_id(id)
            .await?
            .ok_or(ConnectionError::NotFound)?;
        if connection.status == ConnectionStatus::Disconnected {
            return Err(ConnectionError::Conflict(
                "This connection is disconnected and its credentials are erased; start a new one with startProviderConnection.".into(),
            ));
        }
        let provider = self.view(connection.clone()).await?.provider;
        let inputs = match inputs {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(map)) => map,
            Some(_) => return Err(invalid("inputs", "inputs must be a JSON object")),
        };
        if serde_json::to_vec(&inputs).map_or(0, |v| v.len()) > MAX_INPUT_BYTES {
            return Err(invalid("inputs", "inputs are larger than 16 KiB"));
        }
        let stored = self.secrets_of(&connection)?;
        let (new_settings, new_secrets) = split(&provider, inputs)?;
        let effective_origin = |settings: &serde_json::Map<String, serde_json::Value>| {
            settings
                .get("baseUrl")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .or(provider.base_url.clone())
                .map(|url| origin_of(&url).unwrap_or(url))
        };
        let was = effective_origin(&connection.settings);
        let mut settings = connection.settings.clone();
        settings.extend(new_settings);
        let now_at = effective_origin(&settings);
        let secrets = if was == now_at {
            let mut merged = stored;
            merged.extend(new_secrets);
            merged
        } else {
            // The base URL moves to another origin: the stored secrets stay behind, and every
            // one of them must be entered again for the new origin.
            let mut missing: Vec<&str> = stored
                .keys()
                .filter(|name| !new_secrets.contains_key(name.as_str()))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                missing.sort_unstable();
                return Err(invalid(
                    &format!("inputs.{}", missing[0]),
                    format!(
                        "The baseUrl moves this connection to {}, but its stored credentials were entered for {}; stored credentials go only where they were entered, so give {} again in the same call.",
                        now_at.as_deref().unwrap_or("no origin"),
                        was.as_deref().unwrap_or("no origin"),
                        missing
                            .iter()
                            .map(|name| format!("`{name}`"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                ));
            }
            new_secrets
        };
        connection.settings = settings;
        connection.credentials = self.seal(&connection.id, &connection.settings, secrets);
        let secrets = self.secrets_of(&connection)?;
        let text = |map: &serde_json::Map<String, serde_json::Value>, name: &str| {
            map.get(name).and_then(|v| v.as_str()).map(str::to_owned)
        };
        let base_url = text(&connection.settings, "baseUrl").or(provider.base_url.clone());
        let outcome = match &base_url {
            None => Err(PlatformFailure::Unreachable(
                "no base URL is known for this provider: collect again with inputs {\"baseUrl\": \"https://…\"}".into(),
            )),
            Some(base_url) => {
                self.platform
                    .verify(VerifyCall {
                        base_url,
                        api_key: text(&secrets, "apiKey").as_deref(),
                        security_token: text(&secrets, "securityToken").as_deref(),
                        workspace_id: connection.workspace_id.as_str(),
                        firm_reference: text(&connection.settings, "firmReferenceId").as_deref(),
                    })
                    .await
            }
        };
        let now = Timestamp::now();
        match outcome {
            Ok(firm) => {
                connection.status = ConnectionStatus::Active;
                connection.status_detail = None;
                connection.last_verified_at = Some(now);
                if connection.display_name.is_none() {
                    connection.display_name = firm.firm_name;
                }
            }
            Err(failure) => {
                connection.status = ConnectionStatus::Failed;
                connection.status_detail = Some(failure.to_string());
            }
        }
        connection.updated_at = now;
        self.store.update_connection(&connection).await?;
        Ok(ConnectionView {
            connection,
            provider,
        })
    }

    /// What a call to the connection's platform needs (for the worker: downloads with the
    /// connection's credentials). `None` when the connection is gone.
    pub async fn platform_access(
        &self,
        id: &ConnectionId,
    ) -> Result<Option<PlatformAccess>, ConnectionError> {
        let Some(connection) = self.store.connection_by_id(id).await? else {
            return Ok(None);
        };
        self.access_of(&connection).await.map(Some)
    }

    /// [`Self::platform_access`] of a connection already read.
    pub(crate) async fn access_of(
        &self,
        connection: &Connection,
    ) -> Result<PlatformAccess, ConnectionError> {
        let secrets = self.secrets_of(connection)?;
        let text = |map: &serde_json::Map<String, serde_json::Value>, name: &str| {
            map.get(name).and_then(|v| v.as_str()).map(str::to_owned)
        };
        let base_url = match text(&connection.settings, "baseUrl") {
            Some(url) => Some(url),
            None => self
                .provider(&connection.provider_key)
                .await?
                .and_then(|p| p.base_url),
        };
        Ok(PlatformAccess {
            base_url,
            api_key: text(&secrets, "apiKey"),
            security_token: text(&secrets, "securityToken"),
            workspace_id: connection.workspace_id.to_string(),
            firm_reference: text(&connection.settings, "firmReferenceId"),
        })
    }

    /// The connection's secrets, opened.
    fn secrets_of(
        &self,
        connection: &Connection,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ConnectionError> {
        let Some(sealed) = &connection.credentials else {
            return Ok(serde_json::Map::new());
        };
        let base_url = connection.settings.get("baseUrl").and_then(|v| v.as_str());
        let plaintext = open_bound(
            |sealed, bound_to| self.keys.open(sealed, bound_to),
            sealed,
            &connection.id,
            base_url,
        )
        .map_err(|err| ConnectionError::Store(StoreError::Backend(Box::new(err))))?;
        match serde_json::from_slice(&plaintext) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(ConnectionError::Store(StoreError::Backend(
                format!("connection {} has unreadable credentials", connection.id).into(),
            ))),
        }
    }

    /// `disconnectProviderConnection`: erases the credentials; the connection stays, listed as
    /// `disconnected`.
    pub async fn disconnect(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ConnectionView, ConnectionError> {
        let (mut connection, _) = self.reach(caller, id).await?;
        connection.status = ConnectionStatus::Disconnected;
        connection.credentials = None;
        connection.status_detail = None;
        connection.updated_at = Timestamp::now();
        self.store.update_connection(&connection).await?;
        self.view(connection).await
    }

    /// `Workspace.connections`.
    pub async fn list(
        &self,
        access: &WorkspaceAccess,
        filters: &ConnectionFilters,
        page: Page,
    ) -> Result<Vec<ConnectionView>, ConnectionError> {
        let connections = self
            .store
            .connections_of(&access.workspace().id, filters, page)
            .await?;
        // A page names few providers: each is looked up once, not once a row.
        let mut providers: HashMap<String, Provider> = HashMap::new();
        let mut views = Vec::with_capacity(connections.len());
        for connection in connections {
            let provider = match providers.get(&connection.provider_key) {
                Some(provider) => provider.clone(),
                None => {
                    let provider = self.view(connection.clone()).await?.provider;
                    providers.insert(connection.provider_key.clone(), provider.clone());
                    provider
                }
            };
            views.push(ConnectionView {
                connection,
                provider,
            });
        }
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_status() {
        assert_eq!(ConnectionStatus::Pending.action(), Some("collect"));
        assert_eq!(ConnectionStatus::Failed.action(), Some("reconnect"));
        assert_eq!(ConnectionStatus::Active.action(), None);
        assert_eq!(ConnectionStatus::Disconnected.action(), None);
        for status in ConnectionStatus::ALL {
            assert_eq!(ConnectionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ConnectionStatus::parse("Active"), None);
    }
}
