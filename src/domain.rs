//! Domain types shared by the core's parts: people, sessions, time.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub use koji_channel::{AuthMethod, Channel};

pub type PersonId = i64;
pub type IdentityId = i64;
pub type SessionId = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonKind {
    Internal,
    Customer,
}

impl PersonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonKind::Internal => "internal",
            PersonKind::Customer => "customer",
        }
    }
    pub fn parse(s: &str) -> Option<PersonKind> {
        match s {
            "internal" => Some(PersonKind::Internal),
            "customer" => Some(PersonKind::Customer),
            _ => None,
        }
    }
}

/// A person as reports show them: `{"id", "name", "email", "kind"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonRef {
    pub id: PersonId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub kind: PersonKind,
}

/// Time source. Tests drive a [`ManualClock`]; everything else uses the system clock.
pub trait Clock: Send + Sync + 'static {
    /// Unix time in microseconds.
    fn now_micros(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_micros: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start_micros)))
    }
    pub fn advance(&self, d: std::time::Duration) {
        self.0.fetch_add(d.as_micros() as i64, Ordering::SeqCst);
    }
    pub fn set(&self, micros: i64) {
        self.0.store(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in UTC with seconds, as reports print times.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY)
}

/// A lowercase, syntactically plausible email address.
pub fn normalise_email(s: &str) -> Option<String> {
    let s = s.trim().to_lowercase();
    let (local, domain) = s.split_once('@')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._%+-'".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let check =
            |s: &str, want: Option<&str>| assert_eq!(normalise_email(s).as_deref(), want, "{s}");
        check("Alice@Acme.Test", Some("alice@acme.test"));
        check(" bob.smith+x@example.org ", Some("bob.smith+x@example.org"));
        check("nobody", None);
        check("a@b", None);
        check("@acme.test", None);
        check("a@.acme.test", None);
        check("a b@acme.test", None);
        check("a@acme..test", None);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(day_of(MICROS_PER_DAY + 5), 1);
        assert_eq!(day_of(-1), -1);
    }
}
