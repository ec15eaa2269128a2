//! `[viewer]`: the clinician viewer's sign-in and session settings.
//!
//! ```toml
//! [viewer]
//! issuer = "https://am.nhsidentity.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare"
//! client_id = "nrls-viewer"
//! key_file = "/etc/nrls/viewer-signing-key.pem"   # RSA (RS512) or EC P-384 (ES384), PKCS#8 PEM
//! key_id = "viewer-1"                             # the kid of its public JWK at CIS2
//! redirect_url = "https://nrls.example.nhs.uk/viewer/callback"
//! idle_timeout_minutes = 30
//! absolute_timeout_hours = 12
//! ```
//!
//! The four sign-in settings go together: some without the others is
//! refused at start, naming what is missing. With none, CIS2 sign-in is off
//! (the demo sign-in of `serve --demo` is the only way in, and only there).

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::oidc::{self, ClientSettings, ClientSettingsError, RelyingParty, RpConfig};
use crate::session::SessionSettings;

/// The `[viewer]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewerConfig {
    /// CIS2's issuer URL (its discovery document is under it).
    pub issuer: Option<String>,
    /// nrls's client id at CIS2.
    pub client_id: Option<String>,
    /// The private key the client assertion is signed with (PEM).
    pub key_file: Option<PathBuf>,
    /// The `kid` CIS2 knows the key's public half by.
    pub key_id: String,
    /// `https://<public url>/viewer/callback`, as registered at CIS2.
    pub redirect_url: Option<String>,
    /// Where CIS2 returns the browser after sign-out; default
    /// `<public url>/viewer/signed-out`.
    pub post_logout_redirect_url: Option<String>,
    /// Minutes without a request before a session ends.
    pub idle_timeout_minutes: u64,
    /// Hours after sign-in a session ends whatever happens.
    pub absolute_timeout_hours: u64,
    /// Tolerated clock difference with CIS2, in seconds.
    pub clock_skew_seconds: u64,
}

impl Default for ViewerConfig {
    fn default() -> Self {
        ViewerConfig {
            issuer: None,
            client_id: None,
            key_file: None,
            key_id: "nrls-viewer".to_owned(),
            redirect_url: None,
            post_logout_redirect_url: None,
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
            clock_skew_seconds: 60,
        }
    }
}

/// Why `[viewer]` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewerConfigError {
    #[error(
        "[viewer] is incomplete: {0} missing (issuer, client_id, key_file and redirect_url go together)"
    )]
    Incomplete(String),
    #[error("[viewer] key_file {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("[viewer] {0}")]
    Invalid(String),
}

impl From<ClientSettingsError> for ViewerConfigError {
    fn from(e: ClientSettingsError) -> Self {
        match e {
            ClientSettingsError::Incomplete(missing) => ViewerConfigError::Incomplete(missing),
            ClientSettingsError::Key { path, problem } => ViewerConfigError::Key { path, problem },
        }
    }
}

impl ViewerConfig {
    /// Session settings; `secure` when the public URL is https.
    pub fn sessions(&self, public_url: &str) -> SessionSettings {
        SessionSettings {
            idle: Duration::from_secs(self.idle_timeout_minutes.saturating_mul(60)),
            absolute: Duration::from_secs(self.absolute_timeout_hours.saturating_mul(3600)),
            secure: public_url.starts_with("https://"),
        }
    }

    /// Checks the settings and builds the CIS2 relying party, if configured.
    pub fn relying_party(
        &self,
        public_url: &str,
    ) -> Result<Option<RelyingParty>, ViewerConfigError> {
        let settings = ClientSettings {
            issuer: &self.issuer,
            client_id: &self.client_id,
            key_file: &self.key_file,
            redirect_url: &self.redirect_url,
            key_id: &self.key_id,
        };
        let Some(settings) = settings.complete().map_err(ViewerConfigError::from)? else {
            return Ok(None);
        };
        if self.idle_timeout_minutes == 0 || self.absolute_timeout_hours == 0 {
            return Err(ViewerConfigError::Invalid(
                "idle_timeout_minutes and absolute_timeout_hours must be above 0".into(),
            ));
        }
        let config = RpConfig {
            issuer: settings.issuer,
            client_id: settings.client_id,
            redirect_url: settings.redirect_url,
            post_logout_redirect_url: Some(
                self.post_logout_redirect_url
                    .clone()
                    .unwrap_or_else(|| format!("{public_url}/viewer/signed-out")),
            ),
            key: settings.key,
            scopes: oidc::cis2::SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            extra_params: Vec::new(),
            clock_skew: Duration::from_secs(self.clock_skew_seconds),
            id_token_algs: vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
            ],
            http_timeout: Duration::from_secs(10),
        };
        RelyingParty::new(config)
            .map(Some)
            .map_err(|e| ViewerConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_viewer_section_is_refused_naming_what_is_missing() {
        let config = ViewerConfig {
            issuer: Some("https://cis2.example".into()),
            ..ViewerConfig::default()
        };
        let error = config.relying_party("https://nrls").err().unwrap();
        assert_eq!(
            error,
            ViewerConfigError::Incomplete("client_id, key_file, redirect_url".into())
        );
        // Nothing set: sign-in is off, which is not an error.
        assert!(
            ViewerConfig::default()
                .relying_party("https://nrls")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_missing_key_file_is_refused() {
        let config = ViewerConfig {
            issuer: Some("https://cis2.example".into()),
            client_id: Some("c".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            redirect_url: Some("https://nrls/viewer/callback".into()),
            ..ViewerConfig::default()
        };
        assert!(matches!(
            config.relying_party("https://nrls"),
            Err(ViewerConfigError::Key { .. })
        ));
    }

    #[test]
    fn sessions_are_secure_over_https_only() {
        let config = ViewerConfig::default();
        assert!(config.sessions("https://nrls").secure);
        assert!(!config.sessions("http://127.0.0.1:8080").secure);
        assert_eq!(config.sessions("x").idle, Duration::from_secs(1800));
    }
}
