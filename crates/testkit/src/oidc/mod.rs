//! A real OpenID provider for sign-in tests: `testing/oidc/provider.mjs`
//! (npm `oidc-provider`, a certified OP) in a node child process, configured
//! per identity provider, and a driver for its sign-in and consent forms.
//!
//! ```ignore
//! let op_key = RsaKey::one("op-1");
//! let rp_key = RsaKey::one("rp-1");
//! let op = OpenIdProvider::start(
//!     OpConfig::cis2(op_key)
//!         .client(RelyingPartyClient::new("nrls-viewer", rp_key, "http://127.0.0.1:8080/viewer/callback"))
//!         .account("555000000001", cis2_claims("555000000001", "Dr A", &[role])),
//! ).await;
//! // ... the RP builds its authorize URL against op.issuer() ...
//! let callback = complete_login(&authorize_url, "555000000001").await;
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

pub mod hostile;
pub mod keys;

pub use hostile::Tamper;
pub use keys::RsaKey;

/// Which identity provider the OP imitates: its scopes and claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// NHS CIS2 Authentication: `nhsid_useruid`, `nhsid_nrbac_roles`, …; RS256.
    Cis2,
    /// NHS login: `nhs_number`, `identity_proofing_level`, `vot`, …; RS512.
    NhsLogin,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Cis2 => "cis2",
            Profile::NhsLogin => "nhslogin",
        }
    }

    /// The scopes a relying party asks this provider for.
    pub fn scopes(self) -> &'static str {
        match self {
            Profile::Cis2 => "openid profile nhsperson nationalrbacaccess associatedorgs",
            Profile::NhsLogin => "openid profile email phone",
        }
    }
}

/// A relying party registered at the OP (always `private_key_jwt`).
#[derive(Clone, Debug)]
pub struct RelyingPartyClient {
    pub client_id: String,
    /// The key the client signs its assertions with; the OP gets its public half.
    pub key: RsaKey,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Defaults to the OP's `id_token_alg`.
    pub id_token_signed_response_alg: Option<String>,
}

impl RelyingPartyClient {
    pub fn new(client_id: &str, key: RsaKey, redirect_uri: &str) -> RelyingPartyClient {
        RelyingPartyClient {
            client_id: client_id.to_owned(),
            key,
            redirect_uris: vec![redirect_uri.to_owned()],
            post_logout_redirect_uris: Vec::new(),
            id_token_signed_response_alg: None,
        }
    }

    pub fn post_logout_redirect_uri(mut self, uri: &str) -> RelyingPartyClient {
        self.post_logout_redirect_uris.push(uri.to_owned());
        self
    }

    fn to_json(&self) -> Value {
        let mut client = json!({
            "client_id": self.client_id,
            "jwks": self.key.public_jwks(),
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
        });
        if let Some(alg) = &self.id_token_signed_response_alg {
            client["id_token_signed_response_alg"] = json!(alg);
        }
        client
    }
}

/// What `testing/oidc/provider.mjs` is started with (its header documents each key).
#[derive(Clone, Debug)]
pub struct OpConfig {
    pub profile: Profile,
    /// The OP's signing keys; the first signs ID tokens.
    pub keys: Vec<RsaKey>,
    pub id_token_alg: String,
    pub clients: Vec<RelyingPartyClient>,
    pub accounts: Map<String, Value>,
    /// Negative: ID tokens issued this far in the past (genuinely expired).
    pub clock_offset_seconds: i64,
}

impl OpConfig {
    /// CIS2-shaped: RS256 ID tokens with the CIS2 claims.
    pub fn cis2(signing_key: RsaKey) -> OpConfig {
        OpConfig::new(Profile::Cis2, signing_key, "RS256")
    }

    /// NHS login-shaped: RS512 ID tokens with the NHS login claims.
    pub fn nhs_login(signing_key: RsaKey) -> OpConfig {
        OpConfig::new(Profile::NhsLogin, signing_key, "RS512")
    }

    pub fn new(profile: Profile, signing_key: RsaKey, id_token_alg: &str) -> OpConfig {
        OpConfig {
            profile,
            keys: vec![signing_key],
            id_token_alg: id_token_alg.to_owned(),
            clients: Vec::new(),
            accounts: Map::new(),
            clock_offset_seconds: 0,
        }
    }

    pub fn client(mut self, client: RelyingPartyClient) -> OpConfig {
        self.clients.push(client);
        self
    }

    /// An account the sign-in form accepts as `login`; `claims` per the profile.
    pub fn account(mut self, id: &str, claims: Value) -> OpConfig {
        self.accounts.insert(id.to_owned(), claims);
        self
    }

    pub fn clock_offset_seconds(mut self, seconds: i64) -> OpConfig {
        self.clock_offset_seconds = seconds;
        self
    }

    fn to_json(&self, issuer: Option<&str>) -> Value {
        let mut config = json!({
            "profile": self.profile.name(),
            "keys": self.keys.iter().map(|k| &k.private_jwk).collect::<Vec<_>>(),
            "idTokenAlg": self.id_token_alg,
            "clients": self.clients.iter().map(RelyingPartyClient::to_json).collect::<Vec<_>>(),
            "accounts": self.accounts,
            "clockOffsetSeconds": self.clock_offset_seconds,
        });
        if let Some(issuer) = issuer {
            config["issuer"] = json!(issuer);
        }
        config
    }
}

/// One NHS RBAC role, as in CIS2's `nhsid_nrbac_roles`.
pub fn cis2_role(
    person_roleid: &str,
    org_code: &str,
    role_code: &str,
    activity_codes: &[&str],
) -> Value {
    json!({
        "person_orgid": format!("{person_roleid}-org"),
        "person_roleid": person_roleid,
        "org_code": org_code,
        "role_code": role_code,
        "role_name": "\"Clinical\":\"Clinical Provision\":\"Test Role\"",
        "activity_codes": activity_codes,
        "activities": activity_codes.iter().map(|c| format!("Activity {c}")).collect::<Vec<_>>(),
    })
}

/// A CIS2 user's claims: `nhsid_useruid`, `name`, the roles and their organisations.
pub fn cis2_claims(user_uid: &str, name: &str, roles: &[Value]) -> Value {
    let orgs: Vec<Value> = roles
        .iter()
        .map(|r| json!({ "org_code": r["org_code"], "org_name": format!("Organisation {}", r["org_code"].as_str().unwrap_or("")) }))
        .collect();
    let (family, given) = name.rsplit_once(' ').map_or((name, ""), |(g, f)| (f, g));
    json!({
        "nhsid_useruid": user_uid,
        "uid": user_uid,
        "name": name,
        "given_name": given,
        "family_name": family,
        "idassurancelevel": "3",
        "nhsid_nrbac_roles": roles,
        "nhsid_user_orgs": orgs,
    })
}

/// An NHS login user's claims at a proofing level ("P0", "P5", "P9"); `vot`
/// defaults to `<level>.Cp.Cd`. A P0/P5 user has no verified NHS number.
pub fn nhs_login_claims(nhs_number: &str, level: &str) -> Value {
    let mut claims = json!({
        "identity_proofing_level": level,
        "vot": format!("{level}.Cp.Cd"),
        "vtm": "https://auth.sandpit.signin.nhs.uk/trustmark/auth.sandpit.signin.nhs.uk",
        "birthdate": "1968-02-12",
        "family_name": "Testpatient",
        "given_name": "Ada",
        "email": "ada@example.invalid",
        "email_verified": true,
    });
    if level == "P9" {
        claims["nhs_number"] = json!(nhs_number);
    }
    claims
}

/// A running OP; killed when dropped.
pub struct OpenIdProvider {
    issuer: String,
    child: Child,
    // Held so the OP's stdin stays open: it exits when this closes.
    _stdin: ChildStdin,
    _dir: tempfile::TempDir,
    log: PathBuf,
    signing_key: RsaKey,
    tamper: Option<Arc<Mutex<Tamper>>>,
    proxy: Option<tokio::task::JoinHandle<()>>,
}

impl OpenIdProvider {
    /// Starts an honest OP on a loopback port and waits until it is ready.
    pub async fn start(config: OpConfig) -> OpenIdProvider {
        let signing_key = config.keys[0].clone();
        let (child, stdin, dir, log, issuer) = spawn(config.to_json(None)).await;
        OpenIdProvider {
            issuer,
            child,
            _stdin: stdin,
            _dir: dir,
            log,
            signing_key,
            tamper: None,
            proxy: None,
        }
    }

    /// Starts the OP behind the hostile-network proxy (see `hostile`): the
    /// issuer is the proxy's URL, and `set_tamper` chooses what the proxy
    /// does to ID tokens (nothing until then).
    pub async fn start_hostile(config: OpConfig) -> OpenIdProvider {
        let signing_key = config.keys[0].clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let issuer = format!("http://{}", listener.local_addr().expect("proxy address"));
        let (child, stdin, dir, log, _) = spawn(config.to_json(Some(&issuer))).await;
        let upstream =
            std::fs::read_to_string(dir.path().join("listening")).expect("listening url");
        let tamper = Arc::new(Mutex::new(Tamper::None));
        let proxy = hostile::serve(listener, upstream, signing_key.clone(), tamper.clone());
        OpenIdProvider {
            issuer,
            child,
            _stdin: stdin,
            _dir: dir,
            log,
            signing_key,
            tamper: Some(tamper),
            proxy: Some(proxy),
        }
    }

    /// The issuer URL (no trailing slash); discovery is below it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key the OP signs ID tokens with (tests may sign as the OP).
    pub fn signing_key(&self) -> &RsaKey {
        &self.signing_key
    }

    /// What the hostile proxy does to the next token responses.
    pub fn set_tamper(&self, tamper: Tamper) {
        let slot = self
            .tamper
            .as_ref()
            .expect("set_tamper needs OpenIdProvider::start_hostile");
        *slot.lock().expect("tamper lock") = tamper;
    }

    /// The OP's own log (stderr), for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        if let Some(proxy) = &self.proxy {
            proxy.abort();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Spawned = (Child, ChildStdin, tempfile::TempDir, PathBuf, String);

/// Spawns `node provider.mjs`, waits for `READY <issuer>` (up to 20 s), and
/// records the `LISTENING <url>` line in `<dir>/listening`.
async fn spawn(config: Value) -> Spawned {
    let root = crate::repository_root();
    assert!(
        root.join("testing/node_modules/oidc-provider").exists(),
        "testing/node_modules is missing: run scripts/test-deps"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("op.json");
    std::fs::write(&config_path, config.to_string()).expect("write op.json");
    let log = dir.path().join("op.log");
    let mut child = Command::new("node")
        .arg(root.join("testing/oidc/provider.mjs"))
        .arg(&config_path)
        .arg("0")
        .current_dir(root.join("testing"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("op.log")))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (scripts/test-deps installs it): {e}"));
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The OP prints two lines and then nothing; a thread reads them.
    std::thread::spawn(move || {
        let mut listening = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("LISTENING ") {
                listening = url.to_owned();
            } else if let Some(issuer) = line.strip_prefix("READY ") {
                let _ = tx.send((listening, issuer.to_owned()));
                return;
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(20), rx).await {
        Ok(Ok((listening, issuer))) => {
            std::fs::write(dir.path().join("listening"), &listening).expect("write listening");
            (
                child,
                stdin,
                dir,
                log,
                issuer.trim_end_matches('/').to_owned(),
            )
        }
        _ => {
            let _ = child.kill();
            panic!(
                "the OpenID provider did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
}

/// Signs in at the OP as `account_id` by driving its own sign-in and consent
/// forms over HTTP (keeping its cookies), starting from the relying party's
/// authorization URL; returns the URL the OP redirects the browser to at the
/// relying party (its redirect URI with `code`, `state` and `iss`, or an
/// `error`). The OP's origin is the authorization URL's.
pub async fn complete_login(authorize_url: &str, account_id: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let start = reqwest::Url::parse(authorize_url).expect("authorize URL");
    let mut jar = Jar::default();
    let mut response = jar
        .send(http.get(start.clone()))
        .await
        .expect("GET authorize");
    for _ in 0..12 {
        let here = response.url().clone();
        if response.status().is_redirection() {
            let location = response.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            let next = here.join(&location).expect("redirect target");
            if next.origin() != start.origin() {
                return next.to_string();
            }
            response = jar.send(http.get(next)).await.expect("follow redirect");
            continue;
        }
        let status = response.status();
        let page = response.text().await.expect("interaction page");
        assert!(
            status.is_success(),
            "the OP answered {status} at {here}:\n{page}"
        );
        let action = attribute_after(&page, "<form", "action")
            .unwrap_or_else(|| panic!("no form at {here}:\n{page}"));
        let prompt = attribute_after(&page, "name=\"prompt\"", "value").unwrap_or_default();
        let target = here
            .join(&action.replace("&amp;", "&"))
            .expect("form action");
        let form: Vec<(&str, &str)> = match prompt.as_str() {
            "login" => vec![
                ("prompt", "login"),
                ("login", account_id),
                ("password", "any"),
            ],
            "consent" => vec![("prompt", "consent")],
            other => panic!("unknown OP prompt {other:?} at {here}"),
        };
        response = jar
            .send(http.post(target).form(&form))
            .await
            .expect("submit OP form");
    }
    panic!("the OP did not redirect back to the relying party after 12 steps");
}

/// The OP's cookies by name. All are on the OP's one origin, so paths are
/// not needed; reqwest's own cookie store is a feature the service is not
/// built with, and turning it on here would rebuild every crate using reqwest.
#[derive(Default)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let request = if self.0.is_empty() {
            request
        } else {
            let cookies: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request.header(reqwest::header::COOKIE, cookies.join("; "))
        };
        let response = request.send().await?;
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = set.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let cleared = parts.any(|attribute| {
                let attribute = attribute.trim().to_ascii_lowercase();
                attribute == "max-age=0" || attribute.starts_with("expires=thu, 01 jan 1970")
            });
            if cleared || value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }
}

/// The value of `attr="…"` in the first tag that follows `marker`.
fn attribute_after(page: &str, marker: &str, attr: &str) -> Option<String> {
    let from = page.find(marker)?;
    let rest = &page[from..];
    let tag = &rest[..rest.find('>')?];
    let key = format!("{attr}=\"");
    let start = tag.find(&key)? + key.len();
    Some(tag[start..start + tag[start..].find('"')?].to_owned())
}
