//! The console channel: `koji chat`, one message a line. Lines are submitted in order and
//! their replies printed in order, each only after its exchange is committed; up to
//! [`WINDOW`] lines may be waiting for the same group commit, which is what makes a piped
//! script fast without giving up durability.

use crate::conversation::{Core, Pending};
use crate::domain::{AuthMethod, normalise_email};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use koji_channel::{Inbound, Outcome, Speaker, TenantHint};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

const WINDOW: usize = 512;

/// Who the console speaks as.
pub fn speaker(as_email: Option<&str>) -> Result<Speaker, String> {
    match as_email {
        Some(raw) => {
            let email =
                normalise_email(raw).ok_or_else(|| format!("`{raw}` is not an email address"))?;
            Ok(Speaker {
                external_id: email.clone(),
                display_name: None,
                verified_email: Some(email),
                auth_method: AuthMethod::Console,
                locale: None,
                time_zone: None,
            })
        }
        None => Ok(Speaker {
            external_id: std::env::var("USER").unwrap_or_else(|_| "operator".into()),
            display_name: None,
            verified_email: None,
            auth_method: AuthMethod::Anonymous,
            locale: None,
            time_zone: None,
        }),
    }
}

#[derive(Debug, Default)]
pub struct ChatSummary {
    pub lines: u64,
    pub failed: u64,
}

/// Reads lines until end of input, printing each line's replies.
pub async fn run<R, W>(
    core: Arc<Core>,
    tenant: TenantHint,
    speaker: Speaker,
    input: R,
    mut out: W,
    interactive: bool,
) -> std::io::Result<ChatSummary>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    let mut summary = ChatSummary::default();
    let mut waiting: FuturesOrdered<_> = FuturesOrdered::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    if interactive {
        out.write_all(b"Koji is listening. Type /koji help for commands; Ctrl-D to leave.\n> ")
            .await?;
        out.flush().await?;
    }
    loop {
        // Print whatever is already committed, without waiting.
        while let Some(Some(done)) = futures::FutureExt::now_or_never(waiting.next()) {
            write_outcome(&mut buf, done, &mut summary);
        }
        if !buf.is_empty() && (interactive || waiting.is_empty() || buf.len() > 32 * 1024) {
            out.write_all(&buf).await?;
            buf.clear();
        }
        let line = if waiting.len() >= WINDOW {
            // Too much in flight: wait for the oldest first.
            if let Some(done) = waiting.next().await {
                write_outcome(&mut buf, done, &mut summary);
            }
            continue;
        } else if waiting.is_empty() {
            lines.next_line().await?
        } else {
            tokio::select! {
                biased;
                line = lines.next_line() => line?,
                Some(done) = waiting.next() => {
                    write_outcome(&mut buf, done, &mut summary);
                    continue;
                }
            }
        };
        let Some(line) = line else { break };
        if line.trim().is_empty() {
            if interactive {
                out.write_all(b"> ").await?;
                out.flush().await?;
            }
            continue;
        }
        summary.lines += 1;
        let msg = Inbound::console(tenant.clone(), speaker.clone(), line);
        let pending: Result<Pending, _> = core.submit(msg).await;
        waiting.push_back(async move {
            match pending {
                Ok(p) => p.wait().await,
                Err(e) => Err(e),
            }
        });
        if interactive {
            if let Some(done) = waiting.next().await {
                write_outcome(&mut buf, done, &mut summary);
            }
            buf.extend_from_slice(b"> ");
            out.write_all(&buf).await?;
            out.flush().await?;
            buf.clear();
        }
    }
    while let Some(done) = waiting.next().await {
        write_outcome(&mut buf, done, &mut summary);
    }
    out.write_all(&buf).await?;
    out.flush().await?;
    Ok(summary)
}

fn write_outcome(
    buf: &mut Vec<u8>,
    done: Result<Outcome, koji_channel::ConversationError>,
    summary: &mut ChatSummary,
) {
    match done {
        Ok(Outcome::Replies(replies)) => {
            for r in replies {
                buf.extend_from_slice(r.text.trim_end().as_bytes());
                buf.push(b'\n');
            }
        }
        Ok(Outcome::Duplicate) => {}
        Err(e) => {
            summary.failed += 1;
            buf.extend_from_slice(format!("[not recorded: {e}; please try again]\n").as_bytes());
        }
    }
}
