use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use domain::search::Audience;

use super::{CONSUMER_BASE, pointer_response};
use crate::error::{ApiError, fhir_response};
use crate::extract::{Consumer, SearchParams};
use crate::pointers;
use crate::state::AppState;

/// `/consumer/FHIR/R4`: consumers find and read any pointer they may see.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/DocumentReference", get(search))
        .route("/DocumentReference/_search", post(search))
        .route("/DocumentReference/{id}", get(read))
}

async fn search(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    params: SearchParams,
) -> Result<Response, ApiError> {
    let base = format!("{CONSUMER_BASE}/DocumentReference");
    let outcome = pointers::search(&state, &caller, Audience::Consumer, &params, &base).await?;
    Ok(fhir_response(StatusCode::OK, outcome.bundle))
}

async fn read(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(pointer_response(
        pointers::read_for_consumer(&state, &caller, &id).await?,
    ))
}
