//! The local help desk (the default): articles searched with the database's own full-text
//! search, requests kept in the database.

use super::{Article, HelpDesk, HelpDeskError, NewRequest, Request};
use crate::store::helpdesk::StoredRequest;
use crate::store::{Store, StoreError};
use std::collections::HashSet;

pub struct LocalHelpDesk {
    store: Store,
    /// `server.public_url`, for article links (`{public_url}/kb/{slug}`).
    public_url: String,
    vocabulary: tokio::sync::Mutex<Vocabulary>,
}

/// Every word start (2 to 5 characters) in the knowledge base, so a question none of whose
/// words can match is answered without asking the database. Checked against the database's
/// article count and last change every few seconds (another replica may have reloaded).
#[derive(Default)]
struct Vocabulary {
    version: Option<(i64, i64)>,
    checked: Option<std::time::Instant>,
    generation: u64,
    words: std::sync::Arc<Words>,
}

/// The knowledge base's word starts: all of them, and each article's (by slug), so checking
/// how much of a question an article covers costs lookups, not a pass over its text.
#[derive(Default)]
struct Words {
    all: HashSet<String>,
    by_article: std::collections::HashMap<String, HashSet<String>>,
    /// Each article's paragraphs as plain text, for excerpts (by slug).
    paragraphs: std::collections::HashMap<String, Vec<Paragraph>>,
}

const VOCABULARY_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The word starts (2 to 5 characters) of a text, lowercase.
fn word_starts(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.replace('\'', "").to_lowercase())
        .flat_map(|w| {
            let chars: Vec<char> = w.chars().take(5).collect();
            (2..=chars.len())
                .map(|n| chars[..n].iter().collect::<String>())
                .collect::<Vec<_>>()
        })
}

impl LocalHelpDesk {
    pub fn new(store: Store, public_url: String) -> LocalHelpDesk {
        LocalHelpDesk {
            store,
            public_url,
            vocabulary: tokio::sync::Mutex::new(Vocabulary::default()),
        }
    }

    async fn vocabulary(&self) -> Result<std::sync::Arc<Words>, StoreError> {
        let mut v = self.vocabulary.lock().await;
        let generation = self.store.kb_generation();
        let reloaded_here = v.generation != generation;
        if reloaded_here || v.checked.is_none_or(|t| t.elapsed() > VOCABULARY_CHECK) {
            v.generation = generation;
            let version = self.store.kb_version().await?;
            if reloaded_here || v.version != Some(version) {
                let mut words = Words::default();
                for (slug, title, body) in self.store.kb_texts().await? {
                    let starts = article_starts(&title, &body);
                    words.all.extend(starts.iter().cloned());
                    words.paragraphs.insert(slug.clone(), paragraphs(&body));
                    words.by_article.insert(slug, starts);
                }
                v.words = std::sync::Arc::new(words);
                v.version = Some(version);
            }
            v.checked = Some(std::time::Instant::now());
        }
        Ok(v.words.clone())
    }
}

/// Words that say nothing about what someone needs.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but",
    "by", "can", "cannot", "cant", "could", "did", "do", "does", "doing", "dont", "for", "from",
    "get", "got", "had", "has", "have", "having", "he", "hello", "help", "her", "hi", "him", "his",
    "how", "i", "if", "im", "in", "into", "is", "isnt", "it", "its", "ive", "just", "keep", "me",
    "mine", "more", "my", "myself", "need", "no", "not", "of", "on", "or", "our", "please", "so",
    "some", "still", "than", "thanks", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "to", "too", "up", "us", "use", "very", "want", "was", "we", "were", "what",
    "when", "where", "which", "who", "why", "will", "with", "wont", "would", "you", "your",
];

/// The words of a question worth searching for: lowercase letters and digits, no stopwords,
/// each once, at most 16.
pub fn search_terms(question: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in question
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.replace('\'', "").to_lowercase())
    {
        if word.chars().count() < 2 || STOPWORDS.contains(&word.as_str()) || out.contains(&word) {
            continue;
        }
        out.push(word);
        if out.len() == 16 {
            break;
        }
    }
    out
}

/// A term's stem-ish prefix: enough to find `passwords` in `password`.
fn root(term: &str) -> String {
    term.chars().take(5).collect()
}

/// How many of `terms` the article mentions (a word of it starts like the term).
fn coverage(terms: &[String], starts: &HashSet<String>) -> usize {
    terms.iter().filter(|t| starts.contains(&root(t))).count()
}

fn article_starts(title: &str, body: &str) -> HashSet<String> {
    word_starts(title).chain(word_starts(body)).collect()
}

/// Markdown to plain text, good enough for an excerpt: no emphasis, code marks, headings or
/// link targets.
fn plain(md: &str) -> String {
    let re = regex_link();
    let s = re.replace_all(md, "$1");
    s.replace(['*', '`', '_'], "")
        .trim_start_matches(['#', ' ', '>', '-'])
        .trim()
        .to_string()
}

fn regex_link() -> &'static regex::Regex {
    static RE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("regex"));
    &RE
}

/// A paragraph of an article as plain text, and in lowercase to match words against.
struct Paragraph {
    text: String,
    lower: String,
}

fn paragraphs(body: &str) -> Vec<Paragraph> {
    body.split("\n\n")
        .map(|p| {
            p.lines()
                .map(plain)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .map(|text| Paragraph {
            lower: text.to_lowercase(),
            text,
        })
        .collect()
}

/// The paragraph that best shows why the article matched, shortened at a word boundary.
pub fn excerpt(body: &str, terms: &[String], max: usize) -> String {
    excerpt_of(&paragraphs(body), terms, max)
}

fn excerpt_of(paragraphs: &[Paragraph], terms: &[String], max: usize) -> String {
    let roots: Vec<String> = terms.iter().map(|t| root(t)).collect();
    // The first paragraph that mentions the most of the question's words.
    let mut best: Option<(usize, &Paragraph)> = None;
    for p in paragraphs {
        let n = roots
            .iter()
            .filter(|r| p.lower.contains(r.as_str()))
            .count();
        if best.is_none_or(|(m, _)| n > m) {
            best = Some((n, p));
        }
    }
    best.map(|(_, p)| shorten(&p.text, max)).unwrap_or_default()
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

fn unavailable(e: StoreError) -> HelpDeskError {
    HelpDeskError::Unavailable(e.to_string())
}

fn request(r: StoredRequest) -> Request {
    Request {
        key: r.key,
        summary: r.summary,
        status: r.status,
        reporter_email: r.reporter_email,
        reporter_person_id: r.reporter_person_id,
        url: None,
        comments: r.comments,
    }
}

#[async_trait::async_trait]
impl HelpDesk for LocalHelpDesk {
    async fn search(
        &self,
        _tenant_id: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Article>, HelpDeskError> {
        let terms = search_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // No article has a word starting like any of the question's: nothing can cover it.
        let words = self.vocabulary().await.map_err(unavailable)?;
        if !terms.iter().any(|t| words.all.contains(&root(t))) {
            return Ok(Vec::new());
        }
        let hits = self
            .store
            .search_kb(&terms, limit.max(1) * 3)
            .await
            .map_err(unavailable)?;
        // Full-text search matches any word; an answer must cover enough of the question
        // (a third of its words, at least one) to be worth showing.
        let needed = terms.len().div_ceil(3).max(1);
        // Articles far behind the best one are noise next to it.
        let best = hits.first().map(|h| h.score).unwrap_or(0.0);
        Ok(hits
            .iter()
            .filter(|h| {
                let covered = match words.by_article.get(&h.slug) {
                    Some(starts) => coverage(&terms, starts),
                    // Reloaded since the vocabulary was read.
                    None => coverage(&terms, &article_starts(&h.title, &h.body)),
                };
                covered >= needed && h.score >= best * 0.5
            })
            .take(limit)
            .map(|h| Article {
                url: Some(format!(
                    "{}/kb/{}",
                    self.public_url.trim_end_matches('/'),
                    h.slug
                )),
                excerpt: match words.paragraphs.get(&h.slug) {
                    Some(p) => excerpt_of(p, &terms, 200),
                    // Reloaded since the vocabulary was read.
                    None => excerpt(&h.body, &terms, 200),
                },
                id: h.slug.clone(),
                title: h.title.clone(),
                score: h.score,
            })
            .collect())
    }

    async fn create_request(&self, new: NewRequest) -> Result<Request, HelpDeskError> {
        self.store
            .create_request(
                &new.tenant_id,
                &new.summary,
                &new.description,
                Some(new.reporter.id),
                new.reporter.email.as_deref(),
            )
            .await
            .map(request)
            .map_err(unavailable)
    }

    async fn request(&self, tenant_id: &str, key: &str) -> Result<Option<Request>, HelpDeskError> {
        self.store
            .request_by_key(tenant_id, key)
            .await
            .map(|r| r.map(request))
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::helpdesk::KbHit;

    #[test]
    fn search_terms_drop_small_words_and_repeats() {
        let cases: &[(&str, &[&str])] = &[
            ("How do I reset my password?", &["reset", "password"]),
            (
                "VPN error 0x800F081F, VPN again",
                &["vpn", "error", "0x800f081f", "again"],
            ),
            ("hello, how are you?", &[]),
            ("I can't open Outlook", &["open", "outlook"]),
        ];
        for (q, want) in cases {
            assert_eq!(search_terms(q), *want, "{q}");
        }
    }

    #[test]
    fn a_term_covers_an_article_only_from_the_start_of_a_word() {
        let hit = KbHit {
            slug: "x".into(),
            title: "Request new hardware".into(),
            body: "Passwords expire yearly.".into(),
            score: 1.0,
        };
        let starts = article_starts(&hit.title, &hit.body);
        let cov = |q: &str| coverage(&search_terms(q), &starts);
        assert_eq!(
            cov("question"),
            0,
            "`quest` is inside `request`, not its start"
        );
        assert_eq!(cov("my password"), 1);
        assert_eq!(cov("requests for hardware"), 2);
    }

    #[test]
    fn excerpt_picks_the_matching_paragraph_as_plain_text() {
        let body =
            "Intro paragraph.\n\n**Error 0x800F081F**: the [client](http://x) is `old`.\n\nOther.";
        let terms = search_terms("error 0x800F081F");
        assert_eq!(
            excerpt(body, &terms, 200),
            "Error 0x800F081F: the client is old."
        );
        let long = "word ".repeat(100);
        let e = excerpt(&long, &terms, 30);
        assert!(e.ends_with('…') && e.chars().count() <= 31, "{e}");
    }
}
