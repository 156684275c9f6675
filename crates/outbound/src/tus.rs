//! A tus 1.0.0 client (core protocol and the creation extension) on the project's reqwest,
//! through the egress policy: how the gateway sends a file to a partner's platform.
//!
//! - **create**: `POST <endpoint>` with `Upload-Length` and `Upload-Metadata`; the upload's URL
//!   is the `Location` answered, resolved against the endpoint when relative.
//! - **send**: `PATCH <upload>` with `Upload-Offset` and `Content-Type:
//!   application/offset+octet-stream`, one chunk at a time. A chunk's body streams from the
//!   source a piece ([`PIECE_BYTES`]) at a time, so a large chunk costs a piece of memory, not
//!   a chunk.
//! - **resume**: after a broken or failed `PATCH`, `HEAD <upload>` asks the server's offset and
//!   sending goes on from there. An upload that exists is never started over.
//!
//! Transient failures (a reset, a timeout, 5xx, 423) are retried with doubling backoff; a
//! retry that makes progress resets the count, and a round that does not advance the server's
//! offset counts as a failure. A `PATCH` must finish within the egress policy's rate floor
//! ([`crate::MinRate`]). Why write it: the Rust tus clients are blocking,
//! on reqwest 0.11, or unfinished 0.0.x releases, and the protocol is a few headers.

use crate::{Egress, EgressError};
use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use reqwest::{header, Method, StatusCode};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use url::Url;

const TUS_RESUMABLE: &str = "1.0.0";

/// Bytes read from the source at once while a chunk streams out.
pub const PIECE_BYTES: usize = 1024 * 1024;

/// Why an upload did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TusError {
    /// The endpoint or upload URL is one the gateway does not call, or the server refused the
    /// upload for good (a 4xx other than a conflict of offsets).
    #[error("{0}")]
    Rejected(String),
    /// The upload no longer exists on the server (404, 410).
    #[error("the upload is gone from the server (HTTP {0})")]
    Gone(u16),
    /// Transient failures went on past the retries.
    #[error("{0}")]
    GaveUp(String),
    /// The bytes to send could not be read.
    #[error("the file could not be read: {0}")]
    Source(String),
}

/// One failed request: whether another may succeed.
enum Failure {
    Transient(String),
    Final(TusError),
}

fn from_egress(err: EgressError) -> Failure {
    match err {
        EgressError::Timeout(_)
        | EgressError::Connect(_)
        | EgressError::Other(_)
        | EgressError::TooSlow(_) => Failure::Transient(err.to_string()),
        other => Failure::Final(TusError::Rejected(other.to_string())),
    }
}

fn from_status(status: StatusCode, doing: &str) -> Failure {
    let code = status.as_u16();
    match code {
        404 | 410 => Failure::Final(TusError::Gone(code)),
        423 | 429 => Failure::Transient(format!("{doing}: HTTP {code}")),
        _ if status.is_server_error() => Failure::Transient(format!("{doing}: HTTP {code}")),
        _ => Failure::Final(TusError::Rejected(format!(
            "{doing}: the tus server answered HTTP {code}"
        ))),
    }
}

/// `Upload-Metadata`: `key base64(value)` pairs, comma-separated.
pub fn encode_metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key} {}", STANDARD.encode(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// What to upload and how.
#[derive(Clone, Debug)]
pub struct TusUpload {
    pub endpoint: String,
    pub length: u64,
    /// Already encoded with [`encode_metadata`].
    pub metadata: String,
    pub chunk_size: usize,
    /// Failed requests in a row before giving up.
    pub attempts: u32,
    /// The wait before the first retry; each next one doubles.
    pub first_retry: Duration,
}

/// Where the bytes come from: any range, any number of times (a resumed upload reads again
/// from the server's offset).
#[async_trait::async_trait]
pub trait Chunks: Send + Sync + 'static {
    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, String>;
}

#[derive(Clone)]
pub struct TusClient {
    egress: Egress,
}

fn tus_headers() -> header::HeaderMap {
    let mut headers = header::HeaderMap::new();
    headers.insert(
        "tus-resumable",
        header::HeaderValue::from_static(TUS_RESUMABLE),
    );
    headers
}

fn offset_of(headers: &header::HeaderMap) -> Option<u64> {
    headers
        .get("upload-offset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl TusClient {
    pub fn new(egress: Egress) -> Self {
        Self { egress }
    }

    /// `POST endpoint`: creates the upload; its URL.
    async fn create(&self, upload: &TusUpload) -> Result<Url, Failure> {
        let endpoint = self.egress.check(&upload.endpoint).map_err(from_egress)?;
        let mut headers = tus_headers();
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(0u64));
        headers.insert("upload-length", header::HeaderValue::from(upload.length));
        if !upload.metadata.is_empty() {
            let value = header::HeaderValue::from_str(&upload.metadata)
                .map_err(|e| Failure::Final(TusError::Rejected(format!("metadata: {e}"))))?;
            headers.insert("upload-metadata", value);
        }
        let answer = self
            .egress
            .send(Method::POST, endpoint.as_str(), headers, None)
            .await
            .map_err(from_egress)?;
        if answer.status != StatusCode::CREATED {
            return Err(from_status(answer.status, "creating the upload"));
        }
        let location = answer
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Failure::Final(TusError::Rejected(
                    "the tus server created the upload but sent no Location".into(),
                ))
            })?;
        // Relative to the URL that answered: after a redirect, that is not the endpoint named.
        let url = answer.url.join(location).map_err(|e| {
            Failure::Final(TusError::Rejected(format!(
                "the Location `{location}`: {e}"
            )))
        })?;
        self.egress.check(url.as_str()).map_err(from_egress)
    }

    /// `HEAD upload`: the server's offset.
    async fn offset(&self, upload: &Url) -> Result<u64, Failure> {
        let answer = self
            .egress
            .send(Method::HEAD, upload.as_str(), tus_headers(), None)
            .await
            .map_err(from_egress)?;
        if !answer.status.is_success() {
            return Err(from_status(answer.status, "asking the upload's offset"));
        }
        offset_of(&answer.headers)
            .ok_or_else(|| Failure::Transient("the tus server sent no Upload-Offset".into()))
    }

    /// `PATCH upload` with the `len` bytes at `offset`, streamed from `source`: the server's
    /// new offset. A source that fails to read ends the upload (it is no transient failure).
    async fn patch(
        &self,
        upload: &Url,
        offset: u64,
        len: u64,
        source: &Arc<dyn Chunks>,
    ) -> Result<u64, Failure> {
        let mut headers = tus_headers();
        headers.insert("upload-offset", header::HeaderValue::from(offset));
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/offset+octet-stream"),
        );
        let unreadable: Arc<Mutex<Option<String>>> = Arc::default();
        let body = {
            let (source, unreadable) = (source.clone(), unreadable.clone());
            let end = offset + len;
            futures_util::stream::unfold(offset, move |at| {
                let (source, unreadable) = (source.clone(), unreadable.clone());
                async move {
                    if at >= end {
                        return None;
                    }
                    let piece = usize::try_from(end - at)
                        .unwrap_or(usize::MAX)
                        .min(PIECE_BYTES);
                    match source.read(at, piece).await {
                        Ok(bytes) => Some((Ok(bytes), at + piece as u64)),
                        Err(err) => {
                            *unreadable.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(err.clone());
                            Some((Err(std::io::Error::other(err)), end))
                        }
                    }
                }
            })
        };
        let sent = self
            .egress
            .send_streamed(Method::PATCH, upload.as_str(), headers, len, body)
            .await;
        if let Some(err) = unreadable.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Failure::Final(TusError::Source(err)));
        }
        let answer = sent.map_err(from_egress)?;
        match answer.status {
            StatusCode::NO_CONTENT | StatusCode::OK => offset_of(&answer.headers)
                .ok_or_else(|| Failure::Transient("the tus server sent no Upload-Offset".into())),
            // Our offset is not the server's: ask it, and go on from there.
            StatusCode::CONFLICT => Err(Failure::Transient("offsets differ".into())),
            status => Err(from_status(status, "sending a chunk")),
        }
    }

    /// Creates the upload (`POST`, retried like every request): its URL. A caller that must
    /// survive its own crash stores the URL before sending, then calls [`Self::upload`] with
    /// it as `resume`.
    pub async fn create_upload(&self, spec: &TusUpload) -> Result<Url, TusError> {
        let mut retry = Retry::new(spec);
        loop {
            match self.create(spec).await {
                Ok(url) => return Ok(url),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Transient(message)) => retry.wait(message).await?,
            }
        }
    }

    /// Sends the whole file, creating the upload unless `resume` names one; reports the
    /// upload's URL and each new offset through `progress`. Returns the upload's URL.
    pub async fn upload(
        &self,
        spec: &TusUpload,
        source: Arc<dyn Chunks>,
        resume: Option<Url>,
        progress: &(dyn Fn(&Url, u64) + Send + Sync),
    ) -> Result<Url, TusError> {
        let upload = match resume {
            Some(url) => url,
            None => self.create_upload(spec).await?,
        };
        let mut retry = Retry::new(spec);
        progress(&upload, 0);
        // A resumed upload asks where the server is; a new one starts at 0.
        let mut offset: Option<u64> = None;
        if spec.length == 0 {
            return Ok(upload);
        }
        loop {
            let at = match offset {
                Some(at) => at,
                None => match self.offset(&upload).await {
                    Ok(at) => at,
                    Err(Failure::Final(err)) => return Err(err),
                    Err(Failure::Transient(message)) => {
                        retry.wait(message).await?;
                        continue;
                    }
                },
            };
            if at >= spec.length {
                progress(&upload, at);
                return Ok(upload);
            }
            let len = (spec.length - at).min(spec.chunk_size.max(1) as u64);
            match self.patch(&upload, at, len, &source).await {
                Ok(next) if next > at => {
                    retry = Retry::new(spec);
                    progress(&upload, next);
                    offset = Some(next);
                }
                // The server took the chunk but did not move its offset: a round that makes no
                // progress counts as a failure, so a server that never advances ends the upload
                // after the usual attempts instead of taking chunks forever.
                Ok(_) => {
                    retry
                        .wait(
                            "the tus server accepted a chunk but its offset did not advance".into(),
                        )
                        .await?;
                    offset = None;
                }
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Transient(message)) => {
                    retry.wait(message).await?;
                    offset = None;
                }
            }
        }
    }
}

/// Failed requests in a row, and the wait before the next try.
struct Retry {
    failures: u32,
    attempts: u32,
    delay: Duration,
}

impl Retry {
    fn new(spec: &TusUpload) -> Self {
        Self {
            failures: 0,
            attempts: spec.attempts.max(1),
            delay: spec.first_retry,
        }
    }

    /// Waits before the next try, or gives up with `message` once the tries are spent.
    async fn wait(&mut self, message: String) -> Result<(), TusError> {
        self.failures += 1;
        if self.failures >= self.attempts {
            return Err(TusError::GaveUp(message));
        }
        tokio::time::sleep(self.delay).await;
        self.delay *= 2;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_base64_pairs() {
        assert_eq!(
            encode_metadata(&[("filename", "w2.pdf"), ("filetype", "application/pdf")]),
            "filename dzIucGRm,filetype YXBwbGljYXRpb24vcGRm"
        );
    }
}
