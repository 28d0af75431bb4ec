//! Block Kit rendering of the core's [`Reply`]: text as mrkdwn sections, report tables as a
//! header, summary and a preformatted block of the top rows, documents as a code block,
//! sign-in offers and buttons as actions. Slack's limits hold for every message produced:
//! a section's text ≤ 3000 characters, ≤ 50 blocks, button texts ≤ 75, values ≤ 2000.

use koji_channel::{Attachment, Reply, Table};
use serde_json::{Value, json};

pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_BUTTON_TEXT_CHARS: usize = 75;
pub const MAX_BUTTON_VALUE_CHARS: usize = 2000;
/// The message's plain `text` (notifications, fallback).
pub const MAX_FALLBACK_CHARS: usize = 3000;
/// Widest a table cell is shown before it is cut.
const MAX_CELL_CHARS: usize = 40;

/// Escapes the three characters mrkdwn gives meaning to.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Splits text into pieces of at most `max` characters, at line breaks where it can.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for line in text.split('\n') {
        let mut line_chars: Vec<char> = line.chars().collect();
        // A line longer than a piece is cut into pieces of its own.
        while line_chars.len() > max {
            if len > 0 {
                pieces.push(std::mem::take(&mut current));
                len = 0;
            }
            let rest = line_chars.split_off(max);
            pieces.push(line_chars.into_iter().collect());
            line_chars = rest;
        }
        let n = line_chars.len();
        let needed = if len == 0 { n } else { len + 1 + n };
        if needed > max {
            pieces.push(std::mem::take(&mut current));
            len = 0;
        }
        if len > 0 {
            current.push('\n');
            len += 1;
        }
        current.extend(line_chars);
        len += n;
    }
    if len > 0 || pieces.is_empty() {
        pieces.push(current);
    }
    pieces.retain(|p| !p.trim().is_empty());
    pieces
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn sections(text: &str) -> Vec<Value> {
    split_text(&escape(text), MAX_SECTION_CHARS)
        .into_iter()
        .map(section)
        .collect()
}

/// Preformatted pieces: each wrapped in ``` and within the section limit.
fn code_sections(lines: &[String]) -> Vec<Value> {
    let inner = MAX_SECTION_CHARS - 8;
    split_text(&escape(&lines.join("\n")), inner)
        .into_iter()
        .map(|p| section(format!("```\n{p}\n```")))
        .collect()
}

fn table_blocks(t: &Table) -> Vec<Value> {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&t.title, MAX_HEADER_CHARS), "emoji": false}
    })];
    if !t.summary.is_empty() {
        blocks.extend(sections(&t.summary.join("\n")));
    }
    if !t.rows.is_empty() {
        let cells = |row: &[String]| -> Vec<String> {
            row.iter().map(|c| cut(c, MAX_CELL_CHARS)).collect()
        };
        let header = cells(&t.columns);
        let rows: Vec<Vec<String>> = t.rows.iter().map(|r| cells(r)).collect();
        let ncols = rows
            .iter()
            .map(Vec::len)
            .chain([header.len()])
            .max()
            .unwrap_or(0);
        let width = |i: usize| {
            rows.iter()
                .chain([&header])
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..ncols).map(width).collect();
        let line = |r: &Vec<String>| {
            (0..ncols)
                .map(|i| {
                    let c = r.get(i).map(String::as_str).unwrap_or("");
                    format!("{c:<w$}", w = widths[i])
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut lines = Vec::with_capacity(rows.len() + 1);
        if !header.is_empty() {
            lines.push(line(&header));
        }
        lines.extend(rows.iter().map(line));
        blocks.extend(code_sections(&lines));
    }
    if t.more > 0 {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("… and {} more (use `--format csv` or the command line for everything)", t.more)}]
        }));
    }
    blocks
}

fn document_blocks(filename: &str, content: &str) -> Vec<Value> {
    let title = format!("*{}*\n", escape(&cut(filename, 200)));
    let body = escape(content.trim_end());
    let room = MAX_SECTION_CHARS - title.chars().count() - 8;
    let total = body.chars().count();
    let mut blocks = Vec::new();
    if total <= room {
        blocks.push(section(format!("{title}```\n{body}\n```")));
    } else {
        let shown: String = body.chars().take(room).collect();
        blocks.push(section(format!("{title}```\n{shown}\n```")));
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!(
                "Truncated: {} more characters. Run the same command with `koji` on the command line for the whole document.",
                total - room
            )}]
        }));
    }
    blocks
}

fn button(label: &str) -> Value {
    json!({"type": "plain_text", "text": cut(label, MAX_BUTTON_TEXT_CHARS), "emoji": false})
}

/// The blocks for one reply, within Slack's limits.
pub fn render(reply: &Reply) -> Vec<Value> {
    let mut blocks = Vec::new();
    let rich = reply
        .attachments
        .iter()
        .any(|a| matches!(a, Attachment::Table(_) | Attachment::Document { .. }));
    // `text` is a complete plain rendering; a table or document says the same natively.
    if !rich {
        blocks.extend(sections(&reply.text));
    }
    for a in &reply.attachments {
        match a {
            Attachment::Table(t) => blocks.extend(table_blocks(t)),
            Attachment::Document {
                filename, content, ..
            } => blocks.extend(document_blocks(filename, content)),
            Attachment::SignIn { url, label } => blocks.push(json!({
                "type": "actions",
                "elements": [{
                    "type": "button",
                    "action_id": "koji_sign_in",
                    "text": button(label),
                    "url": url,
                    "style": "primary"
                }]
            })),
            Attachment::Buttons { buttons } => {
                for (n, chunk) in buttons.chunks(25).enumerate() {
                    let elements: Vec<Value> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            json!({
                                "type": "button",
                                "action_id": format!("koji_button_{}", n * 25 + i),
                                "text": button(&b.label),
                                "value": cut(&b.value, MAX_BUTTON_VALUE_CHARS),
                            })
                        })
                        .collect();
                    blocks.push(json!({"type": "actions", "elements": elements}));
                }
            }
        }
    }
    if blocks.len() > MAX_BLOCKS {
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "Truncated: the rest does not fit in one Slack message."}]
        }));
    }
    blocks
}

/// The plain `text` that goes with the blocks (notifications, clients without Block Kit).
pub fn fallback_text(reply: &Reply) -> String {
    cut(&reply.text, MAX_FALLBACK_CHARS)
}

/// A `chat.postMessage` / `response_url` body (without `channel`).
pub fn message(reply: &Reply) -> Value {
    json!({"text": fallback_text(reply), "blocks": render(reply)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use koji_channel::Button;

    /// Every block respects Slack's limits; returns the blocks for further checks.
    fn check(reply: &Reply) -> Vec<Value> {
        let blocks = render(reply);
        assert!(!blocks.is_empty(), "a reply renders to something");
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        for b in &blocks {
            if b["type"] == "section" {
                let n = b["text"]["text"].as_str().unwrap().chars().count();
                assert!(n <= MAX_SECTION_CHARS, "section of {n} chars");
            }
            if b["type"] == "header" {
                let n = b["text"]["text"].as_str().unwrap().chars().count();
                assert!(n <= MAX_HEADER_CHARS);
            }
            if let Some(els) = b["elements"].as_array() {
                assert!(els.len() <= 25);
                for e in els.iter().filter(|e| e["type"] == "button") {
                    assert!(e["text"]["text"].as_str().unwrap().chars().count() <= 75);
                    if let Some(v) = e["value"].as_str() {
                        assert!(v.chars().count() <= MAX_BUTTON_VALUE_CHARS);
                    }
                }
            }
        }
        assert!(message(reply)["text"].as_str().unwrap().chars().count() <= MAX_FALLBACK_CHARS);
        blocks
    }

    fn all_text(blocks: &[Value]) -> String {
        serde_json::to_string(blocks).unwrap()
    }

    #[test]
    fn short_text_is_one_escaped_section() {
        let b = check(&Reply::text("a < b & c"));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["text"]["text"], "a &lt; b &amp; c");
    }

    #[test]
    fn long_text_is_split_into_sections_of_at_most_3000_characters() {
        let text = "é".repeat(7000) + "\n" + &"line\n".repeat(900);
        let b = check(&Reply::text(text));
        assert!(b.len() >= 4);
        let joined: usize = b
            .iter()
            .map(|x| x["text"]["text"].as_str().unwrap().chars().count())
            .sum();
        assert!(joined >= 7000 + 900 * 4);
    }

    #[test]
    fn a_huge_reply_is_cut_to_50_blocks_with_a_note() {
        let b = check(&Reply::text("x".repeat(3000 * 80)));
        assert_eq!(b.len(), MAX_BLOCKS);
        assert!(all_text(&b[49..]).contains("Truncated"));
    }

    fn table(rows: usize, cell: usize) -> Table {
        Table {
            title: "Users ".repeat(40),
            summary: vec!["42 people".into(), "since 30d".into()],
            columns: vec!["person".into(), "messages".into()],
            rows: (0..rows)
                .map(|i| vec![format!("p{i}@acme.test{}", "x".repeat(cell)), i.to_string()])
                .collect(),
            more: 32,
        }
    }

    #[test]
    fn a_table_has_header_summary_rows_and_the_rest_counted() {
        let mut r = Reply::text("plain rendering");
        r.attachments.push(Attachment::Table(table(10, 0)));
        let b = check(&r);
        assert_eq!(b[0]["type"], "header");
        let s = all_text(&b);
        assert!(s.contains("42 people") && s.contains("p9@acme.test") && s.contains("32 more"));
        assert!(
            !s.contains("plain rendering"),
            "the table replaces the plain text"
        );
    }

    #[test]
    fn a_big_table_stays_within_the_limits() {
        let mut r = Reply::text("t");
        r.attachments.push(Attachment::Table(table(5000, 100)));
        check(&r);
    }

    #[test]
    fn a_long_document_is_truncated_with_a_note() {
        let mut r = Reply::text("doc");
        r.attachments.push(Attachment::Document {
            filename: "koji-users.json".into(),
            media_type: "application/json".into(),
            content: "{\"a\": 1}\n".repeat(1000),
        });
        let b = check(&r);
        assert!(all_text(&b).contains("Truncated"));
        let mut small = Reply::text("doc");
        small.attachments.push(Attachment::Document {
            filename: "f.csv".into(),
            media_type: "text/csv".into(),
            content: "a,b\n1,2".into(),
        });
        let b = check(&small);
        assert_eq!(b.len(), 1);
        assert!(
            b[0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("```\na,b\n1,2\n```")
        );
    }

    #[test]
    fn sign_in_is_a_url_button_and_buttons_carry_their_values() {
        let mut r = Reply::text("Please sign in");
        r.attachments.push(Attachment::SignIn {
            url: "http://k/auth/start?state=s".into(),
            label: "Sign in".into(),
        });
        r.attachments.push(Attachment::Buttons {
            buttons: (0..30)
                .map(|i| Button {
                    label: "L".repeat(100),
                    value: format!("v{i}"),
                })
                .collect(),
        });
        let b = check(&r);
        assert_eq!(b[1]["elements"][0]["url"], "http://k/auth/start?state=s");
        assert_eq!(b[2]["elements"][3]["value"], "v3");
        assert_eq!(b[3]["elements"][0]["value"], "v25");
    }
}
