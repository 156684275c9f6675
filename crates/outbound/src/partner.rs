//! Partner protocol v1, the calling side: what the gateway sends a provider's platform:
//! `GET /v1/verify` (collect) and the pulls `GET /v1/clients`, `/v1/clients/{id}` and
//! `/v1/clients/{id}/files`. (Uploads go to the tus endpoint, [`crate::tus`].)
//!
//! Every call: `Authorization: Bearer <apiKey>`, `X-Security-Token` when given, and
//! `X-Taxbridge-Workspace` / `X-Taxbridge-Firm-Reference` for the platform's correlation.
//! Credentials go only into headers, never into a URL, a log line or an error.

use crate::{Egress, EgressError};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use taxbridge_domain::{
    connections::{PartnerPlatform, PlatformFailure, VerifiedFirm, VerifyCall},
    pulls::{PlatformClient, PlatformFile, Puller},
    time::Timestamp,
};
use url::Url;

/// Partner protocol v1 over the egress policy.
#[derive(Clone)]
pub struct PartnerProtocol {
    egress: Egress,
}

impl PartnerProtocol {
    pub fn new(egress: Egress) -> Self {
        Self { egress }
    }
}

fn header(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The failure as an integrator reads it on the connection's `statusDetail`.
fn unreachable(err: EgressError) -> PlatformFailure {
    match err {
        EgressError::Refused { .. } | EgressError::NotPublic { .. } => PlatformFailure::Unreachable(format!(
            "{err}; use the platform's public base URL (an operator can allow-list a range with egress.allow_cidrs)"
        )),
        EgressError::BadUrl { .. } | EgressError::Scheme { .. } => {
            PlatformFailure::Unreachable(format!("the baseUrl is not usable: {err}"))
        }
        EgressError::TooLarge(_) => PlatformFailure::BadAnswer(err.to_string()),
        other => PlatformFailure::Unreachable(other.to_string()),
    }
}

/// The headers of every call: credentials and correlation.
fn headers_of(call: &VerifyCall<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(value) = call.api_key.and_then(|k| header(&format!("Bearer {k}"))) {
        headers.insert(AUTHORIZATION, value);
    }
    if let Some(value) = call.security_token.and_then(header) {
        headers.insert(HeaderName::from_static("x-security-token"), value);
    }
    if let Some(value) = header(call.workspace_id) {
        headers.insert(HeaderName::from_static("x-taxbridge-workspace"), value);
    }
    if let Some(value) = call.firm_reference.and_then(header) {
        headers.insert(HeaderName::from_static("x-taxbridge-firm-reference"), value);
    }
    headers
}

fn call_of(puller: &Puller) -> VerifyCall<'_> {
    VerifyCall {
        base_url: &puller.base_url,
        api_key: puller.access.api_key.as_deref(),
        security_token: puller.access.security_token.as_deref(),
        workspace_id: &puller.access.workspace_id,
        firm_reference: puller.access.firm_reference.as_deref(),
    }
}

/// `<base>/v1/<segments…>?<params>`, each segment escaped as one path segment.
fn endpoint(
    base: &str,
    segments: &[&str],
    params: &[(String, String)],
) -> Result<Url, PlatformFailure> {
    let mut url = Url::parse(&format!("{}/v1", base.trim_end_matches('/')))
        .map_err(|err| PlatformFailure::Unreachable(format!("the baseUrl is not usable: {err}")))?;
    url.path_segments_mut()
        .map_err(|()| {
            PlatformFailure::Unreachable("the baseUrl is not usable: it cannot have a path".into())
        })?
        .extend(segments);
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    Ok(url)
}

impl PartnerProtocol {
    /// One GET whose 2xx answer is JSON; `None` for a 404.
    async fn get_json(
        &self,
        call: &VerifyCall<'_>,
        url: &str,
    ) -> Result<Option<serde_json::Value>, PlatformFailure> {
        let fetched = self
            .egress
            .get(url, headers_of(call))
            .await
            .map_err(unreachable)?;
        let status = fetched.status.as_u16();
        match status {
            401 | 403 => return Err(PlatformFailure::Rejected(status)),
            404 => return Ok(None),
            200..=299 => {}
            other => return Err(PlatformFailure::Status(other)),
        }
        serde_json::from_slice(&fetched.body)
            .map(Some)
            .map_err(|_| PlatformFailure::BadAnswer("the body is not JSON".into()))
    }

    /// A list under `key` (`clients`, `files`) of a pull's answer.
    async fn list(
        &self,
        puller: &Puller,
        segments: &[&str],
        params: &[(String, String)],
        key: &str,
    ) -> Result<Vec<serde_json::Value>, PlatformFailure> {
        let url = endpoint(&puller.base_url, segments, params)?;
        match self.get_json(&call_of(puller), url.as_str()).await? {
            Some(serde_json::Value::Object(mut answer)) => match answer.remove(key) {
                Some(serde_json::Value::Array(items)) => Ok(items),
                _ => Err(PlatformFailure::BadAnswer(format!(
                    "it has no `{key}` list"
                ))),
            },
            Some(_) => Err(PlatformFailure::BadAnswer("it is not a JSON object".into())),
            // The base URL is wrong, or (for files) the client is unknown.
            None => Err(PlatformFailure::Status(404)),
        }
    }
}

/// An id as the platform spells it: a string, or a number read as one.
fn id_of(item: &serde_json::Value, field: &str) -> Option<String> {
    match &item[field] {
        serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn text_of(item: &serde_json::Value, field: &str) -> Option<String> {
    item[field].as_str().map(str::to_owned)
}

fn time_of(item: &serde_json::Value, field: &str) -> Option<Timestamp> {
    item[field].as_str().and_then(Timestamp::parse_rfc3339)
}

fn client_of(item: &serde_json::Value) -> Result<PlatformClient, PlatformFailure> {
    Ok(PlatformClient {
        id: id_of(item, "id")
            .ok_or_else(|| PlatformFailure::BadAnswer("a client has no `id`".into()))?,
        name: text_of(item, "name"),
        email: text_of(item, "email"),
        phone: text_of(item, "phone"),
        kind: text_of(item, "type"),
        last_modified: time_of(item, "lastModified"),
    })
}

fn file_of(item: &serde_json::Value) -> Result<PlatformFile, PlatformFailure> {
    Ok(PlatformFile {
        id: id_of(item, "id")
            .ok_or_else(|| PlatformFailure::BadAnswer("a file has no `id`".into()))?,
        file_name: text_of(item, "fileName")
            .ok_or_else(|| PlatformFailure::BadAnswer("a file has no `fileName`".into()))?,
        file_size: item["fileSize"].as_i64(),
        mime_type: text_of(item, "mimeType"),
        download_url: text_of(item, "downloadUrl"),
        date_created: time_of(item, "dateCreated"),
    })
}

#[async_trait]
impl PartnerPlatform for PartnerProtocol {
    async fn clients(
        &self,
        puller: &Puller,
        params: &[(String, String)],
    ) -> Result<Vec<PlatformClient>, PlatformFailure> {
        let items = self.list(puller, &["clients"], params, "clients").await?;
        items.iter().map(client_of).collect()
    }

    async fn client(
        &self,
        puller: &Puller,
        id: &str,
    ) -> Result<Option<PlatformClient>, PlatformFailure> {
        let url = endpoint(&puller.base_url, &["clients", id], &[])?;
        match self.get_json(&call_of(puller), url.as_str()).await? {
            Some(answer) => client_of(&answer).map(Some),
            None => Ok(None),
        }
    }

    async fn files(
        &self,
        puller: &Puller,
        client_id: &str,
        params: &[(String, String)],
    ) -> Result<Vec<PlatformFile>, PlatformFailure> {
        let items = self
            .list(puller, &["clients", client_id, "files"], params, "files")
            .await?;
        items.iter().map(file_of).collect()
    }

    async fn verify(&self, call: VerifyCall<'_>) -> Result<VerifiedFirm, PlatformFailure> {
        let url = format!("{}/v1/verify", call.base_url.trim_end_matches('/'));
        let answer = self
            .get_json(&call, &url)
            .await?
            .ok_or(PlatformFailure::Status(404))?;
        let firm_id = match &answer["firmId"] {
            serde_json::Value::String(id) => id.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(PlatformFailure::BadAnswer("it has no `firmId`".into())),
        };
        let firm_name = answer["firmName"]
            .as_str()
            .map(|name| name.chars().take(200).collect::<String>())
            .filter(|name| taxbridge_domain::text::unprintable(name).is_none());
        Ok(VerifiedFirm { firm_id, firm_name })
    }
}
