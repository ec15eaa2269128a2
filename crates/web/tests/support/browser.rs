//! A cookie-keeping client for a web router: sends requests in process,
//! keeps the session cookie and the last CSRF token seen, and walks a
//! sign-in through the real OpenID provider and back to the router.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::complete_login;

pub struct Browser {
    pub app: axum::Router,
    pub cookie: Option<String>,
    pub csrf: String,
    /// Sent as `User-Agent` when set (the NHS App's).
    pub user_agent: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub location: String,
    pub body: String,
}

impl Browser {
    pub async fn send(&mut self, method: &str, path: &str, form: Option<String>) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(agent) = &self.user_agent {
            request = request.header(header::USER_AGENT, agent);
        }
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request.body(Body::from(form.unwrap_or_default())).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        if let Some(start) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[start + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Reply {
            status,
            location,
            body,
        }
    }

    /// Sign-in page, POST to start, the provider's forms, then the callback
    /// through nrls. Returns nrls's answer to the callback.
    pub async fn sign_in_at(&mut self, path: &str, account: &str) -> Reply {
        self.send("GET", path, None).await;
        let form = format!("csrf={}", self.csrf);
        let started = self.send("POST", path, Some(form)).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER);
        assert!(
            started.location.contains("code_challenge_method=S256"),
            "{}",
            started.location
        );
        assert!(started.location.contains("nonce="));
        let callback = complete_login(&started.location, account).await;
        let path = callback
            .strip_prefix("http://127.0.0.1:9")
            .unwrap_or_else(|| panic!("not our redirect URI: {callback}"));
        self.send("GET", path, None).await
    }
}

pub fn browser(app: axum::Router) -> Browser {
    Browser {
        app,
        cookie: None,
        csrf: String::new(),
        user_agent: None,
    }
}
