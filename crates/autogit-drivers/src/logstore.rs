//! The embedded log store: enriched, scrubbed lines in SQLite with an FTS5 full-text index
//! (`<data>/logs.db`, WAL, mode 0600), searched newest first (BM25 scores for hybrid
//! ranking only) with field filters, and trimmed by age and by line count. SQLite FTS5 (compiled into the
//! bundled SQLite): no new dependency and one file that `backup` already knows how to copy;
//! its figures are in `xtask bench logs` (against tantivy and `rg`) and `xtask bench logs-store`
//! (the store's CPU per line, each choice of its schema against the others).
//!
//! **Invariant:** only [`autogit_core::logs::enrich`]'s scrubbed message is stored; nothing
//! here sees a raw line.

use autogit_core::logs::{Enriched, Field, Level, Query, RRF_K, SearchMode, fuse, status_range};
use rusqlite::{Connection, OpenFlags, params, params_from_iter};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("log store {path}: {message}")]
    Sqlite { path: PathBuf, message: String },
}

/// One line to store: when (unix nanoseconds), which service, and its enrichment.
#[derive(Clone, Debug)]
pub struct Line {
    pub at_ns: i64,
    pub service: String,
    pub enriched: Enriched,
}

/// A search hit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hit {
    /// The line's row (fusion's key; not shown).
    #[serde(skip)]
    pub id: i64,
    pub at_ns: i64,
    pub service: String,
    pub level: String,
    pub message: String,
    pub error_class: Option<String>,
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub job_id: Option<String>,
    /// Relevance, higher is better: cosine similarity (semantic) or the reciprocal rank
    /// fusion of BM25's and the semantic ranking (hybrid); 0 in lexical search, which is
    /// ordered by time (newest first) and computes no score.
    pub score: f64,
}

/// How much to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_age: Duration,
    pub max_lines: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(14 * 86_400),
            max_lines: 5_000_000,
        }
    }
}

/// The schema's version (`PRAGMA user_version`): 0 is the store before issue 21's ingest
/// round (four b-tree indexes on `lines`, a one-column index), migrated at open.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    service TEXT NOT NULL,
    level TEXT NOT NULL,
    class TEXT,
    -- The class's last segment (`NullPointerException` of `java.lang.NullPointerException`).
    class_tail TEXT,
    status INTEGER,
    request_id TEXT,
    trace_id TEXT,
    job_id TEXT,
    ips TEXT NOT NULL DEFAULT '',
    urls TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL,
    -- What the index's second column holds (computed when read, not stored).
    ids TEXT GENERATED ALWAYS AS (concat_ws(' ', service, level, request_id, trace_id, job_id)) VIRTUAL
);
-- The only b-tree index besides the rowid: 2% of lines have a class. The service, the level
-- and the correlation ids are found through the full-text index's `ids` column instead (an index
-- that takes a line's keys in sorted segments, not one b-tree insert per key: the request
-- id's b-tree took 1.5 us of the 5.6 us a line cost to store), the time range through
-- `spans`.
CREATE INDEX IF NOT EXISTS lines_class ON lines(class_tail, id) WHERE class_tail IS NOT NULL;
-- External content (the text is stored once, in `lines`); no per-line size table
-- (`columnsize=0`: one b-tree insert less per line; BM25 reads the length from the text).
-- `message` holds the words; `ids` the service, level, request, trace and job ids, matched only
-- with a column filter and checked against their own columns (`ids` weighs 0 in BM25).
CREATE VIRTUAL TABLE IF NOT EXISTS lines_fts USING fts5(
    message, ids, content='lines', content_rowid='id', columnsize=0
);
-- One row per stored batch: its rows (`first_id`..=`last_id`, rows `n`), their oldest `at`,
-- and `upto`, the newest `at` of this batch and of every batch before it (never falls, so
-- the first span with `upto >= t` starts at or before every line at `t` or later). Replaces
-- an index on `at`: a time range's lower bound is one lookup, trimming by age visits only
-- the spans with lines that old, and `count()` sums `n`.
CREATE TABLE IF NOT EXISTS spans (
    last_id INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    min_at INTEGER NOT NULL,
    upto INTEGER NOT NULL,
    n INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_upto ON spans(upto);
CREATE INDEX IF NOT EXISTS spans_min_at ON spans(min_at);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, at INTEGER NOT NULL);
-- Semantic search (`logs.semantic`), filled off the ingest path by the embed pass: one row
-- per message template (`core::logs::template`) with its embedding (384 little-endian f32)
-- once computed, and each embedded line's template.
CREATE TABLE IF NOT EXISTS templates (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, vec BLOB);
CREATE TABLE IF NOT EXISTS line_templates (line INTEGER PRIMARY KEY, template INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS line_templates_t ON line_templates(template, line);
";

/// A store of schema version 0 brought to [`SCHEMA_VERSION`], in one transaction: its three
/// b-tree indexes dropped, the `ids` column added, the full-text index rebuilt with its
/// second column (every stored line tokenized again: about 3 us a line, 15 s for 5 million
/// lines, once), and one span for the lines already there.
const MIGRATE_0: &str = "
DROP INDEX IF EXISTS lines_at;
DROP INDEX IF EXISTS lines_service;
DROP INDEX IF EXISTS lines_request;
ALTER TABLE lines ADD COLUMN
    ids TEXT GENERATED ALWAYS AS (concat_ws(' ', service, level, request_id, trace_id, job_id)) VIRTUAL;
DROP TABLE lines_fts;
CREATE VIRTUAL TABLE lines_fts USING fts5(
    message, ids, content='lines', content_rowid='id', columnsize=0
);
INSERT INTO lines_fts (lines_fts) VALUES ('rebuild');
CREATE TABLE spans (
    last_id INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    min_at INTEGER NOT NULL,
    upto INTEGER NOT NULL,
    n INTEGER NOT NULL
);
INSERT INTO spans (last_id, first_id, min_at, upto, n)
    SELECT max(id), min(id), min(at), max(at), count(*) FROM lines HAVING count(*) > 0;
";

/// Templates whose lines a semantic search reads, most similar first.
const SEMANTIC_TEMPLATES: usize = 64;
/// Candidates each ranking gives the fusion of a hybrid search (at least the limit).
const FUSION_CANDIDATES: usize = 100;
/// The cursor row counting changes of the templates' vectors (the in-memory copy follows it).
const VECTORS_VERSION: &str = "embed-vectors-version";
/// The cursor row of the last line given a template.
const EMBED_CURSOR: &str = "embed-lines";

/// Rows per multi-row `INSERT` (12 parameters a row, well under SQLite's 32 766).
const ROWS_PER_INSERT: usize = 64;

/// FTS5's in-memory pending terms before it writes a segment within one transaction.
const FTS_HASH_BYTES: i64 = 64 << 20;

/// FTS5's settings. `hashsize`: it flushes its pending terms to a new segment at every commit
/// or when they pass this (default 1 MiB, a segment every few thousand lines within one
/// batch). `automerge`: how many segments of one level it lets pile up before merging them
/// into one of the next (default 4); at 16 a term's postings are rewritten about half as
/// often as the index grows (store CPU per line at 10 million lines 4.25 -> 3.32 us,
/// `xtask bench logs-store`), for more segments a query reads (see docs/logs.md, "Speed").
/// `crisismerge`: the level's count at which a write merges at once (default 16, below 16
/// segments it would override `automerge`).
const FTS_CONFIG: [(&str, i64); 3] = [
    ("hashsize", FTS_HASH_BYTES),
    ("automerge", 16),
    ("crisismerge", 64),
];

fn sql_err(path: &Path, e: rusqlite::Error) -> LogStoreError {
    LogStoreError::Sqlite {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The columns of a [`Hit`] (with `l` the `lines` row), then its score.
const HIT_COLUMNS: &str = "l.id, l.at, l.service, l.level, l.message, l.class, l.status, l.request_id, l.trace_id, l.job_id";

fn hit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hit> {
    Ok(Hit {
        id: r.get(0)?,
        at_ns: r.get(1)?,
        service: r.get(2)?,
        level: r.get(3)?,
        message: r.get(4)?,
        error_class: r.get(5)?,
        http_status: r.get::<_, Option<i64>>(6)?.map(|s| s as u16),
        request_id: r.get(7)?,
        trace_id: r.get(8)?,
        job_id: r.get(9)?,
        score: r.get(10)?,
    })
}

/// The query's time range and field filters as `AND …` on `lines l`.
fn filters_sql(
    q: &Query,
    from_ns: i64,
    to_ns: i64,
    sql: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
) {
    use rusqlite::types::Value as V;
    sql.push_str(" AND l.at >= ? AND l.at <= ?");
    args.push(V::Integer(from_ns));
    args.push(V::Integer(to_ns));
    for (field, value) in &q.filters {
        match field {
            Field::Service => {
                sql.push_str(" AND l.service = ?");
                args.push(V::Text(value.clone()));
            }
            Field::Level => {
                let l = Level::parse(value).unwrap_or(Level::Unknown);
                sql.push_str(" AND l.level = ?");
                args.push(V::Text(l.as_str().to_owned()));
            }
            Field::Status => {
                let (lo, hi) = status_range(value).unwrap_or((0, 0));
                sql.push_str(" AND l.status BETWEEN ? AND ?");
                args.push(V::Integer(i64::from(lo)));
                args.push(V::Integer(i64::from(hi)));
            }
            Field::Class => {
                // The whole class, or its last segment (`NullPointerException` finds
                // `java.lang.NullPointerException`); both indexed.
                let tail = value.rsplit(['.', ':']).next().unwrap_or(value);
                sql.push_str(" AND l.class_tail = ? AND (l.class = ? OR ? = l.class_tail)");
                args.push(V::Text(tail.to_owned()));
                args.push(V::Text(value.clone()));
                args.push(V::Text(value.clone()));
            }
            Field::Ip => {
                sql.push_str(" AND (' ' || l.ips || ' ') LIKE ?");
                args.push(V::Text(format!("% {value} %")));
            }
            Field::Url => {
                sql.push_str(" AND instr(l.urls, ?) > 0");
                args.push(V::Text(value.clone()));
            }
            Field::Request => {
                sql.push_str(" AND l.request_id = ?");
                args.push(V::Text(value.clone()));
            }
            Field::Trace => {
                sql.push_str(" AND l.trace_id = ?");
                args.push(V::Text(value.clone()));
            }
            Field::Job => {
                sql.push_str(" AND l.job_id = ?");
                args.push(V::Text(value.clone()));
            }
        }
    }
}

/// Marks the templates' vectors changed (searches reload their copy).
fn bump_vectors(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO cursors (source, at) VALUES (?1, 1)
         ON CONFLICT(source) DO UPDATE SET at = at + 1",
        [VECTORS_VERSION],
    )
    .map(drop)
}

/// The store. Not `Sync`: one per thread (the follower writes, each search opens its own).
pub struct LogStore {
    conn: Connection,
    path: PathBuf,
    /// The templates' vectors in one matrix, as of a [`VECTORS_VERSION`].
    vectors: Option<Vectors>,
}

/// Embedded templates in memory: their ids and one row of [`crate::embed::DIM`] numbers each.
struct Vectors {
    version: i64,
    ids: Vec<i64>,
    data: Vec<f32>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating it 0600 when missing) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, LogStoreError> {
        let err = |e: rusqlite::Error| LogStoreError::Sqlite {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let existed = path.exists();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // 64 MiB of page cache (the default is 2 MiB): the index b-trees and FTS5's segment
        // merges stay in memory; checkpoints every 16 MiB of WAL instead of 4.
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", 4096)
            .map_err(err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version < SCHEMA_VERSION {
            // Under the write lock, reading the version again: of two processes opening an
            // old store at once, one migrates and the other finds it done.
            conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
            let migrate = || -> rusqlite::Result<()> {
                let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if version < SCHEMA_VERSION {
                    let old: bool = conn.query_row(
                        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'lines'",
                        [],
                        |r| r.get(0),
                    )?;
                    if old && version == 0 {
                        conn.execute_batch(MIGRATE_0)?;
                    }
                    conn.execute_batch(SCHEMA)?;
                    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                }
                Ok(())
            };
            match migrate() {
                Ok(()) => conn.execute_batch("COMMIT").map_err(err)?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(err(e));
                }
            }
        } else if version > SCHEMA_VERSION {
            return Err(LogStoreError::Sqlite {
                path: path.to_owned(),
                message: format!(
                    "the store's schema is version {version}, newer than this autogit's {SCHEMA_VERSION}: open it with the autogit that wrote it, or move the file away (it is rebuilt empty)"
                ),
            });
        }
        // FTS5's settings, kept in the database. Written only when they differ: every search
        // opens the store, and a write here would take the lock.
        for (key, value) in FTS_CONFIG {
            use rusqlite::OptionalExtension;
            let now: Option<i64> = conn
                .query_row("SELECT v FROM lines_fts_config WHERE k = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(err)?;
            if now != Some(value) {
                conn.execute(
                    "INSERT INTO lines_fts (lines_fts, rank) VALUES (?1, ?2)",
                    params![key, value],
                )
                .map_err(err)?;
            }
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
            vectors: None,
        })
    }

    fn err(&self, e: rusqlite::Error) -> LogStoreError {
        sql_err(&self.path, e)
    }

    /// Stores lines in one transaction: the rows [`ROWS_PER_INSERT`] to a statement, then
    /// their full text indexed by one `INSERT … SELECT` (FTS5 tokenizes them into its
    /// in-memory pending terms and writes one segment at the commit).
    pub fn insert(&mut self, lines: &[Line]) -> Result<(), LogStoreError> {
        let path = self.path.clone();
        let e = |x: rusqlite::Error| sql_err(&path, x);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let before = insert_rows(&tx, lines, ROWS_PER_INSERT).map_err(e)?;
        tx.prepare_cached(
            "INSERT INTO lines_fts (rowid, message, ids) SELECT id, message, ids FROM lines WHERE id > ?1",
        )
        .and_then(|mut st| st.execute([before]))
        .map_err(e)?;
        if let (Some(min_at), Some(max_at)) = (
            lines.iter().map(|l| l.at_ns).min(),
            lines.iter().map(|l| l.at_ns).max(),
        ) {
            // The batch's span; `upto` the newest `at` so far (the last span's is the largest).
            tx.prepare_cached(
                "INSERT INTO spans (last_id, first_id, min_at, upto, n)
                 SELECT ?1, ?2, ?3, max(?4, coalesce((SELECT upto FROM spans ORDER BY last_id DESC LIMIT 1), ?4)), ?5",
            )
            .and_then(|mut st| {
                st.execute(params![
                    before + lines.len() as i64,
                    before + 1,
                    min_at,
                    max_at,
                    lines.len() as i64
                ])
            })
            .map_err(e)?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Where a source (a container) was read up to, in unix nanoseconds.
    pub fn cursor(&self, source: &str) -> Result<Option<i64>, LogStoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT at FROM cursors WHERE source = ?1", [source], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_cursor(&self, source: &str, at_ns: i64) -> Result<(), LogStoreError> {
        self.conn
            .execute(
                "INSERT INTO cursors (source, at) VALUES (?1, ?2)
                 ON CONFLICT(source) DO UPDATE SET at = excluded.at",
                params![source, at_ns],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Stored lines after row `after`, oldest first, at most `limit`, each with its row id:
    /// what the Loki sink pushes.
    pub fn lines_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, crate::loki::Entry)>, LogStoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at, service, level, message FROM lines WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    crate::loki::Entry {
                        at_ns: r.get(1)?,
                        service: r.get(2)?,
                        level: r.get(3)?,
                        line: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Stored lines after row `after`, oldest first, at most `limit`, as Meilisearch
    /// documents (keyed by row).
    pub fn documents_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::meili::Document>, LogStoreError> {
        let sql =
            format!("SELECT {HIT_COLUMNS}, 0.0 FROM lines l WHERE l.id > ? ORDER BY l.id LIMIT ?");
        let hits = self.hits(
            &sql,
            vec![
                rusqlite::types::Value::Integer(after),
                rusqlite::types::Value::Integer(limit as i64),
            ],
        )?;
        Ok(hits
            .into_iter()
            .map(|h| crate::meili::Document {
                id: h.id,
                at: h.at_ns,
                service: h.service,
                level: h.level,
                message: h.message,
                error_class: h.error_class,
                http_status: h.http_status,
                request_id: h.request_id,
                trace_id: h.trace_id,
                job_id: h.job_id,
            })
            .collect())
    }

    /// Lines stored.
    pub fn count(&self) -> Result<u64, LogStoreError> {
        self.conn
            .query_row("SELECT coalesce(sum(n), 0) FROM spans", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Searches lines in `[from_ns, to_ns]`, newest first; at most `limit`. Ordered by time,
    /// a hit carries no score (0), as Elasticsearch leaves `_score` out of a search sorted by
    /// a field: BM25 needs the number of lines holding each word or phrase, which FTS5 counts
    /// by walking every match (40 000 for a common phrase in 10 million lines, 80 % of the
    /// query's time), whatever the limit. A ranking that uses the score asks for it
    /// ([`Self::search_mode`], hybrid).
    pub fn search(
        &self,
        q: &Query,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
    ) -> Result<Vec<Hit>, LogStoreError> {
        self.lexical(q, from_ns, to_ns, limit, false)
    }

    /// [`Self::search`], each hit with its BM25 score when `scored` and the query has words.
    fn lexical(
        &self,
        q: &Query,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
        scored: bool,
    ) -> Result<Vec<Hit>, LogStoreError> {
        use rusqlite::types::Value as V;
        // The first row that can be in the range (see `spans`); no span: no line that new.
        let Some(lo) = self.first_row_from(from_ns)? else {
            return Ok(Vec::new());
        };
        let mut sql = String::new();
        let mut args: Vec<V> = Vec::new();
        let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        // Words match the message only; the service and the ids narrow through the index's
        // `ids` column and are checked exactly against their own columns (filters_sql).
        let words = q.fts().map(|m| format!("message : ({m})"));
        let keys = q.filters.iter().filter_map(|(field, value)| {
            let value = match field {
                Field::Service | Field::Request | Field::Trace | Field::Job => value.as_str(),
                Field::Level => Level::parse(value).unwrap_or(Level::Unknown).as_str(),
                _ => return None,
            };
            // A value without a letter or digit has no token to look up.
            value
                .chars()
                .any(char::is_alphanumeric)
                .then(|| format!("ids : {}", quote(value)))
        });
        let expr: Vec<String> = words.iter().cloned().chain(keys).collect();
        let not = (!q.not.is_empty()).then(|| {
            let any = q.not.iter().map(|n| quote(n)).collect::<Vec<_>>();
            format!("message : ({})", any.join(" OR "))
        });
        let indexed = !expr.is_empty();
        if indexed {
            let mut m = expr.join(" AND ");
            if words.is_none()
                && let Some(not) = &not
            {
                // (With words, `q.fts()` has the negation already.)
                m = format!("{m} NOT {not}");
            }
            let score = if scored && words.is_some() {
                // BM25 of the words in the message (the ids column weighs nothing).
                "-bm25(lines_fts, 1.0, 0.0)"
            } else {
                "0.0"
            };
            sql.push_str(&format!(
                "SELECT {HIT_COLUMNS}, {score} AS score
                 FROM lines_fts JOIN lines l ON l.id = lines_fts.rowid
                 WHERE lines_fts MATCH ? AND lines_fts.rowid >= ?"
            ));
            args.push(V::Text(m));
            args.push(V::Integer(lo));
        } else {
            sql.push_str(&format!(
                "SELECT {HIT_COLUMNS}, 0.0 AS score FROM lines l WHERE l.id >= ?"
            ));
            args.push(V::Integer(lo));
            if let Some(not) = not {
                // Negation alone: the index decides which lines to drop.
                sql.push_str(
                    " AND l.id NOT IN (SELECT rowid FROM lines_fts WHERE lines_fts MATCH ?)",
                );
                args.push(V::Text(not));
            }
        }
        filters_sql(q, from_ns, to_ns, &mut sql, &mut args);
        if indexed {
            // Newest first, as log tools show them: FTS5 walks its rowids backwards and stops
            // at the limit. (Ordering by BM25 scores every match: 300 ms for a phrase found
            // 40 000 times in 10 million lines.)
            sql.push_str(" ORDER BY lines_fts.rowid DESC LIMIT ?");
        } else {
            sql.push_str(" ORDER BY l.id DESC LIMIT ?");
        }
        args.push(V::Integer(limit.min(10_000) as i64));
        self.hits(&sql, args)
    }

    /// The first row a line at `from_ns` or later can have: the first span whose `upto`
    /// reaches it (none: no line is that new).
    fn first_row_from(&self, from_ns: i64) -> Result<Option<i64>, LogStoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached(
                "SELECT first_id FROM spans WHERE upto >= ?1 ORDER BY upto, last_id LIMIT 1",
            )
            .and_then(|mut st| st.query_row([from_ns], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    fn hits(
        &self,
        sql: &str,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<Hit>, LogStoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params_from_iter(args), hit_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// A search ranked as `mode` says. `query_vec` is the embedding of the query's text
    /// ([`Query::text`]); without it (a query of filters only) every mode is lexical.
    pub fn search_mode(
        &mut self,
        q: &Query,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
        mode: SearchMode,
        query_vec: Option<&[f32]>,
    ) -> Result<Vec<Hit>, LogStoreError> {
        let (mode, v) = match query_vec {
            Some(v) if mode.semantic() => (mode, v),
            _ => return self.search(q, from_ns, to_ns, limit),
        };
        let limit = limit.min(10_000);
        if mode == SearchMode::Semantic {
            return self.search_semantic(q, from_ns, to_ns, limit, v);
        }
        let n = limit.max(FUSION_CANDIDATES);
        // Lexical: the newest matches, ranked by BM25 (best first).
        let mut lexical = self.lexical(q, from_ns, to_ns, n, true)?;
        lexical.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        let semantic = self.search_semantic(q, from_ns, to_ns, n, v)?;
        let ids = |h: &[Hit]| h.iter().map(|h| h.id).collect::<Vec<_>>();
        let fused = fuse(&[&ids(&lexical), &ids(&semantic)], RRF_K);
        let mut by_id: std::collections::HashMap<i64, Hit> = semantic
            .into_iter()
            .chain(lexical)
            .map(|h| (h.id, h))
            .collect();
        Ok(fused
            .into_iter()
            .take(limit)
            .filter_map(|(id, score)| {
                by_id.remove(&id).map(|mut h| {
                    h.score = score;
                    h
                })
            })
            .collect())
    }

    /// The lines whose templates are nearest `v` in meaning (most similar template first,
    /// its newest lines first), within the filters and time range (the words need not be
    /// in the line; `-word` still excludes). Each hit's score is the cosine similarity.
    fn search_semantic(
        &mut self,
        q: &Query,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
        v: &[f32],
    ) -> Result<Vec<Hit>, LogStoreError> {
        use rusqlite::types::Value as V;
        let nearest = self.nearest_templates(v, SEMANTIC_TEMPLATES)?;
        let mut sql = format!(
            "SELECT {HIT_COLUMNS}, 0.0 FROM line_templates lt JOIN lines l ON l.id = lt.line
             WHERE lt.template = ?"
        );
        let mut tail: Vec<V> = Vec::new();
        if !q.not.is_empty() {
            let not = q
                .not
                .iter()
                .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" OR ");
            sql.push_str(" AND l.id NOT IN (SELECT rowid FROM lines_fts WHERE lines_fts MATCH ?)");
            tail.push(V::Text(format!("message : ({not})")));
        }
        filters_sql(q, from_ns, to_ns, &mut sql, &mut tail);
        sql.push_str(" ORDER BY lt.line DESC LIMIT ?");
        let mut out = Vec::new();
        for (template, sim) in nearest {
            if out.len() >= limit {
                break;
            }
            let mut args = vec![V::Integer(template)];
            args.extend(tail.iter().cloned());
            args.push(V::Integer((limit - out.len()) as i64));
            out.extend(self.hits(&sql, args)?.into_iter().map(|mut h| {
                h.score = f64::from(sim);
                h
            }));
        }
        Ok(out)
    }

    /// The `k` embedded templates most similar to `v`, most similar first.
    fn nearest_templates(&mut self, v: &[f32], k: usize) -> Result<Vec<(i64, f32)>, LogStoreError> {
        use crate::embed::DIM;
        let version = self.cursor(VECTORS_VERSION)?.unwrap_or(0);
        if self.vectors.as_ref().is_none_or(|m| m.version != version) {
            let mut stmt = self
                .conn
                .prepare("SELECT id, vec FROM templates WHERE vec IS NOT NULL ORDER BY id")
                .map_err(|e| self.err(e))?;
            let mut ids = Vec::new();
            let mut data = Vec::new();
            let mut rows = stmt.query([]).map_err(|e| sql_err(&self.path, e))?;
            while let Some(r) = rows.next().map_err(|e| sql_err(&self.path, e))? {
                let blob: Vec<u8> = r.get(1).map_err(|e| sql_err(&self.path, e))?;
                if let Some(x) = crate::embed::from_blob(&blob) {
                    ids.push(r.get(0).map_err(|e| sql_err(&self.path, e))?);
                    data.extend(x);
                }
            }
            drop(rows);
            drop(stmt);
            self.vectors = Some(Vectors { version, ids, data });
        }
        let m = self.vectors.as_ref().expect("loaded above");
        let mut sims: Vec<(i64, f32)> = m
            .ids
            .iter()
            .zip(m.data.chunks_exact(DIM))
            .map(|(id, row)| (*id, crate::embed::cosine(row, v)))
            .collect();
        let k = k.min(sims.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        sims.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        sims.truncate(k);
        sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        Ok(sims)
    }

    /// Lines not yet given a template (the embed pass's input), oldest first: (row, message).
    pub fn lines_to_template(&self, limit: usize) -> Result<Vec<(i64, String)>, LogStoreError> {
        let after = self.cursor(EMBED_CURSOR)?.unwrap_or(0);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, message FROM lines WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Gives lines their templates (one row per distinct template, kept) and moves the embed
    /// cursor past them, in one transaction.
    pub fn assign_templates(&mut self, lines: &[(i64, String)]) -> Result<(), LogStoreError> {
        let Some(last) = lines.iter().map(|l| l.0).max() else {
            return Ok(());
        };
        let path = self.path.clone();
        let e = |x: rusqlite::Error| sql_err(&path, x);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        {
            let mut add = tx
                .prepare_cached(
                    "INSERT INTO templates (key) VALUES (?1) ON CONFLICT(key) DO UPDATE SET key = key RETURNING id",
                )
                .map_err(e)?;
            let mut link = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO line_templates (line, template) VALUES (?1, ?2)",
                )
                .map_err(e)?;
            let mut seen: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
            for (line, key) in lines {
                let id = match seen.get(key.as_str()) {
                    Some(id) => *id,
                    None => {
                        let id: i64 = add.query_row([key], |r| r.get(0)).map_err(e)?;
                        seen.insert(key, id);
                        id
                    }
                };
                link.execute(params![line, id]).map_err(e)?;
            }
        }
        tx.execute(
            "INSERT INTO cursors (source, at) VALUES (?1, ?2)
             ON CONFLICT(source) DO UPDATE SET at = excluded.at",
            params![EMBED_CURSOR, last],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Templates without a vector yet, at most `limit`: (id, template text).
    pub fn templates_to_embed(&self, limit: usize) -> Result<Vec<(i64, String)>, LogStoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, key FROM templates WHERE vec IS NULL ORDER BY id LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Stores templates' vectors.
    pub fn set_vectors(&mut self, vectors: &[(i64, Vec<f32>)]) -> Result<(), LogStoreError> {
        let path = self.path.clone();
        let e = |x: rusqlite::Error| sql_err(&path, x);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        {
            let mut st = tx
                .prepare_cached("UPDATE templates SET vec = ?2 WHERE id = ?1")
                .map_err(e)?;
            for (id, v) in vectors {
                st.execute(params![id, crate::embed::to_blob(v)])
                    .map_err(e)?;
            }
        }
        bump_vectors(&tx).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// (templates, templates with a vector, lines with a template).
    pub fn semantic_counts(&self) -> Result<(u64, u64, u64), LogStoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM templates), (SELECT count(*) FROM templates WHERE vec IS NOT NULL), (SELECT count(*) FROM line_templates)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// Drops lines older than the retention's age (relative to `now_ns`), then the oldest
    /// beyond its line count. Returns how many went.
    pub fn trim(&mut self, retention: Retention, now_ns: i64) -> Result<u64, LogStoreError> {
        let path = self.path.clone();
        let cutoff =
            now_ns.saturating_sub(retention.max_age.as_nanos().min(i64::MAX as u128) as i64);
        let total = self.count()?;
        let over = total.saturating_sub(retention.max_lines);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, e))?;
        // The oldest id to keep: past the age cutoff and within the count.
        let by_count: i64 = if over > 0 {
            tx.query_row(
                "SELECT id FROM lines ORDER BY id LIMIT 1 OFFSET ?1",
                [over as i64],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(&path, e))?
        } else {
            0
        };
        // The doomed rows: below the count's cut, and those older than the cutoff, looked for
        // only in the spans that have lines that old (no index on `at`).
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
        )
        .map_err(|e| sql_err(&path, e))?;
        tx.execute(
            "INSERT OR IGNORE INTO temp.doomed (id)
             SELECT l.id FROM spans s JOIN lines l ON l.id BETWEEN s.first_id AND s.last_id
             WHERE s.min_at < ?1 AND l.at < ?1
             UNION ALL SELECT id FROM lines WHERE id < ?2",
            params![cutoff, by_count],
        )
        .map_err(|e| sql_err(&path, e))?;
        let doomed = "id IN (SELECT id FROM temp.doomed)";
        tx.execute(
            &format!(
                "INSERT INTO lines_fts (lines_fts, rowid, message, ids)
                 SELECT 'delete', id, message, ids FROM lines WHERE {doomed}"
            ),
            [],
        )
        .map_err(|e| sql_err(&path, e))?;
        let linked = tx
            .execute(
                "DELETE FROM line_templates WHERE line IN (SELECT id FROM temp.doomed)",
                [],
            )
            .map_err(|e| sql_err(&path, e))?;
        let n = tx
            .execute(&format!("DELETE FROM lines WHERE {doomed}"), [])
            .map_err(|e| sql_err(&path, e))?;
        // The spans that lost lines: gone when empty, else their first row, oldest time and
        // count as they are now (`upto` stays: it only ever bounds from below).
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS touched (last_id INTEGER PRIMARY KEY);
             DELETE FROM temp.touched;",
        )
        .map_err(|e| sql_err(&path, e))?;
        tx.execute(
            // Spans are disjoint and in row order: those starting below the count's cut are
            // those ending below it and the one holding it.
            "INSERT OR IGNORE INTO temp.touched (last_id)
             SELECT last_id FROM spans WHERE min_at < ?1
             UNION SELECT last_id FROM spans WHERE last_id < ?2
             UNION SELECT * FROM (SELECT last_id FROM spans WHERE last_id >= ?2 ORDER BY last_id LIMIT 1)",
            params![cutoff, by_count],
        )
        .map_err(|e| sql_err(&path, e))?;
        tx.execute_batch(
            "DELETE FROM spans WHERE last_id IN (SELECT last_id FROM temp.touched)
                 AND NOT EXISTS (SELECT 1 FROM lines WHERE id BETWEEN spans.first_id AND spans.last_id);
             UPDATE spans SET
                 first_id = (SELECT min(id) FROM lines WHERE id BETWEEN spans.first_id AND spans.last_id),
                 min_at = (SELECT min(at) FROM lines WHERE id BETWEEN spans.first_id AND spans.last_id),
                 n = (SELECT count(*) FROM lines WHERE id BETWEEN spans.first_id AND spans.last_id)
             WHERE last_id IN (SELECT last_id FROM temp.touched);
             DELETE FROM temp.doomed; DELETE FROM temp.touched;",
        )
        .map_err(|e| sql_err(&path, e))?;
        if linked > 0 {
            // Templates no kept line has any more (lines not yet given one keep theirs: a
            // template is only made for a line).
            tx.execute(
                "DELETE FROM templates WHERE NOT EXISTS
                 (SELECT 1 FROM line_templates lt WHERE lt.template = templates.id)",
                [],
            )
            .map_err(|e| sql_err(&path, e))?;
            bump_vectors(&tx).map_err(|e| sql_err(&path, e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n as u64)
    }
}

/// The rows of `lines` into the `lines` table of a write transaction, `rows` to an `INSERT`;
/// returns the largest id before them (under the write lock, rowids are handed out in order
/// from there). The store's insert path, and `xtask bench logs-store`'s for its variants.
pub fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    lines: &[Line],
    rows: usize,
) -> rusqlite::Result<i64> {
    let before: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM lines", [], |r| r.get(0))?;
    let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(rows * 12);
    for chunk in lines.chunks(rows) {
        use rusqlite::types::Value as V;
        let text = |s: &Option<String>| s.clone().map_or(V::Null, V::Text);
        args.clear();
        for l in chunk {
            let x = &l.enriched;
            let tail = x
                .error_class
                .as_deref()
                .map(|c| c.rsplit(['.', ':']).next().unwrap_or(c).to_owned());
            args.extend([
                V::Integer(l.at_ns),
                V::Text(l.service.clone()),
                V::Text(x.level.unwrap_or(Level::Unknown).as_str().to_owned()),
                text(&x.error_class),
                tail.map_or(V::Null, V::Text),
                x.http_status.map_or(V::Null, |s| V::Integer(i64::from(s))),
                text(&x.request_id),
                text(&x.trace_id),
                text(&x.job_id),
                V::Text(x.ips.join(" ")),
                V::Text(x.urls.join(" ")),
                V::Text(x.message.clone()),
            ]);
        }
        let mut sql = String::from(
            "INSERT INTO lines (at, service, level, class, class_tail, status, request_id, trace_id, job_id, ips, urls, message) VALUES ",
        );
        for k in 0..chunk.len() {
            sql.push_str(if k == 0 { "(" } else { ",(" });
            sql.push_str("?,?,?,?,?,?,?,?,?,?,?,?)");
        }
        tx.prepare_cached(&sql)
            .and_then(|mut st| st.execute(params_from_iter(args.drain(..))))?;
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_core::logs::{enrich, parse_query};

    fn line(at_s: i64, service: &str, text: &str) -> Line {
        Line {
            at_ns: at_s * 1_000_000_000,
            service: service.into(),
            enriched: enrich(text, &[]),
        }
    }

    fn store() -> (tempfile::TempDir, LogStore) {
        let d = tempfile::tempdir().unwrap();
        let s = LogStore::open(&d.path().join("logs.db")).unwrap();
        (d, s)
    }

    fn found(s: &LogStore, q: &str) -> Vec<String> {
        s.search(&parse_query(q).unwrap(), 0, i64::MAX, 50)
            .unwrap()
            .into_iter()
            .map(|h| h.message)
            .collect()
    }

    #[test]
    fn stores_scrubbed_lines_and_finds_them_by_words_fields_and_class() {
        let (d, mut s) = store();
        s.insert(&[
            line(100, "gitlab", "Completed 200 OK in 12ms request_id=r1"),
            line(
                101,
                "gitlab",
                "ERROR java.lang.NullPointerException: boom request_id=r2",
            ),
            line(102, "gitlab", "user alice@example.com signed in"),
            line(103, "traefik", r#"10.0.0.9 - - "GET /x HTTP/1.1" 502 12"#),
            line(104, "gitlab", "WARNING: connection refused by redis"),
        ])
        .unwrap();
        assert_eq!(s.count().unwrap(), 5);
        assert_eq!(found(&s, "level:error").len(), 1);
        assert_eq!(found(&s, "NullPointerException").len(), 1);
        assert_eq!(found(&s, "class:NullPointerException").len(), 1);
        assert_eq!(found(&s, "class:java.lang.NullPointerException").len(), 1);
        assert_eq!(found(&s, "status:5xx service:traefik").len(), 1);
        assert_eq!(found(&s, "ip:10.0.0.9").len(), 1);
        assert_eq!(found(&s, "request:r2").len(), 1);
        assert_eq!(found(&s, "\"connection refused\"").len(), 1);
        assert_eq!(found(&s, "refused -redis").len(), 0);
        assert_eq!(found(&s, "service:gitlab -boom").len(), 3);
        assert_eq!(found(&s, "signed").len(), 1);
        // The e-mail address is nowhere in the file.
        assert!(found(&s, "alice").is_empty());
        drop(s);
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !bytes.windows(17).any(|w| w == b"alice@example.com"),
                "{} holds the address",
                f.path().display()
            );
        }
    }

    #[test]
    fn batches_of_many_statements_are_stored_and_indexed_whole() {
        let (d, mut s) = store();
        // Two full multi-row statements and a remainder, twice: the rowids the full-text
        // index is filled from continue across batches.
        let per = 2 * ROWS_PER_INSERT + 7;
        for round in 0..2 {
            let batch: Vec<Line> = (0..per)
                .map(|i| line(i as i64, "a", &format!("w{round}x{i} common")))
                .collect();
            s.insert(&batch).unwrap();
        }
        assert_eq!(s.count().unwrap(), 2 * per as u64);
        for round in 0..2 {
            for i in [0, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, per - 1] {
                assert_eq!(
                    found(&s, &format!("w{round}x{i}")),
                    vec![format!("w{round}x{i} common")]
                );
            }
        }
        let all = s
            .search(&parse_query("common").unwrap(), 0, i64::MAX, 10_000)
            .unwrap();
        assert_eq!(all.len(), 2 * per);
        // The index agrees with the rows (FTS5's own check for external content).
        s.conn
            .execute(
                "INSERT INTO lines_fts (lines_fts) VALUES ('integrity-check')",
                [],
            )
            .unwrap();
        // The pending-terms size is a setting of the index, kept when reopened.
        drop(s);
        let s = LogStore::open(&d.path().join("logs.db")).unwrap();
        let hash: i64 = s
            .conn
            .query_row(
                "SELECT v FROM lines_fts_config WHERE k = 'hashsize'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hash, FTS_HASH_BYTES);
        // Opening an existing store writes nothing (searches open their own).
        let changes = s.conn.total_changes();
        let again = LogStore::open(&d.path().join("logs.db")).unwrap();
        assert_eq!(again.conn.total_changes(), 0);
        assert_eq!(s.conn.total_changes(), changes);
    }

    #[test]
    fn time_range_ranking_and_retention() {
        let (_d, mut s) = store();
        s.insert(&[
            line(10, "a", "disk full disk full"),
            line(20, "a", "disk is fine"),
            line(30, "a", "disk full"),
        ])
        .unwrap();
        let q = parse_query("disk full").unwrap();
        let hits = s
            .search(&q, 15 * 1_000_000_000, 40 * 1_000_000_000, 10)
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].at_ns, 30 * 1_000_000_000);
        let all = s.search(&q, 0, i64::MAX, 10).unwrap();
        assert_eq!(all[0].at_ns, 30 * 1_000_000_000, "newest first");
        assert!(
            all.iter().all(|h| h.score == 0.0),
            "ordered by time, no score"
        );
        let all = s.lexical(&q, 0, i64::MAX, 10, true).unwrap();
        assert_eq!(all[0].at_ns, 30 * 1_000_000_000, "still newest first");
        let score = |at: i64| {
            all.iter()
                .find(|h| h.at_ns == at * 1_000_000_000)
                .unwrap()
                .score
        };
        assert!(score(10) > score(30), "more matches score higher: {all:?}");
        // By age, then by count; the index follows.
        let gone = s
            .trim(
                Retention {
                    max_age: Duration::from_secs(10),
                    max_lines: 100,
                },
                35 * 1_000_000_000,
            )
            .unwrap();
        assert_eq!(gone, 2);
        assert_eq!(s.count().unwrap(), 1);
        assert_eq!(found(&s, "full").len(), 1);
        s.insert(&[line(40, "a", "x one"), line(41, "a", "x two")])
            .unwrap();
        let gone = s
            .trim(
                Retention {
                    max_age: Duration::from_secs(3600),
                    max_lines: 2,
                },
                42 * 1_000_000_000,
            )
            .unwrap();
        assert_eq!(gone, 1);
        assert_eq!(found(&s, "x").len(), 2);
        assert!(found(&s, "full").is_empty());
        // Cursors.
        assert_eq!(s.cursor("c1").unwrap(), None);
        s.set_cursor("c1", 5).unwrap();
        s.set_cursor("c1", 7).unwrap();
        assert_eq!(s.cursor("c1").unwrap(), Some(7));
    }

    #[test]
    fn ids_and_services_are_found_through_their_own_column_only() {
        let (_d, mut s) = store();
        let mut event = line(50, "autogit", "task_started: deploy gitlab");
        // autogit's own events carry the request id outside the text.
        event.enriched.request_id = Some("req-77".into());
        s.insert(&[
            line(
                10,
                "gitaly",
                "finished unary call trace_id=4bf92f3577b34da6",
            ),
            line(11, "gitlab", "gitaly call failed request_id=r9"),
            line(12, "gitlab-runner", "job started job_id=551"),
            event,
        ])
        .unwrap();
        // A word is looked for in the message, never in the service or the ids.
        assert_eq!(found(&s, "gitaly"), ["gitaly call failed request_id=r9"]);
        assert_eq!(found(&s, "runner").len(), 0);
        assert!(found(&s, "unknown").is_empty(), "a level is no word");
        let unknown: usize = s
            .conn
            .query_row(
                "SELECT count(*) FROM lines WHERE level = 'unknown'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(unknown > 0);
        assert_eq!(found(&s, "level:unknown").len(), unknown);
        assert_eq!(found(&s, "service:gitaly").len(), 1);
        assert_eq!(found(&s, "service:gitlab").len(), 1, "not gitlab-runner");
        assert_eq!(found(&s, "service:gitlab-runner").len(), 1);
        assert_eq!(found(&s, "service:runner").len(), 0);
        assert_eq!(found(&s, "request:req-77"), ["task_started: deploy gitlab"]);
        assert_eq!(found(&s, "request:req").len(), 0, "the whole id");
        assert_eq!(found(&s, "trace:4bf92f3577b34da6").len(), 1);
        assert_eq!(found(&s, "job:551").len(), 1);
        assert_eq!(found(&s, "job:551 started").len(), 1);
        assert_eq!(found(&s, "job:551 -started").len(), 0);
        assert_eq!(found(&s, "service:gitlab -failed").len(), 0);
        // Filter-only hits have no score; words scored have their BM25 score, ids adding
        // nothing.
        let q = parse_query("request:r9").unwrap();
        assert_eq!(s.search(&q, 0, i64::MAX, 10).unwrap()[0].score, 0.0);
        let q = parse_query("call").unwrap();
        let plain = s.lexical(&q, 0, i64::MAX, 10, true).unwrap();
        let q = parse_query("call service:gitaly").unwrap();
        let keyed = s.lexical(&q, 0, i64::MAX, 10, true).unwrap();
        let score = |h: &[Hit], m: &str| h.iter().find(|h| h.message.starts_with(m)).unwrap().score;
        assert!(score(&plain, "finished") > 0.0);
        assert_eq!(score(&plain, "finished"), score(&keyed, "finished"));
    }

    #[test]
    fn late_old_lines_are_in_range_and_trimmed_by_age() {
        let (_d, mut s) = store();
        s.insert(&[line(100, "a", "disk one"), line(200, "a", "disk two")])
            .unwrap();
        // A container seen late contributes its backlog: older lines, newer rows.
        s.insert(&[line(50, "b", "disk old"), line(300, "b", "disk new")])
            .unwrap();
        s.insert(&[line(150, "c", "disk mid")]).unwrap();
        fn within(s: &LogStore, from: i64, to: i64) -> Vec<String> {
            s.search(
                &parse_query("disk").unwrap(),
                from * 1_000_000_000,
                to * 1_000_000_000,
                50,
            )
            .unwrap()
            .into_iter()
            .map(|h| h.message)
            .collect()
        }
        assert_eq!(within(&s, 0, 400).len(), 5);
        assert_eq!(within(&s, 40, 60), ["disk old"]);
        assert_eq!(within(&s, 140, 210), ["disk mid", "disk two"]);
        assert_eq!(within(&s, 301, 400).len(), 0);
        let q = parse_query("service:b").unwrap();
        assert_eq!(s.search(&q, 0, 60 * 1_000_000_000, 50).unwrap().len(), 1);
        assert_eq!(s.count().unwrap(), 5);
        let gone = s
            .trim(
                Retention {
                    max_age: Duration::from_secs(90),
                    max_lines: 100,
                },
                210 * 1_000_000_000,
            )
            .unwrap();
        // At 210 s with 90 s kept: 50 (a late row) and 100 go; 150, 200 and 300 stay.
        assert_eq!(gone, 2);
        assert_eq!(s.count().unwrap(), 3);
        assert_eq!(within(&s, 0, 400), ["disk mid", "disk new", "disk two"]);
        let gone = s
            .trim(
                Retention {
                    max_age: Duration::from_secs(3600),
                    max_lines: 1,
                },
                210 * 1_000_000_000,
            )
            .unwrap();
        assert_eq!(gone, 2);
        assert_eq!(within(&s, 0, 400), ["disk mid"]);
        assert_eq!(s.count().unwrap(), 1);
        let spans: i64 = s
            .conn
            .query_row("SELECT count(*) FROM spans", [], |r| r.get(0))
            .unwrap();
        assert_eq!(spans, 1, "emptied spans go");
    }

    #[test]
    fn semantic_and_hybrid_search_keep_filters_and_negation() {
        // Vectors made up here (no model): each template gets a unit vector, the query is
        // nearest the "disk" lines.
        let (_d, mut s) = store();
        s.insert(&[
            line(10, "a", "disk full on sda"),
            line(11, "b", "disk full on sdb fine"),
            line(12, "a", "cache warm"),
        ])
        .unwrap();
        let todo = s.lines_to_template(100).unwrap();
        let keyed: Vec<(i64, String)> = todo
            .iter()
            .map(|(id, m)| (*id, autogit_core::logs::template(m)))
            .collect();
        s.assign_templates(&keyed).unwrap();
        let templates = s.templates_to_embed(100).unwrap();
        let unit = |k: usize| {
            let mut v = vec![0.0f32; crate::embed::DIM];
            v[k] = 1.0;
            v
        };
        let vectors: Vec<(i64, Vec<f32>)> = templates
            .iter()
            .map(|(id, t)| (*id, unit(usize::from(!t.starts_with("disk")))))
            .collect();
        s.set_vectors(&vectors).unwrap();
        let search = |s: &mut LogStore, q: &str, mode| -> Vec<String> {
            s.search_mode(
                &parse_query(q).unwrap(),
                0,
                i64::MAX,
                10,
                mode,
                Some(&unit(0)),
            )
            .unwrap()
            .into_iter()
            .map(|h| h.message)
            .collect()
        };
        for mode in [SearchMode::Semantic, SearchMode::Hybrid] {
            let hits = search(&mut s, "storage -fine", mode);
            assert!(
                hits.contains(&"disk full on sda".to_owned()),
                "{mode:?}: {hits:?}"
            );
            assert!(
                !hits.iter().any(|m| m.contains("fine")),
                "{mode:?}: {hits:?}"
            );
            let hits = search(&mut s, "storage service:b", mode);
            assert_eq!(hits, ["disk full on sdb fine"], "{mode:?}");
        }
    }

    /// The schema before issue 21's round (version 0), as autogit wrote it.
    const SCHEMA_0: &str = "
        CREATE TABLE lines (
            id INTEGER PRIMARY KEY, at INTEGER NOT NULL, service TEXT NOT NULL,
            level TEXT NOT NULL, class TEXT, class_tail TEXT, status INTEGER, request_id TEXT,
            trace_id TEXT, job_id TEXT, ips TEXT NOT NULL DEFAULT '',
            urls TEXT NOT NULL DEFAULT '', message TEXT NOT NULL
        );
        CREATE INDEX lines_at ON lines(at);
        CREATE INDEX lines_service ON lines(service, id);
        CREATE INDEX lines_request ON lines(request_id) WHERE request_id IS NOT NULL;
        CREATE INDEX lines_class ON lines(class_tail, id) WHERE class_tail IS NOT NULL;
        CREATE VIRTUAL TABLE lines_fts USING fts5(
            message, content='lines', content_rowid='id', columnsize=0
        );
        CREATE TABLE cursors (source TEXT PRIMARY KEY, at INTEGER NOT NULL);
        CREATE TABLE templates (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, vec BLOB);
        CREATE TABLE line_templates (line INTEGER PRIMARY KEY, template INTEGER NOT NULL);
        CREATE INDEX line_templates_t ON line_templates(template, line);
        INSERT INTO lines_fts (lines_fts, rank) VALUES ('hashsize', 67108864);
        INSERT INTO lines (at, service, level, class, class_tail, request_id, message) VALUES
            (10000000000, 'gitlab', 'error', 'java.lang.NullPointerException',
             'NullPointerException', 'r1', 'ERROR java.lang.NullPointerException: boom request_id=r1'),
            (20000000000, 'gitaly', 'warn', NULL, NULL, NULL, 'WARNING: connection refused by redis'),
            (30000000000, 'gitlab', 'info', NULL, NULL, 'r2', 'Completed 200 OK request_id=r2');
        INSERT INTO lines_fts (rowid, message) SELECT id, message FROM lines;
        INSERT INTO cursors (source, at) VALUES ('c1', 42);
    ";

    #[test]
    fn a_store_of_the_schema_before_opens_migrated() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logs.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA_0)
            .unwrap();
        let mut s = LogStore::open(&path).unwrap();
        let version: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let indexes: Vec<String> = s
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'lines'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["lines_class"]);
        // The lines, the index (rebuilt with its second column), the cursors are all there.
        assert_eq!(s.count().unwrap(), 3);
        assert_eq!(s.cursor("c1").unwrap(), Some(42));
        assert_eq!(found(&s, "\"connection refused\"").len(), 1);
        assert_eq!(found(&s, "class:NullPointerException").len(), 1);
        assert_eq!(found(&s, "request:r2"), ["Completed 200 OK request_id=r2"]);
        assert_eq!(found(&s, "service:gitlab").len(), 2);
        assert_eq!(found(&s, "service:gitlab -boom").len(), 1);
        let q = parse_query("boom").unwrap();
        assert_eq!(s.search(&q, 15_000_000_000, i64::MAX, 10).unwrap().len(), 0);
        s.conn
            .execute(
                "INSERT INTO lines_fts (lines_fts) VALUES ('integrity-check')",
                [],
            )
            .unwrap();
        // New lines go on as in a new store; opening again migrates nothing.
        s.insert(&[line(40, "gitaly", "connection refused again")])
            .unwrap();
        drop(s);
        let mut s = LogStore::open(&path).unwrap();
        assert_eq!(found(&s, "\"connection refused\"").len(), 2);
        let gone = s
            .trim(
                Retention {
                    max_age: Duration::from_secs(10),
                    max_lines: 100,
                },
                35_000_000_000,
            )
            .unwrap();
        assert_eq!(gone, 2);
        assert_eq!(s.count().unwrap(), 2);
        s.conn
            .execute(
                "INSERT INTO lines_fts (lines_fts) VALUES ('integrity-check')",
                [],
            )
            .unwrap();
    }

    #[test]
    fn a_store_of_a_newer_schema_is_refused_with_its_version() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logs.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = LogStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("version 99") && e.contains("logs.db"), "{e}");
    }
}
