//! The download task: fetch a push-import artifact's `url` into blob storage.
//!
//! Every fetch goes through the egress policy. The connection's credentials
//! (`Authorization: Bearer <apiKey>`, `X-Security-Token`) are sent only to the origin of the
//! connection's base URL, on the first request and on any redirect that stays there. The body
//! streams into the blob store, hashed on the way, capped at [`DownloadSettings::max_bytes`].
//!
//! Transient failures (5xx, 429, timeouts, resets) are retried in the task with exponential
//! backoff and jitter: first after about [`DownloadSettings::first_retry`], doubling, for
//! [`DownloadSettings::attempts`] attempts in all; a `Retry-After` is honoured (up to a
//! minute). Other 4xx answers and refused URLs fail at once. The outcome, `success` with size,
//! sha256 and type or `error` with `{code, message, httpStatus}`, is recorded together with the
//! end of the task.
//!
//! Our own faults are not the file's: while the blob store cannot take the bytes, the download
//! waits and tries again (every [`STORAGE_WAIT_MAX`] at most, for as long as it takes, spending
//! no attempt), and an outcome the database cannot record yet is recorded again once it
//! answers. Neither ever marks an artifact failed.

use crate::{Handler, Outcome, WorkerMetrics, MAX_CLAIMS};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::{sync::Arc, time::Duration};
use taxbridge_domain::{
    audit::Who,
    blobs::BlobWriteError,
    connections::Connections,
    ids::ArtifactId,
    imports::{Artifact, ArtifactOutcome, Imports, StoredBytes},
    platform::PlatformAccess,
    tasks::{Owner, Task, TaskKind},
};
use taxbridge_outbound::{header, Egress, EgressError, Url};

#[derive(Clone, Debug)]
pub struct DownloadSettings {
    /// Largest file accepted (default 1 GiB).
    pub max_bytes: u64,
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the first retry; each next one doubles.
    pub first_retry: Duration,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024 * 1024,
            attempts: 6,
            first_retry: Duration::from_secs(1),
        }
    }
}

/// How often a running download checks that its artifact still waits for it.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// The longest wait between tries while the blob store or the database cannot be reached.
pub const STORAGE_WAIT_MAX: Duration = Duration::from_secs(5);

/// How long an outcome is tried again while the database cannot be reached, before the task is
/// handed back (its lease lapses meanwhile anyway, and the download is redone).
const RECORD_PATIENCE: Duration = Duration::from_secs(60);

pub struct DownloadHandler {
    imports: Arc<Imports>,
    connections: Arc<Connections>,
    egress: Egress,
    settings: DownloadSettings,
    metrics: WorkerMetrics,
}

impl DownloadHandler {
    pub fn new(
        imports: Arc<Imports>,
        connections: Arc<Connections>,
        egress: Egress,
        settings: DownloadSettings,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            imports,
            connections,
            egress,
            settings,
            metrics,
        }
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    code: &'static str,
    message: String,
    http_status: Option<u16>,
    transient: bool,
    retry_after: Option<Duration>,
    /// Our side failed (the blob store), not the file's server: tried again without limit and
    /// without spending an attempt.
    ours: bool,
}

impl Failure {
    fn permanent(code: &'static str, message: String, http_status: Option<u16>) -> Self {
        Self {
            code,
            message,
            http_status,
            transient: false,
            retry_after: None,
            ours: false,
        }
    }

    fn transient(code: &'static str, message: String, http_status: Option<u16>) -> Self {
        Self {
            transient: true,
            ..Self::permanent(code, message, http_status)
        }
    }

    fn outcome(self) -> ArtifactOutcome {
        ArtifactOutcome::Error {
            code: self.code.to_owned(),
            message: self.message,
            http_status: self.http_status,
        }
    }
}

fn egress_failure(err: EgressError) -> Failure {
    match err {
        EgressError::BadUrl { .. }
        | EgressError::Scheme { .. }
        | EgressError::Refused { .. }
        | EgressError::NotPublic { .. } => Failure::permanent("URL_REFUSED", err.to_string(), None),
        EgressError::TooManyRedirects => {
            Failure::permanent("TOO_MANY_REDIRECTS", err.to_string(), None)
        }
        EgressError::CrossOrigin { .. } => {
            Failure::permanent("CROSS_ORIGIN_REDIRECT", err.to_string(), None)
        }
        EgressError::TooSlow(_) => Failure::transient("TOO_SLOW", err.to_string(), None),
        EgressError::TooLarge(_) => Failure::permanent("TOO_LARGE", err.to_string(), None),
        EgressError::Timeout(_) => Failure::transient("TIMEOUT", err.to_string(), None),
        EgressError::Connect(_) | EgressError::Other(_) => {
            Failure::transient("UNREACHABLE", err.to_string(), None)
        }
    }
}

/// The origin (scheme, host, port) of a URL, for comparing where credentials may go.
fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

fn headers_for(access: Option<&PlatformAccess>, url: &Url) -> header::HeaderMap {
    let mut headers = header::HeaderMap::new();
    let Some(access) = access else { return headers };
    let on_base = access
        .base_url
        .as_deref()
        .and_then(|base| Url::parse(base).ok())
        .is_some_and(|base| origin(&base) == origin(url));
    if !on_base {
        return headers;
    }
    if let Some(value) = access
        .api_key
        .as_deref()
        .and_then(|k| header::HeaderValue::from_str(&format!("Bearer {k}")).ok())
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    if let Some(value) = access
        .security_token
        .as_deref()
        .and_then(|t| header::HeaderValue::from_str(t).ok())
    {
        headers.insert("x-security-token", value);
    }
    if let Ok(value) = header::HeaderValue::from_str(&access.workspace_id) {
        headers.insert("x-taxbridge-workspace", value);
    }
    headers
}

/// `Retry-After` in seconds (the HTTP-date form is rare for 429/503 and read as absent).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

impl DownloadHandler {
    /// One attempt: fetch and store. The blob key is the artifact's own, so an attempt after
    /// a failed or interrupted one replaces, never adds.
    async fn attempt(
        &self,
        artifact: &Artifact,
        url: &str,
        access: Option<&PlatformAccess>,
    ) -> Result<StoredBytes, Failure> {
        let opened = self
            .egress
            .open(url, &|u: &Url| headers_for(access, u))
            .await
            .map_err(egress_failure)?;
        let status = opened.status.as_u16();
        if !opened.status.is_success() {
            let message = format!("the file's server answered HTTP {status}");
            return Err(if status == 429 || opened.status.is_server_error() {
                Failure {
                    retry_after: retry_after(&opened.headers),
                    ..Failure::transient("HTTP_ERROR", message, Some(status))
                }
            } else {
                Failure::permanent("HTTP_ERROR", message, Some(status))
            });
        }
        if opened
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > self.settings.max_bytes)
        {
            return Err(Failure::permanent(
                "TOO_LARGE",
                format!("the file is larger than {} bytes", self.settings.max_bytes),
                Some(status),
            ));
        }
        let mime_type = taxbridge_blobs::media_type(
            opened
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        // A file server slower than the floor rate fails for good: trying again would hold a
        // worker just as long.
        let too_slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = too_slow.clone();
        let body = Box::pin(opened.into_stream().map(move |chunk| {
            chunk.map_err(|err| {
                if matches!(err, EgressError::TooSlow(_)) {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                err.to_string()
            })
        }));
        match self
            .imports
            .store_bytes(artifact, body, self.settings.max_bytes, mime_type)
            .await
        {
            Ok(stored) => Ok(stored),
            Err(BlobWriteError::TooLarge(cap)) => Err(Failure::permanent(
                "TOO_LARGE",
                format!("the file is larger than {cap} bytes"),
                Some(status),
            )),
            Err(BlobWriteError::Source(message))
                if too_slow.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Err(Failure::permanent(
                    "TOO_SLOW",
                    format!("the download was given up: {message}"),
                    Some(status),
                ))
            }
            Err(BlobWriteError::Source(message)) => Err(Failure::transient(
                "INTERRUPTED",
                format!("the download broke off: {message}"),
                Some(status),
            )),
            Err(other @ BlobWriteError::Store(_)) => Err(Failure {
                ours: true,
                ..Failure::transient("STORAGE_ERROR", other.to_string(), None)
            }),
        }
    }

    async fn record(
        &self,
        task: &Task,
        owner: &Owner,
        artifact: &Artifact,
        outcome: ArtifactOutcome,
    ) -> Outcome {
        match &outcome {
            ArtifactOutcome::Success(stored) => {
                self.metrics.downloads.with_label_values(&["success"]).inc();
                self.metrics.download_bytes.inc_by(stored.size);
            }
            ArtifactOutcome::Error { code, .. } => {
                self.metrics.downloads.with_label_values(&["error"]).inc();
                self.metrics
                    .download_failures
                    .with_label_values(&[code.as_str()])
                    .inc();
            }
        }
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            match self
                .imports
                .record(artifact, &outcome, Some((&task.id, owner)), &Who::system())
                .await
            {
                Ok(recorded) => {
                    if !recorded {
                        tracing::info!(task = %task.id, "outcome not recorded: the artifact or the lease moved on");
                    }
                    return Outcome::Finished;
                }
                // The bytes are stored: waiting for the database beats downloading again.
                Err(err) if err.is_unavailable() && started.elapsed() < RECORD_PATIENCE => {
                    tracing::warn!(task = %task.id, error = %err, "could not record a download's outcome yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(STORAGE_WAIT_MAX);
                }
                Err(err) => return Outcome::RetryAfter(self.settings.first_retry, err.to_string()),
            }
        }
    }
}

#[async_trait]
impl Handler for DownloadHandler {
    fn kind(&self) -> TaskKind {
        TaskKind::Download
    }

    async fn run(&self, task: &Task, owner: &Owner) -> Outcome {
        let id = ArtifactId::from_string(task.subject.clone());
        let artifact = match self.imports.awaiting_bytes(&id).await {
            Ok(Some(a)) => a,
            // Gone, finished or terminated meanwhile: nothing is left to do.
            Ok(None) => return Outcome::Gone,
            Err(err) => return Outcome::RetryAfter(self.settings.first_retry, err.to_string()),
        };
        let Some(url) = artifact.url.clone() else {
            return Outcome::Gone;
        };
        if task.attempts > MAX_CLAIMS {
            let failure = Failure::permanent(
                "INTERRUPTED",
                format!("the download was interrupted {MAX_CLAIMS} times; add the artifact again to retry"),
                None,
            );
            return self.record(task, owner, &artifact, failure.outcome()).await;
        }
        let access = match self
            .connections
            .platform_access(
                &artifact.connection_id,
                Some((&Who::system(), "download", Some(artifact.job_id.as_str()))),
            )
            .await
        {
            Ok(access) => access,
            Err(err) => return Outcome::RetryAfter(self.settings.first_retry, err.to_string()),
        };
        let downloading = self.download(&artifact, &url, access.as_ref());
        // A cancelled job's artifacts are `terminated` (and their tasks gone): the download
        // watches for that and stops within half a second, on whichever node runs it.
        let watching = async {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                match self.imports.awaiting_bytes(&id).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(err) => {
                        tracing::debug!(artifact = %id, error = %err, "could not check an artifact's state")
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = downloading => outcome,
            () = watching => {
                tracing::info!(artifact = %id, "the artifact no longer waits (its job was cancelled); download stopped");
                return Outcome::Gone;
            }
        };
        self.record(task, owner, &artifact, outcome).await
    }
}

impl DownloadHandler {
    /// Attempts until one succeeds, one fails for good, or the attempts are spent.
    async fn download(
        &self,
        artifact: &Artifact,
        url: &str,
        access: Option<&PlatformAccess>,
    ) -> ArtifactOutcome {
        let id = &artifact.artifact_id;
        let mut delay = self.settings.first_retry;
        let mut attempt = 1;
        let mut storage_wait = Duration::from_millis(500);
        loop {
            match self.attempt(artifact, url, access).await {
                Ok(stored) => return ArtifactOutcome::Success(stored),
                Err(failure) if failure.ours => {
                    self.metrics
                        .download_failures
                        .with_label_values(&[failure.code])
                        .inc();
                    tracing::warn!(artifact = %id, error = %failure.message, wait_ms = storage_wait.as_millis() as u64, "the blob store cannot take the file; waiting for it");
                    tokio::time::sleep(storage_wait).await;
                    storage_wait = (storage_wait * 2).min(STORAGE_WAIT_MAX);
                }
                Err(failure) if !failure.transient || attempt >= self.settings.attempts => {
                    return failure.outcome()
                }
                Err(failure) => {
                    self.metrics
                        .download_failures
                        .with_label_values(&[failure.code])
                        .inc();
                    let jitter = rand::random::<f64>() * 0.4 + 0.8;
                    let wait = failure.retry_after.unwrap_or_else(|| delay.mul_f64(jitter));
                    tracing::info!(artifact = %id, attempt, code = failure.code, wait_ms = wait.as_millis() as u64, "download failed; retrying");
                    tokio::time::sleep(wait).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(base: &str) -> PlatformAccess {
        PlatformAccess {
            base_url: Some(base.into()),
            api_key: Some("k-123".into()),
            security_token: Some("t-456".into()),
            workspace_id: "wsp_1".into(),
            firm_reference: None,
        }
    }

    #[test]
    fn credentials_go_only_to_the_base_urls_origin() {
        let a = access("https://api.platform.example/v1");
        let on = headers_for(
            Some(&a),
            &Url::parse("https://API.platform.example/files/1").expect("url"),
        );
        assert_eq!(
            on.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer k-123")
        );
        assert_eq!(
            on.get("x-security-token").and_then(|v| v.to_str().ok()),
            Some("t-456")
        );
        for elsewhere in [
            "http://api.platform.example/files/1",
            "https://api.platform.example:8443/files/1",
            "https://cdn.platform.example/files/1",
        ] {
            let headers = headers_for(Some(&a), &Url::parse(elsewhere).expect("url"));
            assert!(headers.is_empty(), "{elsewhere}: {headers:?}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("86400"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(60)));
        headers.insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
