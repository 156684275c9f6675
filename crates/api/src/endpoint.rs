//! `/graphql` as the GraphQL-over-HTTP spec has it: `POST` with a JSON body, or `GET` with
//! `query` (and `variables`, `operationName`) in the URL for queries only; `GET` without a
//! `query` serves GraphiQL.
//!
//! One request goes: negotiate the answer's media type (`application/json`, what the docs'
//! clients get, or `application/graphql-response+json` when asked for), read the body under
//! its size and time limits, refuse a document too large to parse cheaply, parse it (or find
//! it parsed), check its cost ([`crate::cost`]), execute it, ready the errors to leave
//! ([`crate::error::finish`]), and count the request's usage.
//!
//! Status codes: a request that is not a GraphQL request is 4xx (400 malformed, 406, 408,
//! 413, 415, 405 for a mutation over `GET`). A GraphQL request answers 200 under
//! `application/json`, errors and all, as the docs' clients expect; under
//! `application/graphql-response+json` a request refused before execution (parse,
//! validation, cost) is 400 and carries no `data`.

use crate::{
    cost,
    error::{self, ErrorCode},
    graphql::{root_fields, QueryLimits, RequestContext},
    ground::{refuse, request_id, AppState, HttpError},
    large_bodies::{LargeSlot, LARGE_BODIES_PER_KEY},
    query_documents::{count_tokens, ParsedQueries},
};
use async_graphql::{
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
    ServerError,
};
use axum::{
    body::Body,
    extract::{ConnectInfo, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};
use taxbridge_domain::{time::Timestamp, usage::normalise_platform};

/// What the answer is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Media {
    Json,
    GraphqlResponseJson,
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

impl Media {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::Json => "application/json; charset=utf-8",
            Media::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
        })
    }

    /// The first type in `Accept` that the gateway can send; `application/json` when the
    /// header is missing or empty.
    fn negotiate(headers: &HeaderMap) -> Result<Self, HttpError> {
        // The common cases, without splitting anything: no Accept, or the docs' clients'.
        match headers.get(header::ACCEPT).map(HeaderValue::as_bytes) {
            None | Some(b"application/json" | b"*/*" | b"") => return Ok(Media::Json),
            Some(_) => {}
        }
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|range| {
                range
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|range| !range.is_empty())
            .collect::<Vec<_>>();
        if accept.is_empty() {
            return Ok(Media::Json);
        }
        for range in &accept {
            match range.as_str() {
                GRAPHQL_RESPONSE_JSON => return Ok(Media::GraphqlResponseJson),
                "application/json" | "application/*" | "*/*" => return Ok(Media::Json),
                _ => {}
            }
        }
        Err(HttpError::new(
            StatusCode::NOT_ACCEPTABLE,
            ErrorCode::NotAcceptable,
            format!("The gateway answers with application/json or {GRAPHQL_RESPONSE_JSON}; the Accept header allows neither."),
        ))
    }
}

pub(crate) async fn post(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (headers, client) = (&parts.headers, client_of(&parts.extensions));
    let media = match Media::negotiate(headers) {
        Ok(media) => media,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = require_json(headers) {
        return refused.into_response();
    }
    let (bytes, large) = match read_body(&state, headers, body).await {
        Ok(read) => read,
        Err(refused) => return refused.into_response(),
    };
    let request = match parse_request(&bytes) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    drop(bytes);
    let answer = run(
        &state,
        headers,
        client,
        request,
        media,
        false,
        large.is_some(),
    )
    .await;
    drop(large);
    answer
}

/// The one operation whose body may be larger than `max_body_bytes`: `uploadConnectionFile`
/// carrying up to 10 MiB in `contentBase64`.
pub(crate) const UPLOAD_OPERATION: &str = "uploadConnectionFile";
/// Its body limit: the file in base64 (4 bytes per 3) and room for the rest of the request.
pub(crate) const UPLOAD_BODY_BYTES: usize =
    taxbridge_domain::uploads::MAX_INLINE_BYTES.div_ceil(3) * 4 + 64 * 1024;
/// The client's address, as the accept loop recorded it.
fn client_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// `GET /graphql`: GraphiQL for a browser, or a query from the URL.
pub(crate) async fn get(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (headers, client, uri) = (&parts.headers, client_of(&parts.extensions), &parts.uri);
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        query: Option<String>,
        variables: Option<String>,
        operation_name: Option<String>,
    }
    let params = match Query::<Params>::try_from_uri(uri) {
        Ok(Query(params)) => params,
        Err(err) => {
            return bad_request(format!("The URL's query string cannot be read: {err}."))
                .into_response()
        }
    };
    let Some(query) = params.query else {
        return crate::graphiql::page();
    };
    let media = match Media::negotiate(headers) {
        Ok(media) => media,
        Err(refused) => return refused.into_response(),
    };
    let mut request = async_graphql::Request::new(query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        match serde_json::from_str::<serde_json::Value>(&variables) {
            Ok(value @ serde_json::Value::Object(_)) => {
                request = request.variables(async_graphql::Variables::from_json(value));
            }
            _ => {
                return bad_request("`variables` must be a JSON object, URL-encoded.".into())
                    .into_response()
            }
        }
    }
    run(&state, headers, client, request, media, true, false).await
}

fn bad_request(message: String) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
}

/// A POST body must be JSON: this also keeps a cross-site HTML form (which cannot send
/// `application/json`) from ever running an operation.
fn require_json(headers: &HeaderMap) -> Result<(), HttpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    let charset_ok = parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if media == "application/json" && charset_ok {
        return Ok(());
    }
    Err(HttpError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        format!(
            "POST /graphql takes a JSON body: send `Content-Type: application/json` (UTF-8){}.",
            if content_type.is_empty() {
                String::new()
            } else {
                format!(", not `{content_type}`")
            }
        ),
    ))
}

/// Reads the body within `max_body_bytes`. A larger one is read only when it may be an
/// `uploadConnectionFile`: a declared `Content-Length` of at most [`UPLOAD_BODY_BYTES`], and an
/// access token verified before a slot is taken or a byte past `max_body_bytes` is read. It
/// then holds one of [`LARGE_BODIES_AT_ONCE`] slots (at most [`LARGE_BODIES_PER_KEY`] per key),
/// returned with it; `run` refuses it unless that is the operation.
async fn read_body<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, Option<LargeSlot<'a>>), HttpError> {
    let mut limit = state.max_body_bytes;
    let too_large = |limit: usize| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadUserInput,
            format!(
                "The request body is larger than the {limit}-byte limit; send less per request (only {UPLOAD_OPERATION} may send up to {UPLOAD_BODY_BYTES} bytes, with an access token and a Content-Length)."
            ),
        )
        .with_field("body")
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut slot = None;
    if let Some(len) = declared.filter(|len| *len > limit) {
        let Some(token) =
            crate::auth::bearer_token(headers).filter(|_| len <= UPLOAD_BODY_BYTES.max(limit))
        else {
            return Err(too_large(limit));
        };
        // The token first: an unverified caller gets no slot and no byte read.
        let caller = match state.services.identity.authenticate(&token).await {
            Ok(caller) => caller,
            Err(taxbridge_domain::identity::AuthError::Store(err)) => {
                tracing::error!(error = %err, "could not check a token before a large body");
                return Err(HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    if err.is_unavailable() {
                        ErrorCode::Unavailable
                    } else {
                        ErrorCode::InternalServerError
                    },
                    "The gateway could not check the access token; try again.",
                ));
            }
            Err(err) => {
                return Err(HttpError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthenticated,
                    format!(
                        "{err} A body over {limit} bytes is read only for a valid access token."
                    ),
                ))
            }
        };
        let holder = caller
            .key_id()
            .map_or_else(|| caller.account().id.to_string(), |key| key.to_string());
        if !state.large_holders.enter(&holder) {
            return Err(HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!("This key already has {LARGE_BODIES_PER_KEY} large requests being read; send the next when one has finished."),
            ));
        }
        let waited =
            tokio::time::timeout(state.body_read_timeout, state.large_bodies.acquire()).await;
        match waited {
            Ok(Ok(permit)) => slot = Some(LargeSlot::new(permit, &state.large_holders, holder)),
            _ => {
                state.large_holders.leave(&holder);
                return Err(HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::RequestTimeout,
                    "Too many large requests are being read; try again shortly.",
                ));
            }
        }
        limit = len;
    }
    let collected =
        tokio::time::timeout(state.body_read_timeout, Limited::new(body, limit).collect());
    match collected.await {
        Ok(Ok(collected)) => Ok((collected.to_bytes().to_vec(), slot)),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(state.max_body_bytes))
        }
        Ok(Err(_)) => Err(bad_request(
            "The request body could not be read: it ended early or its chunked encoding is malformed.".into(),
        )),
        Err(_) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "The request body did not arrive within {} s; send it at once.",
                state.body_read_timeout.as_secs()
            ),
        )),
    }
}

fn parse_request(bytes: &[u8]) -> Result<async_graphql::Request, HttpError> {
    let parsed = serde_json::from_slice::<async_graphql::Request>(bytes).and_then(|request| {
        if request.query.trim().is_empty() {
            Err(serde::de::Error::custom("it has no `query`"))
        } else {
            Ok(request)
        }
    });
    parsed.map_err(|err| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::GraphqlParseFailed,
            format!(
                "The request body is not a GraphQL request ({err}). Send a JSON object such as {{\"query\": \"query Me {{ me {{ id name }} }}\", \"variables\": {{}}}}."
            ),
        )
    })
}

/// A parsed document ready to run, with what the cache needs to keep it afterwards.
struct Prepared {
    document: ExecutableDocument,
    /// Its token count, when it was parsed for this request and may be kept once it validates.
    keep: Option<usize>,
    /// It was found kept, so it has validated, and it takes variables only whole: it need not
    /// be validated again if its variables conform ([`crate::variables`]).
    validated: bool,
}

/// Finds the document parsed, or parses it if it is small enough to parse cheaply.
fn prepare(state: &AppState, query: &str) -> Result<Prepared, ServerError> {
    if query.len() <= state.limits.max_document_bytes {
        if let Some(found) = state.documents.get(query) {
            return Ok(Prepared {
                document: found.document,
                keep: None,
                validated: found.variables_whole,
            });
        }
    }
    let (document, tokens) = read_document(query, state.limits)?;
    let keep = ParsedQueries::worth_keeping(query, &document).then_some(tokens);
    Ok(Prepared {
        document,
        keep,
        validated: false,
    })
}

/// Parses a query document, refusing first (by size, then by a token count) one that would
/// cost too much to parse. Returns the document and its token count.
fn read_document(
    query: &str,
    limits: QueryLimits,
) -> Result<(ExecutableDocument, usize), ServerError> {
    if query.len() > limits.max_document_bytes {
        return Err(error::server_error(
            format!(
                "The query document is {} bytes; at most {} are accepted. Send a smaller query.",
                query.len(),
                limits.max_document_bytes
            ),
            ErrorCode::QueryTooComplex,
        ));
    }
    let Some(tokens) = count_tokens(query, limits.max_document_tokens) else {
        return Err(error::server_error(
            format!(
                "The query document has more than {} tokens; send a smaller query.",
                limits.max_document_tokens
            ),
            ErrorCode::QueryTooComplex,
        ));
    };
    let document = async_graphql::parser::parse_query(query)
        .map_err(|err| error::server_error(err.to_string(), ErrorCode::GraphqlParseFailed))?;
    Ok((document, tokens))
}

fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    };
    operation.is_some_and(|op| op.node.ty != OperationType::Query)
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    request: async_graphql::Request,
    media: Media,
    via_get: bool,
    large: bool,
) -> Response {
    let id = request_id(headers);
    let platform = normalise_platform(headers.get("source-platform").and_then(|v| v.to_str().ok()));
    let context = Arc::new(RequestContext::new(
        id.clone(),
        crate::auth::bearer_token(headers),
        client,
        crate::ground::audit_context(headers, client),
    ));
    let mut request = request.data(context.clone());

    let (operation, mut response) = match prepare(state, &request.query) {
        // A body over the usual limit is admitted for one operation only.
        Ok(Prepared { ref document, .. })
            if large
                && root_fields(document, request.operation_name.as_deref()) != UPLOAD_OPERATION =>
        {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadUserInput,
                format!(
                    "The request body is larger than the {}-byte limit; only {UPLOAD_OPERATION}, sent alone, may be larger.",
                    state.max_body_bytes
                ),
                Some("body"),
            );
        }
        Err(refused) => (
            "(refused)".to_owned(),
            async_graphql::Response::from_errors(vec![refused]),
        ),
        Ok(Prepared {
            document,
            keep,
            validated,
        }) => {
            let operation_name = request.operation_name.as_deref();
            if via_get && is_mutation(&document, operation_name) {
                let mut refused = refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    ErrorCode::MethodNotAllowed,
                    "Mutations and subscriptions are sent with POST, never GET.".into(),
                    None,
                );
                refused
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return refused;
            }
            let operation = root_fields(&document, operation_name);
            match cost::check(&document, operation_name, &request.variables, state.limits) {
                Err(refusal) => (
                    operation,
                    async_graphql::Response::from_errors(vec![error::server_error(
                        refusal.message,
                        refusal.code,
                    )]),
                ),
                Ok(()) => {
                    let query = request.query.clone();
                    let kept = keep.map(|tokens| (document.clone(), tokens));
                    let schema = if validated
                        && state.variable_types.conform(
                            &document,
                            operation_name,
                            &request.variables,
                        ) {
                        &state.validated_schema
                    } else {
                        &state.schema
                    };
                    request.set_parsed_query(document);
                    let response = schema.execute(request).await;
                    if let Some((document, tokens)) = kept {
                        if !refused_before_execution(&response) {
                            state.documents.keep(&query, document, tokens);
                        }
                    }
                    (operation, response)
                }
            }
        }
    };

    let codes = error::finish(&mut response.errors, &id);
    for code in &codes {
        state
            .metrics
            .graphql_errors
            .with_label_values(&[code.as_str()])
            .inc();
    }
    state
        .services
        .usage
        .record(Timestamp::now(), context.key_id(), &platform, &operation);

    if codes.contains(&ErrorCode::RateLimited) {
        return retry_later(StatusCode::TOO_MANY_REQUESTS, &response, media);
    }
    if codes.contains(&ErrorCode::Unavailable) {
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, &response, media);
    }
    let (status, body) =
        if media == Media::GraphqlResponseJson && refused_before_execution(&response) {
            let errors = serde_json::json!({ "errors": response.errors });
            (StatusCode::BAD_REQUEST, serde_json::to_vec(&errors))
        } else {
            (StatusCode::OK, serde_json::to_vec(&response))
        };
    match body {
        Ok(body) if body.len() > state.limits.max_response_bytes => {
            // The last line against amplification: the cost check should have refused it.
            tracing::warn!(
                bytes = body.len(),
                "refused an answer over the response size cap"
            );
            let refused = json!({ "errors": [{
                "message": format!(
                    "The answer would be {} bytes, more than the {} allowed. Ask for fewer fields or a smaller `limit`, and page with `offset`.",
                    body.len(),
                    state.limits.max_response_bytes
                ),
                "extensions": { "code": ErrorCode::QueryTooComplex.as_str() },
            }]});
            let status = match media {
                Media::Json => StatusCode::OK,
                Media::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            };
            (
                status,
                [(header::CONTENT_TYPE, media.content_type())],
                refused.to_string(),
            )
                .into_response()
        }
        Ok(body) => (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "could not serialise a response");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalServerError,
                format!(
                    "{} Quote request id {id} when reporting it.",
                    error::INTERNAL_MESSAGE
                ),
                None,
            )
        }
    }
}

/// An answer to try again later (429 rate-limited, 503 database unreachable), with
/// `Retry-After` the longest wait any error names.
fn retry_later(status: StatusCode, response: &async_graphql::Response, media: Media) -> Response {
    let wait = response
        .errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref()?.get("retryAfterSeconds")? {
            async_graphql::Value::Number(n) => n.as_u64(),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let body = serde_json::to_vec(response).unwrap_or_default();
    (
        status,
        [
            (header::CONTENT_TYPE, media.content_type()),
            (header::RETRY_AFTER, HeaderValue::from(wait)),
        ],
        body,
    )
        .into_response()
}

/// Whether the request was refused before any resolver ran: no data, and only parse,
/// validation or cost errors (what the GraphQL-over-HTTP spec calls a request error).
fn refused_before_execution(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| {
            error::code_of(e).is_none_or(|code| {
                matches!(
                    code,
                    ErrorCode::GraphqlParseFailed
                        | ErrorCode::GraphqlValidationFailed
                        | ErrorCode::QueryTooComplex
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn query_limits() -> QueryLimits {
        QueryLimits {
            max_document_tokens: 200,
            ..QueryLimits::default()
        }
    }

    proptest! {
        /// Whatever bytes arrive as a body, the reader answers a request or a typed 400.
        #[test]
        fn any_body_is_a_request_or_a_typed_400(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(refused) = parse_request(&body) {
                prop_assert_eq!(refused.status, StatusCode::BAD_REQUEST);
                prop_assert_eq!(refused.code, ErrorCode::GraphqlParseFailed);
                prop_assert!(!refused.message.is_empty());
            }
        }

        /// Whatever text arrives as a query, reading it gives a document or a typed refusal,
        /// and a document's cost can always be checked.
        #[test]
        fn any_query_text_is_a_document_or_a_typed_refusal(
            query in "[{}()\\[\\]:$@!.,=#\"a-z0-9 \\n]{0,300}"
        ) {
            match read_document(&query, query_limits()) {
                Ok((document, _)) => {
                    let _ = cost::check(&document, None, &async_graphql::Variables::default(), query_limits());
                }
                Err(refused) => {
                    let code = error::code_of(&refused);
                    prop_assert!(
                        matches!(code, Some(ErrorCode::GraphqlParseFailed | ErrorCode::QueryTooComplex)),
                        "{:?}", code
                    );
                }
            }
        }

        /// The same with arbitrary Unicode.
        #[test]
        fn any_unicode_query_is_read_without_panic(query in "\\PC{0,200}") {
            let _ = read_document(&query, query_limits());
            let _ = count_tokens(&query, 1_000);
        }
    }

    #[test]
    fn a_wellformed_body_is_read() {
        let request = parse_request(br#"{"query": "{ me { id } }", "variables": {"a": 1}}"#);
        assert!(request.is_ok());
        for bad in [
            &b"nonsense"[..],
            b"[1, 2]",
            b"{\"variables\": {}}",
            b"{\"query\": \"  \"}",
        ] {
            assert!(parse_request(bad).is_err());
        }
    }
}
