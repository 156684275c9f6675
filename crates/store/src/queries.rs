//! The SQL of every [`Store`](taxbridge_domain::store::Store) method, written once and
//! instantiated for each backend by [`impl_store!`]. A method whose SQL had to differ between
//! the backends would move out of the macro into the backend's own `impl` block.

macro_rules! impl_store {
    ($store:ty, $backend:literal) => {
        $crate::workspace_queries::store_impl_with_workspaces! { $store, {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> taxbridge_domain::store::StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn count_accounts(&self) -> taxbridge_domain::store::StoreResult<u64> {
                let counts: Vec<$crate::rows::Count> = self.fetch_all("SELECT COUNT(*) FROM accounts", &[]).await?;
                Ok(counts.first().map_or(0, |c| c.0))
            }

            #[tracing::instrument(skip_all, fields(account = %account.id))]
            async fn insert_account(
                &self,
                account: &taxbridge_domain::accounts::Account,
            ) -> taxbridge_domain::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO accounts (id, email, name, account_type, provider_key, \
                     disabled_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(account.id.as_str())
                .bind(account.email.as_str())
                .bind(account.name.as_deref())
                .bind(account.account_type.as_str())
                .bind(account.provider_key.as_deref())
                .bind(account.disabled_at.map(|t| t.as_millis()))
                .bind(account.created_at.as_millis())
                .bind(account.updated_at.as_millis())
                .execute(&self.pool)
                .await
                .map_err(|err| {
                    $crate::store_error(err, |detail| {
                        if detail.contains("provider_key") {
                            format!(
                                "a partner with provider key `{}`",
                                account.provider_key.as_deref().unwrap_or_default()
                            )
                        } else {
                            format!("an account with the email {}", account.email)
                        }
                    })
                })?;
                Ok(())
            }

            async fn account_by_id(
                &self,
                id: &taxbridge_domain::ids::AccountId,
            ) -> taxbridge_domain::store::StoreResult<Option<taxbridge_domain::accounts::Account>> {
                let sql = format!("SELECT {} FROM accounts WHERE id = $1", $crate::rows::ACCOUNT_COLUMNS);
                let rows: Vec<$crate::rows::AccountRow> = self.fetch_all(&sql, &[id.as_str().into()]).await?;
                rows.into_iter().next().map(TryInto::try_into).transpose()
            }

            async fn account_by_email(
                &self,
                email: &taxbridge_domain::email::Email,
            ) -> taxbridge_domain::store::StoreResult<Option<taxbridge_domain::accounts::Account>> {
                let sql = format!("SELECT {} FROM accounts WHERE email = $1", $crate::rows::ACCOUNT_COLUMNS);
                let rows: Vec<$crate::rows::AccountRow> = self.fetch_all(&sql, &[email.as_str().into()]).await?;
                rows.into_iter().next().map(TryInto::try_into).transpose()
            }

            async fn set_account_disabled(
                &self,
                id: &taxbridge_domain::ids::AccountId,
                disabled_at: Option<taxbridge_domain::time::Timestamp>,
            ) -> taxbridge_domain::store::StoreResult<bool> {
                let now = taxbridge_domain::time::Timestamp::now().as_millis();
                let done = sqlx::query("UPDATE accounts SET disabled_at = $1, updated_at = $2 WHERE id = $3")
                    .bind(disabled_at.map(|t| t.as_millis()))
                    .bind(now)
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(key = %key.id))]
            async fn insert_api_key(
                &self,
                key: &taxbridge_domain::api_keys::ApiKey,
            ) -> taxbridge_domain::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO api_keys (id, account_id, name, kind, key_hash, display_prefix, \
                     created_at, last_used_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(key.id.as_str())
                .bind(key.account_id.as_str())
                .bind(key.name.as_str())
                .bind(key.kind.as_str())
                .bind(key.hash.as_str())
                .bind(key.display_prefix.as_str())
                .bind(key.created_at.as_millis())
                .bind(key.last_used_at.map(|t| t.as_millis()))
                .bind(key.expires_at.map(|t| t.as_millis()))
                .bind(key.revoked_at.map(|t| t.as_millis()))
                .execute(&self.pool)
                .await
                .map_err(|err| $crate::store_error(err, |_| "an API key with this secret".to_owned()))?;
                Ok(())
            }

            async fn grant_by_key_hash(
                &self,
                hash: &taxbridge_domain::api_keys::KeyHash,
            ) -> taxbridge_domain::store::StoreResult<Option<taxbridge_domain::store::KeyGrant>> {
                let sql = format!("{} WHERE k.key_hash = $1", $crate::rows::GRANT_SELECT);
                let rows: Vec<$crate::rows::GrantRow> = self.fetch_all(&sql, &[hash.as_str().into()]).await?;
                rows.into_iter().next().map(TryInto::try_into).transpose()
            }

            async fn grant_by_key_id(
                &self,
                id: &taxbridge_domain::ids::ApiKeyId,
            ) -> taxbridge_domain::store::StoreResult<Option<taxbridge_domain::store::KeyGrant>> {
                let sql = format!("{} WHERE k.id = $1", $crate::rows::GRANT_SELECT);
                let rows: Vec<$crate::rows::GrantRow> = self.fetch_all(&sql, &[id.as_str().into()]).await?;
                rows.into_iter().next().map(TryInto::try_into).transpose()
            }

            async fn api_keys_of(
                &self,
                account: &taxbridge_domain::ids::AccountId,
            ) -> taxbridge_domain::store::StoreResult<Vec<taxbridge_domain::api_keys::ApiKey>> {
                let sql = format!(
                    "SELECT {} FROM api_keys k WHERE k.account_id = $1 ORDER BY k.created_at, k.id",
                    $crate::rows::KEY_COLUMNS
                );
                let rows: Vec<$crate::rows::ApiKeyRow> = self.fetch_all(&sql, &[account.as_str().into()]).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn revoke_api_key(
                &self,
                id: &taxbridge_domain::ids::ApiKeyId,
                at: taxbridge_domain::time::Timestamp,
            ) -> taxbridge_domain::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(at.as_millis())
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() == 1)
            }

            async fn touch_api_key(
                &self,
                id: &taxbridge_domain::ids::ApiKeyId,
                at: taxbridge_domain::time::Timestamp,
            ) -> taxbridge_domain::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                     AND (last_used_at IS NULL OR last_used_at <= $3)",
                )
                .bind(at.as_millis())
                .bind(id.as_str())
                .bind(at.as_millis() - 60_000)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn add_usage(
                &self,
                counts: &[taxbridge_domain::usage::UsageCount],
            ) -> taxbridge_domain::store::StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                for c in counts {
                    sqlx::query(
                        "INSERT INTO usage_counts (day, api_key_id, source_platform, operation, count) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (day, api_key_id, source_platform, operation) \
                         DO UPDATE SET count = usage_counts.count + excluded.count",
                    )
                    .bind(c.day.as_str())
                    .bind(c.api_key_id.as_ref().map(|k| k.as_str()).unwrap_or(""))
                    .bind(c.source_platform.as_str())
                    .bind(c.operation.as_str())
                    .bind(i64::try_from(c.count).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(())
            }

            async fn usage_since(
                &self,
                since_day: &str,
            ) -> taxbridge_domain::store::StoreResult<Vec<taxbridge_domain::usage::UsageCount>> {
                let rows: Vec<$crate::rows::UsageRow> = self.fetch_all(
                    "SELECT day, api_key_id, source_platform, operation, count FROM usage_counts \
                     WHERE day >= $1 ORDER BY day, api_key_id, source_platform, operation",
                    &[since_day.into()],
                )
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }}
    };
}

pub(crate) use impl_store;
