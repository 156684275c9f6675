//! The access-token signing secret. A configured one wins; otherwise, on SQLite, it is
//! generated once into `<data_dir>/secrets/` (mode 0600) and read back on every start. On
//! PostgreSQL several nodes must share it, so a missing one stops `serve` with the setting to
//! set; `taxbridge worker` signs and checks no token, so it starts without one. (The
//! credential encryption keys are a ring of their own: [`crate::keyring`].)

use crate::{fleet::Process, settings::Settings};
use anyhow::Context;
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use std::path::Path;
use taxbridge_store::Backend;

pub struct Secrets {
    pub jwt_signing: SecretSlice<u8>,
}

pub fn load(settings: &Settings, backend: Backend, process: Process) -> anyhow::Result<Secrets> {
    let jwt_signing = match &settings.auth.jwt_secret {
        Some(secret) => {
            let bytes = secret.expose_secret().as_bytes().to_vec();
            anyhow::ensure!(
                bytes.len() >= 32,
                "auth.jwt_secret must be at least 32 characters long"
            );
            SecretSlice::from(bytes)
        }
        // The worker's services hold a token issuer they never use: a random secret of this
        // process stands in, so no token it could sign is accepted anywhere else.
        None if process == Process::Worker && backend == Backend::Postgres => {
            let mut bytes = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            SecretSlice::from(bytes)
        }
        None => generated(
            settings,
            backend,
            "jwt-signing.key",
            "auth.jwt_secret",
            "TAXBRIDGE_AUTH__JWT_SECRET",
        )?,
    };
    Ok(Secrets { jwt_signing })
}

fn generated(
    settings: &Settings,
    backend: Backend,
    file: &str,
    setting: &str,
    env: &str,
) -> anyhow::Result<SecretSlice<u8>> {
    if backend == Backend::Postgres {
        anyhow::bail!(
            "{setting} is not set. On PostgreSQL every gateway node must share it: set {setting} in the config file or {env} in the environment (32 random bytes in base64, e.g. `openssl rand -base64 32`)"
        );
    }
    let path = settings.data_dir.join("secrets").join(file);
    read_or_create(&path).with_context(|| format!("Failed to load or create {}", path.display()))
}

fn read_or_create(path: &Path) -> anyhow::Result<SecretSlice<u8>> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        let bytes = STANDARD
            .decode(text.trim())
            .context("the file is not base64")?;
        anyhow::ensure!(bytes.len() == 32, "the file must hold 32 bytes in base64");
        return Ok(SecretSlice::from(bytes));
    }
    let dir = path.parent().context("a secret file has a parent folder")?;
    crate::create_private_dir(dir)?;
    let mut bytes = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    write_private(path, &STANDARD.encode(&bytes))?;
    Ok(SecretSlice::from(bytes))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: two processes starting at once must not overwrite each other's secret.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => Ok(file.write_all(text.as_bytes())?),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(std::fs::write(path, text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_generates_secrets_once_and_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        let first = load(&settings, Backend::Sqlite, Process::Serve).expect("generated");
        let second = load(&settings, Backend::Sqlite, Process::Serve).expect("read back");
        assert_eq!(
            first.jwt_signing.expose_secret(),
            second.jwt_signing.expose_secret()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets/jwt-signing.key"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn postgres_without_configured_secrets_names_the_setting_to_set() {
        let settings = Settings::default();
        let err = load(&settings, Backend::Postgres, Process::Serve)
            .map(|_| ())
            .expect_err("must refuse");
        let text = err.to_string();
        assert!(
            text.contains("auth.jwt_secret") && text.contains("TAXBRIDGE_AUTH__JWT_SECRET"),
            "{text}"
        );
    }

    #[test]
    fn a_worker_on_postgres_starts_without_the_signing_secret_it_never_uses() {
        let settings = Settings::default();
        let first = load(&settings, Backend::Postgres, Process::Worker).expect("worker");
        let second = load(&settings, Backend::Postgres, Process::Worker).expect("worker");
        // A secret of the process alone: nothing signed with it verifies on another node.
        assert_ne!(
            first.jwt_signing.expose_secret(),
            second.jwt_signing.expose_secret()
        );
        assert!(!settings.data_dir.join("secrets").exists());
    }

    #[test]
    fn a_short_configured_signing_secret_is_refused() {
        let mut settings = Settings::default();
        settings.auth.jwt_secret = Some("short".to_owned().into());
        assert!(load(&settings, Backend::Postgres, Process::Serve).is_err());
        assert!(load(&settings, Backend::Postgres, Process::Worker).is_err());
    }
}
