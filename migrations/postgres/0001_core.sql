-- Koji's core schema, PostgreSQL flavour. Keep it in step with migrations/sqlite.
-- Times are unix microseconds; `day` columns are unix days (UTC).

create table tenants (
    id text primary key,
    name text not null,
    created_at bigint not null
);

create table people (
    id bigserial primary key,
    tenant_id text not null references tenants(id),
    email text,                                  -- lowercase; one person per email per tenant
    name text,
    kind text not null,                          -- internal | customer
    email_verified bigint not null default 0,
    locale text,
    time_zone text,
    jira_account_id text,                        -- Jira account id or service-desk customer id
    created_at bigint not null
);
create unique index people_tenant_email on people(tenant_id, email);

-- A channel identity: a Slack user, a Teams user, a Discord user, a portal email, a console login.
create table identities (
    id bigserial primary key,
    tenant_id text not null references tenants(id),
    channel text not null,
    external_id text not null,
    person_id bigint references people(id) on delete set null,   -- null: anonymous
    display_name text,
    auth_method text not null,
    authenticated_at bigint,
    created_at bigint not null,
    unique (tenant_id, channel, external_id)
);
create index identities_person on identities(person_id);

create table person_roles (
    tenant_id text not null,
    person_id bigint not null references people(id) on delete cascade,
    role text not null,
    granted_at bigint not null,
    primary key (person_id, role)
);

create table sessions (
    id bigserial primary key,
    tenant_id text not null,
    identity_id bigint not null references identities(id) on delete cascade,
    person_id bigint references people(id) on delete cascade,
    channel text not null,
    auth_method text not null,
    login_id text not null,
    ip text,
    user_agent text,
    token_hash text not null unique,             -- sha-256 of the session token; the token is never stored
    started_at bigint not null,
    last_interaction_at bigint not null,
    ended_at bigint,
    end_reason text                              -- idle | logout | identity_changed | erased
);
create index sessions_active on sessions(tenant_id, last_interaction_at) where ended_at is null;
create index sessions_identity_open on sessions(identity_id) where ended_at is null;
create index sessions_person on sessions(person_id, started_at);

-- Every inbound message and every reply.
create table messages (
    id bigserial primary key,
    tenant_id text not null,
    session_id bigint not null,
    person_id bigint,                           -- null: anonymous identity
    identity_id bigint not null,
    channel text not null,
    direction text not null,                     -- in | out
    text text not null,
    intent text,
    specific bigint not null default 0,         -- inbound that asks for something (not small talk)
    entities text,                               -- json [{type, value}]
    actions text,                                -- json [name]
    n_actions bigint not null default 0,
    n_help bigint not null default 0,           -- actions other than auth_offered / auth_completed
    platform_msg_id text,                        -- Slack event_id, Teams activity id, …: unique per channel
    at bigint not null
);
create unique index messages_platform on messages(tenant_id, channel, platform_msg_id)
    where platform_msg_id is not null;
create index messages_person_at on messages(person_id, at);

-- Rollups kept in the same transaction as the messages they count, so reports never scan
-- the raw history. channel '*' is all channels together.
create table person_days (
    tenant_id text not null,
    person_id bigint not null,
    day bigint not null,
    channel text not null,
    messages_in bigint not null default 0,
    messages_out bigint not null default 0,
    specific_in bigint not null default 0,
    actions bigint not null default 0,
    help_actions bigint not null default 0,
    sessions bigint not null default 0,
    primary key (tenant_id, person_id, day, channel)
);

create table person_stats (
    tenant_id text not null,
    person_id bigint not null,
    channel text not null,
    messages bigint not null default 0,
    messages_in bigint not null default 0,
    messages_out bigint not null default 0,
    specific_in bigint not null default 0,
    actions bigint not null default 0,
    help_actions bigint not null default 0,
    sessions bigint not null default 0,
    first_seen bigint not null,
    last_seen bigint not null,
    primary key (tenant_id, person_id, channel)
);
create index person_stats_seen on person_stats(tenant_id, channel, last_seen);
create index person_stats_busiest on person_stats(tenant_id, channel, messages);
create index person_stats_unhelped on person_stats(tenant_id, channel, last_seen)
    where specific_in = 0 and help_actions = 0;

create table interests (
    tenant_id text not null,
    person_id bigint not null,
    kind text not null,
    value text not null,
    count bigint not null,
    last_at bigint not null,
    primary key (person_id, kind, value)
);

-- What a conversation is waiting for (a confirmation, an email, a code), per identity.
create table conversation_state (
    identity_id bigint primary key,
    state text not null,                         -- json
    updated_at bigint not null
);
