//! The Slack channel: the Events API (`POST /slack/events`), the `/koji` slash command
//! (`POST /slack/commands`), buttons (`POST /slack/interactions`) and the OAuth v2 install
//! (`GET /slack/install`, `GET /slack/oauth/callback`); or the same over Socket Mode
//! ([`socket`]), through the same handler functions.
//!
//! It translates and nothing more: Slack payload → [`Inbound`] on the way in, [`Reply`] →
//! Block Kit on the way out. Who someone is, what they may do and what is recorded is the
//! core's business, reached through [`SlackPort`].
//!
//! Invariant: every request's signature is checked against its raw body before anything
//! else happens; a bad one gets 401 and changes nothing.
//! Invariant: an event is acknowledged (200) only after the core has committed it and its
//! replies; replies are posted afterwards. Storage trouble answers 5xx so that Slack retries,
//! and the core answers a retried `event_id` once.

pub mod api;
pub mod blocks;
pub mod signing;
pub mod socket;

use api::{UserInfo, WebApi};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use koji_channel::{
    AuthMethod, Channel, ConversationError, Inbound, Outcome, Reply, Speaker, TenantHint,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Slack's OAuth v2 consent page.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://slack.com/oauth/v2/authorize";
/// The bot scopes Koji asks for at install.
pub const BOT_SCOPES: &str =
    "chat:write,im:history,app_mentions:read,users:read,users:read.email,commands";

/// Whether a Slack team belongs to a tenant, and the token to act in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamAccess {
    /// No tenant binds the team (neither configured nor installed).
    Unknown,
    /// The install's bot token, else `slack.bot_token`; None when neither exists.
    Known { bot_token: Option<String> },
}

/// An install state presented at the OAuth callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateCheck {
    /// Valid; now used up.
    Valid,
    Unknown,
    Expired,
    Used,
}

/// A completed OAuth v2 exchange, to be kept.
#[derive(Debug, Clone)]
pub struct Install {
    pub team_id: String,
    pub team_name: Option<String>,
    pub bot_user_id: Option<String>,
    pub bot_token: String,
    /// The Slack user who installed (`authed_user.id`): `admin` of the tenant.
    pub installer: String,
    pub installer_info: Option<UserInfo>,
}

#[derive(Debug, Clone)]
pub struct Installed {
    pub tenant_id: String,
    pub tenant_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Koji is not configured for this (names the key).
    #[error("{0}")]
    Config(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The core, as the Slack adapter sees it.
#[async_trait::async_trait]
pub trait SlackPort: koji_channel::Conversation {
    async fn team(&self, team_id: &str) -> Result<TeamAccess, PortError>;
    /// A new single-use install state (10 minutes, valid on any replica).
    async fn new_install_state(&self) -> Result<String, PortError>;
    async fn take_install_state(&self, state: &str) -> Result<StateCheck, PortError>;
    async fn save_install(&self, install: Install) -> Result<Installed, PortError>;
}

#[derive(Clone)]
pub struct SlackSettings {
    pub signing_secret: String,
    /// Web API base (`slack.api_url`), default `https://slack.com/api`.
    pub api_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub authorize_url: String,
    /// `server.public_url`: the OAuth redirect is `{public_url}/slack/oauth/callback`.
    pub public_url: String,
    pub max_body_bytes: usize,
    /// Now, in unix seconds (the app's clock, so tests can hold time still).
    pub now: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// How long `users.info` answers are reused.
    pub user_cache_ttl: Duration,
    /// How long a slash command waits for the core before answering "Working on it…"
    /// (Slack allows 3 s in all, network included).
    pub command_deadline: Duration,
}

impl SlackSettings {
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/slack/oauth/callback",
            self.public_url.trim_end_matches('/')
        )
    }
}

/// `users.info` answers by (team, user), with when they were fetched.
type UserCache = Mutex<HashMap<(String, String), (Instant, Speaker)>>;

#[derive(Clone)]
struct AppState {
    port: Arc<dyn SlackPort>,
    settings: Arc<SlackSettings>,
    api: WebApi,
    users: Arc<UserCache>,
}

impl AppState {
    fn new(port: Arc<dyn SlackPort>, settings: SlackSettings) -> AppState {
        let api = WebApi::new(settings.api_url.as_deref());
        AppState {
            port,
            settings: Arc::new(settings),
            api,
            users: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// The HTTP endpoints (they need `signing_secret`).
pub fn router(port: Arc<dyn SlackPort>, settings: SlackSettings) -> Router {
    let limit = settings.max_body_bytes;
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/install", get(install))
        .route("/slack/oauth/callback", get(oauth_callback))
        .with_state(AppState::new(port, settings))
        .layer(DefaultBodyLimit::max(limit))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// Storage trouble: Slack should retry later.
fn retry_later() -> Response {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily unavailable; retry\n",
    )
}

// `Err` is the HTTP answer to give at once: built at most once per request.
#[allow(clippy::result_large_err)]
impl AppState {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        signing::verify(
            &self.settings.signing_secret,
            h("x-slack-request-timestamp"),
            h("x-slack-signature"),
            body,
            (self.settings.now)(),
        )
        .map_err(|e| {
            tracing::warn!(reason = %e, "slack request refused");
            plain(StatusCode::UNAUTHORIZED, "invalid signature\n")
        })
    }

    /// Who a Slack user is, from `users.info` (remembered for a while).
    async fn speaker(&self, team: &str, token: &str, user: &str) -> Result<Speaker, api::ApiError> {
        let key = (team.to_string(), user.to_string());
        if let Some((at, s)) = self.users.lock().expect("user cache").get(&key)
            && at.elapsed() < self.settings.user_cache_ttl
        {
            return Ok(s.clone());
        }
        let info = self.api.users_info(token, user).await?;
        let speaker = speaker_of(user, &info);
        let mut cache = self.users.lock().expect("user cache");
        if cache.len() > 50_000 {
            let ttl = self.settings.user_cache_ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        cache.insert(key, (Instant::now(), speaker.clone()));
        Ok(speaker)
    }

    /// The team's token, or the response to give when there is none to act with.
    async fn access(&self, team: &str) -> Result<String, Response> {
        match self.port.team(team).await {
            Ok(TeamAccess::Known { bot_token: Some(t) }) => Ok(t),
            Ok(TeamAccess::Known { bot_token: None }) => {
                tracing::error!(
                    team,
                    "no bot token for this Slack team (install Koji or set slack.bot_token)"
                );
                Err(plain(StatusCode::OK, ""))
            }
            Ok(TeamAccess::Unknown) => {
                // Acknowledged, so that Slack does not retry what no retry can fix.
                tracing::warn!(team, "event from a Slack team no tenant binds; ignored");
                Err(plain(StatusCode::OK, ""))
            }
            Err(e) => {
                tracing::warn!(error = %e, "slack team lookup failed");
                Err(retry_later())
            }
        }
    }
}

fn speaker_of(user: &str, info: &UserInfo) -> Speaker {
    Speaker {
        external_id: user.to_string(),
        display_name: info.name.clone(),
        verified_email: info.email.clone(),
        auth_method: if info.email.is_some() {
            AuthMethod::Slack
        } else {
            AuthMethod::Anonymous
        },
        locale: info.locale.clone(),
        time_zone: info.tz.clone(),
    }
}

fn inbound(team: &str, speaker: Speaker, id: Option<String>, text: String) -> Inbound {
    Inbound {
        channel: Channel::Slack,
        tenant: TenantHint::SlackTeam(team.to_string()),
        speaker,
        platform_message_id: id,
        text,
        ip: None,
        user_agent: None,
    }
}

/// The text without mentions of the bot (`<@UBOT>`), or of anyone at its start.
pub fn strip_mention(text: &str, bot_user_id: Option<&str>) -> String {
    let mut t = text.to_string();
    if let Some(bot) = bot_user_id {
        t = t.replace(&format!("<@{bot}>"), " ");
    }
    let mut rest = t.trim_start();
    while rest.starts_with("<@")
        && let Some(end) = rest.find('>')
    {
        rest = rest[end + 1..].trim_start();
    }
    rest.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------
// Events API

async fn events(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = s.verify(&headers, &body) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not JSON\n");
    };
    match v["type"].as_str() {
        Some("url_verification") => {
            axum::Json(json!({ "challenge": v["challenge"].as_str().unwrap_or("") }))
                .into_response()
        }
        Some("event_callback") => on_event(&s, &v).await,
        Some(_) => plain(StatusCode::OK, ""),
        None => plain(StatusCode::BAD_REQUEST, "no event type\n"),
    }
}

/// Where and how to answer an event.
struct Target {
    channel: String,
    user: String,
    thread_ts: Option<String>,
    /// Private replies go as ephemeral messages (in a channel) or plainly (in a DM).
    dm: bool,
}

async fn on_event(s: &AppState, v: &Value) -> Response {
    let e = &v["event"];
    let str_of = |x: &Value| x.as_str().map(str::to_string);
    let (Some(team), Some(event_id)) = (
        str_of(&v["team_id"]).or_else(|| str_of(&e["team"])),
        str_of(&v["event_id"]),
    ) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "event_callback without team_id or event_id\n",
        );
    };
    let kind = e["type"].as_str().unwrap_or("");
    let from_bot = e.get("bot_id").is_some_and(|b| !b.is_null())
        || e.get("subtype").is_some_and(|s| !s.is_null());
    let dm = kind == "message" && e["channel_type"] == "im";
    if from_bot || !(dm || kind == "app_mention") {
        return plain(StatusCode::OK, "");
    }
    let (Some(user), Some(channel), Some(ts)) =
        (str_of(&e["user"]), str_of(&e["channel"]), str_of(&e["ts"]))
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "message event without user, channel or ts\n",
        );
    };
    let bot_user = v["authorizations"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["is_bot"] == true))
        .and_then(|x| x["user_id"].as_str());
    let raw = e["text"].as_str().unwrap_or("");
    let text = if kind == "app_mention" {
        strip_mention(raw, bot_user)
    } else {
        raw.trim().to_string()
    };
    let target = Target {
        channel,
        user: user.clone(),
        thread_ts: (kind == "app_mention").then(|| str_of(&e["thread_ts"]).unwrap_or(ts)),
        dm,
    };
    let token = match s.access(&team).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let speaker = match s.speaker(&team, &token, &user).await {
        Ok(sp) => sp,
        Err(e) => {
            // Nothing recorded yet: Slack retries and we ask again.
            tracing::warn!(error = %e, "users.info failed");
            return plain(StatusCode::BAD_GATEWAY, "cannot look up the user; retry\n");
        }
    };
    if text.is_empty() {
        return plain(StatusCode::OK, "");
    }
    let msg = inbound(&team, speaker, Some(event_id), text);
    match s.port.handle(msg).await {
        Ok(Outcome::Replies(replies)) => {
            let api = s.api.clone();
            tokio::spawn(async move { deliver(&api, &token, &target, &replies).await });
            plain(StatusCode::OK, "")
        }
        Ok(Outcome::Duplicate) => plain(StatusCode::OK, ""),
        Err(ConversationError::Unavailable(e)) => {
            tracing::warn!(error = %e, "slack event not recorded; slack will retry");
            retry_later()
        }
        Err(e) => {
            tracing::warn!(error = %e, "slack event not taken");
            plain(StatusCode::OK, "")
        }
    }
}

/// Posts replies where the event came from, one message each, in order.
async fn deliver(api: &WebApi, token: &str, t: &Target, replies: &[Reply]) {
    for r in replies {
        let mut body = blocks::message(r);
        body["channel"] = json!(t.channel);
        if let Some(ts) = &t.thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let sent = if r.private && !t.dm {
            body["user"] = json!(t.user);
            api.post_ephemeral(token, &body).await
        } else {
            api.post_message(token, &body).await
        };
        if let Err(e) = sent {
            tracing::error!(error = %e, "slack reply not delivered");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Slash commands and interactions

/// One ephemeral answer holding every reply (within the 50-block limit).
fn ephemeral(replies: &[Reply]) -> Value {
    let mut all = Vec::new();
    for r in replies {
        all.extend(blocks::render(r));
    }
    if all.len() > blocks::MAX_BLOCKS {
        all.truncate(blocks::MAX_BLOCKS);
    }
    let text: Vec<&str> = replies.iter().map(|r| r.text.as_str()).collect();
    let mut text = text.join("\n");
    if text.chars().count() > blocks::MAX_FALLBACK_CHARS {
        text = text
            .chars()
            .take(blocks::MAX_FALLBACK_CHARS - 1)
            .collect::<String>()
            + "…";
    }
    json!({"response_type": "ephemeral", "text": text, "blocks": all})
}

fn apology(e: &ConversationError) -> &'static str {
    match e {
        ConversationError::UnknownTenant(_) => {
            "Koji is not set up for this workspace yet. Ask your admin to install it."
        }
        ConversationError::Unavailable(_) => {
            "Sorry, I can't answer right now (temporarily unavailable). Please try again in a moment."
        }
        ConversationError::Rejected(_) => "Sorry, I can't take that message.",
    }
}

async fn commands(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = s.verify(&headers, &body) {
        return r;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not a form\n");
    };
    match slash(&s, &form).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(r) => r,
    }
}

/// A `/koji` command (HTTP form or Socket Mode payload): the ephemeral answer to give at
/// once — the report, or "Working on it…" with the report following through `response_url`
/// when the core takes longer than `command_deadline`.
async fn slash(s: &AppState, form: &HashMap<String, String>) -> Result<Value, Response> {
    let (Some(team), Some(user)) = (form.get("team_id"), form.get("user_id")) else {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "team_id and user_id are required\n",
        ));
    };
    let token = match s.access(team).await {
        Ok(t) => t,
        Err(_) => {
            return Ok(ephemeral(&[Reply::text(apology(
                &ConversationError::UnknownTenant(team.clone()),
            ))]));
        }
    };
    let speaker = match s.speaker(team, &token, user).await {
        Ok(sp) => sp,
        Err(e) => {
            tracing::warn!(error = %e, "users.info failed");
            return Ok(ephemeral(&[Reply::text(
                "Sorry, I couldn't check who you are with Slack. Please try again.",
            )]));
        }
    };
    let words = form.get("text").map(|t| t.trim()).unwrap_or("");
    let text = format!("/koji {words}").trim_end().to_string();
    let msg = inbound(team, speaker, None, text);
    let port = s.port.clone();
    let mut task = tokio::spawn(async move { port.handle(msg).await });
    let answer = |r: Result<Result<Outcome, ConversationError>, tokio::task::JoinError>| match r {
        Ok(Ok(Outcome::Replies(replies))) => ephemeral(&replies),
        Ok(Ok(Outcome::Duplicate)) => ephemeral(&[Reply::text("Already answered.")]),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "slash command not handled");
            ephemeral(&[Reply::text(apology(&e))])
        }
        Err(e) => {
            tracing::error!(error = %e, "slash command task failed");
            ephemeral(&[Reply::text("Sorry, something went wrong.")])
        }
    };
    match tokio::time::timeout(s.settings.command_deadline, &mut task).await {
        Ok(r) => Ok(answer(r)),
        Err(_) => {
            // Slack gives up after 3 s: say so now, answer through response_url later.
            let working = ephemeral(&[Reply::text("Working on it…")]);
            let Some(url) = form.get("response_url").cloned() else {
                return Ok(working);
            };
            let api = s.api.clone();
            tokio::spawn(async move {
                let body = answer(task.await);
                if let Err(e) = api.respond(&url, &body).await {
                    tracing::error!(error = %e, "slash command answer not delivered");
                }
            });
            Ok(working)
        }
    }
}

async fn interactions(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = s.verify(&headers, &body) {
        return r;
    }
    let payload = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body)
        .ok()
        .and_then(|f| f.get("payload").cloned())
        .and_then(|p| serde_json::from_str::<Value>(&p).ok());
    let Some(p) = payload else {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected a form with a JSON payload\n",
        );
    };
    on_action(&s, &p).await
}

/// A `block_actions` payload (HTTP or Socket Mode): the pressed button's value becomes the
/// person's next message; the answer goes to `response_url` (else the channel).
async fn on_action(s: &AppState, p: &Value) -> Response {
    if p["type"] != "block_actions" {
        return plain(StatusCode::OK, "");
    }
    let str_of = |x: &Value| x.as_str().map(str::to_string);
    let team = str_of(&p["team"]["id"]).or_else(|| str_of(&p["user"]["team_id"]));
    let (Some(team), Some(user)) = (team, str_of(&p["user"]["id"])) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "block_actions without team or user\n",
        );
    };
    // Link buttons (sign-in) carry no value: Slack only tells us they were clicked.
    let Some(value) = p["actions"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|a| a["value"].as_str())
        .map(str::to_string)
    else {
        return plain(StatusCode::OK, "");
    };
    let token = match s.access(&team).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let speaker = match s.speaker(&team, &token, &user).await {
        Ok(sp) => sp,
        Err(e) => {
            tracing::warn!(error = %e, "users.info failed");
            return plain(StatusCode::BAD_GATEWAY, "cannot look up the user; retry\n");
        }
    };
    let channel = str_of(&p["channel"]["id"]).or_else(|| str_of(&p["container"]["channel_id"]));
    let response_url = str_of(&p["response_url"]);
    let msg = inbound(&team, speaker, None, value);
    match s.port.handle(msg).await {
        Ok(Outcome::Replies(replies)) => {
            let api = s.api.clone();
            tokio::spawn(async move {
                for r in &replies {
                    let mut body = blocks::message(r);
                    let sent = match (&response_url, &channel) {
                        (Some(url), _) => {
                            body["response_type"] =
                                json!(if r.private { "ephemeral" } else { "in_channel" });
                            body["replace_original"] = json!(false);
                            api.respond(url, &body).await
                        }
                        (None, Some(ch)) => {
                            body["channel"] = json!(ch);
                            api.post_message(&token, &body).await
                        }
                        (None, None) => Ok(()),
                    };
                    if let Err(e) = sent {
                        tracing::error!(error = %e, "slack reply not delivered");
                    }
                }
            });
            plain(StatusCode::OK, "")
        }
        Ok(Outcome::Duplicate) => plain(StatusCode::OK, ""),
        Err(ConversationError::Unavailable(e)) => {
            tracing::warn!(error = %e, "slack action not recorded");
            retry_later()
        }
        Err(e) => {
            tracing::warn!(error = %e, "slack action not taken");
            plain(StatusCode::OK, "")
        }
    }
}

// ---------------------------------------------------------------------------------------
// OAuth v2 install

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title></head><body style=\"font:16px system-ui;max-width:32rem;margin:3rem auto;padding:0 1rem\"><h1>{t}</h1><p>{x}</p></body></html>",
        t = esc(title),
        x = esc(text)
    );
    (status, Html(body)).into_response()
}

fn port_error_page(e: PortError) -> Response {
    match e {
        PortError::Config(why) => {
            tracing::error!(reason = %why, "slack install not possible");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Slack install is not configured",
                &format!("This Koji server cannot install into Slack yet: {why}."),
            )
        }
        PortError::Unavailable(e) => {
            tracing::warn!(error = %e, "slack install: storage unavailable");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "Koji is temporarily unavailable. Please start the installation again in a moment.",
            )
        }
    }
}

async fn install(State(s): State<AppState>) -> Response {
    let Some(client_id) = s.settings.client_id.as_deref() else {
        return port_error_page(PortError::Config("slack.client_id is not set".into()));
    };
    let state = match s.port.new_install_state().await {
        Ok(st) => st,
        Err(e) => return port_error_page(e),
    };
    let query = serde_urlencoded::to_string([
        ("client_id", client_id),
        ("scope", BOT_SCOPES),
        ("redirect_uri", &s.settings.redirect_uri()),
        ("state", &state),
    ])
    .unwrap_or_default();
    let base = &s.settings.authorize_url;
    let sep = if base.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{base}{sep}{query}")).into_response()
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn oauth_callback(State(s): State<AppState>, Query(q): Query<CallbackParams>) -> Response {
    let bad = |title: &str, text: &str| page(StatusCode::BAD_REQUEST, title, text);
    if let Some(err) = &q.error {
        let text = if err == "access_denied" {
            "The installation was cancelled in Slack. Nothing was installed.".to_string()
        } else {
            format!("Slack reported `{err}`. Nothing was installed.")
        };
        return bad("Installation cancelled", &text);
    }
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return bad(
            "Installation link incomplete",
            "This page needs the code and state Slack adds. Please start again from the install link.",
        );
    };
    match s.port.take_install_state(state).await {
        Ok(StateCheck::Valid) => {}
        Ok(StateCheck::Used) => {
            return bad(
                "Installation link already used",
                "This installation link was already used. Please start again from the install link.",
            );
        }
        Ok(StateCheck::Expired) => {
            return bad(
                "Installation link expired",
                "This installation link expired (links last 10 minutes). Please start again from the install link.",
            );
        }
        Ok(StateCheck::Unknown) => {
            return bad(
                "Unknown installation link",
                "Koji did not start this installation. Please start again from the install link.",
            );
        }
        Err(e) => return port_error_page(e),
    }
    let (Some(client_id), Some(secret)) = (
        s.settings.client_id.as_deref(),
        s.settings.client_secret.as_deref(),
    ) else {
        return port_error_page(PortError::Config(
            "slack.client_id and slack.client_secret must be set".into(),
        ));
    };
    let v = match s
        .api
        .oauth_access(client_id, secret, code, &s.settings.redirect_uri())
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "slack oauth.v2.access failed");
            return page(
                StatusCode::BAD_GATEWAY,
                "Slack did not confirm the installation",
                &format!("{e}. Nothing was installed; please start again from the install link."),
            );
        }
    };
    let str_of = |x: &Value| x.as_str().map(str::to_string);
    let (Some(token), Some(team_id), Some(installer)) = (
        str_of(&v["access_token"]),
        str_of(&v["team"]["id"]),
        str_of(&v["authed_user"]["id"]),
    ) else {
        return page(
            StatusCode::BAD_GATEWAY,
            "Slack did not confirm the installation",
            "Slack's answer lacked the token, team or installing user. Nothing was installed.",
        );
    };
    // The installer's email, if Slack shares it, links them to their person.
    let installer_info = s.api.users_info(&token, &installer).await.ok();
    let team_name = str_of(&v["team"]["name"]);
    let done = s
        .port
        .save_install(Install {
            team_id: team_id.clone(),
            team_name: team_name.clone(),
            bot_user_id: str_of(&v["bot_user_id"]),
            bot_token: token,
            installer,
            installer_info,
        })
        .await;
    match done {
        Ok(i) => {
            tracing::info!(team = %team_id, tenant = %i.tenant_id, "slack install completed");
            page(
                StatusCode::OK,
                "Koji is installed",
                &format!(
                    "Koji is now installed in {} (tenant {}). You are its admin: type /koji help in Slack to begin.",
                    team_name.as_deref().unwrap_or(&team_id),
                    i.tenant_name
                ),
            )
        }
        Err(e) => port_error_page(e),
    }
}

/// A Slack app manifest (JSON) for this deployment: scopes, events, `/koji`, the URLs;
/// with `socket_mode` (an app token is configured) Slack delivers over Socket Mode instead.
pub fn manifest(public_url: &str, socket_mode: bool) -> Value {
    let base = public_url.trim_end_matches('/');
    json!({
        "display_information": {
            "name": "Koji",
            "description": "Help-desk assistant",
        },
        "features": {
            "bot_user": {"display_name": "Koji", "always_online": true},
            "app_home": {"messages_tab_enabled": true, "messages_tab_read_only_enabled": false},
            "slash_commands": [{
                "command": "/koji",
                "url": format!("{base}/slack/commands"),
                "description": "Koji admin commands and reports",
                "usage_hint": "help | users | sessions | roles …",
                "should_escape": false,
            }],
        },
        "oauth_config": {
            "redirect_urls": [format!("{base}/slack/oauth/callback")],
            "scopes": {"bot": BOT_SCOPES.split(',').collect::<Vec<_>>()},
        },
        "settings": {
            "event_subscriptions": {
                "request_url": format!("{base}/slack/events"),
                "bot_events": ["message.im", "app_mention"],
            },
            "interactivity": {
                "is_enabled": true,
                "request_url": format!("{base}/slack/interactions"),
            },
            "org_deploy_enabled": false,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_of_the_bot_are_stripped() {
        assert_eq!(
            strip_mention("<@UBOT> users --top 3", Some("UBOT")),
            "users --top 3"
        );
        assert_eq!(strip_mention("hey <@UBOT>  help", Some("UBOT")), "hey help");
        assert_eq!(strip_mention("<@UOTHER> hi", None), "hi");
        assert_eq!(
            strip_mention("ask <@U1> about it", None),
            "ask <@U1> about it"
        );
    }

    #[test]
    fn the_manifest_names_scopes_events_and_urls() {
        let m = manifest("https://koji.example/", false);
        assert_eq!(
            m["settings"]["event_subscriptions"]["request_url"],
            "https://koji.example/slack/events"
        );
        assert_eq!(m["features"]["slash_commands"][0]["command"], "/koji");
        let scopes = m["oauth_config"]["scopes"]["bot"].as_array().unwrap();
        assert!(scopes.iter().any(|s| s == "users:read.email"));
        assert_eq!(m["settings"]["socket_mode_enabled"], false);
        let m = manifest("https://koji.example/", true);
        assert_eq!(m["settings"]["socket_mode_enabled"], true);
    }
}
