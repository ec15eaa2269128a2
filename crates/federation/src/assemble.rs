//! The answer: a FHIR `collection` Bundle holding an OperationOutcome that
//! reports every source and whether the record is complete, the converged
//! resources, and one Provenance per contributing source.

use std::collections::BTreeMap;

use domain::convergence::ext::TAG_SYSTEM;
use domain::convergence::{Convergence, Section, stable_uuid};
use domain::systems::ODS_CODE;
use domain::{OdsCode, PointerId};
use reqwest::Url;
use serde_json::{Value, json};

use crate::report::{SourceReport, SourceStatus};

/// Code system of the per-source status codes.
pub const SOURCE_STATUS_SYSTEM: &str =
    "https://example.invalid/nrls/fhir/CodeSystem/federation-source-status";
/// Extension on each OperationOutcome issue: the source report, machine-readable.
pub const SOURCE_REPORT_EXT: &str =
    "https://example.invalid/nrls/fhir/StructureDefinition/federation-source-report";
/// Extension on `Bundle.meta`: `complete` or `partial`.
pub const COMPLETENESS_EXT: &str =
    "https://example.invalid/nrls/fhir/StructureDefinition/record-completeness";

const PARTICIPANT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";

/// A source whose answer was used.
#[derive(Debug, Clone)]
pub(crate) struct Contribution {
    pub name: String,
    pub base_url: Url,
    /// When its answer arrived (FHIR instant).
    pub recorded: String,
    pub pointers: Vec<PointerId>,
}

pub(crate) struct Assembly<'a> {
    pub convergence: &'a Convergence,
    /// Sorted by ODS code.
    pub reports: &'a [SourceReport],
    pub contributions: &'a BTreeMap<OdsCode, Contribution>,
    /// Where consumers read pointers, e.g. `https://nrls.example/consumer/FHIR/R4/DocumentReference`.
    pub pointer_url_base: &'a str,
    pub sections: &'a [Section],
    pub excluded_by_date: usize,
    pub now: &'a str,
    pub now_unix: i64,
}

/// Builds the Bundle; returns it with whether it is partial.
pub(crate) fn bundle(a: &Assembly<'_>) -> (Value, bool) {
    let partial = a.reports.iter().any(SourceReport::makes_partial);
    let mut entries = vec![outcome_entry(a, partial)];
    entries.extend(
        a.convergence
            .entries
            .iter()
            .map(|e| json!({"fullUrl": format!("urn:uuid:{}", e.id), "resource": e.resource})),
    );
    entries.extend(provenances(a));
    let (code, display) = if partial {
        ("partial", "Partial record: some sources did not contribute")
    } else {
        (
            "complete",
            "Complete: every source holding a record contributed",
        )
    };
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {
            "lastUpdated": a.now,
            "tag": [{"system": TAG_SYSTEM, "code": code, "display": display}],
            "extension": [{"url": COMPLETENESS_EXT, "valueCode": code}],
        },
        "type": "collection",
        "timestamp": a.now,
        "entry": entries,
    });
    (bundle, partial)
}

fn outcome_entry(a: &Assembly<'_>, partial: bool) -> Value {
    let holders: Vec<&SourceReport> = a.reports.iter().filter(|r| r.holds_record).collect();
    let missing: Vec<&SourceReport> = holders
        .iter()
        .copied()
        .filter(|r| r.makes_partial())
        .collect();
    let sections = a
        .sections
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ");
    let headline = if partial {
        let why = missing
            .iter()
            .map(|r| format!("{} {}", r.ods, r.status.code()))
            .collect::<Vec<_>>()
            .join(", ");
        json!({
            "severity": "warning",
            "code": "incomplete",
            "details": {"coding": [{"system": TAG_SYSTEM, "code": "partial", "display": "Partial record"}]},
            "diagnostics": format!(
                "PARTIAL RECORD: {} of {} sources holding a record for this patient did not contribute ({why}). Do not treat this record as complete. Sections: {sections}.",
                missing.len(),
                holders.len()
            ),
        })
    } else {
        let text = if holders.is_empty() {
            format!(
                "Complete: no source holds a shared care record for this patient. Sections: {sections}."
            )
        } else {
            format!(
                "Complete: all {} sources holding a record for this patient contributed. Sections: {sections}.",
                holders.len()
            )
        };
        json!({
            "severity": "information",
            "code": "informational",
            "details": {"coding": [{"system": TAG_SYSTEM, "code": "complete", "display": "Complete record"}]},
            "diagnostics": text,
        })
    };
    let mut issues = vec![headline];
    issues.extend(a.reports.iter().map(|r| source_issue(r, a.now_unix)));
    if a.convergence.entered_in_error > 0 || a.excluded_by_date > 0 {
        issues.push(json!({
            "severity": "information",
            "code": "informational",
            "diagnostics": format!(
                "{} resources marked entered-in-error were dropped; {} resources outside the date bounds (or undated, when bounds are given) were left out.",
                a.convergence.entered_in_error, a.excluded_by_date
            ),
        }));
    }
    let id = stable_uuid(&format!("outcome\u{0}{}", a.now));
    json!({
        "fullUrl": format!("urn:uuid:{id}"),
        "resource": {"resourceType": "OperationOutcome", "id": id, "issue": issues},
    })
}

fn source_issue(r: &SourceReport, now_unix: i64) -> Value {
    let (severity, code) = match r.status {
        SourceStatus::Ok => ("information", "informational"),
        SourceStatus::TimedOut => ("warning", "timeout"),
        SourceStatus::Error => ("warning", "exception"),
        SourceStatus::Refused => ("warning", "transient"),
        SourceStatus::NotAsked if r.holds_record => ("warning", "incomplete"),
        SourceStatus::NotAsked => ("information", "informational"),
    };
    let label = match &r.name {
        Some(name) => format!("{} ({name})", r.ods),
        None => r.ods.to_string(),
    };
    let mut diagnostics = format!("{label}: {}", r.detail);
    let mut report = vec![
        json!({"url": "source", "valueIdentifier": {"system": ODS_CODE, "value": r.ods.as_str()}}),
        json!({"url": "status", "valueCode": r.status.code()}),
        json!({"url": "holdsRecord", "valueBoolean": r.holds_record}),
    ];
    if let Some(age) = &r.data_age {
        let seconds = age.age_seconds(now_unix);
        diagnostics.push_str(&format!(
            "; data as of {} ({seconds} s old, from {})",
            age.as_of,
            age.basis.describe()
        ));
        report.push(json!({"url": "dataAsOf", "valueDateTime": age.as_of}));
        report.push(json!({"url": "ageSeconds", "valueInteger": seconds}));
    }
    if r.was_called() {
        report.push(json!({"url": "resources", "valueInteger": r.resources}));
    }
    if let Some(ms) = r.elapsed_ms {
        report.push(json!({"url": "elapsedMs", "valueInteger": ms}));
    }
    json!({
        "extension": [{"url": SOURCE_REPORT_EXT, "extension": report}],
        "severity": severity,
        "code": code,
        "details": {
            "coding": [{"system": SOURCE_STATUS_SYSTEM, "code": r.status.code(), "display": r.status.display()}],
            "text": label,
        },
        "diagnostics": diagnostics,
    })
}

/// One Provenance per source whose answer went into at least one entry.
fn provenances(a: &Assembly<'_>) -> Vec<Value> {
    let mut targets: BTreeMap<&OdsCode, Vec<Value>> = BTreeMap::new();
    let mut originals: BTreeMap<&OdsCode, Vec<Value>> = BTreeMap::new();
    for entry in &a.convergence.entries {
        for source in &entry.sources {
            targets
                .entry(source)
                .or_default()
                .push(json!({"reference": format!("urn:uuid:{}", entry.id)}));
        }
        for member in &entry.members {
            let (Some(id), Some(contribution)) = (&member.id, a.contributions.get(&member.source))
            else {
                continue;
            };
            let base = contribution.base_url.as_str().trim_end_matches('/');
            originals.entry(&member.source).or_default().push(json!({
                "role": "source",
                "what": {"reference": format!("{base}/{}/{id}", member.resource_type), "type": member.resource_type},
            }));
        }
    }
    targets
        .into_iter()
        .filter_map(|(ods, target)| {
            let contribution = a.contributions.get(ods)?;
            let mut entity: Vec<Value> = contribution
                .pointers
                .iter()
                .map(|p| {
                    json!({
                        "role": "source",
                        "what": {"reference": format!("{}/{p}", a.pointer_url_base), "type": "DocumentReference"},
                    })
                })
                .collect();
            entity.extend(originals.remove(ods).unwrap_or_default());
            let id = stable_uuid(&format!("provenance\u{0}{ods}\u{0}{}", a.now));
            Some(json!({
                "fullUrl": format!("urn:uuid:{id}"),
                "resource": {
                    "resourceType": "Provenance",
                    "id": id,
                    "target": target,
                    "recorded": contribution.recorded,
                    "agent": [
                        {
                            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "custodian", "display": "Custodian"}]},
                            "who": {"identifier": {"system": ODS_CODE, "value": ods.as_str()}, "display": contribution.name},
                        },
                        {
                            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}]},
                            "who": {"display": "nrls shared care record federation"},
                        }
                    ],
                    "entity": entity,
                },
            }))
        })
        .collect()
}
