//! The pull pattern: `ProviderConnection.clients(options)` and `ConnectionClient.files(options)`,
//! read live from the provider's platform (see `taxbridge_domain::pulls`).
//!
//! Both fields are nullable: a platform that fails nulls only that field, with an
//! `UPSTREAM_ERROR` saying why, and the rest of the answer stands. async-graphql resolves a
//! list's items concurrently; the pulls of one request share [`PULL_CONCURRENCY`] slots, so a
//! query over many connections or clients is neither serial nor a flood on one platform, and
//! [`MAX_PULLS`] bounds how many one request may make. Together they read at most
//! `Services::pull_budget_bytes` from platforms ([`PullBudget`]).

use super::{caller, plain_list::PlainList, request, services, Date};
use crate::error::ApiError;
use async_graphql::{ComplexObject, Context, Json, SimpleObject};
use std::{future::Future, sync::Arc};
use taxbridge_domain::{
    audit::Who,
    ids::ConnectionId,
    platform::{PlatformClient, PlatformFile, PullBudget, Puller},
    pulls::PullQuery,
};

/// Calls to platforms one request may have in flight.
pub const PULL_CONCURRENCY: usize = 8;
/// Calls to platforms one request may make: a full page of clients with the files of each.
pub const MAX_PULLS: u32 = 1 + 500;

/// The byte budget the request's pulls share.
fn budget<'a>(ctx: &Context<'a>) -> &'a PullBudget {
    request(ctx)
        .pull_budget
        .get_or_init(|| PullBudget::new(services(ctx).pull_budget_bytes))
}

/// Runs one call to a platform within the request's slots and budget.
async fn pull<T>(
    ctx: &Context<'_>,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let request = request(ctx);
    let made = request
        .pulls_made
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if made >= MAX_PULLS {
        return Err(ApiError::bad_input(
            "options",
            format!("one request may pull from platforms at most {MAX_PULLS} times; ask for fewer clients (options.limit) and page with options.offset"),
        ));
    }
    let _slot = request
        .pulls
        .acquire()
        .await
        .map_err(|_| ApiError::Upstream("the request is ending".into()))?;
    call.await
}

/// `ProviderConnection.clients(options)`, for a connection the caller reached.
pub async fn clients_of(
    ctx: &Context<'_>,
    connection_id: &str,
    options: Option<Json<serde_json::Value>>,
) -> Result<Option<ClientPage>, ApiError> {
    let query = PullQuery::parse(options.as_ref().map(|j| &j.0), true)?;
    let connections = &services(ctx).connections;
    let puller = Arc::new(
        connections
            .puller(
                &ConnectionId::from_string(connection_id),
                &Who::caller(caller(ctx).await?),
            )
            .await?,
    );
    let clients = pull(ctx, async {
        Ok(connections
            .pull_clients(&puller, &query, budget(ctx))
            .await?)
    })
    .await?;
    Ok(Some(PlainList(
        clients
            .into_iter()
            .map(|client| ConnectionClient::new(client, puller.clone()))
            .collect(),
    )))
}

/// `clients`, served as `[ConnectionClient!]`: a page of up to 500 selecting only leaves is
/// resolved without a future per field (see `plain_list`); one that selects `files` goes
/// through async-graphql's resolvers.
pub type ClientPage = PlainList<ConnectionClient>;

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ConnectionClient {
    /// The provider platform's id.
    id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    #[graphql(name = "type")]
    kind: Option<String>,
    last_modified: Option<Date>,
    #[graphql(skip)]
    puller: Arc<Puller>,
}

impl ConnectionClient {
    fn new(client: PlatformClient, puller: Arc<Puller>) -> Self {
        Self {
            id: client.id,
            name: client.name,
            email: client.email,
            phone: client.phone,
            kind: client.kind,
            last_modified: client.last_modified.map(Into::into),
            puller,
        }
    }
}

#[ComplexObject]
impl ConnectionClient {
    /// The client's files on the provider's platform; `options` become query parameters. Null, with an UPSTREAM_ERROR, when the platform fails.
    async fn files(
        &self,
        ctx: &Context<'_>,
        options: Option<Json<serde_json::Value>>,
    ) -> Result<Option<Vec<ConnectionFile>>, ApiError> {
        let query = PullQuery::parse(options.as_ref().map(|j| &j.0), false)?;
        let files = pull(ctx, async {
            Ok(services(ctx)
                .connections
                .pull_files(&self.puller, &self.id, &query, budget(ctx))
                .await?)
        })
        .await?;
        Ok(Some(files.into_iter().map(Into::into).collect()))
    }
}

#[derive(SimpleObject)]
pub struct ConnectionFile {
    id: String,
    file_name: String,
    /// Bytes.
    file_size: Option<i64>,
    mime_type: Option<String>,
    download_url: Option<String>,
    date_created: Option<Date>,
}

impl From<PlatformFile> for ConnectionFile {
    fn from(file: PlatformFile) -> Self {
        Self {
            id: file.id,
            file_name: file.file_name,
            file_size: file.file_size,
            mime_type: file.mime_type,
            download_url: file.download_url,
            date_created: file.date_created.map(Into::into),
        }
    }
}
