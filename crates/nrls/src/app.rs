//! Wiring: builds the store, the authenticator and the HTTP service from a
//! [`Config`], binds the listener (port 0 in tests) and serves until stopped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use api::ops::{Lifecycle, Ops, Reloader};
use api::{ApiSettings, AppState};
use auth::{Authenticator, TokenSettings};
use domain::search::SearchLimits;
use store::memory::MemoryStore;
use store::postgres::{Database, PostgresOptions, PostgresStore};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{InstrumentedStore, SharedStore};
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;

use crate::config::{Backend, Config};
use crate::lifecycle::{Listeners, ShutdownTiming};
use crate::server::ConnectionLimits;
use crate::{demo, reload};

mod services;
mod web_pages;

use services::{access_services, shared_care_record};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(String),
    #[error("apps: {0}")]
    Apps(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("signing secret: {0}")]
    Secret(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("demo data: {0}")]
    Demo(String),
    #[error("access and audit: {0}")]
    Access(String),
    #[error("federation: {0}")]
    Federation(String),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("listener: {0}")]
    Listener(String),
    #[error("viewer: {0}")]
    Viewer(String),
    #[error("patient access: {0}")]
    PatientAccess(String),
}

/// A bound, ready-to-run service.
pub struct Application {
    listeners: Listeners,
    timing: ShutdownTiming,
    lifecycle: Lifecycle,
    reloader: Reloader,
    pub port: u16,
    /// The admin listener's port, when `[server] admin_listen` is set.
    pub admin_port: Option<u16>,
    pub public_url: String,
    pub store: SharedStore,
    /// The audit trail, signed once more at shutdown.
    pub audit: audit::SharedAuditLog,
    /// Moves audited writes' records from the store into the trail.
    audit_outbox: Option<Arc<audit::outbox::AuditOutbox>>,
    /// OTLP span export, when configured; flushed at shutdown.
    trace_export: Option<crate::otlp::TraceExport>,
    /// Subscription delivery, started with the listeners.
    delivery: crate::subscriptions::Worker,
}

impl Application {
    /// Builds everything; with `demo`, adds the demo apps and seeds demo data.
    /// Each step is a function below, in the order they run.
    pub async fn build(mut config: Config, demo_mode: bool) -> Result<Application, StartError> {
        let (listener, local) = bind_main(&config).await?;
        let tls = tls(&config)?;
        settle_public_url(&mut config, local, tls.is_some());
        let public_url = config.public_url();
        let admin = match config.server.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let limits = connection_limits(&config);
        // Until everything below is built (the store opened, migrations
        // applied, which may wait on another node), the listeners answer
        // "alive, starting" rather than refusing connections.
        let starting = Starting::serve(listener, admin, limits, tls.clone());
        let metrics = Arc::new(::telemetry::Metrics::new());
        let stores = open_stores(&config, &metrics).await?;
        let store_metrics = metrics.store().clone();
        if demo_mode {
            config.apps.extend(demo::apps());
            // `nrls demo-subscriber` listens on plain http on this machine.
            let local = ["127.0.0.1".to_owned(), "localhost".to_owned()];
            config.subscriptions.http_allowed_hosts.extend(local);
            let created = demo::seed(stores.primary.as_ref())
                .await
                .map_err(StartError::Demo)?;
            let sensitive = demo::seed_sensitive(stores.primary.as_ref())
                .await
                .map_err(StartError::Demo)?;
            tracing::info!(created = created + sensitive, "demo data seeded");
            web_pages::demo_access_policy(&mut config);
        }
        // Checked before anything else is built: an incomplete [viewer] stops the start.
        let viewer_sign_in = config
            .viewer
            .relying_party(&public_url)
            .map_err(|e| StartError::Viewer(e.to_string()))?;
        let patient_sign_in = config
            .patient_access
            .relying_party(&public_url)
            .map_err(|e| StartError::PatientAccess(e.to_string()))?;
        let shared_care_record =
            shared_care_record(&config, demo_mode, stores.primary.as_ref()).await?;
        let authenticator = authenticator(&config, &public_url)?;
        let lifecycle = Lifecycle::default();
        let reloader = reload::reloader(
            config.source.clone(),
            demo_mode,
            Arc::clone(&authenticator),
            Arc::clone(&metrics),
        );
        let (ops, trace_export) = operability(&config, metrics, &lifecycle, &reloader, local)?;
        metrics_apps(&ops, &authenticator);
        let session_store = web_pages::session_store(&config, stores.database.clone())?;
        let mut access =
            access_services(&config, &public_url, stores.database, store_metrics).await?;
        // A durable store keeps each audited write's record in the write's
        // own transaction (one commit, not two); see `audit::outbox`.
        if matches!(config.store.backend, Backend::Sqlite | Backend::Postgres) {
            access
                .keep_audit_with_writes(&stores.primary)
                .await
                .map_err(|e| StartError::Access(e.to_string()))?;
        }
        let audit_outbox = access.audit_outbox.clone();
        if demo_mode {
            web_pages::seed_demo_access(&access).await?;
        }
        let audit_log = Arc::clone(&access.audit);
        let mut state = AppState::with_ops(
            stores.primary.clone(),
            authenticator,
            api_settings(&config, &public_url),
            ops,
            access,
        );
        let shared = |_| StartError::Store("the state was shared while being built".into());
        if let Some(replica) = stores.replica {
            state = state.with_consumer_store(replica).map_err(shared)?;
        }
        if let Some(federation) = shared_care_record {
            state = state.with_shared_care_record(federation).map_err(shared)?;
        }
        let sessions = web_pages::sessions(&config, session_store, &public_url);
        state = state
            .with_patient_access(web_pages::patient_access(&config, &sessions))
            .map_err(shared)?;
        if demo_mode {
            web_pages::seed_demo_history(&state).await?;
        }
        let web = web_pages::web_state(
            &config,
            state.clone(),
            sessions,
            viewer_sign_in,
            patient_sign_in,
            demo_mode,
            &public_url,
        );
        let delivery = crate::subscriptions::Worker::new(
            state.downgrade(),
            crate::subscriptions::DeliverySettings::from_config(
                &config.subscriptions,
                &state.access().node,
            ),
        );
        let (listener, admin) = starting.finish().await?;
        let admin_port = admin
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        let listeners = Listeners {
            main: (
                listener,
                api::router_with_pages(state.clone(), web::router(web)),
            ),
            limits,
            tls,
            admin: admin.map(|listener| (listener, api::admin_router(state))),
        };
        Ok(Application {
            listeners,
            timing: ShutdownTiming::from_config(&config),
            lifecycle,
            reloader,
            port: local.port(),
            admin_port,
            public_url,
            store: stores.primary,
            audit: audit_log,
            audit_outbox,
            trace_export,
            delivery,
        })
    }

    /// What SIGHUP runs: reloads the app registry from the configuration file.
    pub fn reloader(&self) -> Reloader {
        Arc::clone(&self.reloader)
    }

    /// Serves until `shutdown` completes; then fails readiness, stops
    /// accepting, finishes in-flight requests within the grace period and
    /// closes the store (flushing group commits). See [`crate::lifecycle`].
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let result = crate::lifecycle::serve(
            self.listeners,
            self.timing,
            self.lifecycle,
            self.store,
            self.audit_outbox,
            self.delivery,
            shutdown,
        )
        .await;
        // Requests are over: their spans are queued; send them.
        if let Some(export) = self.trace_export {
            export.flush_and_stop().await;
        }
        // Sign the tail of the trail so a verifier can vouch for every record.
        if let Err(e) = self.audit.checkpoint().await {
            tracing::warn!(error = %e, "final audit checkpoint failed");
        }
        result
    }
}

/// Binds the main listener; its address, for a port-0 listener.
async fn bind_main(config: &Config) -> Result<(TcpListener, std::net::SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind {
        addr: config.server.listen,
        source,
    };
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// The TLS configuration, when a certificate and key are configured.
fn tls(config: &Config) -> Result<Option<Arc<ServerConfig>>, StartError> {
    match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => crate::server::load_tls(cert, key)
            .map(Some)
            .map_err(|e| StartError::Tls(e.to_string())),
        _ => Ok(None),
    }
}

/// Without `[server] public_url`, the URL clients reach: the listener's
/// address (the bound one for port 0), with the scheme TLS implies.
fn settle_public_url(config: &mut Config, local: std::net::SocketAddr, tls: bool) {
    if config.server.public_url.is_none() {
        let scheme = if tls { "https" } else { "http" };
        let addr = if config.server.listen.port() == 0 {
            local
        } else {
            config.server.listen
        };
        config.server.public_url = Some(format!("{scheme}://{addr}"));
    }
}

fn connection_limits(config: &Config) -> ConnectionLimits {
    ConnectionLimits {
        max_header_bytes: config.server.max_header_bytes,
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_seconds),
        shutdown_grace: Duration::from_secs(config.server.shutdown_grace_seconds),
        ..ConnectionLimits::default()
    }
}

/// The pointer stores, instrumented: the primary, its database (PostgreSQL,
/// shared with the access facts and the audit trail) and any read replica.
struct Stores {
    primary: SharedStore,
    database: Option<Database>,
    replica: Option<SharedStore>,
}

async fn open_stores(
    config: &Config,
    metrics: &::telemetry::Metrics,
) -> Result<Stores, StartError> {
    let (store, database) = connect_store(config).await?;
    let primary: SharedStore = Arc::new(InstrumentedStore::new(store, metrics.store().clone()));
    let replica: Option<SharedStore> = match connect_replica(config).await? {
        Some(replica) => Some(Arc::new(InstrumentedStore::new(
            replica,
            metrics.store().clone(),
        ))),
        None => None,
    };
    Ok(Stores {
        primary,
        database,
        replica,
    })
}

/// The app registry and the token service.
fn authenticator(config: &Config, public_url: &str) -> Result<Arc<Authenticator>, StartError> {
    let registry =
        crate::reload::app_registry(config).map_err(|e| StartError::Apps(e.to_string()))?;
    let mut settings = TokenSettings::new(
        public_url.to_owned(),
        format!("{public_url}/oauth2/token"),
        signing_secret(config)?,
    );
    settings.access_token_lifetime = Duration::from_secs(config.auth.access_token_lifetime_seconds);
    Authenticator::new(Arc::new(registry), settings)
        .map(Arc::new)
        .map_err(|e| StartError::Apps(e.to_string()))
}

fn api_settings(config: &Config, public_url: &str) -> ApiSettings {
    ApiSettings {
        public_url: public_url.to_owned(),
        search_limits: SearchLimits {
            default_count: config.search.default_count,
            max_count: config.search.max_count,
        },
        body_limit: config.server.body_limit_bytes,
        gateway_mode: config.server.gateway_mode,
        request_timeout: Duration::from_secs(config.server.request_timeout_seconds),
        admin_clients: config.admin.clients.clone(),
        subscriptions: api::operations::subscriptions::SubscriptionSettings {
            http_allowed_hosts: config.subscriptions.http_allowed_hosts.clone(),
            max_timeout_secs: config.subscriptions.max_timeout_seconds,
        },
    }
}

/// Metrics, lifecycle, reload and span export.
fn operability(
    config: &Config,
    metrics: Arc<::telemetry::Metrics>,
    lifecycle: &Lifecycle,
    reloader: &Reloader,
    local: std::net::SocketAddr,
) -> Result<(Ops, Option<crate::otlp::TraceExport>), StartError> {
    let instance = crate::otlp::instance_id(local.port());
    let outbound_tls = config
        .outbound_tls()
        .map_err(|e| StartError::Telemetry(e.to_string()))?;
    let (tracer, trace_export) =
        crate::otlp::start(&config.telemetry, &outbound_tls, &metrics, instance)
            .map_err(StartError::Telemetry)?;
    let ops = Ops::new(
        metrics,
        lifecycle.clone(),
        config.server.admin_listen.is_some(),
    )
    .with_reloader(Arc::clone(reloader))
    .with_tracer(tracer);
    Ok((ops, trace_export))
}

fn metrics_apps(ops: &Ops, authenticator: &Authenticator) {
    ops.metrics()
        .reloads()
        .set_apps(authenticator.registry().len());
}

/// The listeners while the service is being built: each serves the
/// "starting" answers (`api::ops::starting`) until [`Starting::finish`]
/// takes it back. Dropped unfinished (a failed start), they stop at once.
struct Starting {
    ready: tokio::sync::watch::Sender<bool>,
    main: tokio::task::JoinHandle<TcpListener>,
    admin: Option<tokio::task::JoinHandle<TcpListener>>,
}

type TlsConfig = Option<Arc<tokio_rustls::rustls::ServerConfig>>;

impl Starting {
    fn serve(
        main: TcpListener,
        admin: Option<TcpListener>,
        limits: ConnectionLimits,
        tls: TlsConfig,
    ) -> Starting {
        let (ready, done) = tokio::sync::watch::channel(false);
        let until = |mut done: tokio::sync::watch::Receiver<bool>| async move {
            // Ends when finished, or when the sender is gone (start failed).
            let _ = done.wait_for(|ready| *ready).await;
        };
        let serve = |listener, tls: TlsConfig| {
            tokio::spawn(crate::server::serve_while_starting(
                listener,
                api::ops::starting::router(),
                limits,
                tls,
                until(done.clone()),
            ))
        };
        Starting {
            main: serve(main, tls),
            admin: admin.map(|listener| serve(listener, None)),
            ready,
        }
    }

    async fn finish(self) -> Result<(TcpListener, Option<TcpListener>), StartError> {
        let _ = self.ready.send(true);
        let lost =
            |e: tokio::task::JoinError| StartError::Listener(format!("lost while starting: {e}"));
        let main = self.main.await.map_err(lost)?;
        let admin = match self.admin {
            Some(admin) => Some(admin.await.map_err(lost)?),
            None => None,
        };
        Ok((main, admin))
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Opens the store `config` names, migrating a PostgreSQL schema first, and
/// for PostgreSQL also returns the handle the access facts and the audit
/// trail share with it.
pub async fn connect_store(config: &Config) -> Result<(SharedStore, Option<Database>), StartError> {
    match config.store.backend {
        Backend::Postgres => {
            let store = PostgresStore::open(postgres_options(config)?)
                .await
                .map_err(|e| StartError::Store(e.to_string()))?;
            // Every node writes (the audit trail of each read at least).
            if store.is_standby() {
                return Err(StartError::Store(
                    "database_url is a hot standby; nrls writes the audit trail there. Point \
                     database_url at the primary and give the standby as replica_database_url"
                        .into(),
                ));
            }
            let database = store.database();
            Ok((Arc::new(store), Some(database)))
        }
        _ => Ok((open_store(config)?, None)),
    }
}

/// The read replica for consumer reads, if configured. A replica that lacks
/// a schema step the primary just applied is waited for (replication lag),
/// up to 30 s.
async fn connect_replica(config: &Config) -> Result<Option<SharedStore>, StartError> {
    let Some(options) = config.store.replica_options() else {
        return Ok(None);
    };
    if config.store.backend != Backend::Postgres {
        return Err(StartError::Store(
            "replica_database_url needs the postgres backend and a database_url".into(),
        ));
    }
    let patience = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match PostgresStore::open(options.clone()).await {
            // Consumer reads of another primary would serve other data.
            Ok(replica) if !replica.is_standby() => {
                return Err(StartError::Store(
                    "replica_database_url is not a hot standby (pg_is_in_recovery() is false)"
                        .into(),
                ));
            }
            Ok(replica) => {
                tracing::info!("consumer reads go to the read replica");
                return Ok(Some(Arc::new(replica)));
            }
            Err(store::StoreError::Unavailable(why)) if tokio::time::Instant::now() < patience => {
                tracing::info!(%why, "waiting for the read replica");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(StartError::Store(format!("read replica: {e}"))),
        }
    }
}

fn postgres_options(config: &Config) -> Result<PostgresOptions, StartError> {
    config.store.postgres_options().ok_or_else(|| {
        StartError::Store(
            "the postgres backend needs a database URL: --database, NRLS_DATABASE_URL or [store] database_url".into(),
        )
    })
}

/// Opens the store `config` names (also used by `nrls import` and `export`).
/// Prefer [`connect_store`] in async code: for PostgreSQL this blocks the
/// calling thread while a thread of its own connects and migrates.
pub fn open_store(config: &Config) -> Result<SharedStore, StartError> {
    match config.store.backend {
        Backend::Postgres => {
            let options = postgres_options(config)?;
            // Only the migration session lives on this short-lived runtime;
            // the pool connects lazily, on whichever runtime uses it.
            let opened = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| e.to_string())?
                            .block_on(PostgresStore::open(options))
                            .map_err(|e| e.to_string())
                    })
                    .join()
            });
            match opened {
                Ok(Ok(store)) => Ok(Arc::new(store)),
                Ok(Err(e)) => Err(StartError::Store(e)),
                Err(_) => Err(StartError::Store(
                    "opening the postgres store panicked".into(),
                )),
            }
        }
        Backend::Memory => Ok(Arc::new(MemoryStore::new())),
        Backend::Sqlite => {
            let path = config.store.data_dir.join("nrls.db");
            let options = SqliteOptions {
                max_batch: config.store.max_batch,
                read_connections: config.store.read_connections,
            };
            let store =
                SqliteStore::open(&path, options).map_err(|e| StartError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

/// The access-token signing secret: from the configured file, or a random one
/// created in the data folder on first start.
fn signing_secret(config: &Config) -> Result<Vec<u8>, StartError> {
    let path = config
        .auth
        .signing_secret_file
        .clone()
        .unwrap_or_else(|| config.store.data_dir.join("token-signing-secret"));
    if config.store.backend == Backend::Memory && config.auth.signing_secret_file.is_none() {
        return random_secret();
    }
    read_or_create_secret(&path)
}

fn random_secret() -> Result<Vec<u8>, StartError> {
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| StartError::Secret(e.to_string()))?;
    Ok(secret)
}

fn read_or_create_secret(path: &Path) -> Result<Vec<u8>, StartError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        Ok(_) => Err(StartError::Secret(format!(
            "{} holds fewer than 32 bytes",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_secret()?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StartError::Secret(e.to_string()))?;
            }
            write_private(path, &secret)
                .map_err(|e| StartError::Secret(format!("{}: {e}", path.display())))?;
            Ok(secret)
        }
        Err(e) => Err(StartError::Secret(format!("{}: {e}", path.display()))),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
