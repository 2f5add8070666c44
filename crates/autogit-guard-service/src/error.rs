//! The one error type of this crate.

use std::path::PathBuf;

/// Errors of the guard service (storage, files, datasets, HTTP).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The quarantine database failed.
    #[error("quarantine store: {0}")]
    Store(#[from] rusqlite::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Building the guard failed (bad thresholds).
    #[error(transparent)]
    Guard(#[from] autogit_guard::GuardError),
    /// JSON (de)serialization failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A dataset file is malformed.
    #[error("dataset {path}, line {line}: {message}")]
    Dataset {
        /// The dataset file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No quarantine record has this id.
    #[error("no quarantine record with id {0}")]
    NotFound(String),
    /// An `--upstream` value is not `URL` or `HOST=URL`.
    #[error("--upstream {value:?}: {message}")]
    Upstream {
        /// The value given.
        value: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// The HTTP server could not start or run.
    #[error("http server: {0}")]
    Http(String),
    /// Authentication is missing or its token is unusable.
    #[error("authentication: {0}")]
    Auth(String),
    /// The quarantine is at its quota; the record was not stored.
    #[error(
        "the quarantine is full ({items} records, {bytes} bytes; quota {max_items} records, {max_bytes} bytes): review and delete or release records (`autogit guard quarantine list`), or raise the quota"
    )]
    QuarantineFull {
        /// Records stored.
        items: u64,
        /// Bytes stored.
        bytes: u64,
        /// The quota's record limit.
        max_items: u64,
        /// The quota's byte limit.
        max_bytes: u64,
    },
}

impl ServiceError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
