//! Taxbridge's front door: the GraphQL endpoint on `/graphql`, the byte routes
//! (`/files/artifacts/{id}`, `/uploads/artifacts/{id}`) and the operational routes
//! (`/healthz`, `/readyz`, `/metrics`). It turns HTTP into calls on the domain's services and
//! the domain's errors into GraphQL errors (see [`error`]) or JSON refusals (see
//! [`ground::HttpError`]), and nothing else: no SQL and no business rule lives here.
//!
//! Layout, from the bottom up: [`ground`] (the shared state, the request id, the one JSON
//! error), [`auth`] (who is calling, as extractors), the surfaces (`endpoint` and `graphql`
//! for GraphQL, `files` for bytes), and `http`, the router alone on top. The web pages live in
//! their own crate (`taxbridge-web`) on the same ground; the binary composes them in through
//! [`Application::build`].
//!
//! [`Application::build`] binds the listener first and reports its address, so tests start
//! the real server on port 0 and talk to it over HTTP.

pub mod auth;
mod cost;
mod endpoint;
pub mod error;
mod files;
mod graphiql;
pub mod graphql;
pub mod ground;
mod http;
mod large_bodies;
mod metrics;
mod query_documents;
pub mod rate_limits;
mod server;
mod variables;

use anyhow::Context;
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use taxbridge_domain::{
    connections::Connections, identity::Identity, imports::Imports, usage::UsageRecorder,
    workspaces::Workspaces,
};
use tokio::net::TcpListener;

pub use graphql::{artifact_url, sdl, QueryLimits};
pub use rate_limits::RateLimitSettings;
pub use server::ConnectionLimits;

/// The domain services every request may use.
pub struct Services {
    /// Whether the database answers (`/readyz`) and the task queue's depth (`/metrics`).
    pub health: Arc<taxbridge_domain::health::Health>,
    pub identity: Arc<Identity>,
    pub usage: Arc<UsageRecorder>,
    pub workspaces: Arc<Workspaces>,
    pub connections: Arc<Connections>,
    pub imports: Arc<Imports>,
    pub uploads: Arc<taxbridge_domain::uploads::Uploads>,
    /// Signing in to the web pages.
    pub sign_in: Arc<taxbridge_domain::sign_in::SignIn>,
    /// The audit log's reads and retention sweep.
    pub audit: Arc<taxbridge_domain::audit::Audit>,
    /// Events older than this many days are swept (`audit.retention_days`).
    pub audit_retention_days: u32,
    /// Where artifacts' bytes live.
    pub blobs: taxbridge_blobs::Blobs,
    /// The largest file `PUT /uploads/artifacts/{id}` accepts.
    pub max_upload_bytes: u64,
    /// The bytes one request's pulls may read from platforms together.
    pub pull_budget_bytes: u64,
    /// Series of the in-process worker, rendered by `/metrics` beside the API's.
    pub worker_metrics: prometheus::Registry,
    /// Where users reach this gateway's web pages, e.g. `https://taxbridge.example.com`; deep
    /// links start with it.
    pub public_base_url: String,
    /// The rate limits' fleet-wide count (on PostgreSQL; none on SQLite).
    pub shared_limits: taxbridge_domain::limits::SharedLimits,
}

#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Where to listen, e.g. `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: String,
    /// Request bodies over this many bytes answer 413.
    pub max_body_bytes: usize,
    pub query_limits: QueryLimits,
    pub connections: ConnectionLimits,
    pub rate_limits: RateLimitSettings,
    /// How often counted usage is written to the database.
    pub usage_flush_interval: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            query_limits: QueryLimits::default(),
            connections: ConnectionLimits::default(),
            rate_limits: RateLimitSettings::default(),
            usage_flush_interval: Duration::from_secs(5),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    connections: ConnectionLimits,
    rate_limits: Arc<rate_limits::RateLimits>,
    services: Arc<Services>,
    usage_flush_interval: Duration,
}

impl Application {
    /// Binds `settings.listen` and builds the routes, `pages` (routes on the same
    /// [`ground::AppState`], such as the web pages) among them.
    pub async fn build(
        settings: ApiSettings,
        services: Arc<Services>,
        pages: axum::Router<Arc<ground::AppState>>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let (router, rate_limits) = http::router(&settings, services.clone(), pages);
        Ok(Self {
            listener,
            router,
            connections: settings.connections,
            rate_limits,
            services,
            usage_flush_interval: settings.usage_flush_interval,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and writes the
    /// usage counted so far.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let services = self.services.clone();
        let flusher = tokio::spawn(flush_usage_every(
            services.clone(),
            self.usage_flush_interval,
        ));
        let rate_limits = self.rate_limits.clone();
        let sign_in = services.sign_in.clone();
        let (audit, retention_days) = (services.audit.clone(), services.audit_retention_days);
        let forgetter = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(30));
            let mut ticks = 0u64;
            loop {
                ticker.tick().await;
                rate_limits.forget_idle().await;
                // Every ten minutes: expired sign-in codes and sessions go.
                if ticks.is_multiple_of(20) {
                    if let Err(err) = sign_in.sweep().await {
                        tracing::warn!(error = %err, "could not delete expired sign-in codes and sessions");
                    }
                    match audit.sweep(retention_days).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(
                            events = removed,
                            days = retention_days,
                            "removed audit events past their retention"
                        ),
                        Err(err) => {
                            tracing::warn!(error = %err, "could not remove old audit events")
                        }
                    }
                }
                ticks += 1;
            }
        });
        server::serve(self.listener, self.router, self.connections, shutdown).await;
        flusher.abort();
        forgetter.abort();
        if let Err(err) = services.usage.flush().await {
            tracing::warn!(error = %err, "could not write the last usage counts");
        }
        Ok(())
    }
}

async fn flush_usage_every(services: Arc<Services>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(err) = services.usage.flush().await {
            tracing::warn!(error = %err, "could not write usage counts; they will be retried");
        }
    }
}
