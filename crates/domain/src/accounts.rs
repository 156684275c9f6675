//! Accounts: a firm's staff member (`customer`) or a software vendor serving many firms
//! (`partner`, which holds a provider key such as `qount`).

use crate::audit::AuditEvent;
use crate::words::Word;
use crate::{email::Email, ids::AccountId, store::StoreResult, time::Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where accounts are kept.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn count_accounts(&self) -> StoreResult<u64>;
    /// Fails with [`StoreError::Conflict`](crate::store::StoreError::Conflict) when the email,
    /// or a partner's provider key, is taken.
    /// Inserts an account and records `event` with it.
    async fn insert_account(&self, account: &Account, event: &AuditEvent) -> StoreResult<()>;
    async fn account_by_id(&self, id: &AccountId) -> StoreResult<Option<Account>>;
    async fn account_by_email(&self, email: &Email) -> StoreResult<Option<Account>>;
    /// The partner account holding `provider_key`, if any.
    async fn partner_by_provider_key(&self, provider_key: &str) -> StoreResult<Option<Account>>;
    /// Every partner account, by provider key.
    async fn partners(&self) -> StoreResult<Vec<Account>>;
    /// The accounts that exist among `emails` (at most a few hundred), in no set order.
    async fn accounts_by_emails(&self, emails: &[Email]) -> StoreResult<Vec<Account>>;
    /// Disables (`Some`) or re-enables (`None`) an account; false when there is no such account.
    async fn set_account_disabled(
        &self,
        id: &AccountId,
        disabled_at: Option<Timestamp>,
    ) -> StoreResult<bool>;
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Customer,
    Partner,
}

impl Word for AccountType {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub email: Email,
    pub name: Option<String>,
    pub account_type: AccountType,
    /// Only partners hold one; unique across partners.
    pub provider_key: Option<String>,
    pub disabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Account {
    pub fn new_customer(email: Email, name: Option<String>, now: Timestamp) -> Self {
        Self {
            id: AccountId::generate(),
            email,
            name,
            account_type: AccountType::Customer,
            provider_key: None,
            disabled_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn new_partner(email: Email, name: String, provider_key: String, now: Timestamp) -> Self {
        Self {
            account_type: AccountType::Partner,
            provider_key: Some(provider_key),
            ..Self::new_customer(email, Some(name), now)
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// Provider keys are case-sensitive identifiers such as `qount` or `canopy`: lower-case
/// letters, digits, `_` and `-`, starting with a letter, at most 64 characters.
pub fn validate_provider_key(key: &str) -> Result<(), &'static str> {
    let mut chars = key.chars();
    let starts_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_ok || key.len() > 64 {
        return Err("a provider key starts with a lower-case letter and has at most 64 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err("a provider key has only lower-case letters, digits, `_` and `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_keys_are_lower_case_identifiers() {
        assert!(validate_provider_key("qount").is_ok());
        assert!(validate_provider_key("google_drive").is_ok());
        assert!(validate_provider_key("Qount").is_err());
        assert!(validate_provider_key("1tax").is_err());
        assert!(validate_provider_key("").is_err());
        assert!(validate_provider_key("a b").is_err());
    }
}
