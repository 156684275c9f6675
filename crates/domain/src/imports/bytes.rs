//! Where bytes meet imports: storing an artifact's bytes (the worker's download and a client's
//! `PUT`), recording an artifact's outcome with the rule that settles its work and job, and the
//! operator's read of a job. The worker's identity is the task it holds; the operator's is the
//! command line.

use super::{
    model::*,
    port::{ImportStore, JobEvents},
    service::Imports,
};
use crate::words::Word;
use crate::{
    audit::{Action, Who},
    blobs::{BlobWriteError, ByteChunks},
    identity::Caller,
    ids::{ArtifactId, JobId, TaskId},
    tasks::Owner,
    time::Timestamp,
};
use std::sync::Arc;

impl Imports {
    /// Stores an artifact's bytes under its own blob key: the one way bytes arrive for an
    /// artifact, downloaded by the worker ([`Self::record`] follows) or sent by a client
    /// ([`Self::receive_bytes`]). A write after a failed or interrupted one replaces, never adds.
    pub async fn store_bytes(
        &self,
        artifact: &Artifact,
        bytes: ByteChunks,
        cap: u64,
        mime_type: String,
    ) -> Result<StoredBytes, BlobWriteError> {
        let blob_key = artifact.blob_key();
        let written = self.blobs.put(&blob_key, bytes, cap).await?;
        Ok(StoredBytes {
            blob_key,
            size: written.size,
            sha256: written.sha256,
            mime_type,
        })
    }

    /// `PUT /uploads/artifacts/{id}`: the caller's bytes for an artifact created without a
    /// `url`, stored and recorded `success`. `declared` is the body's announced length, refused
    /// before a byte is read when over `cap`.
    pub async fn receive_bytes(
        &self,
        caller: &Caller,
        artifact_id: &str,
        declared: Option<u64>,
        mime_type: String,
        bytes: ByteChunks,
        cap: u64,
    ) -> Result<StoredBytes, ReceiveError> {
        let artifact = self.artifact(caller, artifact_id).await?;
        if artifact.url.is_some() || artifact.status != ArtifactStatus::Initial {
            let why = if artifact.url.is_some() {
                "it was created with a url, which the gateway downloads itself".to_owned()
            } else {
                format!("its status is `{}`", artifact.status.as_str())
            };
            return Err(
                ImportError::Conflict(format!("This artifact takes no upload: {why}.")).into(),
            );
        }
        if declared.is_some_and(|len| len > cap) {
            return Err(ReceiveError::Bytes(BlobWriteError::TooLarge(cap)));
        }
        let stored = self
            .store_bytes(&artifact, bytes, cap, mime_type)
            .await
            .map_err(ReceiveError::Bytes)?;
        let outcome = ArtifactOutcome::Success(stored.clone());
        if self
            .record(&artifact, &outcome, None, &Who::caller(caller))
            .await?
        {
            Ok(stored)
        } else {
            // Another upload of the same artifact finished first, or the job was cancelled.
            Err(ImportError::Conflict(
                "This artifact already has its bytes, or its job was cancelled.".into(),
            )
            .into())
        }
    }

    /// The artifact a download task is for, while it still waits for its bytes (`initial`);
    /// `None` once it is gone, finished or terminated. The worker's read: its identity is the
    /// task it holds, not a caller.
    pub async fn awaiting_bytes(&self, id: &ArtifactId) -> Result<Option<Artifact>, ImportError> {
        Ok(self
            .store
            .artifact_by_id(id)
            .await?
            .filter(|a| a.status == ArtifactStatus::Initial))
    }

    /// Records an artifact's outcome, and with it the rule that moves its work and job on: a
    /// work is `ready` once every artifact succeeded and `needs_attention` once one failed, and
    /// a job completes when none of its works still imports (the store runs the rule in the
    /// same transaction). With `lease`, only while that worker still holds the download task,
    /// which ends with it. False when nothing was recorded: the artifact was no longer
    /// `initial`, or the lease was lost (then the outcome belongs to whoever holds it now).
    pub async fn record(
        &self,
        artifact: &Artifact,
        outcome: &ArtifactOutcome,
        lease: Option<(&TaskId, &Owner)>,
        who: &Who,
    ) -> Result<bool, ImportError> {
        let done = match outcome {
            ArtifactOutcome::Success(stored) => who
                .event(Action::ArtifactStored)
                .with("size", stored.size)
                .with("sha256", stored.sha256.as_str()),
            ArtifactOutcome::Error {
                code, http_status, ..
            } => {
                let event = who
                    .event(Action::ArtifactFailed)
                    .with("code", code.as_str());
                match http_status {
                    Some(status) => event.with("httpStatus", *status),
                    None => event,
                }
            }
        };
        let events = JobEvents {
            done: done
                .in_workspace(&artifact.workspace_id)
                .target("artifact", &artifact.artifact_id)
                .target("job_work", &artifact.job_work_id)
                .target("connection_job", &artifact.job_id),
            completed: Who::system()
                .event(Action::JobCompleted)
                .in_workspace(&artifact.workspace_id)
                .target("connection_job", &artifact.job_id)
                .target("connection", &artifact.connection_id),
        };
        Ok(self
            .store
            .finish_artifact(artifact, outcome, lease, Timestamp::now(), &events)
            .await?)
    }
}

/// The operator's view of a job (`taxbridge jobs watch`): the command line runs with the
/// database's own credentials, so it reaches every job.
pub struct JobWatch {
    store: Arc<dyn ImportStore>,
}

impl JobWatch {
    pub fn new<S: ImportStore>(store: Arc<S>) -> Self {
        Self { store }
    }

    pub async fn job(&self, id: &JobId) -> Result<Option<Job>, ImportError> {
        Ok(self.store.job_by_id(id).await?)
    }

    pub async fn progress(&self, id: &JobId) -> Result<JobProgress, ImportError> {
        Ok(self.store.job_progress(id).await?)
    }
}
