//! The HTTP server loop: hyper HTTP/1.1 connections with header-size and
//! header-read (idle) limits, optional TLS, and graceful shutdown that lets
//! in-flight requests finish within a grace period.
//!
//! `axum::serve` has none of these knobs, so nrls drives hyper directly; the
//! router itself is unchanged.

mod head_limit;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use tls::{TlsError, load_tls};

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's headers, including the
    /// wait for the next request on a kept-alive connection (the idle timeout).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts.
    pub shutdown_grace: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and waits up to the grace period for open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = accept_until(&listener, &router, limits, tls, shutdown).await;
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "grace period over; closing remaining connections");
    }
    Ok(())
}

/// Serves `router` (the "starting" answers) on `listener` until `ready`
/// completes, then closes those connections (at most a second for a request
/// in flight) and hands the listener back for the real service.
pub async fn serve_while_starting(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ready: impl Future<Output = ()> + Send + 'static,
) -> TcpListener {
    let graceful = accept_until(&listener, &router, limits, tls, ready).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    listener
}

async fn accept_until(
    listener: &TcpListener,
    router: &Router,
    limits: ConnectionLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    until: impl Future<Output = ()> + Send + 'static,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let acceptor = tls.map(TlsAcceptor::from);
    let router = router.clone().layer(axum::middleware::from_fn_with_state(
        limits.max_header_bytes,
        head_limit::refuse_large_heads,
    ));
    let router = &router;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(until);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(stream, peer, router, &http, acceptor.clone(), &graceful, limits);
                }
                // Out of file descriptors and the like: pause rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut until => break,
        }
    }
    graceful
}

fn spawn_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: &Router,
    http: &hyper::server::conn::http1::Builder,
    acceptor: Option<TlsAcceptor>,
    graceful: &GracefulShutdown,
    limits: ConnectionLimits,
) {
    let service = TowerToHyperService::new(router.clone().into_service::<Incoming>());
    let http = http.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let result = match acceptor {
            None => {
                watcher
                    .watch(http.serve_connection(TokioIo::new(stream), service))
                    .await
            }
            Some(acceptor) => {
                match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(tls), service))
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    });
}
