//! The Bot Connector: Koji's own token (OAuth 2.0 client credentials at `teams.token_url`,
//! cached until shortly before it expires), replies to an activity, and member details.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const DEFAULT_TOKEN_URL: &str =
    "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token";
pub const SCOPE: &str = "https://api.botframework.com/.default";

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("cannot get a Bot Framework token: {0}")]
    Token(String),
    #[error("the connector refused ({status}): {body}")]
    Status { status: u16, body: String },
    #[error("the connector is unreachable: {0}")]
    Http(String),
}

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub struct Connector {
    http: reqwest::Client,
    oauth: Client,
    token: Mutex<Option<(String, Instant)>>,
}

/// What the connector says about a conversation member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub name: Option<String>,
    pub email: Option<String>,
    pub user_principal_name: Option<String>,
    pub aad_object_id: Option<String>,
}

/// Path segments are URL-encoded (conversation ids contain `:` `;` `@`…).
fn seg(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

fn base(service_url: &str) -> String {
    format!("{}/", service_url.trim_end_matches('/'))
}

impl Connector {
    pub fn new(
        http: reqwest::Client,
        app_id: &str,
        app_password: &str,
        token_url: &str,
    ) -> Result<Connector, String> {
        let oauth = BasicClient::new(ClientId::new(app_id.to_string()))
            .set_client_secret(ClientSecret::new(app_password.to_string()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::new(token_url.to_string()).map_err(|e| e.to_string())?);
        Ok(Connector {
            http,
            oauth,
            token: Mutex::new(None),
        })
    }

    /// Koji's bearer token for the connector.
    pub async fn token(&self) -> Result<String, ConnectorError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        // The token request must not follow redirects (oauth2's advice).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConnectorError::Token(e.to_string()))?;
        let r = self
            .oauth
            .exchange_client_credentials()
            .add_scope(Scope::new(SCOPE.into()))
            .request_async(&http)
            .await
            .map_err(|e| ConnectorError::Token(e.to_string()))?;
        let ttl = r.expires_in().unwrap_or(Duration::from_secs(3600));
        let t = r.access_token().secret().clone();
        // Renewed five minutes early (or halfway for short-lived tokens).
        let margin = Duration::from_secs(300).min(ttl / 2);
        *cached = Some((t.clone(), Instant::now() + ttl - margin));
        Ok(t)
    }

    async fn send(&self, url: String, body: &Value) -> Result<Value, ConnectorError> {
        let token = self.token().await?;
        let mut attempt = 0;
        loop {
            let r = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .json(body)
                .send()
                .await
                .map_err(|e| ConnectorError::Http(e.to_string()))?;
            let status = r.status();
            if status.as_u16() == 429 && attempt < 3 {
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(30);
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            if !status.is_success() {
                let body = r.text().await.unwrap_or_default();
                return Err(ConnectorError::Status {
                    status: status.as_u16(),
                    body: body.chars().take(300).collect(),
                });
            }
            return Ok(r.json().await.unwrap_or(Value::Null));
        }
    }

    /// `POST {serviceUrl}v3/conversations/{conversationId}/activities/{activityId}`.
    pub async fn reply(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<Value, ConnectorError> {
        let url = format!(
            "{}v3/conversations/{}/activities/{}",
            base(service_url),
            seg(conversation_id),
            seg(activity_id)
        );
        self.send(url, activity).await
    }

    /// `GET {serviceUrl}v3/conversations/{conversationId}/members/{userId}`.
    pub async fn member(
        &self,
        service_url: &str,
        conversation_id: &str,
        user_id: &str,
    ) -> Result<Member, ConnectorError> {
        let token = self.token().await?;
        let url = format!(
            "{}v3/conversations/{}/members/{}",
            base(service_url),
            seg(conversation_id),
            seg(user_id)
        );
        let r = self
            .http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| ConnectorError::Http(e.to_string()))?;
        let status = r.status();
        if !status.is_success() {
            return Err(ConnectorError::Status {
                status: status.as_u16(),
                body: r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        let v: Value = r
            .json()
            .await
            .map_err(|e| ConnectorError::Http(e.to_string()))?;
        let s = |k: &str| v[k].as_str().filter(|x| !x.is_empty()).map(str::to_string);
        Ok(Member {
            name: s("name"),
            email: s("email"),
            user_principal_name: s("userPrincipalName"),
            aad_object_id: s("aadObjectId"),
        })
    }
}
