//! The API's one error type. This is the only place that chooses an `extensions.code`: domain
//! and store errors are converted here, and every code the gateway can answer is listed in
//! [`ErrorCode`]. Internal failures are logged with their cause chain (inside the request's
//! span, so the line carries the request id) and shown to the caller as a masked message.

use async_graphql::ErrorExtensions;
use taxbridge_domain::{
    identity::{AuthError, IdentityError},
    store::StoreError,
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
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
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
        }
    }
}

/// The message every internal error shows; the handler appends the request id.
pub const INTERNAL_MESSAGE: &str =
    "Something went wrong inside Taxbridge; nothing you sent was at fault.";

#[derive(Debug)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadUserInput { field: String, message: String },
    Conflict(String),
    RateLimited { retry_after_seconds: u64 },
    Upstream(String),
    Internal(Box<dyn std::error::Error + Send + Sync>),
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
        Self::Internal(Box::new(err))
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
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause_chain(cause.as_ref()), "internal error");
                plain(INTERNAL_MESSAGE.to_owned())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { what } => Self::Conflict(format!("{what} already exists.")),
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
    fn internal_errors_never_show_their_cause() {
        let gql: async_graphql::Error =
            ApiError::internal(std::io::Error::other("password=hunter2")).into();
        assert_eq!(gql.message, INTERNAL_MESSAGE);
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
