-- One-time sign-in codes sent by email (6 digits, 10 minutes, 5 attempts). Only a hash of
-- the code is kept.
create table email_codes (
    id integer primary key autoincrement,
    tenant_id text not null,
    identity_id integer not null,
    email text not null,
    code_hash text not null,
    created_at integer not null,
    expires_at integer not null,
    attempts integer not null default 0,
    used_at integer
);
create index email_codes_identity on email_codes(identity_id, created_at);
