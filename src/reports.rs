//! The four user reports (SPEC §5): one engine for the command line and every chat channel.
//! [`Report`] holds the data; it renders as the JSON of SPEC §5, CSV, a readable text table,
//! or a channel-neutral [`Table`] summary (totals and the top rows) for chat.

use crate::commands::Format;
use crate::domain::{PersonRef, Rfc3339, rfc3339};
use crate::store::reports::{ActivityRow, SessionRow, UserDetail};
use koji_channel::Table;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};

pub const DEFAULT_SINCE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
pub const DEFAULT_HISTORY: usize = 20;

#[derive(Debug, Clone)]
pub enum ReportBody {
    Sessions(Vec<SessionRow>),
    Users(Vec<ActivityRow>),
    User(Box<UserDetail>),
    Visitors(Vec<ActivityRow>),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub tenant: String,
    pub generated_at: i64,
    pub since: Option<i64>,
    pub total: u64,
    pub body: ReportBody,
    /// Rows the whole report has when `body` holds only the first of them (a chat summary);
    /// `None` when `body` is whole.
    pub rows_in_full: Option<u64>,
}

fn person_json(p: &PersonRef) -> Value {
    json!({"id": p.id, "name": p.name, "email": p.email, "kind": p.kind})
}

/// The JSON of SPEC §5 of a report with rows, serialized straight from the report; `to_json`
/// and `render` both go through it, so the two cannot differ.
struct JsonView<'a>(&'a Report);

impl Serialize for JsonView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        if let ReportBody::User(u) = &r.body {
            return r.user_json(u).serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("report", r.name())?;
        m.serialize_entry("tenant", &r.tenant)?;
        m.serialize_entry("generated_at", &rfc3339(r.generated_at))?;
        m.serialize_entry("since", &r.since.map(rfc3339))?;
        m.serialize_entry("total", &r.total)?;
        match &r.body {
            ReportBody::Sessions(rows) => m.serialize_entry("rows", &SessionRows(rows))?,
            ReportBody::Users(rows) => m.serialize_entry("rows", &UserRows(rows))?,
            ReportBody::Visitors(rows) => m.serialize_entry("rows", &VisitorRows(rows))?,
            ReportBody::User(_) => {}
        }
        m.end()
    }
}

struct SessionRows<'a>(&'a [SessionRow]);
struct UserRows<'a>(&'a [ActivityRow]);
struct VisitorRows<'a>(&'a [ActivityRow]);

#[derive(Serialize)]
struct SessionJson<'a> {
    person: Option<&'a PersonRef>,
    session_id: i64,
    channel: &'a str,
    auth_method: &'a str,
    login_id: &'a str,
    ip: Option<&'a str>,
    started_at: Rfc3339,
    last_interaction_at: Rfc3339,
}

#[derive(Serialize)]
struct UserJson<'a> {
    person: &'a PersonRef,
    messages: i64,
    messages_in: i64,
    messages_out: i64,
    actions: i64,
    sessions: i64,
    channels: &'a [String],
    first_seen: Rfc3339,
    last_seen: Rfc3339,
}

#[derive(Serialize)]
struct VisitorJson<'a> {
    person: &'a PersonRef,
    sessions: i64,
    messages_in: i64,
    channels: &'a [String],
    first_seen: Rfc3339,
    last_seen: Rfc3339,
}

impl Serialize for SessionRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| SessionJson {
            person: r.person.as_ref(),
            session_id: r.session_id,
            channel: &r.channel,
            auth_method: &r.auth_method,
            login_id: &r.login_id,
            ip: r.ip.as_deref(),
            started_at: Rfc3339(r.started_at),
            last_interaction_at: Rfc3339(r.last_interaction_at),
        }))
    }
}

impl Serialize for UserRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| UserJson {
            person: &r.person,
            messages: r.activity.messages(),
            messages_in: r.activity.messages_in,
            messages_out: r.activity.messages_out,
            actions: r.activity.actions,
            sessions: r.activity.sessions,
            channels: &r.channels,
            first_seen: Rfc3339(r.first_seen),
            last_seen: Rfc3339(r.last_seen),
        }))
    }
}

impl Serialize for VisitorRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| VisitorJson {
            person: &r.person,
            sessions: r.activity.sessions,
            messages_in: r.activity.messages_in,
            channels: &r.channels,
            first_seen: Rfc3339(r.first_seen),
            last_seen: Rfc3339(r.last_seen),
        }))
    }
}

fn person_label(p: Option<&PersonRef>) -> String {
    match p {
        None => "(anonymous)".into(),
        Some(p) => p
            .email
            .clone()
            .or_else(|| p.name.clone())
            .unwrap_or_else(|| format!("#{}", p.id)),
    }
}

impl Report {
    pub fn name(&self) -> &'static str {
        match self.body {
            ReportBody::Sessions(_) => "sessions",
            ReportBody::Users(_) => "users",
            ReportBody::User(_) => "user",
            ReportBody::Visitors(_) => "visitors",
        }
    }

    /// How many rows `body` holds.
    fn row_count(&self) -> usize {
        match &self.body {
            ReportBody::Sessions(r) => r.len(),
            ReportBody::Users(r) | ReportBody::Visitors(r) => r.len(),
            ReportBody::User(_) => 1,
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            // Rows are written straight from the report: no `Value` tree in between.
            Format::Json => {
                // About 300 bytes a row: written once, not regrown a dozen times.
                let mut out = Vec::with_capacity(256 + 320 * self.row_count());
                let mut ser = serde_json::Serializer::pretty(&mut out);
                if JsonView(self).serialize(&mut ser).is_err() {
                    return String::new();
                }
                String::from_utf8(out).unwrap_or_default()
            }
            Format::Csv => self.to_csv(),
            Format::Text => self.to_text(None),
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.body {
            ReportBody::User(u) => self.user_json(u),
            _ => serde_json::to_value(JsonView(self)).unwrap_or_default(),
        }
    }

    /// The envelope of SPEC §5 (every report starts with it).
    fn envelope(&self) -> Value {
        json!({
            "report": self.name(),
            "tenant": self.tenant,
            "generated_at": rfc3339(self.generated_at),
            "since": self.since.map(rfc3339),
            "total": self.total,
        })
    }

    fn user_json(&self, u: &UserDetail) -> Value {
        let mut v = self.envelope();
        let obj = v.as_object_mut().expect("object");
        let user = json!({
            "person": person_json(&u.person),
            "roles": u.roles,
            "created_at": rfc3339(u.created_at),
            "identities": u.identities.iter().map(|i| json!({
                "channel": i.channel,
                "external_id": i.external_id,
                "auth_method": i.auth_method,
                "authenticated_at": i.authenticated_at.map(rfc3339),
            })).collect::<Vec<_>>(),
            "account": u.account,
            "interests": u.interests,
            "history": u.history.iter().map(|h| json!({
                "at": rfc3339(h.at),
                "direction": h.direction,
                "channel": h.channel,
                "text": h.text,
                "intent": h.intent,
                "actions": h.actions,
            })).collect::<Vec<_>>(),
        });
        // The one object stands where `rows` would; its fields are also at the top
        // level so `report.history` and `report.user.history` both read naturally.
        if let Value::Object(fields) = &user {
            for (k, v) in fields {
                obj.insert(k.clone(), v.clone());
            }
        }
        obj.insert("user".into(), user);
        v
    }

    /// Column names and cell values, for CSV and tables.
    fn grid(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let t = |m: i64| rfc3339(m);
        match &self.body {
            ReportBody::Sessions(rows) => (
                vec![
                    "person",
                    "session_id",
                    "channel",
                    "auth_method",
                    "login_id",
                    "ip",
                    "started_at",
                    "last_interaction_at",
                ],
                rows.iter()
                    .map(|s| {
                        vec![
                            person_label(s.person.as_ref()),
                            s.session_id.to_string(),
                            s.channel.clone(),
                            s.auth_method.clone(),
                            s.login_id.clone(),
                            s.ip.clone().unwrap_or_default(),
                            t(s.started_at),
                            t(s.last_interaction_at),
                        ]
                    })
                    .collect(),
            ),
            ReportBody::Users(rows) => (
                vec![
                    "person",
                    "messages",
                    "messages_in",
                    "messages_out",
                    "actions",
                    "sessions",
                    "channels",
                    "first_seen",
                    "last_seen",
                ],
                rows.iter()
                    .map(|r| {
                        vec![
                            person_label(Some(&r.person)),
                            r.activity.messages().to_string(),
                            r.activity.messages_in.to_string(),
                            r.activity.messages_out.to_string(),
                            r.activity.actions.to_string(),
                            r.activity.sessions.to_string(),
                            r.channels.join(";"),
                            t(r.first_seen),
                            t(r.last_seen),
                        ]
                    })
                    .collect(),
            ),
            ReportBody::Visitors(rows) => (
                vec![
                    "person",
                    "sessions",
                    "messages_in",
                    "channels",
                    "first_seen",
                    "last_seen",
                ],
                rows.iter()
                    .map(|r| {
                        vec![
                            person_label(Some(&r.person)),
                            r.activity.sessions.to_string(),
                            r.activity.messages_in.to_string(),
                            r.channels.join(";"),
                            t(r.first_seen),
                            t(r.last_seen),
                        ]
                    })
                    .collect(),
            ),
            ReportBody::User(u) => (
                vec!["at", "direction", "channel", "text", "intent", "actions"],
                u.history
                    .iter()
                    .map(|h| {
                        vec![
                            t(h.at),
                            h.direction.clone(),
                            h.channel.clone(),
                            h.text.clone(),
                            h.intent.clone().unwrap_or_default(),
                            h.actions.join(";"),
                        ]
                    })
                    .collect(),
            ),
        }
    }

    pub fn to_csv(&self) -> String {
        let (mut cols, mut rows) = self.grid();
        let person_cols = ["person_id", "person_name", "person_email", "person_kind"];
        let people: Vec<Option<&PersonRef>> = match &self.body {
            ReportBody::Sessions(r) => r.iter().map(|s| s.person.as_ref()).collect(),
            ReportBody::Users(r) | ReportBody::Visitors(r) => {
                r.iter().map(|a| Some(&a.person)).collect()
            }
            ReportBody::User(u) => u.history.iter().map(|_| Some(&u.person)).collect(),
        };
        if cols[0] == "person" {
            cols.remove(0);
            for r in &mut rows {
                r.remove(0);
            }
        }
        let mut out = String::new();
        let header: Vec<&str> = person_cols.iter().copied().chain(cols).collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for (row, person) in rows.iter().zip(people) {
            let mut cells: Vec<String> = match person {
                Some(p) => vec![
                    p.id.to_string(),
                    p.name.clone().unwrap_or_default(),
                    p.email.clone().unwrap_or_default(),
                    p.kind.as_str().to_string(),
                ],
                None => vec![String::new(); 4],
            };
            cells.extend(row.iter().cloned());
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }

    fn title(&self) -> String {
        let period = match self.since {
            Some(s) => format!(" since {}", rfc3339(s)),
            None => String::new(),
        };
        match &self.body {
            ReportBody::Sessions(_) => format!("Active sessions — {}", self.tenant),
            ReportBody::Users(_) => format!("Users — {}{period}", self.tenant),
            ReportBody::Visitors(_) => {
                format!("Visitors (no help given) — {}{period}", self.tenant)
            }
            ReportBody::User(u) => format!("User {}", person_label(Some(&u.person))),
        }
    }

    fn summary(&self) -> Vec<String> {
        match &self.body {
            ReportBody::Sessions(_) => vec![format!("{} active session(s)", self.total)],
            ReportBody::Users(rows) => {
                let messages: i64 = rows.iter().map(|r| r.activity.messages()).sum();
                vec![format!(
                    "{} person(s) interacted; {} message(s) from the {} shown",
                    self.total,
                    messages,
                    rows.len()
                )]
            }
            ReportBody::Visitors(_) => vec![format!("{} visitor(s)", self.total)],
            ReportBody::User(u) => {
                let mut s = vec![
                    format!(
                        "{} · {} · id {}",
                        u.person.name.as_deref().unwrap_or("(no name)"),
                        u.person.kind.as_str(),
                        u.person.id
                    ),
                    format!(
                        "roles: {}",
                        if u.roles.is_empty() {
                            "(none)".into()
                        } else {
                            u.roles.join(", ")
                        }
                    ),
                    format!("since: {}", rfc3339(u.created_at)),
                ];
                if !u.identities.is_empty() {
                    s.push(format!(
                        "identities: {}",
                        u.identities
                            .iter()
                            .map(|i| format!("{}:{} ({})", i.channel, i.external_id, i.auth_method))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if let Some(l) = &u.account.locale {
                    s.push(format!("locale: {l}"));
                }
                if let Some(tz) = &u.account.time_zone {
                    s.push(format!("time zone: {tz}"));
                }
                if !u.interests.is_empty() {
                    s.push(format!(
                        "interests: {}",
                        u.interests
                            .iter()
                            .take(10)
                            .map(|i| format!("{} ({}, {})", i.value, i.kind, i.count))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                s
            }
        }
    }

    /// A channel-neutral summary: totals and the first `limit` rows.
    pub fn to_table(&self, limit: usize) -> Table {
        let (cols, rows) = self.grid();
        let shown: Vec<Vec<String>> = rows.iter().take(limit).cloned().collect();
        let full = self.rows_in_full.unwrap_or(0).max(rows.len() as u64);
        let more = full.saturating_sub(shown.len() as u64);
        let cols = cols.iter().map(|c| c.replace('_', " ")).collect();
        Table {
            title: self.title(),
            summary: self.summary(),
            columns: cols,
            rows: shown,
            more,
        }
    }

    /// A readable text table; all rows unless `limit`.
    pub fn to_text(&self, limit: Option<usize>) -> String {
        table_text(&self.to_table(limit.unwrap_or(usize::MAX)))
    }
}

/// Plain-text rendering of a [`Table`], for the console, the portal and logs.
pub fn table_text(t: &Table) -> String {
    let mut out = format!("{}\n", t.title);
    for s in &t.summary {
        out.push_str(s);
        out.push('\n');
    }
    if t.rows.is_empty() {
        out.push_str("(no rows)\n");
        return out;
    }
    let clip = |s: &str| -> String {
        let s = s.replace('\n', " ");
        if s.chars().count() > 60 {
            format!("{}…", s.chars().take(59).collect::<String>())
        } else {
            s
        }
    };
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(|c| clip(c)).collect())
        .collect();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |row: &[String]| -> String {
        let mut l = String::new();
        for (i, c) in row.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            l.push_str(c);
            if i + 1 < row.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        l.trim_end().to_string()
    };
    let header: Vec<String> = t.columns.iter().map(|c| c.to_uppercase()).collect();
    out.push_str(&line(&header));
    out.push('\n');
    for r in &cells {
        out.push_str(&line(r));
        out.push('\n');
    }
    if t.more > 0 {
        out.push_str(&format!("… and {} more\n", t.more));
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `/koji audit`: role changes and erasures, newest first, in the asked format.
pub fn audit_text(
    tenant: &str,
    now: i64,
    since: i64,
    rows: &[crate::store::people::AuditRow],
    format: Format,
) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                rfc3339(r.at),
                r.actor.clone(),
                r.action.clone(),
                r.target.clone(),
                r.role.clone().unwrap_or_default(),
                r.channel.clone(),
            ]
        })
        .collect();
    let columns = ["at", "actor", "action", "target", "role", "channel"];
    match format {
        Format::Json => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({"at": rfc3339(r.at), "actor": r.actor, "action": r.action,
                           "target": r.target, "role": r.role, "channel": r.channel})
                })
                .collect();
            serde_json::to_string_pretty(&json!({
                "report": "audit",
                "tenant": tenant,
                "generated_at": rfc3339(now),
                "since": rfc3339(since),
                "total": rows.len(),
                "rows": rows,
            }))
            .unwrap_or_default()
        }
        Format::Csv => {
            let mut out = columns.join(",");
            out.push('\n');
            for r in &cells {
                out.push_str(&r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            out
        }
        Format::Text => table_text(&Table {
            title: format!("Audit log — {tenant} since {}", rfc3339(since)),
            summary: vec![format!(
                "{} entr{}",
                rows.len(),
                if rows.len() == 1 { "y" } else { "ies" }
            )],
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: cells,
            more: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn text_tables_align_and_count_what_is_not_shown() {
        let t = Table {
            title: "T".into(),
            summary: vec!["2 rows".into()],
            columns: vec!["a".into(), "bb".into()],
            rows: vec![
                vec!["x".into(), "1".into()],
                vec!["longer".into(), "2".into()],
            ],
            more: 3,
        };
        let s = table_text(&t);
        assert_eq!(
            s,
            "T\n2 rows\nA       BB\nx       1\nlonger  2\n… and 3 more\n"
        );
    }
}
