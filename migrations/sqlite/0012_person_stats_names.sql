-- Each person_stats row carries its person's name (its first 200 characters), email and kind,
-- kept by the triggers below, so that a `visitors` listing (20k people) needs no lookup in
-- people per visitor.
alter table person_stats add column name text;
alter table person_stats add column email text;
alter table person_stats add column kind text;

update person_stats set name = substr(p.name, 1, 200), email = p.email, kind = p.kind
from people p where p.id = person_stats.person_id;

-- The visitors of a period are those seen in it and never helped, or helped only before it:
-- one index for each part, so a listing reads its visitors and not everyone seen in the period.
-- Those never helped come from this index alone.
create index person_stats_never_helped on person_stats(tenant_id, channel, last_seen, last_helped_at, first_seen, messages_in, sessions, person_id, name, email, kind)
    where last_helped_at is null;
create index person_stats_helped on person_stats(tenant_id, channel, last_helped_at, last_seen)
    where last_helped_at is not null;

-- A new row takes its person's details once; the roll-up's upserts that only add figures to an
-- existing row fire no insert trigger.
create trigger person_stats_person after insert on person_stats
begin
    update person_stats set
        name = (select substr(name, 1, 200) from people where id = new.person_id),
        email = (select email from people where id = new.person_id),
        kind = (select kind from people where id = new.person_id)
    where tenant_id = new.tenant_id and person_id = new.person_id and channel = new.channel;
end;

-- A renamed (or reclassified) person is renamed in their figures too.
create trigger people_person_stats after update of name, email, kind on people
when old.name is not new.name or old.email is not new.email or old.kind is not new.kind
begin
    update person_stats set name = substr(new.name, 1, 200), email = new.email, kind = new.kind
    where tenant_id = new.tenant_id and person_id = new.id;
end;
