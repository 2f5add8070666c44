//! Hostile configuration files are rejected quickly, with a clear error and bounded memory.
//! Time and peak memory of the real binary are measured (wait4) and bounded generously: the
//! bound is a ceiling for "fast and small", not a benchmark.
#![allow(unsafe_code)] // wait4 to read the child's peak RSS

mod common;
use common::*;
use std::fs;
use std::time::{Duration, Instant};

struct Measured {
    code: i32,
    stderr: String,
    elapsed: Duration,
    max_rss_kib: i64,
}

#[allow(clippy::zombie_processes)] // reaped below with wait4, which also returns the rusage
fn measure(dir: &std::path::Path, config: &str) -> Measured {
    let start = Instant::now();
    let child = cmd(dir)
        .args(["validate", "--config", config])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    Measured {
        code: libc::WEXITSTATUS(status),
        stderr: err,
        elapsed: start.elapsed(),
        max_rss_kib: usage.ru_maxrss,
    }
}

fn check(name: &str, content: impl FnOnce(&std::path::Path), expect: &str) {
    let d = tempfile::tempdir().unwrap();
    content(&d.path().join(name));
    let m = measure(d.path(), name);
    assert_eq!(m.code, 3, "{name}: {}", m.stderr);
    assert!(
        m.stderr.contains(expect),
        "{name}: expected `{expect}` in:\n{}",
        m.stderr
    );
    assert!(
        m.stderr.lines().count() < 40,
        "{name}: the error is short:\n{}",
        m.stderr
    );
    assert!(
        m.elapsed < Duration::from_secs(1),
        "{name}: took {:?}",
        m.elapsed
    );
    assert!(
        m.max_rss_kib < 100 * 1024,
        "{name}: peak memory {} KiB",
        m.max_rss_kib
    );
    eprintln!("{name}: {:?}, peak {} KiB", m.elapsed, m.max_rss_kib);
}

#[test]
fn alias_bomb() {
    check(
        "bomb.yml",
        |p| {
            let mut s = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
            for i in 1..10 {
                let refs = vec![format!("*a{}", i - 1); 9].join(", ");
                s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            fs::write(p, s).unwrap();
        },
        "too-many-nodes",
    );
}

#[test]
fn deep_nesting() {
    check(
        "deep.yml",
        |p| fs::write(p, format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).unwrap(),
        "too-deep",
    );
    check(
        "deep_maps.yml",
        |p| {
            fs::write(
                p,
                format!("{}{}", "{a: ".repeat(10_000), "}".repeat(10_000)),
            )
            .unwrap()
        },
        "too-deep",
    );
}

#[test]
fn huge_file() {
    check(
        "huge.yml",
        |p| {
            let f = fs::File::create(p).unwrap();
            f.set_len(200 * 1024 * 1024).unwrap(); // sparse: 200 MB without writing them
        },
        "too-large",
    );
}

#[test]
fn invalid_utf8() {
    check(
        "bad.yml",
        |p| fs::write(p, b"gitlab:\n  hostname: caf\xe9.example.com\n").unwrap(),
        "bad.yml:2:",
    );
}

#[test]
fn duplicate_keys() {
    check(
        "dup.yml",
        |p| fs::write(p, "gitlab: {}\nrunners: {}\ngitlab: {}\n").unwrap(),
        "duplicate key `gitlab`",
    );
}

#[test]
fn long_line() {
    check(
        "long.yml",
        |p| fs::write(p, format!("gitlab:\n  hostname: {}\n", "a".repeat(900_000))).unwrap(),
        "gitlab.hostname",
    );
}
