//! Extensions: executables in the extensions directory speaking autogit's JSON-RPC protocol
//! on stdio (`docs/extensions.md`; the messages and rules are `autogit_core::extension`).
//!
//! - [`discover`] lists the executables of a directory;
//! - `host.rs`: one running extension ([`Process`]): a cleared environment holding only what
//!   it declared, a timeout per call, a cap on each answer's size, answers matched to requests
//!   by id, stderr to the log (secrets it was given scrubbed), its process group killed when
//!   it fails or is dropped;
//! - `dns.rs`: a `dns` extension as a [`crate::dns::DnsProvider`];
//! - `notify.rs`: a `notify` extension ([`ExtensionNotify`]: `notify.send`);
//! - `compute.rs`: a `compute` extension ([`ExtensionCompute`]: `compute.exec`), each of its
//!   hosts a [`crate::remote::RemoteExec`] ([`ExtensionExec`]);
//! - `auth.rs`: an `auth` extension ([`auth::login`]: `auth.login`, one process per login).
//!
//! **Invariant:** whatever an extension does (hang, crash, flood its stdout, answer out of
//! turn), the error is that extension's ([`ExtensionError`] names it) and the process is gone;
//! autogit goes on.

pub mod auth;
mod compute;
mod dns;
mod host;
mod notify;
mod ssl;
mod storage;

pub use compute::{ExtensionCompute, ExtensionExec};
pub use dns::ExtensionDns;
pub use host::{Grant, Limits, Process, Session, Started, handshake, start};
pub use notify::ExtensionNotify;
pub use ssl::{ExtensionSsl, Issued};
pub use storage::ExtensionStorage;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An executable found in the extensions directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The file name: the extension's name.
    pub name: String,
    pub path: PathBuf,
}

/// A file of the extensions directory that is not an extension, and why.
pub type Skipped = (PathBuf, String);

/// The executables of `dir` whose names are extension names, by name, with absolute paths,
/// and what was skipped (with why). A missing directory holds none.
pub fn discover(dir: &Path) -> Result<(Vec<Found>, Vec<Skipped>), ExtensionError> {
    // Absolute: an extension runs in its directory, where a relative path would not resolve.
    let dir = &std::path::absolute(dir).map_err(|source| ExtensionError::Dir {
        dir: dir.to_owned(),
        source,
    })?;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(source) => {
            return Err(ExtensionError::Dir {
                dir: dir.to_owned(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ExtensionError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            skipped.push((path, "the name is not UTF-8".to_owned()));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if let Err(why) = autogit_core::extension::check_name(&name) {
            skipped.push((path, why));
            continue;
        }
        // Follows a symbolic link: an extension may be installed as a link to its file.
        match std::fs::metadata(&path) {
            // Another user who can rewrite it would run as autogit and get its secrets.
            Ok(m) if m.is_file() && m.permissions().mode() & 0o022 != 0 => skipped.push((
                path,
                format!(
                    "writable by other users (mode {:o}): chmod go-w it",
                    m.permissions().mode() & 0o777
                ),
            )),
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                found.push(Found { name, path })
            }
            Ok(m) if m.is_file() => skipped.push((path, "not executable".to_owned())),
            Ok(_) => skipped.push((path, "not a file".to_owned())),
            Err(e) => skipped.push((path, e.to_string())),
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((found, skipped))
}

/// What went wrong with an extension. Every message names it; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("cannot read the extensions directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "extension `{name}` is not installed: no executable `{name}` in {dir} (EXTENSIONS_DIR, else <data dir>/extensions)"
    )]
    NotFound { name: String, dir: PathBuf },
    #[error("extension `{name}`: cannot start {path}: {source}")]
    Spawn {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "extension `{name}` did not answer `{method}` within {after:?}; it was stopped (EXTENSIONS_TIMEOUT sets the time per call)"
    )]
    Timeout {
        name: String,
        method: String,
        after: Duration,
    },
    #[error("extension `{name}` exited ({status}) before answering `{method}`{}", stderr_hint(.stderr))]
    Exited {
        name: String,
        method: String,
        status: String,
        /// Its last stderr line, secrets it was given scrubbed.
        stderr: Option<String>,
    },
    #[error(
        "extension `{name}` sent an answer to `{method}` longer than {limit} bytes; it was stopped"
    )]
    Oversized {
        name: String,
        method: String,
        limit: usize,
    },
    #[error("extension `{name}` broke the protocol on `{method}`: {reason}; it was stopped")]
    Protocol {
        name: String,
        method: String,
        reason: String,
    },
    /// A JSON-RPC error answer: the extension is alive and said no.
    #[error("extension `{name}` failed `{method}` ({code}): {message}")]
    Remote {
        name: String,
        method: String,
        code: i64,
        message: String,
        data: Option<serde_json::Value>,
    },
    #[error("extension `{name}` is refused: {}", problems.join("; "))]
    Manifest { name: String, problems: Vec<String> },
    #[error("extension `{name}`: {reason}")]
    Config { name: String, reason: String },
    #[error("extension `{name}` stopped after an earlier error and takes no more calls")]
    Dead { name: String },
}

fn stderr_hint(line: &Option<String>) -> String {
    line.as_ref()
        .map(|l| format!("; its last words on stderr: {l}"))
        .unwrap_or_default()
}

impl ExtensionError {
    /// Whether the extension may have done what it was asked despite the error (no answer,
    /// or one autogit could not read).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ExtensionError::Timeout { .. }
                | ExtensionError::Exited { .. }
                | ExtensionError::Oversized { .. }
                | ExtensionError::Protocol { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn discovery_lists_executables_with_extension_names() {
        let d = tempfile::tempdir().unwrap();
        let mk = |n: &str, mode: u32| {
            let p = d.path().join(n);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        };
        mk("zeta", 0o755);
        mk("alpha", 0o700);
        mk("readme", 0o644);
        mk("shared", 0o775);
        mk("Bad_Name", 0o755);
        mk(".hidden", 0o755);
        fs::create_dir(d.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(d.path().join("alpha"), d.path().join("linked")).unwrap();
        let (found, skipped) = discover(d.path()).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["alpha", "linked", "zeta"]);
        let mut why: Vec<String> = skipped
            .iter()
            .map(|(p, w)| format!("{}: {w}", p.file_name().unwrap().to_str().unwrap()))
            .collect();
        why.sort();
        assert_eq!(why.len(), 4, "{why:?}");
        assert!(why[0].starts_with("Bad_Name: `Bad_Name` is not an extension name"));
        assert_eq!(why[1], "dir: not a file");
        assert_eq!(why[2], "readme: not executable");
        assert_eq!(
            why[3],
            "shared: writable by other users (mode 775): chmod go-w it"
        );
        assert_eq!(
            discover(&d.path().join("missing")).unwrap().0,
            Vec::<Found>::new()
        );
    }
}
