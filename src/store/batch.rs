//! Group commit: every exchange (messages, the session's last interaction, the per-person
//! rollups and interests) is queued to one writer task, which commits whatever has queued up
//! in one transaction and only then answers each caller. A caller that has its answer knows
//! its exchange is durable; many callers share one commit.
//!
//! A platform message id is claimed in the same transaction as its message: a second message
//! with the same id (a retry, possibly on another replica) is reported as a duplicate and
//! nothing of it is written.

use super::{DialectSql, Pool, Result, StoreError, with_pool};
use crate::domain::{Channel, day_of};
use crate::nlu::Entity;
use serde::Serialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
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

enum Op {
    Write {
        rows: Vec<MessageRow>,
        /// The first row carries a platform message id to claim.
        claim: bool,
        done: oneshot::Sender<Result<WriteOutcome>>,
    },
    Flush(oneshot::Sender<()>),
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    tx: mpsc::Sender<Op>,
}

static INSERT_MESSAGES: &str = "insert into messages (tenant_id, session_id, person_id, identity_id, channel, direction, text, intent, specific, entities, actions, n_actions, n_help, platform_msg_id, at)
    select value ->> 0, cast(value ->> 1 as bigint), cast(value ->> 2 as bigint), cast(value ->> 3 as bigint), value ->> 4, value ->> 5, value ->> 6, value ->> 7,
           cast(value ->> 8 as bigint), value ->> 9, value ->> 10, cast(value ->> 11 as bigint), cast(value ->> 12 as bigint), value ->> 13, cast(value ->> 14 as bigint)
    from {rows} where true";

static CLAIM_SUFFIX: &str = " on conflict (tenant_id, channel, platform_msg_id) do nothing returning platform_msg_id, channel, tenant_id";

static UPSERT_DAYS: &str = "insert into person_days (tenant_id, person_id, day, channel, messages_in, messages_out, specific_in, actions, help_actions)
    select value ->> 0, cast(value ->> 1 as bigint), cast(value ->> 2 as bigint), value ->> 3, cast(value ->> 4 as bigint), cast(value ->> 5 as bigint),
           cast(value ->> 6 as bigint), cast(value ->> 7 as bigint), cast(value ->> 8 as bigint)
    from {rows} where true
    on conflict (tenant_id, person_id, day, channel) do update set
      messages_in = person_days.messages_in + excluded.messages_in,
      messages_out = person_days.messages_out + excluded.messages_out,
      specific_in = person_days.specific_in + excluded.specific_in,
      actions = person_days.actions + excluded.actions,
      help_actions = person_days.help_actions + excluded.help_actions";

static UPSERT_STATS: &str = "insert into person_stats (tenant_id, person_id, channel, messages, messages_in, messages_out, specific_in, actions, help_actions, first_seen, last_seen)
    select value ->> 0, cast(value ->> 1 as bigint), value ->> 2, cast(value ->> 3 as bigint), cast(value ->> 4 as bigint), cast(value ->> 5 as bigint),
           cast(value ->> 6 as bigint), cast(value ->> 7 as bigint), cast(value ->> 8 as bigint), cast(value ->> 9 as bigint), cast(value ->> 10 as bigint)
    from {rows} where true
    on conflict (tenant_id, person_id, channel) do update set
      messages = person_stats.messages + excluded.messages,
      messages_in = person_stats.messages_in + excluded.messages_in,
      messages_out = person_stats.messages_out + excluded.messages_out,
      specific_in = person_stats.specific_in + excluded.specific_in,
      actions = person_stats.actions + excluded.actions,
      help_actions = person_stats.help_actions + excluded.help_actions,
      first_seen = case when excluded.first_seen < person_stats.first_seen then excluded.first_seen else person_stats.first_seen end,
      last_seen = case when excluded.last_seen > person_stats.last_seen then excluded.last_seen else person_stats.last_seen end";

static UPSERT_INTERESTS: &str = "insert into interests (tenant_id, person_id, kind, value, count, last_at)
    select value ->> 0, cast(value ->> 1 as bigint), value ->> 2, value ->> 3, cast(value ->> 4 as bigint), cast(value ->> 5 as bigint)
    from {rows} where true
    on conflict (person_id, kind, value) do update set
      count = interests.count + excluded.count,
      last_at = case when excluded.last_at > interests.last_at then excluded.last_at else interests.last_at end";

static TOUCH_SESSIONS: &str = "update sessions set last_interaction_at = x.at
    from (select cast(value ->> 0 as bigint) as id, cast(value ->> 1 as bigint) as at from {rows}) as x
    where sessions.id = x.id and sessions.last_interaction_at < x.at";

struct Statements {
    insert: DialectSql,
    claim: DialectSql,
    days: DialectSql,
    stats: DialectSql,
    interests: DialectSql,
    touch: DialectSql,
}

static STATEMENTS: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| Statements {
    insert: DialectSql::new(INSERT_MESSAGES),
    claim: DialectSql::new(Box::leak(
        format!("{INSERT_MESSAGES}{CLAIM_SUFFIX}").into_boxed_str(),
    )),
    days: DialectSql::new(UPSERT_DAYS),
    stats: DialectSql::new(UPSERT_STATS),
    interests: DialectSql::new(UPSERT_INTERESTS),
    touch: DialectSql::new(TOUCH_SESSIONS),
});

impl BatchWriter {
    /// Starts the writer task. It stops when every handle is dropped, after committing what
    /// was queued.
    pub fn start(pool: Pool, batch_max: usize) -> (BatchWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 8);
        let task = tokio::spawn(run(pool, rx, batch_max.max(1)));
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
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op::Write { rows, claim, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Returns once everything queued before it is committed.
    pub async fn flush(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op::Flush(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }
}

async fn run(pool: Pool, mut rx: mpsc::Receiver<Op>, batch_max: usize) {
    let mut ops = Vec::with_capacity(batch_max);
    loop {
        ops.clear();
        if rx.recv_many(&mut ops, batch_max).await == 0 {
            break;
        }
        let mut writes = Vec::with_capacity(ops.len());
        let mut flushes = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Write { rows, claim, done } => writes.push((rows, claim, done)),
                Op::Flush(done) => flushes.push(done),
            }
        }
        if !writes.is_empty() {
            commit_all(&pool, writes).await;
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

type Pending = (Vec<MessageRow>, bool, oneshot::Sender<Result<WriteOutcome>>);

/// Commits the batch; if the batch as a whole fails, each write is retried on its own so
/// one bad write cannot sink the others.
async fn commit_all(pool: &Pool, writes: Vec<Pending>) {
    let items: Vec<(&[MessageRow], bool)> =
        writes.iter().map(|(r, c, _)| (r.as_slice(), *c)).collect();
    match commit_batch(pool, &items).await {
        Ok(outcomes) => {
            for ((_, _, done), o) in writes.into_iter().zip(outcomes) {
                let _ = done.send(Ok(o));
            }
        }
        Err(e) if writes.len() == 1 => {
            tracing::warn!(error = %e, "exchange not recorded");
            let (_, _, done) = writes.into_iter().next().expect("one write");
            let _ = done.send(Err(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = writes.len(), "group commit failed; retrying one by one");
            for (rows, claim, done) in writes {
                let r = commit_batch(pool, &[(&rows, claim)])
                    .await
                    .map(|mut o| o.remove(0));
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "exchange not recorded");
                }
                let _ = done.send(r);
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
        self.help_actions += row.actions.iter().filter(|a| is_help_action(a)).count() as i64;
        if self.first == 0 || row.at < self.first {
            self.first = row.at;
        }
        self.last = self.last.max(row.at);
    }
}

fn row_json(r: &MessageRow) -> impl Serialize + '_ {
    let n_help = r.actions.iter().filter(|a| is_help_action(a)).count() as i64;
    (
        &*r.tenant_id,
        r.session_id,
        r.person_id,
        r.identity_id,
        r.channel.as_str(),
        r.direction.as_str(),
        &r.text,
        &r.intent,
        r.specific as i64,
        (!r.entities.is_empty()).then(|| serde_json::to_string(&r.entities).unwrap_or_default()),
        (!r.actions.is_empty()).then(|| serde_json::to_string(&r.actions).unwrap_or_default()),
        r.actions.len() as i64,
        n_help,
        &r.platform_msg_id,
        r.at,
    )
}

async fn commit_batch(pool: &Pool, items: &[(&[MessageRow], bool)]) -> Result<Vec<WriteOutcome>> {
    let st = &*STATEMENTS;
    let mut outcomes = vec![WriteOutcome::Committed; items.len()];

    // Claims: the first occurrence of an id in the batch competes with the database; later
    // ones in the same batch are duplicates of it.
    let mut claim_rows = Vec::new();
    let mut claim_owner: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for (i, (rows, claim)) in items.iter().enumerate() {
        if !*claim {
            continue;
        }
        let Some(first) = rows.first() else { continue };
        let Some(pid) = first.platform_msg_id.as_deref() else {
            continue;
        };
        match claim_owner.entry((&*first.tenant_id, first.channel.as_str(), pid)) {
            Entry::Occupied(_) => outcomes[i] = WriteOutcome::Duplicate,
            Entry::Vacant(v) => {
                v.insert(i);
                claim_rows.push(row_json(first));
                outcomes[i] = WriteOutcome::Duplicate; // until the database says otherwise
            }
        }
    }

    with_pool!(pool, p, d => {
        let mut tx = p.begin_with(d.begin_write).await?;
        if !claim_rows.is_empty() {
            let json = to_json(&claim_rows)?;
            let claimed: Vec<(String, String, String)> = sqlx::query_as(st.claim.get(d))
                .bind(json)
                .fetch_all(&mut *tx)
                .await?;
            for (pid, channel, tenant) in &claimed {
                if let Some(&i) = claim_owner.get(&(tenant.as_str(), channel.as_str(), pid.as_str())) {
                    outcomes[i] = WriteOutcome::Committed;
                }
            }
        }

        let mut plain = Vec::new();
        let mut days: HashMap<(&str, i64, i64, &str), Counts> = HashMap::new();
        let mut stats: HashMap<(&str, i64, &str), Counts> = HashMap::new();
        let mut interests: HashMap<(&str, i64, &str, &str), (i64, i64)> = HashMap::new();
        let mut touches: HashMap<i64, i64> = HashMap::new();
        for ((rows, claim), outcome) in items.iter().zip(&outcomes) {
            if *outcome == WriteOutcome::Duplicate {
                continue;
            }
            for (j, r) in rows.iter().enumerate() {
                if !(*claim && j == 0) {
                    plain.push(row_json(r));
                }
                let t = touches.entry(r.session_id).or_insert(r.at);
                *t = (*t).max(r.at);
                let Some(pid) = r.person_id else { continue };
                let day = day_of(r.at);
                for ch in [r.channel.as_str(), "*"] {
                    days.entry((&r.tenant_id, pid, day, ch)).or_default().add(r);
                    stats.entry((&r.tenant_id, pid, ch)).or_default().add(r);
                }
                if r.direction == Direction::In {
                    for e in &r.entities {
                        let v = interests.entry((&r.tenant_id, pid, &e.kind, &e.value)).or_insert((0, r.at));
                        v.0 += 1;
                        v.1 = v.1.max(r.at);
                    }
                }
            }
        }
        if !plain.is_empty() {
            sqlx::query(st.insert.get(d)).bind(to_json(&plain)?).execute(&mut *tx).await?;
        }
        if !days.is_empty() {
            let rows: Vec<_> = days
                .iter()
                .map(|((t, p, day, ch), c)| (t, p, day, ch, c.messages_in, c.messages_out, c.specific_in, c.actions, c.help_actions))
                .collect();
            sqlx::query(st.days.get(d)).bind(to_json(&rows)?).execute(&mut *tx).await?;
            let rows: Vec<_> = stats
                .iter()
                .map(|((t, p, ch), c)| (t, p, ch, c.messages_in + c.messages_out, c.messages_in, c.messages_out, c.specific_in, c.actions, c.help_actions, c.first, c.last))
                .collect();
            sqlx::query(st.stats.get(d)).bind(to_json(&rows)?).execute(&mut *tx).await?;
        }
        if !interests.is_empty() {
            let rows: Vec<_> = interests.iter().map(|((t, p, k, v), (n, at))| (t, p, k, v, n, at)).collect();
            sqlx::query(st.interests.get(d)).bind(to_json(&rows)?).execute(&mut *tx).await?;
        }
        if !touches.is_empty() {
            let rows: Vec<_> = touches.iter().collect();
            sqlx::query(st.touch.get(d)).bind(to_json(&rows)?).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok::<(), StoreError>(())
    })?;
    Ok(outcomes)
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(e.to_string()))
}
