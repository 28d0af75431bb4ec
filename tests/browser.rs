//! The portal widget in a real browser: headless Chromium driven over WebDriver
//! (chromedriver). Open the page, give an email, ask a question, see the reply, log out.
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); without them the
//! test says so loudly and does nothing.

mod common;

use common::{Portal, TestDb};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Option<Driver> {
        let (chromedriver, chromium) = ("/usr/bin/chromedriver", "/usr/bin/chromium");
        if !std::path::Path::new(chromedriver).exists() || !std::path::Path::new(chromium).exists()
        {
            eprintln!(
                "!!! chromium/chromedriver not installed: SKIPPING the browser test (bash .ci/run installs them) !!!"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--window-size=390,844",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Some(Driver {
            child,
            base,
            session,
            http,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = self
            .http
            .request(method, url)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v["value"][ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_string()
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let mut out = Vec::new();
        for e in v["value"].as_array().cloned().unwrap_or_default() {
            let Some(id) = e[ELEMENT].as_str().map(str::to_string) else {
                panic!("{css}: {v}");
            };
            let t = self
                .call(
                    reqwest::Method::GET,
                    &format!("/element/{id}/text"),
                    json!({}),
                )
                .await;
            out.push(t["value"].as_str().unwrap_or("").to_string());
        }
        out
    }

    /// Waits until some element matching `css` contains `needle`.
    async fn wait_for(&self, css: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.texts(css).await.iter().any(|t| t.contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} containing {needle:?}; saw {:?}",
                self.texts(css).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_and_send(&self, text: &str) {
        let input = self.find("#text").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{input}/value"),
            json!({"text": text}),
        )
        .await;
        let send = self.find("#send").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{send}/click"),
            json!({}),
        )
        .await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_chats_in_the_widget_and_logs_out() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let p = Portal::start(&db, "").await;
    let open = driver
        .call(
            reqwest::Method::POST,
            "/url",
            json!({"url": format!("{}/portal/help", p.base)}),
        )
        .await;
    assert!(open["value"].is_null(), "{open}");
    driver.wait_for(".msg.koji", "email address").await;

    driver.type_and_send("browser@example.org").await;
    driver.wait_for(".msg.me", "browser@example.org").await;
    driver.wait_for(".msg.koji", "Thanks!").await;

    driver.type_and_send("My Outlook does not start").await;
    driver.wait_for(".msg.koji", "Outlook").await;
    // The knowledge-base answer asks "did this help?" with buttons; a click answers.
    let yes = driver.find(".choices button").await;
    driver
        .call(
            reqwest::Method::POST,
            &format!("/element/{yes}/click"),
            json!({}),
        )
        .await;
    driver.wait_for(".msg.me", "yes").await;
    driver.wait_for(".msg.koji", "Glad that helped").await;

    let logout = driver.find("#logout").await;
    driver
        .call(
            reqwest::Method::POST,
            &format!("/element/{logout}/click"),
            json!({}),
        )
        .await;
    driver.wait_for(".msg.note", "logged out").await;

    let sessions = p.report("sessions --channel portal").await;
    assert_eq!(
        sessions["total"], 0,
        "logging out ended the session: {sessions}"
    );
    let user = p.report("user browser@example.org").await;
    let history = user["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["text"] == "My Outlook does not start"),
        "{user}"
    );
    driver.call(reqwest::Method::DELETE, "", json!({})).await;
    p.stop().await;
    db.cleanup().await;
}
