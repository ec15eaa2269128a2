use audit::Interaction;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use domain::search::Audience;

use super::table::{Doc, Routes, media};
use super::{audited_search, pointer_response};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::ApiError;
use crate::extract::{Consumer, SearchParams};
use crate::pointers;
use crate::state::AppState;

const TAG: &str = "consumer";

/// `/consumer/FHIR/R4`: consumers find and read any pointer they may see.
pub fn router() -> Routes {
    let doc = |id, summary| Doc::new(id, summary, TAG).authenticated();
    Routes::new()
        .add(
            Method::GET,
            "/DocumentReference",
            doc("consumerSearch", "Find a patient's pointers by NHS number")
                .query(Audience::Consumer.parameters()),
            search,
        )
        .add(
            Method::POST,
            "/DocumentReference/_search",
            doc(
                "consumerSearchPost",
                "Find a patient's pointers (parameters in the body)",
            )
            .body(&[media::FORM, media::FHIR_JSON, media::JSON]),
            search,
        )
        .add(
            Method::GET,
            "/DocumentReference/{id}",
            doc("consumerRead", "Read one pointer"),
            read,
        )
}

async fn search(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    params: SearchParams,
) -> Result<Response, ApiError> {
    audited_search(&state, &caller, Audience::Consumer, &params).await
}

async fn read(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Read);
    let result = pointers::read_for_consumer(&state, &caller, &id, &mut draft)
        .await
        .map(pointer_response);
    audited(&state, &caller, draft, result).await
}
