//! The web portal channel: the chat widget page (`GET /portal/{portal}`) and its JSON API
//! (SPEC §6). It translates HTTP to the core's [`PortalPort`] and back, and nothing more:
//! tokens, sessions and the email-first rule live in the core.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use koji_channel::{Client, PortalError, PortalPort, Reply};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest message a visitor may send, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

#[derive(Clone)]
pub struct PortalSettings {
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Requests a minute from one client address (0: no limit).
    pub per_ip_per_minute: u32,
    /// Messages a minute on one session token (0: no limit).
    pub per_token_per_minute: u32,
}

#[derive(Clone)]
struct AppState {
    port: Arc<dyn PortalPort>,
    settings: PortalSettings,
    limits: Arc<RateLimiter>,
}

/// Fixed one-minute windows per key, in this process's memory: each replica limits what
/// reaches it. Written by hand: two counters need no rate-limiting framework.
#[derive(Default)]
struct RateLimiter {
    windows: std::sync::Mutex<std::collections::HashMap<String, (u64, u32)>>,
}

impl RateLimiter {
    /// `Err(seconds to wait)` when `key` has used up `limit` this minute.
    fn check(&self, key: String, limit: u32) -> Result<(), u64> {
        if limit == 0 {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let window = now / 60;
        let mut w = self.windows.lock().expect("rate limiter");
        if w.len() > 100_000 {
            w.retain(|_, (win, _)| *win == window);
        }
        let entry = w.entry(key).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            return Err(60 - now % 60);
        }
        entry.1 += 1;
        Ok(())
    }
}

fn too_many(retry_after: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests; slow down",
    );
    if let Ok(v) = header::HeaderValue::from_str(&retry_after.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn ip_key(c: &Client) -> String {
    format!("ip:{}", c.ip.as_deref().unwrap_or(""))
}

pub fn router(port: Arc<dyn PortalPort>, settings: PortalSettings) -> Router {
    Router::new()
        .route("/portal/{portal}", get(page))
        .route("/portal/{portal}/session", post(start).delete(end))
        .route("/portal/{portal}/messages", post(message))
        .with_state(AppState {
            port,
            settings,
            limits: Arc::new(RateLimiter::default()),
        })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn from_portal_error(e: PortalError) -> Response {
    match e {
        PortalError::UnknownPortal => error(StatusCode::NOT_FOUND, "no such portal"),
        PortalError::Unauthorized => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "the session token is not valid; start a new session",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
        PortalError::Rejected(m) => error(StatusCode::BAD_REQUEST, &m),
        PortalError::Unavailable(_) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable; try again",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            r
        }
    }
}

fn client(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Client {
    let forwarded = state
        .settings
        .trust_forwarded_for
        .then(|| headers.get("x-forwarded-for"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        // The trusted proxy appends the address it saw: the rightmost entry. Entries to its
        // left were written by the client and prove nothing.
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    Client {
        ip: Some(forwarded.unwrap_or_else(|| peer.ip().to_string())),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn replies_json(replies: &[Reply]) -> serde_json::Value {
    serde_json::to_value(replies).unwrap_or_else(|_| json!([]))
}

async fn start(
    State(state): State<AppState>,
    Path(portal): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = client(&state, &headers, peer);
    if let Err(wait) = state
        .limits
        .check(ip_key(&client), state.settings.per_ip_per_minute)
    {
        return too_many(wait);
    }
    match state.port.start(&portal, client).await {
        Ok(s) => {
            Json(json!({ "token": s.token, "messages": replies_json(&s.messages) })).into_response()
        }
        Err(e) => from_portal_error(e),
    }
}

#[derive(Deserialize)]
struct MessageBody {
    text: String,
}

async fn message(
    State(state): State<AppState>,
    Path(portal): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.port.portal(&portal).is_none() {
        return error(StatusCode::NOT_FOUND, "no such portal");
    }
    let Some(token) = bearer(&headers) else {
        return from_portal_error(PortalError::Unauthorized);
    };
    let client = client(&state, &headers, peer);
    if let Err(wait) = state
        .limits
        .check(ip_key(&client), state.settings.per_ip_per_minute)
    {
        return too_many(wait);
    }
    if let Err(wait) = state.limits.check(
        format!("token:{token}"),
        state.settings.per_token_per_minute,
    ) {
        return too_many(wait);
    }
    let body: MessageBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be JSON like {\"text\": \"…\"}",
            );
        }
    };
    let text = body.text.trim().to_string();
    if text.is_empty() {
        return error(StatusCode::BAD_REQUEST, "text is empty");
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "text is too long");
    }
    match state.port.say(&portal, token, text, client).await {
        Ok(replies) => Json(json!({ "replies": replies_json(&replies) })).into_response(),
        Err(e) => from_portal_error(e),
    }
}

async fn end(
    State(state): State<AppState>,
    Path(portal): Path<String>,
    headers: HeaderMap,
) -> Response {
    if state.port.portal(&portal).is_none() {
        return error(StatusCode::NOT_FOUND, "no such portal");
    }
    let Some(token) = bearer(&headers) else {
        return from_portal_error(PortalError::Unauthorized);
    };
    match state.port.end(&portal, token).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => from_portal_error(e),
    }
}

async fn page(State(state): State<AppState>, Path(portal): Path<String>) -> Response {
    let Some(info) = state.port.portal(&portal) else {
        return error(StatusCode::NOT_FOUND, "no such portal");
    };
    let title = html_escape(&info.title);
    let id = serde_json::to_string(&info.id).unwrap_or_else(|_| "\"\"".into());
    Html(
        WIDGET
            .replace("{{title}}", &title)
            .replace("{{portal}}", &id),
    )
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const WIDGET: &str = include_str!("widget.html");
