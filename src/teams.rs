//! The core's side of the Teams channel ([`koji_teams::TeamsPort`]): the install (the
//! installer made `admin` of the tenant that binds their Azure AD tenant, or of a new tenant
//! `teams-<tenant id>` when none does) and finding tenants installed through another replica.
//! The Bot Framework side (JWT checks, connector, Adaptive Cards) is `adapters/teams`.

use crate::config::TenantConfig;
use crate::conversation::{Core, TenantRuntime};
use crate::domain::{PersonKind, normalise_email};
use crate::store::StoreError;
use crate::store::slack::Installer;
use crate::store::teams::TeamsInstall as InstallRow;
use koji_channel::{ConversationError, TenantHint};
use koji_teams::{TeamsInstall, TeamsPort};

fn unavailable(e: StoreError) -> ConversationError {
    ConversationError::Unavailable(e.to_string())
}

/// The tenant a Teams install creates: bound to the Azure AD tenant, the installer its
/// bootstrap admin.
fn installed_tenant_config(i: &InstallRow) -> TenantConfig {
    serde_json::from_value(serde_json::json!({
        "id": i.tenant_id,
        "name": format!("Teams {}", i.azure_tenant_id),
        "admins": [format!("teams:{}", i.installer_user_id)],
        "teams_tenant_ids": [i.azure_tenant_id],
    }))
    .expect("a valid tenant")
}

impl Core {
    fn configured_for_teams(&self, azure: &str) -> Option<&TenantConfig> {
        self.config
            .tenants
            .iter()
            .find(|t| t.teams_tenant_ids.iter().any(|x| x == azure))
    }

    pub(crate) async fn installed_teams_tenants(&self) -> Result<Vec<TenantConfig>, StoreError> {
        Ok(self
            .store
            .teams_installs()
            .await?
            .iter()
            .filter(|i| self.config.tenant(&i.tenant_id).is_none())
            .map(installed_tenant_config)
            .collect())
    }

    /// A Teams tenant installed through another replica since this one started.
    pub(crate) async fn load_teams_tenant(
        &self,
        hint: &TenantHint,
    ) -> Result<Option<&TenantRuntime>, ConversationError> {
        let TenantHint::TeamsTenant(azure) = hint else {
            return Ok(None);
        };
        let install = self.store.teams_install(azure).await.map_err(unavailable)?;
        Ok(install.map(|i| self.tenant_or_add(&i.tenant_id, || installed_tenant_config(&i))))
    }
}

#[async_trait::async_trait]
impl TeamsPort for Core {
    async fn installed(&self, install: TeamsInstall) -> Result<String, ConversationError> {
        let configured = self.configured_for_teams(&install.azure_tenant_id);
        let tenant_id = configured
            .map(|t| t.id.clone())
            .unwrap_or_else(|| format!("teams-{}", install.azure_tenant_id.to_ascii_lowercase()));
        let email = install.email.as_deref().and_then(normalise_email);
        let kind = match (configured, &email) {
            (Some(_), Some(e)) => self
                .tenant(&tenant_id)
                .map(|t| t.kind_of(e))
                .unwrap_or(PersonKind::Internal),
            // Whoever installs an app for an organisation is staff there.
            _ => PersonKind::Internal,
        };
        let row = InstallRow {
            azure_tenant_id: install.azure_tenant_id.clone(),
            tenant_id: tenant_id.clone(),
            installer_user_id: install.user_id.clone(),
        };
        let installer = Installer {
            user_id: install.user_id.clone(),
            email,
            name: install.name.clone(),
            kind,
        };
        let name = configured
            .and_then(|t| t.name.clone())
            .unwrap_or_else(|| format!("Teams {}", install.azure_tenant_id));
        let tenant_id = self
            .store
            .save_teams_install(&row, &name, &installer)
            .await
            .map_err(unavailable)?;
        // The installer's identity may be cached as a customer's: look again.
        self.forget_speakers();
        let tenant = self.tenant_or_add(&tenant_id, || {
            installed_tenant_config(&InstallRow {
                tenant_id: tenant_id.clone(),
                ..row
            })
        });
        Ok(tenant.name.clone())
    }
}
