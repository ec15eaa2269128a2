use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use domain::search::Audience;
use fhir::DocumentReference;

use super::{PRODUCER_POINTERS, etag, pointer_response, searchset, success};
use crate::error::ApiError;
use crate::extract::{FhirBody, Producer, SearchParams, if_match_version};
use crate::operations;
use crate::state::AppState;
use crate::table::{Doc, Routes, media};

const TAG: &str = "producer";
const FHIR_BODY: &[&str] = &[media::FHIR_JSON, media::JSON];
const SEARCH_BODY: &[&str] = &[media::FORM, media::FHIR_JSON, media::JSON];

/// `/producer/FHIR/R4`: producers manage their own pointers.
pub fn router() -> Routes {
    let doc = |id, summary| Doc::new(id, summary, TAG).authenticated();
    Routes::new()
        .add(
            Method::POST,
            "/DocumentReference",
            doc(
                "producerCreate",
                "Create a pointer (relatesTo replaces supersedes atomically)",
            )
            .body(FHIR_BODY)
            .success(201),
            create,
        )
        .add(
            Method::GET,
            "/DocumentReference",
            doc("producerSearch", "Search your organisation's pointers")
                .query(Audience::Producer.parameters()),
            search,
        )
        .add(
            Method::POST,
            "/DocumentReference/_search",
            doc(
                "producerSearchPost",
                "Search your organisation's pointers (parameters in the body)",
            )
            .body(SEARCH_BODY),
            search,
        )
        .add(
            Method::GET,
            "/DocumentReference/{id}",
            doc("producerRead", "Read one of your pointers"),
            read,
        )
        .add(
            Method::PUT,
            "/DocumentReference/{id}",
            doc(
                "producerUpdate",
                "Update a pointer (If-Match or meta.versionId must be current)",
            )
            .body(FHIR_BODY),
            update,
        )
        .add(
            Method::DELETE,
            "/DocumentReference/{id}",
            doc("producerDelete", "Delete a pointer"),
            delete,
        )
}

async fn create(
    State(state): State<AppState>,
    Producer(caller): Producer,
    FhirBody(doc): FhirBody<DocumentReference>,
) -> Result<Response, ApiError> {
    let created = operations::create(&state.context(), &caller, doc).await?;
    let mut response = success(StatusCode::CREATED, "RESOURCE_CREATED", "Resource created");
    let location = format!(
        "{}{PRODUCER_POINTERS}/{}",
        state.settings().public_url,
        created.id
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::ETAG, etag(created.version));
    Ok(response)
}

async fn update(
    State(state): State<AppState>,
    Producer(caller): Producer,
    Path(id): Path<String>,
    headers: HeaderMap,
    FhirBody(doc): FhirBody<DocumentReference>,
) -> Result<Response, ApiError> {
    let if_match = if_match_version(&headers)?;
    let updated = operations::update(&state.context(), &caller, &id, doc, if_match).await?;
    let mut response = success(StatusCode::OK, "RESOURCE_UPDATED", "Resource updated");
    response
        .headers_mut()
        .insert(header::ETAG, etag(updated.version));
    Ok(response)
}

async fn delete(
    State(state): State<AppState>,
    Producer(caller): Producer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_match = if_match_version(&headers)?;
    operations::delete(&state.context(), &caller, &id, if_match).await?;
    Ok(success(
        StatusCode::OK,
        "RESOURCE_REMOVED",
        "Resource removed",
    ))
}

async fn read(
    State(state): State<AppState>,
    Producer(caller): Producer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    operations::read_for_producer(&state.context(), &caller, &id)
        .await
        .map(pointer_response)
}

async fn search(
    State(state): State<AppState>,
    Producer(caller): Producer,
    params: SearchParams,
) -> Result<Response, ApiError> {
    let page = operations::search(&state.context(), &caller, Audience::Producer, &params).await?;
    let public_url = &state.settings().public_url;
    Ok(searchset(&page, &params, public_url, PRODUCER_POINTERS))
}
