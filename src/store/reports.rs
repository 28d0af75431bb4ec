//! The report queries. They read the rollups (`person_stats`, `person_days`) kept by the
//! group commit, touching raw messages only for one person's history and for the partial
//! first day of a period, so each answers in milliseconds however long the history is.

use super::{DialectSql, Result, Store, with_pool};
use crate::domain::{MICROS_PER_DAY, PersonId, PersonRef, day_of};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub person: Option<PersonRef>,
    pub session_id: i64,
    pub channel: String,
    pub auth_method: String,
    pub login_id: String,
    pub ip: Option<String>,
    pub started_at: i64,
    pub last_interaction_at: i64,
}

/// A person's activity within a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    pub messages_in: i64,
    pub messages_out: i64,
    pub specific_in: i64,
    pub actions: i64,
    pub help_actions: i64,
    pub sessions: i64,
}

impl Activity {
    pub fn messages(&self) -> i64 {
        self.messages_in + self.messages_out
    }
}

#[derive(Debug, Clone)]
pub struct ActivityRow {
    pub person: PersonRef,
    pub activity: Activity,
    pub channels: Vec<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentityRow {
    pub channel: String,
    pub external_id: String,
    pub auth_method: String,
    pub authenticated_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    pub verified_email: Option<String>,
    pub jira_account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interest {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub at: i64,
    pub direction: String,
    pub channel: String,
    pub text: String,
    pub intent: Option<String>,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UserDetail {
    pub person: PersonRef,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub identities: Vec<IdentityRow>,
    pub account: Account,
    pub interests: Vec<Interest>,
    pub history: Vec<HistoryRow>,
}

/// Lifetime figures from `person_stats`.
struct StatRow {
    person_id: PersonId,
    activity: Activity,
    first_seen: i64,
    last_seen: i64,
}

const STAT_COLUMNS: &str = "person_id, messages_in, messages_out, specific_in, actions, help_actions, sessions, first_seen, last_seen";

/// People by id, each with the channels they used since `$3`, as one JSON document.
static PEOPLE_WITH_CHANNELS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select {agg} p.id, p.name, p.email, p.kind,
                (select {group_concat}(c.channel, ',') from person_stats c
                 where c.tenant_id = $2 and c.person_id = p.id and (c.channel || '') <> '*' and +c.last_seen >= $3) {/agg}
         from people p where p.id in (select cast(value ->> 0 as bigint) from {rows})",
    )
});
static DAYS_BY_IDS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select person_id, cast(sum(messages_in) as bigint), cast(sum(messages_out) as bigint), cast(sum(specific_in) as bigint),
                cast(sum(actions) as bigint), cast(sum(help_actions) as bigint), cast(sum(sessions) as bigint)
         from person_days
         where tenant_id = $2 and (channel || '') = $3 and +day > $4
           and person_id in (select cast(value ->> 0 as bigint) from {rows})
         group by person_id",
    )
});
static EDGE_MESSAGES_BY_IDS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select pm.person_id,
                cast(sum(case when m.direction = 'in' then 1 else 0 end) as bigint),
                cast(sum(case when m.direction = 'out' then 1 else 0 end) as bigint),
                cast(sum(m.specific) as bigint), cast(sum(m.n_actions) as bigint), cast(sum(m.n_help) as bigint)
         from person_messages pm join messages m on m.id = pm.message_id
         where pm.person_id in (select cast(value ->> 0 as bigint) from {rows})
           and pm.at >= $2 and pm.at < $3 and ($4 = '*' or m.channel = $4)
         group by pm.person_id",
    )
});
static EDGE_SESSIONS_BY_IDS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select person_id, count(*) from sessions
         where person_id in (select cast(value ->> 0 as bigint) from {rows})
           and started_at >= $2 and started_at < $3 and ($4 = '*' or channel = $4)
         group by person_id",
    )
});

/// Visitors of a period (`$3`): seen since and never helped, or helped only before it; each
/// with their person's name, email and kind, which every `person_stats` row carries (kept by
/// triggers, migration 0012). The two parts are read from their own indexes
/// (`person_stats_never_helped`, which holds everything listed, and `person_stats_helped`), so
/// a listing reads its visitors and no one else seen in the period, and no `people` row.
/// A template: see [`visitors_from`].
const VISITORS_FROM: &str = "from (
     select person_id, messages_in, sessions, first_seen, last_seen, name, email, kind from person_stats
      where tenant_id = $1 and channel = $2 and last_helped_at is null and last_seen >= $3 and kind is not null
     union all
     select person_id, messages_in, sessions, first_seen, last_seen, name, email, kind from person_stats
      where tenant_id = $1 and channel = $2 and last_helped_at < $3 and {no_index}last_seen >= $3 and kind is not null
     ) s";
const VISITOR_COLUMNS: &str =
    "s.person_id, s.messages_in, s.sessions, s.first_seen, s.last_seen, s.name, s.email, s.kind";

/// [`VISITORS_FROM`] for a backend. On SQLite the second part must not be read from
/// `person_stats_seen` (every row seen in the period, and a `person_stats` lookup for each).
fn visitors_from(d: &super::Dialect) -> String {
    VISITORS_FROM.replace("{no_index}", d.no_index)
}

/// `select` of `columns` `from` as one JSON document (SQLite: one value across the driver).
fn sqlite_json(columns: &str, from: &str) -> String {
    let d = &super::SQLITE;
    format!("select {} {columns} {} {from}", d.agg_open, d.agg_close)
}

/// The same test on every channel's row. Someone who got no help at all in the period got
/// none in any channel, so these rows hold every channel a visitor (all channels) used in
/// it: one read of the same two indexes instead of a lookup per visitor.
fn visitor_channels(d: &super::Dialect) -> String {
    let channels: Vec<String> = crate::domain::Channel::ALL
        .iter()
        .map(|c| format!("'{}'", c.as_str()))
        .collect();
    let channels = channels.join(", ");
    format!(
        "select person_id, channel from person_stats
          where tenant_id = $1 and channel in ({channels}) and last_helped_at is null and last_seen >= $2
         union all
         select person_id, channel from person_stats
          where tenant_id = $1 and channel in ({channels}) and last_helped_at < $2 and {}last_seen >= $2",
        d.no_index
    )
}
/// The channels each of some people used since `$3`.
static CHANNELS_BY_IDS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select {agg} c.person_id, c.channel {/agg} from person_stats c
         where c.tenant_id = $2 and c.person_id in (select cast(value ->> 0 as bigint) from {rows})
           and (c.channel || '') <> '*' and +c.last_seen >= $3",
    )
});

type VisitorFound = (
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
);

/// Visitors as read from `person_stats`, seen last first, with no channels yet and their
/// figures since they were first seen.
fn visitor_rows(found: Vec<VisitorFound>) -> Vec<ActivityRow> {
    let mut rows: Vec<ActivityRow> = found
        .into_iter()
        .map(
            |(id, messages_in, sessions, first_seen, last_seen, name, email, kind)| {
                let (person, channels) = person_with_channels(id, name, email, &kind, None);
                ActivityRow {
                    person,
                    channels,
                    activity: Activity {
                        messages_in,
                        sessions,
                        ..Activity::default()
                    },
                    first_seen,
                    last_seen,
                }
            },
        )
        .collect();
    rows.sort_by(|a, b| {
        b.last_seen
            .cmp(&a.last_seen)
            .then(a.person.id.cmp(&b.person.id))
    });
    rows
}

fn person_with_channels(
    id: PersonId,
    name: Option<String>,
    email: Option<String>,
    kind: &str,
    channels: Option<String>,
) -> (PersonRef, Vec<String>) {
    let mut channels: Vec<String> = channels
        .map(|c| c.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    channels.sort();
    let kind =
        crate::domain::PersonKind::parse(kind).unwrap_or(crate::domain::PersonKind::Customer);
    (
        PersonRef {
            id,
            name,
            email,
            kind,
        },
        channels,
    )
}

fn ids_json(ids: &[PersonId]) -> String {
    let wrapped: Vec<[i64; 1]> = ids.iter().map(|i| [*i]).collect();
    serde_json::to_string(&wrapped).unwrap_or_else(|_| "[]".into())
}

/// Open sessions that interacted since `$2` (channel `$3`, `*`: all), with their person.
const SESSIONS_FROM: &str = "from sessions s left join people p on p.id = s.person_id
     where s.tenant_id = $1 and s.ended_at is null and s.last_interaction_at >= $2
       and ($3 = '*' or s.channel = $3)";
const SESSION_COLUMNS: &str =
    "s.id, s.channel, s.auth_method, s.login_id, s.ip, s.started_at, s.last_interaction_at,
     p.id, p.name, p.email, p.kind";
/// A row of `SESSION_COLUMNS`.
type SessionFound = (
    i64,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn session_row(
    (
        id,
        channel,
        auth_method,
        login_id,
        ip,
        started_at,
        last_interaction_at,
        pid,
        name,
        email,
        kind,
    ): SessionFound,
) -> SessionRow {
    SessionRow {
        person: pid.map(|id| PersonRef {
            id,
            name,
            email,
            kind: kind
                .as_deref()
                .and_then(crate::domain::PersonKind::parse)
                .unwrap_or(crate::domain::PersonKind::Customer),
        }),
        session_id: id,
        channel,
        auth_method,
        login_id,
        ip,
        started_at,
        last_interaction_at,
    }
}

impl Store {
    /// Sessions open now: not ended, and active within the idle timeout.
    /// Open sessions that interacted within `idle`, latest first: `(total, rows)`. With
    /// `limit`, only the latest that many rows (a chat summary), counted from the index.
    pub async fn active_sessions(
        &self,
        tenant_id: &str,
        channel: Option<&str>,
        idle: std::time::Duration,
        limit: Option<usize>,
    ) -> Result<(u64, Vec<SessionRow>)> {
        let cutoff = self.now() - idle.as_micros() as i64;
        let channel = channel.unwrap_or("*");
        static ROWS: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select {SESSION_COLUMNS} {SESSIONS_FROM} order by s.last_interaction_at desc, s.id desc"
            )
        });
        static JSON_ROWS: LazyLock<String> = LazyLock::new(|| {
            format!("select json_group_array(json_array({SESSION_COLUMNS})) {SESSIONS_FROM}")
        });
        static COUNT: LazyLock<String> =
            LazyLock::new(|| format!("select count(*) {SESSIONS_FROM}"));
        let (total, found): (u64, Vec<SessionFound>) = match (limit, self.pool()) {
            // Every row, SQLite: one JSON document across the driver, not a message per row.
            (None, super::Pool::Sqlite(p)) => {
                let json: String = sqlx::query_scalar(sqlx::AssertSqlSafe(JSON_ROWS.as_str()))
                    .bind(tenant_id)
                    .bind(cutoff)
                    .bind(channel)
                    .fetch_one(p)
                    .await?;
                let mut found: Vec<SessionFound> = serde_json::from_str(&json)
                    .map_err(|e| super::StoreError::Database(e.to_string()))?;
                // Latest first, as `ROWS` orders them.
                found.sort_unstable_by_key(|r| std::cmp::Reverse((r.6, r.0)));
                (found.len() as u64, found)
            }
            _ => with_pool!(self.pool(), p, _d => {
                let found: Vec<SessionFound> = match limit {
                    None => sqlx::query_as(sqlx::AssertSqlSafe(ROWS.as_str()))
                        .bind(tenant_id)
                        .bind(cutoff)
                        .bind(channel)
                        .fetch_all(p)
                        .await?,
                    Some(n) => sqlx::query_as(sqlx::AssertSqlSafe(format!("{} limit {n}", *ROWS)))
                        .bind(tenant_id)
                        .bind(cutoff)
                        .bind(channel)
                        .fetch_all(p)
                        .await?,
                };
                let total = match limit {
                    Some(n) if found.len() >= n => {
                        let t: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(COUNT.as_str()))
                            .bind(tenant_id)
                            .bind(cutoff)
                            .bind(channel)
                            .fetch_one(p)
                            .await?;
                        t as u64
                    }
                    _ => found.len() as u64,
                };
                (total, found)
            }),
        };
        Ok((total, found.into_iter().map(session_row).collect()))
    }

    /// Who interacted since `since`, busiest first: `(total people, rows)`. With `top`, only
    /// that many rows, found without computing everyone's figures: people are visited by
    /// lifetime message count (an upper bound of their count in the period) until no one left
    /// can beat the `top`-th.
    pub async fn users_report(
        &self,
        tenant_id: &str,
        since: i64,
        channel: Option<&str>,
        top: Option<usize>,
    ) -> Result<(u64, Vec<ActivityRow>)> {
        let channel = channel.unwrap_or("*");
        let total: i64 = with_pool!(self.pool(), p, _d => {
            sqlx::query_scalar(
                "select count(*) from person_stats where tenant_id = $1 and channel = $2 and last_seen >= $3",
            )
            .bind(tenant_id)
            .bind(channel)
            .bind(since)
            .fetch_one(p)
            .await?
        });
        let mut best: Vec<StatRow> = Vec::new();
        match top {
            None => {
                let stats = self
                    .stats_where(tenant_id, channel, since, "", None, 0)
                    .await?;
                best = self.in_period(tenant_id, channel, since, stats).await?;
            }
            Some(n) => {
                let page = (n * 2).max(64);
                let mut offset = 0;
                'pages: loop {
                    let stats = self
                        .stats_where(tenant_id, channel, since, "", Some(page), offset)
                        .await?;
                    let fetched = stats.len();
                    let bounds: Vec<(PersonId, i64)> = stats
                        .iter()
                        .map(|s| (s.person_id, s.activity.messages()))
                        .collect();
                    let exact = self.in_period(tenant_id, channel, since, stats).await?;
                    let mut exact: HashMap<PersonId, StatRow> =
                        exact.into_iter().map(|s| (s.person_id, s)).collect();
                    for (pid, bound) in bounds {
                        if best.len() >= n && bound < best[n - 1].activity.messages() {
                            break 'pages;
                        }
                        if let Some(row) = exact.remove(&pid) {
                            best.push(row);
                            best.sort_by(|a, b| {
                                b.activity
                                    .messages()
                                    .cmp(&a.activity.messages())
                                    .then(b.last_seen.cmp(&a.last_seen))
                            });
                            best.truncate(n);
                        }
                    }
                    if fetched < page {
                        break;
                    }
                    offset += page;
                }
            }
        }
        best.sort_by(|a, b| {
            b.activity
                .messages()
                .cmp(&a.activity.messages())
                .then(b.last_seen.cmp(&a.last_seen))
                .then(a.person_id.cmp(&b.person_id))
        });
        let rows = self.activity_rows(tenant_id, since, best).await?;
        Ok((total as u64, rows))
    }

    /// People seen since `since` who asked nothing specific and got no help in the period:
    /// seen since then, and last helped (`last_helped_at`) never or before it, read from the
    /// two indexes of [`VISITORS_FROM`]. Period figures are looked up
    /// only for visitors first seen before the period. SQLite answers in one JSON document
    /// (one value across the driver); PostgreSQL's rows decode faster than it builds JSON.
    pub async fn visitors_report(
        &self,
        tenant_id: &str,
        since: i64,
        channel: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(u64, Vec<ActivityRow>)> {
        let channel = channel.unwrap_or("*");
        if let Some(n) = limit {
            return self.latest_visitors(tenant_id, since, channel, n).await;
        }
        type Found = VisitorFound;
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select {VISITOR_COLUMNS} {}",
                visitors_from(&super::POSTGRES)
            )
        });
        static CHANNELS: LazyLock<String> = LazyLock::new(|| visitor_channels(&super::POSTGRES));
        static SQLITE_SQL: LazyLock<String> =
            LazyLock::new(|| sqlite_json(VISITOR_COLUMNS, &visitors_from(&super::SQLITE)));
        static SQLITE_CHANNELS: LazyLock<String> = LazyLock::new(|| {
            let from = format!("from ({}) v", visitor_channels(&super::SQLITE));
            sqlite_json("person_id, channel", &from)
        });
        let decode = |e: serde_json::Error| super::StoreError::Database(e.to_string());
        let all_channels = channel == "*";
        // The visitors and (all channels) the channels they used: two reads, each on its own
        // connection, at once.
        let (found, used): (Vec<Found>, Option<Vec<(i64, String)>>) = match self.pool() {
            super::Pool::Sqlite(p) => {
                let found = async {
                    let json: String = sqlx::query_scalar(sqlx::AssertSqlSafe(SQLITE_SQL.as_str()))
                        .bind(tenant_id)
                        .bind(channel)
                        .bind(since)
                        .fetch_one(p)
                        .await?;
                    serde_json::from_str::<Vec<Found>>(&json).map_err(decode)
                };
                let used = async {
                    if !all_channels {
                        return Ok(None);
                    }
                    let json: String =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(SQLITE_CHANNELS.as_str()))
                            .bind(tenant_id)
                            .bind(since)
                            .fetch_one(p)
                            .await?;
                    Ok(Some(serde_json::from_str(&json).map_err(decode)?))
                };
                tokio::try_join!(found, used)?
            }
            super::Pool::Postgres(p) => {
                let found = sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
                    .bind(tenant_id)
                    .bind(channel)
                    .bind(since)
                    .fetch_all(p);
                let used = async {
                    if !all_channels {
                        return Ok(None);
                    }
                    sqlx::query_as(sqlx::AssertSqlSafe(CHANNELS.as_str()))
                        .bind(tenant_id)
                        .bind(since)
                        .fetch_all(p)
                        .await
                        .map(Some)
                };
                tokio::try_join!(found, used)?
            }
        };
        let rows = self
            .complete_visitors(tenant_id, channel, since, visitor_rows(found), used)
            .await?;
        Ok((rows.len() as u64, rows))
    }

    /// Gives visitors' rows their channels (`used`, or looked up) and, for those first seen
    /// before the period, the period's figures.
    async fn complete_visitors(
        &self,
        tenant_id: &str,
        channel: &str,
        since: i64,
        mut rows: Vec<ActivityRow>,
        used: Option<Vec<(PersonId, String)>>,
    ) -> Result<Vec<ActivityRow>> {
        let at: HashMap<PersonId, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.person.id, i))
            .collect();
        let used = match used {
            Some(used) => used,
            None => {
                let ids: Vec<PersonId> = rows.iter().map(|r| r.person.id).collect();
                self.channels_used(tenant_id, since, &ids).await?
            }
        };
        for (id, ch) in used {
            if let Some(&i) = at.get(&id) {
                rows[i].channels.push(ch);
            }
        }
        for r in &mut rows {
            r.channels.sort();
        }
        let older: Vec<StatRow> = rows
            .iter()
            .filter(|r| r.first_seen < since)
            .map(|r| StatRow {
                person_id: r.person.id,
                activity: r.activity.clone(),
                first_seen: r.first_seen,
                last_seen: r.last_seen,
            })
            .collect();
        for s in self.in_period(tenant_id, channel, since, older).await? {
            if let Some(&i) = at.get(&s.person_id) {
                rows[i].activity = s.activity;
            }
        }
        Ok(rows)
    }

    /// The channels each of `people` used since `since`: (person, channel).
    async fn channels_used(
        &self,
        tenant_id: &str,
        since: i64,
        people: &[PersonId],
    ) -> Result<Vec<(PersonId, String)>> {
        let mut used = Vec::new();
        for chunk in people.chunks(20_000) {
            let ids = ids_json(chunk);
            let json: String = with_pool!(self.pool(), p, d => {
                sqlx::query_scalar(CHANNELS_BY_IDS.get(d))
                    .bind(&ids)
                    .bind(tenant_id)
                    .bind(since)
                    .fetch_one(p)
                    .await?
            });
            used.extend(
                serde_json::from_str::<Vec<(i64, String)>>(&json)
                    .map_err(|e| super::StoreError::Database(e.to_string()))?,
            );
        }
        Ok(used)
    }

    /// The `limit` visitors seen last (a chat summary) and how many there are in all: both
    /// read from the indexes of [`VISITORS_FROM`], without building everyone's rows.
    async fn latest_visitors(
        &self,
        tenant_id: &str,
        since: i64,
        channel: &str,
        limit: usize,
    ) -> Result<(u64, Vec<ActivityRow>)> {
        type Found = VisitorFound;
        let (total, found): (i64, Vec<Found>) = with_pool!(self.pool(), p, d => {
            let from = visitors_from(d);
            let sql = format!(
                "select {VISITOR_COLUMNS} {from} order by s.last_seen desc, s.person_id limit {limit}"
            );
            let found: Vec<Found> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(tenant_id)
                .bind(channel)
                .bind(since)
                .fetch_all(p)
                .await?;
            let total: i64 = if found.len() < limit {
                found.len() as i64
            } else {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) {from}")))
                .bind(tenant_id)
                .bind(channel)
                .bind(since)
                .fetch_one(p)
                .await?
            };
            (total, found)
        });
        let rows = self
            .complete_visitors(tenant_id, channel, since, visitor_rows(found), None)
            .await?;
        Ok((total as u64, rows))
    }

    async fn stats_where(
        &self,
        tenant_id: &str,
        channel: &str,
        since: i64,
        extra: &str,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<StatRow>> {
        // `extra` is one of the fixed fragments above, never user input.
        let order = if limit.is_some() {
            "order by messages desc, person_id limit $4 offset $5"
        } else {
            ""
        };
        // Paged by activity: walk the (tenant, channel, messages) index; `+` keeps the
        // planner from sorting everyone seen since `since` instead.
        let seen = if limit.is_some() {
            "+last_seen"
        } else {
            "last_seen"
        };
        let sql = format!(
            "select {STAT_COLUMNS} from person_stats where tenant_id = $1 and channel = $2 and {seen} >= $3 {extra} {order}"
        );
        type Stat = (i64, i64, i64, i64, i64, i64, i64, i64, i64);
        let json: String = with_pool!(self.pool(), p, d => {
            let wrapped = format!("select {} {STAT_COLUMNS} {} from ({sql}) s", d.agg_open, d.agg_close);
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(wrapped)).bind(tenant_id).bind(channel).bind(since);
            if let Some(l) = limit {
                q = q.bind(l as i64).bind(offset as i64);
            }
            q.fetch_one(p).await?
        });
        let rows: Vec<Stat> =
            serde_json::from_str(&json).map_err(|e| super::StoreError::Database(e.to_string()))?;
        let mut out: Vec<StatRow> = rows
            .into_iter()
            .map(|r| StatRow {
                person_id: r.0,
                activity: Activity {
                    messages_in: r.1,
                    messages_out: r.2,
                    specific_in: r.3,
                    actions: r.4,
                    help_actions: r.5,
                    sessions: r.6,
                },
                first_seen: r.7,
                last_seen: r.8,
            })
            .collect();
        if limit.is_some() {
            // Aggregates keep no promise about order: restore the page's.
            out.sort_by(|a, b| {
                b.activity
                    .messages()
                    .cmp(&a.activity.messages())
                    .then(a.person_id.cmp(&b.person_id))
            });
        }
        Ok(out)
    }

    /// Replaces lifetime figures by the figures within the period for people first seen
    /// before it: whole days from `person_days`, the period's first partial day from the
    /// raw messages and sessions.
    async fn in_period(
        &self,
        tenant_id: &str,
        channel: &str,
        since: i64,
        mut stats: Vec<StatRow>,
    ) -> Result<Vec<StatRow>> {
        let older: Vec<PersonId> = stats
            .iter()
            .filter(|s| s.first_seen < since)
            .map(|s| s.person_id)
            .collect();
        if older.is_empty() {
            return Ok(stats);
        }
        let since_day = day_of(since);
        let day_end = (since_day + 1) * MICROS_PER_DAY;
        let mut period: HashMap<PersonId, Activity> = HashMap::new();
        let mut edge_only = None;
        if older.len() > self.window_threshold() {
            // Many people: one pass over the window's days beats looking each one up.
            let wanted: std::collections::HashSet<PersonId> = older.iter().copied().collect();
            with_pool!(self.pool(), p, _d => {
                let rows = sqlx::query(
                    "select person_id, cast(sum(messages_in) as bigint), cast(sum(messages_out) as bigint), cast(sum(specific_in) as bigint),
                            cast(sum(actions) as bigint), cast(sum(help_actions) as bigint), cast(sum(sessions) as bigint)
                     from person_days where tenant_id = $1 and channel = $2 and day > $3 group by person_id",
                )
                .bind(tenant_id)
                .bind(channel)
                .bind(since_day)
                .fetch_all(p)
                .await?;
                for r in rows {
                    let pid: i64 = r.try_get(0)?;
                    if !wanted.contains(&pid) {
                        continue;
                    }
                    let a = period.entry(pid).or_default();
                    a.messages_in += r.try_get::<i64, _>(1)?;
                    a.messages_out += r.try_get::<i64, _>(2)?;
                    a.specific_in += r.try_get::<i64, _>(3)?;
                    a.actions += r.try_get::<i64, _>(4)?;
                    a.help_actions += r.try_get::<i64, _>(5)?;
                    a.sessions += r.try_get::<i64, _>(6)?;
                }
                // Only people active on the period's first (partial) day need their messages read.
                let edge: Vec<i64> = sqlx::query_scalar(
                    "select person_id from person_days where tenant_id = $1 and channel = $2 and day = $3",
                )
                .bind(tenant_id)
                .bind(channel)
                .bind(since_day)
                .fetch_all(p)
                .await?;
                edge_only = Some(edge.into_iter().filter(|p| wanted.contains(p)).collect::<Vec<_>>());
            });
        }
        let lookups: &[PersonId] = edge_only.as_deref().unwrap_or(&older);
        for chunk in lookups.chunks(5000) {
            let ids = ids_json(chunk);
            with_pool!(self.pool(), p, d => {
                let rows = if edge_only.is_some() {
                    Vec::new()
                } else {
                    sqlx::query(DAYS_BY_IDS.get(d))
                        .bind(&ids)
                        .bind(tenant_id)
                        .bind(channel)
                        .bind(since_day)
                        .fetch_all(p)
                        .await?
                };
                for r in rows {
                    let a = period.entry(r.try_get(0)?).or_default();
                    a.messages_in += r.try_get::<i64, _>(1)?;
                    a.messages_out += r.try_get::<i64, _>(2)?;
                    a.specific_in += r.try_get::<i64, _>(3)?;
                    a.actions += r.try_get::<i64, _>(4)?;
                    a.help_actions += r.try_get::<i64, _>(5)?;
                    a.sessions += r.try_get::<i64, _>(6)?;
                }
                let rows = sqlx::query(EDGE_MESSAGES_BY_IDS.get(d))
                    .bind(&ids)
                    .bind(since)
                    .bind(day_end)
                    .bind(channel)
                    .fetch_all(p)
                    .await?;
                for r in rows {
                    let a = period.entry(r.try_get(0)?).or_default();
                    a.messages_in += r.try_get::<i64, _>(1)?;
                    a.messages_out += r.try_get::<i64, _>(2)?;
                    a.specific_in += r.try_get::<i64, _>(3)?;
                    a.actions += r.try_get::<i64, _>(4)?;
                    a.help_actions += r.try_get::<i64, _>(5)?;
                }
                let rows = sqlx::query(EDGE_SESSIONS_BY_IDS.get(d))
                    .bind(&ids)
                    .bind(since)
                    .bind(day_end)
                    .bind(channel)
                    .fetch_all(p)
                    .await?;
                for r in rows {
                    let a = period.entry(r.try_get(0)?).or_default();
                    a.sessions += r.try_get::<i64, _>(1)?;
                }
            });
        }
        for s in stats.iter_mut().filter(|s| s.first_seen < since) {
            s.activity = period.remove(&s.person_id).unwrap_or_default();
        }
        Ok(stats)
    }

    /// Attaches people and the channels they used in the period, keeping the order.
    async fn activity_rows(
        &self,
        tenant_id: &str,
        since: i64,
        stats: Vec<StatRow>,
    ) -> Result<Vec<ActivityRow>> {
        type Found = (i64, Option<String>, Option<String>, String, Option<String>);
        let mut people: HashMap<PersonId, (PersonRef, Vec<String>)> =
            HashMap::with_capacity(stats.len());
        let ids: Vec<PersonId> = stats.iter().map(|s| s.person_id).collect();
        for chunk in ids.chunks(20_000) {
            let json = ids_json(chunk);
            let found: String = with_pool!(self.pool(), p, d => {
                sqlx::query_scalar(PEOPLE_WITH_CHANNELS.get(d))
                    .bind(&json)
                    .bind(tenant_id)
                    .bind(since)
                    .fetch_one(p)
                    .await?
            });
            let found: Vec<Found> = serde_json::from_str(&found)
                .map_err(|e| super::StoreError::Database(e.to_string()))?;
            for (id, name, email, kind, channels) in found {
                people.insert(id, person_with_channels(id, name, email, &kind, channels));
            }
        }
        Ok(stats
            .into_iter()
            .filter_map(|s| {
                let (person, channels) = people.remove(&s.person_id)?;
                Some(ActivityRow {
                    person,
                    channels,
                    activity: s.activity,
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                })
            })
            .collect())
    }

    /// Everything the `user` report shows about one person.
    pub async fn user_detail(&self, person: &PersonRef, history: usize) -> Result<UserDetail> {
        with_pool!(self.pool(), p, _d => {
            let row = sqlx::query(
                "select created_at, locale, time_zone, email_verified, jira_account_id from people where id = $1",
            )
            .bind(person.id)
            .fetch_one(p)
            .await?;
            let verified: i64 = row.try_get(3)?;
            let account = Account {
                locale: row.try_get(1)?,
                time_zone: row.try_get(2)?,
                verified_email: if verified != 0 { person.email.clone() } else { None },
                jira_account_id: row.try_get(4)?,
            };
            let created_at: i64 = row.try_get(0)?;
            let roles: Vec<String> =
                sqlx::query_scalar("select role from person_roles where person_id = $1 order by role")
                    .bind(person.id)
                    .fetch_all(p)
                    .await?;
            let identities = sqlx::query(
                "select channel, external_id, auth_method, authenticated_at from identities where person_id = $1 order by id",
            )
            .bind(person.id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(IdentityRow {
                    channel: r.try_get(0)?,
                    external_id: r.try_get(1)?,
                    auth_method: r.try_get(2)?,
                    authenticated_at: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            let interests = sqlx::query(
                "select kind, value, count from interests where person_id = $1 order by count desc, last_at desc limit 50",
            )
            .bind(person.id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| Ok(Interest { kind: r.try_get(0)?, value: r.try_get(1)?, count: r.try_get(2)? }))
            .collect::<Result<Vec<_>>>()?;
            let history = sqlx::query(
                "select m.at, m.direction, m.channel, m.text, m.intent, m.actions
                 from person_messages pm join messages m on m.id = pm.message_id
                 where pm.person_id = $1 order by pm.at desc, pm.message_id desc limit $2",
            )
            .bind(person.id)
            .bind(history as i64)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                let actions: Option<String> = r.try_get(5)?;
                Ok(HistoryRow {
                    at: r.try_get(0)?,
                    direction: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    text: r.try_get(3)?,
                    intent: r.try_get(4)?,
                    actions: actions
                        .and_then(|a| serde_json::from_str(&a).ok())
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
            Ok(UserDetail {
                person: person.clone(),
                roles,
                created_at,
                identities,
                account,
                interests,
                history,
            })
        })
    }
}

impl Store {
    /// Sessions active now, in every tenant (the `koji_sessions_active` gauge).
    pub async fn count_active_sessions(&self, idle: std::time::Duration) -> Result<u64> {
        let cutoff = self.now() - idle.as_micros() as i64;
        with_pool!(self.pool(), p, _d => {
            let n: i64 = sqlx::query_scalar(
                "select count(*) from sessions where ended_at is null and last_interaction_at >= $1",
            )
            .bind(cutoff)
            .fetch_one(p)
            .await?;
            Ok(n as u64)
        })
    }
}
