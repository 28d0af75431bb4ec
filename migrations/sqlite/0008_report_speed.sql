-- When someone was last helped, per channel and '*' (all channels): the time of their last
-- inbound message asking something specific or of their last help action (anything but
-- auth_offered / auth_completed); null: never. Kept by the group commit. A visitor of a
-- period is then someone seen in it whose last help is null or before it: a column test,
-- not a read of their days.
alter table person_stats add column last_helped_at integer;

update person_stats set last_helped_at = h.at
from (
    select tenant_id, person_id, channel, max(at) as at from messages
    where person_id is not null and ((direction = 'in' and specific <> 0) or n_help > 0)
    group by tenant_id, person_id, channel
    union all
    select tenant_id, person_id, '*', max(at) from messages
    where person_id is not null and ((direction = 'in' and specific <> 0) or n_help > 0)
    group by tenant_id, person_id
) as h
where person_stats.tenant_id = h.tenant_id and person_stats.person_id = h.person_id
  and person_stats.channel = h.channel;

-- Everyone seen since a time, with what `visitors` shows of them, from the index alone.
drop index person_stats_unhelped;
drop index person_stats_seen;
create index person_stats_seen on person_stats(tenant_id, channel, last_seen, last_helped_at, first_seen, messages_in, sessions, person_id);
