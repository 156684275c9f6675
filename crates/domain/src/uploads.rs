//! Files sent back to a provider's platform (spec §5, `uploadConnectionFile`): the mutation
//! checks everything at once and queues an `upload` task; the worker sends the bytes to the
//! `tusdEndpoint` with tus 1.0.0 and records how far it got.
//!
//! An upload: `queued` → `uploading` (with `bytesSent`) → `completed` | `failed` (with
//! `error`). Its bytes are a blob: a stored work artifact's, or the `contentBase64` the caller
//! sent, kept under the upload's own key until it is sent. The tus upload's URL is stored as
//! soon as the server creates it, so a worker that dies mid-file resumes from the server's
//! offset instead of starting over.

use crate::audit::{Action, AuditEvent, Who};
use crate::words::Word;
use crate::{
    blobs::chunks_of,
    connections::{ConnectionStatus, Connections},
    identity::Caller,
    ids::{ArtifactId, ConnectionId, TaskId, UploadId, WorkspaceId},
    imports::{ImportError, Imports},
    lists::Page,
    store::{StoreError, StoreResult},
    tasks::{NewTask, Owner, TaskKind},
    text::unprintable,
    time::Timestamp,
};
use async_trait::async_trait;
use std::sync::Arc;

/// The most bytes `contentBase64` may carry, decoded.
pub const MAX_INLINE_BYTES: usize = 10 * 1024 * 1024;
const MAX_NAME_CHARS: usize = 255;
const MAX_CLIENT_KEY_CHARS: usize = 200;
const MAX_ENDPOINT_BYTES: usize = 2_048;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum UploadStatus {
    Queued,
    Uploading,
    Completed,
    Failed,
}

impl UploadStatus {
    pub fn is_final(self) -> bool {
        matches!(self, UploadStatus::Completed | UploadStatus::Failed)
    }
}

impl Word for UploadStatus {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub connection_id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub client_key: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub tusd_endpoint: String,
    /// The work artifact whose bytes are sent, when the caller named one.
    pub artifact_id: Option<ArtifactId>,
    pub blob_key: String,
    pub total_bytes: u64,
    pub bytes_sent: u64,
    pub status: UploadStatus,
    /// The tus upload's URL, once the server created it.
    pub upload_url: Option<String>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Upload {
    /// The blob key for bytes sent inline: the upload's own.
    pub fn inline_blob_key(workspace: &WorkspaceId, id: &UploadId) -> String {
        format!("workspaces/{workspace}/uploads/{id}")
    }

    /// Whether the blob is this upload's own (and may go once it is sent).
    pub fn owns_blob(&self) -> bool {
        self.artifact_id.is_none()
    }
}

#[async_trait]
pub trait UploadStore: Send + Sync + 'static {
    /// Inserts the upload and its task in one transaction.
    async fn insert_upload(
        &self,
        upload: &Upload,
        task: &NewTask,
        event: &AuditEvent,
    ) -> StoreResult<()>;
    async fn upload_by_id(&self, id: &UploadId) -> StoreResult<Option<Upload>>;
    /// A connection's uploads, newest first by default.
    async fn uploads_of(&self, connection: &ConnectionId, page: Page) -> StoreResult<Vec<Upload>>;
    /// Records progress of an unfinished upload (status `uploading`, the tus URL, bytes sent),
    /// only while `owner` holds the task's lease; false otherwise.
    async fn record_upload_progress(
        &self,
        id: &UploadId,
        upload_url: &str,
        bytes_sent: u64,
        task: (&TaskId, &Owner),
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Ends the upload (`completed`, or `failed` with `error`) and its task in one
    /// transaction, only while `owner` holds the lease; false otherwise.
    async fn finish_upload(
        &self,
        id: &UploadId,
        error: Option<&str>,
        task: (&TaskId, &Owner),
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<bool>;
}

/// Where the bytes of an upload come from, as the caller named them.
pub enum ByteSource {
    Artifact(String),
    /// Decoded `contentBase64`.
    Inline(Vec<u8>),
}

/// `uploadConnectionFile`'s `file`, read.
pub struct FileToSend {
    pub file_name: String,
    pub content_type: Option<String>,
    pub tusd_endpoint: String,
    pub source: ByteSource,
}

/// An upload that passed every check: what the API stores (inline bytes first) and queues.
pub struct Checked {
    pub upload: Upload,
    /// Inline bytes still to be written to `upload.blob_key`.
    pub inline: Option<Vec<u8>>,
}

fn invalid(field: &str, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ImportError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(invalid(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    if let Some(bad) = unprintable(value) {
        return Err(invalid(field, format!("{field} contains {bad}")));
    }
    Ok(())
}

/// The tus endpoint: an absolute http(s) URL. Where it points is the egress policy's to judge
/// when the worker calls it.
fn check_endpoint(endpoint: &str) -> Result<(), ImportError> {
    const FIELD: &str = "file.tusdEndpoint";
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(invalid(
            FIELD,
            format!("the URL is longer than {MAX_ENDPOINT_BYTES} bytes"),
        ));
    }
    let url = url::Url::parse(endpoint)
        .map_err(|err| invalid(FIELD, format!("`{endpoint}` is not an absolute URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            FIELD,
            "the tus endpoint must be an http or https URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(FIELD, "the URL must not carry credentials"));
    }
    Ok(())
}

pub struct Uploads {
    store: Arc<dyn UploadStore>,
    imports: Arc<Imports>,
    connections: Arc<Connections>,
}

impl Uploads {
    pub fn new<S: UploadStore>(
        store: Arc<S>,
        imports: Arc<Imports>,
        connections: Arc<Connections>,
    ) -> Self {
        Self {
            store,
            imports,
            connections,
        }
    }

    /// `uploadConnectionFile`: checks the file ([`Self::check`]), keeps its inline bytes,
    /// and queues the upload for the worker; answers the queued upload.
    pub async fn send(
        &self,
        caller: &Caller,
        connection_id: &str,
        client_key: &str,
        file: FileToSend,
    ) -> Result<Upload, ImportError> {
        let Checked { upload, inline } =
            self.check(caller, connection_id, client_key, file).await?;
        if let Some(bytes) = inline {
            let len = bytes.len() as u64;
            self.imports
                .blobs
                .put(&upload.blob_key, chunks_of(bytes), len)
                .await
                .map_err(|err| ImportError::Store(StoreError::Backend(Box::new(err))))?;
        }
        self.queue(&upload, &Who::caller(caller)).await?;
        Ok(upload)
    }

    /// Every check of `uploadConnectionFile`, before anything is stored: the connection is
    /// reached and `active`, the names are sane, the endpoint is a URL, and the one byte
    /// source is a stored artifact of the connection's workspace or at most 10 MiB inline.
    async fn check(
        &self,
        caller: &Caller,
        connection_id: &str,
        client_key: &str,
        file: FileToSend,
    ) -> Result<Checked, ImportError> {
        let (connection, _) = self.connections.reach(caller, connection_id).await?;
        check_text("clientKey", client_key, MAX_CLIENT_KEY_CHARS)?;
        check_text("file.fileName", &file.file_name, MAX_NAME_CHARS)?;
        if let Some(content_type) = &file.content_type {
            check_text("file.contentType", content_type, MAX_NAME_CHARS)?;
        }
        check_endpoint(&file.tusd_endpoint)?;
        if connection.status != ConnectionStatus::Active {
            return Err(ImportError::Conflict(format!(
                "Only an active connection sends files to its platform; this one is {}.",
                connection.status.as_str()
            )));
        }
        let id = UploadId::generate();
        let (artifact_id, blob_key, total_bytes, inline) = match file.source {
            ByteSource::Artifact(artifact) => {
                let not_here = || ImportError::NotFound("artifact");
                let artifact = match self.imports.artifact(caller, &artifact).await {
                    Ok(artifact) if artifact.workspace_id == connection.workspace_id => artifact,
                    Ok(_) | Err(ImportError::NotFound(_)) => return Err(not_here()),
                    Err(other) => return Err(other),
                };
                let Some(stored) = artifact.stored.clone() else {
                    return Err(ImportError::Conflict(format!(
                        "Artifact {} has no stored bytes yet (it is {}); send it once it is `success`.",
                        artifact.artifact_id,
                        artifact.status.as_str()
                    )));
                };
                (
                    Some(artifact.artifact_id),
                    stored.blob_key,
                    stored.size,
                    None,
                )
            }
            ByteSource::Inline(bytes) => {
                if bytes.len() > MAX_INLINE_BYTES {
                    return Err(invalid(
                        "file.contentBase64",
                        "the file is larger than 10 MiB; store it as a work artifact and send it with artifactId",
                    ));
                }
                let key = Upload::inline_blob_key(&connection.workspace_id, &id);
                (None, key, bytes.len() as u64, Some(bytes))
            }
        };
        let now = Timestamp::now();
        Ok(Checked {
            upload: Upload {
                id,
                connection_id: connection.id,
                workspace_id: connection.workspace_id,
                client_key: client_key.to_owned(),
                file_name: file.file_name,
                content_type: file.content_type,
                tusd_endpoint: file.tusd_endpoint,
                artifact_id,
                blob_key,
                total_bytes,
                bytes_sent: 0,
                status: UploadStatus::Queued,
                upload_url: None,
                error: None,
                created_at: now,
                updated_at: now,
            },
            inline,
        })
    }

    /// Stores a checked upload (its inline bytes already written) and queues its task.
    async fn queue(&self, upload: &Upload, who: &Who) -> Result<(), ImportError> {
        let task = NewTask::now(
            TaskKind::Upload,
            upload.id.as_str(),
            upload.workspace_id.as_str(),
        );
        let event = upload_event(upload, who.event(Action::UploadQueued))
            .with("fileName", upload.file_name.as_str())
            .with("bytes", upload.total_bytes);
        self.store.insert_upload(upload, &task, &event).await?;
        self.imports.tasks_added().notify_one();
        Ok(())
    }

    /// `ProviderConnection.uploads`, for a caller who reaches the connection.
    pub async fn of_connection(
        &self,
        caller: &Caller,
        connection_id: &str,
        page: Page,
    ) -> Result<Vec<Upload>, ImportError> {
        let (connection, _) = self.connections.reach(caller, connection_id).await?;
        Ok(self.store.uploads_of(&connection.id, page).await?)
    }

    /// The upload a task is for, while it is unfinished; `None` once it is gone or final. The
    /// worker's read: its identity is the task it holds, not a caller.
    pub async fn awaiting_send(&self, id: &UploadId) -> Result<Option<Upload>, ImportError> {
        Ok(self
            .store
            .upload_by_id(id)
            .await?
            .filter(|upload| !upload.status.is_final()))
    }

    /// Records how far a running upload got, only while `lease` still holds its task.
    pub async fn record_progress(
        &self,
        upload: &UploadId,
        upload_url: &str,
        bytes_sent: u64,
        lease: (&TaskId, &Owner),
    ) -> Result<bool, ImportError> {
        Ok(self
            .store
            .record_upload_progress(upload, upload_url, bytes_sent, lease, Timestamp::now())
            .await?)
    }

    /// Ends an upload (`completed`, or `failed` with `error`) with its task, only while
    /// `lease` still holds it.
    pub async fn finish(
        &self,
        upload: &Upload,
        error: Option<&str>,
        lease: (&TaskId, &Owner),
    ) -> Result<bool, ImportError> {
        let event = match error {
            None => upload_event(upload, Who::system().event(Action::UploadCompleted)),
            Some(error) => {
                upload_event(upload, Who::system().event(Action::UploadFailed)).with("error", error)
            }
        };
        Ok(self
            .store
            .finish_upload(&upload.id, error, lease, Timestamp::now(), &event)
            .await?)
    }
}

fn upload_event(upload: &Upload, event: AuditEvent) -> AuditEvent {
    event
        .in_workspace(&upload.workspace_id)
        .target("upload", &upload.id)
        .target("connection", &upload.connection_id)
}
