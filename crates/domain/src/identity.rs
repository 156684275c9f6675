//! Identity: who is calling. Creates accounts and API keys, exchanges a key for an access
//! token (`loginViaPersonalApiToken`), and turns a bearer token back into a [`Caller`].
//!
//! A token is checked twice on every request: its signature and expiry (no I/O), then the
//! key behind it (revoked? expired? account disabled?). The second check reads a short-lived
//! cache of key grants, so a revocation is seen at once on the node that made it (its cache
//! entry is dropped) and within [`IdentitySettings::grant_cache_ttl`] everywhere else.

use crate::words::Word;
use crate::{
    accounts::{validate_provider_key, Account, AccountStore, AccountType},
    api_keys::{self, ApiKey, ApiKeyStore, KeyGrant, KeyHash, KeyKind},
    audit::{Action, AuditContext, AuditEvent, Who},
    email::Email,
    ids::{AccountId, ApiKeyId},
    store::StoreError,
    time::Timestamp,
    tokens::{IssuedToken, TokenError, TokenIssuer},
    ttl_map::TtlMap,
};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use std::{sync::Arc, time::Duration};

/// The account of the first start, created when the database has no account at all.
pub const OWNER_EMAIL: &str = "owner@taxbridge.local";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong, unknown, expired or revoked key at login: one message for all, on purpose.
    #[error("The API key is not valid: it is unknown, expired or revoked. Create a key in Developer Settings (or with `taxbridge keys create`) and log in with it.")]
    InvalidApiKey,
    #[error("This operation needs an access token: log in with loginViaPersonalApiToken and send `Authorization: Bearer <accessToken>`.")]
    MissingToken,
    #[error("The access token is not valid. Send the accessToken returned by loginViaPersonalApiToken as `Authorization: Bearer <accessToken>`.")]
    InvalidToken,
    #[error("The access token has expired. Log in again with loginViaPersonalApiToken.")]
    ExpiredToken,
    #[error("The API key behind this access token has been revoked or has expired, or its account is disabled. Log in with a valid key.")]
    KeyNoLongerUsable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Mistakes in what an operator or caller asked for, each naming the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no account has the email {0}")]
    NoSuchAccount(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who a request acts for: an API caller established by [`Identity::authenticate`] (the key
/// and account as read, shared with the grant cache, not copied per request), or a user
/// signed in to the web pages ([`Caller::signed_in`]), who reaches exactly what the account
/// reaches and has no key behind the request.
#[derive(Clone, Debug)]
pub struct Caller {
    via: Via,
    /// Where the request came from, for the audit log.
    context: Arc<AuditContext>,
}

#[derive(Clone, Debug)]
enum Via {
    Key(Arc<KeyGrant>),
    Session(Arc<Account>),
}

impl Caller {
    /// A signed-in web user (the session was checked by [`crate::sign_in::SignIn::session`]).
    pub fn signed_in(account: Account) -> Self {
        Caller {
            via: Via::Session(Arc::new(account)),
            context: Arc::default(),
        }
    }

    /// The same caller, with where its request came from (the HTTP layer sets it).
    pub fn with_context(mut self, context: AuditContext) -> Self {
        self.context = Arc::new(context);
        self
    }

    /// Where the request came from (empty outside a request).
    pub fn context(&self) -> &AuditContext {
        &self.context
    }

    /// The display prefix of the API key behind the request; None for a signed-in web user.
    pub fn key_prefix(&self) -> Option<&str> {
        match &self.via {
            Via::Key(grant) => Some(&grant.key.display_prefix),
            Via::Session(_) => None,
        }
    }

    pub fn account(&self) -> &Account {
        match &self.via {
            Via::Key(grant) => &grant.account,
            Via::Session(account) => account,
        }
    }

    /// The API key behind the request; None for a signed-in web user.
    pub fn key_id(&self) -> Option<&ApiKeyId> {
        match &self.via {
            Via::Key(grant) => Some(&grant.key.id),
            Via::Session(_) => None,
        }
    }
}

pub struct IdentitySettings {
    pub token_lifetime_seconds: i64,
    /// How long a node trusts what it read about a key before reading it again.
    pub grant_cache_ttl: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            token_lifetime_seconds: 3600,
            grant_cache_ttl: Duration::from_secs(2),
        }
    }
}

/// How long a grant read from the database is trusted, given how soon a revocation must take
/// effect: the promise less the time a read and the request around it take, so a grant read
/// just before a revocation committed is dropped within the promise, not just after it.
pub(crate) fn trusted_for(promise: Duration) -> Duration {
    promise
        .saturating_sub(Duration::from_millis(250))
        .max(Duration::from_millis(100))
}

pub struct Identity {
    accounts: Arc<dyn AccountStore>,
    keys: Arc<dyn ApiKeyStore>,
    tokens: TokenIssuer,
    /// Key grants by key id, trusted for a short time.
    grants: TtlMap<ApiKeyId, Arc<KeyGrant>>,
    /// Usable key grants by key hash, for logins, trusted just as long. Only grants that were
    /// usable are kept, and one found unusable is read again, so every refused login costs the
    /// same database read whatever the reason.
    logins: TtlMap<KeyHash, Arc<KeyGrant>>,
    /// Keys whose use this node recorded in the last minute: `last_used_at` is written at
    /// most once a minute per key rather than on every request.
    touched: TtlMap<ApiKeyId, ()>,
}

impl Identity {
    /// `store` keeps both accounts and keys: the one storage handle the gateway has.
    pub fn new<S: AccountStore + ApiKeyStore>(
        store: Arc<S>,
        signing_secret: &SecretSlice<u8>,
        settings: IdentitySettings,
    ) -> Self {
        Self {
            accounts: store.clone(),
            keys: store,
            tokens: TokenIssuer::new(signing_secret, settings.token_lifetime_seconds),
            grants: TtlMap::new(trusted_for(settings.grant_cache_ttl), 100_000),
            logins: TtlMap::new(trusted_for(settings.grant_cache_ttl), 100_000),
            touched: TtlMap::new(Duration::from_secs(60), 100_000),
        }
    }

    /// Exchanges an API key for an access token.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, secret: &str) -> Result<(IssuedToken, Caller), AuthError> {
        let hash = KeyHash::of(secret);
        let now = Timestamp::now();
        let usable = |g: &KeyGrant| g.key.is_usable_at(now) && !g.account.is_disabled();
        let grant = match self.logins.get(&hash).filter(|g| usable(g)) {
            Some(grant) => grant,
            None => {
                // Every key, well-formed or not, costs one hash and one indexed read, so that
                // wrong, expired and revoked keys answer alike and in the same time.
                let fresh = self.keys.grant_by_key_hash(&hash).await?;
                let fresh = Arc::new(fresh.filter(usable).ok_or(AuthError::InvalidApiKey)?);
                self.logins.insert(hash, fresh.clone());
                fresh
            }
        };
        let issued = self.tokens.issue(&grant.account.id, &grant.key.id, now);
        self.touch(&grant.key.id, now);
        self.grants.insert(grant.key.id.clone(), grant.clone());
        Ok((
            issued,
            Caller {
                via: Via::Key(grant),
                context: Arc::default(),
            },
        ))
    }

    /// Turns a bearer token into the caller it stands for.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, AuthError> {
        let claims = self.tokens.verify(bearer).map_err(|err| match err {
            TokenError::Expired => AuthError::ExpiredToken,
            TokenError::Invalid => AuthError::InvalidToken,
        })?;
        let grant = match self.grants.get(&claims.key_id) {
            Some(grant) => grant,
            None => {
                let fresh = self.keys.grant_by_key_id(&claims.key_id).await?;
                let fresh = Arc::new(fresh.ok_or(AuthError::KeyNoLongerUsable)?);
                self.grants.insert(claims.key_id.clone(), fresh.clone());
                fresh
            }
        };
        let now = Timestamp::now();
        if grant.account.id != claims.account_id
            || !grant.key.is_usable_at(now)
            || grant.account.is_disabled()
        {
            return Err(AuthError::KeyNoLongerUsable);
        }
        self.touch(&grant.key.id, now);
        Ok(Caller {
            via: Via::Key(grant),
            context: Arc::default(),
        })
    }

    fn touch(&self, key: &ApiKeyId, now: Timestamp) {
        if self.touched.get(key).is_some() {
            return;
        }
        self.touched.insert(key.clone(), ());
        let (store, key) = (self.keys.clone(), key.clone());
        tokio::spawn(async move {
            if let Err(err) = store.touch_api_key(&key, now).await {
                tracing::warn!(error = %err, key = %key, "could not record when an API key was last used");
            }
        });
    }

    /// Creates a customer account; a taken email is a [`StoreError::Conflict`].
    pub async fn create_customer(
        &self,
        email: &str,
        name: Option<String>,
        who: &Who,
    ) -> Result<Account, IdentityError> {
        let email = parse_email(email)?;
        let name = clean_name(name)?;
        let account = Account::new_customer(email, name, Timestamp::now());
        let event = account_created(who, &account);
        self.accounts.insert_account(&account, &event).await?;
        Ok(account)
    }

    /// Creates a partner account with its provider key, and the partner's first API key.
    pub async fn create_partner(
        &self,
        name: &str,
        provider_key: &str,
        email: &str,
        who: &Who,
    ) -> Result<(Account, ApiKey, SecretString), IdentityError> {
        let email = parse_email(email)?;
        let name = clean_name(Some(name.to_owned()))?.ok_or_else(|| IdentityError::Invalid {
            field: "name",
            message: "a partner needs a name".into(),
        })?;
        validate_provider_key(provider_key).map_err(|message| IdentityError::Invalid {
            field: "providerKey",
            message: format!("`{provider_key}` is not a valid provider key: {message}"),
        })?;
        let account = Account::new_partner(email, name, provider_key.to_owned(), Timestamp::now());
        let event = account_created(who, &account).with("providerKey", provider_key);
        self.accounts.insert_account(&account, &event).await?;
        let (key, secret) = self.create_key(&account, "Partner key", None, who).await?;
        Ok((account, key, secret))
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Account, IdentityError> {
        let parsed = parse_email(email)?;
        self.accounts
            .account_by_email(&parsed)
            .await?
            .ok_or_else(|| IdentityError::NoSuchAccount(parsed.to_string()))
    }

    /// Creates an API key for an account. The secret is returned once and never stored.
    pub async fn create_key(
        &self,
        account: &Account,
        name: &str,
        expires_in_days: Option<u32>,
        who: &Who,
    ) -> Result<(ApiKey, SecretString), IdentityError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(IdentityError::Invalid {
                field: "name",
                message:
                    "a key needs a name of 1 to 100 characters, e.g. \"Production Integration\""
                        .into(),
            });
        }
        if let Some(why) = crate::text::unprintable(name) {
            return Err(IdentityError::Invalid {
                field: "name",
                message: format!("the key's name {why}"),
            });
        }
        if expires_in_days == Some(0) {
            return Err(IdentityError::Invalid {
                field: "expiresInDays",
                message: "a key must live at least one day; leave the expiry out for a key that does not expire".into(),
            });
        }
        let kind = match account.account_type {
            AccountType::Customer => KeyKind::Personal,
            AccountType::Partner => KeyKind::Partner,
        };
        let generated = api_keys::generate(kind);
        let now = Timestamp::now();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            account_id: account.id.clone(),
            name: name.to_owned(),
            kind,
            hash: generated.hash,
            display_prefix: generated.display_prefix,
            created_at: now,
            last_used_at: None,
            expires_at: expires_in_days.map(|days| now.plus_days(i64::from(days))),
            revoked_at: None,
        };
        let event = who
            .event(Action::ApiKeyCreated)
            .target("api_key", &key.id)
            .target("account", &account.id)
            .with("name", key.name.as_str())
            .with("prefix", key.display_prefix.as_str());
        self.keys.insert_api_key(&key, &event).await?;
        Ok((key, generated.secret))
    }

    pub async fn keys_of(&self, account: &AccountId) -> Result<Vec<ApiKey>, StoreError> {
        self.keys.api_keys_of(account).await
    }

    /// Revokes a key; its tokens stop working at once on this node.
    pub async fn revoke_key(&self, id: &ApiKeyId, who: &Who) -> Result<bool, StoreError> {
        let event = who.event(Action::ApiKeyRevoked).target("api_key", id);
        let revoked = self
            .keys
            .revoke_api_key(id, Timestamp::now(), &event)
            .await?;
        self.grants.invalidate(id);
        // The login cache is keyed by hash, which the id does not give; revocations are rare.
        self.logins.clear();
        Ok(revoked)
    }

    /// On a database without accounts, creates the owner account and its first key.
    /// Returns None when accounts exist (or another node bootstrapped at the same moment).
    pub async fn bootstrap_owner(&self) -> Result<Option<(Account, SecretString)>, IdentityError> {
        if self.accounts.count_accounts().await? > 0 {
            return Ok(None);
        }
        let account = match self
            .create_customer(OWNER_EMAIL, Some("Owner".into()), &Who::operator())
            .await
        {
            Ok(account) => account,
            Err(IdentityError::Store(StoreError::Conflict { .. })) => return Ok(None),
            Err(err) => return Err(err),
        };
        let (_, secret) = self
            .create_key(&account, "First-start key", None, &Who::operator())
            .await?;
        Ok(Some((account, secret)))
    }
}

fn account_created(who: &Who, account: &Account) -> AuditEvent {
    who.event(Action::AccountCreated)
        .target("account", &account.id)
        .with("type", account.account_type.as_str())
}

fn parse_email(raw: &str) -> Result<Email, IdentityError> {
    Email::parse(raw).map_err(|err| IdentityError::Invalid {
        field: "email",
        message: err.to_string(),
    })
}

fn clean_name(name: Option<String>) -> Result<Option<String>, IdentityError> {
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(IdentityError::Invalid {
            field: "name",
            message: "a name has at most 200 characters".into(),
        });
    }
    if let Some(why) = name.as_deref().and_then(crate::text::unprintable) {
        return Err(IdentityError::Invalid {
            field: "name",
            message: format!("the name {why}"),
        });
    }
    Ok(name)
}

/// Keeps [`SecretString`] out of reach of `Debug` while still letting the CLI print it once.
pub fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}
