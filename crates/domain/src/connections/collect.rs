//! Verifying a connection with one live call (`collectProviderConnection`), the connect page's
//! start-or-retry step, and opening a connection's way into its platform (for the worker's
//! downloads and the pulls).

use super::{credentials::*, model::*, service::Connections, COLLECT_LEASE, MAX_INPUT_BYTES};
use crate::{
    audit::{Action, Who},
    identity::Caller,
    ids::ConnectionId,
    platform::{PlatformAccess, PlatformFailure, VerifyCall},
    store::StoreError,
    time::Timestamp,
    words::Word,
    workspaces::WorkspaceAccess,
};
use std::sync::Arc;

impl Connections {
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
        let outcome = self
            .collect_holding_lease(&connection.id, inputs, &Who::caller(caller))
            .await;
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
        who: &Who,
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
                if !secrets.is_empty() {
                    self.used_credentials(&connection, who, "verify", None)
                        .await?;
                }
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
        let event = who
            .event(Action::ConnectionCollected)
            .in_workspace(&connection.workspace_id)
            .target("connection", &connection.id)
            .with("status", connection.status.as_str());
        self.store.update_connection(&connection, &[event]).await?;
        Ok(ConnectionView {
            connection,
            provider,
        })
    }

    /// What a call to the connection's platform needs (for the worker: downloads with the
    /// connection's credentials). `None` when the connection is gone. `use_of` says what the
    /// credentials are opened for (recorded as `credentials.used` when there are any), or
    /// `None` when this use was recorded already.
    pub async fn platform_access(
        &self,
        id: &ConnectionId,
        use_of: Option<(&Who, &str, Option<&str>)>,
    ) -> Result<Option<PlatformAccess>, ConnectionError> {
        let Some(connection) = self.store.connection_by_id(id).await? else {
            return Ok(None);
        };
        if let (Some((who, purpose, job)), Some(_)) = (use_of, &connection.credentials) {
            // A job's downloads are one use: recorded by each node once an hour at most,
            // rather than once per file.
            let key = format!("{} {purpose} {}", connection.id, job.unwrap_or_default());
            if job.is_none() || self.recorded_uses.claim(key.clone(), ()) {
                if let Err(err) = self.used_credentials(&connection, who, purpose, job).await {
                    self.recorded_uses.invalidate(&key);
                    return Err(err);
                }
            }
        }
        self.access_of(&connection).await.map(Some)
    }

    /// Records a use of the connection's stored credentials, before they leave the gateway.
    pub(crate) async fn used_credentials(
        &self,
        connection: &Connection,
        who: &Who,
        purpose: &str,
        job: Option<&str>,
    ) -> Result<(), ConnectionError> {
        let mut event = who
            .event(Action::CredentialsUsed)
            .in_workspace(&connection.workspace_id)
            .target("connection", &connection.id)
            .with("purpose", purpose)
            .with("providerKey", connection.provider_key.as_str());
        if let Some(job) = job {
            event = event.target("connection_job", job);
        }
        self.audit.append_events(&[event]).await?;
        Ok(())
    }

    /// The connection's secrets, opened.
    pub(super) fn secrets_of(
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
}
