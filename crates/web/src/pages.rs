//! The page templates (one per page, in `templates/`) and the chrome every
//! page shares: asset path, the signed-in user, the CSRF token, banners.

use askama::Template;
use axum::response::Html;

use crate::WebState;
use crate::error::WebError;
use crate::session::Session;

/// What the layout needs on every page.
pub struct Chrome {
    pub assets: String,
    pub user_name: Option<String>,
    pub role_label: Option<String>,
    pub csrf: String,
    pub demo: bool,
    pub break_glass: bool,
}

impl Chrome {
    /// For pages shown without a session (errors).
    pub fn anonymous() -> Chrome {
        Chrome {
            assets: crate::assets::base(),
            user_name: None,
            role_label: None,
            csrf: String::new(),
            demo: false,
            break_glass: false,
        }
    }

    pub fn new(state: &WebState, session: &Session) -> Chrome {
        let user = session.data.user.as_ref();
        Chrome {
            assets: crate::assets::base(),
            user_name: user.map(|u| u.name.clone()),
            role_label: user.and_then(|u| u.role()).map(|r| role_label(state, r)),
            csrf: session.data.csrf.clone(),
            demo: state.demo,
            break_glass: session.data.broke_glass(),
        }
    }
}

/// "Role name, Organisation (ODS)".
pub fn role_label(state: &WebState, role: &crate::session::data::RoleProfile) -> String {
    let org = role
        .org_name
        .clone()
        .unwrap_or_else(|| state.organisation_name(&role.org));
    let name = role
        .role_name
        .clone()
        .or_else(|| role.role_code.clone())
        .unwrap_or_else(|| "Role".to_owned());
    format!("{name}, {org} ({})", role.org)
}

/// Renders a page.
pub fn render(page: &impl Template) -> Result<Html<String>, WebError> {
    Ok(Html(page.render()?))
}

/// An NHS number as the pages show it (`999 000 0018`) and route it (`9990000018`).
pub struct PatientRef {
    pub digits: String,
    pub spaced: String,
}

impl PatientRef {
    pub fn new(nhs: domain::NhsNumber) -> PatientRef {
        let digits = nhs.to_string();
        let spaced = if digits.len() == 10 {
            format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
        } else {
            digits.clone()
        };
        PatientRef { digits, spaced }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub message: String,
    pub reference: Option<String>,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub chrome: Chrome,
    pub cis2: bool,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
pub struct SignedOutPage {
    pub chrome: Chrome,
}

#[derive(Template)]
#[template(path = "help.html")]
pub struct HelpPage {
    pub chrome: Chrome,
}

pub struct Choice {
    pub id: String,
    pub name: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "demo_sign_in.html")]
pub struct DemoSignInPage {
    pub chrome: Chrome,
    pub clinicians: Vec<Choice>,
    pub error: Option<&'static str>,
    pub first_id: String,
}

pub struct RoleChoice {
    pub id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "choose_role.html")]
pub struct ChooseRolePage {
    pub chrome: Chrome,
    pub roles: Vec<RoleChoice>,
    pub error: Option<&'static str>,
    pub first_id: String,
}

#[derive(Template)]
#[template(path = "find_patient.html")]
pub struct FindPatientPage {
    pub chrome: Chrome,
    pub error: Option<&'static str>,
    pub entered: String,
    pub recent: Vec<PatientRef>,
}

/// How a pointer's record is opened.
pub enum OpenHow {
    /// A direct `https` link.
    Link(String),
    /// An `ssp://` URL: through the Spine Secure Proxy, to this ASID.
    SpineSecureProxy(Option<String>),
    Other(String),
}

pub struct PointerRow {
    pub custodian: String,
    pub custodian_name: String,
    pub date: String,
    pub status: String,
    pub format: String,
    pub open: OpenHow,
}

pub struct TypeGroup {
    pub name: String,
    pub priority: bool,
    pub pointers: Vec<PointerRow>,
}

pub struct CategoryGroup {
    pub name: String,
    pub types: Vec<TypeGroup>,
}

#[derive(Template)]
#[template(path = "records.html")]
pub struct RecordsPage {
    pub chrome: Chrome,
    pub patient: PatientRef,
    pub groups: Vec<CategoryGroup>,
    pub total: usize,
    pub objection: bool,
    pub broke_glass: bool,
}

#[derive(Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub message: &'static str,
}

#[derive(Template)]
#[template(path = "relationship.html")]
pub struct RelationshipPage {
    pub chrome: Chrome,
    pub patient: PatientRef,
    pub org_name: String,
    pub errors: Vec<FieldError>,
    pub reasons: &'static [&'static str],
    pub basis: String,
    pub category: String,
    pub detail: String,
}

impl RelationshipPage {
    /// The message for a field, if it has one.
    pub fn error_for(&self, field: &str) -> Option<&'static str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message)
    }
}

pub struct SourceRow {
    pub name: String,
    pub ods: String,
    pub status: String,
    pub detail: String,
    pub age: Option<String>,
    pub ok: bool,
    pub makes_partial: bool,
}

#[derive(Clone)]
pub struct EntryRow {
    pub title: String,
    pub status: String,
    pub date: String,
    pub sources: String,
    pub conflicts: Vec<String>,
}

pub struct SectionView {
    pub name: &'static str,
    pub entries: Vec<EntryRow>,
}

#[derive(Template)]
#[template(path = "shared_record.html")]
pub struct SharedRecordPage {
    pub chrome: Chrome,
    pub patient: PatientRef,
    pub partial: bool,
    pub sources: Vec<SourceRow>,
    pub sections: Vec<SectionView>,
}

// The patient pages (`/my-record/`), on their own layout: no clinician
// account bar, and no header or footer inside the NHS App.

use crate::patient::PatientChrome;

#[derive(Template)]
#[template(path = "patient/sign_in.html")]
pub struct PatientSignInPage {
    pub chrome: PatientChrome,
    pub nhs_login: bool,
}

#[derive(Template)]
#[template(path = "patient/prove.html")]
pub struct PatientProvePage {
    pub chrome: PatientChrome,
}

#[derive(Template)]
#[template(path = "patient/signed_out.html")]
pub struct PatientSignedOutPage {
    pub chrome: PatientChrome,
}

pub struct PatientRecordRow {
    pub organisation: String,
    pub date: String,
    pub kind: String,
}

pub struct PatientRecordGroup {
    pub name: String,
    pub records: Vec<PatientRecordRow>,
}

#[derive(Template)]
#[template(path = "patient/records.html")]
pub struct PatientRecordsPage {
    pub chrome: PatientChrome,
    pub total: u64,
    pub groups: Vec<PatientRecordGroup>,
}

#[derive(Template)]
#[template(path = "patient/sharing.html")]
pub struct PatientSharingPage {
    pub chrome: PatientChrome,
    /// When the patient objected, if they have.
    pub objected_on: Option<String>,
}

#[derive(Template)]
#[template(path = "patient/demo_sign_in.html")]
pub struct PatientDemoSignInPage {
    pub chrome: PatientChrome,
    pub patients: Vec<Choice>,
    pub error: Option<&'static str>,
    pub first_id: String,
}

pub struct AccessRow {
    pub when: String,
    pub organisation: String,
    pub who: &'static str,
    pub purpose: String,
    pub looked: String,
}

#[derive(Template)]
#[template(path = "patient/summary.html")]
pub struct PatientSummaryPage {
    pub chrome: PatientChrome,
    /// Some organisation holding part of the record did not send it.
    pub partial: bool,
    /// Their names.
    pub missing: Vec<String>,
    pub sections: Vec<SectionView>,
}

#[derive(Template)]
#[template(path = "patient/who_looked.html")]
pub struct PatientWhoLookedPage {
    pub chrome: PatientChrome,
    pub rows: Vec<AccessRow>,
    pub from: String,
    pub to: String,
    pub include_own: bool,
    /// The query string of the next (older) page.
    pub next: Option<String>,
}
