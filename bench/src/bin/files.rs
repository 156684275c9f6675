//! The import benchmark's file server: `GET /f/{n}` answers 10 KiB (different for each `n`),
//! `GET /big` a file of `BIG_BYTES` bytes (default 1 GiB) streamed from memory, and
//! `GET /v1/verify` accepts every firm (so a connection to it can be collected), and
//! `PUT /sink` reads a body of any size and keeps nothing (the plain HTTP sink the tus upload
//! benchmark compares with `curl -T`).
//!   files 127.0.0.1:9100

use axum::{body::Body, extract::Path, routing::get, Json, Router};
use serde_json::json;

const SMALL: usize = 10 * 1024;
const CHUNK: usize = 256 * 1024;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn small(Path(n): Path<usize>) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let body = (0..SMALL)
        .map(|i| (i.wrapping_mul(n | 1) >> 2) as u8)
        .collect();
    ([("content-type", "application/pdf")], body)
}

async fn big() -> axum::response::Response {
    let total: u64 = std::env::var("BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let chunk = bytes::Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let take = (total - sent).min(CHUNK as u64) as usize;
            Some((
                Ok::<_, std::io::Error>(chunk.slice(..take)),
                sent + take as u64,
            ))
        }
    });
    axum::response::Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", total)
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

async fn sink(body: Body) -> String {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        total += chunk.len();
    }
    format!("{total}\n")
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let app = Router::new()
        .route("/f/{n}", get(small))
        .route("/big", get(big))
        .route("/sink", axum::routing::put(sink))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .route(
            "/v1/verify",
            get(|| async { Json(json!({ "firmId": "bench", "firmName": "Bench CPA" })) }),
        );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|err| panic!("cannot listen on {addr}: {err}"));
    println!("listening on {addr}");
    let _ = axum::serve(listener, app).await;
}
