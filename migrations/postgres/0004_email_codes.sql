-- One-time sign-in codes sent by email (6 digits, 10 minutes, 5 attempts). Only a hash of
-- the code is kept.
create table email_codes (
    id bigserial primary key,
    tenant_id text not null,
    identity_id bigint not null,
    email text not null,
    code_hash text not null,
    created_at bigint not null,
    expires_at bigint not null,
    attempts bigint not null default 0,
    used_at bigint
);
create index email_codes_identity on email_codes(identity_id, created_at);
