//! Partner protocol v1, the calling side: what the gateway sends a provider's platform. Only
//! `GET /v1/verify` for now (collect); pulls and uploads join it here.
//!
//! Every call: `Authorization: Bearer <apiKey>`, `X-Security-Token` when given, and
//! `X-Taxbridge-Workspace` / `X-Taxbridge-Firm-Reference` for the platform's correlation.
//! Credentials go only into headers, never into a URL, a log line or an error.

use crate::{Egress, EgressError};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use taxbridge_domain::connections::{PartnerPlatform, VerifiedFirm, VerifyCall, VerifyFailure};

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
fn unreachable(err: EgressError) -> VerifyFailure {
    match err {
        EgressError::Refused { .. } | EgressError::NotPublic { .. } => VerifyFailure::Unreachable(format!(
            "{err}; use the platform's public base URL (an operator can allow-list a range with egress.allow_cidrs)"
        )),
        EgressError::BadUrl { .. } | EgressError::Scheme { .. } => {
            VerifyFailure::Unreachable(format!("the baseUrl is not usable: {err}"))
        }
        EgressError::TooLarge(_) => VerifyFailure::BadAnswer(err.to_string()),
        other => VerifyFailure::Unreachable(other.to_string()),
    }
}

#[async_trait]
impl PartnerPlatform for PartnerProtocol {
    async fn verify(&self, call: VerifyCall<'_>) -> Result<VerifiedFirm, VerifyFailure> {
        let url = format!("{}/v1/verify", call.base_url.trim_end_matches('/'));
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
        let fetched = self.egress.get(&url, headers).await.map_err(unreachable)?;
        let status = fetched.status.as_u16();
        match status {
            401 | 403 => return Err(VerifyFailure::Rejected(status)),
            200..=299 => {}
            other => return Err(VerifyFailure::Status(other)),
        }
        let answer: serde_json::Value = serde_json::from_slice(&fetched.body)
            .map_err(|_| VerifyFailure::BadAnswer("the body is not JSON".into()))?;
        let firm_id = match &answer["firmId"] {
            serde_json::Value::String(id) => id.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(VerifyFailure::BadAnswer("it has no `firmId`".into())),
        };
        let firm_name = answer["firmName"]
            .as_str()
            .map(|name| name.chars().take(200).collect::<String>())
            .filter(|name| taxbridge_domain::text::unprintable(name).is_none());
        Ok(VerifiedFirm { firm_id, firm_name })
    }
}
