-- Koji's core schema, SQLite flavour. Keep it in step with migrations/postgres.
-- Times are unix microseconds; `day` columns are unix days (UTC).

create table tenants (
    id text primary key,
    name text not null,
    created_at integer not null
);

create table people (
    id integer primary key autoincrement,
    tenant_id text not null references tenants(id),
    email text,                                  -- lowercase; one person per email per tenant
    name text,
    kind text not null,                          -- internal | customer
    email_verified integer not null default 0,
    locale text,
    time_zone text,
    jira_account_id text,                        -- Jira account id or service-desk customer id
    created_at integer not null
);
create unique index people_tenant_email on people(tenant_id, email);

-- A channel identity: a Slack user, a Teams user, a Discord user, a portal email, a console login.
create table identities (
    id integer primary key autoincrement,
    tenant_id text not null references tenants(id),
    channel text not null,
    external_id text not null,
    person_id integer references people(id) on delete set null,   -- null: anonymous
    display_name text,
    auth_method text not null,
    authenticated_at integer,
    created_at integer not null,
    unique (tenant_id, channel, external_id)
);
create index identities_person on identities(person_id);

create table person_roles (
    tenant_id text not null,
    person_id integer not null references people(id) on delete cascade,
    role text not null,
    granted_at integer not null,
    primary key (person_id, role)
) without rowid;

create table sessions (
    id integer primary key autoincrement,
    tenant_id text not null,
    identity_id integer not null references identities(id) on delete cascade,
    person_id integer references people(id) on delete cascade,
    channel text not null,
    auth_method text not null,
    login_id text not null,
    ip text,
    user_agent text,
    token_hash text not null unique,             -- sha-256 of the session token; the token is never stored
    started_at integer not null,
    last_interaction_at integer not null,
    ended_at integer,
    end_reason text                              -- idle | logout | identity_changed | erased
);
create index sessions_active on sessions(tenant_id, last_interaction_at) where ended_at is null;
create index sessions_identity_open on sessions(identity_id) where ended_at is null;
create index sessions_person on sessions(person_id, started_at);

-- Every inbound message and every reply.
create table messages (
    id integer primary key autoincrement,
    tenant_id text not null,
    session_id integer not null,
    person_id integer,                           -- null: anonymous identity
    identity_id integer not null,
    channel text not null,
    direction text not null,                     -- in | out
    text text not null,
    intent text,
    specific integer not null default 0,         -- inbound that asks for something (not small talk)
    entities text,                               -- json [{type, value}]
    actions text,                                -- json [name]
    n_actions integer not null default 0,
    n_help integer not null default 0,           -- actions other than auth_offered / auth_completed
    platform_msg_id text,                        -- Slack event_id, Teams activity id, …: unique per channel
    at integer not null
);
create unique index messages_platform on messages(tenant_id, channel, platform_msg_id)
    where platform_msg_id is not null;
create index messages_person_at on messages(person_id, at);

-- Rollups kept in the same transaction as the messages they count, so reports never scan
-- the raw history. channel '*' is all channels together.
create table person_days (
    tenant_id text not null,
    person_id integer not null,
    day integer not null,
    channel text not null,
    messages_in integer not null default 0,
    messages_out integer not null default 0,
    specific_in integer not null default 0,
    actions integer not null default 0,
    help_actions integer not null default 0,
    sessions integer not null default 0,
    primary key (tenant_id, person_id, day, channel)
) without rowid;

create table person_stats (
    tenant_id text not null,
    person_id integer not null,
    channel text not null,
    messages integer not null default 0,
    messages_in integer not null default 0,
    messages_out integer not null default 0,
    specific_in integer not null default 0,
    actions integer not null default 0,
    help_actions integer not null default 0,
    sessions integer not null default 0,
    first_seen integer not null,
    last_seen integer not null,
    primary key (tenant_id, person_id, channel)
) without rowid;
create index person_stats_seen on person_stats(tenant_id, channel, last_seen);
create index person_stats_busiest on person_stats(tenant_id, channel, messages);
create index person_stats_unhelped on person_stats(tenant_id, channel, last_seen)
    where specific_in = 0 and help_actions = 0;

create table interests (
    tenant_id text not null,
    person_id integer not null,
    kind text not null,
    value text not null,
    count integer not null,
    last_at integer not null,
    primary key (person_id, kind, value)
) without rowid;

-- What a conversation is waiting for (a confirmation, an email, a code), per identity.
create table conversation_state (
    identity_id integer primary key,
    state text not null,                         -- json
    updated_at integer not null
);
