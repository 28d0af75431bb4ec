//! The Discord channel over HTTP interactions (`POST /discord/interactions`): PING, the
//! `/koji` application command (one subcommand per command word) and button presses.
//!
//! It translates and nothing more: interaction → [`Inbound`] on the way in, [`Reply`] →
//! content, embeds and components on the way out. Who someone is, what they may do and
//! what is recorded is the core's business, reached through [`DiscordPort`].
//!
//! Invariant: every request's Ed25519 signature is checked against its raw body before
//! anything else happens; a bad or missing one gets 401 and changes nothing.
//! Invariant: the interaction id is the platform message id: a redelivered interaction is
//! recorded once and answered once (the second time with a short ephemeral note).
//! Invariant: Discord wants a first response within 3 s; when the core takes longer than
//! [`DiscordSettings::defer_after`], Koji answers type 5 (deferred) and edits the original
//! response once the core has committed the exchange.
//!
//! Messages typed to the bot in DMs arrive over the Gateway (a websocket), not here: Koji
//! does not connect to the Gateway.

pub mod api;
pub mod command;
pub mod render;
pub mod signing;

pub use ed25519_dalek;

use api::Api;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use koji_channel::{
    AuthMethod, Channel, ConversationError, Inbound, Outcome, Reply, Speaker, TenantHint,
};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Interaction types.
pub const PING: u64 = 1;
pub const APPLICATION_COMMAND: u64 = 2;
pub const MESSAGE_COMPONENT: u64 = 3;
pub const AUTOCOMPLETE: u64 = 4;
pub const MODAL_SUBMIT: u64 = 5;

/// What the core knows about a guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildState {
    pub tenant_id: String,
    /// The guild owner was already made `admin` (by this replica or another).
    pub owner_recorded: bool,
}

/// The guild's owner, as Discord's `GET /guilds/{id}` told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildOwner {
    pub user_id: String,
    pub guild_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The core, as the Discord adapter sees it.
#[async_trait::async_trait]
pub trait DiscordPort: koji_channel::Conversation {
    /// The tenant serving this guild: the configured one that binds it, else one created
    /// for it now (`discord-<guild>`), known to every replica through the database.
    async fn guild(&self, guild_id: &str) -> Result<GuildState, PortError>;
    /// Makes the guild's owner `admin` of its tenant (audited) and remembers it was done.
    async fn guild_owner(&self, guild_id: &str, owner: GuildOwner) -> Result<(), PortError>;
}

#[derive(Clone)]
pub struct DiscordSettings {
    pub verifier: signing::Verifier,
    pub application_id: Option<String>,
    /// For `GET /guilds/{id}` (the owner); without it no owner is made admin.
    pub bot_token: Option<String>,
    /// REST base (`discord.api_url`), default [`api::DEFAULT_API_URL`].
    pub api_url: Option<String>,
    pub max_body_bytes: usize,
    /// Now, in unix seconds (the app's clock, so tests can hold time still).
    pub now: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// How long to wait for the core before answering "deferred" (type 5); zero defers
    /// every command.
    pub defer_after: Duration,
}

#[derive(Clone)]
struct AppState {
    port: Arc<dyn DiscordPort>,
    settings: Arc<DiscordSettings>,
    api: Api,
    /// Guilds whose owner this process knows to be handled.
    guilds_done: Arc<Mutex<HashSet<String>>>,
}

pub fn router(port: Arc<dyn DiscordPort>, settings: DiscordSettings) -> Router {
    let limit = settings.max_body_bytes;
    let api = Api::new(settings.api_url.as_deref());
    Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(AppState {
            port,
            settings: Arc::new(settings),
            api,
            guilds_done: Arc::new(Mutex::new(HashSet::new())),
        })
        .layer(DefaultBodyLimit::max(limit))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn respond(kind: u64, data: Value) -> Response {
    axum::Json(json!({"type": kind, "data": data})).into_response()
}

/// A short message only the invoking user sees.
fn note(text: &str) -> Response {
    respond(4, render::message(&[Reply::text(text)], true))
}

fn apology(e: &ConversationError) -> &'static str {
    match e {
        ConversationError::UnknownTenant(_) => {
            "Koji is not set up for this server yet. Ask your admin to configure it."
        }
        ConversationError::Unavailable(_) => {
            "Sorry, I can't answer right now (temporarily unavailable). Please try again in a moment."
        }
        ConversationError::Rejected(_) => "Sorry, I can't take that.",
    }
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// The invoking user: `member.user` in a guild, `user` in a DM.
fn speaker_of(v: &Value) -> Option<Speaker> {
    let user = if v["member"]["user"].is_object() {
        &v["member"]["user"]
    } else {
        &v["user"]
    };
    let id = str_of(&user["id"])?;
    let name = str_of(&v["member"]["nick"])
        .or_else(|| str_of(&user["global_name"]))
        .or_else(|| str_of(&user["username"]));
    Some(Speaker {
        external_id: id,
        display_name: name,
        // Discord never shares an email with an interaction: the person is recognised
        // only through a linked identity, or signs in.
        verified_email: None,
        auth_method: AuthMethod::Discord,
        locale: str_of(&v["locale"]).or_else(|| str_of(&user["locale"])),
        time_zone: None,
    })
}

impl AppState {
    /// Makes sure the guild has a tenant, and (once) that its owner is admin there.
    async fn ensure_guild(&self, guild: &str) -> Result<(), PortError> {
        if self.guilds_done.lock().expect("guilds").contains(guild) {
            return Ok(());
        }
        let state = self.port.guild(guild).await?;
        let done = if state.owner_recorded {
            true
        } else if let Some(token) = &self.settings.bot_token {
            match self.api.guild(token, guild).await {
                Ok(g) => {
                    self.port
                        .guild_owner(
                            guild,
                            GuildOwner {
                                user_id: g.owner_id,
                                guild_name: g.name,
                            },
                        )
                        .await?;
                    true
                }
                Err(e) => {
                    // Asked again on the next interaction; the person is answered anyway.
                    tracing::warn!(guild, error = %e, "discord guild owner not looked up");
                    false
                }
            }
        } else {
            tracing::warn!(
                guild,
                tenant = %state.tenant_id,
                "discord.bot_token is not set: the guild owner cannot be made admin"
            );
            true
        };
        if done {
            self.guilds_done
                .lock()
                .expect("guilds")
                .insert(guild.to_string());
        }
        Ok(())
    }
}

async fn interactions(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = s.settings.verifier.verify(
        h("x-signature-timestamp"),
        h("x-signature-ed25519"),
        &body,
        (s.settings.now)(),
    ) {
        tracing::warn!(reason = %e, "discord request refused");
        return plain(StatusCode::UNAUTHORIZED, "invalid request signature\n");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not JSON\n");
    };
    let Some(kind) = v["type"].as_u64() else {
        return plain(StatusCode::BAD_REQUEST, "no interaction type\n");
    };
    match kind {
        PING => axum::Json(json!({"type": 1})).into_response(),
        APPLICATION_COMMAND | MESSAGE_COMPONENT => on_interaction(&s, &v, kind).await,
        // No option of /koji autocompletes: offer nothing.
        AUTOCOMPLETE => axum::Json(json!({"type": 8, "data": {"choices": []}})).into_response(),
        MODAL_SUBMIT => note("Koji does not use forms here."),
        _ => plain(StatusCode::BAD_REQUEST, "unknown interaction type\n"),
    }
}

async fn on_interaction(s: &AppState, v: &Value, kind: u64) -> Response {
    let (Some(id), Some(token), Some(speaker)) =
        (str_of(&v["id"]), str_of(&v["token"]), speaker_of(v))
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "interaction without id, token or user\n",
        );
    };
    let text = if kind == APPLICATION_COMMAND {
        match command::command_text(&v["data"]) {
            Ok(t) => t,
            Err(e) => return note(&format!("{e}. Try /koji help.")),
        }
    } else {
        match str_of(&v["data"]["custom_id"]) {
            Some(t) => t,
            None => return plain(StatusCode::BAD_REQUEST, "component without custom_id\n"),
        }
    };
    let tenant = match str_of(&v["guild_id"]) {
        Some(guild) => {
            if let Err(e) = s.ensure_guild(&guild).await {
                tracing::warn!(error = %e, "discord guild not resolved");
                return note(apology(&ConversationError::Unavailable(e.to_string())));
            }
            TenantHint::DiscordGuild(guild)
        }
        // A DM with the application: the default tenant.
        None => TenantHint::Default,
    };
    let msg = Inbound {
        channel: Channel::Discord,
        tenant,
        speaker,
        platform_message_id: Some(id),
        text,
        ip: None,
        user_agent: None,
    };
    let port = s.port.clone();
    let mut task = tokio::spawn(async move { port.handle(msg).await });
    // Slash commands answer privately; a button's answer is private when the core says so.
    let command = kind == APPLICATION_COMMAND;
    // The message, and the files that follow it (documents too long to show whole).
    let answer = move |r: Result<Result<Outcome, ConversationError>, tokio::task::JoinError>| {
        let only = |text: &str| {
            (
                render::message(&[Reply::text(text)], true),
                Vec::new(),
                true,
            )
        };
        match r {
            Ok(Ok(Outcome::Replies(replies))) => {
                let ephemeral = command || replies.iter().any(|r| r.private);
                let files = render::files(&replies);
                (render::message(&replies, ephemeral), files, ephemeral)
            }
            Ok(Ok(Outcome::Duplicate)) => only("Already answered."),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "discord interaction not handled");
                only(apology(&e))
            }
            Err(e) => {
                tracing::error!(error = %e, "discord interaction task failed");
                only("Sorry, something went wrong.")
            }
        }
    };
    let app = s.settings.application_id.clone();
    let deadline = s.settings.defer_after;
    if !deadline.is_zero()
        && let Ok(r) = tokio::time::timeout(deadline, &mut task).await
    {
        let (data, files, ephemeral) = answer(r);
        if !files.is_empty() {
            let api = s.api.clone();
            tokio::spawn(async move {
                // After the answer: a follow-up cannot come before the first response.
                tokio::time::sleep(Duration::from_millis(300)).await;
                send_files(&api, app, &token, &files, ephemeral).await;
            });
        }
        return respond(4, data);
    }
    // Discord gives up after 3 s: defer now, edit the original response when ready.
    let Some(app) = app else {
        tracing::error!("discord.application_id is not set: a deferred answer cannot be delivered");
        return respond(4, answer(task.await).0);
    };
    let api = s.api.clone();
    tokio::spawn(async move {
        let (data, files, ephemeral) = answer(task.await);
        if let Err(e) = api.edit_original(&app, &token, &data).await {
            tracing::error!(error = %e, "discord deferred answer not delivered");
        }
        send_files(&api, Some(app), &token, &files, ephemeral).await;
    });
    // Deferred ("Koji is thinking…"), privately: whether a button's answer is private is
    // not known yet, so it is taken to be.
    respond(5, json!({"flags": render::EPHEMERAL}))
}

/// Sends each file as a follow-up message of the interaction.
async fn send_files(
    api: &Api,
    app: Option<String>,
    token: &str,
    files: &[render::File],
    ephemeral: bool,
) {
    let Some(app) = app else {
        if !files.is_empty() {
            tracing::warn!("discord.application_id is not set: files are not sent");
        }
        return;
    };
    for f in files {
        if let Err(e) = api.follow_up_file(&app, token, f, ephemeral).await {
            tracing::error!(error = %e, "discord file not delivered");
        }
    }
}
