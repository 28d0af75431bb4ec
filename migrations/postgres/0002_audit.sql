-- Audit log of role changes and erasures (PostgreSQL flavour; keep in step with sqlite).
create table audit_log (
    id bigserial primary key,
    tenant_id text not null,
    at bigint not null,
    actor text not null,                 -- who: an email, a channel identity, or `operator`
    actor_person_id bigint,
    action text not null,                -- grant | revoke | erase
    target text not null,                -- whom, as shown; `(erased)` once the person is erased
    target_person_id bigint,
    role text,
    channel text not null                -- through which channel (console for the command line)
);
create index audit_tenant_at on audit_log(tenant_id, at);
create index audit_target on audit_log(target_person_id);
