//! The Microsoft Teams channel: Bot Framework activities at `POST /teams/messages`.
//!
//! It translates and nothing more: an activity → [`Inbound`] (the person's email from the
//! connector's member details, the Teams tenant as the tenant hint, the activity id as the
//! platform message id), and [`Reply`] → a message activity with an Adaptive Card sent
//! through the Bot Connector. Rules live in the core, reached through [`TeamsPort`].
//!
//! Invariant: every activity's bearer token is checked (`auth.rs`) before anything else
//! happens; a bad one gets 401 and changes nothing.
//! Invariant: an activity is acknowledged only after the core has committed it and its
//! replies; replies are sent afterwards. Storage trouble answers 503 so the channel retries,
//! and the core answers a retried activity id once.

pub mod auth;
pub mod cards;
pub mod connector;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use koji_channel::{
    AuthMethod, Channel, ConversationError, Inbound, Outcome, Reply, Speaker, TenantHint,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who installed the app, from an `installationUpdate` activity.
#[derive(Debug, Clone)]
pub struct TeamsInstall {
    /// The Azure AD tenant (`conversation.tenantId` / `channelData.tenant.id`).
    pub azure_tenant_id: String,
    /// The installer's Teams user id (`29:…`).
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// The core, as the Teams adapter sees it.
#[async_trait::async_trait]
pub trait TeamsPort: koji_channel::Conversation {
    /// The app was installed: the installer becomes `admin` of the tenant that binds the
    /// Teams tenant (a new tenant when none does). Returns the tenant's display name.
    async fn installed(&self, install: TeamsInstall) -> Result<String, ConversationError>;
}

#[derive(Debug, Clone)]
pub struct TeamsSettings {
    pub app_id: String,
    pub app_password: String,
    pub openid_metadata_url: String,
    pub token_url: String,
    pub max_body_bytes: usize,
}

/// How long a person's connector details are trusted.
const MEMBER_TTL: Duration = Duration::from_secs(600);

/// (service URL, user id) → the member's details and when they were read.
type MemberCache = HashMap<(String, String), (connector::Member, Instant)>;

#[derive(Clone)]
struct AppState {
    port: Arc<dyn TeamsPort>,
    verifier: Arc<auth::Verifier>,
    connector: Arc<connector::Connector>,
    members: Arc<Mutex<MemberCache>>,
}

pub fn router(port: Arc<dyn TeamsPort>, settings: TeamsSettings) -> Result<Router, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let state = AppState {
        port,
        verifier: Arc::new(auth::Verifier::new(
            http.clone(),
            settings.openid_metadata_url.clone(),
            settings.app_id.clone(),
        )),
        connector: Arc::new(connector::Connector::new(
            http,
            &settings.app_id,
            &settings.app_password,
            &settings.token_url,
        )?),
        members: Arc::new(Mutex::new(HashMap::new())),
    };
    Ok(Router::new()
        .route("/teams/messages", post(messages))
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes)))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// The text addressed to Koji: a card button's value, or the message without the bot's
/// `<at>…</at>` mention (found through the mention entity, not by guessing from the text).
pub fn message_text(a: &Value) -> String {
    if let Some(v) = a["value"]["koji"].as_str() {
        return v.trim().to_string();
    }
    let mut text = a["text"].as_str().unwrap_or("").to_string();
    let bot = a["recipient"]["id"].as_str();
    for e in a["entities"].as_array().into_iter().flatten() {
        if e["type"] == "mention"
            && bot.is_some()
            && e["mentioned"]["id"].as_str() == bot
            && let Some(m) = e["text"].as_str()
        {
            text = text.replacen(m, "", 1);
        }
    }
    text.replace("&nbsp;", " ").trim().to_string()
}

fn tenant_of(a: &Value) -> Option<String> {
    str_of(&a["conversation"]["tenantId"]).or_else(|| str_of(&a["channelData"]["tenant"]["id"]))
}

async fn messages(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorization.is_none() {
        return plain(StatusCode::UNAUTHORIZED, "missing bearer token\n");
    }
    let Ok(a) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not a JSON activity\n");
    };
    let (Some(service_url), Some(channel_id)) = (str_of(&a["serviceUrl"]), str_of(&a["channelId"]))
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "an activity needs serviceUrl and channelId\n",
        );
    };
    match s
        .verifier
        .verify(authorization, &channel_id, &service_url)
        .await
    {
        Ok(()) => {}
        Err(auth::AuthError::KeysUnavailable(e)) => {
            tracing::error!(error = %e, "cannot check Teams tokens");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the token now\n",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "Teams activity refused");
            return plain(StatusCode::UNAUTHORIZED, "invalid Bot Framework token\n");
        }
    }
    match a["type"].as_str() {
        Some("message") => on_message(&s, &a, &service_url).await,
        Some("installationUpdate") => on_install(&s, &a, &service_url).await,
        Some(_) => plain(StatusCode::OK, ""),
        None => plain(StatusCode::BAD_REQUEST, "an activity needs a type\n"),
    }
}

impl AppState {
    /// The person's details from the connector, cached for a while.
    async fn member(
        &self,
        service_url: &str,
        conversation: &str,
        user: &str,
    ) -> Result<connector::Member, connector::ConnectorError> {
        let key = (service_url.to_string(), user.to_string());
        if let Some((m, at)) = self.members.lock().expect("member cache").get(&key)
            && at.elapsed() < MEMBER_TTL
        {
            return Ok(m.clone());
        }
        let m = self
            .connector
            .member(service_url, conversation, user)
            .await?;
        self.members
            .lock()
            .expect("member cache")
            .insert(key, (m.clone(), Instant::now()));
        Ok(m)
    }
}

fn email_of(m: &connector::Member) -> Option<String> {
    m.email
        .clone()
        .or_else(|| m.user_principal_name.clone())
        .filter(|e| e.contains('@'))
}

async fn on_message(s: &AppState, a: &Value, service_url: &str) -> Response {
    let (Some(id), Some(user), Some(conversation)) = (
        str_of(&a["id"]),
        str_of(&a["from"]["id"]),
        str_of(&a["conversation"]["id"]),
    ) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "a message needs id, from.id and conversation.id\n",
        );
    };
    let text = message_text(a);
    if text.is_empty() {
        return plain(StatusCode::OK, "");
    }
    let member = match s.member(service_url, &conversation, &user).await {
        Ok(m) => m,
        Err(e) => {
            // Nothing recorded: the person can say it again.
            tracing::warn!(error = %e, "Teams member details unavailable");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot look up the sender now\n",
            );
        }
    };
    let email = email_of(&member);
    let speaker = Speaker {
        external_id: user,
        display_name: member.name.clone().or_else(|| str_of(&a["from"]["name"])),
        auth_method: if email.is_some() {
            AuthMethod::Teams
        } else {
            AuthMethod::Anonymous
        },
        verified_email: email,
        locale: str_of(&a["locale"]),
        time_zone: str_of(&a["localTimezone"]),
    };
    let tenant = match tenant_of(a) {
        Some(t) => TenantHint::TeamsTenant(t),
        None => TenantHint::Default,
    };
    let msg = Inbound {
        channel: Channel::Teams,
        tenant,
        speaker,
        platform_message_id: Some(id),
        text,
        ip: None,
        user_agent: None,
    };
    match s.port.handle(msg).await {
        Ok(Outcome::Replies(replies)) => {
            send_later(s, a, replies);
            plain(StatusCode::OK, "")
        }
        Ok(Outcome::Duplicate) => plain(StatusCode::OK, ""),
        Err(ConversationError::Unavailable(e)) => {
            tracing::warn!(error = %e, "Teams activity not recorded; the channel may retry");
            plain(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable\n")
        }
        Err(ConversationError::UnknownTenant(t)) => {
            tracing::warn!(tenant = %t, "Teams activity from an unbound tenant");
            send_later(
                s,
                a,
                vec![Reply::text(
                    "Koji is not set up for your organisation yet. Ask your admin to install it.",
                )],
            );
            plain(StatusCode::OK, "")
        }
        Err(e) => {
            tracing::warn!(error = %e, "Teams activity not taken");
            plain(StatusCode::OK, "")
        }
    }
}

async fn on_install(s: &AppState, a: &Value, service_url: &str) -> Response {
    let action = a["action"].as_str().unwrap_or("");
    if !action.starts_with("add") {
        tracing::info!(action, "Teams app installation update");
        return plain(StatusCode::OK, "");
    }
    let (Some(tenant), Some(user), Some(conversation)) = (
        tenant_of(a),
        str_of(&a["from"]["id"]),
        str_of(&a["conversation"]["id"]),
    ) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "an installation needs a tenant, from.id and conversation.id\n",
        );
    };
    // The installer's email links them to their person; without it they are admin by
    // their Teams identity.
    let member = s
        .member(service_url, &conversation, &user)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "installer details unavailable");
            connector::Member::default()
        });
    let install = TeamsInstall {
        azure_tenant_id: tenant,
        user_id: user,
        name: member.name.clone().or_else(|| str_of(&a["from"]["name"])),
        email: email_of(&member),
    };
    match s.port.installed(install).await {
        Ok(name) => {
            send_later(
                s,
                a,
                vec![Reply::text(format!(
                    "Koji is installed for {name}, and you are its admin. Ask me anything, or type /koji help for commands."
                ))],
            );
            plain(StatusCode::OK, "")
        }
        Err(e) => {
            tracing::warn!(error = %e, "Teams install not recorded");
            plain(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable\n")
        }
    }
}

/// Sends replies to the activity's conversation, in order, after the acknowledgement.
fn send_later(s: &AppState, a: &Value, replies: Vec<Reply>) {
    let connector = s.connector.clone();
    let service_url = a["serviceUrl"].as_str().unwrap_or("").to_string();
    let conversation = a["conversation"].clone();
    let from = a["recipient"].clone();
    let recipient = a["from"].clone();
    let reply_to = a["id"].as_str().unwrap_or("").to_string();
    tokio::spawn(async move {
        let conv_id = conversation["id"].as_str().unwrap_or("").to_string();
        for r in &replies {
            let mut act = cards::activity(r);
            act["from"] = from.clone();
            act["recipient"] = recipient.clone();
            act["conversation"] = conversation.clone();
            act["replyToId"] = json!(reply_to);
            if let Err(e) = connector
                .reply(&service_url, &conv_id, &reply_to, &act)
                .await
            {
                tracing::error!(error = %e, "Teams reply not delivered");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bot_mention_is_stripped_through_its_entity() {
        let a = json!({
            "text": "<at>Koji</at> /koji users --top 3",
            "recipient": {"id": "28:app"},
            "entities": [
                {"type": "mention", "text": "<at>Koji</at>", "mentioned": {"id": "28:app", "name": "Koji"}},
                {"type": "clientInfo"}
            ]
        });
        assert_eq!(message_text(&a), "/koji users --top 3");
        // Someone else's mention stays.
        let b = json!({
            "text": "<at>Ann</at> needs a laptop",
            "recipient": {"id": "28:app"},
            "entities": [{"type": "mention", "text": "<at>Ann</at>", "mentioned": {"id": "29:ann"}}]
        });
        assert_eq!(message_text(&b), "<at>Ann</at> needs a laptop");
        // A card button's value is the message.
        let c = json!({"text": "", "value": {"koji": "yes"}});
        assert_eq!(message_text(&c), "yes");
    }
}
