//! The sign-in test harness proves itself: a full authorization-code flow
//! with PKCE and `private_key_jwt` against the real OpenID provider, for the
//! CIS2 and the NHS login profile, and every hostile token the proxy makes
//! refused for the reason it was made for. If these fail, a failing sign-in
//! test of nrls says nothing about nrls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::oidc::{cis2_claims, cis2_role, nhs_login_claims};
use support::{
    OpConfig, OpenIdProvider, RelyingPartyClient, RsaKey, Tamper, TestRelyingParty, complete_login,
};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const NHS_LOGIN_VTR: &str = r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]"#;

fn keys() -> (RsaKey, RsaKey) {
    let mut keys = RsaKey::generate(&["op-1", "rp-1"]);
    let rp = keys.remove(1);
    (keys.remove(0), rp)
}

fn cis2_config() -> (OpConfig, RelyingPartyClient) {
    let (op_key, rp_key) = keys();
    let client = RelyingPartyClient::new("nrls-viewer", rp_key, REDIRECT)
        .post_logout_redirect_uri("http://127.0.0.1:9/signed-out");
    let roles = [
        cis2_role(
            "555000000011",
            "RX9",
            "S0010:G0020:R8000",
            &["B0380", "B1611"],
        ),
        cis2_role("555000000012", "RR8", "S8000:G8000:R8001", &["B0380"]),
    ];
    let config = OpConfig::cis2(op_key).client(client.clone()).account(
        "555000000001",
        cis2_claims("555000000001", "Alex Carter", &roles),
    );
    (config, client)
}

fn nhs_login_config() -> (OpConfig, RelyingPartyClient) {
    let (op_key, rp_key) = keys();
    let client = RelyingPartyClient::new("nrls-patient", rp_key, REDIRECT);
    let config = OpConfig::nhs_login(op_key)
        .client(client.clone())
        .account("p9", nhs_login_claims("9990000018", "P9"))
        .account("p5", nhs_login_claims("9990000026", "P5"));
    (config, client)
}

async fn sign_in(
    rp: &TestRelyingParty,
    account: &str,
    extra: &[(&str, &str)],
) -> (
    support::relying_party::PendingLogin,
    support::relying_party::Tokens,
) {
    let pending = rp.authorize(support::Profile::Cis2.scopes(), extra);
    let callback = complete_login(&pending.url, account).await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let tokens = rp
        .exchange(&pending, &callback)
        .await
        .expect("code exchange");
    (pending, tokens)
}

#[tokio::test]
async fn cis2_code_flow_with_pkce_and_private_key_jwt_yields_a_verified_id_token_with_roles() {
    let (config, client) = cis2_config();
    let op = OpenIdProvider::start(config).await;
    let rp = TestRelyingParty::discover(op.issuer(), client).await;
    assert!(
        rp.discovery["end_session_endpoint"].is_string(),
        "{}",
        rp.discovery
    );
    assert_eq!(
        rp.discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        rp.discovery["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );

    let (pending, tokens) = sign_in(&rp, "555000000001", &[]).await;
    let claims = rp
        .verify(&tokens.id_token, Algorithm::RS256, &pending.nonce)
        .await
        .expect("a valid ID token");
    assert_eq!(claims["sub"], "555000000001");
    assert_eq!(claims["nhsid_useruid"], "555000000001");
    assert_eq!(claims["name"], "Alex Carter");
    let roles = claims["nhsid_nrbac_roles"].as_array().expect("roles");
    assert_eq!(roles.len(), 2);
    assert_eq!(roles[0]["org_code"], "RX9");
    assert_eq!(roles[0]["activity_codes"], json!(["B0380", "B1611"]));
    let userinfo = rp.userinfo(&tokens.access_token).await;
    assert_eq!(userinfo["sub"], "555000000001");
    assert_eq!(
        userinfo["nhsid_nrbac_roles"][1]["person_roleid"],
        "555000000012"
    );
}

#[tokio::test]
async fn nhs_login_issues_rs512_tokens_with_the_proofing_level_and_nhs_number_only_at_p9() {
    let (config, client) = nhs_login_config();
    let op = OpenIdProvider::start(config).await;
    let rp = TestRelyingParty::discover(op.issuer(), client).await;
    let extra = [("vtr", NHS_LOGIN_VTR)];

    let pending = rp.authorize(support::Profile::NhsLogin.scopes(), &extra);
    let tokens = rp
        .exchange(&pending, &complete_login(&pending.url, "p9").await)
        .await
        .expect("exchange");
    assert!(
        rp.verify(&tokens.id_token, Algorithm::RS256, &pending.nonce)
            .await
            .is_err(),
        "RS512 only"
    );
    let p9 = rp
        .verify(&tokens.id_token, Algorithm::RS512, &pending.nonce)
        .await
        .expect("valid");
    assert_eq!(
        (p9["identity_proofing_level"].as_str(), p9["vot"].as_str()),
        (Some("P9"), Some("P9.Cp.Cd"))
    );
    assert_eq!(p9["nhs_number"], "9990000018");

    let pending = rp.authorize(support::Profile::NhsLogin.scopes(), &extra);
    let tokens = rp
        .exchange(&pending, &complete_login(&pending.url, "p5").await)
        .await
        .expect("exchange");
    let p5 = rp
        .verify(&tokens.id_token, Algorithm::RS512, &pending.nonce)
        .await
        .expect("valid");
    assert_eq!(
        (p5["identity_proofing_level"].as_str(), p5["vot"].as_str()),
        (Some("P5"), Some("P5.Cp.Cd"))
    );
    assert!(p5.get("nhs_number").is_none(), "{p5}");
}

#[tokio::test]
async fn the_provider_refuses_an_authorization_request_without_pkce() {
    let (config, client) = cis2_config();
    let op = OpenIdProvider::start(config).await;
    let rp = TestRelyingParty::discover(op.issuer(), client).await;
    let pending = rp.authorize("openid", &[]);
    let without_pkce: String = pending
        .url
        .split('&')
        .filter(|p| !p.starts_with("code_challenge"))
        .collect::<Vec<_>>()
        .join("&");
    let callback = complete_login(&without_pkce, "555000000001").await;
    assert!(callback.contains("error=invalid_request"), "{callback}");
    assert!(rp.exchange(&pending, &callback).await.is_err());
}

#[tokio::test]
async fn a_clock_offset_makes_the_real_provider_issue_expired_id_tokens() {
    let (config, client) = cis2_config();
    let op = OpenIdProvider::start(config.clock_offset_seconds(-7200)).await;
    let rp = TestRelyingParty::discover(op.issuer(), client).await;
    let (pending, tokens) = sign_in(&rp, "555000000001", &[]).await;
    assert_eq!(
        rp.verify(&tokens.id_token, Algorithm::RS256, &pending.nonce)
            .await
            .err()
            .as_deref(),
        Some("ExpiredSignature")
    );
}

#[tokio::test]
async fn the_hostile_proxy_makes_each_bad_token_and_each_is_refused_for_its_own_reason() {
    let (config, client) = nhs_login_config();
    let op = OpenIdProvider::start_hostile(config).await;
    let rp = TestRelyingParty::discover(op.issuer(), client).await;
    let extra = [("vtr", NHS_LOGIN_VTR)];
    let outcome = |tamper: Tamper, alg: Algorithm| {
        op.set_tamper(tamper);
        let rp = &rp;
        async move {
            let pending = rp.authorize(support::Profile::NhsLogin.scopes(), &extra);
            let callback = complete_login(&pending.url, "p9").await;
            let tokens = rp
                .exchange(&pending, &callback)
                .await
                .expect("exchange through the proxy");
            rp.verify(&tokens.id_token, alg, &pending.nonce)
                .await
                .map(|_| ())
                .map_err(|e| e.to_owned())
        }
    };
    assert_eq!(
        outcome(Tamper::None, Algorithm::RS512).await,
        Ok(()),
        "{}",
        op.log_text()
    );
    assert_eq!(
        outcome(Tamper::FlipSignature, Algorithm::RS512).await,
        Err("InvalidSignature".into())
    );
    let unsigned = Tamper::EditPayloadUnsigned {
        claim: "nhs_number".into(),
        value: json!("9990000026"),
    };
    assert_eq!(
        outcome(unsigned, Algorithm::RS512).await,
        Err("InvalidSignature".into())
    );
    // Re-signed by the OP's own key: the signature holds, the claim does not.
    assert_eq!(
        outcome(Tamper::Audience(json!("someone-else")), Algorithm::RS512).await,
        Err("InvalidAudience".into())
    );
    assert_eq!(
        outcome(Tamper::Nonce("replayed".into()), Algorithm::RS512).await,
        Err("nonce mismatch".into())
    );
    assert_eq!(
        outcome(Tamper::Alg(Algorithm::RS256), Algorithm::RS512).await,
        Err("alg RS256 is not RS512".into())
    );
    // ... and that RS256 token is genuinely signed by the OP's key.
    assert_eq!(
        outcome(Tamper::Alg(Algorithm::RS256), Algorithm::RS256).await,
        Ok(())
    );
}
