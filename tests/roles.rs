//! People, roles, audit, export and erasure (SPEC §1), on SQLite and PostgreSQL, through the
//! same command path chat and the command line use.

mod common;

use common::{Running, TestDb, platform, row_of};
use koji::commands;
use koji::conversation::{Actor, CommandOutput};
use koji_channel::{Attachment, AuthMethod, Channel, Outcome};

/// Runs a command as the operator (the command line).
async fn cli(k: &Running, words: &str) -> CommandOutput {
    let t = k.core.cli_tenant(None).unwrap();
    k.core
        .run_command(
            t,
            &Actor::Operator,
            Channel::Console,
            commands::parse(words).unwrap(),
        )
        .await
}

async fn roles_of(k: &Running, email: &str) -> Vec<String> {
    let p = k
        .core
        .store
        .find_person("acme", email)
        .await
        .unwrap()
        .expect("person");
    k.core.store.roles_of(p.id).await.unwrap()
}

/// The audit log, without the bootstrap grants made from the configuration at start.
async fn audit(k: &Running) -> serde_json::Value {
    let mut v: serde_json::Value = match cli(k, "audit --format json").await {
        CommandOutput::Audit(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    let all = v["rows"].as_array().unwrap().clone();
    assert!(
        all.iter()
            .any(|r| r["actor"] == "config (tenant.admins)" && r["role"] == "admin")
    );
    let rows: Vec<_> = all
        .into_iter()
        .filter(|r| r["actor"] != "config (tenant.admins)")
        .collect();
    v["total"] = rows.len().into();
    v["rows"] = rows.into();
    v
}

async fn bootstrap_admins_get_admin_and_everyone_else_customer(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("admin@acme.test", "hello").await;
    k.say("dave@example.org", "hello").await;
    assert_eq!(roles_of(&k, "admin@acme.test").await, ["admin", "customer"]);
    assert_eq!(roles_of(&k, "dave@example.org").await, ["customer"]);
    let roles = k.say_text("admin@acme.test", "/koji roles").await;
    assert!(
        roles.contains("admin:") && roles.contains("analyst: reports.read"),
        "{roles}"
    );
    let dave = k
        .say_text("admin@acme.test", "/koji roles dave@example.org")
        .await;
    assert!(dave.contains("customer"), "{dave}");
    k.stop().await;
}

async fn an_admin_grants_and_revokes_and_the_audit_log_keeps_it(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("dave@example.org", "hello").await;
    let r = k
        .say_text("admin@acme.test", "/koji grant dave@example.org operator")
        .await;
    assert!(r.contains("now has: customer, operator"), "{r}");
    assert_eq!(
        roles_of(&k, "dave@example.org").await,
        ["customer", "operator"]
    );
    let again = k
        .say_text("admin@acme.test", "/koji grant dave@example.org operator")
        .await;
    assert!(again.contains("already has"), "{again}");
    let r = k
        .say_text("admin@acme.test", "/koji revoke dave@example.org customer")
        .await;
    assert!(r.contains("now has: operator"), "{r}");
    // operator is now dave's last role.
    let r = k
        .say_text("admin@acme.test", "/koji revoke dave@example.org operator")
        .await;
    assert!(r.contains("last role"), "{r}");
    assert_eq!(roles_of(&k, "dave@example.org").await, ["operator"]);
    let r = k
        .say_text("admin@acme.test", "/koji grant dave@example.org wizard")
        .await;
    assert!(r.contains("no role `wizard`"), "{r}");
    let r = k
        .say_text("admin@acme.test", "/koji revoke nobody@example.org analyst")
        .await;
    assert!(r.contains("No one"), "{r}");
    let r = k
        .say_text("admin@acme.test", "/koji grant not-an-email analyst")
        .await;
    assert!(r.contains("No one"), "{r}");

    // Granting to an email nobody has used yet provisions the person.
    let r = k
        .say_text("admin@acme.test", "/koji grant fay@acme.test analyst")
        .await;
    assert!(r.contains("now has: analyst, customer"), "{r}");
    assert_eq!(roles_of(&k, "fay@acme.test").await, ["analyst", "customer"]);

    let log = audit(&k).await;
    let rows: Vec<_> = log["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] != "fay@acme.test")
        .cloned()
        .collect();
    assert_eq!(rows.len(), 2, "refusals change nothing: {log}");
    assert_eq!(rows[0]["action"], "revoke");
    assert_eq!(rows[0]["role"], "customer");
    assert_eq!(rows[1]["action"], "grant");
    assert_eq!(rows[1]["actor"], "admin@acme.test");
    assert_eq!(rows[1]["target"], "dave@example.org");
    assert_eq!(rows[1]["channel"], "console");
    // Only admins (roles.manage) read the audit log.
    let r = k.say_text("dave@example.org", "/koji audit").await;
    assert!(r.contains("permission"), "{r}");
    k.stop().await;
}

async fn an_admin_cannot_change_their_own_roles(db: &TestDb) {
    let k = Running::start(db).await;
    let r = k
        .say_text("admin@acme.test", "/koji grant admin@acme.test analyst")
        .await;
    assert!(r.contains("your own roles"), "{r}");
    let r = k
        .say_text("admin@acme.test", "/koji revoke admin@acme.test customer")
        .await;
    assert!(r.contains("your own roles"), "{r}");
    assert_eq!(roles_of(&k, "admin@acme.test").await, ["admin", "customer"]);
    assert_eq!(audit(&k).await["total"], 0);
    k.stop().await;
}

async fn a_tenant_never_loses_its_last_admin(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("admin@acme.test", "hello").await;
    match cli(&k, "revoke admin@acme.test admin").await {
        CommandOutput::Refused(t) => assert!(t.contains("last admin"), "{t}"),
        other => panic!("{other:?}"),
    }
    match cli(&k, "forget admin@acme.test").await {
        CommandOutput::Refused(t) => assert!(t.contains("last admin"), "{t}"),
        other => panic!("{other:?}"),
    }
    k.say("eve@acme.test", "hello").await;
    assert!(matches!(
        cli(&k, "grant eve@acme.test admin").await,
        CommandOutput::Text(_)
    ));
    assert!(matches!(
        cli(&k, "revoke admin@acme.test admin").await,
        CommandOutput::Text(_)
    ));
    assert_eq!(roles_of(&k, "admin@acme.test").await, ["customer"]);
    match cli(&k, "revoke eve@acme.test admin").await {
        CommandOutput::Refused(t) => assert!(t.contains("last admin"), "{t}"),
        other => panic!("{other:?}"),
    }
    k.stop().await;
}

async fn only_roles_manage_changes_roles_and_custom_roles_grant_their_permissions(db: &TestDb) {
    let extra = "[[tenants]]\nid = \"acme\"\nadmins = [\"admin@acme.test\"]\n[[tenants.roles]]\nname = \"manager\"\npermissions = [\"reports.read\"]\n";
    let k = Running::start_with(db, extra).await;
    k.say("mia@example.org", "hello").await;
    let r = k
        .say_text("mia@example.org", "/koji grant mia@example.org admin")
        .await;
    assert!(r.contains("needs roles.manage"), "{r}");
    assert!(matches!(
        cli(&k, "grant mia@example.org manager").await,
        CommandOutput::Text(_)
    ));
    let users = k.say("mia@example.org", "/koji users").await;
    assert!(
        matches!(&users[0].attachments[0], Attachment::Table(_)),
        "{:?}",
        users[0]
    );
    let r = k
        .say_text("mia@example.org", "/koji grant admin@acme.test analyst")
        .await;
    assert!(r.contains("needs roles.manage"), "{r}");
    let r = k
        .say_text("mia@example.org", "/koji export admin@acme.test")
        .await;
    assert!(
        r.contains("needs users.export") && !r.contains("admin@acme.test\""),
        "{r}"
    );
    assert_eq!(
        roles_of(&k, "mia@example.org").await,
        ["customer", "manager"]
    );
    k.stop().await;
}

async fn export_returns_one_persons_data_and_nothing_of_anyone_elses(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("nia@example.org", "my VPN fails with error 0x800F081F")
        .await;
    k.say("oscar@example.org", "oscar's secret question about Outlook")
        .await;
    cli(&k, "grant nia@example.org analyst").await;
    let v = match cli(&k, "export nia@example.org").await {
        CommandOutput::Export(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(v["profile"]["person"]["email"], "nia@example.org");
    assert_eq!(v["roles"], serde_json::json!(["analyst", "customer"]));
    assert_eq!(v["identities"][0]["channel"], "console");
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["exchanges"].as_array().unwrap().len(), 2);
    assert_eq!(v["exchanges"][0]["entities"][0]["type"], "error_code");
    assert_eq!(v["audit"][0]["action"], "grant");
    let text = v.to_string();
    assert!(!text.contains("oscar"), "nothing of anyone else");
    assert!(!text.contains("token"), "no session tokens");

    // In chat the export comes as a JSON document.
    let r = k
        .say("admin@acme.test", "/koji export nia@example.org")
        .await;
    assert!(
        matches!(&r[0].attachments[0], Attachment::Document { media_type, .. } if media_type == "application/json")
    );
    k.stop().await;
}

async fn forget_asks_to_confirm_then_erases_everything(db: &TestDb) {
    let k = Running::start(db).await;
    k.say("pat@example.org", "my laptop is slow").await;
    k.say("quinn@example.org", "hello").await;
    let ask = k
        .say("admin@acme.test", "/koji forget pat@example.org")
        .await;
    assert!(ask[0].text.contains("Reply `yes`"), "{}", ask[0].text);
    assert!(matches!(&ask[0].attachments[0], Attachment::Buttons { .. }));
    // Anything but yes cancels.
    let r = k.say_text("admin@acme.test", "no").await;
    assert!(r.contains("Cancelled"), "{r}");
    assert!(
        k.core
            .store
            .find_person("acme", "pat@example.org")
            .await
            .unwrap()
            .is_some()
    );

    k.say("admin@acme.test", "/koji forget pat@example.org")
        .await;
    let done = k.say_text("admin@acme.test", "yes").await;
    assert!(done.contains("Erased"), "{done}");
    assert!(
        k.core
            .store
            .find_person("acme", "pat@example.org")
            .await
            .unwrap()
            .is_none()
    );
    let t = k.core.cli_tenant(None).unwrap();
    let out = k
        .core
        .run_command(
            t,
            &Actor::Operator,
            Channel::Console,
            commands::parse("user pat@example.org").unwrap(),
        )
        .await;
    assert!(matches!(out, CommandOutput::NotFound(_)), "{out:?}");
    let users = k.report_json("users").await;
    assert!(row_of(&users, "pat@example.org").is_none());
    assert!(
        row_of(&users, "quinn@example.org").is_some(),
        "others are kept"
    );
    let log = audit(&k).await;
    let erase = log["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "erase")
        .expect("erasure audited");
    assert_eq!(erase["target"], "(erased)");
    assert!(
        !log.to_string().contains("pat@example.org"),
        "the audit log keeps that, not what"
    );

    // A confirmation expires.
    k.say("admin@acme.test", "/koji forget quinn@example.org")
        .await;
    k.advance_minutes(6);
    let r = k.say_text("admin@acme.test", "yes").await;
    assert!(r.contains("expired"), "{r}");
    assert!(
        k.core
            .store
            .find_person("acme", "quinn@example.org")
            .await
            .unwrap()
            .is_some()
    );
    // Customers cannot erase anyone.
    let r = k
        .say_text("quinn@example.org", "/koji forget admin@acme.test")
        .await;
    assert!(r.contains("needs users.erase"), "{r}");
    k.stop().await;
}

async fn role_changes_stay_inside_their_tenant(db: &TestDb) {
    let extra = "[[tenants]]\nid = \"one\"\nadmins = [\"a1@one.test\"]\nslack_team_ids = [\"T1\"]\n[[tenants]]\nid = \"two\"\nadmins = [\"a2@two.test\"]\nslack_team_ids = [\"T2\"]\n";
    let k = Running::start_with(db, extra).await;
    let say = |team: &str, user: &str, email: &str, id: &str, text: &str| {
        let mut m = platform(Channel::Slack, user, Some(email), id, text);
        m.tenant = koji_channel::TenantHint::SlackTeam(team.into());
        m
    };
    k.core
        .handle(say("T1", "U1", "rob@one.test", "1", "hello"))
        .await
        .unwrap();
    k.core
        .handle(say("T2", "U2", "a2@two.test", "2", "hello"))
        .await
        .unwrap();
    let Outcome::Replies(r) = k
        .core
        .handle(say(
            "T2",
            "U2",
            "a2@two.test",
            "3",
            "/koji revoke rob@one.test customer",
        ))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(r[0].text.contains("No one"), "{}", r[0].text);
    // A grant in tenant two provisions tenant two's own rob, not tenant one's.
    k.core
        .handle(say(
            "T2",
            "U2",
            "a2@two.test",
            "5",
            "/koji grant rob@one.test analyst",
        ))
        .await
        .unwrap();
    let rob_two = k
        .core
        .store
        .find_person("two", "rob@one.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        k.core.store.roles_of(rob_two.id).await.unwrap(),
        ["analyst", "customer"]
    );
    let Outcome::Replies(r) = k
        .core
        .handle(say("T2", "U2", "a2@two.test", "4", "/koji export slack:U1"))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(r[0].text.contains("No one"), "{}", r[0].text);
    let rob = k
        .core
        .store
        .find_person("one", "rob@one.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k.core.store.roles_of(rob.id).await.unwrap(), ["customer"]);
    k.stop().await;
}

async fn an_admin_named_by_channel_identity_is_admin_there(db: &TestDb) {
    let extra = "[[tenants]]\nid = \"acme\"\nadmins = [\"slack:UBOSS\"]\n";
    let k = Running::start_with(db, extra).await;
    let mut m = platform(Channel::Slack, "UBOSS", None, "b1", "/koji users");
    m.speaker.auth_method = AuthMethod::Slack;
    let Outcome::Replies(r) = k.core.handle(m).await.unwrap() else {
        panic!()
    };
    assert!(
        matches!(&r[0].attachments[0], Attachment::Table(_)),
        "{:?}",
        r[0]
    );
    let boss = k
        .core
        .store
        .find_person("acme", "slack:UBOSS")
        .await
        .unwrap()
        .expect("a person");
    assert_eq!(
        k.core.store.roles_of(boss.id).await.unwrap(),
        ["admin", "customer"]
    );
    // Named by identity but arriving with an email: admin too, also when the person existed.
    k.say("chief@example.org", "hello").await;
    let extra2 = "[[tenants]]\nid = \"acme\"\nadmins = [\"slack:UBOSS\", \"slack:UCHIEF\"]\n";
    let k2 = Running::start_on(db, extra2, k.clock.clone()).await;
    let mut m = platform(
        Channel::Slack,
        "UCHIEF",
        Some("chief@example.org"),
        "c1",
        "hi",
    );
    m.speaker.auth_method = AuthMethod::Slack;
    k2.core.handle(m).await.unwrap();
    let chief = k2
        .core
        .store
        .find_person("acme", "chief@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        k2.core.store.roles_of(chief.id).await.unwrap(),
        ["admin", "customer"]
    );
    let log = match k2
        .core
        .run_command(
            k2.core.cli_tenant(None).unwrap(),
            &Actor::Operator,
            Channel::Console,
            commands::parse("audit --format json").unwrap(),
        )
        .await
    {
        CommandOutput::Audit(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(log.contains("slack:UCHIEF"), "the grant is audited: {log}");
    k2.stop().await;
    // An anonymous identity with another id is not.
    let m = platform(Channel::Slack, "UOTHER", None, "b2", "/koji users");
    let Outcome::Replies(r) = k.core.handle(m).await.unwrap() else {
        panic!()
    };
    assert!(r[0].text.contains("sign in"), "{}", r[0].text);
    k.stop().await;
}

async fn importing_the_directory_is_idempotent_and_reports_refused_rows(db: &TestDb) {
    let k = Running::start(db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name,kind,roles\n\
         sam@acme.test,Sam Smith,internal,analyst;operator\n\
         tia@example.org,\"Tia, T.\",customer,\n\
         not-an-email,Bad,customer,\n\
         uma@example.org,Uma,alien,\n\
         val@example.org,Val,customer,wizard\n",
    )
    .unwrap();
    let t = k.core.cli_tenant(None).unwrap();
    let r = koji::directory::import_csv(&k.core.store, t, &file)
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (2, 0, 0));
    let lines: Vec<u64> = r.refused.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [4, 5, 6], "{:?}", r.refused);
    assert!(r.refused[0].1.contains("not an email"));
    assert!(r.refused[2].1.contains("no role `wizard`"));
    assert_eq!(
        roles_of(&k, "sam@acme.test").await,
        ["analyst", "customer", "operator"]
    );
    let tia = k
        .core
        .store
        .find_person("acme", "tia@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tia.name.as_deref(), Some("Tia, T."));

    let again = koji::directory::import_csv(&k.core.store, t, &file)
        .await
        .unwrap();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 2));
    // A known person signing in keeps the imported roles.
    k.say("sam@acme.test", "hello").await;
    assert_eq!(
        roles_of(&k, "sam@acme.test").await,
        ["analyst", "customer", "operator"]
    );
    k.stop().await;
}

on_both_backends!(
    bootstrap_admins_get_admin_and_everyone_else_customer,
    an_admin_grants_and_revokes_and_the_audit_log_keeps_it,
    an_admin_cannot_change_their_own_roles,
    a_tenant_never_loses_its_last_admin,
    only_roles_manage_changes_roles_and_custom_roles_grant_their_permissions,
    export_returns_one_persons_data_and_nothing_of_anyone_elses,
    forget_asks_to_confirm_then_erases_everything,
    role_changes_stay_inside_their_tenant,
    an_admin_named_by_channel_identity_is_admin_there,
    importing_the_directory_is_idempotent_and_reports_refused_rows,
);
