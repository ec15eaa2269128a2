//! The onboarded apps, validated once at start-up: who may ask for tokens,
//! with which keys, and what each may do for which organisation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use domain::permissions::TypeSet;
use domain::{Catalogue, OdsCode, Permissions, Role};
use jsonwebtoken::DecodingKey;

use crate::assertion::AssertionAlg;
use crate::config::{AppConfig, OrganisationConfig};
use crate::error::{ConfigError, KeyError};
use crate::keys::KeySet;
use crate::remote_keys::RemoteKeys;

const MAX_CLIENT_ID_LEN: usize = 128;

/// How remote JWK sets are fetched.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// At most one fetch per app per interval, however many unknown `kid`s
    /// arrive; failed fetches count too, so an app whose JWKS endpoint was
    /// down is retried only after the interval. Default 60 s.
    pub jwks_refresh_interval: Duration,
    /// Default 5 s: a token request waits this long at worst.
    pub jwks_fetch_timeout: Duration,
    /// Which servers an `https` JWKS URL may be served by.
    pub tls: crate::OutboundTls,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            jwks_refresh_interval: Duration::from_secs(60),
            jwks_fetch_timeout: Duration::from_secs(5),
            tls: crate::OutboundTls::default(),
        }
    }
}

/// What an app may do for one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationGrant {
    pub producer: bool,
    pub consumer: bool,
    /// Pointer types per role; empty for a role the app does not hold.
    pub permissions: Permissions,
}

impl OrganisationGrant {
    pub fn has_role(&self, role: Role) -> bool {
        match role {
            Role::Producer => self.producer,
            Role::Consumer => self.consumer,
        }
    }

    /// The pointer types the app may use in `role` for this organisation.
    pub fn types(&self, role: Role) -> TypeSet {
        self.permissions.for_role(role)
    }
}

/// One onboarded application.
pub struct App {
    pub client_id: String,
    pub name: String,
    pub organisations: HashMap<OdsCode, OrganisationGrant>,
    pub rate_limit_per_second: Option<u32>,
    pub requires_user_identity: bool,
    inline_keys: KeySet,
    remote_keys: Option<RemoteKeys>,
}

impl App {
    pub fn grant(&self, ods: &OdsCode) -> Option<&OrganisationGrant> {
        self.organisations.get(ods)
    }

    async fn resolve_key(&self, kid: &str, alg: AssertionAlg) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.inline_keys.find(kid) {
            return if key.accepts(alg) {
                Ok(key.decoding_key().clone())
            } else {
                Err(KeyError::AlgorithmMismatch)
            };
        }
        match &self.remote_keys {
            Some(remote) => remote.resolve(kid, alg).await,
            None => Err(KeyError::UnknownKid),
        }
    }
}

// Keys are left out: they are public, but they are noise in a log line.
impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("organisations", &self.organisations)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("requires_user_identity", &self.requires_user_identity)
            .finish_non_exhaustive()
    }
}

/// Every onboarded app by client id. Immutable once built: reloading
/// configuration means building a new registry.
#[derive(Debug, Default)]
pub struct AppRegistry {
    apps: HashMap<String, Arc<App>>,
}

impl AppRegistry {
    /// Validates every app, failing on the first problem with an error that
    /// names the app and the field.
    pub fn from_configs(configs: &[AppConfig]) -> Result<AppRegistry, ConfigError> {
        AppRegistry::from_configs_with(configs, &RegistryOptions::default())
    }

    pub fn from_configs_with(
        configs: &[AppConfig],
        options: &RegistryOptions,
    ) -> Result<AppRegistry, ConfigError> {
        let http = if configs.iter().any(|c| c.jwks_url.is_some()) {
            let client = options
                .tls
                .client_builder()
                .timeout(options.jwks_fetch_timeout)
                .build()
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
            Some(client)
        } else {
            None
        };
        let mut apps = HashMap::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let app = build_app(index, config, options, http.as_ref())?;
            if apps.contains_key(&app.client_id) {
                return Err(ConfigError::DuplicateClientId {
                    client_id: app.client_id,
                });
            }
            apps.insert(app.client_id.clone(), Arc::new(app));
        }
        Ok(AppRegistry { apps })
    }

    pub fn app(&self, client_id: &str) -> Option<Arc<App>> {
        self.apps.get(client_id).cloned()
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.values()
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The key `app` registered under `kid`, usable for `alg`: inline keys
    /// first, then the app's published set (fetched or refreshed as needed).
    pub async fn resolve_key(
        &self,
        app: &App,
        kid: &str,
        alg: AssertionAlg,
    ) -> Result<DecodingKey, KeyError> {
        app.resolve_key(kid, alg).await
    }
}

fn build_app(
    index: usize,
    config: &AppConfig,
    options: &RegistryOptions,
    http: Option<&reqwest::Client>,
) -> Result<App, ConfigError> {
    let client_id = config.client_id.clone();
    // Visible ASCII only: client ids go into logs and cache keys.
    let id_ok = (1..=MAX_CLIENT_ID_LEN).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_graphic());
    if !id_ok {
        return Err(ConfigError::BadClientId { index, client_id });
    }
    if config.name.trim().is_empty() {
        return Err(ConfigError::EmptyField {
            client_id,
            field: "name",
        });
    }
    if config.jwks.is_none() && config.jwks_url.is_none() {
        return Err(ConfigError::NoKeySource { client_id });
    }
    let inline_keys = match &config.jwks {
        Some(value) => KeySet::parse_strict(value).map_err(|problem| ConfigError::Jwks {
            client_id: client_id.clone(),
            problem,
        })?,
        None => KeySet::default(),
    };
    let remote_keys = match (&config.jwks_url, http) {
        (Some(url), Some(http)) => Some(RemoteKeys::new(
            &client_id,
            jwks_url(&client_id, url)?,
            http.clone(),
            options.jwks_refresh_interval,
        )),
        _ => None,
    };
    if config.organisations.is_empty() {
        return Err(ConfigError::NoOrganisations { client_id });
    }
    let mut organisations = HashMap::with_capacity(config.organisations.len());
    for organisation in &config.organisations {
        let (ods, grant) = build_grant(&client_id, organisation)?;
        if organisations.contains_key(&ods) {
            return Err(ConfigError::DuplicateOds {
                client_id,
                ods: ods.to_string(),
            });
        }
        organisations.insert(ods, grant);
    }
    Ok(App {
        client_id,
        name: config.name.clone(),
        organisations,
        rate_limit_per_second: config.rate_limit_per_second,
        requires_user_identity: config.requires_user_identity,
        inline_keys,
        remote_keys,
    })
}

fn jwks_url(client_id: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let problem = |problem: &str| ConfigError::JwksUrl {
        client_id: client_id.to_owned(),
        url: text.to_owned(),
        problem: problem.to_owned(),
    };
    let url = reqwest::Url::parse(text).map_err(|e| problem(&e.to_string()))?;
    // Refused here rather than failing every token request later.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(problem("must not carry credentials"));
    }
    match url.scheme() {
        "https" | "http" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        _ => Err(problem("must be an https (or http) URL with a host")),
    }
}

fn build_grant(
    client_id: &str,
    config: &OrganisationConfig,
) -> Result<(OdsCode, OrganisationGrant), ConfigError> {
    let ods = OdsCode::parse(&config.ods).ok_or_else(|| ConfigError::BadOds {
        client_id: client_id.to_owned(),
        ods: config.ods.clone(),
    })?;
    let at = |ods: &OdsCode| (client_id.to_owned(), ods.to_string());
    let (mut producer, mut consumer) = (false, false);
    for role in &config.roles {
        match role.as_str() {
            "producer" => producer = true,
            "consumer" => consumer = true,
            _ => {
                let (client_id, ods) = at(&ods);
                return Err(ConfigError::UnknownRole {
                    client_id,
                    ods,
                    role: role.clone(),
                });
            }
        }
    }
    if !producer && !consumer {
        let (client_id, ods) = at(&ods);
        return Err(ConfigError::NoRoles { client_id, ods });
    }
    if config.pointer_types.is_empty() {
        let (client_id, ods) = at(&ods);
        return Err(ConfigError::NoPointerTypes { client_id, ods });
    }
    let types = Permissions::type_set(Catalogue::nrl_v3(), &config.pointer_types).map_err(|e| {
        let (client_id, ods) = at(&ods);
        ConfigError::UnknownPointerType {
            client_id,
            ods,
            problem: e.to_string(),
        }
    })?;
    let permissions = Permissions {
        producer: if producer { types } else { TypeSet::EMPTY },
        consumer: if consumer { types } else { TypeSet::EMPTY },
    };
    Ok((
        ods,
        OrganisationGrant {
            producer,
            consumer,
            permissions,
        },
    ))
}

#[cfg(test)]
#[path = "registry/tests.rs"]
mod tests;
