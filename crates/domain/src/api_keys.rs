//! API keys: long-lived secrets that a caller exchanges for short-lived access tokens.
//!
//! A key reads `tb_pat_<30 random base62><6 checksum base62>` (`tb_ptk_` for partners):
//! ~178 random bits, and a CRC32 of everything before it so that secret scanners can
//! recognise a real key offline without asking us. The secret is shown once; we keep only its
//! SHA-256 (a fast hash is right here: the input has 178 bits of entropy, so there is nothing
//! to brute-force, and login must stay cheap) and a short display prefix.

use crate::audit::AuditEvent;
use crate::words::Word;
use crate::{
    accounts::Account,
    ids::{AccountId, ApiKeyId},
    store::StoreResult,
    time::Timestamp,
};
use async_trait::async_trait;
use rand::{rngs::OsRng, Rng};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
/// How many characters of the key are kept to show which key is which.
const DISPLAY_LEN: usize = 11;

/// What a key is for; it is part of the key's text so scanners can tell them apart.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum KeyKind {
    /// A personal key of a customer account.
    Personal,
    /// A partner's key.
    Partner,
}

impl KeyKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Personal => "tb_pat_",
            Self::Partner => "tb_ptk_",
        }
    }
}

impl Word for KeyKind {}

/// The SHA-256 of a key's full text, in hex: the only form in which a key is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of(secret: &str) -> Self {
        Self(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    pub fn from_hex(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A freshly generated key: the secret (to show once) and what is stored of it.
pub struct GeneratedKey {
    pub secret: SecretString,
    pub hash: KeyHash,
    pub display_prefix: String,
}

pub fn generate(kind: KeyKind) -> GeneratedKey {
    let mut rng = OsRng;
    let mut text = String::with_capacity(kind.prefix().len() + RANDOM_LEN + CHECKSUM_LEN);
    text.push_str(kind.prefix());
    for _ in 0..RANDOM_LEN {
        text.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    let checksum = checksum_of(&text);
    text.push_str(&checksum);
    GeneratedKey {
        hash: KeyHash::of(&text),
        display_prefix: text[..DISPLAY_LEN].to_owned(),
        secret: SecretString::from(text),
    }
}

fn checksum_of(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `text` has the shape and checksum of a Taxbridge key. Offline only: it says nothing
/// about whether the key exists.
pub fn looks_like_key(text: &str) -> Option<KeyKind> {
    let kind = [KeyKind::Personal, KeyKind::Partner]
        .into_iter()
        .find(|kind| text.starts_with(kind.prefix()))?;
    let rest = &text[kind.prefix().len()..];
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| ALPHABET.contains(&b)) {
        return None;
    }
    let (body, checksum) = text.split_at(text.len() - CHECKSUM_LEN);
    (checksum_of(body) == checksum).then_some(kind)
}

/// A key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub name: String,
    pub kind: KeyKind,
    pub hash: KeyHash,
    pub display_prefix: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// A key is usable until it is revoked or its expiry passes.
    pub fn is_usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// A key together with the account it belongs to: what authentication needs, in one read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    pub key: ApiKey,
    pub account: Account,
}

/// Where API keys are kept (as hashes only).
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Inserts a key and records `event` with it.
    async fn insert_api_key(&self, key: &ApiKey, event: &AuditEvent) -> StoreResult<()>;
    async fn grant_by_key_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyGrant>>;
    async fn grant_by_key_id(&self, id: &ApiKeyId) -> StoreResult<Option<KeyGrant>>;
    /// An account's keys, oldest first.
    async fn api_keys_of(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked; false when there is no such key or it was already revoked.
    /// Records `event` with the revocation (nothing when nothing was revoked).
    async fn revoke_api_key(
        &self,
        id: &ApiKeyId,
        at: Timestamp,
        event: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Records use of a key, unless it was recorded less than a minute before `at`.
    async fn touch_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<()>;
}

/// Verifies a presented secret against a stored hash without leaking timing.
pub fn secret_matches(secret: &SecretString, hash: &KeyHash) -> bool {
    let presented = KeyHash::of(secret.expose_secret());
    let (a, b) = (presented.as_str().as_bytes(), hash.as_str().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_carry_their_kind_and_a_valid_checksum() {
        for kind in [KeyKind::Personal, KeyKind::Partner] {
            let key = generate(kind);
            let text = key.secret.expose_secret();
            assert!(text.starts_with(kind.prefix()));
            assert_eq!(text.len(), 7 + 36);
            assert_eq!(looks_like_key(text), Some(kind));
            assert_eq!(key.hash, KeyHash::of(text));
            assert!(text.starts_with(&key.display_prefix));
            assert!(secret_matches(&key.secret, &key.hash));
        }
    }

    #[test]
    fn two_keys_never_share_a_secret() {
        let a = generate(KeyKind::Personal);
        let b = generate(KeyKind::Personal);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn a_single_changed_character_breaks_the_checksum() {
        let key = generate(KeyKind::Personal);
        let text = key.secret.expose_secret().to_owned();
        let mut bytes = text.into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(looks_like_key(&tampered), None);
    }

    #[test]
    fn expiry_and_revocation_end_a_key() {
        let now = Timestamp::from_millis(1_000_000);
        let generated = generate(KeyKind::Personal);
        let mut key = ApiKey {
            id: ApiKeyId::generate(),
            account_id: AccountId::generate(),
            name: "ci".into(),
            kind: KeyKind::Personal,
            hash: generated.hash,
            display_prefix: generated.display_prefix,
            created_at: now,
            last_used_at: None,
            expires_at: Some(now.plus_seconds(10)),
            revoked_at: None,
        };
        assert!(key.is_usable_at(now));
        assert!(!key.is_usable_at(now.plus_seconds(10)));
        key.expires_at = None;
        key.revoked_at = Some(now);
        assert!(!key.is_usable_at(now));
    }

    proptest! {
        #[test]
        fn arbitrary_text_is_never_mistaken_for_a_key(text in "tb_pat_[0-9A-Za-z]{36}") {
            // A random body passes the checksum about once in 62^6 (5.7e10) tries, so a few
            // hundred random cases must all be refused.
            prop_assert_eq!(looks_like_key(&text), None);
        }

        #[test]
        fn parsing_arbitrary_input_never_panics(text in "\\PC{0,60}") {
            let _ = looks_like_key(&text);
        }
    }
}
