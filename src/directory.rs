//! The directory: who a tenant knows, by email. [`Directory`] is the port the sign-in flows
//! ask; [`LocalDirectory`] answers from the database and `tenant.internal_domains`. The local
//! directory is seeded from a CSV file (`koji users import FILE.csv`, header
//! `email,name,kind,roles`, roles separated by `;`): importing the same file twice changes
//! nothing the second time; rows that cannot be imported are reported with the reason.

use crate::conversation::TenantRuntime;
use crate::domain::{Channel, PersonKind, normalise_email};
use crate::store::people::{Acting, Imported};
use crate::store::{Store, StoreError};

#[derive(Debug, Default)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// (line number, reason)
    pub refused: Vec<(u64, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    #[error("{0}: the header must name the columns email,name,kind,roles (found: {1})")]
    Header(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn import_csv(
    store: &Store,
    tenant: &TenantRuntime,
    path: &std::path::Path,
) -> Result<ImportReport, ImportError> {
    let name = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .map_err(|e| ImportError::Read(name.clone(), e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Read(name.clone(), e.to_string()))?
        .clone();
    let col = |n: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(n));
    let (Some(ci_email), ci_name, ci_kind, ci_roles) =
        (col("email"), col("name"), col("kind"), col("roles"))
    else {
        return Err(ImportError::Header(
            name,
            headers.iter().collect::<Vec<_>>().join(","),
        ));
    };
    let by = Acting {
        label: "operator (import)".into(),
        person_id: None,
        channel: Channel::Console,
    };
    let mut report = ImportReport::default();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.refused.push((line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let field = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let raw_email = field(Some(ci_email)).unwrap_or("");
        let Some(email) = normalise_email(raw_email) else {
            report
                .refused
                .push((line, format!("`{raw_email}` is not an email address")));
            continue;
        };
        let kind = match field(ci_kind) {
            None => tenant.kind_of(&email),
            Some(k) => match PersonKind::parse(&k.to_ascii_lowercase()) {
                Some(k) => k,
                None => {
                    report
                        .refused
                        .push((line, format!("kind `{k}` is neither internal nor customer")));
                    continue;
                }
            },
        };
        let roles: Vec<String> = field(ci_roles)
            .map(|r| {
                r.split(';')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = roles.iter().find(|r| !tenant.roles.exists(r)) {
            report
                .refused
                .push((line, format!("{} has no role `{bad}`", tenant.name)));
            continue;
        }
        match store
            .import_person(&tenant.config.id, &email, field(ci_name), kind, &roles, &by)
            .await?
        {
            Imported::Created => report.created += 1,
            Imported::Updated => report.updated += 1,
            Imported::Unchanged => report.unchanged += 1,
        }
    }
    Ok(report)
}

/// What the directory knows of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub kind: PersonKind,
    /// A person with this email exists (with a history that must not be joined unverified).
    pub is_person: bool,
}

/// Who the tenant knows, by email. The local directory is the database and the tenant's
/// `internal_domains`; a Jira directory can stand in without touching the sign-in flows.
#[async_trait::async_trait]
pub trait Directory: Send + Sync {
    async fn lookup(
        &self,
        tenant: &TenantRuntime,
        email: &str,
    ) -> Result<Option<Listing>, StoreError>;
}

pub struct LocalDirectory {
    pub store: Store,
}

#[async_trait::async_trait]
impl Directory for LocalDirectory {
    async fn lookup(
        &self,
        tenant: &TenantRuntime,
        email: &str,
    ) -> Result<Option<Listing>, StoreError> {
        if let Some(p) = self.store.find_person(&tenant.config.id, email).await? {
            return Ok(Some(Listing {
                kind: p.kind,
                is_person: true,
            }));
        }
        Ok(
            (tenant.kind_of(email) == PersonKind::Internal).then_some(Listing {
                kind: PersonKind::Internal,
                is_person: false,
            }),
        )
    }
}
