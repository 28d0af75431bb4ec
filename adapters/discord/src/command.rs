//! The `/koji` application command: its definition (one subcommand per command word of
//! SPEC §5, options named after the flags and arguments) and the translation of an
//! invocation back into the core's command text (`/koji users --since 7d --top 5`).

use serde_json::{Value, json};

/// Application command option types (Discord).
pub const SUB_COMMAND: u64 = 1;
pub const STRING: u64 = 3;
pub const INTEGER: u64 = 4;
pub const BOOLEAN: u64 = 5;
pub const USER: u64 = 6;

/// Options that are positional arguments in the grammar (in this order); every other
/// option is a flag `--name value`.
const POSITIONAL: [&str; 2] = ["who", "role"];

fn choices(values: &[&str]) -> Vec<Value> {
    values
        .iter()
        .map(|c| json!({"name": c, "value": c}))
        .collect()
}

fn channel_option() -> Value {
    json!({
        "type": STRING, "name": "channel", "description": "Only this channel",
        "choices": choices(&["slack", "teams", "discord", "portal", "console"]),
    })
}

fn format_option() -> Value {
    json!({
        "type": STRING, "name": "format", "description": "text (summary), csv or json",
        "choices": choices(&["text", "csv", "json"]),
    })
}

fn since_option() -> Value {
    json!({"type": STRING, "name": "since", "description": "How far back: 30m, 24h, 7d (default 30d)", "max_length": 16})
}

fn who_option(required: bool) -> Value {
    json!({
        "type": STRING, "name": "who", "required": required,
        "description": "An email, a person id, discord:…, or an @mention",
        "max_length": 200,
    })
}

fn sub(name: &str, description: &str, options: Vec<Value>) -> Value {
    json!({"type": SUB_COMMAND, "name": name, "description": description, "options": options})
}

/// The `/koji` command as `PUT /applications/{id}/commands` takes it (a list of one).
pub fn definition() -> Value {
    let role = json!({"type": STRING, "name": "role", "required": true, "description": "A role: admin, analyst, operator, customer, or one the tenant defines", "max_length": 64});
    let top = json!({"type": INTEGER, "name": "top", "description": "How many rows", "min_value": 1, "max_value": 1000});
    let history = json!({"type": INTEGER, "name": "history", "description": "How many recent messages", "min_value": 0, "max_value": 1000});
    json!([{
        "name": "koji",
        "type": 1,
        "description": "Koji help-desk admin commands and reports",
        "options": [
            sub("help", "The commands", vec![]),
            sub("sessions", "Active sessions now", vec![channel_option(), format_option()]),
            sub("users", "Who interacted: messages, actions, sessions",
                vec![since_option(), channel_option(), top, format_option()]),
            sub("user", "One person's data", vec![who_option(true), history, format_option()]),
            sub("visitors", "People who logged in but got no help",
                vec![since_option(), channel_option(), format_option()]),
            sub("roles", "The role setup, or one person's roles", vec![who_option(false), format_option()]),
            sub("grant", "Give a person a role", vec![who_option(true), role.clone()]),
            sub("revoke", "Take a role from a person", vec![who_option(true), role]),
            sub("export", "Everything kept about a person (JSON)", vec![who_option(true)]),
            sub("forget", "Erase a person (asks to confirm)", vec![who_option(true)]),
            sub("audit", "Role changes and erasures", vec![since_option(), format_option()]),
            sub("takeover", "Answer a person yourself (operators)", vec![who_option(true)]),
            sub("release", "Hand the conversation back to Koji", vec![]),
        ],
    }])
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("this application only has the /koji command")]
    NotKoji,
    #[error("choose a subcommand of /koji")]
    NoSubcommand,
    #[error("option `{0}` has a value Koji cannot read")]
    BadOption(String),
}

/// `<@123>` / `<@!123>` → `discord:123`; anything else unchanged.
fn mention_to_identity(s: &str) -> String {
    let id = s
        .strip_prefix("<@")
        .and_then(|r| r.strip_suffix('>'))
        .map(|r| r.trim_start_matches('!'));
    match id {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) => {
            format!("discord:{id}")
        }
        _ => s.to_string(),
    }
}

/// A value as one word of the grammar (quoted when it holds spaces or quotes).
fn word(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        return s.to_string();
    }
    let q = if s.contains('"') { '\'' } else { '"' };
    let inner: String = s.chars().filter(|&c| c != q).collect();
    format!("{q}{inner}{q}")
}

fn option_value(o: &Value) -> Result<String, CommandError> {
    let name = o["name"].as_str().unwrap_or("").to_string();
    let v = &o["value"];
    let text = match o["type"].as_u64() {
        Some(USER) => format!(
            "discord:{}",
            v.as_str()
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
                .ok_or(CommandError::BadOption(name))?
        ),
        _ => match v {
            Value::String(s) => mention_to_identity(s.trim()),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(CommandError::BadOption(name)),
        },
    };
    Ok(word(&text))
}

/// The core's text for an invocation's `data` (`{"name":"koji","options":[{"type":1,…}]}`).
pub fn command_text(data: &Value) -> Result<String, CommandError> {
    if data["name"] != "koji" {
        return Err(CommandError::NotKoji);
    }
    let sub = data["options"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["type"] == SUB_COMMAND))
        .ok_or(CommandError::NoSubcommand)?;
    let name = sub["name"].as_str().filter(|s| !s.is_empty());
    let Some(name) = name else {
        return Err(CommandError::NoSubcommand);
    };
    let mut words = vec!["/koji".to_string(), word(name)];
    let empty = Vec::new();
    let opts = sub["options"].as_array().unwrap_or(&empty);
    for p in POSITIONAL {
        if let Some(o) = opts.iter().find(|o| o["name"] == p) {
            words.push(option_value(o)?);
        }
    }
    for o in opts {
        let Some(n) = o["name"].as_str() else {
            continue;
        };
        if POSITIONAL.contains(&n) {
            continue;
        }
        let flag: String = n
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        words.push(format!("--{flag}"));
        words.push(option_value(o)?);
    }
    Ok(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(sub: &str, options: Value) -> Value {
        json!({"id": "1", "name": "koji", "type": 1,
               "options": [{"type": 1, "name": sub, "options": options}]})
    }

    #[test]
    fn options_become_the_command_text() {
        assert_eq!(
            command_text(&data("help", json!([]))).unwrap(),
            "/koji help"
        );
        assert_eq!(
            command_text(&data(
                "users",
                json!([{"name": "since", "type": 3, "value": "7d"},
                       {"name": "top", "type": 4, "value": 5},
                       {"name": "format", "type": 3, "value": "json"}])
            ))
            .unwrap(),
            "/koji users --since 7d --top 5 --format json"
        );
        assert_eq!(
            command_text(&data(
                "user",
                json!([{"name": "history", "type": 4, "value": 3},
                       {"name": "who", "type": 6, "value": "80351110224678912"}])
            ))
            .unwrap(),
            "/koji user discord:80351110224678912 --history 3"
        );
        assert_eq!(
            command_text(&data(
                "grant",
                json!([{"name": "role", "type": 3, "value": "analyst"},
                       {"name": "who", "type": 3, "value": "<@!42>"}])
            ))
            .unwrap(),
            "/koji grant discord:42 analyst"
        );
        assert_eq!(
            command_text(&data(
                "roles",
                json!([{"name": "who", "type": 3, "value": "bob@acme.test"}])
            ))
            .unwrap(),
            "/koji roles bob@acme.test"
        );
    }

    #[test]
    fn odd_values_are_quoted_or_refused() {
        assert_eq!(
            command_text(&data(
                "user",
                json!([{"name": "who", "type": 3, "value": "a b --top 9"}])
            ))
            .unwrap(),
            "/koji user \"a b --top 9\""
        );
        assert_eq!(
            command_text(&data(
                "user",
                json!([{"name": "who", "type": 6, "value": "x y"}])
            )),
            Err(CommandError::BadOption("who".into()))
        );
        assert_eq!(
            command_text(&json!({"name": "other", "options": []})),
            Err(CommandError::NotKoji)
        );
        assert_eq!(
            command_text(&json!({"name": "koji", "options": []})),
            Err(CommandError::NoSubcommand)
        );
    }

    #[test]
    fn the_definition_has_a_subcommand_per_command_word() {
        let d = definition();
        let subs: Vec<&str> = d[0]["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        for w in [
            "help", "sessions", "users", "user", "visitors", "roles", "grant", "revoke", "export",
            "forget", "audit", "takeover", "release",
        ] {
            assert!(subs.contains(&w), "{w}");
        }
        let users = &d[0]["options"][2];
        let names: Vec<&str> = users["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["since", "channel", "top", "format"]);
        assert_eq!(users["options"][2]["type"], INTEGER);
    }
}
