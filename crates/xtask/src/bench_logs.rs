//! `cargo run -p xtask --release -- bench logs [--lines N] [--batch N] [--fts5-only]`
//!
//! The log store on one generated corpus, in one run: a deterministic mix of GitLab's
//! services' lines (Rails JSON with correlation ids, nginx access lines, Sidekiq, Gitaly
//! logfmt, the registry), 2% errors with exception classes and stack lines, e-mail addresses
//! and tokens to scrub. Measured, for both engines, the SQLite FTS5 store autogit ships
//! (`autogit_drivers::logstore`) and tantivy (`bench_logs_tantivy.rs`, bench-only):
//! 1. enrichment alone, lines/s on one core;
//! 2. ingest (enrich + scrub + store, a transaction / commit every `--batch` lines, 50 000 by
//!    default: what the daemon's once-a-second pass holds at 50 000 lines/s), lines/s of
//!    wall-clock time and lines per CPU-second of the whole process (the per-core figure:
//!    tantivy indexes and merges on threads of its own), and the store's size per million lines;
//! 3. five query shapes, p50/p99 over 50 runs each, against `grep` (and `rg` when installed)
//!    over the raw file for the same question, same run; ratio = baseline / engine.

use autogit_core::logs::{enrich, parse_query};
use autogit_drivers::logstore::{Line, LogStore};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::bench_logs_tantivy::TantivyStore;
use crate::scheduler::Rng;

/// CPU seconds this process has used, all threads (user + system, from `/proc/self/stat`).
pub(crate) fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name's closing parenthesis: field 3 onwards; utime and stime are 14
    // and 15, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// Bytes of the files under `dir` whose names start with `prefix`.
fn dir_size(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

const PATHS: [&str; 8] = [
    "/api/v4/projects",
    "/api/v4/projects/42/merge_requests",
    "/users/sign_in",
    "/-/readiness",
    "/group/project/-/pipelines",
    "/api/v4/jobs/request",
    "/group/project.git/info/refs",
    "/-/metrics",
];
const CLASSES: [&str; 6] = [
    "NoMethodError",
    "ActiveRecord::RecordNotFound",
    "Gitlab::Git::CommandError",
    "Redis::TimeoutError",
    "GRPC::DeadlineExceeded",
    "ActionController::RoutingError",
];
const WORDS: [&str; 10] = [
    "pipeline",
    "merge",
    "cache",
    "repository",
    "webhook",
    "artifact",
    "runner",
    "branch",
    "commit",
    "refresh",
];

/// One line of the corpus: (service, text).
pub(crate) fn line(r: &mut Rng, i: u64) -> (&'static str, String) {
    let rid = format!("01J{:08X}", i.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF);
    let error = r.below(50) == 0;
    match r.below(5) {
        0 => {
            let status = if error {
                500
            } else {
                *[200u16, 200, 200, 302, 404]
                    .get(r.below(5) as usize)
                    .unwrap_or(&200)
            };
            let mut s = format!(
                r#"{{"method":"GET","path":"{}","status":{status},"duration_s":0.{:03},"correlation_id":"{rid}","meta.user":"user{}","severity":"{}""#,
                r.pick(&PATHS),
                r.below(1000),
                r.below(500),
                if error { "ERROR" } else { "INFO" }
            );
            if error {
                s.push_str(&format!(
                    r#","exception.class":"{}","exception.message":"{} failed""#,
                    r.pick(&CLASSES),
                    r.pick(&WORDS)
                ));
            }
            if r.below(100) == 0 {
                s.push_str(&format!(
                    r#","user_email":"dev{}@example.com""#,
                    r.below(1000)
                ));
            }
            s.push('}');
            ("gitlab", s)
        }
        1 => {
            let status = if error { 502 } else { 200 };
            (
                "nginx",
                format!(
                    r#"10.0.{}.{} - - [06/Dec/2026:10:{:02}:{:02} +0000] "GET {} HTTP/1.1" {status} {} "-" "git/2.43.0""#,
                    r.below(255),
                    r.below(255),
                    r.below(60),
                    r.below(60),
                    r.pick(&PATHS),
                    r.below(50_000)
                ),
            )
        }
        2 => {
            if error {
                let c = r.pick(&CLASSES);
                if r.below(2) == 0 {
                    return (
                        "sidekiq",
                        format!(
                            "    from /opt/gitlab/embedded/service/gitlab-rails/app/workers/{}_worker.rb:{}:in `perform'",
                            r.pick(&WORDS),
                            r.below(300)
                        ),
                    );
                }
                return (
                    "sidekiq",
                    format!(
                        "ERROR {c}: {} worker failed jid={rid} for ops{}@example.com",
                        r.pick(&WORDS),
                        r.below(50)
                    ),
                );
            }
            (
                "sidekiq",
                format!(
                    "INFO: {}Worker JID-{rid} done: {}.{:03} sec",
                    r.pick(&WORDS),
                    r.below(10),
                    r.below(1000)
                ),
            )
        }
        3 => {
            let level = if error { "error" } else { "info" };
            let extra = if error {
                " error=\"connection refused\""
            } else {
                ""
            };
            (
                "gitaly",
                format!(
                    "time=2026-12-06T10:00:00Z level={level} msg=\"finished unary call\" grpc.method={} correlation_id={rid} grpc.time_ms={}{extra}",
                    r.pick(&["FindCommit", "TreeEntry", "ListRefs", "GetBlob"]),
                    r.below(400)
                ),
            )
        }
        _ => {
            let tok = if r.below(200) == 0 {
                format!(" token=glpat-{:020x}", r.next())
            } else {
                String::new()
            };
            (
                "registry",
                format!(
                    "level=info msg=\"response completed\" http.request.uri=/v2/group/image/manifests/{} http.response.status=200{tok}",
                    r.below(9999)
                ),
            )
        }
    }
}

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn time_cmd(cmd: &mut Command, runs: usize) -> Option<f64> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = cmd.output().ok()?;
        if !(out.status.success() || out.status.code() == Some(1)) {
            return None;
        }
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    Some(pct(&v, 0.5))
}

pub fn bench_logs(lines: u64, batch: usize, fts5_only: bool) {
    let batch = batch.max(1);
    let dir = Path::new("target/bench-logs");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let raw = dir.join("corpus.log");
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut corpus: Vec<(&'static str, String)> = Vec::with_capacity(lines as usize);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
        for i in 0..lines {
            let (svc, text) = line(&mut r, i);
            writeln!(f, "{svc} {text}").unwrap();
            corpus.push((svc, text));
        }
    }
    let raw_bytes = std::fs::metadata(&raw).unwrap().len();
    println!(
        "corpus: {lines} lines, {:.0} MB raw ({})",
        raw_bytes as f64 / 1e6,
        raw.display()
    );

    // 1. Enrichment alone.
    let t = Instant::now();
    let mut scrubbed = 0u64;
    for (_, text) in &corpus {
        scrubbed += u64::from(enrich(text, &[]).scrubbed);
    }
    let enrich_s = t.elapsed().as_secs_f64();
    println!(
        "enrich + scrub: {:.0} lines/s on one core ({scrubbed} spans scrubbed)",
        lines as f64 / enrich_s
    );

    // 2. Ingest, each engine on its own copy of the corpus' lines, enrichment included.
    // "Per core": lines per second of CPU time of the whole process (every thread: tantivy
    // indexes on its own thread and merges on others), besides the wall-clock rate.
    let db = dir.join("logs.db");
    let mut store = LogStore::open(&db).unwrap();
    let base_ns: i64 = 1_796_000_000 * 1_000_000_000;
    let at = |i: usize| base_ns + (i as i64) * 1_000_000;
    let (t, c) = (Instant::now(), cpu_s());
    let mut store_s = 0.0;
    for (n, chunk) in corpus.chunks(batch).enumerate() {
        let lines: Vec<Line> = chunk
            .iter()
            .enumerate()
            .map(|(k, (svc, text))| Line {
                at_ns: at(n * batch + k),
                service: (*svc).to_owned(),
                enriched: enrich(text, &[]),
            })
            .collect();
        let s = Instant::now();
        store.insert(&lines).unwrap();
        store_s += s.elapsed().as_secs_f64();
    }
    let (ingest_s, ingest_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
    drop(store);
    // Checkpoint the WAL so the size is the database's.
    let store = LogStore::open(&db).unwrap();
    let _ = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA wal_checkpoint(TRUNCATE);")
        .output();
    let size = dir_size(dir, "logs.db");
    println!(
        "FTS5 ingest (enrich + scrub + insert, transactions of {batch}): {:.0} lines/s wall, {:.0} lines per CPU-second ({:.0}% of the wall time in the store); {:.0} MB per million lines ({:.2}x the raw text)",
        lines as f64 / ingest_s,
        lines as f64 / ingest_cpu,
        100.0 * store_s / ingest_s,
        size as f64 / 1e6 / (lines as f64 / 1e6),
        size as f64 / raw_bytes as f64
    );

    let tdir = dir.join("tantivy");
    std::fs::create_dir_all(&tdir).unwrap();
    let mut tv = TantivyStore::create(&tdir, 256 << 20).unwrap();
    let (t, c) = (Instant::now(), cpu_s());
    // `--fts5-only`: tantivy stays empty (its columns say n/a).
    for (n, chunk) in corpus.chunks(batch).enumerate().filter(|_| !fts5_only) {
        for (k, (svc, text)) in chunk.iter().enumerate() {
            tv.add(at(n * batch + k), svc, &enrich(text, &[])).unwrap();
        }
        tv.commit().unwrap();
    }
    tv.finish().unwrap();
    let (tv_s, tv_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
    let tv_size = dir_size(&tdir, "");
    if !fts5_only {
        println!(
            "tantivy ingest (enrich + scrub + index on 1 indexing thread, a commit every {batch}, merges awaited): {:.0} lines/s wall, {:.0} lines per CPU-second; {:.0} MB per million lines ({:.2}x the raw text)",
            lines as f64 / tv_s,
            lines as f64 / tv_cpu,
            tv_size as f64 / 1e6 / (lines as f64 / 1e6),
            tv_size as f64 / raw_bytes as f64
        );
    }

    // 3. Queries against grep / rg over the raw file.
    // A correlation id of a line in the middle that has one.
    let probe_rid = corpus[corpus.len() / 2..]
        .iter()
        .find_map(|(_, t)| {
            t.split("correlation_id\":\"")
                .nth(1)
                .map(|r| r[..11].to_owned())
        })
        .unwrap_or_default();
    let shapes: Vec<(&str, String, Vec<String>)> = vec![
        (
            "one word",
            "repository".into(),
            vec!["-F".into(), "repository".into()],
        ),
        (
            "phrase",
            "\"connection refused\"".into(),
            vec!["-F".into(), "connection refused".into()],
        ),
        (
            "fields: level + service",
            "level:error service:gitaly".into(),
            vec!["-E".into(), "^gitaly .*level=error".into()],
        ),
        (
            "error class",
            "class:CommandError".into(),
            vec!["-F".into(), "Gitlab::Git::CommandError".into()],
        ),
        (
            "correlation id",
            format!("request:{probe_rid}"),
            vec!["-F".into(), probe_rid.clone()],
        ),
    ];
    let have_rg = Command::new("rg").arg("--version").output().is_ok();
    println!(
        "\n| query | FTS5 p50 | p99 | tantivy p50 | p99 | hits (first 100) | grep -c median | FTS5 / tantivy ratio |{}",
        if have_rg {
            " rg -c median | FTS5 / tantivy ratio |"
        } else {
            ""
        }
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- |{}",
        if have_rg { " --- | --- |" } else { "" }
    );
    let runs = 50;
    for (name, q, grep_args) in &shapes {
        let query = parse_query(q).unwrap();
        let (mut times, mut tv_times) = (Vec::new(), Vec::new());
        let (mut hits, mut tv_hits) = (0, 0);
        for _ in 0..runs {
            let t = Instant::now();
            hits = store.search(&query, 0, i64::MAX, 100).unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if !fts5_only {
                let t = Instant::now();
                tv_hits = tv.search(&query, 0, i64::MAX, 100).len();
                tv_times.push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                tv_times.push(f64::NAN);
            }
        }
        if hits != tv_hits && !fts5_only {
            eprintln!("`{q}`: FTS5 found {hits}, tantivy {tv_hits}");
        }
        times.sort_by(f64::total_cmp);
        tv_times.sort_by(f64::total_cmp);
        let (p50, p99) = (pct(&times, 0.5), pct(&times, 0.99));
        let (tp50, tp99) = (pct(&tv_times, 0.5), pct(&tv_times, 0.99));
        let grep = time_cmd(
            // `-c` into a pipe: every line is read (with its output going to /dev/null, GNU
            // grep stops at the first match).
            Command::new("grep").arg("-c").args(grep_args).arg(&raw),
            3,
        );
        let rg = have_rg
            .then(|| {
                time_cmd(
                    Command::new("rg")
                        .arg("-c")
                        .args(grep_args.iter().filter(|a| *a != "-E"))
                        .arg(&raw),
                    3,
                )
            })
            .flatten();
        let fmt = |b: Option<f64>| {
            b.map_or("n/a | n/a".to_owned(), |b| {
                let tv = if tp50.is_nan() {
                    "n/a".to_owned()
                } else {
                    format!("{:.0}x", b / tp50.max(0.001))
                };
                format!("{b:.1} ms | {:.0}x / {tv}", b / p50.max(0.001))
            })
        };
        let ms = |x: f64| {
            if x.is_nan() {
                "n/a".to_owned()
            } else {
                format!("{x:.2} ms")
            }
        };
        println!(
            "| {name} (`{q}`) | {p50:.2} ms | {p99:.2} ms | {} | {} | {hits} | {} |{}",
            ms(tp50),
            ms(tp99),
            fmt(grep),
            if have_rg {
                format!(" {} |", fmt(rg))
            } else {
                String::new()
            }
        );
    }
}
