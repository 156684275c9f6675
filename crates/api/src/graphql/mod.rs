//! The GraphQL schema served on `/graphql`. Each feature has its own module with its root
//! fields; they are merged into [`Query`] and [`Mutation`] here. Resolvers stay thin: find
//! the caller, call one domain service, map the result into a GraphQL type of its own.

mod audit;
mod connections;
mod identity;
mod imports;
pub(crate) mod lists;
mod plain_list;
mod pulls;
mod scalars;
mod uploads;
mod workspaces;

use crate::{error::ApiError, rate_limits::RateLimits, Services};
use async_graphql::{Context, EmptySubscription, MergedObject, Schema};
use std::sync::{Arc, OnceLock};
use taxbridge_domain::{
    identity::{AuthError, Caller},
    ids::ApiKeyId,
};
use tokio::sync::OnceCell;

pub use imports::artifact_url;
pub use scalars::Date;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection};

/// The names of the root fields a request will run, sorted and joined: `me`,
/// `loginViaPersonalApiToken`, or `createWorkspace,me` for a request with two. Usage is
/// counted under this name.
pub fn root_fields(document: &ExecutableDocument, operation_name: Option<&str>) -> String {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    };
    let mut names: Vec<&str> = operation
        .map(|op| {
            op.node
                .selection_set
                .node
                .items
                .iter()
                .filter_map(|item| match &item.node {
                    Selection::Field(field) => Some(field.node.name.node.as_str()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "(unknown)".to_owned()
    } else {
        names.join(",")
    }
}

#[derive(MergedObject, Default)]
pub struct Query(identity::IdentityQuery, connections::ConnectionQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(
    identity::IdentityMutation,
    workspaces::WorkspaceMutation,
    connections::ConnectionMutation,
    imports::ImportMutation,
    uploads::UploadMutation,
);

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

/// Limits that keep one request from costing the gateway more than any honest client needs,
/// checked before execution by [`crate::cost`].
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    /// Fields nested deeper than this are refused.
    pub max_depth: usize,
    /// Queries that cost more are refused: about one per value the query can return, a list
    /// counting its `limit` times its items.
    pub max_complexity: usize,
    /// Query documents longer than this are refused before parsing.
    pub max_document_bytes: usize,
    /// Query documents with more tokens than this are refused before parsing: a parsed tree
    /// costs a few hundred bytes a token.
    pub max_document_tokens: usize,
    /// Answers longer than this are replaced by a `QUERY_TOO_COMPLEX` error: the last line
    /// behind the cost check.
    pub max_response_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 20_000,
            max_document_bytes: 64 * 1024,
            max_document_tokens: 4_000,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The schema registers no extensions: `plain_list` resolves leaf fields without async-graphql's
/// per-field extension hooks, so an extension that must see every field would have to turn
/// that path off. Depth and cost are checked before execution, by [`crate::cost`].
pub fn build_schema(
    services: Option<Arc<Services>>,
    rate_limits: Option<Arc<RateLimits>>,
) -> GatewaySchema {
    builder(services, rate_limits).finish()
}

/// [`build_schema`] in async-graphql's fast validation mode, which skips the rules a document
/// that has validated before passes again: only for kept documents whose variables conform
/// ([`crate::variables`]).
pub(crate) fn build_validated_schema(
    services: Arc<Services>,
    rate_limits: Arc<RateLimits>,
) -> GatewaySchema {
    builder(Some(services), Some(rate_limits))
        .validation_mode(async_graphql::ValidationMode::Fast)
        .finish()
}

pub(crate) fn builder(
    services: Option<Arc<Services>>,
    rate_limits: Option<Arc<RateLimits>>,
) -> async_graphql::SchemaBuilder<Query, Mutation, EmptySubscription> {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription);
    if let Some(services) = services {
        builder = builder.data(services);
    }
    if let Some(rate_limits) = rate_limits {
        builder = builder.data(rate_limits);
    }
    builder
}

/// The SDL that `/graphql` serves: what `taxbridge schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    build_schema(None, None).sdl()
}

/// What one request carries into its resolvers, and what they leave for the handler to read
/// afterwards (for usage counting).
pub struct RequestContext {
    pub request_id: String,
    bearer: Option<String>,
    /// Where the request came from, for the audit log.
    pub audit: taxbridge_domain::audit::AuditContext,
    /// The client's address, for per-address limits.
    pub client: Option<std::net::IpAddr>,
    /// The caller, or why there is none: authenticated once, on first use.
    caller: OnceCell<Result<Caller, ApiError>>,
    /// The key a successful login used (a login request carries no token).
    pub login_key: OnceLock<ApiKeyId>,
    /// Slots for this request's calls to provider platforms (the pull pattern).
    pulls: tokio::sync::Semaphore,
    /// Calls to provider platforms this request has made.
    pulls_made: std::sync::atomic::AtomicU32,
    /// The bytes this request's pulls may still read, made on the first pull.
    pull_budget: OnceLock<taxbridge_domain::platform::PullBudget>,
}

impl RequestContext {
    pub fn new(
        request_id: String,
        bearer: Option<String>,
        client: Option<std::net::IpAddr>,
        audit: taxbridge_domain::audit::AuditContext,
    ) -> Self {
        Self {
            request_id,
            bearer,
            audit,
            client,
            caller: OnceCell::new(),
            login_key: OnceLock::new(),
            pulls: tokio::sync::Semaphore::const_new(pulls::PULL_CONCURRENCY),
            pulls_made: std::sync::atomic::AtomicU32::new(0),
            pull_budget: OnceLock::new(),
        }
    }

    /// The key this request acted with, if any: a logged-in caller's, or the one a login used.
    pub fn key_id(&self) -> Option<&ApiKeyId> {
        match self.caller.get() {
            Some(Ok(caller)) => caller.key_id(),
            _ => self.login_key.get(),
        }
    }
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Arc<Services>>()
}

pub(crate) fn request<'a>(ctx: &Context<'a>) -> &'a RequestContext {
    ctx.data_unchecked::<Arc<RequestContext>>()
}

pub(crate) fn rate_limits<'a>(ctx: &Context<'a>) -> &'a RateLimits {
    ctx.data_unchecked::<Arc<RateLimits>>()
}

/// The authenticated caller, established once per request from its bearer token.
pub(crate) async fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller, ApiError> {
    let request = request(ctx);
    let outcome = request
        .caller
        .get_or_init(|| async {
            let bearer = request.bearer.as_deref().ok_or(AuthError::MissingToken)?;
            let caller = services(ctx)
                .identity
                .authenticate(bearer)
                .await?
                .with_context(request.audit.clone());
            if let Some(key) = caller.key_id() {
                rate_limits(ctx).request(key).await?;
            }
            Ok(caller)
        })
        .await;
    outcome.as_ref().map_err(Clone::clone)
}
