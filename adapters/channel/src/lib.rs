//! Channel-neutral types shared by Koji's core and its channel adapters.
//!
//! An adapter (Slack, Teams, Discord, portal, console) turns a platform payload into an
//! [`Inbound`], hands it to a [`Conversation`] (the core implements it), and renders the
//! [`Reply`]s it gets back in the platform's own format. Adapters depend on this crate and
//! never on the core's internals; the core never names a platform crate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The channels Koji speaks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Slack,
    Teams,
    Discord,
    Portal,
    Console,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Slack,
        Channel::Teams,
        Channel::Discord,
        Channel::Portal,
        Channel::Console,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Teams => "teams",
            Channel::Discord => "discord",
            Channel::Portal => "portal",
            Channel::Console => "console",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel `{0}` (expected slack, teams, discord, portal or console)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownChannel(s.to_string()))
    }
}

/// How a channel identity was authenticated (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Slack,
    Teams,
    Discord,
    Oauth,
    EmailCode,
    PortalEmail,
    Console,
    Anonymous,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Slack => "slack",
            AuthMethod::Teams => "teams",
            AuthMethod::Discord => "discord",
            AuthMethod::Oauth => "oauth",
            AuthMethod::EmailCode => "email_code",
            AuthMethod::PortalEmail => "portal_email",
            AuthMethod::Console => "console",
            AuthMethod::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        [
            AuthMethod::Slack,
            AuthMethod::Teams,
            AuthMethod::Discord,
            AuthMethod::Oauth,
            AuthMethod::EmailCode,
            AuthMethod::PortalEmail,
            AuthMethod::Console,
            AuthMethod::Anonymous,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is speaking, as the channel knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speaker {
    /// The channel's own user id (`U0123`, `29:…`, a Discord snowflake, an email for the console).
    pub external_id: String,
    pub display_name: Option<String>,
    /// An email the platform vouches for (Slack `users.info`, Teams UPN, `koji chat --as`).
    pub verified_email: Option<String>,
    /// How the channel vouches for this speaker; `Anonymous` when it does not.
    pub auth_method: AuthMethod,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
}

/// Where the message came from, so the core can find the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantHint {
    /// An explicit tenant id (console `--tenant`, a portal's configured tenant).
    Id(String),
    SlackTeam(String),
    TeamsTenant(String),
    DiscordGuild(String),
    Portal(String),
    /// The only tenant, or the first configured one.
    Default,
}

/// One message from a person to Koji.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: Channel,
    pub tenant: TenantHint,
    pub speaker: Speaker,
    /// The platform's id for this delivery (Slack `event_id`, Teams activity id, Discord
    /// interaction id); a second message with the same id is recorded and answered once.
    pub platform_message_id: Option<String>,
    pub text: String,
    /// Client IP address where the channel gives one (portal).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Inbound {
    /// A plain text message from the operator's terminal.
    pub fn console(tenant: TenantHint, speaker: Speaker, text: impl Into<String>) -> Inbound {
        Inbound {
            channel: Channel::Console,
            tenant,
            speaker,
            platform_message_id: None,
            text: text.into(),
            ip: None,
            user_agent: None,
        }
    }
}

/// A table the channel renders natively (Block Kit, Adaptive Card, embed, plain text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub title: String,
    /// Totals and other one-line facts shown above the rows.
    pub summary: Vec<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// How many rows exist beyond the ones shown.
    pub more: u64,
}

/// What a reply carries besides its text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attachment {
    /// A report summary.
    Table(Table),
    /// A machine-readable document (csv or json), sent as a file or code block.
    Document {
        filename: String,
        media_type: String,
        content: String,
    },
    /// A sign-in offer: a link the person opens.
    SignIn { url: String, label: String },
    /// Buttons the person may press; `value` comes back as the next message.
    Buttons { buttons: Vec<Button> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Button {
    pub label: String,
    pub value: String,
}

/// One reply from Koji. `text` is always a complete plain-text rendering; channels that can
/// do better render `attachments` natively.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Only the asker should see it (slash command answers, refusals).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            attachments: Vec::new(),
            private: false,
        }
    }
}

/// What the core did with an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Recorded; deliver these replies (already recorded too).
    Replies(Vec<Reply>),
    /// The platform message id was seen before: it was recorded and answered then.
    Duplicate,
}

/// Why the core could not take a message. Adapters map it to their platform's error shape.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The message names a tenant, team, guild or portal that no tenant binds.
    #[error("no tenant is configured for {0}")]
    UnknownTenant(String),
    /// The store is down or refused the write; nothing was recorded. Safe to retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("message rejected: {0}")]
    Rejected(String),
}

/// The core's conversation entry point, as adapters see it.
#[async_trait::async_trait]
pub trait Conversation: Send + Sync {
    async fn handle(&self, message: Inbound) -> Result<Outcome, ConversationError>;
}

/// The browser's side of a portal session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What the portal adapter needs to know about a configured portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalInfo {
    pub id: String,
    pub title: String,
    pub anonymous_access: bool,
}

/// A new portal session: its token (valid for this session only) and Koji's first words.
#[derive(Debug, Clone)]
pub struct PortalStart {
    pub token: String,
    pub messages: Vec<Reply>,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("no such portal")]
    UnknownPortal,
    /// Missing, forged, ended or expired token.
    #[error("the session token is not valid (start a new session)")]
    Unauthorized,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Rejected(String),
}

/// The core's portal sessions, as the portal adapter sees them.
#[async_trait::async_trait]
pub trait PortalPort: Send + Sync {
    fn portal(&self, id: &str) -> Option<PortalInfo>;
    async fn start(&self, portal: &str, client: Client) -> Result<PortalStart, PortalError>;
    async fn say(
        &self,
        portal: &str,
        token: &str,
        text: String,
        client: Client,
    ) -> Result<Vec<Reply>, PortalError>;
    async fn end(&self, portal: &str, token: &str) -> Result<(), PortalError>;
}
