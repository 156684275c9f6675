//! `taxbridge serve`: open the database, load the secrets, build the services, print the
//! first-start key if the database was empty, and serve until Ctrl-C or SIGTERM.

use crate::{secrets, settings::Settings};
use anyhow::Context;
use std::{sync::Arc, time::Duration};
use taxbridge_api::{ApiSettings, Application, ConnectionLimits, QueryLimits, Services};
use taxbridge_blobs::Blobs;
use taxbridge_domain::{
    connections::Connections,
    identity::{reveal, Identity, IdentitySettings},
    imports::Imports,
    providers::Catalog,
    uploads::Uploads,
    usage::UsageRecorder,
    workspaces::Workspaces,
};
use taxbridge_outbound::{policy::Policy, Egress, EgressSettings, PartnerProtocol};
use taxbridge_store::Backend;
use taxbridge_worker::{
    download::{Download, DownloadSettings},
    upload::{UploadHandler, UploadSettings},
    Worker, WorkerMetrics, WorkerSettings,
};

/// What `serve` and `worker` both open: the store, the services, the blob store, the egress
/// client, and whether this start created the owner account (its key, to print once).
struct Opened {
    store: Arc<taxbridge_store::Store>,
    services: Arc<Services>,
    egress: Egress,
    first_start: Option<(taxbridge_domain::accounts::Account, secrecy::SecretString)>,
    url: String,
}

/// `bootstrap`: create the owner account on an empty database (`serve` does; `worker`, which
/// prints nothing, must not).
async fn open(settings: &Settings, bootstrap: bool) -> anyhow::Result<Opened> {
    init_logging(&settings.log_format, &settings.log_level);
    raise_open_file_limit();
    let url = settings.database_url();
    let backend = Backend::of_url(&url)?;
    if backend == Backend::Sqlite {
        crate::create_private_dir(&settings.data_dir).with_context(|| {
            format!(
                "Failed to create the data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let secrets = secrets::load(settings, backend)?;
    let catalog = Arc::new(load_catalog(settings)?);
    let keys = Arc::new(crate::keyring::keys(settings, backend)?);
    let blobs = blobs(settings)?;
    // Staging files a killed process left behind (never served: a blob appears only whole),
    // swept in the background: the walk grows with the number of blobs.
    let sweeping = blobs.clone();
    tokio::task::spawn_blocking(move || {
        let swept = sweeping.sweep_abandoned(Duration::from_secs(600));
        if swept > 0 {
            tracing::info!(files = swept, "removed abandoned upload staging files");
        }
    });
    // The one storage handle: every service takes the port it needs from it.
    let store = Arc::new(taxbridge_store::connect(&url).await?);
    let identity = Arc::new(Identity::new(
        store.clone(),
        &secrets.jwt_signing,
        IdentitySettings {
            token_lifetime_seconds: settings.auth.token_lifetime_seconds,
            grant_cache_ttl: Duration::from_secs(settings.auth.revocation_check_seconds),
        },
    ));
    let first_start = if bootstrap {
        identity
            .bootstrap_owner()
            .await
            .context("Failed to create the owner account")?
    } else {
        None
    };
    let egress = egress(settings)?;
    let platform = Arc::new(PartnerProtocol::new(egress.clone()));
    let workspaces = Arc::new(Workspaces::trusting_reach_for(
        store.clone(),
        Duration::from_secs(settings.auth.revocation_check_seconds),
    ));
    let connections = Arc::new(Connections::new(
        store.clone(),
        workspaces.clone(),
        catalog,
        keys,
        platform,
    ));
    let imports = Arc::new(Imports::new(store.clone(), connections.clone()));
    // Codes are hashed with a pepper derived from the token signing secret: kept out of the
    // database, the same on every node.
    let pepper = {
        use secrecy::ExposeSecret;
        use sha2::Digest;
        sha2::Sha256::new()
            .chain_update(b"taxbridge sign-in codes\0")
            .chain_update(secrets.jwt_signing.expose_secret())
            .finalize()
    };
    let mailer: Arc<dyn taxbridge_domain::sign_in::Mailer> = match &settings.mail.smtp_url {
        Some(url) => Arc::new(
            taxbridge_outbound::mail::SmtpMailer::new(url, &settings.mail.from)
                .map_err(anyhow::Error::msg)?,
        ),
        None => Arc::new(taxbridge_domain::sign_in::LogMailer),
    };
    let services = Arc::new(Services {
        sign_in: Arc::new(taxbridge_domain::sign_in::SignIn::new(
            store.clone(),
            mailer,
            &pepper,
        )),
        health: store.clone(),
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
        tasks: store.clone(),
        worker_metrics: prometheus::Registry::new_custom(Some("taxbridge".into()), None)?,
        public_base_url: settings.public_base_url(),
    });
    Ok(Opened {
        store,
        services,
        egress,
        first_start,
        url,
    })
}

/// The worker over the opened services, with `concurrency` tasks at once.
fn worker(opened: &Opened, settings: &Settings, concurrency: usize) -> Worker {
    let services = &opened.services;
    let download = Download::new(
        services.imports.store().clone(),
        opened.store.clone(),
        services.connections.clone(),
        services.blobs.clone(),
        opened.egress.clone(),
        DownloadSettings {
            max_bytes: settings.worker.max_file_bytes,
            ..DownloadSettings::default()
        },
        WorkerMetrics::new(&services.worker_metrics),
    );
    let upload = UploadHandler::new(
        services.uploads.store().clone(),
        opened.store.clone(),
        services.blobs.clone(),
        taxbridge_outbound::tus::TusClient::new(opened.egress.clone()),
        UploadSettings {
            chunk_bytes: settings.worker.tus_chunk_bytes.max(64 * 1024),
            ..UploadSettings::default()
        },
    );
    Worker::new(
        opened.store.clone(),
        vec![Arc::new(download), Arc::new(upload)],
        WorkerSettings {
            concurrency,
            lease: Duration::from_secs(settings.worker.lease_seconds.clamp(1, 30)),
            ..WorkerSettings::default()
        },
        services.imports.tasks_added(),
    )
}

/// `taxbridge worker`: runs background tasks only (for a deployment that scales them apart
/// from the API), until Ctrl-C or SIGTERM.
pub async fn run_worker(settings: Settings) -> anyhow::Result<()> {
    let opened = open(&settings, false).await?;
    let concurrency = settings.worker.concurrency.max(1);
    tracing::info!(database = %taxbridge_store::redact_url(&opened.url), blobs = opened.services.blobs.describe(), "Taxbridge worker is running");
    worker(&opened, &settings, concurrency)
        .run(shutdown_signal())
        .await;
    Ok(())
}

/// The workspace the first start makes for the owner account.
const OWNER_WORKSPACE: &str = "My firm";

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut opened = open(&settings, true).await?;
    let services = opened.services.clone();
    let url = opened.url.clone();
    let first_start = opened.first_start.take();
    // The owner's own workspace, so the printed sign-in link lands on a dashboard.
    let mut landing = "%2Fw%2Fredirect%2F".to_owned();
    if let Some((account, _)) = &first_start {
        match services
            .workspaces
            .create_for_customer(OWNER_WORKSPACE, Some(account.email.as_str()))
            .await
        {
            Ok((workspace, _)) => landing = format!("%2Fw%2F{}", workspace.slug),
            Err(err) => tracing::warn!(error = %err, "could not create the owner's workspace"),
        }
    }
    // The in-process worker stops with the server: both watch one shutdown signal.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = (settings.worker.concurrency > 0).then(|| {
        let worker = worker(&opened, &settings, settings.worker.concurrency);
        let mut stopped = stopped.clone();
        tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let app = Application::build(
        ApiSettings {
            listen: settings.listen.clone(),
            max_body_bytes: settings.limits.max_body_bytes,
            query_limits: QueryLimits {
                max_depth: settings.limits.max_query_depth,
                max_complexity: settings.limits.max_query_complexity,
                max_document_bytes: settings.limits.max_query_bytes,
                max_document_tokens: settings.limits.max_query_tokens,
                max_response_bytes: settings.limits.max_response_bytes,
            },
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_secs(
                    settings.limits.header_read_timeout_seconds.max(1),
                ),
                idle_timeout: Duration::from_secs(settings.limits.idle_timeout_seconds.max(1)),
                body_read_timeout: Duration::from_secs(
                    settings.limits.body_read_timeout_seconds.max(1),
                ),
                max_connections: settings.limits.max_connections.max(1),
            },
            rate_limits: settings.rate_limits,
            usage_flush_interval: Duration::from_secs(settings.usage.flush_interval_seconds.max(1)),
        },
        services,
    )
    .await?;
    let addr = app.local_addr();
    let endpoint = format!("http://{addr}/graphql");
    tracing::info!(%endpoint, database = %taxbridge_store::redact_url(&url), "Taxbridge is serving");
    if let Some((account, secret)) = first_start {
        let key = reveal(&secret);
        println!(
            "Taxbridge created the owner account {} on this empty database.",
            account.email
        );
        println!("API key: {key}");
        println!(
            "It is shown only this once. Exchange it for an access token (customer guide, step 2):"
        );
        println!(
            "curl -X POST {endpoint} -H \"Content-Type: application/json\" -H \"source-platform: tax-firm-a\" -d '{{\"query\": \"mutation LoginViaPersonalApiToken($apiKey: String!) {{ loginViaPersonalApiToken(token: $apiKey) {{ accessToken }} }}\", \"variables\": {{\"apiKey\": \"{key}\"}}}}'"
        );
        println!(
            "Web pages: open http://{addr}/sign-in?deep_link={landing} and sign in as {}; with no mail server set, the code is written to this log.",
            account.email
        );
    }
    println!("Taxbridge is serving GraphQL on {endpoint}");
    let served = app
        .run_until(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await;
    if let Some(background) = background {
        let _ = background.await;
    }
    served
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

/// Every connection holds a file descriptor: lift the soft limit to the hard one, so the
/// connection cap, not a low default, decides how many clients are served at once.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit raised to the hard limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open-file limit"),
    }
}

fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
