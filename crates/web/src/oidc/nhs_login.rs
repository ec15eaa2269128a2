//! NHS login: what nrls asks for and the claims mapper that turns verified
//! claims into a signed-in patient.
//!
//! NHS login states the identity it proved in the ID token: `vot` (the
//! vector of trust achieved, e.g. `P9.Cp.Cd`), `identity_proofing_level`
//! (`P0`, `P5` or `P9`) and, for P9 only, `nhs_number`. Record data needs
//! both `vot` starting with `P9.` and `identity_proofing_level` `P9`, and
//! an NHS number whose Modulus 11 check digit holds; anything less signs
//! the patient in with no access to data (they are shown how to prove who
//! they are).

use domain::NhsNumber;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::VerifiedLogin;

/// What the patient pages ask NHS login for.
pub const SCOPES: &[&str] = &["openid", "profile"];

/// The vectors of trust requested (`vtr`): P9 with any of NHS login's
/// authentication strengths a patient can have.
pub const VECTORS_OF_TRUST: &str = r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]"#;

/// Why the claims cannot make a patient at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsLoginProblem {
    #[error("the token has no subject")]
    NoSubject,
    #[error("the token claims P9 but its NHS number is missing or fails the check digit")]
    BadNhsNumber,
}

/// How well NHS login proved who the patient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proofing {
    /// High level (P9, with a vector of trust at P9): may see their records.
    P9,
    /// Anything lower (P0, P5) or inconsistent: signed in, no data.
    Lower,
}

/// A patient signed in with NHS login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedInPatient {
    pub issuer: String,
    /// NHS login's `sub`.
    pub subject: String,
    pub proofing: Proofing,
    /// Only for P9: the Mod-11-checked NHS number. Never set below P9.
    pub nhs_number: Option<String>,
    /// The level NHS login stated, for the explanation page ("P5").
    pub stated_level: String,
    pub given_name: Option<String>,
    /// Unix seconds: the ID token's expiry.
    pub expires_at: i64,
    /// Sent back as `id_token_hint` at sign-out.
    pub id_token: Option<String>,
}

impl SignedInPatient {
    /// The NHS number this session may see, only at P9.
    pub fn verified_nhs_number(&self) -> Option<NhsNumber> {
        if self.proofing != Proofing::P9 {
            return None;
        }
        NhsNumber::parse(self.nhs_number.as_deref()?).ok()
    }
}

fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `vot` is a P9 vector: its first component is `P9` (`P9.Cp.Cd`, `P9.Cm`).
fn p9_vector(vot: Option<&str>) -> bool {
    vot.is_some_and(|v| v.split('.').next() == Some("P9"))
}

/// The patient the claims describe.
pub fn patient(issuer: &str, login: &VerifiedLogin) -> Result<SignedInPatient, NhsLoginProblem> {
    let claims = &login.claims;
    let subject = text(claims, "sub").ok_or(NhsLoginProblem::NoSubject)?;
    let level = text(claims, "identity_proofing_level").unwrap_or_else(|| "P0".to_owned());
    let vot = text(claims, "vot");
    let p9 = level == "P9" && p9_vector(vot.as_deref());
    let nhs_number = if p9 {
        // A P9 identity whose NHS number is unusable is refused outright:
        // it is NHS login's error, not the patient's proofing level.
        let number = text(claims, "nhs_number").ok_or(NhsLoginProblem::BadNhsNumber)?;
        let parsed = NhsNumber::parse(&number).map_err(|_| NhsLoginProblem::BadNhsNumber)?;
        Some(parsed.to_string())
    } else {
        None
    };
    Ok(SignedInPatient {
        issuer: issuer.to_owned(),
        subject,
        proofing: if p9 { Proofing::P9 } else { Proofing::Lower },
        nhs_number,
        stated_level: level,
        given_name: text(claims, "given_name"),
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
    fn p9_with_a_p9_vector_and_a_valid_nhs_number_may_see_data() {
        let p = patient(
            "i",
            &login(json!({"sub": "s", "identity_proofing_level": "P9",
                "vot": "P9.Cp.Cd", "nhs_number": "9990000018"})),
        )
        .unwrap();
        assert_eq!(p.proofing, Proofing::P9);
        assert_eq!(p.verified_nhs_number().unwrap().to_string(), "9990000018");
    }

    #[test]
    fn p5_p0_or_a_lower_vector_see_no_data_even_with_an_nhs_number() {
        for (level, vot) in [("P5", "P5.Cp.Cd"), ("P0", "P0.Cp.Cd"), ("P9", "P5.Cp.Cd")] {
            let p = patient(
                "i",
                &login(json!({"sub": "s", "identity_proofing_level": level,
                    "vot": vot, "nhs_number": "9990000018"})),
            )
            .unwrap();
            assert_eq!(p.proofing, Proofing::Lower, "{level} {vot}");
            assert!(p.nhs_number.is_none() && p.verified_nhs_number().is_none());
        }
        let none = patient("i", &login(json!({"sub": "s"}))).unwrap();
        assert_eq!(none.proofing, Proofing::Lower);
        assert_eq!(none.stated_level, "P0");
    }

    #[test]
    fn a_p9_nhs_number_failing_mod_11_is_refused() {
        let bad = patient(
            "i",
            &login(json!({"sub": "s", "identity_proofing_level": "P9",
                "vot": "P9.Cm", "nhs_number": "9990000019"})),
        );
        assert_eq!(bad.unwrap_err(), NhsLoginProblem::BadNhsNumber);
        assert!(p9_vector(Some("P9.Cm")) && !p9_vector(Some("P90.Cm")) && !p9_vector(None));
    }
}
