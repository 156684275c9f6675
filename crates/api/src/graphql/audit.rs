//! The audit log as GraphQL shows it (ours): `Workspace.auditEvents` for a workspace's admins
//! and its owning partner, and `me.auditEvents` for an account's own events outside any
//! workspace (its keys, its sign-ins).

use super::{lists::SortBy, Date};
use crate::error::ApiError;
use async_graphql::{InputObject, Json, SimpleObject, ID};
use taxbridge_domain::{
    audit::{self as domain, AuditFilters, AuditPage},
    time::Timestamp,
};

/// One recorded change or use of stored credentials.
#[derive(SimpleObject)]
pub struct AuditEvent {
    id: ID,
    occurred_at: Date,
    /// What happened, e.g. `connection.collected`, `api_key.revoked`, `credentials.used`; the
    /// README's "Audit log" section lists every action.
    action: String,
    actor: AuditActor,
    /// What the event is about, e.g. the connection and the job.
    targets: Vec<AuditTarget>,
    /// The workspace the event belongs to; null for events outside any workspace.
    workspace_id: Option<ID>,
    context: AuditEventContext,
    /// Small facts about the change (a status, a count, a provider key); never a secret.
    metadata: Json<serde_json::Value>,
}

/// Who acted.
#[derive(SimpleObject)]
pub struct AuditActor {
    /// `account` (a firm's staff member), `partner`, `operator` (the command line) or `system`
    /// (the gateway's worker).
    #[graphql(name = "type")]
    kind: String,
    id: String,
    name: String,
    /// The API key that acted, when a key did.
    api_key_id: Option<String>,
    /// The first characters of that key, as Developer Settings shows them.
    api_key_prefix: Option<String>,
}

/// A thing an event is about.
#[derive(SimpleObject)]
pub struct AuditTarget {
    /// `workspace`, `account`, `api_key`, `connection`, `connection_job`, `job_work`,
    /// `artifact` or `upload`.
    #[graphql(name = "type")]
    kind: String,
    id: String,
}

/// Where the request behind an event came from; empty for the worker and the command line.
#[derive(SimpleObject)]
pub struct AuditEventContext {
    client_address: Option<String>,
    user_agent: Option<String>,
    /// The request's `source-platform` header.
    source_platform: Option<String>,
    request_id: Option<String>,
}

impl From<domain::AuditEvent> for AuditEvent {
    fn from(e: domain::AuditEvent) -> Self {
        AuditEvent {
            id: ID(e.id.to_string()),
            occurred_at: e.occurred_at.into(),
            action: e.action,
            actor: AuditActor {
                kind: <&str>::from(e.actor.kind).to_owned(),
                id: e.actor.id,
                name: e.actor.name,
                api_key_id: e.actor.api_key_id,
                api_key_prefix: e.actor.api_key_prefix,
            },
            targets: e
                .targets
                .into_iter()
                .map(|t| AuditTarget {
                    kind: t.kind,
                    id: t.id,
                })
                .collect(),
            workspace_id: e.workspace_id.map(|id| ID(id.to_string())),
            context: AuditEventContext {
                client_address: e.context.client_address,
                user_agent: e.context.user_agent,
                source_platform: e.context.source_platform,
                request_id: e.context.request_id,
            },
            metadata: Json(serde_json::Value::Object(e.metadata.into_iter().collect())),
        }
    }
}

/// Narrows a list of audit events; every filter is optional, all given must hold.
#[derive(InputObject, Default)]
pub struct AuditEventFilters {
    /// Only these actions, e.g. `["connection.collected", "credentials.used"]`.
    actions: Option<Vec<String>>,
    /// Only events of these actors (account ids, `cli`, `worker`).
    actor_ids: Option<Vec<String>>,
    /// Only events about these things (connection, job, key, account … ids).
    target_ids: Option<Vec<String>>,
    /// From this instant on (inclusive).
    since: Option<Date>,
    /// Before this instant.
    until: Option<Date>,
}

/// The domain's filters and page from a list's arguments: newest first unless
/// `sortBy: {field: "occurredAt", order: ASC}`.
pub fn arguments(
    filters: Option<AuditEventFilters>,
    limit: Option<i32>,
    offset: Option<i32>,
    sort_by: Option<SortBy>,
) -> Result<(AuditFilters, AuditPage), ApiError> {
    let f = filters.unwrap_or_default();
    let filters = AuditFilters {
        actions: f.actions,
        actor_ids: f.actor_ids,
        target_ids: f.target_ids,
        since: f.since.map(|d| d.0),
        until: f.until.map(|d: Date| -> Timestamp { d.0 }),
    };
    let sort = sort_by
        .as_ref()
        .map(|s| (s.field.as_str(), s.order == super::lists::SortByOrder::Desc));
    Ok((filters, AuditPage::parse(limit, offset, sort)?))
}
