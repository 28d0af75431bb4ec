-- A person's messages by time, as the report and export queries read them. SQLite keeps this
-- as a table filled by its roll-up (see its migration 0011); here the index messages_person_at,
-- updated in each exchange's own transaction, already is it.
create view person_messages as
    select person_id, at, id as message_id from messages where person_id is not null;
