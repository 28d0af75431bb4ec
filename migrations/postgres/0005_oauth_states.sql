-- OAuth sign-in attempts: the state in the link, bound to the channel identity and its
-- session, single-use, expiring. Kept in the database so the callback may reach any replica.
create table oauth_states (
    state text primary key,
    tenant_id text not null,
    identity_id bigint not null,
    session_id bigint not null,
    pkce_verifier text not null,
    created_at bigint not null,
    expires_at bigint not null,
    used_at bigint
);
