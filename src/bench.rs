//! Benchmarks, run from the release binary (`koji bench …`, hidden from help) against the
//! configured database, so SQLite and PostgreSQL are measured the same way:
//!
//! - `koji bench pipeline`: messages through the core API from many concurrent
//!   conversations, every exchange recorded durably before its reply is returned.
//! - `koji bench seed`: a reports fixture (people, sessions, exchanges over N days), written
//!   through the same group commit as live traffic, so the rollups are the real ones.
//! - `koji bench reports`: how long each report takes on what is in the database.

use crate::app::start_core;
use crate::commands;
use crate::config::Config;
use crate::conversation::{Actor, CHAT_ROWS, CommandOutput};
use crate::domain::{AuthMethod, Channel, MICROS_PER_DAY, SystemClock};
use crate::store::{BatchWriter, DialectSql, Direction, MessageRow, with_pool};
use koji_channel::{Inbound, Outcome, Speaker, TenantHint};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
enum BenchWhat {
    /// Inbound messages/s through the core with many concurrent conversations.
    Pipeline {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        #[arg(long, default_value_t = 1000)]
        conversations: u64,
        /// Give each message a platform id (as Slack, Teams and Discord do): claimed durably
        /// before routing, so retries are answered once.
        #[arg(long)]
        platform_ids: bool,
    },
    /// Seed the reports fixture.
    Seed {
        #[arg(long, default_value_t = 1_000_000)]
        exchanges: u64,
        #[arg(long, default_value_t = 100_000)]
        people: u64,
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
    /// Time each report.
    Reports {
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Pipeline {
            messages,
            conversations,
            platform_ids,
        } => pipeline(config, messages, conversations, platform_ids).await,
        BenchWhat::Seed {
            exchanges,
            people,
            days,
        } => seed(config, exchanges, people, days).await,
        BenchWhat::Reports { runs } => reports(config, runs).await,
    }
}

const TEXTS: [&str; 6] = [
    "hello",
    "How do I connect to the VPN? error 0x800F081F",
    "thanks",
    "Outlook keeps asking for my password",
    "the printer on floor 3 is offline, ticket ITSM-42",
    "bye",
];

async fn pipeline(
    config: Config,
    messages: u64,
    conversations: u64,
    platform_ids: bool,
) -> anyhow::Result<()> {
    let backend = if config.database.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let (core, writer) = start_core(config, Arc::new(SystemClock)).await?;
    let per = (messages / conversations).max(1);
    let speaker = |c: u64| Speaker {
        external_id: format!("bench-{c}@bench.test"),
        display_name: None,
        verified_email: Some(format!("bench-{c}@bench.test")),
        auth_method: AuthMethod::Console,
        locale: None,
        time_zone: None,
    };
    let run_id: u64 = rand::rng().random();
    let message = |c: u64, i: u64| Inbound {
        channel: Channel::Console,
        tenant: TenantHint::Default,
        speaker: speaker(c),
        platform_message_id: platform_ids.then(|| format!("{run_id:x}-{c}-{i}")),
        text: TEXTS[(i % TEXTS.len() as u64) as usize].to_string(),
        ip: None,
        user_agent: None,
    };
    // Warm-up: every conversation's first message creates its person and session.
    let warm = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conversations {
        let core = core.clone();
        let m = message(c, u64::MAX);
        tasks.push(tokio::spawn(async move { core.handle(m).await }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "warm-up: {conversations} conversations started in {:?}",
        warm.elapsed()
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conversations {
        let core = core.clone();
        let msgs: Vec<Inbound> = (0..per).map(|i| message(c, i)).collect();
        tasks.push(tokio::spawn(async move {
            let mut replies = 0u64;
            for m in msgs {
                if let Outcome::Replies(r) = core.handle(m).await? {
                    replies += r.len() as u64;
                }
            }
            Ok::<u64, koji_channel::ConversationError>(replies)
        }));
    }
    let mut replies = 0;
    for t in tasks {
        replies += t.await??;
    }
    let elapsed = started.elapsed();
    let total = per * conversations;
    println!(
        "pipeline [{backend}{}]: {total} messages from {conversations} conversations in {:.2}s = {:.0} messages/s ({replies} replies, every exchange committed before its reply)",
        if platform_ids { ", platform ids" } else { "" },
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let store = core.store.clone();
    drop(core);
    writer.await?;
    store.close().await;
    Ok(())
}

static INSERT_PEOPLE: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "insert into people (tenant_id, email, name, kind, email_verified, created_at)
         select value ->> 0, value ->> 1, value ->> 2, value ->> 3, 1, cast(value ->> 4 as bigint) from {rows} where true
         on conflict (tenant_id, email) do nothing returning id",
    )
});
static INSERT_ROLES: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "insert into person_roles (tenant_id, person_id, role, granted_at)
         select value ->> 0, cast(value ->> 1 as bigint), 'customer', cast(value ->> 2 as bigint) from {rows} where true
         on conflict do nothing",
    )
});
static INSERT_IDENTITIES: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "insert into identities (tenant_id, channel, external_id, person_id, auth_method, authenticated_at, created_at)
         select value ->> 0, value ->> 1, value ->> 2, cast(value ->> 3 as bigint), value ->> 4, cast(value ->> 5 as bigint), cast(value ->> 5 as bigint)
         from {rows} where true returning id",
    )
});
static INSERT_SESSIONS: LazyLock<DialectSql> = LazyLock::new(|| {
    DialectSql::new(
        "insert into sessions (tenant_id, identity_id, person_id, channel, auth_method, login_id, token_hash, started_at, last_interaction_at)
         select value ->> 0, cast(value ->> 1 as bigint), cast(value ->> 2 as bigint), value ->> 3, value ->> 4, value ->> 5, value ->> 6,
                cast(value ->> 7 as bigint), cast(value ->> 7 as bigint)
         from {rows} where true returning id",
    )
});
static SESSION_ROLLUPS: [&str; 4] = [
    "insert into person_days (tenant_id, person_id, day, channel, sessions)
     select tenant_id, person_id, started_at / 86400000000, channel, count(*) from sessions where person_id is not null
     group by tenant_id, person_id, started_at / 86400000000, channel
     on conflict (tenant_id, person_id, day, channel) do update set sessions = excluded.sessions",
    "insert into person_days (tenant_id, person_id, day, channel, sessions)
     select tenant_id, person_id, started_at / 86400000000, '*', count(*) from sessions where person_id is not null
     group by tenant_id, person_id, started_at / 86400000000
     on conflict (tenant_id, person_id, day, channel) do update set sessions = excluded.sessions",
    "insert into person_stats (tenant_id, person_id, channel, sessions, first_seen, last_seen)
     select tenant_id, person_id, channel, count(*), min(started_at), max(started_at) from sessions where person_id is not null
     group by tenant_id, person_id, channel
     on conflict (tenant_id, person_id, channel) do update set sessions = excluded.sessions",
    "insert into person_stats (tenant_id, person_id, channel, sessions, first_seen, last_seen)
     select tenant_id, person_id, '*', count(*), min(started_at), max(started_at) from sessions where person_id is not null
     group by tenant_id, person_id
     on conflict (tenant_id, person_id, channel) do update set sessions = excluded.sessions",
];

struct SeedPerson {
    id: i64,
    identity: i64,
    channel: Channel,
    sessions: Vec<(i64, i64)>, // (session id, started_at)
}

async fn seed(config: Config, exchanges: u64, people: u64, days: u64) -> anyhow::Result<()> {
    let backend = if config.database.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let batch_max = config.database.batch_max;
    let (core, writer_task) = start_core(config, Arc::new(SystemClock)).await?;
    let tenant = core
        .cli_tenant(None)
        .map_err(anyhow::Error::msg)?
        .config
        .id
        .clone();
    let pool = core.store.pool().clone();
    let now = core.store.now();
    let span = days as i64 * MICROS_PER_DAY;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    let channels = [
        Channel::Slack,
        Channel::Teams,
        Channel::Discord,
        Channel::Portal,
    ];

    let mut persons: Vec<SeedPerson> = Vec::with_capacity(people as usize);
    for chunk_start in (0..people).step_by(5000) {
        let chunk: Vec<u64> = (chunk_start..(chunk_start + 5000).min(people)).collect();
        let created: Vec<i64> = chunk
            .iter()
            .map(|_| now - rng.random_range(0..span))
            .collect();
        let rows: Vec<_> = chunk
            .iter()
            .zip(&created)
            .map(|(i, at)| {
                (
                    &tenant,
                    format!("seed{i}@bench.test"),
                    format!("Seed Person {i}"),
                    if i % 5 == 0 { "internal" } else { "customer" },
                    *at,
                )
            })
            .collect();
        let ids: Vec<i64> = with_pool!(&pool, p, d => {
            let ids: Vec<i64> = sqlx::query_scalar(INSERT_PEOPLE.get(d)).bind(serde_json::to_string(&rows)?).fetch_all(p).await?;
            let roles: Vec<_> = ids.iter().map(|id| (&tenant, id, now)).collect();
            sqlx::query(INSERT_ROLES.get(d)).bind(serde_json::to_string(&roles)?).execute(p).await?;
            ids
        });
        anyhow::ensure!(
            ids.len() == chunk.len(),
            "people already seeded: use a fresh database"
        );
        let idents: Vec<_> = chunk
            .iter()
            .zip(&ids)
            .zip(&created)
            .map(|((i, id), at)| {
                let ch = channels[(*i % 4) as usize];
                (&tenant, ch.as_str(), format!("seed-{i}"), id, "slack", at)
            })
            .collect();
        let identity_ids: Vec<i64> = with_pool!(&pool, p, d => {
            sqlx::query_scalar(INSERT_IDENTITIES.get(d)).bind(serde_json::to_string(&idents)?).fetch_all(p).await?
        });
        let mut sess_rows = Vec::new();
        let mut owners = Vec::new();
        for (k, ((i, id), at)) in chunk.iter().zip(&ids).zip(&created).enumerate() {
            let n = 1 + (i % 3) as i64;
            let ch = channels[(*i % 4) as usize];
            for s in 0..n {
                let start = at + (now - at) * s / n;
                sess_rows.push((
                    &tenant,
                    identity_ids[k],
                    *id,
                    ch.as_str(),
                    "slack",
                    format!("seed-{i}"),
                    crate::store::new_token(),
                    start,
                ));
                owners.push((persons.len() + k, start));
            }
        }
        for (k, (id, identity)) in ids.iter().zip(&identity_ids).enumerate() {
            persons.push(SeedPerson {
                id: *id,
                identity: *identity,
                channel: channels[(chunk[k] % 4) as usize],
                sessions: Vec::new(),
            });
        }
        let sess_ids: Vec<i64> = with_pool!(&pool, p, d => {
            sqlx::query_scalar(INSERT_SESSIONS.get(d)).bind(serde_json::to_string(&sess_rows)?).fetch_all(p).await?
        });
        for (sid, (owner, start)) in sess_ids.into_iter().zip(owners) {
            persons[owner].sessions.push((sid, start));
        }
    }
    for sql in SESSION_ROLLUPS {
        with_pool!(&pool, p, _d => {
            sqlx::query(sql).execute(p).await?;
        });
    }
    eprintln!(
        "seed: {people} people with identities and sessions in {:?}",
        started.elapsed()
    );

    let writer = BatchWriter::start(pool.clone(), batch_max).0;
    let tenant_arc: Arc<str> = Arc::from(tenant.as_str());
    let mut inflight = Vec::new();
    let mut written = 0u64;
    let mut batch = Vec::new();
    for e in 0..exchanges {
        // A fifth of the people only make small talk: they are the visitors.
        let who = &persons[(rng.random_range(0..people) as usize).min(persons.len() - 1)];
        let (sid, start) = who.sessions[rng.random_range(0..who.sessions.len())];
        let at = start + rng.random_range(0..(now - start).max(1));
        let small_talk_only = who.id % 5 == 1;
        let text = if small_talk_only {
            TEXTS[(e % 2 * 2) as usize]
        } else {
            TEXTS[(e % TEXTS.len() as u64) as usize]
        };
        let (intent, specific) = match text {
            "hello" => ("greeting", false),
            "thanks" => ("thanks", false),
            "bye" => ("goodbye", false),
            _ => ("question", true),
        };
        let entities = if text.contains("VPN") {
            vec![
                crate::nlu::Entity {
                    kind: "term".into(),
                    value: "VPN".into(),
                },
                crate::nlu::Entity {
                    kind: "error_code".into(),
                    value: "0x800F081F".into(),
                },
            ]
        } else {
            Vec::new()
        };
        let base = MessageRow {
            tenant_id: tenant_arc.clone(),
            session_id: sid,
            person_id: Some(who.id),
            identity_id: who.identity,
            channel: who.channel,
            direction: Direction::In,
            text: text.to_string(),
            intent: Some(intent.to_string()),
            specific,
            entities,
            actions: Vec::new(),
            platform_msg_id: None,
            at,
        };
        let reply = MessageRow {
            direction: Direction::Out,
            text: "Here is what I found.".into(),
            intent: None,
            specific: false,
            entities: Vec::new(),
            actions: if specific && e % 3 == 0 {
                vec!["kb_answer".into()]
            } else {
                Vec::new()
            },
            at: at + 1000,
            ..base.clone()
        };
        batch.push(base);
        batch.push(reply);
        if batch.len() >= 2 {
            inflight.push(writer.enqueue(std::mem::take(&mut batch), false).await?);
        }
        if inflight.len() >= 4096 {
            for rx in inflight.drain(..) {
                rx.await??;
            }
            written = e + 1;
            if written % 100_000 < 2100 {
                eprintln!("seed: {written} exchanges…");
            }
        }
    }
    for rx in inflight.drain(..) {
        rx.await??;
    }
    // The rollups too, before the time is taken.
    writer.flush().await?;
    let _ = written;
    println!(
        "seed [{backend}]: {exchanges} exchanges from {people} people over {days} days in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if let crate::store::Pool::Postgres(p) = core.store.pool() {
        // What autovacuum does to a live database in time: planner statistics and the
        // visibility map that index-only scans need. Reports measured before it are not
        // what an admin sees.
        let t = Instant::now();
        sqlx::query("vacuum analyze").execute(p).await?;
        eprintln!("seed: vacuum analyze in {:.1}s", t.elapsed().as_secs_f64());
    }
    drop(writer);
    drop(core);
    let _ = writer_task.await;
    Ok(())
}

async fn reports(config: Config, runs: usize) -> anyhow::Result<()> {
    let backend = if config.database.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let (core, writer) = start_core(config, Arc::new(SystemClock)).await?;
    let tenant = core.cli_tenant(None).map_err(anyhow::Error::msg)?;
    let who = match core
        .store
        .find_person(&tenant.config.id, "seed0@bench.test")
        .await?
    {
        Some(_) => "seed0@bench.test",
        None => "alice@acme.test",
    };
    let cases = [
        "sessions".to_string(),
        "users --top 50".to_string(),
        format!("user {who}"),
        "visitors".to_string(),
        "users --since 7d --top 50".to_string(),
        "visitors --since 7d".to_string(),
    ];
    for case in cases {
        // `full`: every row, rendered as `--format json` (the CLI); `chat`: what `/koji …`
        // answers in a chat, the total and the first rows.
        for (mode, rows) in [("full", None), ("chat", Some(CHAT_ROWS))] {
            let mut times = Vec::with_capacity(runs);
            let mut total = 0;
            for _ in 0..runs.max(1) {
                let cmd = commands::parse(&case).map_err(anyhow::Error::msg)?;
                let t = Instant::now();
                let out = core
                    .run_command_rows(
                        tenant,
                        &Actor::Operator,
                        crate::domain::Channel::Console,
                        cmd,
                        rows,
                    )
                    .await;
                if let CommandOutput::Report(r, _) = &out {
                    total = r.total;
                    match rows {
                        None => drop(r.render(crate::commands::Format::Json)),
                        Some(n) => drop(r.to_table(n)),
                    }
                } else {
                    anyhow::bail!("{case}: {out:?}");
                }
                times.push(t.elapsed());
            }
            times.sort();
            let median = times[times.len() / 2];
            let max = *times.last().unwrap_or(&Duration::ZERO);
            println!(
                "report [{backend}] {case:<28} {mode}  total={total:<7} median {:>7.2} ms  max {:>7.2} ms",
                median.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3,
            );
        }
    }
    let store = core.store.clone();
    drop(core);
    let _ = writer.await;
    store.close().await;
    Ok(())
}
