//! The core's side of the Discord channel ([`koji_discord::DiscordPort`]): which tenant a
//! guild belongs to (the configured one that binds it, else `discord-<guild>` created at
//! the guild's first interaction, like a Slack install) and the guild owner made `admin`
//! there, audited, once. The HTTP, signature and rendering side is `adapters/discord`.

use crate::config::TenantConfig;
use crate::conversation::Core;
use crate::store::StoreError;
use crate::store::discord::DiscordGuild;
use koji_discord::{DiscordPort, GuildOwner, GuildState, PortError};

fn unavailable(e: StoreError) -> PortError {
    PortError::Unavailable(e.to_string())
}

/// The id of the tenant created for a guild no configured tenant binds.
pub fn guild_tenant_id(guild_id: &str) -> String {
    format!("discord-{}", guild_id.to_ascii_lowercase())
}

/// The tenant created for a guild: bound to it, its owner (once known) a bootstrap admin.
fn guild_tenant_config(g: &DiscordGuild) -> TenantConfig {
    let admins: Vec<String> = g
        .owner_user_id
        .iter()
        .map(|o| format!("discord:{o}"))
        .collect();
    serde_json::from_value(serde_json::json!({
        "id": g.tenant_id,
        "name": g.guild_name.clone().unwrap_or_else(|| format!("Discord server {}", g.guild_id)),
        "admins": admins,
        "discord_guild_ids": [g.guild_id],
    }))
    .expect("a valid tenant")
}

impl Core {
    /// The configured tenant that binds this guild, if any.
    fn configured_for_guild(&self, guild: &str) -> Option<&TenantConfig> {
        self.config
            .tenants
            .iter()
            .find(|t| t.discord_guild_ids.iter().any(|x| x == guild))
    }

    /// Tenants created for Discord guilds that the configuration does not name (for start).
    pub(crate) async fn discord_tenants(&self) -> Result<Vec<TenantConfig>, StoreError> {
        Ok(self
            .store
            .discord_guilds()
            .await?
            .iter()
            .filter(|g| self.config.tenant(&g.tenant_id).is_none())
            .map(guild_tenant_config)
            .collect())
    }
}

#[async_trait::async_trait]
impl DiscordPort for Core {
    async fn guild(&self, guild_id: &str) -> Result<GuildState, PortError> {
        let stored = match self
            .store
            .discord_guild(guild_id)
            .await
            .map_err(unavailable)?
        {
            Some(g) => g,
            None => {
                let (tenant_id, name) = match self.configured_for_guild(guild_id) {
                    Some(t) => (t.id.clone(), t.name.clone().unwrap_or_else(|| t.id.clone())),
                    None => (
                        guild_tenant_id(guild_id),
                        format!("Discord server {guild_id}"),
                    ),
                };
                let g = self
                    .store
                    .ensure_discord_guild(guild_id, &tenant_id, &name)
                    .await
                    .map_err(unavailable)?;
                if self.config.tenant(&g.tenant_id).is_none() {
                    tracing::info!(guild = guild_id, tenant = %g.tenant_id, "new tenant for a Discord server");
                }
                g
            }
        };
        // Created here or by another replica: make it known to this process.
        self.tenant_or_add(&stored.tenant_id, || guild_tenant_config(&stored));
        Ok(GuildState {
            tenant_id: stored.tenant_id,
            owner_recorded: stored.owner_user_id.is_some(),
        })
    }

    async fn guild_owner(&self, guild_id: &str, owner: GuildOwner) -> Result<(), PortError> {
        self.store
            .save_discord_owner(guild_id, &owner.user_id, owner.guild_name.as_deref())
            .await
            .map_err(unavailable)?;
        tracing::info!(guild = guild_id, "discord guild owner is admin");
        Ok(())
    }
}
