//! The flags that say which configuration and store a command uses: the
//! same for `nrls serve`, `import`, `export` and `generate`, so each flag
//! and `NRLS_*` variable means one thing everywhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use domain::OdsCode;
use store::SharedStore;

use crate::config::{Backend, Config};

/// The configuration file, and the store flags that override it.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "NRLS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the embedded store and generated secrets.
    #[arg(long, env = "NRLS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage backend.
    #[arg(long, env = "NRLS_STORE", value_enum)]
    pub store: Option<Backend>,
    /// PostgreSQL URL to store pointers in; implies `--store postgres`.
    #[arg(long = "database", env = "NRLS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// The configuration file (or the defaults) with these flags applied.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.store.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            config.store.database_url = Some(url.clone());
            config.store.backend = Backend::Postgres;
        }
        if let Some(backend) = self.store {
            config.store.backend = backend;
        }
        Ok(config)
    }

    /// Opens the configured store.
    pub fn open(&self) -> Result<SharedStore, String> {
        let config = self.config()?;
        crate::app::open_store(&config).map_err(|e| e.to_string())
    }
}

/// What a command that reads every stored pointer works on: the store, the
/// custodian it is limited to (if any), and where its lines go (`-` is
/// standard output).
pub struct PointerScan {
    pub store: SharedStore,
    pub custodian: Option<OdsCode>,
    pub out: Box<dyn Write>,
}

impl PointerScan {
    pub fn open(
        store: &StoreArgs,
        custodian: Option<&str>,
        output: &Path,
    ) -> Result<PointerScan, String> {
        let custodian = match custodian {
            None => None,
            Some(text) => Some(OdsCode::parse(text).ok_or(format!("{text} is not an ODS code"))?),
        };
        let store = store.open()?;
        let out: Box<dyn Write> = if output.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            let file =
                std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
            Box::new(file)
        };
        Ok(PointerScan {
            store,
            custodian,
            out,
        })
    }
}
