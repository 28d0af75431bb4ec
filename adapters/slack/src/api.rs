//! The few Slack Web API calls Koji makes (`users.info`, `chat.postMessage`,
//! `chat.postEphemeral`, `oauth.v2.access`, `apps.connections.open`) and `response_url` follow-ups, over reqwest.
//! The base URL is configurable (`slack.api_url`) so tests and proxies can stand in.
//! Rate limits (429 + `Retry-After`) are waited out a few times before giving up.

use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// Attempts per call when Slack says 429.
const ATTEMPTS: usize = 4;
/// Longest `Retry-After` honoured, in seconds.
const MAX_RETRY_AFTER: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach Slack: {0}")]
    Http(String),
    #[error("Slack answered HTTP {0}")]
    Status(u16),
    /// A logical error: HTTP 200 with `{"ok": false, "error": …}`.
    #[error("Slack refused {method}: {error}")]
    Slack { method: String, error: String },
    #[error("Slack kept rate-limiting {0}")]
    RateLimited(String),
}

#[derive(Clone)]
pub struct WebApi {
    http: reqwest::Client,
    base: String,
}

/// What `users.info` tells about a person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: Option<String>,
    pub email: Option<String>,
    pub tz: Option<String>,
    pub locale: Option<String>,
    pub is_bot: bool,
}

#[derive(Deserialize)]
struct UserInfoBody {
    user: UserBody,
}

#[derive(Deserialize)]
struct UserBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    real_name: Option<String>,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    profile: Profile,
}

#[derive(Deserialize, Default)]
struct Profile {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    real_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

impl WebApi {
    pub fn new(base: Option<&str>) -> WebApi {
        WebApi {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base: base
                .unwrap_or(DEFAULT_API_URL)
                .trim_end_matches('/')
                .to_string(),
        }
    }

    /// POSTs to `url`, waiting out 429s; the JSON answer (any 2xx).
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: Body<'_>,
    ) -> Result<Value, ApiError> {
        for _ in 0..ATTEMPTS {
            let mut req = self.http.post(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req = match &body {
                Body::Json(v) => req.json(v),
                Body::Form(f) => req.form(f),
            };
            let resp = req
                .send()
                .await
                .map_err(|e| ApiError::Http(e.without_url().to_string()))?;
            let status = resp.status();
            if status.as_u16() == 429 {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(MAX_RETRY_AFTER);
                tracing::info!(retry_after = wait, "slack rate limit: waiting");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            if !status.is_success() {
                return Err(ApiError::Status(status.as_u16()));
            }
            // `response_url` answers a plain "ok"; Web API methods answer JSON.
            let text = resp
                .text()
                .await
                .map_err(|e| ApiError::Http(e.without_url().to_string()))?;
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        Err(ApiError::RateLimited(
            url.rsplit('/').next().unwrap_or("").to_string(),
        ))
    }

    async fn call(
        &self,
        method: &str,
        token: Option<&str>,
        body: Body<'_>,
    ) -> Result<Value, ApiError> {
        let v = self
            .post(&format!("{}/{method}", self.base), token, body)
            .await?;
        if v["ok"].as_bool() != Some(true) {
            return Err(ApiError::Slack {
                method: method.to_string(),
                error: v["error"].as_str().unwrap_or("unknown_error").to_string(),
            });
        }
        Ok(v)
    }

    pub async fn users_info(&self, token: &str, user: &str) -> Result<UserInfo, ApiError> {
        let v = self
            .call("users.info", Some(token), Body::Form(&[("user", user)]))
            .await?;
        let b: UserInfoBody = serde_json::from_value(v).map_err(|e| ApiError::Slack {
            method: "users.info".into(),
            error: format!("unexpected answer: {e}"),
        })?;
        let u = b.user;
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Ok(UserInfo {
            name: nonempty(u.profile.real_name)
                .or(nonempty(u.real_name))
                .or(nonempty(u.profile.display_name))
                .or(nonempty(u.name)),
            email: nonempty(u.profile.email),
            tz: nonempty(u.tz),
            locale: nonempty(u.locale),
            is_bot: u.is_bot,
        })
    }

    /// `chat.postMessage` (`body` has `channel`, `text`, `blocks`, maybe `thread_ts`).
    pub async fn post_message(&self, token: &str, body: &Value) -> Result<(), ApiError> {
        self.call("chat.postMessage", Some(token), Body::Json(body))
            .await
            .map(|_| ())
    }

    /// `chat.postEphemeral` (`body` has `channel`, `user`, `text`, `blocks`).
    pub async fn post_ephemeral(&self, token: &str, body: &Value) -> Result<(), ApiError> {
        self.call("chat.postEphemeral", Some(token), Body::Json(body))
            .await
            .map(|_| ())
    }

    /// A follow-up to a slash command or an interaction through its `response_url`.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), ApiError> {
        self.post(response_url, None, Body::Json(body))
            .await
            .map(|_| ())
    }

    /// `apps.connections.open` with the app-level token (`xapp-…`): a Socket Mode URL
    /// (`wss://…`), good for one connection.
    pub async fn connections_open(&self, app_token: &str) -> Result<String, ApiError> {
        let v = self
            .call("apps.connections.open", Some(app_token), Body::Form(&[]))
            .await?;
        v["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Slack {
                method: "apps.connections.open".into(),
                error: "no url in the answer".into(),
            })
    }

    /// `oauth.v2.access`: exchanges an install's code for the team's bot token.
    pub async fn oauth_access(
        &self,
        client_id: &str,
        client_secret: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Value, ApiError> {
        self.call(
            "oauth.v2.access",
            None,
            Body::Form(&[
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("code", code),
                ("redirect_uri", redirect_uri),
            ]),
        )
        .await
    }
}
