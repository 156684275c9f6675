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
//! - the client's address in each request's extensions ([`ConnectInfo`]), for per-address rate
//!   limits: the peer's, or behind a balancer listed in
//!   [`ConnectionLimits::trusted_proxies`] the one it names in `X-Forwarded-For`
//!   ([`client_address`]).
//!
//! The request body's own deadline is applied where the body is read (`endpoint.rs`).

use axum::{extract::ConnectInfo, Router};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use ipnet::IpNet;
use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::pin,
    sync::Arc,
    time::Duration,
};
use tokio::{
    net::TcpListener,
    sync::{watch, Notify, Semaphore},
};
use tower::ServiceExt;

/// How long and how many connections the gateway holds.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A new connection's first request headers must be complete within this.
    pub header_read_timeout: Duration,
    /// A kept-alive connection waiting this long for its next request's headers is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive within this.
    pub body_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` names the client (the balancer's addresses). Empty: the
    /// header is ignored, so a client cannot choose the address its limits are counted by.
    pub trusted_proxies: Arc<[IpNet]>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 4_096,
            trusted_proxies: Arc::new([]),
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
        let limits = limits.clone();
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

/// The address a request comes from: the peer's, unless the peer is a trusted proxy; then
/// the nearest address in `X-Forwarded-For` that is not itself a trusted proxy. Each proxy
/// appends the address it was reached from, so the entries left of that one are whatever the
/// client wrote, and are never believed. An entry that is not an address ends the walk.
pub fn client_address(
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[IpNet],
) -> SocketAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer.ip()) {
        return peer;
    }
    let mut client = peer.ip();
    // Several headers read as one list, in order.
    let values: Vec<&axum::http::HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    'walk: for value in values.into_iter().rev() {
        let Ok(text) = value.to_str() else { break };
        for entry in text.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break 'walk;
            };
            client = ip;
            if !is_trusted(&ip) {
                break 'walk;
            }
        }
    }
    SocketAddr::new(client, peer.port())
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
    let trusted = limits.trusted_proxies.clone();
    let service = tower::service_fn(move |mut request: axum::extract::Request<_>| {
        seen.notify_one();
        let client = client_address(peer, request.headers(), &trusted);
        request.extensions_mut().insert(ConnectInfo(client));
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_forwarded_address() {
        let balancer: SocketAddr = "10.0.0.5:40000".parse().expect("addr");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().expect("net")];
        let ip = |addr: SocketAddr| addr.ip().to_string();
        let cases: &[(&[&str], &str)] = &[
            (&["203.0.113.7"], "203.0.113.7"),
            // What the client wrote, left of the balancer's entry, is not believed.
            (&["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
            // Through two trusted balancers.
            (&["203.0.113.7, 10.0.0.6"], "203.0.113.7"),
            (&["198.51.100.1", "203.0.113.7"], "203.0.113.7"),
            (&["2001:db8::1"], "2001:db8::1"),
            // Nothing usable: the nearest address known.
            (&[], "10.0.0.5"),
            (&["not-an-address"], "10.0.0.5"),
            (&["203.0.113.7, garbage, 10.0.0.6"], "10.0.0.6"),
        ];
        for (values, expected) in cases {
            let client = client_address(balancer, &forwarded(values), &trusted);
            assert_eq!(ip(client), *expected, "{values:?}");
        }
        // From a peer that is not a trusted proxy, the header is ignored.
        let direct: SocketAddr = "192.0.2.9:5000".parse().expect("addr");
        let client = client_address(direct, &forwarded(&["203.0.113.7"]), &trusted);
        assert_eq!(client, direct);
        let client = client_address(balancer, &forwarded(&["203.0.113.7"]), &[]);
        assert_eq!(client, balancer);
    }
}
