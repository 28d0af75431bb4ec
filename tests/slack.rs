//! The Slack channel end to end: the real app on a random port, signed requests built here,
//! and a fake Slack Web API (users.info, chat.postMessage, chat.postEphemeral,
//! oauth.v2.access, apps.connections.open, response_url) on 127.0.0.1 that records what it
//! is sent and checks the bot token — plus a fake Socket Mode WebSocket server.

mod common;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{T0, TestDb};
use futures::{SinkExt, StreamExt};
use koji_channel::Channel;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "test-signing-secret";
const CONFIG_TOKEN: &str = "xoxb-config-token";
const INSTALLED_TOKEN: &str = "xoxb-installed-token";
const APP_TOKEN: &str = "xapp-1-test-app-token";

#[derive(Default)]
struct Fake {
    users: Mutex<HashMap<String, Value>>,
    /// (method, token, body) of every chat.* call.
    posted: Mutex<Vec<(String, String, Value)>>,
    responded: Mutex<Vec<Value>>,
    users_info_calls: Mutex<u32>,
    oauth_calls: Mutex<Vec<HashMap<String, String>>>,
    bad_tokens: Mutex<u32>,
    /// How many chat.* calls to answer 429 (`Retry-After: 1`) before accepting; and how
    /// many were.
    throttle: Mutex<u32>,
    throttled: Mutex<u32>,
    /// The Socket Mode URL apps.connections.open hands out, and how often it was asked.
    socket_url: Mutex<Option<String>>,
    connections_opened: Mutex<u32>,
}

fn bearer(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

fn token_ok(f: &Fake, h: &HeaderMap) -> bool {
    let t = bearer(h);
    let ok = t == CONFIG_TOKEN || t == INSTALLED_TOKEN;
    if !ok {
        *f.bad_tokens.lock().unwrap() += 1;
    }
    ok
}

async fn users_info(
    State(f): State<Arc<Fake>>,
    h: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> axum::Json<Value> {
    *f.users_info_calls.lock().unwrap() += 1;
    if !token_ok(&f, &h) {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    let id = form.get("user").cloned().unwrap_or_default();
    match f.users.lock().unwrap().get(&id) {
        Some(u) => axum::Json(json!({"ok": true, "user": u})),
        None => axum::Json(json!({"ok": false, "error": "user_not_found"})),
    }
}

async fn chat(
    State(f): State<Arc<Fake>>,
    Path(method): Path<String>,
    h: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !token_ok(&f, &h) {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    {
        let mut throttle = f.throttle.lock().unwrap();
        if *throttle > 0 {
            *throttle -= 1;
            *f.throttled.lock().unwrap() += 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
        }
    }
    f.posted
        .lock()
        .unwrap()
        .push((method, bearer(&h), body.clone()));
    axum::Json(json!({"ok": true, "channel": body["channel"], "ts": "1700000000.000100"}))
        .into_response()
}

async fn connections_open(State(f): State<Arc<Fake>>, h: HeaderMap) -> axum::Json<Value> {
    if bearer(&h) != APP_TOKEN {
        *f.bad_tokens.lock().unwrap() += 1;
        return axum::Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    *f.connections_opened.lock().unwrap() += 1;
    match f.socket_url.lock().unwrap().clone() {
        Some(url) => axum::Json(json!({"ok": true, "url": url})),
        None => axum::Json(json!({"ok": false, "error": "socket_mode_not_enabled"})),
    }
}

async fn oauth_access(
    State(f): State<Arc<Fake>>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::Json<Value> {
    f.oauth_calls.lock().unwrap().push(form.clone());
    let good = form.get("client_id").map(String::as_str) == Some("cid")
        && form.get("client_secret").map(String::as_str) == Some("csecret")
        && form.get("redirect_uri").map(String::as_str)
            == Some("http://koji.test/slack/oauth/callback");
    if !good || form.get("code").map(String::as_str) != Some("code-1") {
        return axum::Json(json!({"ok": false, "error": "invalid_code"}));
    }
    axum::Json(json!({
        "ok": true, "access_token": INSTALLED_TOKEN, "token_type": "bot",
        "scope": "chat:write,commands", "bot_user_id": "UBOTNEW", "app_id": "A1",
        "team": {"id": "T0NEW", "name": "Newco"},
        "authed_user": {"id": "UINST"}
    }))
}

async fn respond(State(f): State<Arc<Fake>>, axum::Json(body): axum::Json<Value>) -> &'static str {
    f.responded.lock().unwrap().push(body);
    "ok"
}

async fn fake_slack() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let user = |id: &str, email: Option<&str>, name: &str| {
        let mut profile = json!({"real_name": name, "display_name": name});
        if let Some(e) = email {
            profile["email"] = json!(e);
        }
        (
            id.to_string(),
            json!({"id": id, "name": name, "tz": "Europe/Berlin", "locale": "en-US", "profile": profile}),
        )
    };
    fake.users.lock().unwrap().extend([
        user("UADMIN", Some("admin@acme.test"), "Ada Admin"),
        user("UANN", Some("ann@example.com"), "Ann Customer"),
        user("UANON", None, "Nobody"),
        user("UINST", Some("inst@newco.test"), "Ines Installer"),
        user("UNEWBIE", Some("newbie@newco.test"), "Ned"),
    ]);
    let app = axum::Router::new()
        .route("/api/users.info", post(users_info))
        .route("/api/oauth.v2.access", post(oauth_access))
        .route("/api/apps.connections.open", post(connections_open))
        .route("/api/{method}", post(chat))
        .route("/respond/{id}", post(respond))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fake)
}

fn config(fake: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://koji.test"
max_body_bytes = 8192

[[tenants]]
id = "acme"
name = "Acme"
admins = ["admin@acme.test"]
slack_team_ids = ["T0001"]

[slack]
signing_secret = "{SECRET}"
bot_token = "{CONFIG_TOKEN}"
client_id = "cid"
client_secret = "csecret"
api_url = "{fake}/api"
authorize_url = "{fake}/oauth/v2/authorize"
encryption_key = "test-encryption-key"
"#
    )
}

/// HMAC-SHA256 written out here, independent of the adapter's own signing code.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let mut inner = sha2::Sha256::new();
    inner.update(pad(0x36));
    inner.update(msg);
    let mut outer = sha2::Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

fn signature(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    format!("v0={}", hex::encode(hmac_sha256(secret.as_bytes(), &base)))
}

#[test]
fn the_test_signer_matches_slacks_documented_vector() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        signature(
            "8f742231b10e8888abcd99yyyzzz85a5",
            "1531420618",
            body.as_bytes()
        ),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

struct Slack {
    base: String,
    http: reqwest::Client,
    core: Arc<koji::Core>,
    fake: Arc<Fake>,
    fake_base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), koji::app::AppError>>>,
}

/// How a test request is signed.
#[derive(Clone, Copy)]
enum Sig {
    Good,
    None,
    Wrong,
    Stale,
}

impl Slack {
    async fn start(db: &TestDb) -> Slack {
        Self::start_with(db, config).await
    }

    /// With the configuration `config` makes from the fake's base URL.
    async fn start_with(db: &TestDb, config: impl FnOnce(&str) -> String) -> Slack {
        let (fake_base, fake) = fake_slack().await;
        Self::start_on(db, fake_base, fake, config).await
    }

    async fn start_on(
        db: &TestDb,
        fake_base: String,
        fake: Arc<Fake>,
        config: impl FnOnce(&str) -> String,
    ) -> Slack {
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
        Slack {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            core,
            fake,
            fake_base,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn send(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        sig: Sig,
        retry: Option<u32>,
    ) -> (StatusCode, String) {
        let now = T0 / 1_000_000;
        let ts = match sig {
            Sig::Stale => (now - 301).to_string(),
            _ => now.to_string(),
        };
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type);
        match sig {
            Sig::None => {}
            Sig::Wrong => {
                req = req
                    .header("x-slack-request-timestamp", &ts)
                    .header("x-slack-signature", signature("not-the-secret", &ts, &body));
            }
            Sig::Good | Sig::Stale => {
                req = req
                    .header("x-slack-request-timestamp", &ts)
                    .header("x-slack-signature", signature(SECRET, &ts, &body));
            }
        }
        if let Some(n) = retry {
            req = req
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        let r = req.body(body).send().await.unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        (status, r.text().await.unwrap_or_default())
    }

    async fn event(&self, v: &Value, sig: Sig, retry: Option<u32>) -> (StatusCode, String) {
        self.send(
            "/slack/events",
            serde_json::to_vec(v).unwrap(),
            "application/json",
            sig,
            retry,
        )
        .await
    }

    async fn command(&self, team: &str, user: &str, text: &str) -> (StatusCode, Value) {
        let form = serde_urlencoded::to_string([
            ("token", "legacy"),
            ("team_id", team),
            ("team_domain", "acme"),
            ("channel_id", "C1"),
            ("channel_name", "general"),
            ("user_id", user),
            ("user_name", "someone"),
            ("command", "/koji"),
            ("text", text),
            ("response_url", &format!("{}/respond/1", self.fake_base)),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap();
        let (s, body) = self
            .send(
                "/slack/commands",
                form.into_bytes(),
                "application/x-www-form-urlencoded",
                Sig::Good,
                None,
            )
            .await;
        (s, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Waits (a few seconds at most) until the fake has been posted `n` messages.
    async fn posts(&self, n: usize) -> Vec<(String, String, Value)> {
        for _ in 0..100 {
            if self.fake.posted.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.fake.posted.lock().unwrap().clone()
    }

    /// Waits (a few seconds at most) until `n` response_url follow-ups arrived.
    async fn responses(&self, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            if self.fake.responded.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.fake.responded.lock().unwrap().clone()
    }

    /// A signed button press (`block_actions`).
    async fn press(&self, payload: &Value) -> StatusCode {
        let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.send(
            "/slack/interactions",
            form.into_bytes(),
            "application/x-www-form-urlencoded",
            Sig::Good,
            None,
        )
        .await
        .0
    }

    async fn report(&self, tenant: &str, words: &str) -> Value {
        let t = self.core.cli_tenant(Some(tenant)).unwrap();
        match self
            .core
            .run_command(
                t,
                &koji::conversation::Actor::Operator,
                Channel::Console,
                koji::commands::parse(words).unwrap(),
            )
            .await
        {
            koji::conversation::CommandOutput::Report(r, _) => r.to_json(),
            other => panic!("{other:?}"),
        }
    }

    async fn scalar(&self, sql: &'static str) -> i64 {
        match self.core.store.pool() {
            koji::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            koji::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    async fn text(&self, sql: &'static str) -> String {
        match self.core.store.pool() {
            koji::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            koji::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    async fn stop(mut self) {
        drop(self.core);
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
    }
}

fn dm(team: &str, event_id: &str, user: &str, text: &str) -> Value {
    json!({
        "token": "legacy", "team_id": team, "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id, "event_time": T0 / 1_000_000,
        "authorizations": [{"team_id": team, "user_id": "UBOT", "is_bot": true}],
        "event": {"type": "message", "channel_type": "im", "channel": "D1", "user": user,
                  "text": text, "ts": "1796126400.000100"}
    })
}

fn all_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// Every block list Koji sends stays within Slack's limits.
fn assert_block_limits(blocks: &Value) {
    let blocks = blocks.as_array().expect("blocks");
    assert!(
        !blocks.is_empty() && blocks.len() <= 50,
        "{} blocks",
        blocks.len()
    );
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(t.chars().count() <= 3000);
        }
    }
}

async fn url_verification_answers_the_challenge(db: &TestDb) {
    let s = Slack::start(db).await;
    let v = json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
    let (status, body) = s.event(&v, Sig::Good, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));
    s.stop().await;
}

async fn a_dm_is_answered_once_in_that_dm_even_when_slack_retries(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = dm("T0001", "Ev0001", "UANN", "hello");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    assert_eq!(posts.len(), 1);
    let (method, token, body) = &posts[0];
    assert_eq!(method, "chat.postMessage");
    assert_eq!(token, CONFIG_TOKEN);
    assert_eq!(body["channel"], "D1");
    assert!(body.get("thread_ts").is_none(), "no thread in a DM");
    assert!(body["text"].as_str().unwrap().contains("Hello"), "{body}");
    assert_block_limits(&body["blocks"]);

    // Slack retries the same event (here after a timeout): recorded and answered once.
    assert_eq!(s.event(&ev, Sig::Good, Some(1)).await.0, StatusCode::OK);
    assert_eq!(s.event(&ev, Sig::Good, Some(2)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.posts(1).await.len(), 1, "answered once");
    let users = s.report("acme", "users --format json").await;
    let ann = common::row_of(&users, "ann@example.com").expect("ann is a person");
    assert_eq!(ann["messages_in"], 1);
    assert_eq!(ann["messages_out"], 1);
    assert_eq!(
        s.scalar("select count(*) from messages where platform_msg_id = 'Ev0001'")
            .await,
        1
    );
    assert_eq!(*s.fake.bad_tokens.lock().unwrap(), 0);
    s.stop().await;
}

async fn a_mention_in_a_channel_is_answered_in_its_thread(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = json!({
        "team_id": "T0001", "api_app_id": "A1", "type": "event_callback", "event_id": "Ev0002",
        "authorizations": [{"team_id": "T0001", "user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "channel": "C1", "user": "UADMIN",
                  "text": "<@UBOT> hello there", "ts": "1796126400.000200"}
    });
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    assert_eq!(posts[0].2["channel"], "C1");
    assert_eq!(posts[0].2["thread_ts"], "1796126400.000200");
    // Bot messages are never answered (no loops).
    let mut bot = dm("T0001", "Ev0003", "UANN", "hello");
    bot["event"]["bot_id"] = json!("B1");
    assert_eq!(s.event(&bot, Sig::Good, None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.posts(1).await.len(), 1);
    s.stop().await;
}

async fn bad_signatures_bodies_and_sizes_are_refused_and_nothing_is_recorded(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = dm("T0001", "Ev0100", "UANN", "hello");
    for sig in [Sig::None, Sig::Wrong, Sig::Stale] {
        assert_eq!(s.event(&ev, sig, None).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = s
        .send(
            "/slack/commands",
            b"team_id=T0001&user_id=UADMIN&text=users".to_vec(),
            "application/x-www-form-urlencoded",
            Sig::Wrong,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .send(
            "/slack/events",
            b"{\"type\": \"event_callback\", ".to_vec(),
            "application/json",
            Sig::Good,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .send(
            "/slack/interactions",
            b"payload=%7Bnot-json".to_vec(),
            "application/x-www-form-urlencoded",
            Sig::Good,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut big = dm("T0001", "Ev0101", "UANN", "hello");
    big["event"]["text"] = json!("x".repeat(10_000));
    assert_eq!(
        s.event(&big, Sig::Good, None).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.scalar("select count(*) from messages").await, 0);
    assert_eq!(s.scalar("select count(*) from sessions").await, 0);
    assert_eq!(*s.fake.users_info_calls.lock().unwrap(), 0);
    assert!(s.fake.posted.lock().unwrap().is_empty());
    s.stop().await;
}

async fn a_slack_user_whose_email_matches_a_person_is_recognised(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = dm("T0001", "Ev0200", "UADMIN", "hello");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    assert!(posts[0].2["text"].as_str().unwrap().contains("Hello"));
    let sessions = s.report("acme", "sessions --format json").await;
    let row = common::row_of(&sessions, "admin@acme.test").expect("admin's session");
    assert_eq!(row["auth_method"], "slack");
    assert_eq!(row["login_id"], "UADMIN");
    assert_eq!(row["channel"], "slack");
    s.stop().await;
}

async fn a_slack_user_without_email_is_anonymous_and_offered_sign_in(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = dm(
        "T0001",
        "Ev0300",
        "UANON",
        "my VPN client fails with error 809",
    );
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    let text = posts[0].2["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("sign in"), "{text}");
    assert_eq!(
        s.scalar("select count(*) from messages where direction = 'out' and actions like '%auth_offered%'")
            .await,
        1
    );
    let sessions = s.report("acme", "sessions --format json").await;
    let rows = common::rows(&sessions);
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["person"].is_null());
    assert_eq!(rows[0]["auth_method"], "anonymous");
    s.stop().await;
}

async fn an_admins_slash_command_gets_an_ephemeral_report_and_a_customers_a_refusal(db: &TestDb) {
    let s = Slack::start(db).await;
    // Someone to report on.
    s.event(&dm("T0001", "Ev0400", "UANN", "hello"), Sig::Good, None)
        .await;
    let (status, v) = s.command("T0001", "UADMIN", "users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response_type"], "ephemeral");
    assert_block_limits(&v["blocks"]);
    assert_eq!(v["blocks"][0]["type"], "header", "{v}");
    assert!(all_text(&v["blocks"]).contains("ann@example.com"), "{v}");

    let (status, v) = s.command("T0001", "UANN", "users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response_type"], "ephemeral");
    let shown = all_text(&v);
    assert!(
        !shown.contains("admin@acme.test") && !shown.contains("header"),
        "{v}"
    );
    assert!(
        shown.to_lowercase().contains("not allowed") || shown.to_lowercase().contains("permission"),
        "{v}"
    );
    // Both exchanges are recorded, refusal included.
    let users = s.report("acme", "users --format json").await;
    assert_eq!(
        common::row_of(&users, "ann@example.com").unwrap()["messages_in"],
        2
    );
    s.stop().await;
}

async fn a_button_press_becomes_the_next_message(db: &TestDb) {
    let s = Slack::start(db).await;
    let payload = json!({
        "type": "block_actions", "team": {"id": "T0001"}, "user": {"id": "UANN", "team_id": "T0001"},
        "channel": {"id": "D1"}, "response_url": format!("{}/respond/2", s.fake_base),
        "trigger_id": "9.9.9", "actions": [{"action_id": "koji_button_0", "value": "hello", "type": "button"}]
    });
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let (status, _) = s
        .send(
            "/slack/interactions",
            form.into_bytes(),
            "application/x-www-form-urlencoded",
            Sig::Good,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..100 {
        if !s.fake.responded.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let responded = s.fake.responded.lock().unwrap().clone();
    assert_eq!(responded.len(), 1);
    assert!(responded[0]["text"].as_str().unwrap().contains("Hello"));
    let users = s.report("acme", "users --format json").await;
    assert_eq!(
        common::row_of(&users, "ann@example.com").unwrap()["messages_in"],
        1
    );
    s.stop().await;
}

async fn unknown_teams_are_acknowledged_and_failed_user_lookups_retried(db: &TestDb) {
    let s = Slack::start(db).await;
    // No tenant binds T9999: acknowledged (no retry storm), nothing recorded or posted.
    let ev = dm("T9999", "Ev0600", "UANN", "hello");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    // users.info fails (unknown user): 5xx so that Slack retries; nothing recorded.
    let ev = dm("T0001", "Ev0601", "UGHOST", "hello");
    assert!(s.event(&ev, Sig::Good, None).await.0.is_server_error());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.scalar("select count(*) from messages").await, 0);
    assert!(s.fake.posted.lock().unwrap().is_empty());
    // Once Slack knows the user, the retry is recorded and answered.
    s.fake.users.lock().unwrap().insert(
        "UGHOST".into(),
        json!({"id": "UGHOST", "profile": {"email": "ghost@example.com"}}),
    );
    assert_eq!(s.event(&ev, Sig::Good, Some(1)).await.0, StatusCode::OK);
    assert_eq!(s.posts(1).await.len(), 1);
    assert_eq!(s.scalar("select count(*) from messages").await, 2);
    s.stop().await;
}

fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    serde_urlencoded::from_str(q).unwrap()
}

async fn installing_makes_a_tenant_whose_installer_is_admin_and_whose_token_is_encrypted(
    db: &TestDb,
) {
    let s = Slack::start(db).await;
    let r = s
        .http
        .get(format!("{}/slack/install", s.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/oauth/v2/authorize?", s.fake_base)));
    let q = query_of(&location);
    assert_eq!(q["client_id"], "cid");
    assert_eq!(q["redirect_uri"], "http://koji.test/slack/oauth/callback");
    assert!(q["scope"].split(',').any(|x| x == "users:read.email"));
    let state = q["state"].clone();

    let callback = |state: &str, code: &str| {
        format!("{}/slack/oauth/callback?code={code}&state={state}", s.base)
    };
    let r = s.http.get(callback(&state, "code-1")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("installed"));

    // The new tenant, known to this replica at once and to the command line.
    let tenant = s.core.tenant("slack-t0new").expect("new tenant");
    assert_eq!(tenant.name, "Newco");
    let out = s
        .core
        .run_command(
            tenant,
            &koji::conversation::Actor::Operator,
            Channel::Console,
            koji::commands::parse("roles slack:UINST").unwrap(),
        )
        .await;
    let shown = format!("{out:?}");
    assert!(shown.contains("admin"), "{shown}");
    assert_eq!(
        s.scalar("select count(*) from audit_log where tenant_id = 'slack-t0new' and role = 'admin' and action = 'grant'")
            .await,
        1
    );
    // The bot token is stored, but not in clear.
    let stored = s
        .text("select bot_token_enc from slack_installs where team_id = 'T0NEW'")
        .await;
    assert!(!stored.contains("xoxb"), "{stored}");
    let dump = s
        .text(
            "select team_id || tenant_id || bot_token_enc || installer_user_id from slack_installs",
        )
        .await;
    assert!(!dump.contains(INSTALLED_TOKEN));

    // That team's messages are answered with its own token.
    let ev = dm("T0NEW", "Ev0500", "UNEWBIE", "hello");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    assert_eq!(posts[0].1, INSTALLED_TOKEN);

    // The state was single-use.
    let r = s.http.get(callback(&state, "code-1")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
    assert_eq!(s.fake.oauth_calls.lock().unwrap().len(), 1);

    // Another replica (or a restart) knows the tenant from the database.
    let replica = common::Running::start_on(
        db,
        &config(&s.fake_base),
        koji::domain::ManualClock::new(T0),
    )
    .await;
    assert!(replica.core.cli_tenant(Some("slack-t0new")).is_ok());
    let msg = koji_channel::Inbound {
        tenant: koji_channel::TenantHint::SlackTeam("T0NEW".into()),
        ..common::platform(
            Channel::Slack,
            "UNEWBIE",
            Some("newbie@newco.test"),
            "Ev0501",
            "thanks",
        )
    };
    assert!(matches!(
        replica.core.handle(msg).await,
        Ok(koji_channel::Outcome::Replies(_))
    ));
    replica.stop().await;
    s.stop().await;
}

async fn a_bad_install_callback_shows_an_error_page_and_stores_nothing(db: &TestDb) {
    let s = Slack::start(db).await;
    for q in [
        "code=code-1&state=made-up",
        "code=code-1",
        "error=access_denied&state=whatever",
    ] {
        let r = s
            .http
            .get(format!("{}/slack/oauth/callback?{q}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let page = r.text().await.unwrap();
        assert!(
            page.starts_with("<!doctype html>") && page.contains("<h1>"),
            "{page}"
        );
    }
    // A real state, but Slack refuses the code.
    let r = s
        .http
        .get(format!("{}/slack/install", s.base))
        .send()
        .await
        .unwrap();
    let state = query_of(r.headers()["location"].to_str().unwrap())["state"].clone();
    let r = s
        .http
        .get(format!(
            "{}/slack/oauth/callback?code=bad&state={state}",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(s.scalar("select count(*) from slack_installs").await, 0);
    assert_eq!(
        s.scalar("select count(*) from tenants where id like 'slack-%'")
            .await,
        0
    );
    assert!(s.core.tenant("slack-t0new").is_none());
    s.stop().await;
}

async fn a_slow_slash_command_says_working_on_it_and_follows_up_through_response_url(db: &TestDb) {
    // No answer can be ready within a zero budget: the follow-up path, without waiting 2.5 s.
    let s = Slack::start_with(db, |fake| config(fake) + "command_deadline_ms = 0\n").await;
    s.event(&dm("T0001", "Ev0700", "UANN", "hello"), Sig::Good, None)
        .await;
    let (status, v) = s.command("T0001", "UADMIN", "users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response_type"], "ephemeral");
    assert!(all_text(&v).contains("Working on it"), "{v}");
    assert!(!all_text(&v).contains("ann@example.com"), "{v}");
    let responded = s.responses(1).await;
    assert_eq!(responded.len(), 1, "one follow-up");
    let r = &responded[0];
    assert_eq!(r["response_type"], "ephemeral");
    assert_eq!(r["blocks"][0]["type"], "header", "{r}");
    assert_block_limits(&r["blocks"]);
    assert!(all_text(&r["blocks"]).contains("ann@example.com"), "{r}");
    s.stop().await;
}

async fn a_rate_limited_post_is_retried_after_retry_after_and_delivered_once(db: &TestDb) {
    let s = Slack::start(db).await;
    *s.fake.throttle.lock().unwrap() = 1;
    let ev = dm("T0001", "Ev0800", "UANN", "hello");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    assert_eq!(
        *s.fake.throttled.lock().unwrap(),
        1,
        "the first try was refused"
    );
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].0, "chat.postMessage");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.posts(1).await.len(), 1, "delivered once");
    s.stop().await;
}

async fn a_private_reply_in_a_channel_is_ephemeral_to_the_asker(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = json!({
        "team_id": "T0001", "api_app_id": "A1", "type": "event_callback", "event_id": "Ev0900",
        "authorizations": [{"team_id": "T0001", "user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "channel": "C1", "user": "UADMIN",
                  "text": "<@UBOT> /koji help", "ts": "1796126400.000900"}
    });
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    assert_eq!(posts.len(), 1);
    let (method, token, body) = &posts[0];
    assert_eq!(method, "chat.postEphemeral", "{body}");
    assert_eq!(token, CONFIG_TOKEN);
    assert_eq!(body["channel"], "C1");
    assert_eq!(body["user"], "UADMIN");
    assert_block_limits(&body["blocks"]);
    s.stop().await;
}

/// The actions block's button values, from a Block Kit message.
fn button_values(blocks: &Value) -> Vec<String> {
    blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .filter(|e| e["type"] == "button")
        .filter_map(|e| e["value"].as_str().map(str::to_string))
        .collect()
}

async fn a_knowledge_base_answer_has_did_this_help_buttons_and_yes_is_recorded(db: &TestDb) {
    let s = Slack::start(db).await;
    let ev = dm("T0001", "Ev1000", "UADMIN", "How do I reset my password?");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(1).await;
    let body = &posts[0].2;
    assert_eq!(posts[0].0, "chat.postMessage");
    assert!(all_text(body).contains("Reset your password"), "{body}");
    assert_block_limits(&body["blocks"]);
    let values = button_values(&body["blocks"]);
    assert_eq!(values, ["yes", "no"], "{body}");

    let press = json!({
        "type": "block_actions", "team": {"id": "T0001"}, "user": {"id": "UADMIN", "team_id": "T0001"},
        "channel": {"id": "D1"}, "container": {"type": "message", "channel_id": "D1"},
        "response_url": format!("{}/respond/3", s.fake_base), "trigger_id": "9.9.9",
        "actions": [{"action_id": "koji_button_0", "value": "yes", "type": "button"}]
    });
    assert_eq!(s.press(&press).await, StatusCode::OK);
    let responded = s.responses(1).await;
    assert_eq!(responded.len(), 1);
    assert!(
        responded[0]["text"].as_str().unwrap().contains("Glad"),
        "{}",
        responded[0]
    );
    let users = s.report("acme", "users --format json").await;
    let admin = common::row_of(&users, "admin@acme.test").unwrap();
    assert_eq!(admin["messages_in"], 2, "the question and the press");
    assert_eq!(admin["messages_out"], 2);
    assert_eq!(
        s.scalar(
            "select count(*) from messages where direction = 'out' and actions like '%kb_answer%'"
        )
        .await,
        1
    );
    s.stop().await;
}

async fn an_anonymous_slack_user_signs_in_with_an_emailed_code(db: &TestDb) {
    let smtp = common::SmtpSink::start().await;
    let s = Slack::start_with(db, |fake| format!("{}\n{}", config(fake), smtp.config())).await;
    let ev = dm(
        "T0001",
        "Ev1100",
        "UANON",
        "my VPN client fails with error 809",
    );
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let offer = s.posts(1).await[0].2["text"].as_str().unwrap().to_string();
    assert!(offer.contains("one-time code"), "{offer}");
    let ev = dm("T0001", "Ev1101", "UANON", "admin@acme.test");
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let sent = s.posts(2).await[1].2["text"].as_str().unwrap().to_string();
    assert!(sent.contains("6-digit code"), "{sent}");
    let code = smtp
        .code_for("admin@acme.test")
        .expect("a code was emailed");
    let ev = dm("T0001", "Ev1102", "UANON", &code);
    assert_eq!(s.event(&ev, Sig::Good, None).await.0, StatusCode::OK);
    let posts = s.posts(3).await;
    assert_eq!(posts.len(), 3);
    let sessions = s.report("acme", "sessions --format json").await;
    let row = common::row_of(&sessions, "admin@acme.test").expect("signed in");
    assert_eq!(row["channel"], "slack");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// Socket Mode

/// A fake Socket Mode server: each connection is greeted with `hello`; the test sends
/// frames to the latest connection and reads what Koji sent back.
struct SocketFake {
    url: String,
    current: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>>,
    received: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<u32>>,
}

impl SocketFake {
    async fn start() -> SocketFake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/link/?ticket=t1", listener.local_addr().unwrap());
        let current = Arc::new(Mutex::new(None));
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (cur, rec, conns) = (current.clone(), received.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                let (mut sink, mut frames) = ws.split();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let hello = json!({"type": "hello", "num_connections": 1,
                                   "connection_info": {"app_id": "A1"}});
                let _ = tx.send(hello.to_string());
                *cur.lock().unwrap() = Some(tx);
                *conns.lock().unwrap() += 1;
                let rec = rec.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            Some(out) = rx.recv() => {
                                if sink.send(tokio_tungstenite::tungstenite::Message::Text(out.into())).await.is_err() {
                                    break;
                                }
                            }
                            frame = frames.next() => match frame {
                                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                                    rec.lock().unwrap().push(serde_json::from_str(t.as_str()).unwrap());
                                }
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                        }
                    }
                });
            }
        });
        SocketFake {
            url,
            current,
            received,
            connections,
        }
    }

    async fn connected(&self, n: u32) {
        for _ in 0..100 {
            if *self.connections.lock().unwrap() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Koji did not open socket connection {n}");
    }

    fn send(&self, v: &Value) {
        let tx = self.current.lock().unwrap().clone().expect("a connection");
        tx.send(v.to_string()).unwrap();
    }

    /// Waits (a few seconds at most) for the acknowledgement of `envelope_id`.
    async fn ack(&self, envelope_id: &str) -> Value {
        for _ in 0..100 {
            if let Some(a) = self
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|a| a["envelope_id"] == envelope_id)
            {
                return a.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no ack for {envelope_id}");
    }
}

fn envelope(id: &str, kind: &str, payload: Value) -> Value {
    json!({"envelope_id": id, "type": kind, "payload": payload,
           "accepts_response_payload": kind == "slash_commands", "retry_attempt": 0, "retry_reason": ""})
}

/// Socket Mode alone: no signing secret, so no HTTP endpoints.
fn socket_config(fake: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://koji.test"
max_body_bytes = 8192

[[tenants]]
id = "acme"
name = "Acme"
admins = ["admin@acme.test"]
slack_team_ids = ["T0001"]

[slack]
app_token = "{APP_TOKEN}"
bot_token = "{CONFIG_TOKEN}"
api_url = "{fake}/api"
"#
    )
}

async fn socket_mode_receives_events_commands_and_buttons_and_reconnects(db: &TestDb) {
    let ws = SocketFake::start().await;
    let (fake_base, fake) = fake_slack().await;
    *fake.socket_url.lock().unwrap() = Some(ws.url.clone());
    let s = Slack::start_on(db, fake_base, fake, socket_config).await;
    ws.connected(1).await;

    // A DM: acknowledged with its envelope id once recorded, answered in that DM.
    let ev = dm("T0001", "Ev1200", "UANN", "hello");
    ws.send(&envelope("env-1", "events_api", ev.clone()));
    assert_eq!(ws.ack("env-1").await, json!({"envelope_id": "env-1"}));
    let posts = s.posts(1).await;
    assert_eq!(posts[0].0, "chat.postMessage");
    assert_eq!(posts[0].1, CONFIG_TOKEN);
    assert_eq!(posts[0].2["channel"], "D1");

    // Slack redelivers the same event: acknowledged again, recorded and answered once.
    let mut again = envelope("env-2", "events_api", ev);
    again["retry_attempt"] = json!(1);
    again["retry_reason"] = json!("timeout");
    ws.send(&again);
    ws.ack("env-2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.posts(1).await.len(), 1, "answered once");
    assert_eq!(
        s.scalar("select count(*) from messages where platform_msg_id = 'Ev1200'")
            .await,
        1
    );

    // /koji: the ephemeral answer rides on the ack.
    let cmd = json!({"token": "legacy", "team_id": "T0001", "team_domain": "acme",
        "channel_id": "C1", "channel_name": "general", "user_id": "UADMIN", "user_name": "ada",
        "command": "/koji", "text": "users", "api_app_id": "A1",
        "response_url": format!("{}/respond/4", s.fake_base), "trigger_id": "1.2.3"});
    ws.send(&envelope("env-3", "slash_commands", cmd));
    let ack = ws.ack("env-3").await;
    assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
    assert_eq!(ack["payload"]["blocks"][0]["type"], "header", "{ack}");
    assert!(all_text(&ack).contains("ann@example.com"), "{ack}");

    // A button press.
    let press = json!({
        "type": "block_actions", "team": {"id": "T0001"}, "user": {"id": "UANN", "team_id": "T0001"},
        "channel": {"id": "D1"}, "response_url": format!("{}/respond/5", s.fake_base),
        "trigger_id": "9.9.9", "actions": [{"action_id": "koji_button_0", "value": "hello", "type": "button"}]
    });
    ws.send(&envelope("env-4", "interactive", press));
    ws.ack("env-4").await;
    assert_eq!(s.responses(1).await.len(), 1);

    // Slack asks for a new connection: Koji opens one and goes on there.
    ws.send(&json!({"type": "disconnect", "reason": "refresh_requested"}));
    ws.connected(2).await;
    assert_eq!(*s.fake.connections_opened.lock().unwrap(), 2);
    ws.send(&envelope(
        "env-5",
        "events_api",
        dm("T0001", "Ev1201", "UADMIN", "hello"),
    ));
    ws.ack("env-5").await;
    assert_eq!(s.posts(2).await.len(), 2);

    // No signing secret: the HTTP endpoints are not served.
    let (status, _) = s
        .event(&dm("T0001", "Ev1202", "UANN", "hi"), Sig::Good, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(*s.fake.bad_tokens.lock().unwrap(), 0);
    s.stop().await;
}

async fn socket_mode_retries_a_refused_connection_and_acks_only_what_is_recorded(db: &TestDb) {
    let ws = SocketFake::start().await;
    let (fake_base, fake) = fake_slack().await;
    // apps.connections.open refuses at first (no URL yet).
    let s = Slack::start_on(db, fake_base, fake.clone(), socket_config).await;
    for _ in 0..100 {
        if *fake.connections_opened.lock().unwrap() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(*fake.connections_opened.lock().unwrap() >= 1);
    *fake.socket_url.lock().unwrap() = Some(ws.url.clone());
    ws.connected(1).await;
    ws.send(&envelope(
        "env-9",
        "events_api",
        dm("T0001", "Ev1300", "UANN", "hello"),
    ));
    ws.ack("env-9").await;
    assert_eq!(s.posts(1).await.len(), 1);

    // users.info fails: nothing recorded, no ack (Slack redelivers); once it works, the
    // redelivery is acknowledged and answered.
    let ev = dm("T0001", "Ev1301", "UGHOST", "hello");
    ws.send(&envelope("env-10", "events_api", ev.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !ws.received
            .lock()
            .unwrap()
            .iter()
            .any(|a| a["envelope_id"] == "env-10"),
        "not acknowledged"
    );
    assert_eq!(
        s.scalar("select count(*) from messages where platform_msg_id = 'Ev1301'")
            .await,
        0
    );
    s.fake.users.lock().unwrap().insert(
        "UGHOST".into(),
        json!({"id": "UGHOST", "profile": {"email": "ghost@example.com"}}),
    );
    let mut again = envelope("env-11", "events_api", ev);
    again["retry_attempt"] = json!(1);
    ws.send(&again);
    ws.ack("env-11").await;
    assert_eq!(s.posts(2).await.len(), 2);
    s.stop().await;
}

on_both_backends!(
    url_verification_answers_the_challenge,
    a_dm_is_answered_once_in_that_dm_even_when_slack_retries,
    a_mention_in_a_channel_is_answered_in_its_thread,
    bad_signatures_bodies_and_sizes_are_refused_and_nothing_is_recorded,
    a_slack_user_whose_email_matches_a_person_is_recognised,
    a_slack_user_without_email_is_anonymous_and_offered_sign_in,
    an_admins_slash_command_gets_an_ephemeral_report_and_a_customers_a_refusal,
    a_button_press_becomes_the_next_message,
    installing_makes_a_tenant_whose_installer_is_admin_and_whose_token_is_encrypted,
    a_bad_install_callback_shows_an_error_page_and_stores_nothing,
    unknown_teams_are_acknowledged_and_failed_user_lookups_retried,
    a_slow_slash_command_says_working_on_it_and_follows_up_through_response_url,
    a_rate_limited_post_is_retried_after_retry_after_and_delivered_once,
    a_private_reply_in_a_channel_is_ephemeral_to_the_asker,
    a_knowledge_base_answer_has_did_this_help_buttons_and_yes_is_recorded,
    an_anonymous_slack_user_signs_in_with_an_emailed_code,
    socket_mode_receives_events_commands_and_buttons_and_reconnects,
    socket_mode_retries_a_refused_connection_and_acks_only_what_is_recorded,
);
