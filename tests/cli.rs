//! The release binary as an operator uses it: embedded defaults, piped chat, reports,
//! configuration errors, `koji serve` with SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn koji(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_koji"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KOJI_CONFIG")
        .env_remove("KOJI_DATABASE__URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("koji runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn piped_chat_is_answered_line_by_line_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = koji(
        dir.path(),
        &["chat", "--as", "alice@acme.test"],
        Some("hello\nHow do I connect to the VPN? error 0x800F081F\nthanks\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("Hello"), "{stdout}");
    assert!(
        stdout.contains("Connect to the VPN"),
        "answered from the knowledge base: {stdout}"
    );
    assert!(lines.last().unwrap().contains("welcome"), "{stdout}");
    assert!(
        dir.path().join("koji.db").exists(),
        "embedded default database"
    );

    let out = koji(dir.path(), &["report", "users", "--format", "json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let alice = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["person"]["email"] == "alice@acme.test")
        .unwrap();
    assert_eq!(alice["messages_in"], 3);
    assert_eq!(
        alice["messages"],
        alice["messages_in"].as_i64().unwrap() + alice["messages_out"].as_i64().unwrap()
    );

    let out = koji(
        dir.path(),
        &["report", "user", "alice@acme.test", "--format", "json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["intent"], "greeting");
    let values: Vec<&str> = v["interests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"VPN") && values.contains(&"0x800F081F"),
        "{values:?}"
    );

    let out = koji(dir.path(), &["report", "users", "--format", "csv"], None);
    let csv = text(&out.stdout);
    assert!(
        csv.starts_with("person_id,person_name,person_email,person_kind,messages,"),
        "{csv}"
    );
    assert!(csv.contains("alice@acme.test"));

    // Admin commands work in the chat too, for a bootstrap admin.
    let out = koji(
        dir.path(),
        &["chat", "--as", "admin@acme.test"],
        Some("/koji users --top 1\n"),
    );
    assert!(
        text(&out.stdout).contains("alice@acme.test"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn mistakes_get_a_clear_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let check = |args: &[&str], code: i32, needle: &str| {
        let out = koji(dir.path(), args, None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    };
    check(&["report", "bogus"], 2, "unknown report `bogus`");
    check(
        &["report", "users", "--since", "soon"],
        2,
        "`soon` is not a duration",
    );
    check(
        &["report", "users", "--top", "x"],
        2,
        "--top takes a whole number",
    );
    check(&["report", "user", "nobody@acme.test"], 1, "No one in");
    check(&["chat", "--as", "not-an-email"], 2, "not an email");

    std::fs::write(
        dir.path().join("bad.toml"),
        "[session]\nidle_timeout = \"soon\"\n",
    )
    .unwrap();
    check(
        &["--config", "bad.toml", "report", "users"],
        2,
        "session.idle_timeout",
    );
    std::fs::write(dir.path().join("worse.toml"), "[server\nlisten=1").unwrap();
    check(
        &["report", "users", "--config", "worse.toml"],
        2,
        "not valid TOML",
    );
    std::fs::write(
        dir.path().join("unknown.toml"),
        "[database]\nurl = \"mysql://x\"\n",
    )
    .unwrap();
    check(
        &["report", "sessions", "--config", "unknown.toml"],
        2,
        "database.url",
    );
    check(
        &["--config", "missing.toml", "report", "users"],
        2,
        "cannot read config file",
    );
}

#[test]
fn environment_overrides_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_koji"))
        .args(["migrate"])
        .current_dir(dir.path())
        .env("KOJI_DATABASE__URL", "sqlite://elsewhere.db")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("elsewhere.db").exists());
    assert!(!dir.path().join("koji.db").exists());
}

#[test]
fn serve_answers_healthz_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("koji.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_koji"))
        .args(["serve", "--config", "koji.toml"])
        .current_dir(dir.path())
        .env("KOJI_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let started = Instant::now();
    let mut addr = None;
    let mut line = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let plain = strip_ansi(&line);
        if let Some(rest) = plain.split("addr=").nth(1) {
            addr = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let addr = addr.expect("serve logs its address");
    let body = http_get(&addr, "/healthz");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let metrics = http_get(&addr, "/metrics");
    assert!(
        metrics.contains("koji_messages_recorded_total"),
        "{metrics}"
    );
    unsafe_kill(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if c == '\u{1b}' {
            esc = true;
        } else if esc {
            if c.is_ascii_alphabetic() {
                esc = false;
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn unsafe_kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn roles_from_the_terminal_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = koji(
        dir.path(),
        &["chat", "--as", "admin@acme.test"],
        Some(
            "/koji grant dave@example.org operator\n/koji grant admin@acme.test analyst\n/koji revoke dave@example.org operator\n/koji revoke dave@example.org customer\n",
        ),
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("now has: customer, operator"), "{stdout}");
    assert!(lines[1].contains("your own roles"), "{stdout}");
    assert!(lines[2].contains("now has: customer"), "{stdout}");
    assert!(lines[3].contains("last role"), "{stdout}");

    let out = koji(dir.path(), &["revoke", "admin@acme.test", "admin"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("last admin"),
        "{}",
        text(&out.stderr)
    );

    let out = koji(dir.path(), &["roles", "dave@example.org"], None);
    assert!(
        text(&out.stdout).contains("customer"),
        "{}",
        text(&out.stdout)
    );

    std::fs::write(
        dir.path().join("people.csv"),
        "email,name,kind,roles\nivy@acme.test,Ivy,internal,analyst\nbad,x,customer,\n",
    )
    .unwrap();
    let out = koji(dir.path(), &["users", "import", "people.csv"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused row makes the exit non-zero"
    );
    assert!(text(&out.stdout).contains("1 new"), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("line 3 refused"),
        "{}",
        text(&out.stderr)
    );

    let out = koji(dir.path(), &["export", "dave@example.org"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("export is JSON");
    assert_eq!(v["profile"]["person"]["email"], "dave@example.org");

    // forget asks; anything but yes keeps the person.
    let out = koji(dir.path(), &["forget", "dave@example.org"], Some("no\n"));
    assert_eq!(out.status.code(), Some(1));
    let out = koji(dir.path(), &["forget", "dave@example.org"], Some("yes\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = koji(dir.path(), &["report", "user", "dave@example.org"], None);
    assert_eq!(out.status.code(), Some(1));
    let out = koji(dir.path(), &["audit"], None);
    assert!(text(&out.stdout).contains("erase"), "{}", text(&out.stdout));
}

#[test]
fn the_embedded_defaults_answer_from_the_example_knowledge_base_and_create_requests() {
    let dir = tempfile::tempdir().unwrap();
    let out = koji(
        dir.path(),
        &["chat", "--as", "bob@acme.test"],
        Some("how do I reset my password?\nI need a new laptop\nyes\nstatus of REQ-1\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Reset your password"), "{stdout}");
    assert!(stdout.contains("/kb/reset-password"), "{stdout}");
    assert!(
        stdout.contains("Created REQ-1: I need a new laptop"),
        "{stdout}"
    );
    assert!(
        stdout.contains("REQ-1 — I need a new laptop: Open"),
        "{stdout}"
    );

    // A folder of our own, reloaded while nothing runs; a bad folder names the key.
    let kb = dir.path().join("kb");
    std::fs::create_dir(&kb).unwrap();
    std::fs::write(kb.join("printer.md"), "# Printer jams\n\nOpen tray B.").unwrap();
    let config = dir.path().join("koji.toml");
    std::fs::write(
        &config,
        format!("[helpdesk]\nkb_dir = {:?}\n", kb.to_str().unwrap()),
    )
    .unwrap();
    let out = koji(
        dir.path(),
        &["kb", "reload", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 articles (1 added, 0 updated, 6 removed"),
        "{}",
        text(&out.stdout)
    );
    let out = koji(
        dir.path(),
        &[
            "chat",
            "--as",
            "bob@acme.test",
            "--config",
            config.to_str().unwrap(),
        ],
        Some("the printer jams\n"),
    );
    assert!(
        text(&out.stdout).contains("Printer jams"),
        "{}",
        text(&out.stdout)
    );
    let out = koji(dir.path(), &["kb", "reload"], None);
    assert!(out.status.success());
    std::fs::write(&config, "[helpdesk]\nkb_dir = \"/no/such/folder\"\n").unwrap();
    let out = koji(
        dir.path(),
        &["kb", "reload", "--config", config.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("helpdesk.kb_dir"),
        "{}",
        text(&out.stderr)
    );
}
