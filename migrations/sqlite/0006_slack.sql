-- Slack workspaces that installed Koji (OAuth v2): the tenant each team belongs to, and the
-- team's bot token, encrypted with slack.encryption_key (never stored in clear).
create table slack_installs (
    team_id text primary key,
    tenant_id text not null references tenants(id),
    team_name text,
    bot_user_id text,
    bot_token_enc text not null,                 -- "v1:" hex(nonce || ChaCha20-Poly1305 ciphertext)
    installer_user_id text not null,             -- Slack user id of whoever installed (admin there)
    installed_at integer not null
);
create index slack_installs_tenant on slack_installs(tenant_id);

-- Install attempts: the state in Slack's authorize link, single-use, expiring. Kept in the
-- database so the OAuth callback may reach any replica.
create table slack_install_states (
    state_hash text primary key,                 -- sha-256 of the state; the state is never stored
    created_at integer not null,
    expires_at integer not null,
    used_at integer
);
