//! "Your shared care record": allergies, medicines, conditions and
//! immunisations from the same federation the viewer uses
//! (`api::operations::my_shared_care_record`, which follows only the
//! pointers a patient is shown and audits once as `PATRQT`), under a
//! plain-words banner naming the organisations whose records could not be
//! fetched.

use api::operations::my_shared_care_record;
use api::operations::patient::PatientCaller;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{PatientChrome, html, verified_nhs_number};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{PatientSummaryPage, SectionView};
use crate::viewer::shared_record::{sections, sources};

/// The viewer's sections a patient is shown, with patient-friendly names.
/// Encounters are left out: they are visits, not a summary of care.
const PATIENT_SECTIONS: &[(&str, &str)] = &[
    ("Allergies", "Allergies"),
    ("Medications", "Medicines"),
    ("Problems", "Conditions"),
    ("Immunisations", "Immunisations"),
];

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let caller = PatientCaller::new(verified_nhs_number(&session)?);
    let pointer_url_base = format!(
        "{}/consumer/FHIR/R4/DocumentReference",
        state.api.settings().public_url
    );
    let record = my_shared_care_record(&state.api.context(), &caller, &pointer_url_base).await?;
    let all = sections(&state, &record.bundle);
    let shown = PATIENT_SECTIONS
        .iter()
        .map(|(from, to)| SectionView {
            name: to,
            entries: all
                .iter()
                .find(|s| s.name == *from)
                .map(|s| s.entries.clone())
                .unwrap_or_default(),
        })
        .collect();
    // Only the organisations that hold part of this patient's record and did
    // not send it; status details (timeouts, errors) are not for patients.
    let missing = sources(&state, &record)
        .into_iter()
        .filter(|s| s.makes_partial)
        .map(|s| s.name)
        .collect();
    let page = PatientSummaryPage {
        chrome: PatientChrome::new(&state, &session, &headers),
        partial: record.partial,
        missing,
        sections: shown,
    };
    Ok(html(&page)?.into_response())
}
