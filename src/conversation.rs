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
    BatchWriter, Direction, MessageRow, PersonSeed, SessionStart, Store, StoreError, WriteOutcome,
};
use koji_channel::{Attachment, ConversationError, Inbound, Outcome, Reply, TenantHint};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

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
            config: config.clone(),
        }
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
    pub fn initial_roles(&self, email: &str) -> Vec<String> {
        let mut roles = vec!["customer".to_string()];
        if self.admin_emails.contains(email) {
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
}

/// Tenant, channel, the channel's user id.
type SpeakerKey = (Arc<str>, Channel, String);

#[derive(Clone)]
struct Speaking {
    identity_id: i64,
    person: Option<PersonRef>,
    auth_method: AuthMethod,
    session_id: i64,
    last_at: i64,
    checked_at: i64,
}

pub struct Core {
    pub config: Arc<Config>,
    pub store: Store,
    writer: BatchWriter,
    nlu: Nlu,
    tenants: HashMap<String, TenantRuntime>,
    tenant_order: Vec<String>,
    speakers: Mutex<HashMap<SpeakerKey, Speaking>>,
    pub metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
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
                Ok(Ok(_)) => {
                    metrics
                        .messages_out
                        .fetch_add(replies.len() as u64, Relaxed);
                    Ok(Outcome::Replies(replies))
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
        let tenants: HashMap<String, TenantRuntime> = config
            .tenants
            .iter()
            .map(|t| (t.id.clone(), TenantRuntime::new(t)))
            .collect();
        let list: Vec<(String, String)> = config
            .tenants
            .iter()
            .map(|t| (t.id.clone(), tenants[&t.id].name.clone()))
            .collect();
        store.sync_tenants(&list).await?;
        for t in tenants.values() {
            let admins: Vec<String> = t.admin_emails.iter().cloned().collect();
            store.grant_by_email(&t.config.id, &admins, "admin").await?;
        }
        let (writer, task) = BatchWriter::start(store.pool().clone(), config.database.batch_max);
        let core = Core {
            nlu: Nlu::new(&config.intents, &config.entities),
            tenant_order: config.tenants.iter().map(|t| t.id.clone()).collect(),
            tenants,
            speakers: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            clock: store.clock(),
            writer,
            store,
            config,
        };
        Ok((Arc::new(core), task))
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantRuntime> {
        self.tenants.get(id)
    }

    /// The tenant a hint points at.
    pub fn resolve_tenant(&self, hint: &TenantHint) -> Result<&TenantRuntime, ConversationError> {
        let unknown = |what: String| ConversationError::UnknownTenant(what);
        let find = |f: &dyn Fn(&TenantConfig) -> bool, what: String| {
            self.tenant_order
                .iter()
                .map(|id| &self.tenants[id])
                .find(|t| f(&t.config))
                .ok_or_else(|| unknown(what))
        };
        match hint {
            TenantHint::Id(id) => self
                .tenants
                .get(id)
                .ok_or_else(|| unknown(format!("tenant `{id}`"))),
            TenantHint::Default => Ok(&self.tenants[&self.tenant_order[0]]),
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
                self.tenants
                    .get(&portal.tenant)
                    .ok_or_else(|| unknown(format!("portal `{p}`")))
            }
        }
    }

    /// The tenant for the command line: `--tenant`, or the only one configured.
    pub fn cli_tenant(&self, flag: Option<&str>) -> Result<&TenantRuntime, String> {
        match flag {
            Some(id) => self.tenants.get(id).ok_or_else(|| {
                format!(
                    "no tenant `{id}` (configured: {})",
                    self.tenant_order.join(", ")
                )
            }),
            None if self.tenant_order.len() == 1 => Ok(&self.tenants[&self.tenant_order[0]]),
            None => Err(format!(
                "several tenants are configured ({}): say which with --tenant ID",
                self.tenant_order.join(", ")
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
        let tenant = self.resolve_tenant(&msg.tenant)?;
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
        if claimed {
            // The platform may deliver it again: claim its id (durably, with the inbound
            // message) before doing anything a retry must not do twice.
            match self.writer.write(vec![inbound.clone()], true).await {
                Ok(WriteOutcome::Duplicate) => {
                    self.metrics.duplicates.fetch_add(1, Relaxed);
                    return Ok(Pending {
                        state: PendingState::Ready(Ok(Outcome::Duplicate)),
                    });
                }
                Ok(WriteOutcome::Committed) => {}
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
        if !claimed {
            rows.push(inbound);
        }
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
        let rx = self
            .writer
            .enqueue(rows, false)
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
        let seed = email.as_ref().map(|e| PersonSeed {
            email: e.clone(),
            name: msg.speaker.display_name.clone(),
            kind: tenant.kind_of(e),
            roles: tenant.initial_roles(e),
            locale: msg.speaker.locale.clone(),
            time_zone: msg.speaker.time_zone.clone(),
        });
        let method = if seed.is_some() {
            msg.speaker.auth_method
        } else {
            AuthMethod::Anonymous
        };
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
        let s = Speaking {
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
        if let Some(words) = command_text(&msg.text) {
            return vec![self.chat_command(tenant, speaking, words).await];
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
                let hint = match msg.channel {
                    Channel::Console => {
                        "Start the chat with `koji chat --as EMAIL` so I know who you are."
                    }
                    _ => "Please sign in so I can help you.",
                };
                return vec![(
                    Reply::text(format!("I don't know who you are yet. {hint}")),
                    vec!["auth_offered".to_string()],
                )];
            }
            _ => {
                let about: Vec<&str> = u.entities.iter().map(|e| e.value.as_str()).collect();
                if about.is_empty() {
                    "I couldn't find an answer to that. Could you tell me more — which product, and any error message you see?"
                        .to_string()
                } else {
                    format!(
                        "I couldn't find an answer about {} yet. Could you tell me more about what you were doing when it happened?",
                        about.join(", ")
                    )
                }
            }
        };
        vec![(Reply::text(text), Vec::new())]
    }

    async fn chat_command(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        words: &str,
    ) -> (Reply, Vec<String>) {
        let actor = match &speaking.person {
            None => Actor::Anonymous,
            Some(p) => match self.store.roles_of(p.id).await {
                Ok(roles) => Actor::Person {
                    person: p.clone(),
                    roles,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "roles unavailable");
                    return (
                        private(
                            "Sorry, I can't check your permissions right now. Please try again.",
                        ),
                        vec![],
                    );
                }
            },
        };
        let parsed = commands::parse(words);
        let word = parsed.as_ref().map(|c| c.word()).unwrap_or("help");
        let out = match parsed {
            Ok(cmd) => self.run_command(tenant, &actor, cmd).await,
            Err(e) => CommandOutput::Usage(e.to_string()),
        };
        match out {
            CommandOutput::Report(report, format) => {
                let mut reply = match format {
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
                        let mut r = private(format!("```{ext}\n{}\n```", content.trim_end()));
                        r.attachments.push(Attachment::Document {
                            filename: format!("koji-{}.{ext}", report.name()),
                            media_type: media.to_string(),
                            content,
                        });
                        r
                    }
                };
                reply.private = true;
                (reply, vec![format!("command.{word}")])
            }
            CommandOutput::Text(t) => (private(t), vec![format!("command.{word}")]),
            CommandOutput::Refused(t) | CommandOutput::Usage(t) | CommandOutput::NotFound(t) => {
                (private(t), vec![])
            }
        }
    }

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
        cmd: Command,
    ) -> CommandOutput {
        match self.try_command(tenant, actor, cmd).await {
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
        cmd: Command,
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
                        let rows = self
                            .store
                            .active_sessions(
                                tid,
                                channel.map(|c| c.as_str()),
                                self.config.idle_timeout(),
                            )
                            .await?;
                        (
                            self.report(
                                tid,
                                now,
                                None,
                                rows.len() as u64,
                                ReportBody::Sessions(rows),
                            ),
                            format,
                        )
                    }
                    Command::Users {
                        since,
                        channel,
                        top,
                        format,
                    } => {
                        let since = since_of(since);
                        let (total, rows) = self
                            .store
                            .users_report(tid, since, channel.map(|c| c.as_str()), top)
                            .await?;
                        (
                            self.report(tid, now, Some(since), total, ReportBody::Users(rows)),
                            format,
                        )
                    }
                    Command::Visitors {
                        since,
                        channel,
                        format,
                    } => {
                        let since = since_of(since);
                        let rows = self
                            .store
                            .visitors_report(tid, since, channel.map(|c| c.as_str()))
                            .await?;
                        (
                            self.report(
                                tid,
                                now,
                                Some(since),
                                rows.len() as u64,
                                ReportBody::Visitors(rows),
                            ),
                            format,
                        )
                    }
                    Command::User {
                        who,
                        history,
                        format,
                    } => {
                        let Some(person) = self.store.find_person(tid, &who).await? else {
                            return Ok(CommandOutput::NotFound(format!(
                                "No one in {} matches `{who}`.",
                                tenant.name
                            )));
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
                            return Ok(CommandOutput::NotFound(format!(
                                "No one in {} matches `{who}`.",
                                tenant.name
                            )));
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
            other => Ok(CommandOutput::Text(format!(
                "/koji {} is not available in this version of Koji yet.",
                other.word()
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
