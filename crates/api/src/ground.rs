//! The ground every HTTP surface of Taxbridge stands on: the state each request shares
//! ([`AppState`]), the request id, and [`HttpError`], the one JSON error of every route that is
//! not GraphQL (`/files`, `/uploads`, refusals before a GraphQL request runs, unknown routes).
//! It imports no route: the router ([`crate::http`]) and the surfaces (the endpoint, the byte
//! routes, the web pages in `taxbridge-web`) sit on top of it.

use crate::{
    error::{ApiError, ErrorCode},
    graphql::{GatewaySchema, QueryLimits},
    metrics::Metrics,
    query_documents::ParsedQueries,
    Services,
};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use std::{convert::Infallible, sync::Arc};
use taxbridge_domain::audit::AuditContext;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Shared by every request through one `Arc`: extractors clone the state per request.
pub struct AppState {
    pub services: Arc<Services>,
    pub(crate) schema: GatewaySchema,
    /// The same schema in async-graphql's fast validation mode, for kept documents whose
    /// variables conform ([`crate::variables`]).
    pub(crate) validated_schema: GatewaySchema,
    pub(crate) variable_types: crate::variables::VariableTypes,
    pub(crate) metrics: Metrics,
    pub(crate) max_body_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    pub(crate) documents: ParsedQueries,
    pub(crate) limits: QueryLimits,
    /// Slots for bodies over `max_body_bytes` (`uploadConnectionFile`'s inline files).
    pub(crate) large_bodies: tokio::sync::Semaphore,
    /// Large-body slots held per key.
    pub(crate) large_holders: crate::large_bodies::LargeBodyHolders,
    /// The web pages' paces: sign-in attempts and form posts.
    pub web_limits: crate::rate_limits::WebLimits,
}

/// The id `SetRequestIdLayer` gave this request (also in its log lines and the response's
/// `x-request-id`).
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(request_id(&parts.headers)))
    }
}

/// Where a request came from, as the audit log records it: the client's address (as the
/// server resolved it, trusted proxies considered), its user agent, its `source-platform`
/// header and the request id. Each is cut to the log's bound.
pub fn audit_context(headers: &HeaderMap, client: Option<std::net::IpAddr>) -> AuditContext {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let client = client.map(|ip| ip.to_string());
    let request_id = request_id(headers);
    AuditContext::new(
        client.as_deref(),
        header("user-agent"),
        header("source-platform"),
        Some(request_id.as_str()).filter(|id| !id.is_empty()),
    )
}

/// The client address the server put on a request (see `server::client_address`).
pub fn client_of(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A refusal outside GraphQL execution, answered as
/// `{"errors": [{"message", "extensions": {"code", "field"?, "requestId"?}}]}`: the same shape
/// a GraphQL error has, so a client reads every refusal of the gateway one way.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// Given for internal errors, whose message is masked: quoting it finds the log line.
    pub request_id: Option<String>,
    /// Headers the answer carries besides the body (`WWW-Authenticate`, `Content-Range`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a client sees of an internal error: the cause stays in the log.
pub const INTERNAL_MESSAGE: &str = "The gateway could not complete this request; try again.";

impl HttpError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            request_id: None,
            headers: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// A domain error (as the API maps it) at the status a plain HTTP client expects.
    /// Internal errors are logged with their cause and `request_id`, and answered masked.
    pub fn from_api(err: ApiError, request_id: &RequestId) -> Self {
        let code = err.code();
        let (status, message) = match err {
            ApiError::Unauthenticated(m) => {
                return Self::new(StatusCode::UNAUTHORIZED, code, m)
                    .with_header(header::WWW_AUTHENTICATE, "Bearer")
            }
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadUserInput { field, message } => {
                return Self::new(StatusCode::BAD_REQUEST, code, message).with_field(field)
            }
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::RateLimited {
                retry_after_seconds,
            } => {
                return Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    code,
                    format!("Too many requests; try again in {retry_after_seconds} s."),
                )
                .with_header(header::RETRY_AFTER, &retry_after_seconds.to_string())
            }
            ApiError::Upstream(m) => (StatusCode::BAD_GATEWAY, m),
            ApiError::Unavailable => {
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code,
                    crate::error::UNAVAILABLE_MESSAGE,
                )
                .with_header(
                    header::RETRY_AFTER,
                    &crate::error::UNAVAILABLE_RETRY_SECONDS.to_string(),
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, request_id = %request_id.0, "request failed");
                let mut masked = Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    code,
                    format!(
                        "{INTERNAL_MESSAGE} Quote request id {} when reporting it.",
                        request_id.0
                    ),
                );
                masked.request_id = Some(request_id.0.clone());
                return masked;
            }
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut extensions = json!({ "code": self.code.as_str() });
        if let Some(field) = self.field {
            extensions["field"] = json!(field);
        }
        if let Some(id) = self.request_id {
            extensions["requestId"] = json!(id);
        }
        let mut response = (
            self.status,
            Json(json!({ "errors": [{ "message": self.message, "extensions": extensions }] })),
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// A response for a request that never reached GraphQL execution.
pub(crate) fn refuse(
    status: StatusCode,
    code: ErrorCode,
    message: String,
    field: Option<&str>,
) -> Response {
    let mut error = HttpError::new(status, code, message);
    error.field = field.map(str::to_owned);
    error.into_response()
}

/// Headers every page of the gateway sends: `policy` as its CSP, no framing, no sniffing, no
/// referrer.
pub fn security_headers(response: &mut Response, policy: &'static str) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}
