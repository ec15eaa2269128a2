//! Lets the patient API (`api::routes::patient`) accept the `/my-record/`
//! session cookie: it asks, through `api::patient_access::PatientSessions`,
//! which patient a request's session holds. The session is only read,
//! never changed or extended here.

use api::patient_access::{PatientSessions, SessionPatient};
use axum::http::HeaderMap;

use crate::oidc::nhs_login::{Proofing, SignedInPatient};
use crate::session::Sessions;
use crate::session::store::SessionKey;

/// The web sessions, as the patient API sees them.
pub struct PatientSessionReader(pub Sessions);

#[async_trait::async_trait]
impl PatientSessions for PatientSessionReader {
    async fn patient(&self, headers: &HeaderMap) -> Result<Option<SessionPatient>, String> {
        let session = self.0.load(headers).await.map_err(|e| e.to_string())?;
        let sid = SessionKey::of(session.id()).to_sid();
        Ok(session
            .data
            .patient
            .map(|patient| session_patient(patient, sid)))
    }

    async fn patient_of_session(&self, sid: &str) -> Result<Option<SessionPatient>, String> {
        let Some(key) = SessionKey::from_sid(sid) else {
            return Ok(None);
        };
        let data = self.0.peek(&key).await.map_err(|e| e.to_string())?;
        Ok(data
            .and_then(|d| d.patient)
            .map(|patient| session_patient(patient, sid.to_owned())))
    }
}

fn session_patient(patient: SignedInPatient, sid: String) -> SessionPatient {
    SessionPatient {
        nhs_number: patient.verified_nhs_number(),
        proofing_level: match patient.proofing {
            Proofing::P9 => "P9".to_owned(),
            // A P9 level without a P9 vector of trust is not P9.
            Proofing::Lower if patient.stated_level == "P9" => {
                "P9 without a P9 vector of trust".to_owned()
            }
            Proofing::Lower => patient.stated_level,
        },
        session: Some(sid),
        subject: Some(patient.subject),
    }
}
