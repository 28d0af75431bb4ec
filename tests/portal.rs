//! The web portal over real HTTP: sessions and tokens, the email-first rule on an anonymous
//! portal, logout and idle expiry, bad requests.

mod common;

use common::{Portal, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn an_anonymous_visitor_gives_an_email_first_then_gets_help(db: &TestDb) {
    let p = Portal::start(db, "").await;
    let (token, start) = p.session().await;
    assert!(token.len() >= 32, "at least 128 bits");
    assert!(
        start["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("email address")
    );

    let (s, v) = p.say(&token, "how do I reset my password?").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        Portal::text(&v).contains("doesn't look like an email"),
        "{v}"
    );
    let (_, v) = p.say(&token, "not-an-email@").await;
    assert!(
        Portal::text(&v).contains("doesn't look like an email"),
        "{v}"
    );

    let (s, v) = p.say(&token, "Visitor@Example.org").await;
    assert_eq!(s, StatusCode::OK);
    assert!(Portal::text(&v).contains("visitor@example.org"), "{v}");
    // The same token goes on working in the new (authenticated) session.
    let (s, v) = p.say(&token, "My VPN drops every hour").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!Portal::text(&v).is_empty());

    let sessions = p.report("sessions --channel portal").await;
    let rows = sessions["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the anonymous session ended when the visitor gave an email: {sessions}"
    );
    assert_eq!(rows[0]["auth_method"], "portal_email");
    assert_eq!(rows[0]["ip"], "127.0.0.1");
    assert_eq!(rows[0]["login_id"], "visitor@example.org");
    assert_eq!(rows[0]["person"]["kind"], "customer");
    let user = p.report("user visitor@example.org").await;
    assert_eq!(user["roles"], json!(["customer"]));
    assert_eq!(user["identities"][0]["auth_method"], "portal_email");
    assert_eq!(
        user["account"]["verified_email"],
        Value::Null,
        "portal emails are not verified"
    );
    p.stop().await;
}

async fn a_known_email_is_never_linked_without_a_code(db: &TestDb) {
    let p = Portal::start(db, "").await;
    let (token, _) = p.session().await;
    // admin@acme.test is the demo tenant's bootstrap admin: a known person.
    let (_, v) = p.say(&token, "admin@acme.test").await;
    assert!(Portal::text(&v).contains("one-time code"), "{v}");
    let (_, v) = p.say(&token, "/koji users").await;
    assert!(
        Portal::text(&v).contains("doesn't look like an email"),
        "still asked for an email: {v}"
    );
    let admin = p.report("user admin@acme.test").await;
    assert!(
        admin["history"].as_array().unwrap().is_empty(),
        "nothing joined the admin's history"
    );
    assert_eq!(admin["identities"].as_array().unwrap().len(), 0);
    p.stop().await;
}

async fn logout_and_idle_expiry_end_the_token(db: &TestDb) {
    let p = Portal::start(db, "").await;
    let (token, _) = p.session().await;
    p.say(&token, "wendy@example.org").await;
    let r = p
        .http
        .delete(format!("{}/portal/help/session", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = p.say(&token, "hello?").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = p
        .http
        .delete(format!("{}/portal/help/session", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (token, _) = p.session().await;
    p.say(&token, "xavier@example.org").await;
    p.clock.advance(std::time::Duration::from_secs(31 * 60));
    let (s, v) = p.say(&token, "still there?").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(p.report("sessions --channel portal").await["total"], 0);
    p.stop().await;
}

async fn bad_requests_get_clear_errors_and_change_nothing(db: &TestDb) {
    let p = Portal::start(db, "[server]\nmax_body_bytes = 2048\n").await;
    let (token, _) = p.session().await;
    let url = format!("{}/portal/help/messages", p.base);
    let r = p
        .http
        .post(&url)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "missing token");
    let r = p
        .http
        .post(&url)
        .bearer_auth("forged-token")
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "forged token");
    let r = p
        .http
        .post(&url)
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = p
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"text": "x".repeat(5000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "over max_body_bytes"
    );
    let r = p
        .http
        .post(format!("{}/portal/nope/session", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = p
        .http
        .get(format!("{}/portal/nope", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = p
        .http
        .post(format!("{}/portal/nope/messages", p.base))
        .bearer_auth(&token)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nothing of the bad requests was recorded: the visitor is still only asked for an email.
    assert_eq!(p.report("users").await["total"], 0);
    let page = p
        .http
        .get(format!("{}/portal/help", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Acme help desk") && html.contains("aria-live"),
        "{html}"
    );
    p.stop().await;
}

async fn behind_a_trusted_proxy_the_forwarded_address_is_recorded(db: &TestDb) {
    let p = Portal::start(db, "[server]\ntrust_forwarded_for = true\n").await;
    let r = p
        .http
        .post(format!("{}/portal/help/session", p.base))
        .header("x-forwarded-for", "198.51.100.9, 203.0.113.7")
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    p.say(&token, "yara@example.org").await;
    let s = p.report("sessions").await;
    assert_eq!(s["rows"][0]["ip"], "203.0.113.7", "{s}");
    p.stop().await;
}

async fn rate_limits_answer_429_with_retry_after(db: &TestDb) {
    let p = Portal::start(
        db,
        "[server]\nrate_limit_per_session = 3\nrate_limit_per_ip = 6\n",
    )
    .await;
    let (token, _) = p.session().await;
    for text in ["zoe@example.org", "first question", "second question"] {
        assert_eq!(p.say(&token, text).await.0, StatusCode::OK);
    }
    let r = p
        .http
        .post(format!("{}/portal/help/messages", p.base))
        .bearer_auth(&token)
        .json(&json!({"text": "third question"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    let zoe = p.report("user zoe@example.org").await;
    assert!(
        !zoe["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["text"] == "third question"),
        "a refused message is not recorded"
    );
    // The address has made 5 requests of its 6 (refused ones count): one more, then 429.
    p.session().await;
    let r = p
        .http
        .post(format!("{}/portal/help/session", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    p.stop().await;
}

async fn a_typed_email_never_inherits_roles_granted_to_that_person(db: &TestDb) {
    let p = Portal::start(db, "").await;
    let (token, _) = p.session().await;
    // An internal domain typed on a portal still makes a customer: staff sign in with OAuth.
    let (_, v) = p.say(&token, "newhire@acme.test").await;
    assert!(Portal::text(&v).contains("newhire@acme.test"), "{v}");
    let user = p.report("user newhire@acme.test").await;
    assert_eq!(user["person"]["kind"], "customer");

    let t = p.core.cli_tenant(None).unwrap();
    let out = p
        .core
        .run_command(
            t,
            &koji::conversation::Actor::Operator,
            koji_channel::Channel::Console,
            koji::commands::parse("grant newhire@acme.test admin").unwrap(),
        )
        .await;
    assert!(
        matches!(out, koji::conversation::CommandOutput::Text(_)),
        "{out:?}"
    );
    // The visitor who merely typed that email lost the link and the session with it.
    let (s, _) = p.say(&token, "/koji users").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let user = p.report("user newhire@acme.test").await;
    assert!(user["identities"].as_array().unwrap().is_empty(), "{user}");
    p.stop().await;
}

on_both_backends!(
    a_typed_email_never_inherits_roles_granted_to_that_person,
    rate_limits_answer_429_with_retry_after,
    an_anonymous_visitor_gives_an_email_first_then_gets_help,
    a_known_email_is_never_linked_without_a_code,
    logout_and_idle_expiry_end_the_token,
    bad_requests_get_clear_errors_and_change_nothing,
    behind_a_trusted_proxy_the_forwarded_address_is_recorded,
);
