//! The conversation core and its reports, on SQLite and on PostgreSQL.

mod common;

use common::{Running, TestDb, platform, row_of, rows};
use koji_channel::{Attachment, Channel, ConversationError, Outcome};

async fn every_exchange_is_recorded_and_shows_in_the_reports(db: &TestDb) {
    let k = Running::start(db).await;
    assert!(
        k.say_text("alice@acme.test", "hello")
            .await
            .contains("Hello")
    );
    let r = k
        .say_text(
            "alice@acme.test",
            "How do I connect to the VPN? error 0x800F081F",
        )
        .await;
    assert!(!r.is_empty());
    k.say_text("alice@acme.test", "thanks").await;

    let users = k.report_json("users --format json").await;
    assert_eq!(users["report"], "users");
    assert_eq!(users["tenant"], "acme");
    assert_eq!(users["total"], 1);
    let alice = row_of(&users, "alice@acme.test").expect("alice listed");
    assert_eq!(alice["messages_in"], 3);
    assert_eq!(alice["messages_out"], 3);
    assert_eq!(alice["messages"], 6);
    assert_eq!(alice["sessions"], 1);
    assert_eq!(alice["channels"], serde_json::json!(["console"]));
    assert_eq!(alice["person"]["kind"], "internal");

    let user = k.report_json("user alice@acme.test").await;
    let history = user["history"].as_array().expect("history");
    assert_eq!(history.len(), 6);
    // Newest first: the reply to "thanks", then "thanks", … "hello" last.
    assert_eq!(history[0]["direction"], "out");
    assert_eq!(history[1]["text"], "thanks");
    assert_eq!(history[1]["intent"], "thanks");
    assert_eq!(history[5]["text"], "hello");
    assert_eq!(history[5]["intent"], "greeting");
    assert_eq!(history[3]["intent"], "question");
    assert_eq!(user["user"]["history"], user["history"]);
    let interests = user["interests"].as_array().expect("interests");
    let has = |kind: &str, value: &str| {
        interests
            .iter()
            .any(|i| i["type"] == kind && i["value"] == value && i["count"] == 1)
    };
    assert!(has("term", "VPN"), "{interests:?}");
    assert!(has("error_code", "0x800F081F"), "{interests:?}");
    assert_eq!(user["roles"], serde_json::json!(["customer"]));
    assert_eq!(user["identities"][0]["channel"], "console");
    assert_eq!(user["identities"][0]["auth_method"], "console");
    k.stop().await;
}

async fn people_who_only_made_small_talk_are_visitors(db: &TestDb) {
    let k = Running::start(db).await;
    for t in ["hello", "thanks", "bye"] {
        k.say("bob@example.org", t).await;
    }
    k.say("alice@acme.test", "hello").await;
    k.say("alice@acme.test", "my Outlook crashes on start")
        .await;
    let v = k.report_json("visitors").await;
    assert_eq!(v["total"], 1);
    let bob = row_of(&v, "bob@example.org").expect("bob is a visitor");
    assert_eq!(bob["messages_in"], 3);
    assert_eq!(bob["sessions"], 1);
    assert_eq!(bob["person"]["kind"], "customer");
    assert!(
        row_of(&v, "alice@acme.test").is_none(),
        "alice asked something"
    );
    // An admin whose very first words are the command is being helped by it: not a visitor.
    let answer = k.say_text("admin@acme.test", "/koji visitors").await;
    assert!(answer.contains("bob@example.org"), "{answer}");
    assert!(!answer.contains("admin@acme.test"), "{answer}");
    let v = k.report_json("visitors").await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(
        row_of(&v, "bob@example.org").unwrap()["person"]["name"],
        serde_json::Value::Null
    );

    // The listing shows people as they are now: a directory import renames bob and makes
    // him internal after he spoke, and both the full listing and the chat answer follow.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name,kind,roles\nbob@example.org,Bob Builder,internal,\n",
    )
    .unwrap();
    let t = k.core.cli_tenant(None).unwrap();
    let r = koji::directory::import_csv(&k.core.store, t, &file)
        .await
        .unwrap();
    assert_eq!(r.updated, 1);
    let v = k.report_json("visitors").await;
    let bob = row_of(&v, "bob@example.org").expect("still a visitor");
    assert_eq!(bob["person"]["name"], "Bob Builder", "{v}");
    assert_eq!(bob["person"]["kind"], "internal", "{v}");
    let answer = k.say_text("admin@acme.test", "/koji visitors").await;
    assert!(
        answer.contains("Bob Builder") || answer.contains("bob@example.org"),
        "{answer}"
    );
    // A newcomer's row carries their details from their first message on.
    k.say("dan@example.org", "hi").await;
    let v = k.report_json("visitors").await;
    let dan = row_of(&v, "dan@example.org").expect("dan is a visitor");
    assert_eq!(dan["person"]["kind"], "customer", "{v}");
    assert_eq!(dan["channels"], serde_json::json!(["console"]), "{v}");

    // An absurdly long name (6 kB) neither stops its owner talking nor breaks the listing,
    // which shows its first 200 characters; the person keeps the whole name.
    let long = "Ω".repeat(3000);
    std::fs::write(
        &file,
        format!("email,name,kind,roles\neve@example.org,{long},customer,\n"),
    )
    .unwrap();
    koji::directory::import_csv(&k.core.store, t, &file)
        .await
        .unwrap();
    assert!(
        k.say_text("eve@example.org", "hello")
            .await
            .contains("Hello")
    );
    let v = k.report_json("visitors").await;
    let eve = row_of(&v, "eve@example.org").expect("eve is a visitor");
    assert_eq!(eve["person"]["name"], "Ω".repeat(200), "listing");
    let eve = k
        .core
        .store
        .find_person("acme", "eve@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(eve.name.as_deref(), Some(long.as_str()));
    k.stop().await;
}

async fn a_replayed_platform_message_is_recorded_and_answered_once(db: &TestDb) {
    let k = Running::start(db).await;
    let m = || {
        platform(
            Channel::Slack,
            "U1",
            Some("carol@acme.test"),
            "Ev123",
            "where is my laptop?",
        )
    };
    assert!(matches!(k.core.handle(m()).await.unwrap(), Outcome::Replies(r) if r.len() == 1));
    assert_eq!(k.core.handle(m()).await.unwrap(), Outcome::Duplicate);

    // Concurrent deliveries of another id: exactly one is answered.
    let other = || {
        platform(
            Channel::Slack,
            "U1",
            Some("carol@acme.test"),
            "Ev124",
            "and my monitor?",
        )
    };
    let (a, b, c) = tokio::join!(
        k.core.handle(other()),
        k.core.handle(other()),
        k.core.handle(other())
    );
    let answered = [a, b, c]
        .into_iter()
        .filter(|o| matches!(o, Ok(Outcome::Replies(_))))
        .count();
    assert_eq!(answered, 1);

    // A second replica on the same database recognises the retry too.
    let replica = Running::start_on(db, "", k.clock.clone()).await;
    assert_eq!(replica.core.handle(m()).await.unwrap(), Outcome::Duplicate);
    // The same id on another channel is another message.
    let teams = platform(
        Channel::Teams,
        "29:x",
        Some("carol@acme.test"),
        "Ev123",
        "hello from teams",
    );
    assert!(matches!(
        replica.core.handle(teams).await.unwrap(),
        Outcome::Replies(_)
    ));

    let users = k.report_json("users").await;
    let carol = row_of(&users, "carol@acme.test").unwrap();
    assert_eq!(carol["messages_in"], 3);
    assert_eq!(carol["messages_out"], 3);
    replica.stop().await;
    k.stop().await;
}

async fn sessions_end_after_the_idle_timeout(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("dave@example.org", "hello").await;
    k.advance_minutes(20);
    k.say("dave@example.org", "still there?").await;
    let s = k.report_json("sessions").await;
    assert_eq!(s["total"], 1);
    let first = rows(&s)[0]["session_id"].clone();
    assert_eq!(rows(&s)[0]["auth_method"], "console");
    assert_eq!(rows(&s)[0]["login_id"], "dave@example.org");
    assert_eq!(rows(&s)[0]["person"]["email"], "dave@example.org");

    k.advance_minutes(31);
    assert_eq!(
        k.report_json("sessions").await["total"],
        0,
        "idle sessions are not active"
    );
    k.say("dave@example.org", "back again").await;
    let s = k.report_json("sessions").await;
    assert_eq!(s["total"], 1);
    assert_ne!(rows(&s)[0]["session_id"], first, "a new session started");
    let users = k.report_json("users").await;
    assert_eq!(row_of(&users, "dave@example.org").unwrap()["sessions"], 2);
    k.advance_minutes(1);
    k.say("erin@example.org", "hello").await;
    let s = k.report_json("sessions").await;
    assert_eq!(s["total"], 2);
    assert_eq!(
        rows(&s)[0]["person"]["email"],
        "erin@example.org",
        "latest first"
    );
    assert_eq!(rows(&s)[0]["person"]["kind"], "customer");
    assert_eq!(rows(&s)[1]["person"]["email"], "dave@example.org");

    // The sweeper ends idle sessions for good.
    k.advance_minutes(31);
    assert_eq!(k.core.sweep_idle_sessions().await.unwrap(), 2);
    k.stop().await;
}

async fn reports_in_chat_need_the_reports_permission(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("erin@example.org", "hello").await;
    let refused = k.say("erin@example.org", "/koji users").await;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].private);
    assert!(
        refused[0].text.contains("permission"),
        "{}",
        refused[0].text
    );
    assert!(
        !refused[0].text.contains("erin@example.org"),
        "no report data leaks"
    );
    assert!(refused[0].attachments.is_empty());

    // admin@acme.test is a bootstrap admin of the demo tenant.
    let ok = k.say("admin@acme.test", "/koji users --top 5").await;
    assert!(ok[0].text.contains("erin@example.org"), "{}", ok[0].text);
    assert!(matches!(&ok[0].attachments[0], Attachment::Table(t) if t.rows.len() == 2));

    let json = k.say("admin@acme.test", "/koji users --format json").await;
    match &json[0].attachments[0] {
        Attachment::Document {
            content,
            media_type,
            ..
        } => {
            assert_eq!(media_type, "application/json");
            let v: serde_json::Value = serde_json::from_str(content).unwrap();
            assert_eq!(v["report"], "users");
        }
        other => panic!("{other:?}"),
    }

    let usage = k
        .say_text("admin@acme.test", "/koji users --since soon")
        .await;
    assert!(
        usage.contains("not a duration") && usage.contains("usage: /koji users"),
        "{usage}"
    );
    let unknown = k.say_text("admin@acme.test", "/koji frobnicate").await;
    assert!(unknown.contains("unknown command"), "{unknown}");
    let help = k.say_text("erin@example.org", "/koji help").await;
    assert!(help.contains("/koji visitors"), "{help}");

    // The refusal is recorded like any exchange.
    let erin = k.report_json("user erin@example.org").await;
    let history = erin["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["text"] == "/koji users" && h["intent"] == "command")
    );
    assert!(
        history
            .iter()
            .any(|h| h["direction"] == "out" && h["text"].as_str().unwrap().contains("permission"))
    );
    k.stop().await;
}

async fn anonymous_speakers_are_offered_sign_in_and_refused_commands(db: &TestDb) {
    let k = Running::start(db).await;
    let m = |id: &str, text: &str| platform(Channel::Slack, "U999", None, id, text);
    let Outcome::Replies(r) = k.core.handle(m("e1", "my VPN is broken")).await.unwrap() else {
        panic!()
    };
    assert!(r[0].text.contains("sign in"), "{}", r[0].text);
    let Outcome::Replies(r) = k.core.handle(m("e2", "/koji sessions")).await.unwrap() else {
        panic!()
    };
    assert!(r[0].text.contains("sign in"), "{}", r[0].text);
    let s = k.report_json("sessions").await;
    assert_eq!(rows(&s)[0]["person"], serde_json::Value::Null);
    assert_eq!(rows(&s)[0]["auth_method"], "anonymous");
    assert_eq!(rows(&s)[0]["login_id"], "U999");
    assert_eq!(
        k.report_json("users").await["total"],
        0,
        "anonymous identities are not people"
    );
    k.stop().await;
}

async fn periods_count_only_what_happened_in_them(db: &TestDb) {
    periods_case(db, 2000).await;
}

/// The same, with period figures read from the whole window rather than person by person.
async fn periods_count_the_same_when_read_for_the_whole_window(db: &TestDb) {
    periods_case(db, 0).await;
}

async fn periods_case(db: &TestDb, window_threshold: usize) {
    let k = Running::start(db).await;
    k.core.store.set_window_threshold(window_threshold);
    // Ten days ago: frank asks twice, gina only says hello.
    let now = k.clock.clone();
    let start = common::T0;
    now.set(start - 10 * 86_400_000_000);
    k.say("frank@example.org", "printer jam again").await;
    k.say("frank@example.org", "and the scanner").await;
    k.say("gina@example.org", "hello").await;
    // Today: frank only says hello; gina asks something.
    now.set(start);
    k.say("frank@example.org", "hello").await;
    k.say("gina@example.org", "how do I reset my password?")
        .await;
    k.say("gina@example.org", "it says error 1603").await;

    let week = k.report_json("users --since 7d").await;
    assert_eq!(week["total"], 2);
    assert_eq!(
        row_of(&week, "frank@example.org").unwrap()["messages_in"],
        1
    );
    assert_eq!(row_of(&week, "gina@example.org").unwrap()["messages_in"], 2);
    assert_eq!(
        rows(&week)[0]["person"]["email"],
        "gina@example.org",
        "busiest first"
    );
    let month = k.report_json("users --since 30d").await;
    assert_eq!(
        row_of(&month, "frank@example.org").unwrap()["messages_in"],
        3
    );
    assert_eq!(row_of(&month, "frank@example.org").unwrap()["sessions"], 2);

    // In the last week frank only made small talk: a visitor there, not over the month.
    let v_week = k.report_json("visitors --since 7d").await;
    assert!(row_of(&v_week, "frank@example.org").is_some(), "{v_week}");
    assert!(row_of(&v_week, "gina@example.org").is_none());
    let v_month = k.report_json("visitors --since 30d").await;
    assert_eq!(v_month["total"], 0, "{v_month}");
    // Helped before the period, small talk in it: listed with the period's figures, both in
    // full and in the chat answer.
    assert_eq!(v_week["total"], 1, "{v_week}");
    let frank = row_of(&v_week, "frank@example.org").unwrap();
    assert_eq!(frank["messages_in"], 1, "{v_week}");
    assert_eq!(frank["person"]["kind"], "customer", "{v_week}");
    assert_eq!(
        frank["channels"],
        serde_json::json!(["console"]),
        "{v_week}"
    );
    let answer = k
        .say_text("admin@acme.test", "/koji visitors --since 7d")
        .await;
    assert!(answer.contains("frank@example.org"), "{answer}");
    assert!(!answer.contains("gina@example.org"), "{answer}");

    // Twelve hours ago is inside a partial first day of a 1-day window.
    now.set(start - 12 * 3_600_000_000);
    k.say("hank@example.org", "vpn drops").await;
    now.set(start);
    let day = k.report_json("users --since 1d").await;
    assert_eq!(row_of(&day, "hank@example.org").unwrap()["messages_in"], 1);
    let hour = k.report_json("users --since 1h").await;
    assert!(row_of(&hour, "hank@example.org").is_none());
    k.stop().await;
}

async fn top_n_lists_the_busiest_and_channels_filter(db: &TestDb) {
    let k = Running::start(db).await;
    for (who, n) in [
        ("a@example.org", 1),
        ("b@example.org", 4),
        ("c@example.org", 2),
        ("d@example.org", 3),
    ] {
        for i in 0..n {
            k.say(who, &format!("question number {i}")).await;
        }
    }
    let slack = platform(
        Channel::Slack,
        "U7",
        Some("a@example.org"),
        "s1",
        "from slack",
    );
    k.core.handle(slack).await.unwrap();
    let top = k.report_json("users --top 2").await;
    assert_eq!(top["total"], 4);
    let emails: Vec<_> = rows(&top)
        .iter()
        .map(|r| r["person"]["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(emails, ["b@example.org", "d@example.org"]);
    let s = k.report_json("users --channel slack").await;
    assert_eq!(s["total"], 1);
    assert_eq!(rows(&s)[0]["messages_in"], 1);
    let a = k.report_json("users").await;
    let a = row_of(&a, "a@example.org").unwrap();
    assert_eq!(a["channels"], serde_json::json!(["console", "slack"]));
    assert_eq!(a["messages_in"], 2);
    k.stop().await;
}

async fn people_are_found_by_email_id_identity_and_mention(db: &TestDb) {
    let k = Running::start(db).await;
    k.core
        .handle(platform(
            Channel::Slack,
            "U0123",
            Some("ivy@example.org"),
            "m1",
            "hi",
        ))
        .await
        .unwrap();
    let tenant = "acme";
    let by_email = k
        .core
        .store
        .find_person(tenant, "IVY@example.org")
        .await
        .unwrap()
        .expect("by email");
    let id = by_email.id.to_string();
    for who in [id.as_str(), "slack:U0123", "<@U0123>", "<@U0123|ivy>"] {
        let p = k.core.store.find_person(tenant, who).await.unwrap();
        assert_eq!(p.map(|p| p.id), Some(by_email.id), "{who}");
    }
    for who in [
        "nobody@example.org",
        "slack:U9",
        "999999",
        "discord:U0123",
        "<@U9>",
        "just words",
    ] {
        assert!(
            k.core
                .store
                .find_person(tenant, who)
                .await
                .unwrap()
                .is_none(),
            "{who}"
        );
    }
    let tenant_rt = k.core.cli_tenant(None).unwrap();
    let cmd = koji::commands::parse("user nobody@example.org").unwrap();
    let out = k
        .core
        .run_command(
            tenant_rt,
            &koji::conversation::Actor::Operator,
            koji_channel::Channel::Console,
            cmd,
        )
        .await;
    assert!(
        matches!(out, koji::conversation::CommandOutput::NotFound(_)),
        "{out:?}"
    );
    k.stop().await;
}

async fn nothing_is_visible_across_tenants(db: &TestDb) {
    let extra = "[[tenants]]\nid = \"one\"\nslack_team_ids = [\"T1\"]\n[[tenants]]\nid = \"two\"\nslack_team_ids = [\"T2\"]\n";
    let k = Running::start_with(db, extra).await;
    let mut m = platform(
        Channel::Slack,
        "U1",
        Some("jo@example.org"),
        "x1",
        "my VPN fails",
    );
    m.tenant = koji_channel::TenantHint::SlackTeam("T1".into());
    k.core.handle(m).await.unwrap();
    let mut unknown = platform(Channel::Slack, "U1", Some("jo@example.org"), "x2", "hi");
    unknown.tenant = koji_channel::TenantHint::SlackTeam("T9".into());
    assert!(matches!(
        k.core.handle(unknown).await,
        Err(ConversationError::UnknownTenant(_))
    ));

    let run = |tenant: &'static str, words: &'static str| {
        let core = k.core.clone();
        async move {
            let t = core.tenant(tenant).unwrap();
            let cmd = koji::commands::parse(words).unwrap();
            core.run_command(
                t,
                &koji::conversation::Actor::Operator,
                koji_channel::Channel::Console,
                cmd,
            )
            .await
        }
    };
    let total = |out: koji::conversation::CommandOutput| match out {
        koji::conversation::CommandOutput::Report(r, _) => r.total,
        other => panic!("{other:?}"),
    };
    assert_eq!(total(run("one", "users").await), 1);
    assert_eq!(total(run("two", "users").await), 0);
    assert_eq!(total(run("two", "sessions").await), 0);
    assert!(matches!(
        run("two", "user jo@example.org").await,
        koji::conversation::CommandOutput::NotFound(_)
    ));
    assert!(
        k.core.cli_tenant(None).is_err(),
        "several tenants: --tenant is needed"
    );
    k.stop().await;
}

async fn a_database_outage_is_a_retryable_error_and_records_nothing(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("kim@example.org", "hello").await;
    k.core.store.close().await;
    let r = k
        .core
        .handle(common::console("kim@example.org", "are you there?"))
        .await;
    assert!(matches!(r, Err(ConversationError::Unavailable(_))), "{r:?}");
    let r = k
        .core
        .handle(common::console("lee@example.org", "hello"))
        .await;
    assert!(matches!(r, Err(ConversationError::Unavailable(_))), "{r:?}");
    k.stop().await;
    let again = Running::start(db).await;
    let users = again.report_json("users").await;
    assert_eq!(users["total"], 1);
    assert_eq!(row_of(&users, "kim@example.org").unwrap()["messages_in"], 1);
    again.stop().await;
}

async fn a_platform_message_not_recorded_in_an_outage_is_answered_when_retried(db: &TestDb) {
    let k = Running::start(db).await;
    let m = || {
        platform(
            Channel::Slack,
            "U5",
            Some("ola@example.org"),
            "Ev900",
            "is the VPN down?",
        )
    };
    k.core
        .handle(platform(
            Channel::Slack,
            "U5",
            Some("ola@example.org"),
            "Ev899",
            "hello",
        ))
        .await
        .unwrap();
    k.core.store.close().await;
    assert!(matches!(
        k.core.handle(m()).await,
        Err(ConversationError::Unavailable(_))
    ));
    k.stop().await;
    // The platform retries once the database is back: recorded and answered, once.
    let again = Running::start(db).await;
    assert!(matches!(again.core.handle(m()).await.unwrap(), Outcome::Replies(r) if r.len() == 1));
    assert_eq!(again.core.handle(m()).await.unwrap(), Outcome::Duplicate);
    let users = again.report_json("users").await;
    let ola = row_of(&users, "ola@example.org").unwrap();
    assert_eq!(ola["messages_in"], 2);
    assert_eq!(ola["messages_out"], 2);
    again.stop().await;
}

async fn a_long_report_in_chat_offers_every_row_as_a_file(db: &TestDb) {
    let k = Running::start(db).await;
    for i in 0..14 {
        k.say(&format!("p{i}@example.org"), "hello").await;
    }
    let replies = k.say("admin@acme.test", "/koji users --format text").await;
    let value = replies[0]
        .attachments
        .iter()
        .find_map(|a| match a {
            Attachment::Buttons { buttons } => Some(buttons[0].value.clone()),
            _ => None,
        })
        .expect("a button for the rows left out");
    assert_eq!(value, "/koji users --format csv");
    // Pressing it (the value comes back as a message) gives the whole report.
    let replies = k.say("admin@acme.test", &value).await;
    let csv = replies[0]
        .attachments
        .iter()
        .find_map(|a| match a {
            Attachment::Document { content, .. } => Some(content.clone()),
            _ => None,
        })
        .expect("a csv document");
    assert!(csv.lines().count() >= 15, "{csv}");
    // A short report offers nothing more.
    let replies = k
        .say("admin@acme.test", "/koji sessions --channel portal")
        .await;
    assert!(
        !replies[0]
            .attachments
            .iter()
            .any(|a| matches!(a, Attachment::Buttons { .. }))
    );
    k.stop().await;
}

/// The table a chat answer carries.
fn table_of(replies: &[koji_channel::Reply]) -> koji_channel::Table {
    replies[0]
        .attachments
        .iter()
        .find_map(|a| match a {
            Attachment::Table(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a table")
}

/// The people of a full (JSON) report, in its order.
fn people_of(report: &serde_json::Value) -> Vec<String> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r["person"]["email"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn chat_summaries_show_the_head_of_the_full_report_and_count_everyone(db: &TestDb) {
    let k = Running::start(db).await;
    for i in 0..14 {
        k.say(&format!("p{i}@example.org"), "hello").await;
    }
    k.say("alice@acme.test", "my Outlook crashes on start")
        .await;
    // The admin's first command is help given before any summary is asked for.
    k.say("admin@acme.test", "/koji help").await;
    for (chat, full) in [
        ("/koji visitors", "visitors"),
        ("/koji sessions", "sessions"),
        ("/koji users", "users"),
    ] {
        let table = table_of(&k.say("admin@acme.test", chat).await);
        let report = k.report_json(full).await;
        let total = report["total"].as_u64().unwrap();
        let everyone = people_of(&report);
        assert!(total >= 14, "{full}: {report}");
        assert_eq!(everyone.len() as u64, total, "{full}");
        assert_eq!(table.rows.len(), 10, "{full}");
        assert_eq!(
            table.more,
            total - 10,
            "{full}: the rows left out are counted"
        );
        assert!(
            table.summary[0].starts_with(&total.to_string()),
            "{full}: {:?} counts everyone ({total})",
            table.summary
        );
        if full != "users" {
            // Latest first: the summary is the full report's first rows.
            let shown: Vec<&str> = table.rows.iter().map(|r| r[0].as_str()).collect();
            assert_eq!(shown, everyone[..10].to_vec(), "{full}");
        }
    }
    let v = k.report_json("visitors").await;
    assert_eq!(
        v["total"], 14,
        "alice asked something; admin's commands are help"
    );
    k.stop().await;
}

async fn many_replays_at_once_are_each_told_apart(db: &TestDb) {
    let k = Running::start(db).await;
    let m = |i: usize| {
        platform(
            Channel::Slack,
            &format!("U{i}"),
            Some(&format!("u{i}@example.org")),
            &format!("EvMany{i}"),
            "hello",
        )
    };
    let first: Vec<_> = (0..40)
        .map(|i| {
            let core = k.core.clone();
            let msg = m(i);
            tokio::spawn(async move { core.handle(msg).await })
        })
        .collect();
    for t in first {
        assert!(matches!(t.await.unwrap().unwrap(), Outcome::Replies(_)));
    }
    // Replays of the even ones and first deliveries of 40 more, all at once: the duplicate
    // checks are answered together, each for its own id.
    let mixed: Vec<_> = (0..80)
        .filter(|i| i % 2 == 0 || *i >= 40)
        .map(|i| {
            let core = k.core.clone();
            let msg = m(i);
            (i, tokio::spawn(async move { core.handle(msg).await }))
        })
        .collect();
    for (i, t) in mixed {
        let out = t.await.unwrap().unwrap();
        if i < 40 {
            assert_eq!(out, Outcome::Duplicate, "EvMany{i} was answered before");
        } else {
            assert!(
                matches!(out, Outcome::Replies(_)),
                "EvMany{i} is new: {out:?}"
            );
        }
    }
    let users = k.report_json("users").await;
    assert_eq!(users["total"], 80);
    assert!(
        rows(&users).iter().all(|r| r["messages_in"] == 1),
        "each message recorded once: {users}"
    );
    k.stop().await;
}

/// Many conversations at once: the group commit takes them in big batches (SQLite then rolls
/// the figures up after the fact), and the reports still count every message exactly.
async fn a_burst_of_conversations_is_counted_exactly(db: &TestDb) {
    let k = Running::start(db).await;
    let mut tasks = Vec::new();
    for c in 0..120 {
        let core = k.core.clone();
        tasks.push(tokio::spawn(async move {
            for text in [
                "hello",
                "How do I connect to the VPN? error 0x800F081F",
                "thanks",
            ] {
                core.handle(common::console(&format!("b{c}@example.org"), text))
                    .await
                    .expect("handled");
            }
        }));
    }
    for t in tasks {
        t.await.expect("conversation");
    }
    let users = k.report_json("users --format json").await;
    assert_eq!(users["total"], 120, "{users}");
    let total: i64 = rows(&users)
        .iter()
        .map(|r| r["messages"].as_i64().expect("messages"))
        .sum();
    assert_eq!(total, 120 * 6);
    for c in [0, 57, 119] {
        let row = row_of(&users, &format!("b{c}@example.org")).expect("listed");
        assert_eq!(row["messages_in"], 3, "{row}");
        assert_eq!(row["messages"], 6, "{row}");
        assert_eq!(row["sessions"], 1, "{row}");
    }
    let user = k.report_json("user b57@example.org").await;
    let history = user["history"].as_array().expect("history");
    assert_eq!(history.len(), 6);
    assert_eq!(history[5]["text"], "hello");
    assert_eq!(history[1]["text"], "thanks");
    let interests = user["interests"].as_array().expect("interests");
    assert!(
        interests
            .iter()
            .any(|i| i["type"] == "term" && i["value"] == "VPN" && i["count"] == 1),
        "{interests:?}"
    );
    // Everyone asked something: nobody is a visitor.
    let visitors = k.report_json("visitors --format json").await;
    assert_eq!(visitors["total"], 0, "{visitors}");
    k.stop().await;
}

on_both_backends!(
    a_burst_of_conversations_is_counted_exactly,
    many_replays_at_once_are_each_told_apart,
    chat_summaries_show_the_head_of_the_full_report_and_count_everyone,
    a_long_report_in_chat_offers_every_row_as_a_file,
    a_platform_message_not_recorded_in_an_outage_is_answered_when_retried,
    every_exchange_is_recorded_and_shows_in_the_reports,
    people_who_only_made_small_talk_are_visitors,
    a_replayed_platform_message_is_recorded_and_answered_once,
    sessions_end_after_the_idle_timeout,
    reports_in_chat_need_the_reports_permission,
    anonymous_speakers_are_offered_sign_in_and_refused_commands,
    periods_count_only_what_happened_in_them,
    periods_count_the_same_when_read_for_the_whole_window,
    top_n_lists_the_busiest_and_channels_filter,
    people_are_found_by_email_id_identity_and_mention,
    nothing_is_visible_across_tenants,
    a_database_outage_is_a_retryable_error_and_records_nothing,
);

/// SQLite: what Koji commits reaches the database file itself while Koji keeps running, not
/// only its write-ahead log (the checkpointer beside the writer copies it back), so the log
/// stays short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_exchanges_reach_the_database_file_while_koji_runs() {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let db = TestDb::sqlite().await;
    let k = Running::start(&db).await;
    for i in 0..20 {
        k.say(&format!("w{i}@example.org"), "hello").await;
    }
    // `immutable` reads the main file only: nothing of the write-ahead log.
    let file_only = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
        .unwrap()
        .read_only(true)
        .immutable(true);
    let mut in_file = 0i64;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // A page being copied at that moment may read torn: try again.
        if let Ok(mut c) = file_only.connect().await
            && let Ok(n) = sqlx::query_scalar::<_, i64>("select count(*) from messages")
                .fetch_one(&mut c)
                .await
        {
            in_file = n;
        }
        if in_file >= 40 {
            break;
        }
    }
    assert!(
        in_file >= 40,
        "20 exchanges (40 messages) committed, {in_file} in the database file"
    );
    k.stop().await;
    db.cleanup().await;
}

/// The ids and session of the person with this email, for writing messages as Koji would.
async fn ids_of(pool: &sqlx::SqlitePool, email: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "select p.id, i.id, s.id from people p join identities i on i.person_id = p.id
         join sessions s on s.identity_id = i.id where p.email = $1",
    )
    .bind(email)
    .fetch_one(pool)
    .await
    .expect("person, identity and session")
}

fn inbound_row(
    ids: (i64, i64, i64),
    text: &str,
    entities: Vec<koji::nlu::Entity>,
) -> koji::store::MessageRow {
    koji::store::MessageRow {
        tenant_id: "acme".into(),
        session_id: ids.2,
        person_id: Some(ids.0),
        identity_id: ids.1,
        channel: Channel::Console,
        direction: koji::store::Direction::In,
        text: text.into(),
        intent: Some("question".into()),
        specific: true,
        entities,
        actions: Vec::new(),
        platform_msg_id: None,
        at: common::T0 + 60_000_000,
    }
}

/// SQLite: two processes on one database file (`koji serve` and `koji chat`, say) each write
/// messages; the rollups each brings up to date count both, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rollups_count_what_another_process_wrote() {
    let db = TestDb::sqlite().await;
    let k1 = Running::start(&db).await;
    let k2 = Running::start_on(&db, "", k1.clock.clone()).await;
    let mut tasks = Vec::new();
    for c in 0..40 {
        let core = if c % 2 == 0 {
            k1.core.clone()
        } else {
            k2.core.clone()
        };
        tasks.push(tokio::spawn(async move {
            for text in ["hello", "Outlook keeps asking for my password", "thanks"] {
                core.handle(common::console(&format!("m{}@example.org", c % 10), text))
                    .await
                    .expect("handled");
            }
        }));
    }
    for t in tasks {
        t.await.expect("conversation");
    }
    let koji::store::Pool::Sqlite(lite) = k1.core.store.pool() else {
        unreachable!()
    };
    for k in [&k1, &k2] {
        let users = k.report_json("users --format json").await;
        assert_eq!(users["total"], 10, "{users}");
        for c in 0..10 {
            let email = format!("m{c}@example.org");
            let row = row_of(&users, &email).expect("listed");
            // Four conversations per person, three messages each; and every reply.
            assert_eq!(row["messages_in"], 12, "{row}");
            let recorded: i64 = sqlx::query_scalar(
                "select count(*) from messages m join people p on p.id = m.person_id where p.email = $1",
            )
            .bind(&email)
            .fetch_one(lite)
            .await
            .expect("count");
            assert!(recorded > 12);
            assert_eq!(row["messages"], recorded, "{row}");
        }
        let user = k.report_json("user m3@example.org --history 100").await;
        let recorded = row_of(&users, "m3@example.org").expect("m3")["messages"].clone();
        assert_eq!(
            serde_json::json!(user["history"].as_array().expect("history").len()),
            recorded
        );
        let outlook = user["interests"]
            .as_array()
            .expect("interests")
            .iter()
            .find(|i| i["value"] == "Outlook")
            .cloned();
        assert_eq!(outlook.expect("Outlook")["count"], 4);
    }
    k2.stop().await;
    k1.stop().await;
    db.cleanup().await;
}

/// SQLite: a person erased while figures of their last messages wait to be rolled up does
/// not come back in the rollups (figures, interests, the index of their messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_erased_person_does_not_come_back_in_the_rollups() {
    use koji::store::{BatchWriter, Pool, RollPolicy};
    let db = TestDb::sqlite().await;
    let k = Running::start(&db).await;
    k.say("p@example.org", "hello").await;
    k.say("q@example.org", "hello").await;
    let pool = k.core.store.pool().clone();
    let Pool::Sqlite(lite) = &pool else {
        unreachable!()
    };
    let (p, q) = (
        ids_of(lite, "p@example.org").await,
        ids_of(lite, "q@example.org").await,
    );
    // A writer that holds the figures back until it is flushed.
    let (writer, task) = BatchWriter::start_with(pool.clone(), 64, RollPolicy::on_flush_only());
    let secret = koji::nlu::Entity {
        kind: "email".into(),
        value: "p.private@example.org".into(),
    };
    writer
        .write(
            vec![inbound_row(p, "mail p.private@example.org", vec![secret])],
            false,
        )
        .await
        .expect("p's message");
    writer
        .write(vec![inbound_row(q, "my VPN", Vec::new())], false)
        .await
        .expect("q's message");
    let person = k
        .core
        .store
        .find_person("acme", "p@example.org")
        .await
        .expect("lookup")
        .expect("p");
    let by = koji::store::people::Acting {
        label: "operator".into(),
        person_id: None,
        channel: Channel::Console,
    };
    k.core
        .store
        .erase_person("acme", &person, &by)
        .await
        .expect("erase")
        .expect("allowed");
    writer.flush().await.expect("rolled up");
    let count = |sql: &'static str, id: i64| {
        let lite = lite.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(id)
                .fetch_one(&lite)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count(
            "select count(*) from person_stats where person_id = $1",
            p.0
        )
        .await,
        0
    );
    assert_eq!(
        count("select count(*) from person_days where person_id = $1", p.0).await,
        0
    );
    assert_eq!(
        count("select count(*) from interests where person_id = $1", p.0).await,
        0
    );
    assert_eq!(
        count(
            "select count(*) from person_messages where person_id = $1",
            p.0
        )
        .await,
        0
    );
    // q's message held back by the same writer is counted.
    assert_eq!(
        count(
            "select messages_in from person_stats where person_id = $1 and channel = '*'",
            q.0
        )
        .await,
        2
    );
    assert_eq!(
        count(
            "select count(*) from person_messages where person_id = $1",
            q.0
        )
        .await,
        3
    );
    drop(writer);
    task.await.expect("writer stops");
    k.stop().await;
    db.cleanup().await;
}
