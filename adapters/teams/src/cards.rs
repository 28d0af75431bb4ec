//! Koji's replies as Teams activities: the text (markdown) and, where the reply has more,
//! an Adaptive Card 1.5 — a report summary as a table, buttons as `Action.Submit` (their value
//! comes back as the next message), a sign-in offer as `Action.OpenUrl`.

use koji_channel::{Attachment, Reply, Table};
use serde_json::{Value, json};

/// Teams refuses messages over about 28 KB; documents are cut well below that.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Rows a table card shows.
pub const MAX_CARD_ROWS: usize = 15;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn text_block(text: &str, bold: bool) -> Value {
    let mut b = json!({"type": "TextBlock", "text": text, "wrap": true});
    if bold {
        b["weight"] = json!("Bolder");
        b["size"] = json!("Medium");
    }
    b
}

fn table_elements(t: &Table) -> Vec<Value> {
    let mut body = vec![text_block(&t.title, true)];
    for line in &t.summary {
        body.push(text_block(line, false));
    }
    if !t.columns.is_empty() && !t.rows.is_empty() {
        let cell = |s: &str| json!({"type": "TableCell", "items": [{"type": "TextBlock", "text": cut(s, 200), "wrap": true}]});
        let mut rows = vec![json!({
            "type": "TableRow",
            "cells": t.columns.iter().map(|c| cell(c)).collect::<Vec<_>>()
        })];
        let shown = t.rows.len().min(MAX_CARD_ROWS);
        for r in &t.rows[..shown] {
            rows.push(json!({
                "type": "TableRow",
                "cells": r.iter().map(|c| cell(c)).collect::<Vec<_>>()
            }));
        }
        body.push(json!({
            "type": "Table",
            "firstRowAsHeader": true,
            "columns": t.columns.iter().map(|_| json!({"width": 1})).collect::<Vec<_>>(),
            "rows": rows,
        }));
        let more = t.more + (t.rows.len() - shown) as u64;
        if more > 0 {
            body.push(text_block(&format!("… and {more} more"), false));
        }
    }
    body
}

/// The Adaptive Card for a reply, if it needs one.
pub fn card(r: &Reply) -> Option<Value> {
    let mut body = Vec::new();
    let mut actions = Vec::new();
    for a in &r.attachments {
        match a {
            Attachment::Table(t) => body.extend(table_elements(t)),
            Attachment::Buttons { buttons } => {
                for b in buttons {
                    actions.push(json!({
                        "type": "Action.Submit",
                        "title": cut(&b.label, 80),
                        "data": {"koji": b.value},
                    }));
                }
            }
            Attachment::SignIn { url, label } => actions.push(json!({
                "type": "Action.OpenUrl",
                "title": cut(label, 80),
                "url": url,
            })),
            Attachment::Document { .. } => {}
        }
    }
    if body.is_empty() && actions.is_empty() {
        return None;
    }
    if body.is_empty() {
        body.push(text_block(&cut(&r.text, MAX_TEXT_CHARS), false));
    }
    Some(json!({
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.5",
            "body": body,
            "actions": actions,
        }
    }))
}

/// The message activity for a reply (without from/recipient/conversation, which the
/// caller fills in).
pub fn activity(r: &Reply) -> Value {
    let text = match r.attachments.iter().find_map(|a| match a {
        Attachment::Document {
            filename, content, ..
        } => Some((filename, content)),
        _ => None,
    }) {
        Some((name, content)) => format!(
            "{name}:\n```\n{}\n```",
            cut(content.trim_end(), MAX_TEXT_CHARS)
        ),
        None => cut(&r.text, MAX_TEXT_CHARS),
    };
    let mut a = json!({"type": "message", "text": text, "textFormat": "markdown"});
    if let Some(c) = card(r) {
        // The card carries the content; the text stays as the notification preview.
        a["attachments"] = json!([c]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use koji_channel::Button;

    #[test]
    fn a_report_becomes_a_table_card_within_limits() {
        let t = Table {
            title: "Users".into(),
            summary: vec!["12 people".into()],
            columns: vec!["person".into(), "messages".into()],
            rows: (0..40).map(|i| vec![format!("p{i}"), "3".into()]).collect(),
            more: 2,
        };
        let mut r = Reply::text("Users: 12 people");
        r.attachments.push(Attachment::Table(t));
        let a = activity(&r);
        let content = &a["attachments"][0]["content"];
        assert_eq!(content["version"], "1.5");
        let table = content["body"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "Table")
            .unwrap();
        assert_eq!(table["rows"].as_array().unwrap().len(), MAX_CARD_ROWS + 1);
        let last = content["body"].as_array().unwrap().last().unwrap();
        assert_eq!(last["text"], "… and 27 more");
    }

    #[test]
    fn buttons_submit_their_value_and_sign_in_opens_a_url() {
        let mut r = Reply::text("Did this help?");
        r.attachments.push(Attachment::Buttons {
            buttons: vec![Button {
                label: "Yes".into(),
                value: "yes".into(),
            }],
        });
        r.attachments.push(Attachment::SignIn {
            url: "http://k/auth/start?state=x".into(),
            label: "Sign in".into(),
        });
        let a = activity(&r);
        let actions = &a["attachments"][0]["content"]["actions"];
        assert_eq!(actions[0]["type"], "Action.Submit");
        assert_eq!(actions[0]["data"]["koji"], "yes");
        assert_eq!(actions[1]["type"], "Action.OpenUrl");
        assert_eq!(actions[1]["url"], "http://k/auth/start?state=x");
        assert_eq!(
            a["attachments"][0]["content"]["body"][0]["text"],
            "Did this help?"
        );
        assert!(activity(&Reply::text("plain")).get("attachments").is_none());
    }
}
