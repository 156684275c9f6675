//! The upload task: send a file to a provider's tus endpoint (`uploadConnectionFile`).
//!
//! The bytes are read from blob storage a chunk at a time ([`UploadSettings::chunk_bytes`]),
//! so a 1 GiB file costs one chunk of memory. The tus upload is created first and its URL
//! stored before any byte is sent; a worker killed mid-file leaves that URL behind, and the
//! next claim asks the server its offset (`HEAD`) and sends the rest. Only an upload the server
//! no longer has (404, 410) is created again. Progress (`uploading`, `bytesSent`) is recorded
//! about twice a second while the task's lease is held; the outcome is recorded together with
//! the end of the task.

use crate::{Handler, Outcome, MAX_CLAIMS};
use async_trait::async_trait;
use bytes::Bytes;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use taxbridge_blobs::Blobs;
use taxbridge_domain::{
    ids::UploadId,
    tasks::{Owner, Task, TaskKind},
    uploads::{Upload, Uploads},
};
use taxbridge_outbound::{
    tus::{encode_metadata, Chunks, TusClient, TusError, TusUpload},
    Url,
};

#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// Bytes sent per `PATCH` (default 64 MiB), streamed from storage a MiB at a time.
    pub chunk_bytes: usize,
    /// Failed requests in a row before the upload is recorded as failed.
    pub attempts: u32,
    /// The wait before the first retry; each next one doubles.
    pub first_retry: Duration,
    /// How often progress is written while a file is sent.
    pub progress_every: Duration,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            chunk_bytes: 64 * 1024 * 1024,
            attempts: 6,
            first_retry: Duration::from_secs(1),
            progress_every: Duration::from_millis(500),
        }
    }
}

pub struct UploadHandler {
    uploads: Arc<Uploads>,
    /// Read in ranges as the file is sent, and the inline bytes deleted once sent.
    blobs: Blobs,
    client: TusClient,
    settings: UploadSettings,
}

impl UploadHandler {
    pub fn new(
        uploads: Arc<Uploads>,
        blobs: Blobs,
        client: TusClient,
        settings: UploadSettings,
    ) -> Self {
        Self {
            uploads,
            blobs,
            client,
            settings,
        }
    }
}

/// A blob read by ranges, one ranged read per piece of a streamed chunk. `read_to` is how far
/// the upload has read: what it has sent, give or take the bytes in flight.
struct BlobChunks {
    blobs: Blobs,
    key: String,
    read_to: Arc<AtomicU64>,
}

#[async_trait]
impl Chunks for BlobChunks {
    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, String> {
        let chunk = self
            .blobs
            .read_range(&self.key, offset..offset + len as u64)
            .await
            .map_err(|err| err.to_string())?;
        if chunk.len() != len {
            return Err(format!(
                "the stored file ended after {} of {len} bytes at offset {offset}",
                chunk.len()
            ));
        }
        self.read_to.store(offset + len as u64, Ordering::Relaxed);
        Ok(chunk)
    }
}

impl UploadHandler {
    fn spec(&self, upload: &Upload) -> TusUpload {
        let mut metadata = vec![
            ("filename", upload.file_name.as_str()),
            ("clientKey", upload.client_key.as_str()),
        ];
        if let Some(content_type) = &upload.content_type {
            metadata.push(("filetype", content_type.as_str()));
        }
        TusUpload {
            endpoint: upload.tusd_endpoint.clone(),
            length: upload.total_bytes,
            metadata: encode_metadata(&metadata),
            chunk_size: self.settings.chunk_bytes,
            attempts: self.settings.attempts,
            first_retry: self.settings.first_retry,
        }
    }

    async fn finish(
        &self,
        upload: &Upload,
        task: &Task,
        owner: &Owner,
        error: Option<String>,
    ) -> Outcome {
        match self
            .uploads
            .finish(upload, error.as_deref(), (&task.id, owner))
            .await
        {
            Ok(true) => {
                if error.is_none() && upload.owns_blob() {
                    if let Err(err) = self.blobs.delete(&upload.blob_key).await {
                        tracing::warn!(upload = %upload.id, error = %err, "could not delete a sent upload's bytes");
                    }
                }
                Outcome::Finished
            }
            Ok(false) => {
                tracing::info!(task = %task.id, "outcome not recorded: the upload or the lease moved on");
                Outcome::Finished
            }
            Err(err) => Outcome::RetryAfter(self.settings.first_retry, err.to_string()),
        }
    }

    /// Sends the file: resumes the stored tus upload, or creates one (again, when the server
    /// no longer has it). `Err` says why it failed for good; `Ok(false)` means the lease was
    /// lost mid-file and another worker carries on.
    async fn send(&self, upload: &Upload, task: &Task, owner: &Owner) -> Result<bool, TusError> {
        let spec = self.spec(upload);
        if let Some(url) = upload
            .upload_url
            .as_deref()
            .and_then(|u| Url::parse(u).ok())
        {
            match self.send_to(&spec, upload, task, owner, url).await {
                Err(TusError::Gone(status)) => {
                    tracing::info!(upload = %upload.id, status, "the tus upload is gone from the server; creating it again");
                }
                other => return other,
            }
        }
        let url = self.client.create_upload(&spec).await?;
        // Stored before a byte is sent: from here on a crash resumes this upload.
        if !self.progress(upload, task, owner, url.as_str(), 0).await {
            return Ok(false);
        }
        self.send_to(&spec, upload, task, owner, url).await
    }

    /// Sends to the tus upload `url` from the server's offset, recording progress.
    async fn send_to(
        &self,
        spec: &TusUpload,
        upload: &Upload,
        task: &Task,
        owner: &Owner,
        url: Url,
    ) -> Result<bool, TusError> {
        let read_to = Arc::new(AtomicU64::new(0));
        let source = Arc::new(BlobChunks {
            blobs: self.blobs.clone(),
            key: upload.blob_key.clone(),
            read_to: read_to.clone(),
        });
        // The server's offset after each chunk; between them, how far the chunk has streamed.
        let acknowledged = AtomicU64::new(0);
        let on_progress = |_: &Url, n: u64| acknowledged.store(n, Ordering::Relaxed);
        let sending = self
            .client
            .upload(spec, source, Some(url.clone()), &on_progress);
        tokio::pin!(sending);
        let mut ticker = tokio::time::interval(self.settings.progress_every);
        let mut written = 0;
        loop {
            tokio::select! {
                outcome = &mut sending => return outcome.map(|_| true),
                _ = ticker.tick() => {
                    let now = acknowledged
                        .load(Ordering::Relaxed)
                        .max(read_to.load(Ordering::Relaxed))
                        .min(upload.total_bytes);
                    if now != written {
                        if !self.progress(upload, task, owner, url.as_str(), now).await {
                            return Ok(false);
                        }
                        written = now;
                    }
                }
            }
        }
    }

    async fn progress(
        &self,
        upload: &Upload,
        task: &Task,
        owner: &Owner,
        url: &str,
        sent: u64,
    ) -> bool {
        match self
            .uploads
            .record_progress(&upload.id, url, sent, (&task.id, owner))
            .await
        {
            Ok(held) => held,
            Err(err) => {
                // Progress is a report, not the outcome: a failed write is retried next tick.
                tracing::warn!(upload = %upload.id, error = %err, "could not record upload progress");
                true
            }
        }
    }
}

#[async_trait]
impl Handler for UploadHandler {
    fn kind(&self) -> TaskKind {
        TaskKind::Upload
    }

    async fn run(&self, task: &Task, owner: &Owner) -> Outcome {
        let id = UploadId::from_string(task.subject.clone());
        let upload = match self.uploads.awaiting_send(&id).await {
            Ok(Some(upload)) => upload,
            Ok(None) => return Outcome::Gone,
            Err(err) => return Outcome::RetryAfter(self.settings.first_retry, err.to_string()),
        };
        if task.attempts > MAX_CLAIMS {
            let error =
                format!("the upload was interrupted {MAX_CLAIMS} times; send the file again");
            return self.finish(&upload, task, owner, Some(error)).await;
        }
        match self.send(&upload, task, owner).await {
            Ok(true) => self.finish(&upload, task, owner, None).await,
            Ok(false) => Outcome::Finished,
            Err(err) => {
                tracing::info!(upload = %upload.id, error = %err, "upload failed");
                self.finish(&upload, task, owner, Some(err.to_string()))
                    .await
            }
        }
    }
}
