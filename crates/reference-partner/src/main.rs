//! The partner side of Taxbridge's partner protocol v1 (`docs/partner-protocol.md`), as a
//! small server over a seeded data set: a firm with clients, each with a few files. A partner
//! develops its platform's integration against it; Taxbridge's own tests and the README's
//! walkthrough use it as the platform a connection verifies against.
//!
//! ```sh
//! cargo run -p reference-partner -- --listen 127.0.0.1:9000 --api-key demo-key --security-token demo-token
//! ```
//!
//! Every call needs `Authorization: Bearer <api key>` (401 otherwise) and, when the server was
//! started with one, `X-Security-Token` (403 when wrong). It answers exactly what
//! `docs/partner-protocol.openapi.yaml` describes.

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "Taxbridge partner protocol v1, reference partner side")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// The API key a connection's `apiKey` input must hold.
    #[arg(long, default_value = "demo-key")]
    api_key: String,
    /// The security token a connection's `securityToken` input must hold, if any.
    #[arg(long)]
    security_token: Option<String>,
    /// The firm's name, as `GET /v1/verify` reports it.
    #[arg(long, default_value = "Smith & Associates Tax Firm")]
    firm_name: String,
    /// How many clients the seeded firm has.
    #[arg(long, default_value_t = 25)]
    clients: usize,
}

struct Platform {
    api_key: String,
    security_token: Option<String>,
    firm_name: String,
    clients: Vec<Value>,
}

/// The seeded data set: deterministic, so an integration test can name what it expects.
fn seed_clients(count: usize) -> Vec<Value> {
    let kinds = ["individual", "business"];
    (1..=count)
        .map(|n| {
            json!({
                "id": format!("client-{n:04}"),
                "name": format!("Client {n:04}"),
                "email": format!("client{n:04}@example.com"),
                "phone": format!("+1-555-01{:02}", n % 100),
                "type": kinds[n % 2],
                "lastModified": format!("2024-01-{:02}T10:30:00.000Z", 1 + n % 28),
            })
        })
        .collect()
}

fn files_of(client_id: &str, base: &str) -> Vec<Value> {
    (1..=3)
        .map(|n| {
            json!({
                "id": format!("{client_id}-file-{n}"),
                "fileName": format!("w2-{n}.pdf"),
                "fileSize": 1024 * n,
                "mimeType": "application/pdf",
                "downloadUrl": format!("{base}/files/{client_id}-file-{n}"),
                "dateCreated": format!("2024-02-0{n}T09:00:00.000Z"),
            })
        })
        .collect()
}

/// An error answer: `{"error": "…"}` with its status.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(status: StatusCode, message: &'static str) -> Response {
    Refusal(status, message).into_response()
}

/// Checks the caller's credentials: 401 for a missing or wrong key, 403 for a wrong token.
fn authorise(platform: &Platform, headers: &HeaderMap) -> Result<(), Refusal> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(platform.api_key.as_str()) {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "unknown or missing API key",
        ));
    }
    if let Some(expected) = &platform.security_token {
        let sent = headers
            .get("x-security-token")
            .and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            return Err(Refusal(StatusCode::FORBIDDEN, "wrong security token"));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Paging {
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn page(items: Vec<Value>, paging: &Paging) -> Result<Vec<Value>, Refusal> {
    let limit = paging.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 500",
        ));
    }
    Ok(items
        .into_iter()
        .skip(paging.offset.unwrap_or(0))
        .take(limit)
        .collect())
}

async fn verify(State(platform): State<Arc<Platform>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorise(&platform, &headers) {
        return refused.into_response();
    }
    Json(json!({ "firmId": "firm-0001", "firmName": platform.firm_name })).into_response()
}

async fn clients(
    State(platform): State<Arc<Platform>>,
    headers: HeaderMap,
    Query(paging): Query<Paging>,
) -> Response {
    if let Err(refused) = authorise(&platform, &headers) {
        return refused.into_response();
    }
    let matching: Vec<Value> = platform
        .clients
        .iter()
        .filter(|c| paging.kind.as_deref().is_none_or(|k| c["type"] == k))
        .cloned()
        .collect();
    match page(matching, &paging) {
        Ok(clients) => Json(json!({ "clients": clients })).into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn client(
    State(platform): State<Arc<Platform>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorise(&platform, &headers) {
        return refused.into_response();
    }
    match platform.clients.iter().find(|c| c["id"] == id.as_str()) {
        Some(client) => Json(client.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such client"),
    }
}

async fn files(
    State(platform): State<Arc<Platform>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Response {
    if let Err(refused) = authorise(&platform, &headers) {
        return refused.into_response();
    }
    if !platform.clients.iter().any(|c| c["id"] == id.as_str()) {
        return error(StatusCode::NOT_FOUND, "no such client");
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    match page(files_of(&id, &format!("http://{host}")), &paging) {
        Ok(files) => Json(json!({ "files": files })).into_response(),
        Err(refused) => refused.into_response(),
    }
}

fn router(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/v1/verify", get(verify))
        .route("/v1/clients", get(clients))
        .route("/v1/clients/{id}", get(client))
        .route("/v1/clients/{id}/files", get(files))
        .with_state(platform)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let platform = Arc::new(Platform {
        api_key: args.api_key,
        security_token: args.security_token,
        firm_name: args.firm_name,
        clients: seed_clients(args.clients),
    });
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("reference partner listening on http://{addr}"),
        Err(err) => eprintln!("error: {err}"),
    }
    if let Err(err) = axum::serve(listener, router(platform)).await {
        eprintln!("error: {err}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
