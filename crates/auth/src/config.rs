//! Application onboarding, as written by an operator in the `[[apps]]` tables
//! of the server's TOML file. Only shape is checked here; meaning (ODS codes,
//! pointer types, keys) is checked by [`crate::registry::AppRegistry::from_configs`]
//! so every error can name the app it belongs to.

use serde::{Deserialize, Serialize};

/// One onboarded application (an OAuth client).
///
/// ```toml
/// [[apps]]
/// client_id = "demo-consumer"
/// name = "Demo ambulance service"
/// jwks = { keys = [ { kty = "EC", crv = "P-384", kid = "k1", x = "...", y = "..." } ] }
/// # or: jwks_url = "http://app.example/jwks.json"
/// rate_limit_per_second = 50
/// requires_user_identity = false
/// [[apps.organisations]]
/// ods = "X26"
/// roles = ["consumer"]
/// pointer_types = ["http://snomed.info/sct|736253002"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub client_id: String,
    pub name: String,
    /// An inline JWK set (`{ keys = [...] }`) of the app's public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Where the app publishes its JWK set: `https://` (trusted as
    /// `[outbound_tls]` says) or `http://`; no credentials in the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub organisations: Vec<OrganisationConfig>,
    /// Carried for the HTTP layer, which enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<u32>,
    /// Carried for the HTTP layer, which enforces it.
    #[serde(default)]
    pub requires_user_identity: bool,
}

/// What the app may do on behalf of one organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganisationConfig {
    pub ods: String,
    /// `producer` and/or `consumer`.
    pub roles: Vec<String>,
    /// `system|code` entries, as in NRL permission files.
    pub pointer_types: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        apps: Vec<AppConfig>,
    }

    #[test]
    fn reads_the_documented_toml() {
        let text = r#"
            [[apps]]
            client_id = "demo-consumer"
            name = "Demo ambulance service"
            jwks = { keys = [ { kty = "EC", crv = "P-384", kid = "k1", x = "AA", y = "BB" } ] }
            rate_limit_per_second = 50
            [[apps.organisations]]
            ods = "X26"
            roles = ["consumer"]
            pointer_types = ["http://snomed.info/sct|736253002"]

            [[apps]]
            client_id = "remote"
            name = "Remote keys"
            jwks_url = "http://127.0.0.1:9/jwks.json"
            requires_user_identity = true
        "#;
        let file: File = toml::from_str(text).unwrap();
        let first = &file.apps[0];
        assert_eq!(first.client_id, "demo-consumer");
        assert_eq!(first.jwks.as_ref().unwrap()["keys"][0]["crv"], "P-384");
        assert_eq!(first.rate_limit_per_second, Some(50));
        assert!(!first.requires_user_identity);
        assert_eq!(first.organisations[0].roles, vec!["consumer".to_owned()]);
        assert!(file.apps[1].requires_user_identity);
        assert!(file.apps[1].organisations.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"
            [[apps]]
            client_id = "a"
            name = "A"
            jwks_uri = "http://x/jwks.json"
        "#;
        let err = toml::from_str::<File>(text).err().unwrap().to_string();
        assert!(err.contains("jwks_uri"), "{err}");
    }
}
