//! What the patient API (`/patient/FHIR/R4`) needs beyond the app API: the
//! pointer types patients are shown, organisation names, and a way to read
//! the patient signed in to a web session. The web pages own sessions
//! (`web::session`); this crate only asks through [`PatientSessions`], so
//! the dependency keeps pointing one way (web → api).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use domain::NhsNumber;

/// The patient of a web session (`/my-record/`), as NHS login proved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPatient {
    /// Only at P9; never set below.
    pub nhs_number: Option<NhsNumber>,
    /// NHS login's stated `identity_proofing_level` (`P0`, `P5`, `P9`).
    pub proofing_level: String,
    /// Names the session without being its cookie (patient tokens carry it
    /// as `sid`, and die with the session); `None` when the session is not
    /// stored (a patient is always in a stored session).
    pub session: Option<String>,
    /// NHS login's `sub`, for the audit of session events; `None` when
    /// the request came with a patient token.
    pub subject: Option<String>,
}

/// Why the sessions could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionReadError {
    /// The session store is away: try again later (503).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours (500).
    #[error("session store failure: {0}")]
    Internal(String),
}

/// Reads the patient signed in to the session a request's cookie names.
#[async_trait::async_trait]
pub trait PatientSessions: Send + Sync {
    /// `Ok(None)` when the request carries no patient session.
    async fn patient(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<SessionPatient>, SessionReadError>;

    /// The patient of the live session `sid` ([`SessionPatient::session`]);
    /// `Ok(None)` once it has ended (signed out or timed out). One store
    /// read, and the session is not extended by it.
    async fn patient_of_session(
        &self,
        sid: &str,
    ) -> Result<Option<SessionPatient>, SessionReadError>;
}

/// The patient API's settings and its view of web sessions.
#[derive(Clone, Default)]
pub struct PatientAccess {
    /// Pointer type codes (SNOMED CT) patients are shown
    /// (`[patient_access] visible_types`).
    pub visible_types: Vec<String>,
    /// Organisation names by ODS code, for "who looked".
    pub organisations: HashMap<String, String>,
    /// Web sessions; without them only patient tokens are accepted.
    pub sessions: Option<Arc<dyn PatientSessions>>,
}

impl PatientAccess {
    /// An organisation's name, when known.
    pub fn organisation_name(&self, ods: &str) -> Option<&str> {
        self.organisations.get(ods).map(String::as_str)
    }
}

impl fmt::Debug for PatientAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientAccess")
            .field("visible_types", &self.visible_types)
            .field("organisations", &self.organisations.len())
            .field("sessions", &self.sessions.is_some())
            .finish()
    }
}
