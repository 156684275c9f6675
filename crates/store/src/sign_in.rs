//! Signing in to the web pages: the `sign_in_codes` and `web_sessions` tables and the
//! [`SignInStore`] port. Both hold hashes only (see `taxbridge_domain::sign_in`).

use crate::{
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::{
    audit::AuditEvent,
    ids::AccountId,
    sign_in::{SignInStore, StoredCode, StoredSession},
    store::StoreResult,
    time::Timestamp,
};

impl FromColumns for StoredCode {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(StoredCode {
            code_hash: c.text()?,
            tries: u32::try_from(c.int()?).unwrap_or(u32::MAX),
            expires_at: Timestamp::from_millis(c.int()?),
        })
    }
}

impl FromColumns for StoredSession {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(StoredSession {
            account_id: AccountId::from_string(c.text()?),
            csrf: c.text()?,
            expires_at: Timestamp::from_millis(c.int()?),
        })
    }
}

struct Tries(i64);

impl FromColumns for Tries {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.int()?))
    }
}

#[async_trait]
impl SignInStore for Store {
    async fn put_code(
        &self,
        email: &str,
        code_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO sign_in_codes (email, code_hash, tries, expires_at, created_at) \
                 VALUES ($1, $2, 0, $3, $4) \
                 ON CONFLICT (email) DO UPDATE SET code_hash = excluded.code_hash, tries = 0, \
                 expires_at = excluded.expires_at, created_at = excluded.created_at",
                &[
                    email.into(),
                    code_hash.into(),
                    expires_at.as_millis().into(),
                    now.as_millis().into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn code_of(&self, email: &str) -> StoreResult<Option<StoredCode>> {
        self.db
            .fetch_optional(
                "SELECT code_hash, tries, expires_at FROM sign_in_codes WHERE email = $1",
                &[email.into()],
            )
            .await
    }

    async fn spend_try(&self, email: &str, events: &[AuditEvent]) -> StoreResult<u32> {
        // In one transaction on the writer: two wrong tries at once both count.
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE sign_in_codes SET tries = tries + 1 WHERE email = $1",
            &[email.into()],
        )
        .await?;
        let tries: Option<Tries> = tx
            .fetch_optional(
                "SELECT tries FROM sign_in_codes WHERE email = $1",
                &[email.into()],
            )
            .await?;
        if tries.is_some() {
            tx.record(events).await?;
        }
        tx.commit().await?;
        Ok(tries.map_or(u32::MAX, |t| u32::try_from(t.0).unwrap_or(u32::MAX)))
    }

    async fn delete_code(&self, email: &str) -> StoreResult<()> {
        self.db
            .execute(
                "DELETE FROM sign_in_codes WHERE email = $1",
                &[email.into()],
            )
            .await?;
        Ok(())
    }

    async fn insert_session(
        &self,
        token_hash: &str,
        session: &StoredSession,
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<()> {
        self.db
            .execute_recorded(
                "INSERT INTO web_sessions (token_hash, account_id, csrf, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    token_hash.into(),
                    session.account_id.as_str().into(),
                    session.csrf.as_str().into(),
                    session.expires_at.as_millis().into(),
                    now.as_millis().into(),
                ],
                std::slice::from_ref(event),
            )
            .await?;
        Ok(())
    }

    async fn session_of(&self, token_hash: &str) -> StoreResult<Option<StoredSession>> {
        self.db
            .fetch_optional(
                "SELECT account_id, csrf, expires_at FROM web_sessions WHERE token_hash = $1",
                &[token_hash.into()],
            )
            .await
    }

    async fn delete_session(&self, token_hash: &str, event: &AuditEvent) -> StoreResult<()> {
        self.db
            .execute_recorded(
                "DELETE FROM web_sessions WHERE token_hash = $1",
                &[token_hash.into()],
                std::slice::from_ref(event),
            )
            .await?;
        Ok(())
    }

    async fn delete_expired(&self, now: Timestamp) -> StoreResult<u64> {
        let codes = self
            .db
            .execute(
                "DELETE FROM sign_in_codes WHERE expires_at <= $1",
                &[now.as_millis().into()],
            )
            .await?;
        let sessions = self
            .db
            .execute(
                "DELETE FROM web_sessions WHERE expires_at <= $1",
                &[now.as_millis().into()],
            )
            .await?;
        Ok(codes + sessions)
    }
}
