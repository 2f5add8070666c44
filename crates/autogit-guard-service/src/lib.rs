//! autogit-guard-service: everything around the pure `autogit-guard` analysis that needs I/O.
//!
//! - [`store`]: quarantine records in the platform spec's JSON shape, kept in SQLite (WAL).
//! - [`server`]: an HTTP endpoint usable as a Traefik forward-auth service or as a reverse
//!   proxy in front of an OpenAI- or Ollama-style inference API.
//! - [`body`]: reading a request body exactly as an upstream would, or refusing it.
//! - [`limits`]: the shared-secret token, loopback-only without one, per-client rate limits.
//! - [`eval`]: labelled-dataset loading (CSV or JSONL) and detection metrics.
//! - [`scan`]: repository scanning for Trojan Source, invisible characters and homoglyphs,
//!   with text, JSON and SARIF output.

pub mod body;
pub mod error;
pub mod eval;
pub mod limits;
pub mod scan;
pub mod server;
pub mod store;
mod time;

pub use error::ServiceError;
