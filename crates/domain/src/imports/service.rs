//! `Imports`, the one door to push imports: every method takes who is acting (a caller, the
//! task a worker holds, or the operator's command line) and checks reach first.

use super::{
    checks::*,
    model::*,
    port::{ImportStore, JobEvents},
    MAX_ARTIFACTS_PER_CALL, MAX_METADATA_BYTES, MAX_WORKS_PER_CALL, RESERVED_METADATA_KEYS,
};
use crate::words::Word;
use crate::{
    audit::{Action, AuditEvent},
    blobs::BlobStore,
    connections::{Connection, ConnectionError, ConnectionStatus, Connections},
    identity::Caller,
    ids::{ArtifactId, ConnectionId, JobArtifactId, JobId, JobWorkId, WorkId},
    lists::Page,
    tasks::{NewTask, TaskKind},
    time::Timestamp,
    workspaces::WorkspaceAccess,
};
use std::sync::Arc;

pub struct Imports {
    pub(super) store: Arc<dyn ImportStore>,
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
        let event = AuditEvent::by(caller, Action::JobCreated)
            .in_workspace(&job.workspace_id)
            .target("connection_job", &job.id)
            .target("connection", &job.connection_id)
            .with("name", job.name.as_str());
        self.store.insert_job(&job, &event).await?;
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
        let event = AuditEvent::by(caller, Action::JobWorksAdded)
            .in_workspace(&job.workspace_id)
            .target("connection_job", &job.id)
            .with("count", works.len());
        self.store
            .insert_works(&job.id, &works, &event)
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
        let event = AuditEvent::by(caller, Action::JobArtifactsAdded)
            .in_workspace(&job.workspace_id)
            .target("connection_job", &job.id)
            .target("job_work", &work.id)
            .with("count", artifacts.len())
            .with("downloads", tasks.len());
        self.store
            .insert_artifacts(&job.id, &artifacts, &tasks, &event)
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
        let events = JobEvents {
            done: job_event(&job, AuditEvent::by(caller, Action::JobTriggered)),
            completed: job_event(&job, AuditEvent::by_system(Action::JobCompleted)),
        };
        if !self
            .store
            .trigger_job(&job.id, Timestamp::now(), &events)
            .await?
        {
            return Err(self.now_conflict(&job.id, "a job is triggered").await);
        }
        self.reload(&job.id).await
    }

    /// `cancelConnectionJob`: unfinished artifacts → `terminated`, works → `cancelled`.
    pub async fn cancel(&self, caller: &Caller, job_id: &str) -> Result<Job, ImportError> {
        let job = self.job(caller, job_id).await?;
        if !matches!(job.status, JobStatus::Pending | JobStatus::Active)
            || !self
                .store
                .cancel_job(
                    &job.id,
                    Timestamp::now(),
                    &job_event(&job, AuditEvent::by(caller, Action::JobCancelled)),
                )
                .await?
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
}

/// An event about a job: in its workspace, targeting it and its connection.
pub(crate) fn job_event(job: &Job, event: AuditEvent) -> AuditEvent {
    event
        .in_workspace(&job.workspace_id)
        .target("connection_job", &job.id)
        .target("connection", &job.connection_id)
}
