//! An artifact's bytes over plain HTTP, with the same bearer token as `/graphql`:
//!
//! - `GET /files/artifacts/{artifactId}` (an artifact's `uploadedUrl`): streams the stored
//!   file to any caller who reaches its workspace (or a user signed in to the web pages), with `Content-Type`, `Content-Length`,
//!   `ETag` (the sha256) and single-range `Range` support.
//! - `PUT /uploads/artifacts/{artifactId}`: streams the bytes of an artifact created without a
//!   `url` into blob storage; `409` once it has bytes.
//!
//! `401` without a valid token; `404` for an artifact out of reach, the same as a missing one.
//! Errors are JSON like every other refusal of the gateway.
//!
//! Stored bytes are downloads, never pages of this origin: whatever type the file server or
//! uploader claimed, the answer is `Content-Disposition: attachment`, `nosniff`, a sandboxing
//! CSP, and a `Content-Type` from [`SERVED_TYPES`] (`application/octet-stream` otherwise), so
//! an HTML, SVG or script artifact opened by link runs nothing here.

use crate::{
    auth::{Bearer, BearerOrSession},
    error::{ApiError, ErrorCode},
    ground::{AppState, HttpError, RequestId},
};
use axum::{
    body::Body,
    extract::{Path, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use std::{ops::Range, sync::Arc, time::Duration};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    blobs::BlobWriteError,
    imports::{ArtifactStatus, ReceiveError},
};

/// The document types served as what they are; anything else (HTML, SVG, scripts, XML, …) is
/// served as `application/octet-stream`.
pub const SERVED_TYPES: [&str; 16] = [
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/tiff",
    "image/heic",
    "text/plain",
    "text/csv",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/rtf",
];

/// The `Content-Type` a stored file is served with: its own when on [`SERVED_TYPES`] (text with
/// its charset), `application/octet-stream` otherwise.
pub fn served_type(stored: &str) -> String {
    let essence = stored
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/plain" | "text/csv" => format!("{essence}; charset=utf-8"),
        other if SERVED_TYPES.contains(&other) => essence,
        _ => "application/octet-stream".to_owned(),
    }
}

/// `attachment` with the artifact's name: an ASCII `filename` of safe characters and the
/// exact name as RFC 8187 `filename*`.
pub fn attachment(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if matches!(c, '/' | '\\') { '_' } else { c })
        .take(200)
        .collect();
    let name = if name.trim().is_empty() {
        "download".to_owned()
    } else {
        name.trim().to_owned()
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '(' | ')') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(byte) {
            encoded.push(*byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// An upload that sends no byte for this long is cut off.
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses a single `bytes=` range against a blob of `size` bytes. `Ok(None)`: no (usable)
/// range header, send it all; `Err(())`: unsatisfiable (416).
fn parse_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges would need a multipart answer: the whole file serves them all.
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| ())?;
        if suffix == 0 {
            return Err(());
        }
        size.saturating_sub(suffix)..size
    } else {
        let start: u64 = start.parse().map_err(|_| ())?;
        let end = if end.is_empty() {
            size
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        start..end
    };
    if range.start >= size || range.start >= range.end {
        return Err(());
    }
    Ok(Some(range))
}

/// `GET /files/artifacts/{artifactId}`. A download link on the web pages carries the session
/// cookie instead of a token; only this read takes it (an upload is a write, and needs the
/// token).
pub(crate) async fn download(
    State(state): State<Arc<AppState>>,
    BearerOrSession(caller): BearerOrSession,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let artifact = state
        .services
        .imports
        .artifact(&caller, &id)
        .await
        .map_err(|err| HttpError::from_api(err.into(), &request_id))?;
    let stored = match (&artifact.status, &artifact.stored) {
        (ArtifactStatus::Success, Some(stored)) => stored.clone(),
        _ => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "This artifact has no stored file yet (its status is `{}`).",
                    artifact.status.as_str()
                ),
            ))
        }
    };
    let etag = format!("\"{}\"", stored.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = parse_range(headers.get(header::RANGE), stored.size).map_err(|()| {
        HttpError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BadRequest,
            format!("The range is outside the file's {} bytes.", stored.size),
        )
        .with_header(header::CONTENT_RANGE, &format!("bytes */{}", stored.size))
    })?;
    let reading = state
        .services
        .blobs
        .read(&stored.blob_key, range.clone())
        .await
        .map_err(|err| HttpError::from_api(ApiError::internal(err), &request_id))?;
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = Response::new(Body::from_stream(reading.bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let length = reading.range.end - reading.range.start;
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&served_type(&stored.mime_type)) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&attachment(&artifact.name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!(
            "bytes {}-{}/{}",
            reading.range.start,
            reading.range.end.saturating_sub(1),
            reading.size
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// `PUT /uploads/artifacts/{artifactId}`: the body, streamed into the artifact's blob by the
/// domain's one "store an artifact's bytes" use case. Any refusal may leave the body unread,
/// so every answer but success closes the connection.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    request_id: RequestId,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let response = receive(&state, &request_id, &id, request).await;
    match response {
        Ok(response) => response,
        Err(refused) => closing(refused.into_response()),
    }
}

async fn receive(
    state: &Arc<AppState>,
    request_id: &RequestId,
    id: &str,
    request: Request,
) -> Result<Response, HttpError> {
    let (mut parts, body) = request.into_parts();
    let Bearer(caller) =
        <Bearer as axum::extract::FromRequestParts<_>>::from_request_parts(&mut parts, state)
            .await?;
    let cap = state.services.max_upload_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mime_type = taxbridge_blobs::media_type(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    // Each chunk must arrive within the idle timeout: a stalled client holds nothing for long.
    let stream = Box::pin(with_idle_timeout(body.into_data_stream()));
    let stored = state
        .services
        .imports
        .receive_bytes(&caller, id, declared, mime_type, stream, cap)
        .await
        .map_err(|err| match err {
            ReceiveError::Import(err) => HttpError::from_api(err.into(), request_id),
            ReceiveError::Bytes(BlobWriteError::TooLarge(cap)) => HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadUserInput,
                format!("The file is larger than the {cap}-byte limit."),
            ),
            ReceiveError::Bytes(BlobWriteError::Source(message)) => HttpError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("The upload broke off: {message}. Send the file again."),
            ),
            ReceiveError::Bytes(err @ BlobWriteError::Store(_)) => {
                HttpError::from_api(ApiError::internal(err), request_id)
            }
        })?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "artifactId": id,
            "status": "success",
            "size": stored.size,
            "sha256": stored.sha256,
        })),
    )
        .into_response())
}

/// Marks an answer sent before the request body was read to its end: the connection closes
/// after it, so a client does not send its next request on a connection with a body still in
/// it.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Ends the stream with an error when no chunk arrives within [`UPLOAD_IDLE_TIMEOUT`].
fn with_idle_timeout<S, E>(
    stream: S,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    futures_util::stream::unfold(Box::pin(stream), |mut stream| async move {
        match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), stream)),
            Ok(Some(Err(err))) => Some((Err(err.to_string()), stream)),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!(
                    "no data arrived for {} seconds",
                    UPLOAD_IDLE_TIMEOUT.as_secs()
                )),
                stream,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &'static str, size: u64) -> Result<Option<Range<u64>>, ()> {
        parse_range(Some(&HeaderValue::from_static(value)), size)
    }

    #[test]
    fn only_document_types_are_served_as_themselves() {
        assert_eq!(served_type("application/pdf"), "application/pdf");
        assert_eq!(served_type("IMAGE/PNG; x=y"), "image/png");
        assert_eq!(served_type("text/plain"), "text/plain; charset=utf-8");
        for hostile in [
            "text/html",
            "text/html; charset=utf-8",
            "image/svg+xml",
            "application/javascript",
            "text/javascript",
            "application/xhtml+xml",
            "text/xml",
            "multipart/x-mixed-replace",
            "",
            "garbage",
        ] {
            assert_eq!(
                served_type(hostile),
                "application/octet-stream",
                "{hostile}"
            );
        }
    }

    #[test]
    fn the_attachment_name_is_sanitised() {
        assert_eq!(
            attachment("W-2 Form 2024.pdf"),
            "attachment; filename=\"W-2 Form 2024.pdf\"; filename*=UTF-8''W-2%20Form%202024.pdf"
        );
        let hostile = attachment("a\"; filename=x.html\r\n/../é");
        assert!(
            !hostile.contains('\r') && !hostile.contains('\n'),
            "{hostile}"
        );
        assert_eq!(
            hostile,
            "attachment; filename=\"a__ filename_x.html_..__\"; filename*=UTF-8''a%22%3B%20filename%3Dx.html_.._%C3%A9"
        );
        assert_eq!(
            attachment("  "),
            "attachment; filename=\"download\"; filename*=UTF-8''download"
        );
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(range("bytes=50-500", 100), Ok(Some(50..100)));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=9-3", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        assert_eq!(range("bytes=x-1", 100), Err(()));
        assert_eq!(parse_range(None, 100), Ok(None));
    }
}
