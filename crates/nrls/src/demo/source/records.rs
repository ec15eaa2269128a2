//! The synthetic structured records a demo source serves. Deterministic per
//! (region, patient); the regions overlap on purpose so convergence shows:
//! the same allergy, problem, medication or vaccination recorded in two or
//! three regions, sometimes with a disagreement (asthma active in one region,
//! resolved in another) and an entry marked entered-in-error.
//!
//! Codes are SNOMED CT where they are well known; the dm+d medication codes
//! are illustrative. Every NHS number is in the never-issued 999 range.

use domain::NhsNumber;
use serde_json::{Value, json};

use super::Region;

const SCT: &str = "http://snomed.info/sct";
const DMD: &str = "https://dmd.nhs.uk";
const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

const ALLERGENS: &[(&str, &str)] = &[
    ("764146007", "Penicillin"),
    ("227493005", "Cashew nut"),
    ("111088007", "Latex"),
    ("387207008", "Ibuprofen"),
    ("256349002", "Peanut"),
];
const REACTIONS: &[(&str, &str)] = &[
    ("126485001", "Urticaria"),
    ("39579001", "Anaphylaxis"),
    ("271807003", "Skin rash"),
];
const CONDITIONS: &[(&str, &str)] = &[
    ("195967001", "Asthma"),
    ("38341003", "Hypertension"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("35489007", "Depressive disorder"),
    ("13645005", "Chronic obstructive pulmonary disease"),
    ("49436004", "Atrial fibrillation"),
];
const MEDICATIONS: &[(&str, &str)] = &[
    ("39113611000001102", "Salbutamol 100micrograms/dose inhaler"),
    ("39732311000001104", "Amlodipine 5mg tablets"),
    ("39720311000001101", "Metformin 500mg tablets"),
    ("39695211000001102", "Sertraline 50mg tablets"),
];
const FLU: (&str, &str) = ("1181000221105", "Influenza vaccine");
const COVID: (&str, &str) = ("1119349007", "COVID-19 mRNA vaccine");

/// True when `region` holds a record for demo patient `p`: patient 0 in all
/// three regions, even-numbered patients in two, the others in one.
pub fn holds(region: Region, p: usize) -> bool {
    let r = region.index();
    p == 0 || r == p % 3 || (p.is_multiple_of(2) && r == (p + 1) % 3)
}

fn cc(system: &str, (code, display): (&str, &str)) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

fn status(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

struct Builder<'a> {
    region: Region,
    p: usize,
    nhs: &'a str,
    out: Vec<Value>,
}

impl Builder<'_> {
    fn id(&self, kind: &str) -> String {
        format!(
            "{}-{kind}-{}-{}",
            self.region.ods().to_ascii_lowercase(),
            self.p,
            self.out.len()
        )
    }

    fn patient(&self) -> Value {
        json!({"reference": format!("Patient/{}-{}", self.region.ods().to_ascii_lowercase(), self.p),
               "identifier": {"system": NHS, "value": self.nhs}})
    }

    fn push(&mut self, mut resource: Value, updated: &str) {
        resource["meta"] = json!({"lastUpdated": updated});
        self.out.push(resource);
    }

    fn allergy(&mut self, allergen: (&str, &str), criticality: &str, reaction: (&str, &str)) {
        let r = json!({
            "resourceType": "AllergyIntolerance", "id": self.id("allergy"),
            "clinicalStatus": status(CLINICAL, "active"),
            "verificationStatus": status("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed"),
            "type": "allergy", "category": ["medication"], "criticality": criticality,
            "code": cc(SCT, allergen), "patient": self.patient(), "recordedDate": "2016-05-04",
            "reaction": [{"manifestation": [cc(SCT, reaction)], "severity": if criticality == "high" { "severe" } else { "mild" }}],
        });
        self.push(r, "2025-06-01T09:00:00Z");
    }

    fn condition(&mut self, condition: (&str, &str), onset: &str, clinical: &str) {
        let r = json!({
            "resourceType": "Condition", "id": self.id("condition"),
            "clinicalStatus": status(CONDITION_CLINICAL, clinical),
            "verificationStatus": status("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
            "category": [cc("http://terminology.hl7.org/CodeSystem/condition-category", ("problem-list-item", "Problem List Item"))],
            "code": cc(SCT, condition), "subject": self.patient(), "onsetDateTime": onset,
        });
        self.push(r, "2025-03-10T14:30:00Z");
    }

    fn medication(&mut self, medication: (&str, &str), start: &str, dosage: &str) {
        let r = json!({
            "resourceType": "MedicationStatement", "id": self.id("medication"), "status": "active",
            "medicationCodeableConcept": cc(DMD, medication), "subject": self.patient(),
            "effectivePeriod": {"start": start}, "dosage": [{"text": dosage}],
        });
        self.push(r, "2025-09-01T08:00:00Z");
    }

    fn immunization(&mut self, vaccine: (&str, &str), date: &str) {
        let r = json!({
            "resourceType": "Immunization", "id": self.id("immunization"), "status": "completed",
            "vaccineCode": cc(SCT, vaccine), "patient": self.patient(), "occurrenceDateTime": date,
        });
        self.push(r, "2025-10-20T11:00:00Z");
    }

    fn encounter(&mut self, class: (&str, &str), start: &str, end: &str, text: &str) {
        let r = json!({
            "resourceType": "Encounter", "id": self.id("encounter"), "status": "finished",
            "class": {"system": ACT_CODE, "code": class.0, "display": class.1},
            "type": [{"text": text}], "subject": self.patient(),
            "period": {"start": start, "end": end},
            "serviceProvider": {"display": self.region.name()},
        });
        self.push(r, "2025-11-01T16:00:00Z");
    }
}

/// The record `region` holds for demo patient `p` (empty when it holds none).
pub fn records(region: Region, p: usize, nhs: NhsNumber) -> Vec<Value> {
    if !holds(region, p) {
        return Vec::new();
    }
    let nhs = nhs.to_string();
    let mut b = Builder {
        region,
        p,
        nhs: &nhs,
        out: Vec::new(),
    };
    if p == 0 {
        showcase(&mut b);
    } else {
        ordinary(&mut b);
    }
    b.out
}

/// Patient 0: every convergence rule at work across the three regions.
fn showcase(b: &mut Builder<'_>) {
    let [penicillin, _, latex, ..] = ALLERGENS else {
        return;
    };
    let (asthma, hypertension) = (CONDITIONS[0], CONDITIONS[1]);
    let (salbutamol, amlodipine) = (MEDICATIONS[0], MEDICATIONS[1]);
    match b.region {
        Region::Qwo => {
            b.allergy(*penicillin, "low", REACTIONS[0]);
            b.condition(asthma, "2012-04-03", "active");
            b.condition(hypertension, "2019-06-10", "active");
            b.medication(salbutamol, "2023-01-01", "Two puffs when required");
            b.medication(amlodipine, "2019-07-01", "One tablet daily");
            b.immunization(FLU, "2024-10-05T10:20:00+01:00");
            b.encounter(
                ("AMB", "ambulatory"),
                "2024-09-12T09:00:00Z",
                "2024-09-12T09:15:00Z",
                "GP consultation",
            );
            // Withdrawn by the source: never shown.
            let mut withdrawn = json!({
                "resourceType": "Condition", "id": b.id("condition"),
                "verificationStatus": status("http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error"),
                "code": cc(SCT, CONDITIONS[2]), "subject": b.patient(), "onsetDateTime": "2020-01-01",
            });
            withdrawn["meta"] = json!({"lastUpdated": "2025-01-01T00:00:00Z"});
            b.out.push(withdrawn);
        }
        Region::Qe1 => {
            b.allergy(*penicillin, "high", REACTIONS[1]);
            // The same asthma, 17 days later, but recorded as resolved: flagged.
            b.condition(asthma, "2012-04-20", "resolved");
            b.medication(
                salbutamol,
                "2023-03-15",
                "Two puffs four times a day when required",
            );
            b.immunization(FLU, "2024-10-05");
            b.encounter(
                ("EMER", "emergency"),
                "2025-02-02T22:10:00Z",
                "2025-02-03T02:40:00Z",
                "Emergency department attendance",
            );
            // No usable code: passes through unmerged.
            let mut plaster = json!({
                "resourceType": "AllergyIntolerance", "id": b.id("allergy"),
                "clinicalStatus": status(CLINICAL, "active"),
                "code": {"text": "Elastoplast (sticking plaster)"}, "patient": b.patient(),
            });
            plaster["meta"] = json!({"lastUpdated": "2024-02-02T00:00:00Z"});
            b.out.push(plaster);
        }
        Region::Qrv => {
            b.allergy(*penicillin, "low", REACTIONS[2]);
            b.allergy(*latex, "low", REACTIONS[0]);
            b.condition(hypertension, "2019-06-20", "active");
            b.immunization(COVID, "2023-10-15");
            b.encounter(
                ("AMB", "ambulatory"),
                "2024-03-03T10:00:00Z",
                "2024-03-03T10:40:00Z",
                "Cardiology outpatient appointment",
            );
        }
    }
}

/// Other patients: one of each, shifted a little per region so that two
/// regions holding the same patient converge.
fn ordinary(b: &mut Builder<'_>) {
    let (p, r) = (b.p, b.region.index());
    let allergen = ALLERGENS[p % ALLERGENS.len()];
    let criticality = if r == 1 { "high" } else { "low" };
    b.allergy(allergen, criticality, REACTIONS[(p + r) % REACTIONS.len()]);
    let onset = format!("20{:02}-{:02}-{:02}", 10 + p % 10, 1 + p % 9, 3 + r * 4);
    b.condition(CONDITIONS[p % CONDITIONS.len()], &onset, "active");
    let start = format!("2024-{:02}-01", 1 + r);
    b.medication(MEDICATIONS[p % MEDICATIONS.len()], &start, "As directed");
    b.immunization(FLU, &format!("2024-10-{:02}", 10 + p % 10));
    let day = format!("2025-{:02}-{:02}", 1 + (p + r) % 12, 1 + r * 7);
    b.encounter(
        ("AMB", "ambulatory"),
        &format!("{day}T09:00:00Z"),
        &format!("{day}T09:20:00Z"),
        "Outpatient appointment",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_overlap_and_records_are_deterministic() {
        let nhs = crate::demo::patients(1)[0];
        for region in Region::ALL {
            assert!(holds(region, 0));
            assert_eq!(records(region, 0, nhs), records(region, 0, nhs));
        }
        // Every demo patient is held somewhere; some in two regions.
        for p in 0..crate::demo::PATIENTS {
            assert!(Region::ALL.iter().any(|r| holds(*r, p)), "patient {p}");
        }
        assert_eq!(Region::ALL.iter().filter(|r| holds(**r, 2)).count(), 2);
        let qwo = records(Region::Qwo, 0, nhs);
        assert!(qwo.iter().all(|r| r["meta"]["lastUpdated"].is_string()));
    }
}
