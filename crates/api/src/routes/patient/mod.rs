//! The patient API at `/patient/FHIR/R4` (docs/patient-access.md): a
//! patient's own pointers, who looked at them and their choice about
//! sharing, as FHIR. Handlers call the same operations as the `/my-record/`
//! pages (`operations::patient`, `operations::patient_audit`), which filter
//! and audit; the caller is always the signed-in patient
//! (`extract::Patient`). A request naming another NHS number is 404 and
//! audited as a failure (`operations::patient::refuse_other_patient`).

mod audit_event;
mod capability;
mod consent;
mod query;

pub use audit_event::ROLE_CATEGORY_SYSTEM;
pub use consent::{CONSENT_ID, CONSENT_SCOPE, OBJECTION_POLICY};

use audit::Interaction;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::error::{ApiError, fhir_response, json_response};
use crate::extract::{JsonBody, PathParam, Patient, PatientSession, REQUIRED_PROOFING, proved};
use crate::operations::patient::{
    PatientCaller, my_objection, my_pointer, my_pointers, patient_view, record_my_objection,
    withdraw_my_objection,
};
use crate::operations::patient_audit::{HistoryQuery, who_looked};
use crate::operations::patient_session::{PatientLogin, token_issued};
use crate::patient_access::SessionPatient;
use crate::state::AppState;
use crate::table::{Doc, Routes, media};
use query::{Query, check_subject};

pub const PATIENT_BASE: &str = "/patient/FHIR/R4";
/// Where a signed-in patient gets a patient token.
pub const PATIENT_TOKEN_PATH: &str = "/patient/token";

const SUBJECT: &[&str] = &["subject:identifier", "patient.identifier"];
const POINTER_SEARCH: &[&str] = &["subject:identifier", "patient.identifier"];
const AUDIT_SEARCH: &[&str] = &[
    "date",
    "_count",
    "_include-own",
    "_cursor",
    "patient.identifier",
];
const CONSENT_SEARCH: &[&str] = &["patient.identifier"];
const BODIES: &[&str] = &[media::FHIR_JSON, media::JSON];

/// The patient API, to be nested under [`PATIENT_BASE`].
pub fn routes() -> Routes {
    let doc = |id, summary| Doc::new(id, summary, "patient").patient();
    Routes::new()
        .add(
            Method::GET,
            "/metadata",
            Doc::new("patientCapabilities", "The patient API's CapabilityStatement", "patient"),
            capability::statement,
        )
        .add(
            Method::GET,
            "/DocumentReference",
            doc("patientDocumentReferenceSearch", "The signed-in patient's own pointers, as a patient is shown them").query(POINTER_SEARCH),
            search_pointers,
        )
        .add(
            Method::GET,
            "/DocumentReference/{id}",
            doc("patientDocumentReferenceRead", "One of the signed-in patient's own pointers, if they are shown it"),
            read_pointer,
        )
        .add(
            Method::GET,
            "/AuditEvent",
            doc("patientAuditEventSearch", "Who looked at the signed-in patient's records: no staff identities, newest first").query(AUDIT_SEARCH),
            search_audit,
        )
        .add(
            Method::GET,
            "/Consent",
            doc("patientConsentSearch", "The signed-in patient's objection to sharing, as an IHE PCF Consent").query(CONSENT_SEARCH),
            search_consent,
        )
        .add(
            Method::POST,
            "/Consent",
            doc("patientConsentCreate", "Object to sharing: a Consent with status active, scope patient-privacy, provision.type deny").body(BODIES).success(201),
            create_consent,
        )
        .add(
            Method::GET,
            "/Consent/{id}",
            doc("patientConsentGet", "The signed-in patient's sharing Consent (id objection): active or inactive"),
            read_consent,
        )
        .add(
            Method::PUT,
            "/Consent/{id}",
            doc("patientConsentUpdate", "Change the sharing choice: status active objects, inactive withdraws the objection").body(BODIES),
            update_consent,
        )
}

/// The token route, served at [`PATIENT_TOKEN_PATH`].
pub fn token_routes() -> Routes {
    Routes::new().add(
        Method::POST,
        PATIENT_TOKEN_PATH,
        Doc::new(
            "patientToken",
            "A short-lived bearer token for /patient/FHIR/R4, for the patient signed in at /my-record/ (P9 only); it ends with that session",
            "patient",
        )
        .patient()
        .produces(media::JSON),
        token,
    )
}

fn url(state: &AppState, path: &str) -> String {
    format!("{}{PATIENT_BASE}{path}", state.settings().public_url)
}

/// A searchset Bundle of already-shaped resources.
fn bundle(
    self_url: &str,
    next: Option<String>,
    total: Option<usize>,
    entries: Vec<(String, Value)>,
) -> Response {
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": next}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries
            .into_iter()
            .map(|(full_url, resource)| json!({"fullUrl": full_url, "resource": resource, "search": {"mode": "match"}}))
            .collect::<Vec<_>>(),
    });
    if let Some(total) = total {
        bundle["total"] = json!(total);
    }
    fhir_response(StatusCode::OK, bundle.to_string())
}

async fn search_pointers(
    State(state): State<AppState>,
    Patient(caller): Patient,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref(), POINTER_SEARCH)?;
    let ctx = state.context();
    check_subject(&ctx, &caller, &query, SUBJECT, Interaction::Search).await?;
    let patient = state.patient_access();
    let found = my_pointers(&ctx, &caller, &patient.visible_types).await?;
    let entries = found
        .entries
        .iter()
        .map(|r| {
            (
                url(&state, &format!("/DocumentReference/{}", r.id)),
                patient_view(&r.json),
            )
        })
        .collect();
    let self_url = query.url(&url(&state, "/DocumentReference"), None);
    Ok(bundle(&self_url, None, Some(found.total as usize), entries))
}

async fn read_pointer(
    State(state): State<AppState>,
    Patient(caller): Patient,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let visible = &state.patient_access().visible_types;
    let record = my_pointer(&state.context(), &caller, &id, visible).await?;
    Ok(fhir_response(
        StatusCode::OK,
        patient_view(&record.json).to_string(),
    ))
}

async fn search_audit(
    State(state): State<AppState>,
    Patient(caller): Patient,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref(), AUDIT_SEARCH)?;
    let ctx = state.context();
    check_subject(&ctx, &caller, &query, SUBJECT, Interaction::Search).await?;
    let history: HistoryQuery = query.history(now_ms())?;
    let found = who_looked(&ctx, &caller, history).await?;
    let nhs = caller.nhs_number.to_string();
    let patient = state.patient_access();
    let entries = found
        .entries
        .iter()
        .map(|e| {
            // A projection, not a stored resource: no server id to name.
            let urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
            (urn, audit_event::render(e, &nhs, patient))
        })
        .collect();
    let base = url(&state, "/AuditEvent");
    let next = found
        .next_before
        .map(|before| query.url(&base, Some(&before.to_string())));
    Ok(bundle(&query.url(&base, None), next, None, entries))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn search_consent(
    State(state): State<AppState>,
    Patient(caller): Patient,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref(), CONSENT_SEARCH)?;
    let ctx = state.context();
    check_subject(&ctx, &caller, &query, SUBJECT, Interaction::Search).await?;
    let objection = my_objection(&ctx, &caller).await?;
    let nhs = caller.nhs_number.to_string();
    // Only a standing objection is listed; GET /Consent/objection shows an
    // inactive one too.
    let entries: Vec<(String, Value)> = objection
        .iter()
        .map(|o| {
            (
                url(&state, &format!("/Consent/{CONSENT_ID}")),
                consent::render(&nhs, Some(o)),
            )
        })
        .collect();
    let total = entries.len();
    Ok(bundle(
        &query.url(&url(&state, "/Consent"), None),
        None,
        Some(total),
        entries,
    ))
}

async fn read_consent(
    State(state): State<AppState>,
    Patient(caller): Patient,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    if id != CONSENT_ID {
        return Err(ApiError::not_found(format!(
            "Consent/{id} is not known; your sharing choice is Consent/{CONSENT_ID}"
        )));
    }
    let objection = my_objection(&state.context(), &caller).await?;
    let body = consent::render(&caller.nhs_number.to_string(), objection.as_ref());
    Ok(fhir_response(StatusCode::OK, body.to_string()))
}

/// The body's patient, if it names one, must be the caller.
async fn same_patient(
    state: &AppState,
    caller: &PatientCaller,
    named: Option<&str>,
) -> Result<(), ApiError> {
    match named {
        Some(nhs) if nhs != caller.nhs_number.to_string() => {
            Err(crate::operations::patient::refuse_other_patient(
                &state.context(),
                caller,
                Interaction::Update,
                nhs,
            )
            .await)
        }
        _ => Ok(()),
    }
}

async fn create_consent(
    State(state): State<AppState>,
    Patient(caller): Patient,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let choice = consent::parse(&body, None)?;
    if !choice.object {
        return Err(ApiError::one(domain::issue::Issue::new(
            domain::issue::ErrorCode::InvalidCodeValue,
            domain::issue::IssueType::CodeInvalid,
            "Consent.status",
            format!(
                "a new Consent records an objection (status active); withdraw it with PUT Consent/{CONSENT_ID} and status inactive"
            ),
        )));
    }
    same_patient(&state, &caller, choice.patient.as_deref()).await?;
    let objection = record_my_objection(&state.context(), &caller).await?;
    let body = consent::render(&caller.nhs_number.to_string(), Some(&objection));
    let mut response = fhir_response(StatusCode::CREATED, body.to_string());
    if let Ok(location) = HeaderValue::from_str(&url(&state, &format!("/Consent/{CONSENT_ID}"))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn update_consent(
    State(state): State<AppState>,
    Patient(caller): Patient,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    if id != CONSENT_ID {
        return Err(ApiError::not_found(format!(
            "Consent/{id} is not known; your sharing choice is Consent/{CONSENT_ID}"
        )));
    }
    let choice = consent::parse(&body, Some(&id))?;
    same_patient(&state, &caller, choice.patient.as_deref()).await?;
    let ctx = state.context();
    let nhs = caller.nhs_number.to_string();
    let body = if choice.object {
        let objection = record_my_objection(&ctx, &caller).await?;
        consent::render(&nhs, Some(&objection))
    } else {
        withdraw_my_objection(&ctx, &caller).await?;
        consent::render(&nhs, None)
    };
    Ok(fhir_response(StatusCode::OK, body.to_string()))
}

/// `POST /patient/token`: a patient token for the session's patient. The
/// session cookie is `SameSite=Lax`, so another site cannot make a
/// browser POST here with it, and the JSON answer is not readable
/// cross-origin.
async fn token(
    State(state): State<AppState>,
    PatientSession(patient): PatientSession,
) -> Result<Response, ApiError> {
    let login = PatientLogin {
        subject: patient.subject.clone().unwrap_or_default(),
        nhs_number: proved(&patient).ok(),
    };
    let issued = issue_token(&state, &patient);
    let issued = token_issued(&state.context(), &login, issued).await?;
    Ok(json_response(StatusCode::OK, json!(issued)))
}

fn issue_token(
    state: &AppState,
    patient: &SessionPatient,
) -> Result<auth::TokenResponse, ApiError> {
    let nhs = proved(patient)?;
    let session = patient.session.as_deref().ok_or_else(|| {
        ApiError::Unauthenticated("sign in at /my-record/ first: no stored session".into())
    })?;
    state
        .auth()
        .issue_patient_token(&nhs.to_string(), REQUIRED_PROOFING, session)
        .map_err(|e| ApiError::Internal(format!("patient token: {e}")))
}
