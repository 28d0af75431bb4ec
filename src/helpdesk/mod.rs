//! The help desk: knowledge-base answers and requests (tickets).
//!
//! [`HelpDesk`] is the port the conversation asks. Two implementations: the local one
//! (`local.rs`: Markdown articles from `helpdesk.kb_dir`, searched with the database's own
//! full-text search; requests in the database) and Jira Service Management (`jira.rs`,
//! when `[jira]` is configured). Who may see a request is decided in the core, not here.

use crate::domain::PersonRef;

pub mod jira;

/// One knowledge-base article found for a question, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    /// Stable id within the help desk (file name, Jira article id).
    pub id: String,
    pub title: String,
    /// A short plain-text passage of the article (no markup).
    pub excerpt: String,
    /// Where the whole article can be read, when there is such a place.
    pub url: Option<String>,
    /// Higher is better; only comparable within one search.
    pub score: f64,
}

/// A request (ticket).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `REQ-12` locally, the Jira issue key in Jira.
    pub key: String,
    pub summary: String,
    /// Human-readable status (`Open`, `Waiting for support`, `Resolved`…).
    pub status: String,
    /// The reporter, as the help desk knows them.
    pub reporter_email: Option<String>,
    /// The reporter's person id (local help desk only).
    pub reporter_person_id: Option<i64>,
    pub url: Option<String>,
    /// Comments, oldest first (author, text).
    pub comments: Vec<(String, String)>,
}

/// What a person asked to open.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub tenant_id: String,
    pub summary: String,
    pub description: String,
    pub reporter: PersonRef,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HelpDeskError {
    /// The help desk (database or Jira) cannot be reached or failed; nothing was changed.
    #[error("the help desk is unavailable: {0}")]
    Unavailable(String),
    /// Jira asked us to slow down and the wait is longer than we hold a chat reply for.
    #[error("the help desk is busy; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Jira refused Koji's credentials (401/403): an operator must fix `[jira]`.
    #[error("the help desk refused Koji's credentials")]
    Unauthorized,
    /// The help desk refused the input (e.g. Jira 400); the message says why.
    #[error("the help desk refused the request: {0}")]
    Invalid(String),
}

/// The help-desk port.
#[async_trait::async_trait]
pub trait HelpDesk: Send + Sync {
    /// Articles that answer `query`, best first, at most `limit`.
    async fn search(
        &self,
        tenant_id: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Article>, HelpDeskError>;

    /// Opens a request for `new.reporter`; returns it with its key.
    async fn create_request(&self, new: NewRequest) -> Result<Request, HelpDeskError>;

    /// One request by key (`REQ-12`, `IT-42`); `None` when there is no such request.
    async fn request(&self, tenant_id: &str, key: &str) -> Result<Option<Request>, HelpDeskError>;

    /// An anonymous portal visitor gave this email: make them a customer of the help desk
    /// (Jira: a service-desk customer). The local help desk has nothing to do.
    async fn ensure_customer(
        &self,
        _tenant_id: &str,
        _email: &str,
        _display_name: Option<&str>,
    ) -> Result<(), HelpDeskError> {
        Ok(())
    }
}

pub mod kb;
pub mod local;

/// The help desk the configuration asks for. The local one loads its knowledge base into
/// the database first (`helpdesk.kb_dir`, or the built-in examples).
pub async fn start(
    config: &crate::config::Config,
    store: &crate::store::Store,
) -> Result<std::sync::Arc<dyn HelpDesk>, crate::store::StoreError> {
    if let Some(jira) = config.jira.as_ref().filter(|j| j.base_url.is_some()) {
        match jira::JiraHelpDesk::from_config(jira) {
            Ok(hd) => {
                tracing::info!("help desk: Jira Service Management");
                return Ok(std::sync::Arc::new(hd));
            }
            // Validated with the config; should it still fail, the local help desk answers.
            Err(e) => tracing::error!(error = %e, "Jira help desk not started"),
        }
    }
    match kb::load(config.helpdesk.kb_dir.as_deref()) {
        Ok(docs) => {
            let sync = store.sync_kb(&docs).await?;
            tracing::info!(
                articles = docs.len(),
                added = sync.added,
                updated = sync.updated,
                removed = sync.removed,
                "knowledge base loaded"
            );
        }
        // The articles already in the database keep answering.
        Err(e) => tracing::error!(error = %e, "knowledge base not loaded"),
    }
    Ok(std::sync::Arc::new(local::LocalHelpDesk::new(
        store.clone(),
        config.server.public_url.clone(),
    )))
}
