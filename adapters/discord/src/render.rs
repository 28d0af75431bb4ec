//! Rendering the core's [`Reply`]s as one Discord message (`data` of an interaction
//! response or of a webhook edit): text as `content`, report tables as embeds, documents
//! as code blocks, buttons and sign-in links as components. Every Discord limit holds for
//! whatever the core hands in: content ≤ 2000, ≤ 10 embeds, title ≤ 256, description ≤
//! 4096, ≤ 25 fields (name ≤ 256, value ≤ 1024), footer ≤ 2048, all embeds ≤ 6000
//! characters; ≤ 5 action rows of ≤ 5 buttons, label ≤ 80, `custom_id` ≤ 100.

use koji_channel::{Attachment, Reply, Table};
use serde_json::{Value, json};

pub const MAX_CONTENT: usize = 2000;
pub const MAX_EMBEDS: usize = 10;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_FOOTER: usize = 2048;
pub const MAX_EMBED_TOTAL: usize = 6000;
pub const MAX_ROWS: usize = 5;
pub const MAX_BUTTONS_PER_ROW: usize = 5;
pub const MAX_LABEL: usize = 80;
pub const MAX_CUSTOM_ID: usize = 100;
/// Ephemeral: only the invoking user sees the message.
pub const EPHEMERAL: u64 = 64;
/// Widest a table cell is shown before it is cut.
const MAX_CELL: usize = 32;
/// Koji's embed colour.
const COLOUR: u64 = 0x4f7cac;

fn len(s: &str) -> usize {
    s.chars().count()
}

/// At most `max` characters, the last one `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if len(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Code-block content may not close the block early.
fn fence_safe(s: &str) -> String {
    s.replace("```", "`\u{200b}``")
}

/// Lines joined while they fit in `max` characters; the number of lines left out.
fn fit_lines(lines: &[String], max: usize) -> (String, usize) {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let extra = if out.is_empty() { len(l) } else { len(l) + 1 };
        if len(&out) + extra > max {
            return (out, lines.len() - i);
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(l);
    }
    (out, 0)
}

/// The rows of a table as aligned monospace lines (header first).
fn table_lines(t: &Table) -> Vec<String> {
    let cells = |row: &[String]| -> Vec<String> { row.iter().map(|c| cut(c, MAX_CELL)).collect() };
    let header = cells(&t.columns);
    let rows: Vec<Vec<String>> = t.rows.iter().map(|r| cells(r)).collect();
    let ncols = rows
        .iter()
        .map(Vec::len)
        .chain([header.len()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .filter_map(|r| r.get(i))
                .map(|c| len(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            let c = r.get(i).map(String::as_str).unwrap_or("");
            s.push_str(c);
            if i + 1 < ncols {
                s.push_str(&" ".repeat(w - len(c) + 2));
            }
        }
        fence_safe(s.trim_end())
    };
    std::iter::once(line(&header))
        .chain(rows.iter().map(|r| line(r)))
        .collect()
}

/// A report summary as one embed: title, summary lines and the top rows as a code block in
/// the description, a footer saying how many rows are not shown. `budget` caps the embed's
/// characters (what is left of the message's 6000).
pub fn table_embed(t: &Table, budget: usize) -> Value {
    let title = cut(&t.title, MAX_TITLE.min(budget));
    let mut left = budget.saturating_sub(len(&title));
    let footer_room = 120.min(left);
    left -= footer_room;
    let desc_max = MAX_DESCRIPTION.min(left);
    let summary = cut(&t.summary.join("\n"), desc_max);
    let mut description = summary.clone();
    let mut hidden = t.more as usize;
    if !t.rows.is_empty() {
        let sep = if description.is_empty() { 0 } else { 1 };
        let room = desc_max.saturating_sub(len(&description) + sep + 8);
        let lines = table_lines(t);
        let (block, left_out) = fit_lines(&lines, room);
        hidden += left_out.min(t.rows.len());
        if !block.is_empty() {
            if sep == 1 {
                description.push('\n');
            }
            description.push_str(&format!("```\n{block}\n```"));
        }
    }
    let mut e = json!({"title": title, "color": COLOUR});
    if !description.is_empty() {
        e["description"] = json!(description);
    }
    if hidden > 0 && footer_room > 0 {
        let note = format!("{hidden} more rows not shown; add format:csv or format:json for all");
        e["footer"] = json!({"text": cut(&note, footer_room.min(MAX_FOOTER))});
    }
    e
}

/// A csv/json document as an embed holding a code block, cut at a line with a note.
pub fn document_embed(filename: &str, content: &str, budget: usize) -> Value {
    let lang = filename.rsplit('.').next().unwrap_or("");
    let title = cut(filename, MAX_TITLE.min(budget));
    let mut left = budget.saturating_sub(len(&title));
    let footer_room = 160.min(left);
    left -= footer_room;
    let room = MAX_DESCRIPTION.min(left).saturating_sub(len(lang) + 8);
    let lines: Vec<String> = content.trim_end().lines().map(fence_safe).collect();
    let (mut block, left_out) = fit_lines(&lines, room);
    if block.is_empty() && !lines.is_empty() {
        block = cut(&lines[0], room);
    }
    let mut e = json!({
        "title": title,
        "color": COLOUR,
        "description": format!("```{lang}\n{block}\n```"),
    });
    if left_out > 0 && footer_room > 0 {
        let note = format!(
            "Truncated: {left_out} more lines. The whole file: `koji report … --format {lang}` on the command line."
        );
        e["footer"] = json!({"text": cut(&note, footer_room)});
    }
    e
}

/// A document longer than this is also sent whole, as a file in a follow-up message.
pub const MAX_INLINE_DOCUMENT: usize = 3000;

/// A file to send after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub filename: String,
    pub media_type: String,
    pub content: String,
}

/// The documents too long to show whole in an embed: they follow as files.
pub fn files(replies: &[Reply]) -> Vec<File> {
    replies
        .iter()
        .flat_map(|r| &r.attachments)
        .filter_map(|a| match a {
            Attachment::Document {
                filename,
                media_type,
                content,
            } if len(content) > MAX_INLINE_DOCUMENT => Some(File {
                filename: filename.clone(),
                media_type: media_type.clone(),
                content: content.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Characters Discord counts towards the 6000 of a message's embeds.
pub fn embed_chars(e: &Value) -> usize {
    let s = |v: &Value| v.as_str().map(len).unwrap_or(0);
    let mut n =
        s(&e["title"]) + s(&e["description"]) + s(&e["footer"]["text"]) + s(&e["author"]["name"]);
    if let Some(fields) = e["fields"].as_array() {
        n += fields
            .iter()
            .map(|f| s(&f["name"]) + s(&f["value"]))
            .sum::<usize>();
    }
    n
}

fn buttons_rows(replies: &[Reply]) -> Vec<Value> {
    let mut buttons = Vec::new();
    for r in replies {
        for a in &r.attachments {
            match a {
                Attachment::Buttons { buttons: bs } => {
                    for b in bs {
                        if b.value.is_empty() || len(&b.value) > MAX_CUSTOM_ID {
                            // The text of the reply still names the choice; it can be typed.
                            tracing::warn!(
                                len = len(&b.value),
                                "button value too long for a custom_id; not shown"
                            );
                            continue;
                        }
                        buttons.push(json!({
                            "type": 2, "style": if buttons.is_empty() { 1 } else { 2 },
                            "label": cut(&b.label, MAX_LABEL), "custom_id": b.value,
                        }));
                    }
                }
                Attachment::SignIn { url, label }
                    if url.starts_with("https://") || url.starts_with("http://") =>
                {
                    buttons.push(json!({
                        "type": 2, "style": 5, "label": cut(label, MAX_LABEL), "url": url,
                    }));
                }
                _ => {}
            }
        }
    }
    // custom_ids must be unique within a message.
    let mut seen = std::collections::HashSet::new();
    buttons.retain(|b| {
        b["custom_id"]
            .as_str()
            .is_none_or(|id| seen.insert(id.to_string()))
    });
    buttons
        .chunks(MAX_BUTTONS_PER_ROW)
        .take(MAX_ROWS)
        .map(|c| json!({"type": 1, "components": c}))
        .collect()
}

/// The message for these replies. `ephemeral` sets flag 64.
pub fn message(replies: &[Reply], ephemeral: bool) -> Value {
    let mut texts = Vec::new();
    let mut embeds: Vec<Value> = Vec::new();
    let mut used = 0;
    for r in replies {
        let mut rendered = false;
        for a in &r.attachments {
            if embeds.len() >= MAX_EMBEDS {
                break;
            }
            let budget = MAX_EMBED_TOTAL - used;
            // Too little room left for a useful embed: the rest is left out.
            if budget < 200 {
                break;
            }
            let e = match a {
                Attachment::Table(t) => table_embed(t, budget),
                Attachment::Document {
                    filename, content, ..
                } => document_embed(filename, content, budget),
                _ => continue,
            };
            used += embed_chars(&e);
            embeds.push(e);
            rendered = true;
        }
        // A table's or document's text is its plain rendering: the embed replaces it.
        if !rendered && !r.text.trim().is_empty() {
            texts.push(r.text.trim().to_string());
        }
    }
    let mut data = json!({
        "content": cut(&texts.join("\n\n"), MAX_CONTENT),
        "embeds": embeds,
        "components": buttons_rows(replies),
        "allowed_mentions": {"parse": []},
    });
    if ephemeral {
        data["flags"] = json!(EPHEMERAL);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use koji_channel::Button;

    fn big_table(rows: usize, cell: usize) -> Table {
        Table {
            title: "T".repeat(400),
            summary: (0..50)
                .map(|i| format!("summary line {i} {}", "s".repeat(cell)))
                .collect(),
            columns: vec!["person".into(), "messages".into(), "channels".into()],
            rows: (0..rows)
                .map(|i| {
                    vec![
                        format!("p{i}@{}", "x".repeat(cell)),
                        i.to_string(),
                        "discord```".into(),
                    ]
                })
                .collect(),
            more: 7,
        }
    }

    fn assert_limits(m: &Value) {
        assert!(len(m["content"].as_str().unwrap()) <= MAX_CONTENT);
        let embeds = m["embeds"].as_array().unwrap();
        assert!(embeds.len() <= MAX_EMBEDS);
        let mut total = 0;
        for e in embeds {
            assert!(len(e["title"].as_str().unwrap_or("")) <= MAX_TITLE);
            assert!(len(e["description"].as_str().unwrap_or("")) <= MAX_DESCRIPTION);
            assert!(len(e["footer"]["text"].as_str().unwrap_or("")) <= MAX_FOOTER);
            let fields = e["fields"].as_array().map(Vec::len).unwrap_or(0);
            assert!(fields <= MAX_FIELDS);
            total += embed_chars(e);
        }
        assert!(total <= MAX_EMBED_TOTAL, "{total}");
        let rows = m["components"].as_array().unwrap();
        assert!(rows.len() <= MAX_ROWS);
        for r in rows {
            let bs = r["components"].as_array().unwrap();
            assert!(bs.len() <= MAX_BUTTONS_PER_ROW);
            for b in bs {
                assert!(len(b["label"].as_str().unwrap()) <= MAX_LABEL);
                assert!(
                    b["custom_id"]
                        .as_str()
                        .is_none_or(|c| len(c) <= MAX_CUSTOM_ID)
                );
            }
        }
    }

    #[test]
    fn huge_replies_stay_within_every_limit() {
        let mut replies = Vec::new();
        for _ in 0..14 {
            let mut r = Reply::text("x".repeat(3000));
            r.attachments.push(Attachment::Table(big_table(500, 80)));
            r.attachments.push(Attachment::Document {
                filename: "users.csv".into(),
                media_type: "text/csv".into(),
                content: "a,b\n".repeat(5000),
            });
            r.attachments.push(Attachment::Buttons {
                buttons: (0..40)
                    .map(|i| Button {
                        label: "L".repeat(200),
                        value: format!("v{i}"),
                    })
                    .collect(),
            });
            replies.push(r);
        }
        replies.push(Reply::text("y".repeat(5000)));
        let m = message(&replies, true);
        assert_limits(&m);
        assert_eq!(m["flags"], 64);
        assert_eq!(
            m["embeds"].as_array().unwrap().len(),
            2,
            "the 6000 budget is used up"
        );
    }

    #[test]
    fn a_small_table_is_one_embed_with_its_rows() {
        let t = Table {
            title: "Users (last 30d)".into(),
            summary: vec!["2 people, 9 messages".into()],
            columns: vec!["person".into(), "messages".into()],
            rows: vec![
                vec!["alice@acme.test".into(), "6".into()],
                vec!["bob".into(), "3".into()],
            ],
            more: 0,
        };
        let mut r = Reply::text("plain rendering");
        r.attachments.push(Attachment::Table(t));
        let m = message(&[r], true);
        assert_limits(&m);
        assert_eq!(m["content"], "", "the embed replaces the plain text");
        let e = &m["embeds"][0];
        assert_eq!(e["title"], "Users (last 30d)");
        let d = e["description"].as_str().unwrap();
        assert!(d.starts_with("2 people, 9 messages\n```\nperson"), "{d}");
        assert!(d.contains("alice@acme.test  6"), "{d}");
        assert!(e.get("footer").is_none());
    }

    #[test]
    fn a_cut_table_or_document_says_so() {
        let e = table_embed(&big_table(500, 10), MAX_EMBED_TOTAL);
        assert!(e["footer"]["text"].as_str().unwrap().contains("more rows"));
        assert!(
            !e["description"].as_str().unwrap().contains("discord```"),
            "fences escaped"
        );
        let d = document_embed("users.json", &"{\"a\": 1}\n".repeat(2000), MAX_EMBED_TOTAL);
        assert!(d["description"].as_str().unwrap().starts_with("```json\n"));
        assert!(
            d["footer"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Truncated")
        );
    }

    #[test]
    fn sign_in_is_a_link_button_and_buttons_carry_their_value() {
        let mut r = Reply::text("Sign in or choose");
        r.attachments.push(Attachment::SignIn {
            url: "https://koji.test/auth/start?state=x".into(),
            label: "Sign in".into(),
        });
        r.attachments.push(Attachment::Buttons {
            buttons: vec![
                Button {
                    label: "Yes".into(),
                    value: "yes".into(),
                },
                Button {
                    label: "Too long".into(),
                    value: "v".repeat(101),
                },
            ],
        });
        let m = message(&[r], false);
        assert_limits(&m);
        assert!(m.get("flags").is_none());
        let row = &m["components"][0]["components"];
        assert_eq!(row[0]["style"], 5);
        assert_eq!(row[0]["url"], "https://koji.test/auth/start?state=x");
        assert_eq!(row[1]["custom_id"], "yes");
        assert_eq!(
            row.as_array().unwrap().len(),
            2,
            "a value over 100 characters is left out"
        );
        assert_eq!(m["content"], "Sign in or choose");
    }
}
