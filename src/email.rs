//! Outbound email over SMTP (`[email] smtp_url`, `from`): the one-time sign-in codes.

use crate::config::EmailConfig;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// None when no SMTP server is configured.
    pub fn new(cfg: Option<&EmailConfig>) -> Result<Option<Mailer>, String> {
        let Some(cfg) = cfg else { return Ok(None) };
        let Some(url) = cfg.smtp_url.as_deref() else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("email.smtp_url: {e}"))?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let from: Mailbox = cfg
            .from
            .as_deref()
            .unwrap_or("Koji <koji@localhost>")
            .parse()
            .map_err(|e| format!("email.from: {e}"))?;
        Ok(Some(Mailer { transport, from }))
    }

    pub async fn send_code(&self, to: &str, code: &str, tenant_name: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your {tenant_name} help desk sign-in code"))
            .body(format!(
                "Your sign-in code is {code}\n\nType it in the chat within 10 minutes. If you did not ask for it, ignore this email.\n"
            ))
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
