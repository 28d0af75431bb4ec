-- SQLite brings the rollups (person_stats, person_days, interests) and the per-person index of
-- messages (person_messages) up to date from the messages after this cursor, in id order: in
-- every small group commit, about once a second under load, and before any report or export
-- reads them. SQLite has one writer at a time and messages ids are autoincrement, so ids are
-- commit-ordered and "after the cursor" is exactly what is not rolled up yet, whichever process
-- wrote it. (PostgreSQL replicas write concurrently: there the rollups commit in each
-- exchange's own transaction, person_messages is a view, and no cursor is kept.)
create table rollup_cursor (
    id integer primary key check (id = 1),
    message_id integer not null
);
insert into rollup_cursor (id, message_id) select 1, coalesce(max(id), 0) from messages;

-- A person's messages by time. It replaces the index messages_person_at, which every group
-- commit had to update at as many random places as there were people talking (a thousand
-- concurrent conversations dirtied a thousand index pages per commit); filled by the roll-up,
-- it takes each person's new messages once a second under load.
create table person_messages (
    person_id integer not null,
    at integer not null,
    message_id integer not null,
    primary key (person_id, at, message_id)
) without rowid;
insert into person_messages (person_id, at, message_id)
    select person_id, at, id from messages where person_id is not null;
drop index messages_person_at;
