//! Teams installs: which Koji tenant an Azure AD tenant belongs to, and its installer.

use super::installs::installer_admin;
use super::slack::Installer;
use super::{Result, Store, with_pool};
use sqlx::Row;

/// A Teams tenant bound to a Koji tenant by an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsInstall {
    pub azure_tenant_id: String,
    pub tenant_id: String,
    pub installer_user_id: String,
}

impl Store {
    pub async fn teams_install(&self, azure_tenant_id: &str) -> Result<Option<TeamsInstall>> {
        with_pool!(self.pool(), p, d => {
            let r: Option<(String, String, String)> = sqlx::query_as(
                "select azure_tenant_id, tenant_id, installer_user_id from teams_installs where azure_tenant_id = $1",
            )
            .bind(azure_tenant_id)
            .fetch_optional(p)
            .await?;
            Ok(r.map(|(azure_tenant_id, tenant_id, installer_user_id)| TeamsInstall {
                azure_tenant_id,
                tenant_id,
                installer_user_id,
            }))
        })
    }

    pub async fn teams_installs(&self) -> Result<Vec<TeamsInstall>> {
        with_pool!(self.pool(), p, d => {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "select azure_tenant_id, tenant_id, installer_user_id from teams_installs order by installed_at",
            )
            .fetch_all(p)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(azure_tenant_id, tenant_id, installer_user_id)| TeamsInstall {
                    azure_tenant_id,
                    tenant_id,
                    installer_user_id,
                })
                .collect())
        })
    }

    /// Records the install (the tenant row too, when it is new) and makes the installer
    /// `admin` there, in one transaction. Returns the tenant id (an earlier install's, if any).
    pub async fn save_teams_install(
        &self,
        install: &TeamsInstall,
        tenant_name: &str,
        installer: &Installer,
    ) -> Result<String> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let existing: Option<String> = sqlx::query_scalar(
                "select tenant_id from teams_installs where azure_tenant_id = $1",
            )
            .bind(&install.azure_tenant_id)
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
                "insert into teams_installs (azure_tenant_id, tenant_id, installer_user_id, installed_at)
                 values ($1, $2, $3, $4)
                 on conflict (azure_tenant_id) do update set installer_user_id = excluded.installer_user_id,
                   installed_at = excluded.installed_at",
            )
            .bind(&install.azure_tenant_id)
            .bind(&tenant_id)
            .bind(&installer.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            installer_admin!(tx, &tenant_id, "teams", installer, now);
            tx.commit().await?;
            Ok(tenant_id)
        })
    }
}
