//! The HTTP adapter of nrls, in dependency order (each layer uses only the
//! ones above it):
//!
//! - `caller`, `error`, `access`: who is calling, why a request failed, the
//!   access services (policy, access facts, audit trail). No HTTP.
//!   `patient_access`: the patient API's settings and its read-only view of
//!   the web pages' sessions.
//! - `audit_trail`, `operations`: the one AuditEvent of a request, and the
//!   operations (search, read, write, shared care record) that take a
//!   `Caller` and a `Context` and return typed results. No HTTP: a web
//!   front end calls the same operations.
//! - `state`: what handlers share; `AppState::context()` lends operations
//!   their `Context`.
//! - `extract`, `routes`: HTTP in (checked extractors) and out (handlers by
//!   audience that call one operation and shape its response).
//! - `table` and this file: the route table every router and the OpenAPI
//!   document are built from; `ops`: probes, metrics, the access log.

pub mod access;
pub mod audit_trail;
pub mod caller;
pub mod error;
pub mod extract;
pub mod operations;
pub mod ops;
pub mod patient_access;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod table;

use axum::http::Method;
use axum::{Extension, Router, middleware};

pub use caller::Caller;
pub use error::ApiError;
pub use operations::Context;
pub use state::{ApiSettings, AppState, WeakAppState};

use ops::observe::Observer;
use ops::openapi::OpenApiDocument;
use routes::{ADMIN_BASE, CONSUMER_BASE, PRODUCER_BASE};
use table::{Doc, Operation, Routes};

/// Every operation clients call: producer, consumer, admin, OAuth and
/// status. Add routes here (or in the routers it nests) through the route
/// table, so they reach the OpenAPI document and the per-route metrics.
pub fn fhir_routes() -> Routes {
    let get = Method::GET;
    let status = |id| Doc::new(id, "NRL status: whether this node can serve", "status");
    let producer = routes::producer_router()
        .merge(routes::subscriptions::routes(domain::Role::Producer))
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
        .merge(routes::subscriptions::routes(domain::Role::Consumer))
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
        .nest(ADMIN_BASE, routes::admin::routes())
        .nest(routes::patient::PATIENT_BASE, routes::patient::routes())
        .merge(routes::patient::token_routes())
        .add(get, "/_status", status("status"), routes::status)
        .merge(routes::oauth_router())
        .refusing_head()
}

/// The whole service on the main listener, and the operations it serves
/// (what `/openapi.json` documents).
pub fn service(state: AppState) -> (Router, Vec<Operation>) {
    service_with_pages(state, Router::new())
}

/// As [`service`], with `pages` (the web front end's routes, state already
/// given, their own request timeout applied) served beside the API under the
/// same observe layer: one access log line, the request metrics with the
/// route template as label, and the request's trace, for pages as for API calls.
pub fn service_with_pages(state: AppState, pages: Router) -> (Router, Vec<Operation>) {
    let (fhir, mut operations) = fhir_routes().into_parts();
    let (operational, more) = ops::routes(state.ops()).into_parts();
    operations.extend(more);
    let document = ops::openapi::document(
        &operations,
        &state.settings().public_url,
        state.settings().search_limits,
    );
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
        .with_state(state)
        .merge(pages)
        .layer(middleware::from_fn_with_state(
            observer,
            ops::observe::observe,
        ));
    (router, operations)
}

/// The whole service on the main listener.
pub fn router(state: AppState) -> Router {
    service(state).0
}

/// The whole service on the main listener, with the web pages
/// ([`service_with_pages`]).
pub fn router_with_pages(state: AppState, pages: Router) -> Router {
    service_with_pages(state, pages).0
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
