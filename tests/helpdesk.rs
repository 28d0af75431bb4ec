//! The local help desk (SPEC §4): knowledge-base answers from the database's full-text
//! search, requests with their status for the reporter or an operator, and the handoff to a
//! human — on SQLite and PostgreSQL.

mod common;

use common::{Running, TestDb, rows};
use koji::helpdesk::HelpDesk;
use koji::helpdesk::local::LocalHelpDesk;
use koji_channel::Attachment;

/// A knowledge base of our own, in a temporary folder.
fn kb_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn kb_config(dir: &tempfile::TempDir) -> String {
    format!("[helpdesk]\nkb_dir = {:?}\n", dir.path().to_str().unwrap())
}

/// The actions recorded on the replies of a person's history, newest first.
async fn actions_of(k: &Running, email: &str) -> Vec<String> {
    let v = k.report_json(&format!("user {email} --history 100")).await;
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["actions"].as_array().cloned().unwrap_or_default())
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

async fn articles_are_found_by_words_from_their_body_best_first(db: &TestDb) {
    let dir = kb_dir(&[
        (
            "printer.md",
            "# Printing\n\nTo add the office printer, open Settings → Printers and choose *floor-3*.\nPaper jams: open tray B.",
        ),
        (
            "toner.md",
            "# Replace the toner\n\nThe toner cartridge of the printer sits behind the front door. Printer toner is ordered by reception.",
        ),
        (
            "holidays.md",
            "# Holidays\n\nBook holidays in the HR portal before the end of March.",
        ),
        ("notes.txt", "# Not an article\n\nprinter toner"),
    ]);
    let k = Running::start_with(db, &kb_config(&dir)).await;
    let hd = LocalHelpDesk::new(k.core.store.clone(), "http://kb.test".into());
    assert_eq!(k.core.store.kb_count().await.unwrap(), 3, "only .md files");

    // A word that appears only in a body.
    let found = hd.search("acme", "paper jams", 3).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].title, "Printing");
    assert_eq!(found[0].url.as_deref(), Some("http://kb.test/kb/printer"));
    assert!(
        found[0].excerpt.contains("Paper jams"),
        "{}",
        found[0].excerpt
    );

    // Stemming: "cartridges" finds "cartridge"; the article about toner ranks first.
    let found = hd
        .search(
            "acme",
            "How do I replace toner cartridges in the printer?",
            3,
        )
        .await
        .unwrap();
    assert_eq!(found[0].title, "Replace the toner", "{found:?}");
    assert!(
        found.windows(2).all(|w| w[0].score >= w[1].score),
        "ranked: {found:?}"
    );
    assert!(!found.iter().any(|a| a.title == "Holidays"));

    // Nothing relevant, or only small words: nothing.
    assert!(
        hd.search("acme", "quantum chromodynamics", 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        hd.search("acme", "how do I do it?", 3)
            .await
            .unwrap()
            .is_empty()
    );
    // FTS syntax in a question is just text.
    assert!(
        hd.search("acme", "printer\" OR NEAR(* \"toner", 3)
            .await
            .is_ok()
    );

    // Reloading the folder: changed, removed and added articles.
    std::fs::write(
        dir.path().join("holidays.md"),
        "# Holidays\n\nBook holidays in the vacation planner.",
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("toner.md")).unwrap();
    std::fs::write(
        dir.path().join("vpn.md"),
        "# VPN\n\nConnect to vpn.acme.test",
    )
    .unwrap();
    let docs = koji::helpdesk::kb::load(Some(dir.path().to_str().unwrap())).unwrap();
    let sync = k.core.store.sync_kb(&docs).await.unwrap();
    assert_eq!(
        (sync.added, sync.updated, sync.removed, sync.unchanged),
        (1, 1, 1, 1)
    );
    assert!(hd.search("acme", "toner", 3).await.unwrap().is_empty());
    assert_eq!(
        hd.search("acme", "vacation planner", 3).await.unwrap()[0].title,
        "Holidays"
    );
    k.stop().await;
}

async fn a_question_gets_articles_and_did_this_help(db: &TestDb) {
    let k = Running::start(db).await;
    let replies = k
        .say("alice@acme.test", "How do I reset my password?")
        .await;
    assert_eq!(replies.len(), 1);
    let r = &replies[0];
    assert!(r.text.contains("Reset your password"), "{}", r.text);
    assert!(r.text.contains("/kb/reset-password"), "{}", r.text);
    assert!(
        r.attachments
            .iter()
            .any(|a| matches!(a, Attachment::Buttons { buttons } if buttons.iter().any(|b| b.value == "yes"))),
        "{r:?}"
    );
    let t = k.say_text("alice@acme.test", "yes").await;
    assert!(t.contains("Glad"), "{t}");
    // The actions are recorded on the replies.
    let actions = actions_of(&k, "alice@acme.test").await;
    assert!(actions.contains(&"kb_answer".to_string()), "{actions:?}");
    assert!(actions.contains(&"button".to_string()), "{actions:?}");

    // "No" offers a request; anything else is a new message.
    k.say("bob@acme.test", "outlook keeps asking for my password")
        .await;
    let t = k.say_text("bob@acme.test", "no").await;
    assert!(t.contains("create a request"), "{t}");
    let t = k.say_text("bob@acme.test", "hello").await;
    assert!(t.contains("Hello"), "{t}");
    let t = k.say_text("bob@acme.test", "yes").await;
    assert!(!t.contains("Created"), "the offer lapsed: {t}");

    // Someone who got an answer is not a visitor.
    let v = k.report_json("visitors --format json").await;
    assert!(common::row_of(&v, "alice@acme.test").is_none());
    k.stop().await;
}

async fn a_request_is_confirmed_created_and_its_status_read_back(db: &TestDb) {
    let k = Running::start(db).await;
    let t = k.say_text("alice@acme.test", "I need a new laptop").await;
    assert!(
        t.contains("I need a new laptop") && t.contains("yes/no"),
        "{t}"
    );
    let t = k.say_text("alice@acme.test", "yes").await;
    assert!(t.starts_with("Created REQ-1"), "{t}");

    // Cancelled: nothing created, the next key stays free.
    k.say("alice@acme.test", "create a request: monitor flickers")
        .await;
    let t = k.say_text("alice@acme.test", "cancel").await;
    assert!(t.contains("didn't create"), "{t}");
    // Without a summary, Koji asks for one.
    let t = k.say_text("bob@acme.test", "open a ticket").await;
    assert!(t.contains("What should the request say"), "{t}");
    let t = k
        .say_text("bob@acme.test", "The printer on floor 3 is jammed")
        .await;
    assert!(t.contains("The printer on floor 3 is jammed"), "{t}");
    let t = k.say_text("bob@acme.test", "yes").await;
    assert!(t.starts_with("Created REQ-2"), "{t}");

    let stored = k
        .core
        .store
        .request_by_key("acme", "REQ-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.summary, "I need a new laptop");
    assert_eq!(stored.status, "Open");
    assert_eq!(stored.reporter_email.as_deref(), Some("alice@acme.test"));
    assert!(
        k.core
            .store
            .request_by_key("acme", "REQ-3")
            .await
            .unwrap()
            .is_none()
    );

    // The reporter sees the status, with the latest comment.
    k.core
        .store
        .update_request(
            "acme",
            "REQ-1",
            Some("Waiting for approval"),
            Some(("Sam (service desk)", "Your manager must approve.")),
        )
        .await
        .unwrap();
    let t = k
        .say_text("alice@acme.test", "what's the status of req-1?")
        .await;
    assert!(
        t.contains("REQ-1") && t.contains("Waiting for approval"),
        "{t}"
    );
    assert!(t.contains("Your manager must approve."), "{t}");
    // Someone else does not, and learns nothing about it.
    let t = k.say_text("bob@acme.test", "status of REQ-1").await;
    assert!(!t.contains("laptop") && !t.contains("Waiting"), "{t}");
    assert!(t.contains("couldn't find"), "{t}");
    // An operator does.
    k.report_json("users").await;
    let tenant = k.core.cli_tenant(None).unwrap();
    let out = k
        .core
        .run_command(
            tenant,
            &koji::conversation::Actor::Operator,
            koji_channel::Channel::Console,
            koji::commands::parse("grant olivia@acme.test operator").unwrap(),
        )
        .await;
    assert!(format!("{out:?}").contains("operator"), "{out:?}");
    let t = k.say_text("olivia@acme.test", "status of REQ-1").await;
    assert!(t.contains("Waiting for approval"), "{t}");

    let actions = actions_of(&k, "alice@acme.test").await;
    assert_eq!(
        actions.iter().filter(|a| *a == "request_created").count(),
        1
    );
    assert!(actions.contains(&"request_status".to_string()));
    assert!(
        !actions_of(&k, "bob@acme.test")
            .await
            .contains(&"request_status".to_string())
    );

    // Export carries the person's requests; erasure removes them.
    let export = k
        .core
        .store
        .find_person("acme", "alice@acme.test")
        .await
        .unwrap()
        .unwrap();
    let v = k.core.store.export_person("acme", &export).await.unwrap();
    assert_eq!(v["requests"][0]["key"], "REQ-1");
    let actor = koji::conversation::Actor::Operator;
    k.core
        .erase(tenant, &actor, koji_channel::Channel::Console, &export)
        .await
        .unwrap();
    assert!(
        k.core
            .store
            .request_by_key("acme", "REQ-1")
            .await
            .unwrap()
            .is_none()
    );
    k.stop().await;
}

async fn an_operator_takes_over_and_releases_a_conversation(db: &TestDb) {
    let k = Running::start(db).await;
    let t = k
        .say_text("carol@acme.test", "I want to talk to a human")
        .await;
    assert!(t.contains("human agent"), "{t}");
    assert!(
        actions_of(&k, "carol@acme.test")
            .await
            .contains(&"handoff".to_string())
    );

    // A customer may not take over.
    let t = k
        .say_text("dave@acme.test", "/koji takeover carol@acme.test")
        .await;
    assert!(t.contains("permission"), "{t}");
    let t = k.say_text("dave@acme.test", "/koji takeover").await;
    assert!(t.contains("permission") && !t.contains("carol"), "{t}");
    // An operator sees who waits, with a button to take each over.
    let replies = k.say("admin@acme.test", "/koji takeover").await;
    assert!(
        replies[0].text.contains("carol@acme.test"),
        "{}",
        replies[0].text
    );
    assert!(
        replies[0].attachments.iter().any(|a| matches!(a,
            Attachment::Buttons { buttons } if buttons[0].value == "/koji takeover carol@acme.test")),
        "{replies:?}"
    );

    let t = k
        .say_text("admin@acme.test", "/koji takeover carol@acme.test")
        .await;
    assert!(t.contains("You're now answering carol@acme.test"), "{t}");
    // Carol's next exchange brings the operator's words; Koji no longer answers her.
    let t = k.say_text("carol@acme.test", "hello?").await;
    assert!(t.contains("has joined the conversation"), "{t}");
    assert!(!t.contains("I'm Koji"), "{t}");
    let t = k
        .say_text(
            "admin@acme.test",
            "Hi Carol, I'm resetting your VPN profile now.",
        )
        .await;
    assert!(
        t.contains("carol: hello?") || t.contains("carol@acme.test: hello?"),
        "{t}"
    );
    let t = k.say_text("carol@acme.test", "thank you").await;
    assert!(t.contains("resetting your VPN profile"), "{t}");
    assert!(!t.contains("welcome"), "{t}");

    let t = k.say_text("admin@acme.test", "/koji release").await;
    assert!(t.contains("Released carol@acme.test"), "{t}");
    assert!(
        t.contains("thank you"),
        "carol's last words reach the operator: {t}"
    );
    let t = k.say_text("carol@acme.test", "hello").await;
    assert!(t.contains("Koji is back") && t.contains("Hello"), "{t}");
    let t = k.say_text("admin@acme.test", "/koji release").await;
    assert!(t.contains("aren't answering anyone"), "{t}");
    let t = k.say_text("admin@acme.test", "/koji takeover").await;
    assert!(
        t.contains("Nobody is waiting"),
        "released conversations no longer wait: {t}"
    );

    // Everything was recorded in carol's history, operator messages included.
    let v = k.report_json("user carol@acme.test --history 50").await;
    let texts: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("resetting your VPN profile")),
        "{texts:?}"
    );
    let admin = k.report_json("user admin@acme.test --history 50").await;
    assert!(admin["history"].as_array().unwrap().iter().any(|h| {
        h["actions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "handoff"))
    }));

    // Nobody to take over: a clear answer.
    let t = k
        .say_text("admin@acme.test", "/koji takeover nobody@acme.test")
        .await;
    assert!(t.contains("No one"), "{t}");
    let _ = rows;
    k.stop().await;
}

on_both_backends!(
    articles_are_found_by_words_from_their_body_best_first,
    a_question_gets_articles_and_did_this_help,
    a_request_is_confirmed_created_and_its_status_read_back,
    an_operator_takes_over_and_releases_a_conversation,
);
