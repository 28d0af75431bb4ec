-- The local help desk: knowledge-base articles with full-text search (tsvector, English
-- stemming; the title weighs more than the body), requests (tickets) with comments, and
-- handoffs to a human operator.

create table kb_articles (
    id bigserial primary key,
    slug text not null unique,                   -- file name without .md
    title text not null,
    body text not null,                          -- Markdown, without the title line
    content_hash text not null,
    updated_at bigint not null,
    search tsvector generated always as (
        setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')
    ) stored
);
create index kb_articles_search on kb_articles using gin (search);

-- Per-tenant request numbers (REQ-1, REQ-2, …), taken with one atomic update.
alter table tenants add column request_seq bigint not null default 0;

create table requests (
    id bigserial primary key,
    tenant_id text not null references tenants(id),
    key text not null,
    summary text not null,
    description text not null,
    status text not null,
    reporter_person_id bigint references people(id) on delete set null,
    reporter_email text,
    created_at bigint not null,
    updated_at bigint not null,
    unique (tenant_id, key)
);
create index requests_reporter on requests(reporter_person_id, created_at);

create table request_comments (
    id bigserial primary key,
    request_id bigint not null references requests(id) on delete cascade,
    author text not null,
    text text not null,
    created_at bigint not null
);
create index request_comments_request on request_comments(request_id, id);

-- "Talk to a human": a person's conversation marked for an operator, then taken over and
-- released. At most one open handoff per person (or anonymous identity).
create table handoffs (
    id bigserial primary key,
    tenant_id text not null,
    person_id bigint references people(id) on delete cascade,
    identity_id bigint not null references identities(id) on delete cascade,
    requested_at bigint,
    operator_person_id bigint references people(id) on delete cascade,
    operator_identity_id bigint references identities(id) on delete cascade,
    taken_at bigint,
    closed_at bigint
);
create index handoffs_open_identity on handoffs(identity_id) where closed_at is null;
create index handoffs_open_operator on handoffs(operator_identity_id) where closed_at is null;
create index handoffs_open_tenant on handoffs(tenant_id, requested_at) where closed_at is null;

-- Messages relayed between a person and the operator who took their conversation over,
-- delivered with the recipient's next exchange.
create table relay_outbox (
    id bigserial primary key,
    tenant_id text not null,
    identity_id bigint not null references identities(id) on delete cascade,
    text text not null,
    created_at bigint not null,
    delivered_at bigint
);
create index relay_outbox_pending on relay_outbox(identity_id, id) where delivered_at is null;
