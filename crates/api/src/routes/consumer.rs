use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use domain::search::Audience;

use super::{CONSUMER_POINTERS, pointer_response, searchset};
use crate::error::ApiError;
use crate::extract::{Consumer, SearchParams};
use crate::operations;
use crate::state::AppState;
use crate::table::{Doc, Routes, media};

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
    let page = operations::search(&state.context(), &caller, Audience::Consumer, &params).await?;
    let public_url = &state.settings().public_url;
    Ok(searchset(&page, &params, public_url, CONSUMER_POINTERS))
}

async fn read(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    operations::read_for_consumer(&state.context(), &caller, &id)
        .await
        .map(pointer_response)
}
