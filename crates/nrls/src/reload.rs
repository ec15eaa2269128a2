//! Reloading the app registry without a restart (SIGHUP, or `POST /-/reload`
//! on the admin listener). Only the `[[apps]]` tables are re-read: other
//! settings need a restart. The whole file is parsed and every app validated
//! before anything changes, and the swap is atomic, so a request sees the old
//! registry or the new one; a bad file changes nothing and says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::telemetry::Metrics;
use api::ops::{ReloadError, Reloader};
use auth::{AppRegistry, Authenticator};

use crate::config::Config;
use crate::demo;

/// A reloader for the registry read from `source`; with `demo`, the demo
/// apps are added as at start-up.
pub fn reloader(
    source: Option<PathBuf>,
    demo: bool,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
) -> Reloader {
    Arc::new(move || {
        let file = source
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match load_registry(source.as_deref(), demo) {
            Ok(registry) => {
                let apps = auth.reload(registry);
                metrics.reloads().succeeded(apps);
                tracing::info!(%file, apps, "app registry reloaded");
                Ok(apps)
            }
            Err(e) => {
                metrics.reloads().failed();
                tracing::error!(
                    %file,
                    error = %e,
                    "configuration reload rejected; the previous app registry stays in force"
                );
                Err(e)
            }
        }
    })
}

fn load_registry(source: Option<&Path>, demo: bool) -> Result<AppRegistry, ReloadError> {
    let path = source.ok_or_else(|| {
        ReloadError("nrls was started without --config: there is no file to reload".into())
    })?;
    let mut config = Config::load(path).map_err(|e| ReloadError(e.to_string()))?;
    if demo {
        config.apps.extend(demo::apps());
    }
    app_registry(&config).map_err(|e| ReloadError(format!("apps: {e}")))
}

/// The apps of `config`, their `jwks_url` key sets fetched over the
/// configuration's outbound TLS.
pub(crate) fn app_registry(config: &Config) -> Result<AppRegistry, String> {
    let options = auth::RegistryOptions {
        tls: config.outbound_tls().map_err(|e| e.to_string())?,
        ..auth::RegistryOptions::default()
    };
    AppRegistry::from_configs_with(&config.apps, &options).map_err(|e| e.to_string())
}
