//! The port through which files' bytes are kept: artifacts' bytes (downloaded by the worker or
//! sent with `PUT /uploads/artifacts/{id}`) and the inline bytes of an upload waiting to be sent.
//! `taxbridge-blobs` implements it over local files or an S3-compatible bucket. The services
//! that use it ([`crate::imports::Imports`], [`crate::uploads::Uploads`]) decide the key and
//! what is recorded once the bytes are in; the port only streams, counts and hashes.

use async_trait::async_trait;
use std::pin::Pin;

/// Bytes as they arrive, from a file server, a request body or memory. An `Err` item is the
/// source failing (the transfer broke off), not the store.
pub type ByteChunks =
    Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send>>;

/// What a finished write holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobWriteError {
    /// More than the cap arrived; nothing was kept.
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The byte source failed (the download or the request body); nothing was kept.
    #[error("{0}")]
    Source(String),
    /// The store itself failed. Never shown to callers as is.
    #[error("the blob store failed: {0}")]
    Store(String),
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `bytes` into the blob `key` (replacing one there), refusing more than `cap`
    /// bytes. On any failure no blob appears under `key`.
    async fn put(&self, key: &str, bytes: ByteChunks, cap: u64) -> Result<Written, BlobWriteError>;

    /// Succeeds when the store answers (a missing object is an answer), within a few seconds:
    /// what `/readyz` asks. The error says what failed, without credentials.
    async fn check(&self) -> Result<(), String>;
}

/// `bytes` as a one-chunk stream.
pub fn chunks_of(bytes: Vec<u8>) -> ByteChunks {
    Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]))
}
