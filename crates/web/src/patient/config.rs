//! `[patient_access]`: NHS login sign-in for the patient pages at
//! `/my-record/` (docs/patient-access.md).
//!
//! ```toml
//! [patient_access]
//! issuer = "https://auth.login.nhs.uk"
//! client_id = "nrls-patient"
//! key_file = "/etc/nrls/nhs-login-signing-key.pem"   # RSA, PKCS#8 PEM: NHS login requires RS512
//! key_id = "patient-1"
//! redirect_url = "https://nrls.example.nhs.uk/my-record/callback"
//! ```
//!
//! The four sign-in settings go together: some without the others is
//! refused at start, naming what is missing. With none, the patient pages
//! have no NHS login (only `serve --demo`'s demo sign-in, and only there).

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::oidc::{ClientSettings, ClientSettingsError, RelyingParty, RpConfig, nhs_login};

/// Pointer types (SNOMED CT codes) a patient sees by default: the care
/// plans and records a patient would expect to be told about. Types left
/// out (e.g. the Lloyd George folder, NEWS2 charts, appointments) are
/// operational rather than records about the patient's care choices.
pub const DEFAULT_VISIBLE_TYPES: &[&str] = &[
    "736253002",        // Mental health crisis plan
    "1382601000000107", // ReSPECT form
    "325691000000100",  // Contingency plan
    "736373009",        // End of life care plan
    "861421000000109",  // End of life care coordination summary
    "887701000000100",  // Emergency health care plan
    "736366004",        // Advance care plan
    "735324008",        // Treatment escalation plan
    "2181441000000107", // Personalised care and support plan
    "824321000000109",  // Summary record
    "1515851000000101", // About me
];

/// The `[patient_access]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatientAccessConfig {
    /// NHS login's issuer URL (its discovery document is under it).
    pub issuer: Option<String>,
    /// nrls's client id at NHS login.
    pub client_id: Option<String>,
    /// The RSA private key the client assertion is signed with (PEM).
    pub key_file: Option<PathBuf>,
    /// The `kid` NHS login knows the key's public half by.
    pub key_id: String,
    /// `https://<public url>/my-record/callback`, as registered at NHS login.
    pub redirect_url: Option<String>,
    /// Where NHS login returns the browser after sign-out; default
    /// `<public url>/my-record/signed-out`.
    pub post_logout_redirect_url: Option<String>,
    /// Tolerated clock difference with NHS login, in seconds.
    pub clock_skew_seconds: u64,
    /// Pointer type codes (SNOMED CT) shown to patients.
    pub visible_types: Vec<String>,
}

impl Default for PatientAccessConfig {
    fn default() -> Self {
        PatientAccessConfig {
            issuer: None,
            client_id: None,
            key_file: None,
            key_id: "nrls-patient".to_owned(),
            redirect_url: None,
            post_logout_redirect_url: None,
            clock_skew_seconds: 60,
            visible_types: DEFAULT_VISIBLE_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// Why `[patient_access]` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatientAccessConfigError {
    #[error(
        "[patient_access] is incomplete: {0} missing (issuer, client_id, key_file and redirect_url go together)"
    )]
    Incomplete(String),
    #[error("[patient_access] key_file {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("[patient_access] {0}")]
    Invalid(String),
}

impl From<ClientSettingsError> for PatientAccessConfigError {
    fn from(e: ClientSettingsError) -> Self {
        match e {
            ClientSettingsError::Incomplete(missing) => {
                PatientAccessConfigError::Incomplete(missing)
            }
            ClientSettingsError::Key { path, problem } => {
                PatientAccessConfigError::Key { path, problem }
            }
        }
    }
}

impl PatientAccessConfig {
    /// Checks the settings and builds the NHS login relying party, if configured.
    pub fn relying_party(
        &self,
        public_url: &str,
    ) -> Result<Option<RelyingParty>, PatientAccessConfigError> {
        let settings = ClientSettings {
            issuer: &self.issuer,
            client_id: &self.client_id,
            key_file: &self.key_file,
            redirect_url: &self.redirect_url,
            key_id: &self.key_id,
        };
        let Some(settings) = settings
            .complete()
            .map_err(PatientAccessConfigError::from)?
        else {
            return Ok(None);
        };
        if settings.key.alg != Algorithm::RS512 {
            return Err(PatientAccessConfigError::Key {
                path: self
                    .key_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                problem: "NHS login needs an RSA key (the client assertion is RS512)".into(),
            });
        }
        let config = RpConfig {
            issuer: settings.issuer,
            client_id: settings.client_id,
            redirect_url: settings.redirect_url,
            post_logout_redirect_url: Some(
                self.post_logout_redirect_url
                    .clone()
                    .unwrap_or_else(|| format!("{public_url}/my-record/signed-out")),
            ),
            key: settings.key,
            scopes: nhs_login::SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            extra_params: vec![("vtr".to_owned(), nhs_login::VECTORS_OF_TRUST.to_owned())],
            clock_skew: Duration::from_secs(self.clock_skew_seconds),
            // NHS login signs ID tokens with RS512 and nothing else.
            id_token_algs: vec![Algorithm::RS512],
            http_timeout: Duration::from_secs(10),
        };
        RelyingParty::new(config)
            .map(Some)
            .map_err(|e| PatientAccessConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_patient_access_section_is_refused_naming_what_is_missing() {
        let config = PatientAccessConfig {
            client_id: Some("c".into()),
            ..PatientAccessConfig::default()
        };
        assert_eq!(
            config.relying_party("https://nrls").err().unwrap(),
            PatientAccessConfigError::Incomplete("issuer, key_file, redirect_url".into())
        );
        assert!(
            PatientAccessConfig::default()
                .relying_party("https://nrls")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_missing_key_file_is_refused() {
        let config = PatientAccessConfig {
            issuer: Some("https://auth.login.nhs.uk".into()),
            client_id: Some("c".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            redirect_url: Some("https://nrls/my-record/callback".into()),
            ..PatientAccessConfig::default()
        };
        assert!(matches!(
            config.relying_party("https://nrls"),
            Err(PatientAccessConfigError::Key { .. })
        ));
    }
}
