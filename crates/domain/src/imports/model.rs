//! What a push import is made of: a job, its works and their artifacts, their states, the
//! inputs that create them, and the errors the service answers.

use crate::words::Word;
use crate::{
    blobs::BlobWriteError,
    connections::ConnectionError,
    ids::{ArtifactId, ConnectionId, JobArtifactId, JobId, JobWorkId, WorkId, WorkspaceId},
    store::StoreError,
    time::Timestamp,
};

/// A connection job's state.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Active,
    Completed,
    Failed,
    Cancelled,
}

/// A work's state.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum WorkStatus {
    Pending,
    Importing,
    Ready,
    NeedsAttention,
    Cancelled,
}

/// An artifact's state.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ArtifactStatus {
    Initial,
    Success,
    Error,
    Terminated,
}

impl Word for JobStatus {}

impl Word for WorkStatus {}

impl Word for ArtifactStatus {}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub connection_id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub status: JobStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub triggered_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
}

/// Counts of a job's works and of its artifacts by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub works: u64,
    pub artifacts: u64,
    pub initial: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub terminated: u64,
    /// Bytes stored by the artifacts that succeeded.
    pub bytes: u64,
}

/// A work and its place in its job (one row: a work belongs to exactly one job).
#[derive(Clone, Debug, PartialEq)]
pub struct JobWork {
    pub id: JobWorkId,
    pub work_id: WorkId,
    pub job_id: JobId,
    pub connection_id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub external_id: String,
    pub name: String,
    pub tag: Option<String>,
    pub status: WorkStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where an artifact's bytes are kept once it succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBytes {
    pub blob_key: String,
    pub size: u64,
    pub sha256: String,
    pub mime_type: String,
}

/// An artifact and its place in its job (one row).
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    pub id: JobArtifactId,
    pub artifact_id: ArtifactId,
    pub job_work_id: JobWorkId,
    pub work_id: WorkId,
    pub job_id: JobId,
    pub connection_id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub external_id: String,
    pub name: String,
    pub artifact_type: String,
    pub url: Option<String>,
    pub status: ArtifactStatus,
    /// The caller's metadata, with `size`, `sha256`, `mimeType` merged in on success and
    /// `error` on failure.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub stored: Option<StoredBytes>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Artifact {
    /// The blob key an artifact's bytes are written under. It never changes, so a download
    /// retried after a crash overwrites the same blob rather than leaving a second one.
    pub fn blob_key(&self) -> String {
        format!(
            "workspaces/{}/artifacts/{}",
            self.workspace_id, self.artifact_id
        )
    }
}

/// How a download or upload of an artifact ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ArtifactOutcome {
    Success(StoredBytes),
    /// `metadata.error`: `{code, message, httpStatus?}`.
    Error {
        code: String,
        message: String,
        http_status: Option<u16>,
    },
}

#[derive(Clone, Debug, Default)]
pub struct JobFilters {
    pub ids: Option<Vec<JobId>>,
    pub statuses: Option<Vec<JobStatus>>,
}

#[derive(Clone, Debug, Default)]
pub struct WorkFilters {
    pub ids: Option<Vec<JobWorkId>>,
    pub job_ids: Option<Vec<JobId>>,
    pub work_ids: Option<Vec<WorkId>>,
    pub external_ids: Option<Vec<String>>,
}

/// Why `PUT /uploads/artifacts/{id}` kept nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The body was too large or broke off, or the blob store failed.
    #[error(transparent)]
    Bytes(BlobWriteError),
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("No {0} has this id, or it is not one you can reach.")]
    NotFound(&'static str),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// Whether the database could not be reached (try again shortly; nothing changed).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Store(err) if err.is_unavailable())
    }
}

/// A work to add: `createJobWorks`' input.
#[derive(Clone, Debug)]
pub struct NewWork {
    pub name: String,
    pub external_id: String,
    pub tag: Option<String>,
}

/// An artifact to add: `createJobWorkArtifacts`' input.
#[derive(Clone, Debug)]
pub struct NewArtifact {
    pub name: String,
    pub artifact_type: String,
    pub url: Option<String>,
    pub external_id: String,
    pub metadata: Option<serde_json::Value>,
}
