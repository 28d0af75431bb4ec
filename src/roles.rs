//! The tenant role setup: permissions, the built-in roles and each tenant's own roles.
//! Every permission check in Koji goes through [`RoleSetup::allows`]; adapters never check.

use crate::config::TenantConfig;
use std::collections::BTreeMap;

pub const BUILT_IN: [&str; 4] = ["admin", "analyst", "operator", "customer"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    ReportsRead,
    RolesManage,
    UsersExport,
    UsersErase,
    ConversationsTakeover,
    HelpdeskUse,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::ReportsRead,
        Permission::RolesManage,
        Permission::UsersExport,
        Permission::UsersErase,
        Permission::ConversationsTakeover,
        Permission::HelpdeskUse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReportsRead => "reports.read",
            Permission::RolesManage => "roles.manage",
            Permission::UsersExport => "users.export",
            Permission::UsersErase => "users.erase",
            Permission::ConversationsTakeover => "conversations.takeover",
            Permission::HelpdeskUse => "helpdesk.use",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn names() -> String {
        Permission::ALL.map(|p| p.as_str()).join(", ")
    }
}

/// One tenant's roles: name → permissions.
#[derive(Debug, Clone)]
pub struct RoleSetup {
    roles: BTreeMap<String, Vec<Permission>>,
}

impl RoleSetup {
    pub fn for_tenant(tenant: &TenantConfig) -> RoleSetup {
        use Permission::*;
        let mut roles = BTreeMap::new();
        roles.insert("admin".to_string(), Permission::ALL.to_vec());
        roles.insert("analyst".to_string(), vec![ReportsRead, HelpdeskUse]);
        roles.insert(
            "operator".to_string(),
            vec![ConversationsTakeover, HelpdeskUse],
        );
        roles.insert("customer".to_string(), vec![HelpdeskUse]);
        for r in &tenant.roles {
            let perms = r
                .permissions
                .iter()
                .filter_map(|p| Permission::parse(p))
                .collect();
            roles.insert(r.name.clone(), perms);
        }
        RoleSetup { roles }
    }

    pub fn exists(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// Whether a person holding `held` roles has `permission`.
    pub fn allows<S: AsRef<str>>(&self, held: &[S], permission: Permission) -> bool {
        held.iter().any(|r| {
            self.roles
                .get(r.as_ref())
                .is_some_and(|perms| perms.contains(&permission))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Permission])> {
        self.roles.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn built_in_and_tenant_roles_grant_their_permissions() {
        let c = Config::from_toml(
            "[[tenants]]\nid = \"a\"\n[[tenants.roles]]\nname = \"manager\"\npermissions = [\"reports.read\"]",
        )
        .unwrap();
        let setup = RoleSetup::for_tenant(&c.tenants[0]);
        let check = |roles: &[&str], p: Permission, expected: bool| {
            assert_eq!(setup.allows(roles, p), expected, "{roles:?} {p:?}");
        };
        check(&["admin"], Permission::RolesManage, true);
        check(&["admin"], Permission::UsersErase, true);
        check(&["analyst"], Permission::ReportsRead, true);
        check(&["analyst"], Permission::RolesManage, false);
        check(&["operator"], Permission::ConversationsTakeover, true);
        check(&["operator"], Permission::ReportsRead, false);
        check(&["customer"], Permission::HelpdeskUse, true);
        check(&["customer"], Permission::ReportsRead, false);
        check(&["manager"], Permission::ReportsRead, true);
        check(&["manager"], Permission::RolesManage, false);
        check(&[], Permission::HelpdeskUse, false);
        check(&["nonexistent"], Permission::HelpdeskUse, false);
        assert!(setup.exists("manager"));
        assert!(!setup.exists("boss"));
    }
}
