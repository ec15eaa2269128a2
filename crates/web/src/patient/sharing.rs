//! "Your choice about sharing": see, record and withdraw an objection to
//! your records being shared through nrls. The same fact as the admin
//! objection API (`api::operations::patient`), effective at once; every
//! view and change is audited.

use api::operations::patient::{
    PatientCaller, my_objection, record_my_objection, withdraw_my_objection,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{PatientChrome, html, verified_nhs_number};
use crate::WebState;
use crate::error::WebError;
use crate::pages::PatientSharingPage;
use crate::viewer::records::human_date;
use crate::viewer::{form, see_other};

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let caller = PatientCaller::new(verified_nhs_number(&session)?);
    let objection = my_objection(&state.api.context(), &caller).await?;
    let page = PatientSharingPage {
        chrome: PatientChrome::new(&state, &session, &headers),
        objected_on: objection.map(|o| human_date(&o.recorded_at)),
    };
    Ok(html(&page)?.into_response())
}

/// POST `choice=object` or `choice=share`.
pub(super) async fn change(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let fields = form(&session, &body)?;
    let caller = PatientCaller::new(verified_nhs_number(&session)?);
    let ctx = state.api.context();
    match fields.get("choice").map(String::as_str) {
        Some("object") => {
            record_my_objection(&ctx, &caller).await?;
        }
        Some("share") => {
            withdraw_my_objection(&ctx, &caller).await?;
        }
        _ => return Err(WebError::NotFound),
    }
    Ok(see_other("/my-record/sharing"))
}
