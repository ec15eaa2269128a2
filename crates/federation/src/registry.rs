//! The source registry: which regional FHIR server holds each custodian's
//! record, how nrls authenticates to it, how long it may take and what it
//! serves. nrls calls registered base URLs and nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auth::{AssertionAlg, SigningKeyPem};
use domain::OdsCode;
use domain::convergence::Section;
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// The resource types a source may be registered for.
pub const RESOURCE_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "Immunization",
    "Encounter",
];

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_resource_types() -> Vec<String> {
    RESOURCE_TYPES.iter().map(|t| (*t).to_owned()).collect()
}

/// One `[[sources]]` table of the configuration (or one admin API body).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// ODS code of the custodian whose pointers lead here.
    pub ods: String,
    /// Shown in the completeness report, e.g. "West Yorkshire ICB shared care record".
    pub name: String,
    /// FHIR R4 base URL, e.g. `http://scr.wy.example:8080/FHIR/R4`.
    pub base_url: String,
    /// Time allowed for this source's whole answer, token included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Resource types the source serves; only these are asked for.
    #[serde(default = "default_resource_types")]
    pub resource_types: Vec<String>,
    #[serde(default)]
    pub auth: SourceAuthConfig,
}

/// How nrls authenticates to a source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceAuthConfig {
    /// No credentials (the demo sources). A struct variant so that unknown
    /// keys next to `kind = "none"` are refused too.
    None {},
    /// OAuth 2.0 client credentials with a signed-JWT client assertion
    /// (RFC 7523), as nrls's own token endpoint expects of its clients.
    ClientCredentials {
        token_url: String,
        client_id: String,
        /// PKCS#8 PEM private key nrls signs assertions with.
        private_key_file: PathBuf,
        kid: String,
        /// ES384 (default), RS384 or PS384.
        #[serde(default = "default_alg")]
        alg: String,
        #[serde(default)]
        scope: Option<String>,
    },
}

impl Default for SourceAuthConfig {
    fn default() -> Self {
        SourceAuthConfig::None {}
    }
}

fn default_alg() -> String {
    "ES384".to_owned()
}

/// Why a source configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("sources[{index}].ods: '{value}' is not an ODS code")]
    Ods { index: usize, value: String },
    #[error("sources[{index}]: custodian {ods} is registered twice")]
    Duplicate { index: usize, ods: String },
    #[error("sources[{index}].{field}: {why}")]
    Url {
        index: usize,
        field: &'static str,
        why: String,
    },
    #[error("sources[{index}].timeout_ms must be from 1 to 60000")]
    Timeout { index: usize },
    #[error("sources[{index}].resource_types: {why}")]
    ResourceTypes { index: usize, why: String },
    #[error("sources[{index}].auth: {why}")]
    Auth { index: usize, why: String },
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct Source {
    pub ods: OdsCode,
    pub name: String,
    /// Base URL without a trailing slash.
    pub base_url: Url,
    pub timeout: Duration,
    /// Served types, in [`RESOURCE_TYPES`] order.
    pub resource_types: Vec<&'static str>,
    pub auth: SourceAuth,
}

/// Validated credentials.
#[derive(Debug, Clone)]
pub enum SourceAuth {
    None,
    ClientCredentials {
        token_url: Url,
        client_id: String,
        key: SigningKeyPem,
        scope: Option<String>,
    },
}

impl Source {
    /// The search URL for one resource type of one patient.
    pub fn search_url(&self, resource_type: &str, nhs_number: &str) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(resource_type);
        }
        url.query_pairs_mut().append_pair(
            "patient:identifier",
            &format!("{}|{nhs_number}", domain::systems::NHS_NUMBER),
        );
        url
    }

    /// True when `url` lies under this source's base URL.
    pub fn contains(&self, url: &Url) -> bool {
        is_within(&self.base_url, url)
    }
}

/// True when `url` has the scheme, host and port of `base` and a path at or
/// under the base path (on a segment boundary), with no credentials. The one
/// check every outbound URL passes before it is called.
pub fn is_within(base: &Url, url: &Url) -> bool {
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    path == base_path
        || path
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Parses and checks an outbound URL from the configuration.
pub fn parse_outbound_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    match url.scheme() {
        // https is verified against the built-in roots and
        // `[outbound_tls] extra_ca_file` (auth::outbound).
        "https" | "http" => {}
        other => return Err(format!("'{text}': scheme '{other}' is not https or http")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{text}' has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "'{text}' carries credentials; use the auth table instead"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("'{text}' must not have a query or fragment"));
    }
    Ok(url)
}

/// Every registered source, by custodian.
#[derive(Debug, Clone, Default)]
pub struct SourceRegistry {
    sources: BTreeMap<OdsCode, Arc<Source>>,
}

impl SourceRegistry {
    /// Validates every table; the first problem is reported with its index.
    pub fn from_configs(configs: &[SourceConfig]) -> Result<SourceRegistry, RegistryError> {
        let mut sources = BTreeMap::new();
        for (index, config) in configs.iter().enumerate() {
            let source = validate(index, config)?;
            if sources.contains_key(&source.ods) {
                return Err(RegistryError::Duplicate {
                    index,
                    ods: source.ods.to_string(),
                });
            }
            sources.insert(source.ods.clone(), Arc::new(source));
        }
        Ok(SourceRegistry { sources })
    }

    pub fn get(&self, ods: &OdsCode) -> Option<&Arc<Source>> {
        self.sources.get(ods)
    }

    /// Every source, sorted by ODS code.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.sources.values()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// True when `url` lies under some registered base URL.
    pub fn is_registered_url(&self, url: &Url) -> bool {
        self.sources.values().any(|s| s.contains(url))
    }
}

fn validate(index: usize, config: &SourceConfig) -> Result<Source, RegistryError> {
    let ods = OdsCode::parse(&config.ods).ok_or_else(|| RegistryError::Ods {
        index,
        value: config.ods.clone(),
    })?;
    let mut base_url = parse_outbound_url(&config.base_url).map_err(|why| RegistryError::Url {
        index,
        field: "base_url",
        why,
    })?;
    let trimmed = base_url.path().trim_end_matches('/').to_owned();
    base_url.set_path(&trimmed);
    if !(1..=60_000).contains(&config.timeout_ms) {
        return Err(RegistryError::Timeout { index });
    }
    if config.resource_types.is_empty() {
        return Err(RegistryError::ResourceTypes {
            index,
            why: "at least one type is needed".into(),
        });
    }
    let mut resource_types = Vec::new();
    for name in &config.resource_types {
        let known = RESOURCE_TYPES.iter().find(|t| **t == name.as_str());
        match known {
            Some(t) => resource_types.push(*t),
            None => {
                return Err(RegistryError::ResourceTypes {
                    index,
                    why: format!(
                        "'{name}' is not a type of any section; use {}",
                        RESOURCE_TYPES.join(", ")
                    ),
                });
            }
        }
    }
    resource_types.sort_by_key(|t| RESOURCE_TYPES.iter().position(|k| k == t));
    resource_types.dedup();
    debug_assert!(
        resource_types
            .iter()
            .all(|t| Section::of_resource_type(t).is_some())
    );
    Ok(Source {
        ods,
        name: config.name.clone(),
        base_url,
        timeout: Duration::from_millis(config.timeout_ms),
        resource_types,
        auth: validate_auth(index, &config.auth)?,
    })
}

fn validate_auth(index: usize, config: &SourceAuthConfig) -> Result<SourceAuth, RegistryError> {
    let SourceAuthConfig::ClientCredentials {
        token_url,
        client_id,
        private_key_file,
        kid,
        alg,
        scope,
    } = config
    else {
        return Ok(SourceAuth::None);
    };
    let bad = |why: String| RegistryError::Auth { index, why };
    let token_url = parse_outbound_url(token_url).map_err(|why| RegistryError::Url {
        index,
        field: "auth.token_url",
        why,
    })?;
    let alg = AssertionAlg::from_name(&alg.to_ascii_uppercase())
        .ok_or_else(|| bad(format!("alg '{alg}' is not ES384, RS384 or PS384")))?;
    let pem = std::fs::read_to_string(private_key_file)
        .map_err(|e| bad(format!("{}: {e}", private_key_file.display())))?;
    if client_id.trim().is_empty() {
        return Err(bad("client_id is empty".into()));
    }
    Ok(SourceAuth::ClientCredentials {
        token_url,
        client_id: client_id.clone(),
        key: SigningKeyPem::new(pem, alg, kid.clone()),
        scope: scope.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ods: &str, base: &str) -> SourceConfig {
        SourceConfig {
            ods: ods.into(),
            name: format!("{ods} record"),
            base_url: base.into(),
            timeout_ms: 1_000,
            resource_types: vec!["Condition".into(), "AllergyIntolerance".into()],
            auth: SourceAuthConfig::None {},
        }
    }

    #[test]
    fn reads_sources_tables_and_refuses_unknown_keys() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            sources: Vec<SourceConfig>,
        }
        let text = r#"
            [[sources]]
            ods = "QWO"
            name = "West Yorkshire"
            base_url = "http://127.0.0.1:9101/FHIR/R4/"

            [[sources]]
            ods = "QE1"
            name = "Lancashire"
            base_url = "http://127.0.0.1:9102/FHIR/R4"
            timeout_ms = 500
            resource_types = ["Immunization"]
            [sources.auth]
            kind = "client-credentials"
            token_url = "http://127.0.0.1:9102/oauth2/token"
            client_id = "nrls"
            private_key_file = "/nonexistent.pem"
            kid = "1"
        "#;
        let file: File = toml::from_str(text).unwrap();
        assert_eq!(file.sources[0].timeout_ms, 2_000);
        assert_eq!(file.sources[0].resource_types.len(), 6);
        assert!(matches!(
            file.sources[1].auth,
            SourceAuthConfig::ClientCredentials { .. }
        ));
        // The key file does not exist: refused, naming the table.
        let err = SourceRegistry::from_configs(&file.sources).unwrap_err();
        assert!(matches!(err, RegistryError::Auth { index: 1, .. }), "{err}");
        let registry = SourceRegistry::from_configs(&file.sources[..1]).unwrap();
        let qwo = registry.get(&OdsCode::parse("QWO").unwrap()).unwrap();
        assert_eq!(qwo.base_url.as_str(), "http://127.0.0.1:9101/FHIR/R4");

        let typo =
            "[[sources]]\nods = \"QWO\"\nname = \"x\"\nbase_url = \"http://a/\"\ntimeout = 5\n";
        assert!(toml::from_str::<File>(typo).is_err());
        let auth_typo = "[[sources]]\nods = \"QWO\"\nname = \"x\"\nbase_url = \"http://a/\"\n[sources.auth]\nkind = \"none\"\nextra = 1\n";
        assert!(toml::from_str::<File>(auth_typo).is_err());
    }

    #[test]
    fn refuses_bad_sources() {
        let cases: &[(SourceConfig, &str)] = &[
            (config("not ods", "http://a"), "ODS"),
            (config("QWO", "ftp://a/fhir"), "scheme"),
            (config("QWO", "https://user:pw@a/fhir"), "credentials"),
            (config("QWO", "http://user:pw@a/fhir"), "credentials"),
            (config("QWO", "http://a/fhir?x=1"), "query"),
            (config("QWO", "not a url"), "not a URL"),
            (
                SourceConfig {
                    timeout_ms: 0,
                    ..config("QWO", "http://a")
                },
                "timeout",
            ),
            (
                SourceConfig {
                    resource_types: vec!["Observation".into()],
                    ..config("QWO", "http://a")
                },
                "Observation",
            ),
        ];
        assert!(SourceRegistry::from_configs(&[config("QWO", "https://a/fhir")]).is_ok());
        for (c, expected) in cases {
            let err = SourceRegistry::from_configs(std::slice::from_ref(c))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let twice = [config("QWO", "http://a"), config("qwo", "http://b")];
        assert!(matches!(
            SourceRegistry::from_configs(&twice),
            Err(RegistryError::Duplicate { index: 1, .. })
        ));
    }

    #[test]
    fn only_urls_under_a_base_are_within_it() {
        let base = Url::parse("http://scr.example:8080/FHIR/R4").unwrap();
        let cases = [
            ("http://scr.example:8080/FHIR/R4", true),
            ("http://scr.example:8080/FHIR/R4/Condition?x=1", true),
            ("http://scr.example:8080/FHIR/R4/../../admin", false),
            ("http://scr.example:8080/FHIR/R4x/Condition", false),
            ("http://scr.example:8081/FHIR/R4/Condition", false),
            ("http://scr.example/FHIR/R4/Condition", false),
            ("http://other.example:8080/FHIR/R4/Condition", false),
            ("http://u:p@scr.example:8080/FHIR/R4/Condition", false),
            ("http://169.254.169.254/latest/meta-data", false),
            ("https://scr.example:8080/FHIR/R4/Condition", false),
        ];
        for (url, expected) in cases {
            assert_eq!(
                is_within(&base, &Url::parse(url).unwrap()),
                expected,
                "{url}"
            );
        }
        let source = validate(0, &config("QWO", "http://scr.example:8080/FHIR/R4/")).unwrap();
        let search = source.search_url("Condition", "9000000009");
        assert_eq!(
            search.as_str(),
            "http://scr.example:8080/FHIR/R4/Condition?patient%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9000000009"
        );
        assert!(source.contains(&search));
        assert_eq!(source.resource_types, ["AllergyIntolerance", "Condition"]);
    }
}
