//! The form fields of a client-credentials token request (RFC 6749 §4.4 with
//! RFC 7523 client authentication), checked before any cryptography.

use crate::error::{RequestProblem, TokenError};

pub(crate) const GRANT_TYPE: &str = "client_credentials";
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Far above any honest RS384/ES384 assertion (~1 KiB), far below a DoS.
const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// The parameters we use; RFC 6749 §3.2 says to ignore all others (`scope`
/// included: access is decided by the app's onboarding, not by the request).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TokenRequest<'a> {
    pub assertion: &'a str,
    /// Optional; when sent it must match the assertion's issuer.
    pub client_id: Option<&'a str>,
}

impl<'a> TokenRequest<'a> {
    pub(crate) fn parse(form: &'a [(String, String)]) -> Result<TokenRequest<'a>, TokenError> {
        let field = |name: &'static str| -> Result<Option<&'a str>, TokenError> {
            let mut values = form
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let first = values.next();
            // RFC 6749 §3.2: parameters MUST NOT be included more than once.
            if values.next().is_some() {
                return Err(TokenError::InvalidRequest(
                    RequestProblem::DuplicateParameter(name),
                ));
            }
            Ok(first.filter(|v| !v.is_empty()))
        };
        let required = |name: &'static str| {
            field(name)?.ok_or(TokenError::InvalidRequest(
                RequestProblem::MissingParameter(name),
            ))
        };
        let grant_type = required("grant_type")?;
        let assertion_type = required("client_assertion_type")?;
        let assertion = required("client_assertion")?;
        let client_id = field("client_id")?;
        if grant_type != GRANT_TYPE {
            return Err(TokenError::UnsupportedGrantType);
        }
        if assertion_type != ASSERTION_TYPE {
            return Err(TokenError::InvalidRequest(
                RequestProblem::WrongAssertionType,
            ));
        }
        if assertion.len() > MAX_ASSERTION_LEN {
            return Err(TokenError::InvalidRequest(RequestProblem::AssertionTooLong));
        }
        Ok(TokenRequest {
            assertion,
            client_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> Vec<(String, String)> {
        form(&[
            ("grant_type", GRANT_TYPE),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", "a.b.c"),
            ("scope", "ignored"),
        ])
    }

    #[test]
    fn accepts_a_complete_request() {
        let fields = good();
        let request = TokenRequest::parse(&fields).unwrap();
        assert_eq!(
            request,
            TokenRequest {
                assertion: "a.b.c",
                client_id: None
            }
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |f: Vec<(String, String)>| TokenRequest::parse(&f).unwrap_err();
        let mut missing = good();
        missing.retain(|(k, _)| k != "client_assertion");
        assert_eq!(
            err(missing),
            TokenError::InvalidRequest(RequestProblem::MissingParameter("client_assertion"))
        );

        let mut empty = good();
        empty[0].1.clear();
        assert_eq!(
            err(empty),
            TokenError::InvalidRequest(RequestProblem::MissingParameter("grant_type"))
        );

        let mut grant = good();
        grant[0].1 = "authorization_code".into();
        let grant_err = err(grant);
        assert_eq!(grant_err, TokenError::UnsupportedGrantType);
        assert_eq!(
            (grant_err.oauth_code(), grant_err.http_status()),
            ("unsupported_grant_type", 400)
        );

        let mut kind = good();
        kind[1].1 = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into();
        assert_eq!(
            err(kind),
            TokenError::InvalidRequest(RequestProblem::WrongAssertionType)
        );

        let mut twice = good();
        twice.push(("client_assertion".into(), "x.y.z".into()));
        assert_eq!(
            err(twice),
            TokenError::InvalidRequest(RequestProblem::DuplicateParameter("client_assertion"))
        );

        let mut long = good();
        long[2].1 = "a".repeat(MAX_ASSERTION_LEN + 1);
        assert_eq!(
            err(long),
            TokenError::InvalidRequest(RequestProblem::AssertionTooLong)
        );

        assert_eq!(err(Vec::new()).http_status(), 400);
    }
}
