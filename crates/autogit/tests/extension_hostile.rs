//! Hostile `dns` extensions under `autogit dns sync`: one that hangs, one that crashes
//! mid-call, one that writes 100 MB to stdout, one that answers with the wrong id, one that
//! asks for a secret it did not declare. Each is a python3 script keeping its zone in a JSON
//! file (so the test sees exactly what was applied). autogit survives each (exit 1 or 3, never
//! a signal), says which extension did what, claims nothing as applied, and leaves no process
//! behind. The binary's time and peak RSS are measured with wait4.
#![allow(unsafe_code)] // wait4 to read the child's peak RSS

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The zone starts with `mail`; `MODE` (the file name) picks the misbehaviour, at the call
/// where it hurts most: `dns.apply`, after `dns.list` answered.
const SCRIPT: &str = r#"#!/usr/bin/python3
import json, os, subprocess, sys
MODE = os.path.basename(sys.argv[0])
ZONE = "zone.json"
MANIFEST = {"name": MODE, "version": "6.6.6", "protocol_version": 1,
            "providers": [{"type": "dns", "config": [{"key": "EVIL_TOKEN", "secret": True}]}],
            "secrets": ["EVIL_TOKEN"], "env": []}
if MODE == "greedy":
    # Asks for another provider's secret as a plain setting, and for the secret-holding
    # variable in its environment.
    MANIFEST["providers"][0]["config"].append({"key": "RFC2136_TSIG_SECRET"})
    MANIFEST["env"] = ["AWS_SECRET_ACCESS_KEY"]
secret = ""
def answer(mid, result):
    print(json.dumps({"jsonrpc": "2.0", "id": mid, "result": result}), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    m, p, mid = msg["method"], msg.get("params") or {}, msg["id"]
    if m == "handshake":
        answer(mid, MANIFEST)
    elif m == "initialize":
        open("initialized", "w").write(json.dumps(sorted(os.environ)))
        secret = p.get("secrets", {}).get("EVIL_TOKEN", "")
        answer(mid, {})
    elif m == "dns.list":
        answer(mid, {"records": json.load(open(ZONE))})
    elif m == "dns.apply":
        if MODE == "hang":
            child = subprocess.Popen(["sleep", "300"])
            open("child.pid", "w").write(str(child.pid))
            child.wait()
        elif MODE == "crash":
            child = subprocess.Popen(["sleep", "300"])
            open("child.pid", "w").write(str(child.pid))
            sys.stderr.write("applying with token %s ... segfault\n" % secret)
            sys.stderr.flush()
            os._exit(3)
        elif MODE == "flood":
            chunk = b"x" * (1 << 20)
            for _ in range(100):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
        elif MODE == "wrongid":
            answer(mid + 1, {})
        else:
            answer(mid, {})
    else:
        answer(mid, {})
    if m == "shutdown":
        break
"#;

const ZONE: &str =
    r#"[{"name": "mail.example.test", "type": "A", "value": "198.51.100.25", "ttl": 300}]"#;

struct Measured {
    run: Run,
    elapsed: Duration,
    max_rss_kib: i64,
}

#[allow(clippy::zombie_processes)] // reaped below with wait4, which also returns the rusage
fn sync(dir: &Path) -> Measured {
    let data = dir.join("data");
    let start = Instant::now();
    let child = cmd(dir)
        .args(["dns", "sync", "--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (child.stdout.unwrap(), child.stderr.unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut err, &mut stderr).unwrap();
    let stdout = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status),
        "autogit died of a signal: {status}"
    );
    Measured {
        run: Run {
            code: libc::WEXITSTATUS(status),
            stdout,
            stderr,
        },
        elapsed: start.elapsed(),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// Sets up the extension `mode` as the DNS provider and runs `dns sync`.
fn hostile(mode: &str) -> Option<(tempfile::TempDir, Measured)> {
    if !(have("python3") && Path::new("/usr/bin/python3").exists()) {
        return None;
    }
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("data/extensions");
    fs::create_dir_all(&ext).unwrap();
    fs::write(ext.join(mode), SCRIPT).unwrap();
    fs::set_permissions(ext.join(mode), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(ext.join("zone.json"), ZONE).unwrap();
    let env = format!(
        "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nDNS_PROVIDER={mode}\n\
         EXTENSIONS_ENABLED={mode}\nEXTENSIONS_TIMEOUT=2\nEVIL_TOKEN=evil-token-value\n\
         RFC2136_TSIG_SECRET=tsig-secret-value\nAWS_SECRET_ACCESS_KEY=aws-secret-value\n"
    );
    fs::write(d.path().join(".env"), env).unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let m = sync(d.path());
    eprintln!(
        "{mode}: exit {} in {:?}, peak RSS {} KiB\n{}",
        m.run.code, m.elapsed, m.max_rss_kib, m.run.stderr
    );
    // Nothing claimed, nothing applied: the zone is as it was.
    assert!(!m.run.stdout.contains("applied"), "{}", m.run.stdout);
    let zone = fs::read_to_string(ext.join("zone.json")).unwrap();
    assert_eq!(zone, ZONE);
    // No secret in what autogit printed.
    for s in ["evil-token-value", "tsig-secret-value", "aws-secret-value"] {
        assert!(
            !m.run.stderr.contains(s) && !m.run.stdout.contains(s),
            "{s}"
        );
    }
    Some((d, m))
}

fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
}

#[test]
fn a_hanging_extension_is_stopped_with_what_it_started() {
    let Some((d, m)) = hostile("hang") else {
        return;
    };
    assert_eq!(m.run.code, 1);
    assert!(
        m.run
            .stderr
            .contains("extension `hang` did not answer `dns.apply` within 2s; it was stopped")
            && m.run.stderr.contains("may or may not have been applied"),
        "{}",
        m.run.stderr
    );
    assert!(m.elapsed < Duration::from_secs(30), "{:?}", m.elapsed);
    // Its child (`sleep 300`, in its process group) is gone too.
    gone(d.path());
}

/// The process `child.pid` names is gone (within 5 s).
fn gone(d: &Path) {
    let pid = fs::read_to_string(d.join("data/extensions/child.pid")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(&pid), "sleep {pid} survived");
}

#[test]
fn a_crash_mid_call_is_reported_with_its_last_words_secrets_scrubbed() {
    let Some((d, m)) = hostile("crash") else {
        return;
    };
    // What it left running is killed with its process group.
    gone(d.path());
    assert_eq!(m.run.code, 1);
    assert!(
        m.run.stderr.contains(
            "extension `crash` exited (exit status: 3) before answering `dns.apply`; its last words on stderr: applying with token [secret] ... segfault"
        ),
        "{}",
        m.run.stderr
    );
    assert!(m.run.stderr.contains("may or may not have been applied"));
}

#[test]
fn a_flood_on_stdout_is_cut_at_the_cap() {
    let Some((_d, m)) = hostile("flood") else {
        return;
    };
    assert_eq!(m.run.code, 1);
    assert!(
        m.run.stderr.contains(
            "extension `flood` sent an answer to `dns.apply` longer than 4194304 bytes; it was stopped"
        ),
        "{}",
        m.run.stderr
    );
    // autogit read at most the cap (plus a buffer), not 100 MB.
    assert!(m.max_rss_kib < 100 * 1024, "peak RSS {} KiB", m.max_rss_kib);
}

#[test]
fn an_answer_with_the_wrong_id_is_a_protocol_error() {
    let Some((_d, m)) = hostile("wrongid") else {
        return;
    };
    assert_eq!(m.run.code, 1);
    assert!(
        m.run.stderr.contains(
            "extension `wrongid` broke the protocol on `dns.apply`: it answered id 5 to request 4; it was stopped"
        ),
        "{}",
        m.run.stderr
    );
}

#[test]
fn an_undeclared_secret_is_refused_before_anything_runs() {
    let Some((d, m)) = hostile("greedy") else {
        return;
    };
    assert_eq!(m.run.code, 3, "{}", m.run.stderr);
    for want in [
        "extension `greedy` is refused:",
        "its dns setting `RFC2136_TSIG_SECRET` holds a secret but is not declared as one",
        "it asks to inherit `AWS_SECRET_ACCESS_KEY`, which holds a secret",
    ] {
        assert!(m.run.stderr.contains(want), "{want}: {}", m.run.stderr);
    }
    // It was asked its handshake only: never initialized, never given a value.
    assert!(!d.path().join("data/extensions/initialized").exists());
}

#[test]
fn a_well_behaved_extension_gets_only_what_it_declared() {
    // The same script in no hostile mode: the sync goes through, and the environment it saw
    // at `initialize` was empty (it declared none).
    let Some(d) = (|| {
        if !(have("python3") && Path::new("/usr/bin/python3").exists()) {
            return None;
        }
        Some(tempfile::tempdir().unwrap())
    })() else {
        return;
    };
    let ext = d.path().join("data/extensions");
    fs::create_dir_all(&ext).unwrap();
    fs::write(ext.join("polite"), SCRIPT).unwrap();
    fs::set_permissions(ext.join("polite"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(ext.join("zone.json"), "[]").unwrap();
    fs::write(
        d.path().join(".env"),
        "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nDNS_PROVIDER=polite\nEXTENSIONS_ENABLED=polite\n",
    )
    .unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let m = sync(d.path());
    // polite's dns.apply applies nothing, so the read-back finds the zone still differs.
    assert_eq!(m.run.code, 1, "{}", m.run.stderr);
    assert!(
        m.run
            .stderr
            .contains("extension polite 6.6.6 accepted the update but the zone still differs"),
        "{}",
        m.run.stderr
    );
    let env: Vec<String> =
        serde_json::from_str(&fs::read_to_string(ext.join("initialized")).unwrap()).unwrap();
    assert!(env.iter().all(|k| k == "LC_CTYPE"), "{env:?}");
}
