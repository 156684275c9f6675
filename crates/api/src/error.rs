//! The API's one error type, and the one path every error takes out.
//!
//! - Every `extensions.code` the gateway answers with is an [`ErrorCode`], and this module is
//!   the only place that picks one: each domain error has its `From` impl here, resolvers
//!   return `Result<T, ApiError>`, and async-graphql turns an [`ApiError`] into its error
//!   through the one `From` below.
//! - Errors async-graphql raises itself, before any resolver runs (validation, an unknown
//!   operation name, a variable of the wrong type), carry no code; [`finish`] gives them
//!   `GRAPHQL_VALIDATION_FAILED`. Nothing is classified by its message text.
//! - Internal failures are masked here and nowhere else: [`ApiError::Internal`] is logged with
//!   its cause chain (inside the request's span, so the line carries the request id) and
//!   becomes [`INTERNAL_MESSAGE`]; [`finish`] adds the request id to quote.

use async_graphql::{ErrorExtensions, ServerError};
use std::sync::Arc;
use taxbridge_domain::{
    connections::ConnectionError,
    identity::{AuthError, IdentityError},
    imports::ImportError,
    lists::InvalidPage,
    store::StoreError,
    workspaces::WorkspaceError,
};

/// Every `extensions.code` the gateway answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    RateLimited,
    UpstreamError,
    QueryTooComplex,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    InternalServerError,
    // The HTTP layer's, for requests that never became a GraphQL request.
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    UnsupportedMediaType,
    RequestTimeout,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 17] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::BadUserInput,
        Self::Conflict,
        Self::RateLimited,
        Self::UpstreamError,
        Self::QueryTooComplex,
        Self::GraphqlParseFailed,
        Self::GraphqlValidationFailed,
        Self::InternalServerError,
        Self::BadRequest,
        Self::MethodNotAllowed,
        Self::NotAcceptable,
        Self::UnsupportedMediaType,
        Self::RequestTimeout,
        Self::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::UpstreamError => "UPSTREAM_ERROR",
            Self::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::BadRequest => "BAD_REQUEST",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::NotAcceptable => "NOT_ACCEPTABLE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::Unavailable => "UNAVAILABLE",
        }
    }
}

/// The most errors one answer lists.
pub const MAX_ERRORS: usize = 50;

/// The message every internal error shows; the handler appends the request id.
pub const INTERNAL_MESSAGE: &str =
    "Something went wrong inside Taxbridge; nothing you sent was at fault.";

/// The message of an `UNAVAILABLE` error.
pub const UNAVAILABLE_MESSAGE: &str =
    "Taxbridge cannot reach its database just now; nothing was changed. Try again in a few seconds.";

/// The wait an `UNAVAILABLE` answer suggests (`Retry-After`, `extensions.retryAfterSeconds`).
pub const UNAVAILABLE_RETRY_SECONDS: u64 = 2;

/// What went wrong, as the API reports it. Cheap to clone: a request's authentication outcome
/// is kept once and handed to every resolver that asks.
#[derive(Clone, Debug)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadUserInput {
        field: String,
        message: String,
    },
    Conflict(String),
    RateLimited {
        retry_after_seconds: u64,
    },
    Upstream(String),
    /// The database cannot be reached for now: HTTP 503, try again shortly.
    Unavailable,
    Internal(Arc<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::BadUserInput { .. } => ErrorCode::BadUserInput,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Upstream(_) => ErrorCode::UpstreamError,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::InternalServerError,
        }
    }

    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Arc::new(err))
    }
}

fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

// `ApiError` deliberately has no `Display`, so this conversion (rather than async-graphql's
// blanket one for displayable errors) is the only way it becomes a GraphQL error.
impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let code = err.code().as_str();
        let plain = |message: String| {
            async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
        };
        match err {
            ApiError::Unauthenticated(message)
            | ApiError::Forbidden(message)
            | ApiError::NotFound(message)
            | ApiError::Conflict(message)
            | ApiError::Upstream(message) => plain(message),
            ApiError::BadUserInput { field, message } => async_graphql::Error::new(message)
                .extend_with(|_, e| {
                    e.set("code", code);
                    e.set("field", field.as_str());
                }),
            ApiError::RateLimited {
                retry_after_seconds,
            } => async_graphql::Error::new(format!(
                "Too many requests; try again in {retry_after_seconds} s."
            ))
            .extend_with(|_, e| {
                e.set("code", code);
                e.set("retryAfterSeconds", retry_after_seconds);
            }),
            ApiError::Unavailable => {
                async_graphql::Error::new(UNAVAILABLE_MESSAGE).extend_with(|_, e| {
                    e.set("code", code);
                    e.set("retryAfterSeconds", UNAVAILABLE_RETRY_SECONDS);
                })
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause_chain(cause.as_ref()), "internal error");
                plain(INTERNAL_MESSAGE.to_owned())
            }
        }
    }
}

/// The code of an error that has one already.
pub fn code_of(error: &ServerError) -> Option<ErrorCode> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => {
            ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
        }
        _ => None,
    }
}

/// Readies a response's errors to leave: each gets its code (ours carry theirs; those
/// async-graphql raised before execution are validation failures), and internal ones the
/// request id to quote. Returns the codes, for the metrics.
pub fn finish(errors: &mut Vec<ServerError>, request_id: &str) -> Vec<ErrorCode> {
    // A document of a thousand wrong fields gets a thousand validation errors: the first few
    // say what to fix, and the answer stays small.
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        let mut last = ServerError::new(format!("…and {more} more errors like these."), None);
        if let Some(code) = errors.last().and_then(code_of) {
            last.extensions
                .get_or_insert_with(Default::default)
                .set("code", code.as_str());
        }
        errors.push(last);
    }
    errors
        .iter_mut()
        .map(|error| {
            let code = code_of(error).unwrap_or(ErrorCode::GraphqlValidationFailed);
            let extensions = error.extensions.get_or_insert_with(Default::default);
            extensions.set("code", code.as_str());
            if code == ErrorCode::InternalServerError {
                error.message =
                    format!("{INTERNAL_MESSAGE} Quote request id {request_id} when reporting it.");
                extensions.set("requestId", request_id);
            }
            code
        })
        .collect()
}

/// An error raised outside any resolver (a parse failure, a refused query), with its code.
pub fn server_error(message: impl Into<String>, code: ErrorCode) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    error
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { what } => Self::Conflict(format!("{what} already exists.")),
            unavailable @ StoreError::Unavailable(_) => {
                tracing::warn!(error = %cause_chain(&unavailable), "the database cannot be reached");
                Self::Unavailable
            }
            backend @ StoreError::Backend(_) => Self::internal(backend),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(store) => store.into(),
            other => Self::Unauthenticated(other.to_string()),
        }
    }
}

impl From<WorkspaceError> for ApiError {
    fn from(err: WorkspaceError) -> Self {
        match err {
            WorkspaceError::Invalid { field, message } => Self::bad_input(field, message),
            WorkspaceError::Forbidden(message) => Self::Forbidden(message),
            WorkspaceError::NotFound => Self::NotFound(WorkspaceError::NotFound.to_string()),
            WorkspaceError::Store(store) => store.into(),
        }
    }
}

impl From<ConnectionError> for ApiError {
    fn from(err: ConnectionError) -> Self {
        match err {
            ConnectionError::Invalid { field, message } => Self::bad_input(field, message),
            ConnectionError::Forbidden(message) => Self::Forbidden(message),
            ConnectionError::Conflict(message) => Self::Conflict(message),
            ConnectionError::NotFound => Self::NotFound(ConnectionError::NotFound.to_string()),
            ConnectionError::Upstream(message) => Self::Upstream(message),
            ConnectionError::Workspace(workspace) => workspace.into(),
            ConnectionError::Store(store) => store.into(),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(err: ImportError) -> Self {
        match err {
            ImportError::Invalid { field, message } => Self::bad_input(field, message),
            ImportError::Conflict(message) => Self::Conflict(message),
            ImportError::NotFound(_) => Self::NotFound(err.to_string()),
            ImportError::Connection(connection) => connection.into(),
            ImportError::Store(store) => store.into(),
        }
    }
}

impl From<taxbridge_domain::audit::AuditError> for ApiError {
    fn from(err: taxbridge_domain::audit::AuditError) -> Self {
        use taxbridge_domain::audit::AuditError;
        match err {
            AuditError::Forbidden => Self::Forbidden(err.to_string()),
            AuditError::Invalid(invalid) => invalid.into(),
            AuditError::Store(store) => store.into(),
        }
    }
}

impl From<InvalidPage> for ApiError {
    fn from(err: InvalidPage) -> Self {
        Self::bad_input(err.field, err.message)
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::Invalid { field, message } => Self::bad_input(field, message),
            IdentityError::NoSuchAccount(_) => Self::NotFound(err.to_string()),
            IdentityError::Store(store) => store.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Value;

    fn code_of(err: ApiError) -> (String, async_graphql::ErrorExtensionValues) {
        let gql: async_graphql::Error = err.into();
        let ext = gql.extensions.clone().unwrap_or_default();
        match ext.get("code") {
            Some(Value::String(code)) => (code.clone(), ext),
            other => panic!("no code: {other:?}"),
        }
    }

    #[test]
    fn every_variant_carries_its_code() {
        let cases = [
            (ApiError::Unauthenticated("x".into()), "UNAUTHENTICATED"),
            (ApiError::Forbidden("x".into()), "FORBIDDEN"),
            (ApiError::NotFound("x".into()), "NOT_FOUND"),
            (ApiError::bad_input("displayName", "x"), "BAD_USER_INPUT"),
            (ApiError::Conflict("x".into()), "CONFLICT"),
            (
                ApiError::RateLimited {
                    retry_after_seconds: 3,
                },
                "RATE_LIMITED",
            ),
            (ApiError::Upstream("x".into()), "UPSTREAM_ERROR"),
            (ApiError::Unavailable, "UNAVAILABLE"),
            (
                ApiError::internal(std::io::Error::other("disk")),
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(code_of(err).0, expected);
        }
    }

    #[test]
    fn bad_input_names_its_field_and_rate_limits_say_when_to_retry() {
        let (_, ext) = code_of(ApiError::bad_input("displayName", "blank"));
        assert_eq!(ext.get("field"), Some(&Value::from("displayName")));
        let (_, ext) = code_of(ApiError::RateLimited {
            retry_after_seconds: 7,
        });
        assert_eq!(ext.get("retryAfterSeconds"), Some(&Value::from(7)));
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_never_shows_its_cause() {
        let err: ApiError = StoreError::Unavailable(Box::new(std::io::Error::other(
            "connect to 10.0.0.5:5432 as taxbridge:hunter2",
        )))
        .into();
        let gql: async_graphql::Error = err.into();
        assert_eq!(gql.message, UNAVAILABLE_MESSAGE);
        let (code, ext) = code_of(ApiError::Unavailable);
        assert_eq!(code, "UNAVAILABLE");
        assert_eq!(
            ext.get("retryAfterSeconds"),
            Some(&Value::from(UNAVAILABLE_RETRY_SECONDS))
        );
        // Any other store failure stays internal.
        let other: ApiError = StoreError::Backend(Box::new(std::io::Error::other("x"))).into();
        assert_eq!(other.code(), ErrorCode::InternalServerError);
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let gql: async_graphql::Error =
            ApiError::internal(std::io::Error::other("password=hunter2")).into();
        assert_eq!(gql.message, INTERNAL_MESSAGE);
    }

    #[test]
    fn finishing_gives_async_graphqls_own_errors_a_code_and_internal_ones_the_request_id() {
        let mut errors = vec![
            ServerError::new("Unknown field \"nope\" on type \"Query\".", None),
            ApiError::internal(std::io::Error::other("disk")).into_server_error_for_test(),
            ApiError::Forbidden("no".into()).into_server_error_for_test(),
        ];
        let codes = finish(&mut errors, "req-1");
        let mut many: Vec<ServerError> = (0..1_000)
            .map(|_| ServerError::new("Unknown field", None))
            .collect();
        assert_eq!(finish(&mut many, "req-2").len(), MAX_ERRORS + 1);
        assert!(many[MAX_ERRORS].message.contains("950 more"));
        assert_eq!(
            codes,
            [
                ErrorCode::GraphqlValidationFailed,
                ErrorCode::InternalServerError,
                ErrorCode::Forbidden
            ]
        );
        assert!(errors[1].message.contains("req-1"), "{}", errors[1].message);
        assert_eq!(super::code_of(&errors[2]), Some(ErrorCode::Forbidden));
        assert_eq!(errors[2].message, "no");
    }

    impl ApiError {
        fn into_server_error_for_test(self) -> ServerError {
            async_graphql::Error::from(self).into_server_error(Default::default())
        }
    }

    #[test]
    fn codes_are_distinct_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate {s}");
        }
    }
}
