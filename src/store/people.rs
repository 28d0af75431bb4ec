//! People and their roles: guarded role changes, the audit log, export, erasure and the
//! directory import. The rules (last role, last admin) are checked inside the transaction
//! that changes the roles, with the tenant locked, so two admins acting at once cannot both
//! pass the check.

use super::{Result, Store, with_pool};
use crate::domain::{Channel, PersonId, PersonKind, PersonRef, rfc3339};
use serde_json::{Value, json};
use sqlx::Row;

/// Who changes something, for the audit log.
#[derive(Debug, Clone)]
pub struct Acting {
    /// As shown in the audit log: an email, a channel identity, or `operator`.
    pub label: String,
    pub person_id: Option<PersonId>,
    pub channel: Channel,
}

/// Why a role change was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleRefusal {
    #[error("{who} already has the role {role}")]
    AlreadyHas { who: String, role: String },
    #[error("{who} does not have the role {role}")]
    DoesNotHave { who: String, role: String },
    #[error("{role} is {who}'s last role; everyone keeps at least one (grant another first)")]
    LastRole { who: String, role: String },
    #[error("{who} is the last admin of this tenant; grant admin to someone else first")]
    LastAdmin { who: String },
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub role: Option<String>,
    pub channel: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Created,
    Updated,
    Unchanged,
}

pub fn label_of(p: &PersonRef) -> String {
    p.email.clone().unwrap_or_else(|| format!("#{}", p.id))
}

impl Store {
    /// Gives `target` the role, recording it in the audit log.
    pub async fn grant_role(
        &self,
        tenant_id: &str,
        target: &PersonRef,
        role: &str,
        by: &Acting,
    ) -> Result<std::result::Result<(), RoleRefusal>> {
        self.change_role(tenant_id, target, role, by, true).await
    }

    /// Takes the role from `target`, unless it is their last role or they are the last admin.
    pub async fn revoke_role(
        &self,
        tenant_id: &str,
        target: &PersonRef,
        role: &str,
        by: &Acting,
    ) -> Result<std::result::Result<(), RoleRefusal>> {
        self.change_role(tenant_id, target, role, by, false).await
    }

    async fn change_role(
        &self,
        tenant_id: &str,
        target: &PersonRef,
        role: &str,
        by: &Acting,
        grant: bool,
    ) -> Result<std::result::Result<(), RoleRefusal>> {
        let now = self.now();
        let who = label_of(target);
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            // Serialise role changes per tenant (SQLite's write lock does it already).
            if d.begin_write == "BEGIN" {
                sqlx::query("select id from tenants where id = $1 for update")
                    .bind(tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            }
            let held: Vec<String> = sqlx::query_scalar("select role from person_roles where person_id = $1")
                .bind(target.id)
                .fetch_all(&mut *tx)
                .await?;
            let has = held.iter().any(|r| r == role);
            let refusal = if grant && has {
                Some(RoleRefusal::AlreadyHas { who: who.clone(), role: role.to_string() })
            } else if !grant && !has {
                Some(RoleRefusal::DoesNotHave { who: who.clone(), role: role.to_string() })
            } else if !grant && held.len() <= 1 {
                Some(RoleRefusal::LastRole { who: who.clone(), role: role.to_string() })
            } else if !grant && role == "admin" {
                let admins: i64 = sqlx::query_scalar(
                    "select count(*) from person_roles where tenant_id = $1 and role = 'admin'",
                )
                .bind(tenant_id)
                .fetch_one(&mut *tx)
                .await?;
                (admins <= 1).then(|| RoleRefusal::LastAdmin { who: who.clone() })
            } else {
                None
            };
            if let Some(r) = refusal {
                tx.rollback().await?;
                return Ok(Err(r));
            }
            if grant && role != "customer" {
                // A role is for the person, not for whoever typed their email on a portal.
                super::detach_unverified_claims!(tx, target.id, now);
            }
            if grant {
                sqlx::query("insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, $3, $4)")
                    .bind(tenant_id)
                    .bind(target.id)
                    .bind(role)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("delete from person_roles where person_id = $1 and role = $2")
                    .bind(target.id)
                    .bind(role)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "insert into audit_log (tenant_id, at, actor, actor_person_id, action, target, target_person_id, role, channel)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(tenant_id)
            .bind(now)
            .bind(&by.label)
            .bind(by.person_id)
            .bind(if grant { "grant" } else { "revoke" })
            .bind(&who)
            .bind(target.id)
            .bind(role)
            .bind(by.channel.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(()))
        })
    }

    pub async fn audit_entries(&self, tenant_id: &str, since: i64) -> Result<Vec<AuditRow>> {
        with_pool!(self.pool(), p, _d => {
            let rows = sqlx::query(
                "select at, actor, action, target, role, channel from audit_log
                 where tenant_id = $1 and at >= $2 order by at desc, id desc",
            )
            .bind(tenant_id)
            .bind(since)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditRow {
                        at: r.try_get(0)?,
                        actor: r.try_get(1)?,
                        action: r.try_get(2)?,
                        target: r.try_get(3)?,
                        role: r.try_get(4)?,
                        channel: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    /// Erases everything kept about a person: exchanges (also those of their identities
    /// before they signed in), interests, rollups, sessions, identities, roles, profile. The
    /// audit log keeps that an erasure happened, and names them no more.
    pub async fn erase_person(
        &self,
        tenant_id: &str,
        person: &PersonRef,
        by: &Acting,
    ) -> Result<std::result::Result<u64, RoleRefusal>> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            if d.begin_write == "BEGIN" {
                sqlx::query("select id from tenants where id = $1 for update")
                    .bind(tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            }
            let admins: Vec<i64> = sqlx::query_scalar(
                "select person_id from person_roles where tenant_id = $1 and role = 'admin'",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?;
            if admins == [person.id] {
                tx.rollback().await?;
                return Ok(Err(RoleRefusal::LastAdmin { who: label_of(person) }));
            }
            let mut erased = 0;
            let statements = [
                "delete from messages where person_id = $1 or identity_id in (select id from identities where person_id = $1)",
                "delete from interests where person_id = $1",
                "delete from person_days where person_id = $1",
                "delete from person_stats where person_id = $1",
                "delete from conversation_state where identity_id in (select id from identities where person_id = $1)",
                "delete from relay_outbox where identity_id in (select id from identities where person_id = $1)",
                "delete from handoffs where person_id = $1 or operator_person_id = $1",
                "delete from request_comments where request_id in (select id from requests where reporter_person_id = $1)",
                "delete from requests where reporter_person_id = $1",
                "delete from sessions where person_id = $1 or identity_id in (select id from identities where person_id = $1)",
                "delete from identities where person_id = $1",
                "delete from person_roles where person_id = $1",
                "delete from people where id = $1",
            ];
            for sql in statements {
                erased += sqlx::query(sql).bind(person.id).execute(&mut *tx).await?.rows_affected();
            }
            if std::ptr::eq(d, &super::SQLITE) {
                // SQLite's index of a person's messages is a table (PostgreSQL's a view).
                sqlx::query("delete from person_messages where person_id = $1")
                    .bind(person.id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("update audit_log set target = '(erased)' where target_person_id = $1")
                .bind(person.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("update audit_log set actor = '(erased)' where actor_person_id = $1")
                .bind(person.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "insert into audit_log (tenant_id, at, actor, actor_person_id, action, target, target_person_id, role, channel)
                 values ($1, $2, $3, $4, 'erase', '(erased)', $5, null, $6)",
            )
            .bind(tenant_id)
            .bind(now)
            .bind(&by.label)
            .bind(by.person_id)
            .bind(person.id)
            .bind(by.channel.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(erased))
        })
    }

    /// Everything kept about one person, as JSON (session tokens are never kept, so never shown).
    pub async fn export_person(&self, tenant_id: &str, person: &PersonRef) -> Result<Value> {
        let detail = self.user_detail(person, usize::MAX >> 1).await?;
        with_pool!(self.pool(), p, _d => {
            let sessions: Vec<Value> = sqlx::query(
                "select id, channel, auth_method, login_id, ip, user_agent, started_at, last_interaction_at, ended_at, end_reason
                 from sessions where person_id = $1 order by started_at",
            )
            .bind(person.id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<Value> {
                let ended: Option<i64> = r.try_get(8)?;
                Ok(json!({
                    "session_id": r.try_get::<i64, _>(0)?,
                    "channel": r.try_get::<String, _>(1)?,
                    "auth_method": r.try_get::<String, _>(2)?,
                    "login_id": r.try_get::<String, _>(3)?,
                    "ip": r.try_get::<Option<String>, _>(4)?,
                    "user_agent": r.try_get::<Option<String>, _>(5)?,
                    "started_at": rfc3339(r.try_get(6)?),
                    "last_interaction_at": rfc3339(r.try_get(7)?),
                    "ended_at": ended.map(rfc3339),
                    "end_reason": r.try_get::<Option<String>, _>(9)?,
                }))
            })
            .collect::<Result<_>>()?;
            let exchanges: Vec<Value> = sqlx::query(
                "select at, direction, channel, text, intent, entities, actions from messages
                 where person_id = $1 or identity_id in (select id from identities where person_id = $1)
                 order by at, id",
            )
            .bind(person.id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<Value> {
                let entities: Option<String> = r.try_get(5)?;
                let actions: Option<String> = r.try_get(6)?;
                Ok(json!({
                    "at": rfc3339(r.try_get(0)?),
                    "direction": r.try_get::<String, _>(1)?,
                    "channel": r.try_get::<String, _>(2)?,
                    "text": r.try_get::<String, _>(3)?,
                    "intent": r.try_get::<Option<String>, _>(4)?,
                    "entities": entities.and_then(|e| serde_json::from_str::<Value>(&e).ok()).unwrap_or(json!([])),
                    "actions": actions.and_then(|a| serde_json::from_str::<Value>(&a).ok()).unwrap_or(json!([])),
                }))
            })
            .collect::<Result<_>>()?;
            let audit: Vec<Value> = sqlx::query(
                "select at, actor, action, target, role, channel from audit_log
                 where tenant_id = $1 and (target_person_id = $2 or actor_person_id = $2) order by at, id",
            )
            .bind(tenant_id)
            .bind(person.id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<Value> {
                Ok(json!({
                    "at": rfc3339(r.try_get(0)?),
                    "actor": r.try_get::<String, _>(1)?,
                    "action": r.try_get::<String, _>(2)?,
                    "target": r.try_get::<String, _>(3)?,
                    "role": r.try_get::<Option<String>, _>(4)?,
                    "channel": r.try_get::<String, _>(5)?,
                }))
            })
            .collect::<Result<_>>()?;
            let requests: Vec<Value> = sqlx::query(
                "select key, summary, description, status, created_at from requests
                 where tenant_id = $1 and reporter_person_id = $2 order by created_at, id",
            )
            .bind(tenant_id)
            .bind(person.id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<Value> {
                Ok(json!({
                    "key": r.try_get::<String, _>(0)?,
                    "summary": r.try_get::<String, _>(1)?,
                    "description": r.try_get::<String, _>(2)?,
                    "status": r.try_get::<String, _>(3)?,
                    "created_at": rfc3339(r.try_get(4)?),
                }))
            })
            .collect::<Result<_>>()?;
            Ok(json!({
                "export": "person",
                "tenant": tenant_id,
                "generated_at": rfc3339(self.now()),
                "profile": {
                    "person": detail.person,
                    "created_at": rfc3339(detail.created_at),
                    "account": detail.account,
                },
                "roles": detail.roles,
                "identities": detail.identities.iter().map(|i| json!({
                    "channel": i.channel,
                    "external_id": i.external_id,
                    "auth_method": i.auth_method,
                    "authenticated_at": i.authenticated_at.map(rfc3339),
                })).collect::<Vec<_>>(),
                "sessions": sessions,
                "exchanges": exchanges,
                "interests": detail.interests,
                "requests": requests,
                "audit": audit,
            }))
        })
    }

    /// Adds or updates one person of the local directory. New people get `customer` and the
    /// listed roles; existing ones keep their roles and gain the listed ones.
    pub async fn import_person(
        &self,
        tenant_id: &str,
        email: &str,
        name: Option<&str>,
        kind: PersonKind,
        roles: &[String],
        by: &Acting,
    ) -> Result<Imported> {
        let now = self.now();
        with_pool!(self.pool(), p, d => {
            let mut tx = p.begin_with(d.begin_write).await?;
            let existing = sqlx::query("select id, name, kind from people where tenant_id = $1 and email = $2")
                .bind(tenant_id)
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?;
            let (id, mut outcome) = match existing {
                Some(r) => {
                    let id: i64 = r.try_get(0)?;
                    let old_name: Option<String> = r.try_get(1)?;
                    let old_kind: String = r.try_get(2)?;
                    let new_name = name.map(str::to_string).or(old_name.clone());
                    if new_name != old_name || old_kind != kind.as_str() {
                        sqlx::query("update people set name = $1, kind = $2 where id = $3")
                            .bind(&new_name)
                            .bind(kind.as_str())
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        (id, Imported::Updated)
                    } else {
                        (id, Imported::Unchanged)
                    }
                }
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into people (tenant_id, email, name, kind, email_verified, created_at)
                         values ($1, $2, $3, $4, 0, $5) returning id",
                    )
                    .bind(tenant_id)
                    .bind(email)
                    .bind(name)
                    .bind(kind.as_str())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    (id, Imported::Created)
                }
            };
            let mut wanted: Vec<&str> = roles.iter().map(String::as_str).collect();
            if outcome == Imported::Created && !wanted.contains(&"customer") {
                wanted.insert(0, "customer");
            }
            for role in wanted {
                let added = sqlx::query(
                    "insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, $3, $4)
                     on conflict do nothing",
                )
                .bind(tenant_id)
                .bind(id)
                .bind(role)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if added > 0 {
                    if role != "customer" {
                        super::detach_unverified_claims!(tx, id, now);
                    }
                    if outcome == Imported::Unchanged {
                        outcome = Imported::Updated;
                    }
                    sqlx::query(
                        "insert into audit_log (tenant_id, at, actor, actor_person_id, action, target, target_person_id, role, channel)
                         values ($1, $2, $3, $4, 'grant', $5, $6, $7, $8)",
                    )
                    .bind(tenant_id)
                    .bind(now)
                    .bind(&by.label)
                    .bind(by.person_id)
                    .bind(email)
                    .bind(id)
                    .bind(role)
                    .bind(by.channel.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(outcome)
        })
    }
}
