//! Configuration: one serde struct, layered embedded defaults < TOML file < `KOJI_SECTION__KEY`
//! environment variables. Raw values are validated once into [`Config`]; every error names the
//! key it is about. Nothing else in Koji reads the environment or the file.

use crate::roles::Permission;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded defaults: what `koji serve` runs on with no file.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// A configuration problem, naming the key (or file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "configuration key `{}`: {}", self.key, self.message)
        }
    }
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A duration written as `30m`, `24h`, `7d`, `45s` or `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration (use a number and a unit: 30m, 24h, 7d)")]
pub struct BadDuration(pub String);

impl std::str::FromStr for HumanDuration {
    type Err = BadDuration;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| BadDuration(s.to_string()))?;
        let secs = match unit.trim() {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return Err(BadDuration(s.to_string())),
        };
        let total = n
            .checked_mul(secs)
            .filter(|v| *v <= 100 * 365 * 86_400)
            .ok_or_else(|| BadDuration(s.to_string()))?;
        if total == 0 {
            return Err(BadDuration(s.to_string()));
        }
        Ok(HumanDuration(Duration::from_secs(total)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret: never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub session: SessionConfig,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub portals: Vec<PortalConfig>,
    #[serde(default)]
    pub intents: Vec<IntentConfig>,
    #[serde(default)]
    pub entities: Vec<EntityConfig>,
    pub slack: Option<SlackConfig>,
    pub teams: Option<TeamsConfig>,
    pub discord: Option<DiscordConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    pub email: Option<EmailConfig>,
    pub jira: Option<JiraConfig>,
    #[serde(default)]
    pub helpdesk: HelpdeskConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    pub trust_forwarded_for: bool,
    pub max_body_bytes: usize,
    /// Portal requests a minute from one client address (0: no limit).
    pub rate_limit_per_ip: u32,
    /// Portal messages a minute on one session (0: no limit).
    pub rate_limit_per_session: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    /// SQLite only: `normal` (WAL; survives a killed process) or `full` (also a power cut).
    pub synchronous: String,
    pub max_connections: u32,
    /// Most exchanges committed in one group commit.
    pub batch_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub idle_timeout: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub internal_domains: Vec<String>,
    #[serde(default)]
    pub slack_team_ids: Vec<String>,
    #[serde(default)]
    pub teams_tenant_ids: Vec<String>,
    #[serde(default)]
    pub discord_guild_ids: Vec<String>,
    #[serde(default)]
    pub terms: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub anonymous_access: bool,
    pub title: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentConfig {
    pub name: String,
    pub patterns: Vec<String>,
    /// Small talk intents do not count as asking for something (visitors report).
    #[serde(default)]
    pub small_talk: bool,
    pub reply: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityConfig {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub signing_secret: Option<Secret>,
    pub bot_token: Option<Secret>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// App-level token (`xapp-…`, scope `connections:write`): when set, `koji serve` also
    /// receives Slack over Socket Mode (no public HTTP endpoint needed).
    pub app_token: Option<Secret>,
    pub api_url: Option<String>,
    /// How long `/koji` waits for its answer before replying "Working on it…" and following
    /// up through `response_url` (default 2500; at most 2900: Slack gives up after 3000).
    pub command_deadline_ms: Option<u64>,
    pub encryption_key: Option<Secret>,
    /// Slack's OAuth v2 consent page (default `https://slack.com/oauth/v2/authorize`).
    pub authorize_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    pub app_id: Option<String>,
    pub app_password: Option<Secret>,
    pub openid_metadata_url: Option<String>,
    pub token_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// A snowflake: `KOJI_DISCORD__APPLICATION_ID=1234…` arrives as a number, also taken.
    #[serde(default, deserialize_with = "string_or_number")]
    pub application_id: Option<String>,
    pub public_key: Option<String>,
    pub bot_token: Option<Secret>,
    pub api_url: Option<String>,
    /// Milliseconds to wait for an answer before deferring it (type 5) and editing the
    /// response later; default 2500 (Discord allows 3 s). 0 defers every command.
    pub defer_after_ms: Option<u64>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(u64),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|v| match v {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    }))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub oauth: Option<OAuthConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_url: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    pub base_url: Option<String>,
    pub email: Option<String>,
    pub api_token: Option<Secret>,
    pub service_desk_id: Option<String>,
    /// The request type new requests get; when absent, the service desk's first one.
    pub request_type_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskConfig {
    pub kb_dir: Option<String>,
}

/// Where the configuration came from, for `load`.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// `(name, value)` pairs of the environment; only `KOJI_SECTION__KEY` ones are used.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The file from `--config` or `KOJI_CONFIG`, and the process environment.
    pub fn from_process(config_flag: Option<PathBuf>) -> Sources {
        let file = config_flag.or_else(|| std::env::var_os("KOJI_CONFIG").map(PathBuf::from));
        Sources {
            file,
            env: std::env::vars().collect(),
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then the environment overrides.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let file_text = match &sources.file {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        let file_name = sources
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Self::layered(file_text.as_deref(), &file_name, &sources.env)
    }

    /// Defaults overlaid with one TOML document (no environment). Used by tests.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::layered(Some(text), "<config>", &[])
    }

    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Self::layered(None, "", &[]).expect("embedded defaults are valid")
    }

    fn layered(
        file: Option<&str>,
        file_name: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Table = DEFAULTS.parse().expect("embedded defaults parse");
        if let Some(text) = file {
            let overlay: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                err(
                    "",
                    format!("{file_name} is not valid TOML: {}", e.message().trim()),
                )
                .with_location(text, e.span())
            })?;
            // A file that names its own tenants replaces the demo tenant and its portal.
            if overlay.contains_key("tenants") && !overlay.contains_key("portals") {
                value.remove("portals");
            }
            merge(&mut value, overlay);
        }
        apply_env(&mut value, env)?;
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
                let path = e.path().to_string();
                let message = e.inner().message().trim().to_string();
                err(if path == "." { String::new() } else { path }, message)
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !(self.server.public_url.starts_with("http://")
            || self.server.public_url.starts_with("https://"))
        {
            return Err(err(
                "server.public_url",
                "must start with http:// or https://",
            ));
        }
        if let Some(dir) = self
            .helpdesk
            .kb_dir
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            && !std::path::Path::new(dir).is_dir()
        {
            return Err(err(
                "helpdesk.kb_dir",
                format!("`{dir}` is not a folder (of Markdown articles)"),
            ));
        }
        if let Some(ms) = self.slack.as_ref().and_then(|s| s.command_deadline_ms)
            && ms > 2900
        {
            return Err(err(
                "slack.command_deadline_ms",
                "must be at most 2900 (Slack gives up on a slash command after 3000 ms)",
            ));
        }
        if let Some(t) = self.slack.as_ref().and_then(|s| s.app_token.as_ref())
            && !t.0.is_empty()
            && !t.0.starts_with("xapp-")
        {
            return Err(err(
                "slack.app_token",
                "must be an app-level token (xapp-…), not a bot or user token",
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(err("server.max_body_bytes", "must be at least 1024"));
        }
        if let Some(key) = self
            .discord
            .as_ref()
            .and_then(|d| d.public_key.as_deref())
            .filter(|k| !k.trim().is_empty())
            && let Err(e) = koji_discord::signing::Verifier::new(key)
        {
            return Err(err(
                "discord.public_key",
                e.to_string().replace("discord.public_key ", ""),
            ));
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(err(
                "database.url",
                format!("`{url}` is neither sqlite://… nor postgres://…"),
            ));
        }
        match self.database.synchronous.as_str() {
            "normal" | "full" => {}
            other => {
                return Err(err(
                    "database.synchronous",
                    format!("`{other}` must be `normal` or `full`"),
                ));
            }
        }
        if self.database.max_connections == 0 {
            return Err(err("database.max_connections", "must be at least 1"));
        }
        if self.database.batch_max == 0 || self.database.batch_max > 10_000 {
            return Err(err("database.batch_max", "must be between 1 and 10000"));
        }
        if self.tenants.is_empty() {
            return Err(err("tenants", "at least one [[tenants]] entry is needed"));
        }
        let mut ids = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let key = |k: &str| format!("tenants[{i}].{k}");
            if t.id.is_empty()
                || !t
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(
                    key("id"),
                    format!("`{}` must be letters, digits, - or _", t.id),
                ));
            }
            if !ids.insert(t.id.clone()) {
                return Err(err(
                    key("id"),
                    format!("tenant `{}` is defined twice", t.id),
                ));
            }
            for (j, a) in t.admins.iter().enumerate() {
                if !(a.contains('@') || a.contains(':')) {
                    return Err(err(
                        format!("tenants[{i}].admins[{j}]"),
                        format!(
                            "`{a}` is neither an email nor a channel identity like slack:U0123"
                        ),
                    ));
                }
            }
            for (j, r) in t.roles.iter().enumerate() {
                let rk = format!("tenants[{i}].roles[{j}]");
                if r.name.is_empty() || r.name.chars().any(|c| c.is_whitespace()) {
                    return Err(err(format!("{rk}.name"), "must be one word"));
                }
                if crate::roles::BUILT_IN.contains(&r.name.as_str()) {
                    return Err(err(
                        format!("{rk}.name"),
                        format!("`{}` is a built-in role", r.name),
                    ));
                }
                for p in &r.permissions {
                    if Permission::parse(p).is_none() {
                        return Err(err(
                            format!("{rk}.permissions"),
                            format!("unknown permission `{p}` (known: {})", Permission::names()),
                        ));
                    }
                }
            }
        }
        let mut portal_ids = HashSet::new();
        for (i, p) in self.portals.iter().enumerate() {
            if !ids.contains(&p.tenant) {
                return Err(err(
                    format!("portals[{i}].tenant"),
                    format!("no tenant has id `{}`", p.tenant),
                ));
            }
            if !portal_ids.insert(p.id.clone()) {
                return Err(err(
                    format!("portals[{i}].id"),
                    format!("portal `{}` is defined twice", p.id),
                ));
            }
        }
        if let Some(url) = self.email.as_ref().and_then(|e| e.smtp_url.as_deref())
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return Err(err(
                "email.smtp_url",
                format!("`{url}` must start with smtp:// or smtps://"),
            ));
        }
        if let Some(jira) = &self.jira {
            crate::helpdesk::jira::check_config(jira)?;
        }
        for (i, intent) in self.intents.iter().enumerate() {
            for (j, p) in intent.patterns.iter().enumerate() {
                if let Err(e) = regex::Regex::new(p) {
                    return Err(err(
                        format!("intents[{i}].patterns[{j}]"),
                        first_line(&e.to_string()),
                    ));
                }
            }
        }
        for (i, e) in self.entities.iter().enumerate() {
            if let Err(x) = regex::Regex::new(&e.pattern) {
                return Err(err(
                    format!("entities[{i}].pattern"),
                    first_line(&x.to_string()),
                ));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            err(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            )
        })
    }

    pub fn idle_timeout(&self) -> Duration {
        self.session.idle_timeout.0
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.id == id)
    }
}

impl ConfigError {
    fn with_location(mut self, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        if let Some(span) = span {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            self.message = format!("{} (line {line})", self.message);
        }
        self
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        err(
            "",
            format!("cannot read config file {}: {e}", path.display()),
        )
    })
}

/// Tables merge key by key; anything else in `over` replaces what is in `base`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `KOJI_DATABASE__URL=…` sets `database.url`. Values that parse as TOML numbers, booleans or
/// arrays are taken as such unless the key already holds a string.
fn apply_env(value: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("KOJI_") else {
            continue;
        };
        if !rest.contains("__") || rest.starts_with("TEST_") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(err(name.clone(), "malformed environment override"));
        }
        let mut table = &mut *value;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(err(
                        path.join("."),
                        format!("{name} overrides a key inside `{seg}`, which is not a section"),
                    ));
                }
            };
        }
        let last = path.last().expect("non-empty path");
        let existing_is_string = matches!(table.get(last), Some(toml::Value::String(_)));
        let parsed = if existing_is_string {
            None
        } else {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .filter(|v| !matches!(v, toml::Value::Datetime(_)))
        };
        table.insert(
            last.clone(),
            parsed.unwrap_or_else(|| toml::Value::String(raw.clone())),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid_and_run_the_demo_tenant() {
        let c = Config::defaults();
        assert_eq!(c.database.url, "sqlite://koji.db");
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.tenants.len(), 1);
        assert_eq!(c.portals.len(), 1);
        assert_eq!(c.idle_timeout(), Duration::from_secs(1800));
        assert!(c.slack.is_none());
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.toml");
        let c = Config::from_toml(text).expect("config.example.toml is valid");
        assert!(c.slack.is_some());
        assert!(c.tenants[0].roles.iter().any(|r| r.name == "manager"));
    }

    #[test]
    fn durations() {
        let check = |s: &str, secs: Option<u64>| {
            assert_eq!(
                s.parse::<HumanDuration>().ok().map(|d| d.0.as_secs()),
                secs,
                "{s}"
            );
        };
        check("30m", Some(1800));
        check("24h", Some(86_400));
        check("7d", Some(604_800));
        check("45s", Some(45));
        check("2w", Some(1_209_600));
        check("0m", None);
        check("m", None);
        check("10x", None);
        check("-5m", None);
        check("", None);
        check("99999999999999d", None);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = Config::from_toml("[session]\nidle_timeout = \"soon\"").unwrap_err();
        assert_eq!(e.key, "session.idle_timeout");
        assert!(e.message.contains("soon"), "{e}");

        let e = Config::from_toml("[server]\nlisten = \"nowhere\"").unwrap_err();
        assert_eq!(e.key, "server.listen");

        let e = Config::from_toml("[database]\nurl = \"mysql://x\"").unwrap_err();
        assert_eq!(e.key, "database.url");

        let e = Config::from_toml("[server]\nlisten_port = 3").unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");

        let e = Config::from_toml(
            "[[tenants]]\nid = \"a\"\n[[tenants.roles]]\nname = \"m\"\npermissions = [\"fly\"]",
        )
        .unwrap_err();
        assert_eq!(e.key, "tenants[0].roles[0].permissions");

        let e = Config::from_toml("[[portals]]\nid = \"p\"\ntenant = \"nope\"").unwrap_err();
        assert_eq!(e.key, "portals[0].tenant");

        let e = Config::from_toml("this is = = not toml").unwrap_err();
        assert!(e.message.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let env = vec![
            (
                "KOJI_DATABASE__URL".to_string(),
                "sqlite://other.db".to_string(),
            ),
            (
                "KOJI_SERVER__TRUST_FORWARDED_FOR".to_string(),
                "true".to_string(),
            ),
            (
                "KOJI_SERVER__MAX_BODY_BYTES".to_string(),
                "4096".to_string(),
            ),
            (
                "KOJI_TEST_POSTGRES_URL".to_string(),
                "postgres://ignored".to_string(),
            ),
            ("KOJI_CONFIG".to_string(), "ignored".to_string()),
        ];
        let c = Config::layered(Some("[server]\nmax_body_bytes = 2048"), "f", &env).unwrap();
        assert_eq!(c.database.url, "sqlite://other.db");
        assert!(c.server.trust_forwarded_for);
        assert_eq!(c.server.max_body_bytes, 4096);

        let bad = vec![(
            "KOJI_SESSION__IDLE_TIMEOUT".to_string(),
            "never".to_string(),
        )];
        let e = Config::layered(None, "", &bad).unwrap_err();
        assert_eq!(e.key, "session.idle_timeout");
    }

    #[test]
    fn a_file_with_its_own_tenants_drops_the_demo_tenant() {
        let c = Config::from_toml("[[tenants]]\nid = \"globex\"").unwrap();
        assert_eq!(c.tenants.len(), 1);
        assert_eq!(c.tenants[0].id, "globex");
        assert!(c.portals.is_empty());
    }

    #[test]
    fn slack_socket_mode_needs_an_app_token_and_the_command_deadline_stays_under_3_s() {
        let c = Config::from_toml("[slack]\napp_token = \"xapp-1-abc\"\ncommand_deadline_ms = 0")
            .unwrap();
        assert!(c.slack.is_some());
        let e = Config::from_toml("[slack]\napp_token = \"xoxb-1\"").unwrap_err();
        assert!(e.to_string().contains("slack.app_token"), "{e}");
        let e = Config::from_toml("[slack]\ncommand_deadline_ms = 3000").unwrap_err();
        assert!(e.to_string().contains("slack.command_deadline_ms"), "{e}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = Config::from_toml("[slack]\nsigning_secret = \"s3cr3t\"").unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
