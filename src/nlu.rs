//! Intents and entities: what a message is about, from configurable patterns.
//!
//! Intents: the tenant's configured ones first, then the built-in small talk (`greeting`,
//! `thanks`, `goodbye`, `smalltalk`), `command` for `/koji …`, and `question` for anything
//! else. Only small talk does not count as asking for something (the visitors report).
//! Entities: built-in extractors (email, url, ip, Jira issue key, error code), the tenant's
//! `terms`, and configured regexes. They feed each person's interests.

use crate::config::{EntityConfig, IntentConfig};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Understanding {
    pub intent: String,
    /// False for small talk: the message asks for nothing.
    pub specific: bool,
    pub entities: Vec<Entity>,
    /// A configured intent's canned reply, if it has one.
    pub reply: Option<String>,
}

struct ConfiguredIntent {
    name: String,
    small_talk: bool,
    reply: Option<String>,
}

/// Built-in small talk, matched against the whole message after normalising it (lowercase,
/// punctuation and emoji dropped). A greeting followed by a question is a question.
const SMALL_TALK: [(&str, &str); 4] = [
    (
        "greeting",
        r"^(hi|hello|hey|hiya|howdy|yo|greetings|good (morning|afternoon|evening|day)|morning|hallo|bonjour|hola)( (there|koji|all|everyone|team|folks))?$",
    ),
    (
        "thanks",
        r"^((many |great |ok |okay )?(thanks|thank you|thx|ty|cheers|much appreciated|appreciate it)( (so much|a lot|very much|again|koji))*|that helped|that worked|perfect thanks)$",
    ),
    (
        "goodbye",
        r"^(bye|goodbye|bye bye|see you|see ya|cya|later|good night|have a (good|nice) (day|one)|talk later|ttyl)( (koji|now|then|all))?$",
    ),
    (
        "smalltalk",
        r"^(how are you( doing| today)?|how is it going|hows it going|whats up|sup|who are you|what are you|are you a (bot|robot|human)|ok|okay|k|cool|nice|great|lol|haha|yes|no|yep|nope|sure|fine|good|awesome|hmm+|test|testing)$",
    ),
];

/// Built-in help-desk intents, matched against the raw message (case-insensitive), in order.
/// `request_status` needs a request key (`REQ-12`, `IT-42`) and a word asking about it (or
/// the key alone).
const HELP_DESK: [(&str, &str); 3] = [
    (
        "handoff",
        r"(?i)\b(talk|speak|chat)\s+(to|with)\s+(a\s+|an\s+|some\s+|the\s+)?(human|person|agent|operator|someone|somebody|real person|live agent|service desk)\b|\b(human|live|real)\s+(agent|person|support|operator)\b|^\s*(agent|human|operator|representative)\s*[.!?]*\s*$",
    ),
    (
        "request_status",
        r"(?i)^\s*[A-Z][A-Z0-9]{1,9}-[1-9]\d{0,8}\s*[?.!]*\s*$|(?i)\b(status|state|progress|update|news|check|where|what about|how about|how is|how's)\b.*\b[A-Z][A-Z0-9]{1,9}-[1-9]\d{0,8}\b|\b[A-Z][A-Z0-9]{1,9}-[1-9]\d{0,8}\b.*\b(status|progress|update)\b",
    ),
    (
        "request",
        r"(?i)^\s*(please\s+)?((can|could|would) you\s+|i want to\s+|i'?d like to\s+)?(create|open|raise|file|log|submit|make)\s+(me\s+)?(a|an|the)?\s*(new\s+)?(service\s+)?(request|ticket|case|incident)\b|\b(i|we)\s+(need|want|would like|'d like)\s+(a|an|new|another)\s|\b(can|could|may)\s+(i|we)\s+(get|have|order)\s+(a|an|new|another)\s|^\s*request\s+(a|an|new)\s",
    ),
];

pub struct Nlu {
    configured: Option<(RegexSet, Vec<ConfiguredIntent>)>,
    small_talk: RegexSet,
    help_desk: RegexSet,
    email: Regex,
    url: Regex,
    ip: Regex,
    issue_key: Regex,
    error_code: Regex,
    extra: Vec<(String, Regex)>,
}

/// The per-tenant term list, compiled once.
pub struct Terms {
    regex: Option<Regex>,
    canonical: HashMap<String, String>,
}

impl Terms {
    pub fn new(terms: &[String]) -> Terms {
        let terms: Vec<&String> = terms.iter().filter(|t| !t.trim().is_empty()).collect();
        if terms.is_empty() {
            return Terms {
                regex: None,
                canonical: HashMap::new(),
            };
        }
        let mut sorted = terms.clone();
        sorted.sort_by_key(|t| std::cmp::Reverse(t.len()));
        let alternation = sorted
            .iter()
            .map(|t| regex::escape(t.trim()))
            .collect::<Vec<_>>()
            .join("|");
        let regex = Regex::new(&format!(r"(?i)(?:^|\b|\s)({alternation})(?:$|\b)"))
            .expect("escaped terms compile");
        let canonical = terms
            .iter()
            .map(|t| (t.trim().to_lowercase(), t.trim().to_string()))
            .collect();
        Terms {
            regex: Some(regex),
            canonical,
        }
    }
}

impl Nlu {
    pub fn new(intents: &[IntentConfig], entities: &[EntityConfig]) -> Nlu {
        let configured = if intents.is_empty() {
            None
        } else {
            let mut patterns = Vec::new();
            let mut meta = Vec::new();
            for i in intents {
                for p in &i.patterns {
                    patterns.push(p.clone());
                    meta.push(ConfiguredIntent {
                        name: i.name.clone(),
                        small_talk: i.small_talk,
                        reply: i.reply.clone(),
                    });
                }
            }
            Some((
                RegexSet::new(&patterns).expect("validated with the config"),
                meta,
            ))
        };
        Nlu {
            configured,
            small_talk: RegexSet::new(SMALL_TALK.map(|(_, p)| p)).expect("built-in patterns"),
            help_desk: RegexSet::new(HELP_DESK.map(|(_, p)| p)).expect("built-in patterns"),
            email: Regex::new(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
                .unwrap(),
            url: Regex::new(r#"\bhttps?://[^\s<>"'|]+[^\s<>"'|.,;:!?)]"#).unwrap(),
            ip: Regex::new(
                r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
            )
            .unwrap(),
            issue_key: Regex::new(r"\b[A-Z][A-Z0-9]{1,9}-[1-9]\d{0,8}\b").unwrap(),
            error_code: Regex::new(r"(?i)\b0x[0-9a-f]{4,8}\b|\berror(?: code)?[ :#]+(\d{3,6})\b")
                .unwrap(),
            extra: entities
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        Regex::new(&e.pattern).expect("validated with the config"),
                    )
                })
                .collect(),
        }
    }

    pub fn understand(&self, text: &str, terms: &Terms) -> Understanding {
        let (intent, specific, reply) = self.intent(text);
        Understanding {
            intent,
            specific,
            entities: self.entities(text, terms),
            reply,
        }
    }

    fn intent(&self, text: &str) -> (String, bool, Option<String>) {
        let trimmed = text.trim();
        if is_command(trimmed) {
            return ("command".into(), true, None);
        }
        if let Some((set, meta)) = &self.configured
            && let Some(i) = set.matches(trimmed).iter().next()
        {
            let m = &meta[i];
            return (m.name.clone(), !m.small_talk, m.reply.clone());
        }
        let normal = normalise(trimmed);
        if let Some(i) = self.small_talk.matches(&normal).iter().next() {
            return (SMALL_TALK[i].0.to_string(), false, None);
        }
        if normal.is_empty() {
            return ("smalltalk".into(), false, None);
        }
        if let Some(i) = self.help_desk.matches(trimmed).iter().next() {
            return (HELP_DESK[i].0.to_string(), true, None);
        }
        ("question".into(), true, None)
    }

    fn entities(&self, text: &str, terms: &Terms) -> Vec<Entity> {
        let mut out: Vec<Entity> = Vec::new();
        let mut push = |kind: &str, value: String| {
            if !out.iter().any(|e| e.kind == kind && e.value == value) {
                out.push(Entity {
                    kind: kind.to_string(),
                    value,
                });
            }
        };
        if text.contains('@') {
            for m in self.email.find_iter(text) {
                push("email", m.as_str().to_lowercase());
            }
        }
        if text.contains("://") {
            for m in self.url.find_iter(text) {
                push("url", m.as_str().to_string());
            }
        }
        if text.contains('.') {
            for m in self.ip.find_iter(text) {
                push("ip", m.as_str().to_string());
            }
        }
        if text.contains('-') {
            for m in self.issue_key.find_iter(text) {
                push("issue_key", m.as_str().to_string());
            }
        }
        for c in self.error_code.captures_iter(text) {
            let value = match c.get(1) {
                Some(code) => code.as_str().to_string(),
                None => {
                    let hex = &c[0][2..];
                    format!("0x{}", hex.to_uppercase())
                }
            };
            push("error_code", value);
        }
        if let Some(re) = &terms.regex {
            for c in re.captures_iter(text) {
                let found = c[1].to_lowercase();
                if let Some(canon) = terms.canonical.get(&found) {
                    push("term", canon.clone());
                }
            }
        }
        for (name, re) in &self.extra {
            for c in re.captures_iter(text) {
                let v = c
                    .get(1)
                    .or_else(|| c.get(0))
                    .map(|m| m.as_str().to_string());
                if let Some(v) = v {
                    push(name, v);
                }
            }
        }
        out
    }
}

/// `/koji …`, `koji …` at the start, or a leading mention of Koji.
pub fn is_command(text: &str) -> bool {
    command_text(text).is_some()
}

/// The command words after `/koji` (or `@koji`), if the text is a command.
pub fn command_text(text: &str) -> Option<&str> {
    let t = text.trim_start();
    for prefix in ["/koji", "@koji"] {
        if t.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            let rest = &t[prefix.len()..];
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                return Some(rest.trim());
            }
        }
    }
    None
}

/// Lowercase words separated by single spaces; punctuation, emoji and apostrophes dropped.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else if c == '\'' || c == '’' {
            continue;
        } else {
            space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlu() -> Nlu {
        Nlu::new(
            &[IntentConfig {
                name: "billing".into(),
                patterns: vec![r"(?i)\b(invoice|refund)\b".into()],
                small_talk: false,
                reply: None,
            }],
            &[EntityConfig {
                name: "asset_tag".into(),
                pattern: r"\bAT-(\d{5})\b".into(),
            }],
        )
    }

    #[test]
    fn intents() {
        let n = nlu();
        let t = Terms::new(&[]);
        let check = |text: &str, intent: &str, specific: bool| {
            let u = n.understand(text, &t);
            assert_eq!(
                (u.intent.as_str(), u.specific),
                (intent, specific),
                "{text:?}"
            );
        };
        check("hello", "greeting", false);
        check("Hi there!", "greeting", false);
        check("Good morning, Koji 👋", "greeting", false);
        check("hey", "greeting", false);
        check("thanks", "thanks", false);
        check("Thank you so much!", "thanks", false);
        check("thx", "thanks", false);
        check("bye", "goodbye", false);
        check("See you!", "goodbye", false);
        check("how are you?", "smalltalk", false);
        check("What's up", "smalltalk", false);
        check("ok", "smalltalk", false);
        check("   ", "smalltalk", false);
        check("hello, how do I reset my password?", "question", true);
        check(
            "How do I connect to the VPN? error 0x800F081F",
            "question",
            true,
        );
        check("thanks but it still fails", "question", true);
        check("/koji users --top 5", "command", true);
        check("/KOJI help", "command", true);
        check("/kojiusers", "question", true);
        check("I want a refund", "billing", true);
        check("I need a new laptop", "request", true);
        check("create a request: my monitor flickers", "request", true);
        check("Could you open a ticket for me?", "request", true);
        check("can I get a new headset", "request", true);
        check("status of REQ-12", "request_status", true);
        check("what's the status of req-3?", "request_status", true);
        check("IT-42", "request_status", true);
        check("any update on IT-42", "request_status", true);
        check("I want to talk to a human", "handoff", true);
        check("agent", "handoff", true);
        check("can I speak with someone please", "handoff", true);
        check("my request was rejected", "question", true);
    }

    #[test]
    fn entities() {
        let n = nlu();
        let t = Terms::new(&["VPN".into(), "Outlook".into(), "Wi-Fi".into()]);
        let check = |text: &str, expected: &[(&str, &str)]| {
            let got: Vec<(String, String)> = n
                .understand(text, &t)
                .entities
                .into_iter()
                .map(|e| (e.kind, e.value))
                .collect();
            let want: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{text:?}");
        };
        check(
            "How do I connect to the VPN? error 0x800F081F",
            &[("error_code", "0x800F081F"), ("term", "VPN")],
        );
        check(
            "mail Bob.Smith@Example.org please",
            &[("email", "bob.smith@example.org")],
        );
        check(
            "see https://acme.test/kb/12?x=1.",
            &[("url", "https://acme.test/kb/12?x=1")],
        );
        check("ping 10.0.0.254 fails", &[("ip", "10.0.0.254")]);
        check("ping 999.1.1.1", &[]);
        check(
            "status of REQ-12 and ITSM-4",
            &[("issue_key", "REQ-12"), ("issue_key", "ITSM-4")],
        );
        check("installer error 1603", &[("error_code", "1603")]);
        check(
            "outlook and vpn and wi-fi",
            &[("term", "Outlook"), ("term", "VPN"), ("term", "Wi-Fi")],
        );
        check(
            "my asset AT-12345 broke",
            &[("issue_key", "AT-12345"), ("asset_tag", "12345")],
        );
        check("nothing here", &[]);
        check("VPN VPN vpn", &[("term", "VPN")]);
    }

    #[test]
    fn command_words() {
        assert_eq!(command_text("/koji users --top 3"), Some("users --top 3"));
        assert_eq!(command_text("@Koji help"), Some("help"));
        assert_eq!(command_text("/koji"), Some(""));
        assert_eq!(command_text("koji"), None);
        assert_eq!(command_text("hello /koji"), None);
        assert_eq!(command_text("/kojé users"), None);
        assert_eq!(command_text("@koj€"), None);
        assert_eq!(command_text("é"), None);
    }
}
