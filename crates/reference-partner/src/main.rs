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
//!
//! It also receives files sent back with `uploadConnectionFile`: a tus 1.0.0 endpoint (core
//! protocol and the creation extension) at `/v1/uploads`, kept in memory. A finished upload
//! whose `clientKey` metadata names a client is listed among that client's files.

use axum::{
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

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
    /// The largest file the tus endpoint accepts (uploads are kept in memory).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_upload_bytes: u64,
}

struct Platform {
    api_key: String,
    security_token: Option<String>,
    firm_name: String,
    clients: Vec<Value>,
    max_upload_bytes: u64,
    /// tus uploads by id.
    uploads: Mutex<HashMap<String, Received>>,
}

/// One tus upload: its declared length, metadata, and the bytes so far.
struct Received {
    length: u64,
    metadata: HashMap<String, String>,
    bytes: Vec<u8>,
    created: String,
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
struct ErrorAnswer(StatusCode, &'static str);

impl IntoResponse for ErrorAnswer {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(status: StatusCode, message: &'static str) -> Response {
    ErrorAnswer(status, message).into_response()
}

/// Checks the caller's credentials: 401 for a missing or wrong key, 403 for a wrong token.
fn authorise(platform: &Platform, headers: &HeaderMap) -> Result<(), ErrorAnswer> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(platform.api_key.as_str()) {
        return Err(ErrorAnswer(
            StatusCode::UNAUTHORIZED,
            "unknown or missing API key",
        ));
    }
    if let Some(expected) = &platform.security_token {
        let sent = headers
            .get("x-security-token")
            .and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            return Err(ErrorAnswer(StatusCode::FORBIDDEN, "wrong security token"));
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

fn page(items: Vec<Value>, paging: &Paging) -> Result<Vec<Value>, ErrorAnswer> {
    let limit = paging.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ErrorAnswer(
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
    let base = format!("http://{host}");
    let mut all = files_of(&id, &base);
    all.extend(received_by(&platform, &id, &base));
    match page(all, &paging) {
        Ok(files) => Json(json!({ "files": files })).into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// `GET /files/{id}`: a seeded file's bytes (its `downloadUrl`), as long as its `fileSize`
/// says, with the same credentials as every call.
async fn file_bytes(
    State(platform): State<Arc<Platform>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorise(&platform, &headers) {
        return refused.into_response();
    }
    let Some((client, n)) = id.rsplit_once("-file-") else {
        return error(StatusCode::NOT_FOUND, "no such file");
    };
    let n: usize = match n.parse() {
        Ok(n @ 1..=3) if platform.clients.iter().any(|c| c["id"] == client) => n,
        _ => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    let mut bytes = format!("%PDF-1.4\n% {id}, a file of the reference partner\n").into_bytes();
    bytes.resize(1024 * n, b' ');
    ([("content-type", "application/pdf")], bytes).into_response()
}

/// Finished uploads whose `clientKey` is `client_id`, as files of that client.
fn received_by(platform: &Platform, client_id: &str, base: &str) -> Vec<Value> {
    let uploads = platform.uploads.lock().unwrap_or_else(|p| p.into_inner());
    let mut files: Vec<Value> = uploads
        .iter()
        .filter(|(_, u)| u.bytes.len() as u64 == u.length)
        .filter(|(_, u)| u.metadata.get("clientKey").map(String::as_str) == Some(client_id))
        .map(|(id, u)| {
            json!({
                "id": id,
                "fileName": u.metadata.get("filename").cloned().unwrap_or_else(|| id.clone()),
                "fileSize": u.length,
                "mimeType": u.metadata.get("filetype").cloned().unwrap_or_else(|| "application/octet-stream".into()),
                "downloadUrl": format!("{base}/v1/uploads/{id}"),
                "dateCreated": u.created,
            })
        })
        .collect();
    files.sort_by(|a, b| a["dateCreated"].as_str().cmp(&b["dateCreated"].as_str()));
    files
}

const TUS_VERSION: &str = "1.0.0";

/// A tus answer: its status, `Tus-Resumable`, and `extra` headers.
fn tus(status: StatusCode, extra: &[(&'static str, String)]) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-resumable", TUS_VERSION.parse().expect("header"));
    headers.insert("cache-control", "no-store".parse().expect("header"));
    for (name, value) in extra {
        if let Ok(value) = value.parse() {
            headers.insert(*name, value);
        }
    }
    response
}

fn header_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs.
fn parse_metadata(raw: &str) -> Option<HashMap<String, String>> {
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let mut parts = pair.trim().splitn(2, ' ');
            let key = parts.next()?.to_owned();
            let value = match parts.next() {
                Some(encoded) => String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?,
                None => String::new(),
            };
            Some((key, value))
        })
        .collect()
}

/// `OPTIONS /v1/uploads`: what this tus server supports.
async fn tus_options(State(platform): State<Arc<Platform>>) -> Response {
    tus(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", TUS_VERSION.into()),
            ("tus-extension", "creation".into()),
            ("tus-max-size", platform.max_upload_bytes.to_string()),
        ],
    )
}

/// `POST /v1/uploads`: creates an upload; `Location` is relative, as tus allows.
async fn tus_create(State(platform): State<Arc<Platform>>, headers: HeaderMap) -> Response {
    if header_of(&headers, "tus-resumable") != Some(TUS_VERSION) {
        return tus(
            StatusCode::PRECONDITION_FAILED,
            &[("tus-version", TUS_VERSION.into())],
        );
    }
    let Some(length) = header_of(&headers, "upload-length").and_then(|v| v.parse::<u64>().ok())
    else {
        return tus(StatusCode::BAD_REQUEST, &[]);
    };
    if length > platform.max_upload_bytes {
        return tus(StatusCode::PAYLOAD_TOO_LARGE, &[]);
    }
    let Some(metadata) = parse_metadata(header_of(&headers, "upload-metadata").unwrap_or_default())
    else {
        return tus(StatusCode::BAD_REQUEST, &[]);
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    platform
        .uploads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            id.clone(),
            Received {
                length,
                metadata,
                bytes: Vec::new(),
                created: iso8601(now),
            },
        );
    // A relative Location, as tus allows: the client resolves it against the endpoint.
    tus(
        StatusCode::CREATED,
        &[("location", format!("/v1/uploads/{id}"))],
    )
}

/// Milliseconds since the epoch as an RFC 3339 UTC instant.
fn iso8601(millis: i64) -> String {
    let (days, rest) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1_000 % 60,
        rest % 1_000
    )
}

/// `HEAD /v1/uploads/{id}`: the offset to resume from.
async fn tus_head(State(platform): State<Arc<Platform>>, Path(id): Path<String>) -> Response {
    let uploads = platform.uploads.lock().unwrap_or_else(|p| p.into_inner());
    match uploads.get(&id) {
        Some(upload) => tus(
            StatusCode::OK,
            &[
                ("upload-offset", upload.bytes.len().to_string()),
                ("upload-length", upload.length.to_string()),
            ],
        ),
        None => tus(StatusCode::NOT_FOUND, &[]),
    }
}

/// `PATCH /v1/uploads/{id}`: appends a chunk sent at the current offset.
async fn tus_patch(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if header_of(&headers, "tus-resumable") != Some(TUS_VERSION) {
        return tus(
            StatusCode::PRECONDITION_FAILED,
            &[("tus-version", TUS_VERSION.into())],
        );
    }
    if header_of(&headers, "content-type") != Some("application/offset+octet-stream") {
        return tus(StatusCode::UNSUPPORTED_MEDIA_TYPE, &[]);
    }
    let offset = header_of(&headers, "upload-offset").and_then(|v| v.parse::<u64>().ok());
    let mut uploads = platform.uploads.lock().unwrap_or_else(|p| p.into_inner());
    let Some(upload) = uploads.get_mut(&id) else {
        return tus(StatusCode::NOT_FOUND, &[]);
    };
    if offset != Some(upload.bytes.len() as u64) {
        return tus(StatusCode::CONFLICT, &[]);
    }
    if upload.bytes.len() as u64 + body.len() as u64 > upload.length {
        return tus(StatusCode::PAYLOAD_TOO_LARGE, &[]);
    }
    upload.bytes.extend_from_slice(&body);
    tus(
        StatusCode::NO_CONTENT,
        &[("upload-offset", upload.bytes.len().to_string())],
    )
}

/// `GET /v1/uploads/{id}`: a finished upload's bytes (the `downloadUrl` of a received file).
async fn tus_get(State(platform): State<Arc<Platform>>, Path(id): Path<String>) -> Response {
    let uploads = platform.uploads.lock().unwrap_or_else(|p| p.into_inner());
    match uploads.get(&id) {
        Some(upload) if upload.bytes.len() as u64 == upload.length => {
            let kind = upload
                .metadata
                .get("filetype")
                .cloned()
                .unwrap_or_else(|| "application/octet-stream".into());
            ([("content-type", kind)], upload.bytes.clone()).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "no such finished upload"),
    }
}

fn router(platform: Arc<Platform>) -> Router {
    let body_limit = usize::try_from(platform.max_upload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/verify", get(verify))
        .route("/v1/clients", get(clients))
        .route("/v1/clients/{id}", get(client))
        .route("/v1/clients/{id}/files", get(files))
        .route("/files/{id}", get(file_bytes))
        .route("/v1/uploads", post(tus_create).options(tus_options))
        .route(
            "/v1/uploads/{id}",
            get(tus_get).head(tus_head).patch(tus_patch),
        )
        .layer(DefaultBodyLimit::max(body_limit))
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
        max_upload_bytes: args.max_upload_bytes,
        uploads: Mutex::default(),
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
