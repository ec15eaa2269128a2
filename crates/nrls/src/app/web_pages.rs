//! Wiring of the web pages (`crates/web`): their session store, their state
//! and, with `--demo`, the demo clinicians' access facts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::AppState;
use store::postgres::Database;
use web::session::store::{SessionStore, memory, postgres, sqlite};

use super::StartError;
use crate::config::{Backend, Config};
use crate::demo;

/// The viewer's demo psychiatrist holds this activity code, so the demo shows
/// a sensitive pointer to her and to nobody else.
pub(super) fn demo_access_policy(config: &mut Config) {
    let code = web::viewer::demo::DEMO_SENSITIVE_ACTIVITY.to_owned();
    if !config.access.sensitive_activity_codes.contains(&code) {
        config.access.sensitive_activity_codes.push(code);
    }
}

/// The demo clinicians' relationships and the demo objection.
pub(super) async fn seed_demo_access(
    access: &api::access::AccessServices,
) -> Result<(), StartError> {
    let patients = demo::patients(demo::PATIENTS);
    web::viewer::demo::seed_access(access.facts.as_ref(), &patients)
        .await
        .map(drop)
        .map_err(StartError::Demo)
}

/// A break-glass view of the first demo patient (the patient pages' demo
/// P9 patient), so "who looked at my records" shows an emergency access.
pub(super) async fn seed_demo_history(api: &api::AppState) -> Result<(), StartError> {
    let patients = demo::patients(1);
    let Some(&first) = patients.first() else {
        return Ok(());
    };
    web::viewer::demo::seed_break_glass_view(api, first)
        .await
        .map_err(StartError::Demo)
}

/// Where the web pages keep sessions: beside the access facts, so every
/// node of a PostgreSQL deployment shares them.
pub(super) fn session_store(
    config: &Config,
    database: Option<Database>,
) -> Result<Arc<dyn SessionStore>, StartError> {
    Ok(match (database, config.store.backend) {
        (Some(database), _) => Arc::new(postgres::PostgresSessionStore::new(database)),
        (None, Backend::Sqlite) => Arc::new(
            sqlite::SqliteSessionStore::open(&config.store.data_dir.join(sqlite::FILE_NAME))
                .map_err(|e| StartError::Viewer(e.to_string()))?,
        ),
        (None, _) => Arc::new(memory::MemorySessionStore::new()),
    })
}

/// The web pages' sessions over `store`.
pub(super) fn sessions(
    config: &Config,
    store: Arc<dyn SessionStore>,
    public_url: &str,
) -> web::session::Sessions {
    web::session::Sessions::new(store, config.viewer.sessions(public_url))
}

/// Organisation names by ODS code: the demo's, then the configured sources'.
fn organisations(config: &Config) -> HashMap<String, String> {
    let mut organisations: HashMap<String, String> = demo::CUSTODIANS
        .iter()
        .chain(web::viewer::demo::ORGANISATIONS)
        .map(|(ods, name)| ((*ods).to_owned(), (*name).to_owned()))
        .collect();
    for source in &config.sources {
        organisations
            .entry(source.ods.clone())
            .or_insert_with(|| source.name.clone());
    }
    organisations
}

/// What the patient API (`/patient/FHIR/R4`) shares with the patient
/// pages: the visible types, organisation names and the sessions.
pub(super) fn patient_access(
    config: &Config,
    sessions: &web::session::Sessions,
) -> api::patient_access::PatientAccess {
    api::patient_access::PatientAccess {
        visible_types: config.patient_access.visible_types.clone(),
        organisations: organisations(config),
        sessions: Some(Arc::new(web::patient::PatientSessionReader(
            sessions.clone(),
        ))),
    }
}

/// The web pages' state; also starts the hourly purge of expired sessions.
pub(super) fn web_state(
    config: &Config,
    api: AppState,
    sessions: web::session::Sessions,
    cis2: Option<web::oidc::RelyingParty>,
    nhs_login: Option<web::oidc::RelyingParty>,
    demo_mode: bool,
    public_url: &str,
) -> web::WebState {
    let purging = sessions.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = purging.purge().await {
                tracing::warn!(error = %e, "purging expired web sessions failed");
            }
        }
    });
    let organisations = organisations(config);
    tracing::info!(
        sessions = sessions.backend(),
        cis2 = cis2.is_some(),
        nhs_login = nhs_login.is_some(),
        demo_sign_in = demo_mode,
        "viewer at /viewer/, patient pages at /my-record/, patient API at /patient/FHIR/R4"
    );
    web::WebState(Arc::new(web::WebInner {
        api,
        sessions,
        cis2,
        nhs_login,
        patient_types: config.patient_access.visible_types.clone(),
        demo: demo_mode,
        organisations,
        https: public_url.starts_with("https://"),
    }))
}
