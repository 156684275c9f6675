//! Providers and provider connections: the partner guide's step 5 (`startProviderConnection`),
//! `providers`, `disconnectProviderConnection` and `Workspace.connections`. Every resolver that
//! takes a workspace or connection id goes through a `reach` first.

use super::{
    caller,
    lists::{page, SortBy},
    plain_list::{PlainList, PlainObject},
    services, Date,
};
use crate::error::ApiError;
use async_graphql::{Context, InputObject, Json, Object, SimpleObject, ID};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    connections::{ConnectionFilters as DomainFilters, ConnectionStatus, ConnectionView},
    ids::ConnectionId,
    lists::check_filter,
    providers::{self, CATEGORIES},
    workspaces::WorkspaceAccess,
};

#[derive(SimpleObject)]
pub struct Provider {
    /// The provider's key, e.g. `canopy` or `drake`; case-sensitive.
    key: String,
    name: String,
    /// `practice_management`, `document_management` or `tax_software`.
    category: String,
}

impl From<providers::Provider> for Provider {
    fn from(p: providers::Provider) -> Self {
        Self {
            key: p.key,
            name: p.name,
            category: p.category,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProviderConnection {
    id: ID,
    workspace_id: ID,
    provider_key: String,
    /// `pending`, `active`, `failed` or `disconnected`.
    status: String,
    /// The next step: `collect` while pending, `reconnect` when failed, null otherwise.
    action: Option<String>,
    display_name: Option<String>,
    /// The non-secret inputs (e.g. baseUrl, firmReferenceId). Secrets are never returned.
    settings: Option<Json<serde_json::Value>>,
    /// Why the last verification failed, in words a firm's staff can act on.
    status_detail: Option<String>,
    last_verified_at: Option<Date>,
    provider: Provider,
    created_at: Date,
    updated_at: Date,
}

impl From<ConnectionView> for ProviderConnection {
    fn from(view: ConnectionView) -> Self {
        let c = view.connection;
        Self {
            id: ID(c.id.to_string()),
            workspace_id: ID(c.workspace_id.to_string()),
            provider_key: c.provider_key,
            status: c.status.as_str().to_owned(),
            action: c.status.action().map(str::to_owned),
            display_name: c.display_name,
            settings: Some(Json(serde_json::Value::Object(c.settings))),
            status_detail: c.status_detail,
            last_verified_at: c.last_verified_at.map(Into::into),
            provider: view.provider.into(),
            created_at: c.created_at.into(),
            updated_at: c.updated_at.into(),
        }
    }
}

#[async_graphql::ComplexObject]
impl ProviderConnection {
    /// Clients listed live from the provider's platform; `options` become query parameters (`limit` at most 500), and `{id}` reads one client. Null, with an UPSTREAM_ERROR, when the platform fails.
    async fn clients(
        &self,
        ctx: &Context<'_>,
        options: Option<Json<serde_json::Value>>,
    ) -> Result<Option<super::pulls::ClientPage>, ApiError> {
        super::pulls::clients_of(ctx, &self.id, options).await
    }

    /// Works imported through this connection, across all its jobs.
    async fn job_works(
        &self,
        ctx: &Context<'_>,
        filters: Option<super::imports::JobWorkFilters>,
        sort_by: Option<SortBy>,
        offset: Option<i32>,
        limit: Option<i32>,
    ) -> Result<Vec<super::imports::JobWork>, ApiError> {
        super::imports::works_of(ctx, &self.id, filters, sort_by, offset, limit).await
    }

    /// Import batches of this connection.
    async fn connection_jobs(
        &self,
        ctx: &Context<'_>,
        filters: Option<super::imports::ConnectionJobFilters>,
        sort_by: Option<SortBy>,
        offset: Option<i32>,
        limit: Option<i32>,
    ) -> Result<Vec<super::imports::ConnectionJob>, ApiError> {
        super::imports::jobs_of(ctx, &self.id, filters, sort_by, offset, limit).await
    }

    /// Files queued for upload to the provider with uploadConnectionFile, newest first.
    async fn uploads(
        &self,
        ctx: &Context<'_>,
        offset: Option<i32>,
        limit: Option<i32>,
    ) -> Result<Vec<super::uploads::ConnectionUpload>, ApiError> {
        super::uploads::of_connection(ctx, &self.id, offset, limit).await
    }
}

/// `Workspace.connections`, served as `[ProviderConnection!]!`.
pub type ConnectionPage = PlainList<ProviderConnection>;

#[derive(InputObject, Default)]
pub struct ConnectionFilters {
    pub ids: Option<Vec<ID>>,
    pub statuses: Option<Vec<String>>,
    pub provider_keys: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
}

fn known_categories(field: &str, categories: &[String]) -> Result<(), ApiError> {
    match categories
        .iter()
        .find(|c| !CATEGORIES.contains(&c.as_str()))
    {
        Some(unknown) => Err(ApiError::bad_input(
            field,
            format!(
                "`{unknown}` is not a provider category; use {}",
                CATEGORIES.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

impl ConnectionFilters {
    fn into_domain(self) -> Result<DomainFilters, ApiError> {
        check_filter("filters.ids", self.ids.as_deref())?;
        check_filter("filters.statuses", self.statuses.as_deref())?;
        check_filter("filters.providerKeys", self.provider_keys.as_deref())?;
        check_filter("filters.categories", self.categories.as_deref())?;
        if let Some(categories) = &self.categories {
            known_categories("filters.categories", categories)?;
        }
        let statuses = self
            .statuses
            .map(|statuses| {
                statuses
                    .iter()
                    .map(|s| {
                        ConnectionStatus::parse(s).ok_or_else(|| {
                            ApiError::bad_input(
                                "filters.statuses",
                                format!("`{s}` is not a connection status; use pending, active, failed or disconnected"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(DomainFilters {
            ids: self.ids.map(|ids| {
                ids.into_iter()
                    .map(|id| ConnectionId::from_string(id.0))
                    .collect()
            }),
            statuses,
            provider_keys: self.provider_keys,
            categories: self.categories,
        })
    }
}

/// `Workspace.connections`, for a workspace the caller reaches.
pub async fn of_workspace(
    ctx: &Context<'_>,
    access: &WorkspaceAccess,
    filters: Option<ConnectionFilters>,
    limit: Option<i32>,
    offset: Option<i32>,
    sort_by: Option<SortBy>,
) -> Result<ConnectionPage, ApiError> {
    let page = page(limit, offset, sort_by.as_ref(), "displayName")?;
    let filters = filters.unwrap_or_default().into_domain()?;
    let views = services(ctx)
        .connections
        .list(access, &filters, page)
        .await?;
    Ok(PlainList(views.into_iter().map(Into::into).collect()))
}

#[derive(Default)]
pub struct ConnectionQuery;

#[Object]
impl ConnectionQuery {
    /// Providers that a workspace can connect to, optionally narrowed to some categories.
    async fn providers(
        &self,
        ctx: &Context<'_>,
        categories: Option<Vec<String>>,
    ) -> Result<Vec<Provider>, ApiError> {
        caller(ctx).await?;
        if let Some(categories) = &categories {
            known_categories("categories", categories)?;
        }
        let providers = services(ctx)
            .connections
            .providers(categories.as_deref())
            .await?;
        Ok(providers.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct ConnectionMutation;

#[Object]
impl ConnectionMutation {
    /// Create a connection in status `pending`, action `collect`; credentials in `inputs` are stored encrypted.
    async fn start_provider_connection(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        provider_key: String,
        inputs: Option<Json<serde_json::Value>>,
    ) -> Result<PlainObject<ProviderConnection>, ApiError> {
        let caller = caller(ctx).await?;
        let view = services(ctx)
            .connections
            .start(caller, &workspace_id, &provider_key, inputs.map(|j| j.0))
            .await?;
        Ok(PlainObject(view.into()))
    }

    /// Verify the stored credentials with one live call to the provider; `active` on success, `failed` otherwise.
    async fn collect_provider_connection(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
        inputs: Option<Json<serde_json::Value>>,
    ) -> Result<PlainObject<ProviderConnection>, ApiError> {
        let caller = caller(ctx).await?;
        let view = services(ctx)
            .connections
            .collect(caller, &connection_id, inputs.map(|j| j.0))
            .await?;
        Ok(PlainObject(view.into()))
    }

    /// Stop using a connection and erase its credentials; status becomes `disconnected`.
    async fn disconnect_provider_connection(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
    ) -> Result<PlainObject<ProviderConnection>, ApiError> {
        let caller = caller(ctx).await?;
        let view = services(ctx)
            .connections
            .disconnect(caller, &connection_id)
            .await?;
        Ok(PlainObject(view.into()))
    }
}
