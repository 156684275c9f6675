//! What the store keeps of push imports: each transition in one statement, guarded by its
//! state, so two nodes never both move a job or an artifact on.

use super::model::*;
use crate::audit::AuditEvent;
use crate::{
    ids::{ArtifactId, ConnectionId, JobId, JobWorkId, WorkId, WorkspaceId},
    lists::Page,
    store::StoreResult,
    tasks::NewTask,
    time::Timestamp,
};
use async_trait::async_trait;

#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    async fn insert_job(&self, job: &Job, event: &AuditEvent) -> StoreResult<()>;
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
    async fn insert_works(
        &self,
        job: &JobId,
        works: &[JobWork],
        event: &AuditEvent,
    ) -> StoreResult<()>;
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
        event: &AuditEvent,
    ) -> StoreResult<()>;
    async fn artifacts_of_work(&self, job_work: &JobWorkId) -> StoreResult<Vec<Artifact>>;
    async fn artifact_by_id(&self, id: &ArtifactId) -> StoreResult<Option<Artifact>>;

    /// `pending` → `active`; works move on as their artifacts stand. False if not pending.
    /// Records `events.done`, and `events.completed` when the job completes at once.
    async fn trigger_job(
        &self,
        job: &JobId,
        now: Timestamp,
        events: &JobEvents,
    ) -> StoreResult<bool>;
    /// `pending`/`active` → `cancelled`, with unfinished artifacts, works and tasks. False if
    /// the job was already final.
    async fn cancel_job(
        &self,
        job: &JobId,
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<bool>;

    /// Records an artifact's outcome and moves its work and job on, in one transaction. With
    /// `task`, only while `task.1` still holds that task's lease, and the task ends with it.
    /// False when nothing was recorded: the artifact was no longer `initial`, or the lease was
    /// lost (then the outcome belongs to whoever holds it now).
    /// Records `events.done` with the outcome, and `events.completed` when the job completes.
    async fn finish_artifact(
        &self,
        artifact: &Artifact,
        outcome: &ArtifactOutcome,
        task: Option<(&crate::ids::TaskId, &crate::tasks::Owner)>,
        now: Timestamp,
        events: &JobEvents,
    ) -> StoreResult<bool>;
}

/// The events of a change that may complete its job: the change's own, and the job's
/// completion, recorded only if the change completes it.
pub struct JobEvents {
    pub done: AuditEvent,
    pub completed: AuditEvent,
}
