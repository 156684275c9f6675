//! Accounts: the `accounts` table, its row type and the [`AccountStore`] port on it.

use crate::{
    db::{name_conflict, Arg},
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    accounts::{Account, AccountStore, AccountType},
    audit::AuditEvent,
    email::Email,
    ids::AccountId,
    store::{StoreError, StoreResult},
    time::Timestamp,
};

/// The columns [`AccountRow`] reads, in its order; `a` is the table's alias everywhere.
pub(crate) const ACCOUNT_COLUMNS: &str = "a.id, a.email, a.name, a.account_type, \
     a.provider_key, a.disabled_at, a.created_at, a.updated_at";

pub(crate) struct AccountRow {
    id: String,
    email: String,
    name: Option<String>,
    account_type: String,
    provider_key: Option<String>,
    disabled_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl FromColumns for AccountRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            id: c.text()?,
            email: c.text()?,
            name: c.opt_text()?,
            account_type: c.text()?,
            provider_key: c.opt_text()?,
            disabled_at: c.opt_int()?,
            created_at: c.int()?,
            updated_at: c.int()?,
        })
    }
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            email: Email::parse(&row.email)
                .map_err(|err| corrupt(format!("account {}: {err}", row.id)))?,
            account_type: AccountType::parse(&row.account_type).ok_or_else(|| {
                corrupt(format!(
                    "account {} has type `{}`",
                    row.id, row.account_type
                ))
            })?,
            id: AccountId::from_string(row.id),
            name: row.name,
            provider_key: row.provider_key,
            disabled_at: row.disabled_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

/// A row the database holds that no domain value can be: always a bug or a hand edit.
pub(crate) fn corrupt(what: String) -> StoreError {
    StoreError::Backend(what.into())
}

/// A lone `COUNT(*)`.
struct Count(u64);

impl FromColumns for Count {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(u64::try_from(c.int()?).unwrap_or(0)))
    }
}

#[async_trait]
impl AccountStore for Store {
    async fn count_accounts(&self) -> StoreResult<u64> {
        let count: Option<Count> = self
            .db
            .fetch_optional("SELECT COUNT(*) FROM accounts", &[])
            .await?;
        Ok(count.map_or(0, |c| c.0))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account = %account.id))]
    async fn insert_account(&self, account: &Account, event: &AuditEvent) -> StoreResult<()> {
        self.db
            .execute_recorded(
                "INSERT INTO accounts (id, email, name, account_type, provider_key, \
                 disabled_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    account.id.as_str().into(),
                    account.email.as_str().into(),
                    account.name.as_deref().into(),
                    account.account_type.as_str().into(),
                    account.provider_key.as_deref().into(),
                    account.disabled_at.map(Timestamp::as_millis).into(),
                    account.created_at.as_millis().into(),
                    account.updated_at.as_millis().into(),
                ],
                std::slice::from_ref(event),
            )
            .await
            .map_err(|err| {
                name_conflict(err, |constraint| {
                    if constraint.contains("provider_key") {
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

    async fn account_by_id(&self, id: &AccountId) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1");
        let row: Option<AccountRow> = self.db.fetch_optional(&sql, &[id.as_str().into()]).await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn account_by_email(&self, email: &Email) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.email = $1");
        let row: Option<AccountRow> = self
            .db
            .fetch_optional(&sql, &[email.as_str().into()])
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn partner_by_provider_key(&self, provider_key: &str) -> StoreResult<Option<Account>> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.provider_key = $1 \
             AND a.account_type = 'partner'"
        );
        let row: Option<AccountRow> = self.db.fetch_optional(&sql, &[provider_key.into()]).await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn partners(&self) -> StoreResult<Vec<Account>> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.account_type = 'partner' \
             ORDER BY a.provider_key"
        );
        let rows: Vec<AccountRow> = self.db.fetch(&sql, &[]).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn accounts_by_emails(&self, emails: &[Email]) -> StoreResult<Vec<Account>> {
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=emails.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.email IN ({})",
            marks.join(", ")
        );
        let args: Vec<Arg<'_>> = emails.iter().map(|e| e.as_str().into()).collect();
        let rows: Vec<AccountRow> = self.db.fetch(&sql, &args).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn set_account_disabled(
        &self,
        id: &AccountId,
        disabled_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let args: [Arg<'_>; 3] = [
            disabled_at.map(Timestamp::as_millis).into(),
            Timestamp::now().as_millis().into(),
            id.as_str().into(),
        ];
        let changed = self
            .db
            .execute(
                "UPDATE accounts SET disabled_at = $1, updated_at = $2 WHERE id = $3",
                &args,
            )
            .await?;
        Ok(changed == 1)
    }
}
