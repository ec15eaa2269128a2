//! Serving and stopping. On the shutdown signal (SIGTERM or Ctrl-C in
//! `nrls serve`):
//!
//! 1. `/readyz` starts failing (503) on both listeners;
//! 2. for `shutdown_drain_seconds` (default 0) new requests are still
//!    accepted, so load balancers that probe `/readyz` stop routing here first;
//! 3. the main listener closes (new connections are refused) and in-flight
//!    requests finish, for at most `shutdown_grace_seconds` (default 20);
//!    requests still running then are abandoned;
//! 4. the admin listener closes, and the store is dropped, which commits the
//!    group-commit batch in hand and closes the database.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use api::ops::Lifecycle;
use axum::Router;
use store::SharedStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::server::ConnectionLimits;

/// The bound listeners and what each serves.
pub struct Listeners {
    pub main: (TcpListener, Router),
    /// Header, idle and grace limits of the main listener.
    pub limits: ConnectionLimits,
    /// TLS for the main listener, when configured.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    pub admin: Option<(TcpListener, Router)>,
}

/// How long shutdown may take, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownTiming {
    pub drain: Duration,
    pub grace: Duration,
}

impl ShutdownTiming {
    pub fn from_config(config: &Config) -> ShutdownTiming {
        ShutdownTiming {
            drain: Duration::from_secs(config.server.shutdown_drain_seconds),
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
        }
    }
}

/// The admin listener answers probes for a moment after the main one
/// closed; its own requests are short.
const ADMIN_GRACE: Duration = Duration::from_secs(2);

/// Serves until `shutdown` completes, then stops as the module says.
pub async fn serve(
    listeners: Listeners,
    timing: ShutdownTiming,
    lifecycle: Lifecycle,
    store: SharedStore,
    audit_outbox: Option<Arc<audit::outbox::AuditOutbox>>,
    delivery: crate::subscriptions::Worker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Holds the service weakly: it ends when `close_store` lets go.
    let dispatcher = delivery.spawn();
    let (admin_stop, admin_stopped) = watch::channel(false);
    let admin = listeners.admin.map(|(listener, router)| {
        let mut stopped = admin_stopped.clone();
        tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .into_future(),
        )
    });
    let (signalled, mut signal_seen) = watch::channel(false);
    let stop_accepting = {
        let lifecycle = lifecycle.clone();
        async move {
            shutdown.await;
            lifecycle.begin_shutdown();
            let _ = signalled.send(true);
            tracing::info!(
                drain_seconds = timing.drain.as_secs(),
                "shutting down: readiness now fails"
            );
            tokio::time::sleep(timing.drain).await;
            tracing::info!(
                grace_seconds = timing.grace.as_secs(),
                "shutting down: not accepting connections; finishing in-flight requests"
            );
        }
    };
    let grace_over = async move {
        if signal_seen.wait_for(|seen| *seen).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(timing.drain + timing.grace).await;
    };
    let (listener, router) = listeners.main;
    lifecycle.set_ready();
    let result = tokio::select! {
        result = crate::server::serve(listener, router, listeners.limits, listeners.tls, stop_accepting) => result,
        () = grace_over => {
            tracing::warn!(
                grace_seconds = timing.grace.as_secs(),
                "shutdown grace period over: abandoning unfinished requests"
            );
            Ok(())
        }
    };
    let _ = admin_stop.send(true);
    if let Some(task) = admin
        && tokio::time::timeout(ADMIN_GRACE, task).await.is_err()
    {
        tracing::warn!("admin listener did not stop in time");
    }
    // The last writes' audit records go into the trail (and under the final
    // checkpoint) while the store is still open; any left stay durable in
    // the store and are moved at the next start.
    if let Some(outbox) = audit_outbox
        && let Err(error) = outbox.drain().await
    {
        tracing::warn!(%error, "audit records left in the outbox until the next start");
    }
    close_store(store).await;
    // Normally already ended with the store; a store still held by abandoned
    // requests must not keep it polling.
    dispatcher.abort();
    result
}

/// Drops our handle on the store and waits a moment for the others (a
/// finished connection task lets go of its router just after axum reports it
/// done). When the last one goes the store closes: the SQLite writer commits
/// the batch in hand and the WAL is checkpointed. Requests abandoned after
/// the grace period may still hold it; it then closes when the runtime
/// cancels them, before the process exits.
async fn close_store(store: SharedStore) {
    let backend = store.backend();
    let weak = Arc::downgrade(&store);
    drop(store);
    for _ in 0..100 {
        if weak.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if weak.strong_count() == 0 {
        tracing::info!(backend, "store closed");
    } else {
        tracing::warn!(
            backend,
            "store still held by abandoned requests; it closes as the runtime stops"
        );
    }
}
