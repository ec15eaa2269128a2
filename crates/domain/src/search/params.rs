//! FHIR search parameters to a [`SearchQuery`]. Unknown or repeated parameters
//! are errors, never silently ignored.

use super::{Cursor, SearchQuery};
use crate::catalogue::Catalogue;
use crate::issue::{ErrorCode, Issue, IssueType};
use crate::permissions::TypeSet;
use crate::systems::{NHS_NUMBER, ODS_CODE, SNOMED};
use crate::{NhsNumber, OdsCode};

/// Who is searching: consumers search any custodian's pointers, producers only
/// their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Consumer = 0,
    Producer = 1,
}

/// Page-size bounds for `_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    pub default_count: usize,
    pub max_count: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            default_count: 50,
            max_count: 500,
        }
    }
}

const CONSUMER_PARAMS: &[&str] = &[
    "subject:identifier",
    "custodian:identifier",
    "type",
    "category",
    "_summary",
    "_count",
    "_cursor",
    "_format",
    "_pretty",
];
const PRODUCER_PARAMS: &[&str] = &[
    "subject:identifier",
    "type",
    "category",
    "_summary",
    "_count",
    "_cursor",
    "_format",
    "_pretty",
];

impl Audience {
    /// The search parameters this audience may use.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            Audience::Consumer => CONSUMER_PARAMS,
            Audience::Producer => PRODUCER_PARAMS,
        }
    }
}

fn param_issue(code: ErrorCode, name: &str, diagnostics: impl Into<String>) -> Issue {
    Issue::new(code, IssueType::Invalid, name, diagnostics)
}

/// Parses search parameters, reporting every problem at once.
pub fn parse<'p>(
    pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
    audience: Audience,
    limits: SearchLimits,
    catalogue: &Catalogue,
) -> Result<SearchQuery, Vec<Issue>> {
    let allowed = audience.parameters();
    let mut issues = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, value) in pairs {
        if name.is_empty() {
            // `?=x` or `?&`: nothing to name as the expression.
            issues.push(Issue::general(
                ErrorCode::InvalidParameter,
                IssueType::Invalid,
                format!(
                    "a search parameter has no name (value '{value}'); use {}",
                    allowed.join(", ")
                ),
            ));
        } else if !allowed.contains(&name) {
            issues.push(param_issue(
                ErrorCode::InvalidParameter,
                name,
                format!(
                    "'{name}' is not a supported search parameter; use {}",
                    allowed.join(", ")
                ),
            ));
        } else if seen.iter().any(|(n, _)| *n == name) {
            issues.push(param_issue(
                ErrorCode::InvalidParameter,
                name,
                format!("'{name}' is given more than once; separate alternatives with commas"),
            ));
        } else {
            seen.push((name, value));
        }
    }
    let get = |name: &str| seen.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);

    let subject = match get("subject:identifier") {
        None => {
            issues.push(param_issue(
                ErrorCode::InvalidParameter,
                "subject:identifier",
                format!("subject:identifier is required, e.g. {NHS_NUMBER}|9999999999"),
            ));
            None
        }
        Some(v) => parse_subject(v, &mut issues),
    };
    let types = get("type").and_then(|v| parse_types(v, catalogue, &mut issues));
    let categories = get("category").and_then(|v| parse_categories(v, catalogue, &mut issues));
    let custodians = get("custodian:identifier").and_then(|v| parse_custodians(v, &mut issues));
    check_format(get("_format"), get("_pretty"), &mut issues);
    let summary_count = match get("_summary") {
        None => false,
        Some("count") => true,
        Some(other) => {
            issues.push(param_issue(
                ErrorCode::InvalidParameter,
                "_summary",
                format!("_summary supports only 'count', not '{other}'"),
            ));
            false
        }
    };
    let count = match get("_count") {
        None => limits.default_count,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=limits.max_count).contains(&n) => n,
            _ => {
                issues.push(param_issue(
                    ErrorCode::InvalidParameter,
                    "_count",
                    format!(
                        "_count must be a whole number from 1 to {}",
                        limits.max_count
                    ),
                ));
                limits.default_count
            }
        },
    };
    let cursor = get("_cursor").and_then(|v| {
        let c = Cursor::decode(v);
        if c.is_none() {
            issues.push(param_issue(
                ErrorCode::InvalidParameter,
                "_cursor",
                "_cursor is not a page cursor issued by this server",
            ));
        }
        c
    });

    let Some(subject) = subject else {
        return Err(issues);
    };
    let query = SearchQuery {
        audience,
        subject,
        types,
        categories,
        custodians,
        count,
        summary_count,
        cursor,
    };
    if let Some(c) = cursor
        && c.fingerprint != query.fingerprint()
    {
        issues.push(param_issue(
                ErrorCode::InvalidParameter,
                "_cursor",
                "_cursor belongs to a search with different filters; repeat the search from the first page",
            ));
    }
    if issues.is_empty() {
        Ok(query)
    } else {
        Err(issues)
    }
}

/// `_format` and `_pretty` are accepted as FHIR clients send them (HAPI's
/// generic client always sends `_format`); the answer is FHIR JSON either way,
/// so anything but a JSON format is refused rather than ignored.
fn check_format(format: Option<&str>, pretty: Option<&str>, issues: &mut Vec<Issue>) {
    const JSON_FORMATS: [&str; 4] = [
        "json",
        "application/json",
        "application/fhir+json",
        "application/json+fhir",
    ];
    if let Some(format) = format {
        let essence = format.split(';').next().unwrap_or_default().trim();
        if !JSON_FORMATS.iter().any(|f| f.eq_ignore_ascii_case(essence)) {
            issues.push(param_issue(
                ErrorCode::InvalidParameter,
                "_format",
                format!("nrls answers FHIR JSON only: _format must be json or application/fhir+json, not '{format}'"),
            ));
        }
    }
    if let Some(pretty) = pretty
        && pretty != "true"
        && pretty != "false"
    {
        issues.push(param_issue(
            ErrorCode::InvalidParameter,
            "_pretty",
            format!("_pretty must be true or false, not '{pretty}'"),
        ));
    }
}

fn parse_subject(value: &str, issues: &mut Vec<Issue>) -> Option<NhsNumber> {
    let name = "subject:identifier";
    let Some((system, number)) = value.split_once('|') else {
        issues.push(param_issue(
            ErrorCode::InvalidParameter,
            name,
            format!("subject:identifier must be '{NHS_NUMBER}|<NHS number>'"),
        ));
        return None;
    };
    if system != NHS_NUMBER {
        issues.push(param_issue(
            ErrorCode::InvalidIdentifierSystem,
            name,
            format!("subject:identifier system must be '{NHS_NUMBER}', not '{system}'"),
        ));
        return None;
    }
    match NhsNumber::parse(number) {
        Ok(n) => Some(n),
        Err(e) => {
            issues.push(param_issue(
                ErrorCode::InvalidNhsNumber,
                name,
                format!("'{number}' is not a valid NHS number: {e}"),
            ));
            None
        }
    }
}

fn parse_types(value: &str, catalogue: &Catalogue, issues: &mut Vec<Issue>) -> Option<TypeSet> {
    let mut set = TypeSet::EMPTY;
    for token in value.split(',') {
        match catalogue.find_key(token) {
            Some(t) => set = set.with(t.index),
            None => issues.push(param_issue(
                ErrorCode::InvalidCodeValue,
                "type",
                format!("'{token}' is not an NRL pointer type (expected system|code)"),
            )),
        }
    }
    Some(set)
}

fn parse_categories(
    value: &str,
    catalogue: &Catalogue,
    issues: &mut Vec<Issue>,
) -> Option<Vec<String>> {
    let mut codes = Vec::new();
    for token in value.split(',') {
        match token.split_once('|') {
            Some((system, code)) if catalogue.is_category(system, code) => {
                codes.push(code.to_owned())
            }
            _ => issues.push(param_issue(
                ErrorCode::InvalidCodeValue,
                "category",
                format!("'{token}' is not an NRL pointer category (expected {SNOMED}|code)"),
            )),
        }
    }
    codes.sort();
    codes.dedup();
    Some(codes)
}

fn parse_custodians(value: &str, issues: &mut Vec<Issue>) -> Option<Vec<OdsCode>> {
    let mut codes = Vec::new();
    for token in value.split(',') {
        match token.split_once('|') {
            Some((ODS_CODE, code)) => match OdsCode::parse(code) {
                Some(ods) => codes.push(ods),
                None => issues.push(param_issue(
                    ErrorCode::InvalidIdentifierValue,
                    "custodian:identifier",
                    format!("'{code}' is not an ODS code"),
                )),
            },
            _ => issues.push(param_issue(
                ErrorCode::InvalidIdentifierSystem,
                "custodian:identifier",
                format!("custodian:identifier must be '{ODS_CODE}|<ODS code>'"),
            )),
        }
    }
    codes.sort();
    codes.dedup();
    Some(codes)
}

/// Refuses a search that names a type the caller may not see. Asking for it is
/// an error; silently returning nothing would hide a misconfiguration.
pub fn require_permitted(
    query: &SearchQuery,
    permitted: TypeSet,
    catalogue: &Catalogue,
) -> Result<(), Issue> {
    let Some(types) = query.types else {
        return Ok(());
    };
    match catalogue
        .types()
        .iter()
        .find(|t| types.contains(t.index) && !permitted.contains(t.index))
    {
        None => Ok(()),
        Some(t) => Err(Issue::new(
            ErrorCode::AccessDeniedLevel,
            IssueType::Forbidden,
            "type",
            format!(
                "your organisation may not access pointers of type '{}'",
                t.key()
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
