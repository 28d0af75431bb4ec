//! One-time email codes over real SMTP (a local sink): a known email signs in only with the
//! code; wrong codes, expiry, attempt and resend limits.

mod common;

use common::{Portal, SmtpSink, TestDb};
use reqwest::StatusCode;
use serde_json::json;

async fn provision(p: &Portal, email: &str) {
    let t = p.core.cli_tenant(None).unwrap();
    let cmd = koji::commands::parse(&format!("grant {email} analyst")).unwrap();
    let out = p
        .core
        .run_command(
            t,
            &koji::conversation::Actor::Operator,
            koji_channel::Channel::Console,
            cmd,
        )
        .await;
    assert!(
        matches!(out, koji::conversation::CommandOutput::Text(_)),
        "{out:?}"
    );
}

async fn a_known_email_signs_in_with_the_code_from_the_email(db: &TestDb) {
    let sink = SmtpSink::start().await;
    let p = Portal::start(db, &sink.config()).await;
    provision(&p, "kai@example.org").await;
    let (token, _) = p.session().await;
    let (_, v) = p.say(&token, "kai@example.org").await;
    assert!(Portal::text(&v).contains("6-digit code"), "{v}");
    let code = sink
        .code_for("kai@example.org")
        .expect("a code was emailed");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, v) = p.say(&token, wrong).await;
    assert!(Portal::text(&v).contains("4 attempt(s) left"), "{v}");
    let (s, v) = p.say(&token, &code).await;
    assert_eq!(s, StatusCode::OK);
    assert!(Portal::text(&v).contains("signed in"), "{v}");
    // Now the person's own roles apply in the portal.
    let (_, v) = p.say(&token, "/koji users").await;
    assert!(
        !Portal::text(&v).contains("permission"),
        "analyst may read reports: {v}"
    );
    let sessions = p.report("sessions --channel portal").await;
    assert_eq!(sessions["rows"][0]["auth_method"], "email_code");
    assert_eq!(sessions["rows"][0]["person"]["email"], "kai@example.org");
    let user = p.report("user kai@example.org").await;
    assert_eq!(user["account"]["verified_email"], "kai@example.org");
    // One email, and the code in it is not what the database keeps.
    assert_eq!(sink.messages().len(), 1);
    let export = match p
        .core
        .run_command(
            p.core.cli_tenant(None).unwrap(),
            &koji::conversation::Actor::Operator,
            koji_channel::Channel::Console,
            koji::commands::parse("export kai@example.org").unwrap(),
        )
        .await
    {
        koji::conversation::CommandOutput::Export(v) => v.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        !export.contains(&code) || export.matches(&code).count() == 1,
        "the code appears only as the typed message"
    );
    p.stop().await;
}

async fn codes_expire_and_allow_five_attempts(db: &TestDb) {
    let sink = SmtpSink::start().await;
    let p = Portal::start(db, &sink.config()).await;
    provision(&p, "lou@example.org").await;
    let (token, _) = p.session().await;
    p.say(&token, "lou@example.org").await;
    let code = sink.code_for("lou@example.org").unwrap();
    p.clock.advance(std::time::Duration::from_secs(11 * 60));
    // Keep the session alive: a new session token would be needed after 30 minutes anyway.
    let (_, v) = p.say(&token, &code).await;
    assert!(Portal::text(&v).contains("expired"), "{v}");

    let (_, _) = p.say(&token, "lou@example.org").await;
    let code = sink.code_for("lou@example.org").unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let (_, v) = p.say(&token, wrong).await;
        if left > 0 {
            assert!(
                Portal::text(&v).contains(&format!("{left} attempt(s) left")),
                "{v}"
            );
        } else {
            assert!(Portal::text(&v).contains("can't be used any more"), "{v}");
        }
    }
    // Even the right code is refused now; the visitor is asked for the email again.
    let (_, v) = p.say(&token, &code).await;
    assert!(
        Portal::text(&v).contains("doesn't look like an email"),
        "{v}"
    );
    let user = p.report("user lou@example.org").await;
    assert!(
        user["identities"].as_array().unwrap().is_empty(),
        "never linked: {user}"
    );
    p.stop().await;
}

async fn resending_is_limited(db: &TestDb) {
    let sink = SmtpSink::start().await;
    let p = Portal::start(db, &sink.config()).await;
    provision(&p, "max@example.org").await;
    let (token, _) = p.session().await;
    p.say(&token, "max@example.org").await;
    p.say(&token, "resend").await;
    p.say(&token, "resend").await;
    assert_eq!(sink.messages().len(), 3);
    let (_, v) = p.say(&token, "resend").await;
    assert!(Portal::text(&v).contains("several codes already"), "{v}");
    assert_eq!(sink.messages().len(), 3, "no fourth email");
    // Only the latest code works.
    let latest = sink.code_for("max@example.org").unwrap();
    let (_, v) = p.say(&token, &latest).await;
    assert!(Portal::text(&v).contains("signed in"), "{v}");
    p.stop().await;
}

async fn a_portal_without_anonymous_access_admits_only_known_people(db: &TestDb) {
    let sink = SmtpSink::start().await;
    let extra = format!(
        "{}[[tenants]]\nid = \"acme\"\nadmins = [\"admin@acme.test\"]\ninternal_domains = [\"acme.test\"]\n[[portals]]\nid = \"staff\"\ntenant = \"acme\"\nanonymous_access = false\n",
        sink.config()
    );
    let p = Portal::start(db, &extra).await;
    let r = p
        .http
        .post(format!("{}/portal/staff/session", p.base))
        .send()
        .await
        .unwrap();
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let say = |text: &'static str| {
        let http = p.http.clone();
        let url = format!("{}/portal/staff/messages", p.base);
        let token = token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "text": text }))
                .send()
                .await
                .unwrap();
            Portal::text(&r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let r = say("stranger@example.org").await;
    assert!(r.contains("don't know"), "{r}");
    assert!(sink.messages().is_empty(), "no code for strangers");
    // Staff of an internal domain are known to the directory.
    let r = say("nora@acme.test").await;
    assert!(r.contains("6-digit code"), "{r}");
    let code = sink.code_for("nora@acme.test").unwrap();
    let r = say(Box::leak(code.into_boxed_str())).await;
    assert!(r.contains("signed in"), "{r}");
    let user = p.report("user nora@acme.test").await;
    assert_eq!(user["person"]["kind"], "internal");
    p.stop().await;
}

on_both_backends!(
    a_known_email_signs_in_with_the_code_from_the_email,
    codes_expire_and_allow_five_attempts,
    resending_is_limited,
    a_portal_without_anonymous_access_admits_only_known_people,
);
