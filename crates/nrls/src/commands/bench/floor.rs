//! The floor: the same axum + hyper + tokio stack as `nrls serve`, answering
//! every GET with a fixed 2 KB FHIR searchset Bundle, with no store and no
//! authentication. Whatever a real search costs beyond this is nrls's own.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::dataset::{Dataset, GeneratedPointer};

/// A searchset Bundle of one generated pointer, padded with its `fullUrl`,
/// as big as a typical one-pointer search answer (about 2 KB).
pub fn fixed_bundle() -> String {
    let mut json = String::new();
    let _ = Dataset::new(1, 1).generate(|g: GeneratedPointer<'_>| {
        json = g.json.to_owned();
        Ok::<(), ()>(())
    });
    let mut bundle = fhir::SearchsetBuilder::new(
        1,
        "http://127.0.0.1/consumer/FHIR/R4/DocumentReference?subject:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018",
        None,
        json.len() + 256,
    );
    bundle.push(fhir::BundleEntry {
        full_url: "http://127.0.0.1/consumer/FHIR/R4/DocumentReference/RA0-g1p0n0",
        resource_json: &json,
    });
    bundle.finish()
}

/// Serves the fixed bundle on `listen` and prints the bound address on stdout
/// (`listening <addr>`), then runs until killed.
pub async fn serve(listen: SocketAddr) -> Result<(), String> {
    let body: &'static str = Box::leak(fixed_bundle().into_boxed_str());
    let handler = move || async move {
        let mut response = Response::new(axum::body::Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/fhir+json"),
        );
        (StatusCode::OK, response).into_response()
    };
    let router = Router::new().fallback(get(handler));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {addr}");
    axum::serve(listener, router)
        .await
        .map_err(|e| e.to_string())
}
