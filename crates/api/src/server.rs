//! The accept loop: hyper's HTTP/1.1 server under limits that keep slow, idle or numerous
//! clients from holding the gateway.
//!
//! `axum::serve` offers no timeouts, so the loop is written here (after axum's own), with:
//!
//! - a cap on open connections: past it, new connections wait in the kernel's backlog until
//!   one closes, rather than taking a file descriptor each;
//! - a first-request deadline: a connection whose first request's headers are not complete
//!   within [`ConnectionLimits::header_read_timeout`] of connecting is closed (slow headers,
//!   or a socket opened and left);
//! - an idle deadline: hyper's header read timer, set to
//!   [`ConnectionLimits::idle_timeout`], starts whenever a kept-alive connection waits for its
//!   next request, so a connection idle (or dribbling headers) that long is closed;
//! - the peer's address in each request's extensions ([`ConnectInfo`]), for per-address rate
//!   limits.
//!
//! The request body's own deadline is applied where the body is read (`endpoint.rs`).

use axum::{extract::ConnectInfo, Router};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use std::{future::Future, net::SocketAddr, pin::pin, sync::Arc, time::Duration};
use tokio::{
    net::TcpListener,
    sync::{watch, Notify, Semaphore},
};
use tower::ServiceExt;

/// How long and how many connections the gateway holds.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A new connection's first request headers must be complete within this.
    pub header_read_timeout: Duration,
    /// A kept-alive connection waiting this long for its next request's headers is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive within this.
    pub body_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 4_096,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish, and returns once every connection has closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropping the sender tells every connection to finish; each holds a receiver until it
    // has closed, so `closed()` on the sender side waits for the last one.
    let (stop_tx, stop_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let closed = closed_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, router, limits, &mut stop).await;
            drop(closed);
            drop(slot);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(closed_rx);
    closed_tx.closed().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    stop: &mut watch::Receiver<()>,
) {
    let first_request = Arc::new(Notify::new());
    let seen = first_request.clone();
    let service = tower::service_fn(move |mut request: axum::extract::Request<_>| {
        seen.notify_one();
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let mut connection = pin!(http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_headers(crate::http::HYPER_MAX_HEADERS)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));

    let first_deadline = tokio::time::sleep(limits.header_read_timeout);
    tokio::select! {
        result = connection.as_mut() => return log_end(result),
        () = first_request.notified() => {}
        () = first_deadline => {
            tracing::debug!(%peer, "closed a connection that sent no request in time");
            return;
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            return log_end(connection.await);
        }
    }
    tokio::select! {
        result = connection.as_mut() => log_end(result),
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            log_end(connection.await);
        }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "a connection ended with an error");
    }
}
