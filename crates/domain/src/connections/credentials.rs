//! Credentials' custody rules: what a connection's sealed secrets are bound to (its id and the
//! origin of its base URL), opening them, and splitting a caller's inputs into settings (kept
//! and returned) and secrets (sealed, never returned).

use super::model::ConnectionError;
use crate::{ids::ConnectionId, providers::Provider};

/// The origin (scheme, host, port) of a URL as text, e.g. `https://api.example.com:443`;
/// `None` for one that does not parse or has no host.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or(0)
    ))
}

/// What a connection's sealed credentials are bound to (the AEAD's associated data): its id
/// and the origin of the `baseUrl` stored in its settings, or the provider's own base URL when
/// it has none (an operator's catalog, trusted as the operator is).
pub fn credentials_binding(id: &ConnectionId, base_url: Option<&str>) -> String {
    let origin = match base_url {
        Some(url) => origin_of(url).unwrap_or_else(|| format!("unparsed {url}")),
        None => "the provider's base URL".to_owned(),
    };
    format!("{id} at {origin}")
}

/// Opens credentials sealed with [`credentials_binding`]; those sealed before the origin was
/// bound (to the id alone) still open, and are sealed bound at their next write or
/// `taxbridge encryption rotate`.
pub fn open_bound(
    open: impl Fn(&str, &str) -> Result<Vec<u8>, crate::crypto::CryptoError>,
    sealed: &str,
    id: &ConnectionId,
    base_url: Option<&str>,
) -> Result<Vec<u8>, crate::crypto::CryptoError> {
    match open(sealed, &credentials_binding(id, base_url)) {
        Err(crate::crypto::CryptoError::Damaged) => open(sealed, id.as_str()),
        other => other,
    }
}

pub(super) fn invalid(field: &str, message: impl Into<String>) -> ConnectionError {
    ConnectionError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Splits inputs into settings and secrets, by what the provider declares secret.
#[allow(clippy::type_complexity)]
pub(super) fn split(
    provider: &Provider,
    inputs: serde_json::Map<String, serde_json::Value>,
) -> Result<
    (
        serde_json::Map<String, serde_json::Value>,
        serde_json::Map<String, serde_json::Value>,
    ),
    ConnectionError,
> {
    let mut settings = serde_json::Map::new();
    let mut secrets = serde_json::Map::new();
    for (name, value) in inputs {
        if provider.is_secret(&name) {
            secrets.insert(name, value);
        } else {
            if name == "baseUrl" && !value.is_string() {
                return Err(invalid("inputs.baseUrl", "baseUrl must be a URL string"));
            }
            settings.insert(name, value);
        }
    }
    Ok((settings, secrets))
}
