//! Push imports (spec §6): a partner hands a firm clients (works) and their files (artifacts)
//! in an import batch (a connection job), and a durable worker downloads the files.
//!
//! The status machines:
//! - job: `pending` (open for works) → `active` (triggered) → `completed` when every
//!   artifact is final; `pending`/`active` → `cancelled`.
//! - work: `pending` → `importing` at trigger → `ready` (every artifact succeeded) or
//!   `needs_attention` (one failed); unfinished works → `cancelled` with their job.
//! - artifact: `initial` → `success` | `error`; `initial` → `terminated` on cancel.
//!
//! A transition the state forbids is `Conflict`, saying the current state. Who may act: any
//! caller who reaches the connection's workspace ([`Connections::reach`]); anything else is
//! `NotFound`, the same as a missing id.

use crate::{
    blobs::{BlobStore, BlobWriteError, ByteChunks},
    connections::{Connection, ConnectionError, ConnectionStatus, Connections},
    identity::Caller,
    ids::{ArtifactId, ConnectionId, JobArtifactId, JobId, JobWorkId, TaskId, WorkId, WorkspaceId},
    lists::Page,
    store::{StoreError, StoreResult},
    tasks::{NewTask, Owner, TaskKind},
    text::unprintable,
    time::Timestamp,
    workspaces::WorkspaceAccess,
};
use async_trait::async_trait;
use std::{collections::BTreeSet, sync::Arc};

pub const MAX_WORKS_PER_CALL: usize = 1_000;
pub const MAX_ARTIFACTS_PER_CALL: usize = 100;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Metadata keys the gateway writes itself (on success, or `error` on failure): a caller's
/// metadata may not hold them, so nothing a caller sends reads as the gateway's own word.
pub const RESERVED_METADATA_KEYS: [&str; 4] = ["error", "size", "sha256", "mimeType"];

fn capitalised(key: &str) -> String {
    let mut chars = key.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
const MAX_NAME_CHARS: usize = 200;
const MAX_EXTERNAL_ID_CHARS: usize = 200;
const MAX_URL_BYTES: usize = 2_048;

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

// The status enums' text, as stored and as the API shows it: strum derives the pairs from
// the variant names.
impl JobStatus {
    pub const ALL: &'static [JobStatus] = <JobStatus as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

impl WorkStatus {
    pub const ALL: &'static [WorkStatus] = <WorkStatus as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

impl ArtifactStatus {
    pub const ALL: &'static [ArtifactStatus] = <ArtifactStatus as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

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

#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    async fn insert_job(&self, job: &Job) -> StoreResult<()>;
    async fn job_by_id(&self, id: &JobId) -> StoreResult<Option<Job>>;
    async fn jobs_of(
        &self,
        connection: &ConnectionId,
        filters: &JobFilters,
        page: Page,
    ) -> StoreResult<Vec<Job>>;
    async fn job_progress(&self, job: &JobId) -> StoreResult<JobProgress>;

    /// Which of `external_ids` the connection already has.
    async fn existing_external_ids(
        &self,
        connection: &ConnectionId,
        external_ids: &[String],
    ) -> StoreResult<Vec<String>>;
    /// Inserts works into a job, all or none; fails with `Conflict` if the job is no longer
    /// `pending` or an external id is taken meanwhile.
    async fn insert_works(&self, job: &JobId, works: &[JobWork]) -> StoreResult<()>;
    async fn job_work_by_id(&self, id: &JobWorkId) -> StoreResult<Option<JobWork>>;
    /// The work with this `Work` id (the id deep links and the work page use).
    async fn work_by_work_id(&self, id: &WorkId) -> StoreResult<Option<JobWork>>;
    /// A workspace's most recently updated jobs, newest first, across its connections.
    async fn recent_jobs_in(&self, workspace: &WorkspaceId, limit: u32) -> StoreResult<Vec<Job>>;
    /// A workspace's most recently updated works, newest first, across its connections.
    async fn recent_works_in(
        &self,
        workspace: &WorkspaceId,
        limit: u32,
    ) -> StoreResult<Vec<JobWork>>;
    async fn works_of(
        &self,
        connection: &ConnectionId,
        filters: &WorkFilters,
        page: Page,
    ) -> StoreResult<Vec<JobWork>>;

    /// Inserts artifacts and their tasks, all or none; `Conflict` if the job is no longer
    /// `pending` or an external id is taken meanwhile.
    async fn insert_artifacts(
        &self,
        job: &JobId,
        artifacts: &[Artifact],
        tasks: &[NewTask],
    ) -> StoreResult<()>;
    async fn artifacts_of_work(&self, job_work: &JobWorkId) -> StoreResult<Vec<Artifact>>;
    async fn artifact_by_id(&self, id: &ArtifactId) -> StoreResult<Option<Artifact>>;

    /// `pending` → `active`; works move on as their artifacts stand. False if not pending.
    async fn trigger_job(&self, job: &JobId, now: Timestamp) -> StoreResult<bool>;
    /// `pending`/`active` → `cancelled`, with unfinished artifacts, works and tasks. False if
    /// the job was already final.
    async fn cancel_job(&self, job: &JobId, now: Timestamp) -> StoreResult<bool>;

    /// Records an artifact's outcome and moves its work and job on, in one transaction. With
    /// `task`, only while `task.1` still holds that task's lease, and the task ends with it.
    /// False when nothing was recorded: the artifact was no longer `initial`, or the lease was
    /// lost (then the outcome belongs to whoever holds it now).
    async fn finish_artifact(
        &self,
        artifact: &ArtifactId,
        outcome: &ArtifactOutcome,
        task: Option<(&crate::ids::TaskId, &crate::tasks::Owner)>,
        now: Timestamp,
    ) -> StoreResult<bool>;
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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        field: field.into(),
        message: message.into(),
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

pub struct Imports {
    store: Arc<dyn ImportStore>,
    connections: Arc<Connections>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    /// Woken when a task is created, so a worker in this process starts at once.
    tasks_added: Arc<tokio::sync::Notify>,
}

impl Imports {
    pub fn new<S: ImportStore>(
        store: Arc<S>,
        connections: Arc<Connections>,
        blobs: Arc<dyn BlobStore>,
    ) -> Self {
        Self {
            store,
            connections,
            blobs,
            tasks_added: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notified whenever this process queues a task.
    pub fn tasks_added(&self) -> Arc<tokio::sync::Notify> {
        self.tasks_added.clone()
    }

    /// A connection the caller reaches, as for any connection field.
    pub async fn connection(&self, caller: &Caller, id: &str) -> Result<Connection, ImportError> {
        Ok(self.connections.reach(caller, id).await?.0)
    }

    /// The job with this id, if the caller reaches its workspace.
    pub async fn job(&self, caller: &Caller, id: &str) -> Result<Job, ImportError> {
        let job = self
            .store
            .job_by_id(&JobId::from_string(id))
            .await?
            .ok_or(ImportError::NotFound("connection job"))?;
        self.reach_connection(caller, &job.connection_id, "connection job")
            .await?;
        Ok(job)
    }

    async fn reach_connection(
        &self,
        caller: &Caller,
        id: &ConnectionId,
        what: &'static str,
    ) -> Result<Connection, ImportError> {
        match self.connections.reach(caller, id.as_str()).await {
            Ok((connection, _)) => Ok(connection),
            Err(ConnectionError::NotFound) => Err(ImportError::NotFound(what)),
            Err(other) => Err(other.into()),
        }
    }

    /// `createConnectionJob`: a new `pending` job on an `active` connection.
    pub async fn create_job(
        &self,
        caller: &Caller,
        connection_id: &str,
        name: &str,
    ) -> Result<Job, ImportError> {
        let connection = self.connection(caller, connection_id).await?;
        check_text("jobName", name, MAX_NAME_CHARS)?;
        if connection.status != ConnectionStatus::Active {
            return Err(ImportError::Conflict(format!(
                "The connection is `{}`; jobs are created on `active` connections only. Collect it first.",
                connection.status.as_str()
            )));
        }
        let now = Timestamp::now();
        let job = Job {
            id: JobId::generate(),
            connection_id: connection.id,
            workspace_id: connection.workspace_id,
            name: name.to_owned(),
            status: JobStatus::Pending,
            created_at: now,
            updated_at: now,
            triggered_at: None,
            completed_at: None,
        };
        self.store.insert_job(&job).await?;
        Ok(job)
    }

    /// `createJobWorks`: at most 1,000 works into a `pending` job, all or none.
    pub async fn create_works(
        &self,
        caller: &Caller,
        job_id: &str,
        inputs: Vec<NewWork>,
    ) -> Result<Vec<JobWork>, ImportError> {
        let job = self.job(caller, job_id).await?;
        check_count(inputs.len(), MAX_WORKS_PER_CALL, "works")?;
        for (at, input) in inputs.iter().enumerate() {
            check_text(&format!("inputs[{at}].name"), &input.name, MAX_NAME_CHARS)?;
            check_text(
                &format!("inputs[{at}].externalId"),
                &input.external_id,
                MAX_EXTERNAL_ID_CHARS,
            )?;
            if let Some(tag) = &input.tag {
                check_text(&format!("inputs[{at}].tag"), tag, MAX_NAME_CHARS)?;
            }
        }
        require_pending(&job, "works are added")?;
        let external_ids: Vec<String> = inputs.iter().map(|w| w.external_id.clone()).collect();
        let mut duplicates = repeated(&external_ids);
        duplicates.extend(
            self.store
                .existing_external_ids(&job.connection_id, &external_ids)
                .await?,
        );
        if !duplicates.is_empty() {
            return Err(duplicate_ids("work", "connection", duplicates));
        }
        let now = Timestamp::now();
        let works: Vec<JobWork> = inputs
            .into_iter()
            .map(|input| JobWork {
                id: JobWorkId::generate(),
                work_id: WorkId::generate(),
                job_id: job.id.clone(),
                connection_id: job.connection_id.clone(),
                workspace_id: job.workspace_id.clone(),
                external_id: input.external_id,
                name: input.name,
                tag: input.tag,
                status: WorkStatus::Pending,
                created_at: now,
                updated_at: now,
            })
            .collect();
        self.store
            .insert_works(&job.id, &works)
            .await
            .map_err(|err| lost_race(err, &job))?;
        Ok(works)
    }

    /// The job work with this id, if the caller reaches it.
    pub async fn job_work(&self, caller: &Caller, id: &str) -> Result<JobWork, ImportError> {
        let work = self
            .store
            .job_work_by_id(&JobWorkId::from_string(id))
            .await?
            .ok_or(ImportError::NotFound("job work"))?;
        self.reach_connection(caller, &work.connection_id, "job work")
            .await?;
        Ok(work)
    }

    /// `createJobWorkArtifacts`: at most 100 artifacts onto a work of a `pending` job. Each
    /// with a `url` is queued for download at once.
    pub async fn create_artifacts(
        &self,
        caller: &Caller,
        job_work_id: &str,
        inputs: Vec<NewArtifact>,
    ) -> Result<Vec<Artifact>, ImportError> {
        let work = self.job_work(caller, job_work_id).await?;
        check_count(inputs.len(), MAX_ARTIFACTS_PER_CALL, "artifacts")?;
        let mut checked = Vec::with_capacity(inputs.len());
        for (at, mut input) in inputs.into_iter().enumerate() {
            check_text(&format!("inputs[{at}].name"), &input.name, MAX_NAME_CHARS)?;
            check_text(&format!("inputs[{at}].type"), &input.artifact_type, 64)?;
            check_text(
                &format!("inputs[{at}].externalId"),
                &input.external_id,
                MAX_EXTERNAL_ID_CHARS,
            )?;
            if let Some(url) = &input.url {
                check_url(&format!("inputs[{at}].url"), url)?;
            }
            let metadata = match input.metadata.take() {
                None | Some(serde_json::Value::Null) => serde_json::Map::new(),
                Some(serde_json::Value::Object(map)) => map,
                Some(_) => {
                    return Err(invalid(
                        format!("inputs[{at}].metadata"),
                        "metadata must be a JSON object, e.g. {\"taxYear\": 2024}",
                    ))
                }
            };
            if let Some(key) = RESERVED_METADATA_KEYS
                .iter()
                .find(|key| metadata.contains_key(**key))
            {
                return Err(invalid(
                    format!("inputs[{at}].metadata.{key}"),
                    format!("`{key}` in metadata is the gateway's own ({}); rename it, e.g. `partner{}`", RESERVED_METADATA_KEYS.join(", "), capitalised(key)),
                ));
            }
            if serde_json::to_vec(&metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
                return Err(invalid(
                    format!("inputs[{at}].metadata"),
                    "metadata is larger than 16 KiB",
                ));
            }
            checked.push((input, metadata));
        }
        let job = self
            .store
            .job_by_id(&work.job_id)
            .await?
            .ok_or(ImportError::NotFound("job work"))?;
        require_pending(&job, "artifacts are added")?;
        let external_ids: Vec<String> = checked
            .iter()
            .map(|(input, _)| input.external_id.clone())
            .collect();
        let mut duplicates = repeated(&external_ids);
        let existing = self.store.artifacts_of_work(&work.id).await?;
        duplicates.extend(
            existing
                .iter()
                .filter(|a| external_ids.contains(&a.external_id))
                .map(|a| a.external_id.clone()),
        );
        if !duplicates.is_empty() {
            return Err(duplicate_ids("artifact", "work", duplicates));
        }
        let now = Timestamp::now();
        let artifacts: Vec<Artifact> = checked
            .into_iter()
            .map(|(input, metadata)| Artifact {
                id: JobArtifactId::generate(),
                artifact_id: ArtifactId::generate(),
                job_work_id: work.id.clone(),
                work_id: work.work_id.clone(),
                job_id: work.job_id.clone(),
                connection_id: work.connection_id.clone(),
                workspace_id: work.workspace_id.clone(),
                external_id: input.external_id,
                name: input.name,
                artifact_type: input.artifact_type,
                url: input.url,
                status: ArtifactStatus::Initial,
                metadata,
                stored: None,
                created_at: now,
                updated_at: now,
            })
            .collect();
        let tasks: Vec<NewTask> = artifacts
            .iter()
            .filter(|a| a.url.is_some())
            .map(|a| {
                NewTask::now(
                    TaskKind::Download,
                    a.artifact_id.as_str(),
                    a.workspace_id.as_str(),
                )
            })
            .collect();
        self.store
            .insert_artifacts(&job.id, &artifacts, &tasks)
            .await
            .map_err(|err| lost_race(err, &job))?;
        if !tasks.is_empty() {
            self.tasks_added.notify_waiters();
        }
        Ok(artifacts)
    }

    /// `triggerConnectionJob`: `pending` → `active`.
    pub async fn trigger(&self, caller: &Caller, job_id: &str) -> Result<Job, ImportError> {
        let job = self.job(caller, job_id).await?;
        require_pending(&job, "a job is triggered")?;
        if !self.store.trigger_job(&job.id, Timestamp::now()).await? {
            return Err(self.now_conflict(&job.id, "a job is triggered").await);
        }
        self.reload(&job.id).await
    }

    /// `cancelConnectionJob`: unfinished artifacts → `terminated`, works → `cancelled`.
    pub async fn cancel(&self, caller: &Caller, job_id: &str) -> Result<Job, ImportError> {
        let job = self.job(caller, job_id).await?;
        if !matches!(job.status, JobStatus::Pending | JobStatus::Active)
            || !self.store.cancel_job(&job.id, Timestamp::now()).await?
        {
            return Err(self.now_conflict(&job.id, "a job is cancelled").await);
        }
        self.reload(&job.id).await
    }

    async fn reload(&self, id: &JobId) -> Result<Job, ImportError> {
        self.store
            .job_by_id(id)
            .await?
            .ok_or(ImportError::NotFound("connection job"))
    }

    async fn now_conflict(&self, id: &JobId, doing: &str) -> ImportError {
        match self.reload(id).await {
            Ok(job) => state_conflict(&job, doing),
            Err(err) => err,
        }
    }

    /// What a workspace's dashboard shows: its `limit` most recently updated jobs with their
    /// progress, and its `limit` most recently updated works. The caller has reached the
    /// workspace already (`access`).
    pub async fn recent_in(
        &self,
        access: &WorkspaceAccess,
        limit: u32,
    ) -> Result<(Vec<(Job, JobProgress)>, Vec<JobWork>), ImportError> {
        let workspace = &access.workspace().id;
        let jobs = self.store.recent_jobs_in(workspace, limit).await?;
        let mut with_progress = Vec::with_capacity(jobs.len());
        for job in jobs {
            let progress = self.store.job_progress(&job.id).await?;
            with_progress.push((job, progress));
        }
        let works = self.store.recent_works_in(workspace, limit).await?;
        Ok((with_progress, works))
    }

    /// The work with this `Work` id and its artifacts, if the caller reaches it.
    pub async fn work(
        &self,
        caller: &Caller,
        work_id: &str,
    ) -> Result<(JobWork, Vec<Artifact>), ImportError> {
        let work = self
            .store
            .work_by_work_id(&WorkId::from_string(work_id))
            .await?
            .ok_or(ImportError::NotFound("work"))?;
        self.reach_connection(caller, &work.connection_id, "work")
            .await?;
        let artifacts = self.store.artifacts_of_work(&work.id).await?;
        Ok((work, artifacts))
    }

    /// The artifact with this id (a `WorkArtifact` id), if the caller reaches it.
    pub async fn artifact(&self, caller: &Caller, id: &str) -> Result<Artifact, ImportError> {
        let artifact = self
            .store
            .artifact_by_id(&ArtifactId::from_string(id))
            .await?
            .ok_or(ImportError::NotFound("artifact"))?;
        self.reach_connection(caller, &artifact.connection_id, "artifact")
            .await?;
        Ok(artifact)
    }

    /// A work's files (`JobWork.jobWorkArtifacts`), for a caller who reaches the work.
    pub async fn artifacts_of(
        &self,
        caller: &Caller,
        job_work_id: &str,
    ) -> Result<Vec<Artifact>, ImportError> {
        let work = self.job_work(caller, job_work_id).await?;
        Ok(self.store.artifacts_of_work(&work.id).await?)
    }

    /// A job's counts of works and of artifacts by state, for a caller who reaches it.
    pub async fn progress(
        &self,
        caller: &Caller,
        job_id: &str,
    ) -> Result<JobProgress, ImportError> {
        let job = self.job(caller, job_id).await?;
        Ok(self.store.job_progress(&job.id).await?)
    }

    /// `ProviderConnection.connectionJobs`: a connection's jobs, for a caller who reaches it.
    pub async fn jobs_of(
        &self,
        caller: &Caller,
        connection_id: &str,
        filters: &JobFilters,
        page: Page,
    ) -> Result<Vec<Job>, ImportError> {
        let connection = self.connection(caller, connection_id).await?;
        Ok(self.store.jobs_of(&connection.id, filters, page).await?)
    }

    /// `ProviderConnection.jobWorks`: a connection's works, for a caller who reaches it.
    pub async fn works_of(
        &self,
        caller: &Caller,
        connection_id: &str,
        filters: &WorkFilters,
        page: Page,
    ) -> Result<Vec<JobWork>, ImportError> {
        let connection = self.connection(caller, connection_id).await?;
        Ok(self.store.works_of(&connection.id, filters, page).await?)
    }

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
        if self.record(&artifact.artifact_id, &outcome, None).await? {
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
        artifact: &ArtifactId,
        outcome: &ArtifactOutcome,
        lease: Option<(&TaskId, &Owner)>,
    ) -> Result<bool, ImportError> {
        Ok(self
            .store
            .finish_artifact(artifact, outcome, lease, Timestamp::now())
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

fn require_pending(job: &Job, doing: &str) -> Result<(), ImportError> {
    if job.status == JobStatus::Pending {
        Ok(())
    } else {
        Err(state_conflict(job, doing))
    }
}

fn state_conflict(job: &Job, doing: &str) -> ImportError {
    ImportError::Conflict(format!(
        "The job is `{}`; {doing} only while it is `pending`{}.",
        job.status.as_str(),
        if job.status == JobStatus::Pending {
            ""
        } else {
            " (create a new job for more)"
        }
    ))
}

/// A conflict from the store after the checks passed: the job moved on, or another call took
/// an external id in between.
fn lost_race(err: StoreError, job: &Job) -> ImportError {
    match err {
        StoreError::Conflict { what } if what.contains("not pending") => ImportError::Conflict(
            format!("The job `{}` is no longer `pending`; {what}", job.id),
        ),
        StoreError::Conflict { .. } => ImportError::Conflict(
            "Another call added the same externalId at the same time; list the works and retry with the ones missing.".into(),
        ),
        other => other.into(),
    }
}

fn duplicate_ids(what: &str, within: &str, ids: BTreeSet<String>) -> ImportError {
    let named: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    ImportError::Conflict(format!(
        "externalId must be unique within the {within}; these {what}s already exist or repeat in the call: {}. Nothing was added.",
        named.join(", ")
    ))
}

/// Values that occur more than once in `values`.
fn repeated(values: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    values
        .iter()
        .filter(|v| !seen.insert(v.as_str()))
        .cloned()
        .collect()
}

/// One call's `inputs`: at least one, at most `max`.
fn check_count(count: usize, max: usize, what: &str) -> Result<(), ImportError> {
    if count == 0 || count > max {
        return Err(invalid(
            "inputs",
            format!("Send between 1 and {max} {what} per call (got {count})."),
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ImportError> {
    if value.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(invalid(
            field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    if let Some(what) = unprintable(value) {
        return Err(invalid(
            field,
            format!("{field} contains {what}; send printable text"),
        ));
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), ImportError> {
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(
            field,
            format!("{field} is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        Ok(parsed) => Err(invalid(
            field,
            format!(
                "{field} must be an http or https URL with a host, not `{}:`",
                parsed.scheme()
            ),
        )),
        Err(err) => Err(invalid(
            field,
            format!("{field} is not a URL ({err}); send an absolute http or https URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_their_spelling() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(
            WorkStatus::parse("needs_attention"),
            Some(WorkStatus::NeedsAttention)
        );
        assert_eq!(ArtifactStatus::parse("Initial"), None);
    }

    #[test]
    fn repeats_are_named_once_each() {
        let ids: Vec<String> = ["a", "b", "a", "c", "a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            repeated(&ids).into_iter().collect::<Vec<_>>(),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }

    #[test]
    fn artifact_urls_must_be_absolute_http() {
        assert!(check_url("url", "https://files.example.com/w2.pdf").is_ok());
        for bad in ["file:///etc/passwd", "ftp://x/y", "not a url", "/relative"] {
            assert!(check_url("url", bad).is_err(), "{bad}");
        }
    }
}
