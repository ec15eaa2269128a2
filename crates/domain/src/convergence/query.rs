//! The shared care record request: whose record, which sections, which dates.
//! Unknown or repeated parameters are errors, never silently ignored.

use serde_json::Value;

use super::dates::{clinical_span, parse_range};
use crate::NhsNumber;
use crate::issue::{ErrorCode, Issue, IssueType};
use crate::systems::NHS_NUMBER;

/// The parameters `$shared-care-record` accepts.
pub const PARAMETERS: &[&str] = &["patient.identifier", "section", "date.ge", "date.le"];

/// A part of the record, as the consumer asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Allergies,
    Problems,
    Medications,
    Immunisations,
    Encounters,
}

impl Section {
    /// Every section, in record order.
    pub const ALL: [Section; 5] = [
        Section::Allergies,
        Section::Problems,
        Section::Medications,
        Section::Immunisations,
        Section::Encounters,
    ];

    /// The name used in the `section` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Section::Allergies => "allergies",
            Section::Problems => "problems",
            Section::Medications => "medications",
            Section::Immunisations => "immunisations",
            Section::Encounters => "encounters",
        }
    }

    pub fn parse(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The FHIR resource types a section is made of.
    pub fn resource_types(self) -> &'static [&'static str] {
        match self {
            Section::Allergies => &["AllergyIntolerance"],
            Section::Problems => &["Condition"],
            Section::Medications => &["MedicationStatement", "MedicationRequest"],
            Section::Immunisations => &["Immunization"],
            Section::Encounters => &["Encounter"],
        }
    }

    /// The section a resource type belongs to.
    pub fn of_resource_type(resource_type: &str) -> Option<Section> {
        Section::ALL
            .into_iter()
            .find(|s| s.resource_types().contains(&resource_type))
    }
}

/// Inclusive date bounds, in Unix seconds. A resource is admitted when its
/// clinical date (see [`clinical_span`]) overlaps `[ge, le]`; with any bound
/// set, a resource with no clinical date is left out (FHIR search semantics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateBounds {
    /// Earliest second of `date.ge`.
    pub ge: Option<i64>,
    /// Last second of `date.le`.
    pub le: Option<i64>,
}

impl DateBounds {
    pub fn is_unbounded(&self) -> bool {
        self.ge.is_none() && self.le.is_none()
    }

    /// True when `resource` falls within the bounds.
    pub fn admits(&self, resource: &Value) -> bool {
        if self.is_unbounded() {
            return true;
        }
        let Some(span) = clinical_span(resource) else {
            return false;
        };
        let after_ge = self
            .ge
            .is_none_or(|ge| span.end.is_none_or(|end| end >= ge));
        let before_le = self.le.is_none_or(|le| span.start <= le);
        after_ge && before_le
    }
}

/// A checked `$shared-care-record` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecordQuery {
    pub subject: NhsNumber,
    /// Sections asked for, in record order, without repeats; all by default.
    pub sections: Vec<Section>,
    pub dates: DateBounds,
}

impl SharedRecordQuery {
    /// The resource types to fetch, in record order.
    pub fn resource_types(&self) -> Vec<&'static str> {
        self.sections
            .iter()
            .flat_map(|s| s.resource_types().iter().copied())
            .collect()
    }
}

fn issue(code: ErrorCode, name: &str, diagnostics: impl Into<String>) -> Issue {
    Issue::new(code, IssueType::Invalid, name, diagnostics)
}

/// Parses the request parameters, reporting every problem at once.
pub fn parse<'p>(
    pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Result<SharedRecordQuery, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, value) in pairs {
        if !PARAMETERS.contains(&name) {
            issues.push(issue(
                ErrorCode::InvalidParameter,
                name,
                format!(
                    "'{name}' is not a parameter of $shared-care-record; use {}",
                    PARAMETERS.join(", ")
                ),
            ));
        } else if seen.iter().any(|(n, _)| *n == name) {
            issues.push(issue(
                ErrorCode::InvalidParameter,
                name,
                format!("'{name}' is given more than once; separate sections with commas"),
            ));
        } else {
            seen.push((name, value));
        }
    }
    let get = |name: &str| seen.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);

    let subject = match get("patient.identifier") {
        None => {
            issues.push(issue(
                ErrorCode::InvalidParameter,
                "patient.identifier",
                format!("patient.identifier is required, e.g. {NHS_NUMBER}|9999999999"),
            ));
            None
        }
        Some(v) => parse_subject(v, &mut issues),
    };
    let sections = match get("section") {
        None => Section::ALL.to_vec(),
        Some(v) => parse_sections(v, &mut issues),
    };
    let ge = get("date.ge").and_then(|v| parse_bound("date.ge", v, &mut issues).map(|r| r.0));
    let le = get("date.le").and_then(|v| parse_bound("date.le", v, &mut issues).map(|r| r.1));
    if let (Some(ge), Some(le)) = (ge, le)
        && ge > le
    {
        issues.push(issue(
            ErrorCode::InvalidParameter,
            "date.ge",
            "date.ge is after date.le: no date can satisfy both",
        ));
    }
    match subject {
        Some(subject) if issues.is_empty() => Ok(SharedRecordQuery {
            subject,
            sections,
            dates: DateBounds { ge, le },
        }),
        _ => Err(issues),
    }
}

fn parse_subject(value: &str, issues: &mut Vec<Issue>) -> Option<NhsNumber> {
    let name = "patient.identifier";
    let Some((system, number)) = value.split_once('|') else {
        issues.push(issue(
            ErrorCode::InvalidParameter,
            name,
            format!("patient.identifier must be '{NHS_NUMBER}|<NHS number>'"),
        ));
        return None;
    };
    if system != NHS_NUMBER {
        issues.push(issue(
            ErrorCode::InvalidIdentifierSystem,
            name,
            format!("patient.identifier system must be '{NHS_NUMBER}', not '{system}'"),
        ));
        return None;
    }
    NhsNumber::parse(number)
        .map_err(|e| {
            issues.push(issue(
                ErrorCode::InvalidNhsNumber,
                name,
                format!("'{number}' is not a valid NHS number: {e}"),
            ))
        })
        .ok()
}

fn parse_sections(value: &str, issues: &mut Vec<Issue>) -> Vec<Section> {
    let mut sections = Vec::new();
    for token in value.split(',') {
        match Section::parse(token.trim()) {
            Some(s) => sections.push(s),
            None => issues.push(issue(
                ErrorCode::InvalidCodeValue,
                "section",
                format!(
                    "'{token}' is not a section; use {}",
                    Section::ALL.map(Section::name).join(", ")
                ),
            )),
        }
    }
    sections.sort();
    sections.dedup();
    sections
}

fn parse_bound(name: &str, value: &str, issues: &mut Vec<Issue>) -> Option<(i64, i64)> {
    let range = parse_range(value);
    if range.is_none() {
        issues.push(issue(
            ErrorCode::InvalidParameter,
            name,
            format!(
                "{name} must be a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ), not '{value}'"
            ),
        ));
    }
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parameter list and the expressions of the issues it must raise.
    type Failure<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

    #[test]
    fn query_parameters_are_checked() {
        let nhs = "https://fhir.nhs.uk/Id/nhs-number|9000000009";
        let ok = parse([
            ("patient.identifier", nhs),
            ("section", "medications,allergies,allergies"),
            ("date.ge", "2020"),
            ("date.le", "2020-06-30"),
        ])
        .unwrap();
        assert_eq!(ok.sections, vec![Section::Allergies, Section::Medications]);
        assert_eq!(
            ok.resource_types(),
            vec![
                "AllergyIntolerance",
                "MedicationStatement",
                "MedicationRequest"
            ]
        );
        assert_eq!(ok.dates.ge, Some(1_577_836_800));
        let all = parse([("patient.identifier", nhs)]).unwrap();
        assert_eq!(all.sections.len(), 5);
        assert!(all.dates.is_unbounded());

        let failures: &[Failure<'_>] = &[
            (&[], &["patient.identifier"]),
            (
                &[("patient.identifier", "9000000009")],
                &["patient.identifier"],
            ),
            (
                &[("patient.identifier", "urn:x|9000000009")],
                &["patient.identifier"],
            ),
            (
                &[(
                    "patient.identifier",
                    "https://fhir.nhs.uk/Id/nhs-number|9000000001",
                )],
                &["patient.identifier"],
            ),
            (
                &[("patient.identifier", nhs), ("section", "allergies,labs")],
                &["section"],
            ),
            (
                &[("patient.identifier", nhs), ("date.ge", "yesterday")],
                &["date.ge"],
            ),
            (
                &[
                    ("patient.identifier", nhs),
                    ("date.ge", "2021"),
                    ("date.le", "2020"),
                ],
                &["date.ge"],
            ),
            (&[("patient.identifier", nhs), ("_count", "5")], &["_count"]),
            (
                &[
                    ("patient.identifier", nhs),
                    ("section", "allergies"),
                    ("section", "problems"),
                ],
                &["section"],
            ),
        ];
        for (pairs, expressions) in failures {
            let issues = parse(pairs.iter().copied()).unwrap_err();
            let got: Vec<&str> = issues
                .iter()
                .map(|i| i.expression.as_deref().unwrap_or_default())
                .collect();
            assert_eq!(&got, expressions, "{pairs:?}");
        }
    }
}
