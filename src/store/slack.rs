//! Slack installs: which tenant a workspace belongs to, its encrypted bot token, the
//! single-use install states, and the installer's `admin` role (audited). The token arrives
//! here already encrypted; this module never sees it in clear.

use super::installs::installer_admin;
use super::{Result, Store, hash_token, with_pool};
use crate::domain::PersonKind;
use sqlx::Row;

/// One workspace's install, as stored.
#[derive(Debug, Clone)]
pub struct SlackInstall {
    pub team_id: String,
    pub tenant_id: String,
    pub team_name: Option<String>,
    pub bot_user_id: Option<String>,
    pub bot_token_enc: String,
    pub installer_user_id: String,
}

/// What became of an install state presented at the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallState {
    /// Valid, and now used up.
    Taken,
    Unknown,
    Expired,
    Used,
}

/// The installer, as far as Slack told us.
#[derive(Debug, Clone)]
pub struct Installer {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub kind: PersonKind,
}

impl Store {
    pub async fn create_slack_install_state(&self, state: &str, ttl_micros: i64) -> Result<()> {
        let now = self.now();
        with_pool!(self.pool(), p, _d => {
            sqlx::query("insert into slack_install_states (state_hash, created_at, expires_at) values ($1, $2, $3)")
                .bind(hash_token(state))
                .bind(now)
                .bind(now + ttl_micros)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Uses up the state if it is valid (once, whichever replica asks first).
    pub async fn take_slack_install_state(&self, state: &str) -> Result<InstallState> {
        let now = self.now();
        let hash = hash_token(state);
        with_pool!(self.pool(), p, _d => {
            let n = sqlx::query(
                "update slack_install_states set used_at = $2
                 where state_hash = $1 and used_at is null and expires_at > $2",
            )
            .bind(&hash)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected();
            if n == 1 {
                return Ok(InstallState::Taken);
            }
            let row = sqlx::query("select used_at from slack_install_states where state_hash = $1")
                .bind(&hash)
                .fetch_optional(p)
                .await?;
            Ok(match row {
                None => InstallState::Unknown,
                Some(r) => {
                    let used: Option<i64> = r.try_get(0)?;
                    if used.is_some() { InstallState::Used } else { InstallState::Expired }
                }
            })
        })
    }

    pub async fn slack_install(&self, team_id: &str) -> Result<Option<SlackInstall>> {
        Ok(self
            .slack_installs_where(Some(team_id))
            .await?
            .into_iter()
            .next())
    }

    pub async fn slack_installs(&self) -> Result<Vec<SlackInstall>> {
        self.slack_installs_where(None).await
    }

    async fn slack_installs_where(&self, team_id: Option<&str>) -> Result<Vec<SlackInstall>> {
        with_pool!(self.pool(), p, _d => {
            let rows = sqlx::query(
                "select team_id, tenant_id, team_name, bot_user_id, bot_token_enc, installer_user_id
                 from slack_installs where $1 is null or team_id = $1 order by installed_at, team_id",
            )
            .bind(team_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(SlackInstall {
                        team_id: r.try_get(0)?,
                        tenant_id: r.try_get(1)?,
                        team_name: r.try_get(2)?,
                        bot_user_id: r.try_get(3)?,
                        bot_token_enc: r.try_get(4)?,
                        installer_user_id: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
    }

    /// Records the install in one transaction: the tenant row (an existing install of the
    /// team keeps its tenant), the install, and the installer as a person holding `admin`
    /// there, with an audit row. Returns the tenant id.
    pub async fn save_slack_install(
        &self,
        install: &SlackInstall,
        tenant_name: &str,
        installer: &Installer,
    ) -> Result<String> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let existing: Option<String> =
                sqlx::query_scalar("select tenant_id from slack_installs where team_id = $1")
                    .bind(&install.team_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let tenant_id = existing.unwrap_or_else(|| install.tenant_id.clone());
            sqlx::query("insert into tenants (id, name, created_at) values ($1, $2, $3) on conflict (id) do nothing")
                .bind(&tenant_id)
                .bind(tenant_name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "insert into slack_installs (team_id, tenant_id, team_name, bot_user_id, bot_token_enc, installer_user_id, installed_at)
                 values ($1, $2, $3, $4, $5, $6, $7)
                 on conflict (team_id) do update set team_name = excluded.team_name, bot_user_id = excluded.bot_user_id,
                   bot_token_enc = excluded.bot_token_enc, installer_user_id = excluded.installer_user_id,
                   installed_at = excluded.installed_at",
            )
            .bind(&install.team_id)
            .bind(&tenant_id)
            .bind(&install.team_name)
            .bind(&install.bot_user_id)
            .bind(&install.bot_token_enc)
            .bind(&installer.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;

            installer_admin!(tx, &tenant_id, "slack", installer, now);
            tx.commit().await?;
            Ok(tenant_id)
        })
    }
}
