//! The one HTTP listener: liveness, metrics, and (as their adapters land) the channel
//! endpoints. Handlers are thin: they translate HTTP and call the core.

use crate::conversation::Core;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.server.max_body_bytes;
    let portal = koji_portal::router(
        core.clone(),
        koji_portal::PortalSettings {
            trust_forwarded_for: core.config.server.trust_forwarded_for,
            per_ip_per_minute: core.config.server.rate_limit_per_ip,
            per_token_per_minute: core.config.server.rate_limit_per_session,
        },
    );
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/auth/start", get(auth_start))
        .route("/auth/callback", get(auth_callback))
        .route("/kb/{slug}", get(kb_article))
        .with_state(core.clone())
        .merge(portal);
    let router = match slack_settings(&core) {
        Some(settings) if !settings.signing_secret.is_empty() => {
            router.merge(koji_slack::router(core.clone(), settings))
        }
        _ => router,
    };
    let router = match teams_settings(&core) {
        Some(settings) => match koji_teams::router(core.clone(), settings) {
            Ok(teams) => router.merge(teams),
            Err(e) => {
                tracing::error!(error = %e, "Teams channel not started");
                router
            }
        },
        None => router,
    };
    let router = match discord_settings(&core) {
        Some(settings) => router.merge(koji_discord::router(core.clone(), settings)),
        None => router,
    };
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
}

/// Slack over Socket Mode, when `[slack] app_token` is set: started with the server,
/// stopped with it.
pub fn slack_socket_mode(core: &Arc<Core>) -> Option<koji_slack::socket::SocketMode> {
    let token = core
        .config
        .slack
        .as_ref()?
        .app_token
        .as_ref()
        .filter(|t| !t.0.is_empty())?
        .0
        .clone();
    let settings = slack_settings(core)?;
    tracing::info!("slack socket mode on");
    Some(koji_slack::socket::SocketMode::start(
        core.clone(),
        settings,
        token,
    ))
}

/// The Slack channel's settings, when `[slack]` has a signing secret (the HTTP endpoints)
/// or an app token (Socket Mode); else Slack is off.
fn slack_settings(core: &Arc<Core>) -> Option<koji_slack::SlackSettings> {
    let slack = core.config.slack.as_ref()?;
    let secret = slack
        .signing_secret
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    let socket = slack.app_token.as_ref().is_some_and(|t| !t.0.is_empty());
    if secret.is_empty() && !socket {
        return None;
    }
    let clock = core.store.clock();
    Some(koji_slack::SlackSettings {
        signing_secret: secret,
        api_url: slack.api_url.clone(),
        client_id: slack.client_id.clone(),
        client_secret: slack.client_secret.as_ref().map(|s| s.0.clone()),
        authorize_url: slack
            .authorize_url
            .clone()
            .unwrap_or_else(|| koji_slack::DEFAULT_AUTHORIZE_URL.to_string()),
        public_url: core.config.server.public_url.clone(),
        max_body_bytes: core.config.server.max_body_bytes,
        now: Arc::new(move || clock.now_micros().div_euclid(1_000_000)),
        user_cache_ttl: std::time::Duration::from_secs(600),
        command_deadline: std::time::Duration::from_millis(
            slack.command_deadline_ms.unwrap_or(2500).min(2900),
        ),
    })
}

/// Teams is on when `[teams]` names the bot's app id and password.
fn teams_settings(core: &Arc<Core>) -> Option<koji_teams::TeamsSettings> {
    let teams = core.config.teams.as_ref()?;
    let app_id = teams.app_id.clone().filter(|s| !s.is_empty())?;
    let password = teams.app_password.as_ref().filter(|s| !s.0.is_empty())?;
    Some(koji_teams::TeamsSettings {
        app_id,
        app_password: password.0.clone(),
        openid_metadata_url: teams
            .openid_metadata_url
            .clone()
            .unwrap_or_else(|| koji_teams::auth::DEFAULT_OPENID_METADATA_URL.to_string()),
        token_url: teams
            .token_url
            .clone()
            .unwrap_or_else(|| koji_teams::connector::DEFAULT_TOKEN_URL.to_string()),
        max_body_bytes: core.config.server.max_body_bytes,
    })
}

/// The Discord channel's settings, when `[discord]` has a public key (else Discord is off).
fn discord_settings(core: &Arc<Core>) -> Option<koji_discord::DiscordSettings> {
    let discord = core.config.discord.as_ref()?;
    let key = discord
        .public_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())?;
    // Checked when the configuration was loaded.
    let verifier = koji_discord::signing::Verifier::new(key).ok()?;
    let clock = core.store.clock();
    Some(koji_discord::DiscordSettings {
        verifier,
        application_id: discord.application_id.clone().filter(|a| !a.is_empty()),
        bot_token: discord
            .bot_token
            .as_ref()
            .map(|t| t.0.clone())
            .filter(|t| !t.is_empty()),
        api_url: discord.api_url.clone(),
        max_body_bytes: core.config.server.max_body_bytes,
        now: Arc::new(move || clock.now_micros().div_euclid(1_000_000)),
        defer_after: std::time::Duration::from_millis(discord.defer_after_ms.unwrap_or(2500)),
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(core): State<Arc<Core>>) -> impl IntoResponse {
    let active = core
        .store
        .count_active_sessions(core.idle_timeout())
        .await
        .ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        core.metrics.render(active),
    )
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

#[derive(serde::Deserialize)]
struct AuthParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

fn html_page(p: crate::oauth::Page) -> axum::response::Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title></head><body style=\"font:16px system-ui;max-width:32rem;margin:3rem auto;padding:0 1rem\"><h1>{t}</h1><p>{x}</p></body></html>",
        t = esc(p.title),
        x = esc(&p.text)
    );
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::response::Html(body)).into_response()
}

async fn auth_start(
    State(core): State<Arc<Core>>,
    axum::extract::Query(q): axum::extract::Query<AuthParams>,
) -> axum::response::Response {
    match core.oauth_start(q.state.as_deref().unwrap_or("")).await {
        Ok(url) => axum::response::Redirect::to(&url).into_response(),
        Err(p) => html_page(p),
    }
}

async fn auth_callback(
    State(core): State<Arc<Core>>,
    axum::extract::Query(q): axum::extract::Query<AuthParams>,
) -> axum::response::Response {
    html_page(
        core.oauth_callback(q.state.as_deref(), q.code.as_deref(), q.error.as_deref())
            .await,
    )
}

/// `GET /kb/{slug}`: a knowledge-base article of the local help desk, as a readable page
/// (the Markdown shown as written, escaped).
async fn kb_article(
    State(core): State<Arc<Core>>,
    axum::extract::Path(slug): axum::extract::Path<String>,
) -> axum::response::Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    match core.store.kb_article(&slug).await {
        Ok(Some((title, body))) => axum::response::Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title></head><body style=\"font:16px system-ui;max-width:40rem;margin:2rem auto;padding:0 1rem\"><h1>{t}</h1><div style=\"white-space:pre-wrap\">{b}</div></body></html>",
            t = esc(&title),
            b = esc(&body)
        ))
        .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such article\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "article not read");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}
