//! `Connections`, the one door to provider connections: start, reach, list and disconnect.
//! Verifying them is in [`super::collect`].

use super::{credentials::*, model::*, port::ConnectionStore, MAX_INPUT_BYTES};
use crate::words::Word;
use crate::{
    accounts::{AccountStore, AccountType},
    audit::{Action, AuditEvent, AuditStore},
    crypto::Keys,
    identity::Caller,
    ids::ConnectionId,
    lists::Page,
    platform::PartnerPlatform,
    providers::{partner_entry, Catalog, Provider},
    time::Timestamp,
    workspaces::{WorkspaceAccess, WorkspaceError, Workspaces},
};
use std::{collections::HashMap, sync::Arc};

pub struct Connections {
    pub(crate) store: Arc<dyn ConnectionStore>,
    /// Uses of stored credentials are recorded here, before each use.
    pub(super) audit: Arc<dyn AuditStore>,
    pub(super) accounts: Arc<dyn AccountStore>,
    pub(super) workspaces: Arc<Workspaces>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) keys: Arc<Keys>,
    pub(crate) platform: Arc<dyn PartnerPlatform>,
    /// One collect at a time per connection on this node.
    pub(super) collecting: std::sync::Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
    /// Uses of credentials recorded for a job's downloads on this node (see
    /// [`Connections::platform_access`]).
    pub(super) recorded_uses: crate::ttl_map::TtlMap<String, ()>,
    /// Registered partners' catalog entries as last read, by provider key, with when.
    pub(super) partner_entries: std::sync::RwLock<HashMap<String, (std::time::Instant, Provider)>>,
}

/// How long a partner's catalog entry (its name) is served from memory. Every connection a
/// page lists and every start names a provider; for a partner's key that was a database
/// read each. Only found entries are kept, so a newly registered partner is known at once;
/// a rename shows within this time. Access is never decided by the entry.
const PARTNER_ENTRY_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Connections {
    pub fn new<S: ConnectionStore + AccountStore + AuditStore>(
        store: Arc<S>,
        workspaces: Arc<Workspaces>,
        catalog: Arc<Catalog>,
        keys: Arc<Keys>,
        platform: Arc<dyn PartnerPlatform>,
    ) -> Self {
        Self {
            store: store.clone(),
            audit: store.clone(),
            accounts: store,
            workspaces,
            catalog,
            keys,
            platform,
            collecting: std::sync::Mutex::default(),
            recorded_uses: crate::ttl_map::TtlMap::new(
                std::time::Duration::from_secs(3600),
                100_000,
            ),
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

    pub(super) async fn view(
        &self,
        connection: Connection,
    ) -> Result<ConnectionView, ConnectionError> {
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
        let event = AuditEvent::by(caller, Action::ConnectionStarted)
            .in_workspace(&connection.workspace_id)
            .target("connection", &connection.id)
            .with("providerKey", connection.provider_key.as_str());
        self.store.insert_connection(&connection, &event).await?;
        Ok(ConnectionView {
            connection,
            provider,
        })
    }

    /// Seals `secrets` bound to the connection and the base URL in `settings`; `None` for none.
    pub(super) fn seal(
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

    /// `disconnectProviderConnection`: erases the credentials; the connection stays, listed as
    /// `disconnected`.
    pub async fn disconnect(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ConnectionView, ConnectionError> {
        let (mut connection, _) = self.reach(caller, id).await?;
        let event = AuditEvent::by(caller, Action::ConnectionDisconnected)
            .in_workspace(&connection.workspace_id)
            .target("connection", &connection.id)
            .with("previousStatus", connection.status.as_str());
        connection.status = ConnectionStatus::Disconnected;
        connection.credentials = None;
        connection.status_detail = None;
        connection.updated_at = Timestamp::now();
        self.store.update_connection(&connection, &[event]).await?;
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
