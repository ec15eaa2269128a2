//! The demo NHS login of `serve --demo`: pick one of several made-up
//! patients, no identity provider needed. The routes exist only when the
//! web state is built in demo mode, and the handlers refuse otherwise too.
//! Demo patients are recorded under the issuer `urn:nrls:demo`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::NhsNumber;

use super::{PatientChrome, html, respond};
use crate::WebState;
use crate::error::WebError;
use crate::oidc::nhs_login::{Proofing, SignedInPatient};
use crate::pages::{Choice, PatientDemoSignInPage};
use crate::viewer::demo::{DEMO_ISSUER, OBJECTING_PATIENT};
use crate::viewer::form;

/// One demo patient: `patient` indexes the demo patients `serve --demo`
/// seeds (the first valid NHS numbers of the never-issued 999 range).
pub struct DemoPatient {
    pub id: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
    pub patient: usize,
    pub level: &'static str,
}

pub const PATIENTS: &[DemoPatient] = &[
    DemoPatient {
        id: "ada",
        name: "Ada Lovelace (identity proved, P9)",
        summary: "Care plans held by organisations in several regions.",
        patient: 0,
        level: "P9",
    },
    DemoPatient {
        id: "ben",
        name: "Ben Okoro (identity proved, P9)",
        summary: "Has asked for their records not to be shared.",
        patient: OBJECTING_PATIENT,
        level: "P9",
    },
    DemoPatient {
        id: "cara",
        name: "Cara Smith (identity not fully proved, P5)",
        summary: "Signed in with NHS login but not proved who they are: sees no records.",
        patient: 2,
        level: "P5",
    },
];

/// The `index`th demo patient's NHS number, as `nrls::demo::patients` makes them.
fn demo_nhs_number(index: usize) -> Option<NhsNumber> {
    (999_000_000u32..)
        .filter_map(NhsNumber::from_stem)
        .nth(index)
}

fn patient(demo: &DemoPatient) -> Option<SignedInPatient> {
    let p9 = demo.level == "P9";
    Some(SignedInPatient {
        issuer: DEMO_ISSUER.to_owned(),
        subject: format!("demo-{}", demo.id),
        proofing: if p9 { Proofing::P9 } else { Proofing::Lower },
        nhs_number: if p9 {
            Some(demo_nhs_number(demo.patient)?.to_string())
        } else {
            None
        },
        stated_level: demo.level.to_owned(),
        given_name: demo.name.split(' ').next().map(str::to_owned),
        expires_at: crate::session::now() + 3600,
        id_token: None,
    })
}

fn page_for(
    state: &WebState,
    session: &crate::session::Session,
    headers: &HeaderMap,
    error: Option<&'static str>,
) -> PatientDemoSignInPage {
    PatientDemoSignInPage {
        chrome: PatientChrome::new(state, session, headers),
        patients: PATIENTS
            .iter()
            .map(|p| Choice {
                id: p.id.to_owned(),
                name: p.name.to_owned(),
                summary: p.summary.to_owned(),
            })
            .collect(),
        error,
        first_id: PATIENTS
            .first()
            .map(|p| p.id.to_owned())
            .unwrap_or_default(),
    }
}

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if !state.demo {
        return Err(WebError::DemoDisabled);
    }
    let session = state.sessions.load(&headers).await?;
    let body = html(&page_for(&state, &session, &headers, None))?;
    respond(&state, session, body).await
}

pub(super) async fn sign_in(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    if !state.demo {
        return Err(WebError::DemoDisabled);
    }
    let session = state.sessions.load(&headers).await?;
    let fields = form(&session, &body)?;
    let chosen = fields
        .get("patient")
        .and_then(|id| PATIENTS.iter().find(|p| p.id == id))
        .and_then(patient);
    let Some(patient) = chosen else {
        let page = page_for(&state, &session, &headers, Some("Select a demo patient"));
        return Ok((StatusCode::BAD_REQUEST, html(&page)?).into_response());
    };
    super::sign_in::begin_session(&state, session, patient).await
}
