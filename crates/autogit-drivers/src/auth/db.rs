//! `<data_dir>/access.db`: SQLite (WAL, mode 0600) holding API keys (argon2id hashes, never
//! the keys), local users (argon2id password hashes), revoked token ids, signing-key metadata
//! (the keys themselves are in the secret store) and failed-login counters. Its schema version
//! is in the `schema_version` table; a newer one is refused, never migrated down.

use super::AuthStoreError;
use autogit_core::access::Role;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name inside the data dir.
pub const FILE: &str = "access.db";
/// The schema this version writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    prefix TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE TABLE IF NOT EXISTS login_failures (
    provider TEXT NOT NULL,
    username TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until INTEGER,
    PRIMARY KEY (provider, username)
);
";

/// An API key as stored (the hash, not the key).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub prefix: String,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("prefix", &self.prefix)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A local user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub hash: String,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A signing key's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// Failed logins of one user at one provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Failures {
    pub failures: u32,
    pub last_failure_at: i64,
    pub locked_until: Option<i64>,
}

/// The access database.
pub struct AccessDb {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for AccessDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessDb")
            .field("path", &self.path)
            .finish()
    }
}

fn role_of(text: String) -> rusqlite::Result<Role> {
    text.parse()
        .map_err(|e: autogit_core::access::ParseRoleError| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    let scopes: String = r.get(3)?;
    Ok(KeyRow {
        prefix: r.get(0)?,
        name: r.get(1)?,
        role: role_of(r.get(2)?)?,
        scopes: serde_json::from_str(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        hash: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        last_used_at: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

const KEY_COLS: &str =
    "prefix, name, role, scopes, hash, created_at, expires_at, last_used_at, revoked_at";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        name: r.get(0)?,
        role: role_of(r.get(1)?)?,
        hash: r.get(2)?,
        created_at: r.get(3)?,
        last_login_at: r.get(4)?,
    })
}

impl AccessDb {
    /// Opens `<data_dir>/access.db`, creating it (mode 0600) and its schema when absent.
    pub fn open(data_dir: &Path) -> Result<Self, AuthStoreError> {
        crate::fsx::ensure_private_dir(data_dir)?;
        let path = data_dir.join(FILE);
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| AuthStoreError::Io { path: p, source }
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let mode = std::fs::metadata(&path)
            .map_err(io(&path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(&path))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| AuthStoreError::Sql {
                path: path.clone(),
                source,
            })?;
        let db = AccessDb { conn, path };
        db.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| db.err(e))?;
        db.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db.err(e))?;
        db.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| db.err(e))?;
        db.migrate()?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> AuthStoreError {
        match source {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
                ) =>
            {
                AuthStoreError::Corrupt {
                    path: self.path.clone(),
                    what: "not a valid SQLite database".into(),
                }
            }
            source => AuthStoreError::Sql {
                path: self.path.clone(),
                source,
            },
        }
    }

    fn migrate(&self) -> Result<(), AuthStoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE;")
            .map_err(|e| self.err(e))?;
        let result = (|| {
            self.conn.execute_batch(SCHEMA)?;
            let found: Option<i64> =
                self.conn
                    .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
            match found {
                None => {
                    self.conn.execute(
                        "INSERT INTO schema_version (version) VALUES (?1)",
                        [SCHEMA_VERSION],
                    )?;
                    Ok(None)
                }
                Some(v) if v > SCHEMA_VERSION => Ok(Some(v)),
                Some(_) => Ok(None),
            }
        })();
        match result {
            Ok(None) => self.conn.execute_batch("COMMIT;").map_err(|e| self.err(e)),
            Ok(Some(found)) => {
                let _ = self.conn.execute_batch("ROLLBACK;");
                Err(AuthStoreError::Newer {
                    path: self.path.clone(),
                    found,
                    known: SCHEMA_VERSION,
                })
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK;");
                Err(self.err(e))
            }
        }
    }

    /// SQLite's `data_version`: changes whenever another connection (another process: the
    /// CLI revoking a key under a running server) commits. Microseconds.
    pub fn data_version(&self) -> Result<i64, AuthStoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    // -- API keys ------------------------------------------------------------------------

    pub fn insert_key(&self, k: &KeyRow) -> Result<(), AuthStoreError> {
        let scopes = serde_json::to_string(&k.scopes).expect("strings serialize");
        self.conn
            .execute(
                &format!(
                    "INSERT INTO api_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    k.prefix,
                    k.name,
                    k.role.as_str(),
                    scopes,
                    k.hash,
                    k.created_at,
                    k.expires_at,
                    k.last_used_at,
                    k.revoked_at
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn key(&self, prefix: &str) -> Result<Option<KeyRow>, AuthStoreError> {
        self.conn
            .query_row(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE prefix = ?1"),
                [prefix],
                key_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every key, newest first.
    pub fn keys(&self) -> Result<Vec<KeyRow>, AuthStoreError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {KEY_COLS} FROM api_keys ORDER BY created_at DESC, prefix"
            ))
            .map_err(|e| self.err(e))?;
        st.query_map([], key_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// Marks key `prefix` revoked at `now` (an already revoked key keeps its first time).
    /// `None` when there is no such key.
    pub fn revoke_key(&self, prefix: &str, now: i64) -> Result<Option<KeyRow>, AuthStoreError> {
        self.conn
            .execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE prefix = ?1 AND revoked_at IS NULL",
                params![prefix, now],
            )
            .map_err(|e| self.err(e))?;
        self.key(prefix)
    }

    pub fn touch_key(&self, prefix: &str, now: i64) -> Result<(), AuthStoreError> {
        self.conn
            .execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE prefix = ?1",
                params![prefix, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Prefixes of revoked keys (tokens issued from them stop working too).
    pub fn revoked_key_prefixes(&self) -> Result<Vec<String>, AuthStoreError> {
        let mut st = self
            .conn
            .prepare("SELECT prefix FROM api_keys WHERE revoked_at IS NOT NULL")
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    // -- tokens --------------------------------------------------------------------------

    /// Revokes token id `jti` until `expires_at` (after which it is invalid anyway).
    pub fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), AuthStoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Revoked token ids still worth remembering at `now`; older ones are forgotten.
    pub fn revoked_tokens(&self, now: i64) -> Result<Vec<String>, AuthStoreError> {
        let mut st = self
            .conn
            .prepare("SELECT jti FROM revoked_tokens WHERE expires_at >= ?1")
            .map_err(|e| self.err(e))?;
        st.query_map([now], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// Forgets revoked ids whose tokens expired before `before`.
    pub fn purge_revoked_tokens(&self, before: i64) -> Result<(), AuthStoreError> {
        self.conn
            .execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [before])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // -- signing keys ----------------------------------------------------------------------

    /// Every signing key, newest first.
    pub fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, AuthStoreError> {
        let mut st = self
            .conn
            .prepare("SELECT kid, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, rowid DESC")
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| {
            Ok(SigningKeyRow {
                kid: r.get(0)?,
                created_at: r.get(1)?,
                retired_at: r.get(2)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Makes `kid` the current signing key: every other current key is retired at `now`.
    pub fn add_signing_key(&self, kid: &str, now: i64) -> Result<(), AuthStoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
            [now],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO signing_keys (kid, created_at) VALUES (?1, ?2)",
            params![kid, now],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn delete_signing_key(&self, kid: &str) -> Result<(), AuthStoreError> {
        self.conn
            .execute("DELETE FROM signing_keys WHERE kid = ?1", [kid])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // -- users -----------------------------------------------------------------------------

    /// Adds a user; `false` when the name is taken.
    pub fn insert_user(&self, u: &UserRow) -> Result<bool, AuthStoreError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO users (name, role, hash, created_at, last_login_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![u.name, u.role.as_str(), u.hash, u.created_at, u.last_login_at],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRow>, AuthStoreError> {
        self.conn
            .query_row(
                "SELECT name, role, hash, created_at, last_login_at FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn users(&self) -> Result<Vec<UserRow>, AuthStoreError> {
        let mut st = self
            .conn
            .prepare("SELECT name, role, hash, created_at, last_login_at FROM users ORDER BY name")
            .map_err(|e| self.err(e))?;
        st.query_map([], user_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// Removes a user; `false` when there was none.
    pub fn remove_user(&self, name: &str) -> Result<bool, AuthStoreError> {
        let n = self
            .conn
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    pub fn touch_user(&self, name: &str, now: i64) -> Result<(), AuthStoreError> {
        self.conn
            .execute(
                "UPDATE users SET last_login_at = ?2 WHERE name = ?1",
                params![name, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // -- failed logins ---------------------------------------------------------------------

    pub fn failures(&self, provider: &str, username: &str) -> Result<Failures, AuthStoreError> {
        self.conn
            .query_row(
                "SELECT failures, last_failure_at, locked_until FROM login_failures WHERE provider = ?1 AND username = ?2",
                [provider, username],
                |r| {
                    Ok(Failures {
                        failures: r.get(0)?,
                        last_failure_at: r.get(1)?,
                        locked_until: r.get(2)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }

    /// Records `f` for the user, and forgets failures older than `forget_before`.
    pub fn set_failures(
        &self,
        provider: &str,
        username: &str,
        f: Failures,
        forget_before: i64,
    ) -> Result<(), AuthStoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO login_failures (provider, username, failures, last_failure_at, locked_until) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![provider, username, f.failures, f.last_failure_at, f.locked_until],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "DELETE FROM login_failures WHERE last_failure_at < ?1 AND (locked_until IS NULL OR locked_until < ?1)",
                [forget_before],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn clear_failures(&self, provider: &str, username: &str) -> Result<(), AuthStoreError> {
        self.conn
            .execute(
                "DELETE FROM login_failures WHERE provider = ?1 AND username = ?2",
                [provider, username],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = AccessDb::open(dir.path()).unwrap();
        let mode = std::fs::metadata(db.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        db.insert_key(&KeyRow {
            prefix: "abcdefgh".into(),
            name: "ci".into(),
            role: Role::Operator,
            scopes: vec!["dns".into()],
            hash: "$argon2id$x".into(),
            created_at: 5,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        })
        .unwrap();
        assert_eq!(
            db.revoke_key("abcdefgh", 9).unwrap().unwrap().revoked_at,
            Some(9)
        );
        assert_eq!(
            db.revoke_key("abcdefgh", 10).unwrap().unwrap().revoked_at,
            Some(9)
        );
        assert!(db.revoke_key("zzzzzzzz", 10).unwrap().is_none());
        // Another connection's commit moves data_version.
        let v = db.data_version().unwrap();
        let other = AccessDb::open(dir.path()).unwrap();
        other.revoke_token("j1", 100).unwrap();
        assert_ne!(db.data_version().unwrap(), v);
        assert_eq!(db.revoked_tokens(50).unwrap(), vec!["j1".to_string()]);
        assert!(db.revoked_tokens(101).unwrap().is_empty());
        drop((db, other));
        let c = Connection::open(dir.path().join(FILE)).unwrap();
        c.execute("INSERT INTO schema_version VALUES (99)", [])
            .unwrap();
        drop(c);
        let err = AccessDb::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("schema version 99") && err.contains("upgrade autogit"),
            "{err}"
        );
    }
}
