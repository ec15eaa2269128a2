//! Lets the patient API (`api::routes::patient`) accept the `/my-record/`
//! session cookie: it asks, through `api::patient_access::PatientSessions`,
//! which patient a request's session holds. The session is only read,
//! never changed or extended here.

use api::patient_access::{PatientSessions, SessionPatient, SessionReadError};
use axum::http::HeaderMap;

use crate::oidc::nhs_login::{Proofing, SignedInPatient};
use crate::session::Sessions;
use crate::session::store::{SessionKey, SessionStoreError};

/// The web sessions, as the patient API sees them.
pub struct PatientSessionReader(pub Sessions);

#[async_trait::async_trait]
impl PatientSessions for PatientSessionReader {
    async fn patient(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<SessionPatient>, SessionReadError> {
        let session = self.0.load(headers).await.map_err(read_error)?;
        let sid = SessionKey::of(session.id()).to_sid();
        Ok(session
            .data
            .patient
            .map(|patient| session_patient(patient, sid)))
    }

    async fn patient_of_session(
        &self,
        sid: &str,
    ) -> Result<Option<SessionPatient>, SessionReadError> {
        let Some(key) = SessionKey::from_sid(sid) else {
            return Ok(None);
        };
        let data = self.0.peek(&key).await.map_err(read_error)?;
        Ok(data
            .and_then(|d| d.patient)
            .map(|patient| session_patient(patient, sid.to_owned())))
    }
}

fn read_error(e: SessionStoreError) -> SessionReadError {
    match e {
        SessionStoreError::Unavailable(e) => SessionReadError::Unavailable(e),
        SessionStoreError::Internal(e) => SessionReadError::Internal(e),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use api::patient_access::PatientSessions;
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::PatientSessionReader;
    use crate::oidc::nhs_login::{Proofing, SignedInPatient};
    use crate::session::store::memory::MemorySessionStore;
    use crate::session::{SessionSettings, Sessions};

    fn sessions(idle_seconds: u64) -> Sessions {
        Sessions::new(
            Arc::new(MemorySessionStore::new()),
            SessionSettings {
                idle: Duration::from_secs(idle_seconds),
                ..SessionSettings::default()
            },
        )
    }

    /// A P9 patient's session: its cookie header.
    async fn signed_in(sessions: &Sessions) -> HeaderMap {
        let mut session = sessions.load(&HeaderMap::new()).await.unwrap();
        session.data.patient = Some(SignedInPatient {
            issuer: "https://nhs-login.test".into(),
            subject: "sub-1".into(),
            proofing: Proofing::P9,
            nhs_number: Some("9990000018".into()),
            stated_level: "P9".into(),
            given_name: None,
            expires_at: i64::MAX,
            id_token: None,
        });
        let set = sessions.commit(session).await.unwrap().unwrap();
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        headers
    }

    #[tokio::test]
    async fn a_session_is_found_by_its_sid_until_it_ends_or_expires() {
        let live = sessions(600);
        let reader = PatientSessionReader(live.clone());
        let cookie = signed_in(&live).await;
        let patient = reader.patient(&cookie).await.unwrap().unwrap();
        let sid = patient.session.clone().unwrap();
        // The sid is not the cookie: it cannot be replayed as one.
        let cookie_text = cookie[header::COOKIE].to_str().unwrap();
        assert!(!cookie_text.contains(&sid));
        let found = reader.patient_of_session(&sid).await.unwrap().unwrap();
        assert_eq!(found.nhs_number, patient.nhs_number);
        assert_eq!(found.subject.as_deref(), Some("sub-1"));
        assert!(
            reader
                .patient_of_session("not-a-sid")
                .await
                .unwrap()
                .is_none()
        );
        // Signed out: gone at once.
        live.end(live.load(&cookie).await.unwrap()).await.unwrap();
        assert!(reader.patient_of_session(&sid).await.unwrap().is_none());

        // Timed out (idle limit zero: over at the next read): gone too.
        let idle = sessions(0);
        let reader = PatientSessionReader(idle.clone());
        let cookie = signed_in(&idle).await;
        let sid = super::SessionKey::of(
            cookie[header::COOKIE]
                .to_str()
                .unwrap()
                .split_once('=')
                .unwrap()
                .1,
        )
        .to_sid();
        assert!(reader.patient_of_session(&sid).await.unwrap().is_none());
    }
}
