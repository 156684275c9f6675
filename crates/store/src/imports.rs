//! Push imports: the `connection_jobs`, `job_works` and `job_artifacts` tables and the
//! [`ImportStore`] port. The status machines of [`taxbridge_domain::imports`] are enforced
//! here in SQL as well: every transition names the state it starts from in its `WHERE`, so
//! two racing calls cannot both make it.

use crate::{
    accounts::corrupt,
    db::{Arg, Tx},
    listing::ListQuery,
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    audit::AuditEvent,
    ids::{ArtifactId, ConnectionId, JobArtifactId, JobId, JobWorkId, TaskId, WorkId, WorkspaceId},
    imports::{
        Artifact, ArtifactOutcome, ArtifactStatus, ImportStore, Job, JobEvents, JobFilters,
        JobProgress, JobStatus, JobWork, StoredBytes, WorkFilters, WorkStatus,
    },
    lists::Page,
    store::{StoreError, StoreResult},
    tasks::{NewTask, Owner},
    time::Timestamp,
};

const JOB_COLUMNS: &str = "j.id, j.connection_id, j.workspace_id, j.name, j.status, \
     j.created_at, j.updated_at, j.triggered_at, j.completed_at";

impl FromColumns for Job {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        let id = c.text()?;
        Ok(Job {
            connection_id: ConnectionId::from_string(c.text()?),
            workspace_id: WorkspaceId::from_string(c.text()?),
            name: c.text()?,
            status: parse_status(&id, &c.text()?, JobStatus::parse)?,
            created_at: Timestamp::from_millis(c.int()?),
            updated_at: Timestamp::from_millis(c.int()?),
            triggered_at: c.opt_int()?.map(Timestamp::from_millis),
            completed_at: c.opt_int()?.map(Timestamp::from_millis),
            id: JobId::from_string(id),
        })
    }
}

const WORK_COLUMNS: &str = "w.id, w.work_id, w.job_id, w.connection_id, w.workspace_id, \
     w.external_id, w.name, w.tag, w.status, w.created_at, w.updated_at";

impl FromColumns for JobWork {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        let id = c.text()?;
        Ok(JobWork {
            work_id: WorkId::from_string(c.text()?),
            job_id: JobId::from_string(c.text()?),
            connection_id: ConnectionId::from_string(c.text()?),
            workspace_id: WorkspaceId::from_string(c.text()?),
            external_id: c.text()?,
            name: c.text()?,
            tag: c.opt_text()?,
            status: parse_status(&id, &c.text()?, WorkStatus::parse)?,
            created_at: Timestamp::from_millis(c.int()?),
            updated_at: Timestamp::from_millis(c.int()?),
            id: JobWorkId::from_string(id),
        })
    }
}

const ARTIFACT_COLUMNS: &str = "a.id, a.artifact_id, a.job_work_id, a.work_id, a.job_id, \
     a.connection_id, a.workspace_id, a.external_id, a.name, a.artifact_type, a.url, a.status, \
     a.metadata, a.blob_key, a.size, a.sha256, a.mime_type, a.created_at, a.updated_at";

impl FromColumns for Artifact {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        let id = c.text()?;
        let artifact_id = c.text()?;
        let job_work_id = JobWorkId::from_string(c.text()?);
        let work_id = WorkId::from_string(c.text()?);
        let job_id = JobId::from_string(c.text()?);
        let connection_id = ConnectionId::from_string(c.text()?);
        let workspace_id = WorkspaceId::from_string(c.text()?);
        let external_id = c.text()?;
        let name = c.text()?;
        let artifact_type = c.text()?;
        let url = c.opt_text()?;
        let status = parse_status(&artifact_id, &c.text()?, ArtifactStatus::parse)?;
        let metadata = match serde_json::from_str(&c.text()?) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(corrupt(format!("artifact {artifact_id} metadata"))),
        };
        let blob_key = c.opt_text()?;
        let size = c.opt_int()?;
        let sha256 = c.opt_text()?;
        let mime_type = c.opt_text()?;
        let stored = match (blob_key, size, sha256) {
            (Some(blob_key), Some(size), Some(sha256)) => Some(StoredBytes {
                blob_key,
                size: u64::try_from(size).unwrap_or(0),
                sha256,
                mime_type: mime_type.unwrap_or_else(|| "application/octet-stream".into()),
            }),
            _ => None,
        };
        Ok(Artifact {
            id: JobArtifactId::from_string(id),
            artifact_id: ArtifactId::from_string(artifact_id),
            job_work_id,
            work_id,
            job_id,
            connection_id,
            workspace_id,
            external_id,
            name,
            artifact_type,
            url,
            status,
            metadata,
            stored,
            created_at: Timestamp::from_millis(c.int()?),
            updated_at: Timestamp::from_millis(c.int()?),
        })
    }
}

pub(crate) fn parse_status<T>(id: &str, raw: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(raw).ok_or_else(|| corrupt(format!("{id} has status `{raw}`")))
}

struct Text(String);

impl FromColumns for Text {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?))
    }
}

struct Counts(String, i64, i64);

impl FromColumns for Counts {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?, c.int()?, c.int()?))
    }
}

/// Takes the job's row lock before anything that changes the job's own state (triggering,
/// cancelling a pending job), and answers its status, if the job exists. Adding works and
/// artifacts shares it ([`share_job`]).
///
/// Lock order, so that no two transactions wait on each other: a task, then artifacts, then
/// works, then the job. Finishing an artifact follows it (its task, its artifact, its work,
/// and the job only when the work settled); cancelling does too (tasks, artifacts, works,
/// the job last). Adding and triggering take the job first, but run only while the job is
/// `pending`, when no finish reaches the job. So finishing artifacts of one job run side by
/// side: the job row is taken by the finish that settles a work, not by every one.
async fn lock_job(tx: &mut Tx, job: &str) -> StoreResult<Option<JobStatus>> {
    tx.lock_row("connection_jobs", job).await?;
    job_status(tx, job).await
}

/// As [`lock_job`], shared: for adding works and artifacts, which may run side by side (a
/// partner sends a job's artifacts on many connections at once) but never beside a trigger or
/// a cancel, which lock the job for themselves.
async fn share_job(tx: &mut Tx, job: &str) -> StoreResult<Option<JobStatus>> {
    tx.share_row("connection_jobs", job).await?;
    job_status(tx, job).await
}

async fn job_status(tx: &mut Tx, job: &str) -> StoreResult<Option<JobStatus>> {
    let status: Option<Text> = tx
        .fetch_optional(
            "SELECT status FROM connection_jobs WHERE id = $1",
            &[job.into()],
        )
        .await?;
    status
        .map(|s| parse_status(job, &s.0, JobStatus::parse))
        .transpose()
}

/// Moves `importing` works on once none of their artifacts is `initial`: `ready` when all
/// succeeded, `needs_attention` when any failed. `scope` picks the works (`job_id` or `id`).
/// Answers how many works settled. The caller holds the works' row locks, so the artifacts it
/// reads include every other finisher's outcome.
async fn settle_works(tx: &mut Tx, scope: &str, value: &str, now: Timestamp) -> StoreResult<u64> {
    let sql = format!(
        "UPDATE job_works SET status = CASE \
           WHEN EXISTS (SELECT 1 FROM job_artifacts a WHERE a.job_work_id = job_works.id AND a.status = 'error') THEN 'needs_attention' \
           ELSE 'ready' END, updated_at = $2 \
         WHERE {scope} = $1 AND status = 'importing' AND NOT EXISTS \
           (SELECT 1 FROM job_artifacts a WHERE a.job_work_id = job_works.id AND a.status = 'initial')"
    );
    tx.execute(&sql, &[value.into(), now.as_millis().into()])
        .await
}

/// Counts an active job's importing works (after a trigger settled those it could) and
/// completes the job when none is left.
async fn count_importing(tx: &mut Tx, job: &str, now: Timestamp) -> StoreResult<bool> {
    tx.execute(
        "UPDATE connection_jobs SET works_importing = \
           (SELECT COUNT(*) FROM job_works w WHERE w.job_id = $1 AND w.status = 'importing') \
         WHERE id = $1",
        &[job.into()],
    )
    .await?;
    complete_if_done(tx, job, now).await
}

/// One of an active job's works settled: one fewer imports, and the job completes at zero.
/// The `UPDATE` takes the job's row lock (the last lock of a finish; see [`lock_job`]) and
/// counts from the latest committed value, so finishes settling works side by side each
/// count once.
async fn work_settled(tx: &mut Tx, job: &str, now: Timestamp) -> StoreResult<bool> {
    tx.execute(
        "UPDATE connection_jobs SET works_importing = works_importing - 1 WHERE id = $1",
        &[job.into()],
    )
    .await?;
    complete_if_done(tx, job, now).await
}

/// Completes an active job none of whose works still imports; whether it did.
async fn complete_if_done(tx: &mut Tx, job: &str, now: Timestamp) -> StoreResult<bool> {
    let completed = tx
        .execute(
            "UPDATE connection_jobs SET status = 'completed', completed_at = $2, updated_at = $2 \
             WHERE id = $1 AND status = 'active' AND works_importing <= 0",
            &[job.into(), now.as_millis().into()],
        )
        .await?;
    Ok(completed == 1)
}

fn not_pending() -> StoreError {
    StoreError::Conflict {
        what: "it was triggered or cancelled meanwhile (not pending)".into(),
    }
}

#[async_trait]
impl ImportStore for Store {
    async fn insert_job(&self, job: &Job, event: &AuditEvent) -> StoreResult<()> {
        self.db
            .execute_recorded(
                "INSERT INTO connection_jobs (id, connection_id, workspace_id, name, status, \
                 created_at, updated_at, triggered_at, completed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)",
                &[
                    job.id.as_str().into(),
                    job.connection_id.as_str().into(),
                    job.workspace_id.as_str().into(),
                    job.name.as_str().into(),
                    job.status.as_str().into(),
                    job.created_at.as_millis().into(),
                    job.updated_at.as_millis().into(),
                ],
                std::slice::from_ref(event),
            )
            .await?;
        Ok(())
    }

    async fn job_by_id(&self, id: &JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM connection_jobs j WHERE j.id = $1");
        self.db.fetch_optional(&sql, &[id.as_str().into()]).await
    }

    async fn jobs_of(
        &self,
        connection: &ConnectionId,
        filters: &JobFilters,
        page: Page,
    ) -> StoreResult<Vec<Job>> {
        let mut query = ListQuery::new(
            JOB_COLUMNS,
            "connection_jobs",
            "j",
            "connection_id",
            connection.as_str(),
        );
        let ids = filters
            .ids
            .as_ref()
            .map(|ids| ids.iter().map(ToString::to_string).collect());
        let statuses = filters
            .statuses
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect());
        if !query.any_of("id", ids) || !query.any_of("status", statuses) {
            return Ok(Vec::new());
        }
        let (sql, binds) = query.finish(page, "name");
        let args: Vec<Arg<'_>> = binds.iter().map(Into::into).collect();
        self.db.fetch_page(&sql, &args, page).await
    }

    async fn job_progress(&self, job: &JobId) -> StoreResult<JobProgress> {
        let mut progress = JobProgress::default();
        let works: Vec<Counts> = self
            .db
            .fetch(
                "SELECT 'works', COUNT(*), CAST(0 AS BIGINT) FROM job_works WHERE job_id = $1",
                &[job.as_str().into()],
            )
            .await?;
        progress.works = works.first().map_or(0, |c| c.1.max(0) as u64);
        let by_status: Vec<Counts> = self
            .db
            .fetch(
                "SELECT status, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM job_artifacts \
                 WHERE job_id = $1 GROUP BY status",
                &[job.as_str().into()],
            )
            .await?;
        for Counts(status, count, bytes) in by_status {
            let count = count.max(0) as u64;
            progress.bytes += bytes.max(0) as u64;
            progress.artifacts += count;
            match ArtifactStatus::parse(&status) {
                Some(ArtifactStatus::Initial) => progress.initial += count,
                Some(ArtifactStatus::Success) => progress.succeeded += count,
                Some(ArtifactStatus::Error) => progress.failed += count,
                Some(ArtifactStatus::Terminated) => progress.terminated += count,
                None => return Err(corrupt(format!("job {job} has artifacts `{status}`"))),
            }
        }
        Ok(progress)
    }

    async fn existing_external_ids(
        &self,
        connection: &ConnectionId,
        external_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let mut found = Vec::new();
        // In chunks, so no statement binds more than a few hundred values.
        for chunk in external_ids.chunks(250) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT external_id FROM job_works WHERE connection_id = $1 AND external_id IN ({})",
                marks.join(", ")
            );
            let mut args: Vec<Arg<'_>> = vec![connection.as_str().into()];
            args.extend(chunk.iter().map(Arg::from));
            let rows: Vec<Text> = self.db.fetch(&sql, &args).await?;
            found.extend(rows.into_iter().map(|t| t.0));
        }
        Ok(found)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job = %job, works = works.len()))]
    async fn insert_works(
        &self,
        job: &JobId,
        works: &[JobWork],
        event: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        if share_job(&mut tx, job.as_str()).await? != Some(JobStatus::Pending) {
            return Err(not_pending());
        }
        for w in works {
            tx.execute(
                "INSERT INTO job_works (id, work_id, job_id, connection_id, workspace_id, \
                 external_id, name, tag, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    w.id.as_str().into(),
                    w.work_id.as_str().into(),
                    w.job_id.as_str().into(),
                    w.connection_id.as_str().into(),
                    w.workspace_id.as_str().into(),
                    w.external_id.as_str().into(),
                    w.name.as_str().into(),
                    w.tag.as_deref().into(),
                    w.status.as_str().into(),
                    w.created_at.as_millis().into(),
                    w.updated_at.as_millis().into(),
                ],
            )
            .await?;
        }
        tx.record(std::slice::from_ref(event)).await?;
        tx.commit().await
    }

    async fn job_work_by_id(&self, id: &JobWorkId) -> StoreResult<Option<JobWork>> {
        let sql = format!("SELECT {WORK_COLUMNS} FROM job_works w WHERE w.id = $1");
        self.db.fetch_optional(&sql, &[id.as_str().into()]).await
    }

    async fn work_by_work_id(&self, id: &WorkId) -> StoreResult<Option<JobWork>> {
        let sql = format!("SELECT {WORK_COLUMNS} FROM job_works w WHERE w.work_id = $1");
        self.db.fetch_optional(&sql, &[id.as_str().into()]).await
    }

    async fn recent_jobs_in(&self, workspace: &WorkspaceId, limit: u32) -> StoreResult<Vec<Job>> {
        self.recent_in(JOB_COLUMNS, "connection_jobs", "j", workspace, limit)
            .await
    }

    async fn recent_works_in(
        &self,
        workspace: &WorkspaceId,
        limit: u32,
    ) -> StoreResult<Vec<JobWork>> {
        self.recent_in(WORK_COLUMNS, "job_works", "w", workspace, limit)
            .await
    }

    async fn works_of(
        &self,
        connection: &ConnectionId,
        filters: &WorkFilters,
        page: Page,
    ) -> StoreResult<Vec<JobWork>> {
        let mut query = ListQuery::new(
            WORK_COLUMNS,
            "job_works",
            "w",
            "connection_id",
            connection.as_str(),
        );
        fn strings<T: ToString>(values: &Option<Vec<T>>) -> Option<Vec<String>> {
            values
                .as_ref()
                .map(|v| v.iter().map(ToString::to_string).collect())
        }
        if !query.any_of("id", strings(&filters.ids))
            || !query.any_of("job_id", strings(&filters.job_ids))
            || !query.any_of("work_id", strings(&filters.work_ids))
            || !query.any_of("external_id", filters.external_ids.clone())
        {
            return Ok(Vec::new());
        }
        let (sql, binds) = query.finish(page, "name");
        let args: Vec<Arg<'_>> = binds.iter().map(Into::into).collect();
        self.db.fetch_page(&sql, &args, page).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job = %job, artifacts = artifacts.len()))]
    async fn insert_artifacts(
        &self,
        job: &JobId,
        artifacts: &[Artifact],
        tasks: &[NewTask],
        event: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        if share_job(&mut tx, job.as_str()).await? != Some(JobStatus::Pending) {
            return Err(not_pending());
        }
        for a in artifacts {
            let metadata = serde_json::Value::Object(a.metadata.clone()).to_string();
            tx.execute(
                "INSERT INTO job_artifacts (id, artifact_id, job_work_id, work_id, job_id, \
                 connection_id, workspace_id, external_id, name, artifact_type, url, status, \
                 metadata, blob_key, size, sha256, mime_type, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, \
                 NULL, NULL, $14, $15)",
                &[
                    a.id.as_str().into(),
                    a.artifact_id.as_str().into(),
                    a.job_work_id.as_str().into(),
                    a.work_id.as_str().into(),
                    a.job_id.as_str().into(),
                    a.connection_id.as_str().into(),
                    a.workspace_id.as_str().into(),
                    a.external_id.as_str().into(),
                    a.name.as_str().into(),
                    a.artifact_type.as_str().into(),
                    a.url.as_deref().into(),
                    a.status.as_str().into(),
                    metadata.as_str().into(),
                    a.created_at.as_millis().into(),
                    a.updated_at.as_millis().into(),
                ],
            )
            .await?;
        }
        for t in tasks {
            crate::tasks::insert(&mut tx, t).await?;
        }
        tx.record(std::slice::from_ref(event)).await?;
        tx.commit().await
    }

    async fn artifacts_of_work(&self, job_work: &JobWorkId) -> StoreResult<Vec<Artifact>> {
        let sql = format!(
            "SELECT {ARTIFACT_COLUMNS} FROM job_artifacts a WHERE a.job_work_id = $1 \
             ORDER BY a.created_at, a.id"
        );
        self.db.fetch(&sql, &[job_work.as_str().into()]).await
    }

    async fn artifact_by_id(&self, id: &ArtifactId) -> StoreResult<Option<Artifact>> {
        let sql =
            format!("SELECT {ARTIFACT_COLUMNS} FROM job_artifacts a WHERE a.artifact_id = $1");
        self.db.fetch_optional(&sql, &[id.as_str().into()]).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job = %job))]
    async fn trigger_job(
        &self,
        job: &JobId,
        now: Timestamp,
        events: &JobEvents,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        if lock_job(&mut tx, job.as_str()).await? != Some(JobStatus::Pending) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE connection_jobs SET status = 'active', triggered_at = $2, updated_at = $2 \
             WHERE id = $1",
            &[job.as_str().into(), now.as_millis().into()],
        )
        .await?;
        tx.execute(
            "UPDATE job_works SET status = 'importing', updated_at = $2 \
             WHERE job_id = $1 AND status = 'pending'",
            &[job.as_str().into(), now.as_millis().into()],
        )
        .await?;
        settle_works(&mut tx, "job_id", job.as_str(), now).await?;
        let completed = count_importing(&mut tx, job.as_str(), now).await?;
        tx.record(std::slice::from_ref(&events.done)).await?;
        if completed {
            tx.record(std::slice::from_ref(&events.completed)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Cancels a pending or active job. A pending job is locked first, as adding and
    /// triggering do; an active one last, after its tasks, artifacts and works, in the order
    /// finishing artifacts take them (see [`lock_job`]), so a cancel never deadlocks with the
    /// downloads it stops.
    #[tracing::instrument(level = "debug", skip_all, fields(job = %job))]
    async fn cancel_job(
        &self,
        job: &JobId,
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<bool> {
        let Some(mut status) = self.job_by_id(job).await?.map(|j| j.status) else {
            return Ok(false);
        };
        let (job, now) = (job.as_str(), now.as_millis());
        loop {
            let mut tx = self.db.begin().await?;
            match status {
                JobStatus::Pending => match lock_job(&mut tx, job).await? {
                    Some(JobStatus::Pending) => {}
                    // Triggered meanwhile: cancel it as an active job.
                    Some(now_status @ JobStatus::Active) => {
                        status = now_status;
                        continue;
                    }
                    _ => return Ok(false),
                },
                JobStatus::Active => {}
                _ => return Ok(false),
            }
            tx.execute(
                "DELETE FROM tasks WHERE kind = 'download' AND subject IN \
                 (SELECT artifact_id FROM job_artifacts WHERE job_id = $1 AND status = 'initial')",
                &[job.into()],
            )
            .await?;
            tx.execute(
                "UPDATE job_artifacts SET status = 'terminated', updated_at = $2 \
                 WHERE job_id = $1 AND status = 'initial'",
                &[job.into(), now.into()],
            )
            .await?;
            tx.execute(
                "UPDATE job_works SET status = 'cancelled', updated_at = $2 \
                 WHERE job_id = $1 AND status IN ('pending', 'importing')",
                &[job.into(), now.into()],
            )
            .await?;
            // Completed meanwhile (its last artifact finished first): nothing to cancel, and
            // dropping the transaction undoes the statements above.
            let cancelled = tx
                .execute(
                    "UPDATE connection_jobs SET status = 'cancelled', completed_at = $2, \
                     updated_at = $2 WHERE id = $1 AND status IN ('pending', 'active')",
                    &[job.into(), now.into()],
                )
                .await?;
            if cancelled == 0 {
                return Ok(false);
            }
            tx.record(std::slice::from_ref(event)).await?;
            tx.commit().await?;
            return Ok(true);
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(artifact = %current.artifact_id))]
    async fn finish_artifact(
        &self,
        current: &Artifact,
        outcome: &ArtifactOutcome,
        task: Option<(&TaskId, &Owner)>,
        now: Timestamp,
        events: &JobEvents,
    ) -> StoreResult<bool> {
        let artifact = &current.artifact_id;
        let mut tx = self.db.begin().await?;
        if let Some((task, owner)) = task {
            if !crate::tasks::end(&mut tx, task, owner).await? {
                return Ok(false);
            }
        }
        let mut metadata = current.metadata.clone();
        let (status, stored) = match outcome {
            ArtifactOutcome::Success(stored) => {
                metadata.remove("error");
                metadata.insert("size".into(), stored.size.into());
                metadata.insert("sha256".into(), stored.sha256.clone().into());
                metadata.insert("mimeType".into(), stored.mime_type.clone().into());
                (ArtifactStatus::Success, Some(stored))
            }
            ArtifactOutcome::Error {
                code,
                message,
                http_status,
            } => {
                let mut error = serde_json::Map::new();
                error.insert("code".into(), code.clone().into());
                error.insert("message".into(), message.clone().into());
                if let Some(status) = http_status {
                    error.insert("httpStatus".into(), (*status).into());
                }
                metadata.insert("error".into(), error.into());
                (ArtifactStatus::Error, None)
            }
        };
        let metadata = serde_json::Value::Object(metadata).to_string();
        let changed = tx
            .execute(
                "UPDATE job_artifacts SET status = $2, metadata = $3, blob_key = $4, size = $5, \
                 sha256 = $6, mime_type = $7, updated_at = $8 \
                 WHERE artifact_id = $1 AND status = 'initial'",
                &[
                    artifact.as_str().into(),
                    status.as_str().into(),
                    metadata.as_str().into(),
                    stored.map(|s| s.blob_key.as_str()).into(),
                    stored
                        .map(|s| i64::try_from(s.size).unwrap_or(i64::MAX))
                        .into(),
                    stored.map(|s| s.sha256.as_str()).into(),
                    stored.map(|s| s.mime_type.as_str()).into(),
                    now.as_millis().into(),
                ],
            )
            .await?;
        // Finishers of one work take turns on its row, so the last of them sees every other's
        // outcome and settles it; only a finish that settles a work takes the job's row (the
        // order `lock_job` describes), so downloads of one job finish side by side.
        if changed == 1 {
            let work = current.job_work_id.as_str();
            tx.lock_row("job_works", work).await?;
            let completed = settle_works(&mut tx, "id", work, now).await? == 1
                && work_settled(&mut tx, current.job_id.as_str(), now).await?;
            tx.record(std::slice::from_ref(&events.done)).await?;
            if completed {
                tx.record(std::slice::from_ref(&events.completed)).await?;
            }
        }
        // A task whose artifact was terminated meanwhile still ends here.
        tx.commit().await?;
        Ok(changed == 1)
    }
}

impl Store {
    /// A workspace's `limit` most recently updated rows of `table` (scoped by its
    /// `workspace_id`, read through the `…_by_workspace` index).
    async fn recent_in<T: FromColumns + Send + Unpin + 'static>(
        &self,
        columns: &str,
        table: &str,
        alias: &'static str,
        workspace: &WorkspaceId,
        limit: u32,
    ) -> StoreResult<Vec<T>> {
        let query = ListQuery::new(columns, table, alias, "workspace_id", workspace.as_str());
        let page = Page::newest_first(limit);
        let (sql, binds) = query.finish(page, "name");
        let args: Vec<Arg<'_>> = binds.iter().map(Into::into).collect();
        self.db.fetch_page(&sql, &args, page).await
    }
}
