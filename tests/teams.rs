//! The Teams channel end to end: the real app on a random port, Bot Framework tokens signed
//! here with a test RSA key, and a fake Microsoft (OpenID metadata, key set with
//! endorsements, the client-credentials token endpoint, the connector's members and
//! activities) on 127.0.0.1 that records what Koji sends.

mod common;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{T0, TestDb, rows};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const APP_ID: &str = "app-1234";
const APP_PASSWORD: &str = "app-password";
const BOT_TOKEN: &str = "bot-connector-token";
const AZURE: &str = "azure-acme";
const KEY_PEM: &[u8] = include_bytes!("fixtures/teams_test_key.pem");
const OTHER_PEM: &[u8] = include_bytes!("fixtures/teams_other_key.pem");

#[derive(Default)]
struct Fake {
    members: Mutex<HashMap<String, Value>>,
    /// (path, bearer, body) of every activity Koji sent.
    sent: Mutex<Vec<(String, String, Value)>>,
    token_forms: Mutex<Vec<HashMap<String, String>>>,
    key_fetches: Mutex<u32>,
}

fn bearer(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

async fn fake_microsoft() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key: Value = serde_json::from_str(include_str!("fixtures/teams_test_key.json")).unwrap();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "kid": "k1", "n": key["n"], "e": key["e"],
        "endorsements": ["msteams"]
    }]});
    let meta =
        json!({"issuer": "https://api.botframework.com", "jwks_uri": format!("{base}/keys")});
    for (id, email, name) in [
        ("29:admin", Some("admin@acme.test"), "Ada Admin"),
        ("29:ann", Some("ann@example.com"), "Ann Customer"),
        ("29:ghost", None, "Ghost"),
        ("29:inst", Some("ines@newco.test"), "Ines Installer"),
    ] {
        let mut m = json!({"id": id, "name": name, "aadObjectId": format!("aad-{id}")});
        if let Some(e) = email {
            m["email"] = json!(e);
            m["userPrincipalName"] = json!(e);
        }
        fake.members.lock().unwrap().insert(id.to_string(), m);
    }
    let app = axum::Router::new()
        .route(
            "/openid",
            get(move || {
                let meta = meta.clone();
                async move { axum::Json(meta) }
            }),
        )
        .route(
            "/keys",
            get(move |State(f): State<Arc<Fake>>| {
                let jwks = jwks.clone();
                async move {
                    *f.key_fetches.lock().unwrap() += 1;
                    axum::Json(jwks)
                }
            }),
        )
        .route(
            "/token",
            post(
                |State(f): State<Arc<Fake>>, Form(form): Form<HashMap<String, String>>| async move {
                    f.token_forms.lock().unwrap().push(form.clone());
                    let good = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                        && form.get("client_id").map(String::as_str) == Some(APP_ID)
                        && form.get("client_secret").map(String::as_str) == Some(APP_PASSWORD)
                        && form.get("scope").map(String::as_str)
                            == Some("https://api.botframework.com/.default");
                    if !good {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                    }
                    (
                        StatusCode::OK,
                        axum::Json(json!({"token_type": "Bearer", "expires_in": 3600, "access_token": BOT_TOKEN})),
                    )
                },
            ),
        )
        .route(
            "/v3/conversations/{conv}/members/{user}",
            get(
                |State(f): State<Arc<Fake>>, h: HeaderMap, Path((_c, user)): Path<(String, String)>| async move {
                    if bearer(&h) != BOT_TOKEN {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                    }
                    match f.members.lock().unwrap().get(&user) {
                        Some(m) => (StatusCode::OK, axum::Json(m.clone())),
                        None => (StatusCode::NOT_FOUND, axum::Json(json!({}))),
                    }
                },
            ),
        )
        .route(
            "/v3/conversations/{conv}/activities/{id}",
            post(
                |State(f): State<Arc<Fake>>,
                 h: HeaderMap,
                 uri: axum::http::Uri,
                 axum::Json(body): axum::Json<Value>| async move {
                    f.sent
                        .lock()
                        .unwrap()
                        .push((uri.path().to_string(), bearer(&h), body));
                    (StatusCode::CREATED, axum::Json(json!({"id": "reply-1"})))
                },
            ),
        )
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fake)
}

fn config(fake: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 8192

[[tenants]]
id = "acme"
name = "Acme"
admins = ["admin@acme.test"]
internal_domains = ["acme.test"]
teams_tenant_ids = ["{AZURE}"]

[teams]
app_id = "{APP_ID}"
app_password = "{APP_PASSWORD}"
openid_metadata_url = "{fake}/openid"
token_url = "{fake}/token"
"#
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Tok {
    Good,
    WrongAudience,
    WrongIssuer,
    Expired,
    OtherKey,
    UnknownKid,
    OtherServiceUrl,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(kind: Tok, service_url: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(if kind == Tok::UnknownKid { "k9" } else { "k1" }.into());
    let t = now();
    let claims = json!({
        "serviceurl": if kind == Tok::OtherServiceUrl { "https://evil.test/" } else { service_url },
        "nbf": t - 10,
        "exp": if kind == Tok::Expired { t - 600 } else { t + 3600 },
        "iss": if kind == Tok::WrongIssuer { "https://sts.windows.net/x/" } else { "https://api.botframework.com" },
        "aud": if kind == Tok::WrongAudience { "someone-else" } else { APP_ID },
    });
    let pem = if kind == Tok::OtherKey {
        OTHER_PEM
    } else {
        KEY_PEM
    };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

struct Teams {
    base: String,
    fake_base: String,
    http: reqwest::Client,
    core: Arc<koji::Core>,
    fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), koji::app::AppError>>>,
}

impl Teams {
    async fn start(db: &TestDb) -> Teams {
        let (fake_base, fake) = fake_microsoft().await;
        let clock = koji::domain::ManualClock::new(T0);
        let app = koji::App::build_with_clock(db.config(&config(&fake_base)), Arc::new(clock))
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let core = app.core();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Teams {
            base,
            fake_base,
            http: reqwest::Client::new(),
            core,
            fake,
            stop: Some(stop),
            server: Some(server),
        }
    }

    fn service_url(&self) -> String {
        format!("{}/", self.fake_base)
    }

    /// A personal-chat message activity from `user`.
    fn message(&self, id: &str, user: &str, text: &str) -> Value {
        json!({
            "type": "message",
            "id": id,
            "timestamp": "2026-12-04T10:00:00Z",
            "serviceUrl": self.service_url(),
            "channelId": "msteams",
            "from": {"id": user, "name": "someone", "aadObjectId": format!("aad-{user}")},
            "conversation": {"id": format!("a:conv-{user}"), "conversationType": "personal", "tenantId": AZURE},
            "recipient": {"id": format!("28:{APP_ID}"), "name": "Koji"},
            "text": text,
            "locale": "en-US",
            "channelData": {"tenant": {"id": AZURE}}
        })
    }

    async fn post_raw(&self, auth: Option<String>, body: Vec<u8>) -> (StatusCode, String) {
        let mut r = self
            .http
            .post(format!("{}/teams/messages", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let resp = r.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.text().await.unwrap())
    }

    async fn post(&self, kind: Tok, activity: &Value) -> StatusCode {
        let auth = format!("Bearer {}", token(kind, &self.service_url()));
        self.post_raw(Some(auth), serde_json::to_vec(activity).unwrap())
            .await
            .0
    }

    /// Waits for the n-th activity Koji sends.
    async fn sent(&self, n: usize) -> Vec<(String, String, Value)> {
        for _ in 0..200 {
            let s = self.fake.sent.lock().unwrap().clone();
            if s.len() >= n {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "Koji sent {} activities, expected {n}",
            self.fake.sent.lock().unwrap().len()
        );
    }

    async fn report(&self, words: &str) -> Value {
        let tenant = self.core.cli_tenant(Some("acme")).unwrap();
        match self
            .core
            .run_command(
                tenant,
                &koji::conversation::Actor::Operator,
                koji_channel::Channel::Console,
                koji::commands::parse(words).unwrap(),
            )
            .await
        {
            koji::conversation::CommandOutput::Report(r, _) => r.to_json(),
            other => panic!("{other:?}"),
        }
    }

    async fn stop(mut self) {
        // The app finishes once nothing else holds the core.
        drop(self.core);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

async fn a_message_is_recognised_recorded_and_answered_through_the_connector(db: &TestDb) {
    let t = Teams::start(db).await;
    let m = t.message("act-1", "29:ann", "hello");
    assert_eq!(t.post(Tok::Good, &m).await, StatusCode::OK);
    let sent = t.sent(1).await;
    let (path, auth, body) = &sent[0];
    assert_eq!(path, "/v3/conversations/a%3Aconv-29%3Aann/activities/act-1");
    assert_eq!(auth, BOT_TOKEN);
    assert_eq!(body["type"], "message");
    assert_eq!(body["replyToId"], "act-1");
    assert_eq!(body["conversation"]["id"], "a:conv-29:ann");
    assert_eq!(body["recipient"]["id"], "29:ann");
    assert!(
        body["text"].as_str().unwrap().starts_with("Hello"),
        "{body}"
    );
    let form = t.fake.token_forms.lock().unwrap()[0].clone();
    assert_eq!(form["grant_type"], "client_credentials");

    // Recognised by the email the connector gives.
    let s = t.report("sessions --format json").await;
    let row = &rows(&s)[0];
    assert_eq!(row["person"]["email"], "ann@example.com");
    assert_eq!(row["auth_method"], "teams");
    assert_eq!(row["login_id"], "29:ann");
    assert_eq!(row["channel"], "teams");

    // The same activity again (a retry): recorded once, answered once.
    assert_eq!(t.post(Tok::Good, &m).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(t.fake.sent.lock().unwrap().len(), 1);
    let u = t.report("user ann@example.com --format json").await;
    assert_eq!(u["history"].as_array().unwrap().len(), 2, "{u}");
    // The token was fetched once and reused.
    t.post(Tok::Good, &t.message("act-2", "29:ann", "thanks"))
        .await;
    t.sent(2).await;
    assert_eq!(t.fake.token_forms.lock().unwrap().len(), 1);
    t.stop().await;
}

async fn bad_tokens_and_bad_bodies_change_nothing(db: &TestDb) {
    let t = Teams::start(db).await;
    let m = t.message("act-x", "29:ann", "hello");
    for kind in [
        Tok::WrongAudience,
        Tok::WrongIssuer,
        Tok::Expired,
        Tok::OtherKey,
        Tok::UnknownKid,
        Tok::OtherServiceUrl,
    ] {
        assert_eq!(t.post(kind, &m).await, StatusCode::UNAUTHORIZED);
    }
    let body = serde_json::to_vec(&m).unwrap();
    assert_eq!(
        t.post_raw(None, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.post_raw(Some("Bearer not.a.jwt".into()), body).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A key endorsed for Teams does not vouch for another channel.
    let mut other = m.clone();
    other["channelId"] = json!("skype");
    assert_eq!(t.post(Tok::Good, &other).await, StatusCode::UNAUTHORIZED);
    // Malformed and oversized bodies.
    let auth = Some(format!("Bearer {}", token(Tok::Good, &t.service_url())));
    assert_eq!(
        t.post_raw(auth.clone(), b"{not json".to_vec()).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut big = m.clone();
    big["text"] = json!("x".repeat(10_000));
    assert_eq!(
        t.post_raw(auth, serde_json::to_vec(&big).unwrap()).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(t.fake.sent.lock().unwrap().is_empty());
    let s = t.report("sessions --format json").await;
    assert_eq!(s["total"], 0, "nothing recorded: {s}");
    // An unknown kid made Koji look at the key set again, but not on every request.
    assert!(*t.fake.key_fetches.lock().unwrap() <= 3);
    t.stop().await;
}

async fn admin_commands_answer_with_an_adaptive_card_and_customers_are_refused(db: &TestDb) {
    let t = Teams::start(db).await;
    t.post(Tok::Good, &t.message("a1", "29:ann", "hello")).await;
    t.sent(1).await;
    // In a channel, the bot's mention is stripped through its entity.
    let mut m = t.message("a2", "29:admin", "<at>Koji</at> /koji users");
    m["conversation"]["conversationType"] = json!("channel");
    m["entities"] = json!([{"type": "mention", "text": "<at>Koji</at>",
        "mentioned": {"id": format!("28:{APP_ID}"), "name": "Koji"}}]);
    assert_eq!(t.post(Tok::Good, &m).await, StatusCode::OK);
    let sent = t.sent(2).await;
    let card = &sent[1].2["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let text = serde_json::to_string(&card["content"]).unwrap();
    assert!(text.contains("ann@example.com"), "{text}");
    assert!(text.contains("\"Table\""), "{text}");

    t.post(Tok::Good, &t.message("a3", "29:ann", "/koji users"))
        .await;
    let sent = t.sent(3).await;
    let refusal = serde_json::to_string(&sent[2].2).unwrap();
    assert!(refusal.contains("permission"), "{refusal}");
    assert!(!refusal.contains("admin@acme.test"), "{refusal}");
    t.stop().await;
}

async fn a_card_button_answers_did_this_help_and_strangers_are_offered_sign_in(db: &TestDb) {
    let t = Teams::start(db).await;
    t.post(
        Tok::Good,
        &t.message("b1", "29:ann", "how do I reset my password?"),
    )
    .await;
    let sent = t.sent(1).await;
    let actions = &sent[0].2["attachments"][0]["content"]["actions"];
    assert_eq!(actions[0]["type"], "Action.Submit", "{actions}");
    let value = actions[0]["data"].clone();
    // Pressing the button: a message with the card's data as `value`.
    let mut press = t.message("b2", "29:ann", "");
    press["value"] = value;
    t.post(Tok::Good, &press).await;
    let sent = t.sent(2).await;
    assert!(
        sent[1].2["text"].as_str().unwrap().contains("Glad"),
        "{}",
        sent[1].2
    );

    // No email from the connector: anonymous, offered sign-in.
    t.post(
        Tok::Good,
        &t.message("b3", "29:ghost", "my laptop is broken"),
    )
    .await;
    let sent = t.sent(3).await;
    assert!(
        sent[2].2["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("sign in"),
        "{}",
        sent[2].2
    );
    t.stop().await;
}

async fn the_installer_becomes_admin_of_a_new_tenant(db: &TestDb) {
    let t = Teams::start(db).await;
    let install = json!({
        "type": "installationUpdate",
        "action": "add",
        "id": "inst-1",
        "serviceUrl": t.service_url(),
        "channelId": "msteams",
        "from": {"id": "29:inst", "name": "Ines Installer", "aadObjectId": "aad-inst"},
        "conversation": {"id": "a:conv-inst", "conversationType": "personal", "tenantId": "azure-newco"},
        "recipient": {"id": format!("28:{APP_ID}"), "name": "Koji"},
        "channelData": {"tenant": {"id": "azure-newco"}}
    });
    assert_eq!(t.post(Tok::Good, &install).await, StatusCode::OK);
    let sent = t.sent(1).await;
    assert!(
        sent[0].2["text"]
            .as_str()
            .unwrap()
            .contains("you are its admin"),
        "{}",
        sent[0].2
    );
    let tenant = t.core.tenant("teams-azure-newco").expect("a new tenant");
    let ines = t
        .core
        .store
        .find_person(&tenant.config.id, "ines@newco.test")
        .await
        .unwrap()
        .expect("the installer is a person");
    let roles = t.core.store.roles_of(ines.id).await.unwrap();
    assert!(roles.contains(&"admin".to_string()), "{roles:?}");

    // Her next message comes from that tenant, and she may read its reports.
    let mut m = t.message("i2", "29:inst", "/koji users");
    m["conversation"]["tenantId"] = json!("azure-newco");
    m["channelData"]["tenant"]["id"] = json!("azure-newco");
    t.post(Tok::Good, &m).await;
    let sent = t.sent(2).await;
    let text = serde_json::to_string(&sent[1].2).unwrap();
    assert!(!text.contains("permission"), "{text}");
    assert!(text.contains("ines@newco.test"), "{text}");
    // Nothing of acme shows there.
    assert!(!text.contains("acme"), "{text}");
    t.stop().await;
}

on_both_backends!(
    a_message_is_recognised_recorded_and_answered_through_the_connector,
    bad_tokens_and_bad_bodies_change_nothing,
    admin_commands_answer_with_an_adaptive_card_and_customers_are_refused,
    a_card_button_answers_did_this_help_and_strangers_are_offered_sign_in,
    the_installer_becomes_admin_of_a_new_tenant,
);
