//! Socket Mode: the same events, `/koji` commands and buttons as the HTTP endpoints, but
//! over a WebSocket that Koji opens (`apps.connections.open` with the app-level token
//! `xapp-…`), for installs that cannot receive HTTP from Slack.
//!
//! Frames: `hello` (connected), `disconnect` (Slack wants a new connection: reconnect at
//! once with a new URL), and envelopes `{"envelope_id","type","payload",
//! "accepts_response_payload"}` of type `events_api`, `slash_commands` or `interactive`.
//! Each envelope's payload goes through the same handling code as its HTTP twin (no
//! signature: the socket itself is authenticated by the app token).
//!
//! Invariant: an envelope is acknowledged (`{"envelope_id":…}`) only when the HTTP twin
//! would have answered 2xx — an event only after the core has committed it — so that storage
//! trouble leaves it unacknowledged and Slack redelivers it; the core answers a redelivered
//! `event_id` once.
//! Invariant: connection errors never end the loop: it reconnects with backoff (1 s doubling
//! to 30 s) until [`SocketMode::stop`].

use crate::{AppState, SlackPort, SlackSettings, on_action, on_event, slash};
use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long opening the WebSocket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for envelopes in hand to be handled and acknowledged.
const DRAIN: Duration = Duration::from_secs(5);

/// The running Socket Mode client.
pub struct SocketMode {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SocketMode {
    /// Connects (and keeps reconnecting) in the background.
    pub fn start(port: Arc<dyn SlackPort>, settings: SlackSettings, app_token: String) -> Self {
        let state = AppState::new(port, settings);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(state, app_token, stopped));
        SocketMode { stop, task }
    }

    /// Stops reading, acknowledges what is in hand (a few seconds at most), closes.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(DRAIN + Duration::from_secs(2), self.task).await;
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

/// How a connection ended without an error.
enum End {
    Stopped,
    /// Slack sent `disconnect`: open a new connection now.
    Reconnect,
}

async fn run(s: AppState, app_token: String, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        match connection(&s, &app_token, &mut stop, &mut failures).await {
            Ok(End::Stopped) => return,
            Ok(End::Reconnect) => {
                tracing::info!("slack socket mode: reconnecting as Slack asked");
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(failures);
                tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), "slack socket mode connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// One WebSocket connection, from `apps.connections.open` to its end.
async fn connection(
    s: &AppState,
    app_token: &str,
    stop: &mut watch::Receiver<bool>,
    failures: &mut u32,
) -> Result<End, String> {
    let connect = async {
        let url = s
            .api
            .connections_open(app_token)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(format!("cannot connect the socket: {e}")),
            Err(_) => Err("connecting the socket timed out".to_string()),
        }
    };
    let ws = tokio::select! {
        ws = connect => ws?,
        _ = stop.changed() => return Ok(End::Stopped),
    };
    let (mut sink, mut frames) = ws.split();
    let (ack_tx, mut acks) = mpsc::unbounded_channel::<Value>();
    let mut tasks = JoinSet::new();
    let ended: Result<End, String> = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(End::Stopped),
            Some(ack) = acks.recv() => {
                if let Err(e) = sink.send(Message::Text(ack.to_string().into())).await {
                    break Err(format!("cannot acknowledge: {e}"));
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            frame = frames.next() => match frame {
                None => break Err("the socket was closed".into()),
                Some(Err(e)) => break Err(format!("socket error: {e}")),
                Some(Ok(Message::Close(c))) => {
                    break Err(format!("Slack closed the socket: {c:?}"));
                }
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        tracing::warn!("slack socket mode: a frame that is not JSON; ignored");
                        continue;
                    };
                    match v["type"].as_str() {
                        Some("hello") => {
                            *failures = 0;
                            tracing::info!("slack socket mode connected");
                        }
                        Some("disconnect") => {
                            tracing::info!(reason = v["reason"].as_str().unwrap_or(""), "slack socket mode: disconnect");
                            break Ok(End::Reconnect);
                        }
                        _ if v["envelope_id"].is_string() => {
                            let (s, tx) = (s.clone(), ack_tx.clone());
                            tasks.spawn(async move {
                                if let Some(ack) = envelope(&s, &v).await {
                                    let _ = tx.send(ack);
                                }
                            });
                        }
                        other => tracing::debug!(kind = ?other, "slack socket mode: frame ignored"),
                    }
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
            },
        }
    };
    if ended.is_ok() {
        // Envelopes in hand are finished and acknowledged on this connection.
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !tasks.is_empty() {
            if tokio::time::timeout_at(deadline, tasks.join_next())
                .await
                .is_err()
            {
                break;
            }
        }
        while let Ok(ack) = acks.try_recv() {
            let _ = sink.send(Message::Text(ack.to_string().into())).await;
        }
        let _ = sink.close().await;
    }
    // Whatever is still running finishes on its own (never cut off mid-commit); an
    // envelope it cannot acknowledge any more is redelivered by Slack and answered once.
    tasks.detach_all();
    ended
}

/// Handles one envelope; the acknowledgement to send, or None to leave it to redelivery.
async fn envelope(s: &AppState, v: &Value) -> Option<Value> {
    let id = v["envelope_id"].as_str()?;
    let ack = json!({ "envelope_id": id });
    let payload = &v["payload"];
    let kind = v["type"].as_str().unwrap_or("");
    let status = match kind {
        "events_api" => match payload["type"].as_str() {
            Some("event_callback") => on_event(s, payload).await.status(),
            _ => StatusCode::OK,
        },
        "interactive" => on_action(s, payload).await.status(),
        "slash_commands" => {
            let form: HashMap<String, String> = payload
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let answer = match slash(s, &form).await {
                Ok(answer) => answer,
                Err(r) => {
                    tracing::warn!(status = %r.status(), "slack socket mode: bad slash command");
                    return Some(ack);
                }
            };
            if v["accepts_response_payload"] == false {
                // Not expected for commands; the answer goes through response_url instead.
                if let Some(url) = form.get("response_url")
                    && let Err(e) = s.api.respond(url, &answer).await
                {
                    tracing::error!(error = %e, "slash command answer not delivered");
                }
                return Some(ack);
            }
            return Some(json!({ "envelope_id": id, "payload": answer }));
        }
        other => {
            tracing::debug!(kind = other, "slack socket mode: envelope type ignored");
            StatusCode::OK
        }
    };
    if status.is_server_error() {
        tracing::warn!(%status, kind, "slack envelope not acknowledged; Slack will redeliver it");
        return None;
    }
    Some(ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
