//! The S3 path against a real S3-compatible server (SeaweedFS, which checks SigV4 signatures),
//! started by `scripts/test-s3.sh`. Skipped when no server is named, except under CI (`CI`
//! set), where a missing server is a failure.

use bytes::Bytes;
use futures_util::StreamExt;
use taxbridge_blobs::{BlobError, BlobSettings, Blobs};

struct Server {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

fn server() -> Option<Server> {
    let var = |name: &str| std::env::var(format!("TAXBRIDGE_TEST_S3_{name}")).ok();
    match (var("ENDPOINT"), var("BUCKET"), var("KEY"), var("SECRET")) {
        (Some(endpoint), Some(bucket), Some(key), Some(secret)) => Some(Server {
            endpoint,
            bucket,
            key,
            secret,
        }),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TAXBRIDGE_TEST_S3_* must name an S3 server when CI is set (scripts/test-s3.sh)")
        }
        _ => {
            eprintln!("skipped: no S3 server (eval \"$(scripts/test-s3.sh start)\")");
            None
        }
    }
}

fn blobs(server: &Server, secret: &str, prefix: &str) -> Blobs {
    let dir = std::env::temp_dir();
    Blobs::from_settings(
        &BlobSettings {
            url: Some(format!("s3://{}/{prefix}", server.bucket)),
            endpoint: Some(server.endpoint.clone()),
            region: None,
            access_key_id: Some(server.key.clone()),
            secret_access_key: Some(secret.to_owned()),
        },
        &dir,
    )
    .expect("S3 blob store")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn read_all(blobs: &Blobs, key: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let reading = blobs.read(key, range).await.expect("read");
    let mut out = Vec::new();
    let mut bytes = reading.bytes;
    while let Some(chunk) = bytes.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

#[tokio::test]
async fn a_multipart_write_is_stored_hashed_and_read_back_by_range() {
    let Some(server) = server() else { return };
    let prefix = format!("test-{}", std::process::id());
    let store = blobs(&server, &server.secret, &prefix);
    // 11 MiB in 64 KiB chunks: three parts of the multipart upload.
    let data = pattern(11 * 1024 * 1024);
    let chunks: Vec<Result<Bytes, String>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let written = store
        .write(
            "a/file.bin",
            futures_util::stream::iter(chunks),
            64 * 1024 * 1024,
        )
        .await
        .expect("write");
    assert_eq!(written.size, data.len() as u64);
    use sha2::Digest;
    assert_eq!(written.sha256, hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(
        store.size("a/file.bin").await.expect("size"),
        data.len() as u64
    );
    assert_eq!(read_all(&store, "a/file.bin", None).await, data);
    assert_eq!(
        read_all(&store, "a/file.bin", Some(5_000_000..5_000_100)).await,
        data[5_000_000..5_000_100].to_vec()
    );
    store.delete("a/file.bin").await.expect("delete");
    assert!(matches!(
        store.size("a/file.bin").await,
        Err(BlobError::NotFound)
    ));
}

#[tokio::test]
async fn a_broken_write_leaves_no_object() {
    let Some(server) = server() else { return };
    let store = blobs(
        &server,
        &server.secret,
        &format!("broken-{}", std::process::id()),
    );
    let chunks: Vec<Result<Bytes, String>> = vec![
        Ok(Bytes::from(pattern(6 * 1024 * 1024))),
        Err("the source went away".into()),
    ];
    let err = store
        .write(
            "half.bin",
            futures_util::stream::iter(chunks),
            64 * 1024 * 1024,
        )
        .await
        .expect_err("the write fails");
    assert!(matches!(err, BlobError::Source(_)), "{err}");
    assert!(matches!(
        store.size("half.bin").await,
        Err(BlobError::NotFound)
    ));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_server() {
    let Some(server) = server() else { return };
    let store = blobs(&server, "not-the-secret-at-all", "wrong");
    let chunks = futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"x"))]);
    let err = store.write("x", chunks, 1024).await.expect_err("refused");
    assert!(matches!(err, BlobError::Store(_)), "{err}");
    assert!(!err.to_string().contains("not-the-secret-at-all"), "{err}");
}
