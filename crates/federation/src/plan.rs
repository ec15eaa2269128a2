//! Which sources to ask: the "patient pointer" pattern. A custodian holds part
//! of a patient's record when it has a current Clinical summary pointer for
//! them; its source is asked when that pointer is visible to the caller and a
//! source is registered for it. Pure: no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::convergence::SharedRecordQuery;
use domain::{OdsCode, PointerId, PointerRecord};
use reqwest::Url;
use serde_json::Value;

use crate::registry::{Source, SourceRegistry};
use crate::report::{SourceReport, SourceStatus};

/// `system|code` of the Clinical summary pointer type.
pub const CLINICAL_SUMMARY: &str = "http://snomed.info/sct|887181000000106";

/// Said of every registered source without a visible pointer, whether the
/// patient has none there or the caller may not see it: the two must read the
/// same so a response never reveals a hidden pointer.
pub const NO_VISIBLE_POINTER: &str =
    "not asked: no current Clinical summary pointer from this custodian for this patient";

/// A source to call.
#[derive(Debug, Clone)]
pub struct Ask {
    pub source: Arc<Source>,
    /// The visible pointers that led here, sorted.
    pub pointers: Vec<PointerId>,
    /// The requested types this source serves, in record order.
    pub resource_types: Vec<&'static str>,
    /// Remarks for the report (e.g. a pointer URL outside the base).
    pub notes: Vec<String>,
}

/// Sources to call, and a report for each one that will not be.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Sorted by ODS code.
    pub asks: Vec<Ask>,
    pub not_asked: Vec<SourceReport>,
}

struct Candidate {
    id: PointerId,
    url: Option<String>,
}

/// Plans one request. `visible` is the caller's access rules (pointer type
/// permissions and the access policy's sensitive-pointer and objection
/// rules); a pointer it rejects is treated exactly like no pointer.
pub fn plan(
    pointers: &[PointerRecord],
    registry: &SourceRegistry,
    query: &SharedRecordQuery,
    visible: impl Fn(&PointerRecord) -> bool,
) -> Plan {
    let mut by_custodian: BTreeMap<OdsCode, Vec<Candidate>> = BTreeMap::new();
    for record in pointers {
        if record.type_key != CLINICAL_SUMMARY
            || record.nhs_number != query.subject
            || !visible(record)
        {
            continue;
        }
        let json: Value = serde_json::from_str(&record.json).unwrap_or(Value::Null);
        if json.get("status").and_then(Value::as_str) != Some("current") {
            continue;
        }
        let url = json
            .pointer("/content/0/attachment/url")
            .and_then(Value::as_str)
            .map(str::to_owned);
        by_custodian
            .entry(record.custodian.clone())
            .or_default()
            .push(Candidate {
                id: record.id.clone(),
                url,
            });
    }
    let wanted = query.resource_types();
    let mut plan = Plan::default();
    for source in registry.sources() {
        let Some(mut candidates) = by_custodian.remove(&source.ods) else {
            plan.not_asked.push(not_asked(
                &source.ods,
                Some(&source.name),
                false,
                vec![],
                NO_VISIBLE_POINTER.to_owned(),
            ));
            continue;
        };
        candidates.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let ids: Vec<PointerId> = candidates.iter().map(|c| c.id.clone()).collect();
        let resource_types: Vec<&'static str> = source
            .resource_types
            .iter()
            .copied()
            .filter(|t| wanted.contains(t))
            .collect();
        if resource_types.is_empty() {
            plan.not_asked.push(not_asked(
                &source.ods,
                Some(&source.name),
                false,
                ids,
                "not asked: the source serves none of the requested sections".to_owned(),
            ));
            continue;
        }
        let notes = candidates
            .iter()
            .filter(|c| {
                c.url
                    .as_deref()
                    .and_then(|u| Url::parse(u).ok())
                    .is_none_or(|u| !source.contains(&u))
            })
            .map(|c| {
                format!(
                    "pointer {} gives a URL outside the registered base URL; that URL was not fetched, the registered base was asked instead",
                    c.id
                )
            })
            .collect();
        plan.asks.push(Ask {
            source: source.clone(),
            pointers: ids,
            resource_types,
            notes,
        });
    }
    // Custodians holding a record with no registered source: reported, never fetched.
    for (ods, candidates) in by_custodian {
        let mut ids: Vec<PointerId> = candidates.into_iter().map(|c| c.id).collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        plan.not_asked.push(not_asked(
            &ods,
            None,
            true,
            ids,
            "not asked: no source is registered for this custodian, so its record could not be retrieved (the pointer URL is never fetched)".to_owned(),
        ));
    }
    plan.not_asked.sort_by(|a, b| a.ods.cmp(&b.ods));
    plan
}

fn not_asked(
    ods: &OdsCode,
    name: Option<&str>,
    holds_record: bool,
    pointers: Vec<PointerId>,
    detail: String,
) -> SourceReport {
    SourceReport {
        ods: ods.clone(),
        name: name.map(str::to_owned),
        status: SourceStatus::NotAsked,
        detail,
        holds_record,
        pointers,
        data_age: None,
        resources: 0,
        elapsed_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{SourceAuthConfig, SourceConfig};
    use domain::NhsNumber;
    use domain::convergence::query;

    fn registry() -> SourceRegistry {
        let source = |ods: &str, port: u16, types: &[&str]| SourceConfig {
            ods: ods.into(),
            name: format!("{ods} record"),
            base_url: format!("http://127.0.0.1:{port}/FHIR/R4"),
            timeout_ms: 1_000,
            resource_types: types.iter().map(|t| (*t).to_owned()).collect(),
            auth: SourceAuthConfig::None {},
        };
        SourceRegistry::from_configs(&[
            source("QWO", 1, &["AllergyIntolerance", "Condition"]),
            source("QE1", 2, &["Immunization"]),
            source("QRV", 3, &["Condition"]),
            source("RR8", 4, &["Condition"]),
        ])
        .unwrap()
    }

    fn pointer(
        ods: &str,
        local: &str,
        type_key: &str,
        url: &str,
        labels: &[&str],
    ) -> PointerRecord {
        let custodian = OdsCode::parse(ods).unwrap();
        PointerRecord {
            id: PointerId::generate(&custodian, local).unwrap(),
            nhs_number: NhsNumber::parse("9000000009").unwrap(),
            custodian,
            type_key: type_key.into(),
            master_identifier: None,
            security_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            version: 1,
            last_updated: "2026-01-01T00:00:00Z".into(),
            json:
                serde_json::json!({"status": "current", "content": [{"attachment": {"url": url}}]})
                    .to_string(),
        }
    }

    #[test]
    fn asks_visible_registered_custodians_only() {
        let q = query::parse([
            (
                "patient.identifier",
                "https://fhir.nhs.uk/Id/nhs-number|9000000009",
            ),
            ("section", "problems,allergies"),
        ])
        .unwrap();
        let pointers = vec![
            pointer(
                "QWO",
                "a",
                CLINICAL_SUMMARY,
                "http://127.0.0.1:1/FHIR/R4/Patient/a",
                &[],
            ),
            // Outside QWO's base: noted, never fetched.
            pointer(
                "QWO",
                "b",
                CLINICAL_SUMMARY,
                "http://169.254.169.254/x",
                &[],
            ),
            // QE1 serves immunisations only, not asked for here.
            pointer(
                "QE1",
                "c",
                CLINICAL_SUMMARY,
                "http://127.0.0.1:2/FHIR/R4/Patient/c",
                &[],
            ),
            // Sensitive: hidden by the hook, so reported like no pointer at all.
            pointer(
                "QRV",
                "d",
                CLINICAL_SUMMARY,
                "http://127.0.0.1:3/FHIR/R4/Patient/d",
                &["R"],
            ),
            // Not a Clinical summary: does not make RR8 a record holder.
            pointer(
                "RR8",
                "e",
                "http://snomed.info/sct|736253002",
                "ssp://x",
                &[],
            ),
            // No registered source.
            pointer(
                "Y05868",
                "f",
                CLINICAL_SUMMARY,
                "http://127.0.0.1:9/FHIR/R4/Patient/f",
                &[],
            ),
        ];
        let p = plan(&pointers, &registry(), &q, |r| r.security_labels.is_empty());
        assert_eq!(p.asks.len(), 1);
        let ask = &p.asks[0];
        assert_eq!(ask.source.ods.as_str(), "QWO");
        assert_eq!(ask.pointers.len(), 2);
        assert_eq!(ask.resource_types, ["AllergyIntolerance", "Condition"]);
        assert_eq!(ask.notes.len(), 1);

        let reports: Vec<(&str, bool, &str)> = p
            .not_asked
            .iter()
            .map(|r| (r.ods.as_str(), r.holds_record, r.detail.as_str()))
            .collect();
        assert_eq!(reports[0].0, "QE1");
        assert!(reports[0].2.contains("none of the requested sections"));
        assert_eq!(reports[1], ("QRV", false, NO_VISIBLE_POINTER));
        assert_eq!(reports[2], ("RR8", false, NO_VISIBLE_POINTER));
        assert_eq!(reports[3].0, "Y05868");
        assert!(
            reports[3].1,
            "an unregistered holder makes the record partial"
        );
        assert!(p.not_asked[3].makes_partial());
    }
}
