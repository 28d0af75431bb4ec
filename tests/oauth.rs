//! OAuth 2.0 with PKCE against a local fake provider: the whole dance, a callback served by a
//! second instance on the same database, denied consent, replayed and expired state, and a
//! provider that is down.

mod common;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{Portal, TestDb};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Fake {
    /// code → PKCE challenge it was issued for
    codes: Mutex<HashMap<String, String>>,
    verified: Mutex<Vec<String>>,
}

async fn token(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    let bad = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return bad("grant_type");
    }
    let has_client = headers.get("authorization").is_some()
        || form.get("client_id").map(String::as_str) == Some("koji-client");
    if !has_client {
        return bad("client");
    }
    let Some(challenge) = form
        .get("code")
        .and_then(|c| f.codes.lock().unwrap().remove(c))
    else {
        return bad("code");
    };
    let Some(verifier) = form.get("code_verifier") else {
        return bad("no verifier");
    };
    let computed = base64_url(&sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge {
        return bad("pkce");
    }
    f.verified.lock().unwrap().push(verifier.clone());
    (
        StatusCode::OK,
        axum::Json(json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600})),
    )
}

async fn userinfo(headers: HeaderMap) -> (StatusCode, axum::Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer at-1") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
    }
    (
        StatusCode::OK,
        axum::Json(json!({"account_id": "acc-1", "email": "ivan@acme.test", "name": "Ivan"})),
    )
}

fn base64_url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn fake_provider() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fake)
}

fn oauth_config(provider: &str, token_url: &str) -> String {
    format!(
        "[auth.oauth]\nclient_id = \"koji-client\"\nclient_secret = \"s3cret\"\nauthorize_url = \"{provider}/authorize\"\ntoken_url = \"{token_url}\"\nuserinfo_url = \"{provider}/userinfo\"\nscopes = [\"read:me\"]\n"
    )
}

fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The sign-in link Koji offered in the reply, as a path on `base`.
fn link(reply: &Value, base: &str) -> String {
    let text = Portal::text(reply);
    let at = text
        .find("/auth/start?state=")
        .unwrap_or_else(|| panic!("no link in {text}"));
    let path: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    format!("{base}{path}")
}

async fn the_whole_dance_signs_an_internal_user_in_on_any_replica(db: &TestDb) {
    let (provider, fake) = fake_provider().await;
    let cfg = oauth_config(&provider, &format!("{provider}/token"));
    let a = Portal::start(db, &cfg).await;
    let b = Portal::start(db, &cfg).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let (token, _) = a.session().await;
    let (_, v) = a.say(&token, "ivan@acme.test").await;
    let start = link(&v, &a.base);
    let r = browser.get(&start).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{provider}/authorize?")),
        "{location}"
    );
    let q = query(&location);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "koji-client");
    assert_eq!(q["response_type"], "code");
    assert!(q["redirect_uri"].ends_with("/auth/callback"));
    let state = q["state"].clone();
    fake.codes
        .lock()
        .unwrap()
        .insert("code-1".into(), q["code_challenge"].clone());

    // The provider sends the browser back — to the other replica.
    let r = browser
        .get(format!(
            "{}/auth/callback?code=code-1&state={state}",
            b.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        fake.verified.lock().unwrap().len(),
        1,
        "the token request carried the PKCE verifier"
    );

    let (s, v) = a.say(&token, "my laptop will not boot").await;
    assert_eq!(s, 200, "{v}");
    let sessions = a.report("sessions --channel portal").await;
    assert_eq!(sessions["rows"][0]["auth_method"], "oauth", "{sessions}");
    assert_eq!(sessions["rows"][0]["person"]["email"], "ivan@acme.test");
    assert_eq!(sessions["rows"][0]["person"]["kind"], "internal");

    // The same answer again: refused, nothing changes.
    let r = browser
        .get(format!(
            "{}/auth/callback?code=code-1&state={state}",
            a.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    a.stop().await;
    b.stop().await;
}

async fn denied_expired_and_unknown_states_change_nothing(db: &TestDb) {
    let (provider, _fake) = fake_provider().await;
    let a = Portal::start(db, &oauth_config(&provider, &format!("{provider}/token"))).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (token, _) = a.session().await;
    let (_, v) = a.say(&token, "ivan@acme.test").await;
    let state = query(&link(&v, &a.base))["state"].clone();
    let r = browser
        .get(format!(
            "{}/auth/callback?error=access_denied&state={state}",
            a.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("declined"));
    let r = browser
        .get(format!("{}/auth/callback?code=x&state=forged", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (_, v) = a.say(&token, "ivan@acme.test").await;
    let start = link(&v, &a.base);
    a.clock.advance(std::time::Duration::from_secs(11 * 60));
    let r = browser.get(&start).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expired"));
    let state = query(&start)["state"].clone();
    let r = browser
        .get(format!("{}/auth/callback?code=x&state={state}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        a.core
            .store
            .find_person("acme", "ivan@acme.test")
            .await
            .unwrap()
            .is_none(),
        "no one was signed in"
    );
    a.stop().await;
}

async fn a_provider_that_is_down_gets_a_clear_page(db: &TestDb) {
    let (provider, _fake) = fake_provider().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Portal::start(
        db,
        &oauth_config(&provider, &format!("http://127.0.0.1:{closed}/token")),
    )
    .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (token, _) = a.session().await;
    let (_, v) = a.say(&token, "ivan@acme.test").await;
    let state = query(&link(&v, &a.base))["state"].clone();
    let r = browser
        .get(format!("{}/auth/callback?code=c&state={state}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        a.core
            .store
            .find_person("acme", "ivan@acme.test")
            .await
            .unwrap()
            .is_none()
    );
    a.stop().await;
}

on_both_backends!(
    the_whole_dance_signs_an_internal_user_in_on_any_replica,
    denied_expired_and_unknown_states_change_nothing,
    a_provider_that_is_down_gets_a_clear_page,
);
