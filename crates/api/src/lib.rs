//! The HTTP adapter of nrls: routers by audience, extractors that check every
//! input, and the one place errors become OperationOutcomes (`error`).

pub mod access;
pub mod audit_trail;
pub mod error;
pub mod extract;
pub mod ops;
pub mod pointers;
pub mod rate_limit;
pub mod routes;
pub mod state;

use std::sync::Arc;

use axum::http::Method;
use axum::{Extension, Router, middleware};

pub use error::ApiError;
pub use state::{ApiSettings, AppState};

use ops::observe::Observer;
use ops::openapi::OpenApiDocument;
use routes::table::{Doc, Operation, Routes};
use routes::{CONSUMER_BASE, PRODUCER_BASE};

/// Every operation clients call: producer, consumer, OAuth and status.
/// Add routes here (or in the routers it nests) through the route table, so
/// they reach the OpenAPI document and the per-route metrics.
pub fn fhir_routes() -> Routes {
    let get = Method::GET;
    let status = |id| Doc::new(id, "NRL status: whether this node can serve", "status");
    let producer = routes::producer_router()
        .add(
            get.clone(),
            "/metadata",
            Doc::new(
                "producerCapabilities",
                "The producer API's CapabilityStatement",
                "producer",
            ),
            routes::capability::producer,
        )
        .add(
            get.clone(),
            "/_status",
            status("producerStatus"),
            routes::status,
        );
    let consumer = routes::consumer_router()
        .merge(routes::shared_care_record::routes())
        .add(
            get.clone(),
            "/metadata",
            Doc::new(
                "consumerCapabilities",
                "The consumer API's CapabilityStatement",
                "consumer",
            ),
            routes::capability::consumer,
        )
        .add(
            get.clone(),
            "/_status",
            status("consumerStatus"),
            routes::status,
        );
    Routes::new()
        .nest(PRODUCER_BASE, producer)
        .nest(CONSUMER_BASE, consumer)
        .add(get, "/_status", status("status"), routes::status)
        .merge(routes::oauth_router())
}

/// The whole service on the main listener, and the operations it serves
/// (what `/openapi.json` documents).
pub fn service(state: AppState) -> (Router, Vec<Operation>) {
    let (fhir, mut operations) = fhir_routes()
        .nest_router("/admin", admin_api(&state), &routes::admin::OPERATIONS)
        .into_parts();
    let (operational, more) = ops::routes(state.ops()).into_parts();
    operations.extend(more);
    let document = ops::openapi::document(&operations, &state.settings().public_url);
    let observer = Observer::new(&operations, state.ops());
    // FHIR semantics (Accept negotiation, echoed ids, OperationOutcome 404s)
    // apply to the FHIR routes only; probes and scrapes answer plainly.
    let router = fhir
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.settings().request_timeout,
            routes::request_timeout,
        ))
        .layer(middleware::from_fn(routes::negotiate))
        .layer(middleware::from_fn(extract::headers::echo_ids))
        .merge(operational)
        .layer(Extension(OpenApiDocument(document.to_string().into())))
        .layer(middleware::from_fn_with_state(
            observer,
            ops::observe::observe,
        ))
        .with_state(state);
    (router, operations)
}

/// The admin API (relationships, objections, alerts, AuditEvent search),
/// open to the apps listed in `ApiSettings::admin_clients`.
fn admin_api(state: &AppState) -> Router<AppState> {
    let access = state.access();
    let admin = routes::admin::AdminState::new(
        state.auth_handle(),
        Arc::clone(&access.access),
        Arc::clone(&access.audit),
        state.settings().admin_clients.iter().cloned(),
        format!("{}/admin", state.settings().public_url),
        access.node.clone(),
    );
    routes::admin::router(admin)
}

/// The whole service on the main listener.
pub fn router(state: AppState) -> Router {
    service(state).0
}

/// The admin listener (`[server] admin_listen`): probes, `/metrics` and
/// `POST /-/reload`, for the operators' network only.
pub fn admin_router(state: AppState) -> Router {
    let (router, operations) = ops::admin_routes().into_parts();
    let observer = Observer::new(&operations, state.ops());
    router
        .layer(middleware::from_fn_with_state(
            observer,
            ops::observe::observe,
        ))
        .with_state(state)
}
