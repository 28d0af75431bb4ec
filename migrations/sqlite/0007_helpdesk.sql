-- The local help desk: knowledge-base articles with full-text search (FTS5, Porter stemming),
-- requests (tickets) with comments, and handoffs to a human operator.

create table kb_articles (
    id integer primary key autoincrement,
    slug text not null unique,                   -- file name without .md
    title text not null,
    body text not null,                          -- Markdown, without the title line
    content_hash text not null,
    updated_at integer not null
);
create virtual table kb_fts using fts5(
    title, body, content = 'kb_articles', content_rowid = 'id', tokenize = 'porter unicode61'
);
create trigger kb_articles_ai after insert on kb_articles begin
    insert into kb_fts (rowid, title, body) values (new.id, new.title, new.body);
end;
create trigger kb_articles_ad after delete on kb_articles begin
    insert into kb_fts (kb_fts, rowid, title, body) values ('delete', old.id, old.title, old.body);
end;
create trigger kb_articles_au after update on kb_articles begin
    insert into kb_fts (kb_fts, rowid, title, body) values ('delete', old.id, old.title, old.body);
    insert into kb_fts (rowid, title, body) values (new.id, new.title, new.body);
end;

-- Per-tenant request numbers (REQ-1, REQ-2, …), taken with one atomic update.
alter table tenants add column request_seq integer not null default 0;

create table requests (
    id integer primary key autoincrement,
    tenant_id text not null references tenants(id),
    key text not null,
    summary text not null,
    description text not null,
    status text not null,
    reporter_person_id integer references people(id) on delete set null,
    reporter_email text,
    created_at integer not null,
    updated_at integer not null,
    unique (tenant_id, key)
);
create index requests_reporter on requests(reporter_person_id, created_at);

create table request_comments (
    id integer primary key autoincrement,
    request_id integer not null references requests(id) on delete cascade,
    author text not null,
    text text not null,
    created_at integer not null
);
create index request_comments_request on request_comments(request_id, id);

-- "Talk to a human": a person's conversation marked for an operator, then taken over and
-- released. At most one open handoff per person (or anonymous identity).
create table handoffs (
    id integer primary key autoincrement,
    tenant_id text not null,
    person_id integer references people(id) on delete cascade,
    identity_id integer not null references identities(id) on delete cascade,
    requested_at integer,
    operator_person_id integer references people(id) on delete cascade,
    operator_identity_id integer references identities(id) on delete cascade,
    taken_at integer,
    closed_at integer
);
create index handoffs_open_identity on handoffs(identity_id) where closed_at is null;
create index handoffs_open_operator on handoffs(operator_identity_id) where closed_at is null;
create index handoffs_open_tenant on handoffs(tenant_id, requested_at) where closed_at is null;

-- Messages relayed between a person and the operator who took their conversation over,
-- delivered with the recipient's next exchange.
create table relay_outbox (
    id integer primary key autoincrement,
    tenant_id text not null,
    identity_id integer not null references identities(id) on delete cascade,
    text text not null,
    created_at integer not null,
    delivered_at integer
);
create index relay_outbox_pending on relay_outbox(identity_id, id) where delivered_at is null;
