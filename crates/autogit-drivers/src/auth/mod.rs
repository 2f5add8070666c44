//! The REST API's credentials, I/O side: the access database (`<data_dir>/access.db`: API
//! keys, local users, revoked token ids, signing-key metadata, failed logins), argon2id
//! hashing with a pepper, Ed25519 signing keys kept in the [`SecretStore`](crate::secrets::SecretStore),
//! and strict JWT signing and verification. Decisions (roles, scopes, claims, lockout) are in
//! `autogit_core::access`; the workflow in `autogit_app::access`.
//!
//! Nothing here logs, and no error carries a secret value: errors name files and tables.

pub mod db;
pub mod hash;
pub mod jwt;
pub mod keys;
pub mod ldap;
pub mod oidc;

use std::path::PathBuf;

/// What can go wrong with the access store. Messages name files, never values.
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    #[error(
        "{path}: {source}; check that the file is a SQLite database autogit wrote and that it is not locked by a stuck process"
    )]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path} has schema version {found}, newer than this autogit understands ({known}); upgrade autogit"
    )]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "{path}: {what}; restore it from a backup or move it aside to start with no keys or users"
    )]
    Corrupt { path: PathBuf, what: String },
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the secret `{0}` is not a valid signing key; rotate the signing key (`autogit auth rotate-signing-key`)"
    )]
    BadKey(String),
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
}

/// `len` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], AuthStoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AuthStoreError::Random(e.to_string()))?;
    Ok(b)
}
