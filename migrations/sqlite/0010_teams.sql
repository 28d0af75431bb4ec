-- Microsoft Teams tenants (Azure AD) that installed Koji: the Koji tenant each belongs to and
-- who installed it (admin there). Kept so every replica, and a restart, knows the tenant.
create table teams_installs (
    azure_tenant_id text primary key,
    tenant_id text not null references tenants(id),
    installer_user_id text not null,             -- Teams user id (29:…) of whoever installed
    installed_at integer not null
);
create index teams_installs_tenant on teams_installs(tenant_id);
