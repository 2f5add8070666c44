//! The audit log on a real file: the chain verifies after appends (from many threads and two
//! `AuditLog`s, as the server and the CLI are), and every tampering of a copy (an edited
//! field, a deleted middle or last line, two lines swapped, a reformatted line) is named by
//! `verify` at its first bad record.

use autogit_app::audit::{AuditEntry, AuditLog, AuditQuery, VerifyError, verify};
use autogit_app::{ManualClock, Settings};
use autogit_core::access::Role;
use autogit_core::config::Config;
use autogit_core::platform::PlatformEnv;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn open(dir: &Path) -> AuditLog {
    let settings = Settings::new(Config::default(), PlatformEnv::default(), dir.to_owned());
    AuditLog::open(&settings, Arc::new(ManualClock::at(1_800_000_000))).unwrap()
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        actor: format!("key:agk_actor{:03}", i % 3),
        role: Some(Role::Operator),
        action: if i.is_multiple_of(2) {
            "services.deploy"
        } else {
            "dns.records.create"
        }
        .into(),
        target: format!("svc-{i}"),
        outcome: "ok".into(),
        status: Some(200),
        request_id: format!("req-{i}"),
        source: Some("127.0.0.1".into()),
    }
}

/// A copy of the log and its head in a fresh directory, the log's lines edited by `edit`.
fn tampered(log: &AuditLog, edit: impl FnOnce(&mut Vec<String>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let path = dir.path().join("audit.jsonl");
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    std::fs::copy(log.path().with_file_name("head"), dir.path().join("head")).unwrap();
    (dir, path)
}

fn bad(path: &Path) -> (u64, Option<u64>, String) {
    match verify(path).unwrap_err() {
        VerifyError::Bad { line, seq, why, .. } => (line, seq, why),
        other => panic!("{other}"),
    }
}

#[test]
fn the_chain_verifies_and_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..10 {
        let r = log.append(entry(i)).unwrap();
        assert_eq!(r.seq, i as u64 + 1);
    }
    let report = verify(log.path()).unwrap();
    assert_eq!((report.records, report.head_checked), (10, true));
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(log.path()), 0o600);
    assert_eq!(mode(log.path().parent().unwrap()), 0o700);

    // One field edited (the outcome of seq 4).
    let (_d, p) = tampered(&log, |l| l[3] = l[3].replace("\"ok\"", "\"denied\""));
    let (line, seq, why) = bad(&p);
    assert_eq!((line, seq), (4, Some(4)), "{why}");
    assert!(why.contains("edited"), "{why}");

    // Same meaning, other bytes (spacing): still an edit.
    let (_d, p) = tampered(&log, |l| l[6] = l[6].replacen(",", ", ", 1));
    assert_eq!(bad(&p).0, 7);

    // A middle line deleted.
    let (_d, p) = tampered(&log, |l| {
        l.remove(4);
    });
    let (line, seq, why) = bad(&p);
    assert_eq!((line, seq), (5, Some(6)), "{why}");
    assert!(why.contains("seq 5 was expected"), "{why}");

    // The last line deleted: only the head file tells.
    let (_d, p) = tampered(&log, |l| {
        l.pop();
    });
    let (line, seq, why) = bad(&p);
    assert_eq!((line, seq), (10, Some(10)), "{why}");
    assert!(why.contains("removed from the end"), "{why}");

    // Two lines swapped.
    let (_d, p) = tampered(&log, |l| l.swap(2, 3));
    let (line, seq, _) = bad(&p);
    assert_eq!((line, seq), (3, Some(4)));

    // A record replaced by a well-formed one with a recomputed hash: its successor's prev
    // gives it away.
    let (_d, p) = tampered(&log, |l| {
        let mut r: autogit_app::audit::AuditRecord = serde_json::from_str(&l[1]).unwrap();
        r.entry.outcome = "denied".into();
        r.hash = autogit_app::audit::record_hash(r.seq, &r.at, &r.entry, &r.prev);
        l[1] = serde_json::to_string(&r).unwrap();
    });
    let (line, seq, why) = bad(&p);
    assert_eq!((line, seq), (3, Some(3)), "{why}");
    assert!(why.contains("prev"), "{why}");

    // Not JSON at all.
    let (_d, p) = tampered(&log, |l| l[0] = "garbage".into());
    assert_eq!(bad(&p).0, 1);

    // Without a head file truncation cannot be seen, and the report says so.
    let (d, p) = tampered(&log, |l| {
        l.pop();
    });
    std::fs::remove_file(d.path().join("head")).unwrap();
    let r = verify(&p).unwrap();
    assert!(!r.head_checked);
    assert!(r.notes[0].contains("no head file"), "{:?}", r.notes);
}

#[test]
fn concurrent_appends_from_threads_and_processes_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    // Two logs on one directory: as the API server and a CLI command in another process.
    let (a, b) = (open(dir.path()), open(dir.path()));
    std::thread::scope(|s| {
        for t in 0..8usize {
            let log = if t.is_multiple_of(2) {
                a.clone()
            } else {
                b.clone()
            };
            s.spawn(move || {
                for i in 0..25 {
                    log.append(entry(t * 100 + i)).unwrap();
                }
            });
        }
    });
    let report = verify(a.path()).unwrap();
    assert_eq!(report.records, 200);
    assert!(report.head_checked);
}

#[test]
fn a_torn_last_write_is_dropped_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(entry(0)).unwrap();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap()
        .write_all(b"{\"seq\":2,\"at\":")
        .unwrap();
    let r = verify(log.path()).unwrap();
    assert_eq!(r.records, 1);
    assert!(r.notes[0].contains("incomplete"), "{:?}", r.notes);
    assert_eq!(log.list(&AuditQuery::default()).unwrap().len(), 1);
    assert_eq!(log.append(entry(1)).unwrap().seq, 2);
    let r = verify(log.path()).unwrap();
    assert_eq!((r.records, r.notes.len()), (2, 0));
}

#[test]
fn nothing_is_chained_to_a_last_line_that_is_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(entry(0)).unwrap();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap()
        .write_all(b"not a record\n")
        .unwrap();
    let e = log.append(entry(1)).unwrap_err().to_string();
    assert!(
        e.contains("the last line is not an audit record") && e.contains("audit verify"),
        "{e}"
    );
    assert_eq!(bad_line(log.path()), 2);
}

fn bad_line(path: &Path) -> u64 {
    bad(path).0
}

#[test]
fn list_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..20 {
        log.append(entry(i)).unwrap();
    }
    let seqs =
        |q: AuditQuery| -> Vec<u64> { log.list(&q).unwrap().iter().map(|r| r.seq).collect() };
    assert_eq!(
        seqs(AuditQuery {
            limit: 3,
            ..Default::default()
        }),
        vec![18, 19, 20]
    );
    assert_eq!(
        seqs(AuditQuery {
            after: Some(5),
            limit: 3,
            ..Default::default()
        }),
        vec![6, 7, 8]
    );
    assert_eq!(
        seqs(AuditQuery {
            action: Some("services.deploy".into()),
            actor: Some("key:agk_actor000".into()),
            ..Default::default()
        }),
        vec![1, 7, 13, 19]
    );
    let r = &log.list(&AuditQuery::default()).unwrap()[0];
    assert_eq!(r.at, "2027-01-15T08:00:00Z");
    assert_eq!(r.entry, entry(0));
}
