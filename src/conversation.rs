//! The conversation pipeline, channel-neutral:
//! inbound message → tenant → identity (person or anonymous) → session → intent and entities
//! → duplicate check (platform message id) → route (admin command, small talk, help) →
//! record replies and actions → deliver.
//!
//! Invariant: a reply is handed back only after the exchange (inbound, replies, session
//! update, rollups) is committed. Admin commands and role checks live here, never in an adapter.

use crate::commands::{self, Command, Format};
use crate::config::{Config, TenantConfig};
use crate::domain::{AuthMethod, Channel, Clock, PersonKind, PersonRef, normalise_email};
use crate::metrics::Metrics;
use crate::nlu::{Nlu, Terms, Understanding, command_text};
use crate::reports::{DEFAULT_HISTORY, DEFAULT_SINCE, Report, ReportBody, table_text};
use crate::roles::{Permission, RoleSetup};
use crate::store::{
    BatchWriter, Direction, MessageRow, PersonSeed, SessionStart, StateWrite, Store, StoreError,
    WriteOutcome,
};
use koji_channel::{Attachment, ConversationError, Inbound, Outcome, Reply, TenantHint};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

mod help;

/// How long this process trusts its memory of who is speaking in which session before
/// asking the database again (another replica may have ended the session).
const SPEAKER_CACHE_TTL_MICROS: i64 = 2_000_000;
/// Rows a report summary shows inline in chat.
pub const CHAT_ROWS: usize = 10;

pub struct TenantRuntime {
    pub config: TenantConfig,
    pub name: String,
    pub terms: Terms,
    pub roles: RoleSetup,
    pub admin_emails: HashSet<String>,
    /// Bootstrap admins named by channel identity: (`slack`, `U0123`).
    pub admin_identities: HashSet<(String, String)>,
}

impl TenantRuntime {
    fn new(config: &TenantConfig) -> TenantRuntime {
        TenantRuntime {
            name: config.name.clone().unwrap_or_else(|| config.id.clone()),
            terms: Terms::new(&config.terms),
            roles: RoleSetup::for_tenant(config),
            admin_emails: config
                .admins
                .iter()
                .filter_map(|a| normalise_email(a))
                .collect(),
            admin_identities: config
                .admins
                .iter()
                .filter(|a| !a.contains('@'))
                .filter_map(|a| a.split_once(':'))
                .map(|(c, id)| (c.trim().to_ascii_lowercase(), id.trim().to_string()))
                .collect(),
            config: config.clone(),
        }
    }

    pub fn is_admin_identity(&self, channel: Channel, external_id: &str) -> bool {
        self.admin_identities
            .contains(&(channel.as_str().to_string(), external_id.to_string()))
    }

    pub fn kind_of(&self, email: &str) -> PersonKind {
        let domain = email.rsplit('@').next().unwrap_or("");
        if self
            .config
            .internal_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            PersonKind::Internal
        } else {
            PersonKind::Customer
        }
    }

    /// The roles a new person starts with: `customer`, and `admin` for bootstrap admins.
    /// A person without an email is only created for a bootstrap admin identity.
    pub fn initial_roles(&self, email: Option<&str>) -> Vec<String> {
        let mut roles = vec!["customer".to_string()];
        if email.is_none_or(|e| self.admin_emails.contains(e)) {
            roles.push("admin".to_string());
        }
        roles
    }
}

/// Who runs a command: the operator at the terminal (every permission), or a person.
#[derive(Debug, Clone)]
pub enum Actor {
    Operator,
    Person {
        person: PersonRef,
        roles: Vec<String>,
    },
    Anonymous,
}

/// What a command produced, before a channel renders it.
#[derive(Debug)]
pub enum CommandOutput {
    Report(Report, Format),
    Text(String),
    /// The actor may not do this; nothing was changed.
    Refused(String),
    /// Bad input: a usage message.
    Usage(String),
    /// The command names someone or something that does not exist.
    NotFound(String),
    /// Nothing done yet: the person must confirm (chat: reply `yes`).
    Confirm {
        text: String,
    },
    /// `/koji export`: everything kept about a person.
    Export(serde_json::Value),
    /// `/koji audit`, already rendered in the asked format.
    Audit(String),
}

/// Tenant, channel, the channel's user id.
type SpeakerKey = (Arc<str>, Channel, String);

/// A conversation-state change decided while routing one message; it commits with that
/// message's exchange. Never shared: a clone starts empty.
#[derive(Default)]
struct NextState(Mutex<Option<Option<ConvState>>>);

impl Clone for NextState {
    fn clone(&self) -> NextState {
        NextState::default()
    }
}

#[derive(Clone)]
struct Speaking {
    identity_id: i64,
    person: Option<PersonRef>,
    /// The person's roles, remembered as long as the rest (a role change in this process
    /// forgets every speaker).
    roles: Option<Vec<String>>,
    next_state: NextState,
    auth_method: AuthMethod,
    session_id: i64,
    last_at: i64,
    checked_at: i64,
    state: Option<ConvState>,
    /// The takeover this identity is part of (person or operator).
    relay: Option<crate::store::helpdesk::Relay>,
    /// Relayed messages wait for this identity.
    inbox: bool,
}

/// What a conversation waits for, kept in the store per channel identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "awaiting", rename_all = "snake_case")]
pub enum ConvState {
    /// A portal visitor must give a contact email before anything else.
    AwaitingEmail {
        /// The portal admits only people it knows (through a one-time code).
        known_only: bool,
    },
    /// A one-time code was sent to `email`; the next message should be it.
    AwaitingCode { email: String, known_only: bool },
    /// `/koji forget WHO` asked; a `yes` before `expires_at` erases the person.
    EraseConfirmation {
        person_id: i64,
        label: String,
        expires_at: i64,
    },
    /// Articles were shown; a yes/no next says whether they helped (anything else is a new
    /// message).
    KbFeedback {
        question: String,
        articles: Vec<String>,
    },
    /// A request is proposed; yes creates it, no drops it (anything else is a new message).
    ConfirmRequest {
        summary: String,
        description: String,
    },
    /// "Create a request" without saying what: the next message is its summary.
    AwaitingRequestSummary,
}

/// How long a `/koji forget` confirmation stays open.
const CONFIRM_MICROS: i64 = 5 * 60 * 1_000_000;

pub struct Core {
    pub config: Arc<Config>,
    pub store: Store,
    writer: BatchWriter,
    nlu: Nlu,
    /// Configured tenants, and tenants that appear at run time (a Slack install on any
    /// replica). Only ever added to, so each runtime lives as long as the process: lookups
    /// hand out plain references.
    tenants: RwLock<HashMap<String, &'static TenantRuntime>>,
    tenant_order: RwLock<Vec<String>>,
    speakers: Mutex<HashMap<SpeakerKey, Speaking>>,
    pub metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    mailer: Option<crate::email::Mailer>,
    directory: Arc<dyn crate::directory::Directory>,
    helpdesk: Arc<dyn crate::helpdesk::HelpDesk>,
}

/// A message whose replies are decided and whose exchange is queued for commit.
pub struct Pending {
    state: PendingState,
}

enum PendingState {
    Ready(Result<Outcome, ConversationError>),
    Committing {
        rx: oneshot::Receiver<Result<WriteOutcome, StoreError>>,
        replies: Vec<Reply>,
        metrics: Arc<Metrics>,
    },
}

impl Pending {
    /// Waits for the commit; then the replies may be delivered.
    pub async fn wait(self) -> Result<Outcome, ConversationError> {
        match self.state {
            PendingState::Ready(r) => r,
            PendingState::Committing {
                rx,
                replies,
                metrics,
            } => match rx.await {
                Ok(Ok(WriteOutcome::Committed)) => {
                    metrics
                        .messages_out
                        .fetch_add(replies.len() as u64, Relaxed);
                    Ok(Outcome::Replies(replies))
                }
                // The same platform message was committed by someone else meanwhile (a
                // concurrent retry, maybe on another replica): theirs is the answer.
                Ok(Ok(WriteOutcome::Duplicate)) => {
                    metrics.duplicates.fetch_add(1, Relaxed);
                    Ok(Outcome::Duplicate)
                }
                Ok(Err(e)) => {
                    metrics.failures.fetch_add(1, Relaxed);
                    Err(unavailable(e))
                }
                Err(_) => Err(ConversationError::Unavailable("store closed".into())),
            },
        }
    }
}

fn unavailable(e: StoreError) -> ConversationError {
    ConversationError::Unavailable(e.to_string())
}

impl Core {
    /// Builds the core on an open, migrated store and starts its group-commit writer.
    pub async fn start(
        config: Arc<Config>,
        store: Store,
    ) -> Result<(Arc<Core>, tokio::task::JoinHandle<()>), StoreError> {
        let tenants: HashMap<String, &'static TenantRuntime> = config
            .tenants
            .iter()
            .map(|t| (t.id.clone(), &*Box::leak(Box::new(TenantRuntime::new(t)))))
            .collect();
        let list: Vec<(String, String)> = config
            .tenants
            .iter()
            .map(|t| (t.id.clone(), tenants[&t.id].name.clone()))
            .collect();
        store.sync_tenants(&list).await?;
        for t in tenants.values() {
            let ids: Vec<(String, String)> = t.admin_identities.iter().cloned().collect();
            store.grant_by_identity(&t.config.id, &ids, "admin").await?;
            // Bootstrap admins exist from the start, so the tenant has an admin to protect.
            let by = crate::store::people::Acting {
                label: "config (tenant.admins)".into(),
                person_id: None,
                channel: Channel::Console,
            };
            for email in &t.admin_emails {
                store
                    .import_person(
                        &t.config.id,
                        email,
                        None,
                        t.kind_of(email),
                        &["admin".to_string()],
                        &by,
                    )
                    .await?;
            }
        }
        let helpdesk = crate::helpdesk::start(&config, &store).await?;
        let (writer, task) = BatchWriter::start(store.pool().clone(), config.database.batch_max);
        let mailer = crate::email::Mailer::new(config.email.as_ref()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "email disabled");
            None
        });
        let core = Core {
            helpdesk,
            mailer,
            directory: crate::helpdesk::jira::JiraDirectory::for_config(&config, store.clone()),
            nlu: Nlu::new(&config.intents, &config.entities),
            tenant_order: RwLock::new(config.tenants.iter().map(|t| t.id.clone()).collect()),
            tenants: RwLock::new(tenants),
            speakers: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            clock: store.clock(),
            writer,
            store,
            config,
        };
        // Tenants created by a Slack install (on any replica, before this start).
        for t in core.installed_tenants().await? {
            core.add_tenant(&t);
        }
        // …and those created for Discord guilds.
        for t in core.discord_tenants().await? {
            core.add_tenant(&t);
        }
        Ok((Arc::new(core), task))
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantRuntime> {
        self.tenants.read().expect("tenants").get(id).copied()
    }

    /// The tenant `id`, made known to this process from `config` if it is not yet (a tenant
    /// installed at run time, possibly by another replica).
    pub fn tenant_or_add(&self, id: &str, config: impl FnOnce() -> TenantConfig) -> &TenantRuntime {
        match self.tenant(id) {
            Some(t) => t,
            None => self.add_tenant(&config()),
        }
    }

    /// Makes a tenant known to this process (a no-op when it already is); its runtime.
    pub fn add_tenant(&self, config: &TenantConfig) -> &TenantRuntime {
        let mut tenants = self.tenants.write().expect("tenants");
        if let Some(t) = tenants.get(&config.id) {
            return t;
        }
        let t: &'static TenantRuntime = Box::leak(Box::new(TenantRuntime::new(config)));
        tenants.insert(config.id.clone(), t);
        self.tenant_order
            .write()
            .expect("tenants")
            .push(config.id.clone());
        t
    }

    /// The tenant a hint points at.
    pub fn resolve_tenant(&self, hint: &TenantHint) -> Result<&TenantRuntime, ConversationError> {
        let unknown = |what: String| ConversationError::UnknownTenant(what);
        let tenants = self.tenants.read().expect("tenants");
        let order = self.tenant_order.read().expect("tenants");
        let find = |f: &dyn Fn(&TenantConfig) -> bool, what: String| {
            order
                .iter()
                .map(|id| tenants[id])
                .find(|t| f(&t.config))
                .ok_or_else(|| unknown(what))
        };
        match hint {
            TenantHint::Id(id) => tenants
                .get(id)
                .copied()
                .ok_or_else(|| unknown(format!("tenant `{id}`"))),
            TenantHint::Default => Ok(tenants[&order[0]]),
            TenantHint::SlackTeam(team) => find(
                &|t| t.slack_team_ids.contains(team),
                format!("Slack team {team}"),
            ),
            TenantHint::TeamsTenant(id) => find(
                &|t| t.teams_tenant_ids.contains(id),
                format!("Teams tenant {id}"),
            ),
            TenantHint::DiscordGuild(g) => find(
                &|t| t.discord_guild_ids.contains(g),
                format!("Discord guild {g}"),
            ),
            TenantHint::Portal(p) => {
                let portal = self
                    .config
                    .portals
                    .iter()
                    .find(|x| &x.id == p)
                    .ok_or_else(|| unknown(format!("portal `{p}`")))?;
                tenants
                    .get(&portal.tenant)
                    .copied()
                    .ok_or_else(|| unknown(format!("portal `{p}`")))
            }
        }
    }

    /// The tenant for the command line: `--tenant`, or the only one configured.
    pub fn cli_tenant(&self, flag: Option<&str>) -> Result<&TenantRuntime, String> {
        let tenants = self.tenants.read().expect("tenants");
        let order = self.tenant_order.read().expect("tenants");
        match flag {
            Some(id) => tenants
                .get(id)
                .copied()
                .ok_or_else(|| format!("no tenant `{id}` (configured: {})", order.join(", "))),
            None if order.len() == 1 => Ok(tenants[&order[0]]),
            None => Err(format!(
                "several tenants are configured ({}): say which with --tenant ID",
                order.join(", ")
            )),
        }
    }

    /// Waits until everything queued for commit so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    /// Handles one message to the end: replies come back once the exchange is durable.
    pub async fn handle(&self, msg: Inbound) -> Result<Outcome, ConversationError> {
        self.submit(msg).await?.wait().await
    }

    /// Resolves, records and routes one message, and queues its exchange for commit. Call it
    /// in a conversation's order; the returned [`Pending`] may be awaited later, so one
    /// conversation's messages can share commits.
    pub async fn submit(&self, msg: Inbound) -> Result<Pending, ConversationError> {
        let tenant = match self.resolve_tenant(&msg.tenant) {
            // A Slack team installed through another replica since this one started.
            Err(e) => self.load_installed_tenant(&msg.tenant).await?.ok_or(e)?,
            Ok(t) => t,
        };
        let tenant_id: Arc<str> = Arc::from(tenant.config.id.as_str());
        let speaking = self.speaking(tenant, &tenant_id, &msg).await.map_err(|e| {
            self.metrics.failures.fetch_add(1, Relaxed);
            unavailable(e)
        })?;
        let understanding = self.nlu.understand(&msg.text, &tenant.terms);
        let now = self.clock.now_micros();
        let inbound = MessageRow {
            tenant_id: tenant_id.clone(),
            session_id: speaking.session_id,
            person_id: speaking.person.as_ref().map(|p| p.id),
            identity_id: speaking.identity_id,
            channel: msg.channel,
            direction: Direction::In,
            text: msg.text.clone(),
            intent: Some(understanding.intent.clone()),
            specific: understanding.specific,
            entities: understanding.entities.clone(),
            actions: Vec::new(),
            platform_msg_id: msg.platform_message_id.clone(),
            at: now,
        };
        let claimed = msg.platform_message_id.is_some();
        if let Some(id) = &msg.platform_message_id {
            // A retry of a message already recorded (its claim and its replies commit
            // together, so recorded means answered) is not answered again.
            match self
                .store
                .platform_message_seen(&tenant_id, msg.channel, id)
                .await
            {
                Ok(true) => {
                    self.metrics.duplicates.fetch_add(1, Relaxed);
                    return Ok(Pending {
                        state: PendingState::Ready(Ok(Outcome::Duplicate)),
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    self.metrics.failures.fetch_add(1, Relaxed);
                    return Err(unavailable(e));
                }
            }
        }
        self.metrics.messages_in.fetch_add(1, Relaxed);

        let routed = self.route(tenant, &speaking, &msg, &understanding).await;
        let at = self.clock.now_micros().max(now);
        let mut rows = Vec::with_capacity(routed.len() + 1);
        rows.push(inbound);
        let mut replies = Vec::with_capacity(routed.len());
        for (reply, actions) in routed {
            rows.push(MessageRow {
                tenant_id: tenant_id.clone(),
                session_id: speaking.session_id,
                person_id: speaking.person.as_ref().map(|p| p.id),
                identity_id: speaking.identity_id,
                channel: msg.channel,
                direction: Direction::Out,
                text: reply.text.clone(),
                intent: None,
                specific: false,
                entities: Vec::new(),
                actions,
                platform_msg_id: None,
                at,
            });
            replies.push(reply);
        }
        let state = speaking
            .next_state
            .0
            .lock()
            .expect("next state")
            .take()
            .map(|state| StateWrite {
                identity_id: speaking.identity_id,
                state: state.map(|s| serde_json::to_string(&s).unwrap_or_default()),
            });
        let rx = self
            .writer
            .enqueue_with_state(rows, claimed, state)
            .await
            .map_err(unavailable)?;
        Ok(Pending {
            state: PendingState::Committing {
                rx,
                replies,
                metrics: self.metrics.clone(),
            },
        })
    }

    /// Who is speaking and in which session, from memory when it is fresh.
    async fn speaking(
        &self,
        tenant: &TenantRuntime,
        tenant_id: &Arc<str>,
        msg: &Inbound,
    ) -> Result<Speaking, StoreError> {
        let now = self.clock.now_micros();
        let idle = self.config.idle_timeout().as_micros() as i64;
        let email = msg
            .speaker
            .verified_email
            .as_deref()
            .and_then(normalise_email);
        let key = (
            tenant_id.clone(),
            msg.channel,
            msg.speaker.external_id.clone(),
        );
        {
            let mut cache = self.speakers.lock().expect("speaker cache");
            if let Some(s) = cache.get_mut(&key) {
                let same_person = match (&email, &s.person) {
                    (Some(e), Some(p)) => p.email.as_deref() == Some(e.as_str()),
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                if same_person
                    && now - s.checked_at <= SPEAKER_CACHE_TTL_MICROS
                    && now - s.last_at <= idle
                    && s.auth_method
                        == if email.is_some() {
                            msg.speaker.auth_method
                        } else {
                            s.auth_method
                        }
                {
                    s.last_at = now;
                    return Ok(s.clone());
                }
            }
        }
        // A bootstrap admin named by channel identity (`slack:U0123`), vouched for by the channel.
        let admin_identity = msg.speaker.auth_method != AuthMethod::Anonymous
            && tenant.is_admin_identity(msg.channel, &msg.speaker.external_id);
        let bootstrap_identity = email.is_none() && admin_identity;
        let seed = (email.is_some() || bootstrap_identity).then(|| PersonSeed {
            email: email.clone(),
            name: msg.speaker.display_name.clone(),
            kind: email
                .as_deref()
                .map(|e| tenant.kind_of(e))
                .unwrap_or(PersonKind::Internal),
            roles: {
                let mut roles = tenant.initial_roles(email.as_deref());
                if admin_identity && !roles.iter().any(|r| r == "admin") {
                    roles.push("admin".into());
                }
                roles
            },
            locale: msg.speaker.locale.clone(),
            time_zone: msg.speaker.time_zone.clone(),
        });
        let method = if seed.is_some() {
            if bootstrap_identity || email.is_some() {
                msg.speaker.auth_method
            } else {
                AuthMethod::Anonymous
            }
        } else {
            AuthMethod::Anonymous
        };
        // The common case — a known identity continuing its session with nothing to change —
        // is one read, without the write lock the group commit needs.
        if let Some(snap) = self
            .store
            .speaker_snapshot(tenant_id, msg.channel, &msg.speaker.external_id)
            .await?
        {
            let identity_unchanged = match (&seed, &snap.person) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(seed), Some(p)) => {
                    snap.auth_method == method
                        && match &seed.email {
                            Some(e) => {
                                p.email.as_deref() == Some(e.as_str()) && snap.email_verified
                            }
                            None => true,
                        }
                }
            };
            let person_id = snap.person.as_ref().map(|p| p.id);
            let session = snap.session.as_ref().filter(|(_, pid, m, last)| {
                *pid == person_id && m == snap.auth_method.as_str() && now - last <= idle
            });
            let admin_ok = !(admin_identity && snap.person.is_some())
                || snap.roles.iter().any(|r| r == "admin");
            if identity_unchanged
                && admin_ok
                && let Some((session_id, ..)) = session
            {
                let relay = if snap.in_takeover {
                    self.store.relay_of(snap.identity_id).await?
                } else {
                    None
                };
                let s = Speaking {
                    roles: snap.person.as_ref().map(|_| snap.roles.clone()),
                    next_state: NextState::default(),
                    inbox: snap.in_takeover || snap.relay_pending,
                    relay,
                    state: snap
                        .state
                        .as_deref()
                        .and_then(|j| serde_json::from_str::<ConvState>(j).ok()),
                    identity_id: snap.identity_id,
                    person: snap.person,
                    auth_method: snap.auth_method,
                    session_id: *session_id,
                    last_at: now,
                    checked_at: now,
                };
                self.speakers
                    .lock()
                    .expect("speaker cache")
                    .insert(key, s.clone());
                return Ok(s);
            }
        }
        let resolved = self
            .store
            .resolve_identity(
                tenant_id,
                msg.channel,
                &msg.speaker.external_id,
                msg.speaker.display_name.as_deref(),
                method,
                seed.as_ref(),
            )
            .await?;
        let login_id = email
            .clone()
            .unwrap_or_else(|| msg.speaker.external_id.clone());
        let login_id = if msg.channel == Channel::Console || msg.channel == Channel::Portal {
            login_id
        } else {
            msg.speaker.external_id.clone()
        };
        let session = self
            .store
            .touch_or_start_session(
                &SessionStart {
                    tenant_id,
                    identity_id: resolved.identity_id,
                    person_id: resolved.person.as_ref().map(|p| p.id),
                    channel: msg.channel,
                    auth_method: resolved.auth_method,
                    login_id: &login_id,
                    ip: msg.ip.as_deref(),
                    user_agent: msg.user_agent.as_deref(),
                },
                self.config.idle_timeout(),
            )
            .await?;
        if session.new_token.is_some() {
            self.metrics.sessions_started.fetch_add(1, Relaxed);
        }
        if admin_identity && resolved.person.is_some() {
            // Already a person before being named in `tenant.admins`: make them admin now.
            let id = (
                msg.channel.as_str().to_string(),
                msg.speaker.external_id.clone(),
            );
            self.store
                .grant_by_identity(tenant_id, &[id], "admin")
                .await?;
        }
        let state = self
            .store
            .conversation_state(resolved.identity_id)
            .await?
            .and_then(|j| serde_json::from_str::<ConvState>(&j).ok());
        let relay = self.store.relay_of(resolved.identity_id).await?;
        let inbox = relay.is_some() || self.store.relay_pending(resolved.identity_id).await?;
        let roles = match &resolved.person {
            Some(p) => Some(self.store.roles_of(p.id).await?),
            None => None,
        };
        let s = Speaking {
            roles,
            next_state: NextState::default(),
            relay,
            inbox,
            state,
            identity_id: resolved.identity_id,
            person: resolved.person,
            auth_method: resolved.auth_method,
            session_id: session.id,
            last_at: now,
            checked_at: now,
        };
        self.speakers
            .lock()
            .expect("speaker cache")
            .insert(key, s.clone());
        Ok(s)
    }

    /// The portal visitor's answer to "what is your email address?".
    async fn capture_email(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        known_only: bool,
    ) -> (Reply, Vec<String>) {
        let tid = tenant.config.id.as_str();
        let ask_again = |text: String| async move {
            let state = ConvState::AwaitingEmail { known_only };
            if let Err(e) = self.put_state(tid, msg, speaking, Some(state)).await {
                tracing::warn!(error = %e, "conversation state not kept");
            }
            (Reply::text(text), Vec::new())
        };
        let Some(email) = normalise_email(msg.text.trim()) else {
            return ask_again(
                "That doesn't look like an email address. Please type your email address (for example name@example.com) so we can help you."
                    .into(),
            )
            .await;
        };
        let needs_code = "To protect their history we need to verify it with a one-time code, and this server cannot send email codes yet. Please use another address, or ask your help desk.";
        let listing = self.directory.lookup(tenant, &email).await;
        if let Ok(Some(l)) = &listing
            && l.kind == PersonKind::Internal
            && self.oauth_enabled()
        {
            // Staff sign in with their company account.
            return match self
                .oauth_link(tid, speaking.identity_id, speaking.session_id)
                .await
            {
                Ok(url) => {
                    let state = ConvState::AwaitingEmail { known_only };
                    if let Err(e) = self.put_state(tid, msg, speaking, Some(state)).await {
                        tracing::warn!(error = %e, "conversation state not kept");
                    }
                    let mut r = Reply::text(format!(
                        "{email} is a staff address: please sign in with your company account: {url}"
                    ));
                    r.attachments.push(Attachment::SignIn {
                        url,
                        label: "Sign in".into(),
                    });
                    (r, vec!["auth_offered".into()])
                }
                Err(e) => {
                    tracing::warn!(error = %e, "oauth link not stored");
                    ask_again(
                        "Sorry, I couldn't start the sign-in right now. Please try again.".into(),
                    )
                    .await
                }
            };
        }
        let known = match listing {
            // An existing person's history is never joined without the code; a portal that
            // admits only known people admits whoever the directory lists.
            Ok(listing) => listing.is_some_and(|l| l.is_person || known_only),
            Err(e) => {
                tracing::warn!(error = %e, "directory unavailable");
                return ask_again(
                    "Sorry, I couldn't check that right now. Please try again.".into(),
                )
                .await;
            }
        };
        if known_only && !known {
            return ask_again(format!(
                "We don't know {email} here. Please check the address, or ask your help desk for access."
            ))
            .await;
        }
        // Outside the portal, a typed email is never taken on trust: the code proves it.
        if known || msg.channel != Channel::Portal {
            if self.mailer.is_none() {
                return ask_again(format!(
                    "{email} needs a one-time code to sign in. {needs_code}"
                ))
                .await;
            }
            return self
                .send_code(tenant, speaking, msg, &email, known_only)
                .await;
        }
        match self
            .store
            .link_portal_visitor(
                tid,
                speaking.identity_id,
                speaking.session_id,
                &email,
                // Portal visitors are customers; staff sign in with OAuth.
                PersonKind::Customer,
            )
            .await
        {
            Ok(Ok(person)) => {
                self.forget_speaker(tid, msg);
                // With Jira, the visitor becomes a service-desk customer too; if Jira is
                // down they are still a customer here and Jira learns of them with their
                // first request.
                if let Err(e) = self.helpdesk.ensure_customer(tid, &email, None).await {
                    tracing::warn!(error = %e, "help desk customer not created");
                }
                (
                    Reply::text(format!(
                        "Thanks! You're talking to the {} help desk as {}. How can I help?",
                        tenant.name,
                        person.email.as_deref().unwrap_or("a customer")
                    )),
                    vec!["auth_completed".to_string()],
                )
            }
            Ok(Err(crate::store::LinkRefusal::AlreadyKnown)) => {
                ask_again(format!(
                    "{email} already belongs to someone we know. {needs_code}"
                ))
                .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "portal email not linked");
                ask_again("Sorry, I couldn't take your email right now. Please try again.".into())
                    .await
            }
        }
    }

    /// Sends a one-time code to `email` and waits for it.
    async fn send_code(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        email: &str,
        known_only: bool,
    ) -> (Reply, Vec<String>) {
        let tid = tenant.config.id.as_str();
        let keep = |state: ConvState, text: String, actions: Vec<String>| async move {
            if let Err(e) = self.put_state(tid, msg, speaking, Some(state)).await {
                tracing::warn!(error = %e, "conversation state not kept");
            }
            (Reply::text(text), actions)
        };
        let waiting_email = ConvState::AwaitingEmail { known_only };
        let Some(mailer) = &self.mailer else {
            return keep(
                waiting_email,
                "This server cannot send email codes.".into(),
                vec![],
            )
            .await;
        };
        let code = crate::store::codes::new_code();
        match self
            .store
            .create_email_code(tid, speaking.identity_id, email, &code)
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(wait)) => {
                let minutes = (wait / 60_000_000).max(1);
                return keep(
                    ConvState::AwaitingCode { email: email.to_string(), known_only },
                    format!("I've sent several codes already. Please use the latest one, or ask for a new one in {minutes} minute(s)."),
                    vec![],
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "code not stored");
                return keep(
                    waiting_email,
                    "Sorry, I couldn't send a code right now. Please type your email again.".into(),
                    vec![],
                )
                .await;
            }
        }
        if let Err(e) = mailer.send_code(email, &code, &tenant.name).await {
            tracing::warn!(error = %e, "code email not sent");
            return keep(
                waiting_email,
                "Sorry, I couldn't send the email right now. Please type your email address again in a moment.".into(),
                vec![],
            )
            .await;
        }
        keep(
            ConvState::AwaitingCode { email: email.to_string(), known_only },
            format!("I've sent a 6-digit code to {email}. Type it here to sign in (it is valid for 10 minutes; type `resend` for a new one)."),
            vec!["auth_offered".into()],
        )
        .await
    }

    /// The answer to "type the code we sent".
    async fn check_code(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        email: String,
        known_only: bool,
    ) -> (Reply, Vec<String>) {
        let tid = tenant.config.id.as_str();
        let text = msg.text.trim();
        let keep = |state: ConvState, text: String| async move {
            if let Err(e) = self.put_state(tid, msg, speaking, Some(state)).await {
                tracing::warn!(error = %e, "conversation state not kept");
            }
            (Reply::text(text), Vec::new())
        };
        if text.eq_ignore_ascii_case("resend") {
            return self
                .send_code(tenant, speaking, msg, &email, known_only)
                .await;
        }
        if normalise_email(text).is_some() {
            return self.capture_email(tenant, speaking, msg, known_only).await;
        }
        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.len() != 6 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return keep(
                ConvState::AwaitingCode {
                    email: email.clone(),
                    known_only,
                },
                format!(
                    "Please type the 6-digit code I sent to {email}, or `resend` for a new one."
                ),
            )
            .await;
        }
        let again = ConvState::AwaitingEmail { known_only };
        match self.store.check_email_code(speaking.identity_id, &digits).await {
            Ok(crate::store::codes::CodeCheck::Right { email }) => {
                let kind = tenant.kind_of(&email);
                match self
                    .store
                    .sign_in_verified(tid, speaking.identity_id, speaking.session_id, &email, kind, AuthMethod::EmailCode)
                    .await
                {
                    Ok(person) => {
                        self.forget_speaker(tid, msg);
                        (
                            Reply::text(format!(
                                "Thanks! You're signed in to the {} help desk as {}. How can I help?",
                                tenant.name,
                                person.email.as_deref().unwrap_or(&email)
                            )),
                            vec!["auth_completed".into()],
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sign-in not recorded");
                        keep(again, "Sorry, I couldn't sign you in right now. Please type your email address again.".into()).await
                    }
                }
            }
            Ok(crate::store::codes::CodeCheck::Wrong { attempts_left }) if attempts_left > 0 => {
                keep(
                    ConvState::AwaitingCode { email, known_only },
                    format!("That code isn't right. {attempts_left} attempt(s) left."),
                )
                .await
            }
            Ok(crate::store::codes::CodeCheck::Wrong { .. }) | Ok(crate::store::codes::CodeCheck::Spent) => {
                keep(again, "That code can't be used any more (too many attempts). Type your email address to get a new one.".into()).await
            }
            Ok(crate::store::codes::CodeCheck::Expired) => {
                keep(again, "That code has expired. Type your email address to get a new one.".into()).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "code not checked");
                keep(
                    ConvState::AwaitingCode { email, known_only },
                    "Sorry, I couldn't check the code right now. Please try again.".into(),
                )
                .await
            }
        }
    }

    /// Forgets this process's memory of one speaker (their identity or session changed).
    pub fn forget_speaker(&self, tenant_id: &str, msg: &Inbound) {
        let key: SpeakerKey = (
            Arc::from(tenant_id),
            msg.channel,
            msg.speaker.external_id.clone(),
        );
        self.speakers.lock().expect("speaker cache").remove(&key);
    }

    pub(crate) async fn set_state(
        &self,
        tenant_id: &str,
        msg: &Inbound,
        identity_id: i64,
        state: Option<ConvState>,
    ) -> Result<(), StoreError> {
        let json = state
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_default());
        self.store
            .set_conversation_state(identity_id, json.as_deref())
            .await?;
        let key: SpeakerKey = (
            Arc::from(tenant_id),
            msg.channel,
            msg.speaker.external_id.clone(),
        );
        if let Some(s) = self.speakers.lock().expect("speaker cache").get_mut(&key) {
            s.state = state;
        }
        Ok(())
    }

    /// Writes the state now (sign-in steps, confirmations), replacing any change deferred
    /// earlier in this exchange.
    async fn put_state(
        &self,
        tenant_id: &str,
        msg: &Inbound,
        speaking: &Speaking,
        state: Option<ConvState>,
    ) -> Result<(), StoreError> {
        *speaking.next_state.0.lock().expect("next state") = None;
        self.set_state(tenant_id, msg, speaking.identity_id, state)
            .await
    }

    /// Changes the state with this exchange: it commits in the exchange's transaction, and
    /// this process sees it at once.
    fn defer_state(
        &self,
        tenant_id: &str,
        msg: &Inbound,
        speaking: &Speaking,
        state: Option<ConvState>,
    ) {
        let key: SpeakerKey = (
            Arc::from(tenant_id),
            msg.channel,
            msg.speaker.external_id.clone(),
        );
        if let Some(s) = self.speakers.lock().expect("speaker cache").get_mut(&key) {
            s.state = state.clone();
        }
        *speaking.next_state.0.lock().expect("next state") = Some(state);
    }

    pub(crate) fn writer(&self) -> &BatchWriter {
        &self.writer
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Forgets what this process remembers about who is speaking (after sign-out, erasure…).
    pub fn forget_speakers(&self) {
        self.speakers.lock().expect("speaker cache").clear();
    }

    /// Decides the replies (and the actions taken) for one message.
    async fn route(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        u: &Understanding,
    ) -> Vec<(Reply, Vec<String>)> {
        // Messages relayed to this identity (a takeover) come first.
        let mut out = if speaking.inbox {
            self.relayed(speaking).await
        } else {
            Vec::new()
        };
        out.extend(self.route_message(tenant, speaking, msg, u).await);
        out
    }

    async fn route_message(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        u: &Understanding,
    ) -> Vec<(Reply, Vec<String>)> {
        let is_command = command_text(&msg.text).is_some();
        // A command typed while sign-in waits for an email or a code is answered; the
        // sign-in keeps waiting. (On a portal the email comes before anything else.)
        let state = speaking.state.as_ref().filter(|s| {
            !(is_command
                && msg.channel != Channel::Portal
                && matches!(
                    s,
                    ConvState::AwaitingEmail { .. } | ConvState::AwaitingCode { .. }
                ))
        });
        if let Some(state) = state {
            let tid = tenant.config.id.as_str();
            // Soft states: a yes/no (or a summary) answers them; anything else is a new
            // message, and the offer lapses.
            let answer = help::yes_no(&msg.text).filter(|_| !is_command);
            match state {
                ConvState::KbFeedback { question, .. } => {
                    self.clear_state(tid, msg, speaking);
                    if let Some(helped) = answer {
                        return vec![
                            self.kb_feedback(tenant, speaking, msg, helped, question.clone())
                                .await,
                        ];
                    }
                }
                ConvState::ConfirmRequest {
                    summary,
                    description,
                } => {
                    self.clear_state(tid, msg, speaking);
                    match answer {
                        Some(true) => {
                            return vec![
                                self.create_request(
                                    tenant,
                                    speaking,
                                    summary.clone(),
                                    description.clone(),
                                )
                                .await,
                            ];
                        }
                        Some(false) => {
                            return vec![(
                                Reply::text("OK, I didn't create a request. Anything else?"),
                                vec![],
                            )];
                        }
                        None => {}
                    }
                }
                ConvState::AwaitingRequestSummary => {
                    self.clear_state(tid, msg, speaking);
                    if !is_command {
                        let summary = match help::request_summary(&msg.text) {
                            s if s.is_empty() => msg.text.trim().to_string(),
                            s => s,
                        };
                        return vec![
                            self.confirm_request(
                                tenant,
                                speaking,
                                msg,
                                summary,
                                msg.text.trim().to_string(),
                            )
                            .await,
                        ];
                    }
                }
                _ => {
                    return vec![
                        self.continue_state(tenant, speaking, msg, state.clone())
                            .await,
                    ];
                }
            }
        }
        if let Some(words) = command_text(&msg.text) {
            return vec![self.chat_command(tenant, speaking, msg, words).await];
        }
        if let Some(relay) = &speaking.relay {
            return self.relay(tenant, speaking, msg, relay).await;
        }
        let name = speaking
            .person
            .as_ref()
            .and_then(|p| p.name.clone())
            .map(|n| format!(", {}", n.split_whitespace().next().unwrap_or(&n)))
            .unwrap_or_default();
        if let Some(reply) = &u.reply {
            return vec![(Reply::text(reply.clone()), Vec::new())];
        }
        let text = match u.intent.as_str() {
            "greeting" => format!(
                "Hello{name}! I'm Koji, the {} help desk assistant. Ask me anything, or type /koji help for commands.",
                tenant.name
            ),
            "thanks" => "You're welcome! Anything else I can help with?".to_string(),
            "goodbye" => "Goodbye! Come back any time.".to_string(),
            "smalltalk" => "I'm Koji, a help desk assistant. What can I help you with?".to_string(),
            _ if speaking.person.is_none() => {
                return vec![self.offer_sign_in(tenant, speaking, msg).await];
            }
            "handoff" => return vec![self.ask_for_human(tenant, speaking).await],
            "request" => return vec![self.propose_request(tenant, speaking, msg).await],
            "request_status" => {
                if let Some(key) = u.entities.iter().find(|e| e.kind == "issue_key") {
                    return vec![self.request_status(tenant, speaking, &key.value).await];
                }
                // Lowercase keys (`req-3`) are not entities; find them in the text.
                if let Some(key) = msg
                    .text
                    .split(|c: char| !c.is_alphanumeric() && c != '-')
                    .find(|w| {
                        w.contains('-')
                            && w.rsplit('-')
                                .next()
                                .is_some_and(|n| n.parse::<u64>().is_ok())
                    })
                {
                    return vec![
                        self.request_status(tenant, speaking, &key.to_ascii_uppercase())
                            .await,
                    ];
                }
                return vec![self.answer_question(tenant, speaking, msg).await];
            }
            _ => return vec![self.answer_question(tenant, speaking, msg).await],
        };
        vec![(Reply::text(text), Vec::new())]
    }

    /// Clears a soft state; the change commits with this exchange.
    fn clear_state(&self, tid: &str, msg: &Inbound, speaking: &Speaking) {
        self.defer_state(tid, msg, speaking, None);
    }

    /// Someone Koji doesn't know asked for help: how to sign in on this channel.
    async fn offer_sign_in(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
    ) -> (Reply, Vec<String>) {
        let auth = vec!["auth_offered".to_string()];
        if msg.channel == Channel::Console {
            return (
                Reply::text(
                    "I don't know who you are yet. Start the chat with `koji chat --as EMAIL` so I know who you are.",
                ),
                auth,
            );
        }
        let tid = tenant.config.id.as_str();
        // The next message may be an email: a one-time code (or the staff sign-in) follows.
        let state = ConvState::AwaitingEmail { known_only: false };
        if let Err(e) = self.put_state(tid, msg, speaking, Some(state)).await {
            tracing::warn!(error = %e, "conversation state not kept");
        }
        let mut text =
            String::from("I don't know who you are yet. Please sign in so I can help you: ");
        if self.mailer.is_some() {
            text.push_str("type your email address and I'll send you a one-time code.");
        } else {
            text.push_str("type your email address.");
        }
        let mut reply = Reply::text(text);
        if self.oauth_enabled() {
            match self
                .oauth_link(tid, speaking.identity_id, speaking.session_id)
                .await
            {
                Ok(url) => {
                    reply.text.push_str(&format!(
                        " Staff can sign in with their company account: {url}"
                    ));
                    reply.attachments.push(Attachment::SignIn {
                        url,
                        label: "Sign in".into(),
                    });
                }
                Err(e) => tracing::warn!(error = %e, "oauth link not stored"),
            }
        }
        (reply, auth)
    }

    /// The conversation was waiting for an answer: this message is it.
    async fn continue_state(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        state: ConvState,
    ) -> (Reply, Vec<String>) {
        let tid = tenant.config.id.as_str();
        if let Err(e) = self.put_state(tid, msg, speaking, None).await {
            tracing::warn!(error = %e, "conversation state not cleared");
            return (
                private("Sorry, I can't do that right now. Please try again."),
                vec![],
            );
        }
        match state {
            ConvState::AwaitingEmail { known_only } => {
                self.capture_email(tenant, speaking, msg, known_only).await
            }
            ConvState::AwaitingCode { email, known_only } => {
                self.check_code(tenant, speaking, msg, email, known_only)
                    .await
            }
            // Soft states are answered in `route_message`.
            ConvState::KbFeedback { .. }
            | ConvState::ConfirmRequest { .. }
            | ConvState::AwaitingRequestSummary => (
                Reply::text("Sorry, I lost track of that. What can I help you with?"),
                vec![],
            ),
            ConvState::EraseConfirmation {
                person_id,
                label,
                expires_at,
            } => {
                let answer = msg
                    .text
                    .trim()
                    .trim_end_matches(['.', '!'])
                    .to_ascii_lowercase();
                let yes = matches!(answer.as_str(), "yes" | "y" | "confirm" | "erase");
                if !yes {
                    return (
                        private(format!("Cancelled: nothing about {label} was erased.")),
                        vec![],
                    );
                }
                if self.clock.now_micros() > expires_at {
                    return (
                        private(format!(
                            "That confirmation has expired; nothing about {label} was erased. Run /koji forget again."
                        )),
                        vec![],
                    );
                }
                let actor = match self.actor_of(speaking).await {
                    Ok(a) => a,
                    Err(reply) => return (reply, vec![]),
                };
                let target = PersonRef {
                    id: person_id,
                    name: None,
                    email: Some(label.clone()),
                    kind: PersonKind::Customer,
                };
                match self.erase(tenant, &actor, msg.channel, &target).await {
                    Ok(out) => render_output(out, "forget"),
                    Err(e) => {
                        tracing::warn!(error = %e, "erasure failed");
                        (
                            private(
                                "Sorry, I couldn't erase that person right now. Nothing was erased.",
                            ),
                            vec![],
                        )
                    }
                }
            }
        }
    }

    async fn actor_of(&self, speaking: &Speaking) -> Result<Actor, Reply> {
        match &speaking.person {
            None => Ok(Actor::Anonymous),
            Some(p) if speaking.roles.is_some() => Ok(Actor::Person {
                person: p.clone(),
                roles: speaking.roles.clone().unwrap_or_default(),
            }),
            Some(p) => match self.store.roles_of(p.id).await {
                Ok(roles) => Ok(Actor::Person {
                    person: p.clone(),
                    roles,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "roles unavailable");
                    Err(private(
                        "Sorry, I can't check your permissions right now. Please try again.",
                    ))
                }
            },
        }
    }

    async fn chat_command(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        words: &str,
    ) -> (Reply, Vec<String>) {
        let actor = match self.actor_of(speaking).await {
            Ok(a) => a,
            Err(reply) => return (reply, vec![]),
        };
        // `/koji takeover` alone: who is waiting for a human.
        if words.split_whitespace().eq(["takeover"]) {
            return self.waiting_for_humans(tenant, speaking).await;
        }
        let parsed = commands::parse(words);
        let word = parsed.as_ref().map(|c| c.word()).unwrap_or("help");
        let out = match parsed {
            Ok(Command::Takeover { who }) => return self.take_over(tenant, speaking, &who).await,
            Ok(Command::Release) => return self.release(tenant, speaking).await,
            Ok(Command::Forget { who }) => {
                self.ask_erase(tenant, &actor, speaking, msg, &who).await
            }
            Ok(cmd) => {
                self.run_command_rows(tenant, &actor, msg.channel, cmd, Some(CHAT_ROWS))
                    .await
            }
            Err(e) => CommandOutput::Usage(e.to_string()),
        };
        let (mut reply, actions) = render_output(out, word);
        // A summary that leaves rows out offers them all, as a file.
        let more = reply
            .attachments
            .iter()
            .any(|a| matches!(a, Attachment::Table(t) if t.more > 0));
        if more {
            let mut rest: Vec<&str> = Vec::new();
            let mut it = words.split_whitespace();
            while let Some(w) = it.next() {
                if w == "--format" {
                    it.next();
                } else if !w.starts_with("--format=") {
                    rest.push(w);
                }
            }
            reply.attachments.push(Attachment::Buttons {
                buttons: vec![koji_channel::Button {
                    label: "Show all rows (CSV)".into(),
                    value: format!("/koji {} --format csv", rest.join(" ")),
                }],
            });
        }
        (reply, actions)
    }

    /// `/koji forget WHO` in chat: the same checks as the erasure, then a confirmation.
    async fn ask_erase(
        &self,
        tenant: &TenantRuntime,
        actor: &Actor,
        speaking: &Speaking,
        msg: &Inbound,
        who: &str,
    ) -> CommandOutput {
        if let Some(refusal) = self.require(tenant, actor, Permission::UsersErase, "forget") {
            return refusal;
        }
        let tid = tenant.config.id.as_str();
        let target = match self.store.find_person(tid, who).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return no_match(tenant, who);
            }
            Err(e) => return unavailable_output(e),
        };
        if let Actor::Person { person, .. } = actor
            && person.id == target.id
        {
            return CommandOutput::Refused("You cannot erase yourself; ask another admin.".into());
        }
        let label = crate::store::people::label_of(&target);
        let state = ConvState::EraseConfirmation {
            person_id: target.id,
            label: label.clone(),
            expires_at: self.clock.now_micros() + CONFIRM_MICROS,
        };
        if let Err(e) = self.put_state(tid, msg, speaking, Some(state)).await {
            return unavailable_output(e);
        }
        CommandOutput::Confirm {
            text: format!(
                "This erases everything Koji keeps about {label}: exchanges, identities, sessions, interests and profile. \
                 It cannot be undone. Reply `yes` within 5 minutes to erase, or anything else to cancel."
            ),
        }
    }

    /// Erases a person (after confirmation), with the same checks on every path.
    pub async fn erase(
        &self,
        tenant: &TenantRuntime,
        actor: &Actor,
        channel: Channel,
        target: &PersonRef,
    ) -> Result<CommandOutput, StoreError> {
        if let Some(refusal) = self.require(tenant, actor, Permission::UsersErase, "forget") {
            return Ok(refusal);
        }
        if let Actor::Person { person, .. } = actor
            && person.id == target.id
        {
            return Ok(CommandOutput::Refused(
                "You cannot erase yourself; ask another admin.".into(),
            ));
        }
        let label = crate::store::people::label_of(target);
        // Whatever of theirs is queued is committed first, so nothing of it outlives the erasure.
        self.writer.flush().await?;
        match self
            .store
            .erase_person(&tenant.config.id, target, &acting(actor, channel))
            .await?
        {
            Ok(_) => {
                self.forget_speakers();
                Ok(CommandOutput::Text(format!(
                    "Erased everything Koji kept about {label}."
                )))
            }
            Err(refusal) => Ok(CommandOutput::Refused(format!("Not erased: {refusal}."))),
        }
    }
}

/// The answer when WHO names no one in the tenant.
fn no_match(tenant: &TenantRuntime, who: &str) -> CommandOutput {
    CommandOutput::NotFound(format!("No one in {} matches `{who}`.", tenant.name))
}

fn unavailable_output(e: StoreError) -> CommandOutput {
    tracing::warn!(error = %e, "command failed");
    CommandOutput::Text(
        "Sorry, I couldn't do that right now (the database is unavailable). Please try again."
            .into(),
    )
}

/// A command's output as a chat reply (always private) and the action it records.
fn render_output(out: CommandOutput, word: &str) -> (Reply, Vec<String>) {
    let action = vec![format!("command.{word}")];
    match out {
        CommandOutput::Report(report, format) => {
            let reply = match format {
                Format::Text => {
                    let table = report.to_table(CHAT_ROWS);
                    let mut r = private(table_text(&table));
                    r.attachments.push(Attachment::Table(table));
                    r
                }
                Format::Json | Format::Csv => {
                    let (ext, media) = if format == Format::Json {
                        ("json", "application/json")
                    } else {
                        ("csv", "text/csv")
                    };
                    let content = report.render(format);
                    document(format!("koji-{}.{ext}", report.name()), ext, media, content)
                }
            };
            (reply, action)
        }
        CommandOutput::Text(t) | CommandOutput::Audit(t) => (private(t), action),
        CommandOutput::Export(v) => {
            let content = serde_json::to_string_pretty(&v).unwrap_or_default();
            (
                document(
                    "koji-export.json".into(),
                    "json",
                    "application/json",
                    content,
                ),
                action,
            )
        }
        CommandOutput::Confirm { text } => {
            let mut r = private(text);
            r.attachments.push(Attachment::Buttons {
                buttons: vec![
                    koji_channel::Button {
                        label: "Confirm erase".into(),
                        value: "yes".into(),
                    },
                    koji_channel::Button {
                        label: "Cancel".into(),
                        value: "no".into(),
                    },
                ],
            });
            (r, action)
        }
        CommandOutput::Refused(t) | CommandOutput::Usage(t) | CommandOutput::NotFound(t) => {
            (private(t), vec![])
        }
    }
}

fn document(filename: String, ext: &str, media: &str, content: String) -> Reply {
    let mut r = private(format!("```{ext}\n{}\n```", content.trim_end()));
    r.attachments.push(Attachment::Document {
        filename,
        media_type: media.to_string(),
        content,
    });
    r
}

fn acting(actor: &Actor, channel: Channel) -> crate::store::people::Acting {
    use crate::store::people::{Acting, label_of};
    match actor {
        Actor::Operator => Acting {
            label: "operator".into(),
            person_id: None,
            channel,
        },
        Actor::Person { person, .. } => Acting {
            label: label_of(person),
            person_id: Some(person.id),
            channel,
        },
        Actor::Anonymous => Acting {
            label: "anonymous".into(),
            person_id: None,
            channel,
        },
    }
}

impl Core {
    fn require(
        &self,
        tenant: &TenantRuntime,
        actor: &Actor,
        perm: Permission,
        what: &str,
    ) -> Option<CommandOutput> {
        let ok = match actor {
            Actor::Operator => true,
            Actor::Anonymous => false,
            Actor::Person { roles, .. } => tenant.roles.allows(roles, perm),
        };
        if ok {
            return None;
        }
        Some(CommandOutput::Refused(match actor {
            Actor::Anonymous => format!("You need to sign in before using /koji {what}."),
            _ => format!(
                "You don't have permission to use /koji {what} (it needs {}). Ask an admin of {} if you should.",
                perm.as_str(),
                tenant.name
            ),
        }))
    }

    /// Runs an admin command for `actor`, checking permissions. Shared by chat and the CLI.
    pub async fn run_command(
        &self,
        tenant: &TenantRuntime,
        actor: &Actor,
        channel: Channel,
        cmd: Command,
    ) -> CommandOutput {
        self.run_command_rows(tenant, actor, channel, cmd, None)
            .await
    }

    /// Like [`Core::run_command`]; a report asked for as text shows only `summary_rows` rows
    /// (chat shows a summary), and only those are computed. The total still counts everyone.
    pub async fn run_command_rows(
        &self,
        tenant: &TenantRuntime,
        actor: &Actor,
        channel: Channel,
        cmd: Command,
        summary_rows: Option<usize>,
    ) -> CommandOutput {
        match self
            .try_command(tenant, actor, channel, cmd, summary_rows)
            .await
        {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "command failed");
                CommandOutput::Text("Sorry, I couldn't do that right now (the database is unavailable). Please try again.".into())
            }
        }
    }

    async fn try_command(
        &self,
        tenant: &TenantRuntime,
        actor: &Actor,
        channel: Channel,
        cmd: Command,
        summary_rows: Option<usize>,
    ) -> Result<CommandOutput, StoreError> {
        let word = cmd.word();
        let tid = tenant.config.id.as_str();
        let now = self.clock.now_micros();
        let since_of = |d: Option<crate::config::HumanDuration>| {
            now - d.map(|d| d.0).unwrap_or(DEFAULT_SINCE).as_micros() as i64
        };
        match cmd {
            Command::Help => Ok(CommandOutput::Text(commands::help_text())),
            Command::Sessions { .. }
            | Command::Users { .. }
            | Command::User { .. }
            | Command::Visitors { .. } => {
                if let Some(refusal) = self.require(tenant, actor, Permission::ReportsRead, word) {
                    return Ok(refusal);
                }
                // Reports include everything said before them.
                self.writer.flush().await?;
                let started = std::time::Instant::now();
                let (report, format) = match cmd {
                    Command::Sessions { channel, format } => {
                        let summary = summary_rows.filter(|_| format == Format::Text);
                        let (total, rows) = self
                            .store
                            .active_sessions(
                                tid,
                                channel.map(|c| c.as_str()),
                                self.config.idle_timeout(),
                                summary,
                            )
                            .await?;
                        let mut r = self.report(tid, now, None, total, ReportBody::Sessions(rows));
                        r.rows_in_full = summary.map(|_| total);
                        (r, format)
                    }
                    Command::Users {
                        since,
                        channel,
                        top,
                        format,
                    } => {
                        let since = since_of(since);
                        // A chat summary of everyone computes only the rows it shows.
                        let summary =
                            summary_rows.filter(|_| format == Format::Text && top.is_none());
                        let (total, rows) = self
                            .store
                            .users_report(tid, since, channel.map(|c| c.as_str()), top.or(summary))
                            .await?;
                        let mut r =
                            self.report(tid, now, Some(since), total, ReportBody::Users(rows));
                        r.rows_in_full = summary.map(|_| total);
                        (r, format)
                    }
                    Command::Visitors {
                        since,
                        channel,
                        format,
                    } => {
                        let since = since_of(since);
                        let summary = summary_rows.filter(|_| format == Format::Text);
                        // Whoever asks is being helped by this very command (recorded with
                        // its answer): not a visitor, even if it is the first thing they say.
                        let asker = match actor {
                            Actor::Person { person, .. } => Some(person.id),
                            _ => None,
                        };
                        let (mut total, mut rows) = self
                            .store
                            .visitors_report(
                                tid,
                                since,
                                channel.map(|c| c.as_str()),
                                summary.map(|n| n + 1),
                            )
                            .await?;
                        if let Some(i) = rows.iter().position(|r| Some(r.person.id) == asker) {
                            rows.remove(i);
                            total -= 1;
                        }
                        if let Some(n) = summary {
                            rows.truncate(n);
                        }
                        let mut r =
                            self.report(tid, now, Some(since), total, ReportBody::Visitors(rows));
                        r.rows_in_full = summary.map(|_| total);
                        (r, format)
                    }
                    Command::User {
                        who,
                        history,
                        format,
                    } => {
                        let Some(person) = self.store.find_person(tid, &who).await? else {
                            return Ok(no_match(tenant, &who));
                        };
                        let detail = self
                            .store
                            .user_detail(&person, history.unwrap_or(DEFAULT_HISTORY))
                            .await?;
                        (
                            self.report(tid, now, None, 1, ReportBody::User(Box::new(detail))),
                            format,
                        )
                    }
                    _ => unreachable!("report commands only"),
                };
                self.metrics.observe_report(started.elapsed());
                Ok(CommandOutput::Report(report, format))
            }
            Command::Roles { who, .. } => {
                let allowed = matches!(actor, Actor::Operator)
                    || matches!(actor, Actor::Person { roles, .. }
                        if tenant.roles.allows(roles, Permission::RolesManage) || tenant.roles.allows(roles, Permission::ReportsRead));
                if !allowed {
                    return Ok(self
                        .require(tenant, actor, Permission::RolesManage, word)
                        .unwrap_or_else(|| CommandOutput::Refused("Not allowed.".into())));
                }
                match who {
                    None => {
                        let mut s = format!("Roles of {}:\n", tenant.name);
                        for (role, perms) in tenant.roles.iter() {
                            let perms: Vec<&str> = perms.iter().map(|p| p.as_str()).collect();
                            s.push_str(&format!("  {role}: {}\n", perms.join(", ")));
                        }
                        Ok(CommandOutput::Text(s.trim_end().to_string()))
                    }
                    Some(who) => {
                        let Some(person) = self.store.find_person(tid, &who).await? else {
                            return Ok(no_match(tenant, &who));
                        };
                        let roles = self.store.roles_of(person.id).await?;
                        Ok(CommandOutput::Text(format!(
                            "{} has: {}",
                            person
                                .email
                                .clone()
                                .unwrap_or_else(|| format!("#{}", person.id)),
                            roles.join(", ")
                        )))
                    }
                }
            }
            Command::Grant { who, role } | Command::Revoke { who, role } => {
                let grant = word == "grant";
                if let Some(refusal) = self.require(tenant, actor, Permission::RolesManage, word) {
                    return Ok(refusal);
                }
                if !tenant.roles.exists(&role) {
                    let known: Vec<&str> = tenant.roles.iter().map(|(r, _)| r).collect();
                    return Ok(CommandOutput::Usage(format!(
                        "{} has no role `{role}` (roles: {}).",
                        tenant.name,
                        known.join(", ")
                    )));
                }
                let target = match self.store.find_person(tid, &who).await? {
                    Some(p) => p,
                    // Granting to an email nobody has used yet provisions that person.
                    None if grant && normalise_email(&who).is_some() => {
                        let email = normalise_email(&who).expect("checked");
                        let by = acting(actor, channel);
                        self.store
                            .import_person(tid, &email, None, tenant.kind_of(&email), &[], &by)
                            .await?;
                        match self.store.find_person(tid, &email).await? {
                            Some(p) => p,
                            None => {
                                return Ok(no_match(tenant, &who));
                            }
                        }
                    }
                    None => {
                        return Ok(no_match(tenant, &who));
                    }
                };
                if let Actor::Person { person, .. } = actor
                    && person.id == target.id
                {
                    return Ok(CommandOutput::Refused(
                        "You cannot change your own roles; ask another admin.".into(),
                    ));
                }
                let by = acting(actor, channel);
                let result = if grant {
                    self.store.grant_role(tid, &target, &role, &by).await?
                } else {
                    self.store.revoke_role(tid, &target, &role, &by).await?
                };
                let label = crate::store::people::label_of(&target);
                Ok(match result {
                    Ok(()) => {
                        // Anyone this process remembers as that person is looked up afresh.
                        self.forget_speakers();
                        let roles = self.store.roles_of(target.id).await?;
                        CommandOutput::Text(format!(
                            "{} the role {role} {} {label}, who now has: {}.",
                            if grant { "Gave" } else { "Took" },
                            if grant { "to" } else { "from" },
                            roles.join(", ")
                        ))
                    }
                    Err(refusal) => CommandOutput::Refused(format!("Not changed: {refusal}.")),
                })
            }
            Command::Export { who } => {
                if let Some(refusal) = self.require(tenant, actor, Permission::UsersExport, word) {
                    return Ok(refusal);
                }
                let Some(target) = self.store.find_person(tid, &who).await? else {
                    return Ok(no_match(tenant, &who));
                };
                self.writer.flush().await?;
                Ok(CommandOutput::Export(
                    self.store.export_person(tid, &target).await?,
                ))
            }
            Command::Forget { who } => {
                // The command line confirms before it gets here; chat asks first (ask_erase).
                if let Some(refusal) = self.require(tenant, actor, Permission::UsersErase, word) {
                    return Ok(refusal);
                }
                let Some(target) = self.store.find_person(tid, &who).await? else {
                    return Ok(no_match(tenant, &who));
                };
                self.writer.flush().await?;
                self.erase(tenant, actor, channel, &target).await
            }
            Command::Audit { since, format } => {
                if let Some(refusal) = self.require(tenant, actor, Permission::RolesManage, word) {
                    return Ok(refusal);
                }
                let since = since_of(since);
                let rows = self.store.audit_entries(tid, since).await?;
                Ok(CommandOutput::Audit(crate::reports::audit_text(
                    tid, now, since, &rows, format,
                )))
            }
            Command::Takeover { .. } | Command::Release => Ok(CommandOutput::Text(format!(
                "/koji {word} works inside a conversation: an operator types it in chat (Slack, Teams, Discord, the portal or `koji chat --as EMAIL`)."
            ))),
        }
    }

    fn report(
        &self,
        tenant: &str,
        now: i64,
        since: Option<i64>,
        total: u64,
        body: ReportBody,
    ) -> Report {
        Report {
            tenant: tenant.to_string(),
            generated_at: now,
            since,
            total,
            body,
            rows_in_full: None,
        }
    }

    /// Ends idle sessions in the database; `koji serve` calls it every minute.
    pub async fn sweep_idle_sessions(&self) -> Result<u64, StoreError> {
        self.store
            .expire_idle_sessions(self.config.idle_timeout())
            .await
    }

    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout()
    }
}

fn private(text: impl Into<String>) -> Reply {
    Reply {
        text: text.into(),
        attachments: Vec::new(),
        private: true,
    }
}

#[async_trait::async_trait]
impl koji_channel::Conversation for Core {
    async fn handle(&self, message: Inbound) -> Result<Outcome, ConversationError> {
        Core::handle(self, message).await
    }
}
