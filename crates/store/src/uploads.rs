//! Files sent to a provider's platform: the `connection_uploads` table and the
//! [`UploadStore`] port. Progress and the outcome are written only while the writer holds the
//! upload task's lease (the task row names its owner), so a worker that lost its lease to
//! another never overwrites the other's record.

use crate::{
    db::Arg,
    imports::parse_status,
    listing::ListQuery,
    read::{Columns, FromColumns},
    tasks, Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    audit::AuditEvent,
    ids::{ArtifactId, ConnectionId, TaskId, UploadId, WorkspaceId},
    lists::Page,
    store::StoreResult,
    tasks::{NewTask, Owner},
    time::Timestamp,
    uploads::{Upload, UploadStatus, UploadStore},
};

const COLUMNS: &str = "u.id, u.connection_id, u.workspace_id, u.client_key, u.file_name, \
     u.content_type, u.tusd_endpoint, u.artifact_id, u.blob_key, u.total_bytes, u.bytes_sent, \
     u.status, u.upload_url, u.error, u.created_at, u.updated_at";

impl FromColumns for Upload {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        let id = c.text()?;
        Ok(Upload {
            connection_id: ConnectionId::from_string(c.text()?),
            workspace_id: WorkspaceId::from_string(c.text()?),
            client_key: c.text()?,
            file_name: c.text()?,
            content_type: c.opt_text()?,
            tusd_endpoint: c.text()?,
            artifact_id: c.opt_text()?.map(ArtifactId::from_string),
            blob_key: c.text()?,
            total_bytes: u64::try_from(c.int()?).unwrap_or(0),
            bytes_sent: u64::try_from(c.int()?).unwrap_or(0),
            status: parse_status(&id, &c.text()?, UploadStatus::parse)?,
            upload_url: c.opt_text()?,
            error: c.opt_text()?,
            created_at: Timestamp::from_millis(c.int()?),
            updated_at: Timestamp::from_millis(c.int()?),
            id: UploadId::from_string(id),
        })
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `AND` the task is still held by `owner`: the guard of every worker write.
const LEASE_HELD: &str =
    "EXISTS (SELECT 1 FROM tasks t WHERE t.id = $TASK AND t.lease_owner = $OWNER)";

#[async_trait]
impl UploadStore for Store {
    async fn insert_upload(
        &self,
        u: &Upload,
        task: &NewTask,
        event: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO connection_uploads (id, connection_id, workspace_id, client_key, \
             file_name, content_type, tusd_endpoint, artifact_id, blob_key, total_bytes, \
             bytes_sent, status, upload_url, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, NULL, NULL, $12, $12)",
            &[
                u.id.as_str().into(),
                u.connection_id.as_str().into(),
                u.workspace_id.as_str().into(),
                u.client_key.as_str().into(),
                u.file_name.as_str().into(),
                u.content_type.as_deref().into(),
                u.tusd_endpoint.as_str().into(),
                u.artifact_id.as_ref().map(|a| a.as_str()).into(),
                u.blob_key.as_str().into(),
                count(u.total_bytes).into(),
                u.status.as_str().into(),
                u.created_at.as_millis().into(),
            ],
        )
        .await?;
        tasks::insert(&mut tx, task).await?;
        tx.record(std::slice::from_ref(event)).await?;
        tx.commit().await
    }

    async fn upload_by_id(&self, id: &UploadId) -> StoreResult<Option<Upload>> {
        let sql = format!("SELECT {COLUMNS} FROM connection_uploads u WHERE u.id = $1");
        self.db.fetch_optional(&sql, &[id.as_str().into()]).await
    }

    async fn uploads_of(&self, connection: &ConnectionId, page: Page) -> StoreResult<Vec<Upload>> {
        let query = ListQuery::new(
            COLUMNS,
            "connection_uploads",
            "u",
            "connection_id",
            connection.as_str(),
        );
        let (sql, binds) = query.finish(page, "file_name");
        let args: Vec<Arg<'_>> = binds.iter().map(Into::into).collect();
        self.db.fetch_page(&sql, &args, page).await
    }

    async fn record_upload_progress(
        &self,
        id: &UploadId,
        upload_url: &str,
        bytes_sent: u64,
        (task, owner): (&TaskId, &Owner),
        now: Timestamp,
    ) -> StoreResult<bool> {
        let sql = format!(
            "UPDATE connection_uploads SET status = 'uploading', upload_url = $2, \
             bytes_sent = $3, updated_at = $4 \
             WHERE id = $1 AND status IN ('queued', 'uploading') AND {}",
            LEASE_HELD.replace("$TASK", "$5").replace("$OWNER", "$6")
        );
        let changed = self
            .db
            .execute(
                &sql,
                &[
                    id.as_str().into(),
                    upload_url.into(),
                    count(bytes_sent).into(),
                    now.as_millis().into(),
                    task.as_str().into(),
                    owner.0.as_str().into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        error: Option<&str>,
        (task, owner): (&TaskId, &Owner),
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        if !tasks::end(&mut tx, task, owner).await? {
            return Ok(false);
        }
        let (status, sent) = match error {
            None => (UploadStatus::Completed, "total_bytes"),
            Some(_) => (UploadStatus::Failed, "bytes_sent"),
        };
        let changed = tx
            .execute(
                &format!(
                    "UPDATE connection_uploads SET status = $2, error = $3, bytes_sent = {sent}, \
                     updated_at = $4 WHERE id = $1 AND status IN ('queued', 'uploading')"
                ),
                &[
                    id.as_str().into(),
                    status.as_str().into(),
                    error.into(),
                    now.as_millis().into(),
                ],
            )
            .await?;
        if changed == 1 {
            tx.record(std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}
