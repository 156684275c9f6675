//! The tus client against the official tus server (npm `@tus/server` with `@tus/file-store`,
//! started by `scripts/test-tus.sh`), directly and through a fault-injecting proxy. Skipped
//! when no server is named, except under CI (`CI` set), where that is a failure.

mod common;
use bytes::Bytes;
use common::Memory;
use sha2::Digest;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use taxbridge_outbound::{
    tus::{encode_metadata, Chunks, TusClient, TusError, TusUpload},
    Egress, EgressSettings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use taxbridge_testkit::tus_server as server;

fn client() -> TusClient {
    TusClient::new(
        Egress::new(EgressSettings {
            allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
            ..EgressSettings::default()
        })
        .expect("egress"),
    )
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 256) as u8).collect()
}

fn spec(endpoint: &str, length: usize) -> TusUpload {
    TusUpload {
        endpoint: endpoint.to_owned(),
        length: length as u64,
        metadata: encode_metadata(&[
            ("filename", "return-2024.pdf"),
            ("filetype", "application/pdf"),
            ("clientKey", "client-42"),
        ]),
        chunk_size: 256 * 1024,
        attempts: 5,
        first_retry: Duration::from_millis(50),
    }
}

/// The stored bytes and metadata of the upload at `url`, as the tus file store keeps them.
fn stored(dir: &std::path::Path, url: &url::Url) -> (Vec<u8>, serde_json::Value) {
    let id = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .expect("id");
    let bytes = std::fs::read(dir.join(id)).expect("stored file");
    let info = std::fs::read_to_string(dir.join(format!("{id}.json"))).expect("info");
    (bytes, serde_json::from_str(&info).expect("json"))
}

#[tokio::test]
async fn a_file_arrives_byte_exact_with_its_metadata() {
    let Some((endpoint, dir)) = server() else {
        return;
    };
    let data = file(1_000_000);
    let offsets = Mutex::new(Vec::new());
    let url = client()
        .upload(
            &spec(&endpoint, data.len()),
            std::sync::Arc::new(Memory(data.clone())),
            None,
            &|_, at| offsets.lock().expect("lock").push(at),
        )
        .await
        .expect("upload");
    let (bytes, info) = stored(&dir, &url);
    assert_eq!(sha2::Sha256::digest(&bytes), sha2::Sha256::digest(&data));
    assert_eq!(info["metadata"]["filename"], "return-2024.pdf");
    assert_eq!(info["metadata"]["filetype"], "application/pdf");
    assert_eq!(info["metadata"]["clientKey"], "client-42");
    let offsets = offsets.into_inner().expect("offsets");
    assert_eq!(offsets.first(), Some(&0));
    assert_eq!(offsets.last(), Some(&(data.len() as u64)));
    assert!(offsets.len() >= 5, "sent in chunks: {offsets:?}");
}

/// A proxy to `upstream` that counts requests by method and, per `fault`, cuts the first PATCH
/// after half its bytes (`"cut"`) or answers the first two PATCHes 503 (`"503"`).
struct Proxy {
    port: u16,
    posts: AtomicUsize,
    heads: AtomicUsize,
    patches: AtomicUsize,
    others: AtomicUsize,
}

async fn proxy(upstream: std::net::SocketAddr, fault: &'static str) -> Arc<Proxy> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = Arc::new(Proxy {
        port: listener.local_addr().expect("addr").port(),
        posts: AtomicUsize::new(0),
        heads: AtomicUsize::new(0),
        patches: AtomicUsize::new(0),
        others: AtomicUsize::new(0),
    });
    let shared = proxy.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let proxy = shared.clone();
            tokio::spawn(async move {
                // One request per connection: read the head and the body it announces.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                let head_end = loop {
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match client.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match client.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let method = head
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let counter = match method.as_str() {
                    "POST" => &proxy.posts,
                    "HEAD" => &proxy.heads,
                    "PATCH" => &proxy.patches,
                    _ => &proxy.others,
                };
                let nth = counter.fetch_add(1, Ordering::SeqCst);
                // Rewrite the Host and the Connection so the upstream closes after answering.
                let head = head.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
                let mut upstream = tokio::net::TcpStream::connect(upstream)
                    .await
                    .expect("upstream");
                if method == "PATCH" && fault == "503" && nth < 2 {
                    let _ = client
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                if method == "PATCH" && fault == "cut" && nth == 0 {
                    // Half the body reaches the server; then both sides are cut.
                    let half = head_end + length / 2;
                    let _ = upstream.write_all(head.as_bytes()).await;
                    let _ = upstream.write_all(&buf[head_end..half]).await;
                    let _ = upstream.flush().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
                let _ = upstream.write_all(head.as_bytes()).await;
                let _ = upstream.write_all(&buf[head_end..]).await;
                let mut answer = Vec::new();
                let _ = upstream.read_to_end(&mut answer).await;
                let _ = client.write_all(&answer).await;
            });
        }
    });
    proxy
}

fn upstream_of(endpoint: &str) -> (std::net::SocketAddr, String) {
    let url = url::Url::parse(endpoint).expect("endpoint");
    let addr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    )
    .parse()
    .expect("addr");
    (addr, url.path().to_owned())
}

/// Uploads `len` bytes through a proxy with `fault`; the proxy, and whether the tus server
/// stored exactly those bytes. `None` when no tus server is named.
async fn upload_through(fault: &'static str, len: usize) -> Option<(Arc<Proxy>, bool)> {
    let (endpoint, dir) = server()?;
    let (upstream, path) = upstream_of(&endpoint);
    let proxy = proxy(upstream, fault).await;
    let through = format!("http://127.0.0.1:{}{path}", proxy.port);
    let data = file(len);
    let url = client()
        .upload(
            &spec(&through, len),
            std::sync::Arc::new(Memory(data.clone())),
            None,
            &|_, _| {},
        )
        .await
        .expect("upload");
    // The tus server names the upload on the host it was asked on (the proxy), so every
    // later request went through the proxy too.
    Some((proxy, stored(&dir, &url).0 == data))
}

#[tokio::test]
async fn a_patch_cut_mid_body_resumes_from_the_servers_offset() {
    let Some((proxy, exact)) = upload_through("cut", 700_000).await else {
        return;
    };
    assert!(exact, "the stored file is whole and exact");
    assert_eq!(proxy.posts.load(Ordering::SeqCst), 1, "never started over");
    assert!(
        proxy.heads.load(Ordering::SeqCst) >= 1,
        "the offset was asked with HEAD"
    );
}

#[tokio::test]
async fn a_server_that_fails_twice_then_accepts_gets_the_whole_file() {
    let Some((proxy, exact)) = upload_through("503", 300_000).await else {
        return;
    };
    assert!(exact, "the stored file is whole and exact");
    assert!(
        proxy.patches.load(Ordering::SeqCst) >= 4,
        "two refused, then the chunks"
    );
    assert_eq!(proxy.posts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_endpoint_on_a_refused_address_is_rejected_without_a_call() {
    let err = client()
        .upload(
            &spec("http://10.20.30.40/files", 10),
            std::sync::Arc::new(Memory(file(10))),
            None,
            &|_, _| {},
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(err, TusError::Rejected(ref m) if m.contains("10.20.30.40")),
        "{err}"
    );
}

/// A source that fails after its first MiB.
struct Failing;

#[async_trait::async_trait]
impl Chunks for Failing {
    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, String> {
        if offset >= taxbridge_outbound::tus::PIECE_BYTES as u64 {
            return Err("the stored file is gone".into());
        }
        Ok(Bytes::from(vec![1u8; len]))
    }
}

#[tokio::test]
async fn a_source_that_cannot_be_read_ends_the_upload_at_once() {
    let Some((endpoint, _)) = server() else {
        return;
    };
    let mut spec = spec(&endpoint, 3 * 1024 * 1024);
    spec.chunk_size = 3 * 1024 * 1024;
    let err = client()
        .upload(&spec, std::sync::Arc::new(Failing), None, &|_, _| {})
        .await
        .expect_err("the source failed");
    assert!(
        matches!(err, TusError::Source(ref m) if m.contains("gone")),
        "{err}"
    );
}
