//! What a session holds. Serialised as JSON into the session store; every
//! field defaults so a session written by an older node still loads.

use serde::{Deserialize, Serialize};

/// Recent patients kept per session.
pub const RECENT_PATIENTS: usize = 10;

/// A session's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionData {
    /// The CSRF token every POST form of this session must carry.
    pub csrf: String,
    /// The signed-in user, once sign-in completed.
    pub user: Option<SignedInUser>,
    /// A sign-in under way at the identity provider.
    pub login: Option<PendingLogin>,
    /// NHS numbers looked up in this session, newest first.
    pub recent: Vec<String>,
    /// Self-claimed relationships and break-glass, per patient.
    pub access: Vec<PatientBasis>,
    /// A patient signed in with NHS login (the `/my-record/` pages). A
    /// session is either a clinician's or a patient's, never both.
    pub patient: Option<crate::oidc::nhs_login::SignedInPatient>,
}

impl SessionData {
    pub fn new(csrf: String) -> SessionData {
        SessionData {
            csrf,
            ..SessionData::default()
        }
    }

    /// Notes a patient as most recent.
    pub fn remember(&mut self, nhs_number: &str) {
        self.recent.retain(|n| n != nhs_number);
        self.recent.insert(0, nhs_number.to_owned());
        self.recent.truncate(RECENT_PATIENTS);
    }

    /// The basis this session declared for a patient, if any.
    pub fn basis_for(&self, nhs_number: &str) -> Option<&PatientBasis> {
        self.access.iter().find(|b| b.nhs_number == nhs_number)
    }

    /// The user broke the glass for some patient in this session: the banner
    /// stays for the rest of it.
    pub fn broke_glass(&self) -> bool {
        self.access.iter().any(|b| b.kind == BasisKind::BreakGlass)
    }
}

/// A user signed in, with the roles their identity provider gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedInUser {
    /// The issuer that vouched for them (`urn:nrls:demo` for demo users).
    pub issuer: String,
    /// `sub`: the person id.
    pub person_id: String,
    /// Display name, when the provider gave one.
    pub name: String,
    pub roles: Vec<RoleProfile>,
    /// The chosen `person_roleid`; `None` until chosen.
    pub selected: Option<String>,
    /// Unix seconds: the ID token's expiry (the identity's life in audit).
    pub expires_at: i64,
    /// The ID token, sent back as `id_token_hint` at sign-out.
    pub id_token: Option<String>,
}

impl SignedInUser {
    /// The role the user acts in, once chosen.
    pub fn role(&self) -> Option<&RoleProfile> {
        let selected = self.selected.as_deref()?;
        self.roles.iter().find(|r| r.person_role_id == selected)
    }
}

/// One RBAC role profile (`nhsid_nrbac_roles` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleProfile {
    pub person_role_id: String,
    /// ODS code of the organisation.
    pub org: String,
    pub org_name: Option<String>,
    pub role_code: Option<String>,
    pub role_name: Option<String>,
    pub activity_codes: Vec<String>,
}

/// A sign-in sent to the identity provider, checked when it comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    /// PKCE `code_verifier`.
    pub verifier: String,
    /// Unix seconds; a sign-in older than ten minutes is refused.
    pub started_at: i64,
}

/// Self-claim or break-glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BasisKind {
    SelfClaimed,
    BreakGlass,
}

/// What the user declared entitles them to one patient's records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatientBasis {
    pub nhs_number: String,
    pub kind: BasisKind,
    /// The reason as the audit trail records it ("category: free text").
    pub reason: String,
}
