//! One-time email codes and the sign-in they complete. Codes are kept only as hashes;
//! attempts and expiry are checked in the transaction that uses them.

use super::{Result, Store, with_pool};
use crate::domain::{PersonKind, PersonRef};
use sqlx::Row;

/// Codes live this long.
pub const CODE_TTL_MICROS: i64 = 10 * 60 * 1_000_000;
/// Wrong codes allowed per code.
pub const MAX_ATTEMPTS: i64 = 5;
/// Codes one identity may be sent per window.
pub const MAX_SENDS: i64 = 3;
pub const SEND_WINDOW_MICROS: i64 = 10 * 60 * 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code: the email it was sent to.
    Right {
        email: String,
    },
    Wrong {
        attempts_left: i64,
    },
    Expired,
    /// Too many wrong attempts, or already used.
    Spent,
}

/// Hash of a code, bound to who asked and where it was sent.
pub fn code_hash(code: &str, identity_id: i64, email: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        format!("{identity_id}:{email}:{code}").as_bytes(),
    ))
}

/// Six random digits.
pub fn new_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

impl Store {
    /// Records a new code for `identity_id`, unless it has been sent too many lately
    /// (`Err(micros until it may send again)`).
    pub async fn create_email_code(
        &self,
        tenant_id: &str,
        identity_id: i64,
        email: &str,
        code: &str,
    ) -> Result<std::result::Result<i64, i64>> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let recent: Vec<i64> = sqlx::query_scalar(
                "select created_at from email_codes where identity_id = $1 and created_at > $2 order by created_at",
            )
            .bind(identity_id)
            .bind(now - SEND_WINDOW_MICROS)
            .fetch_all(&mut *tx)
            .await?;
            if recent.len() as i64 >= MAX_SENDS {
                tx.rollback().await?;
                return Ok(Err(recent[0] + SEND_WINDOW_MICROS - now));
            }
            // A new code replaces the ones before it.
            sqlx::query("update email_codes set used_at = $2 where identity_id = $1 and used_at is null")
                .bind(identity_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar(
                "insert into email_codes (tenant_id, identity_id, email, code_hash, created_at, expires_at)
                 values ($1, $2, $3, $4, $5, $6) returning id",
            )
            .bind(tenant_id)
            .bind(identity_id)
            .bind(email)
            .bind(code_hash(code, identity_id, email))
            .bind(now)
            .bind(now + CODE_TTL_MICROS)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(id))
        })
    }

    /// Checks a typed code against the identity's latest code.
    pub async fn check_email_code(&self, identity_id: i64, typed: &str) -> Result<CodeCheck> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let row = sqlx::query(
                "select id, email, code_hash, expires_at, attempts, used_at from email_codes
                 where identity_id = $1 order by id desc limit 1",
            )
            .bind(identity_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(r) = row else {
                tx.rollback().await?;
                return Ok(CodeCheck::Spent);
            };
            let id: i64 = r.try_get(0)?;
            let email: String = r.try_get(1)?;
            let hash: String = r.try_get(2)?;
            let expires_at: i64 = r.try_get(3)?;
            let attempts: i64 = r.try_get(4)?;
            let used: Option<i64> = r.try_get(5)?;
            let verdict = if used.is_some() || attempts >= MAX_ATTEMPTS {
                CodeCheck::Spent
            } else if now > expires_at {
                CodeCheck::Expired
            } else if code_hash(typed, identity_id, &email) == hash {
                sqlx::query("update email_codes set used_at = $2 where id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                CodeCheck::Right { email }
            } else {
                sqlx::query("update email_codes set attempts = attempts + 1 where id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                CodeCheck::Wrong { attempts_left: MAX_ATTEMPTS - attempts - 1 }
            };
            tx.commit().await?;
            Ok(verdict)
        })
    }

    /// The identity proved it owns `email`: it is linked to that person (created as `kind`
    /// with `customer` if new), the email counts as verified, anyone who merely typed it on a
    /// portal is unlinked, and the identity's session is replaced by a new one (method
    /// `email_code`) that keeps the browser's token.
    pub async fn sign_in_verified(
        &self,
        tenant_id: &str,
        identity_id: i64,
        old_session: i64,
        email: &str,
        kind: PersonKind,
        method: crate::domain::AuthMethod,
    ) -> Result<PersonRef> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let existing = sqlx::query("select id, name, kind from people where tenant_id = $1 and email = $2")
                .bind(tenant_id)
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?;
            let person = match existing {
                Some(r) => PersonRef {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    email: Some(email.to_string()),
                    kind: PersonKind::parse(&r.try_get::<String, _>(2)?).unwrap_or(PersonKind::Customer),
                },
                None => {
                    let id = super::insert_customer!(tx, tenant_id, email, kind, 1i64, now);
                    PersonRef { id, name: None, email: Some(email.to_string()), kind }
                }
            };
            super::detach_unverified_claims!(tx, person.id, now);
            sqlx::query("update people set email_verified = 1 where id = $1")
                .bind(person.id)
                .execute(&mut *tx)
                .await?;
            super::move_to_new_session!(tx, tenant_id, identity_id, old_session, person.id, method.as_str(), email, now);
            tx.commit().await?;
            Ok(person)
        })
    }

    /// Whether the tenant's local directory knows this email.
    pub async fn person_exists(&self, tenant_id: &str, email: &str) -> Result<bool> {
        with_pool!(self.pool(), p, _d => {
            let n: i64 = sqlx::query_scalar("select count(*) from people where tenant_id = $1 and email = $2")
                .bind(tenant_id)
                .bind(email)
                .fetch_one(p)
                .await?;
            Ok(n > 0)
        })
    }
}

/// An OAuth state as found at the callback.
#[derive(Debug, Clone)]
pub struct OAuthState {
    pub tenant_id: String,
    pub identity_id: i64,
    pub session_id: i64,
    pub pkce_verifier: String,
}

#[derive(Debug, Clone)]
pub enum StateLookup {
    Valid(OAuthState),
    Unknown,
    Used,
    Expired,
}

/// OAuth states live this long.
pub const STATE_TTL_MICROS: i64 = 10 * 60 * 1_000_000;

impl Store {
    pub async fn create_oauth_state(
        &self,
        state: &str,
        tenant_id: &str,
        identity_id: i64,
        session_id: i64,
        verifier: &str,
    ) -> Result<()> {
        let now = self.now();
        with_pool!(self.pool(), p, _d => {
            sqlx::query(
                "insert into oauth_states (state, tenant_id, identity_id, session_id, pkce_verifier, created_at, expires_at)
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(state)
            .bind(tenant_id)
            .bind(identity_id)
            .bind(session_id)
            .bind(verifier)
            .bind(now)
            .bind(now + STATE_TTL_MICROS)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Looks a state up; with `consume`, a valid one is used up (single use, also across
    /// replicas: only one caller's update succeeds).
    pub async fn oauth_state(&self, state: &str, consume: bool) -> Result<StateLookup> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let row = sqlx::query(
                "select tenant_id, identity_id, session_id, pkce_verifier, expires_at, used_at from oauth_states where state = $1",
            )
            .bind(state)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(r) = row else {
                tx.rollback().await?;
                return Ok(StateLookup::Unknown);
            };
            let used: Option<i64> = r.try_get(5)?;
            let expires_at: i64 = r.try_get(4)?;
            if used.is_some() {
                tx.rollback().await?;
                return Ok(StateLookup::Used);
            }
            if now > expires_at {
                tx.rollback().await?;
                return Ok(StateLookup::Expired);
            }
            if consume {
                let n = sqlx::query("update oauth_states set used_at = $2 where state = $1 and used_at is null")
                    .bind(state)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    tx.rollback().await?;
                    return Ok(StateLookup::Used);
                }
            }
            let found = OAuthState {
                tenant_id: r.try_get(0)?,
                identity_id: r.try_get(1)?,
                session_id: r.try_get(2)?,
                pkce_verifier: r.try_get(3)?,
            };
            tx.commit().await?;
            Ok(StateLookup::Valid(found))
        })
    }
}
