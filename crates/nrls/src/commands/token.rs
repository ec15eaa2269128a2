//! `nrls token`: mints a signed-JWT client assertion and exchanges it for an
//! access token, as a real client would. With `--demo-app`, uses the demo keys.

use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `nrls token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The app's client id.
    #[arg(long, default_value = crate::demo::CONSUMER_APP)]
    pub client_id: String,
    /// Base URL of the nrls server.
    #[arg(long, env = "NRLS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// PEM private key (PKCS#8) of a real app; without it the demo key of
    /// `--client-id` is used.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Key id (`kid`) of `--key`.
    #[arg(long, default_value = "1")]
    pub kid: String,
    /// Algorithm of `--key`: ES384 or RS384.
    #[arg(long, default_value = "ES384")]
    pub alg: String,
    /// Print the client assertion instead of exchanging it.
    #[arg(long)]
    pub assertion_only: bool,
}

pub async fn run(args: TokenArgs) -> Result<(), String> {
    let url = args.url.trim_end_matches('/');
    let token_endpoint = format!("{url}/oauth2/token");
    let key = match &args.key {
        None => auth::demo::signing_key(&args.client_id).map_err(|e| e.to_string())?,
        Some(path) => {
            let pem =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let alg = auth::AssertionAlg::from_name(&args.alg)
                .ok_or_else(|| format!("unsupported --alg {}: use ES384 or RS384", args.alg))?;
            auth::SigningKeyPem::new(pem, alg, args.kid.clone())
        }
    };
    let assertion = auth::assertion::mint_client_assertion(
        &args.client_id,
        &token_endpoint,
        &key,
        Duration::from_secs(240),
    )
    .map_err(|e| e.to_string())?;
    if args.assertion_only {
        println!("{assertion}");
        return Ok(());
    }
    let token = exchange(&token_endpoint, &assertion).await?;
    println!("{token}");
    Ok(())
}

/// An access token for demo app `client_id` (its demo key) from the server
/// at `url`, as `nrls token` gets one.
pub async fn demo_token(url: &str, client_id: &str) -> Result<String, String> {
    let token_endpoint = format!("{}/oauth2/token", url.trim_end_matches('/'));
    let key = auth::demo::signing_key(client_id).map_err(|e| e.to_string())?;
    let assertion = auth::assertion::mint_client_assertion(
        client_id,
        &token_endpoint,
        &key,
        Duration::from_secs(240),
    )
    .map_err(|e| e.to_string())?;
    exchange(&token_endpoint, &assertion).await
}

/// Trades a client assertion for an access token.
async fn exchange(token_endpoint: &str, assertion: &str) -> Result<String, String> {
    let form = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    let body = form_body(&form);
    let response = reqwest::Client::new()
        .post(token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {token_endpoint}: {e}"))?;
    let status = response.status();
    let json: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("token endpoint answered {status}: {e}"))?;
    match json.get("access_token").and_then(|t| t.as_str()) {
        Some(token) => Ok(token.to_owned()),
        None => Err(format!("token endpoint answered {status}: {json}")),
    }
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
