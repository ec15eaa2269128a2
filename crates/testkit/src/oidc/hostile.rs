//! The hostile network: a loopback HTTP proxy in front of the OpenID
//! provider that rewrites ID tokens in token-endpoint responses.
//!
//! Why it exists: the OP is real and honest. It never signs a token for the
//! wrong audience, never echoes a nonce it was not given, never flips a byte
//! of its own signature and never signs with an algorithm the client did not
//! register. A relying party must still refuse all of these, because an
//! attacker on the network or a misconfigured peer can produce them. The
//! proxy produces them from genuine tokens: it holds the OP's private key (the
//! tests generated it), so a re-signed token is valid in every respect but the
//! one being tested. Expired tokens need no proxy: the OP's
//! `clockOffsetSeconds` issues them for real.
//!
//! The OP runs with its issuer set to the proxy's URL and trusts the proxy's
//! `X-Forwarded-Host`, so discovery, JWKS and every redirect point at the
//! proxy and the relying party never talks to the OP directly.

use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde_json::Value;

use super::keys::RsaKey;

/// What the proxy does to the `id_token` of a successful token response.
#[derive(Clone, Debug, Default)]
pub enum Tamper {
    /// Pass everything through unchanged.
    #[default]
    None,
    /// Flip bits in the signature (an attacker's edit; the signature fails).
    FlipSignature,
    /// Change a claim in the payload without re-signing (signature fails).
    EditPayloadUnsigned { claim: String, value: Value },
    /// Re-sign, with the OP's key, after setting `aud`.
    Audience(Value),
    /// Re-sign, with the OP's key, after setting `nonce`.
    Nonce(String),
    /// Re-sign, with the OP's key, after setting any claim.
    Claim { claim: String, value: Value },
    /// Re-sign the unchanged claims with the OP's key under another `alg`
    /// (e.g. RS256 where RS512 is registered).
    Alg(Algorithm),
}

struct Proxy {
    upstream: String,
    signing_key: RsaKey,
    tamper: Arc<Mutex<Tamper>>,
    http: reqwest::Client,
}

/// Serves the proxy on `listener`, forwarding to `upstream` (the OP's own URL).
pub fn serve(
    listener: tokio::net::TcpListener,
    upstream: String,
    signing_key: RsaKey,
    tamper: Arc<Mutex<Tamper>>,
) -> tokio::task::JoinHandle<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("proxy client");
    let state = Arc::new(Proxy {
        upstream,
        signing_key,
        tamper,
        http,
    });
    let app = axum::Router::new().fallback(forward).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = parts.headers.get(header::HOST).cloned();
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    if let Some(host) = host {
        upstream = upstream
            .header("x-forwarded-host", host)
            .header("x-forwarded-proto", "http");
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: {e}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap_or_default().to_vec();
    let is_token = parts.uri.path().ends_with("/token") && status.is_success();
    if is_token {
        let tamper = proxy.tamper.lock().expect("tamper lock").clone();
        bytes = rewrite_token_response(&bytes, &tamper, &proxy.signing_key);
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            && name != header::CONNECTION
        {
            response = response.header(name, value);
        }
    }
    response
        .header(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()))
        .body(Body::from(bytes))
        .unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, format!("proxy: {e}")))
}

fn plain(status: StatusCode, text: String) -> Response {
    Response::builder()
        .status(status)
        .body(Body::from(text))
        .expect("plain response")
}

fn rewrite_token_response(body: &[u8], tamper: &Tamper, key: &RsaKey) -> Vec<u8> {
    if matches!(tamper, Tamper::None) {
        return body.to_vec();
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    if let Some(id_token) = json["id_token"].as_str() {
        json["id_token"] = Value::String(tamper_id_token(id_token, tamper, key));
    }
    json.to_string().into_bytes()
}

/// Applies `tamper` to a compact JWS.
pub fn tamper_id_token(token: &str, tamper: &Tamper, key: &RsaKey) -> String {
    let mut parts = token.split('.');
    let (Some(header64), Some(payload64), Some(signature64)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return token.to_owned();
    };
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    let header: Value = decode(header64);
    let mut payload: Value = decode(payload64);
    let original_alg: Algorithm =
        serde_json::from_value(header["alg"].clone()).expect("an RSA alg");
    let alg = match tamper {
        Tamper::None => return token.to_owned(),
        Tamper::FlipSignature => {
            let mut signature = URL_SAFE_NO_PAD.decode(signature64).expect("base64url");
            let middle = signature.len() / 2;
            signature[middle] ^= 0xff;
            signature[0] ^= 0x01;
            return format!(
                "{header64}.{payload64}.{}",
                URL_SAFE_NO_PAD.encode(signature)
            );
        }
        Tamper::EditPayloadUnsigned { claim, value } => {
            payload[claim.as_str()] = value.clone();
            let edited = URL_SAFE_NO_PAD.encode(payload.to_string());
            return format!("{header64}.{edited}.{signature64}");
        }
        Tamper::Audience(aud) => {
            payload["aud"] = aud.clone();
            original_alg
        }
        Tamper::Nonce(nonce) => {
            payload["nonce"] = Value::String(nonce.clone());
            original_alg
        }
        Tamper::Claim { claim, value } => {
            payload[claim.as_str()] = value.clone();
            original_alg
        }
        Tamper::Alg(alg) => *alg,
    };
    let mut new_header = Header::new(alg);
    new_header.typ = header["typ"].as_str().map(str::to_owned);
    new_header.kid = header["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&new_header, &payload, &key.encoding_key()).expect("re-sign the ID token")
}
