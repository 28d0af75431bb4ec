//! Jira Service Management over its REST API, with an API token (basic auth `email:token`).
//!
//! [`JiraClient`] speaks HTTP and nothing else: one typed method per Jira call, one typed
//! [`JiraError`]. [`JiraHelpDesk`] is the [`HelpDesk`] port on top of it (knowledge-base
//! search, requests, service-desk customers) and [`JiraDirectory`] the [`Directory`] port
//! (the local directory first, then Jira users, then service-desk customers).
//!
//! Invariant: the API token only leaves this module in the `Authorization` header; it is never
//! logged (the [`Secret`] type's `Debug` hides it). Nor are emails or message text logged.
//! Not here: who may see a request (the core decides), retries beyond one short wait on 429.

use crate::config::{Config, ConfigError, JiraConfig, Secret};
use crate::conversation::TenantRuntime;
use crate::directory::{Directory, Listing, LocalDirectory};
use crate::domain::PersonKind;
use crate::helpdesk::{Article, HelpDesk, HelpDeskError, NewRequest, Request};
use crate::store::{Store, StoreError};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Time to open a connection to Jira.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for one whole call (connect, send, read the answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A 429 whose `Retry-After` is at most this long is waited out and retried once.
pub const MAX_RETRY_WAIT_SECS: u64 = 2;
/// What a 429 without a readable `Retry-After` (seconds) is taken to ask for.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 30;

/// What went wrong talking to Jira.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JiraError {
    /// 401 or 403: Jira refused Koji's credentials or permissions.
    #[error("Jira refused Koji's credentials (check jira.email and jira.api_token)")]
    Unauthorized,
    /// 404: no such request, service desk or endpoint.
    #[error("Jira has no such resource")]
    NotFound,
    /// 429 with a wait longer than Koji holds a reply for.
    #[error("Jira is rate limiting Koji; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 5xx, connection refused, timeout, or an answer Koji cannot read.
    #[error("Jira is unavailable: {0}")]
    Unavailable(String),
    /// 400 (and other refusals of the input), with Jira's own error messages.
    #[error("Jira refused the request: {0}")]
    Invalid(String),
}

impl From<JiraError> for HelpDeskError {
    fn from(e: JiraError) -> Self {
        match e {
            JiraError::Unauthorized => HelpDeskError::Unauthorized,
            JiraError::RateLimited { retry_after_secs } => {
                HelpDeskError::RateLimited { retry_after_secs }
            }
            JiraError::Invalid(reason) => HelpDeskError::Invalid(reason),
            JiraError::Unavailable(reason) => HelpDeskError::Unavailable(reason),
            JiraError::NotFound => HelpDeskError::Unavailable(
                "Jira answered 404 (check jira.base_url and jira.service_desk_id)".into(),
            ),
        }
    }
}

/// A Jira account (a user or a service-desk customer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraAccount {
    pub account_id: String,
    /// Absent when the person's profile hides it.
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// The checked `[jira]` section.
struct Settings {
    base: Url,
    email: String,
    api_token: Secret,
    service_desk_id: String,
    request_type_id: Option<String>,
}

fn missing(key: &str) -> ConfigError {
    ConfigError {
        key: format!("jira.{key}"),
        message: format!("jira.{key} is required when [jira] is set"),
    }
}

fn required(value: Option<&str>, key: &str) -> Result<String, ConfigError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing(key))
}

impl Settings {
    fn from_config(config: &JiraConfig) -> Result<Settings, ConfigError> {
        let raw_base = required(config.base_url.as_deref(), "base_url")?;
        let bad_base = |why: &str| ConfigError {
            key: "jira.base_url".into(),
            message: format!("`{raw_base}` {why}"),
        };
        let mut base = Url::parse(&raw_base)
            .map_err(|_| bad_base("is not a URL like https://acme.atlassian.net"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad_base("must start with http:// or https://"));
        }
        base.set_query(None);
        base.set_fragment(None);
        let email = required(config.email.as_deref(), "email")?;
        let api_token = required(config.api_token.as_ref().map(|s| s.0.as_str()), "api_token")?;
        let service_desk_id = required(config.service_desk_id.as_deref(), "service_desk_id")?;
        let request_type_id = config
            .request_type_id
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok(Settings {
            base,
            email,
            api_token: Secret(api_token),
            service_desk_id,
            request_type_id,
        })
    }
}

/// Checks a `[jira]` section without building a client: every required key is there and
/// `base_url` is an http(s) URL. The error names the key.
pub fn check_config(config: &JiraConfig) -> Result<(), ConfigError> {
    Settings::from_config(config).map(|_| ())
}

/// A Jira Service Management site, reached with an API token.
#[derive(Debug)]
pub struct JiraClient {
    http: reqwest::Client,
    base: Url,
    email: String,
    api_token: Secret,
    service_desk_id: String,
    /// `jira.request_type_id`, or the service desk's first request type, fetched once.
    request_type_id: tokio::sync::OnceCell<String>,
}

// Jira's JSON, read leniently: every field may be missing.

#[derive(Deserialize, Default)]
#[serde(default)]
struct Page<T> {
    values: Vec<T>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ArticleDto {
    title: String,
    excerpt: String,
    source: Option<ArticleSource>,
    content: Option<ArticleContent>,
    #[serde(rename = "_links")]
    links: Option<Links>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ArticleSource {
    page_id: Option<Value>,
    space_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ArticleContent {
    iframe_src: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Links {
    #[serde(rename = "self")]
    self_: Option<String>,
    web: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RequestDto {
    issue_key: String,
    request_field_values: Vec<FieldValue>,
    current_status: Option<StatusDto>,
    reporter: Option<UserDto>,
    #[serde(rename = "_links")]
    links: Option<Links>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct FieldValue {
    field_id: String,
    value: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatusDto {
    status: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct UserDto {
    account_id: String,
    email_address: Option<String>,
    display_name: Option<String>,
    account_type: Option<String>,
    active: Option<bool>,
}

impl UserDto {
    fn has_email(&self, email: &str) -> bool {
        self.email_address
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
    }

    fn into_account(self) -> JiraAccount {
        JiraAccount {
            account_id: self.account_id,
            email: self.email_address,
            display_name: self.display_name,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestTypeDto {
    id: Option<Value>,
}

/// A JSON id that Jira sends as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl JiraClient {
    /// A client for the `[jira]` section. A missing key is an error naming it
    /// (`jira.api_token is required when [jira] is set`).
    pub fn new(config: &JiraConfig) -> Result<JiraClient, ConfigError> {
        let s = Settings::from_config(config)?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .default_headers(headers)
            .user_agent(concat!("koji/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError {
                key: "jira".into(),
                message: format!("cannot build the HTTP client for Jira: {e}"),
            })?;
        Ok(JiraClient {
            http,
            base: s.base,
            email: s.email,
            api_token: s.api_token,
            service_desk_id: s.service_desk_id,
            request_type_id: tokio::sync::OnceCell::new_with(s.request_type_id),
        })
    }

    /// The service desk Koji works in (`jira.service_desk_id`).
    pub fn service_desk_id(&self) -> &str {
        &self.service_desk_id
    }

    /// `base_url` + the path segments, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn with_query(mut url: Url, pairs: &[(&str, &str)]) -> Url {
        url.query_pairs_mut().extend_pairs(pairs);
        url
    }

    /// One call, with one retry after a short 429. Non-2xx answers become errors.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        experimental: bool,
    ) -> Result<reqwest::Response, JiraError> {
        let mut retried = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .basic_auth(&self.email, Some(&self.api_token.0));
            if experimental {
                req = req.header("X-ExperimentalApi", "opt-in");
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.map_err(transport_error)?;
            let status = resp.status();
            tracing::debug!(method = %method, path = url.path(), status = status.as_u16(), "jira call");
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match wait {
                    Some(secs) if !retried && secs <= MAX_RETRY_WAIT_SECS => {
                        retried = true;
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                        continue;
                    }
                    _ => {
                        return Err(JiraError::RateLimited {
                            retry_after_secs: wait.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
                        });
                    }
                }
            }
            let text = resp.text().await.unwrap_or_default();
            return Err(status_error(status, &text));
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        experimental: bool,
    ) -> Result<T, JiraError> {
        let resp = self.send(method, url, body, experimental).await?;
        let bytes = resp.bytes().await.map_err(transport_error)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| JiraError::Unavailable(format!("unexpected answer from Jira: {e}")))
    }

    /// Knowledge-base articles for `query`, best first (as Jira orders them), at most `limit`.
    /// Excerpts come back as plain text (highlight markers and HTML removed).
    pub async fn search_articles(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Article>, JiraError> {
        if limit == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let limit_text = limit.to_string();
        let url = Self::with_query(
            self.url(&["rest", "servicedeskapi", "knowledgebase", "article"]),
            &[
                ("query", query.trim()),
                ("highlight", "false"),
                ("limit", &limit_text),
            ],
        );
        let page: Page<ArticleDto> = self.call(Method::GET, url, None, false).await?;
        let n = page.values.len().min(limit);
        Ok(page
            .values
            .into_iter()
            .take(limit)
            .enumerate()
            .map(|(i, a)| {
                let source = a.source.unwrap_or_default();
                let title = plain_text(&a.title);
                let id = source
                    .page_id
                    .as_ref()
                    .and_then(id_text)
                    .map(|p| match &source.space_key {
                        Some(space) if !space.is_empty() => format!("{space}/{p}"),
                        _ => p,
                    })
                    .unwrap_or_else(|| title.clone());
                let url = a
                    .links
                    .and_then(|l| l.self_)
                    .or_else(|| a.content.and_then(|c| c.iframe_src))
                    .filter(|u| !u.is_empty());
                Article {
                    id,
                    title,
                    excerpt: plain_text(&a.excerpt),
                    url,
                    // Jira's order is the ranking: 1.0 for the first, down to 1/n.
                    score: (n - i) as f64 / n as f64,
                }
            })
            .collect())
    }

    /// The request type new requests get: `jira.request_type_id`, else the service desk's
    /// first request type, asked for once and kept.
    pub async fn request_type_id(&self) -> Result<String, JiraError> {
        self.request_type_id
            .get_or_try_init(|| async {
                let url = self.url(&[
                    "rest",
                    "servicedeskapi",
                    "servicedesk",
                    &self.service_desk_id,
                    "requesttype",
                ]);
                let page: Page<RequestTypeDto> = self.call(Method::GET, url, None, false).await?;
                page.values
                    .iter()
                    .find_map(|t| t.id.as_ref().and_then(id_text))
                    .ok_or_else(|| {
                        JiraError::Invalid(format!(
                            "service desk {} has no request types (set jira.request_type_id)",
                            self.service_desk_id
                        ))
                    })
            })
            .await
            .cloned()
    }

    /// Opens a request in the service desk, raised on behalf of `reporter_email` when given.
    pub async fn create_request(
        &self,
        summary: &str,
        description: &str,
        reporter_email: Option<&str>,
    ) -> Result<Request, JiraError> {
        let request_type_id = self.request_type_id().await?;
        let mut body = json!({
            "serviceDeskId": self.service_desk_id,
            "requestTypeId": request_type_id,
            "requestFieldValues": {"summary": summary, "description": description},
        });
        if let Some(email) = reporter_email {
            body["raiseOnBehalfOf"] = json!(email);
        }
        let url = self.url(&["rest", "servicedeskapi", "request"]);
        let dto: RequestDto = self.call(Method::POST, url, Some(&body), false).await?;
        let mut request = to_request(dto)?;
        if request.summary.is_empty() {
            request.summary = summary.to_string();
        }
        if request.reporter_email.is_none() {
            request.reporter_email = reporter_email.map(str::to_string);
        }
        Ok(request)
    }

    /// One request by issue key or id; `None` when Jira has no such request (404).
    pub async fn request(&self, key: &str) -> Result<Option<Request>, JiraError> {
        let url = self.url(&["rest", "servicedeskapi", "request", key.trim()]);
        match self.call::<RequestDto>(Method::GET, url, None, false).await {
            Ok(dto) => to_request(dto).map(Some),
            Err(JiraError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn search_users(&self, email: &str) -> Result<Vec<UserDto>, JiraError> {
        let url = Self::with_query(
            self.url(&["rest", "api", "3", "user", "search"]),
            &[("query", email.trim())],
        );
        self.call(Method::GET, url, None, false).await
    }

    /// The Jira user (staff, agent) with exactly this email, case-insensitive. A profile that
    /// hides its email never matches; customer and app accounts, and deactivated users, are
    /// not users here.
    pub async fn find_user(&self, email: &str) -> Result<Option<JiraAccount>, JiraError> {
        Ok(self
            .search_users(email)
            .await?
            .into_iter()
            .find(|u| {
                u.has_email(email)
                    && u.active != Some(false)
                    && !matches!(u.account_type.as_deref(), Some("customer" | "app"))
            })
            .map(UserDto::into_account))
    }

    /// The service desk's customer with exactly this email, case-insensitive.
    pub async fn find_customer(&self, email: &str) -> Result<Option<JiraAccount>, JiraError> {
        let url = Self::with_query(
            self.url(&[
                "rest",
                "servicedeskapi",
                "servicedesk",
                &self.service_desk_id,
                "customer",
            ]),
            &[("query", email.trim())],
        );
        let page: Page<UserDto> = self.call(Method::GET, url, None, true).await?;
        Ok(page
            .values
            .into_iter()
            .find(|u| u.has_email(email))
            .map(UserDto::into_account))
    }

    /// Creates a customer account (not yet in any service desk). 400 when the email already
    /// has an account.
    pub async fn create_customer(
        &self,
        email: &str,
        display_name: &str,
    ) -> Result<JiraAccount, JiraError> {
        let url = self.url(&["rest", "servicedeskapi", "customer"]);
        let body = json!({"displayName": display_name, "email": email});
        let dto: UserDto = self.call(Method::POST, url, Some(&body), false).await?;
        if dto.account_id.is_empty() {
            return Err(JiraError::Unavailable(
                "Jira created a customer but sent no accountId".into(),
            ));
        }
        Ok(dto.into_account())
    }

    /// Adds accounts to the service desk's customers.
    pub async fn add_customers(&self, account_ids: &[String]) -> Result<(), JiraError> {
        let url = self.url(&[
            "rest",
            "servicedeskapi",
            "servicedesk",
            &self.service_desk_id,
            "customer",
        ]);
        let body = json!({ "accountIds": account_ids });
        self.send(Method::POST, url, Some(&body), false).await?;
        Ok(())
    }

    /// Finds the service desk's customer with this email, or makes one: creates the account
    /// (display name: `display_name`, else the email) and adds it to the service desk. When
    /// the account already exists (400 from create), it is looked up instead and added.
    pub async fn ensure_customer(
        &self,
        email: &str,
        display_name: Option<&str>,
    ) -> Result<JiraAccount, JiraError> {
        if let Some(customer) = self.find_customer(email).await? {
            return Ok(customer);
        }
        let name = display_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(email);
        let account = match self.create_customer(email, name).await {
            Ok(account) => account,
            Err(JiraError::Invalid(reason)) => {
                // Most often "an account already exists for this email": someone made it
                // meanwhile (it is then a customer here), or it exists outside this desk.
                if let Some(customer) = self.find_customer(email).await? {
                    return Ok(customer);
                }
                match self
                    .search_users(email)
                    .await?
                    .into_iter()
                    .find(|u| u.has_email(email) && !u.account_id.is_empty())
                {
                    Some(u) => u.into_account(),
                    None => return Err(JiraError::Invalid(reason)),
                }
            }
            Err(e) => return Err(e),
        };
        self.add_customers(std::slice::from_ref(&account.account_id))
            .await?;
        Ok(account)
    }
}

fn to_request(dto: RequestDto) -> Result<Request, JiraError> {
    if dto.issue_key.is_empty() {
        return Err(JiraError::Unavailable(
            "Jira's answer names no issueKey".into(),
        ));
    }
    let summary = dto
        .request_field_values
        .iter()
        .find(|f| f.field_id == "summary")
        .and_then(|f| f.value.as_str())
        .unwrap_or_default()
        .to_string();
    Ok(Request {
        key: dto.issue_key,
        summary,
        status: dto.current_status.map(|s| s.status).unwrap_or_default(),
        reporter_email: dto.reporter.and_then(|r| r.email_address),
        reporter_person_id: None,
        url: dto
            .links
            .and_then(|l| l.web.or(l.self_))
            .filter(|u| !u.is_empty()),
        comments: Vec::new(),
    })
}

/// A transport failure (refused, timed out, broken answer) as [`JiraError::Unavailable`].
/// The URL is left out: its query may hold an email.
fn transport_error(e: reqwest::Error) -> JiraError {
    let e = e.without_url();
    if e.is_timeout() {
        return JiraError::Unavailable(format!(
            "Jira did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        ));
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    if e.is_connect() {
        JiraError::Unavailable(format!("cannot connect to Jira ({reason})"))
    } else {
        JiraError::Unavailable(reason)
    }
}

/// A non-2xx, non-429 answer.
fn status_error(status: StatusCode, body: &str) -> JiraError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => JiraError::Unauthorized,
        StatusCode::NOT_FOUND => JiraError::NotFound,
        s if s.is_server_error() => JiraError::Unavailable(format!("Jira answered HTTP {s}")),
        s => JiraError::Invalid(
            error_messages(body).unwrap_or_else(|| format!("Jira answered HTTP {s}")),
        ),
    }
}

/// Jira's error text: `errorMessages` (platform API), `errorMessage` (service desk API),
/// and the per-field `errors`.
fn error_messages(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let mut messages: Vec<String> = Vec::new();
    if let Some(list) = v.get("errorMessages").and_then(Value::as_array) {
        messages.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
    }
    if let Some(m) = v.get("errorMessage").and_then(Value::as_str) {
        messages.push(m.to_string());
    }
    if let Some(fields) = v.get("errors").and_then(Value::as_object) {
        messages.extend(
            fields
                .iter()
                .filter_map(|(k, m)| m.as_str().map(|m| format!("{k}: {m}"))),
        );
    }
    let text = messages
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    (!text.is_empty()).then(|| text.chars().take(500).collect())
}

static TAG: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"<\s*/?\s*([A-Za-z0-9]*)[^>]*>").expect("valid regex"));

/// Tags that sit inside a line of text: removed without a space.
const INLINE_TAGS: &[&str] = &[
    "a", "abbr", "b", "code", "em", "i", "kbd", "mark", "s", "small", "span", "strong", "sub",
    "sup", "u",
];

/// Jira text as plain text: highlight markers (`@@@hl@@@`, `@@@endhl@@@`) and HTML tags
/// removed, the common entities decoded, whitespace collapsed.
pub fn plain_text(s: &str) -> String {
    let s = s.replace("@@@endhl@@@", "").replace("@@@hl@@@", "");
    let s = TAG.replace_all(&s, |c: &regex::Captures<'_>| {
        let name = c[1].to_ascii_lowercase();
        if INLINE_TAGS.contains(&name.as_str()) {
            ""
        } else {
            " "
        }
    });
    let s = s
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The help desk in Jira Service Management. One `[jira]` site serves every tenant.
pub struct JiraHelpDesk {
    client: Arc<JiraClient>,
}

impl JiraHelpDesk {
    pub fn new(client: Arc<JiraClient>) -> JiraHelpDesk {
        JiraHelpDesk { client }
    }

    /// A help desk for the `[jira]` section (a missing key is an error naming it).
    pub fn from_config(config: &JiraConfig) -> Result<JiraHelpDesk, ConfigError> {
        Ok(JiraHelpDesk::new(Arc::new(JiraClient::new(config)?)))
    }

    pub fn client(&self) -> &Arc<JiraClient> {
        &self.client
    }
}

#[async_trait::async_trait]
impl HelpDesk for JiraHelpDesk {
    async fn search(
        &self,
        _tenant_id: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Article>, HelpDeskError> {
        Ok(self.client.search_articles(query, limit).await?)
    }

    /// A customer reporter is made a service-desk customer first (Jira refuses to raise a
    /// request on behalf of someone who is not); staff are raised on behalf of as they are.
    async fn create_request(&self, new: NewRequest) -> Result<Request, HelpDeskError> {
        let email = new.reporter.email.as_deref();
        if let Some(email) = email
            && new.reporter.kind == PersonKind::Customer
        {
            self.client
                .ensure_customer(email, new.reporter.name.as_deref())
                .await?;
        }
        Ok(self
            .client
            .create_request(&new.summary, &new.description, email)
            .await?)
    }

    async fn request(&self, _tenant_id: &str, key: &str) -> Result<Option<Request>, HelpDeskError> {
        Ok(self.client.request(key).await?)
    }

    async fn ensure_customer(
        &self,
        _tenant_id: &str,
        email: &str,
        display_name: Option<&str>,
    ) -> Result<(), HelpDeskError> {
        self.client.ensure_customer(email, display_name).await?;
        Ok(())
    }
}

/// The directory with Jira behind the local one: a person already in the database wins;
/// else a Jira user is `internal`, a service-desk customer is `customer` (neither is a
/// person yet); else the local answer (`tenant.internal_domains`) stands.
pub struct JiraDirectory {
    local: LocalDirectory,
    client: Arc<JiraClient>,
}

impl JiraDirectory {
    pub fn new(local: LocalDirectory, client: Arc<JiraClient>) -> JiraDirectory {
        JiraDirectory { local, client }
    }

    /// The directory the core uses: Jira's when `[jira]` has a `base_url`, else the local
    /// one. (Config loading has already checked the other `[jira]` keys; should the client
    /// still not build, the error is logged and the local directory serves.)
    pub fn for_config(config: &Config, store: Store) -> Arc<dyn Directory> {
        let local = LocalDirectory { store };
        let Some(jira) = config.jira.as_ref().filter(|j| j.base_url.is_some()) else {
            return Arc::new(local);
        };
        match JiraClient::new(jira) {
            Ok(client) => Arc::new(JiraDirectory::new(local, Arc::new(client))),
            Err(e) => {
                tracing::error!(error = %e, "Jira directory disabled; using the local directory");
                Arc::new(local)
            }
        }
    }

    async fn ask_jira(&self, email: &str) -> Result<Option<PersonKind>, JiraError> {
        if self.client.find_user(email).await?.is_some() {
            return Ok(Some(PersonKind::Internal));
        }
        if self.client.find_customer(email).await?.is_some() {
            return Ok(Some(PersonKind::Customer));
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl Directory for JiraDirectory {
    async fn lookup(
        &self,
        tenant: &TenantRuntime,
        email: &str,
    ) -> Result<Option<Listing>, StoreError> {
        let local = self.local.lookup(tenant, email).await?;
        if local.as_ref().is_some_and(|l| l.is_person) {
            return Ok(local);
        }
        match self.ask_jira(email).await {
            Ok(Some(kind)) => Ok(Some(Listing {
                kind,
                is_person: false,
            })),
            Ok(None) => Ok(local),
            // The tenant's internal domains still answer for staff while Jira is away.
            Err(e) if local.is_some() => {
                tracing::warn!(error = %e, "Jira directory unavailable; using internal_domains");
                Ok(local)
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "the Jira directory cannot be asked: {e}"
            ))),
        }
    }
}
