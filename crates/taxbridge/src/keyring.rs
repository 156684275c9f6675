//! The credential key ring: where its keys live, and `taxbridge encryption rotate | retire |
//! status`.
//!
//! - **One box** (SQLite, no `encryption.key` setting): `<data_dir>/secrets/encryption.key`,
//!   one base64 key a line, the first the primary. A file with one line is a ring of one, so
//!   a data dir from before rotation existed reads as it is. `rotate` writes a new key in
//!   front (a new file renamed over the old, 0600), waits a second, and re-encrypts every
//!   stored credential; a running `serve` looks at the file at most every 100 ms before a
//!   seal, so within that second it seals with the new key, and it re-reads the file when it
//!   meets a key it lacks, so rotating while it serves loses nothing. `retire` then drops the keys no
//!   credential uses any more.
//! - **Many nodes** (PostgreSQL, or `encryption.key` set): `encryption.key` is the primary and
//!   `encryption.previous_keys` the older keys. To rotate: put the new key in `encryption.key`
//!   and the old one in `previous_keys` on every node, restart them, then run `rotate`, which
//!   re-encrypts every credential under the configured primary. A key leaves
//!   `previous_keys` once `status` shows no credential uses it.

use crate::{create_private_dir, settings::Settings};
use anyhow::Context;
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};
use taxbridge_domain::audit::{Action, Audit, AuditEvent};
use taxbridge_domain::{
    crypto::{key_id, KeyRing, KeySource, Keys},
    rotation::KeyRotation,
};
use taxbridge_store::{Backend, Store};

/// The ring file under the data dir.
pub fn ring_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join("secrets").join("encryption.key")
}

fn decode(text: &str, what: &str) -> anyhow::Result<SecretSlice<u8>> {
    STANDARD
        .decode(text.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .map(SecretSlice::from)
        .with_context(|| {
            format!(
                "{what} must be 32 bytes in base64 (e.g. the output of `openssl rand -base64 32`)"
            )
        })
}

/// Keys from settings: `encryption.key`, then `encryption.previous_keys`.
struct FromSettings {
    keys: Vec<SecretSlice<u8>>,
}

impl KeySource for FromSettings {
    fn load(&self) -> Result<KeyRing, String> {
        KeyRing::new(&self.keys[0], &self.keys[1..]).map_err(|e| e.to_string())
    }
    fn changed(&self) -> bool {
        false
    }
}

/// How often a running `serve` looks at the ring file's modification time and size. Looking
/// before every seal cost a `statx` per seal, a fifth of sealing's time; `rotate` waits
/// [`RING_SETTLE`] after writing the file, so every server has picked it up before it
/// re-encrypts.
const RING_CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long `rotate` waits between writing the new ring and re-encrypting: several check
/// intervals, and longer than a seal takes to reach the database.
const RING_SETTLE: Duration = Duration::from_secs(1);

/// Keys from the ring file, re-read when its modification time or size changes.
struct FromFile {
    path: PathBuf,
    seen: Mutex<Option<(SystemTime, u64)>>,
    /// When the file was last looked at.
    checked: Mutex<Option<Instant>>,
}

impl FromFile {
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }
}

impl KeySource for FromFile {
    fn load(&self) -> Result<KeyRing, String> {
        let stamp = self.stamp();
        let keys = read_ring_file(&self.path).map_err(|e| format!("{e:#}"))?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamp;
        }
        KeyRing::new(&keys[0], &keys[1..]).map_err(|e| e.to_string())
    }
    fn changed(&self) -> bool {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.is_some_and(|at| at.elapsed() < RING_CHECK_EVERY) {
                return false;
            }
            *checked = Some(Instant::now());
        }
        let seen = self.seen.lock().map(|s| *s).unwrap_or(None);
        self.stamp() != seen
    }
}

/// The ring file's keys, creating the file with one fresh key when there is none.
pub fn read_ring_file(path: &Path) -> anyhow::Result<Vec<SecretSlice<u8>>> {
    if !path.exists() {
        let dir = path
            .parent()
            .context("the key ring file has a parent folder")?;
        create_private_dir(dir)?;
        write_ring_file(path, &[fresh_key()])?;
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read {}", path.display()))?;
    let keys = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| decode(line, &format!("line {} of {}", n + 1, path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!keys.is_empty(), "{} holds no key", path.display());
    Ok(keys)
}

/// Writes the ring file whole: a new file beside it, renamed over it, so a reader sees the
/// old ring or the new one, never half of one. Private by the process's creation mask.
fn write_ring_file(path: &Path, keys: &[SecretSlice<u8>]) -> anyhow::Result<()> {
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", STANDARD.encode(k.expose_secret())))
        .collect();
    let temporary = path.with_extension("key.new");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temporary)
            .with_context(|| format!("Failed to write {}", temporary.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
        .with_context(|| format!("Failed to replace {}", path.display()))?;
    Ok(())
}

fn fresh_key() -> SecretSlice<u8> {
    let mut bytes = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretSlice::from(bytes)
}

enum Source {
    File(PathBuf),
    Settings(Vec<SecretSlice<u8>>),
}

fn source(settings: &Settings, backend: Backend) -> anyhow::Result<Source> {
    match &settings.encryption.key {
        Some(key) => {
            let mut keys = vec![decode(key.expose_secret(), "encryption.key")?];
            for (n, previous) in settings.encryption.previous_keys.iter().enumerate() {
                keys.push(decode(
                    previous.expose_secret(),
                    &format!("encryption.previous_keys[{n}]"),
                )?);
            }
            Ok(Source::Settings(keys))
        }
        None if backend == Backend::Postgres => anyhow::bail!(
            "encryption.key is not set. On PostgreSQL every gateway node must share it: set encryption.key in the config file or TAXBRIDGE_ENCRYPTION__KEY in the environment (32 random bytes in base64, e.g. `openssl rand -base64 32`)"
        ),
        None => Ok(Source::File(ring_file(settings))),
    }
}

/// The keys `serve` runs with.
pub fn keys(settings: &Settings, backend: Backend) -> anyhow::Result<Keys> {
    let source: Arc<dyn KeySource> = match source(settings, backend)? {
        Source::File(path) => {
            read_ring_file(&path)?;
            Arc::new(FromFile {
                path,
                seen: Mutex::new(None),
                checked: Mutex::new(None),
            })
        }
        Source::Settings(keys) => Arc::new(FromSettings { keys }),
    };
    Keys::from_source(source).map_err(|e| anyhow::anyhow!("the encryption key ring: {e}"))
}

/// Re-encrypts every stored credential under `ring`'s primary key (see
/// [`KeyRotation::reseal_all`]).
async fn reencrypt(store: Arc<Store>, ring: &KeyRing) -> anyhow::Result<u64> {
    Ok(KeyRotation::new(store).reseal_all(ring).await?)
}

/// `taxbridge encryption rotate`.
pub async fn rotate(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.database_url();
    let backend = Backend::of_url(&url)?;
    let store = Arc::new(taxbridge_store::connect(&url).await?);
    let ring = match source(settings, backend)? {
        Source::File(path) => {
            let mut keys = read_ring_file(&path)?;
            keys.insert(0, fresh_key());
            write_ring_file(&path, &keys)?;
            eprintln!(
                "Added key {} as the primary key in {}.",
                key_id(keys[0].expose_secret()),
                path.display()
            );
            // A running `serve` looks at the file every RING_CHECK_EVERY: once this has passed,
            // it seals with the new key, and what it sealed before is committed.
            tokio::time::sleep(RING_SETTLE).await;
            KeyRing::new(&keys[0], &keys[1..])?
        }
        Source::Settings(keys) => KeyRing::new(&keys[0], &keys[1..])?,
    };
    let done = reencrypt(store.clone(), &ring).await?;
    let event = AuditEvent::by_operator(Action::EncryptionKeyRotated)
        .target("encryption_key", ring.primary_id())
        .with("resealed", done);
    Audit::new(store).record(&[event]).await?;
    println!(
        "Re-encrypted {done} stored credentials under key {}; every credential now uses it.",
        ring.primary_id()
    );
    Ok(())
}

/// `taxbridge encryption retire`: drops from the ring file every key but the primary that no
/// stored credential uses any more (run `rotate` first). Many nodes: remove the key from
/// `encryption.previous_keys` instead.
pub async fn retire(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.database_url();
    let backend = Backend::of_url(&url)?;
    let Source::File(path) = source(settings, backend)? else {
        anyhow::bail!(
            "the keys come from settings: remove a retired key from encryption.previous_keys on every node once `taxbridge encryption status` shows no credential uses it"
        );
    };
    let store = Arc::new(taxbridge_store::connect(&url).await?);
    let in_use = key_ids_in_use(store.clone()).await?;
    let keys = read_ring_file(&path)?;
    let (kept, retired): (Vec<_>, Vec<_>) = keys
        .into_iter()
        .enumerate()
        .partition(|(n, key)| *n == 0 || in_use.contains_key(&key_id(key.expose_secret())));
    let kept: Vec<SecretSlice<u8>> = kept.into_iter().map(|(_, key)| key).collect();
    if !retired.is_empty() {
        write_ring_file(&path, &kept)?;
    }
    let events: Vec<AuditEvent> = retired
        .iter()
        .map(|(_, key)| {
            AuditEvent::by_operator(Action::EncryptionKeyRetired)
                .target("encryption_key", key_id(key.expose_secret()))
        })
        .collect();
    Audit::new(store).record(&events).await?;
    for (_, key) in &retired {
        println!("retired key {}", key_id(key.expose_secret()));
    }
    println!(
        "{} keys remain; the primary is {}",
        kept.len(),
        key_id(kept[0].expose_secret())
    );
    Ok(())
}

/// How many stored credentials each key id seals.
async fn key_ids_in_use(store: Arc<Store>) -> anyhow::Result<BTreeMap<String, u64>> {
    Ok(KeyRotation::new(store).key_ids_in_use().await?)
}

/// `taxbridge encryption status`: the primary key id, and how many credentials each key seals.
pub async fn status(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.database_url();
    let backend = Backend::of_url(&url)?;
    let store = Arc::new(taxbridge_store::connect(&url).await?);
    let ring = match source(settings, backend)? {
        Source::File(path) => {
            let keys = read_ring_file(&path)?;
            KeyRing::new(&keys[0], &keys[1..])?
        }
        Source::Settings(keys) => KeyRing::new(&keys[0], &keys[1..])?,
    };
    let counts = key_ids_in_use(store.clone()).await?;
    println!("primary key: {}", ring.primary_id());
    for (id, count) in counts {
        println!("{id}: {count} credentials");
    }
    Ok(())
}
