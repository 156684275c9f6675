//! `uploadConnectionFile` and `ProviderConnection.uploads`: files sent to a provider's
//! platform over tus by the worker (see `taxbridge_domain::uploads`).

use super::{caller, services, Date};
use crate::error::ApiError;
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use base64::{engine::general_purpose::STANDARD, Engine};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    lists::Page,
    uploads::{ByteSource, FileToSend, Upload},
};

#[derive(InputObject)]
#[graphql(name = "FileUploadInput")]
pub struct FileUploadInput {
    file_name: String,
    content_type: Option<String>,
    /// The provider's tus 1.0.0 endpoint that receives the file.
    tusd_endpoint: String,
    /// Send the stored bytes of this work artifact. Exactly one byte source is required.
    artifact_id: Option<ID>,
    /// Send these bytes, base64-encoded, at most 10 MiB decoded.
    content_base64: Option<String>,
}

#[derive(SimpleObject)]
pub struct UploadConnectionFileResult {
    /// True when the upload was accepted and queued.
    success: bool,
    message: Option<String>,
    upload_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct ConnectionUpload {
    id: ID,
    client_key: String,
    file_name: String,
    /// `queued` | `uploading` | `completed` | `failed`
    status: String,
    bytes_sent: i64,
    total_bytes: i64,
    error: Option<String>,
    created_at: Date,
    updated_at: Date,
}

impl From<Upload> for ConnectionUpload {
    fn from(u: Upload) -> Self {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Self {
            id: ID(u.id.to_string()),
            client_key: u.client_key,
            file_name: u.file_name,
            status: u.status.as_str().to_owned(),
            bytes_sent: count(u.bytes_sent),
            total_bytes: count(u.total_bytes),
            error: u.error,
            created_at: u.created_at.into(),
            updated_at: u.updated_at.into(),
        }
    }
}

/// The one byte source of `file`, decoded.
fn source_of(file: &mut FileUploadInput) -> Result<ByteSource, ApiError> {
    match (file.artifact_id.take(), file.content_base64.take()) {
        (Some(artifact), None) => Ok(ByteSource::Artifact(artifact.0)),
        (None, Some(encoded)) => {
            // Base64 is 4 bytes per 3: anything longer than this decodes to over the limit.
            let max = taxbridge_domain::uploads::MAX_INLINE_BYTES.div_ceil(3) * 4;
            if encoded.len() > max {
                return Err(ApiError::bad_input(
                    "file.contentBase64",
                    "the file is larger than 10 MiB; store it as a work artifact and send it with artifactId",
                ));
            }
            STANDARD
                .decode(encoded.trim())
                .map(ByteSource::Inline)
                .map_err(|err| {
                    ApiError::bad_input(
                        "file.contentBase64",
                        format!("contentBase64 is not standard base64 ({err})"),
                    )
                })
        }
        _ => Err(ApiError::bad_input(
            "file",
            "give exactly one byte source: artifactId (a stored work artifact) or contentBase64",
        )),
    }
}

/// `ProviderConnection.uploads`, newest first.
pub async fn of_connection(
    ctx: &Context<'_>,
    connection_id: &str,
    offset: Option<i32>,
    limit: Option<i32>,
) -> Result<Vec<ConnectionUpload>, ApiError> {
    let page = Page::parse(limit, offset, Some(("createdAt", true)), "fileName")?;
    let caller = caller(ctx).await?;
    let uploads = services(ctx)
        .uploads
        .of_connection(caller, connection_id, page)
        .await?;
    Ok(uploads.into_iter().map(Into::into).collect())
}

#[derive(Default)]
pub struct UploadMutation;

#[Object]
impl UploadMutation {
    /// Queue a file for upload to a client on the provider's platform over tus.
    async fn upload_connection_file(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
        client_key: String,
        mut file: FileUploadInput,
    ) -> Result<UploadConnectionFileResult, ApiError> {
        let caller = caller(ctx).await?;
        let services = services(ctx);
        let source = source_of(&mut file)?;
        let upload = services
            .uploads
            .send(
                caller,
                &connection_id,
                &client_key,
                FileToSend {
                    file_name: file.file_name,
                    content_type: file.content_type,
                    tusd_endpoint: file.tusd_endpoint,
                    source,
                },
            )
            .await?;
        Ok(UploadConnectionFileResult {
            success: true,
            message: Some(format!(
                "{} ({} bytes) is queued for upload to client {}; follow it on the connection's uploads.",
                upload.file_name, upload.total_bytes, upload.client_key
            )),
            upload_id: Some(ID(upload.id.to_string())),
        })
    }
}
