-- Each person_stats row carries its person's name, email and kind, kept by the triggers below,
-- so that a `visitors` listing (20k people) reads person_stats alone instead of joining people.
-- (SQLite also puts them in its person_stats_seen index; here an index entry is limited to
-- about 2.7 kB, which a long name could pass, so the index stays as it is.)
alter table person_stats add column name text, add column email text, add column kind text;

update person_stats set name = p.name, email = p.email, kind = p.kind
from people p where p.id = person_stats.person_id;

-- A new row takes its person's details once. An after-insert trigger fires only for rows an
-- upsert really inserts, not for the exchanges that add figures to an existing row.
create function person_stats_person() returns trigger language plpgsql as $$
begin
    update person_stats s set name = p.name, email = p.email, kind = p.kind
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
    update person_stats set name = new.name, email = new.email, kind = new.kind
    where tenant_id = new.tenant_id and person_id = new.id;
    return null;
end
$$;
create trigger people_person_stats after update of name, email, kind on people
    for each row
    when (old.name is distinct from new.name or old.email is distinct from new.email
          or old.kind is distinct from new.kind)
    execute function people_person_stats();
