//! OAuth 2.0 client credentials with signed-JWT client assertions (RFC 7523),
//! and the SMART configuration that advertises it. Errors here follow RFC 6749
//! (`{"error": ...}`), which OAuth clients expect, not OperationOutcome.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::error::json_response;
use crate::state::AppState;
use crate::table::{Doc, Routes, media};

pub const TOKEN_PATH: &str = "/oauth2/token";

pub fn router() -> Routes {
    Routes::new()
        .add(
            Method::POST,
            TOKEN_PATH,
            Doc::new(
                "token",
                "Exchange a signed JWT client assertion for an access token (RFC 7523)",
                "oauth",
            )
            .body(&[media::FORM])
            .produces(media::JSON),
            token,
        )
        .add(
            Method::GET,
            "/.well-known/smart-configuration",
            Doc::new(
                "smartConfiguration",
                "SMART configuration: the token endpoint and its methods",
                "oauth",
            )
            .produces(media::JSON),
            smart_configuration,
        )
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": code, "error_description": description}),
    )
}

async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let tokens = state.ops().metrics().tokens();
    if !is_form {
        tokens.refused("invalid_request");
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the token request must be application/x-www-form-urlencoded",
        );
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match state.auth().issue_token(&form).await {
        Ok(token) => match serde_json::to_value(&token) {
            Ok(body) => {
                tokens.issued();
                json_response(StatusCode::OK, body)
            }
            Err(_) => {
                tokens.refused("server_error");
                oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "token serialisation failed",
                )
            }
        },
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::info!(error = e.oauth_code(), "token request refused");
            tokens.refused(e.oauth_code());
            oauth_error(status, e.oauth_code(), &e.description())
        }
    }
}

async fn smart_configuration(State(state): State<AppState>) -> Response {
    let base = &state.settings().public_url;
    json_response(
        StatusCode::OK,
        json!({
            "issuer": base,
            "token_endpoint": format!("{base}{TOKEN_PATH}"),
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/DocumentReference.read", "system/DocumentReference.write"],
            "capabilities": ["client-confidential-asymmetric"],
        }),
    )
}
