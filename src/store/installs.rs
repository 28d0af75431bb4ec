//! What every install shares (Slack OAuth, Teams `installationUpdate`, …): the installer's
//! channel identity, linked to a person (found by email, or new), made `admin` of the tenant
//! with an audit row — inside the install's transaction.

/// Inside a write transaction `$tx`: `$installer` (`store::slack::Installer`) installed Koji
/// through `$channel` (`"slack"`, `"teams"`…) into `$tenant_id`; they become its admin.
macro_rules! installer_admin {
    ($tx:ident, $tenant_id:expr, $channel:expr, $installer:expr, $now:expr) => {{
        let installer = $installer;
        let identity = sqlx::query(
            "select id, person_id from identities where tenant_id = $1 and channel = $3 and external_id = $2",
        )
        .bind($tenant_id)
        .bind(&installer.user_id)
        .bind($channel)
        .fetch_optional(&mut *$tx)
        .await?;
        let identity: Option<(i64, Option<i64>)> = match identity {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        };
        let mut person: Option<i64> = identity.and_then(|i| i.1);
        if person.is_none()
            && let Some(email) = &installer.email
        {
            person = sqlx::query_scalar("select id from people where tenant_id = $1 and email = $2")
                .bind($tenant_id)
                .bind(email)
                .fetch_optional(&mut *$tx)
                .await?;
        }
        let person = match person {
            Some(id) => id,
            None => {
                let id: i64 = sqlx::query_scalar(
                    "insert into people (tenant_id, email, name, kind, email_verified, created_at)
                     values ($1, $2, $3, $4, $5, $6) returning id",
                )
                .bind($tenant_id)
                .bind(&installer.email)
                .bind(&installer.name)
                .bind(installer.kind.as_str())
                .bind(installer.email.is_some() as i64)
                .bind($now)
                .fetch_one(&mut *$tx)
                .await?;
                sqlx::query("insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, 'customer', $3)")
                    .bind($tenant_id)
                    .bind(id)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                id
            }
        };
        match identity {
            None => {
                sqlx::query(
                    "insert into identities (tenant_id, channel, external_id, person_id, display_name, auth_method, authenticated_at, created_at)
                     values ($1, $6, $2, $3, $4, $6, $5, $5)",
                )
                .bind($tenant_id)
                .bind(&installer.user_id)
                .bind(person)
                .bind(&installer.name)
                .bind($now)
                .bind($channel)
                .execute(&mut *$tx)
                .await?;
            }
            Some((id, None)) => {
                sqlx::query("update identities set person_id = $1, auth_method = $4, authenticated_at = $2 where id = $3")
                    .bind(person)
                    .bind($now)
                    .bind(id)
                    .bind($channel)
                    .execute(&mut *$tx)
                    .await?;
            }
            Some(_) => {}
        }
        let granted = sqlx::query(
            "insert into person_roles (tenant_id, person_id, role, granted_at) values ($1, $2, 'admin', $3)
             on conflict do nothing",
        )
        .bind($tenant_id)
        .bind(person)
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if granted == 1 {
            sqlx::query(
                "insert into audit_log (tenant_id, at, actor, actor_person_id, action, target, target_person_id, role, channel)
                 values ($1, $2, $5, null, 'grant', $3, $4, 'admin', $6)",
            )
            .bind($tenant_id)
            .bind($now)
            .bind(format!("{}:{}", $channel, installer.user_id))
            .bind(person)
            .bind(format!("{} install", $channel))
            .bind($channel)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use installer_admin;
