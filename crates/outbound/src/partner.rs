//! Partner protocol v1, the calling side: what the gateway sends a provider's platform:
//! `GET /v1/verify` (collect) and the pulls `GET /v1/clients`, `/v1/clients/{id}` and
//! `/v1/clients/{id}/files`. (Uploads go to the tus endpoint, [`crate::tus`].)
//!
//! Every call: `Authorization: Bearer <apiKey>`, `X-Security-Token` when given, and
//! `X-Taxbridge-Workspace` / `X-Taxbridge-Firm-Reference` for the platform's correlation.
//! Credentials go only into headers, never into a URL, a log line or an error, and only to
//! the base URL's origin: a redirect elsewhere ends the call ([`crate::credentials`]).
//!
//! A list is read as it streams ([`crate::listing`]): the items past the caller's `limit` are
//! never read, every byte read is charged to the request's [`PullBudget`], and no answer is
//! held as a JSON tree, so a platform that answers with a huge list costs what was asked for.

use crate::{listing, Egress, EgressError};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use taxbridge_domain::{
    platform::{
        PartnerPlatform, PlatformClient, PlatformFailure, PlatformFile, PullBudget, Puller,
        VerifiedFirm, VerifyCall,
    },
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

/// A credential's header value: marked sensitive, so it is never logged and
/// [`crate::credentials`] keeps it to its origin.
fn secret(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn plain(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
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
        EgressError::CrossOrigin { .. } => PlatformFailure::Unreachable(format!(
            "{err}; if the platform moved, collect again with its new baseUrl and the credentials"
        )),
        other => PlatformFailure::Unreachable(other.to_string()),
    }
}

/// The headers of every call: credentials and correlation.
fn headers_of(call: &VerifyCall<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(value) = call.api_key.and_then(|k| secret(&format!("Bearer {k}"))) {
        headers.insert(AUTHORIZATION, value);
    }
    if let Some(value) = call.security_token.and_then(secret) {
        headers.insert(HeaderName::from_static("x-security-token"), value);
    }
    if let Some(value) = plain(call.workspace_id) {
        headers.insert(HeaderName::from_static("x-taxbridge-workspace"), value);
    }
    if let Some(value) = call.firm_reference.and_then(plain) {
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

/// What a platform's status says before its body is read: `Ok(true)` for 2xx, `Ok(false)`
/// for 404.
fn status_of(status: u16) -> Result<bool, PlatformFailure> {
    match status {
        401 | 403 => Err(PlatformFailure::Rejected(status)),
        404 => Ok(false),
        200..=299 => Ok(true),
        other => Err(PlatformFailure::Status(other)),
    }
}

impl PartnerProtocol {
    /// `GET url` streamed: `None` for a 404.
    async fn open(
        &self,
        call: &VerifyCall<'_>,
        url: &str,
    ) -> Result<Option<crate::Opened>, PlatformFailure> {
        let opened = self
            .egress
            .get_streamed(url, headers_of(call))
            .await
            .map_err(unreachable)?;
        Ok(status_of(opened.status.as_u16())?.then_some(opened))
    }

    /// At most `limit` items of the list under `key` (`clients`, `files`) of a pull's answer.
    async fn list<T: listing::Item>(
        &self,
        puller: &Puller,
        segments: &[&str],
        params: &[(String, String)],
        key: &'static str,
        limit: usize,
        budget: &PullBudget,
    ) -> Result<Vec<T>, PlatformFailure> {
        let url = endpoint(&puller.base_url, segments, params)?;
        match self.open(&call_of(puller), url.as_str()).await? {
            Some(opened) => {
                let cap = self.egress.max_response_bytes();
                listing::read_list(opened, key, limit, cap, budget).await
            }
            // The base URL is wrong, or (for files) the client is unknown.
            None => Err(PlatformFailure::Status(404)),
        }
    }
}

#[async_trait]
impl PartnerPlatform for PartnerProtocol {
    async fn clients(
        &self,
        puller: &Puller,
        params: &[(String, String)],
        limit: usize,
        budget: &PullBudget,
    ) -> Result<Vec<PlatformClient>, PlatformFailure> {
        let items: Vec<listing::RawClient> = self
            .list(puller, &["clients"], params, "clients", limit, budget)
            .await?;
        items.into_iter().map(client_of).collect()
    }

    async fn client(
        &self,
        puller: &Puller,
        id: &str,
        budget: &PullBudget,
    ) -> Result<Option<PlatformClient>, PlatformFailure> {
        let url = endpoint(&puller.base_url, &["clients", id], &[])?;
        let Some(opened) = self.open(&call_of(puller), url.as_str()).await? else {
            return Ok(None);
        };
        let cap = self.egress.max_response_bytes();
        let raw: listing::RawClient = listing::read_one(opened, cap, Some(budget)).await?;
        client_of(raw).map(Some)
    }

    async fn files(
        &self,
        puller: &Puller,
        client_id: &str,
        params: &[(String, String)],
        limit: usize,
        budget: &PullBudget,
    ) -> Result<Vec<PlatformFile>, PlatformFailure> {
        let items: Vec<listing::RawFile> = self
            .list(
                puller,
                &["clients", client_id, "files"],
                params,
                "files",
                limit,
                budget,
            )
            .await?;
        items.into_iter().map(file_of).collect()
    }

    async fn verify(&self, call: VerifyCall<'_>) -> Result<VerifiedFirm, PlatformFailure> {
        let url = format!("{}/v1/verify", call.base_url.trim_end_matches('/'));
        let opened = self
            .open(&call, &url)
            .await?
            .ok_or(PlatformFailure::Status(404))?;
        let cap = self.egress.max_response_bytes();
        let answer: listing::RawFirm = listing::read_one(opened, cap, None).await?;
        let firm_id = answer
            .firm_id
            .id()
            .ok_or_else(|| PlatformFailure::BadAnswer("it has no `firmId`".into()))?;
        let firm_name = answer
            .firm_name
            .text()
            .map(|name| name.chars().take(200).collect::<String>())
            .filter(|name| taxbridge_domain::text::unprintable(name).is_none());
        Ok(VerifiedFirm { firm_id, firm_name })
    }
}

fn time_of(value: &listing::Scalar) -> Option<Timestamp> {
    value.as_str().and_then(Timestamp::parse_rfc3339)
}

fn client_of(item: listing::RawClient) -> Result<PlatformClient, PlatformFailure> {
    Ok(PlatformClient {
        id: item
            .id
            .id()
            .ok_or_else(|| PlatformFailure::BadAnswer("a client has no `id`".into()))?,
        last_modified: time_of(&item.last_modified),
        name: item.name.text(),
        email: item.email.text(),
        phone: item.phone.text(),
        kind: item.kind.text(),
    })
}

fn file_of(item: listing::RawFile) -> Result<PlatformFile, PlatformFailure> {
    Ok(PlatformFile {
        id: item
            .id
            .id()
            .ok_or_else(|| PlatformFailure::BadAnswer("a file has no `id`".into()))?,
        date_created: time_of(&item.date_created),
        file_name: item
            .file_name
            .text()
            .ok_or_else(|| PlatformFailure::BadAnswer("a file has no `fileName`".into()))?,
        file_size: item.file_size.int(),
        mime_type: item.mime_type.text(),
        download_url: item.download_url.text(),
    })
}
