//! The one typed settings tree, loaded once in `main`: built-in defaults, then the TOML file
//! given with `--config`, then `TAXBRIDGE_*` environment variables (nested keys with `__`,
//! e.g. `TAXBRIDGE_AUTH__JWT_SECRET`), then the command line's `--data-dir`/`--database-url`.
//! Nothing else in Taxbridge reads the environment. Every setting is documented, with its
//! default and env var, in `config/example.toml`.

use anyhow::Context;
use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
pub use taxbridge_api::RateLimitSettings;

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// Address `taxbridge serve` listens on.
    pub listen: String,
    /// Where the SQLite database and generated secrets live by default.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; unset means `sqlite://<data_dir>/taxbridge.db`.
    /// It may hold a password: printed, it shows `***` instead.
    pub database_url: Option<SecretUrl>,
    /// Where users reach this gateway, e.g. `https://taxbridge.example.com`; deep links start
    /// with it. Unset means `http://<listen>`.
    pub public_base_url: Option<String>,
    /// A TOML file of providers that adds to (or overrides by key) the built-in catalog.
    pub providers_file: Option<PathBuf>,
    /// `text` (readable) or `json` (one object a line, for log shippers).
    pub log_format: String,
    /// Which log lines to write, as a tracing filter: `info`, `debug`, `info,sqlx=warn`, ….
    pub log_level: String,
    pub auth: AuthSettings,
    pub encryption: EncryptionSettings,
    pub limits: LimitSettings,
    pub rate_limits: RateLimitSettings,
    pub egress: EgressSettings,
    pub usage: UsageSettings,
    pub audit: AuditSettings,
    pub blobs: BlobSettings,
    pub worker: WorkerSettings,
    pub mail: MailSettings,
    pub server: ServerSettings,
}

/// How `taxbridge serve` stops, and whether it may run alone on PostgreSQL.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerSettings {
    /// After SIGTERM (or Ctrl-C), how long `/readyz` answers 503 while requests are still
    /// served, so a balancer checking every second or two stops sending requests before the
    /// listener closes. Then requests in flight finish and the worker hands its tasks back. A
    /// second signal ends the wait at once.
    pub drain_seconds: u64,
    /// On PostgreSQL, `serve` and `worker` refuse local blobs and `serve` an unset
    /// `public_base_url`, because a fleet's nodes must share both. `true` says this node runs
    /// alone, and lifts both refusals.
    pub single_node: bool,
    /// CIDR ranges of the balancers in front of this node. A request from one of them is
    /// counted (failed logins, sign-in codes) by the client address it names in
    /// `X-Forwarded-For`; from anywhere else the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            drain_seconds: 5,
            single_node: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// How sign-in codes reach people.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct MailSettings {
    /// `smtps://user:pass@mail.example.com`, `smtp://host:587?tls=required` or
    /// `smtp://localhost:1025`. Unset: each code is written to the log instead (one line with
    /// the email and the code), so a newcomer can sign in without a mail server.
    pub smtp_url: Option<SecretUrl>,
    /// The sender of sign-in mail.
    pub from: String,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Taxbridge <taxbridge@localhost>".into(),
        }
    }
}

/// Where artifacts' bytes are kept.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct BlobSettings {
    /// `s3://bucket/prefix` for any S3-compatible store; unset means `<data_dir>/blobs`.
    pub url: Option<String>,
    /// The S3 endpoint, e.g. `http://127.0.0.1:8333` (unset: AWS).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    #[serde(skip_serializing)]
    pub secret_access_key: Option<SecretString>,
}

/// The background worker: downloads of push-import artifacts, uploads over tus.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Tasks run at once by each process; 0 runs no worker inside `serve` (run
    /// `taxbridge worker` beside it instead).
    pub concurrency: usize,
    /// The largest file a download or an upload may bring.
    pub max_file_bytes: u64,
    /// How long a task's claim lasts unrenewed (at most 30): how soon another worker takes over
    /// the tasks of one that died.
    pub lease_seconds: u64,
    /// How long a worker's liveness lasts unrenewed (it renews every second): how soon, after a
    /// node dies, another worker hands its tasks back, long before their leases end. At least 2.
    pub liveness_seconds: u64,
    /// Bytes sent per tus `PATCH` when uploading a file to a provider (at least 64 KiB; each is
    /// streamed from storage, so a large one costs no memory).
    pub tus_chunk_bytes: usize,
    /// How many times a download or an upload is tried before its artifact or upload fails.
    pub attempts: u32,
    /// The wait before the first retry, in milliseconds; each later one waits twice as long.
    pub first_retry_millis: u64,
    /// How often an idle worker looks for due tasks another node queued, in milliseconds (a
    /// task queued by this process wakes it at once).
    pub poll_interval_millis: u64,
    /// How often a running tus upload writes its progress (`bytesSent`), in milliseconds.
    pub progress_interval_millis: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_file_bytes: 1024 * 1024 * 1024,
            lease_seconds: 30,
            liveness_seconds: 5,
            tus_chunk_bytes: 64 * 1024 * 1024,
            attempts: 6,
            first_retry_millis: 1000,
            poll_interval_millis: 500,
            progress_interval_millis: 500,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct EgressSettings {
    /// Ranges the gateway may call although they are loopback or private (local demos, tests).
    pub allow_cidrs: Vec<String>,
    pub connect_timeout_seconds: u64,
    /// The whole outbound call, from connecting to the last byte.
    pub timeout_seconds: u64,
    /// Outbound answers longer than this are refused.
    pub max_response_bytes: usize,
    /// The bytes all the pulls of one GraphQL request may read from platforms together.
    pub pull_budget_bytes: u64,
    /// A download or tus upload slower than this on average over any
    /// `min_rate_window_seconds` is given up (besides the 30 s idle timeout).
    pub min_rate_bytes_per_second: u64,
    pub min_rate_window_seconds: u64,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            connect_timeout_seconds: 5,
            timeout_seconds: 15,
            max_response_bytes: 4 * 1024 * 1024,
            pull_budget_bytes: taxbridge_domain::pulls::DEFAULT_PULL_BUDGET_BYTES,
            min_rate_bytes_per_second: 16 * 1024,
            min_rate_window_seconds: 60,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthSettings {
    /// The HS256 signing secret for access tokens, at least 32 characters. Unset: generated
    /// into `<data_dir>/secrets/` on SQLite; required on PostgreSQL.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    pub token_lifetime_seconds: i64,
    /// How long a node trusts what it read about an API key or a workspace member: the longest
    /// a revocation or a member's removal made on another node (or with the CLI) takes to take
    /// effect here.
    pub revocation_check_seconds: u64,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EncryptionSettings {
    /// The key that encrypts stored credentials: 32 bytes, base64. Unset: generated into
    /// `<data_dir>/secrets/` on SQLite; required on PostgreSQL.
    #[serde(skip_serializing)]
    pub key: Option<SecretString>,
    /// Older keys, still able to open what they sealed until `taxbridge encryption rotate`
    /// has re-encrypted everything under `key`.
    #[serde(skip_serializing)]
    pub previous_keys: Vec<SecretString>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    /// Query documents longer than this are refused before parsing.
    pub max_query_bytes: usize,
    /// Query documents with more tokens than this are refused before parsing.
    pub max_query_tokens: usize,
    /// Answers longer than this are refused with QUERY_TOO_COMPLEX.
    pub max_response_bytes: usize,
    /// A new connection must send its first request's headers within this.
    pub header_read_timeout_seconds: u64,
    /// A kept-alive connection idle this long is closed.
    pub idle_timeout_seconds: u64,
    /// A request body must arrive within this.
    pub body_read_timeout_seconds: u64,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// The audit log (README, "Audit log").
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct AuditSettings {
    /// Events older than this many days are removed (every ten minutes, by each server);
    /// each chain keeps the hash of the last removed event, so what is left still verifies.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: 365,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct UsageSettings {
    pub flush_interval_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./taxbridge-data"),
            database_url: None,
            public_base_url: None,
            providers_file: None,
            log_format: "text".into(),
            log_level: "info,sqlx=warn".into(),
            auth: AuthSettings::default(),
            encryption: EncryptionSettings::default(),
            limits: LimitSettings::default(),
            rate_limits: RateLimitSettings::default(),
            egress: EgressSettings::default(),
            usage: UsageSettings::default(),
            audit: AuditSettings::default(),
            blobs: BlobSettings::default(),
            worker: WorkerSettings::default(),
            mail: MailSettings::default(),
            server: ServerSettings::default(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_lifetime_seconds: 3600,
            revocation_check_seconds: 2,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_query_depth: 12,
            max_query_complexity: 20_000,
            max_query_bytes: 64 * 1024,
            max_query_tokens: 4_000,
            max_response_bytes: 16 * 1024 * 1024,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 30,
            body_read_timeout_seconds: 10,
            max_connections: 4_096,
        }
    }
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            flush_interval_seconds: 5,
        }
    }
}

/// A URL that may carry a password (`postgres://user:pass@…`, `smtps://user:pass@…`): its
/// `Debug` and `Display` show the password as `***`, so printing the settings (or an error
/// naming the URL) leaks nothing; [`SecretUrl::expose`] is the one way to the whole text.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The whole URL, password and all: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", taxbridge_store::redact_url(&self.0))
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&taxbridge_store::redact_url(&self.0))
    }
}

/// What the command line may override.
#[derive(Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Settings {
    pub fn load(config_file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        Self::load_from(
            config_file,
            Env::prefixed("TAXBRIDGE_").split("__").ignore(&["CONFIG"]),
            overrides,
        )
    }

    fn load_from(
        config_file: Option<&Path>,
        env: Env,
        overrides: Overrides,
    ) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = config_file {
            anyhow::ensure!(
                file.exists(),
                "the config file {} does not exist",
                file.display()
            );
            figment = figment.merge(Toml::file(file));
        }
        let settings: Settings = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .context(
                "Failed to read the settings (defaults < config file < TAXBRIDGE_* environment)",
            )?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.auth.token_lifetime_seconds >= 60,
            "auth.token_lifetime_seconds must be at least 60 (got {})",
            self.auth.token_lifetime_seconds
        );
        anyhow::ensure!(
            self.auth.revocation_check_seconds <= 5,
            "auth.revocation_check_seconds must be at most 5, so a revoked key stops within 5 s everywhere"
        );
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "text" | "json"),
            "log_format must be `text` or `json` (got `{}`)",
            self.log_format
        );
        Ok(())
    }

    pub fn public_base_url(&self) -> String {
        self.public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The database URL to connect with, password and all (print it through
    /// `taxbridge_store::redact_url`).
    pub fn database_url(&self) -> String {
        self.database_url
            .as_ref()
            .map(|url| url.expose().to_owned())
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("taxbridge.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("TAXBRIDGE_TEST_NOTHING_SET_")
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml");
        let settings = Settings::load_from(Some(&example), no_env(), Overrides::default())
            .expect("example parses");
        let defaults = Settings::default();
        assert_eq!(settings.listen, defaults.listen);
        assert_eq!(
            settings.auth.token_lifetime_seconds,
            defaults.auth.token_lifetime_seconds
        );
        assert_eq!(
            settings.limits.max_body_bytes,
            defaults.limits.max_body_bytes
        );
        assert_eq!(
            settings.usage.flush_interval_seconds,
            defaults.usage.flush_interval_seconds
        );
        assert_eq!(settings.worker.concurrency, defaults.worker.concurrency);
        assert_eq!(
            settings.worker.max_file_bytes,
            defaults.worker.max_file_bytes
        );
        assert_eq!(settings.worker.lease_seconds, defaults.worker.lease_seconds);
        assert_eq!(
            settings.worker.liveness_seconds,
            defaults.worker.liveness_seconds
        );
        assert_eq!(settings.worker.attempts, defaults.worker.attempts);
        assert_eq!(
            settings.worker.first_retry_millis,
            defaults.worker.first_retry_millis
        );
        assert_eq!(
            settings.worker.poll_interval_millis,
            defaults.worker.poll_interval_millis
        );
        assert_eq!(
            settings.worker.progress_interval_millis,
            defaults.worker.progress_interval_millis
        );
        assert_eq!(settings.blobs.url, defaults.blobs.url);
        assert_eq!(settings.server.drain_seconds, defaults.server.drain_seconds);
        assert_eq!(settings.server.single_node, defaults.server.single_node);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment's own error type
    fn the_environment_beats_the_file_and_the_command_line_beats_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("taxbridge.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\ndata_dir = \"/from/file\"\n[auth]\ntoken_lifetime_seconds = 600\n").expect("write");
        figment::Jail::expect_with(|jail| {
            jail.set_env("TAXBRIDGE_AUTH__TOKEN_LIFETIME_SECONDS", "900");
            jail.set_env("TAXBRIDGE_DATA_DIR", "/from/env");
            let settings = Settings::load(
                Some(&file),
                Overrides {
                    database_url: Some("postgres://tb@db/tb".into()),
                    ..Overrides::default()
                },
            )
            .expect("loads");
            assert_eq!(settings.listen, "0.0.0.0:9000");
            assert_eq!(settings.auth.token_lifetime_seconds, 900);
            assert_eq!(settings.data_dir, PathBuf::from("/from/env"));
            assert_eq!(settings.database_url(), "postgres://tb@db/tb");
            Ok(())
        });
    }

    #[test]
    fn urls_with_passwords_print_without_them() {
        let mut settings = Settings {
            database_url: Some(SecretUrl::new("postgres://tb:hunter2@db:5432/tb")),
            ..Settings::default()
        };
        settings.mail.smtp_url = Some(SecretUrl::new("smtps://mailer:s3cret@mail.example.com"));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("postgres://tb:***@db:5432/tb"),
            "{printed}"
        );
        assert_eq!(settings.database_url(), "postgres://tb:hunter2@db:5432/tb");
        assert_eq!(
            settings.mail.smtp_url.as_ref().map(SecretUrl::expose),
            Some("smtps://mailer:s3cret@mail.example.com")
        );
    }

    #[test]
    fn the_default_database_is_sqlite_in_the_data_dir() {
        let settings = Settings::default();
        assert_eq!(
            settings.database_url(),
            "sqlite://./taxbridge-data/taxbridge.db"
        );
    }

    #[test]
    fn nonsense_settings_are_refused_with_the_setting_named() {
        let err = Settings::load_from(None, no_env(), Overrides::default())
            .map(|_| ())
            .and_then(|_| {
                let mut s = Settings::default();
                s.auth.token_lifetime_seconds = 5;
                s.check()
            })
            .expect_err("too short");
        assert!(
            err.to_string().contains("auth.token_lifetime_seconds"),
            "{err}"
        );
    }
}
