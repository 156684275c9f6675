//! Credentials at rest: AES-256-GCM (RustCrypto's `aes-gcm`) under a key ring.
//!
//! A sealed value is text, `v1.<key id>.<nonce>.<ciphertext>` (base64url), so every ciphertext
//! names the key that sealed it and keys can rotate without downtime: new values are sealed
//! with the primary key, old ones stay readable while their key is in the ring. The key id is
//! the first 8 bytes of the key's SHA-256, in hex: it names a key without revealing it, and
//! needs no bookkeeping. Each value is bound to what it belongs to (the connection id) as
//! associated data, so a ciphertext copied onto another row does not open.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

const VERSION: &str = "v1";

/// Why a sealed value could not be opened. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the credentials were sealed with key {0}, which is not in the key ring")]
    UnknownKey(String),
    #[error("the stored credentials are damaged or belong to another record")]
    Damaged,
    #[error("an encryption key must be 32 bytes")]
    BadKey,
}

struct RingKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys that seal and open credentials; the first is the primary.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// The id of a 32-byte key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

impl KeyRing {
    /// A ring whose primary key is `primary`, able to open what `older` keys sealed.
    pub fn new(primary: &SecretSlice<u8>, older: &[SecretSlice<u8>]) -> Result<Self, CryptoError> {
        let keys = std::iter::once(primary)
            .chain(older)
            .map(|key| {
                let bytes = key.expose_secret();
                Ok(RingKey {
                    id: key_id(bytes),
                    cipher: Aes256Gcm::new_from_slice(bytes).map_err(|_| CryptoError::BadKey)?,
                })
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Ok(Self { keys })
    }

    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `plaintext` with the primary key, bound to `bound_to`.
    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; 12];
        // The thread's CSPRNG (ChaCha12, seeded and reseeded from the OS): fresh 96-bit nonces
        // without a `getrandom` system call per seal.
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: bound_to.as_bytes(),
        };
        // AES-GCM encryption of an in-memory buffer cannot fail for sizes under 64 GiB.
        let ciphertext = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        format!(
            "{VERSION}.{}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ciphertext)
        )
    }

    /// Opens a value [`seal`](Self::seal)ed with any key of the ring, bound to `bound_to`.
    pub fn open(&self, sealed: &str, bound_to: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(id), Some(nonce), Some(ciphertext), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::Damaged);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or(CryptoError::Damaged)?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| CryptoError::Damaged)?;
        key.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Damaged)
    }

    /// The key id a sealed value names, if it is well-formed.
    pub fn sealed_with(sealed: &str) -> Option<&str> {
        let mut parts = sealed.split('.');
        (parts.next() == Some(VERSION))
            .then(|| parts.next())
            .flatten()
    }
}

/// Where a key ring comes from: a file the operator's `taxbridge encryption rotate` rewrites,
/// or settings.
pub trait KeySource: Send + Sync + 'static {
    /// Reads the ring.
    fn load(&self) -> Result<KeyRing, String>;
    /// Whether the ring may have changed since the last [`load`](Self::load): cheap, checked
    /// before every seal.
    fn changed(&self) -> bool;
}

/// The key ring a running gateway uses: re-read when its source changed (before sealing) and
/// when a ciphertext names a key it lacks (before giving up), so a rotation made by another
/// process while this one runs loses nothing.
pub struct Keys {
    source: Option<Arc<dyn KeySource>>,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keys {
    /// A ring that never changes.
    pub fn fixed(ring: KeyRing) -> Self {
        Self {
            source: None,
            ring: RwLock::new(Arc::new(ring)),
        }
    }

    pub fn from_source(source: Arc<dyn KeySource>) -> Result<Self, String> {
        let ring = source.load()?;
        Ok(Self {
            source: Some(source),
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn reload(&self) {
        let Some(source) = &self.source else { return };
        match source.load() {
            Ok(ring) => *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring),
            Err(err) => tracing::warn!(error = %err, "could not re-read the encryption key ring"),
        }
    }

    /// Seals with the primary key of the newest ring.
    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> String {
        if self.source.as_ref().is_some_and(|s| s.changed()) {
            self.reload();
        }
        self.current().seal(plaintext, bound_to)
    }

    /// Opens with any key of the ring, re-reading it once for a key it lacks.
    pub fn open(&self, sealed: &str, bound_to: &str) -> Result<Vec<u8>, CryptoError> {
        match self.current().open(sealed, bound_to) {
            Err(CryptoError::UnknownKey(_)) if self.source.is_some() => {
                self.reload();
                self.current().open(sealed, bound_to)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretSlice<u8> {
        SecretSlice::from(vec![byte; 32])
    }

    #[test]
    fn sealed_values_open_only_for_their_record_and_hide_the_plaintext() {
        let ring = KeyRing::new(&key(1), &[]).expect("ring");
        let sealed = ring.seal(b"firm-specific-api-key-12345", "con_1");
        assert!(!sealed.contains("firm-specific"));
        assert_eq!(KeyRing::sealed_with(&sealed), Some(ring.primary_id()));
        assert_eq!(
            ring.open(&sealed, "con_1").expect("opens"),
            b"firm-specific-api-key-12345"
        );
        assert_eq!(ring.open(&sealed, "con_2"), Err(CryptoError::Damaged));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(ring.open(&tampered, "con_1"), Err(CryptoError::Damaged));
        assert_ne!(
            ring.seal(b"same", "con_1"),
            ring.seal(b"same", "con_1"),
            "fresh nonces"
        );
    }

    struct Swappable(std::sync::Mutex<(Vec<u8>, bool)>);

    impl KeySource for Swappable {
        fn load(&self) -> Result<KeyRing, String> {
            let mut state = self.0.lock().map_err(|e| e.to_string())?;
            state.1 = false;
            let primary = SecretSlice::from(state.0.clone());
            KeyRing::new(&primary, &[key(1)]).map_err(|e| e.to_string())
        }
        fn changed(&self) -> bool {
            self.0.lock().map(|s| s.1).unwrap_or(true)
        }
    }

    #[test]
    fn running_keys_follow_a_rotation_made_elsewhere() {
        let source = Arc::new(Swappable(std::sync::Mutex::new((vec![1; 32], false))));
        let keys = Keys::from_source(source.clone()).expect("keys");
        let before = keys.seal(b"secret", "con_1");
        // Another process rotates: a new primary, the old key kept.
        *source.0.lock().expect("lock") = (vec![3; 32], true);
        let after = keys.seal(b"secret", "con_1");
        assert_ne!(KeyRing::sealed_with(&before), KeyRing::sealed_with(&after));
        assert_eq!(keys.open(&before, "con_1").expect("old"), b"secret");
        assert_eq!(keys.open(&after, "con_1").expect("new"), b"secret");
        // A value sealed by the other process under a key this one has not seen yet opens too.
        let elsewhere = KeyRing::new(&key(4), &[])
            .expect("ring")
            .seal(b"x", "con_2");
        *source.0.lock().expect("lock") = (vec![4; 32], false);
        assert_eq!(keys.open(&elsewhere, "con_2").expect("re-read"), b"x");
    }

    #[test]
    fn a_rotated_ring_opens_old_values_and_seals_with_the_new_key() {
        let old = KeyRing::new(&key(1), &[]).expect("ring");
        let sealed = old.seal(b"secret", "con_1");
        let rotated = KeyRing::new(&key(2), &[key(1)]).expect("ring");
        assert_eq!(
            rotated.open(&sealed, "con_1").expect("old opens"),
            b"secret"
        );
        let resealed = rotated.seal(b"secret", "con_1");
        assert_eq!(KeyRing::sealed_with(&resealed), Some(rotated.primary_id()));
        assert_ne!(rotated.primary_id(), old.primary_id());
        let retired = KeyRing::new(&key(2), &[]).expect("ring");
        assert!(matches!(
            retired.open(&sealed, "con_1"),
            Err(CryptoError::UnknownKey(_))
        ));
        assert!(KeyRing::new(&SecretSlice::from(vec![0u8; 16]), &[]).is_err());
        assert!(!format!("{rotated:?}").contains("\\u{2}"));
    }
}
