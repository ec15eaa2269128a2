//! Rules on `content[]` and `context`: where the record is and how to fetch it.

use fhir::{Content, DocumentReference, Extension};

use crate::issue::{ErrorCode, Issue, IssueType};
use crate::systems::{
    CONTENT_STABILITY, CONTENT_STABILITY_EXT, FORMAT_CODE, FORMAT_CODES, RETRIEVAL_CODES,
    RETRIEVAL_MECHANISM, RETRIEVAL_MECHANISM_EXT, SPINE_ASID, STABILITY_CODES,
};

pub(super) fn check(doc: &DocumentReference, issues: &mut Vec<Issue>) {
    let contents = doc.content.as_deref().unwrap_or_default();
    if contents.is_empty() {
        issues.push(Issue::required("DocumentReference.content"));
    }
    let mut needs_asid = false;
    for (i, content) in contents.iter().enumerate() {
        needs_asid |= check_content(content, &format!("DocumentReference.content[{i}]"), issues);
    }
    check_context(doc, needs_asid, issues);
}

/// Checks one content entry; returns true when its URL is an `ssp://` URL.
fn check_content(content: &Content, path: &str, issues: &mut Vec<Issue>) -> bool {
    let mut is_ssp = false;
    match content.attachment.as_ref() {
        None => issues.push(Issue::required(format!("{path}.attachment"))),
        Some(attachment) => {
            if attachment.data.is_some() {
                issues.push(Issue::invalid(
                    format!("{path}.attachment.data"),
                    "pointers must not embed the document: remove attachment.data and give attachment.url",
                ));
            }
            match attachment.url.as_deref() {
                None | Some("") => issues.push(Issue::required(format!("{path}.attachment.url"))),
                Some(url) => {
                    is_ssp = url.starts_with("ssp://");
                    if !is_ssp && !url.starts_with("https://") && !url.starts_with("http://") {
                        issues.push(Issue::invalid(
                            format!("{path}.attachment.url"),
                            "attachment.url must be an ssp://, https:// or http:// URL",
                        ));
                    }
                }
            }
            match attachment.content_type.as_deref() {
                None => issues.push(Issue::required(format!("{path}.attachment.contentType"))),
                Some(ct) if !is_mime_type(ct) => issues.push(Issue::invalid(
                    format!("{path}.attachment.contentType"),
                    format!("'{ct}' is not a MIME type"),
                )),
                Some(_) => {}
            }
        }
    }
    match content.format.as_ref() {
        None => issues.push(Issue::required(format!("{path}.format"))),
        Some(format) => {
            if format.system.as_deref() != Some(FORMAT_CODE) {
                issues.push(code_system_issue(
                    format!("{path}.format.system"),
                    FORMAT_CODE,
                ));
            } else if !FORMAT_CODES
                .iter()
                .any(|(c, _)| Some(*c) == format.code.as_deref())
            {
                issues.push(code_value_issue(
                    format!("{path}.format.code"),
                    &FORMAT_CODES.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
                ));
            }
        }
    }
    let extensions = content.extension.as_deref().unwrap_or_default();
    let stability = coded_extension(
        extensions,
        path,
        CONTENT_STABILITY_EXT,
        CONTENT_STABILITY,
        STABILITY_CODES,
        issues,
    );
    if stability.is_none() {
        issues.push(Issue::new(
            ErrorCode::InvalidResource,
            IssueType::Required,
            format!("{path}.extension"),
            format!("content must carry the content stability extension ({CONTENT_STABILITY_EXT})"),
        ));
    }
    let mechanism = coded_extension(
        extensions,
        path,
        RETRIEVAL_MECHANISM_EXT,
        RETRIEVAL_MECHANISM,
        RETRIEVAL_CODES,
        issues,
    );
    if mechanism.as_deref() == Some("SSP") && !is_ssp {
        issues.push(Issue::invalid(
            format!("{path}.attachment.url"),
            "content retrieved through the Spine Secure Proxy (SSP) must have an ssp:// URL",
        ));
    }
    is_ssp
}

/// Finds the extension with `url` and checks its single coding. Returns the code
/// when the extension is present (valid or not: its faults are reported here).
fn coded_extension(
    extensions: &[Extension],
    path: &str,
    url: &str,
    system: &str,
    codes: &[&str],
    issues: &mut Vec<Issue>,
) -> Option<String> {
    let mut matching = extensions
        .iter()
        .enumerate()
        .filter(|(_, e)| e.url.as_deref() == Some(url));
    let (i, extension) = matching.next()?;
    let ext_path = format!("{path}.extension[{i}]");
    if matching.next().is_some() {
        issues.push(Issue::invalid(
            ext_path.clone(),
            format!("extension {url} must appear once"),
        ));
    }
    let codings = extension
        .value_codeable_concept
        .as_ref()
        .map(|c| c.codings())
        .unwrap_or_default();
    let [coding] = codings else {
        issues.push(Issue::invalid(
            format!("{ext_path}.valueCodeableConcept.coding"),
            "the extension must have exactly one coding",
        ));
        return Some(String::new());
    };
    if coding.system.as_deref() != Some(system) {
        issues.push(code_system_issue(
            format!("{ext_path}.valueCodeableConcept.coding[0].system"),
            system,
        ));
    } else if !codes.contains(&coding.code.as_deref().unwrap_or_default()) {
        issues.push(code_value_issue(
            format!("{ext_path}.valueCodeableConcept.coding[0].code"),
            codes,
        ));
    }
    Some(coding.code.clone().unwrap_or_default())
}

fn check_context(doc: &DocumentReference, needs_asid: bool, issues: &mut Vec<Issue>) {
    let Some(context) = doc.context.as_ref() else {
        issues.push(Issue::required("DocumentReference.context"));
        return;
    };
    let setting = context
        .practice_setting
        .as_ref()
        .map(|c| c.codings())
        .unwrap_or_default();
    match setting.first() {
        None => issues.push(Issue::required("DocumentReference.context.practiceSetting")),
        Some(c) if c.system.is_none() || c.code.is_none() => issues.push(Issue::required(
            "DocumentReference.context.practiceSetting.coding[0].code",
        )),
        Some(_) => {}
    }
    let asids: Vec<(usize, Option<&str>)> = context
        .related
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.identifier.as_ref().map(|id| (i, id)))
        .filter(|(_, id)| id.system.as_deref() == Some(SPINE_ASID))
        .map(|(i, id)| (i, id.value.as_deref()))
        .collect();
    for (i, value) in &asids {
        let valid = value.is_some_and(|v| v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            issues.push(Issue::new(
                ErrorCode::InvalidIdentifierValue,
                IssueType::Value,
                format!("DocumentReference.context.related[{i}].identifier.value"),
                "an ASID is exactly 12 digits",
            ));
        }
    }
    if needs_asid && asids.len() != 1 {
        issues.push(Issue::new(
            ErrorCode::InvalidResource,
            IssueType::Value,
            "DocumentReference.context.related",
            format!(
                "an ssp:// URL needs exactly one ASID ({SPINE_ASID}) in context.related, found {}",
                asids.len()
            ),
        ));
    }
}

fn is_mime_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    essence
        .split_once('/')
        .is_some_and(|(t, s)| token(t) && token(s))
}

fn code_system_issue(expression: String, system: &str) -> Issue {
    Issue::new(
        ErrorCode::InvalidCodeSystem,
        IssueType::CodeInvalid,
        expression,
        format!("code system must be '{system}'"),
    )
}

fn code_value_issue(expression: String, codes: &[&str]) -> Issue {
    Issue::new(
        ErrorCode::InvalidCodeValue,
        IssueType::CodeInvalid,
        expression,
        format!("code must be one of {}", codes.join(", ")),
    )
}
