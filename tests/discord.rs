//! The Discord channel end to end: the real app on a random port, interactions signed here
//! with a fixed Ed25519 test key, and a fake Discord REST API on 127.0.0.1 (GET
//! /guilds/{id}, PATCH of a deferred answer, PUT of the commands) that records its calls and
//! checks `Authorization: Bot …`.

mod common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post, put};
use common::{T0, TestDb};
use koji_discord::ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BOT_TOKEN: &str = "test-bot-token";
const APP_ID: &str = "1100000000000000001";
const GUILD: &str = "2200000000000000002";
const NEW_GUILD: &str = "2900000000000000009";
const ADMIN: &str = "3300000000000000003";
const OWNER: &str = "7700000000000000007";
const STRANGER: &str = "4400000000000000004";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn public_key_hex() -> String {
    hex::encode(key().verifying_key().to_bytes())
}

#[derive(Default)]
struct Fake {
    /// (method, path, authorization, body) of every call.
    calls: Mutex<Vec<(String, String, String, Value)>>,
}

impl Fake {
    fn calls(&self, method: &str) -> Vec<(String, String, String, Value)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == method)
            .cloned()
            .collect()
    }
}

fn auth(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn guild(
    State(f): State<Arc<Fake>>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    f.calls
        .lock()
        .unwrap()
        .push(("GET".into(), format!("/guilds/{id}"), auth(&h), Value::Null));
    if auth(&h) != format!("Bot {BOT_TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "401: Unauthorized", "code": 0})),
        );
    }
    let owner = if id == NEW_GUILD { OWNER } else { ADMIN };
    (
        StatusCode::OK,
        axum::Json(json!({"id": id, "name": "Newguild", "owner_id": owner})),
    )
}

async fn edit_original(
    State(f): State<Arc<Fake>>,
    Path((app, token, msg)): Path<(String, String, String)>,
    h: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    f.calls.lock().unwrap().push((
        "PATCH".into(),
        format!("/webhooks/{app}/{token}/messages/{msg}"),
        auth(&h),
        body.clone(),
    ));
    axum::Json(json!({"id": "m1"}))
}

async fn follow_up(
    State(f): State<Arc<Fake>>,
    Path((app, token)): Path<(String, String)>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let ct = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    f.calls.lock().unwrap().push((
        "POST".into(),
        format!("/webhooks/{app}/{token}"),
        ct,
        json!(String::from_utf8_lossy(&body)),
    ));
    axum::Json(json!({"id": "m2"}))
}

async fn commands(
    State(f): State<Arc<Fake>>,
    Path(app): Path<String>,
    h: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    f.calls.lock().unwrap().push((
        "PUT".into(),
        format!("/applications/{app}/commands"),
        auth(&h),
        body.clone(),
    ));
    if auth(&h) != format!("Bot {BOT_TOKEN}") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 0})));
    }
    (StatusCode::OK, axum::Json(body))
}

async fn fake_discord() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/api/v10/guilds/{id}", get(guild))
        .route(
            "/api/v10/webhooks/{app}/{token}/messages/{msg}",
            patch(edit_original),
        )
        .route("/api/v10/applications/{app}/commands", put(commands))
        .route("/api/v10/webhooks/{app}/{token}", post(follow_up))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v10", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fake)
}

fn config(fake: &str, extra: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://koji.test"
max_body_bytes = 8192

[[tenants]]
id = "acme"
name = "Acme"
admins = ["discord:{ADMIN}"]
discord_guild_ids = ["{GUILD}"]

[discord]
application_id = "{APP_ID}"
public_key = "{pk}"
bot_token = "{BOT_TOKEN}"
api_url = "{fake}"
{extra}
"#,
        pk = public_key_hex()
    )
}

#[derive(Clone, Copy)]
enum Sig {
    Good,
    None,
    WrongKey,
    WrongTimestamp,
}

struct Discord {
    base: String,
    http: reqwest::Client,
    core: Arc<koji::Core>,
    fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), koji::app::AppError>>>,
}

impl Discord {
    async fn start(db: &TestDb) -> Discord {
        Self::start_with(db, "").await
    }

    async fn start_with(db: &TestDb, extra: &str) -> Discord {
        let (fake_base, fake) = fake_discord().await;
        let clock = koji::domain::ManualClock::new(T0);
        let app =
            koji::App::build_with_clock(db.config(&config(&fake_base, extra)), Arc::new(clock))
                .await
                .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let core = app.core();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Discord {
            base,
            http: reqwest::Client::new(),
            core,
            fake,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn send_raw(&self, body: Vec<u8>, sig: Sig) -> (StatusCode, String) {
        let ts = (T0 / 1_000_000).to_string();
        let signed = |k: &SigningKey, ts: &str| {
            let mut m = ts.as_bytes().to_vec();
            m.extend_from_slice(&body);
            hex::encode(k.sign(&m).to_bytes())
        };
        let mut req = self
            .http
            .post(format!("{}/discord/interactions", self.base))
            .header("content-type", "application/json");
        match sig {
            Sig::None => {}
            Sig::Good => {
                req = req
                    .header("x-signature-timestamp", &ts)
                    .header("x-signature-ed25519", signed(&key(), &ts));
            }
            Sig::WrongKey => {
                let other = SigningKey::from_bytes(&[9u8; 32]);
                req = req
                    .header("x-signature-timestamp", &ts)
                    .header("x-signature-ed25519", signed(&other, &ts));
            }
            Sig::WrongTimestamp => {
                // Signed for one timestamp, sent with another.
                let other = (T0 / 1_000_000 - 1).to_string();
                req = req
                    .header("x-signature-timestamp", &ts)
                    .header("x-signature-ed25519", signed(&key(), &other));
            }
        }
        let r = req.body(body).send().await.unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        (status, r.text().await.unwrap_or_default())
    }

    async fn send(&self, v: &Value) -> (StatusCode, Value) {
        let (s, body) = self
            .send_raw(serde_json::to_vec(v).unwrap(), Sig::Good)
            .await;
        (s, serde_json::from_str(&body).unwrap_or(Value::Null))
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

/// A `/koji SUB …` invocation by `user` in `guild` (None: a DM).
fn slash(id: &str, guild: Option<&str>, user: &str, sub: &str, options: Value) -> Value {
    let u = json!({"id": user, "username": format!("user{user}"), "global_name": "Ada"});
    let mut v = json!({
        "id": id, "application_id": APP_ID, "type": 2, "token": format!("tok-{id}"), "version": 1,
        "locale": "en-US",
        "data": {"id": "9", "name": "koji", "type": 1,
                 "options": [{"type": 1, "name": sub, "options": options}]},
    });
    match guild {
        Some(g) => {
            v["guild_id"] = json!(g);
            v["member"] = json!({"user": u, "roles": []});
        }
        None => v["user"] = u,
    }
    v
}

fn all_text(v: &Value) -> String {
    v.to_string()
}

/// Every embed limit of one message.
fn assert_embed_limits(data: &Value) {
    let n = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    assert!(n(&data["content"]) <= 2000);
    let embeds = data["embeds"].as_array().unwrap();
    assert!(embeds.len() <= 10);
    let mut total = 0;
    for e in embeds {
        assert!(n(&e["title"]) <= 256);
        assert!(n(&e["description"]) <= 4096);
        assert!(n(&e["footer"]["text"]) <= 2048);
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        assert!(fields.len() <= 25);
        for f in &fields {
            assert!(n(&f["name"]) <= 256 && n(&f["value"]) <= 1024);
        }
        total += n(&e["title"])
            + n(&e["description"])
            + n(&e["footer"]["text"])
            + fields
                .iter()
                .map(|f| n(&f["name"]) + n(&f["value"]))
                .sum::<usize>();
    }
    assert!(total <= 6000);
}

async fn ping_is_answered_with_pong(db: &TestDb) {
    let s = Discord::start(db).await;
    let (status, v) = s
        .send(&json!({"id": "1", "type": 1, "application_id": APP_ID}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"type": 1}));
    s.stop().await;
}

async fn bad_signatures_bodies_and_sizes_are_refused_and_nothing_is_recorded(db: &TestDb) {
    let s = Discord::start(db).await;
    let body = serde_json::to_vec(&slash("ix-bad", Some(GUILD), ADMIN, "help", json!([]))).unwrap();
    for sig in [Sig::None, Sig::WrongKey, Sig::WrongTimestamp] {
        let (status, _) = s.send_raw(body.clone(), sig).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A PING needs a signature too.
    let (status, _) = s.send_raw(br#"{"type":1}"#.to_vec(), Sig::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s.send_raw(b"{not json".to_vec(), Sig::Good).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s.send_raw(br#"{"type":2}"#.to_vec(), Sig::Good).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no id, token or user");
    let mut big = slash("ix-big", Some(GUILD), ADMIN, "help", json!([]));
    big["padding"] = json!("x".repeat(10_000));
    let (status, _) = s
        .send_raw(serde_json::to_vec(&big).unwrap(), Sig::Good)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.scalar("select count(*) from messages").await, 0);
    assert_eq!(
        s.scalar("select count(*) from identities where channel = 'discord'")
            .await,
        0
    );
    assert!(
        s.fake.calls("GET").is_empty(),
        "nothing asked of Discord either"
    );
    s.stop().await;
}

async fn an_admins_users_report_is_an_ephemeral_embed_and_a_strangers_a_refusal(db: &TestDb) {
    let s = Discord::start(db).await;
    // Someone to report on.
    s.core
        .handle(common::console("ann@example.com", "hello"))
        .await
        .unwrap();
    let (status, v) = s
        .send(&slash(
            "ix-1",
            Some(GUILD),
            ADMIN,
            "users",
            json!([{"name": "since", "type": 3, "value": "7d"}, {"name": "top", "type": 4, "value": 5}]),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["type"], 4, "{v}");
    assert_eq!(v["data"]["flags"], 64);
    assert_embed_limits(&v["data"]);
    let embed = &v["data"]["embeds"][0];
    assert!(
        embed["title"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("users"),
        "{v}"
    );
    assert!(
        embed["description"]
            .as_str()
            .unwrap()
            .contains("ann@example.com"),
        "{v}"
    );
    assert_eq!(
        s.text("select text from messages where platform_msg_id = 'ix-1'")
            .await,
        "/koji users --since 7d --top 5"
    );

    let (status, v) = s
        .send(&slash("ix-2", Some(GUILD), STRANGER, "users", json!([])))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["type"], 4);
    assert_eq!(v["data"]["flags"], 64);
    let shown = all_text(&v);
    assert!(!shown.contains("ann@example.com"), "{v}");
    assert!(v["data"]["embeds"].as_array().unwrap().is_empty(), "{v}");
    let lower = shown.to_lowercase();
    assert!(
        lower.contains("sign in") || lower.contains("permission"),
        "{v}"
    );
    // The refusal is recorded like any exchange; the stranger is anonymous, by Discord id.
    assert_eq!(
        s.scalar("select count(*) from messages where platform_msg_id = 'ix-2'")
            .await,
        1
    );
    assert_eq!(
        s.text("select auth_method from identities where channel = 'discord' and external_id = '4400000000000000004'")
            .await,
        "anonymous"
    );
    s.stop().await;
}

async fn a_replayed_interaction_is_recorded_once_and_answered_once(db: &TestDb) {
    let s = Discord::start(db).await;
    let ix = slash("ix-dup", Some(GUILD), ADMIN, "help", json!([]));
    let (_, first) = s.send(&ix).await;
    assert!(all_text(&first).contains("sessions"), "{first}");
    let (status, second) = s.send(&ix).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["data"]["flags"], 64);
    assert_eq!(second["data"]["content"], "Already answered.");
    assert_eq!(
        s.scalar("select count(*) from messages where platform_msg_id = 'ix-dup'")
            .await,
        1
    );
    assert_eq!(
        s.scalar("select count(*) from messages where direction = 'in'")
            .await,
        1
    );
    s.stop().await;
}

async fn a_user_option_names_the_discord_identity(db: &TestDb) {
    let s = Discord::start(db).await;
    let (_, v) = s
        .send(&slash(
            "ix-u",
            Some(GUILD),
            ADMIN,
            "user",
            json!([{"name": "who", "type": 6, "value": ADMIN}, {"name": "history", "type": 4, "value": 2}]),
        ))
        .await;
    assert_eq!(
        s.text("select text from messages where platform_msg_id = 'ix-u'")
            .await,
        format!("/koji user discord:{ADMIN} --history 2")
    );
    // The admin (known by this Discord identity) found themselves: a report, in an embed.
    assert_eq!(v["data"]["flags"], 64);
    assert_embed_limits(&v["data"]);
    assert!(
        !v["data"]["embeds"].as_array().unwrap().is_empty(),
        "a report, not 'no such person': {v}"
    );
    s.stop().await;
}

async fn a_button_press_becomes_the_next_message(db: &TestDb) {
    let s = Discord::start(db).await;
    let press = json!({
        "id": "ix-btn", "application_id": APP_ID, "type": 3, "token": "tok-btn", "version": 1,
        "guild_id": GUILD, "member": {"user": {"id": STRANGER, "username": "sam"}},
        "message": {"id": "m0"},
        "data": {"custom_id": "hello", "component_type": 2},
    });
    let (status, v) = s.send(&press).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["type"], 4, "{v}");
    assert!(
        v["data"]["content"].as_str().unwrap().contains("Hello"),
        "{v}"
    );
    assert_eq!(
        s.text("select text from messages where platform_msg_id = 'ix-btn'")
            .await,
        "hello"
    );
    s.stop().await;
}

async fn a_slow_answer_is_deferred_and_the_original_edited(db: &TestDb) {
    let s = Discord::start_with(db, "defer_after_ms = 0").await;
    let (status, v) = s
        .send(&slash("ix-slow", Some(GUILD), ADMIN, "users", json!([])))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"type": 5, "data": {"flags": 64}}));
    let mut patched = Vec::new();
    for _ in 0..100 {
        patched = s.fake.calls("PATCH");
        if !patched.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(patched.len(), 1);
    assert_eq!(
        patched[0].1,
        format!("/webhooks/{APP_ID}/tok-ix-slow/messages/@original")
    );
    assert_eq!(patched[0].3["flags"], 64);
    assert_embed_limits(&patched[0].3);
    assert!(!patched[0].3["embeds"].as_array().unwrap().is_empty());
    s.stop().await;
}

async fn the_owner_of_an_unbound_guild_is_admin_of_its_new_tenant(db: &TestDb) {
    let s = Discord::start(db).await;
    let (_, v) = s
        .send(&slash("ix-n1", Some(NEW_GUILD), OWNER, "users", json!([])))
        .await;
    assert_eq!(v["data"]["flags"], 64);
    assert!(
        !v["data"]["embeds"].as_array().unwrap().is_empty(),
        "the owner is admin: {v}"
    );
    let gets = s.fake.calls("GET");
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].1, format!("/guilds/{NEW_GUILD}"));
    assert_eq!(gets[0].2, format!("Bot {BOT_TOKEN}"));
    assert!(s.core.tenant("discord-2900000000000000009").is_some());
    assert_eq!(
        s.text("select tenant_id from messages where platform_msg_id = 'ix-n1'")
            .await,
        "discord-2900000000000000009"
    );
    assert_eq!(
        s.scalar("select count(*) from audit_log where tenant_id = 'discord-2900000000000000009' and actor = 'discord guild owner' and role = 'admin' and target = 'discord:7700000000000000007'")
            .await,
        1
    );
    // Someone else in that guild is not admin; Discord is not asked again.
    let (_, v) = s
        .send(&slash(
            "ix-n2",
            Some(NEW_GUILD),
            STRANGER,
            "users",
            json!([]),
        ))
        .await;
    assert!(v["data"]["embeds"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(s.fake.calls("GET").len(), 1);
    // Nothing of the new tenant is visible from acme.
    assert_eq!(
        s.scalar("select count(*) from messages where tenant_id = 'acme'")
            .await,
        0
    );
    s.stop().await;

    // A restart (or another replica) knows the tenant and its owner without asking again.
    let s = Discord::start(db).await;
    assert!(s.core.tenant("discord-2900000000000000009").is_some());
    let (_, v) = s
        .send(&slash("ix-n3", Some(NEW_GUILD), OWNER, "users", json!([])))
        .await;
    assert!(!v["data"]["embeds"].as_array().unwrap().is_empty(), "{v}");
    assert!(s.fake.calls("GET").is_empty());
    s.stop().await;
}

async fn a_long_csv_is_cut_in_the_embed_and_follows_as_a_file(db: &TestDb) {
    let s = Discord::start(db).await;
    for i in 0..40 {
        s.core
            .handle(common::console(
                &format!("person{i:02}@example.com"),
                "hello",
            ))
            .await
            .unwrap();
    }
    let (_, v) = s
        .send(&slash(
            "ix-csv",
            Some(GUILD),
            ADMIN,
            "users",
            json!([{"name": "format", "type": 3, "value": "csv"}]),
        ))
        .await;
    assert_eq!(v["type"], 4);
    assert_embed_limits(&v["data"]);
    let e = &v["data"]["embeds"][0];
    assert!(
        e["description"].as_str().unwrap().starts_with("```csv\n"),
        "{v}"
    );
    let mut posts = Vec::new();
    for _ in 0..100 {
        posts = s.fake.calls("POST");
        if !posts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(posts.len(), 1, "the whole file follows");
    assert_eq!(posts[0].1, format!("/webhooks/{APP_ID}/tok-ix-csv"));
    assert!(posts[0].2.starts_with("multipart/form-data; boundary="));
    let body = posts[0].3.as_str().unwrap();
    assert!(body.contains("name=\"payload_json\""), "{body}");
    assert!(body.contains("\"flags\":64"), "{body}");
    assert!(body.contains("filename=\"koji-users.csv\""), "{body}");
    for i in 0..40 {
        assert!(
            body.contains(&format!("person{i:02}@example.com")),
            "row {i}"
        );
    }
    s.stop().await;
}

/// `koji discord register` against the fake: the built binary, configured by file and env.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_sends_the_command_definition() {
    let (base, fake) = fake_discord().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("koji.toml");
    std::fs::write(&file, format!("[discord]\napi_url = \"{base}\"\n")).unwrap();
    let run = |envs: Vec<(&'static str, String)>| {
        let dir = dir.path().to_path_buf();
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_koji"));
            cmd.args(["discord", "register", "--config"])
                .arg(&file)
                .current_dir(&dir)
                .env_remove("KOJI_CONFIG")
                .env_remove("KOJI_DATABASE__URL");
            for (k, v) in envs {
                cmd.env(k, v);
            }
            cmd.output().unwrap()
        })
    };
    let out = run(vec![("KOJI_DISCORD__BOT_TOKEN", BOT_TOKEN.into())])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("discord.application_id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fake.calls("PUT").is_empty());

    let out = run(vec![
        ("KOJI_DISCORD__BOT_TOKEN", BOT_TOKEN.into()),
        ("KOJI_DISCORD__APPLICATION_ID", APP_ID.into()),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("registered /koji") && stdout.contains("users"),
        "{stdout}"
    );
    let puts = fake.calls("PUT");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].1, format!("/applications/{APP_ID}/commands"));
    assert_eq!(puts[0].2, format!("Bot {BOT_TOKEN}"));
    let koji = &puts[0].3[0];
    assert_eq!(koji["name"], "koji");
    let subs: Vec<&str> = koji["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for w in [
        "help", "sessions", "users", "user", "visitors", "roles", "grant", "revoke", "export",
        "forget", "audit", "takeover", "release",
    ] {
        assert!(subs.contains(&w), "{w}: {subs:?}");
    }
    let users = koji["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "users")
        .unwrap();
    let top = users["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "top")
        .unwrap();
    assert_eq!(top["type"], 4);

    let out = run(vec![
        ("KOJI_DISCORD__BOT_TOKEN", "wrong".into()),
        ("KOJI_DISCORD__APPLICATION_ID", APP_ID.into()),
    ])
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

on_both_backends!(
    ping_is_answered_with_pong,
    bad_signatures_bodies_and_sizes_are_refused_and_nothing_is_recorded,
    an_admins_users_report_is_an_ephemeral_embed_and_a_strangers_a_refusal,
    a_replayed_interaction_is_recorded_once_and_answered_once,
    a_user_option_names_the_discord_identity,
    a_button_press_becomes_the_next_message,
    a_slow_answer_is_deferred_and_the_original_edited,
    the_owner_of_an_unbound_guild_is_admin_of_its_new_tenant,
    a_long_csv_is_cut_in_the_embed_and_follows_as_a_file,
);
