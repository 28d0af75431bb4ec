//! Discord guilds: the tenant each guild belongs to and whether its owner was made `admin`
//! there (audited, once, on any replica).

use super::{Result, Store, with_pool};
use sqlx::Row;

/// One guild, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordGuild {
    pub guild_id: String,
    pub tenant_id: String,
    pub guild_name: Option<String>,
    /// The owner, once made admin.
    pub owner_user_id: Option<String>,
}

impl Store {
    pub async fn discord_guild(&self, guild_id: &str) -> Result<Option<DiscordGuild>> {
        Ok(self
            .discord_guilds_where(Some(guild_id))
            .await?
            .into_iter()
            .next())
    }

    pub async fn discord_guilds(&self) -> Result<Vec<DiscordGuild>> {
        self.discord_guilds_where(None).await
    }

    async fn discord_guilds_where(&self, guild_id: Option<&str>) -> Result<Vec<DiscordGuild>> {
        with_pool!(self.pool(), p, _d => {
            let rows = sqlx::query(
                "select guild_id, tenant_id, guild_name, owner_user_id from discord_guilds
                 where $1 is null or guild_id = $1 order by created_at, guild_id",
            )
            .bind(guild_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DiscordGuild {
                        guild_id: r.try_get(0)?,
                        tenant_id: r.try_get(1)?,
                        guild_name: r.try_get(2)?,
                        owner_user_id: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
    }

    /// The guild's row, created with `tenant_id` (and that tenant's row, named
    /// `tenant_name`) when the guild is new. A guild already stored keeps its tenant, so
    /// concurrent first interactions on two replicas agree.
    pub async fn ensure_discord_guild(
        &self,
        guild_id: &str,
        tenant_id: &str,
        tenant_name: &str,
    ) -> Result<DiscordGuild> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let exists: Option<String> =
                sqlx::query_scalar("select tenant_id from discord_guilds where guild_id = $1")
                    .bind(guild_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                sqlx::query("insert into tenants (id, name, created_at) values ($1, $2, $3) on conflict (id) do nothing")
                    .bind(tenant_id)
                    .bind(tenant_name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into discord_guilds (guild_id, tenant_id, created_at) values ($1, $2, $3)
                     on conflict (guild_id) do nothing",
                )
                .bind(guild_id)
                .bind(tenant_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.discord_guild(guild_id)
            .await?
            .ok_or_else(|| super::StoreError::Database("the discord guild row vanished".into()))
    }

    /// Makes the guild owner `admin` of the guild's tenant in one transaction: their
    /// Discord identity, linked to a person (new, internal, known by that identity only,
    /// when it has none), the role with an audit row when it is new, and the owner noted on
    /// the guild so that nobody asks Discord again.
    pub async fn save_discord_owner(
        &self,
        guild_id: &str,
        owner_user_id: &str,
        guild_name: Option<&str>,
    ) -> Result<()> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let tenant_id: Option<String> =
                sqlx::query_scalar("select tenant_id from discord_guilds where guild_id = $1")
                    .bind(guild_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(tenant_id) = tenant_id else {
                return Err(super::StoreError::Database(format!(
                    "discord guild {guild_id} is not stored"
                )));
            };
            let identity = sqlx::query(
                "select id, person_id from identities where tenant_id = $1 and channel = 'discord' and external_id = $2",
            )
            .bind(&tenant_id)
            .bind(owner_user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let identity: Option<(i64, Option<i64>)> = match identity {
                Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
                None => None,
            };
            let person = match identity.and_then(|i| i.1) {
                Some(id) => id,
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into people (tenant_id, email, name, kind, email_verified, created_at)
                         values ($1, null, null, 'internal', 0, $2) returning id",
                    )
                    .bind(&tenant_id)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query("insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, 'customer', $3)")
                        .bind(&tenant_id)
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    id
                }
            };
            match identity {
                None => {
                    sqlx::query(
                        "insert into identities (tenant_id, channel, external_id, person_id, auth_method, authenticated_at, created_at)
                         values ($1, 'discord', $2, $3, 'discord', $4, $4)",
                    )
                    .bind(&tenant_id)
                    .bind(owner_user_id)
                    .bind(person)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Some((id, None)) => {
                    sqlx::query("update identities set person_id = $1, auth_method = 'discord', authenticated_at = $2 where id = $3")
                        .bind(person)
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(_) => {}
            }
            let granted = sqlx::query(
                "insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, 'admin', $3)
                 on conflict do nothing",
            )
            .bind(&tenant_id)
            .bind(person)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if granted == 1 {
                sqlx::query(
                    "insert into audit_log (tenant_id, at, actor, actor_person_id, action, target, target_person_id, role, channel)
                     values ($1, $2, 'discord guild owner', null, 'grant', $3, $4, 'admin', 'discord')",
                )
                .bind(&tenant_id)
                .bind(now)
                .bind(format!("discord:{owner_user_id}"))
                .bind(person)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "update discord_guilds set owner_user_id = $2, guild_name = coalesce($3, guild_name), owner_recorded_at = $4
                 where guild_id = $1",
            )
            .bind(guild_id)
            .bind(owner_user_id)
            .bind(guild_name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
