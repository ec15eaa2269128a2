//! The HTTP adapter of nrls: routers by audience, extractors that check every
//! input, and the one place errors become OperationOutcomes (`error`).

pub mod error;
pub mod extract;
pub mod pointers;
pub mod rate_limit;
pub mod routes;
pub mod state;

use axum::Router;
use axum::middleware;
use axum::routing::get;

pub use error::ApiError;
pub use state::{ApiSettings, AppState};

use routes::{CONSUMER_BASE, PRODUCER_BASE};

/// The whole service: producer, consumer, OAuth and status endpoints.
pub fn router(state: AppState) -> Router {
    let producer = routes::producer_router()
        .route("/metadata", get(routes::capability::producer))
        .route("/_status", get(routes::status));
    let consumer = routes::consumer_router()
        .route("/metadata", get(routes::capability::consumer))
        .route("/_status", get(routes::status));
    Router::new()
        .nest(PRODUCER_BASE, producer)
        .nest(CONSUMER_BASE, consumer)
        .route("/_status", get(routes::status))
        .merge(routes::oauth_router())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn(routes::negotiate))
        .layer(middleware::from_fn(extract::headers::echo_ids))
        .with_state(state)
}
