//! Blob storage: where artifacts' bytes live. A folder under the data dir by default
//! (`<data_dir>/blobs`), or any S3-compatible store (`[blobs] url = "s3://bucket/prefix"`),
//! both through the `object_store` crate.
//!
//! Bytes arrive as a stream and leave as one: nothing here holds a whole file in memory. A
//! blob becomes visible only when it is complete: the local store writes to a staging file
//! and renames it into place; S3 makes a multipart upload visible only when it completes.
//! Writing the same key again replaces the blob whole, so a download retried after a crash
//! leaves one blob, never a half-written one or two.
//!
//! The blob store is the operator's infrastructure, reached at an address from the settings:
//! it does not go through the egress policy, which guards the addresses callers supply.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::{
    aws::AmazonS3Builder, local::LocalFileSystem, path::Path, GetOptions, GetRange, ObjectStore,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use std::{ops::Range, sync::Arc};

/// Where blobs go, as the operator sets it.
#[derive(Clone, Debug, Default)]
pub struct BlobSettings {
    /// `s3://bucket/prefix`, or `None` for the local folder.
    pub url: Option<String>,
    /// An S3-compatible endpoint, e.g. `http://127.0.0.1:8333` (none: AWS).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the blob store setting is not usable: {0}")]
    Settings(String),
    #[error("no blob is stored under this key")]
    NotFound,
    #[error("the requested range is not within the blob")]
    BadRange,
    #[error("the blob is larger than {0} bytes")]
    TooLarge(u64),
    /// The byte source failed (the download or the request body), not the store.
    #[error("{0}")]
    Source(String),
    #[error("the blob store failed: {0}")]
    Store(String),
}

fn store_error(err: object_store::Error) -> BlobError {
    match err {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => BlobError::Store(other.to_string()),
    }
}

/// The media type a blob is stored and served with, from a `Content-Type` header value: its
/// type without parameters, lowercased; `application/octet-stream` when there is none.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v.is_ascii())
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// What a finished write stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// A blob being read: its total size, the range sent, and the bytes of that range.
pub struct Reading {
    pub size: u64,
    pub range: Range<u64>,
    pub bytes: futures_util::stream::BoxStream<'static, Result<Bytes, BlobError>>,
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local store (none for S3, which drops an abandoned upload's parts by
    /// its own lifecycle rules).
    local_dir: Option<std::path::PathBuf>,
    prefix: Path,
    /// Bytes buffered per part of a multipart write (S3 parts must be at least 5 MiB).
    part_size: usize,
    description: String,
}

impl Blobs {
    /// The local folder `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(|err| {
            BlobError::Settings(format!(
                "cannot create the blob folder {}: {err}",
                dir.display()
            ))
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|err| BlobError::Settings(err.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            local_dir: Some(dir.to_owned()),
            prefix: Path::default(),
            part_size: 1024 * 1024,
            description: format!("local folder {}", dir.display()),
        })
    }

    /// The store the settings name; the local folder `default_dir` when they name none.
    pub fn from_settings(
        settings: &BlobSettings,
        default_dir: &std::path::Path,
    ) -> Result<Self, BlobError> {
        let Some(raw) = settings.url.as_deref().filter(|u| !u.is_empty()) else {
            return Self::local(default_dir);
        };
        let url = url::Url::parse(raw)
            .map_err(|err| BlobError::Settings(format!("blobs.url `{raw}`: {err}")))?;
        match url.scheme() {
            "s3" => {}
            "file" => {
                let dir = url.to_file_path().map_err(|()| {
                    BlobError::Settings(format!("blobs.url `{raw}` is not a local path"))
                })?;
                return Self::local(&dir);
            }
            other => {
                return Err(BlobError::Settings(format!(
                    "blobs.url `{raw}`: use s3://bucket/prefix or file:///path, not `{other}:`"
                )))
            }
        }
        let bucket = url.host_str().unwrap_or_default().to_owned();
        if bucket.is_empty() {
            return Err(BlobError::Settings(format!(
                "blobs.url `{raw}` names no bucket (s3://bucket/prefix)"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|err| BlobError::Settings(err.to_string()))?;
        let prefix = Path::from(url.path().trim_matches('/'));
        Ok(Self {
            store: Arc::new(store),
            local_dir: None,
            description: format!("s3://{bucket}/{prefix}"),
            prefix,
            part_size: 5 * 1024 * 1024,
        })
    }

    /// Where blobs go, for the start-up log (never a credential).
    pub fn describe(&self) -> &str {
        &self.description
    }

    fn path(&self, key: &str) -> Path {
        let key = Path::from(key);
        if self.prefix.as_ref().is_empty() {
            key
        } else {
            Path::from_iter(self.prefix.parts().chain(key.parts()))
        }
    }

    /// Streams `bytes` into the blob `key`, hashing as they pass, and refuses more than `cap`
    /// bytes. On any failure the partial upload is abandoned and no blob appears.
    pub async fn write<S, E>(&self, key: &str, bytes: S, cap: u64) -> Result<Written, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let upload = self
            .store
            .put_multipart(&self.path(key))
            .await
            .map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut bytes = std::pin::pin!(bytes);
        let failure = loop {
            let chunk = match bytes.next().await {
                None => break None,
                Some(Err(err)) => break Some(BlobError::Source(err.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            size += chunk.len() as u64;
            if size > cap {
                break Some(BlobError::TooLarge(cap));
            }
            hasher.update(&chunk);
            // At most two parts in flight: memory stays at a few parts whatever the size.
            if let Err(err) = writer.wait_for_capacity(2).await {
                break Some(store_error(err));
            }
            // Handed over as it came, not copied: copying into fresh small blocks that the
            // blocking writer threads then free kept ~50 MiB more resident under mimalloc
            // at 800 MiB/s (bench/imports.sh's 1 GiB case).
            writer.put(chunk);
        };
        if let Some(err) = failure {
            let _ = writer.abort().await;
            return Err(err);
        }
        writer.finish().await.map_err(store_error)?;
        Ok(Written {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Reads the blob `key`, or the byte range `range` of it (`start..end`, end exclusive;
    /// clipped to the blob's size).
    pub async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Reading, BlobError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(|err| match err {
                object_store::Error::NotFound { .. } => BlobError::NotFound,
                object_store::Error::Generic { source, .. }
                    if source.to_string().contains("range") =>
                {
                    BlobError::BadRange
                }
                other => store_error(other),
            })?;
        let size = got.meta.size;
        let range = got.range.clone();
        let bytes = got.into_stream().map(|r| r.map_err(store_error)).boxed();
        Ok(Reading { size, range, bytes })
    }

    /// The bytes `range` of the blob `key`, read at once (one read for a local file, one
    /// ranged GET for S3): for a caller that wants pieces of a known size, such as a tus upload.
    pub async fn read_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BlobError> {
        self.store
            .get_range(&self.path(key), range)
            .await
            .map_err(|err| match err {
                object_store::Error::NotFound { .. } => BlobError::NotFound,
                other => store_error(other),
            })
    }

    /// The size of the blob `key`.
    pub async fn size(&self, key: &str) -> Result<u64, BlobError> {
        Ok(self
            .store
            .head(&self.path(key))
            .await
            .map_err(store_error)?
            .size)
    }

    /// Deletes the staging files of local uploads that a killed process abandoned: files named
    /// `<blob>#<n>` (object_store's staging name) untouched for `idle`. A blob is renamed into
    /// place only once complete, so a staging file is never served; this only frees its space.
    /// Returns how many were removed.
    pub fn sweep_abandoned(&self, idle: std::time::Duration) -> usize {
        fn walk(dir: &std::path::Path, idle: std::time::Duration) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            let mut removed = 0;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    removed += walk(&path, idle);
                    continue;
                }
                let staged = entry.file_name().to_string_lossy().contains('#');
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= idle);
                if staged && stale && std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
            removed
        }
        self.local_dir.as_deref().map_or(0, |dir| walk(dir, idle))
    }

    /// Removes the blob `key` if it exists.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(store_error(err)),
        }
    }
}

/// The domain's port for keeping bytes: every service that stores a file goes through it.
#[async_trait::async_trait]
impl taxbridge_domain::blobs::BlobStore for Blobs {
    async fn put(
        &self,
        key: &str,
        bytes: taxbridge_domain::blobs::ByteChunks,
        cap: u64,
    ) -> Result<taxbridge_domain::blobs::Written, taxbridge_domain::blobs::BlobWriteError> {
        use taxbridge_domain::blobs::BlobWriteError;
        match self.write(key, bytes, cap).await {
            Ok(written) => Ok(taxbridge_domain::blobs::Written {
                size: written.size,
                sha256: written.sha256,
            }),
            Err(BlobError::TooLarge(cap)) => Err(BlobWriteError::TooLarge(cap)),
            Err(BlobError::Source(message)) => Err(BlobWriteError::Source(message)),
            Err(other) => Err(BlobWriteError::Store(other.to_string())),
        }
    }

    async fn check(&self) -> Result<(), String> {
        // A HEAD of a name no blob has: "not found" is the store answering. Bounded, because
        // object_store retries an unreachable endpoint for minutes.
        let probe = self.path(".taxbridge-readiness");
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.head(&probe)).await {
            Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(err)) => Err(format!("{}: {err}", self.description)),
            Err(_) => Err(format!(
                "{} did not answer within {} s",
                self.description,
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}

/// How long a readiness check waits for the store.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, String>> {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    async fn collect(reading: Reading) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = reading.bytes;
        while let Some(chunk) = bytes.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }

    #[tokio::test]
    async fn a_streamed_write_is_hashed_and_read_back_whole_or_by_range() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Blobs::local(dir.path()).expect("blobs");
        let written = blobs
            .write("a/b", chunks(vec![b"hello ", b"world"]), 100)
            .await
            .expect("write");
        assert_eq!(written.size, 11);
        assert_eq!(
            written.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            collect(blobs.read("a/b", None).await.expect("read")).await,
            b"hello world"
        );
        let part = blobs.read("a/b", Some(6..11)).await.expect("range");
        assert_eq!((part.size, part.range.clone()), (11, 6..11));
        assert_eq!(collect(part).await, b"world");
        assert!(matches!(
            blobs.read("a/missing", None).await,
            Err(BlobError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_failed_or_oversized_write_leaves_no_blob_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Blobs::local(dir.path()).expect("blobs");
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"partial")),
            Err("connection reset".to_owned()),
        ]);
        let err = blobs.write("k", failing, 100).await.expect_err("fails");
        assert!(
            matches!(err, BlobError::Source(ref m) if m == "connection reset"),
            "{err}"
        );
        assert!(matches!(blobs.size("k").await, Err(BlobError::NotFound)));

        blobs
            .write("k", chunks(vec![b"first"]), 100)
            .await
            .expect("write");
        let err = blobs
            .write("k", chunks(vec![b"0123456789", b"0123456789"]), 15)
            .await
            .expect_err("too large");
        assert!(matches!(err, BlobError::TooLarge(15)));
        assert_eq!(
            collect(blobs.read("k", None).await.expect("read")).await,
            b"first"
        );
        // No staging file is left beside the blob.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["k".to_owned()], "{names:?}");
    }

    #[test]
    fn abandoned_staging_files_are_swept_and_blobs_are_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Blobs::local(dir.path()).expect("blobs");
        std::fs::create_dir_all(dir.path().join("w/a")).expect("dirs");
        std::fs::write(dir.path().join("w/a/art_1"), b"complete").expect("blob");
        std::fs::write(dir.path().join("w/a/art_2#1"), b"half").expect("staging");
        assert_eq!(
            blobs.sweep_abandoned(std::time::Duration::from_secs(3600)),
            0,
            "too recent"
        );
        assert_eq!(blobs.sweep_abandoned(std::time::Duration::ZERO), 1);
        assert!(dir.path().join("w/a/art_1").exists());
        assert!(!dir.path().join("w/a/art_2#1").exists());
    }

    #[test]
    fn media_types_drop_parameters_and_default_to_octet_stream() {
        assert_eq!(
            media_type(Some("Application/PDF; charset=binary")),
            "application/pdf"
        );
        assert_eq!(media_type(Some(" ")), "application/octet-stream");
        assert_eq!(media_type(None), "application/octet-stream");
    }

    #[test]
    fn settings_name_what_is_wrong() {
        let dir = tempfile::tempdir().expect("dir");
        for (url, says) in [
            ("gs://bucket/x", "use s3://bucket/prefix"),
            ("s3:///prefix", "names no bucket"),
            ("not a url", "blobs.url"),
        ] {
            let settings = BlobSettings {
                url: Some(url.into()),
                ..BlobSettings::default()
            };
            let err = Blobs::from_settings(&settings, dir.path())
                .err()
                .expect("refused");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
    }
}
