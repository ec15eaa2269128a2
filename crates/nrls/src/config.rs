//! Configuration: a TOML file (`--config`), overridden by flags and `NRLS_*`
//! environment variables. Unknown keys are errors that name the key and line.

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL clients use; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    pub body_limit_bytes: usize,
    pub gateway_mode: bool,
}

/// Which backend holds pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Folder for the embedded database and generated secrets.
    pub data_dir: PathBuf,
    pub max_batch: usize,
    pub read_connections: usize,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            body_limit_bytes: 1024 * 1024,
            gateway_mode: false,
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
        }
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
        Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let s = &self.search;
        if s.default_count == 0 || s.default_count > s.max_count {
            return Err(ConfigError::Invalid(
                "search.default_count must be between 1 and search.max_count".into(),
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
    fn defaults_are_valid() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
        assert!(Config::parse("[search]\ndefault_count = 0\n").is_err());
    }
}
