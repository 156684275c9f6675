//! `POST /graphql`: read the body, parse the query (or find it parsed), execute it, ready the
//! errors to leave ([`crate::error::finish`]), and count the request's usage.

use crate::{
    cost::{self, TooComplex},
    error::{self, ErrorCode},
    graphql::{root_fields, RequestContext},
    http::{refuse, request_id, AppState},
};
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use std::sync::Arc;
use taxbridge_domain::{time::Timestamp, usage::normalise_platform};

pub(crate) async fn graphql(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = state.max_body_bytes;
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadUserInput,
            format!(
                "The request body is larger than the {limit}-byte limit; send less per request."
            ),
            Some("body"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return too_large();
    };
    let parsed = serde_json::from_slice::<async_graphql::Request>(&bytes).and_then(|request| {
        if request.query.trim().is_empty() {
            Err(serde::de::Error::custom("it has no `query`"))
        } else {
            Ok(request)
        }
    });
    let request = match parsed {
        Ok(request) => request,
        Err(err) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::GraphqlParseFailed,
                format!(
                    "The request body is not a GraphQL request ({err}). Send a JSON object such as {{\"query\": \"query Me {{ me {{ id name }} }}\", \"variables\": {{}}}}."
                ),
                None,
            )
        }
    };

    let id = request_id(&headers);
    let platform = normalise_platform(headers.get("source-platform").and_then(|v| v.to_str().ok()));
    let context = Arc::new(RequestContext::new(id.clone(), bearer_token(&headers)));
    let mut request = request.data(context.clone());
    // Parsed here (or found parsed already) rather than in an async-graphql extension: execution
    // reuses the document, the usage counter needs its root fields, and an extension would wrap
    // every field's resolver.
    let document = match state.documents.get(&request.query) {
        Some(document) => Ok(document),
        None => async_graphql::parser::parse_query(&request.query).inspect(|document| {
            state.documents.keep(&request.query, document);
        }),
    };
    let (operation, mut response) = match document {
        Ok(document) => {
            let operation_name = request.operation_name.as_deref();
            let operation = root_fields(&document, operation_name);
            match cost::check(&document, operation_name, &request.variables, state.limits) {
                Ok(()) => {
                    request.set_parsed_query(document);
                    (operation, state.schema.execute(request).await)
                }
                Err(TooComplex(message)) => (
                    operation,
                    async_graphql::Response::from_errors(vec![error::server_error(
                        message,
                        ErrorCode::QueryTooComplex,
                    )]),
                ),
            }
        }
        Err(err) => (
            "(unparsed)".to_owned(),
            async_graphql::Response::from_errors(vec![error::server_error(
                err.to_string(),
                ErrorCode::GraphqlParseFailed,
            )]),
        ),
    };

    for code in error::finish(&mut response.errors, &id) {
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
    Json(response).into_response()
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
