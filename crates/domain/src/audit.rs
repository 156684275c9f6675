//! The audit log: who did what, when, from where and with which key, recorded with the
//! change itself.
//!
//! Every service that changes state builds an [`AuditEvent`] and hands it to its storage port
//! with the change; the store writes both in one transaction, so there is no event without
//! the change and no change without the event. Uses of stored credentials (a verification
//! call, a pull, an upload) are events too, written before the credentials leave the
//! gateway.
//!
//! **Tamper evidence.** Events form hash chains, one per workspace and one ([`GLOBAL_CHAIN`])
//! for events outside any workspace. Each stored event keeps its canonical body (the JSON the
//! API shows), its number in the chain and the SHA-256 of `chain, seq, previous hash, body`
//! ([`link_hash`]). The store appends under a lock on the chain's head, so writers on many
//! nodes still form one chain. [`verify_chain`] walks a chain and names the first event that
//! does not match: a changed body, a changed column, a removed event (a gap in `seq`) or a
//! re-linked one. A retention sweep cuts a chain's oldest events and keeps the hash of the
//! last one it removed as the chain's checkpoint, so what is left still verifies.

use crate::{
    identity::Caller,
    ids::{AuditEventId, WorkspaceId},
    lists::{check_filter, parse_limit, parse_offset, InvalidPage, MAX_LIMIT},
    store::{StoreError, StoreResult},
    time::Timestamp,
    words::Word,
    workspaces::{Reach, Role, WorkspaceAccess},
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{collections::BTreeMap, sync::Arc};

/// The chain of events that belong to no workspace (accounts, keys, sign-ins, key rotation).
pub const GLOBAL_CHAIN: &str = "global";

/// The longest text any field of an event keeps (names, user agents, metadata values).
pub const MAX_TEXT: usize = 256;
/// The most metadata entries one event keeps.
pub const MAX_METADATA: usize = 16;

/// What happened: one documented list (README, "Audit log").
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
pub enum Action {
    #[strum(serialize = "account.created")]
    AccountCreated,
    #[strum(serialize = "api_key.created")]
    ApiKeyCreated,
    #[strum(serialize = "api_key.revoked")]
    ApiKeyRevoked,
    #[strum(serialize = "session.signed_in")]
    SignedIn,
    #[strum(serialize = "session.sign_in_failed")]
    SignInFailed,
    #[strum(serialize = "session.signed_out")]
    SignedOut,
    #[strum(serialize = "workspace.created")]
    WorkspaceCreated,
    #[strum(serialize = "member.added")]
    MemberAdded,
    #[strum(serialize = "member.removed")]
    MemberRemoved,
    #[strum(serialize = "connection.started")]
    ConnectionStarted,
    #[strum(serialize = "connection.collected")]
    ConnectionCollected,
    #[strum(serialize = "connection.disconnected")]
    ConnectionDisconnected,
    #[strum(serialize = "credentials.used")]
    CredentialsUsed,
    #[strum(serialize = "job.created")]
    JobCreated,
    #[strum(serialize = "job.works_added")]
    JobWorksAdded,
    #[strum(serialize = "job.artifacts_added")]
    JobArtifactsAdded,
    #[strum(serialize = "job.triggered")]
    JobTriggered,
    #[strum(serialize = "job.cancelled")]
    JobCancelled,
    #[strum(serialize = "job.completed")]
    JobCompleted,
    #[strum(serialize = "artifact.stored")]
    ArtifactStored,
    #[strum(serialize = "artifact.failed")]
    ArtifactFailed,
    #[strum(serialize = "upload.queued")]
    UploadQueued,
    #[strum(serialize = "upload.completed")]
    UploadCompleted,
    #[strum(serialize = "upload.failed")]
    UploadFailed,
    #[strum(serialize = "encryption_key.rotated")]
    EncryptionKeyRotated,
    #[strum(serialize = "encryption_key.retired")]
    EncryptionKeyRetired,
}

impl Word for Action {}

/// Who acted.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    /// A firm's staff member (customer account), by key or signed in.
    Account,
    /// A software partner's account.
    Partner,
    /// The operator, through the `taxbridge` command line.
    Operator,
    /// The gateway's own worker (downloads, uploads, completions).
    System,
}

impl Word for ActorType {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub id: String,
    pub name: String,
    /// The API key that acted, when one did (its id and display prefix, never its secret).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api_key_prefix: Option<String>,
}

impl Actor {
    /// The account behind a request, and its key when a key acted.
    pub fn of(caller: &Caller) -> Self {
        let account = caller.account();
        let kind = if account.account_type == crate::accounts::AccountType::Partner {
            ActorType::Partner
        } else {
            ActorType::Account
        };
        Actor {
            kind,
            id: account.id.to_string(),
            name: bounded(account.name.as_deref().unwrap_or(account.email.as_str())),
            api_key_id: caller.key_id().map(ToString::to_string),
            api_key_prefix: caller.key_prefix().map(ToOwned::to_owned),
        }
    }

    /// The operator at the command line (the OS user, when known).
    pub fn operator() -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        Actor {
            kind: ActorType::Operator,
            id: "cli".into(),
            name: bounded(&user),
            api_key_id: None,
            api_key_prefix: None,
        }
    }

    /// The gateway's worker.
    pub fn system() -> Self {
        Actor {
            kind: ActorType::System,
            id: "worker".into(),
            name: "Taxbridge worker".into(),
            api_key_id: None,
            api_key_prefix: None,
        }
    }
}

/// Who acts and from where: what a service that can be called from several doors (a
/// request, the command line, the worker) is given to record its events.
#[derive(Clone, Debug)]
pub struct Who {
    pub actor: Actor,
    pub context: AuditContext,
}

impl Who {
    pub fn caller(caller: &Caller) -> Self {
        Who {
            actor: Actor::of(caller),
            context: caller.context().clone(),
        }
    }

    pub fn operator() -> Self {
        Who {
            actor: Actor::operator(),
            context: AuditContext::default(),
        }
    }

    pub fn system() -> Self {
        Who {
            actor: Actor::system(),
            context: AuditContext::default(),
        }
    }

    pub fn event(&self, action: Action) -> AuditEvent {
        AuditEvent::new(action, self.actor.clone(), self.context.clone())
    }
}

/// What an event is about: a type (`connection`, `api_key`, …) and an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Target {
            kind: kind.to_owned(),
            id: bounded(&id.to_string()),
        }
    }
}

/// Where a request came from, as the HTTP layer saw it. Every field is bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditContext {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

impl AuditContext {
    pub fn new(
        client_address: Option<&str>,
        user_agent: Option<&str>,
        source_platform: Option<&str>,
        request_id: Option<&str>,
    ) -> Self {
        AuditContext {
            client_address: client_address.map(bounded),
            user_agent: user_agent.map(bounded),
            source_platform: source_platform.map(bounded),
            request_id: request_id.map(bounded),
        }
    }
}

/// One event, in the shape the API, the pages and the export show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub occurred_at: Timestamp,
    pub action: String,
    pub actor: Actor,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub workspace_id: Option<WorkspaceId>,
    pub context: AuditContext,
    /// Small facts about the change (a status, a count, a provider key): never a secret.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl AuditEvent {
    /// A new event, happening now.
    pub fn new(action: Action, actor: Actor, context: AuditContext) -> Self {
        AuditEvent {
            id: AuditEventId::generate(),
            occurred_at: Timestamp::now(),
            action: action.as_str().to_owned(),
            actor,
            targets: Vec::new(),
            workspace_id: None,
            context,
            metadata: BTreeMap::new(),
        }
    }

    /// An event of a request: the caller is the actor, the request's context the context.
    pub fn by(caller: &Caller, action: Action) -> Self {
        Self::new(action, Actor::of(caller), caller.context().clone())
    }

    /// An event of the worker.
    pub fn by_system(action: Action) -> Self {
        Self::new(action, Actor::system(), AuditContext::default())
    }

    /// An event of the operator's command line.
    pub fn by_operator(action: Action) -> Self {
        Self::new(action, Actor::operator(), AuditContext::default())
    }

    pub fn in_workspace(mut self, workspace: &WorkspaceId) -> Self {
        self.workspace_id = Some(workspace.clone());
        self
    }

    pub fn target(mut self, kind: &str, id: impl ToString) -> Self {
        self.targets.push(Target::new(kind, id));
        self
    }

    /// Adds one metadata entry; strings are cut to [`MAX_TEXT`], and entries past
    /// [`MAX_METADATA`] are dropped.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if self.metadata.len() < MAX_METADATA {
            let value = match value.into() {
                serde_json::Value::String(text) => serde_json::Value::String(bounded(&text)),
                other => other,
            };
            self.metadata.insert(key.to_owned(), value);
        }
        self
    }

    /// A copy with its own id: one event per item of a change that touches several.
    pub fn copy(&self) -> Self {
        AuditEvent {
            id: AuditEventId::generate(),
            ..self.clone()
        }
    }

    /// The chain this event belongs to: its workspace's, or the global one.
    pub fn chain(&self) -> String {
        match &self.workspace_id {
            Some(id) => id.to_string(),
            None => GLOBAL_CHAIN.to_owned(),
        }
    }

    /// The canonical body: the JSON the hash covers, stored verbatim.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// The hash that links one event to its chain.
pub fn link_hash(chain: &str, seq: i64, previous: &str, body: &str) -> String {
    let mut digest = Sha256::new();
    for part in [chain, &seq.to_string(), previous, body] {
        digest.update(part.as_bytes());
        digest.update([0u8]);
    }
    hex::encode(digest.finalize())
}

/// Cuts text to [`MAX_TEXT`] characters.
pub fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// An event as stored: its place in the chain and the columns lists filter on.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub chain: String,
    pub seq: i64,
    pub id: String,
    pub occurred_at: i64,
    pub action: String,
    pub actor_id: String,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    pub fn event(&self) -> StoreResult<AuditEvent> {
        serde_json::from_str(&self.body).map_err(|err| {
            StoreError::Backend(
                format!("audit event {} has an unreadable body: {err}", self.id).into(),
            )
        })
    }
}

/// A chain's head and the checkpoint a retention sweep left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    /// The last event a sweep removed (0 and empty when none was).
    pub base_seq: i64,
    pub base_hash: String,
}

/// Where a chain first fails to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    pub chain: String,
    /// The event that does not match, or the first event after a gap.
    pub event_id: Option<String>,
    pub seq: i64,
    pub reason: String,
}

/// Checks a chain's events in order against its checkpoint and head: the walk
/// `audit verify` does. `events` must be the chain's events by `seq`, as stored.
pub struct ChainCheck {
    chain: String,
    expected_seq: i64,
    previous: String,
    pub checked: u64,
}

impl ChainCheck {
    pub fn new(head: &ChainHead) -> Self {
        ChainCheck {
            chain: head.chain.clone(),
            expected_seq: head.base_seq + 1,
            previous: head.base_hash.clone(),
            checked: 0,
        }
    }

    /// The next stored event; the first mismatch ends the walk.
    pub fn next(&mut self, event: &StoredEvent) -> Result<(), Break> {
        let fail = |reason: String| Break {
            chain: self.chain.clone(),
            event_id: Some(event.id.clone()),
            seq: event.seq,
            reason,
        };
        if event.seq != self.expected_seq {
            return Err(fail(format!(
                "events {} to {} of the chain are missing (deleted?)",
                self.expected_seq,
                event.seq - 1
            )));
        }
        if event.prev_hash != self.previous {
            return Err(fail(
                "its previous hash does not match the event before it".into(),
            ));
        }
        if link_hash(&self.chain, event.seq, &event.prev_hash, &event.body) != event.hash {
            return Err(fail(
                "its stored body does not match its hash (changed?)".into(),
            ));
        }
        let parsed = event.event().map_err(|err| fail(err.to_string()))?;
        if parsed.id.as_str() != event.id
            || parsed.action != event.action
            || parsed.actor.id != event.actor_id
            || parsed.occurred_at.as_millis() != event.occurred_at
            || parsed.chain() != self.chain
        {
            return Err(fail(
                "its columns do not match its hashed body (changed?)".into(),
            ));
        }
        self.previous = event.hash.clone();
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// After the last event: the head must point at it.
    pub fn finish(&self, head: &ChainHead) -> Result<(), Break> {
        if head.seq != self.expected_seq - 1 || head.hash != self.previous {
            return Err(Break {
                chain: self.chain.clone(),
                event_id: None,
                seq: self.expected_seq,
                reason: format!(
                    "the head records event {} but the chain ends at event {} (the newest events were deleted?)",
                    head.seq,
                    self.expected_seq - 1
                ),
            });
        }
        Ok(())
    }
}

/// What a list of events is narrowed to. Every filter is optional; values within one filter
/// are alternatives, filters together must all hold.
#[derive(Clone, Debug, Default)]
pub struct AuditFilters {
    pub actions: Option<Vec<String>>,
    pub actor_ids: Option<Vec<String>>,
    pub target_ids: Option<Vec<String>>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl AuditFilters {
    /// Refuses unknown actions (naming the documented list) and oversized filters.
    pub fn check(&self) -> Result<(), InvalidPage> {
        check_filter("filters.actions", self.actions.as_deref())?;
        check_filter("filters.actorIds", self.actor_ids.as_deref())?;
        check_filter("filters.targetIds", self.target_ids.as_deref())?;
        for action in self.actions.iter().flatten() {
            if Action::parse(action).is_none() {
                return Err(InvalidPage {
                    field: "filters.actions",
                    message: format!(
                        "`{}` is not an audit action; use one of: {}",
                        bounded(action),
                        Action::ALL
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A page of events: newest first unless `oldest_first`.
#[derive(Clone, Copy, Debug)]
pub struct AuditPage {
    pub limit: u32,
    pub offset: u64,
    pub oldest_first: bool,
}

impl AuditPage {
    pub fn parse(
        limit: Option<i32>,
        offset: Option<i32>,
        sort: Option<(&str, bool)>,
    ) -> Result<Self, InvalidPage> {
        let (limit, offset) = (parse_limit(limit)?, parse_offset(offset)?);
        let oldest_first = match sort {
            None => false,
            Some(("occurredAt", descending)) => !descending,
            Some((other, _)) => {
                return Err(InvalidPage {
                    field: "sortBy.field",
                    message: format!(
                        "cannot sort by `{}`; audit events sort by occurredAt",
                        bounded(other)
                    ),
                })
            }
        };
        Ok(AuditPage {
            limit,
            offset,
            oldest_first,
        })
    }
}

/// Where events are kept. Changes record their events through their own ports, in their own
/// transactions; this port appends events that accompany no other write (a use of stored
/// credentials, a refused sign-in code) and reads the log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends events in one transaction.
    async fn append_events(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// Events of one chain matching `filters`, a page of them.
    async fn chain_events(
        &self,
        chain: &str,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// Events whose actor or a target is `account`, outside any workspace.
    async fn account_events(
        &self,
        account: &str,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// The newest `limit` events of any chain about any of `targets` (or done by them, for an
    /// account or an API key).
    async fn events_about(&self, targets: &[String], limit: u32) -> StoreResult<Vec<StoredEvent>>;
    /// Every chain's head, by chain.
    async fn chain_heads(&self) -> StoreResult<Vec<ChainHead>>;
    /// Up to `limit` events of a chain after `after_seq`, by seq.
    async fn chain_after(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// Up to `limit` events of every chain occurring at or after `since`, oldest first, after
    /// the event `after` (by id) when given: the export's walk.
    async fn events_since(
        &self,
        since: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// Removes events older than `before` from every chain, moving each chain's checkpoint to
    /// the last event removed; the number removed.
    async fn sweep_events(&self, before: Timestamp, batch: u32) -> StoreResult<u64>;
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "Only a workspace admin or the partner that created the workspace can read its audit log."
    )]
    Forbidden,
    #[error(transparent)]
    Invalid(#[from] InvalidPage),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `audit verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub chains: u64,
    pub events: u64,
    pub breaks: Vec<Break>,
}

/// Stored events as the API shows them.
fn read(rows: &[StoredEvent]) -> Result<Vec<AuditEvent>, AuditError> {
    Ok(rows
        .iter()
        .map(StoredEvent::event)
        .collect::<Result<_, _>>()?)
}

/// The audit log's reads, sweep and verification.
pub struct Audit {
    store: Arc<dyn AuditStore>,
}

/// How many events one read of a walk takes (verify, export).
pub const WALK_PAGE: u32 = 1000;

impl Audit {
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Audit { store }
    }

    /// Records events that accompany no other change (uses of stored credentials).
    pub async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.store.append_events(events).await
    }

    /// `Workspace.auditEvents`: a workspace admin's or its owning partner's view.
    pub async fn of_workspace(
        &self,
        access: &WorkspaceAccess,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        match access.reach() {
            Reach::OwningPartner | Reach::Member(Role::Admin) => {}
            Reach::Member(Role::User) => return Err(AuditError::Forbidden),
        }
        filters.check()?;
        let rows = self
            .store
            .chain_events(access.workspace().id.as_str(), filters, page)
            .await?;
        read(&rows)
    }

    /// The caller's own events outside any workspace (keys, sign-ins).
    pub async fn of_account(
        &self,
        caller: &Caller,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        filters.check()?;
        let rows = self
            .store
            .account_events(caller.account().id.as_str(), filters, page)
            .await?;
        read(&rows)
    }

    /// What the caller's own API keys did, newest first (Developer Settings). Keys of another
    /// account among `keys` are ignored.
    pub async fn of_keys(
        &self,
        caller: &Caller,
        keys: &[crate::api_keys::ApiKey],
        limit: u32,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        let own: Vec<String> = keys
            .iter()
            .filter(|key| key.account_id == caller.account().id)
            .map(|key| key.id.to_string())
            .collect();
        let rows = self.store.events_about(&own, limit.min(MAX_LIMIT)).await?;
        read(&rows)
    }

    /// The operator's view: any chain (`audit list`).
    pub async fn list(
        &self,
        chain: &str,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        filters.check()?;
        let rows = self.store.chain_events(chain, filters, page).await?;
        read(&rows)
    }

    pub async fn heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.store.chain_heads().await
    }

    /// Walks every chain from its checkpoint to its head.
    pub async fn verify(&self) -> Result<Verification, StoreError> {
        let mut found = Verification::default();
        for head in self.store.chain_heads().await? {
            found.chains += 1;
            let mut check = ChainCheck::new(&head);
            let mut after = head.base_seq;
            let mut broken = None;
            'walk: loop {
                let page = self
                    .store
                    .chain_after(&head.chain, after, WALK_PAGE)
                    .await?;
                for event in &page {
                    if let Err(at) = check.next(event) {
                        broken = Some(at);
                        break 'walk;
                    }
                    after = event.seq;
                }
                if page.len() < WALK_PAGE as usize {
                    break;
                }
            }
            found.events += check.checked;
            if let Some(at) = broken.or_else(|| check.finish(&head).err()) {
                found.breaks.push(at);
            }
        }
        Ok(found)
    }

    /// One page of the export's walk.
    pub async fn export_page(
        &self,
        since: Timestamp,
        after: Option<&str>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_since(since, after, WALK_PAGE).await
    }

    /// Removes events older than `days` days, keeping every chain verifiable.
    pub async fn sweep(&self, days: u32) -> Result<u64, StoreError> {
        let before = Timestamp::now().plus_days(-i64::from(days));
        let mut removed = 0;
        loop {
            let n = self.store.sweep_events(before, WALK_PAGE).await?;
            removed += n;
            if n == 0 {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(chain: &str, seq: i64, previous: &str, event: &AuditEvent) -> StoredEvent {
        let body = event.body();
        StoredEvent {
            chain: chain.into(),
            seq,
            id: event.id.to_string(),
            occurred_at: event.occurred_at.as_millis(),
            action: event.action.clone(),
            actor_id: event.actor.id.clone(),
            hash: link_hash(chain, seq, previous, &body),
            prev_hash: previous.into(),
            body,
        }
    }

    fn chain_of(n: usize) -> (ChainHead, Vec<StoredEvent>) {
        let mut events = Vec::new();
        let mut previous = String::new();
        for seq in 1..=n as i64 {
            let event = AuditEvent::by_system(Action::ArtifactStored).target("artifact", seq);
            let row = stored(GLOBAL_CHAIN, seq, &previous, &event);
            previous = row.hash.clone();
            events.push(row);
        }
        let head = ChainHead {
            chain: GLOBAL_CHAIN.into(),
            seq: n as i64,
            hash: previous,
            base_seq: 0,
            base_hash: String::new(),
        };
        (head, events)
    }

    fn walk(head: &ChainHead, events: &[StoredEvent]) -> Result<u64, Break> {
        let mut check = ChainCheck::new(head);
        for event in events {
            check.next(event)?;
        }
        check.finish(head)?;
        Ok(check.checked)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (head, events) = chain_of(5);
        assert_eq!(walk(&head, &events), Ok(5));
    }

    #[test]
    fn a_changed_body_is_named() {
        let (head, mut events) = chain_of(5);
        events[2].body = events[2].body.replace("artifact.stored", "artifact.failed");
        let at = walk(&head, &events).expect_err("a break");
        assert_eq!(at.seq, 3);
        assert!(
            at.reason.contains("does not match its hash"),
            "{}",
            at.reason
        );
    }

    #[test]
    fn a_changed_column_is_named() {
        let (head, mut events) = chain_of(5);
        events[1].actor_id = "acc_someone_else".into();
        let at = walk(&head, &events).expect_err("a break");
        assert_eq!(
            (at.seq, at.event_id.as_deref()),
            (2, Some(events[1].id.as_str()))
        );
        assert!(at.reason.contains("columns"), "{}", at.reason);
    }

    #[test]
    fn a_deleted_event_is_a_gap() {
        let (head, mut events) = chain_of(5);
        events.remove(2);
        let at = walk(&head, &events).expect_err("a break");
        assert_eq!(at.seq, 4);
        assert!(at.reason.contains("events 3 to 3"), "{}", at.reason);
    }

    #[test]
    fn deleted_newest_events_are_named_by_the_head() {
        let (head, mut events) = chain_of(5);
        events.truncate(3);
        let at = walk(&head, &events).expect_err("a break");
        assert!(at.reason.contains("head records event 5"), "{}", at.reason);
    }

    #[test]
    fn a_rehashed_event_breaks_the_next_link() {
        let (head, mut events) = chain_of(4);
        let mut forged = events[1].event().expect("readable");
        forged.action = "api_key.created".into();
        events[1] = stored(GLOBAL_CHAIN, 2, &events[0].hash.clone(), &forged);
        let at = walk(&head, &events).expect_err("a break");
        assert_eq!(at.seq, 3);
    }

    #[test]
    fn a_checkpoint_lets_a_swept_chain_verify() {
        let (mut head, events) = chain_of(6);
        head.base_seq = 2;
        head.base_hash = events[1].hash.clone();
        assert_eq!(walk(&head, &events[2..]), Ok(4));
    }

    #[test]
    fn metadata_and_text_are_bounded() {
        let mut event = AuditEvent::by_system(Action::JobCreated);
        for i in 0..40 {
            event = event.with(&format!("k{i}"), "x".repeat(10_000));
        }
        assert_eq!(event.metadata.len(), MAX_METADATA);
        assert!(event.body().len() < 8 * 1024);
        assert_eq!(bounded(&"é".repeat(1000)).chars().count(), MAX_TEXT);
    }

    #[test]
    fn unknown_actions_are_refused_naming_the_list() {
        let filters = AuditFilters {
            actions: Some(vec!["api_key.stolen".into()]),
            ..Default::default()
        };
        let err = filters.check().expect_err("refused");
        assert_eq!(err.field, "filters.actions");
        assert!(err.message.contains("connection.collected"));
    }
}
