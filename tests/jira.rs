//! Jira Service Management against a local fake Jira (axum on 127.0.0.1, port 0) that records
//! every call: exact paths, query strings, headers and JSON bodies; answers parsed right;
//! errors typed (401, 404, 429 with a short and a long wait, 500, a closed port); the
//! directory (a local person wins, then Jira users, then customers) and the core choosing it.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{Portal, Running, TestDb};
use koji::config::{Config, JiraConfig, Secret};
use koji::directory::{Directory, Listing, LocalDirectory};
use koji::domain::{PersonKind, PersonRef};
use koji::helpdesk::jira::{JiraClient, JiraDirectory, JiraError, JiraHelpDesk};
use koji::helpdesk::{HelpDesk, HelpDeskError, NewRequest};
use koji::store::StoreError;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EMAIL: &str = "koji@acme.test";
const TOKEN: &str = "s3cr3t-token";
/// `base64("koji@acme.test:s3cr3t-token")`
const BASIC: &str = "Basic a29qaUBhY21lLnRlc3Q6czNjcjN0LXRva2Vu";

#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

fn ok(body: Value) -> Canned {
    status(200, body)
}

fn status(status: u16, body: Value) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body,
    }
}

fn too_many(retry_after: &str) -> Canned {
    Canned {
        status: 429,
        headers: vec![("retry-after", retry_after.to_string())],
        body: json!({"errorMessages": ["Rate limit exceeded."]}),
    }
}

/// One call as the fake received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Answers by `METHOD path?query`, then by `METHOD path`; each route plays its answers in
/// order and repeats the last. Anything else is a 404.
#[derive(Default)]
struct Fake {
    routes: Mutex<HashMap<String, VecDeque<Canned>>>,
    seen: Mutex<Vec<Seen>>,
}

impl Fake {
    fn on(&self, route: &str, answers: Vec<Canned>) {
        self.routes
            .lock()
            .unwrap()
            .insert(route.to_string(), answers.into());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Calls to `path` (any method, any query).
    fn calls(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

async fn serve(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    fake.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers,
        body: serde_json::from_slice(&body).ok(),
    });
    let full = format!("{method} {path}?{}", query.unwrap_or_default());
    let short = format!("{method} {path}");
    let canned = {
        let mut routes = fake.routes.lock().unwrap();
        let queue = match routes.contains_key(&full) {
            true => routes.get_mut(&full),
            false => routes.get_mut(&short),
        };
        queue.map(|q| {
            if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q[0].clone()
            }
        })
    };
    let c = canned.unwrap_or_else(|| status(404, json!({"errorMessage": "no such route"})));
    let mut resp = if c.body.is_null() {
        StatusCode::from_u16(c.status).unwrap().into_response()
    } else {
        (
            StatusCode::from_u16(c.status).unwrap(),
            axum::Json(c.body.clone()),
        )
            .into_response()
    };
    for (k, v) in c.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

async fn fake_jira() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new().fallback(serve).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fake)
}

fn jira_config(base: &str) -> JiraConfig {
    JiraConfig {
        // A trailing slash is tolerated.
        base_url: Some(format!("{base}/")),
        email: Some(EMAIL.into()),
        api_token: Some(Secret(TOKEN.into())),
        service_desk_id: Some("7".into()),
        request_type_id: None,
    }
}

fn jira_toml(base: &str) -> String {
    format!(
        "[jira]\nbase_url = \"{base}\"\nemail = \"{EMAIL}\"\napi_token = \"{TOKEN}\"\nservice_desk_id = \"7\"\n"
    )
}

fn client(base: &str) -> JiraClient {
    JiraClient::new(&jira_config(base)).expect("client")
}

/// A port nothing listens on.
async fn closed_port_base() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn reporter(email: &str, kind: PersonKind) -> PersonRef {
    PersonRef {
        id: 42,
        name: Some("Carla Customer".into()),
        email: Some(email.into()),
        kind,
    }
}

const KB: &str = "/rest/servicedeskapi/knowledgebase/article";
const USERS: &str = "/rest/api/3/user/search";
const DESK_CUSTOMERS: &str = "/rest/servicedeskapi/servicedesk/7/customer";
const CUSTOMER: &str = "/rest/servicedeskapi/customer";
const REQUEST: &str = "/rest/servicedeskapi/request";
const REQUEST_TYPES: &str = "/rest/servicedeskapi/servicedesk/7/requesttype";

#[tokio::test]
async fn knowledge_base_search_sends_basic_auth_and_the_query_and_returns_plain_excerpts_in_jira_order()
 {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {KB}"),
        vec![ok(json!({
            "size": 3, "start": 0, "limit": 2, "isLastPage": true,
            "values": [
                {
                    "title": "Reset your @@@hl@@@VPN@@@endhl@@@ password",
                    "excerpt": "<p>Open the <b>@@@hl@@@VPN@@@endhl@@@</b> client &amp; choose <i>Reset</i>.</p><p>Then sign in.</p>",
                    "source": {"type": "confluence", "pageId": "8786177", "spaceKey": "IT"},
                    "content": {"iframeSrc": "https://acme.atlassian.net/rest/servicedeskapi/knowledgebase/article/view/8786177"},
                    "_links": {"self": "https://acme.atlassian.net/wiki/spaces/IT/pages/8786177"}
                },
                {
                    "title": "VPN drops every hour",
                    "excerpt": "Check the idle timeout",
                    "source": {"type": "confluence", "pageId": 99, "spaceKey": "IT"},
                    "content": {"iframeSrc": "https://acme.atlassian.net/rest/servicedeskapi/knowledgebase/article/view/99"}
                },
                {"title": "Third", "excerpt": "not wanted", "source": {"pageId": "3"}}
            ]
        }))],
    );
    let jira = client(&base);
    let found = jira.search_articles("reset vpn password", 2).await.unwrap();

    assert_eq!(found.len(), 2, "limit honoured: {found:?}");
    assert_eq!(found[0].title, "Reset your VPN password");
    assert_eq!(
        found[0].excerpt,
        "Open the VPN client & choose Reset. Then sign in."
    );
    assert_eq!(found[0].id, "IT/8786177");
    assert_eq!(
        found[0].url.as_deref(),
        Some("https://acme.atlassian.net/wiki/spaces/IT/pages/8786177"),
        "_links.self is preferred"
    );
    assert_eq!(found[1].title, "VPN drops every hour");
    assert_eq!(found[1].id, "IT/99");
    assert_eq!(
        found[1].url.as_deref(),
        Some("https://acme.atlassian.net/rest/servicedeskapi/knowledgebase/article/view/99"),
        "else the content's iframeSrc"
    );
    assert!(found[0].score > found[1].score, "best first, as Jira ranks");

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, KB);
    assert_eq!(
        seen[0].query.as_deref(),
        Some("query=reset+vpn+password&highlight=false&limit=2")
    );
    assert_eq!(seen[0].header("authorization"), Some(BASIC));
    assert_eq!(seen[0].header("accept"), Some("application/json"));

    // Through the port: the same answers.
    let desk = JiraHelpDesk::new(Arc::new(jira));
    let via_port = desk.search("acme", "reset vpn password", 1).await.unwrap();
    assert_eq!(via_port.len(), 1);
    assert_eq!(via_port[0].title, "Reset your VPN password");
}

#[tokio::test]
async fn a_request_is_created_with_the_first_request_type_fetched_once() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {REQUEST_TYPES}"),
        vec![ok(json!({
            "values": [
                {"id": "25", "name": "Get IT help", "serviceDeskId": "7"},
                {"id": "26", "name": "Report a bug", "serviceDeskId": "7"}
            ]
        }))],
    );
    fake.on(
        &format!("POST {REQUEST}"),
        vec![status(
            201,
            json!({
                "issueId": "107001",
                "issueKey": "IT-42",
                "requestTypeId": "25",
                "serviceDeskId": "7",
                "reporter": {"accountId": "qm:1", "emailAddress": "ivan@acme.test", "displayName": "Ivan"},
                "requestFieldValues": [
                    {"fieldId": "summary", "label": "What do you need?", "value": "VPN is down"},
                    {"fieldId": "description", "label": "Why?", "value": "Since 9am"}
                ],
                "currentStatus": {"status": "Waiting for support", "statusCategory": "NEW"},
                "_links": {
                    "jiraRest": "https://acme.atlassian.net/rest/api/2/issue/107001",
                    "web": "https://acme.atlassian.net/servicedesk/customer/portal/7/IT-42",
                    "self": "https://acme.atlassian.net/rest/servicedeskapi/request/107001"
                }
            }),
        )],
    );
    let desk = JiraHelpDesk::new(Arc::new(client(&base)));
    let new = NewRequest {
        tenant_id: "acme".into(),
        summary: "VPN is down".into(),
        description: "Since 9am".into(),
        reporter: reporter("ivan@acme.test", PersonKind::Internal),
    };
    let created = desk.create_request(new.clone()).await.unwrap();
    assert_eq!(created.key, "IT-42");
    assert_eq!(created.status, "Waiting for support");
    assert_eq!(created.summary, "VPN is down");
    assert_eq!(created.reporter_email.as_deref(), Some("ivan@acme.test"));
    assert_eq!(created.reporter_person_id, None);
    assert_eq!(
        created.url.as_deref(),
        Some("https://acme.atlassian.net/servicedesk/customer/portal/7/IT-42")
    );
    desk.create_request(new).await.unwrap();

    assert_eq!(
        fake.calls(REQUEST_TYPES).len(),
        1,
        "the request type is fetched once and kept"
    );
    let posts = fake.calls(REQUEST);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].method, "POST");
    assert_eq!(posts[0].header("authorization"), Some(BASIC));
    assert_eq!(
        posts[0].body,
        Some(json!({
            "serviceDeskId": "7",
            "requestTypeId": "25",
            "requestFieldValues": {"summary": "VPN is down", "description": "Since 9am"},
            "raiseOnBehalfOf": "ivan@acme.test"
        }))
    );
    assert!(
        fake.calls(DESK_CUSTOMERS).is_empty(),
        "staff are not made customers"
    );
}

#[tokio::test]
async fn a_configured_request_type_is_used_and_a_customer_reporter_is_made_a_customer_first() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {DESK_CUSTOMERS}"),
        vec![ok(json!({"values": [
            {"accountId": "qm:9", "emailAddress": "carla@customer.test", "displayName": "Carla"}
        ]}))],
    );
    fake.on(
        &format!("POST {REQUEST}"),
        vec![status(
            201,
            json!({"issueKey": "IT-43", "currentStatus": {"status": "Open"}}),
        )],
    );
    let mut cfg = jira_config(&base);
    cfg.request_type_id = Some("31".into());
    let desk = JiraHelpDesk::from_config(&cfg).unwrap();
    let created = desk
        .create_request(NewRequest {
            tenant_id: "acme".into(),
            summary: "Printer jam".into(),
            description: "Floor 2".into(),
            reporter: reporter("carla@customer.test", PersonKind::Customer),
        })
        .await
        .unwrap();
    assert_eq!(created.key, "IT-43");
    assert_eq!(created.status, "Open");
    assert_eq!(created.summary, "Printer jam", "the summary Koji sent");
    assert_eq!(created.url, None, "no link in the answer, none made up");

    assert!(fake.calls(REQUEST_TYPES).is_empty());
    let paths: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        paths,
        vec![format!("GET {DESK_CUSTOMERS}"), format!("POST {REQUEST}")]
    );
    assert_eq!(
        fake.calls(REQUEST)[0].body,
        Some(json!({
            "serviceDeskId": "7",
            "requestTypeId": "31",
            "requestFieldValues": {"summary": "Printer jam", "description": "Floor 2"},
            "raiseOnBehalfOf": "carla@customer.test"
        }))
    );
}

#[tokio::test]
async fn request_status_is_read_by_key_and_an_unknown_key_is_none() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {REQUEST}/IT-42"),
        vec![ok(json!({
            "issueKey": "IT-42",
            "requestFieldValues": [
                {"fieldId": "description", "value": "Since 9am"},
                {"fieldId": "summary", "value": "VPN is down"}
            ],
            "currentStatus": {"status": "Resolved"},
            "reporter": {"accountId": "qm:9", "emailAddress": "carla@customer.test"},
            "_links": {"web": "https://acme.atlassian.net/servicedesk/customer/portal/7/IT-42"}
        }))],
    );
    let desk = JiraHelpDesk::new(Arc::new(client(&base)));
    let r = desk.request("acme", "IT-42").await.unwrap().expect("found");
    assert_eq!(r.key, "IT-42");
    assert_eq!(r.summary, "VPN is down");
    assert_eq!(r.status, "Resolved");
    assert_eq!(r.reporter_email.as_deref(), Some("carla@customer.test"));
    assert_eq!(
        r.url.as_deref(),
        Some("https://acme.atlassian.net/servicedesk/customer/portal/7/IT-42")
    );

    // Not there: 404 → None. A key is one path segment, whatever it holds.
    assert_eq!(desk.request("acme", "IT-999").await.unwrap(), None);
    assert_eq!(desk.request("acme", "IT 1/../x?y").await.unwrap(), None);
    let paths: Vec<String> = fake.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        vec![
            format!("{REQUEST}/IT-42"),
            format!("{REQUEST}/IT-999"),
            format!("{REQUEST}/IT%201%2F..%2Fx%3Fy"),
        ]
    );
    assert!(fake.seen().iter().all(|s| s.query.is_none()));
}

#[tokio::test]
async fn only_an_exact_email_match_is_a_jira_user() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {USERS}?query=ana%40acme.test"),
        vec![ok(json!([
            {"accountId": "a:0", "accountType": "atlassian", "emailAddress": "ana@acme.test.evil", "displayName": "Not Ana"},
            {"accountId": "a:1", "accountType": "atlassian", "emailAddress": "Ana@ACME.test", "displayName": "Ana", "active": true}
        ]))],
    );
    fake.on(
        &format!("GET {USERS}?query=bob%40acme.test"),
        vec![ok(json!([
            {"accountId": "a:2", "accountType": "atlassian", "emailAddress": "bobby@acme.test"},
            {"accountId": "a:3", "accountType": "atlassian", "displayName": "Bob (email hidden)"}
        ]))],
    );
    fake.on(
        &format!("GET {USERS}?query=carla%40customer.test"),
        vec![ok(json!([
            {"accountId": "qm:9", "accountType": "customer", "emailAddress": "carla@customer.test"}
        ]))],
    );
    let jira = client(&base);
    let ana = jira.find_user("ana@acme.test").await.unwrap().expect("ana");
    assert_eq!(ana.account_id, "a:1");
    assert_eq!(ana.display_name.as_deref(), Some("Ana"));
    assert_eq!(jira.find_user("bob@acme.test").await.unwrap(), None);
    assert_eq!(
        jira.find_user("carla@customer.test").await.unwrap(),
        None,
        "a customer account is not a Jira user"
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.path == USERS));
    assert_eq!(seen[0].query.as_deref(), Some("query=ana%40acme.test"));
    assert_eq!(seen[0].header("authorization"), Some(BASIC));
}

#[tokio::test]
async fn a_customer_is_found_or_created_and_added_to_the_service_desk() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {DESK_CUSTOMERS}?query=carla%40customer.test"),
        vec![ok(json!({"values": [
            {"accountId": "qm:8", "emailAddress": "carla@customer.test.old"},
            {"accountId": "qm:9", "emailAddress": "Carla@Customer.test", "displayName": "Carla"}
        ]}))],
    );
    fake.on(
        &format!("GET {DESK_CUSTOMERS}"),
        vec![ok(json!({"values": []}))],
    );
    fake.on(
        &format!("POST {CUSTOMER}"),
        vec![status(
            201,
            json!({"accountId": "qm:new", "emailAddress": "new@customer.test", "displayName": "New Person"}),
        )],
    );
    fake.on(
        &format!("POST {DESK_CUSTOMERS}"),
        vec![status(204, Value::Null)],
    );
    let desk = JiraHelpDesk::new(Arc::new(client(&base)));

    // Already a customer: found, nothing created.
    let found = desk
        .client()
        .ensure_customer("carla@customer.test", Some("Carla"))
        .await
        .unwrap();
    assert_eq!(found.account_id, "qm:9");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, DESK_CUSTOMERS);
    assert_eq!(
        seen[0].query.as_deref(),
        Some("query=carla%40customer.test")
    );
    assert_eq!(seen[0].header("x-experimentalapi"), Some("opt-in"));
    assert_eq!(seen[0].header("authorization"), Some(BASIC));

    // New: created, then added to the service desk.
    desk.ensure_customer("acme", "new@customer.test", Some("New Person"))
        .await
        .unwrap();
    let seen = fake.seen();
    let tail: Vec<(String, String, Option<Value>)> = seen[1..]
        .iter()
        .map(|s| (s.method.clone(), s.path.clone(), s.body.clone()))
        .collect();
    assert_eq!(
        tail,
        vec![
            ("GET".into(), DESK_CUSTOMERS.into(), None),
            (
                "POST".into(),
                CUSTOMER.into(),
                Some(json!({"displayName": "New Person", "email": "new@customer.test"}))
            ),
            (
                "POST".into(),
                DESK_CUSTOMERS.into(),
                Some(json!({"accountIds": ["qm:new"]}))
            ),
        ]
    );
    assert_eq!(seen[1].query.as_deref(), Some("query=new%40customer.test"));
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.header("authorization") == Some(BASIC))
    );
}

#[tokio::test]
async fn an_existing_account_is_looked_up_instead_of_created_twice() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {DESK_CUSTOMERS}"),
        vec![ok(json!({"values": []}))],
    );
    fake.on(
        &format!("POST {CUSTOMER}"),
        vec![status(
            400,
            json!({"errorMessage": "An account already exists for this email", "i18nErrorMessage": {}}),
        )],
    );
    fake.on(
        &format!("GET {USERS}"),
        vec![ok(json!([
            {"accountId": "qm:old", "accountType": "customer", "emailAddress": "old@customer.test"}
        ]))],
    );
    fake.on(
        &format!("POST {DESK_CUSTOMERS}"),
        vec![status(204, Value::Null)],
    );
    let jira = client(&base);
    let account = jira
        .ensure_customer("old@customer.test", None)
        .await
        .unwrap();
    assert_eq!(account.account_id, "qm:old");
    let calls: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        vec![
            format!("GET {DESK_CUSTOMERS}"),
            format!("POST {CUSTOMER}"),
            format!("GET {DESK_CUSTOMERS}"),
            format!("GET {USERS}"),
            format!("POST {DESK_CUSTOMERS}"),
        ]
    );
    assert_eq!(
        fake.calls(CUSTOMER)[0].body,
        Some(json!({"displayName": "old@customer.test", "email": "old@customer.test"})),
        "no name given: the email stands in"
    );
    assert_eq!(
        fake.calls(DESK_CUSTOMERS)[2].body,
        Some(json!({"accountIds": ["qm:old"]}))
    );

    // A 400 that is not about an existing account keeps Jira's message.
    fake.on(&format!("GET {USERS}"), vec![ok(json!([]))]);
    fake.on(
        &format!("POST {CUSTOMER}"),
        vec![status(
            400,
            json!({"errorMessages": ["Email is invalid."], "errors": {"email": "must be an address"}}),
        )],
    );
    assert_eq!(
        jira.ensure_customer("bad@customer.test", None).await,
        Err(JiraError::Invalid(
            "Email is invalid.; email: must be an address".into()
        ))
    );
}

#[tokio::test]
async fn refused_credentials_and_server_errors_are_typed() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {KB}"),
        vec![
            status(401, json!({"errorMessages": ["Unauthorized"]})),
            status(403, json!({"errorMessages": ["Forbidden"]})),
            status(500, json!({"errorMessages": ["boom"]})),
            status(503, Value::Null),
        ],
    );
    let jira = Arc::new(client(&base));
    assert_eq!(
        jira.search_articles("vpn", 3).await,
        Err(JiraError::Unauthorized)
    );
    assert_eq!(
        jira.search_articles("vpn", 3).await,
        Err(JiraError::Unauthorized)
    );
    assert!(matches!(
        jira.search_articles("vpn", 3).await,
        Err(JiraError::Unavailable(r)) if r.contains("500")
    ));
    let desk = JiraHelpDesk::new(jira.clone());
    assert!(matches!(
        desk.search("acme", "vpn", 3).await,
        Err(HelpDeskError::Unavailable(r)) if r.contains("503")
    ));
    assert_eq!(fake.calls(KB).len(), 4, "errors are not retried");

    fake.on(&format!("GET {REQUEST}/IT-1"), vec![status(401, json!({}))]);
    assert_eq!(
        desk.request("acme", "IT-1").await,
        Err(HelpDeskError::Unauthorized)
    );
    fake.on(
        &format!("POST {REQUEST}"),
        vec![status(
            400,
            json!({"errorMessage": "The reporter is not a customer", "i18nErrorMessage": {}}),
        )],
    );
    let mut cfg = jira_config(&base);
    cfg.request_type_id = Some("25".into());
    let desk = JiraHelpDesk::from_config(&cfg).unwrap();
    let new = NewRequest {
        tenant_id: "acme".into(),
        summary: "s".into(),
        description: "d".into(),
        reporter: reporter("ivan@acme.test", PersonKind::Internal),
    };
    assert_eq!(
        desk.create_request(new).await,
        Err(HelpDeskError::Invalid(
            "The reporter is not a customer".into()
        ))
    );
}

#[tokio::test]
async fn a_short_rate_limit_is_waited_out_once_and_a_long_one_is_returned_at_once() {
    let (base, fake) = fake_jira().await;
    let path = format!("{REQUEST}/IT-7");
    fake.on(
        &format!("GET {path}"),
        vec![
            too_many("1"),
            ok(json!({"issueKey": "IT-7", "currentStatus": {"status": "Open"}})),
        ],
    );
    let jira = client(&base);
    let t = Instant::now();
    let r = jira
        .request("IT-7")
        .await
        .unwrap()
        .expect("found after retry");
    assert_eq!(r.status, "Open");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited as asked: {:?}",
        t.elapsed()
    );
    assert_eq!(fake.calls(&path).len(), 2, "retried once");

    // Short again and again: one retry only, then the wait is reported.
    fake.on(&format!("GET {path}"), vec![too_many("1")]);
    assert_eq!(
        jira.request("IT-7").await,
        Err(JiraError::RateLimited {
            retry_after_secs: 1
        })
    );
    assert_eq!(fake.calls(&path).len(), 4);

    // Long: not waited for.
    fake.on(&format!("GET {path}"), vec![too_many("120"), ok(json!({}))]);
    let t = Instant::now();
    assert_eq!(
        jira.request("IT-7").await,
        Err(JiraError::RateLimited {
            retry_after_secs: 120
        })
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(fake.calls(&path).len(), 5, "no retry");

    let desk = JiraHelpDesk::new(Arc::new(jira));
    fake.on(&format!("GET {path}"), vec![too_many("60")]);
    assert_eq!(
        desk.request("acme", "IT-7").await,
        Err(HelpDeskError::RateLimited {
            retry_after_secs: 60
        })
    );
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let base = closed_port_base().await;
    let jira = client(&base);
    match jira.search_articles("vpn", 3).await {
        Err(JiraError::Unavailable(reason)) => {
            assert!(reason.contains("cannot connect"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let desk = JiraHelpDesk::new(Arc::new(jira));
    assert!(matches!(
        desk.request("acme", "IT-1").await,
        Err(HelpDeskError::Unavailable(_))
    ));
}

#[test]
fn a_missing_key_is_named_and_the_token_never_shows() {
    let check = |cfg: JiraConfig, key: &str| {
        let e = JiraClient::new(&cfg).expect_err(key);
        assert_eq!(e.key, key);
        assert!(
            e.to_string()
                .contains(&format!("{key} is required when [jira] is set")),
            "{e}"
        );
    };
    let full = jira_config("http://127.0.0.1:9");
    check(
        JiraConfig {
            api_token: None,
            ..full.clone()
        },
        "jira.api_token",
    );
    check(
        JiraConfig {
            email: Some("  ".into()),
            ..full.clone()
        },
        "jira.email",
    );
    check(
        JiraConfig {
            base_url: None,
            ..full.clone()
        },
        "jira.base_url",
    );
    check(
        JiraConfig {
            service_desk_id: None,
            ..full.clone()
        },
        "jira.service_desk_id",
    );
    let e = JiraClient::new(&JiraConfig {
        base_url: Some("acme.atlassian.net".into()),
        ..full.clone()
    })
    .unwrap_err();
    assert_eq!(e.key, "jira.base_url");

    // Loading the configuration checks the same.
    let e = Config::from_toml("[jira]\nbase_url = \"https://acme.atlassian.net\"\nemail = \"k@acme.test\"\nservice_desk_id = \"1\"").unwrap_err();
    assert_eq!(e.key, "jira.api_token");
    assert!(e.to_string().contains("jira.api_token is required"), "{e}");

    let client = JiraClient::new(&full).unwrap();
    assert!(!format!("{client:?}").contains(TOKEN));
}

fn directory_with<'a>(
    run: &'a Running,
    base: &str,
) -> (JiraDirectory, &'a koji::conversation::TenantRuntime) {
    let dir = JiraDirectory::new(
        LocalDirectory {
            store: run.core.store.clone(),
        },
        Arc::new(client(base)),
    );
    (dir, run.core.tenant("acme").expect("demo tenant"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_asks_the_database_then_jira_users_then_customers() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {USERS}?query=dev%40contractor.test"),
        vec![ok(json!([
            {"accountId": "a:5", "accountType": "atlassian", "emailAddress": "dev@contractor.test"}
        ]))],
    );
    fake.on(
        &format!("GET {USERS}?query=carla%40customer.test"),
        vec![ok(json!([
            {"accountId": "qm:9", "accountType": "customer", "emailAddress": "carla@customer.test"}
        ]))],
    );
    fake.on(&format!("GET {USERS}"), vec![ok(json!([]))]);
    fake.on(
        &format!("GET {DESK_CUSTOMERS}?query=carla%40customer.test"),
        vec![ok(json!({"values": [
            {"accountId": "qm:9", "emailAddress": "carla@customer.test"}
        ]}))],
    );
    fake.on(
        &format!("GET {DESK_CUSTOMERS}"),
        vec![ok(json!({"values": []}))],
    );
    let db = TestDb::sqlite().await;
    let run = Running::start_with(&db, &jira_toml(&base)).await;
    let (dir, tenant) = directory_with(&run, &base);

    // The bootstrap admin is a person in the database: Jira is not asked.
    assert_eq!(
        dir.lookup(tenant, "admin@acme.test").await.unwrap(),
        Some(Listing {
            kind: PersonKind::Internal,
            is_person: true
        })
    );
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());

    assert_eq!(
        dir.lookup(tenant, "dev@contractor.test").await.unwrap(),
        Some(Listing {
            kind: PersonKind::Internal,
            is_person: false
        })
    );
    assert_eq!(
        dir.lookup(tenant, "carla@customer.test").await.unwrap(),
        Some(Listing {
            kind: PersonKind::Customer,
            is_person: false
        })
    );
    assert_eq!(
        dir.lookup(tenant, "nobody@elsewhere.test").await.unwrap(),
        None
    );
    // Unknown to Jira but in the tenant's internal domains: the local rule stands.
    assert_eq!(
        dir.lookup(tenant, "new@acme.test").await.unwrap(),
        Some(Listing {
            kind: PersonKind::Internal,
            is_person: false
        })
    );
    let customer_lookups = fake.calls(DESK_CUSTOMERS);
    assert!(
        customer_lookups
            .iter()
            .all(|s| s.header("x-experimentalapi") == Some("opt-in"))
    );
    assert_eq!(
        customer_lookups.len(),
        3,
        "a Jira user is not also looked up as a customer"
    );
    run.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_jira_is_down_the_directory_says_so_but_local_people_still_resolve() {
    let (base, _fake) = fake_jira().await;
    let db = TestDb::sqlite().await;
    let run = Running::start_with(&db, &jira_toml(&base)).await;
    let (dir, tenant) = directory_with(&run, &closed_port_base().await);

    match dir.lookup(tenant, "carla@customer.test").await {
        Err(StoreError::Unavailable(reason)) => {
            assert!(reason.contains("Jira"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        dir.lookup(tenant, "admin@acme.test").await.unwrap(),
        Some(Listing {
            kind: PersonKind::Internal,
            is_person: true
        })
    );
    run.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jira_configured_the_core_asks_jira_about_a_portal_visitors_email() {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {USERS}"),
        vec![status(500, json!({"errorMessages": ["down"]}))],
    );
    let db = TestDb::sqlite().await;
    let p = Portal::start(&db, &jira_toml(&base)).await;
    let (token, _) = p.session().await;
    let (_, v) = p.say(&token, "visitor@example.org").await;
    assert!(
        Portal::text(&v).contains("couldn't check"),
        "the Jira directory answered, and it was down: {v}"
    );
    let asked = fake.calls(USERS);
    assert_eq!(asked.len(), 1, "{:?}", fake.seen());
    assert_eq!(
        asked[0].query.as_deref(),
        Some("query=visitor%40example.org")
    );
    assert_eq!(asked[0].header("authorization"), Some(BASIC));
    p.stop().await;
    db.cleanup().await;
}

/// With `[jira]` set, the conversation's help comes from Jira: articles, a request raised on
/// the person's behalf, its status, a portal visitor made a customer; Jira down → a clear
/// answer and nothing created.
async fn with_jira_configured_the_conversation_answers_from_jira(db: &TestDb) {
    let (base, fake) = fake_jira().await;
    fake.on(
        &format!("GET {KB}"),
        vec![ok(json!({"values": [{
            "title": "Reset a password",
            "excerpt": "Use the @@@hl@@@reset@@@endhl@@@ page.",
            "source": {"type": "confluence", "pageId": "1", "spaceKey": "IT"},
            "content": {"iframeSrc": "https://jira.test/kb/1"}
        }]}))],
    );
    fake.on(
        &format!("GET {REQUEST_TYPES}"),
        vec![ok(json!({"values": [{"id": "25", "name": "Get IT help"}]}))],
    );
    fake.on(&format!("GET {USERS}"), vec![ok(json!([]))]);
    fake.on(
        &format!("GET {DESK_CUSTOMERS}"),
        vec![ok(json!({"values": []}))],
    );
    fake.on(
        &format!("POST {CUSTOMER}"),
        vec![ok(
            json!({"accountId": "qm:1", "emailAddress": "x", "displayName": "x"}),
        )],
    );
    fake.on(
        &format!("POST {DESK_CUSTOMERS}"),
        vec![status(204, Value::Null)],
    );
    fake.on(
        &format!("POST {REQUEST}"),
        vec![ok(json!({
            "issueKey": "IT-7",
            "requestFieldValues": [{"fieldId": "summary", "value": "I need a new laptop"}],
            "currentStatus": {"status": "Waiting for support"},
            "_links": {"web": "https://jira.test/servicedesk/customer/portal/7/IT-7"}
        }))],
    );
    fake.on(
        &format!("GET {REQUEST}/IT-7"),
        vec![ok(json!({
            "issueKey": "IT-7",
            "requestFieldValues": [{"fieldId": "summary", "value": "I need a new laptop"}],
            "currentStatus": {"status": "In progress"},
            "reporter": {"emailAddress": "bob@acme.test"},
            "_links": {"web": "https://jira.test/servicedesk/customer/portal/7/IT-7"}
        }))],
    );
    let k = Running::start_with(db, &jira_toml(&base)).await;
    let t = k
        .say_text("bob@acme.test", "how do I reset my password")
        .await;
    assert!(
        t.contains("Reset a password") && t.contains("Use the reset page"),
        "{t}"
    );
    assert!(t.contains("https://jira.test/kb/1"), "{t}");
    assert_eq!(
        fake.calls(KB)[0]
            .query
            .as_deref()
            .map(|q| q.contains("query=how")),
        Some(true)
    );

    k.say("bob@acme.test", "I need a new laptop").await;
    let t = k.say_text("bob@acme.test", "yes").await;
    assert!(t.contains("Created IT-7"), "{t}");
    let raised = fake.calls(REQUEST);
    assert_eq!(raised.len(), 1);
    let body = raised[0].body.clone().unwrap();
    assert_eq!(body["serviceDeskId"], "7");
    assert_eq!(body["requestTypeId"], "25");
    assert_eq!(body["requestFieldValues"]["summary"], "I need a new laptop");
    assert_eq!(body["raiseOnBehalfOf"], "bob@acme.test");

    let t = k.say_text("bob@acme.test", "status of IT-7").await;
    assert!(t.contains("In progress"), "{t}");
    // Not the reporter: nothing about it.
    let t = k.say_text("eve@acme.test", "status of IT-7").await;
    assert!(!t.contains("In progress") && !t.contains("laptop"), "{t}");

    // Jira down: a clear message, nothing created.
    fake.on(&format!("GET {KB}"), vec![status(503, Value::Null)]);
    let t = k.say_text("bob@acme.test", "vpn fails").await;
    assert!(t.contains("help desk is unavailable"), "{t}");
    fake.on(&format!("POST {REQUEST}"), vec![status(500, Value::Null)]);
    k.say("eve@acme.test", "I need a new monitor").await;
    let t = k.say_text("eve@acme.test", "yes").await;
    assert!(t.contains("Nothing was created"), "{t}");
    k.stop().await;

    // A portal visitor's email makes them a service-desk customer in Jira.
    let p = Portal::start(db, &jira_toml(&base)).await;
    let (token, _) = p.session().await;
    let (_, v) = p.say(&token, "visitor@example.org").await;
    assert!(Portal::text(&v).contains("Thanks!"), "{v}");
    let created = fake.calls(CUSTOMER);
    assert_eq!(created.len(), 1, "{:?}", fake.seen());
    assert_eq!(
        created[0].body.as_ref().unwrap()["email"],
        "visitor@example.org"
    );
    p.stop().await;
}

on_both_backends!(with_jira_configured_the_conversation_answers_from_jira);
