//! Reading codes and statuses out of FHIR JSON without a generated model.

use serde_json::Value;

/// `system|code` of every coding in a CodeableConcept that has both a system
/// and a code, sorted and without repeats. A coding with only a display (or
/// only text) is not a usable code.
pub fn tokens(concept: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|coding| {
            let system = coding.get("system")?.as_str()?.trim();
            let code = coding.get("code")?.as_str()?.trim();
            (!system.is_empty() && !code.is_empty()).then(|| format!("{system}|{code}"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The value of a status-like element as one comparable string: a `code`
/// string as is; a CodeableConcept as its sorted `system|code` tokens (or,
/// without codes, its text). `None` when absent.
pub fn status_value(element: Option<&Value>) -> Option<String> {
    match element? {
        Value::String(s) => Some(s.clone()),
        concept @ Value::Object(_) => {
            let codes = tokens(Some(concept));
            if codes.is_empty() {
                concept
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            } else {
                // Compare on codes alone: a display is presentation, not meaning.
                Some(
                    codes
                        .iter()
                        .map(|t| t.rsplit('|').next().unwrap_or(t))
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }
        }
        _ => None,
    }
}

/// True for a resource its source has marked as entered in error, by `status`
/// or by `verificationStatus` (AllergyIntolerance, Condition).
pub fn is_entered_in_error(resource: &Value) -> bool {
    let status = resource.get("status").and_then(Value::as_str);
    let verification = status_value(resource.get("verificationStatus"));
    status == Some("entered-in-error") || verification.as_deref() == Some("entered-in-error")
}

/// A human label for a resource's main concept, for ordering ties.
pub fn first_token(resource: &Value, element: &str) -> String {
    tokens(resource.get(element))
        .into_iter()
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_codings_with_system_and_code_count() {
        let concept = json!({"coding": [
            {"system": "http://snomed.info/sct", "code": "91936005"},
            {"system": "http://snomed.info/sct", "code": "91936005", "display": "dup"},
            {"code": "no-system"},
            {"system": "urn:x", "code": "  "},
            {"display": "Penicillin"}
        ], "text": "Penicillin"});
        assert_eq!(
            tokens(Some(&concept)),
            vec!["http://snomed.info/sct|91936005"]
        );
        assert!(tokens(Some(&json!({"text": "rash"}))).is_empty());
        assert!(tokens(None).is_empty());
    }

    #[test]
    fn statuses_compare_on_codes() {
        let a = json!({"coding": [{"system": "s", "code": "active", "display": "Active"}]});
        let b = json!({"coding": [{"system": "s", "code": "active", "display": "ACTIVE"}]});
        assert_eq!(status_value(Some(&a)), status_value(Some(&b)));
        assert_eq!(
            status_value(Some(&json!("completed"))).unwrap(),
            "completed"
        );
        assert!(is_entered_in_error(&json!({"status": "entered-in-error"})));
        assert!(is_entered_in_error(&json!({
            "verificationStatus": {"coding": [{"system": "s", "code": "entered-in-error"}]}
        })));
        assert!(!is_entered_in_error(&json!({"status": "active"})));
    }
}
