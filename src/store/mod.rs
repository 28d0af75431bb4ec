//! Storage: one port with a SQLite and a PostgreSQL implementation.
//!
//! Both backends run the same runtime-checked SQL (written once, `$N` placeholders, which
//! sqlx accepts on SQLite too); [`with_pool!`] instantiates each operation for both pool types.
//! The few statements whose SQL differs (batched rows read from a JSON parameter) come from a
//! [`Dialect`]. One contract test suite runs every operation on both databases.
//!
//! Invariant: an exchange and its session update commit together (see [`batch`]); nothing a
//! report or a replica needs lives only in one process's memory.

pub mod batch;
pub mod codes;
pub mod discord;
pub mod helpdesk;
pub mod installs;
pub mod people;
pub mod reports;
pub mod slack;
pub mod teams;

use crate::domain::{AuthMethod, Channel, Clock, PersonId, PersonKind, PersonRef, day_of};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use batch::{BatchWriter, Direction, MessageRow, RollPolicy, StateWrite, WriteOutcome};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy; nothing was written. Retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("cannot open database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.message().contains("locked") => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// SQL that differs between the backends.
pub struct Dialect {
    /// Opens a transaction that will write (SQLite takes the write lock at once, so a
    /// read-then-write transaction cannot fail with SQLITE_BUSY half-way).
    pub begin_write: &'static str,
    /// `FROM` source of a JSON array parameter `$1`, one row per element, column `value`.
    pub json_rows: &'static str,
    /// `{agg} a, b {/agg}` aggregates rows into one JSON array of arrays (as text), so a
    /// many-row answer crosses the driver as one value.
    pub agg_open: &'static str,
    pub agg_close: &'static str,
    /// `{group_concat}(x, ',')`
    pub group_concat: &'static str,
    /// Written before a column that SQLite's planner, which has no statistics, must not pick
    /// an index on (a unary `+` hides it); PostgreSQL's picks by its statistics and is left free.
    pub no_index: &'static str,
}

pub static SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    json_rows: "jsonb_each($1)",
    agg_open: "json_group_array(json_array(",
    agg_close: "))",
    group_concat: "group_concat",
    no_index: "+",
};
pub static POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    json_rows: "jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)",
    agg_open: "coalesce(json_agg(json_build_array(",
    agg_close: ")), '[]')::text",
    group_concat: "string_agg",
    no_index: "",
};

/// Runs `$body` with `$p` bound to the concrete pool and `$d` to its [`Dialect`].
#[macro_export]
macro_rules! with_pool {
    ($pool:expr, $p:ident, $d:ident => $body:expr) => {
        match $pool {
            $crate::store::Pool::Sqlite($p) => {
                #[allow(unused_variables)]
                let $d: &'static $crate::store::Dialect = &$crate::store::SQLITE;
                $body
            }
            $crate::store::Pool::Postgres($p) => {
                #[allow(unused_variables)]
                let $d: &'static $crate::store::Dialect = &$crate::store::POSTGRES;
                $body
            }
        }
    };
}
pub use with_pool;

/// Inside a write transaction: a person's unverified portal identities (emails a visitor
/// merely typed) stop being linked to them, and their open sessions end. Used before a
/// person gains anything a stranger should not inherit.
macro_rules! detach_unverified_claims {
    ($tx:ident, $person:expr, $now:expr) => {{
        sqlx::query(
            "update sessions set ended_at = $2, end_reason = 'identity_changed'
             where ended_at is null and identity_id in
               (select id from identities where person_id = $1 and auth_method = 'portal_email')",
        )
        .bind($person)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "update identities set person_id = null, auth_method = 'anonymous', authenticated_at = null
             where person_id = $1 and auth_method = 'portal_email'",
        )
        .bind($person)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use detach_unverified_claims;

/// Inside a write transaction: a new person with this email, holding `customer`; their id.
macro_rules! insert_customer {
    ($tx:ident, $tenant:expr, $email:expr, $kind:expr, $verified:expr, $now:expr) => {{
        let id: i64 = sqlx::query_scalar(
            "insert into people (tenant_id, email, kind, email_verified, created_at) values ($1, $2, $3, $4, $5) returning id",
        )
        .bind($tenant)
        .bind($email)
        .bind($kind.as_str())
        .bind($verified)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        sqlx::query("insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, 'customer', $3)")
            .bind($tenant)
            .bind(id)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        id
    }};
}
pub(crate) use insert_customer;

/// Inside a write transaction: the identity now speaks as `$person` (signed in with `$method`);
/// its session `$old` ends and a new one starts that keeps the browser's token, counted in
/// the person's rollups.
macro_rules! move_to_new_session {
    ($tx:ident, $tenant:expr, $identity:expr, $old:expr, $person:expr, $method:expr, $login:expr, $now:expr) => {{
            sqlx::query("update identities set person_id = $1, auth_method = $4, authenticated_at = $2 where id = $3")
                .bind($person)
                .bind($now)
                .bind($identity)
                .bind($method)
                .execute(&mut *$tx)
                .await?;
            let old = sqlx::query("select token_hash, ip, user_agent, channel from sessions where id = $1")
                .bind($old)
                .fetch_one(&mut *$tx)
                .await?;
            let token_hash: String = old.try_get(0)?;
            let ip: Option<String> = old.try_get(1)?;
            let ua: Option<String> = old.try_get(2)?;
            let channel: String = old.try_get(3)?;
            sqlx::query(
                "update sessions set ended_at = coalesce(ended_at, $1), end_reason = coalesce(end_reason, 'identity_changed'),
                        token_hash = 'moved:' || token_hash where id = $2",
            )
            .bind($now)
            .bind($old)
            .execute(&mut *$tx)
            .await?;
            sqlx::query(
                "insert into sessions (tenant_id, identity_id, person_id, channel, auth_method, login_id, ip, user_agent, token_hash, started_at, last_interaction_at)
                 values ($1, $2, $3, $4, $10, $5, $6, $7, $8, $9, $9)",
            )
            .bind($tenant)
            .bind($identity)
            .bind($person)
            .bind(&channel)
            .bind($login)
            .bind(ip)
            .bind(ua)
            .bind(token_hash)
            .bind($now)
            .bind($method)
            .execute(&mut *$tx)
            .await?;
            let day = $crate::domain::day_of($now);
            for ch in [channel.as_str(), "*"] {
                sqlx::query(
                    "insert into person_days (tenant_id, person_id, day, channel, sessions) values ($1, $2, $3, $4, 1)
                     on conflict (tenant_id, person_id, day, channel) do update set sessions = person_days.sessions + 1",
                )
                .bind($tenant)
                .bind($person)
                .bind(day)
                .bind(ch)
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "insert into person_stats (tenant_id, person_id, channel, sessions, first_seen, last_seen) values ($1, $2, $3, 1, $4, $4)
                     on conflict (tenant_id, person_id, channel) do update set sessions = person_stats.sessions + 1,
                       last_seen = case when excluded.last_seen > person_stats.last_seen then excluded.last_seen else person_stats.last_seen end",
                )
                .bind($tenant)
                .bind($person)
                .bind(ch)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            }
    }};
}
pub(crate) use move_to_new_session;

/// SQL built once per dialect from a template with `{rows}` standing for the JSON source.
pub struct DialectSql {
    sqlite: LazyLock<&'static str, Box<dyn Fn() -> &'static str + Send + Sync>>,
    postgres: LazyLock<&'static str, Box<dyn Fn() -> &'static str + Send + Sync>>,
}

impl DialectSql {
    pub fn new(template: &'static str) -> DialectSql {
        let build = |d: &'static Dialect| -> Box<dyn Fn() -> &'static str + Send + Sync> {
            Box::new(move || {
                let sql = template
                    .replace("{rows}", d.json_rows)
                    .replace("{agg}", d.agg_open)
                    .replace("{/agg}", d.agg_close)
                    .replace("{group_concat}", d.group_concat);
                let s: &'static str = Box::leak(sql.into_boxed_str());
                s
            })
        };
        DialectSql {
            sqlite: LazyLock::new(build(&SQLITE)),
            postgres: LazyLock::new(build(&POSTGRES)),
        }
    }
    pub fn get(&self, d: &'static Dialect) -> &'static str {
        if std::ptr::eq(d, &SQLITE) {
            *self.sqlite
        } else {
            *self.postgres
        }
    }
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A person's identity as resolved for one message.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub identity_id: i64,
    pub person: Option<PersonRef>,
    pub auth_method: AuthMethod,
}

/// A person Koji should find by email, or create with these attributes and roles.
#[derive(Debug, Clone)]
pub struct PersonSeed {
    /// None: a person known only by this channel identity (a bootstrap admin named as
    /// `discord:1234`, say).
    pub email: Option<String>,
    pub name: Option<String>,
    pub kind: PersonKind,
    pub roles: Vec<String>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionStart<'a> {
    pub tenant_id: &'a str,
    pub identity_id: i64,
    pub person_id: Option<PersonId>,
    pub channel: Channel,
    pub auth_method: AuthMethod,
    pub login_id: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: i64,
    pub last_interaction_at: i64,
    /// The new session's token: returned once, stored only hashed.
    pub new_token: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    clock: Arc<dyn Clock>,
    /// Above this many people, period reports aggregate the whole window in one pass.
    window_threshold: Arc<std::sync::atomic::AtomicUsize>,
    /// Recent knowledge-base searches (`helpdesk.rs`), kept as briefly as the speaker cache.
    kb_cache: Arc<std::sync::Mutex<helpdesk::KbCache>>,
    /// Bumped by every knowledge-base load in this process.
    kb_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Duplicate checks, answered many at a time (see [`Store::platform_message_seen`]).
    seen: tokio::sync::mpsc::UnboundedSender<SeenAsk>,
}

/// One "was this platform message recorded?" question: (tenant, channel, id) and where the
/// answer goes.
struct SeenAsk {
    key: (String, &'static str, String),
    done: tokio::sync::oneshot::Sender<Result<bool>>,
}

static SEEN: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select {agg} tenant_id, channel, platform_msg_id {/agg} from messages
         where platform_msg_id is not null
           and (tenant_id, channel, platform_msg_id) in
               (select value ->> 0, value ->> 1, value ->> 2 from {rows})",
    )
});

/// Answers duplicate checks in batches: whatever questions wait while one query runs go
/// into the next, so a busy channel costs one query per batch, not one per message.
async fn answer_seen(pool: Pool, mut rx: tokio::sync::mpsc::UnboundedReceiver<SeenAsk>) {
    let mut asks = Vec::new();
    while rx.recv_many(&mut asks, 1024).await > 0 {
        let keys: Vec<&(String, &'static str, String)> = asks.iter().map(|a| &a.key).collect();
        let keys = serde_json::to_string(&keys).expect("keys serialise");
        let found: Result<String> = async {
            Ok(with_pool!(&pool, p, d => {
                sqlx::query_scalar(SEEN.get(d)).bind(keys).fetch_one(p).await?
            }))
        }
        .await;
        let found = found.and_then(|json| {
            serde_json::from_str::<Vec<(String, String, String)>>(&json)
                .map_err(|e| StoreError::Database(e.to_string()))
        });
        match found {
            Ok(found) => {
                let found: std::collections::HashSet<(&str, &str, &str)> = found
                    .iter()
                    .map(|(t, c, i)| (t.as_str(), c.as_str(), i.as_str()))
                    .collect();
                for a in asks.drain(..) {
                    let (t, c, i) = &a.key;
                    let _ = a
                        .done
                        .send(Ok(found.contains(&(t.as_str(), *c, i.as_str()))));
                }
            }
            Err(e) => {
                for a in asks.drain(..) {
                    let again = match &e {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                        other => StoreError::Database(other.to_string()),
                    };
                    let _ = a.done.send(Err(again));
                }
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}

pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// 256 random bits, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Store {
    pub async fn connect(
        url: &str,
        synchronous_full: bool,
        max_connections: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Store> {
        let connect_err = |e: sqlx::Error| StoreError::Connect {
            url: redact_url(url),
            reason: e.to_string(),
        };
        let pool = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(connect_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(if synchronous_full {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", "-32000")
                .pragma("temp_store", "memory")
                // The group-commit writer's checkpointer keeps the WAL short; this is the
                // backstop should it fall behind (80 MB of 4 KB pages).
                .pragma("wal_autocheckpoint", "20000")
                // A WAL started over is cut back to this size.
                .pragma("journal_size_limit", "67108864");
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(2))
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Pool::Sqlite(pool)
        } else {
            let opts = PgConnectOptions::from_str(url).map_err(connect_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Pool::Postgres(pool)
        };
        // Measured on 1M exchanges from 100k people (`koji bench reports`, visitors --since
        // 7d, ~25k people to look up): SQLite looks each person up by primary key faster than
        // it aggregates the window (0.36 s against 1.3 s); PostgreSQL the other way round
        // (0.85 s against 1.3 s).
        let window_threshold = match pool {
            Pool::Sqlite(_) => usize::MAX,
            Pool::Postgres(_) => 2000,
        };
        let (seen, asks) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(answer_seen(pool.clone(), asks));
        Ok(Store {
            pool,
            clock,
            window_threshold: Arc::new(std::sync::atomic::AtomicUsize::new(window_threshold)),
            kb_cache: Arc::default(),
            kb_generation: Arc::default(),
            seen,
        })
    }

    /// How many people make a period report read the whole window instead of each person
    /// (tests lower it to cover both ways).
    pub fn set_window_threshold(&self, n: usize) {
        self.window_threshold
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn window_threshold(&self) -> usize {
        self.window_threshold
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub async fn migrate(&self) -> Result<()> {
        let r = match &self.pool {
            Pool::Sqlite(p) => SQLITE_MIGRATOR.run(p).await,
            Pool::Postgres(p) => POSTGRES_MIGRATOR.run(p).await,
        };
        r.map_err(|e| StoreError::Migrate(e.to_string()))
    }

    pub async fn close(&self) {
        with_pool!(&self.pool, p, _d => p.close().await)
    }

    /// Makes the configured tenants exist (names follow the config).
    pub async fn sync_tenants(&self, tenants: &[(String, String)]) -> Result<()> {
        let now = self.now();
        with_pool!(&self.pool, p, _d => {
            for (id, name) in tenants {
                sqlx::query(
                    "insert into tenants (id, name, created_at) values ($1, $2, $3)
                     on conflict (id) do update set name = excluded.name",
                )
                .bind(id)
                .bind(name)
                .bind(now)
                .execute(p)
                .await?;
            }
        });
        Ok(())
    }

    /// Finds (or creates) the channel identity, links it to the person `seed` names (found by
    /// email, or created with the seed's roles), and reports who is speaking.
    pub async fn resolve_identity(
        &self,
        tenant_id: &str,
        channel: Channel,
        external_id: &str,
        display_name: Option<&str>,
        auth_method: AuthMethod,
        seed: Option<&PersonSeed>,
    ) -> Result<Resolved> {
        let now = self.now();
        with_pool!(&self.pool, p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let existing = sqlx::query(
                "select id, person_id, auth_method from identities
                 where tenant_id = $1 and channel = $2 and external_id = $3",
            )
            .bind(tenant_id)
            .bind(channel.as_str())
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?;
            let existing: Option<(i64, Option<i64>, String)> = match existing {
                Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
                None => None,
            };

            let mut person_id: Option<i64> = existing.as_ref().and_then(|e| e.1);
            let mut method = existing
                .as_ref()
                .and_then(|e| AuthMethod::parse(&e.2))
                .unwrap_or(AuthMethod::Anonymous);
            if let Some(seed) = seed {
                let found: Option<i64> = match &seed.email {
                    Some(email) => {
                        let row = sqlx::query("select id, email_verified from people where tenant_id = $1 and email = $2")
                            .bind(tenant_id)
                            .bind(email)
                            .fetch_optional(&mut *tx)
                            .await?;
                        match row {
                            Some(r) => {
                                let id: i64 = r.try_get(0)?;
                                let verified: i64 = r.try_get(1)?;
                                if verified == 0 {
                                    // The platform vouches for this email: whoever only claimed it on
                                    // a portal loses the link, and the email counts as verified.
                                    detach_unverified_claims!(tx, id, now);
                                    sqlx::query("update people set email_verified = 1 where id = $1")
                                        .bind(id)
                                        .execute(&mut *tx)
                                        .await?;
                                }
                                Some(id)
                            }
                            None => None,
                        }
                    }
                    None => person_id,
                };
                let (pid, created) = match found {
                    Some(id) => (id, false),
                    None => {
                        let id: i64 = sqlx::query_scalar(
                            "insert into people (tenant_id, email, name, kind, email_verified, locale, time_zone, created_at)
                             values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
                        )
                        .bind(tenant_id)
                        .bind(&seed.email)
                        .bind(&seed.name)
                        .bind(seed.kind.as_str())
                        .bind(seed.email.is_some() as i64)
                        .bind(&seed.locale)
                        .bind(&seed.time_zone)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        (id, true)
                    }
                };
                // Only a new person gets the seed's roles: an existing one keeps theirs.
                for role in seed.roles.iter().filter(|_| created) {
                    sqlx::query(
                        "insert into person_roles (tenant_id, person_id, role, granted_at)
                         values ($1, $2, $3, $4) on conflict do nothing",
                    )
                    .bind(tenant_id)
                    .bind(pid)
                    .bind(role)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                person_id = Some(pid);
                method = auth_method;
            }
            let identity_id = match existing {
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into identities (tenant_id, channel, external_id, person_id, display_name, auth_method, authenticated_at, created_at)
                         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
                    )
                    .bind(tenant_id)
                    .bind(channel.as_str())
                    .bind(external_id)
                    .bind(person_id)
                    .bind(display_name)
                    .bind(method.as_str())
                    .bind(person_id.map(|_| now))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    id
                }
                Some((id, old_person, old_method)) => {
                    if old_person != person_id || old_method != method.as_str() {
                        sqlx::query(
                            "update identities set person_id = $1, auth_method = $2, authenticated_at = $3 where id = $4",
                        )
                        .bind(person_id)
                        .bind(method.as_str())
                        .bind(person_id.map(|_| now))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    id
                }
            };
            let person = match person_id {
                Some(pid) => {
                    let r = sqlx::query("select id, name, email, kind from people where id = $1")
                        .bind(pid)
                        .fetch_one(&mut *tx)
                        .await?;
                    Some(person_from_row(&r)?)
                }
                None => None,
            };
            tx.commit().await?;
            Ok(Resolved { identity_id, person, auth_method: method })
        })
    }

    /// Continues the identity's open session, or ends a stale one (idle, or the identity now
    /// speaks as someone else) and starts a new one.
    pub async fn touch_or_start_session(
        &self,
        s: &SessionStart<'_>,
        idle: Duration,
    ) -> Result<SessionInfo> {
        let now = self.now();
        let idle_us = idle.as_micros() as i64;
        with_pool!(&self.pool, p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let open = sqlx::query(
                "select id, person_id, last_interaction_at, auth_method from sessions
                 where identity_id = $1 and ended_at is null order by id desc",
            )
            .bind(s.identity_id)
            .fetch_all(&mut *tx)
            .await?;
            for r in &open {
                let id: i64 = r.try_get(0)?;
                let person: Option<i64> = r.try_get(1)?;
                let last: i64 = r.try_get(2)?;
                let method: String = r.try_get(3)?;
                if person == s.person_id && method == s.auth_method.as_str() && now - last <= idle_us {
                    tx.commit().await?;
                    return Ok(SessionInfo { id, last_interaction_at: last, new_token: None });
                }
                let (ended_at, reason) = if now - last > idle_us {
                    (last + idle_us, "idle")
                } else {
                    (now, "identity_changed")
                };
                sqlx::query("update sessions set ended_at = $1, end_reason = $2 where id = $3")
                    .bind(ended_at)
                    .bind(reason)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let token = new_token();
            let id: i64 = sqlx::query_scalar(
                "insert into sessions (tenant_id, identity_id, person_id, channel, auth_method, login_id, ip, user_agent, token_hash, started_at, last_interaction_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) returning id",
            )
            .bind(s.tenant_id)
            .bind(s.identity_id)
            .bind(s.person_id)
            .bind(s.channel.as_str())
            .bind(s.auth_method.as_str())
            .bind(s.login_id)
            .bind(s.ip)
            .bind(s.user_agent)
            .bind(hash_token(&token))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(pid) = s.person_id {
                let day = day_of(now);
                for ch in [s.channel.as_str(), "*"] {
                    sqlx::query(
                        "insert into person_days (tenant_id, person_id, day, channel, sessions) values ($1, $2, $3, $4, 1)
                         on conflict (tenant_id, person_id, day, channel) do update set sessions = person_days.sessions + 1",
                    )
                    .bind(s.tenant_id)
                    .bind(pid)
                    .bind(day)
                    .bind(ch)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "insert into person_stats (tenant_id, person_id, channel, sessions, first_seen, last_seen) values ($1, $2, $3, 1, $4, $4)
                         on conflict (tenant_id, person_id, channel) do update set sessions = person_stats.sessions + 1,
                           last_seen = case when excluded.last_seen > person_stats.last_seen then excluded.last_seen else person_stats.last_seen end",
                    )
                    .bind(s.tenant_id)
                    .bind(pid)
                    .bind(ch)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(SessionInfo { id, last_interaction_at: now, new_token: Some(token) })
        })
    }

    /// Ends sessions idle for longer than `idle` (their end time is the moment they expired).
    pub async fn expire_idle_sessions(&self, idle: Duration) -> Result<u64> {
        let idle_us = idle.as_micros() as i64;
        let cutoff = self.now() - idle_us;
        with_pool!(&self.pool, p, _d => {
            let r = sqlx::query(
                "update sessions set ended_at = last_interaction_at + $1, end_reason = 'idle'
                 where ended_at is null and last_interaction_at < $2",
            )
            .bind(idle_us)
            .bind(cutoff)
            .execute(p)
            .await?;
            Ok(r.rows_affected())
        })
    }

    /// The roles a person holds, sorted.
    pub async fn roles_of(&self, person_id: PersonId) -> Result<Vec<String>> {
        with_pool!(&self.pool, p, _d => {
            Ok(sqlx::query_scalar("select role from person_roles where person_id = $1 order by role")
                .bind(person_id)
                .fetch_all(p)
                .await?)
        })
    }

    /// Grants `role` to everyone in the tenant whose email is in `emails` (bootstrap admins).
    pub async fn grant_by_email(
        &self,
        tenant_id: &str,
        emails: &[String],
        role: &str,
    ) -> Result<u64> {
        let now = self.now();
        let mut n = 0;
        with_pool!(&self.pool, p, _d => {
            for email in emails {
                let r = sqlx::query(
                    "insert into person_roles (tenant_id, person_id, role, granted_at)
                     select tenant_id, id, $3, $4 from people where tenant_id = $1 and email = $2
                     on conflict do nothing",
                )
                .bind(tenant_id)
                .bind(email)
                .bind(role)
                .bind(now)
                .execute(p)
                .await?;
                n += r.rows_affected();
            }
        });
        Ok(n)
    }

    /// Finds a person of the tenant by email, person id, `channel:external_id`, or a mention.
    pub async fn find_person(&self, tenant_id: &str, who: &str) -> Result<Option<PersonRef>> {
        let who = who.trim();
        let mention = who
            .strip_prefix("<@")
            .and_then(|s| s.strip_suffix('>'))
            .map(|s| s.split('|').next().unwrap_or(s).trim_start_matches('!'));
        with_pool!(&self.pool, p, _d => {
            let row = if let Some(user) = mention {
                sqlx::query(
                    "select p.id, p.name, p.email, p.kind from identities i join people p on p.id = i.person_id
                     where i.tenant_id = $1 and i.external_id = $2 and i.channel in ('slack', 'discord', 'teams')
                     order by i.id limit 1",
                )
                .bind(tenant_id)
                .bind(user)
                .fetch_optional(p)
                .await?
            } else if who.contains('@') {
                sqlx::query("select id, name, email, kind from people where tenant_id = $1 and email = $2")
                    .bind(tenant_id)
                    .bind(who.to_lowercase())
                    .fetch_optional(p)
                    .await?
            } else if let Some((channel, ext)) = who.split_once(':').filter(|(c, _)| Channel::from_str(c).is_ok()) {
                sqlx::query(
                    "select p.id, p.name, p.email, p.kind from identities i join people p on p.id = i.person_id
                     where i.tenant_id = $1 and i.channel = $2 and i.external_id = $3",
                )
                .bind(tenant_id)
                .bind(channel.to_ascii_lowercase())
                .bind(ext)
                .fetch_optional(p)
                .await?
            } else if let Ok(id) = who.trim_start_matches('#').parse::<i64>() {
                sqlx::query("select id, name, email, kind from people where tenant_id = $1 and id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(p)
                    .await?
            } else {
                None
            };
            row.map(|r| person_from_row(&r)).transpose()
        })
    }

    /// Reads the conversation state of an identity (JSON), if any.
    pub async fn conversation_state(&self, identity_id: i64) -> Result<Option<String>> {
        with_pool!(&self.pool, p, _d => {
            Ok(sqlx::query_scalar("select state from conversation_state where identity_id = $1")
                .bind(identity_id)
                .fetch_optional(p)
                .await?)
        })
    }

    pub async fn set_conversation_state(
        &self,
        identity_id: i64,
        state: Option<&str>,
    ) -> Result<()> {
        let now = self.now();
        with_pool!(&self.pool, p, _d => {
            match state {
                Some(s) => {
                    sqlx::query(
                        "insert into conversation_state (identity_id, state, updated_at) values ($1, $2, $3)
                         on conflict (identity_id) do update set state = excluded.state, updated_at = excluded.updated_at",
                    )
                    .bind(identity_id)
                    .bind(s)
                    .bind(now)
                    .execute(p)
                    .await?;
                }
                None => {
                    sqlx::query("delete from conversation_state where identity_id = $1")
                        .bind(identity_id)
                        .execute(p)
                        .await?;
                }
            }
            Ok(())
        })
    }
}

pub(crate) fn person_from_row<R: Row>(r: &R) -> Result<PersonRef>
where
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'a> sqlx::Decode<'a, R::Database>,
    String: sqlx::Type<R::Database> + for<'a> sqlx::Decode<'a, R::Database>,
{
    let kind: String = r.try_get(3usize)?;
    Ok(PersonRef {
        id: r.try_get(0usize)?,
        name: r.try_get(1usize)?,
        email: r.try_get(2usize)?,
        kind: PersonKind::parse(&kind).unwrap_or(PersonKind::Customer),
    })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

impl Store {
    /// Grants `role` to the people linked to these channel identities (`channel:external_id`).
    pub async fn grant_by_identity(
        &self,
        tenant_id: &str,
        identities: &[(String, String)],
        role: &str,
    ) -> Result<u64> {
        let now = self.now();
        let mut n = 0;
        with_pool!(&self.pool, p, d => {
            for (channel, external_id) in identities {
                let mut tx = p.begin_with(d.begin_write).await?;
                let person: Option<i64> = sqlx::query_scalar(
                    "select i.person_id from identities i
                     where i.tenant_id = $1 and i.channel = $2 and i.external_id = $3 and i.person_id is not null
                       and not exists (select 1 from person_roles r where r.person_id = i.person_id and r.role = $4)",
                )
                .bind(tenant_id)
                .bind(channel)
                .bind(external_id)
                .bind(role)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(pid) = person {
                    sqlx::query("insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, $3, $4)")
                        .bind(tenant_id)
                        .bind(pid)
                        .bind(role)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "insert into audit_log (tenant_id, at, actor, actor_person_id, action, target, target_person_id, role, channel)
                         values ($1, $2, 'config (tenant.admins)', null, 'grant', $3, $4, $5, $6)",
                    )
                    .bind(tenant_id)
                    .bind(now)
                    .bind(format!("{channel}:{external_id}"))
                    .bind(pid)
                    .bind(role)
                    .bind(channel)
                    .execute(&mut *tx)
                    .await?;
                    n += 1;
                }
                tx.commit().await?;
            }
        });
        Ok(n)
    }
}

/// A session found by its token.
#[derive(Debug, Clone)]
pub struct TokenSession {
    pub session_id: i64,
    pub tenant_id: String,
    pub identity_id: i64,
    pub external_id: String,
    pub channel: String,
    pub last_interaction_at: i64,
    pub ended: bool,
}

/// Why an email was not linked to a portal visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRefusal {
    /// The email belongs to a person already: linking needs the one-time code.
    AlreadyKnown,
}

impl Store {
    pub async fn session_by_token(&self, token: &str) -> Result<Option<TokenSession>> {
        let hash = hash_token(token);
        with_pool!(&self.pool, p, _d => {
            let row = sqlx::query(
                "select s.id, s.tenant_id, s.identity_id, i.external_id, s.channel, s.last_interaction_at, s.ended_at
                 from sessions s join identities i on i.id = s.identity_id where s.token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(p)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let ended: Option<i64> = r.try_get(6)?;
                    Ok(Some(TokenSession {
                        session_id: r.try_get(0)?,
                        tenant_id: r.try_get(1)?,
                        identity_id: r.try_get(2)?,
                        external_id: r.try_get(3)?,
                        channel: r.try_get(4)?,
                        last_interaction_at: r.try_get(5)?,
                        ended: ended.is_some(),
                    }))
                }
            }
        })
    }

    /// Ends a session (logout, idle); its token stops working.
    pub async fn end_session(&self, session_id: i64, at: i64, reason: &str) -> Result<()> {
        with_pool!(&self.pool, p, _d => {
            sqlx::query("update sessions set ended_at = $1, end_reason = $2 where id = $3 and ended_at is null")
                .bind(at)
                .bind(reason)
                .bind(session_id)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// A portal visitor gave a contact email no one has: they become a customer (email not
    /// verified), their identity is linked, and — the identity having changed — their session
    /// ends and a new one starts. The browser's token moves to the new session.
    pub async fn link_portal_visitor(
        &self,
        tenant_id: &str,
        identity_id: i64,
        old_session: i64,
        email: &str,
        kind: PersonKind,
    ) -> Result<std::result::Result<PersonRef, LinkRefusal>> {
        let now = self.now();
        with_pool!(&self.pool, p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let known: Option<i64> = sqlx::query_scalar("select id from people where tenant_id = $1 and email = $2")
                .bind(tenant_id)
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_some() {
                tx.rollback().await?;
                return Ok(Err(LinkRefusal::AlreadyKnown));
            }
            let pid: i64 = insert_customer!(tx, tenant_id, email, kind, 0i64, now);
            move_to_new_session!(tx, tenant_id, identity_id, old_session, pid, "portal_email", email, now);
            tx.commit().await?;
            Ok(Ok(PersonRef { id: pid, name: None, email: Some(email.to_string()), kind }))
        })
    }
}

impl Store {
    /// Whether a platform message id was already recorded (and so answered).
    pub async fn platform_message_seen(
        &self,
        tenant_id: &str,
        channel: Channel,
        id: &str,
    ) -> Result<bool> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.seen
            .send(SeenAsk {
                key: (tenant_id.to_string(), channel.as_str(), id.to_string()),
                done,
            })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Everything `Core::speaking` needs about a known channel identity, read in one statement
/// without taking the write lock: who it is linked to, its newest open session, what its
/// conversation waits for, its roles, and whether a takeover or relayed messages concern it.
#[derive(Debug, Clone)]
pub struct SpeakerSnapshot {
    pub identity_id: i64,
    pub auth_method: AuthMethod,
    pub person: Option<PersonRef>,
    pub email_verified: bool,
    /// (session id, person id, auth method, last interaction) of the newest open session.
    pub session: Option<(i64, Option<i64>, String, i64)>,
    pub state: Option<String>,
    pub roles: Vec<String>,
    pub in_takeover: bool,
    pub relay_pending: bool,
}

static SPEAKER_SNAPSHOT: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "select i.id, i.auth_method, p.id, p.name, p.email, p.kind, p.email_verified,
                s.id, s.person_id, s.auth_method, s.last_interaction_at,
                (select cs.state from conversation_state cs where cs.identity_id = i.id),
                (select {group_concat}(r.role, ',') from person_roles r where r.person_id = i.person_id),
                (select count(*) from handoffs h where h.closed_at is null
                   and ((h.identity_id = i.id and h.operator_identity_id is not null) or h.operator_identity_id = i.id)),
                (select count(*) from relay_outbox o where o.identity_id = i.id and o.delivered_at is null)
         from identities i
         left join people p on p.id = i.person_id
         left join sessions s on s.id = (select max(s2.id) from sessions s2
                                         where s2.identity_id = i.id and s2.ended_at is null)
         where i.tenant_id = $1 and i.channel = $2 and i.external_id = $3",
    )
});

impl Store {
    /// The identity's current standing, read-only; `None` for an identity never seen.
    pub async fn speaker_snapshot(
        &self,
        tenant_id: &str,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<SpeakerSnapshot>> {
        with_pool!(&self.pool, p, d => {
            let Some(r) = sqlx::query(SPEAKER_SNAPSHOT.get(d))
                .bind(tenant_id)
                .bind(channel.as_str())
                .bind(external_id)
                .fetch_optional(p)
                .await?
            else {
                return Ok(None);
            };
            let method: String = r.try_get(1)?;
            let person_id: Option<i64> = r.try_get(2)?;
            let person = match person_id {
                Some(id) => {
                    let kind: String = r.try_get(5)?;
                    Some(PersonRef {
                        id,
                        name: r.try_get(3)?,
                        email: r.try_get(4)?,
                        kind: PersonKind::parse(&kind).unwrap_or(PersonKind::Customer),
                    })
                }
                None => None,
            };
            let verified: Option<i64> = r.try_get(6)?;
            let session_id: Option<i64> = r.try_get(7)?;
            let session = match session_id {
                Some(id) => Some((id, r.try_get(8)?, r.try_get(9)?, r.try_get(10)?)),
                None => None,
            };
            let roles: Option<String> = r.try_get(12)?;
            let mut roles: Vec<String> = roles
                .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            roles.sort();
            let takeovers: i64 = r.try_get(13)?;
            let pending: i64 = r.try_get(14)?;
            Ok(Some(SpeakerSnapshot {
                identity_id: r.try_get(0)?,
                auth_method: AuthMethod::parse(&method).unwrap_or(AuthMethod::Anonymous),
                person,
                email_verified: verified.unwrap_or(0) != 0,
                session,
                state: r.try_get(11)?,
                roles,
                in_takeover: takeovers > 0,
                relay_pending: pending > 0,
            }))
        })
    }
}
