-- Discord guilds Koji has answered in: the tenant each belongs to (the configured one that
-- binds the guild, else one created for it at its first interaction, `discord-<guild>`),
-- and the guild owner once looked up (GET /guilds/{id}) and made admin there. Kept in the
-- database so that every replica, and a restart, knows both without asking Discord again.
create table discord_guilds (
    guild_id text primary key,
    tenant_id text not null references tenants(id),
    guild_name text,
    owner_user_id text,                          -- null until the owner was made admin
    created_at integer not null,
    owner_recorded_at integer
);
create index discord_guilds_tenant on discord_guilds(tenant_id);
