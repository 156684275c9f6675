//! The composition root: [`App::build`] turns [`Settings`] into a running Taxbridge's parts.
//! It opens the store, loads the secrets and the key ring, wires the domain services over their
//! ports, and knows the task handlers and the HTTP routes. `taxbridge serve`, `taxbridge worker`
//! and the API test suite all build through it: a new service, task kind or route is added here,
//! once, and the tests run what production runs.
//!
//! What stays outside is what belongs to a process rather than to the app: logging, the
//! open-file limit, the staging-file sweep and the signals (in [`crate::serve`]).

use crate::{fleet::Process, secrets, settings::Settings};
use anyhow::Context;
use std::{sync::Arc, time::Duration};
use taxbridge_api::{ApiSettings, Application, ConnectionLimits, QueryLimits, Services};
use taxbridge_blobs::Blobs;
use taxbridge_domain::{
    accounts::Account,
    connections::Connections,
    health::Health,
    identity::{Identity, IdentitySettings},
    imports::Imports,
    limits::SharedLimits,
    providers::Catalog,
    sign_in::{Mailer, SignIn},
    uploads::Uploads,
    usage::UsageRecorder,
    workspaces::Workspaces,
};
use taxbridge_outbound::{policy::Policy, tus::TusClient, Egress, EgressSettings, PartnerProtocol};
use taxbridge_store::{Backend, Store};
use taxbridge_worker::{
    download::{DownloadHandler, DownloadSettings},
    upload::{UploadHandler, UploadSettings},
    Worker, WorkerMetrics, WorkerSettings,
};

/// One Taxbridge: its store and its services, ready to serve the API or run the worker.
pub struct App {
    /// The one storage handle (tests read rows through it; features go through `services`).
    pub store: Arc<Store>,
    pub services: Arc<Services>,
    /// `sqlite://…` or `postgres://…`, as opened (print it with `taxbridge_store::redact_url`).
    pub database_url: String,
    egress: Egress,
    api: ApiSettings,
    download: DownloadSettings,
    upload: UploadSettings,
    worker: WorkerSettings,
}

impl App {
    /// Builds the app the settings describe; sign-in codes go out by `mail.smtp_url` (or to the
    /// log without one).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let mailer: Arc<dyn Mailer> = match &settings.mail.smtp_url {
            Some(url) => Arc::new(
                taxbridge_outbound::mail::SmtpMailer::new(url.expose(), &settings.mail.from)
                    .map_err(anyhow::Error::msg)?,
            ),
            None => Arc::new(taxbridge_domain::sign_in::LogMailer),
        };
        Self::build_with_mailer(settings, mailer).await
    }

    /// The app `taxbridge worker` runs: as [`App::build`], but needing only what the worker
    /// uses (no token signing secret on PostgreSQL; sign-in mail is never sent).
    pub async fn build_worker(settings: &Settings) -> anyhow::Result<Self> {
        let mailer = Arc::new(taxbridge_domain::sign_in::LogMailer);
        Self::assemble(settings, mailer, Process::Worker).await
    }

    /// [`App::build`] with another way of sending sign-in codes (the API tests keep them in
    /// memory; the SMTP path is tested against a real SMTP receiver).
    pub async fn build_with_mailer(
        settings: &Settings,
        mailer: Arc<dyn Mailer>,
    ) -> anyhow::Result<Self> {
        Self::assemble(settings, mailer, Process::Serve).await
    }

    async fn assemble(
        settings: &Settings,
        mailer: Arc<dyn Mailer>,
        process: Process,
    ) -> anyhow::Result<Self> {
        let database_url = settings.database_url();
        let backend = Backend::of_url(&database_url)?;
        if backend == Backend::Sqlite {
            crate::create_private_dir(&settings.data_dir).with_context(|| {
                format!(
                    "Failed to create the data directory {}",
                    settings.data_dir.display()
                )
            })?;
        }
        let secrets = secrets::load(settings, backend, process)?;
        let catalog = Arc::new(load_catalog(settings)?);
        let keys = Arc::new(crate::keyring::keys(settings, backend)?);
        let blobs = blobs(settings)?;
        let store = Arc::new(taxbridge_store::connect(&database_url).await?);
        let revocation = Duration::from_secs(settings.auth.revocation_check_seconds);
        let identity = Arc::new(Identity::new(
            store.clone(),
            &secrets.jwt_signing,
            IdentitySettings {
                token_lifetime_seconds: settings.auth.token_lifetime_seconds,
                grant_cache_ttl: revocation,
            },
        ));
        let egress = egress(settings)?;
        let workspaces = Arc::new(Workspaces::trusting_reach_for(store.clone(), revocation));
        let connections = Arc::new(Connections::new(
            store.clone(),
            workspaces.clone(),
            catalog,
            keys,
            Arc::new(PartnerProtocol::new(egress.clone())),
        ));
        let imports = Arc::new(Imports::new(
            store.clone(),
            connections.clone(),
            Arc::new(blobs.clone()),
        ));
        let services = Arc::new(Services {
            sign_in: Arc::new(SignIn::new(
                store.clone(),
                mailer,
                &sign_in_pepper(&secrets),
            )),
            health: Arc::new(Health::new(store.clone(), Arc::new(blobs.clone()))),
            audit: Arc::new(taxbridge_domain::audit::Audit::new(store.clone())),
            audit_retention_days: settings.audit.retention_days.max(1),
            uploads: Arc::new(Uploads::new(
                store.clone(),
                imports.clone(),
                connections.clone(),
            )),
            imports,
            connections,
            workspaces,
            identity,
            usage: Arc::new(UsageRecorder::new(store.clone())),
            blobs,
            max_upload_bytes: settings.worker.max_file_bytes,
            pull_budget_bytes: settings.egress.pull_budget_bytes.max(1024),
            worker_metrics: prometheus::Registry::new_custom(Some("taxbridge".into()), None)?,
            public_base_url: settings.public_base_url(),
            // A fleet shares one database, so it counts its limits there; one SQLite node
            // counts in memory alone.
            shared_limits: match backend {
                Backend::Postgres => SharedLimits::over(store.clone()),
                Backend::Sqlite => SharedLimits::none(),
            },
        });
        let worker = &settings.worker;
        let first_retry = Duration::from_millis(worker.first_retry_millis.max(1));
        Ok(Self {
            store,
            services,
            database_url,
            egress,
            api: api_settings(settings)?,
            download: DownloadSettings {
                max_bytes: worker.max_file_bytes,
                attempts: worker.attempts.max(1),
                first_retry,
            },
            upload: UploadSettings {
                chunk_bytes: worker.tus_chunk_bytes.max(64 * 1024),
                attempts: worker.attempts.max(1),
                first_retry,
                progress_every: Duration::from_millis(worker.progress_interval_millis.max(1)),
            },
            worker: WorkerSettings {
                concurrency: worker.concurrency.max(1),
                poll_interval: Duration::from_millis(worker.poll_interval_millis.max(1)),
                lease: Duration::from_secs(worker.lease_seconds.clamp(1, 30)),
                liveness: Duration::from_secs(worker.liveness_seconds.max(2)),
            },
        })
    }

    /// On an empty database, the owner account and its API key (to print once); `None` when
    /// the database has accounts already.
    pub async fn bootstrap_owner(
        &self,
    ) -> anyhow::Result<Option<(Account, secrecy::SecretString)>> {
        self.services
            .identity
            .bootstrap_owner()
            .await
            .context("Failed to create the owner account")
    }

    /// The worker over this app's services, running every task kind, `concurrency` at once
    /// (`worker.concurrency` when `None`).
    pub fn worker(&self, concurrency: Option<usize>) -> Worker {
        let services = &self.services;
        let download = DownloadHandler::new(
            services.imports.clone(),
            services.connections.clone(),
            self.egress.clone(),
            self.download.clone(),
            WorkerMetrics::new(&services.worker_metrics),
        );
        let upload = UploadHandler::new(
            services.uploads.clone(),
            services.blobs.clone(),
            TusClient::new(self.egress.clone()),
            self.upload.clone(),
        );
        let mut settings = self.worker.clone();
        if let Some(concurrency) = concurrency {
            settings.concurrency = concurrency.max(1);
        }
        Worker::new(
            self.store.clone(),
            vec![Arc::new(download), Arc::new(upload)],
            settings,
            services.imports.tasks_added(),
        )
    }

    /// The HTTP server (the GraphQL endpoint, the byte routes and the web pages), bound to
    /// `listen` and not yet serving.
    pub async fn api(&self) -> anyhow::Result<Application> {
        Application::build(
            self.api.clone(),
            self.services.clone(),
            taxbridge_web::routes(),
        )
        .await
    }
}

/// Codes are hashed with a pepper derived from the token signing secret: kept out of the
/// database, the same on every node.
fn sign_in_pepper(secrets: &secrets::Secrets) -> [u8; 32] {
    use secrecy::ExposeSecret;
    use sha2::Digest;
    sha2::Sha256::new()
        .chain_update(b"taxbridge sign-in codes\0")
        .chain_update(secrets.jwt_signing.expose_secret())
        .finalize()
        .into()
}

fn api_settings(settings: &Settings) -> anyhow::Result<ApiSettings> {
    let limits = &settings.limits;
    let trusted_proxies = Policy::parse_allow_list(&settings.server.trusted_proxies)
        .map_err(|why| anyhow::anyhow!("server.trusted_proxies: {why}"))?;
    Ok(ApiSettings {
        listen: settings.listen.clone(),
        max_body_bytes: limits.max_body_bytes,
        query_limits: QueryLimits {
            max_depth: limits.max_query_depth,
            max_complexity: limits.max_query_complexity,
            max_document_bytes: limits.max_query_bytes,
            max_document_tokens: limits.max_query_tokens,
            max_response_bytes: limits.max_response_bytes,
        },
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(limits.idle_timeout_seconds.max(1)),
            body_read_timeout: Duration::from_secs(limits.body_read_timeout_seconds.max(1)),
            max_connections: limits.max_connections.max(1),
            trusted_proxies: trusted_proxies.into(),
        },
        rate_limits: settings.rate_limits,
        usage_flush_interval: Duration::from_secs(settings.usage.flush_interval_seconds.max(1)),
    })
}

/// The blob store the settings name, or `<data_dir>/blobs`.
fn blobs(settings: &Settings) -> anyhow::Result<Blobs> {
    use secrecy::ExposeSecret;
    let blobs = &settings.blobs;
    Ok(Blobs::from_settings(
        &taxbridge_blobs::BlobSettings {
            url: blobs.url.clone(),
            endpoint: blobs.endpoint.clone(),
            region: blobs.region.clone(),
            access_key_id: blobs.access_key_id.clone(),
            secret_access_key: blobs
                .secret_access_key
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
        },
        &settings.data_dir.join("blobs"),
    )?)
}

/// The built-in provider catalog, with the operator's file (`providers_file`) added. A file
/// that cannot be read or used stops the start, naming the file and the line.
pub fn load_catalog(settings: &Settings) -> anyhow::Result<Catalog> {
    let Some(path) = &settings.providers_file else {
        return Ok(Catalog::built_in());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read the provider catalog {}", path.display()))?;
    Ok(Catalog::with_operator_file(
        &text,
        &path.display().to_string(),
    )?)
}

/// The client every outbound call goes through, under the egress policy.
fn egress(settings: &Settings) -> anyhow::Result<Egress> {
    let allow_cidrs = Policy::parse_allow_list(&settings.egress.allow_cidrs)
        .map_err(|why| anyhow::anyhow!("egress.allow_cidrs: {why}"))?;
    // Outbound clients never use a proxy from the environment (a proxy would resolve names
    // out of the egress policy's sight): say so, so an operator who set one is not surprised.
    let proxies: Vec<&str> = taxbridge_outbound::PROXY_VARIABLES
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        .collect();
    if !proxies.is_empty() {
        tracing::warn!(
            variables = proxies.join(", "),
            "ignoring proxy settings from the environment: Taxbridge calls partner platforms, file servers and tus servers directly, under its egress policy"
        );
    }
    Ok(Egress::new(EgressSettings {
        allow_cidrs,
        connect_timeout: Duration::from_secs(settings.egress.connect_timeout_seconds.max(1)),
        total_timeout: Duration::from_secs(settings.egress.timeout_seconds.max(1)),
        max_response_bytes: settings.egress.max_response_bytes.max(1024),
        min_rate: taxbridge_outbound::MinRate {
            bytes_per_second: settings.egress.min_rate_bytes_per_second.max(1),
            window: Duration::from_secs(settings.egress.min_rate_window_seconds.max(1)),
        },
    })?)
}
