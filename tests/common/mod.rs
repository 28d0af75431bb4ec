//! Test support: a fresh database per test on SQLite (a temp file) and on PostgreSQL (a new
//! database on `KOJI_TEST_POSTGRES_URL`), and the core started on it with a manual clock.
#![allow(dead_code)]

use koji::Config;
use koji::conversation::Core;
use koji::domain::{AuthMethod, ManualClock};
use koji_channel::{Channel, Inbound, Outcome, Reply, Speaker, TenantHint};
use sqlx::Connection;
use std::sync::Arc;

/// 2026-12-01T12:00:00Z
pub const T0: i64 = 1_796_126_400_000_000;

pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>, // (admin url, database name)
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("koji.db").display());
        TestDb {
            url,
            backend: "sqlite",
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh PostgreSQL database, or None (said loudly) when KOJI_TEST_POSTGRES_URL is unset.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin) = std::env::var("KOJI_TEST_POSTGRES_URL") else {
            eprintln!(
                "!!! KOJI_TEST_POSTGRES_URL is not set: SKIPPING the PostgreSQL case of this test !!!"
            );
            return None;
        };
        let name = format!("koji_t_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to KOJI_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin.split('?').next().unwrap_or(&admin);
        let (prefix, _) = base.rsplit_once('/').expect("database url has a path");
        let url = format!("{prefix}/{name}");
        Some(TestDb {
            url,
            backend: "postgres",
            _dir: None,
            pg: Some((admin, name)),
        })
    }

    /// The configuration for this database: `extra` TOML over the embedded defaults.
    pub fn config(&self, extra: &str) -> Config {
        let mut c = Config::from_toml(extra).unwrap_or_else(|e| panic!("test config: {e}"));
        c.server.listen = "127.0.0.1:0".into();
        c.database.url = self.url.clone();
        c.database.max_connections = 4;
        c
    }

    pub async fn cleanup(self) {
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "drop database if exists {name} with (force)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Runs each named `async fn(&TestDb)` as two tests: `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::common::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::common::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

pub struct Running {
    pub core: Arc<Core>,
    pub clock: ManualClock,
    writer: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn start(db: &TestDb) -> Running {
        Self::start_with(db, "").await
    }

    pub async fn start_with(db: &TestDb, extra: &str) -> Running {
        let clock = ManualClock::new(T0);
        Self::start_on(db, extra, clock).await
    }

    /// Another instance on the same database (a replica), sharing `clock`.
    pub async fn start_on(db: &TestDb, extra: &str, clock: ManualClock) -> Running {
        let (core, writer) = koji::app::start_core(db.config(extra), Arc::new(clock.clone()))
            .await
            .expect("core starts");
        Running {
            core,
            clock,
            writer,
        }
    }

    pub async fn say(&self, email: &str, text: &str) -> Vec<Reply> {
        match self
            .core
            .handle(console(email, text))
            .await
            .expect("handled")
        {
            Outcome::Replies(r) => r,
            Outcome::Duplicate => panic!("unexpected duplicate"),
        }
    }

    pub async fn say_text(&self, email: &str, text: &str) -> String {
        self.say(email, text)
            .await
            .into_iter()
            .map(|r| r.text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A report as the operator would run it on the command line, as JSON.
    pub async fn report_json(&self, words: &str) -> serde_json::Value {
        let tenant = self.core.cli_tenant(None).expect("one tenant");
        let cmd = koji::commands::parse(words).expect("valid command");
        match self
            .core
            .run_command(
                tenant,
                &koji::conversation::Actor::Operator,
                Channel::Console,
                cmd,
            )
            .await
        {
            koji::conversation::CommandOutput::Report(r, _) => r.to_json(),
            other => panic!("{words}: {other:?}"),
        }
    }

    pub fn advance_minutes(&self, m: u64) {
        self.clock.advance(std::time::Duration::from_secs(m * 60));
    }

    pub async fn stop(self) {
        let store = self.core.store.clone();
        drop(self.core);
        let _ = self.writer.await;
        store.close().await;
    }
}

pub fn console(email: &str, text: &str) -> Inbound {
    Inbound::console(
        TenantHint::Default,
        Speaker {
            external_id: email.to_string(),
            display_name: None,
            verified_email: Some(email.to_string()),
            auth_method: AuthMethod::Console,
            locale: None,
            time_zone: None,
        },
        text,
    )
}

/// A message as a platform delivers it: its own user id, a platform message id.
pub fn platform(
    channel: Channel,
    user: &str,
    email: Option<&str>,
    id: &str,
    text: &str,
) -> Inbound {
    Inbound {
        channel,
        tenant: TenantHint::Default,
        speaker: Speaker {
            external_id: user.to_string(),
            display_name: None,
            verified_email: email.map(str::to_string),
            auth_method: if email.is_some() {
                AuthMethod::Slack
            } else {
                AuthMethod::Anonymous
            },
            locale: None,
            time_zone: None,
        },
        platform_message_id: Some(id.to_string()),
        text: text.to_string(),
        ip: None,
        user_agent: None,
    }
}

pub fn rows(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["rows"].as_array().expect("rows")
}

pub fn row_of<'a>(v: &'a serde_json::Value, email: &str) -> Option<&'a serde_json::Value> {
    rows(v).iter().find(|r| r["person"]["email"] == email)
}

/// A local SMTP sink: speaks just enough SMTP for a client to deliver, and keeps each
/// message's text.
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<std::sync::Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let mut in_data = false;
                    let mut data = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                store.lock().unwrap().push(std::mem::take(&mut data));
                                let _ = w.write_all(b"250 OK queued\r\n").await;
                            } else {
                                data.push_str(&line);
                                data.push('\n');
                            }
                            continue;
                        }
                        let verb = line
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"250 OK\r\n",
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        SmtpSink { port, messages }
    }

    pub fn config(&self) -> String {
        format!(
            "[email]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"Koji <koji@acme.test>\"\n",
            self.port
        )
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// The six-digit code in the latest message to `to`.
    pub fn code_for(&self, to: &str) -> Option<String> {
        let re = regex::Regex::new(r"\b(\d{6})\b").unwrap();
        self.messages()
            .iter()
            .rev()
            .find(|m| {
                m.to_lowercase().contains(&format!("to: {to}")) || m.contains(&format!("<{to}>"))
            })
            .and_then(|m| {
                re.captures(
                    m.split("\n\n")
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join("\n")
                        .as_str(),
                )
                .map(|c| c[1].to_string())
            })
    }
}

/// The real app on a random port, with a manual clock, for portal tests.
pub struct Portal {
    pub base: String,
    pub http: reqwest::Client,
    pub core: Arc<koji::Core>,
    pub clock: ManualClock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), koji::app::AppError>>>,
}

impl Portal {
    pub async fn start(db: &TestDb, extra: &str) -> Portal {
        let clock = ManualClock::new(T0);
        let app = koji::App::build_with_clock(db.config(extra), Arc::new(clock.clone()))
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let core = app.core();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Portal {
            base,
            http: reqwest::Client::new(),
            core,
            clock,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn session(&self) -> (String, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/portal/help/session", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        (v["token"].as_str().unwrap().to_string(), v)
    }

    pub async fn say(&self, token: &str, text: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/portal/help/messages", self.base))
            .bearer_auth(token)
            .header("user-agent", "portal-test/1.0")
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub fn text(v: &serde_json::Value) -> String {
        v["replies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn report(&self, words: &str) -> serde_json::Value {
        let t = self.core.cli_tenant(None).unwrap();
        match self
            .core
            .run_command(
                t,
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

    pub async fn stop(mut self) {
        drop(self.core);
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
    }
}
