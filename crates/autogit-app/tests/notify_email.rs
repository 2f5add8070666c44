//! `health.notify`'s `{type: email}` against a real SMTP server: Python's aiosmtpd (PyPI,
//! pinned, in the venv scripts/test.sh makes; `AUTOGIT_AIOSMTPD` names its python) with
//! STARTTLS required or implicit TLS (SMTPS; a certificate from a CA this test makes) and
//! AUTH PLAIN/LOGIN. A small
//! controller script below saves every message it accepts (the raw message and its envelope)
//! to a directory. And the per-notifier filters and rate limits, which every type shares.

mod support;

use autogit_app::{Event, ManualClock};
use autogit_drivers::notify::Retry;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `tracing` writer into memory.
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SERVER: &str = r#"
import json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, mode, cert, key, out, user, password = sys.argv[1:8]

class Handler:
    n = 0
    tries = 0
    async def handle_DATA(self, server, session, envelope):
        Handler.tries += 1
        with open(os.path.join(out, "tries"), "w") as f:
            f.write(str(Handler.tries))
        if mode == "flaky" and Handler.tries == 1:
            return "451 4.3.0 try again later"
        Handler.n += 1
        base = os.path.join(out, "%03d" % Handler.n)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        # session.ssl is set by STARTTLS only; an implicit-TLS transport has an ssl_object.
        tls = (session.ssl is not None
               or server.transport.get_extra_info("ssl_object") is not None)
        meta = {"from": envelope.mail_from, "to": envelope.rcpt_tos,
                "tls": tls, "auth": session.authenticated}
        with open(base + ".tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".tmp", base + ".json")
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == user.encode() and auth_data.password == password.encode())
    return AuthResult(success=ok, handled=False)

if mode in ("starttls", "flaky"):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    kw = dict(tls_context=ctx, require_starttls=True, auth_required=True,
              authenticator=authenticator)
elif mode == "implicit":
    # TLS from the first byte (SMTPS). aiosmtpd's auth_require_tls looks for STARTTLS only,
    # so it is off: the whole session is TLS.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    kw = dict(ssl_context=ctx, auth_required=True, auth_require_tls=False,
              authenticator=authenticator)
else:
    kw = dict(auth_require_tls=False)
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), **kw)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// aiosmtpd's python, or `None` (the test skips) when it is not installed.
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("AUTOGIT_AIOSMTPD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/aiosmtpd/bin/python")
        });
    if p.exists() {
        Some(p)
    } else {
        support::skip(&format!(
            "aiosmtpd is not installed ({}; scripts/test.sh installs it)",
            p.display()
        ));
        None
    }
}

/// A CA and a server certificate for 127.0.0.1 that it signs, as PEM files in `dir`
/// (`<name>-ca.pem`, `<name>.pem`, `<name>.key`).
fn certificates(dir: &Path, name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("autogit test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// One aiosmtpd server on 127.0.0.1; stopped (stdin closed, then killed) when dropped.
struct Smtpd {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Smtpd {
    /// `mode`: `starttls` (STARTTLS and AUTH required, as user `autogit` with `password`),
    /// `flaky` (the same, but the first DATA is answered 451), `implicit` (TLS from the first
    /// byte, AUTH required) or `plain` (no STARTTLS offered, no AUTH).
    fn start(py: &Path, dir: &Path, name: &str, mode: &str, password: &str) -> Smtpd {
        let script = dir.join("smtpd.py");
        std::fs::write(&script, SERVER).unwrap();
        let out = dir.join(format!("{name}-mail"));
        std::fs::create_dir_all(&out).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(py)
            .arg(&script)
            .arg(port.to_string())
            .arg(mode)
            .arg(dir.join(format!("{name}.pem")))
            .arg(dir.join(format!("{name}.key")))
            .arg(&out)
            .arg("autogit")
            .arg(password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        );
        Smtpd { child, port, out }
    }

    /// The messages received so far: (envelope, raw message), in arrival order.
    fn received(&self) -> Vec<(Value, String)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let meta = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                let eml = std::fs::read_to_string(p.with_extension("eml")).unwrap();
                (meta, eml)
            })
            .collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message's header names, in order (folded lines joined to theirs).
fn header_names(eml: &str) -> Vec<String> {
    let head = eml.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect()
}

fn header<'a>(eml: &'a str, name: &str) -> &'a str {
    let head = eml.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {eml}"))
}

fn retry() -> Retry {
    Retry {
        attempts: 3,
        first_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
    }
}

fn mirror_failed(name: &str, error: &str) -> Event {
    Event::MirrorFailed {
        name: name.into(),
        source: "git://127.0.0.1/docs.git".into(),
        error: error.into(),
    }
}

/// Waits until `smtpd` holds `n` messages (at most 30 s), then a little longer to see that
/// no more come.
async fn wait_for(smtpd: &Smtpd, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while smtpd.received().len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arrives_over_starttls_filtered_rate_limited_and_headers_stay_headers() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    certificates(d.path(), "mx");
    let smtpd = Smtpd::start(&py, d.path(), "mx", "starttls", "s3cret-pw-42");
    let ca = d.path().join("mx-ca.pem");
    // Entry 0: two kinds, at most 2 a 10 minutes. Entry 1: errors only, no limit.
    let config = format!(
        "health:\n  notify:\n\
         \x20   - type: email\n      host: 127.0.0.1\n      port: {port}\n      ca_file: {ca}\n\
         \x20     from: autogit@example.org\n      to: [ops@example.org, oncall@example.org]\n\
         \x20     username_env: SMTP_USER\n      password_env: SMTP_PASSWORD\n\
         \x20     events: [mirror_failed, backup_failed]\n      rate_limit: {{max: 2, per: 10m}}\n\
         \x20   - type: email\n      host: 127.0.0.1\n      port: {port}\n      ca_file: {ca}\n\
         \x20     from: autogit@example.org\n      to: errors@example.org\n\
         \x20     username_env: SMTP_USER\n      password_env: SMTP_PASSWORD\n\
         \x20     min_severity: error\n",
        port = smtpd.port,
        ca = ca.display()
    );
    let env = "SMTP_USER=autogit\nSMTP_PASSWORD=s3cret-pw-42\n";
    let settings = support::settings(&config, env, d.path());
    let (bus, clock): (_, ManualClock) = support::bus_at(1_800_000_000);
    let mut rx = bus.subscribe();
    let sink = autogit_app::sinks::chat(&bus, settings, retry());

    // Header injection: CR/LF in what a remote said.
    bus.publish(mirror_failed(
        "docs\r\nBcc: victim@evil.example",
        "refused\r\n.\r\nBcc: x@evil.example\r\n\r\nbody",
    ));
    // A warning of another kind: neither entry takes it.
    bus.publish(Event::HostUnreachable {
        host: "gpu1".into(),
        error: "timeout".into(),
    });
    bus.publish(Event::BackupFailed {
        error: "disk full".into(),
    });
    // Three more: over entry 0's limit, but errors for entry 1.
    for i in 0..3 {
        bus.publish(mirror_failed(&format!("m{i}"), "unreachable"));
    }
    // The next window: entry 0 sends again and says what it dropped.
    clock.advance(601);
    bus.publish(mirror_failed("after", "unreachable"));
    wait_for(&smtpd, 3 + 6).await;
    let failures: Vec<Event> = support::drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e, Event::WebhookFailed { .. }))
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    let got = smtpd.received();
    let to = |meta: &Value| -> Vec<String> {
        meta["to"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let ops: Vec<&(Value, String)> = got
        .iter()
        .filter(|(m, _)| to(m) == ["ops@example.org", "oncall@example.org"])
        .collect();
    let errors: Vec<&(Value, String)> = got
        .iter()
        .filter(|(m, _)| to(m) == ["errors@example.org"])
        .collect();
    assert_eq!(got.len(), 9, "{got:#?}");
    assert_eq!(ops.len(), 3, "2, then 1 in the next window: {ops:#?}");
    assert_eq!(errors.len(), 6, "every error, no warning: {errors:#?}");
    for (meta, eml) in &got {
        assert_eq!(meta["tls"], true, "after STARTTLS");
        assert_eq!(meta["auth"], true, "authenticated");
        assert_eq!(meta["from"], "autogit@example.org");
        assert!(!eml.contains("s3cret-pw-42"));
        assert_eq!(
            header_names(eml),
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "Auto-Submitted",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding"
            ],
            "{eml}"
        );
        assert_eq!(header(eml, "From"), "autogit <autogit@example.org>");
        assert!(header(eml, "Message-ID").ends_with("@example.org>"));
    }
    assert!(
        errors.iter().all(|(_, e)| !e.contains("host_unreachable")),
        "a warning is below min_severity"
    );
    let subjects: Vec<&str> = ops.iter().map(|(_, e)| header(e, "Subject")).collect();
    assert!(
        subjects.contains(&"autogit error: mirror_failed (docs  Bcc: victim@evil.example)"),
        "{subjects:?}"
    );
    assert!(subjects.contains(&"autogit error: backup_failed (backup)"));
    assert!(subjects.contains(&"autogit error: mirror_failed (after)"));
    let injected = ops
        .iter()
        .find(|(_, e)| header(e, "Subject").contains("(docs"))
        .unwrap();
    assert_eq!(
        header(&injected.1, "To"),
        "ops@example.org, oncall@example.org"
    );
    assert!(
        injected.1.contains("\r\n\r\ndocs\r\nBcc: victim@evil.example: mirror failed: refused\r\n.\r\nBcc: x@evil.example"),
        "the text is in the body, dot included: {}",
        injected.1
    );
    let after = ops
        .iter()
        .find(|(_, e)| header(e, "Subject").contains("(after)"))
        .unwrap();
    assert!(
        after.1.contains(
            "after: mirror failed: unreachable (3 more events suppressed by the rate limit)"
        ),
        "{}",
        after.1
    );
    assert_eq!(
        header(&after.1, "Date"),
        autogit_core::civil::rfc5322_utc(1_800_000_601)
    );
    // Nothing on the bus (what the log and the state store record) holds the password.
    drop(bus);
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap();
    while let Ok(e) = rx.try_recv() {
        assert!(!serde_json::to_string(&*e).unwrap().contains("s3cret-pw-42"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_no_starttls_and_an_unknown_ca_are_refused_and_named() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    certificates(d.path(), "mx");
    certificates(d.path(), "other");
    let tls = Smtpd::start(&py, d.path(), "mx", "starttls", "right-pw");
    let plain = Smtpd::start(&py, d.path(), "plain", "plain", "unused");
    let (mx_ca, other_ca) = (d.path().join("mx-ca.pem"), d.path().join("other-ca.pem"));
    let entry = |port: u16, extra: &str| {
        format!(
            "    - type: email\n      host: 127.0.0.1\n      port: {port}\n      from: a@example.org\n      to: ops@example.org\n{extra}"
        )
    };
    let login = |var: &str| format!("      username_env: SMTP_USER\n      password_env: {var}\n");
    let config = format!(
        "health:\n  notify:\n{}{}{}{}",
        // A wrong password.
        entry(
            tls.port,
            &format!(
                "      ca_file: {}\n{}",
                mx_ca.display(),
                login("SMTP_OLD_PASSWORD")
            )
        ),
        // A server that offers no STARTTLS, with starttls required (the default).
        entry(plain.port, &format!("      ca_file: {}\n", mx_ca.display())),
        // A certificate its ca_file did not sign.
        entry(
            tls.port,
            &format!(
                "      ca_file: {}\n{}",
                other_ca.display(),
                login("SMTP_PASSWORD")
            )
        ),
        // Plain text to a loopback relay, allowed with starttls: none.
        entry(plain.port, "      starttls: none\n"),
    );
    let env = "SMTP_USER=autogit\nSMTP_PASSWORD=right-pw\nSMTP_OLD_PASSWORD=wrong-pw-9f3\n";
    let settings = support::settings(&config, env, d.path());
    // What the daemon's log would say (the log sink through `tracing`), kept in memory.
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || LogBuf(writer.clone()))
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let (bus, _clock) = support::bus_at(1_800_000_000);
    let mut rx = bus.subscribe();
    let logger = autogit_app::sinks::log(&bus);
    let sink = autogit_app::sinks::chat(&bus, settings, retry());
    bus.publish(mirror_failed("docs", "unreachable"));
    let mut failed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while failed.len() < 3 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(env)) => {
                assert!(
                    !serde_json::to_string(&*env)
                        .unwrap()
                        .contains("wrong-pw-9f3")
                );
                assert!(!serde_json::to_string(&*env).unwrap().contains("right-pw"));
                if let Event::WebhookFailed { url, error, about } = &env.event {
                    assert_eq!(about, "mirror_failed");
                    failed.push((url.clone(), error.clone()));
                }
            }
            _ => break,
        }
    }
    drop(bus);
    tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), logger)
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("webhook_failed") && log.contains("535"),
        "the failures were logged: {log}"
    );
    assert!(
        !log.contains("wrong-pw-9f3") && !log.contains("right-pw"),
        "{log}"
    );
    failed.sort();
    assert_eq!(failed.len(), 3, "{failed:#?}");
    let find = |label: String| {
        failed
            .iter()
            .find(|(u, _)| *u == label)
            .unwrap_or_else(|| panic!("no failure for {label}: {failed:#?}"))
            .1
            .clone()
    };
    let bad_login = find(format!("email 127.0.0.1:{} (SMTP_OLD_PASSWORD)", tls.port));
    assert!(
        bad_login.contains("535") && bad_login.contains("password_env"),
        "{bad_login}"
    );
    let no_tls = find(format!("email 127.0.0.1:{}", plain.port));
    assert!(no_tls.contains("STARTTLS"), "{no_tls}");
    let unknown_ca = find(format!("email 127.0.0.1:{} (SMTP_PASSWORD)", tls.port));
    assert!(
        unknown_ca.contains("UnknownIssuer") && unknown_ca.contains("ca_file"),
        "{unknown_ca}"
    );
    // Nothing reached the TLS server; the loopback relay got the one plain message.
    assert!(tls.received().is_empty());
    let relayed = plain.received();
    assert_eq!(relayed.len(), 1, "{relayed:#?}");
    assert_eq!(relayed[0].0["tls"], false);
    assert!(relayed[0].1.contains("docs: mirror failed: unreachable"));
}

/// A 4xx answer is tried again (with backoff) and the message arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    certificates(d.path(), "mx");
    let smtpd = Smtpd::start(&py, d.path(), "mx", "flaky", "pw-flaky");
    let config = format!(
        "health:\n  notify:\n    - type: email\n      host: 127.0.0.1\n      port: {}\n      ca_file: {}\n      from: a@example.org\n      to: ops@example.org\n      username_env: SMTP_USER\n      password_env: SMTP_PASSWORD\n",
        smtpd.port,
        d.path().join("mx-ca.pem").display()
    );
    let settings = support::settings(
        &config,
        "SMTP_USER=autogit\nSMTP_PASSWORD=pw-flaky\n",
        d.path(),
    );
    let (bus, _clock) = support::bus_at(1_800_000_000);
    let mut rx = bus.subscribe();
    let sink = autogit_app::sinks::chat(&bus, settings, retry());
    bus.publish(mirror_failed("docs", "unreachable"));
    drop(bus);
    tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .unwrap()
        .unwrap();
    let failures: Vec<Event> = support::drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e, Event::WebhookFailed { .. }))
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(smtpd.received().len(), 1);
    assert_eq!(
        std::fs::read_to_string(smtpd.out.join("tries")).unwrap(),
        "2",
        "451, then accepted"
    );
}

/// `tls: implicit` (SMTPS) delivers over TLS from the first byte, with AUTH; each wrong
/// mode fails with a message naming the right one: a STARTTLS client at an SMTPS server
/// hears no greeting (bounded by the try's timeout, not a hang), an implicit-TLS client at a
/// STARTTLS server gets plain text where TLS belongs (at once, not retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arrives_over_implicit_tls_and_a_wrong_mode_fails_with_the_right_one_named() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    certificates(d.path(), "mx");
    let smtps = Smtpd::start(&py, d.path(), "mx", "implicit", "pw-465");
    // The same certificate for the STARTTLS server (its own name: its own mail directory).
    for ext in ["pem", "key"] {
        std::fs::copy(
            d.path().join(format!("mx.{ext}")),
            d.path().join(format!("sub.{ext}")),
        )
        .unwrap();
    }
    let submission = Smtpd::start(&py, d.path(), "sub", "starttls", "pw-465");
    let ca = d.path().join("mx-ca.pem");
    let entry = |port: u16, tls: &str, to: &str| {
        format!(
            "    - type: email\n      host: 127.0.0.1\n      port: {port}\n      tls: {tls}\n\
             \x20     ca_file: {}\n      from: a@example.org\n      to: {to}\n\
             \x20     username_env: SMTP_USER\n      password_env: SMTP_PASSWORD\n",
            ca.display()
        )
    };
    let config = format!(
        "health:\n  notify:\n{}{}{}",
        entry(smtps.port, "implicit", "ops@example.org"),
        entry(smtps.port, "starttls", "wrong-mode@example.org"),
        entry(submission.port, "implicit", "wrong-mode@example.org"),
    );
    let settings = support::settings(
        &config,
        "SMTP_USER=autogit\nSMTP_PASSWORD=pw-465\n",
        d.path(),
    );
    let (bus, _clock) = support::bus_at(1_800_000_000);
    let mut rx = bus.subscribe();
    let sink = autogit_app::sinks::chat(
        &bus,
        settings,
        Retry {
            attempts: 2,
            first_delay: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
        },
    );
    let started = std::time::Instant::now();
    bus.publish(mirror_failed("docs", "unreachable"));
    let mut failed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while failed.len() < 2 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(env)) => {
                if let Event::WebhookFailed { url, error, .. } = &env.event {
                    failed.push((url.clone(), error.clone()));
                }
            }
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    drop(bus);
    tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .expect("the sink finished: no try hangs")
        .unwrap();
    // Two tries of at most 2 s for the silent server, plus the others: well under 20 s.
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    for (url, error) in &failed {
        assert!(!error.contains("pw-465"), "{error}");
        if *url == format!("email 127.0.0.1:{} (SMTP_PASSWORD)", smtps.port) {
            assert!(
                error.contains("no SMTP greeting") && error.contains("`tls: implicit`"),
                "{error}"
            );
        } else {
            assert_eq!(
                *url,
                format!("email 127.0.0.1:{} (SMTP_PASSWORD)", submission.port)
            );
            assert!(
                error.contains("plain text") && error.contains("`tls: starttls`"),
                "{error}"
            );
        }
    }
    assert!(submission.received().is_empty());
    let got = smtps.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].0["tls"], true, "TLS from the first byte");
    assert_eq!(got[0].0["auth"], true);
    assert_eq!(got[0].0["to"][0], "ops@example.org");
    assert!(got[0].1.contains("docs: mirror failed: unreachable"));
}

#[test]
fn notify_config_errors_plain_smtp_to_a_remote_host_wrong_tls_filters_on_log_unknown_kinds() {
    use autogit_core::load::{LoadInput, load};
    for (entry, want) in [
        (
            "{type: email, host: smtp.example.com, starttls: none, from: a@example.org, to: b@example.org}",
            "not this machine",
        ),
        (
            "{type: email, host: smtp.example.com, tls: none, from: a@example.org, to: b@example.org}",
            "`tls: none` for `smtp.example.com`",
        ),
        (
            "{type: email, host: smtp.example.com, tls: smtps, from: a@example.org, to: b@example.org}",
            "`implicit`",
        ),
        (
            "{type: email, host: smtp.example.com, tls: implicit, starttls: required, from: a@example.org, to: b@example.org}",
            "both `tls` and `starttls`",
        ),
        (
            "{type: email, host: smtp.example.com, from: a@example.org, to: b@example.org, events: [mirror_fail]}",
            "did you mean `mirror_failed`",
        ),
        (
            "{type: slack, url_env: S, rate_limit: {max: 5}}",
            "rate_limit.per",
        ),
        ("{type: emial}", "email"),
        // The log takes no filter: it is the record of every event.
        (
            "{type: log, events: [mirror_failed]}",
            "`events` on `type: log`",
        ),
        (
            "{type: log, rate_limit: {max: 5, per: 1m}}",
            "extension entries",
        ),
    ] {
        let yml = format!("health:\n  notify:\n    - {entry}\n");
        let loaded = load(&LoadInput {
            file: Some(("autogit.yml", &yml)),
            ..Default::default()
        });
        assert!(loaded.diagnostics.has_errors(), "{entry}");
        let text = format!("{:?}", loaded.diagnostics);
        assert!(text.contains(want), "{entry}: {text}");
    }
}
