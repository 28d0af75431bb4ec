//! Portal sessions (SPEC §3, §6): a browser starts a session and gets a token valid for
//! that session only; on a portal with anonymous access the visitor gives a contact email
//! before anything else. The HTTP side lives in `adapters/portal`; the rules live here.

use crate::conversation::{ConvState, Core};
use crate::domain::{AuthMethod, Channel};
use crate::store::{Direction, MessageRow, SessionStart, StoreError, new_token};
use koji_channel::{
    Client, Inbound, Outcome, PortalError, PortalInfo, PortalPort, PortalStart, Reply, Speaker,
    TenantHint,
};
use std::sync::Arc;

fn unavailable(e: StoreError) -> PortalError {
    PortalError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl PortalPort for Core {
    fn portal(&self, id: &str) -> Option<PortalInfo> {
        self.config
            .portals
            .iter()
            .find(|p| p.id == id)
            .map(|p| PortalInfo {
                id: p.id.clone(),
                title: p.title.clone().unwrap_or_else(|| {
                    let tenant = self
                        .tenant(&p.tenant)
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    format!("{tenant} help desk")
                }),
                anonymous_access: p.anonymous_access,
            })
    }

    async fn start(&self, portal: &str, client: Client) -> Result<PortalStart, PortalError> {
        let info = self.portal(portal).ok_or(PortalError::UnknownPortal)?;
        let tenant = self
            .resolve_tenant(&TenantHint::Portal(portal.to_string()))
            .map_err(|_| PortalError::UnknownPortal)?;
        let tid = tenant.config.id.clone();
        let visitor = format!("visitor-{}", &new_token()[..24]);
        let resolved = self
            .store
            .resolve_identity(
                &tid,
                Channel::Portal,
                &visitor,
                None,
                AuthMethod::Anonymous,
                None,
            )
            .await
            .map_err(unavailable)?;
        let session = self
            .store
            .touch_or_start_session(
                &SessionStart {
                    tenant_id: &tid,
                    identity_id: resolved.identity_id,
                    person_id: None,
                    channel: Channel::Portal,
                    auth_method: AuthMethod::Anonymous,
                    login_id: &visitor,
                    ip: client.ip.as_deref(),
                    user_agent: client.user_agent.as_deref(),
                },
                self.idle_timeout(),
            )
            .await
            .map_err(unavailable)?;
        let token = session
            .new_token
            .ok_or_else(|| PortalError::Unavailable("no new session".into()))?;
        let greeting = if info.anonymous_access {
            format!(
                "Hello! Welcome to the {}. Before we start, what is your email address?",
                info.title
            )
        } else {
            format!(
                "Hello! The {} is for people we know. What is your email address? We'll send you a one-time code.",
                info.title
            )
        };
        let state = ConvState::AwaitingEmail {
            known_only: !info.anonymous_access,
        };
        let probe = Inbound {
            channel: Channel::Portal,
            tenant: TenantHint::Id(tid.clone()),
            speaker: speaker(&visitor),
            platform_message_id: None,
            text: String::new(),
            ip: None,
            user_agent: None,
        };
        self.set_state(&tid, &probe, resolved.identity_id, Some(state))
            .await
            .map_err(unavailable)?;
        let row = MessageRow {
            tenant_id: Arc::from(tid.as_str()),
            session_id: session.id,
            person_id: None,
            identity_id: resolved.identity_id,
            channel: Channel::Portal,
            direction: Direction::Out,
            text: greeting.clone(),
            intent: None,
            specific: false,
            entities: Vec::new(),
            actions: vec!["auth_offered".into()],
            platform_msg_id: None,
            at: self.now(),
        };
        self.writer()
            .write(vec![row], false)
            .await
            .map_err(unavailable)?;
        Ok(PortalStart {
            token,
            messages: vec![Reply::text(greeting)],
        })
    }

    async fn say(
        &self,
        portal: &str,
        token: &str,
        text: String,
        client: Client,
    ) -> Result<Vec<Reply>, PortalError> {
        let (tid, session) = self.portal_session(portal, token).await?;
        let msg = Inbound {
            channel: Channel::Portal,
            tenant: TenantHint::Id(tid),
            speaker: speaker(&session.external_id),
            platform_message_id: None,
            text,
            ip: client.ip,
            user_agent: client.user_agent,
        };
        match self.handle(msg).await {
            Ok(Outcome::Replies(r)) => Ok(r),
            Ok(Outcome::Duplicate) => Ok(Vec::new()),
            Err(e) => Err(PortalError::Unavailable(e.to_string())),
        }
    }

    async fn end(&self, portal: &str, token: &str) -> Result<(), PortalError> {
        let (tid, session) = self.portal_session(portal, token).await?;
        self.store
            .end_session(session.session_id, self.now(), "logout")
            .await
            .map_err(unavailable)?;
        let probe = Inbound {
            channel: Channel::Portal,
            tenant: TenantHint::Id(tid.clone()),
            speaker: speaker(&session.external_id),
            platform_message_id: None,
            text: String::new(),
            ip: None,
            user_agent: None,
        };
        self.forget_speaker(&tid, &probe);
        Ok(())
    }
}

impl Core {
    /// The live session a portal token belongs to; anything else is unauthorised.
    async fn portal_session(
        &self,
        portal: &str,
        token: &str,
    ) -> Result<(String, crate::store::TokenSession), PortalError> {
        self.portal(portal).ok_or(PortalError::UnknownPortal)?;
        let tenant = self
            .resolve_tenant(&TenantHint::Portal(portal.to_string()))
            .map_err(|_| PortalError::UnknownPortal)?;
        let tid = tenant.config.id.clone();
        if token.is_empty() {
            return Err(PortalError::Unauthorized);
        }
        let Some(session) = self
            .store
            .session_by_token(token)
            .await
            .map_err(unavailable)?
        else {
            return Err(PortalError::Unauthorized);
        };
        if session.ended || session.tenant_id != tid || session.channel != Channel::Portal.as_str()
        {
            return Err(PortalError::Unauthorized);
        }
        let idle = self.idle_timeout().as_micros() as i64;
        let last = session.last_interaction_at;
        if self.now() - last > idle {
            self.store
                .end_session(session.session_id, last + idle, "idle")
                .await
                .map_err(unavailable)?;
            return Err(PortalError::Unauthorized);
        }
        Ok((tid, session))
    }
}

fn speaker(external_id: &str) -> Speaker {
    Speaker {
        external_id: external_id.to_string(),
        display_name: None,
        verified_email: None,
        auth_method: AuthMethod::Anonymous,
        locale: None,
        time_zone: None,
    }
}
