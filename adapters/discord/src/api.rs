//! The few Discord REST calls Koji makes: a guild's owner (bot token), editing the
//! original interaction response after a deferral (interaction token), and registering
//! `/koji` (bot token). The base URL is `discord.api_url` so tests and proxies can stand in.

use serde_json::Value;
use std::time::Duration;

pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach Discord: {0}")]
    Http(String),
    #[error("Discord answered {status}: {body}")]
    Status { status: u16, body: String },
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A guild as far as Koji cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guild {
    pub id: String,
    pub name: Option<String>,
    pub owner_id: String,
}

impl Api {
    pub fn new(base: Option<&str>) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("DiscordBot (https://github.com/koji-helpdesk/koji, 0.1) koji")
            .build()
            .expect("a reqwest client");
        Api {
            http,
            base: base
                .filter(|b| !b.trim().is_empty())
                .unwrap_or(DEFAULT_API_URL)
                .trim_end_matches('/')
                .to_string(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Http(e.without_url().to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ApiError::Http(e.to_string()))?;
        if !status.is_success() {
            let body: String = text.chars().take(300).collect();
            return Err(ApiError::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET /guilds/{id}`: who owns the guild.
    pub async fn guild(&self, bot_token: &str, guild_id: &str) -> Result<Guild, ApiError> {
        let v = self
            .send(
                self.http
                    .get(format!("{}/guilds/{guild_id}", self.base))
                    .header("authorization", format!("Bot {bot_token}")),
            )
            .await?;
        let owner_id = v["owner_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::Http("the guild has no owner_id".into()))?;
        Ok(Guild {
            id: guild_id.to_string(),
            name: v["name"].as_str().map(str::to_string),
            owner_id: owner_id.to_string(),
        })
    }

    /// `PATCH /webhooks/{application_id}/{token}/messages/@original` after a deferral.
    pub async fn edit_original(
        &self,
        application_id: &str,
        token: &str,
        data: &Value,
    ) -> Result<(), ApiError> {
        self.send(
            self.http
                .patch(format!(
                    "{}/webhooks/{application_id}/{token}/messages/@original",
                    self.base
                ))
                .json(data),
        )
        .await
        .map(|_| ())
    }

    /// `POST /webhooks/{application_id}/{token}`: a follow-up message carrying a file
    /// (multipart: `payload_json` and `files[0]`).
    pub async fn follow_up_file(
        &self,
        application_id: &str,
        token: &str,
        file: &crate::render::File,
        ephemeral: bool,
    ) -> Result<(), ApiError> {
        let mut payload = serde_json::json!({
            "content": "",
            "attachments": [{"id": 0, "filename": file.filename}],
            "allowed_mentions": {"parse": []},
        });
        if ephemeral {
            payload["flags"] = serde_json::json!(crate::render::EPHEMERAL);
        }
        let boundary = format!("koji-{:016x}", rand_u64());
        let name = file.filename.replace(['"', '\r', '\n'], "_");
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n{payload}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"{name}\"\r\nContent-Type: {}\r\n\r\n",
                file.media_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.content.as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.send(
            self.http
                .post(format!("{}/webhooks/{application_id}/{token}", self.base))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        )
        .await
        .map(|_| ())
    }

    /// `PUT /applications/{id}/commands`: replaces the global commands with `commands`.
    pub async fn register(
        &self,
        bot_token: &str,
        application_id: &str,
        commands: &Value,
    ) -> Result<Value, ApiError> {
        self.send(
            self.http
                .put(format!(
                    "{}/applications/{application_id}/commands",
                    self.base
                ))
                .header("authorization", format!("Bot {bot_token}"))
                .json(commands),
        )
        .await
    }
}

/// A boundary that does not occur in the file by chance (time-seeded; not a secret).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
