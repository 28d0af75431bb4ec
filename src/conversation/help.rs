//! The help itself: knowledge-base answers with "did this help?", requests (create with a
//! confirmation, status for the reporter or an operator), handoff to a human, and the relay
//! between a person and the operator who took their conversation over.

use super::{Actor, ConvState, Core, Speaking, TenantRuntime, private};
use crate::helpdesk::{Article, HelpDeskError, NewRequest};
use crate::roles::Permission;
use crate::store::helpdesk::Relay;
use koji_channel::{Attachment, Button, Inbound, Reply};

/// Articles shown for one question.
const KB_ANSWERS: usize = 3;

type Routed = (Reply, Vec<String>);

fn buttons(pairs: &[(&str, &str)]) -> Attachment {
    Attachment::Buttons {
        buttons: pairs
            .iter()
            .map(|(label, value)| Button {
                label: label.to_string(),
                value: value.to_string(),
            })
            .collect(),
    }
}

fn with(mut r: Reply, a: Attachment) -> Reply {
    r.attachments.push(a);
    r
}

/// A yes or a no, typed or pressed.
pub(super) fn yes_no(text: &str) -> Option<bool> {
    let t = text
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .to_ascii_lowercase();
    let t = t.as_str();
    const YES: &[&str] = &[
        "yes",
        "y",
        "yeah",
        "yep",
        "yup",
        "sure",
        "ok",
        "okay",
        "please",
        "yes please",
        "confirm",
        "create it",
        "do it",
        "go ahead",
        "yes, that helped",
        "that helped",
        "it helped",
        "helpful",
    ];
    const NO: &[&str] = &[
        "no",
        "n",
        "nope",
        "nah",
        "cancel",
        "no thanks",
        "no, thanks",
        "don't",
        "dont",
        "not really",
        "no, it didn't",
        "it didn't",
        "didn't help",
        "not helpful",
    ];
    if YES.contains(&t) {
        Some(true)
    } else if NO.contains(&t) {
        Some(false)
    } else {
        None
    }
}

/// What a request should say, from "create a request: my monitor flickers" or
/// "I need a new laptop". Empty when the person only asked to create one.
pub(super) fn request_summary(text: &str) -> String {
    static PREFIX: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)^\s*(please\s+)?((can|could|would) you\s+|i want to\s+|i'?d like to\s+)?(create|open|raise|file|log|submit|make)\s+(me\s+)?(a|an|the)?\s*(new\s+)?(service\s+)?(request|ticket|case|incident)\s*(for|about|to|that says|saying|:|-)?\s*",
        )
        .expect("regex")
    });
    let rest = PREFIX.replace(text.trim(), "");
    let rest = rest.trim().trim_end_matches(['.', '!', '?']).trim();
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
        None => String::new(),
    }
}

fn helpdesk_trouble(e: &HelpDeskError) -> String {
    match e {
        HelpDeskError::RateLimited { retry_after_secs } => format!(
            "The help desk is busy right now. Please try again in {} minute(s).",
            retry_after_secs.div_ceil(60).max(1)
        ),
        HelpDeskError::Invalid(why) => format!("The help desk refused that: {why}"),
        HelpDeskError::Unauthorized | HelpDeskError::Unavailable(_) => {
            "Sorry, the help desk is unavailable right now. Please try again in a few minutes, or contact the service desk directly.".into()
        }
    }
}

impl Core {
    /// Whether the speaker may use the help desk (`helpdesk.use`), with their actor.
    async fn helpdesk_actor(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
    ) -> Result<Actor, Routed> {
        let actor = self.actor_of(speaking).await.map_err(|r| (r, vec![]))?;
        let ok = match &actor {
            Actor::Operator => true,
            Actor::Anonymous => false,
            Actor::Person { roles, .. } => tenant.roles.allows(roles, Permission::HelpdeskUse),
        };
        if ok {
            Ok(actor)
        } else {
            Err((
                Reply::text(format!(
                    "Your roles in {} don't include the help desk (helpdesk.use). Ask an admin if you should have it.",
                    tenant.name
                )),
                vec![],
            ))
        }
    }

    /// A question: the best articles, or an offer to open a request.
    pub(super) async fn answer_question(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
    ) -> Routed {
        if let Err(refusal) = self.helpdesk_actor(tenant, speaking).await {
            return refusal;
        }
        let tid = tenant.config.id.as_str();
        let question = msg.text.trim().to_string();
        let found = self.helpdesk.search(tid, &question, KB_ANSWERS).await;
        let articles = match found {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "knowledge base search failed");
                return (Reply::text(helpdesk_trouble(&e)), vec![]);
            }
        };
        if articles.is_empty() {
            let state = ConvState::ConfirmRequest {
                summary: question.clone(),
                description: question,
            };
            self.keep_state(tid, msg, speaking, state);
            let r = Reply::text(
                "I couldn't find an article about that. Shall I create a request so the service desk can help? (yes/no)",
            );
            return (
                with(
                    r,
                    buttons(&[("Create a request", "yes"), ("No thanks", "no")]),
                ),
                vec![],
            );
        }
        let state = ConvState::KbFeedback {
            question,
            articles: articles.iter().map(|a| a.id.clone()).collect(),
        };
        self.keep_state(tid, msg, speaking, state);
        let r = Reply::text(format!("{}\nDid this help? (yes/no)", list(&articles)));
        (
            with(r, buttons(&[("Yes, that helped", "yes"), ("No", "no")])),
            vec!["kb_answer".into()],
        )
    }

    /// "Did this help?" answered.
    pub(super) async fn kb_feedback(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        helped: bool,
        question: String,
    ) -> Routed {
        if helped {
            return (
                Reply::text("Glad that helped! Anything else?"),
                vec!["button".into()],
            );
        }
        let state = ConvState::ConfirmRequest {
            summary: question.clone(),
            description: question,
        };
        self.keep_state(tenant.config.id.as_str(), msg, speaking, state);
        (
            with(
                Reply::text(
                    "Sorry about that. Shall I create a request so someone from the service desk can help? (yes/no)",
                ),
                buttons(&[("Create a request", "yes"), ("No thanks", "no")]),
            ),
            vec!["button".into()],
        )
    }

    /// "Create a request …" / "I need a new laptop": ask to confirm first.
    pub(super) async fn propose_request(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
    ) -> Routed {
        if let Err(refusal) = self.helpdesk_actor(tenant, speaking).await {
            return refusal;
        }
        let tid = tenant.config.id.as_str();
        let summary = request_summary(&msg.text);
        if summary.is_empty() {
            self.keep_state(tid, msg, speaking, ConvState::AwaitingRequestSummary);
            return (
                Reply::text(
                    "Sure. What should the request say? Describe what you need in one message.",
                ),
                vec![],
            );
        }
        self.confirm_request(tenant, speaking, msg, summary, msg.text.trim().to_string())
            .await
    }

    pub(super) async fn confirm_request(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        summary: String,
        description: String,
    ) -> Routed {
        let text = format!("I'll create a request: \"{summary}\". Shall I go ahead? (yes/no)");
        self.keep_state(
            tenant.config.id.as_str(),
            msg,
            speaking,
            ConvState::ConfirmRequest {
                summary,
                description,
            },
        );
        (
            with(
                Reply::text(text),
                buttons(&[("Create it", "yes"), ("Cancel", "no")]),
            ),
            vec![],
        )
    }

    /// The confirmation said yes: open the request.
    pub(super) async fn create_request(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        summary: String,
        description: String,
    ) -> Routed {
        let Some(person) = speaking.person.clone() else {
            return (Reply::text("Please sign in first."), vec![]);
        };
        let new = NewRequest {
            tenant_id: tenant.config.id.clone(),
            summary: summary.chars().take(250).collect(),
            description,
            reporter: person,
        };
        match self.helpdesk.create_request(new).await {
            Ok(r) => {
                let link = r.url.map(|u| format!("\n{u}")).unwrap_or_default();
                (
                    Reply::text(format!(
                        "Created {}: {} (status: {}). The service desk will pick it up; ask \"status of {}\" any time.{link}",
                        r.key, r.summary, r.status, r.key
                    )),
                    vec!["request_created".into()],
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "request not created");
                (
                    Reply::text(format!("{} Nothing was created.", helpdesk_trouble(&e))),
                    vec![],
                )
            }
        }
    }

    /// "status of REQ-12": only the reporter or someone who may take conversations over sees it.
    pub(super) async fn request_status(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        key: &str,
    ) -> Routed {
        let actor = match self.helpdesk_actor(tenant, speaking).await {
            Ok(a) => a,
            Err(refusal) => return refusal,
        };
        let not_yours = || {
            (
                Reply::text(format!(
                    "I couldn't find a request {key} that you reported. Check the key, or ask \"create a request\" to open one."
                )),
                vec![],
            )
        };
        let found = match self.helpdesk.request(&tenant.config.id, key).await {
            Ok(Some(r)) => r,
            Ok(None) => return not_yours(),
            Err(e) => {
                tracing::warn!(error = %e, "request status failed");
                return (Reply::text(helpdesk_trouble(&e)), vec![]);
            }
        };
        let allowed = match &actor {
            Actor::Operator => true,
            Actor::Anonymous => false,
            Actor::Person { person, roles } => {
                tenant
                    .roles
                    .allows(roles, Permission::ConversationsTakeover)
                    || found.reporter_person_id == Some(person.id)
                    || matches!((&found.reporter_email, &person.email),
                        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
            }
        };
        if !allowed {
            return not_yours();
        }
        let mut text = format!("{} — {}: {}", found.key, found.summary, found.status);
        if let Some((author, comment)) = found.comments.last() {
            text.push_str(&format!("\nLatest comment from {author}: {comment}"));
        }
        if let Some(url) = &found.url {
            text.push_str(&format!("\n{url}"));
        }
        (Reply::text(text), vec!["request_status".into()])
    }

    /// "Talk to a human": the conversation is marked for an operator.
    pub(super) async fn ask_for_human(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
    ) -> Routed {
        match self
            .store
            .request_handoff(
                &tenant.config.id,
                speaking.person.as_ref().map(|p| p.id),
                speaking.identity_id,
            )
            .await
        {
            Ok(_) => (
                Reply::text(
                    "I've asked for a human agent to join this conversation. An operator will answer you here; meanwhile I'm still happy to help.",
                ),
                vec!["handoff".into()],
            ),
            Err(e) => {
                tracing::warn!(error = %e, "handoff not recorded");
                (
                    Reply::text(
                        "Sorry, I couldn't reach the service desk right now. Please try again.",
                    ),
                    vec![],
                )
            }
        }
    }

    /// `/koji takeover WHO`: the operator answers WHO from now on.
    pub(super) async fn take_over(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        who: &str,
    ) -> Routed {
        let actor = match self.actor_of(speaking).await {
            Ok(a) => a,
            Err(r) => return (r, vec![]),
        };
        if let Some(refusal) = self.require(
            tenant,
            &actor,
            Permission::ConversationsTakeover,
            "takeover",
        ) {
            return super::render_output(refusal, "takeover");
        }
        let Actor::Person {
            person: operator, ..
        } = &actor
        else {
            return (private("Only a signed-in operator can take over."), vec![]);
        };
        let tid = tenant.config.id.as_str();
        let target = match self.store.find_person(tid, who).await {
            Ok(Some(p)) => p,
            Ok(None) => return super::render_output(super::no_match(tenant, who), "takeover"),
            Err(e) => return super::render_output(super::unavailable_output(e), "takeover"),
        };
        if target.id == operator.id {
            return (
                private("You can't take over your own conversation."),
                vec![],
            );
        }
        let label = crate::store::people::label_of(&target);
        match self
            .store
            .take_over(tid, target.id, operator.id, speaking.identity_id)
            .await
        {
            Ok(Ok(identity)) => {
                let who_joined = operator
                    .name
                    .clone()
                    .or_else(|| operator.email.clone())
                    .unwrap_or_else(|| "An agent".into());
                let joined = format!(
                    "{who_joined} from the service desk has joined the conversation and will answer you here."
                );
                if let Err(e) = self.store.queue_relay(tid, identity, &joined).await {
                    tracing::warn!(error = %e, "takeover notice not queued");
                }
                self.forget_speakers();
                (
                    private(format!(
                        "You're now answering {label}. What you type here goes to them; their messages come to you. /koji release hands them back to Koji."
                    )),
                    vec!["handoff".into(), "command.takeover".into()],
                )
            }
            Ok(Err(reason)) => (
                private(format!("Can't take over {label}: {reason}.")),
                vec![],
            ),
            Err(e) => super::render_output(super::unavailable_output(e), "takeover"),
        }
    }

    /// `/koji takeover` without WHO: the people who asked for a human and wait, oldest
    /// first, each with a button that takes their conversation over.
    pub(super) async fn waiting_for_humans(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
    ) -> Routed {
        let actor = match self.actor_of(speaking).await {
            Ok(a) => a,
            Err(r) => return (r, vec![]),
        };
        if let Some(refusal) = self.require(
            tenant,
            &actor,
            Permission::ConversationsTakeover,
            "takeover",
        ) {
            return super::render_output(refusal, "takeover");
        }
        let waiting = match self.store.waiting_handoffs(&tenant.config.id).await {
            Ok(w) => w,
            Err(e) => return super::render_output(super::unavailable_output(e), "takeover"),
        };
        if waiting.is_empty() {
            return (
                private(
                    "Nobody is waiting for a human right now. /koji takeover WHO answers someone anyway.",
                ),
                vec!["command.takeover".into()],
            );
        }
        let now = self.now();
        let mut text = format!("Waiting for a human ({}), oldest first:", waiting.len());
        for (who, since) in &waiting {
            let minutes = (now - since).max(0) / 60_000_000;
            text.push_str(&format!("\n- {who} (for {minutes} min)"));
        }
        text.push_str("\nAnswer one with /koji takeover WHO.");
        let buttons: Vec<(String, String)> = waiting
            .iter()
            .take(5)
            .map(|(who, _)| (format!("Take over {who}"), format!("/koji takeover {who}")))
            .collect();
        let pairs: Vec<(&str, &str)> = buttons
            .iter()
            .map(|(l, v)| (l.as_str(), v.as_str()))
            .collect();
        (
            with(private(text), super::help::buttons(&pairs)),
            vec!["command.takeover".into()],
        )
    }

    /// `/koji release`: Koji answers the person again.
    pub(super) async fn release(&self, tenant: &TenantRuntime, speaking: &Speaking) -> Routed {
        let actor = match self.actor_of(speaking).await {
            Ok(a) => a,
            Err(r) => return (r, vec![]),
        };
        if let Some(refusal) =
            self.require(tenant, &actor, Permission::ConversationsTakeover, "release")
        {
            return super::render_output(refusal, "release");
        }
        match self.store.release(speaking.identity_id).await {
            Ok(Some((identity, label))) => {
                let back = "The agent has left the conversation; Koji is back. Ask me anything.";
                if let Err(e) = self
                    .store
                    .queue_relay(&tenant.config.id, identity, back)
                    .await
                {
                    tracing::warn!(error = %e, "release notice not queued");
                }
                self.forget_speakers();
                (
                    private(format!("Released {label}: Koji answers them again.")),
                    vec!["handoff".into(), "command.release".into()],
                )
            }
            Ok(None) => (
                private("You aren't answering anyone. /koji takeover WHO starts."),
                vec![],
            ),
            Err(e) => super::render_output(super::unavailable_output(e), "release"),
        }
    }

    /// A message inside a takeover goes to the other side; it is recorded in the sender's
    /// conversation and delivered with the recipient's next exchange.
    pub(super) async fn relay(
        &self,
        tenant: &TenantRuntime,
        speaking: &Speaking,
        msg: &Inbound,
        relay: &Relay,
    ) -> Vec<Routed> {
        let tid = tenant.config.id.as_str();
        let (to, text, ack) = match relay {
            Relay::Person {
                operator_identity_id,
                ..
            } => {
                let from = speaking
                    .person
                    .as_ref()
                    .map(crate::store::people::label_of)
                    .unwrap_or_else(|| "visitor".into());
                (
                    *operator_identity_id,
                    format!("{from}: {}", msg.text.trim()),
                    None,
                )
            }
            Relay::Operator {
                identity_id, label, ..
            } => (
                *identity_id,
                msg.text.trim().to_string(),
                Some(format!("(sent to {label})")),
            ),
        };
        let mut out = Vec::new();
        if let Err(e) = self.store.queue_relay(tid, to, &text).await {
            tracing::warn!(error = %e, "relay not queued");
            out.push((
                private("Sorry, that message could not be passed on. Please try again."),
                vec![],
            ));
            return out;
        }
        if let Some(ack) = ack {
            out.push((private(ack), vec!["handoff".into()]));
        }
        out
    }

    /// Messages relayed to this identity since its last exchange, as replies.
    pub(super) async fn relayed(&self, speaking: &Speaking) -> Vec<Routed> {
        match self.store.take_relayed(speaking.identity_id).await {
            Ok(texts) => texts
                .into_iter()
                .map(|t| (Reply::text(t), vec![]))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "relayed messages not read");
                Vec::new()
            }
        }
    }

    /// Keeps a soft state (feedback, request confirmation); it commits with this exchange.
    fn keep_state(&self, tid: &str, msg: &Inbound, speaking: &Speaking, state: ConvState) {
        self.defer_state(tid, msg, speaking, Some(state));
    }
}

/// The articles as a numbered plain-text list.
fn list(articles: &[Article]) -> String {
    let mut s = String::from("Here's what I found:");
    for (i, a) in articles.iter().enumerate() {
        s.push_str(&format!("\n{}. {}", i + 1, a.title));
        if !a.excerpt.is_empty() {
            s.push_str(&format!(" — {}", a.excerpt));
        }
        if let Some(url) = &a.url {
            s.push_str(&format!("\n   {url}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_summaries() {
        let cases = [
            ("I need a new laptop", "I need a new laptop"),
            (
                "create a request: my monitor flickers.",
                "My monitor flickers",
            ),
            ("Please open a ticket for a new headset", "A new headset"),
            ("create a request", ""),
            (
                "Could you raise a new request about VPN access?",
                "VPN access",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(request_summary(text), want, "{text}");
        }
    }

    #[test]
    fn yes_and_no() {
        for t in ["yes", "Yes!", "yes please", "ok", "Yes, that helped"] {
            assert_eq!(yes_no(t), Some(true), "{t}");
        }
        for t in ["no", "No.", "cancel", "no thanks", "not really"] {
            assert_eq!(yes_no(t), Some(false), "{t}");
        }
        for t in ["how do I reset my password", "maybe later"] {
            assert_eq!(yes_no(t), None, "{t}");
        }
    }
}
