//! HTTP routes: `/graphql` (POST runs a request, GET serves GraphiQL), `/healthz`, `/readyz`
//! and `/metrics`, with request ids, tracing spans and metrics around all of them.

use crate::{
    documents::ParsedQueries,
    error::{ErrorCode, INTERNAL_MESSAGE},
    graphql::{build_schema, root_fields, GatewaySchema, RequestContext},
    metrics::Metrics,
    ApiSettings, Services,
};
use async_graphql::{http::GraphiQLSource, ServerError};
use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{header, HeaderMap, HeaderName, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;
use std::{sync::Arc, time::Instant};
use taxbridge_domain::{time::Timestamp, usage::normalise_platform};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Shared by every request through one `Arc`: extractors clone the state per request.
struct AppState {
    services: Arc<Services>,
    schema: GatewaySchema,
    metrics: Metrics,
    max_body_bytes: usize,
    documents: ParsedQueries,
}

pub fn router(settings: &ApiSettings, services: Arc<Services>) -> Router {
    let state = Arc::new(AppState {
        schema: build_schema(Some(services.clone()), settings.query_limits),
        services,
        metrics: Metrics::new(),
        max_body_bytes: settings.max_body_bytes,
        documents: ParsedQueries::default(),
    });
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "request",
                    request_id = id,
                    method = request.method().as_str(),
                    path = request.uri().path()
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Counts and times every request by route.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| match p.as_str() {
            "/graphql" => "/graphql",
            "/healthz" => "/healthz",
            "/readyz" => "/readyz",
            "/metrics" => "/metrics",
            _ => "other",
        });
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe(route, response.status(), started.elapsed());
    response
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A response for a request that never reached GraphQL execution.
fn refuse(status: StatusCode, code: ErrorCode, message: String, field: Option<&str>) -> Response {
    let mut extensions = json!({ "code": code.as_str() });
    if let Some(field) = field {
        extensions["field"] = json!(field);
    }
    (
        status,
        Json(json!({ "errors": [{ "message": message, "extensions": extensions }] })),
    )
        .into_response()
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn graphql(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
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
            let operation = root_fields(&document, request.operation_name.as_deref());
            request.set_parsed_query(document);
            (operation, state.schema.execute(request).await)
        }
        Err(err) => (
            "(unparsed)".to_owned(),
            async_graphql::Response::from_errors(vec![with_code(
                err.into(),
                ErrorCode::GraphqlParseFailed,
            )]),
        ),
    };

    for error in &mut response.errors {
        let code = classify(error);
        if code == ErrorCode::InternalServerError {
            error.message = format!("{INTERNAL_MESSAGE} Quote request id {id} when reporting it.");
            if let Some(extensions) = error.extensions.as_mut() {
                extensions.set("requestId", id.as_str());
            }
        }
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

fn with_code(mut err: ServerError, code: ErrorCode) -> ServerError {
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    err
}

/// Every error leaves with a code. Ours carry theirs already (see `error.rs`); the ones
/// async-graphql raises itself before execution (validation, complexity and depth limits, an
/// unknown operation name) are given theirs here.
fn classify(error: &mut ServerError) -> ErrorCode {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if let Some(async_graphql::Value::String(code)) = extensions.get("code") {
        if let Some(known) = ErrorCode::ALL.into_iter().find(|c| c.as_str() == code) {
            return known;
        }
    }
    let code = if error.message.contains("too complex") || error.message.contains("nested too deep")
    {
        ErrorCode::QueryTooComplex
    } else {
        ErrorCode::GraphqlValidationFailed
    };
    extensions.set("code", code.as_str());
    code
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .title("Taxbridge GraphiQL")
            .finish(),
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let store = state.services.identity.store();
    match store.ping().await {
        Ok(()) => Json(json!({ "status": "ready", "database": store.backend() })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: the database did not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": store.backend(), "reason": "the database did not answer" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "No such route. The GraphQL endpoint is POST /graphql." })),
    )
        .into_response()
}
