//! A `compute` extension: a transport to runner hosts that autogit does not reach over SSH
//! (a WSL2 distribution through `wsl.exe`, a cloud provider's run-command API, a node behind
//! `kubectl exec`). A host written `extension:NAME/HOST` in a runner's `host` is reached with
//! `compute.exec` calls to extension NAME; everything else (the inventory probe, the
//! scheduler, leases and their host-side watchdog, health checks, routes) is the same as for
//! an SSH host, because it is all argument vectors run on the host ([`RemoteExec`]).
//!
//! One process serves every host of the extension, one call at a time; a process that
//! failed (timeout, crash, broken protocol) is gone, and the next command starts a new one.

use super::host::{Grant, Limits, Session};
use super::{ExtensionError, Found};
use crate::remote::{Output, RemoteError, RemoteExec};
use autogit_core::extension::{ProviderType, code};
use serde_json::json;
use std::sync::Arc;

/// A started `compute` extension.
#[derive(Debug)]
pub struct ExtensionCompute(Session);

/// Largest standard input a command is given through the protocol (it travels base64 in
/// one message of at most 4 MiB).
const MAX_INPUT: usize = 1 << 20;

impl ExtensionCompute {
    /// Starts `found` as a `compute` provider (only what it declared reaches it). `limits`'
    /// call timeout is the longest one command may run.
    pub async fn start(
        found: &Found,
        grant: &Grant<'_>,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        Session::start(found, ProviderType::Compute, grant, limits)
            .await
            .map(Self)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Whether it can take calls (false once a call failed other than with an error answer);
    /// one that is busy with a call counts as alive.
    pub fn alive(&self) -> bool {
        self.0.alive()
    }

    /// `compute.exec`: runs `argv` on `host` with `input` on its standard input.
    pub async fn exec(
        &self,
        host: &str,
        argv: &[String],
        input: &[u8],
    ) -> Result<Output, RemoteError> {
        let shown = format!("extension:{}/{host}", self.name());
        if input.len() > MAX_INPUT {
            return Err(RemoteError::Extension {
                host: shown,
                detail: format!(
                    "the command's input ({} bytes) is larger than the protocol carries ({MAX_INPUT})",
                    input.len()
                ),
            });
        }
        let params = json!({
            "host": host,
            "argv": argv,
            "stdin": data_encoding::BASE64.encode(input),
        });
        let v = match self.0.call("compute.exec", params).await {
            Ok(v) => v,
            Err(e) => return Err(exec_error(&shown, e)),
        };
        let text = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or("").to_owned();
        let code = match v.get("code") {
            Some(serde_json::Value::Null) | None => None,
            Some(c) => match c.as_i64().and_then(|c| i32::try_from(c).ok()) {
                Some(c) => Some(c),
                None => {
                    return Err(RemoteError::Extension {
                        host: shown,
                        detail: format!(
                            "extension `{}` answered `compute.exec` with code {c}, not an exit status or null",
                            self.name()
                        ),
                    });
                }
            },
        };
        Ok(Output {
            code,
            stdout: text("stdout"),
            stderr: text("stderr"),
        })
    }

    /// Sends `shutdown` and waits for it to exit.
    pub async fn shutdown(&self) {
        self.0.shutdown().await;
    }
}

/// What a failed `compute.exec` means for the host: no answer from the backend (`-32004`)
/// is an unreachable host, an unknown host (`-32005`) a bad one, a timeout a timeout.
fn exec_error(host: &str, e: ExtensionError) -> RemoteError {
    match e {
        ExtensionError::Remote {
            code: code::UNAVAILABLE,
            message,
            ..
        } => RemoteError::Unreachable {
            host: host.to_owned(),
            detail: message,
        },
        ExtensionError::Remote {
            code: code::NOT_FOUND,
            message,
            ..
        } => RemoteError::BadHost {
            host: host.to_owned(),
            reason: format!("the extension does not know it: {message}"),
        },
        ExtensionError::Timeout { after, .. } => RemoteError::Timeout {
            host: host.to_owned(),
            after,
        },
        e => RemoteError::Extension {
            host: host.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// One host of a `compute` extension, as a [`RemoteExec`].
#[derive(Clone, Debug)]
pub struct ExtensionExec {
    pool: Arc<ExtensionCompute>,
    /// As configured: `extension:NAME/HOST`.
    shown: String,
    /// As the extension knows it.
    target: String,
}

impl ExtensionExec {
    /// Host `target` of `pool`.
    pub fn new(pool: Arc<ExtensionCompute>, target: &str) -> Self {
        Self {
            shown: format!("extension:{}/{target}", pool.name()),
            target: target.to_owned(),
            pool,
        }
    }
}

impl RemoteExec for ExtensionExec {
    fn host(&self) -> &str {
        &self.shown
    }

    async fn run_input(&self, argv: &[String], input: &[u8]) -> Result<Output, RemoteError> {
        self.pool.exec(&self.target, argv, input).await
    }
}
