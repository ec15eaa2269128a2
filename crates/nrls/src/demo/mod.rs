//! Demo mode: synthetic patients, pointers of every type from producers across
//! several ICBs, and demo apps whose keys anyone can derive (`nrls token`).
//! Never enable `--demo` on a server holding real data.

pub mod source;

use domain::catalogue::Catalogue;
use domain::clock::now_instant;
use domain::permissions::TypeSet;
use domain::validation::{ValidationContext, validate};
use domain::{NhsNumber, OdsCode, PointerId};
use store::{PointerStore, StoreError};

use crate::dataset::{PointerSpec, document_reference};

/// The consumer app the README uses.
pub const CONSUMER_APP: &str = "demo-consumer";
/// A consumer allowed only mental health crisis plans, to show permissions.
pub const LIMITED_CONSUMER_APP: &str = "demo-consumer-crisis-only";
/// The producer app, onboarded for every demo custodian.
pub const PRODUCER_APP: &str = "demo-producer";
/// The ambulance service the demo consumers act for.
pub const CONSUMER_ODS: &str = "RX9";

/// Demo custodians: trusts, a GP practice and three ICB shared care records.
pub const CUSTODIANS: &[(&str, &str)] = &[
    ("RR8", "Leeds Teaching Hospitals (West Yorkshire ICB)"),
    ("RYJ", "Imperial College Healthcare (North West London ICB)"),
    ("RBS", "Alder Hey Children's (Cheshire and Merseyside ICB)"),
    ("RW5", "Lancashire and South Cumbria NHS FT (mental health)"),
    ("Y05868", "Demo GP practice (Greater Manchester ICB)"),
    ("QWO", "West Yorkshire ICB shared care record"),
    ("QE1", "Lancashire and South Cumbria ICB shared care record"),
    ("QRV", "North West London ICB shared care record"),
];

/// Number of demo patients.
pub const PATIENTS: usize = 12;

/// The first `n` valid NHS numbers of the never-issued 999 range.
pub fn patients(n: usize) -> Vec<NhsNumber> {
    (999_000_000u32..)
        .filter_map(NhsNumber::from_stem)
        .take(n)
        .collect()
}

/// The demo apps, as they would appear in a config file.
pub fn apps() -> Vec<auth::config::AppConfig> {
    let catalogue = Catalogue::nrl_v3();
    let all: Vec<String> = catalogue.types().iter().map(|t| t.key()).collect();
    let app = |client_id: &str, name: &str, orgs: Vec<(&str, &str, Vec<String>)>| {
        let organisations = orgs
            .into_iter()
            .map(|(ods, role, types)| auth::config::OrganisationConfig {
                ods: ods.to_owned(),
                roles: vec![role.to_owned()],
                pointer_types: types,
            })
            .collect();
        auth::demo::app_config(client_id, name, organisations)
    };
    vec![
        app(
            CONSUMER_APP,
            "Demo ambulance clinical system",
            vec![(CONSUMER_ODS, "consumer", all.clone())],
        ),
        app(
            LIMITED_CONSUMER_APP,
            "Demo app allowed crisis plans only",
            vec![(
                CONSUMER_ODS,
                "consumer",
                vec!["http://snomed.info/sct|736253002".to_owned()],
            )],
        ),
        app(
            PRODUCER_APP,
            "Demo producer for every demo custodian",
            CUSTODIANS
                .iter()
                .map(|(ods, _)| (*ods, "producer", all.clone()))
                .collect(),
        ),
    ]
}

/// Seeds the demo pointers; pointers already present are left as they are, so
/// restarting with `--demo` is harmless. Returns how many were created.
pub async fn seed(store: &dyn PointerStore) -> Result<usize, String> {
    let catalogue = Catalogue::nrl_v3();
    let types = catalogue.types();
    let mut created = 0;
    for (p, nhs_number) in patients(PATIENTS).into_iter().enumerate() {
        // Patient 0 has one pointer of every type; the others a varied handful.
        let picks: Vec<usize> = if p == 0 {
            (0..types.len()).collect()
        } else {
            (0..1 + p % 5)
                .map(|k| (p * 7 + k * 5) % types.len())
                .collect()
        };
        for (k, type_index) in picks.into_iter().enumerate() {
            let pointer_type = &types[type_index];
            let (ods, _) = CUSTODIANS[(p + k * 3) % CUSTODIANS.len()];
            let custodian = OdsCode::parse(ods).ok_or("bad demo ODS code")?;
            let local_id = format!("demo-{p:02}-{k:02}");
            let spec = PointerSpec {
                nhs_number,
                custodian: &custodian,
                pointer_type,
                local_id: &local_id,
                created_offset: (p as u32) * 86_400 * 30 + (k as u32) * 3_600,
            };
            let doc: fhir::DocumentReference =
                serde_json::from_value(document_reference(&spec)).map_err(|e| e.to_string())?;
            let ctx = ValidationContext {
                catalogue,
                caller: &custodian,
                permitted_types: TypeSet::all(catalogue),
            };
            let valid = validate(&doc, &ctx)
                .map_err(|issues| format!("demo pointer invalid: {issues:?}"))?;
            let id = PointerId::generate(&custodian, &local_id).ok_or("bad demo id")?;
            let record = valid
                .into_record(doc, id, 1, &now_instant())
                .map_err(|e| e.to_string())?;
            match store.create(record, Vec::new()).await {
                Ok(()) => created += 1,
                Err(StoreError::DuplicateId(_) | StoreError::DuplicateMasterIdentifier(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(created)
}

/// The type of the demo's one sensitive pointer: a mental health crisis plan.
const SENSITIVE_TYPE: &str = "http://snomed.info/sct|736253002";

/// Seeds one security-labelled (`R`, restricted) mental health crisis plan
/// for the first demo patient, held by RW5: only a user whose role has a
/// sensitive-records activity code sees it (the viewer's demo psychiatrist).
/// Returns how many were created (0 when already there).
pub async fn seed_sensitive(store: &dyn PointerStore) -> Result<usize, String> {
    let catalogue = Catalogue::nrl_v3();
    let pointer_type = catalogue
        .find_key(SENSITIVE_TYPE)
        .ok_or("crisis plans are not in the catalogue")?;
    let custodian = OdsCode::parse("RW5").ok_or("bad demo ODS code")?;
    let nhs_number = *patients(1).first().ok_or("no demo patient")?;
    let local_id = "demo-sensitive-00";
    let mut json = document_reference(&PointerSpec {
        nhs_number,
        custodian: &custodian,
        pointer_type,
        local_id,
        created_offset: 3_600,
    });
    json["meta"] = serde_json::json!({"security": [
        {"system": domain::systems::CONFIDENTIALITY, "code": "R"}
    ]});
    let doc: fhir::DocumentReference = serde_json::from_value(json).map_err(|e| e.to_string())?;
    let ctx = ValidationContext {
        catalogue,
        caller: &custodian,
        permitted_types: TypeSet::all(catalogue),
    };
    let valid =
        validate(&doc, &ctx).map_err(|issues| format!("demo pointer invalid: {issues:?}"))?;
    let id = PointerId::generate(&custodian, local_id).ok_or("bad demo id")?;
    let record = valid
        .into_record(doc, id, 1, &now_instant())
        .map_err(|e| e.to_string())?;
    match store.create(record, Vec::new()).await {
        Ok(()) => Ok(1),
        Err(StoreError::DuplicateId(_) | StoreError::DuplicateMasterIdentifier(_)) => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seeding_twice_is_harmless() {
        let store = store::memory::MemoryStore::new();
        let first = seed(&store).await.unwrap();
        assert!(first >= Catalogue::nrl_v3().types().len());
        assert_eq!(seed(&store).await.unwrap(), 0);
        assert_eq!(store.count().await.unwrap() as usize, first);
        let rich = store.patient_pointers(patients(1)[0]).await.unwrap();
        assert_eq!(rich.len(), Catalogue::nrl_v3().types().len());
    }
}
