-- Period reports over many people aggregate a window of days in one pass.
create index person_days_window on person_days(tenant_id, channel, day);
