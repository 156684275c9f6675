//! The pull pattern (spec §5): a connection's clients and their files, read live from the
//! provider's platform with partner protocol v1 (`GET /v1/clients`, `/v1/clients/{id}`,
//! `/v1/clients/{id}/files`).
//!
//! A GraphQL `options` object becomes the call's query parameters: scalars only, `limit` from 1
//! to [`MAX_PULL_LIMIT`]; `{id}` on `clients` reads one client. Only an `active` connection
//! pulls. A platform that fails answers [`ConnectionError::Upstream`] saying why; one that
//! rejects the credentials also moves the connection to `failed` / `reconnect`, as a collect
//! would have.

use crate::words::Word;
use crate::{
    audit::{Action, Who},
    connections::{ConnectionError, ConnectionStatus, Connections},
    ids::ConnectionId,
    platform::{PlatformClient, PlatformFailure, PlatformFile, PullBudget, Puller},
    time::Timestamp,
};

/// The most items one pull may ask for (`options.limit`).
pub const MAX_PULL_LIMIT: u64 = 500;
/// The page a platform answers without a `limit` (partner protocol v1), and so the most items
/// a pull without one keeps: what the cost check prices it at.
pub const DEFAULT_PULL_LIMIT: u64 = 50;
/// Bounds on an `options` object, so that it always makes a modest URL.
const MAX_OPTIONS: usize = 20;
const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_CHARS: usize = 512;

/// The bytes one request's pulls may read from platforms together, unless set otherwise.
pub const DEFAULT_PULL_BUDGET_BYTES: u64 = 16 * 1024 * 1024;

/// A parsed `options` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullQuery {
    /// `options.id` on `clients`: read this one client.
    pub id: Option<String>,
    /// The rest, as query parameters in the order given.
    pub params: Vec<(String, String)>,
    /// The most items kept from the platform's list: `options.limit`, or
    /// [`DEFAULT_PULL_LIMIT`]. A platform that sends more is cut off there, whatever it was
    /// asked.
    pub limit: usize,
}

impl Default for PullQuery {
    fn default() -> Self {
        Self {
            id: None,
            params: Vec::new(),
            limit: DEFAULT_PULL_LIMIT as usize,
        }
    }
}

fn invalid(field: String, message: impl Into<String>) -> ConnectionError {
    ConnectionError::Invalid {
        field,
        message: message.into(),
    }
}

impl PullQuery {
    /// Reads `options`; `with_id` when `{id}` selects one item. Errors name `options.<key>`.
    pub fn parse(
        options: Option<&serde_json::Value>,
        with_id: bool,
    ) -> Result<Self, ConnectionError> {
        let map = match options {
            None | Some(serde_json::Value::Null) => return Ok(Self::default()),
            Some(serde_json::Value::Object(map)) => map,
            Some(_) => {
                return Err(invalid(
                    "options".into(),
                    "options must be a JSON object of query parameters, e.g. {\"limit\": 50}",
                ))
            }
        };
        if map.len() > MAX_OPTIONS {
            return Err(invalid(
                "options".into(),
                format!("options may have at most {MAX_OPTIONS} keys"),
            ));
        }
        let mut query = Self::default();
        for (key, value) in map {
            let field = format!("options.{key}");
            if key.is_empty()
                || key.chars().count() > MAX_KEY_CHARS
                || crate::text::unprintable(key).is_some()
            {
                return Err(invalid(
                    "options".into(),
                    format!("option names are 1 to {MAX_KEY_CHARS} printable characters"),
                ));
            }
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    return Err(invalid(
                        field,
                        format!("`{key}` is a nested value; options take only strings, numbers and booleans"),
                    ))
                }
            };
            if text.chars().count() > MAX_VALUE_CHARS || crate::text::unprintable(&text).is_some() {
                return Err(invalid(
                    field,
                    format!("`{key}` must be at most {MAX_VALUE_CHARS} printable characters"),
                ));
            }
            match key.as_str() {
                "limit" => match text.parse::<u64>() {
                    Ok(n) if (1..=MAX_PULL_LIMIT).contains(&n) => query.limit = n as usize,
                    _ => {
                        return Err(invalid(
                            field,
                            format!("limit must be a whole number from 1 to {MAX_PULL_LIMIT}"),
                        ))
                    }
                },
                "offset" if text.parse::<u64>().is_err() => {
                    return Err(invalid(field, "offset must be a whole number, 0 or more"));
                }
                "id" if with_id => {
                    if text.is_empty() {
                        return Err(invalid(field, "id must not be empty"));
                    }
                    query.id = Some(text);
                    continue;
                }
                _ => {}
            }
            query.params.push((key.clone(), text));
        }
        Ok(query)
    }
}

impl Connections {
    /// A puller for a connection the caller reached: `CONFLICT` unless it is `active`.
    pub async fn puller(&self, id: &ConnectionId, who: &Who) -> Result<Puller, ConnectionError> {
        let connection = self
            .store
            .connection_by_id(id)
            .await?
            .ok_or(ConnectionError::NotFound)?;
        if connection.status != ConnectionStatus::Active {
            let next = match connection.status {
                ConnectionStatus::Pending => "collect it first",
                ConnectionStatus::Failed => "reconnect it: collect again with working credentials",
                _ => "start a new one with startProviderConnection",
            };
            return Err(ConnectionError::Conflict(format!(
                "Only an active connection pulls from its platform; this one is {}: {next}.",
                connection.status.as_str()
            )));
        }
        let access = self.access_of(&connection).await?;
        if connection.credentials.is_some() {
            self.used_credentials(&connection, who, "pull", None)
                .await?;
        }
        let base_url = access.base_url.clone().ok_or_else(|| {
            ConnectionError::Upstream(
                "no base URL is known for this provider: collect again with inputs {\"baseUrl\": \"https://…\"}".into(),
            )
        })?;
        Ok(Puller {
            who: who.clone(),
            connection_id: id.clone(),
            access,
            base_url,
        })
    }

    /// `clients(options)`: the platform's clients, or the one `options.id` names (none when
    /// the platform has no such client).
    pub async fn pull_clients(
        &self,
        puller: &Puller,
        query: &PullQuery,
        budget: &PullBudget,
    ) -> Result<Vec<PlatformClient>, ConnectionError> {
        let outcome = match &query.id {
            Some(id) => self
                .platform
                .client(puller, id, budget)
                .await
                .map(|client| client.into_iter().collect()),
            None => {
                self.platform
                    .clients(puller, &query.params, query.limit, budget)
                    .await
            }
        };
        self.pulled(puller, outcome).await
    }

    /// `ConnectionClient.files(options)`.
    pub async fn pull_files(
        &self,
        puller: &Puller,
        client_id: &str,
        query: &PullQuery,
        budget: &PullBudget,
    ) -> Result<Vec<PlatformFile>, ConnectionError> {
        let outcome = self
            .platform
            .files(puller, client_id, &query.params, query.limit, budget)
            .await;
        self.pulled(puller, outcome).await
    }

    /// A pull's outcome as the API answers it; rejected credentials fail the connection.
    async fn pulled<T>(
        &self,
        puller: &Puller,
        outcome: Result<T, PlatformFailure>,
    ) -> Result<T, ConnectionError> {
        let failure = match outcome {
            Ok(items) => return Ok(items),
            Err(failure) => failure,
        };
        if let PlatformFailure::Rejected(_) = failure {
            if let Some(mut connection) = self.store.connection_by_id(&puller.connection_id).await?
            {
                if connection.status == ConnectionStatus::Active {
                    connection.status = ConnectionStatus::Failed;
                    connection.status_detail = Some(failure.to_string());
                    connection.updated_at = Timestamp::now();
                    let event = puller
                        .who
                        .event(Action::ConnectionCollected)
                        .in_workspace(&connection.workspace_id)
                        .target("connection", &connection.id)
                        .with("status", connection.status.as_str())
                        .with(
                            "cause",
                            "the platform rejected the credentials during a pull",
                        );
                    self.store.update_connection(&connection, &[event]).await?;
                }
            }
        }
        Err(ConnectionError::Upstream(format!(
            "The provider's platform failed the pull: {failure}."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(err: ConnectionError) -> String {
        match err {
            ConnectionError::Invalid { field, .. } => field,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn scalars_become_parameters_and_id_selects_one() {
        let query = PullQuery::parse(
            Some(&json!({"limit": 500, "type": "business", "active": true, "skip": null, "id": 7})),
            true,
        )
        .expect("valid");
        assert_eq!(query.id.as_deref(), Some("7"));
        assert_eq!(query.limit, 500);
        assert_eq!(
            PullQuery::parse(Some(&json!({"type": "x"})), true)
                .expect("valid")
                .limit,
            50
        );
        assert_eq!(
            PullQuery::parse(Some(&json!({"limit": 3})), true)
                .expect("valid")
                .limit,
            3
        );
        assert_eq!(PullQuery::parse(None, true).expect("none").limit, 50);
        assert_eq!(
            query.params,
            vec![
                ("active".to_owned(), "true".to_owned()),
                ("limit".to_owned(), "500".to_owned()),
                ("type".to_owned(), "business".to_owned()),
            ]
        );
        let files = PullQuery::parse(Some(&json!({"id": "x"})), false).expect("valid");
        assert_eq!(files.id, None);
        assert_eq!(files.params, vec![("id".to_owned(), "x".to_owned())]);
        assert_eq!(
            PullQuery::parse(None, true).expect("none"),
            PullQuery::default()
        );
    }

    #[test]
    fn bad_options_name_the_key() {
        for (options, field) in [
            (json!({"limit": 501}), "options.limit"),
            (json!({"limit": 0}), "options.limit"),
            (json!({"limit": 2.5}), "options.limit"),
            (json!({"limit": "many"}), "options.limit"),
            (json!({"offset": -1}), "options.offset"),
            (json!({"filter": {"type": "x"}}), "options.filter"),
            (json!({"ids": [1, 2]}), "options.ids"),
            (json!({"id": ""}), "options.id"),
            (json!({"q": "a\u{0}b"}), "options.q"),
            (json!({"q": "x".repeat(513)}), "options.q"),
            (json!([1]), "options"),
            (json!("limit=5"), "options"),
        ] {
            let err = PullQuery::parse(Some(&options), true).expect_err("refused");
            assert_eq!(field_of(err), field, "{options}");
        }
        let many: serde_json::Map<String, serde_json::Value> =
            (0..21).map(|n| (format!("k{n}"), json!(n))).collect();
        let err =
            PullQuery::parse(Some(&serde_json::Value::Object(many)), true).expect_err("too many");
        assert_eq!(field_of(err), "options");
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn a_budget_is_shared_and_stays_spent() {
        let budget = PullBudget::new(100);
        assert!(budget.take(60).is_ok());
        assert!(budget.take(40).is_ok());
        assert_eq!(budget.take(1), Err(PlatformFailure::OverBudget(100)));
        assert_eq!(budget.take(0), Ok(()));
        let budget = PullBudget::new(100);
        assert!(budget.take(101).is_err());
        assert!(budget.take(1).is_err(), "an overdrawn budget is spent");
    }
}
