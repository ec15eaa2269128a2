//! A producer's request body, as the API reads it: the FHIR R4 check of the
//! JSON text and the typed parse (`Submission::parse`), then every validation
//! rule. Never a panic; a pointer that passes serialises into a record that
//! is itself valid FHIR R4 and passes again.
#![no_main]

use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::validation::{Submission, ValidationContext, r4, validate_submission};
use domain::{OdsCode, PointerId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(submission) = Submission::parse(data) else {
        return;
    };
    let caller = OdsCode::parse("Y05868").expect("a valid ODS code");
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: TypeSet::all(catalogue),
    };
    if let Ok(valid) = validate_submission(&submission, &ctx) {
        let id = valid
            .id
            .clone()
            .unwrap_or_else(|| PointerId::parse("Y05868-fuzz").expect("a valid id"));
        let record = valid
            .into_record(submission.doc, id, 1, "2026-01-01T00:00:00Z")
            .expect("a valid pointer serialises");
        let mut issues = Vec::new();
        r4::check_json(record.json.as_bytes(), &mut issues).expect("stored JSON is JSON");
        assert!(issues.is_empty(), "stored pointer is not FHIR R4: {issues:?}");
    }
});
