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
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(core)
        .merge(portal)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
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
