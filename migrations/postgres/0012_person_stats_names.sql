-- Each person_stats row carries its person's name (its first 200 characters), email and kind,
-- kept by the triggers below, so that a `visitors` listing (20k people) needs no lookup in
-- people per visitor. (The cap keeps an index entry below PostgreSQL's limit of about 2.7 kB;
-- emails are at most 318 characters.)
alter table person_stats add column name text, add column email text, add column kind text;

update person_stats set name = left(p.name, 200), email = p.email, kind = p.kind
from people p where p.id = person_stats.person_id;

-- The visitors of a period are those seen in it and never helped, or helped only before it:
-- one index for each part, so a listing reads its visitors and not everyone seen in the period
-- (a sequential scan of the whole table, otherwise). Those never helped come from this index
-- alone.
create index person_stats_never_helped on person_stats(tenant_id, channel, last_seen)
    include (first_seen, messages_in, sessions, person_id, name, email, kind)
    where last_helped_at is null;
create index person_stats_helped on person_stats(tenant_id, channel, last_helped_at) include (last_seen)
    where last_helped_at is not null;

-- A new row takes its person's details once. An after-insert trigger fires only for rows an
-- upsert really inserts, not for the exchanges that add figures to an existing row.
create function person_stats_person() returns trigger language plpgsql as $$
begin
    update person_stats s set name = left(p.name, 200), email = p.email, kind = p.kind
    from people p
    where p.id = new.person_id
      and s.tenant_id = new.tenant_id and s.person_id = new.person_id and s.channel = new.channel;
    return null;
end
$$;
create trigger person_stats_person after insert on person_stats
    for each row execute function person_stats_person();

-- A renamed (or reclassified) person is renamed in their figures too.
create function people_person_stats() returns trigger language plpgsql as $$
begin
    update person_stats set name = left(new.name, 200), email = new.email, kind = new.kind
    where tenant_id = new.tenant_id and person_id = new.id;
    return null;
end
$$;
create trigger people_person_stats after update of name, email, kind on people
    for each row
    when (old.name is distinct from new.name or old.email is distinct from new.email
          or old.kind is distinct from new.kind)
    execute function people_person_stats();
