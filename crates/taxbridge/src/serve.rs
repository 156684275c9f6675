//! `taxbridge serve` and `taxbridge worker`: the process around an [`App`] (logging, the
//! open-file limit, the fleet checks, the staging-file sweep, the signals), serving until
//! Ctrl-C or SIGTERM. `serve` also prints the first-start key when the database was empty.
//!
//! A signal starts a drain rather than a stop: `/readyz` answers 503 at once while requests
//! are still served for `server.drain_seconds`, so a balancer that checks readiness moves its
//! traffic to the other nodes before this one's listener closes. Then requests in flight
//! finish, and the worker stops its tasks and hands their leases back. A second signal ends the
//! drain early.

use crate::{
    app::App,
    fleet::{self, Process},
    settings::Settings,
};
use std::time::Duration;
use taxbridge_domain::identity::reveal;

/// What both commands do before building the app.
fn start_process(settings: &Settings) {
    init_logging(&settings.log_format, &settings.log_level);
    raise_open_file_limit();
}

/// Staging files a killed process left behind (never served: a blob appears only whole),
/// swept in the background: the walk grows with the number of blobs.
fn sweep_staging_files(app: &App) {
    let sweeping = app.services.blobs.clone();
    tokio::task::spawn_blocking(move || {
        let swept = sweeping.sweep_abandoned(Duration::from_secs(600));
        if swept > 0 {
            tracing::info!(files = swept, "removed abandoned upload staging files");
        }
    });
}

/// `taxbridge worker`: runs background tasks only (for a deployment that scales them apart
/// from the API), until Ctrl-C or SIGTERM.
pub async fn run_worker(settings: Settings) -> anyhow::Result<()> {
    start_process(&settings);
    fleet::check(&settings, Process::Worker)?;
    let app = App::build_worker(&settings).await?;
    sweep_staging_files(&app);
    tracing::info!(database = %taxbridge_store::redact_url(&app.database_url), blobs = app.services.blobs.describe(), "Taxbridge worker is running");
    app.worker(None)
        .run(async {
            shutdown_signal().await;
            tracing::info!("stopping: the worker hands its tasks back");
        })
        .await;
    Ok(())
}

/// The workspace the first start makes for the owner account.
const OWNER_WORKSPACE: &str = "My firm";

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    start_process(&settings);
    fleet::check(&settings, Process::Serve)?;
    let app = App::build(&settings).await?;
    sweep_staging_files(&app);
    let services = app.services.clone();
    let first_start = app.bootstrap_owner().await?;
    // The owner's own workspace, so the printed sign-in link lands on a dashboard.
    let mut landing = "%2Fw%2Fredirect%2F".to_owned();
    if let Some((account, _)) = &first_start {
        match services
            .workspaces
            .create_for_customer(
                OWNER_WORKSPACE,
                Some(account.email.as_str()),
                &taxbridge_domain::audit::Who::operator(),
            )
            .await
        {
            Ok((workspace, _)) => landing = format!("%2Fw%2F{}", workspace.slug),
            Err(err) => tracing::warn!(error = %err, "could not create the owner's workspace"),
        }
    }
    // The in-process worker stops with the server: both watch one shutdown signal.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = (settings.worker.concurrency > 0).then(|| {
        let worker = app.worker(None);
        let mut stopped = stopped.clone();
        tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let api = app.api().await?;
    let addr = api.local_addr();
    let endpoint = format!("http://{addr}/graphql");
    tracing::info!(%endpoint, database = %taxbridge_store::redact_url(&app.database_url), blobs = services.blobs.describe(), public_base_url = %services.public_base_url, "Taxbridge is serving");
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
    let drain = Duration::from_secs(settings.server.drain_seconds);
    let health = services.health.clone();
    let served = api
        .run_until(async move {
            shutdown_signal().await;
            health.start_draining();
            tracing::info!(
                seconds = drain.as_secs(),
                "draining: /readyz answers 503 while requests are still served"
            );
            tokio::select! {
                () = tokio::time::sleep(drain) => {}
                () = shutdown_signal() => tracing::info!("a second signal: ending the drain now"),
            }
            tracing::info!("closing the listener: finishing requests in flight");
            let _ = stop.send(true);
        })
        .await;
    if let Some(background) = background {
        let _ = background.await;
    }
    served
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
}
