//! The local help desk's storage: knowledge-base articles and their full-text index
//! (SQLite FTS5 with Porter stemming, PostgreSQL `tsvector` with English stemming), requests
//! with per-tenant keys, handoffs to operators and the relay between them.

use super::{Pool, Result, Store, with_pool};
use sqlx::Row;
use std::collections::HashMap;

/// An article as loaded from a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbDoc {
    pub slug: String,
    pub title: String,
    pub body: String,
}

/// What a knowledge-base load changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KbSync {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    pub unchanged: u64,
}

/// One full-text hit, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct KbHit {
    pub slug: String,
    pub title: String,
    pub body: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub key: String,
    pub summary: String,
    pub description: String,
    pub status: String,
    pub reporter_person_id: Option<i64>,
    pub reporter_email: Option<String>,
    pub created_at: i64,
    /// (author, text), oldest first.
    pub comments: Vec<(String, String)>,
}

/// Whom an identity is talking to while a conversation is taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// This identity is the person; `operator_identity_id` answers them.
    Person {
        handoff_id: i64,
        operator_identity_id: i64,
    },
    /// This identity is the operator answering `identity_id` (the person's identity).
    Operator {
        handoff_id: i64,
        identity_id: i64,
        label: String,
    },
}

/// How long a process reuses a knowledge-base search: another replica's `koji kb reload`
/// is seen within this time; this process's own reload clears it at once.
const KB_CACHE_MICROS: i64 = 2_000_000;
/// Searches remembered at most; the cache starts over when full.
const KB_CACHE_MAX: usize = 4096;

/// Search results by (terms, limit), with the time they were read.
pub(crate) type KbCache = HashMap<(Vec<String>, usize), (i64, std::sync::Arc<[KbHit]>)>;

fn content_hash(doc: &KbDoc) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        format!("{}\n{}", doc.title, doc.body).as_bytes(),
    ))
}

impl Store {
    /// Makes the stored articles exactly `docs` (by slug): new ones added, changed ones
    /// updated, missing ones removed. Safe to run from several replicas at once.
    pub async fn sync_kb(&self, docs: &[KbDoc]) -> Result<KbSync> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let existing: Vec<(String, String)> =
                sqlx::query_as("select slug, content_hash from kb_articles")
                    .fetch_all(&mut *tx)
                    .await?;
            let existing: std::collections::HashMap<String, String> = existing.into_iter().collect();
            let mut out = KbSync::default();
            for doc in docs {
                let hash = content_hash(doc);
                match existing.get(&doc.slug) {
                    Some(h) if *h == hash => {
                        out.unchanged += 1;
                        continue;
                    }
                    Some(_) => out.updated += 1,
                    None => out.added += 1,
                }
                sqlx::query(
                    "insert into kb_articles (slug, title, body, content_hash, updated_at)
                     values ($1, $2, $3, $4, $5)
                     on conflict (slug) do update set title = excluded.title, body = excluded.body,
                        content_hash = excluded.content_hash, updated_at = excluded.updated_at",
                )
                .bind(&doc.slug)
                .bind(&doc.title)
                .bind(&doc.body)
                .bind(&hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let keep: std::collections::HashSet<&str> = docs.iter().map(|d| d.slug.as_str()).collect();
            for slug in existing.keys().filter(|s| !keep.contains(s.as_str())) {
                sqlx::query("delete from kb_articles where slug = $1")
                    .bind(slug)
                    .execute(&mut *tx)
                    .await?;
                out.removed += 1;
            }
            tx.commit().await?;
            self.kb_cache.lock().expect("kb cache").clear();
            self.kb_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(out)
        })
    }

    /// Articles matching any of `terms` (plain lowercase words), ranked by the database's
    /// full-text relevance with the title weighing more than the body.
    pub async fn search_kb(
        &self,
        terms: &[String],
        limit: usize,
    ) -> Result<std::sync::Arc<[KbHit]>> {
        if terms.is_empty() {
            return Ok(std::sync::Arc::from(Vec::new()));
        }
        let now = self.now();
        let key = (terms.to_vec(), limit);
        if let Some((at, hits)) = self.kb_cache.lock().expect("kb cache").get(&key)
            && now.saturating_sub(*at) <= KB_CACHE_MICROS
            && *at <= now
        {
            return Ok(hits.clone());
        }
        let hits: std::sync::Arc<[KbHit]> = self.search_kb_uncached(terms, limit).await?.into();
        let mut cache = self.kb_cache.lock().expect("kb cache");
        if cache.len() >= KB_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (now, hits.clone()));
        Ok(hits)
    }

    async fn search_kb_uncached(&self, terms: &[String], limit: usize) -> Result<Vec<KbHit>> {
        let limit = limit as i64;
        let rows = match self.pool() {
            Pool::Sqlite(p) => {
                // Each term quoted: FTS5 syntax characters in the question mean nothing.
                let q = terms
                    .iter()
                    .map(|t| format!("\"{}\"", t.replace('"', "")))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                sqlx::query(
                    "select a.slug, a.title, a.body, -bm25(kb_fts, 4.0, 1.0) as score
                     from kb_fts join kb_articles a on a.id = kb_fts.rowid
                     where kb_fts match $1 order by score desc, a.id limit $2",
                )
                .bind(q)
                .bind(limit)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| hit(&r))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?
            }
            Pool::Postgres(p) => {
                // Terms are plain words (letters and digits), so `a | b` is a valid tsquery.
                let q = terms.join(" | ");
                sqlx::query(
                    "select slug, title, body, ts_rank(search, q)::float8 as score
                     from kb_articles, to_tsquery('english', $1) q
                     where search @@ q order by score desc, id limit $2",
                )
                .bind(q)
                .bind(limit)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| hit(&r))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?
            }
        };
        Ok(rows)
    }

    /// How many knowledge-base loads this process has made (its caches start over after one).
    pub fn kb_generation(&self) -> u64 {
        self.kb_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What identifies the stored knowledge base's content: (articles, last change).
    pub async fn kb_version(&self) -> Result<(i64, i64)> {
        with_pool!(self.pool(), p, d => {
            Ok(sqlx::query_as("select count(*), coalesce(max(updated_at), 0) from kb_articles")
                .fetch_one(p)
                .await?)
        })
    }

    /// Every article: (slug, title, body).
    pub async fn kb_texts(&self) -> Result<Vec<(String, String, String)>> {
        with_pool!(self.pool(), p, d => {
            Ok(sqlx::query_as("select slug, title, body from kb_articles").fetch_all(p).await?)
        })
    }

    /// One article by slug: (title, body).
    pub async fn kb_article(&self, slug: &str) -> Result<Option<(String, String)>> {
        with_pool!(self.pool(), p, d => {
            Ok(sqlx::query_as("select title, body from kb_articles where slug = $1")
                .bind(slug)
                .fetch_optional(p)
                .await?)
        })
    }

    pub async fn kb_count(&self) -> Result<i64> {
        with_pool!(self.pool(), p, d => {
            Ok(sqlx::query_scalar("select count(*) from kb_articles").fetch_one(p).await?)
        })
    }

    /// Opens a request with the tenant's next key (`REQ-n`).
    pub async fn create_request(
        &self,
        tenant_id: &str,
        summary: &str,
        description: &str,
        reporter_person_id: Option<i64>,
        reporter_email: Option<&str>,
    ) -> Result<StoredRequest> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let n: i64 = sqlx::query_scalar(
                "update tenants set request_seq = request_seq + 1 where id = $1 returning request_seq",
            )
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?;
            let key = format!("REQ-{n}");
            sqlx::query(
                "insert into requests (tenant_id, key, summary, description, status,
                    reporter_person_id, reporter_email, created_at, updated_at)
                 values ($1, $2, $3, $4, 'Open', $5, $6, $7, $7)",
            )
            .bind(tenant_id)
            .bind(&key)
            .bind(summary)
            .bind(description)
            .bind(reporter_person_id)
            .bind(reporter_email)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(StoredRequest {
                key,
                summary: summary.to_string(),
                description: description.to_string(),
                status: "Open".into(),
                reporter_person_id,
                reporter_email: reporter_email.map(str::to_string),
                created_at: now,
                comments: Vec::new(),
            })
        })
    }

    /// A request by key, case-insensitively (`req-12` finds `REQ-12`).
    pub async fn request_by_key(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<StoredRequest>> {
        let key = key.to_ascii_uppercase();
        with_pool!(self.pool(), p, d => {
            let Some(r) = sqlx::query(
                "select id, key, summary, description, status, reporter_person_id, reporter_email, created_at
                 from requests where tenant_id = $1 and key = $2",
            )
            .bind(tenant_id)
            .bind(&key)
            .fetch_optional(p)
            .await?
            else {
                return Ok(None);
            };
            let id: i64 = r.try_get(0)?;
            let comments: Vec<(String, String)> = sqlx::query_as(
                "select author, text from request_comments where request_id = $1 order by id",
            )
            .bind(id)
            .fetch_all(p)
            .await?;
            Ok(Some(StoredRequest {
                key: r.try_get(1)?,
                summary: r.try_get(2)?,
                description: r.try_get(3)?,
                status: r.try_get(4)?,
                reporter_person_id: r.try_get(5)?,
                reporter_email: r.try_get(6)?,
                created_at: r.try_get(7)?,
                comments,
            }))
        })
    }

    /// Sets a request's status and adds a comment (operators, tests).
    pub async fn update_request(
        &self,
        tenant_id: &str,
        key: &str,
        status: Option<&str>,
        comment: Option<(&str, &str)>,
    ) -> Result<bool> {
        let now = self.now();
        let key = key.to_ascii_uppercase();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let id: Option<i64> = sqlx::query_scalar("select id from requests where tenant_id = $1 and key = $2")
                .bind(tenant_id)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(id) = id else {
                tx.rollback().await?;
                return Ok(false);
            };
            if let Some(s) = status {
                sqlx::query("update requests set status = $2, updated_at = $3 where id = $1")
                    .bind(id)
                    .bind(s)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some((author, text)) = comment {
                sqlx::query("insert into request_comments (request_id, author, text, created_at) values ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(author)
                    .bind(text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The requests a person reported, newest first: (key, summary, status).
    pub async fn requests_of(&self, person_id: i64) -> Result<Vec<(String, String, String)>> {
        with_pool!(self.pool(), p, d => {
            Ok(sqlx::query_as(
                "select key, summary, status from requests where reporter_person_id = $1 order by created_at desc, id desc",
            )
            .bind(person_id)
            .fetch_all(p)
            .await?)
        })
    }

    /// "Talk to a human": marks the identity's conversation for an operator (once; asking
    /// again keeps the open handoff). Returns true when newly marked.
    pub async fn request_handoff(
        &self,
        tenant_id: &str,
        person_id: Option<i64>,
        identity_id: i64,
    ) -> Result<bool> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let open: Option<i64> = sqlx::query_scalar(
                "select id from handoffs where identity_id = $1 and closed_at is null",
            )
            .bind(identity_id)
            .fetch_optional(&mut *tx)
            .await?;
            if open.is_some() {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(
                "insert into handoffs (tenant_id, person_id, identity_id, requested_at) values ($1, $2, $3, $4)",
            )
            .bind(tenant_id)
            .bind(person_id)
            .bind(identity_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Open handoffs waiting for an operator: (person label, requested_at), oldest first.
    pub async fn waiting_handoffs(&self, tenant_id: &str) -> Result<Vec<(String, i64)>> {
        with_pool!(self.pool(), p, d => {
            Ok(sqlx::query_as(
                "select coalesce(pe.email, pe.name, i.channel || ':' || i.external_id), h.requested_at
                 from handoffs h join identities i on i.id = h.identity_id
                 left join people pe on pe.id = h.person_id
                 where h.tenant_id = $1 and h.closed_at is null and h.taken_at is null
                 order by h.requested_at",
            )
            .bind(tenant_id)
            .fetch_all(p)
            .await?)
        })
    }

    /// The operator takes over the person's conversation (the identity they spoke through
    /// last). `Err(reason)` when there is nothing to take over or someone else has it.
    pub async fn take_over(
        &self,
        tenant_id: &str,
        person_id: i64,
        operator_person_id: i64,
        operator_identity_id: i64,
    ) -> Result<std::result::Result<i64, String>> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            // The operator answers one person at a time.
            let mine: Option<i64> = sqlx::query_scalar(
                "select id from handoffs where operator_identity_id = $1 and closed_at is null",
            )
            .bind(operator_identity_id)
            .fetch_optional(&mut *tx)
            .await?;
            if mine.is_some() {
                tx.rollback().await?;
                return Ok(Err("you are already answering someone; /koji release first".into()));
            }
            let identity: Option<i64> = sqlx::query_scalar(
                "select identity_id from sessions where tenant_id = $1 and person_id = $2
                 order by last_interaction_at desc, id desc limit 1",
            )
            .bind(tenant_id)
            .bind(person_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(identity) = identity else {
                tx.rollback().await?;
                return Ok(Err("they have no conversation with Koji yet".into()));
            };
            let open: Option<(i64, Option<i64>)> = sqlx::query_as(
                "select id, operator_person_id from handoffs where identity_id = $1 and closed_at is null",
            )
            .bind(identity)
            .fetch_optional(&mut *tx)
            .await?;
            match open {
                Some((_, Some(other))) if other != operator_person_id => {
                    tx.rollback().await?;
                    return Ok(Err("another operator is already answering them".into()));
                }
                Some((id, _)) => {
                    sqlx::query(
                        "update handoffs set operator_person_id = $2, operator_identity_id = $3, taken_at = $4 where id = $1",
                    )
                    .bind(id)
                    .bind(operator_person_id)
                    .bind(operator_identity_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "insert into handoffs (tenant_id, person_id, identity_id, operator_person_id,
                            operator_identity_id, taken_at) values ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(tenant_id)
                    .bind(person_id)
                    .bind(identity)
                    .bind(operator_person_id)
                    .bind(operator_identity_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(Ok(identity))
        })
    }

    /// Ends the operator's takeover: (the person's identity id, their label), if any.
    pub async fn release(&self, operator_identity_id: i64) -> Result<Option<(i64, String)>> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let row: Option<(i64, i64, String)> = sqlx::query_as(
                "select h.id, h.identity_id, coalesce(pe.email, pe.name, i.channel || ':' || i.external_id)
                 from handoffs h join identities i on i.id = h.identity_id
                 left join people pe on pe.id = h.person_id
                 where h.operator_identity_id = $1 and h.closed_at is null",
            )
            .bind(operator_identity_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, identity, label)) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            sqlx::query("update handoffs set closed_at = $2 where id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some((identity, label)))
        })
    }

    /// The takeover this identity is part of, if any.
    pub async fn relay_of(&self, identity_id: i64) -> Result<Option<Relay>> {
        with_pool!(self.pool(), p, d => {
            let as_person: Option<(i64, i64)> = sqlx::query_as(
                "select id, operator_identity_id from handoffs
                 where identity_id = $1 and closed_at is null and operator_identity_id is not null",
            )
            .bind(identity_id)
            .fetch_optional(p)
            .await?;
            if let Some((handoff_id, operator_identity_id)) = as_person {
                return Ok(Some(Relay::Person { handoff_id, operator_identity_id }));
            }
            let as_operator: Option<(i64, i64, String)> = sqlx::query_as(
                "select h.id, h.identity_id, coalesce(pe.email, pe.name, i.channel || ':' || i.external_id)
                 from handoffs h join identities i on i.id = h.identity_id
                 left join people pe on pe.id = h.person_id
                 where h.operator_identity_id = $1 and h.closed_at is null",
            )
            .bind(identity_id)
            .fetch_optional(p)
            .await?;
            Ok(as_operator.map(|(handoff_id, identity_id, label)| Relay::Operator {
                handoff_id,
                identity_id,
                label,
            }))
        })
    }

    /// Whether relayed messages wait for `identity_id`.
    pub async fn relay_pending(&self, identity_id: i64) -> Result<bool> {
        with_pool!(self.pool(), p, d => {
            let id: Option<i64> = sqlx::query_scalar(
                "select id from relay_outbox where identity_id = $1 and delivered_at is null limit 1",
            )
            .bind(identity_id)
            .fetch_optional(p)
            .await?;
            Ok(id.is_some())
        })
    }

    /// Queues a relayed message for `identity_id`'s next exchange.
    pub async fn queue_relay(&self, tenant_id: &str, identity_id: i64, text: &str) -> Result<()> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            sqlx::query("insert into relay_outbox (tenant_id, identity_id, text, created_at) values ($1, $2, $3, $4)")
                .bind(tenant_id)
                .bind(identity_id)
                .bind(text)
                .bind(now)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Takes the messages waiting for `identity_id`, oldest first, marking them delivered.
    pub async fn take_relayed(&self, identity_id: i64) -> Result<Vec<String>> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "select id, text from relay_outbox where identity_id = $1 and delivered_at is null order by id",
            )
            .bind(identity_id)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(Vec::new());
            }
            sqlx::query("update relay_outbox set delivered_at = $2 where identity_id = $1 and delivered_at is null and id <= $3")
                .bind(identity_id)
                .bind(now)
                .bind(rows.last().map(|r| r.0).unwrap_or(0))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(rows.into_iter().map(|r| r.1).collect())
        })
    }
}

fn hit<R: Row>(r: &R) -> std::result::Result<KbHit, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> f64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(KbHit {
        slug: r.try_get("slug")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        score: r.try_get("score")?,
    })
}
