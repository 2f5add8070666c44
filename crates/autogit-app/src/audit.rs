//! The audit log: every mutating API request, every security decision and every change of
//! keys, users and signing keys, one hash-chained record a line in
//! `<data_dir>/audit/audit.jsonl` (see `autogit_drivers::audit` for the file).
//!
//! Chain: record `n` carries `prev`, the `hash` of record `n - 1` (64 zeros for the first),
//! and its own `hash`: the hex SHA-256 of the record serialized without `hash` (keys in the
//! order of [`AuditRecord`]). A line must be exactly the serialization of what it parses to,
//! so an edit that keeps the JSON meaning (spacing, key order, an added field) is detected as
//! well. The head file (last seq and hash) catches records cut off the end. [`verify`] names
//! the first record that breaks any of this.
//!
//! What the chain does not do: someone who can write the data dir can rewrite the whole log
//! and its head consistently; shipping records off the host (to the log pipeline) is what
//! guards against that.

use crate::Settings;
use crate::clock::SharedClock;
pub use autogit_core::access::Role;
use autogit_drivers::audit::{self as file, AuditFile, AuditFileError, Head};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest value kept in a text field of an entry (longer ones are cut, marked with `…`).
pub const MAX_FIELD: usize = 1024;
/// Most records one `list` returns.
pub const MAX_LIMIT: usize = 10_000;

/// What happened, as the caller describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `key:agk_…`, `user:alice`, `cli:root`, `anonymous`.
    pub actor: String,
    pub role: Option<Role>,
    /// The operation id, e.g. `services.deploy`, `api-key.create`, `auth.login`.
    pub action: String,
    pub target: String,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    pub status: Option<u16>,
    pub request_id: String,
    /// The client address.
    pub source: Option<String>,
}

/// A record of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev: String,
    pub hash: String,
}

#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    at: &'a str,
    #[serde(flatten)]
    entry: &'a AuditEntry,
    prev: &'a str,
}

/// The hash of a record with these fields.
pub fn record_hash(seq: u64, at: &str, entry: &AuditEntry, prev: &str) -> String {
    let text = serde_json::to_string(&Unhashed {
        seq,
        at,
        entry,
        prev,
    })
    .expect("an audit record serializes");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn cut(s: &mut String) {
    if s.len() > MAX_FIELD {
        let mut end = MAX_FIELD;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// Which records `list` returns.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Records after this seq, oldest first; `None`: the newest `limit` records (oldest first).
    pub after: Option<u64>,
    /// At most this many (0: 100; at most [`MAX_LIMIT`]).
    pub limit: usize,
    /// Only records of this actor.
    pub actor: Option<String>,
    /// Only records of this action.
    pub action: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    File(#[from] AuditFileError),
    #[error(
        "{path}: line {line} is not an audit record; run `autogit audit verify` to see what is wrong"
    )]
    Corrupt { path: PathBuf, line: u64 },
    #[error(
        "{path}: the last line is not an audit record, so nothing can be chained to it; run `autogit audit verify`, then move the file aside to start a new log"
    )]
    CorruptTail { path: PathBuf },
}

/// The audit log of one data dir. Cheap to clone; appends are serialized across threads and
/// processes.
#[derive(Clone, Debug)]
pub struct AuditLog {
    file: AuditFile,
    clock: SharedClock,
    lock: Arc<Mutex<()>>,
}

impl AuditLog {
    /// Opens (creating) `<data_dir>/audit/audit.jsonl`.
    pub fn open(settings: &Settings, clock: SharedClock) -> Result<Self, AuditError> {
        Ok(Self {
            file: AuditFile::open(&settings.data_dir)?,
            clock,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Appends `entry` as the next record, durably (fsynced) before returning it.
    pub fn append(&self, mut entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        for f in [
            &mut entry.actor,
            &mut entry.action,
            &mut entry.target,
            &mut entry.outcome,
            &mut entry.request_id,
        ] {
            cut(f);
        }
        if let Some(s) = &mut entry.source {
            cut(s);
        }
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut locked = self.file.lock()?;
        // A torn last line was never acknowledged (a record counts once fsynced).
        locked.drop_torn_tail()?;
        let (seq, prev) = match locked.last_line()? {
            None => (1, GENESIS.to_owned()),
            Some(line) => {
                let last: AuditRecord =
                    serde_json::from_str(&line).map_err(|_| AuditError::CorruptTail {
                        path: self.file.path().to_owned(),
                    })?;
                (last.seq + 1, last.hash)
            }
        };
        let at = autogit_core::civil::rfc3339_utc(self.clock.now());
        let hash = record_hash(seq, &at, &entry, &prev);
        let record = AuditRecord {
            seq,
            at,
            entry,
            prev,
            hash,
        };
        let line = serde_json::to_string(&record).expect("an audit record serializes");
        locked.append(&line)?;
        locked.write_head(&Head {
            seq,
            hash: record.hash.clone(),
        })?;
        Ok(record)
    }

    /// Records as `q` asks, oldest first.
    pub fn list(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let limit = match q.limit {
            0 => 100,
            n => n.min(MAX_LIMIT),
        };
        let (lines, _) = file::read_lines(self.file.path())?;
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let r: AuditRecord = match serde_json::from_str(line) {
                Ok(r) => r,
                // A torn last line is not a record yet.
                Err(_) if i + 1 == lines.len() => break,
                Err(_) => {
                    return Err(AuditError::Corrupt {
                        path: self.file.path().to_owned(),
                        line: i as u64 + 1,
                    });
                }
            };
            if q.after.is_some_and(|a| r.seq <= a)
                || q.actor.as_ref().is_some_and(|a| *a != r.entry.actor)
                || q.action.as_ref().is_some_and(|a| *a != r.entry.action)
            {
                continue;
            }
            out.push(r);
            if q.after.is_some() && out.len() == limit {
                break;
            }
        }
        if q.after.is_none() && out.len() > limit {
            out.drain(..out.len() - limit);
        }
        Ok(out)
    }
}

/// A log that verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: String,
    /// Whether a head file was found next to the log and agrees with it.
    pub head_checked: bool,
    /// Things that are not errors (a head one record behind after a crash, a torn last line).
    pub notes: Vec<String>,
}

/// The first thing wrong with a log.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    File(#[from] AuditFileError),
    #[error("{path}: line {line}{}: {why}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
    Bad {
        path: PathBuf,
        /// 1-based line of the first bad record (one past the end for records cut off).
        line: u64,
        seq: Option<u64>,
        why: String,
    },
}

/// Checks the chain of the log at `path` and, when one is next to it, its head file.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let (lines, complete) = file::read_lines(path)?;
    let bad = |line: usize, seq: Option<u64>, why: String| VerifyError::Bad {
        path: path.to_owned(),
        line: line as u64,
        seq,
        why,
    };
    let mut notes = Vec::new();
    let mut n = lines.len();
    if !complete {
        // Never acknowledged: the next append removes it.
        n -= 1;
        notes.push(format!(
            "line {} is an incomplete record (a write cut short by a crash); the next append removes it",
            n + 1
        ));
    }
    let mut prev_hash = GENESIS.to_owned();
    for (i, line) in lines[..n].iter().enumerate() {
        let lineno = i + 1;
        let expected = lineno as u64;
        let r: AuditRecord = serde_json::from_str(line).map_err(|e| {
            bad(
                lineno,
                None,
                format!("not an audit record ({e}); the line was edited or damaged"),
            )
        })?;
        if r.seq != expected {
            return Err(bad(
                lineno,
                Some(r.seq),
                format!(
                    "seq {} where seq {expected} was expected: a record was deleted, inserted or moved here",
                    r.seq
                ),
            ));
        }
        if r.prev != prev_hash {
            return Err(bad(
                lineno,
                Some(r.seq),
                format!(
                    "its prev does not match the hash of seq {}: the record before it was replaced",
                    r.seq - 1
                ),
            ));
        }
        let canonical = serde_json::to_string(&r).expect("an audit record serializes");
        if record_hash(r.seq, &r.at, &r.entry, &r.prev) != r.hash || canonical != *line {
            return Err(bad(
                lineno,
                Some(r.seq),
                "its hash does not match its content: the record was edited".into(),
            ));
        }
        prev_hash = r.hash;
    }
    let last_seq = n as u64;
    let head_path = path.with_file_name(file::HEAD);
    let head = file::read_head(&head_path)?;
    let head_checked = match &head {
        None => {
            notes.push(format!(
                "no head file at {}: records cut off the end cannot be detected",
                head_path.display()
            ));
            false
        }
        Some(h) if h.seq > last_seq => {
            return Err(bad(
                n + 1,
                Some(last_seq + 1),
                format!(
                    "the log ends at seq {last_seq} but the head file records seq {}: records were removed from the end",
                    h.seq
                ),
            ));
        }
        Some(h) if h.seq == last_seq => {
            if h.seq > 0 && h.hash != prev_hash {
                return Err(bad(
                    n,
                    Some(last_seq),
                    "the head file's hash differs from the last record's: the last record was replaced".into(),
                ));
            }
            true
        }
        Some(h) if h.seq + 1 == last_seq => {
            notes.push(format!(
                "the head file is one record behind (seq {}): a crash between a write and the head update; the next append fixes it",
                h.seq
            ));
            true
        }
        Some(h) => {
            return Err(bad(
                h.seq as usize + 1,
                Some(h.seq + 1),
                format!(
                    "the head file records seq {} but the log goes on to seq {last_seq}: the head file is stale or was replaced",
                    h.seq
                ),
            ));
        }
    };
    Ok(VerifyReport {
        path: path.to_owned(),
        records: last_seq,
        last_seq,
        last_hash: prev_hash,
        head_checked,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_on_a_char_boundary() {
        let mut s = "é".repeat(MAX_FIELD);
        cut(&mut s);
        assert!(s.len() <= MAX_FIELD + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
