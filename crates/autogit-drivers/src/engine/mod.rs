//! The container engine: a small trait that the runtime drives, and its Docker implementation
//! (`docker.rs`, bollard) which also speaks to Podman's Docker-compatible socket.
//!
//! Everything autogit creates carries the labels in `autogit_core::container::labels`; `list`
//! finds managed containers by them, so a restarted autogit (even after kill -9) adopts what
//! exists instead of creating duplicates.

use autogit_core::container::ContainerSpec;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

pub mod docker;
pub mod memory;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No socket found, or nothing listens on it.
    #[error(
        "no container engine found ({tried}); start Docker or Podman, or set DOCKER_HOST / platform.socket"
    )]
    NoEngine { tried: String },
    #[error(
        "permission denied on {socket}; add your user to the `docker` group or use the rootless socket"
    )]
    PermissionDenied { socket: String },
    #[error("the engine speaks API {found}; autogit needs {needed} or newer")]
    TooOld { found: String, needed: String },
    #[error("image {image} could not be pulled: {reason}")]
    Pull { image: String, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("the engine refused: {0}")]
    Engine(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// "docker" or "podman".
    pub kind: String,
    pub version: String,
    pub api_version: String,
    pub rootless: bool,
    pub socket: PathBuf,
    /// `overlay2`, `btrfs`, `vfs`, ...; empty when the engine does not say.
    pub storage_driver: String,
    /// Where the engine keeps images and volumes (`/var/lib/docker`), when it says.
    pub root_dir: Option<PathBuf>,
    /// The engine's clock when it answered, unix seconds (Docker's `SystemTime`), when it
    /// says: a VM's engine (Docker Desktop, WSL2) can drift from the host's.
    pub system_time: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The container has no HEALTHCHECK.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// What the engine says about one managed container.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub service: String,
    /// Value of the spec-hash label.
    pub spec_hash: Option<String>,
    pub state: RunState,
    pub health: Health,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// RFC 3339, as the engine reports it.
    pub started_at: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// One event from the engine's event stream that matters for healing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    pub service: String,
    pub container_id: String,
    /// `die`, `oom`, `kill`, `stop`, `start`, `health_status: healthy|unhealthy`, `destroy`.
    pub action: String,
    /// Unix seconds.
    pub time: i64,
}

/// Progress of an image pull: layers done out of layers seen, for a progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullProgress {
    pub image: String,
    pub status: String,
    pub current: u64,
    pub total: u64,
}

pub trait ContainerEngine: Send + Sync {
    fn info(&self) -> impl Future<Output = Result<EngineInfo, EngineError>> + Send;
    /// Creates the network if missing (labels mark it managed); returns whether it was created.
    fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send;
    fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send;
    fn image_present(&self, image: &str) -> impl Future<Output = Result<bool, EngineError>> + Send;
    fn pull(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Managed containers of a project (label `io.autogit.project=<project>`), running or not.
    fn list(
        &self,
        project: &str,
    ) -> impl Future<Output = Result<Vec<Observed>, EngineError>> + Send;
    /// What the container was created with, read back from the engine: the spec that would
    /// create it again (`autogit export --from running`). Environment entries the image
    /// itself sets (`PATH`, ...) are left out; values are returned as they are, secrets
    /// included, so the caller decides what to keep (`core::state::from_container` keeps
    /// only names for anything the configuration does not call plain).
    fn inspect(&self, id: &str) -> impl Future<Output = Result<ContainerSpec, EngineError>> + Send;
    /// Creates (not starts) the container; returns its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn stop(
        &self,
        id: &str,
        timeout_secs: u32,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn restart(
        &self,
        id: &str,
        timeout_secs: u32,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Removes the container (force); never its volumes.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// The last `tail` lines (all if `None`) since `since` (unix seconds), stdout and stderr.
    fn logs(
        &self,
        id: &str,
        since: Option<i64>,
        tail: Option<usize>,
    ) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    /// Lines written after `after_ns` (unix nanoseconds; from the start if `None`, then at
    /// most the last `tail`), each with its timestamp, oldest first: what the log follower
    /// reads without missing or repeating a line across polls.
    fn logs_after(
        &self,
        id: &str,
        after_ns: Option<i64>,
        tail: Option<usize>,
    ) -> impl Future<Output = Result<Vec<(i64, String)>, EngineError>> + Send;
    /// Runs a command in a running container; returns (exit code, combined output).
    fn exec(
        &self,
        id: &str,
        argv: &[String],
    ) -> impl Future<Output = Result<(i64, String), EngineError>> + Send;
    /// [`ContainerEngine::exec`] with `stdin` written to the command's standard input (then
    /// closed): how a secret reaches a command without being in its argv, the engine's exec
    /// record (`docker events`, `exec_create`) or the host's process list.
    fn exec_with_stdin(
        &self,
        id: &str,
        argv: &[String],
        stdin: &[u8],
    ) -> impl Future<Output = Result<(i64, String), EngineError>> + Send;
    /// Copies `path` (a file or directory) out of the container into the local file `dest`,
    /// as the tar archive the engine produces (members named from `path`'s last component).
    /// Streams: the archive never sits in memory. Returns the bytes written.
    fn copy_out(
        &self,
        id: &str,
        path: &str,
        dest: &std::path::Path,
    ) -> impl Future<Output = Result<u64, EngineError>> + Send;
    /// Extracts the local tar archive `tar` into the directory `dir` of the container.
    fn copy_in(
        &self,
        id: &str,
        dir: &str,
        tar: &std::path::Path,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Events of the project's containers, from now on, sent into `tx` until it closes.
    fn events(
        &self,
        project: &str,
        tx: tokio::sync::mpsc::Sender<EngineEvent>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}
