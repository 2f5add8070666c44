//! The runtime's memory: a SQLite database (WAL) in the data dir with every service's state,
//! every state-machine transition with time and reason, repairs, the human-intervention flag,
//! events, remembered ports, and the notifiers' rate-limit windows. Schema migrations are versioned with `PRAGMA user_version`.
//! A corrupt or locked database is a clear error; it is never silently replaced.

use autogit_core::lease::Lease;
use autogit_core::lifecycle::{History, State};
use autogit_core::notify::Limiter;
use autogit_core::reconcile::Record;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "state database {path} is corrupt ({detail}); autogit will not replace it. To start with empty history (every service's state, the human-intervention flags and the restart budgets are forgotten), stop autogit and move it aside: `mv {path} {path}.corrupt` (and its -wal and -shm files, if any); or restore it from a backup"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "state database {path} is empty (0 bytes): the history it held (service states, human-intervention flags, restart budgets) is gone, and autogit will not silently start over. To start with empty history, stop autogit and move it aside: `mv {path} {path}.empty` (and its -wal and -shm files, if any); or restore it from a backup"
    )]
    Empty { path: PathBuf },
    #[error(
        "state database {path} was replaced or removed while autogit had it open ({detail}); autogit keeps writing to the file it opened, so stop autogit and find out what changed it"
    )]
    Replaced { path: PathBuf, detail: String },
    #[error(
        "state database {path} is locked by another process (is `autogit daemon` running?); try again, or stop the other process"
    )]
    Locked { path: PathBuf },
    #[error(
        "state database {path} was written by a newer autogit (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Versioned migrations; index + 1 is the schema version they produce. Never edit one that
/// shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE services (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        attempt INTEGER NOT NULL DEFAULT 0,
        restarts INTEGER NOT NULL DEFAULT 0,
        flagged INTEGER NOT NULL DEFAULT 0,
        flag_reason TEXT
    );
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        at INTEGER NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX transitions_service ON transitions(service, id);
    CREATE TABLE repairs (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        at INTEGER NOT NULL,
        action TEXT NOT NULL,
        attempt INTEGER NOT NULL
    );
    CREATE INDEX repairs_service ON repairs(service, at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        service TEXT,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE ports (service TEXT PRIMARY KEY, port INTEGER NOT NULL);",
    // 2: one row per mirror sync attempt (URLs redacted, no credentials).
    "CREATE TABLE mirror_runs (
        id INTEGER PRIMARY KEY,
        mirror TEXT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        started INTEGER NOT NULL,
        finished INTEGER,
        result TEXT NOT NULL,
        changed INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX mirror_runs_mirror ON mirror_runs(mirror, id);",
    // 3: runner hosts as `runner health` last saw them; compute jobs.
    "CREATE TABLE runner_hosts (
        host TEXT PRIMARY KEY,
        checked_at INTEGER NOT NULL,
        reachable INTEGER NOT NULL,
        inventory TEXT,
        error TEXT
    );
    CREATE TABLE compute_jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        user TEXT NOT NULL,
        state TEXT NOT NULL,
        spec TEXT NOT NULL,
        submitted_at INTEGER NOT NULL,
        host TEXT,
        gpus TEXT,
        container TEXT,
        started_at INTEGER,
        finished_at INTEGER,
        exit_code INTEGER,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX compute_jobs_state ON compute_jobs(state, seq);",
    // 4: runner registrations (`runner register`).
    "CREATE TABLE runner_registrations (
        name TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        runner_id INTEGER NOT NULL,
        secret TEXT NOT NULL,
        state TEXT NOT NULL,
        at INTEGER NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );",
    // 5: where each mirror source pushes (`namespace/name`), recorded the first time: a
    // target never moves because another source's listing failed or changed.
    "CREATE TABLE mirror_targets (
        source TEXT PRIMARY KEY,
        target TEXT NOT NULL UNIQUE,
        since INTEGER NOT NULL
    );",
    // 6: the lease of each running compute job on its host (`core::lease`).
    "CREATE TABLE compute_leases (
        job TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        missed INTEGER NOT NULL DEFAULT 0
    );",
    // 7: probes of each runner host missed in a row (a host is unreachable after
    // `compute.unreachable_after` of them, for its events as for its jobs' leases).
    "ALTER TABLE runner_hosts ADD COLUMN missed INTEGER NOT NULL DEFAULT 0;",
    // 8: the host port a running service job was last seen published on (its route follows
    // it: `core::routes`).
    "ALTER TABLE compute_jobs ADD COLUMN host_port INTEGER;",
    // 9: each rate-limited notifier's window (`core::notify::Limiter`), so a restart of the
    // daemon (or a one-shot command's own sinks) does not hand out a fresh allowance.
    "CREATE TABLE notify_limits (
        notifier TEXT PRIMARY KEY,
        window_start INTEGER,
        sent INTEGER NOT NULL,
        suppressed INTEGER NOT NULL
    );",
];

#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Device and inode of the file opened, for [`Store::check`].
    identity: (u64, u64),
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

fn narrow_to_0600(path: &Path) -> Result<(), StateError> {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StateError::Io {
                    path: path.to_owned(),
                    source,
                },
            )
        }
        _ => Ok(()),
    }
}

/// An existing database file: refused when it is empty (an empty file is what a truncation
/// leaves; SQLite would silently start a new database in it) or not a regular file.
fn check_existing(path: &Path, meta: &std::fs::Metadata) -> Result<(), StateError> {
    if !meta.is_file() {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            detail: "it is not a regular file".to_owned(),
        });
    }
    if meta.len() == 0 {
        return Err(StateError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Creates a new, initialised database at `path`: built under a temporary name (mode 0600)
/// and linked into place, so a crash never leaves an empty `state.db` behind (which the next
/// start would refuse). If another process created `path` meanwhile, theirs is kept.
fn create_new(path: &Path) -> Result<(), StateError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| StateError::Io { path: p, source }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call, not only per process: two threads opening a fresh store at once must
    // not build (and remove) each other's file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.init-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        {
            let conn = Connection::open(&tmp).map_err(|e| classify(&tmp, e))?;
            // The rollback journal (not WAL) while building it: nothing is left beside the
            // file once the connection closes.
            conn.execute_batch("CREATE TABLE autogit_init (x); DROP TABLE autogit_init;")
                .map_err(|e| classify(&tmp, e))?;
            conn.close().map_err(|(_, e)| classify(&tmp, e))?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(path)(e)),
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// A runner host as `runner health` last saw it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostRow {
    pub host: String,
    pub checked_at: i64,
    pub reachable: bool,
    /// `core::inventory::Inventory` as JSON.
    pub inventory: Option<String>,
    pub error: Option<String>,
    /// Probes missed in a row (0 when the last one answered).
    pub missed: u32,
}

/// A runner's registration: `token` (GitLab created the runner; its token is in the secret
/// store as `secret`) or `registered` (gitlab-runner on the host has it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationRow {
    pub name: String,
    pub host: String,
    pub runner_id: i64,
    pub secret: String,
    pub state: String,
    pub at: i64,
    pub message: String,
}

/// One compute job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JobRow {
    pub id: String,
    pub user: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    /// The request (`core::compute::JobSpec`) as JSON.
    pub spec: String,
    pub submitted_at: i64,
    pub host: Option<String>,
    /// GPU indexes on `host`, as JSON.
    pub gpus: Option<String>,
    pub container: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub message: String,
    /// The host port its service was last seen published on (service jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
}

/// One row of `autogit status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub state: String,
    pub since: i64,
    pub reason: String,
    pub restarts: i64,
    pub flagged: bool,
    pub flag_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TransitionRow {
    pub service: String,
    pub at: i64,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// One row of the event feed ([`Store::feed_after`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedRow {
    /// A published event (`detail` is the event as JSON).
    Event {
        at: i64,
        service: Option<String>,
        kind: String,
        detail: String,
    },
    /// A state transition of a service.
    Transition(TransitionRow),
}

impl FeedRow {
    pub fn at(&self) -> i64 {
        match self {
            FeedRow::Event { at, .. } => *at,
            FeedRow::Transition(t) => t.at,
        }
    }
}

/// The last known state of one mirror (`autogit mirror list`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MirrorStatus {
    pub mirror: String,
    pub source: String,
    pub target: String,
    /// Start of the latest run and its result (`running`, `up_to_date`, `synced`, `failed`).
    pub last_run: i64,
    pub last_result: String,
    /// End of the latest run that succeeded (up to date or synced).
    pub last_success: Option<i64>,
    /// End and message of the latest failed run.
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A mirror source's recorded target (`namespace/name`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MirrorTarget {
    /// The source URL, redacted.
    pub source: String,
    pub target: String,
    pub since: i64,
}

/// How a mirror run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorRunEnd<'a> {
    pub result: &'a str,
    pub changed: usize,
    pub deleted: usize,
    pub error: Option<&'a str>,
}

impl Store {
    /// Opens the database at `path`, creating it (mode 0600, in a 0700 directory) only when no
    /// file is there. An existing file that is empty, damaged or from a newer autogit is an
    /// error naming it and saying how to recover; it is never re-initialised.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsx::create_private_dir(dir).map_err(|e| StateError::Io {
                path: dir.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        match std::fs::metadata(path) {
            Ok(meta) => check_existing(path, &meta)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_new(path)?,
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        // SQLite answers some lock conflicts at once, without its busy handler (to break a
        // possible deadlock, or while another connection recovers the WAL index), which many
        // connections opening a fresh file together meet. Such an open is tried again, for
        // up to 10 s in all, before it is reported `Locked`.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut pause = Duration::from_millis(5);
        loop {
            match Store::open_existing(path) {
                Err(StateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// [`Store::open`] of a file that exists and was checked: connect, check, migrate.
    fn open_existing(path: &Path) -> Result<Store, StateError> {
        // Never create here: what exists was checked above, and a file that vanished since is
        // an error, not a fresh start.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
        let identity = identity(path).map_err(|source| StateError::Io {
            path: path.to_owned(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_owned(),
            identity,
        };
        store
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        // Integrity first: a damaged file must be reported, not migrated over.
        store.quick_check()?;
        store
            .conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| store.err(e))?;
        store
            .conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| store.err(e))?;
        store.migrate()?;
        // SQLite gives -wal and -shm the database file's mode; older versions left these
        // wider, so narrow whichever exist now.
        for p in [
            path.to_owned(),
            sidecar(path, "-wal"),
            sidecar(path, "-shm"),
        ] {
            narrow_to_0600(&p)?;
        }
        Ok(store)
    }

    /// Whether the file at the path is still the one this connection opened (same device
    /// and inode, not emptied): one `stat`, for a process that keeps a connection across
    /// requests and must reopen after a restore replaced the file. [`Store::check`] also
    /// checks the content.
    pub fn is_same_file(&self) -> bool {
        std::fs::metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity && m.len() > 0)
    }

    /// A cheap health check for a long-running process (the daemon calls it once per pass):
    /// the file at the path is still the one that was opened (same device and inode, not
    /// emptied) and `PRAGMA quick_check` finds nothing wrong. Corruption written under a
    /// running process is reported as [`StateError::Corrupt`] or [`StateError::Empty`],
    /// a file replaced or removed as [`StateError::Replaced`].
    pub fn check(&self) -> Result<(), StateError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| StateError::Replaced {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let now = (meta.dev(), meta.ino());
        if now != self.identity {
            return Err(StateError::Replaced {
                path: self.path.clone(),
                detail: format!(
                    "device and inode were {}:{}, now {}:{}",
                    self.identity.0, self.identity.1, now.0, now.1
                ),
            });
        }
        if meta.len() == 0 {
            return Err(StateError::Empty {
                path: self.path.clone(),
            });
        }
        // The file itself is never opened here: closing any descriptor of it would drop every
        // POSIX lock this process holds on it (SQLite's included) and let another process
        // checkpoint the WAL under our connection. A fresh SQLite connection reads it instead:
        // a file that is no longer a database fails to open or to check.
        // A fresh connection reads the file as it is now; this one's page cache may still
        // hold the pages as they were before something wrote under it. It opens read-write
        // (never creating) so that it takes part in WAL locking and reads pages not yet
        // checkpointed from the -wal file: a read-only connection could miss them and read
        // past the end of the main file (SQLITE_IOERR_SHORT_READ), a false alarm on a sound
        // database. quick_check writes nothing.
        let fresh = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        fresh
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| self.err(e))?;
        quick_check(&fresh, &self.path)
    }

    fn quick_check(&self) -> Result<(), StateError> {
        quick_check(&self.conn, &self.path)
    }

    /// A write transaction that takes the write lock when it begins (`BEGIN IMMEDIATE`).
    /// A deferred one that reads first fails at its first write, without waiting, when
    /// another process (the daemon, the API server, a CLI command) wrote in between
    /// (`SQLITE_BUSY_SNAPSHOT`, which the busy timeout does not cover); this one waits its
    /// turn under the busy timeout instead.
    fn write_tx(&self) -> Result<Transaction<'_>, StateError> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StateError {
        classify(&self.path, e)
    }

    fn migrate(&self) -> Result<(), StateError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.write_tx()?;
            // Another process may have migrated while this one waited for the write lock.
            let now: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if now > i as i64 {
                continue;
            }
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// A consistent copy of the database at `dest` (`VACUUM INTO`: safe while other
    /// connections write). `dest` must not exist.
    pub fn snapshot_to(&self, dest: &Path) -> Result<(), StateError> {
        self.conn
            .execute("VACUUM INTO ?1", [dest.to_string_lossy().as_ref()])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// What the reconciler needs to know of every service.
    pub fn records(&self, now: u64, window: u64) -> Result<BTreeMap<String, Record>, StateError> {
        let mut out = BTreeMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT name, state, since, attempt, flagged, flag_reason FROM services")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let cutoff = now.saturating_sub(window) as i64;
        for row in rows {
            let (name, state, since, attempt, flagged, flag_reason) =
                row.map_err(|e| self.err(e))?;
            let mut rs = self
                .conn
                .prepare_cached(
                    "SELECT at FROM repairs WHERE service = ?1 AND at >= ?2 ORDER BY at",
                )
                .map_err(|e| self.err(e))?;
            let repairs: Vec<u64> = rs
                .query_map(params![name, cutoff], |r| r.get::<_, i64>(0))
                .map_err(|e| self.err(e))?
                .filter_map(Result::ok)
                .map(|t| t.max(0) as u64)
                .collect();
            out.insert(
                name,
                Record {
                    state: State::parse(&state),
                    since: since.max(0) as u64,
                    history: History {
                        repairs,
                        attempt: attempt.max(0) as u32,
                        flagged,
                        flag_reason,
                    },
                },
            );
        }
        Ok(out)
    }

    /// Records a transition and moves the service to `to`. Reaching HEALTHY ends a repair streak.
    pub fn transition(
        &self,
        service: &str,
        from: Option<State>,
        to: State,
        reason: &str,
        at: u64,
    ) -> Result<(), StateError> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO transitions (service, at, from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![service, at as i64, from.map(State::as_str), to.as_str(), reason],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO services (name, state, since, reason) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET state = excluded.state, since = excluded.since, reason = excluded.reason,
               attempt = CASE WHEN excluded.state = 'HEALTHY' THEN 0 ELSE services.attempt END",
            params![service, to.as_str(), at as i64, reason],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn record_repair(
        &self,
        service: &str,
        action: &str,
        attempt: u32,
        at: u64,
    ) -> Result<(), StateError> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO repairs (service, at, action, attempt) VALUES (?1, ?2, ?3, ?4)",
            params![service, at as i64, action, attempt],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE services SET attempt = ?2, restarts = restarts + 1 WHERE name = ?1",
            params![service, attempt],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn set_flag(&self, service: &str, reason: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE services SET flagged = 1, flag_reason = ?2 WHERE name = ?1",
                params![service, reason],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Clears the flag and the repair streak; returns false if the service is unknown.
    pub fn clear_flag(&self, service: &str) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE services SET flagged = 0, flag_reason = NULL, attempt = 0 WHERE name = ?1",
                params![service],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute("DELETE FROM repairs WHERE service = ?1", params![service])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    pub fn event(
        &self,
        at: u64,
        service: Option<&str>,
        kind: &str,
        detail: &str,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO events (at, service, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                params![at as i64, service, kind, detail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn services(&self) -> Result<Vec<ServiceRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, state, since, reason, restarts, flagged, flag_reason FROM services ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ServiceRow {
                    service: r.get(0)?,
                    state: r.get(1)?,
                    since: r.get(2)?,
                    reason: r.get(3)?,
                    restarts: r.get(4)?,
                    flagged: r.get(5)?,
                    flag_reason: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn transitions(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TransitionRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT service, at, from_state, to_state, reason FROM transitions WHERE ?1 IS NULL OR service = ?1 ORDER BY id DESC LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![service, limit as i64], |r| {
                Ok(TransitionRow {
                    service: r.get(0)?,
                    at: r.get(1)?,
                    from: r.get(2)?,
                    to: r.get(3)?,
                    reason: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut v: Vec<TransitionRow> = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        v.reverse();
        Ok(v)
    }

    /// Events and transitions recorded after the cursor `(event id, transition id)`, oldest
    /// first, at most `limit` of each, with the new cursor. Each row comes with its own
    /// cursor: resuming from it yields exactly the rows after that one (the two tables are
    /// merged by time, so a row's cursor counts every row of both tables before it). `None`:
    /// start at the end (only what comes next). The API's event stream follows the tables
    /// with it.
    #[allow(clippy::type_complexity)]
    pub fn feed_after(
        &self,
        cursor: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<(Vec<((i64, i64), FeedRow)>, (i64, i64)), StateError> {
        let (e0, t0) = match cursor {
            Some(c) => c,
            None => self
                .conn
                .query_row(
                    "SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM transitions)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| self.err(e))?,
        };
        let mut events: Vec<(i64, FeedRow)> = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, at, service, kind, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![e0, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    FeedRow::Event {
                        at: r.get(1)?,
                        service: r.get(2)?,
                        kind: r.get(3)?,
                        detail: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            events.push(row.map_err(|e| self.err(e))?);
        }
        let mut transitions: Vec<(i64, FeedRow)> = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, service, at, from_state, to_state, reason FROM transitions WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![t0, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    FeedRow::Transition(TransitionRow {
                        service: r.get(1)?,
                        at: r.get(2)?,
                        from: r.get(3)?,
                        to: r.get(4)?,
                        reason: r.get(5)?,
                    }),
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            transitions.push(row.map_err(|e| self.err(e))?);
        }
        // Merge by time (events first on a tie), each table staying in id order.
        let (mut e, mut t) = (e0, t0);
        let mut out = Vec::with_capacity(events.len() + transitions.len());
        let mut ev = events.into_iter().peekable();
        let mut tr = transitions.into_iter().peekable();
        loop {
            let take_event = match (ev.peek(), tr.peek()) {
                (Some((_, a)), Some((_, b))) => a.at() <= b.at(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (id, row) = if take_event {
                ev.next().expect("peeked")
            } else {
                tr.next().expect("peeked")
            };
            if take_event {
                e = id;
            } else {
                t = id;
            }
            out.push(((e, t), row));
        }
        Ok((out, (e, t)))
    }

    pub fn forget(&self, service: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM services WHERE name = ?1", params![service])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn ports(&self) -> Result<BTreeMap<String, u16>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT service, port FROM ports")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (s, p) = r.map_err(|e| self.err(e))?;
            if let Ok(p) = u16::try_from(p) {
                out.insert(s, p);
            }
        }
        Ok(out)
    }

    pub fn set_port(&self, service: &str, port: u16) -> Result<(), StateError> {
        self.conn
            .execute("INSERT INTO ports (service, port) VALUES (?1, ?2) ON CONFLICT(service) DO UPDATE SET port = excluded.port", params![service, port])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Runs `f` on the rate-limit window of `notifier` (a stable key of its `health.notify`
    /// entry) and keeps what it leaves, in one write transaction: two processes notifying at
    /// once (the daemon and a command) share one allowance.
    pub fn with_notify_limit<R>(
        &self,
        notifier: &str,
        f: impl FnOnce(&mut Limiter) -> R,
    ) -> Result<R, StateError> {
        let tx = self.write_tx()?;
        let mut limiter = tx
            .query_row(
                "SELECT window_start, sent, suppressed FROM notify_limits WHERE notifier = ?1",
                params![notifier],
                |r| {
                    Ok(Limiter {
                        window_start: r.get::<_, Option<i64>>(0)?.map(|v| v.max(0) as u64),
                        sent: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        suppressed: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or_default();
        let out = f(&mut limiter);
        tx.execute(
            "INSERT INTO notify_limits (notifier, window_start, sent, suppressed)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(notifier) DO UPDATE SET window_start = excluded.window_start,
                 sent = excluded.sent, suppressed = excluded.suppressed",
            params![
                notifier,
                limiter.window_start.map(|v| v.min(i64::MAX as u64) as i64),
                limiter.sent,
                limiter.suppressed.min(i64::MAX as u64) as i64
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Records the start of a mirror run; returns its id for [`Store::mirror_run_end`].
    pub fn mirror_run_start(
        &self,
        mirror: &str,
        source: &str,
        target: &str,
        at: u64,
    ) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO mirror_runs (mirror, source, target, started, result) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![mirror, source, target, at as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn mirror_run_end(&self, id: i64, at: u64, end: &MirrorRunEnd) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE mirror_runs SET finished = ?2, result = ?3, changed = ?4, deleted = ?5, error = ?6 WHERE id = ?1",
                params![id, at as i64, end.result, end.changed as i64, end.deleted as i64, end.error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Ends the still-running runs of these mirrors as failed with `why` (an interrupted sync).
    pub fn mirror_runs_abort(
        &self,
        mirrors: &[String],
        at: u64,
        why: &str,
    ) -> Result<usize, StateError> {
        let mut n = 0;
        for m in mirrors {
            n += self
                .conn
                .execute(
                    "UPDATE mirror_runs SET finished = ?2, result = 'failed', error = ?3 WHERE mirror = ?1 AND result = 'running'",
                    params![m, at as i64, why],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(n)
    }

    /// Repairs recorded at or after `at` (unix seconds), oldest first: (id, at, service,
    /// action). Metrics count them by time, not by row id: `clear_flag` deletes a service's
    /// repairs, and SQLite then gives the next rows the ids of the deleted ones.
    pub fn repairs_since(&self, at: i64) -> Result<Vec<(i64, i64, String, String)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at, service, action FROM repairs WHERE at >= ?1 ORDER BY at, id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![at], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Mirror runs that finished at or after `at` (unix seconds), oldest first: (id, mirror,
    /// result, seconds it took).
    #[allow(clippy::type_complexity)]
    pub fn mirror_runs_finished_since(
        &self,
        at: i64,
    ) -> Result<Vec<(i64, i64, String, String, i64)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, finished, mirror, result, finished - started FROM mirror_runs
                 WHERE finished IS NOT NULL AND finished >= ?1 ORDER BY finished, id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![at], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Failed runs in a row of each mirror since its last success (or since its first run):
    /// what an alert on a mirror that keeps failing reads. Mirrors whose latest finished
    /// run succeeded are 0; a run in progress does not end a streak.
    pub fn mirror_failure_streaks(&self) -> Result<BTreeMap<String, u32>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.mirror,
                    (SELECT COUNT(*) FROM mirror_runs f WHERE f.mirror = m.mirror AND f.result = 'failed'
                       AND f.id > COALESCE((SELECT MAX(id) FROM mirror_runs s WHERE s.mirror = m.mirror
                                              AND s.result IN ('up_to_date', 'synced')), 0))
                 FROM (SELECT DISTINCT mirror FROM mirror_runs) m",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map(|(m, n)| (m, n.clamp(0, i64::from(u32::MAX)) as u32)))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Every recorded mirror target, by source.
    pub fn mirror_targets(&self) -> Result<Vec<MirrorTarget>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT source, target, since FROM mirror_targets ORDER BY source")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MirrorTarget {
                    source: r.get(0)?,
                    target: r.get(1)?,
                    since: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records (or moves, for a project GitLab reports renamed) `source`'s target. A target
    /// already recorded for another source is refused (`UNIQUE`): two sources never share one.
    pub fn record_mirror_target(
        &self,
        source: &str,
        target: &str,
        at: u64,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO mirror_targets (source, target, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT(source) DO UPDATE SET target = excluded.target, since = excluded.since
                 WHERE target <> excluded.target",
                params![source, target, at as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets the record of `target` (a project `prune_projects` deleted): its name is free.
    pub fn forget_mirror_target(&self, target: &str) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM mirror_targets WHERE target = ?1",
                params![target],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// The source whose mirror `target` (a redacted URL, as runs record it) holds: the source
    /// of the latest run that left it equal to its source (synced or up to date).
    pub fn mirror_target_holder(&self, target: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row(
                "SELECT source FROM mirror_runs WHERE target = ?1 AND result IN ('up_to_date', 'synced')
                 ORDER BY id DESC LIMIT 1",
                params![target],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The latest run of every mirror with its last success and last error.
    pub fn mirror_status(&self) -> Result<Vec<MirrorStatus>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.mirror, r.source, r.target, r.started, r.result,
                    (SELECT MAX(finished) FROM mirror_runs s WHERE s.mirror = r.mirror AND s.result IN ('up_to_date', 'synced')),
                    (SELECT finished FROM mirror_runs f WHERE f.mirror = r.mirror AND f.result = 'failed' ORDER BY f.id DESC LIMIT 1),
                    (SELECT error FROM mirror_runs f WHERE f.mirror = r.mirror AND f.result = 'failed' ORDER BY f.id DESC LIMIT 1)
                 FROM mirror_runs r
                 WHERE r.id = (SELECT MAX(id) FROM mirror_runs m WHERE m.mirror = r.mirror)
                 ORDER BY r.mirror",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MirrorStatus {
                    mirror: r.get(0)?,
                    source: r.get(1)?,
                    target: r.get(2)?,
                    last_run: r.get(3)?,
                    last_result: r.get(4)?,
                    last_success: r.get(5)?,
                    last_error_at: r.get(6)?,
                    last_error: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn record_host(&self, row: &HostRow) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO runner_hosts (host, checked_at, reachable, inventory, error, missed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(host) DO UPDATE SET checked_at = ?2, reachable = ?3,
                   inventory = COALESCE(?4, inventory), error = ?5, missed = ?6",
                params![
                    row.host,
                    row.checked_at,
                    row.reachable,
                    row.inventory,
                    row.error,
                    row.missed
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn set_registration(&self, r: &RegistrationRow) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO runner_registrations (name, host, runner_id, secret, state, at, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.name, r.host, r.runner_id, r.secret, r.state, r.at, r.message],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Forgets a runner's registration; absent is fine.
    pub fn remove_registration(&self, name: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM runner_registrations WHERE name = ?1",
                params![name],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn registrations(&self) -> Result<Vec<RegistrationRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, host, runner_id, secret, state, at, message FROM runner_registrations ORDER BY name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(RegistrationRow {
                name: r.get(0)?,
                host: r.get(1)?,
                runner_id: r.get(2)?,
                secret: r.get(3)?,
                state: r.get(4)?,
                at: r.get(5)?,
                message: r.get(6)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    pub fn hosts(&self) -> Result<Vec<HostRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT host, checked_at, reachable, inventory, error, missed FROM runner_hosts ORDER BY host",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(HostRow {
                host: r.get(0)?,
                checked_at: r.get(1)?,
                reachable: r.get(2)?,
                inventory: r.get(3)?,
                error: r.get(4)?,
                missed: r.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Adds a queued job; its id is `job-<n>`, n counting up from 1.
    pub fn add_job(&self, user: &str, spec: &str, at: i64) -> Result<String, StateError> {
        let ids = self.add_jobs(user, at, 1, |_, _| spec.to_owned())?;
        Ok(ids.into_iter().next().unwrap_or_default())
    }

    /// Queues `n` jobs at once (the parts of a job spread over hosts), with consecutive ids:
    /// all or none. `spec(first, i)` is the `i`-th one's description, given the first's id.
    pub fn add_jobs(
        &self,
        user: &str,
        at: i64,
        n: u32,
        spec: impl Fn(&str, u32) -> String,
    ) -> Result<Vec<String>, StateError> {
        let tx = self.write_tx()?;
        let next: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM compute_jobs",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let first = format!("job-{next}");
        let mut ids = Vec::new();
        for i in 0..n {
            let seq = next + i64::from(i);
            let id = format!("job-{seq}");
            tx.execute(
                "INSERT INTO compute_jobs (seq, id, user, state, spec, submitted_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
                params![seq, id, user, spec(&first, i), at],
            )
            .map_err(|e| self.err(e))?;
            ids.push(id);
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    /// Stores a job's new state and placement (every field of `row` but id, user, spec and
    /// submitted_at).
    pub fn update_job(&self, row: &JobRow) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE compute_jobs SET state = ?2, host = ?3, gpus = ?4, container = ?5,
                   started_at = ?6, finished_at = ?7, exit_code = ?8, message = ?9, host_port = ?10
                 WHERE id = ?1",
                params![
                    row.id,
                    row.state,
                    row.host,
                    row.gpus,
                    row.container,
                    row.started_at,
                    row.finished_at,
                    row.exit_code,
                    row.message,
                    row.host_port
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Every running job's lease, by job id.
    pub fn leases(&self) -> Result<BTreeMap<String, Lease>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT job, host, expires_at, missed FROM compute_leases")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(Lease {
                job: r.get(0)?,
                host: r.get(1)?,
                expires_at: r.get::<_, i64>(2)?.max(0) as u64,
                missed: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
            })
        })
        .and_then(|rows| rows.map(|l| l.map(|l| (l.job.clone(), l))).collect())
        .map_err(|e| self.err(e))
    }

    /// Records a job's lease (replacing the one it had).
    pub fn set_lease(&self, l: &Lease) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO compute_leases (job, host, expires_at, missed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(job) DO UPDATE SET host = ?2, expires_at = ?3, missed = ?4",
                params![
                    l.job,
                    l.host,
                    l.expires_at.min(i64::MAX as u64) as i64,
                    i64::from(l.missed)
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Forgets a job's lease (it ended, or it was placed again).
    pub fn drop_lease(&self, job: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM compute_leases WHERE job = ?1", params![job])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn jobs(&self) -> Result<Vec<JobRow>, StateError> {
        self.jobs_where("1 = 1", &[])
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRow>, StateError> {
        Ok(self.jobs_where("id = ?1", &[&id])?.pop())
    }

    fn jobs_where(
        &self,
        cond: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<JobRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, user, state, spec, submitted_at, host, gpus, container, started_at,
                   finished_at, exit_code, message, host_port FROM compute_jobs WHERE {cond} ORDER BY seq"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(args, |r| {
            Ok(JobRow {
                id: r.get(0)?,
                user: r.get(1)?,
                state: r.get(2)?,
                spec: r.get(3)?,
                submitted_at: r.get(4)?,
                host: r.get(5)?,
                gpus: r.get(6)?,
                container: r.get(7)?,
                started_at: r.get(8)?,
                finished_at: r.get(9)?,
                exit_code: r.get(10)?,
                message: r.get(11)?,
                host_port: r.get(12)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    pub fn state_of(&self, service: &str) -> Result<Option<State>, StateError> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM services WHERE name = ?1",
                params![service],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(s.as_deref().and_then(State::parse))
    }
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    if check != "ok" {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            detail: check,
        });
    }
    Ok(())
}

fn classify(path: &Path, e: rusqlite::Error) -> StateError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StateError::Locked {
            path: path.to_owned(),
        },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StateError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        _ => StateError::Sql {
            path: path.to_owned(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    /// Threads of one process opening the same fresh store at once all get it (the init file
    /// was named by the process id only, so they built and removed each other's: "disk I/O
    /// error", seen in the traces test).
    #[test]
    fn threads_opening_a_fresh_store_at_once_all_succeed() {
        for _ in 0..5 {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join("state.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|_| ())
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
            let leftovers: Vec<_> = std::fs::read_dir(d.path())
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".init-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    use super::*;

    #[test]
    fn the_feed_resumes_after_any_row_with_nothing_lost_or_repeated() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        s.event(10, Some("web"), "a", "{}").unwrap();
        s.transition("web", None, State::Deploying, "install", 11)
            .unwrap();
        s.event(12, Some("web"), "b", "{}").unwrap();
        s.event(13, None, "c", "{}").unwrap();
        s.transition("web", Some(State::Deploying), State::Healthy, "ok", 14)
            .unwrap();
        let (all, end) = s.feed_after(Some((0, 0)), 100).unwrap();
        let ats: Vec<i64> = all.iter().map(|(_, r)| r.at()).collect();
        assert_eq!(ats, [10, 11, 12, 13, 14], "merged by time");
        assert_eq!(end, (3, 2));
        for (i, (cursor, _)) in all.iter().enumerate() {
            let (rest, _) = s.feed_after(Some(*cursor), 100).unwrap();
            let rest: Vec<i64> = rest.iter().map(|(_, r)| r.at()).collect();
            assert_eq!(rest, ats[i + 1..], "after row {i} ({cursor:?})");
        }
        // From the end: only what comes next.
        let (none, at_end) = s.feed_after(None, 100).unwrap();
        assert!(none.is_empty());
        assert_eq!(at_end, end);
    }

    #[test]
    fn transitions_repairs_and_flags() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.transition("web", None, State::Deploying, "install", 10)
            .unwrap();
        s.transition(
            "web",
            Some(State::Deploying),
            State::Healthy,
            "deployed",
            20,
        )
        .unwrap();
        s.transition(
            "web",
            Some(State::Healthy),
            State::Failed,
            "container stopped",
            30,
        )
        .unwrap();
        s.record_repair("web", "restart", 1, 31).unwrap();
        assert_eq!(
            s.repairs_since(31).unwrap(),
            [(1, 31, "web".to_owned(), "restart".to_owned())]
        );
        assert!(s.repairs_since(32).unwrap().is_empty());
        let r = s.records(40, 600).unwrap();
        assert_eq!(r["web"].state, Some(State::Failed));
        assert_eq!(r["web"].history.repairs, [31]);
        assert_eq!(r["web"].history.attempt, 1);
        s.transition("web", Some(State::Failed), State::Healthy, "fixed", 45)
            .unwrap();
        assert_eq!(
            s.records(50, 600).unwrap()["web"].history.attempt,
            0,
            "healthy ends the streak"
        );
        s.set_flag("web", "budget").unwrap();
        assert!(s.records(50, 600).unwrap()["web"].history.flagged);
        assert!(s.clear_flag("web").unwrap());
        assert!(!s.clear_flag("nope").unwrap());
        let t = s.transitions(Some("web"), 10).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].to, "DEPLOYING");
        assert_eq!(s.services().unwrap()[0].restarts, 1);
    }

    #[test]
    fn mirror_targets_are_recorded_once_per_source_and_never_shared() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        s.record_mirror_target("git://a/Hello-World", "mirrors/Hello-World", 10)
            .unwrap();
        s.record_mirror_target("git://b/Hello-World", "mirrors/Hello-World-2", 10)
            .unwrap();
        // Again, unchanged: keeps its first time.
        s.record_mirror_target("git://a/Hello-World", "mirrors/Hello-World", 20)
            .unwrap();
        // Another source cannot take a recorded target.
        assert!(
            s.record_mirror_target("git://c/Hello-World", "mirrors/Hello-World", 30)
                .is_err()
        );
        // A moved project moves its record.
        s.record_mirror_target("git://b/Hello-World", "mirrors/hw-b", 40)
            .unwrap();
        let all: Vec<(String, String, i64)> = s
            .mirror_targets()
            .unwrap()
            .into_iter()
            .map(|t| (t.source, t.target, t.since))
            .collect();
        assert_eq!(
            all,
            [
                (
                    "git://a/Hello-World".into(),
                    "mirrors/Hello-World".into(),
                    10
                ),
                ("git://b/Hello-World".into(), "mirrors/hw-b".into(), 40),
            ]
        );
        assert!(s.forget_mirror_target("mirrors/hw-b").unwrap());
        assert!(!s.forget_mirror_target("mirrors/hw-b").unwrap());
        s.record_mirror_target("git://c/Hello-World", "mirrors/hw-b", 50)
            .unwrap();
        // Who a target holds: the latest successful run's source.
        let t = "git://t/mirrors/x.git";
        assert_eq!(s.mirror_target_holder(t).unwrap(), None);
        let ok = MirrorRunEnd {
            result: "synced",
            changed: 1,
            deleted: 0,
            error: None,
        };
        let id = s.mirror_run_start("x", "git://a/x", t, 1).unwrap();
        s.mirror_run_end(id, 2, &ok).unwrap();
        let failed = MirrorRunEnd {
            result: "failed",
            changed: 0,
            deleted: 0,
            error: Some("no"),
        };
        let id = s.mirror_run_start("x", "git://b/x", t, 3).unwrap();
        s.mirror_run_end(id, 4, &failed).unwrap();
        assert_eq!(
            s.mirror_target_holder(t).unwrap().as_deref(),
            Some("git://a/x")
        );
    }

    #[test]
    fn a_failure_streak_counts_failed_runs_since_the_last_success() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        assert!(s.mirror_failure_streaks().unwrap().is_empty());
        let end = |result| MirrorRunEnd {
            result,
            changed: 0,
            deleted: 0,
            error: None,
        };
        let mut at = 0;
        let mut run = |m: &str, result| {
            at += 10;
            let id = s.mirror_run_start(m, "git://h/x", "git://t/x", at).unwrap();
            if result != "running" {
                s.mirror_run_end(id, at + 1, &end(result)).unwrap();
            }
        };
        for r in ["failed", "synced", "failed", "failed", "running"] {
            run("a", r);
        }
        for r in ["failed", "failed", "failed"] {
            run("b", r);
        }
        for r in ["failed", "up_to_date"] {
            run("c", r);
        }
        let streaks = s.mirror_failure_streaks().unwrap();
        assert_eq!(
            streaks.into_iter().collect::<Vec<_>>(),
            [("a".into(), 2), ("b".into(), 3), ("c".into(), 0)]
        );
    }

    #[test]
    fn mirror_runs_keep_last_success_and_last_error() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        assert!(s.mirror_status().unwrap().is_empty());
        let ok = MirrorRunEnd {
            result: "synced",
            changed: 3,
            deleted: 1,
            error: None,
        };
        let id = s
            .mirror_run_start("a", "git://h/a", "git://t/m/a", 100)
            .unwrap();
        s.mirror_run_end(id, 110, &ok).unwrap();
        let id = s
            .mirror_run_start("a", "git://h/a", "git://t/m/a", 200)
            .unwrap();
        let failed = MirrorRunEnd {
            result: "failed",
            changed: 0,
            deleted: 0,
            error: Some("fetch failed"),
        };
        s.mirror_run_end(id, 205, &failed).unwrap();
        s.mirror_run_start("b", "git://h/b", "git://t/m/b", 300)
            .unwrap();
        let st = s.mirror_status().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(
            (
                st[0].last_result.as_str(),
                st[0].last_success,
                st[0].last_error_at
            ),
            ("failed", Some(110), Some(205))
        );
        assert_eq!(st[0].last_error.as_deref(), Some("fetch failed"));
        assert_eq!(
            (st[1].last_result.as_str(), st[1].last_success),
            ("running", None)
        );
        assert_eq!(
            s.mirror_runs_abort(&["b".into()], 301, "interrupted")
                .unwrap(),
            1
        );
        let st = s.mirror_status().unwrap();
        assert_eq!(
            (st[1].last_result.as_str(), st[1].last_error.as_deref()),
            ("failed", Some("interrupted"))
        );
    }

    #[test]
    fn runner_hosts_and_compute_jobs() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        let mut h = HostRow {
            host: "gpu1".into(),
            checked_at: 10,
            reachable: true,
            inventory: Some("{}".into()),
            error: None,
            missed: 0,
        };
        s.record_host(&h).unwrap();
        h.checked_at = 20;
        h.reachable = false;
        h.inventory = None;
        h.error = Some("unreachable".into());
        h.missed = 2;
        s.record_host(&h).unwrap();
        let rows = s.hosts().unwrap();
        assert_eq!(rows.len(), 1);
        // The last inventory is kept while the host is unreachable.
        assert_eq!(rows[0].inventory.as_deref(), Some("{}"));
        assert!(!rows[0].reachable);
        assert_eq!(rows[0].missed, 2);

        assert_eq!(s.add_job("ann", "{}", 5).unwrap(), "job-1");
        assert_eq!(s.add_job("bob", "{}", 6).unwrap(), "job-2");
        let mut j = s.job("job-1").unwrap().unwrap();
        assert_eq!(j.state, "queued");
        j.state = "running".into();
        j.host = Some("gpu1".into());
        j.gpus = Some("[0]".into());
        s.update_job(&j).unwrap();
        assert_eq!(s.job("job-1").unwrap().unwrap(), j);
        assert_eq!(s.jobs().unwrap().len(), 2);
        assert!(s.job("job-9").unwrap().is_none());

        let mut reg = RegistrationRow {
            name: "g1".into(),
            host: "gpu1".into(),
            runner_id: 7,
            secret: "gitlab-runner-7-token".into(),
            state: "token".into(),
            at: 1,
            message: String::new(),
        };
        s.set_registration(&reg).unwrap();
        reg.state = "registered".into();
        s.set_registration(&reg).unwrap();
        assert_eq!(s.registrations().unwrap(), [reg]);

        let mut l = Lease {
            job: "job-1".into(),
            host: "gpu1".into(),
            expires_at: 100,
            missed: 0,
        };
        s.set_lease(&l).unwrap();
        l.expires_at = 160;
        l.missed = 2;
        s.set_lease(&l).unwrap();
        assert_eq!(s.leases().unwrap().into_values().collect::<Vec<_>>(), [l]);
        s.drop_lease("job-1").unwrap();
        assert!(s.leases().unwrap().is_empty());
    }

    #[test]
    fn reopen_keeps_data_and_does_not_remigrate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        Store::open(&p).unwrap().set_port("grafana", 20001).unwrap();
        let s = Store::open(&p).unwrap();
        assert_eq!(s.ports().unwrap()["grafana"], 20001);
    }

    #[test]
    fn corrupt_database_is_reported_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        std::fs::write(
            &p,
            b"this is not a database, it is a text file that is long enough",
        )
        .unwrap();
        let e = Store::open(&p).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("will not replace it"));
        assert!(
            std::fs::read(&p).unwrap().starts_with(b"this is not"),
            "left as it was"
        );
    }

    #[test]
    fn empty_file_is_refused_with_the_recovery_command() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        // A flagged service, then the file truncated to 0 bytes (a full disk, a bad copy).
        let s = Store::open(&p).unwrap();
        s.transition("gitlab", None, State::Failed, "crash loop", 1)
            .unwrap();
        s.set_flag("gitlab", "restart budget exhausted").unwrap();
        drop(s);
        std::fs::File::create(&p).unwrap();
        let _ = std::fs::remove_file(sidecar(&p, "-wal"));
        let e = Store::open(&p).unwrap_err();
        assert!(matches!(e, StateError::Empty { .. }), "{e}");
        let msg = e.to_string();
        let shown = p.display().to_string();
        assert!(
            msg.contains(&format!("`mv {shown} {shown}.empty`")),
            "names the file and the command: {msg}"
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            0,
            "not re-initialised"
        );
        assert!(Store::open(&p).is_err(), "and not on the second try either");
    }

    #[test]
    fn only_a_missing_file_is_created_and_no_temporary_is_left() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("new/state.db");
        Store::open(&p).unwrap().set_port("web", 1).unwrap();
        let names: Vec<String> = std::fs::read_dir(d.path().join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("state.db"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        let dir = d.path().join("dir.db");
        std::fs::create_dir(&dir).unwrap();
        assert!(matches!(
            Store::open(&dir).unwrap_err(),
            StateError::Corrupt { .. }
        ));
    }

    /// Overwrites the first bytes of `p` in place (same inode), as a stray writer would.
    fn scribble(p: &Path, at: u64, bytes: &[u8]) {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    }

    #[test]
    fn check_sees_corruption_written_under_a_running_store() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        let s = Store::open(&p).unwrap();
        s.set_port("web", 1).unwrap();
        s.check().unwrap();
        // Checkpoint so the pages are in the main file, then damage a b-tree page (page 2).
        s.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let page = s
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64;
        scribble(&p, page, &[0xff; 64]);
        let e = s.check().unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        scribble(&p, 0, b"garbage garbage!");
        let e = s.check().unwrap_err();
        assert!(
            matches!(&e, StateError::Corrupt { detail, .. } if detail.contains("not a database")),
            "{e}"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert!(matches!(s.check().unwrap_err(), StateError::Empty { .. }));
    }

    #[test]
    fn check_sees_the_file_replaced_or_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        let s = Store::open(&p).unwrap();
        let other = d.path().join("other.db");
        Store::open(&other).unwrap();
        std::fs::rename(&other, &p).unwrap();
        let e = s.check().unwrap_err();
        assert!(matches!(e, StateError::Replaced { .. }), "{e}");
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            s.check().unwrap_err(),
            StateError::Replaced { .. }
        ));
    }

    #[test]
    #[allow(unsafe_code)]
    fn modes_are_private_under_umask_022() {
        // SAFETY: umask only sets the process's file creation mask; 022 is the usual one and
        // what the other tests in this binary expect anyway.
        unsafe {
            libc::umask(0o022);
        }
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let p = data.join("state.db");
        let s = Store::open(&p).unwrap();
        s.set_port("web", 1).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data dir");
        for f in [p.clone(), sidecar(&p, "-wal"), sidecar(&p, "-shm")] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        // A database an older version left 0644 is narrowed when opened.
        drop(s);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _s = Store::open(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_notifier_window_is_kept_between_opens_and_an_older_store_gains_the_table() {
        use autogit_core::notify::{Decision, RateLimit};
        use autogit_core::units::Dur;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        // A store as the release before notify_limits left it (schema 8), with a row.
        {
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..8] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 8).unwrap();
            c.execute(
                "INSERT INTO ports (service, port) VALUES ('gitlab', 8080)",
                [],
            )
            .unwrap();
        }
        let limit = RateLimit {
            max: 2,
            per: Dur::secs(600),
        };
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), 9);
        assert_eq!(s.ports().unwrap()["gitlab"], 8080, "older rows kept");
        let decide = |s: &Store, key: &str, now: u64| {
            s.with_notify_limit(key, |l| l.decide(Some(&limit), now))
                .unwrap()
        };
        assert_eq!(decide(&s, "a", 1000), Decision::Send { suppressed: 0 });
        assert_eq!(decide(&s, "a", 1001), Decision::Send { suppressed: 0 });
        assert_eq!(decide(&s, "a", 1002), Decision::Drop);
        drop(s);
        // Another open (a restarted daemon): the window and the count are still there.
        let s = Store::open(&p).unwrap();
        assert_eq!(decide(&s, "a", 1003), Decision::Drop);
        assert_eq!(
            decide(&s, "b", 1003),
            Decision::Send { suppressed: 0 },
            "per notifier"
        );
        assert_eq!(decide(&s, "a", 1600), Decision::Send { suppressed: 2 });
        let kept = s.with_notify_limit("a", |l| l.clone()).unwrap();
        assert_eq!(
            kept,
            Limiter {
                window_start: Some(1600),
                sent: 1,
                suppressed: 0
            }
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            Store::open(&p).unwrap_err(),
            StateError::TooNew { found: 99, .. }
        ));
    }

    #[test]
    fn a_write_waits_for_another_process_writer_instead_of_failing() {
        // `add_job` reads, then writes. Begun deferred, its read snapshot went stale when the
        // other connection committed, and its write failed at once with SQLITE_BUSY_SNAPSHOT
        // (seen as `Locked` when a CLI command queued a job under the API server). Begun
        // immediate, it waits for the other writer and sees its rows.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        let a = Store::open(&p).unwrap();
        let b = Store::open(&p).unwrap();
        b.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        b.conn
            .execute(
                "INSERT INTO compute_jobs (seq, id, user, state, spec, submitted_at) VALUES (1, 'job-1', 'bob', 'queued', '{}', 1)",
                [],
            )
            .unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            b.conn.execute_batch("COMMIT").unwrap();
        });
        let id = a.add_job("alice", "{}", 2).unwrap();
        writer.join().unwrap();
        assert_eq!(id, "job-2");
    }

    #[test]
    fn locked_database_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.db");
        let a = Store::open(&p).unwrap();
        a.conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let b = Connection::open(&p).unwrap();
        b.busy_timeout(Duration::from_millis(50)).unwrap();
        let e = b
            .execute("INSERT INTO events (at, kind) VALUES (1, 'x')", [])
            .unwrap_err();
        assert!(matches!(classify(&p, e), StateError::Locked { .. }));
    }
}
