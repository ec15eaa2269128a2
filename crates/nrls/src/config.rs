//! Configuration: a TOML file (`--config`), overridden by flags and `NRLS_*`
//! environment variables. Unknown keys are errors that name the key and line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything nrls can be configured with. See docs/configuration.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub search: SearchConfig,
    pub auth: AuthConfig,
    pub apps: Vec<auth::config::AppConfig>,
    /// `[access]`: the direct-care policy (sensitive labels, the activity
    /// codes that may see them, app-only calls). See docs/security.md.
    pub access: domain::access::AccessPolicy,
    /// `[[trusted_issuers]]`: identity providers whose ID tokens, sent in
    /// `NHSD-User-Identity`, name the clinician behind a call.
    pub trusted_issuers: Vec<auth::TrustedIssuerConfig>,
    /// `[admin]`: who may use the admin API.
    pub admin: AdminConfig,
    /// `[federation]`: deadlines and limits of the shared care record fan-out.
    pub federation: federation::FederationConfig,
    /// `[[sources]]`: regional FHIR sources the shared care record may ask,
    /// per custodian ODS code. Only these base URLs are ever fetched.
    pub sources: Vec<federation::SourceConfig>,
    /// `[telemetry]`: OpenTelemetry trace export (OTLP), off by default.
    pub telemetry: TelemetryConfig,
    /// `[audit]`: the audit trail's checkpoint key and interval.
    pub audit: AuditConfig,
    /// `[viewer]`: the clinician viewer's NHS CIS2 sign-in and sessions
    /// (docs/viewer.md). Incomplete sign-in settings are refused at start.
    pub viewer: web::ViewerConfig,
    /// `[patient_access]`: NHS login sign-in for the patient pages at
    /// `/my-record/` (docs/patient-access.md). Incomplete sign-in settings
    /// are refused at start.
    pub patient_access: web::PatientAccessConfig,
    /// `[outbound_tls]`: which servers nrls's own HTTPS calls trust (JWKS,
    /// federated sources, the OTLP collector).
    pub outbound_tls: OutboundTlsConfig,
    /// `[subscriptions]`: delivery of subscription notifications
    /// (docs/subscriptions.md).
    pub subscriptions: SubscriptionsConfig,
    /// The file this configuration was read from, if any: what a reload
    /// (SIGHUP, `POST /-/reload`) reads again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The admin API's callers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Client ids of the apps allowed to call `/admin` (privacy officers'
    /// and service-desk tools). Empty: nobody.
    pub clients: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL clients use; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    pub body_limit_bytes: usize,
    pub gateway_mode: bool,
    /// A second listener for `/metrics`, probes and `POST /-/reload`, kept
    /// off the public one. Unset: `/metrics` is on the main listener and
    /// reload is by SIGHUP only.
    pub admin_listen: Option<SocketAddr>,
    /// After SIGTERM, how long in-flight requests may take to finish before
    /// they are abandoned and the process exits.
    pub shutdown_grace_seconds: u64,
    /// After SIGTERM, how long to keep accepting requests while `/readyz`
    /// fails, so load balancers stop routing here first. 0 on systemd; about
    /// 5 behind a load balancer (Kubernetes).
    pub shutdown_drain_seconds: u64,
    /// PEM certificate chain: with `tls_key`, the main listener speaks HTTPS
    /// (for deployments without a TLS-terminating proxy).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request head (request line and headers) in bytes; larger is 431.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's headers, which is also
    /// how long an idle kept-alive connection stays open.
    pub header_read_timeout_seconds: u64,
    /// How long one request may run before it is answered 503.
    pub request_timeout_seconds: u64,
}

/// Which backend holds pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Memory,
    /// PostgreSQL at `store.database_url`: several nodes may share one database.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Folder for the embedded database and generated secrets.
    pub data_dir: PathBuf,
    pub max_batch: usize,
    pub read_connections: usize,
    /// PostgreSQL URL (`postgres://user@host:5432/db`) for the `postgres`
    /// backend. Holds credentials: prefer `NRLS_DATABASE_URL` to the file.
    pub database_url: Option<String>,
    /// A hot standby of `database_url` for consumer searches and reads;
    /// writes, producers' reads, the audit trail and access facts stay on
    /// `database_url`. Unset: everything goes to `database_url`.
    pub replica_database_url: Option<String>,
    /// Most PostgreSQL connections this node opens (per database).
    pub pool_size: usize,
    /// Longest one PostgreSQL statement may run; each store call gets this
    /// plus one second, pool wait included, before it fails with 503.
    pub statement_timeout_ms: u64,
    /// Longest opening a PostgreSQL connection may take.
    pub connect_timeout_ms: u64,
    /// PEM CA certificate(s) the database server's certificate must chain to
    /// when `database_url` asks for TLS (`sslmode=require`). Unset: the link
    /// is encrypted but the server is not authenticated (libpq's `require`).
    pub database_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub default_count: usize,
    pub max_count: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub access_token_lifetime_seconds: u64,
    /// File holding the secret that signs access tokens; every node of one
    /// deployment must share it. Created with random bytes if missing.
    pub signing_secret_file: Option<PathBuf>,
    /// The longest an `NHSD-User-Identity` ID token may be valid for (from
    /// now, and from its `iat`). Default 43 200 (12 h, a working shift).
    pub max_identity_token_lifetime_seconds: u64,
    /// The oldest an ID token may be (`now - iat`). Default 43 200.
    pub max_identity_token_age_seconds: u64,
}

/// Trust for every outbound HTTPS call: the built-in Mozilla roots, plus
/// the certificates of `extra_ca_file` (a private CA of a regional network,
/// an identity provider or a collector).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundTlsConfig {
    /// PEM CA certificate(s) trusted besides the built-in roots.
    pub extra_ca_file: Option<PathBuf>,
}

impl Config {
    /// The trust of outbound HTTPS, with the extra CA file read and parsed.
    pub fn outbound_tls(&self) -> Result<auth::OutboundTls, ConfigError> {
        auth::OutboundTls::load(self.outbound_tls.extra_ca_file.as_deref())
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// The audit trail. Where it is kept follows `[store]`: beside the pointers
/// (`audit.db` in `data_dir`, or the shared PostgreSQL database).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Ed25519 key that signs checkpoints; created if missing. Default
    /// `<data_dir>/audit-signing-key`. Nodes sharing a PostgreSQL database
    /// share one chain: give them one key file, or pass each node's public
    /// key to `nrls audit verify --public-key`.
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint is signed after this many unsigned records...
    pub checkpoint_records: u64,
    /// ...or when a record has been unsigned this long.
    pub checkpoint_seconds: u64,
    /// Page size of a new embedded `audit.db` (an existing file keeps its
    /// own); `audit::sqlite::DEFAULT_PAGE_SIZE` explains the trade-off.
    pub sqlite_page_size: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let policy = audit::CheckpointPolicy::default();
        AuditConfig {
            signing_key_file: None,
            checkpoint_records: policy.records,
            checkpoint_seconds: policy.seconds,
            sqlite_page_size: audit::sqlite::DEFAULT_PAGE_SIZE,
        }
    }
}

impl AuditConfig {
    /// The checkpoint key's file for a node whose data lives in `data_dir`.
    pub fn key_file(&self, data_dir: &Path) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(audit::sqlite::KEY_FILE_NAME))
    }

    /// When checkpoints are signed (values below 1 count as 1).
    pub fn policy(&self) -> audit::CheckpointPolicy {
        audit::CheckpointPolicy {
            records: self.checkpoint_records.max(1),
            seconds: self.checkpoint_seconds.max(1),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            body_limit_bytes: 1024 * 1024,
            gateway_mode: false,
            admin_listen: None,
            shutdown_grace_seconds: 20,
            shutdown_drain_seconds: 0,
            tls_cert: None,
            tls_key: None,
            max_header_bytes: 64 * 1024,
            header_read_timeout_seconds: 30,
            request_timeout_seconds: 30,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            data_dir: PathBuf::from("nrls-data"),
            max_batch: 256,
            read_connections: 4,
            database_url: None,
            replica_database_url: None,
            pool_size: 16,
            statement_timeout_ms: 5000,
            connect_timeout_ms: 5000,
            database_ca_file: None,
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        let limits = domain::search::SearchLimits::default();
        SearchConfig {
            default_count: limits.default_count,
            max_count: limits.max_count,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_lifetime_seconds: 900,
            signing_secret_file: None,
            max_identity_token_lifetime_seconds: 12 * 3600,
            max_identity_token_age_seconds: 12 * 3600,
        }
    }
}

impl StoreConfig {
    fn check_postgres(&self) -> Result<(), ConfigError> {
        // A missing database_url is reported at start-up, not here: it may
        // come from NRLS_DATABASE_URL, applied after the file is read.
        if self.pool_size == 0 || self.statement_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "store.pool_size, store.statement_timeout_ms and store.connect_timeout_ms must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The PostgreSQL options this configuration names, if it names a database.
    pub fn postgres_options(&self) -> Option<store::postgres::PostgresOptions> {
        self.postgres_options_for(self.database_url.as_ref()?)
    }

    /// The options of the read replica, if one is named.
    pub fn replica_options(&self) -> Option<store::postgres::PostgresOptions> {
        self.postgres_options_for(self.replica_database_url.as_ref()?)
    }

    fn postgres_options_for(&self, url: &str) -> Option<store::postgres::PostgresOptions> {
        Some(store::postgres::PostgresOptions {
            pool_size: self.pool_size,
            statement_timeout: std::time::Duration::from_millis(self.statement_timeout_ms),
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms),
            ca_file: self.database_ca_file.clone(),
            ..store::postgres::PostgresOptions::new(url)
        })
    }
}

/// Subscription delivery (docs/subscriptions.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsConfig {
    /// Hosts an `http` (not `https`) endpoint may name: tests and local demos.
    pub http_allowed_hosts: Vec<String>,
    /// How long an endpoint has to answer one notification, unless the
    /// subscription asks for less (backport-timeout).
    pub timeout_seconds: u32,
    /// The longest time-out a subscription may ask for.
    pub max_timeout_seconds: u32,
    /// Waits before retry 1, 2, 3... of a failed notification; the last repeats.
    pub retry_delays_ms: Vec<u64>,
    /// Total nominal wait after which delivery gives up (subscription `error`).
    pub retry_window_ms: u64,
    /// How often each node looks for new events and due deliveries when
    /// nothing wakes it (its own commits do).
    pub poll_interval_ms: u64,
    /// How long a node holds a subscription it is delivering to before
    /// another node may take it over (it must exceed the time-out).
    pub lease_seconds: u64,
    /// Acknowledged events are kept this many days for `$events`.
    pub event_retention_days: u32,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig {
            http_allowed_hosts: Vec::new(),
            timeout_seconds: 10,
            max_timeout_seconds: 60,
            retry_delays_ms: vec![10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000],
            retry_window_ms: 86_400_000,
            poll_interval_ms: 100,
            lease_seconds: 120,
            event_retention_days: 7,
        }
    }
}

/// OpenTelemetry trace export: one SERVER span per request and one CLIENT
/// span per federated source call, posted as OTLP/JSON to a collector. Off
/// unless `otlp_endpoint` is set. See docs/operations.md "Traces".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318`;
    /// spans are posted to `{otlp_endpoint}/v1/traces`. Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// Extra headers on every export request (a collector's API key).
    pub otlp_headers: BTreeMap<String, String>,
    /// Longest one export request may take; also bounds the flush at shutdown.
    pub otlp_timeout_ms: u64,
    /// Most spans in one export request.
    pub otlp_batch_size: usize,
    /// How often queued spans are sent when no full batch is waiting.
    pub otlp_interval_ms: u64,
    /// Most spans waiting for export; beyond it new spans are dropped (and
    /// counted), never waited for.
    pub otlp_queue_size: usize,
    /// The `service.name` spans are reported under.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    /// The batch, queue and interval defaults are the OpenTelemetry SDK's
    /// batch span processor defaults (512, 2048, 5 s).
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_headers: BTreeMap::new(),
            otlp_timeout_ms: 5_000,
            otlp_batch_size: 512,
            otlp_interval_ms: 5_000,
            otlp_queue_size: 2_048,
            service_name: "nrls".to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// Checks what the file, flags and environment gave.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if let Some(endpoint) = &self.otlp_endpoint {
            match reqwest::Url::parse(endpoint) {
                // A collector's key goes in otlp_headers, never in the URL
                // (which is logged).
                Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                    return invalid(
                        "telemetry.otlp_endpoint must not carry credentials; put a collector's key in otlp_headers".into(),
                    );
                }
                Ok(url)
                    if matches!(url.scheme(), "https" | "http")
                        && url.host_str().is_some_and(|h| !h.is_empty()) => {}
                _ => {
                    return invalid(format!(
                        "telemetry.otlp_endpoint must be an https:// or http:// URL such as https://collector.example:4318, not {endpoint:?}"
                    ));
                }
            }
        }
        for (name, value) in &self.otlp_headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                // The value may be a secret: name the header only.
                return invalid(format!(
                    "telemetry.otlp_headers: {name:?} is not a valid HTTP header name, or its value is not a valid header value"
                ));
            }
        }
        if self.otlp_timeout_ms == 0
            || self.otlp_batch_size == 0
            || self.otlp_interval_ms == 0
            || self.otlp_queue_size < self.otlp_batch_size
        {
            return invalid(
                "telemetry.otlp_timeout_ms, otlp_batch_size and otlp_interval_ms must be at least 1, and otlp_queue_size at least otlp_batch_size".into(),
            );
        }
        if self.service_name.trim().is_empty() {
            return invalid("telemetry.service_name must not be empty".into());
        }
        Ok(())
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file. Errors carry the file, line and key at fault.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key go together: give both or neither".into(),
            ));
        }
        if server.request_timeout_seconds == 0 || server.header_read_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "server.request_timeout_seconds and server.header_read_timeout_seconds must be at least 1".into(),
            ));
        }
        let s = &self.search;
        if s.default_count == 0 || s.default_count > s.max_count {
            return Err(ConfigError::Invalid(
                "search.default_count must be between 1 and search.max_count".into(),
            ));
        }
        // Port 0 (tests) picks a free port per listener, so only a fixed port can clash.
        if self
            .server
            .admin_listen
            .is_some_and(|admin| admin == self.server.listen && admin.port() != 0)
        {
            return Err(ConfigError::Invalid(
                "server.admin_listen must differ from server.listen".into(),
            ));
        }
        if self.server.shutdown_grace_seconds > 3600 || self.server.shutdown_drain_seconds > 300 {
            return Err(ConfigError::Invalid(
                "server.shutdown_grace_seconds is at most 3600 and server.shutdown_drain_seconds at most 300".into(),
            ));
        }
        self.store.check_postgres()?;
        self.telemetry.check()?;
        if !audit::sqlite::is_page_size(self.audit.sqlite_page_size) {
            return Err(ConfigError::Invalid(
                "audit.sqlite_page_size must be a power of two from 512 to 65536".into(),
            ));
        }
        if self.store.max_batch == 0 || self.store.read_connections == 0 {
            return Err(ConfigError::Invalid(
                "store.max_batch and store.read_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The URL clients reach this server at.
    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_key_and_line() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn the_audit_page_size_is_a_power_of_two_sqlite_accepts() {
        assert_eq!(Config::parse("").unwrap().audit.sqlite_page_size, 4096);
        let c = Config::parse("[audit]\nsqlite_page_size = 2048\n").unwrap();
        assert_eq!(c.audit.sqlite_page_size, 2048);
        for bad in [0, 256, 3000, 131_072] {
            let err = Config::parse(&format!("[audit]\nsqlite_page_size = {bad}\n")).unwrap_err();
            assert!(err.contains("audit.sqlite_page_size"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
        assert!(Config::parse("[search]\ndefault_count = 0\n").is_err());
    }

    #[test]
    fn postgres_settings_parse_and_are_checked() {
        let c = Config::parse(
            "[store]\nbackend = \"postgres\"\ndatabase_url = \"postgres://nrls@db/nrls\"\npool_size = 4\nstatement_timeout_ms = 250\n",
        )
        .unwrap();
        assert_eq!(c.store.backend, Backend::Postgres);
        let options = c.store.postgres_options().unwrap();
        assert_eq!(options.pool_size, 4);
        assert_eq!(options.statement_timeout.as_millis(), 250);
        assert_eq!(options.connect_timeout.as_millis(), 5000);
        assert!(Config::parse("[store]\npool_size = 0\n").is_err());
        // The URL may come from the environment after the file is read.
        assert!(Config::parse("[store]\nbackend = \"postgres\"\n").is_ok());
    }

    #[test]
    fn trace_export_is_off_by_default_and_its_settings_are_checked() {
        assert_eq!(Config::parse("").unwrap().telemetry.otlp_endpoint, None);
        let c = Config::parse(
            "[telemetry]\notlp_endpoint = \"http://collector:4318\"\notlp_headers = { \"x-api-key\" = \"k\" }\n",
        )
        .unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        let https = Config::parse("[telemetry]\notlp_endpoint = \"https://collector:4318\"\n");
        assert!(https.is_ok(), "{:?}", https.err());
        let secret = Config::parse("[telemetry]\notlp_endpoint = \"https://k:s@collector:4318\"\n")
            .unwrap_err();
        assert!(secret.contains("credentials"), "{secret}");
        for bad in [
            "otlp_endpoint = \"collector:4318\"",
            "otlp_headers = { \"bad header\" = \"x\" }",
            "otlp_batch_size = 0",
            "otlp_queue_size = 10",
            "service_name = \"\"",
        ] {
            assert!(
                Config::parse(&format!("[telemetry]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
    }
}
