//! Group commit: every exchange (messages, the session's last interaction, the per-person
//! rollups and interests) is queued to one writer task, which commits whatever has queued up
//! in one transaction and only then answers each caller. A caller that has its answer knows
//! its exchange is durable; many callers share one commit.
//!
//! Rollups: PostgreSQL adds each batch's figures in the batch's own transaction. SQLite rolls
//! them up from the messages after a cursor (migration 0011) — right after a small batch's
//! commit, about once a second under load, and whenever someone flushes (every report does)
//! — so a busy person's hundred messages cost one upsert instead of a hundred. A roll-up is a
//! transaction of its own, committed after the batch's callers have their answer.
//!
//! A platform message id is claimed in the same transaction as its message: a second message
//! with the same id (a retry, possibly on another replica) is reported as a duplicate and
//! nothing of it is written.

use super::{Dialect, DialectSql, POSTGRES, Pool, Result, SQLITE, StoreError};
use crate::domain::{Channel, day_of};
use crate::nlu::Entity;
use serde::Serialize;
// The writer's own maps hash ids and short keys it built itself: FxHash, not SipHash.
use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One recorded message, inbound or reply.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub tenant_id: Arc<str>,
    pub session_id: i64,
    pub person_id: Option<i64>,
    pub identity_id: i64,
    pub channel: Channel,
    pub direction: Direction,
    pub text: String,
    pub intent: Option<String>,
    pub specific: bool,
    pub entities: Vec<Entity>,
    pub actions: Vec<String>,
    pub platform_msg_id: Option<String>,
    pub at: i64,
}

/// Actions that only concern signing in do not count as help (visitors report).
pub fn is_help_action(action: &str) -> bool {
    !matches!(action, "auth_offered" | "auth_completed")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Committed,
    /// The first row's platform message id was already recorded: nothing was written.
    Duplicate,
}

/// A conversation-state change that commits with its exchange: the identity, and the new
/// state as JSON (`None` clears it).
#[derive(Debug, Clone)]
pub struct StateWrite {
    pub identity_id: i64,
    pub state: Option<String>,
}

enum Op {
    Write(Queued),
    Flush(oneshot::Sender<()>),
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    tx: mpsc::Sender<Op>,
}

/// Every statement takes its rows as one JSON array of arrays (`$1`, read with the
/// dialect's `{rows}`): one cached statement per table whatever the batch size, one value
/// to bind, and nothing for the database to re-plan when the batch changes.
macro_rules! from_rows {
    ($cols:literal) => {
        concat!(" select ", $cols, " from {rows} where true")
    };
}

/// Rollup rows for people that still exist: SQLite adds a window's figures after the fact,
/// and whoever was erased meanwhile must not come back as figures and interests.
macro_rules! from_live_rows {
    ($cols:literal) => {
        concat!(
            " select ",
            $cols,
            " from {rows} where exists (select 1 from people where people.id = cast(value ->> 1 as bigint))"
        )
    };
}

macro_rules! message_insert {
    ($tail:literal) => {
        concat!(
            "insert into messages (tenant_id, session_id, person_id, identity_id, channel, direction, text, intent, specific, entities, actions, n_actions, n_help, platform_msg_id, at)",
            " select value ->> 0, cast(value ->> 1 as bigint), cast(value ->> 2 as bigint), cast(value ->> 3 as bigint), value ->> 4, value ->> 5, value ->> 6, value ->> 7, cast(value ->> 8 as bigint), value ->> 9, value ->> 10, cast(value ->> 11 as bigint), cast(value ->> 12 as bigint), value ->> 13, cast(value ->> 14 as bigint) from {rows} where true",
            $tail
        )
    };
}

static MESSAGES: LazyLock<DialectSql> = LazyLock::new(|| DialectSql::new(message_insert!("")));

static CLAIMS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(message_insert!(
        " on conflict (tenant_id, channel, platform_msg_id) where platform_msg_id is not null do nothing returning platform_msg_id, channel, tenant_id"
    ))
});

/// The upsert that adds a batch's (or a rolled-up tail's) figures to `person_days`.
macro_rules! days_upsert {
    () => {
        " on conflict (tenant_id, person_id, day, channel) do update set
      messages_in = person_days.messages_in + excluded.messages_in,
      messages_out = person_days.messages_out + excluded.messages_out,
      specific_in = person_days.specific_in + excluded.specific_in,
      actions = person_days.actions + excluded.actions,
      help_actions = person_days.help_actions + excluded.help_actions"
    };
}

/// The upsert that adds figures to `person_stats`.
macro_rules! stats_upsert {
    () => {
        " on conflict (tenant_id, person_id, channel) do update set
      messages = person_stats.messages + excluded.messages,
      messages_in = person_stats.messages_in + excluded.messages_in,
      messages_out = person_stats.messages_out + excluded.messages_out,
      specific_in = person_stats.specific_in + excluded.specific_in,
      actions = person_stats.actions + excluded.actions,
      help_actions = person_stats.help_actions + excluded.help_actions,
      first_seen = case when excluded.first_seen < person_stats.first_seen then excluded.first_seen else person_stats.first_seen end,
      last_seen = case when excluded.last_seen > person_stats.last_seen then excluded.last_seen else person_stats.last_seen end,
      last_helped_at = case when person_stats.last_helped_at is null or excluded.last_helped_at > person_stats.last_helped_at
                            then coalesce(excluded.last_helped_at, person_stats.last_helped_at) else person_stats.last_helped_at end"
    };
}

/// The upsert that adds mentions to `interests`.
macro_rules! interests_upsert {
    () => {
        " on conflict (person_id, kind, value) do update set
      count = interests.count + excluded.count,
      last_at = case when excluded.last_at > interests.last_at then excluded.last_at else interests.last_at end"
    };
}

macro_rules! days_insert {
    ($rows:ident) => {
        concat!(
            "insert into person_days (tenant_id, person_id, day, channel, messages_in, messages_out, specific_in, actions, help_actions)",
            $rows!("value ->> 0, cast(value ->> 1 as bigint), cast(value ->> 2 as bigint), value ->> 3, cast(value ->> 4 as bigint), cast(value ->> 5 as bigint), cast(value ->> 6 as bigint), cast(value ->> 7 as bigint), cast(value ->> 8 as bigint)"),
            days_upsert!()
        )
    };
}

macro_rules! stats_insert {
    ($rows:ident) => {
        concat!(
            "insert into person_stats (tenant_id, person_id, channel, messages, messages_in, messages_out, specific_in, actions, help_actions, first_seen, last_seen, last_helped_at)",
            $rows!("value ->> 0, cast(value ->> 1 as bigint), value ->> 2, cast(value ->> 3 as bigint), cast(value ->> 4 as bigint), cast(value ->> 5 as bigint), cast(value ->> 6 as bigint), cast(value ->> 7 as bigint), cast(value ->> 8 as bigint), cast(value ->> 9 as bigint), cast(value ->> 10 as bigint), cast(value ->> 11 as bigint)"),
            stats_upsert!()
        )
    };
}

macro_rules! interests_insert {
    ($rows:ident) => {
        concat!(
            "insert into interests (tenant_id, person_id, kind, value, count, last_at)",
            $rows!("value ->> 0, cast(value ->> 1 as bigint), value ->> 2, value ->> 3, cast(value ->> 4 as bigint), cast(value ->> 5 as bigint)"),
            interests_upsert!()
        )
    };
}

static DAYS: LazyLock<DialectSql> = LazyLock::new(|| DialectSql::new(days_insert!(from_rows)));
static STATS: LazyLock<DialectSql> = LazyLock::new(|| DialectSql::new(stats_insert!(from_rows)));
static INTERESTS: LazyLock<DialectSql> =
    LazyLock::new(|| DialectSql::new(interests_insert!(from_rows)));
static LIVE_DAYS: LazyLock<DialectSql> =
    LazyLock::new(|| DialectSql::new(days_insert!(from_live_rows)));
static LIVE_STATS: LazyLock<DialectSql> =
    LazyLock::new(|| DialectSql::new(stats_insert!(from_live_rows)));
static LIVE_INTERESTS: LazyLock<DialectSql> =
    LazyLock::new(|| DialectSql::new(interests_insert!(from_live_rows)));

/// The messages a SQLite catch-up rolls up: everything after the cursor (migration 0011).
macro_rules! tail {
    ($cols:literal) => {
        concat!(
            "select ",
            $cols,
            " from messages where id > (select message_id from rollup_cursor) and person_id is not null"
        )
    };
}

/// SQLite: brings the rollups and `person_messages` up to date from the messages after the
/// cursor, then moves the cursor past them, in the caller's write transaction. The figures are the ones
/// [`Counts::add`] keeps for PostgreSQL (the same rules, written once more in SQL).
const CATCH_UP: [&str; 5] = [
    concat!(
        "insert into person_stats (tenant_id, person_id, channel, messages, messages_in, messages_out, specific_in, actions, help_actions, first_seen, last_seen, last_helped_at)
         select tenant_id, person_id, ch, count(*), sum(direction = 'in'), sum(direction = 'out'), sum(direction = 'in' and specific <> 0),
                sum(n_actions), sum(n_help), min(at), max(at),
                max(case when (direction = 'in' and specific <> 0) or n_help > 0 then at end)
         from (",
        tail!("tenant_id, person_id, channel as ch, direction, specific, n_actions, n_help, at"),
        " union all ",
        tail!("tenant_id, person_id, '*', direction, specific, n_actions, n_help, at"),
        ") where true group by tenant_id, person_id, ch",
        stats_upsert!()
    ),
    concat!(
        "insert into person_days (tenant_id, person_id, day, channel, messages_in, messages_out, specific_in, actions, help_actions)
         select tenant_id, person_id, day, ch, sum(direction = 'in'), sum(direction = 'out'), sum(direction = 'in' and specific <> 0),
                sum(n_actions), sum(n_help)
         from (",
        tail!("tenant_id, person_id, at / 86400000000 as day, channel as ch, direction, specific, n_actions, n_help"),
        " union all ",
        tail!("tenant_id, person_id, at / 86400000000, '*', direction, specific, n_actions, n_help"),
        ") where true group by tenant_id, person_id, day, ch",
        days_upsert!()
    ),
    concat!(
        "insert into interests (tenant_id, person_id, kind, value, count, last_at)
         select m.tenant_id, m.person_id, e.value ->> 'type', e.value ->> 'value', count(*), max(m.at)
         from (",
        tail!("tenant_id, person_id, entities, at"),
        " and direction = 'in' and entities is not null) as m, json_each(m.entities) as e
         where true group by m.tenant_id, m.person_id, e.value ->> 'type', e.value ->> 'value'",
        interests_upsert!()
    ),
    concat!(
        "insert into person_messages (person_id, at, message_id) ",
        tail!("person_id, at, id"),
        ""
    ),
    "update rollup_cursor set message_id = max(message_id, (select coalesce(max(id), 0) from messages))",
];

const MAX_ID: &str = "select coalesce(max(id), 0) from messages";

/// SQLite, in a write transaction on `tx`: brings the rollups and `person_messages` up to
/// date with every message after the cursor. When those are exactly the messages whose
/// figures `pending` holds, the figures are added as they are; otherwise (another process
/// wrote or rolled up meanwhile, a commit failed, Koji restarted after a crash) they are
/// recomputed from the messages.
async fn roll_up(tx: &mut sqlx::SqliteConnection, pending: &Pending) -> Result<()> {
    let cursor: i64 = sqlx::query_scalar("select message_id from rollup_cursor")
        .fetch_one(&mut *tx)
        .await?;
    let max: i64 = sqlx::query_scalar(MAX_ID).fetch_one(&mut *tx).await?;
    let ours = !pending.spoiled
        && match pending.range {
            Some((start, end)) => start == cursor && end == max,
            None => cursor == max,
        };
    if ours {
        if cursor != max {
            for (sql, rows) in pending.deltas.statements(true) {
                sqlx::query(sqlx::AssertSqlSafe(sql.get(&SQLITE)))
                    .bind(rows)
                    .execute(&mut *tx)
                    .await?;
            }
            for sql in &CATCH_UP[3..] {
                sqlx::query(*sql).execute(&mut *tx).await?;
            }
        }
    } else {
        tracing::debug!(
            cursor,
            max,
            "rollups: recomputing the tail from the messages"
        );
        for sql in CATCH_UP {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// SQLite: whether messages after the cursor wait to be rolled up.
const TAIL_WAITS: &str =
    "select exists (select 1 from messages where id > (select message_id from rollup_cursor))";

static TOUCHES: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "update sessions set last_interaction_at = x.at
         from (select cast(value ->> 0 as bigint) as id, cast(value ->> 1 as bigint) as at from {rows}) as x
         where sessions.id = x.id and sessions.last_interaction_at < x.at",
    )
});

static STATES: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(concat!(
        "insert into conversation_state (identity_id, state, updated_at)",
        from_rows!("cast(value ->> 0 as bigint), value ->> 1, cast(value ->> 2 as bigint)"),
        " on conflict (identity_id) do update set state = excluded.state, updated_at = excluded.updated_at"
    ))
});

static CLEARED_STATES: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "delete from conversation_state
         where identity_id in (select cast(value ->> 0 as bigint) from {rows})",
    )
});

/// The JSON array of arrays a batch statement reads as `$1`.
fn rows_json<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("rows serialise")
}

/// `[a,b,…]` from JSON values already serialised (or comma-separated runs of them).
fn json_array<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for p in parts {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(p);
    }
    out.push(']');
    out
}

impl BatchWriter {
    /// Starts the writer task. It stops when every handle is dropped, after committing what
    /// was queued.
    pub fn start(pool: Pool, batch_max: usize) -> (BatchWriter, tokio::task::JoinHandle<()>) {
        Self::start_with(pool, batch_max, RollPolicy::default())
    }

    /// Like [`BatchWriter::start`], with SQLite's rollups brought up to date as `policy` says.
    pub fn start_with(
        pool: Pool,
        batch_max: usize,
        policy: RollPolicy,
    ) -> (BatchWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 8);
        let batch_max = batch_max.max(1);
        let task = match pool {
            // The writer waits on its SQLite connection (a thread of its own) a dozen times
            // per commit. On a thread and runtime of its own it resumes at once each time,
            // instead of queueing behind a thousand conversations' tasks on the shared
            // runtime's workers, and every reply waits for this commit.
            Pool::Sqlite(_) => tokio::task::spawn_blocking(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(run(pool, rx, batch_max, policy)),
                    Err(e) => tracing::error!(error = %e, "the group-commit writer cannot start"),
                }
            }),
            Pool::Postgres(_) => tokio::spawn(run(pool, rx, batch_max, policy)),
        };
        (BatchWriter { tx }, task)
    }

    /// Records `rows` durably. With `claim`, the first row's platform message id is claimed
    /// first and a duplicate writes nothing.
    pub async fn write(&self, rows: Vec<MessageRow>, claim: bool) -> Result<WriteOutcome> {
        self.enqueue(rows, claim)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Queues the write and returns at once; the receiver answers once it is committed.
    pub async fn enqueue(
        &self,
        rows: Vec<MessageRow>,
        claim: bool,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome>>> {
        self.enqueue_with_state(rows, claim, None).await
    }

    /// Like [`BatchWriter::enqueue`], with a conversation-state change committed in the same
    /// transaction as the exchange (and not at all when the exchange is a duplicate).
    pub async fn enqueue_with_state(
        &self,
        rows: Vec<MessageRow>,
        claim: bool,
        state: Option<StateWrite>,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome>>> {
        let (done, rx) = oneshot::channel();
        // Each row as `MESSAGES` reads it, made here on the caller's task so the writer,
        // which every reply waits for, only joins them.
        let mut claim_json = None;
        let mut json = String::new();
        for (i, r) in rows.iter().enumerate() {
            let one = serde_json::to_string(&message_json(r)).expect("row serialises");
            if claim && i == 0 {
                claim_json = Some(one);
            } else {
                if !json.is_empty() {
                    json.push(',');
                }
                json.push_str(&one);
            }
        }
        self.tx
            .send(Op::Write(Queued {
                rows,
                claim,
                state,
                json,
                claim_json,
                done,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Returns once everything queued before it is committed and, on SQLite, the rollups
    /// are up to date with every committed message (also another process's).
    pub async fn flush(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op::Flush(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }
}

/// The writer's own connection, kept between batches (SQLite has one writer anyway).
enum Conn {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

async fn connect(pool: &Pool) -> Result<Conn> {
    Ok(match pool {
        Pool::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
        Pool::Postgres(p) => Conn::Postgres(p.acquire().await?),
    })
}

/// How long the writer keeps its connection while nothing is queued.
const KEEP_CONN: std::time::Duration = std::time::Duration::from_millis(50);

/// How often the SQLite checkpointer copies committed pages from the WAL to the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// WAL frames (pages) past which the writer starts the WAL over.
const RESTART_FRAMES: i64 = 4000;

/// SQLite: committed pages are copied from the WAL back to the database by this task, beside
/// the writer rather than in its commits (with `synchronous=normal` a checkpoint syncs the WAL
/// and the database file: two fsyncs every commit would otherwise wait for once the WAL passes
/// `wal_autocheckpoint`). A passive checkpoint never blocks the writer or readers. It leaves
/// in `wal_frames` how long the WAL has grown, for the writer to start it over (see
/// [`restart_wal`]).
fn start_checkpointer(
    pool: &Pool,
    wal_frames: Arc<AtomicI64>,
) -> Option<tokio::task::JoinHandle<()>> {
    let Pool::Sqlite(p) = pool else { return None };
    let p = p.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if p.is_closed() {
                break;
            }
            // (busy, frames in the WAL, frames copied back)
            match sqlx::query_as::<_, (i64, i64, i64)>("pragma wal_checkpoint(passive)")
                .fetch_one(&p)
                .await
            {
                Ok((busy, frames, copied)) => {
                    wal_frames.store(frames, Ordering::Relaxed);
                    tracing::trace!(busy, frames, copied, "checkpoint");
                }
                Err(e) => tracing::debug!(error = %e, "checkpoint"),
            }
        }
    }))
}

/// SQLite, on the writer's connection between two commits, once the WAL has grown past
/// [`RESTART_FRAMES`]: copies what the checkpointer has not yet and starts the WAL over.
/// A busy writer never lets SQLite do this itself (each commit adds frames the checkpointer
/// has not copied yet when the next begins), and from any other connection a restart must
/// wait for the writer's commit while holding every later one back (seen: 1.3 s).
async fn restart_wal(conn: &mut Conn, wal_frames: &AtomicI64) {
    if wal_frames.load(Ordering::Relaxed) < RESTART_FRAMES {
        return;
    }
    let Conn::Sqlite(c) = conn else { return };
    match sqlx::query_as::<_, (i64, i64, i64)>("pragma wal_checkpoint(restart)")
        .fetch_one(&mut **c)
        .await
    {
        Ok((busy, frames, copied)) => {
            if busy == 0 {
                wal_frames.store(0, Ordering::Relaxed);
            }
            tracing::trace!(busy, frames, copied, "checkpoint: WAL started over");
        }
        Err(e) => tracing::debug!(error = %e, "checkpoint restart"),
    }
}

/// SQLite: when the writer brings the rollups up to date besides every flush (reports and
/// exports flush first, so they never see a lag).
#[derive(Debug, Clone, Copy)]
pub struct RollPolicy {
    /// A group commit of at most this many writes is followed by a roll-up: under light
    /// load every commit is, so the rollups never lag.
    pub with_batches_up_to: usize,
    /// Under load, at least this often. Each roll-up upserts once per person, channel and
    /// day however many messages they sent since the last: that is the saving. Another
    /// process reading the file meanwhile may see rollups up to this much behind.
    pub every: std::time::Duration,
    /// When nothing is queued for a moment.
    pub when_idle: bool,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            with_batches_up_to: 16,
            every: std::time::Duration::from_millis(1000),
            when_idle: true,
        }
    }
}

impl RollPolicy {
    /// Only when someone flushes (tests use it to hold figures back on purpose).
    pub fn on_flush_only() -> Self {
        RollPolicy {
            with_batches_up_to: 0,
            every: std::time::Duration::MAX,
            when_idle: false,
        }
    }
}

/// What the writer knows of the rollups.
struct Rollups {
    /// Whether this dialect rolls up from a cursor (SQLite) instead of in each exchange's
    /// transaction (PostgreSQL).
    deferred: bool,
    policy: RollPolicy,
    last: std::time::Instant,
    /// This writer committed messages since its last catch-up.
    behind: bool,
    pending: Pending,
}

/// SQLite: the rollup figures of the messages this writer committed since the last roll-up,
/// and which ids those messages have, so a roll-up can add them without reading them back.
#[derive(Default)]
struct Pending {
    deltas: Deltas,
    /// Max message id before our first un-rolled commit, and after our last.
    range: Option<(i64, i64)>,
    /// Something else wrote messages between ours, or a commit failed: the figures are
    /// recomputed from the messages table instead.
    spoiled: bool,
}

impl Pending {
    /// Our commit wrote the messages after `before` up to `end`.
    fn committed(&mut self, before: i64, end: i64) {
        self.range = match self.range {
            None => Some((before, end)),
            Some((start, last)) => {
                if before != last {
                    self.spoiled = true;
                }
                Some((start, end))
            }
        };
    }

    fn reset(&mut self) {
        *self = Pending::default();
    }
}

impl Rollups {
    /// The rollups were just brought up to date (the pending figures are in the database).
    fn rolled(&mut self) {
        self.last = std::time::Instant::now();
        self.behind = false;
        self.pending.reset();
    }

    /// Whether a commit of `writes` writes should be followed by a roll-up.
    fn due(&self, writes: usize, flushing: bool) -> bool {
        self.deferred
            && (flushing
                || writes <= self.policy.with_batches_up_to
                || self.last.elapsed() >= self.policy.every)
    }
}

async fn run(pool: Pool, mut rx: mpsc::Receiver<Op>, batch_max: usize, policy: RollPolicy) {
    let wal_frames = Arc::new(AtomicI64::new(0));
    let checkpointer = start_checkpointer(&pool, wal_frames.clone());
    let mut ops = Vec::with_capacity(batch_max);
    let mut conn: Option<Conn> = None;
    let mut rollups = Rollups {
        deferred: matches!(pool, Pool::Sqlite(_)),
        policy,
        last: std::time::Instant::now(),
        behind: false,
        pending: Pending::default(),
    };
    loop {
        ops.clear();
        if conn.is_some() {
            // Keep the connection through short pauses: taking it back from the pool means
            // queueing behind every reader, and a reply waits for this commit.
            match tokio::time::timeout(KEEP_CONN, rx.recv_many(&mut ops, batch_max)).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    // Idle: roll up what the last busy commits left, then give the connection
                    // back, so the pool can be closed or checkpointed.
                    if rollups.behind && rollups.policy.when_idle {
                        catch_up(&pool, &mut conn, &mut rollups).await;
                    }
                    conn = None;
                }
            }
        }
        if ops.is_empty() && rx.recv_many(&mut ops, batch_max).await == 0 {
            break;
        }
        // Let the callers that are about to write join this commit: a few yields cost
        // microseconds, a commit costs milliseconds.
        for _ in 0..4 {
            if ops.len() >= batch_max {
                break;
            }
            tokio::task::yield_now().await;
            while ops.len() < batch_max {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        let mut writes = Vec::with_capacity(ops.len());
        let mut flushes = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Write(w) => writes.push(w),
                Op::Flush(done) => flushes.push(done),
            }
        }
        if !writes.is_empty() {
            let started = std::time::Instant::now();
            let n = writes.len();
            let roll = rollups.due(n, !flushes.is_empty());
            if let Some(c) = conn.as_mut() {
                restart_wal(c, &wal_frames).await;
            }
            commit_all(&pool, &mut conn, writes, &mut rollups.pending).await;
            rollups.behind = rollups.deferred;
            let committed = started.elapsed();
            // The roll-up commits on its own, after the writes' callers have their answer:
            // their conversations go on meanwhile instead of waiting for it.
            if roll {
                catch_up(&pool, &mut conn, &mut rollups).await;
            }
            tracing::trace!(
                writes = n,
                micros = committed.as_micros() as u64,
                roll_micros = (started.elapsed() - committed).as_micros() as u64,
                "group commit"
            );
        } else if !flushes.is_empty() && rollups.deferred {
            // Also what another process wrote (the `koji report` CLI beside `koji serve`).
            catch_up(&pool, &mut conn, &mut rollups).await;
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
    if rollups.deferred {
        catch_up(&pool, &mut conn, &mut rollups).await;
        conn = None;
    }
    drop(conn);
    if let Some(c) = checkpointer {
        c.abort();
    }
    if let Pool::Sqlite(p) = &pool {
        let _ = sqlx::query("pragma wal_checkpoint(truncate)")
            .execute(p)
            .await;
    }
}

/// SQLite: rolls up whatever messages wait after the cursor, in a transaction of its own.
/// A failure is logged and left for the next catch-up: the messages are safe either way.
async fn catch_up(pool: &Pool, conn: &mut Option<Conn>, rollups: &mut Rollups) {
    let r = async {
        if conn.is_none() {
            *conn = Some(connect(pool).await?);
        }
        let Some(Conn::Sqlite(c)) = conn.as_mut() else {
            return Ok(());
        };
        let waits: bool = sqlx::query_scalar(TAIL_WAITS).fetch_one(&mut **c).await?;
        if !waits {
            return Ok(());
        }
        let mut tx = sqlx::Connection::begin_with(&mut **c, SQLITE.begin_write).await?;
        roll_up(&mut tx, &rollups.pending).await?;
        tx.commit().await?;
        Ok::<(), StoreError>(())
    }
    .await;
    match r {
        Ok(()) => rollups.rolled(),
        Err(e) => {
            tracing::warn!(error = %e, "rollups not brought up to date (will retry)");
            rollups.pending.spoiled = true;
            *conn = None;
        }
    }
}

/// An exchange waiting for its commit.
struct Queued {
    rows: Vec<MessageRow>,
    /// The first row carries a platform message id to claim.
    claim: bool,
    state: Option<StateWrite>,
    /// The rows `MESSAGES` inserts (all but a claimed first row), each a JSON array,
    /// comma-separated.
    json: String,
    /// The claimed first row, as `CLAIMS` reads it.
    claim_json: Option<String>,
    done: oneshot::Sender<Result<WriteOutcome>>,
}

impl Queued {
    fn item(&self) -> Item<'_> {
        Item {
            rows: &self.rows,
            claim: self.claim,
            state: self.state.as_ref(),
            json: &self.json,
            claim_json: self.claim_json.as_deref(),
        }
    }
}

/// One write as the commit sees it: its rows, whether the first claims its platform id, and
/// its state change.
#[derive(Clone, Copy)]
struct Item<'a> {
    rows: &'a [MessageRow],
    claim: bool,
    state: Option<&'a StateWrite>,
    json: &'a str,
    claim_json: Option<&'a str>,
}

async fn commit_on(
    pool: &Pool,
    conn: &mut Option<Conn>,
    items: &[Item<'_>],
    pending: &mut Pending,
) -> Result<Vec<WriteOutcome>> {
    if conn.is_none() {
        *conn = Some(connect(pool).await?);
    }
    let c = conn.as_mut().expect("connected");
    let r = commit_batch(c, items, pending).await;
    if r.is_err() {
        // The connection may be broken: take a fresh one next time. What the failed
        // transaction added to the pending figures is not in the database.
        *conn = None;
        pending.spoiled = true;
    }
    r
}

/// Commits the batch and answers each write; if the batch as a whole fails, each write is
/// retried on its own, so one bad write cannot sink the others.
async fn commit_all(
    pool: &Pool,
    conn: &mut Option<Conn>,
    writes: Vec<Queued>,
    pending: &mut Pending,
) {
    let items: Vec<Item<'_>> = writes.iter().map(Queued::item).collect();
    match commit_on(pool, conn, &items, pending).await {
        Ok(outcomes) => {
            drop(items);
            for (w, o) in writes.into_iter().zip(outcomes) {
                let _ = w.done.send(Ok(o));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = writes.len(), "group commit failed; retrying one by one");
            drop(items);
            for w in writes {
                let r = commit_on(pool, conn, &[w.item()], pending)
                    .await
                    .map(|mut o| o.remove(0));
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "exchange not recorded");
                }
                let _ = w.done.send(r);
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    messages_in: i64,
    messages_out: i64,
    specific_in: i64,
    actions: i64,
    help_actions: i64,
    first: i64,
    last: i64,
    /// The last inbound specific message or help action.
    helped: Option<i64>,
}

impl Counts {
    fn add(&mut self, row: &MessageRow) {
        match row.direction {
            Direction::In => {
                self.messages_in += 1;
                self.specific_in += row.specific as i64;
            }
            Direction::Out => self.messages_out += 1,
        }
        self.actions += row.actions.len() as i64;
        let help = row.actions.iter().filter(|a| is_help_action(a)).count() as i64;
        self.help_actions += help;
        if help > 0 || (row.direction == Direction::In && row.specific) {
            self.helped = self.helped.max(Some(row.at));
        }
        if self.first == 0 || row.at < self.first {
            self.first = row.at;
        }
        self.last = self.last.max(row.at);
    }
}

fn json_list<T: Serialize>(v: &[T]) -> Option<String> {
    (!v.is_empty()).then(|| serde_json::to_string(v).unwrap_or_default())
}

/// One message row as `MESSAGES` reads it.
type MessageJson<'a> = (
    &'a str,
    i64,
    Option<i64>,
    i64,
    &'static str,
    &'static str,
    &'a str,
    Option<&'a str>,
    i64,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<&'a str>,
    i64,
);

fn message_json(r: &MessageRow) -> MessageJson<'_> {
    (
        &r.tenant_id,
        r.session_id,
        r.person_id,
        r.identity_id,
        r.channel.as_str(),
        r.direction.as_str(),
        &r.text,
        r.intent.as_deref(),
        r.specific as i64,
        json_list(&r.entities),
        json_list(&r.actions),
        r.actions.len() as i64,
        r.actions.iter().filter(|a| is_help_action(a)).count() as i64,
        r.platform_msg_id.as_deref(),
        r.at,
    )
}

async fn commit_batch(
    conn: &mut Conn,
    items: &[Item<'_>],
    pending: &mut Pending,
) -> Result<Vec<WriteOutcome>> {
    let mut outcomes = vec![WriteOutcome::Committed; items.len()];

    // Claims: the first occurrence of an id in the batch competes with the database; later
    // ones in the same batch are duplicates of it.
    let mut claim_rows: Vec<&str> = Vec::new();
    let mut claim_owner: HashMap<(&str, &str, &str), usize> = HashMap::default();
    for (i, item) in items.iter().enumerate() {
        if !item.claim {
            continue;
        }
        let (Some(first), Some(json)) = (item.rows.first(), item.claim_json) else {
            continue;
        };
        let Some(pid) = first.platform_msg_id.as_deref() else {
            continue;
        };
        match claim_owner.entry((&*first.tenant_id, first.channel.as_str(), pid)) {
            Entry::Occupied(_) => outcomes[i] = WriteOutcome::Duplicate,
            Entry::Vacant(v) => {
                v.insert(i);
                claim_rows.push(json);
                outcomes[i] = WriteOutcome::Duplicate; // until the database says otherwise
            }
        }
    }
    let claims = (!claim_rows.is_empty()).then(|| json_array(claim_rows.iter().copied()));
    drop(claim_rows);

    macro_rules! body {
        ($c:ident, $d:expr) => {{
            let d: &'static Dialect = $d;
            // SQLite rolls up later, from the cursor (migration 0011).
            let deferred = std::ptr::eq(d, &SQLITE);
            let mut tx = sqlx::Connection::begin_with(&mut **$c, d.begin_write).await?;
            let before: i64 = if deferred {
                sqlx::query_scalar(MAX_ID).fetch_one(&mut *tx).await?
            } else {
                0
            };
            if let Some(claims) = claims {
                let claimed: Vec<(String, String, String)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(CLAIMS.get(d)))
                        .bind(claims)
                        .fetch_all(&mut *tx)
                        .await?;
                for (pid, channel, tenant) in &claimed {
                    if let Some(&i) =
                        claim_owner.get(&(tenant.as_str(), channel.as_str(), pid.as_str()))
                    {
                        outcomes[i] = WriteOutcome::Committed;
                    }
                }
            }
            let mut now = Deltas::default();
            let mut statements = rest_of_batch(
                items,
                &outcomes,
                if deferred {
                    &mut pending.deltas
                } else {
                    &mut now
                },
            );
            statements.extend(now.statements(false));
            for (sql, rows) in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql.get(d)))
                    .bind(rows)
                    .execute(&mut *tx)
                    .await?;
            }
            if deferred {
                let end: i64 = sqlx::query_scalar(MAX_ID).fetch_one(&mut *tx).await?;
                pending.committed(before, end);
            }
            tx.commit().await?;
        }};
    }
    match conn {
        Conn::Sqlite(c) => body!(c, &SQLITE),
        Conn::Postgres(c) => body!(c, &POSTGRES),
    }
    Ok(outcomes)
}

/// Everything a batch writes besides its claims and rollups, given which writes are
/// duplicates: each statement with its rows. The rollup figures of what is written are added
/// to `deltas`.
fn rest_of_batch(
    items: &[Item<'_>],
    outcomes: &[WriteOutcome],
    deltas: &mut Deltas,
) -> Vec<(&'static DialectSql, String)> {
    let mut plain: Vec<&str> = Vec::new();
    let mut touches: HashMap<i64, i64> = HashMap::default();
    // The last change per identity wins (writes are queued in conversation order).
    let mut states: HashMap<i64, (Option<&str>, i64)> = HashMap::default();
    for (item, outcome) in items.iter().zip(outcomes) {
        if *outcome == WriteOutcome::Duplicate {
            continue;
        }
        if let Some(s) = item.state {
            let at = item.rows.iter().map(|r| r.at).max().unwrap_or_default();
            states.insert(s.identity_id, (s.state.as_deref(), at));
        }
        if !item.json.is_empty() {
            plain.push(item.json);
        }
        for r in item.rows {
            let t = touches.entry(r.session_id).or_insert(r.at);
            *t = (*t).max(r.at);
            deltas.add(r);
        }
    }
    let mut out: Vec<(&'static DialectSql, String)> = Vec::new();
    if !plain.is_empty() {
        out.push((&MESSAGES, json_array(plain)));
    }
    if !touches.is_empty() {
        let rows: Vec<(i64, i64)> = touches.into_iter().collect();
        out.push((&TOUCHES, rows_json(&rows)));
    }
    let (kept, cleared): (Vec<_>, Vec<_>) = states.into_iter().partition(|(_, (s, _))| s.is_some());
    if !kept.is_empty() {
        let rows: Vec<_> = kept
            .iter()
            .map(|(id, (state, at))| (id, state, at))
            .collect();
        out.push((&STATES, rows_json(&rows)));
    }
    if !cleared.is_empty() {
        let rows: Vec<(i64,)> = cleared.iter().map(|(id, _)| (*id,)).collect();
        out.push((&CLEARED_STATES, rows_json(&rows)));
    }
    out
}

/// Rollup figures to add: per person, day and channel (and `*`, all channels), per person
/// and channel, and each person's interests (entities of their inbound messages).
#[derive(Default)]
struct Deltas {
    days: HashMap<(Arc<str>, i64, i64, &'static str), Counts>,
    stats: HashMap<(Arc<str>, i64, &'static str), Counts>,
    /// (tenant, person, kind, value) → (mentions, last mentioned at)
    interests: HashMap<InterestKey, (i64, i64)>,
}

type InterestKey = (Arc<str>, i64, String, String);

impl Deltas {
    fn add(&mut self, r: &MessageRow) {
        let Some(pid) = r.person_id else { return };
        let day = day_of(r.at);
        for ch in [r.channel.as_str(), "*"] {
            self.days
                .entry((r.tenant_id.clone(), pid, day, ch))
                .or_default()
                .add(r);
            self.stats
                .entry((r.tenant_id.clone(), pid, ch))
                .or_default()
                .add(r);
        }
        if r.direction == Direction::In {
            for e in &r.entities {
                let v = self
                    .interests
                    .entry((r.tenant_id.clone(), pid, e.kind.clone(), e.value.clone()))
                    .or_insert((0, r.at));
                v.0 += 1;
                v.1 = v.1.max(r.at);
            }
        }
    }

    /// The upserts that add these figures; `live`: only for people that still exist.
    fn statements(&self, live: bool) -> Vec<(&'static DialectSql, String)> {
        let mut out: Vec<(&'static DialectSql, String)> = Vec::new();
        if !self.days.is_empty() {
            let rows: Vec<_> = self
                .days
                .iter()
                .map(|((t, p, day, ch), c)| {
                    (
                        t,
                        p,
                        day,
                        ch,
                        c.messages_in,
                        c.messages_out,
                        c.specific_in,
                        c.actions,
                        c.help_actions,
                    )
                })
                .collect();
            out.push((if live { &LIVE_DAYS } else { &DAYS }, rows_json(&rows)));
        }
        if !self.stats.is_empty() {
            let rows: Vec<_> = self
                .stats
                .iter()
                .map(|((t, p, ch), c)| {
                    (
                        t,
                        p,
                        ch,
                        c.messages_in + c.messages_out,
                        c.messages_in,
                        c.messages_out,
                        c.specific_in,
                        c.actions,
                        c.help_actions,
                        c.first,
                        c.last,
                        c.helped,
                    )
                })
                .collect();
            out.push((if live { &LIVE_STATS } else { &STATS }, rows_json(&rows)));
        }
        if !self.interests.is_empty() {
            let rows: Vec<_> = self
                .interests
                .iter()
                .map(|((t, p, k, v), (n, at))| (t, p, k, v, n, at))
                .collect();
            out.push((
                if live { &LIVE_INTERESTS } else { &INTERESTS },
                rows_json(&rows),
            ));
        }
        out
    }
}
