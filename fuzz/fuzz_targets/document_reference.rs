//! A producer's request body: JSON parse, then every validation rule. A
//! pointer that passes must serialise into a record.
#![no_main]

use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::validation::{ValidationContext, validate};
use domain::{OdsCode, PointerId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<fhir::DocumentReference>(data) else {
        return;
    };
    let caller = OdsCode::parse("Y05868").expect("a valid ODS code");
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: TypeSet::all(catalogue),
    };
    if let Ok(valid) = validate(&doc, &ctx) {
        let id = valid
            .id
            .clone()
            .unwrap_or_else(|| PointerId::parse("Y05868-fuzz").expect("a valid id"));
        valid
            .into_record(doc, id, 1, "2026-01-01T00:00:00Z")
            .expect("a valid pointer serialises");
    }
});
