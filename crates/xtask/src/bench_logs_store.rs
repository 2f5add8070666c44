//! `cargo run -p xtask --release -- bench logs-store [--lines N] [--batch N] [--variants a,b]`
//!
//! The store's share of ingest, variant by variant, in one run on the corpus of `bench logs`
//! (enriched once, up front, so every variant stores the same lines): for each variant of the
//! schema, FTS5 options or pragmas, a fresh database, the same batches (one transaction each,
//! rows 64 to an `INSERT`, then one `INSERT … SELECT` into the index, as the shipped store
//! does), and the CPU time of the process spent storing. `shipped` is
//! `autogit_drivers::logstore::LogStore` itself; `main` is the store as it was before
//! issue 21's round (`MAIN_SCHEMA`), the baseline every ratio is against (the first variant
//! run when `--variants` leaves it out). What each variant
//! breaks is in docs/logs.md ("Speed").

use autogit_core::logs::enrich;
use autogit_drivers::logstore::{Line, LogStore};
use rusqlite::Connection;
use std::path::Path;
use std::time::Instant;

use crate::bench_logs::{cpu_s, line};
use crate::scheduler::Rng;

/// The store's schema before issue 21's round (the `main` variant).
const MAIN_SCHEMA: &str = "
CREATE TABLE lines (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, service TEXT NOT NULL, level TEXT NOT NULL,
    class TEXT, class_tail TEXT, status INTEGER, request_id TEXT, trace_id TEXT, job_id TEXT,
    ips TEXT NOT NULL DEFAULT '', urls TEXT NOT NULL DEFAULT '', message TEXT NOT NULL
);
CREATE INDEX lines_at ON lines(at);
CREATE INDEX lines_service ON lines(service, id);
CREATE INDEX lines_request ON lines(request_id) WHERE request_id IS NOT NULL;
CREATE INDEX lines_class ON lines(class_tail, id) WHERE class_tail IS NOT NULL;
CREATE VIRTUAL TABLE lines_fts USING fts5(message, content='lines', content_rowid='id', columnsize=0);
";

struct Variant {
    name: &'static str,
    what: &'static str,
    /// `None`: the shipped `LogStore` (with `fts` set on it; `pragmas` unused).
    schema: Option<String>,
    pragmas: &'static [(&'static str, &'static str)],
    /// FTS5 configuration (`INSERT INTO lines_fts(lines_fts, rank) VALUES (k, v)`).
    fts: &'static [(&'static str, i64)],
}

fn variants() -> Vec<Variant> {
    let main = MAIN_SCHEMA.to_owned();
    let without = |idx: &[&str]| {
        MAIN_SCHEMA
            .lines()
            .filter(|l| !idx.iter().any(|i| l.contains(&format!("INDEX {i} "))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let fts = |opts: &str| {
        MAIN_SCHEMA.replace(
            "content_rowid='id', columnsize=0)",
            &format!("content_rowid='id', columnsize=0, {opts})"),
        )
    };
    // The correlation ids as a second column of the index, read from a generated column.
    let ids = |schema: &str| {
        schema
            .replace(
                "message TEXT NOT NULL\n);",
                "message TEXT NOT NULL,\n    ids TEXT GENERATED ALWAYS AS (concat_ws(' ', request_id, trace_id, job_id)) VIRTUAL\n);",
            )
            .replace("fts5(message,", "fts5(message, ids,")
    };
    let hash: &'static [(&'static str, i64)] = &[("hashsize", 64 << 20)];
    vec![
        Variant {
            name: "main",
            what: "the store before this round (baseline)",
            schema: Some(main.clone()),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "shipped",
            what: "autogit_drivers::logstore::LogStore as built",
            schema: None,
            pragmas: &[],
            fts: &[],
        },
        Variant {
            name: "shipped-automerge-8",
            what: "the shipped store, FTS5 automerge 8 (shipped: 16)",
            schema: None,
            pragmas: &[],
            fts: &[("automerge", 8)],
        },
        Variant {
            name: "shipped-automerge-4",
            what: "the shipped store with FTS5's default merging (automerge 4, crisismerge 16)",
            schema: None,
            pragmas: &[],
            fts: &[("automerge", 4), ("crisismerge", 16)],
        },
        Variant {
            name: "no-request-index",
            what: "without lines_request",
            schema: Some(without(&["lines_request"])),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "no-at-index",
            what: "without lines_at",
            schema: Some(without(&["lines_at"])),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "no-indexes",
            what: "no secondary index at all (bound)",
            schema: Some(without(&[
                "lines_at",
                "lines_service",
                "lines_request",
                "lines_class",
            ])),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "no-fts",
            what: "rows and indexes only, no full-text index (bound)",
            schema: Some(
                MAIN_SCHEMA
                    .lines()
                    .filter(|l| !l.contains("fts5"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            pragmas: &[],
            fts: &[],
        },
        Variant {
            name: "no-service-index",
            what: "without lines_service",
            schema: Some(without(&["lines_service"])),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "no-class-index",
            what: "without lines_class",
            schema: Some(without(&["lines_class"])),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "no-request-at",
            what: "without lines_request and lines_at",
            schema: Some(without(&["lines_request", "lines_at"])),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "ids-column",
            what: "without lines_request and lines_at; the ids in a second FTS5 column",
            schema: Some(ids(&without(&["lines_request", "lines_at"]))),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "automerge-8",
            what: "FTS5 automerge 8 (default 4)",
            schema: Some(main.clone()),
            pragmas: &[],
            fts: &[("hashsize", 64 << 20), ("automerge", 8)],
        },
        Variant {
            name: "automerge-16",
            what: "FTS5 automerge 16",
            schema: Some(main.clone()),
            pragmas: &[],
            fts: &[
                ("hashsize", 64 << 20),
                ("automerge", 16),
                ("crisismerge", 64),
            ],
        },
        Variant {
            name: "ascii",
            what: "tokenizer ascii (unicode61 folds non-ASCII case and diacritics)",
            schema: Some(fts("tokenize='ascii'")),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "unicode61-nodiacritics",
            what: "tokenizer unicode61 remove_diacritics 0",
            schema: Some(fts("tokenize='unicode61 remove_diacritics 0'")),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "detail-column",
            what: "detail=column (no positions: phrases break)",
            schema: Some(fts("detail=column")),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "detail-none",
            what: "detail=none (no positions: phrases break)",
            schema: Some(fts("detail=none")),
            pragmas: &[],
            fts: hash,
        },
        Variant {
            name: "pgsz-16k",
            what: "FTS5 pgsz 16000 (default 4050)",
            schema: Some(main.clone()),
            pragmas: &[],
            fts: &[("hashsize", 64 << 20), ("pgsz", 16000)],
        },
        Variant {
            name: "page-16k",
            what: "PRAGMA page_size 16384 (default 4096)",
            schema: Some(main.clone()),
            pragmas: &[("page_size", "16384")],
            fts: hash,
        },
        Variant {
            name: "mmap",
            what: "PRAGMA mmap_size 1 GiB",
            schema: Some(main.clone()),
            pragmas: &[("mmap_size", "1073741824")],
            fts: hash,
        },
        Variant {
            name: "checkpoint-64m",
            what: "wal_autocheckpoint 16384 pages (64 MiB)",
            schema: Some(main),
            pragmas: &[("wal_autocheckpoint", "16384")],
            fts: hash,
        },
    ]
}

/// A store of one variant: its connection, ready to take batches as the shipped store does.
fn open_variant(path: &Path, v: &Variant) -> Connection {
    let conn = Connection::open(path).unwrap();
    for (k, val) in v.pragmas {
        if *k == "page_size" {
            conn.pragma_update(None, k, val).unwrap();
        }
    }
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "cache_size", -65_536).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 4096)
        .unwrap();
    for (k, val) in v.pragmas {
        if *k != "page_size" {
            conn.pragma_update(None, k, val).unwrap();
        }
    }
    conn.execute_batch(v.schema.as_deref().unwrap()).unwrap();
    let has_fts = v.schema.as_deref().is_some_and(|s| s.contains("fts5"));
    for (k, val) in v.fts {
        if has_fts {
            conn.execute(
                "INSERT INTO lines_fts (lines_fts, rank) VALUES (?1, ?2)",
                rusqlite::params![k, val],
            )
            .unwrap();
        }
    }
    conn
}

/// The shipped store's insert path, on a variant's connection.
fn insert_variant(conn: &mut Connection, lines: &[Line], has_fts: bool, cols: &str) {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let before = autogit_drivers::logstore::insert_rows(&tx, lines, 64).unwrap();
    if has_fts {
        tx.prepare_cached(&format!(
            "INSERT INTO lines_fts (rowid, {cols}) SELECT id, {cols} FROM lines WHERE id > ?1"
        ))
        .and_then(|mut st| st.execute([before]))
        .unwrap();
    }
    tx.commit().unwrap();
}

pub fn bench_logs_store(lines: u64, batch: usize, only: Option<&str>) {
    let batch = batch.max(1);
    let dir = Path::new("target/bench-logs-store");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let base_ns: i64 = 1_796_000_000 * 1_000_000_000;
    let t = Instant::now();
    let corpus: Vec<Line> = (0..lines)
        .map(|i| {
            let (svc, text) = line(&mut r, i);
            Line {
                at_ns: base_ns + i as i64 * 1_000_000,
                service: svc.to_owned(),
                enriched: enrich(&text, &[]),
            }
        })
        .collect();
    println!(
        "corpus: {lines} lines of `bench logs`, enriched in {:.1} s; transactions of {batch}",
        t.elapsed().as_secs_f64()
    );
    // Ratios are against the first variant run (`main` unless `--variants` leaves it out).
    println!(
        "\n| variant | what | store µs per line (CPU) | lines per CPU-second (store only) | vs first | size MB per million lines |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut base: Option<f64> = None;
    for v in variants() {
        if let Some(only) = only
            && !only.split(',').any(|o| o == v.name)
        {
            continue;
        }
        let db = dir.join(format!("{}.db", v.name));
        let (t, c) = (Instant::now(), cpu_s());
        match &v.schema {
            None => {
                let mut s = LogStore::open(&db).unwrap();
                // FTS5's settings live in the database: set them on a second connection.
                let c = Connection::open(&db).unwrap();
                for (k, val) in v.fts {
                    c.execute(
                        "INSERT INTO lines_fts (lines_fts, rank) VALUES (?1, ?2)",
                        rusqlite::params![k, val],
                    )
                    .unwrap();
                }
                drop(c);
                for chunk in corpus.chunks(batch) {
                    s.insert(chunk).unwrap();
                }
            }
            Some(schema) => {
                let mut conn = open_variant(&db, &v);
                let has_fts = schema.contains("fts5");
                let cols = if schema.contains("fts5(message, ids") {
                    "message, ids"
                } else {
                    "message"
                };
                for chunk in corpus.chunks(batch) {
                    insert_variant(&mut conn, chunk, has_fts, cols);
                }
                conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").ok();
            }
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
        // Size with the WAL checkpointed into the database.
        if let Ok(c) = Connection::open(&db) {
            let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let size: u64 = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}.db", v.name))
            })
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        let us = cpu * 1e6 / lines as f64;
        let b = *base.get_or_insert(us);
        println!(
            "| {} | {} | {us:.2} ({wall:.1} s wall) | {:.0} | {:.2}x | {:.0} |",
            v.name,
            v.what,
            lines as f64 / cpu,
            b / us,
            size as f64 / 1e6 / (lines as f64 / 1e6)
        );
        let _ = std::fs::remove_file(&db);
        let _ = std::fs::remove_file(dir.join(format!("{}.db-wal", v.name)));
        let _ = std::fs::remove_file(dir.join(format!("{}.db-shm", v.name)));
    }
}
