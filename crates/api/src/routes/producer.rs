use audit::Interaction;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use domain::search::Audience;

use super::table::{Doc, Routes, media};
use super::{PRODUCER_BASE, audited_search, etag, pointer_response, success, success_code};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::ApiError;
use crate::extract::{PointerBody, Producer, SearchParams, if_match_version};
use crate::pointers;
use crate::state::AppState;

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
    PointerBody(doc): PointerBody,
) -> Result<Response, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Create);
    let result = pointers::create(&state, &caller, doc, &mut draft)
        .await
        .map(|created| {
            let mut response = success(
                StatusCode::CREATED,
                "https://fhir.nhs.uk/CodeSystem/NRLF-ResponseCode",
                "RESOURCE_CREATED",
                "Resource created",
            );
            let location = format!(
                "{}{PRODUCER_BASE}/DocumentReference/{}",
                state.settings().public_url,
                created.id
            );
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
            headers.insert(header::ETAG, etag(created.version));
            response
        });
    audited(&state, &caller, draft, result).await
}

async fn update(
    State(state): State<AppState>,
    Producer(caller): Producer,
    Path(id): Path<String>,
    headers: HeaderMap,
    PointerBody(doc): PointerBody,
) -> Result<Response, ApiError> {
    let if_match = if_match_version(&headers)?;
    let mut draft = AuditDraft::new(Interaction::Update);
    let result = pointers::update(&state, &caller, &id, doc, if_match, &mut draft)
        .await
        .map(|updated| {
            let mut response = success_code(StatusCode::OK, "RESOURCE_UPDATED", "Resource updated");
            response
                .headers_mut()
                .insert(header::ETAG, etag(updated.version));
            response
        });
    audited(&state, &caller, draft, result).await
}

async fn delete(
    State(state): State<AppState>,
    Producer(caller): Producer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_match = if_match_version(&headers)?;
    let mut draft = AuditDraft::new(Interaction::Delete);
    let result = pointers::delete(&state, &caller, &id, if_match, &mut draft)
        .await
        .map(|()| success_code(StatusCode::OK, "RESOURCE_REMOVED", "Resource removed"));
    audited(&state, &caller, draft, result).await
}

async fn read(
    State(state): State<AppState>,
    Producer(caller): Producer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Read);
    let result = pointers::read_for_producer(&state, &caller, &id, &mut draft)
        .await
        .map(pointer_response);
    audited(&state, &caller, draft, result).await
}

async fn search(
    State(state): State<AppState>,
    Producer(caller): Producer,
    params: SearchParams,
) -> Result<Response, ApiError> {
    audited_search(&state, &caller, Audience::Producer, &params).await
}
