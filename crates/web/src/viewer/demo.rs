//! The demo sign-in of `serve --demo`: pick one of several made-up
//! clinicians, no identity provider needed. The routes exist only when the
//! web state is built in demo mode, and the handlers refuse otherwise too.
//!
//! The clinicians cover the access rules: a recorded relationship with the
//! first demo patients, none at all (break-glass), the sensitive-records
//! activity code, and two roles to choose between.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{NhsNumber, OdsCode};
use store::access::{AccessStore, AccessStoreError, NewRelationship, Objection, RelationshipKind};

use super::{form, respond};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{Choice, Chrome, DemoSignInPage, render};
use crate::session::data::{RoleProfile, SignedInUser};

/// The issuer demo users are recorded under in the audit trail.
pub const DEMO_ISSUER: &str = "urn:nrls:demo";
/// The activity code that lets a demo clinician see sensitive pointers;
/// `serve --demo` adds it to `[access] sensitive_activity_codes`.
pub const DEMO_SENSITIVE_ACTIVITY: &str = "B1234";
/// Organisations the demo clinicians work for that hold no demo records.
pub const ORGANISATIONS: &[(&str, &str)] = &[("RX9", "Yorkshire Ambulance Service")];

/// One demo clinician.
pub struct DemoClinician {
    pub id: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
    /// (person_roleid, ODS, role code, role name, activity codes)
    pub roles: &'static [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
    )],
    /// Demo patients (indexes) the first role's organisation is related to.
    pub related_patients: &'static [usize],
}

/// The demo clinicians.
pub const CLINICIANS: &[DemoClinician] = &[
    DemoClinician {
        id: "patel",
        name: "Dr Amina Patel",
        summary: "Emergency department consultant, Leeds Teaching Hospitals (RR8). Has a recorded relationship with the first four demo patients.",
        roles: &[(
            "demo-role-patel",
            "RR8",
            "S0030:G0100:R0570",
            "Consultant",
            &["B0264"],
        )],
        related_patients: &[0, 1, 2, 3],
    },
    DemoClinician {
        id: "reid",
        name: "Tom Reid",
        summary: "Paramedic, Yorkshire Ambulance Service (RX9). No recorded relationship with any demo patient: shows the reason and break-glass pages.",
        roles: &[(
            "demo-role-reid",
            "RX9",
            "S0080:G0450:R1200",
            "Paramedic",
            &["B0264"],
        )],
        related_patients: &[],
    },
    DemoClinician {
        id: "okafor",
        name: "Dr Sarah Okafor",
        summary: "Consultant psychiatrist, Lancashire and South Cumbria NHS FT (RW5). May see sensitive records; related to the first two demo patients.",
        roles: &[(
            "demo-role-okafor",
            "RW5",
            "S0030:G0100:R0570",
            "Consultant psychiatrist",
            &["B0264", DEMO_SENSITIVE_ACTIVITY],
        )],
        related_patients: &[0, 1],
    },
    DemoClinician {
        id: "hughes",
        name: "Dr Gareth Hughes",
        summary: "GP at the demo GP practice (Y05868) and clinical lead at West Yorkshire ICB (QWO): chooses a role after signing in.",
        roles: &[
            (
                "demo-role-hughes-gp",
                "Y05868",
                "S0010:G0020:R0260",
                "General practitioner",
                &["B0264"],
            ),
            (
                "demo-role-hughes-icb",
                "QWO",
                "S0030:G0100:R0570",
                "Clinical lead",
                &["B0264"],
            ),
        ],
        related_patients: &[0, 1, 2, 3, 4, 5],
    },
];

/// The demo patient (index) whose objection to sharing is recorded.
pub const OBJECTING_PATIENT: usize = 4;

/// Records the demo clinicians' relationships and the demo objection.
/// Already-recorded facts are left alone, so restarting is harmless.
pub async fn seed_access(
    access: &dyn AccessStore,
    patients: &[NhsNumber],
) -> Result<usize, String> {
    let mut created = 0;
    for clinician in CLINICIANS {
        let Some((_, ods, ..)) = clinician.roles.first() else {
            continue;
        };
        let ods = OdsCode::parse(ods).ok_or("bad demo ODS code")?;
        for &p in clinician.related_patients {
            let Some(&nhs_number) = patients.get(p) else {
                continue;
            };
            let kind = if ods.as_str() == "Y05868" {
                RelationshipKind::RegisteredPractice
            } else {
                RelationshipKind::Encounter
            };
            match access
                .add_relationship(NewRelationship {
                    nhs_number,
                    ods: ods.clone(),
                    kind,
                    recorded_by: "demo".into(),
                    recorded_at: "2026-01-01T00:00:00Z".into(),
                })
                .await
            {
                Ok(_) => created += 1,
                Err(AccessStoreError::DuplicateRelationship(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    if let Some(&objecting) = patients.get(OBJECTING_PATIENT) {
        access
            .record_objection(Objection {
                nhs_number: objecting,
                recorded_by: "demo".into(),
                recorded_at: "2026-01-01T00:00:00Z".into(),
                note: Some("Demo: the patient asked their GP not to share".into()),
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(created)
}

fn user(clinician: &DemoClinician) -> SignedInUser {
    let roles: Vec<RoleProfile> = clinician
        .roles
        .iter()
        .map(|(id, ods, code, name, activities)| RoleProfile {
            person_role_id: (*id).to_owned(),
            org: (*ods).to_owned(),
            org_name: None,
            role_code: Some((*code).to_owned()),
            role_name: Some((*name).to_owned()),
            activity_codes: activities.iter().map(|a| (*a).to_owned()).collect(),
        })
        .collect();
    let selected = match roles.as_slice() {
        [only] => Some(only.person_role_id.clone()),
        _ => None,
    };
    SignedInUser {
        issuer: DEMO_ISSUER.to_owned(),
        person_id: format!("demo-{}", clinician.id),
        name: clinician.name.to_owned(),
        roles,
        selected,
        expires_at: crate::session::now() + 12 * 3600,
        id_token: None,
    }
}

fn page_for(
    state: &WebState,
    session: &crate::session::Session,
    error: Option<&'static str>,
) -> DemoSignInPage {
    DemoSignInPage {
        chrome: Chrome::new(state, session),
        clinicians: CLINICIANS
            .iter()
            .map(|c| Choice {
                id: c.id.to_owned(),
                name: c.name.to_owned(),
                summary: c.summary.to_owned(),
            })
            .collect(),
        error,
        first_id: CLINICIANS
            .first()
            .map(|c| c.id.to_owned())
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
    let html = render(&page_for(&state, &session, None))?;
    respond(&state, session, html).await
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
        .get("clinician")
        .and_then(|id| CLINICIANS.iter().find(|c| c.id == id));
    let Some(clinician) = chosen else {
        let html = render(&page_for(&state, &session, Some("Select a demo clinician")))?;
        return Ok((StatusCode::BAD_REQUEST, html).into_response());
    };
    super::sign_in::begin_session(&state, session, user(clinician)).await
}

/// A break-glass view of `nhs_number` by the demo paramedic, through the
/// same caller and audited search the viewer uses, so the patient pages'
/// "who looked at my records" has an emergency access to show. Run at each
/// demo start (each adds one view: the audit trail is append-only).
pub async fn seed_break_glass_view(
    api: &api::AppState,
    nhs_number: NhsNumber,
) -> Result<(), String> {
    let Some(reid) = CLINICIANS.iter().find(|c| c.id == "reid") else {
        return Err("no demo paramedic".into());
    };
    let basis = crate::session::data::PatientBasis {
        nhs_number: nhs_number.to_string(),
        kind: crate::session::data::BasisKind::BreakGlass,
        reason: "Emergency treatment: demo, unconscious on arrival".into(),
    };
    let caller = super::caller::caller(&user(reid), Some(&basis)).map_err(|e| e.to_string())?;
    super::records::search_pointers(api, &caller, nhs_number)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
