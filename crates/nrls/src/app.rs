//! Wiring: builds the store, the authenticator and the HTTP service from a
//! [`Config`], binds the listener (port 0 in tests) and serves until stopped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use api::{ApiSettings, AppState};
use auth::{AppRegistry, Authenticator, TokenSettings};
use domain::search::SearchLimits;
use store::SharedStore;
use store::memory::MemoryStore;
use store::sqlite::{SqliteOptions, SqliteStore};
use tokio::net::TcpListener;

use crate::config::{Backend, Config};
use crate::demo;

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
    #[error("demo data: {0}")]
    Demo(String),
}

/// A bound, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pub port: u16,
    pub public_url: String,
    pub store: SharedStore,
}

impl Application {
    /// Builds everything; with `demo`, adds the demo apps and seeds demo data.
    pub async fn build(mut config: Config, demo_mode: bool) -> Result<Application, StartError> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
        if config.server.listen.port() == 0 && config.server.public_url.is_none() {
            config.server.public_url = Some(format!("http://{local}"));
        }
        let public_url = config.public_url();
        let store = open_store(&config)?;
        if demo_mode {
            config.apps.extend(demo::apps());
            let created = demo::seed(store.as_ref()).await.map_err(StartError::Demo)?;
            tracing::info!(created, "demo data seeded");
        }
        let registry =
            AppRegistry::from_configs(&config.apps).map_err(|e| StartError::Apps(e.to_string()))?;
        let mut settings = TokenSettings::new(
            public_url.clone(),
            format!("{public_url}/oauth2/token"),
            signing_secret(&config)?,
        );
        settings.access_token_lifetime =
            Duration::from_secs(config.auth.access_token_lifetime_seconds);
        let authenticator = Arc::new(
            Authenticator::new(Arc::new(registry), settings)
                .map_err(|e| StartError::Apps(e.to_string()))?,
        );
        let api_settings = ApiSettings {
            public_url: public_url.clone(),
            search_limits: SearchLimits {
                default_count: config.search.default_count,
                max_count: config.search.max_count,
            },
            body_limit: config.server.body_limit_bytes,
            gateway_mode: config.server.gateway_mode,
        };
        let router = api::router(AppState::new(store.clone(), authenticator, api_settings));
        Ok(Application {
            listener,
            router,
            port: local.port(),
            public_url,
            store,
        })
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn open_store(config: &Config) -> Result<SharedStore, StartError> {
    match config.store.backend {
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
