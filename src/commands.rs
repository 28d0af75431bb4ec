//! The admin command grammar (SPEC §5), parsed once into [`Command`] for every channel and
//! the command line. Bad input is a [`UsageError`] the user sees as a reply, never a trace.

use crate::config::HumanDuration;
use crate::domain::Channel;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("`{s}` is not a format (use text, csv or json)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Sessions {
        channel: Option<Channel>,
        format: Format,
    },
    Users {
        since: Option<HumanDuration>,
        channel: Option<Channel>,
        top: Option<usize>,
        format: Format,
    },
    User {
        who: String,
        history: Option<usize>,
        format: Format,
    },
    Visitors {
        since: Option<HumanDuration>,
        channel: Option<Channel>,
        format: Format,
    },
    Roles {
        who: Option<String>,
        format: Format,
    },
    Grant {
        who: String,
        role: String,
    },
    Revoke {
        who: String,
        role: String,
    },
    Export {
        who: String,
    },
    Forget {
        who: String,
    },
    Audit {
        since: Option<HumanDuration>,
        format: Format,
    },
    Takeover {
        who: String,
    },
    Release,
}

impl Command {
    /// The command word, as in `/koji WORD`.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Help => "help",
            Command::Sessions { .. } => "sessions",
            Command::Users { .. } => "users",
            Command::User { .. } => "user",
            Command::Visitors { .. } => "visitors",
            Command::Roles { .. } => "roles",
            Command::Grant { .. } => "grant",
            Command::Revoke { .. } => "revoke",
            Command::Export { .. } => "export",
            Command::Forget { .. } => "forget",
            Command::Audit { .. } => "audit",
            Command::Takeover { .. } => "takeover",
            Command::Release => "release",
        }
    }
}

/// One line per command: usage and what it does. This is the help text.
pub const COMMANDS: [(&str, &str); 13] = [
    ("help", "this list"),
    ("sessions [--channel C]", "active sessions now"),
    (
        "users [--since D] [--channel C] [--top N]",
        "who interacted: messages, actions, sessions",
    ),
    ("user WHO [--history N]", "one person's data"),
    (
        "visitors [--since D] [--channel C]",
        "people who logged in but got no help",
    ),
    ("roles [WHO]", "the role setup, or one person's roles"),
    ("grant WHO ROLE", "give a person a role"),
    ("revoke WHO ROLE", "take a role from a person"),
    ("export WHO", "everything kept about a person (JSON)"),
    ("forget WHO", "erase a person (asks to confirm)"),
    ("audit [--since D]", "role changes and erasures"),
    (
        "takeover WHO",
        "answer a person yourself (operators; without WHO: who waits for a human)",
    ),
    ("release", "hand the conversation back to Koji"),
];

pub fn help_text() -> String {
    let width = COMMANDS.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut s = String::from("Koji commands:\n");
    for (usage, what) in COMMANDS {
        s.push_str(&format!("  /koji {usage:<width$}  {what}\n"));
    }
    s.push_str(
        "D is a duration (30m, 24h, 7d; default 30d), C a channel (slack, teams, discord, portal, console), N a count.\n\
         WHO is an email, a person id, slack:U…, teams:…, discord:…, or a mention. Reports take --format text|csv|json.",
    );
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    /// The usage line of the command it is about, if known.
    pub usage: Option<&'static str>,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        match self.usage {
            Some(u) => write!(f, "\nusage: /koji {u}"),
            None => write!(f, "\nTry /koji help."),
        }
    }
}

impl std::error::Error for UsageError {}

/// Splits on white space; single or double quotes group words.
fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                has = true;
            }
            None if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            None => {
                cur.push(c);
                has = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

struct Args {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
}

/// The flags each command accepts.
fn allowed_flags(word: &str) -> &'static [&'static str] {
    match word {
        "sessions" => &["channel", "format"],
        "users" => &["since", "channel", "top", "format"],
        "user" => &["history", "format"],
        "visitors" => &["since", "channel", "format"],
        "roles" => &["format"],
        "audit" => &["since", "format"],
        _ => &[],
    }
}

fn usage_of(word: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(u, _)| u.split_whitespace().next() == Some(word))
        .map(|(u, _)| *u)
}

/// Parses the words after `/koji` (or after `koji` on the command line).
pub fn parse(input: &str) -> Result<Command, UsageError> {
    let tokens = tokenize(input).map_err(|m| UsageError {
        message: m,
        usage: None,
    })?;
    parse_words(&tokens)
}

/// Parses words already split (the command line's arguments).
pub fn parse_words(tokens: &[String]) -> Result<Command, UsageError> {
    let Some((word, rest)) = tokens.split_first() else {
        return Ok(Command::Help);
    };
    let word = word.to_ascii_lowercase();
    let usage = usage_of(&word);
    let Some(usage) = usage else {
        return Err(UsageError {
            message: format!("unknown command `{word}`"),
            usage: None,
        });
    };
    let bad = |message: String| UsageError {
        message,
        usage: Some(usage),
    };
    let allowed = allowed_flags(&word);
    let mut args = Args {
        positional: Vec::new(),
        flags: Vec::new(),
    };
    let mut it = rest.iter();
    while let Some(t) = it.next() {
        if let Some(flag) = t.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(v.to_string())),
                None => (flag.to_ascii_lowercase(), None),
            };
            if !allowed.contains(&name.as_str()) {
                return Err(bad(format!("`{word}` has no option --{name}")));
            }
            let value = match value {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| bad(format!("--{name} needs a value")))?,
            };
            if args.flags.iter().any(|(n, _)| *n == name) {
                return Err(bad(format!("--{name} given twice")));
            }
            args.flags.push((name, value));
        } else {
            args.positional.push(t.clone());
        }
    }
    let flag = |name: &str| {
        args.flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let since = || -> Result<Option<HumanDuration>, UsageError> {
        flag("since")
            .map(|v| {
                v.parse()
                    .map_err(|e: crate::config::BadDuration| bad(e.to_string()))
            })
            .transpose()
    };
    let channel = || -> Result<Option<Channel>, UsageError> {
        flag("channel")
            .map(|v| v.parse::<Channel>().map_err(|e| bad(e.to_string())))
            .transpose()
    };
    let count = |name: &str| -> Result<Option<usize>, UsageError> {
        flag(name)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1 && *n <= 100_000)
                    .ok_or_else(|| {
                        bad(format!(
                            "--{name} takes a whole number from 1 to 100000, not `{v}`"
                        ))
                    })
            })
            .transpose()
    };
    let format = || -> Result<Format, UsageError> {
        flag("format")
            .map(|v| v.parse::<Format>().map_err(bad))
            .transpose()
            .map(|f| f.unwrap_or_default())
    };
    let positional = |n: usize| -> Result<Vec<String>, UsageError> {
        if args.positional.len() < n {
            let missing = usage
                .split_whitespace()
                .nth(args.positional.len() + 1)
                .unwrap_or("an argument");
            return Err(bad(format!("`{word}` needs {missing}")));
        }
        if args.positional.len() > n {
            return Err(bad(format!("unexpected `{}`", args.positional[n])));
        }
        Ok(args.positional.clone())
    };
    let cmd = match word.as_str() {
        "help" => {
            positional(0)?;
            Command::Help
        }
        "sessions" => {
            positional(0)?;
            Command::Sessions {
                channel: channel()?,
                format: format()?,
            }
        }
        "users" => {
            positional(0)?;
            Command::Users {
                since: since()?,
                channel: channel()?,
                top: count("top")?,
                format: format()?,
            }
        }
        "user" => {
            let p = positional(1)?;
            Command::User {
                who: p[0].clone(),
                history: count("history")?,
                format: format()?,
            }
        }
        "visitors" => {
            positional(0)?;
            Command::Visitors {
                since: since()?,
                channel: channel()?,
                format: format()?,
            }
        }
        "roles" => {
            if args.positional.len() > 1 {
                return Err(bad(format!("unexpected `{}`", args.positional[1])));
            }
            Command::Roles {
                who: args.positional.first().cloned(),
                format: format()?,
            }
        }
        "grant" | "revoke" => {
            let p = positional(2)?;
            let (who, role) = (p[0].clone(), p[1].to_ascii_lowercase());
            if word == "grant" {
                Command::Grant { who, role }
            } else {
                Command::Revoke { who, role }
            }
        }
        "export" => Command::Export {
            who: positional(1)?[0].clone(),
        },
        "forget" => Command::Forget {
            who: positional(1)?[0].clone(),
        },
        "audit" => {
            positional(0)?;
            Command::Audit {
                since: since()?,
                format: format()?,
            }
        }
        "takeover" => Command::Takeover {
            who: positional(1)?[0].clone(),
        },
        "release" => {
            positional(0)?;
            Command::Release
        }
        _ => unreachable!("usage_of knows every word"),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(input: &str, expected: Result<Command, &str>) {
        let got = parse(input);
        match (&got, &expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{input:?}"),
            (Err(g), Err(e)) => assert!(g.to_string().contains(e), "{input:?}: {g}"),
            _ => panic!("{input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    fn days(n: u64) -> Option<HumanDuration> {
        Some(HumanDuration(Duration::from_secs(n * 86_400)))
    }

    #[test]
    fn grammar() {
        check("", Ok(Command::Help));
        check("help", Ok(Command::Help));
        check(
            "sessions --channel slack",
            Ok(Command::Sessions {
                channel: Some(Channel::Slack),
                format: Format::Text,
            }),
        );
        check(
            "users --since 7d --top 5 --format json",
            Ok(Command::Users {
                since: days(7),
                channel: None,
                top: Some(5),
                format: Format::Json,
            }),
        );
        check(
            "users --since=7d --channel=PORTAL",
            Ok(Command::Users {
                since: days(7),
                channel: Some(Channel::Portal),
                top: None,
                format: Format::Text,
            }),
        );
        check(
            "user alice@acme.test --history 3",
            Ok(Command::User {
                who: "alice@acme.test".into(),
                history: Some(3),
                format: Format::Text,
            }),
        );
        check(
            "user <@U0123>",
            Ok(Command::User {
                who: "<@U0123>".into(),
                history: None,
                format: Format::Text,
            }),
        );
        check(
            "visitors --format csv",
            Ok(Command::Visitors {
                since: None,
                channel: None,
                format: Format::Csv,
            }),
        );
        check(
            "grant dave@example.org Operator",
            Ok(Command::Grant {
                who: "dave@example.org".into(),
                role: "operator".into(),
            }),
        );
        check(
            "roles",
            Ok(Command::Roles {
                who: None,
                format: Format::Text,
            }),
        );
        check("release", Ok(Command::Release));
        check(
            "user \"Alice Smith\"",
            Ok(Command::User {
                who: "Alice Smith".into(),
                history: None,
                format: Format::Text,
            }),
        );
    }

    #[test]
    fn bad_input_gets_usage() {
        check("frobnicate", Err("unknown command `frobnicate`"));
        check("users --since soon", Err("`soon` is not a duration"));
        check("users --since", Err("--since needs a value"));
        check("users --top 0", Err("--top takes a whole number"));
        check("users --top many", Err("--top takes a whole number"));
        check("users --channel fax", Err("unknown channel `fax`"));
        check("users --format xml", Err("not a format"));
        check("users --history 3", Err("`users` has no option --history"));
        check("user", Err("`user` needs WHO"));
        check("grant dave@example.org", Err("`grant` needs ROLE"));
        check("sessions extra", Err("unexpected `extra`"));
        check("users --top 3 --top 4", Err("given twice"));
        check("user \"unterminated", Err("unterminated quote"));
        let e = parse("user").unwrap_err();
        assert!(
            e.to_string()
                .contains("usage: /koji user WHO [--history N]"),
            "{e}"
        );
    }

    #[test]
    fn help_lists_every_command() {
        let h = help_text();
        for (usage, _) in COMMANDS {
            assert!(h.contains(usage), "{usage}");
        }
    }
}
