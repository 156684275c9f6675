//! Signing in to the web pages (spec §8) with a one-time code sent by email, and the sessions
//! that follow. The rules, whatever renders the pages:
//!
//! - A code is 6 digits, good for [`CODE_TTL`] and [`CODE_TRIES`] wrong tries; then a new one
//!   must be asked for. Asking again replaces the old code.
//! - Codes and session tokens are stored only as hashes (SHA-256 with a server-side pepper for
//!   codes, whose space is small), so a copy of the database signs no one in.
//! - An unknown or disabled email gets the same answer, and the same database work, as a
//!   known one: a code row is written either way and the mail is sent after the answer, so
//!   neither the page nor its timing says whether an account exists.
//! - A session is a random token in a cookie, its hash in the database, with a CSRF secret of
//!   its own for the forms, and an absolute expiry ([`SESSION_TTL`]).

use crate::audit::{Action, Actor, AuditContext, AuditEvent};
use crate::{
    accounts::{Account, AccountStore},
    email::Email,
    ids::AccountId,
    store::StoreResult,
    time::Timestamp,
};
use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How long a code is good for.
pub const CODE_TTL_SECONDS: i64 = 10 * 60;
pub const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(CODE_TTL_SECONDS as u64);
/// Wrong tries a code allows before a new one is needed.
pub const CODE_TRIES: u32 = 5;
/// How long a session lasts.
pub const SESSION_TTL_SECONDS: i64 = 12 * 60 * 60;
pub const SESSION_TTL: std::time::Duration =
    std::time::Duration::from_secs(SESSION_TTL_SECONDS as u64);

/// A code as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCode {
    pub code_hash: String,
    pub tries: u32,
    pub expires_at: Timestamp,
}

/// A session as stored (its token only as a hash, the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    pub account_id: AccountId,
    pub csrf: String,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait SignInStore: Send + Sync + 'static {
    /// Stores the code for `email`, replacing any earlier one (its tries start again at 0).
    async fn put_code(
        &self,
        email: &str,
        code_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn code_of(&self, email: &str) -> StoreResult<Option<StoredCode>>;
    /// Counts one wrong try and records `events` with it; the tries so far.
    async fn spend_try(&self, email: &str, events: &[AuditEvent]) -> StoreResult<u32>;
    async fn delete_code(&self, email: &str) -> StoreResult<()>;
    async fn insert_session(
        &self,
        token_hash: &str,
        session: &StoredSession,
        now: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<()>;
    async fn session_of(&self, token_hash: &str) -> StoreResult<Option<StoredSession>>;
    /// Ends a session, recording `event` when there was one.
    async fn delete_session(&self, token_hash: &str, event: &AuditEvent) -> StoreResult<()>;
    /// Deletes expired codes and sessions; how many.
    async fn delete_expired(&self, now: Timestamp) -> StoreResult<u64>;
}

/// How a code reaches its owner: SMTP in production, a log line by default.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send_sign_in_code(&self, to: &Email, code: &str) -> Result<(), String>;
}

/// The default mailer: one log line per message with the recipient and the code, so a
/// newcomer can sign in with no mail server.
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send_sign_in_code(&self, to: &Email, code: &str) -> Result<(), String> {
        tracing::info!(email = %to, code, "sign-in code (no mail server is configured: [mail] smtp_url)");
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignInError {
    #[error("`{0}` is not an email address")]
    BadEmail(String),
    /// The code is wrong; this many tries are left.
    #[error("That code is not right; {0} tries left.")]
    WrongCode(u32),
    /// There is no code to try: none was asked for, it expired, or its tries are spent.
    #[error("That code has expired or was tried too often; ask for a new one.")]
    NoCode,
    #[error("the store failed: {0}")]
    Store(String),
}

impl From<crate::store::StoreError> for SignInError {
    fn from(err: crate::store::StoreError) -> Self {
        SignInError::Store(err.to_string())
    }
}

/// A session just begun: the token for the cookie (shown only here) and its CSRF secret.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub account: Account,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

pub struct SignIn {
    store: Arc<dyn SignInStore>,
    accounts: Arc<dyn AccountStore>,
    mailer: Arc<dyn Mailer>,
    /// Mixed into every code's hash: a 6-digit code hashed alone is found by trying a million.
    pepper: Vec<u8>,
}

impl SignIn {
    pub fn new<S: SignInStore + AccountStore>(
        store: Arc<S>,
        mailer: Arc<dyn Mailer>,
        pepper: &[u8],
    ) -> Self {
        Self {
            store: store.clone(),
            accounts: store,
            mailer,
            pepper: pepper.to_vec(),
        }
    }

    fn code_hash(&self, email: &Email, code: &str) -> String {
        sha256_hex(&[
            &self.pepper,
            b"\0",
            email.as_str().as_bytes(),
            b"\0",
            code.as_bytes(),
        ])
    }

    /// Sends a new code to `email` if it is an active account's, and answers the same either
    /// way. The mail leaves after this returns (its time is not the caller's).
    pub async fn send_code(&self, email: &str) -> Result<(), SignInError> {
        let email = Email::parse(email).map_err(|_| SignInError::BadEmail(email.to_owned()))?;
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        let now = Timestamp::now();
        self.store
            .put_code(
                email.as_str(),
                &self.code_hash(&email, &code),
                now.plus_seconds(CODE_TTL_SECONDS),
                now,
            )
            .await?;
        let account = self.accounts.account_by_email(&email).await?;
        if account.is_some_and(|a| a.disabled_at.is_none()) {
            let mailer = self.mailer.clone();
            tokio::spawn(async move {
                if let Err(err) = mailer.send_sign_in_code(&email, &code).await {
                    tracing::warn!(email = %email, error = %err, "could not send a sign-in code");
                }
            });
        }
        Ok(())
    }

    /// Checks `code` for `email`; a right one (of an active account) is spent and begins a
    /// session.
    /// A wrong code for an existing account records `session.sign_in_failed` (with the
    /// account as actor); a wrong code for an email without an account records nothing.
    pub async fn verify(
        &self,
        email: &str,
        code: &str,
        context: &AuditContext,
    ) -> Result<NewSession, SignInError> {
        let email = Email::parse(email).map_err(|_| SignInError::BadEmail(email.to_owned()))?;
        let now = Timestamp::now();
        let Some(stored) = self.store.code_of(email.as_str()).await? else {
            return Err(SignInError::NoCode);
        };
        if stored.expires_at <= now || stored.tries >= CODE_TRIES {
            self.store.delete_code(email.as_str()).await?;
            return Err(SignInError::NoCode);
        }
        let account = self.accounts.account_by_email(&email).await?;
        let right = stored.code_hash == self.code_hash(&email, code.trim());
        let account = match account {
            Some(account) if right && account.disabled_at.is_none() => account,
            other => {
                let failed: Vec<AuditEvent> = other
                    .iter()
                    .map(|account| {
                        account_event(account, Action::SignInFailed, context)
                            .with("triesLeft", CODE_TRIES.saturating_sub(stored.tries + 1))
                    })
                    .collect();
                let tries = self.store.spend_try(email.as_str(), &failed).await?;
                let left = CODE_TRIES.saturating_sub(tries);
                if left == 0 {
                    self.store.delete_code(email.as_str()).await?;
                    return Err(SignInError::NoCode);
                }
                return Err(SignInError::WrongCode(left));
            }
        };
        self.store.delete_code(email.as_str()).await?;
        let token = random_token();
        let csrf = random_token();
        self.store
            .insert_session(
                &sha256_hex(&[token.as_bytes()]),
                &StoredSession {
                    account_id: account.id.clone(),
                    csrf: csrf.clone(),
                    expires_at: now.plus_seconds(SESSION_TTL_SECONDS),
                },
                now,
                &account_event(&account, Action::SignedIn, context),
            )
            .await?;
        Ok(NewSession {
            token,
            csrf,
            account,
        })
    }

    /// The signed-in account and the session's CSRF secret, for a live session's token.
    pub async fn session(&self, token: &str) -> Result<Option<(Account, String)>, SignInError> {
        let Some(session) = self
            .store
            .session_of(&sha256_hex(&[token.as_bytes()]))
            .await?
        else {
            return Ok(None);
        };
        if session.expires_at <= Timestamp::now() {
            return Ok(None);
        }
        match self.accounts.account_by_id(&session.account_id).await? {
            Some(account) if account.disabled_at.is_none() => Ok(Some((account, session.csrf))),
            _ => Ok(None),
        }
    }

    /// Deletes expired codes (asked for by anyone, for any email) and sessions; how many.
    pub async fn sweep(&self) -> Result<u64, SignInError> {
        Ok(self.store.delete_expired(Timestamp::now()).await?)
    }

    /// Ends a session.
    pub async fn sign_out(
        &self,
        token: &str,
        account: &Account,
        context: &AuditContext,
    ) -> Result<(), SignInError> {
        self.store
            .delete_session(
                &sha256_hex(&[token.as_bytes()]),
                &account_event(account, Action::SignedOut, context),
            )
            .await?;
        Ok(())
    }
}

/// An event of an account at the sign-in page (no key, no caller yet).
fn account_event(account: &Account, action: Action, context: &AuditContext) -> AuditEvent {
    let caller = crate::identity::Caller::signed_in(account.clone());
    AuditEvent::new(action, Actor::of(&caller), context.clone()).target("account", &account.id)
}
