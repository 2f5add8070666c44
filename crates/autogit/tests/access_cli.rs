//! `autogit api-key`, `api-user`, `auth rotate-signing-key` and `audit`, on the real binary
//! with a scratch data dir (`AUTOGIT_DATA_DIR`): create → list → revoke; users with the
//! password on stdin; every change in the audit log as `cli:<user>`; `audit verify` failing,
//! naming the record, once the log is tampered with.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

fn at(dir: &Path, args: &[&str]) -> Run {
    let data = dir.join("data");
    run_env(
        dir,
        args,
        &[
            ("AUTOGIT_DATA_DIR", data.to_str().unwrap()),
            ("USER", "tester"),
        ],
    )
}

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn api_keys_create_list_revoke_and_every_change_is_audited() {
    let d = tempfile::tempdir().unwrap();
    // stdout is a pipe here: only JSON, the key in it once.
    let r = at(
        d.path(),
        &[
            "api-key",
            "create",
            "ci deploy",
            "--role",
            "operator",
            "--scope",
            "services",
            "--expires",
            "90d",
        ],
    );
    let created = json(&r);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("{id}_")), "{key} {id}");
    assert_eq!(created["role"], "operator");
    assert_eq!(created["scopes"], serde_json::json!(["services"]));
    assert_eq!(created["status"], "active");
    assert!(
        created["expires_at"].as_i64().unwrap()
            > created["created_at"].as_i64().unwrap() + 89 * 86_400
    );

    let list = json(&at(d.path(), &["api-key", "list", "--json"]));
    assert_eq!(list["keys"][0]["id"], id.as_str());
    let table = at(d.path(), &["api-key", "list"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("ci deploy"),
        "{}",
        table.stdout
    );
    assert!(
        !table.stdout.contains(&key) && !list.to_string().contains(&key),
        "the secret is shown once"
    );

    let r = at(d.path(), &["api-key", "revoke", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("revoked"), "{}", r.stdout);
    let list = json(&at(d.path(), &["api-key", "list", "--json"]));
    assert_eq!(list["keys"][0]["status"], "revoked");
    let r = at(d.path(), &["api-key", "revoke", "agk_zzzzzzzz"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no API key with prefix `zzzzzzzz`"),
        "{}",
        r.stderr
    );

    // Bad input is refused with a reason.
    let r = at(d.path(), &["api-key", "create", "x", "--role", "root"]);
    assert_eq!(r.code, 2, "clap lists the roles: {}", r.stderr);
    let r = at(
        d.path(),
        &[
            "api-key",
            "create",
            "x",
            "--role",
            "admin",
            "--scope",
            "Bad Scope",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid scope"), "{}", r.stderr);
    let r = at(
        d.path(),
        &[
            "api-key",
            "create",
            "x",
            "--role",
            "admin",
            "--expires",
            "soon",
        ],
    );
    assert_eq!(r.code, 1);

    let r = at(d.path(), &["auth", "rotate-signing-key", "-o", "json"]);
    assert_eq!(json(&r)["kid"].as_str().unwrap().len(), 8);

    let audit = json(&at(d.path(), &["audit", "--json"]));
    let actions: Vec<(String, String, String)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("api-key.create", "ok"),
        ("api-key.revoke", "ok"),
        ("api-key.revoke", "error"),
        ("api-key.create", "error"),
        ("auth.rotate-signing-key", "ok"),
    ];
    assert_eq!(actions.len(), want.len(), "{actions:?}");
    for ((actor, action, outcome), (a, o)) in actions.iter().zip(want) {
        assert_eq!(
            (actor.as_str(), action.as_str(), outcome.as_str()),
            ("cli:tester", a, o)
        );
    }
    let log = std::fs::read_to_string(d.path().join("data/audit/audit.jsonl")).unwrap();
    assert!(!log.contains(&key[13..]), "no secret in the audit log");
    let r = at(d.path(), &["audit"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("api-key.revoke"), "{}", r.stdout);
}

#[test]
fn users_take_their_password_from_stdin() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let add = |name: &str, pw: &str| {
        let mut c = cmd(d.path());
        c.args([
            "api-user",
            "add",
            name,
            "--role",
            "admin",
            "--password-stdin",
        ])
        .env("AUTOGIT_DATA_DIR", &data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pw.as_bytes())
            .unwrap();
        finish(child.wait_with_output().unwrap())
    };
    let r = add("alice", "a long enough password\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("added user alice (role admin)"),
        "{}",
        r.stdout
    );
    let r = add("bob", "short\n");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("at least 12 characters"), "{}", r.stderr);
    let r = add("alice", "a long enough password\n");
    assert!(r.stderr.contains("exists already"), "{}", r.stderr);
    // Without a terminal and without --password-stdin there is no way to ask.
    let r = at(d.path(), &["api-user", "add", "carol", "--role", "viewer"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--password-stdin"), "{}", r.stderr);
    let users = json(&at(d.path(), &["api-user", "list", "--json"]));
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
    assert!(
        !users.to_string().contains("argon2"),
        "no hash in the listing"
    );
    assert_eq!(at(d.path(), &["api-user", "remove", "alice"]).code, 0);
    assert_eq!(at(d.path(), &["api-user", "remove", "alice"]).code, 1);
    let log = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    assert!(!log.contains("a long enough password"));
    assert!(log.contains("\"api-user.remove\""));
}

#[test]
fn audit_verify_names_the_first_tampered_record() {
    let d = tempfile::tempdir().unwrap();
    for name in ["one", "two", "three", "four"] {
        let r = at(d.path(), &["api-key", "create", name, "--role", "viewer"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let log = d.path().join("data/audit/audit.jsonl");
    let r = at(d.path(), &["audit", "verify"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("4 records, chain intact, head file agrees"),
        "{}",
        r.stdout
    );

    // A copy with its middle line deleted, checked with --file.
    let copy = d.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(copy.join("audit.jsonl"), lines.join("\n") + "\n").unwrap();
    let r = at(
        d.path(),
        &[
            "audit",
            "verify",
            "--file",
            copy.join("audit.jsonl").to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("line 2 (seq 3)"), "{}", r.stderr);

    // The log itself, one field edited.
    std::fs::write(
        &log,
        text.replacen("\"target\":\"three\"", "\"target\":\"3\"", 1),
    )
    .unwrap();
    let r = at(d.path(), &["audit", "verify", "--json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["line"].as_u64(), v["seq"].as_u64()),
        (Some(false), Some(3), Some(3))
    );
    assert!(r.stderr.contains("edited"), "{}", r.stderr);

    // The last line cut off: the head file tells.
    std::fs::write(
        &log,
        text.lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let r = at(d.path(), &["audit", "verify"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("removed from the end"), "{}", r.stderr);
}

/// The password prompt on a real terminal (a pty from util-linux `script`): asked twice, never
/// echoed.
#[test]
fn the_password_prompt_does_not_echo() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    if !have("script") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let line = format!("{} api-user add alice --role admin", bin().display());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", d.path())
        .env("NO_COLOR", "1")
        .env("AUTOGIT_DATA_DIR", d.path().join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let wait_for = |text: &str, count: usize| {
        let start = Instant::now();
        while seen.lock().unwrap().matches(text).count() < count {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {text:?} in {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("Password: ", 1);
    stdin.write_all(b"a long enough password\n").unwrap();
    wait_for("Repeat the password: ", 1);
    stdin.write_all(b"a long enough password\n").unwrap();
    wait_for("added user alice", 1);
    drop(stdin);
    let _ = child.wait();
    reader.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.contains("enough password"),
        "the password was echoed: {seen:?}"
    );
    let users = json(&at(d.path(), &["api-user", "list", "--json"]));
    assert_eq!(users["users"][0]["name"], "alice");
}
