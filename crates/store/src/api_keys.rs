//! API keys: the `api_keys` table (hashes only), its row type and the [`ApiKeyStore`] port.

use crate::{
    accounts::{corrupt, AccountRow, ACCOUNT_COLUMNS},
    db::name_conflict,
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    api_keys::{ApiKey, ApiKeyStore, KeyGrant, KeyHash, KeyKind},
    audit::AuditEvent,
    ids::{AccountId, ApiKeyId},
    store::{StoreError, StoreResult},
    time::Timestamp,
};

const KEY_COLUMNS: &str = "k.id, k.account_id, k.name, k.kind, k.key_hash, \
     k.display_prefix, k.created_at, k.last_used_at, k.expires_at, k.revoked_at";

struct ApiKeyRow {
    id: String,
    account_id: String,
    name: String,
    kind: String,
    key_hash: String,
    display_prefix: String,
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl FromColumns for ApiKeyRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            account_id: c.text()?,
            name: c.text()?,
            kind: c.text()?,
            key_hash: c.text()?,
            display_prefix: c.text()?,
            created_at: c.int()?,
            last_used_at: c.opt_int()?,
            expires_at: c.opt_int()?,
            revoked_at: c.opt_int()?,
        })
    }
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            kind: KeyKind::parse(&row.kind)
                .ok_or_else(|| corrupt(format!("API key {} has kind `{}`", row.id, row.kind)))?,
            id: ApiKeyId::from_string(row.id),
            account_id: AccountId::from_string(row.account_id),
            name: row.name,
            hash: KeyHash::from_hex(row.key_hash),
            display_prefix: row.display_prefix,
            created_at: Timestamp::from_millis(row.created_at),
            last_used_at: row.last_used_at.map(Timestamp::from_millis),
            expires_at: row.expires_at.map(Timestamp::from_millis),
            revoked_at: row.revoked_at.map(Timestamp::from_millis),
        })
    }
}

/// A key and its account, read in one join: the key's columns, then the account's.
struct GrantRow {
    key: ApiKeyRow,
    account: AccountRow,
}

impl FromColumns for GrantRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            key: ApiKeyRow::from_columns(c)?,
            account: AccountRow::from_columns(c)?,
        })
    }
}

impl TryFrom<GrantRow> for KeyGrant {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> Result<Self, StoreError> {
        Ok(KeyGrant {
            key: row.key.try_into()?,
            account: row.account.try_into()?,
        })
    }
}

impl Store {
    async fn grant_where(&self, condition: &str, value: &str) -> StoreResult<Option<KeyGrant>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {ACCOUNT_COLUMNS} FROM api_keys k \
             JOIN accounts a ON a.id = k.account_id WHERE {condition}"
        );
        let row: Option<GrantRow> = self.db.fetch_optional(&sql, &[value.into()]).await?;
        row.map(TryInto::try_into).transpose()
    }
}

#[async_trait]
impl ApiKeyStore for Store {
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key.id))]
    async fn insert_api_key(&self, key: &ApiKey, event: &AuditEvent) -> StoreResult<()> {
        self.db
            .execute_recorded(
                "INSERT INTO api_keys (id, account_id, name, kind, key_hash, display_prefix, \
                 created_at, last_used_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    key.id.as_str().into(),
                    key.account_id.as_str().into(),
                    key.name.as_str().into(),
                    key.kind.as_str().into(),
                    key.hash.as_str().into(),
                    key.display_prefix.as_str().into(),
                    key.created_at.as_millis().into(),
                    key.last_used_at.map(Timestamp::as_millis).into(),
                    key.expires_at.map(Timestamp::as_millis).into(),
                    key.revoked_at.map(Timestamp::as_millis).into(),
                ],
                std::slice::from_ref(event),
            )
            .await
            .map_err(|err| name_conflict(err, |_| "an API key with this secret".to_owned()))?;
        Ok(())
    }

    async fn grant_by_key_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyGrant>> {
        self.grant_where("k.key_hash = $1", hash.as_str()).await
    }

    async fn grant_by_key_id(&self, id: &ApiKeyId) -> StoreResult<Option<KeyGrant>> {
        self.grant_where("k.id = $1", id.as_str()).await
    }

    async fn api_keys_of(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.account_id = $1 \
             ORDER BY k.created_at, k.id"
        );
        let rows: Vec<ApiKeyRow> = self.db.fetch(&sql, &[account.as_str().into()]).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn revoke_api_key(
        &self,
        id: &ApiKeyId,
        at: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<bool> {
        let changed = self
            .db
            .execute_recorded(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                &[at.as_millis().into(), id.as_str().into()],
                std::slice::from_ref(event),
            )
            .await?;
        Ok(changed == 1)
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<()> {
        self.db
            .execute(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at <= $3)",
                &[
                    at.as_millis().into(),
                    id.as_str().into(),
                    (at.as_millis() - 60_000).into(),
                ],
            )
            .await?;
        Ok(())
    }
}
