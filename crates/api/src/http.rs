//! The router, alone on top: `/graphql` (POST runs a request, in [`crate::endpoint`]; GET
//! serves GraphiQL), the byte routes ([`crate::files`]), `/healthz`, `/readyz` and `/metrics`,
//! and whatever other routes the binary composes in (the web pages), with request ids, tracing
//! spans, metrics and the head limits around all of them. What the routes share lives below, in
//! [`crate::ground`].

use crate::{
    endpoint,
    error::ErrorCode,
    graphql::{build_schema, build_validated_schema},
    ground::{refuse, AppState, REQUEST_ID},
    metrics::Metrics,
    query_documents::ParsedQueries,
    rate_limits::RateLimits,
    ApiSettings, Services,
};
use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;
use std::{sync::Arc, time::Instant};
use taxbridge_domain::{health::NotReady, words::Word};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

/// The routes, `pages` among them, and the rate limits they enforce (the caller forgets idle
/// keys now and then).
pub fn router(
    settings: &ApiSettings,
    services: Arc<Services>,
    pages: Router<Arc<AppState>>,
) -> (Router, Arc<RateLimits>) {
    let counters = Metrics::new();
    let rate_limits = Arc::new(RateLimits::new(
        settings.rate_limits,
        counters.rate_limited.clone(),
        services.shared_limits.clone(),
    ));
    let state = Arc::new(AppState {
        schema: build_schema(Some(services.clone()), Some(rate_limits.clone())),
        validated_schema: build_validated_schema(services.clone(), rate_limits.clone()),
        variable_types: crate::variables::VariableTypes::of_gateway(),
        services,
        metrics: counters,
        max_body_bytes: settings.max_body_bytes,
        body_read_timeout: settings.connections.body_read_timeout,
        documents: ParsedQueries::default(),
        limits: settings.query_limits,
        large_bodies: tokio::sync::Semaphore::const_new(crate::large_bodies::LARGE_BODIES_AT_ONCE),
        large_holders: crate::large_bodies::LargeBodyHolders::default(),
        web_limits: crate::rate_limits::WebLimits::default(),
    });
    let router = Router::new()
        .route("/graphql", get(endpoint::get).post(endpoint::post))
        .route(
            &format!("{}/{{name}}", crate::graphiql::ASSETS),
            get(crate::graphiql::asset),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/files/artifacts/{id}", get(crate::files::download))
        .route(
            "/uploads/artifacts/{id}",
            axum::routing::put(crate::files::upload),
        )
        .merge(pages)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(check_head))
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
        .with_state(state);
    (router, rate_limits)
}

/// The longest URI and the most header bytes a request may have; past them the answer is a
/// JSON 414 or 431. hyper itself refuses far larger heads (a 64 KiB URI, 200 headers, 400 KiB),
/// with bodiless answers no handler can shape: these limits keep every refusal a client can
/// meet in practice typed.
const MAX_URI_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The header count hyper enforces (above its default of 100, so [`check_head`] answers first).
pub(crate) const HYPER_MAX_HEADERS: usize = 200;
const MAX_HEADERS: usize = 100;

/// Refuses a request whose URI or headers are longer than any client of the gateway sends.
async fn check_head(request: Request, next: Next) -> Response {
    let uri = request.uri().path().len() + request.uri().query().map_or(0, str::len);
    if uri > MAX_URI_BYTES {
        return refuse(
            StatusCode::URI_TOO_LONG,
            ErrorCode::BadRequest,
            format!("The URI is {uri} bytes; at most {MAX_URI_BYTES} are accepted. Send long queries with POST."),
            None,
        );
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::BadRequest,
            format!("The request has {} headers in {bytes} bytes; at most {MAX_HEADERS} headers in {MAX_HEADER_BYTES} bytes are accepted.", headers.len()),
            None,
        );
    }
    next.run(request).await
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

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 while this node should get requests; 503 with a reason while it drains before
/// shutting down, or while the database or the blob store does not answer.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let health = &state.services.health;
    let database = health.backend();
    match health.ready().await {
        Ok(()) => Json(json!({ "status": "ready", "database": database })).into_response(),
        Err(not_ready) => {
            let status = match &not_ready {
                NotReady::Draining => "draining",
                NotReady::Database(err) | NotReady::Blobs(err) => {
                    tracing::warn!(error = %err, "readiness check: {}", not_ready.reason());
                    "unavailable"
                }
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": status, "database": database, "reason": not_ready.reason() }),
                ),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.metrics.render();
    let services = &state.services;
    text.push_str(
        &prometheus::TextEncoder::new()
            .encode_to_string(&services.worker_metrics.gather())
            .unwrap_or_default(),
    );
    // Queue depth is read at scrape time: every node sees the same queue in the database.
    match services.health.queue_depth().await {
        Ok(depths) => {
            text.push_str("# HELP taxbridge_task_queue_depth Tasks waiting or running, by kind\n");
            text.push_str("# TYPE taxbridge_task_queue_depth gauge\n");
            for (kind, count) in depths {
                text.push_str(&format!(
                    "taxbridge_task_queue_depth{{kind=\"{}\"}} {count}\n",
                    kind.as_str()
                ));
            }
        }
        Err(err) => tracing::warn!(error = %err, "metrics: could not count the task queue"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "No such route. The GraphQL endpoint is POST /graphql.".into(),
        None,
    )
}

async fn method_not_allowed() -> Response {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "This route does not take that method: /graphql takes POST (and GET for queries), the others GET.".into(),
        None,
    )
}
