//! The GraphQL schema served on `/graphql`. Each feature has its own module with its root
//! fields; they are merged into [`Query`] and [`Mutation`] here. Resolvers stay thin: find
//! the caller, call one domain service, map the result into a GraphQL type of its own.

mod identity;
mod plain_list;
mod scalars;
mod workspaces;

use crate::{error::ApiError, Services};
use async_graphql::{Context, EmptySubscription, MergedObject, Schema};
use std::sync::{Arc, OnceLock};
use taxbridge_domain::{identity::Caller, ids::ApiKeyId};
use tokio::sync::OnceCell;

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
pub struct Query(identity::IdentityQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(identity::IdentityMutation, workspaces::WorkspaceMutation);

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

/// Limits that keep one request from costing the gateway more than any honest client needs.
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2_000,
        }
    }
}

/// The schema registers no extensions: `plain_list` builds stored fields without async-graphql's
/// per-field extension hooks, so an extension that must see every field would have to turn
/// that path off.
pub fn build_schema(services: Option<Arc<Services>>, limits: QueryLimits) -> GatewaySchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if let Some(services) = services {
        builder = builder.data(services);
    }
    builder.finish()
}

/// The SDL that `/graphql` serves: what `taxbridge schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    build_schema(None, QueryLimits::default()).sdl()
}

/// What one request carries into its resolvers, and what they leave for the handler to read
/// afterwards (for usage counting).
pub struct RequestContext {
    pub request_id: String,
    bearer: Option<String>,
    caller: OnceCell<Result<Caller, AuthFailure>>,
    /// The key a successful login used (a login request carries no token).
    pub login_key: OnceLock<ApiKeyId>,
}

#[derive(Clone)]
enum AuthFailure {
    Unauthenticated(String),
    Internal(Arc<dyn std::error::Error + Send + Sync>),
}

impl RequestContext {
    pub fn new(request_id: String, bearer: Option<String>) -> Self {
        Self {
            request_id,
            bearer,
            caller: OnceCell::new(),
            login_key: OnceLock::new(),
        }
    }

    /// The key this request acted with, if any: a logged-in caller's, or the one a login used.
    pub fn key_id(&self) -> Option<&ApiKeyId> {
        match self.caller.get() {
            Some(Ok(caller)) => Some(caller.key_id()),
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

/// The authenticated caller, established once per request from its bearer token.
pub(crate) async fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller, ApiError> {
    let request = request(ctx);
    let result =
        request
            .caller
            .get_or_init(|| async {
                let Some(bearer) = request.bearer.as_deref() else {
                    return Err(AuthFailure::Unauthenticated(
                        taxbridge_domain::identity::AuthError::MissingToken.to_string(),
                    ));
                };
                services(ctx).identity.authenticate(bearer).await.map_err(
                    |err| match ApiError::from(err) {
                        ApiError::Internal(cause) => AuthFailure::Internal(Arc::from(cause)),
                        other => AuthFailure::Unauthenticated(match other {
                            ApiError::Unauthenticated(message) => message,
                            _ => "The access token is not valid.".to_owned(),
                        }),
                    },
                )
            })
            .await;
    match result {
        Ok(caller) => Ok(caller),
        Err(AuthFailure::Unauthenticated(message)) => {
            Err(ApiError::Unauthenticated(message.clone()))
        }
        Err(AuthFailure::Internal(cause)) => {
            Err(ApiError::Internal(Box::new(SharedError(cause.clone()))))
        }
    }
}

#[derive(Debug)]
struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
