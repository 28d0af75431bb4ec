//! The core's side of the Slack channel ([`koji_slack::SlackPort`]): which tenant a team
//! belongs to, the install (a new tenant when no configured one binds the team, the
//! installer made `admin`, the bot token encrypted at rest with `slack.encryption_key`),
//! and the token to act in a team. The HTTP and Block Kit side is `adapters/slack`.
//!
//! Invariant: a bot token is written to the database only encrypted (ChaCha20-Poly1305,
//! key derived from `slack.encryption_key`), and never logged.

use crate::config::TenantConfig;
use crate::conversation::{Core, TenantRuntime};
use crate::domain::{PersonKind, normalise_email};
use crate::store::slack::{InstallState, Installer, SlackInstall};
use crate::store::{StoreError, new_token};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use koji_channel::{ConversationError, TenantHint};
use koji_slack::{Install, Installed, PortError, SlackPort, StateCheck, TeamAccess};
use sha2::{Digest, Sha256};

/// How long an install link stays valid.
const INSTALL_STATE_MICROS: i64 = 10 * 60 * 1_000_000;

fn unavailable(e: StoreError) -> PortError {
    PortError::Unavailable(e.to_string())
}

/// The AEAD key: SHA-256 of the configured secret (any length or format works).
fn cipher(secret: &str) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"koji slack bot token v1\0");
    h.update(secret.as_bytes());
    let key: [u8; 32] = h.finalize().into();
    ChaCha20Poly1305::new(&Key::from(key))
}

/// `v1:` + hex(nonce ‖ ciphertext).
pub fn encrypt_token(secret: &str, token: &str) -> String {
    let nonce_bytes: [u8; 12] = rand::random();
    let sealed = cipher(secret)
        .encrypt(&Nonce::from(nonce_bytes), token.as_bytes())
        .expect("chacha20poly1305 encryption does not fail");
    let mut out = nonce_bytes.to_vec();
    out.extend(sealed);
    format!("v1:{}", hex::encode(out))
}

pub fn decrypt_token(secret: &str, stored: &str) -> Option<String> {
    let bytes = hex::decode(stored.strip_prefix("v1:")?).ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let plain = cipher(secret).decrypt(&Nonce::from(nonce), sealed).ok()?;
    String::from_utf8(plain).ok()
}

/// The tenant a Slack install creates: named after the team, bound to it, the installer
/// its bootstrap admin (so they are admin again should their identity be re-linked).
fn installed_tenant_config(i: &SlackInstall) -> TenantConfig {
    serde_json::from_value(serde_json::json!({
        "id": i.tenant_id,
        "name": i.team_name.clone().unwrap_or_else(|| i.team_id.clone()),
        "admins": [format!("slack:{}", i.installer_user_id)],
        "slack_team_ids": [i.team_id],
    }))
    .expect("a valid tenant")
}

impl Core {
    fn slack_encryption_key(&self) -> Option<&str> {
        self.config
            .slack
            .as_ref()
            .and_then(|s| s.encryption_key.as_ref())
            .map(|k| k.0.as_str())
            .filter(|k| !k.is_empty())
    }

    /// The configured tenant that binds this team, if any.
    fn configured_for_team(&self, team: &str) -> Option<&TenantConfig> {
        self.config
            .tenants
            .iter()
            .find(|t| t.slack_team_ids.iter().any(|x| x == team))
    }

    /// Tenants created by installs (Slack, Teams) that the configuration does not name (for start).
    pub(crate) async fn installed_tenants(&self) -> Result<Vec<TenantConfig>, StoreError> {
        let mut out: Vec<TenantConfig> = self
            .store
            .slack_installs()
            .await?
            .iter()
            .filter(|i| self.config.tenant(&i.tenant_id).is_none())
            .map(installed_tenant_config)
            .collect();
        out.extend(self.installed_teams_tenants().await?);
        Ok(out)
    }

    /// A tenant this process does not know yet but the database does (a Slack team installed
    /// through another replica).
    pub(crate) async fn load_installed_tenant(
        &self,
        hint: &TenantHint,
    ) -> Result<Option<&TenantRuntime>, ConversationError> {
        let TenantHint::SlackTeam(team) = hint else {
            return self.load_teams_tenant(hint).await;
        };
        let install = self
            .store
            .slack_install(team)
            .await
            .map_err(|e| ConversationError::Unavailable(e.to_string()))?;
        Ok(install.map(|i| self.tenant_or_add(&i.tenant_id, || installed_tenant_config(&i))))
    }
}

#[async_trait::async_trait]
impl SlackPort for Core {
    async fn team(&self, team_id: &str) -> Result<TeamAccess, PortError> {
        let fallback = || {
            self.config
                .slack
                .as_ref()
                .and_then(|s| s.bot_token.as_ref())
                .map(|t| t.0.clone())
        };
        let install = self
            .store
            .slack_install(team_id)
            .await
            .map_err(unavailable)?;
        match install {
            Some(i) => {
                let token = match self.slack_encryption_key() {
                    Some(key) => decrypt_token(key, &i.bot_token_enc),
                    None => None,
                };
                if token.is_none() {
                    tracing::error!(
                        team = team_id,
                        "the stored Slack bot token cannot be decrypted (slack.encryption_key missing or changed)"
                    );
                }
                Ok(TeamAccess::Known {
                    bot_token: token.or_else(fallback),
                })
            }
            None if self.configured_for_team(team_id).is_some() => Ok(TeamAccess::Known {
                bot_token: fallback(),
            }),
            None => Ok(TeamAccess::Unknown),
        }
    }

    async fn new_install_state(&self) -> Result<String, PortError> {
        if self.slack_encryption_key().is_none() {
            return Err(PortError::Config(
                "slack.encryption_key is not set (it encrypts the bot tokens Slack installs hand over)".into(),
            ));
        }
        let state = new_token();
        self.store
            .create_slack_install_state(&state, INSTALL_STATE_MICROS)
            .await
            .map_err(unavailable)?;
        Ok(state)
    }

    async fn take_install_state(&self, state: &str) -> Result<StateCheck, PortError> {
        Ok(
            match self
                .store
                .take_slack_install_state(state)
                .await
                .map_err(unavailable)?
            {
                InstallState::Taken => StateCheck::Valid,
                InstallState::Unknown => StateCheck::Unknown,
                InstallState::Expired => StateCheck::Expired,
                InstallState::Used => StateCheck::Used,
            },
        )
    }

    async fn save_install(&self, install: Install) -> Result<Installed, PortError> {
        let Some(key) = self.slack_encryption_key() else {
            return Err(PortError::Config("slack.encryption_key is not set".into()));
        };
        let configured = self.configured_for_team(&install.team_id);
        let tenant_id = configured
            .map(|t| t.id.clone())
            .unwrap_or_else(|| format!("slack-{}", install.team_id.to_ascii_lowercase()));
        let team_name = install
            .team_name
            .clone()
            .unwrap_or_else(|| install.team_id.clone());
        let email = install
            .installer_info
            .as_ref()
            .and_then(|u| u.email.as_deref())
            .and_then(normalise_email);
        let kind = match (configured, &email) {
            (Some(_), Some(e)) => self
                .tenant(&tenant_id)
                .map(|t| t.kind_of(e))
                .unwrap_or(PersonKind::Internal),
            // Whoever installs an app into a workspace is staff there.
            _ => PersonKind::Internal,
        };
        let row = SlackInstall {
            team_id: install.team_id.clone(),
            tenant_id,
            team_name: Some(team_name.clone()),
            bot_user_id: install.bot_user_id.clone(),
            bot_token_enc: encrypt_token(key, &install.bot_token),
            installer_user_id: install.installer.clone(),
        };
        let installer = Installer {
            user_id: install.installer.clone(),
            email,
            name: install.installer_info.as_ref().and_then(|u| u.name.clone()),
            kind,
        };
        let tenant_id = self
            .store
            .save_slack_install(&row, &team_name, &installer)
            .await
            .map_err(unavailable)?;
        // The installer now holds `admin`: whoever this process remembers is looked up afresh.
        self.forget_speakers();
        let tenant = self.tenant_or_add(&tenant_id, || {
            installed_tenant_config(&SlackInstall {
                tenant_id: tenant_id.clone(),
                ..row
            })
        });
        Ok(Installed {
            tenant_id,
            tenant_name: tenant.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_encrypted_and_fail_with_another_key() {
        let sealed = encrypt_token("k1", "xoxb-secret");
        assert!(!sealed.contains("xoxb"));
        assert_ne!(sealed, encrypt_token("k1", "xoxb-secret"), "fresh nonce");
        assert_eq!(decrypt_token("k1", &sealed).as_deref(), Some("xoxb-secret"));
        assert_eq!(decrypt_token("k2", &sealed), None);
        assert_eq!(decrypt_token("k1", "v1:00"), None);
    }
}
