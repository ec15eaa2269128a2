use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};

use super::store::memory::MemorySessionStore;
use super::*;

fn sessions(secure: bool, idle: u64, absolute: u64) -> Sessions {
    Sessions::new(
        Arc::new(MemorySessionStore::new()),
        SessionSettings {
            idle: Duration::from_secs(idle),
            absolute: Duration::from_secs(absolute),
            secure,
        },
    )
}

fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
    headers
}

#[tokio::test]
async fn a_session_survives_between_requests_and_carries_its_data() {
    let sessions = sessions(false, 60, 600);
    let mut session = sessions.load(&HeaderMap::new()).await.unwrap();
    session.data.remember("9990000018");
    let cookie = sessions
        .commit(session)
        .await
        .unwrap()
        .expect("new session sets a cookie");
    let text = cookie.to_str().unwrap();
    assert!(text.starts_with("nrls-session="));
    assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax") && text.contains("Path=/"));
    assert!(!text.contains("Secure"));

    let again = sessions.load(&with_cookie(&cookie)).await.unwrap();
    assert_eq!(again.data.recent, vec!["9990000018"]);
    // A known session needs no new cookie.
    assert!(sessions.commit(again).await.unwrap().is_none());
}

#[tokio::test]
async fn over_https_the_cookie_is_secure_and_host_prefixed() {
    let sessions = sessions(true, 60, 600);
    let session = sessions.load(&HeaderMap::new()).await.unwrap();
    let cookie = sessions.commit(session).await.unwrap().unwrap();
    let text = cookie.to_str().unwrap();
    assert!(text.starts_with("__Host-nrls-session="), "{text}");
    assert!(text.contains("; Secure"));
}

#[tokio::test]
async fn rotation_at_sign_in_kills_the_old_id() {
    let sessions = sessions(false, 60, 600);
    let session = sessions.load(&HeaderMap::new()).await.unwrap();
    let planted = sessions.commit(session).await.unwrap().unwrap();
    let mut session = sessions.load(&with_cookie(&planted)).await.unwrap();
    let (old_id, old_csrf) = (session.id().to_owned(), session.data.csrf.clone());
    session.rotate();
    session.data.recent.push("signed-in".into());
    let fresh = sessions
        .commit(session)
        .await
        .unwrap()
        .expect("rotation sets a cookie");
    let rotated = sessions.load(&with_cookie(&fresh)).await.unwrap();
    assert_ne!(rotated.id(), old_id);
    assert_ne!(rotated.data.csrf, old_csrf);
    assert_eq!(rotated.data.recent, vec!["signed-in"]);
    // The fixated id now opens an empty, new session.
    let fixated = sessions.load(&with_cookie(&planted)).await.unwrap();
    assert!(fixated.data.recent.is_empty());
    assert_ne!(fixated.id(), old_id);
}

#[tokio::test]
async fn idle_and_absolute_time_outs_end_the_session() {
    // Idle: zero seconds, so the session is already over at the next load.
    let idle = sessions(false, 0, 600);
    let mut session = idle.load(&HeaderMap::new()).await.unwrap();
    session.data.remember("x");
    let cookie = idle.commit(session).await.unwrap().unwrap();
    assert!(
        idle.load(&with_cookie(&cookie))
            .await
            .unwrap()
            .data
            .recent
            .is_empty()
    );
    // Absolute: the idle deadline never extends past the start + absolute.
    let absolute = sessions(false, 600, 0);
    let mut session = absolute.load(&HeaderMap::new()).await.unwrap();
    session.data.remember("x");
    let cookie = absolute.commit(session).await.unwrap().unwrap();
    assert!(
        absolute
            .load(&with_cookie(&cookie))
            .await
            .unwrap()
            .data
            .recent
            .is_empty()
    );
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let sessions = sessions(false, 60, 600);
    let mut session = sessions.load(&HeaderMap::new()).await.unwrap();
    session.data.remember("x");
    let cookie = sessions.commit(session).await.unwrap().unwrap();
    let session = sessions.load(&with_cookie(&cookie)).await.unwrap();
    let cleared = sessions.end(session).await.unwrap();
    assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    assert!(
        sessions
            .load(&with_cookie(&cookie))
            .await
            .unwrap()
            .data
            .recent
            .is_empty()
    );
}

#[test]
fn cookies_are_read_by_exact_name() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_static("other=1; nrls-session=abc; nrls-session-x=2"),
    );
    assert_eq!(cookie(&headers, "nrls-session"), Some("abc"));
    assert_eq!(cookie(&headers, "missing"), None);
}
