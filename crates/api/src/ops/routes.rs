//! The operability routes (probes, metrics, OpenAPI, reload), through the
//! route table like every other.

use axum::http::Method;

use super::{Ops, health, openapi, reload};
use crate::table::{Doc, Routes, media};

const TAG: &str = "operations";

fn probes() -> Routes {
    Routes::new()
        .add(
            Method::GET,
            "/livez",
            Doc::new("livez", "Liveness: the process is up and answering", TAG)
                .produces(media::JSON)
                .quiet(),
            health::livez,
        )
        .add(
            Method::GET,
            "/readyz",
            Doc::new(
                "readyz",
                "Readiness: 503 while starting, while the store is unreachable and during shutdown",
                TAG,
            )
            .produces(media::JSON)
            .quiet(),
            health::readyz,
        )
}

fn metrics_route() -> Routes {
    Routes::new().add(
        Method::GET,
        "/metrics",
        Doc::new(
            "metrics",
            "Prometheus metrics (text exposition format)",
            TAG,
        )
        .produces(media::PROMETHEUS)
        .quiet(),
        health::metrics,
    )
}

/// Operations on the main listener: probes, the OpenAPI document, and
/// `/metrics` unless an admin listener serves it.
pub fn routes(ops: &Ops) -> Routes {
    let routes = probes().add(
        Method::GET,
        "/openapi.json",
        Doc::new(
            "openapi",
            "This OpenAPI 3 document, generated from the route table",
            TAG,
        )
        .produces(media::JSON),
        openapi::serve,
    );
    if ops.separate_admin() {
        routes
    } else {
        routes.merge(metrics_route())
    }
}

/// Operations on the admin listener: probes, metrics and reload.
pub fn admin_routes() -> Routes {
    probes().merge(metrics_route()).add(
        Method::POST,
        "/-/reload",
        Doc::new(
            "reload",
            "Reload the app registry from the configuration file; a bad file is rejected and the old registry kept",
            TAG,
        )
        .produces(media::JSON),
        reload::reload,
    )
}
