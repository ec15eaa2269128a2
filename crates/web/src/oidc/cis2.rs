//! NHS CIS2 Authentication: the scopes to ask for and the claims mapper that
//! turns verified claims into a signed-in user with RBAC role profiles.
//!
//! CIS2 puts the roles in `nhsid_nrbac_roles` (userinfo with the
//! `nationalrbacaccess` scope; some set-ups also in the ID token): each with
//! `person_roleid`, `org_code` (ODS), `role_code`, `role_name` and
//! `activity_codes`. `selected_roleid`, when CIS2 has the user choose at
//! its end, preselects one.

use domain::OdsCode;
use serde_json::{Map, Value};

use super::VerifiedLogin;
use crate::session::data::{RoleProfile, SignedInUser};

/// What the viewer asks CIS2 for.
pub const SCOPES: &[&str] = &["openid", "profile", "nationalrbacaccess"];

/// Why the claims cannot make a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cis2Problem {
    #[error("the user has no RBAC role profile nrls can use")]
    NoRole,
    #[error("the token has no subject")]
    NoSubject,
}

fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn role(entry: &Value) -> Option<RoleProfile> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    // A role without an id or a valid ODS code cannot be acted in.
    let org = OdsCode::parse(&field("org_code")?)?;
    Some(RoleProfile {
        person_role_id: field("person_roleid")?,
        org: org.as_str().to_owned(),
        org_name: field("org_name"),
        role_code: field("role_code"),
        role_name: field("role_name"),
        activity_codes: entry
            .get("activity_codes")
            .and_then(Value::as_array)
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The signed-in user the claims describe. One role is chosen at once;
/// several wait for the user to pick (unless `selected_roleid` names one).
pub fn user(issuer: &str, login: &VerifiedLogin) -> Result<SignedInUser, Cis2Problem> {
    let claims = &login.claims;
    let person_id = text(claims, "sub").ok_or(Cis2Problem::NoSubject)?;
    let roles: Vec<RoleProfile> = claims
        .get("nhsid_nrbac_roles")
        .and_then(Value::as_array)
        .map(|entries| entries.iter().filter_map(role).collect())
        .unwrap_or_default();
    if roles.is_empty() {
        return Err(Cis2Problem::NoRole);
    }
    let name = text(claims, "name")
        .or_else(|| {
            let given = text(claims, "given_name").unwrap_or_default();
            let family = text(claims, "family_name").unwrap_or_default();
            Some(format!("{given} {family}").trim().to_owned()).filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| person_id.clone());
    let preselected =
        text(claims, "selected_roleid").filter(|id| roles.iter().any(|r| &r.person_role_id == id));
    let selected = match (&preselected, roles.as_slice()) {
        (Some(id), _) => Some(id.clone()),
        (None, [only]) => Some(only.person_role_id.clone()),
        (None, _) => None,
    };
    Ok(SignedInUser {
        issuer: issuer.to_owned(),
        person_id,
        name,
        roles,
        selected,
        expires_at: login.expires_at,
        id_token: Some(login.id_token.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn login(claims: Value) -> VerifiedLogin {
        VerifiedLogin {
            claims: claims.as_object().unwrap().clone(),
            id_token: "t".into(),
            expires_at: 10,
        }
    }

    #[test]
    fn roles_are_read_and_bad_ones_skipped() {
        let user = user(
            "https://cis2",
            &login(json!({
                "sub": "555", "name": "Dr A",
                "nhsid_nrbac_roles": [
                    {"person_roleid": "r1", "org_code": "rr8", "role_code": "S0030:G0100:R0570", "activity_codes": ["B0264"]},
                    {"person_roleid": "", "org_code": "RR8"},
                    {"person_roleid": "r3", "org_code": "not an ods code!"},
                ]
            })),
        )
        .unwrap();
        assert_eq!(user.roles.len(), 1);
        assert_eq!(user.roles[0].org, "RR8");
        assert_eq!(user.selected.as_deref(), Some("r1"));
        assert_eq!(user.roles[0].activity_codes, vec!["B0264"]);
    }

    #[test]
    fn several_roles_wait_for_a_choice_unless_preselected() {
        let roles = json!([
            {"person_roleid": "r1", "org_code": "RR8"},
            {"person_roleid": "r2", "org_code": "RX9"},
        ]);
        let waiting = user("i", &login(json!({"sub": "1", "nhsid_nrbac_roles": roles}))).unwrap();
        assert_eq!(waiting.selected, None);
        let chosen = user(
            "i",
            &login(json!({"sub": "1", "nhsid_nrbac_roles": roles, "selected_roleid": "r2"})),
        )
        .unwrap();
        assert_eq!(chosen.selected.as_deref(), Some("r2"));
        assert_eq!(
            user("i", &login(json!({"sub": "1"}))).unwrap_err(),
            Cis2Problem::NoRole
        );
    }
}
