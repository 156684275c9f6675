//! Push imports (the tax-preparation guide's push pattern): `createConnectionJob`,
//! `createJobWorks`, `createJobWorkArtifacts`, `triggerConnectionJob`, `cancelConnectionJob`,
//! and a connection's `jobWorks` and `connectionJobs`. Every id-taking resolver reaches the
//! connection's workspace first (in the domain's `Imports`); nested fields read only rows of
//! an object the caller already reached.

use super::{
    caller,
    lists::{page, SortBy},
    services, Date,
};
use crate::error::ApiError;
use async_graphql::{ComplexObject, Context, InputObject, Json, Object, SimpleObject, ID};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    ids::{JobId, JobWorkId, WorkId},
    imports::{self, JobStatus},
    lists::check_filter,
};

/// An import batch: works and their files sent together.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ConnectionJob {
    id: ID,
    connection_id: ID,
    workspace_id: ID,
    name: String,
    /// `pending` (open for works) | `active` (triggered, processing) | `completed` | `failed` | `cancelled`
    status: String,
    created_at: Date,
    updated_at: Date,
    triggered_at: Option<Date>,
    completed_at: Option<Date>,
}

impl From<imports::Job> for ConnectionJob {
    fn from(j: imports::Job) -> Self {
        Self {
            id: ID(j.id.to_string()),
            connection_id: ID(j.connection_id.to_string()),
            workspace_id: ID(j.workspace_id.to_string()),
            name: j.name,
            status: j.status.as_str().to_owned(),
            created_at: j.created_at.into(),
            updated_at: j.updated_at.into(),
            triggered_at: j.triggered_at.map(Into::into),
            completed_at: j.completed_at.map(Into::into),
        }
    }
}

#[derive(SimpleObject)]
pub struct ConnectionJobProgress {
    works: i32,
    artifacts: i32,
    artifacts_initial: i32,
    artifacts_succeeded: i32,
    artifacts_failed: i32,
    artifacts_terminated: i32,
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[ComplexObject]
impl ConnectionJob {
    /// Counts of the job's works and of its artifacts by state.
    async fn progress(&self, ctx: &Context<'_>) -> Result<ConnectionJobProgress, ApiError> {
        let caller = caller(ctx).await?;
        let p = services(ctx).imports.progress(caller, &self.id).await?;
        Ok(ConnectionJobProgress {
            works: count(p.works),
            artifacts: count(p.artifacts),
            artifacts_initial: count(p.initial),
            artifacts_succeeded: count(p.succeeded),
            artifacts_failed: count(p.failed),
            artifacts_terminated: count(p.terminated),
        })
    }
}

/// A work's place in its import job.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct JobWork {
    id: ID,
    created_at: Date,
    updated_at: Date,
    workspace_id: ID,
    work_id: ID,
    connection_job_id: ID,
    work: Work,
}

/// One tax preparation for one client.
#[derive(SimpleObject)]
pub struct Work {
    id: ID,
    name: String,
    external_id: String,
    /// `pending` | `importing` | `ready` | `needs_attention` | `cancelled`
    status: String,
    tag: Option<String>,
    connection_id: ID,
    created_at: Date,
    updated_at: Date,
}

impl From<imports::JobWork> for JobWork {
    fn from(w: imports::JobWork) -> Self {
        Self {
            id: ID(w.id.to_string()),
            created_at: w.created_at.into(),
            updated_at: w.updated_at.into(),
            workspace_id: ID(w.workspace_id.to_string()),
            work_id: ID(w.work_id.to_string()),
            connection_job_id: ID(w.job_id.to_string()),
            work: Work {
                id: ID(w.work_id.to_string()),
                name: w.name,
                external_id: w.external_id,
                status: w.status.as_str().to_owned(),
                tag: w.tag,
                connection_id: ID(w.connection_id.to_string()),
                created_at: w.created_at.into(),
                updated_at: w.updated_at.into(),
            },
        }
    }
}

#[ComplexObject]
impl JobWork {
    /// The work's files.
    async fn job_work_artifacts(&self, ctx: &Context<'_>) -> Result<Vec<JobArtifact>, ApiError> {
        let caller = caller(ctx).await?;
        let services = services(ctx);
        let artifacts = services.imports.artifacts_of(caller, &self.id).await?;
        Ok(artifacts
            .into_iter()
            .map(|a| JobArtifact::new(a, &services.public_base_url))
            .collect())
    }
}

/// A file's place in its import job.
#[derive(SimpleObject)]
pub struct JobArtifact {
    id: ID,
    created_at: Date,
    updated_at: Date,
    workspace_id: ID,
    artifact_id: ID,
    connection_job_id: ID,
    job_work_id: ID,
    work_artifact: WorkArtifact,
}

/// One file of a work.
#[derive(SimpleObject)]
pub struct WorkArtifact {
    id: ID,
    external_id: String,
    created_at: Date,
    updated_at: Date,
    work_id: ID,
    connection_id: ID,
    name: String,
    #[graphql(name = "type")]
    artifact_type: String,
    /// `initial` | `success` | `error` | `terminated`
    status: String,
    /// Where the stored file can be downloaded from the gateway once `success`.
    uploaded_url: Option<String>,
    /// The caller's metadata, plus `size`, `sha256` and `mimeType` on success, or `error` {code, message} on error.
    metadata: Option<Json<serde_json::Value>>,
}

/// Where a stored artifact's bytes are served: `GET` with a bearer token that reaches its
/// workspace.
pub fn artifact_url(public_base_url: &str, artifact: &str) -> String {
    format!(
        "{}/files/artifacts/{artifact}",
        public_base_url.trim_end_matches('/')
    )
}

impl JobArtifact {
    fn new(a: imports::Artifact, public_base_url: &str) -> Self {
        let uploaded_url = (a.status == imports::ArtifactStatus::Success)
            .then(|| artifact_url(public_base_url, a.artifact_id.as_str()));
        Self {
            id: ID(a.id.to_string()),
            created_at: a.created_at.into(),
            updated_at: a.updated_at.into(),
            workspace_id: ID(a.workspace_id.to_string()),
            artifact_id: ID(a.artifact_id.to_string()),
            connection_job_id: ID(a.job_id.to_string()),
            job_work_id: ID(a.job_work_id.to_string()),
            work_artifact: WorkArtifact {
                id: ID(a.artifact_id.to_string()),
                external_id: a.external_id,
                created_at: a.created_at.into(),
                updated_at: a.updated_at.into(),
                work_id: ID(a.work_id.to_string()),
                connection_id: ID(a.connection_id.to_string()),
                name: a.name,
                artifact_type: a.artifact_type,
                status: a.status.as_str().to_owned(),
                uploaded_url,
                metadata: Some(Json(serde_json::Value::Object(a.metadata))),
            },
        }
    }
}

#[derive(InputObject)]
pub struct CreateJobWorksInput {
    /// e.g. "John Smith - 2024 Tax Return"
    name: String,
    /// Unique within the connection, across all its jobs.
    external_id: String,
    /// A free label, e.g. a tax year.
    tag: Option<String>,
}

#[derive(InputObject)]
pub struct CreateJobWorkArtifactsInput {
    /// e.g. "W-2 Form 2024"
    name: String,
    /// e.g. w2, 1099, receipt, document, form
    #[graphql(name = "type")]
    artifact_type: String,
    /// Fetched by the gateway: public, or reachable with the connection's credentials. Without it, the bytes are sent with PUT /uploads/artifacts/{artifactId}.
    url: Option<String>,
    external_id: String,
    /// A JSON object, at most 16 KiB.
    metadata: Option<Json<serde_json::Value>>,
}

#[derive(InputObject, Default)]
pub struct ConnectionJobFilters {
    ids: Option<Vec<ID>>,
    statuses: Option<Vec<String>>,
}

#[derive(InputObject, Default)]
pub struct JobWorkFilters {
    ids: Option<Vec<ID>>,
    connection_job_ids: Option<Vec<ID>>,
    work_ids: Option<Vec<ID>>,
    external_ids: Option<Vec<String>>,
}

fn ids<T>(values: Option<Vec<ID>>, make: fn(String) -> T) -> Option<Vec<T>> {
    values.map(|v| v.into_iter().map(|id| make(id.0)).collect())
}

/// `ProviderConnection.connectionJobs`.
pub async fn jobs_of(
    ctx: &Context<'_>,
    connection: &str,
    filters: Option<ConnectionJobFilters>,
    sort_by: Option<SortBy>,
    offset: Option<i32>,
    limit: Option<i32>,
) -> Result<Vec<ConnectionJob>, ApiError> {
    let page = page(limit, offset, sort_by.as_ref(), "name")?;
    let filters = filters.unwrap_or_default();
    check_filter("filters.ids", filters.ids.as_deref())?;
    check_filter("filters.statuses", filters.statuses.as_deref())?;
    let statuses = filters
        .statuses
        .map(|statuses| {
            statuses
                .iter()
                .map(|s| {
                    JobStatus::parse(s).ok_or_else(|| {
                        ApiError::bad_input(
                            "filters.statuses",
                            format!("`{s}` is not a job status; use pending, active, completed, failed or cancelled"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let filters = imports::JobFilters {
        ids: ids(filters.ids, JobId::from_string),
        statuses,
    };
    let caller = caller(ctx).await?;
    let jobs = services(ctx)
        .imports
        .jobs_of(caller, connection, &filters, page)
        .await?;
    Ok(jobs.into_iter().map(Into::into).collect())
}

/// `ProviderConnection.jobWorks`.
pub async fn works_of(
    ctx: &Context<'_>,
    connection: &str,
    filters: Option<JobWorkFilters>,
    sort_by: Option<SortBy>,
    offset: Option<i32>,
    limit: Option<i32>,
) -> Result<Vec<JobWork>, ApiError> {
    let page = page(limit, offset, sort_by.as_ref(), "name")?;
    let filters = filters.unwrap_or_default();
    check_filter("filters.ids", filters.ids.as_deref())?;
    check_filter(
        "filters.connectionJobIds",
        filters.connection_job_ids.as_deref(),
    )?;
    check_filter("filters.workIds", filters.work_ids.as_deref())?;
    check_filter("filters.externalIds", filters.external_ids.as_deref())?;
    let filters = imports::WorkFilters {
        ids: ids(filters.ids, JobWorkId::from_string),
        job_ids: ids(filters.connection_job_ids, JobId::from_string),
        work_ids: ids(filters.work_ids, WorkId::from_string),
        external_ids: filters.external_ids,
    };
    let caller = caller(ctx).await?;
    let works = services(ctx)
        .imports
        .works_of(caller, connection, &filters, page)
        .await?;
    Ok(works.into_iter().map(Into::into).collect())
}

#[derive(Default)]
pub struct ImportMutation;

#[Object]
impl ImportMutation {
    /// Open an import batch on an `active` connection; status `pending`.
    async fn create_connection_job(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
        job_name: String,
    ) -> Result<ConnectionJob, ApiError> {
        let caller = caller(ctx).await?;
        let job = services(ctx)
            .imports
            .create_job(caller, &connection_id, &job_name)
            .await?;
        Ok(job.into())
    }

    /// Attach clients (works) to a `pending` job.
    async fn create_job_works(
        &self,
        ctx: &Context<'_>,
        connection_job_id: ID,
        inputs: Vec<CreateJobWorksInput>,
    ) -> Result<Vec<JobWork>, ApiError> {
        let caller = caller(ctx).await?;
        let inputs = inputs
            .into_iter()
            .map(|i| imports::NewWork {
                name: i.name,
                external_id: i.external_id,
                tag: i.tag,
            })
            .collect();
        let works = services(ctx)
            .imports
            .create_works(caller, &connection_job_id, inputs)
            .await?;
        Ok(works.into_iter().map(Into::into).collect())
    }

    /// Attach files (artifacts) to a job work; each `url` is queued for download at once.
    async fn create_job_work_artifacts(
        &self,
        ctx: &Context<'_>,
        job_work_id: ID,
        inputs: Vec<CreateJobWorkArtifactsInput>,
    ) -> Result<Vec<JobArtifact>, ApiError> {
        let caller = caller(ctx).await?;
        let inputs = inputs
            .into_iter()
            .map(|i| imports::NewArtifact {
                name: i.name,
                artifact_type: i.artifact_type,
                url: i.url,
                external_id: i.external_id,
                metadata: i.metadata.map(|m| m.0),
            })
            .collect();
        let services = services(ctx);
        let artifacts = services
            .imports
            .create_artifacts(caller, &job_work_id, inputs)
            .await?;
        Ok(artifacts
            .into_iter()
            .map(|a| JobArtifact::new(a, &services.public_base_url))
            .collect())
    }

    /// The guide's 'trigger the import' step: seal the job and process all its works.
    async fn trigger_connection_job(
        &self,
        ctx: &Context<'_>,
        connection_job_id: ID,
    ) -> Result<ConnectionJob, ApiError> {
        let caller = caller(ctx).await?;
        let job = services(ctx)
            .imports
            .trigger(caller, &connection_job_id)
            .await?;
        Ok(job.into())
    }

    /// Cancel a job; artifacts not yet finished become `terminated`.
    async fn cancel_connection_job(
        &self,
        ctx: &Context<'_>,
        connection_job_id: ID,
    ) -> Result<ConnectionJob, ApiError> {
        let caller = caller(ctx).await?;
        let job = services(ctx)
            .imports
            .cancel(caller, &connection_job_id)
            .await?;
        Ok(job.into())
    }
}
