//! The NVIDIA container toolkit on runner hosts: `runner prepare HOST` probes the host over
//! its SSH path (`core::toolkit::PROBE_SCRIPT`), reports what is missing with the exact fix,
//! and runs the `nvidia-ctk` steps that are not done yet (`core::toolkit::prepare_steps`), so
//! a second run changes nothing.

use super::{RunnerController, RunnerError};
use crate::Event;
use autogit_core::toolkit::{
    Missing, Step, Toolkit, parse_probe, prepare_steps, probe_argv, step_argv,
};
use autogit_drivers::remote::RemoteExec;
use serde::Serialize;

/// What a host has for GPU containers.
#[derive(Clone, Debug, Serialize)]
pub struct HostToolkit {
    pub host: String,
    pub toolkit: Toolkit,
    pub missing: Vec<Missing>,
}

/// One step `prepare` ran.
#[derive(Clone, Debug, Serialize)]
pub struct StepRun {
    pub step: Step,
    pub command: String,
    pub ok: bool,
    /// The step's last line of error output when it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// What `prepare` did, and the host as it is afterwards.
#[derive(Clone, Debug, Serialize)]
pub struct Prepared {
    pub host: String,
    pub ran: Vec<StepRun>,
    pub after: HostToolkit,
}

impl RunnerController {
    /// The host `target` means: a runner's name (its host), or a configured runner host.
    pub fn host_target(&self, target: &str) -> Result<String, RunnerError> {
        Ok(self
            .register_targets(target)?
            .first()
            .map(|r| r.host.clone())
            .unwrap_or_else(|| target.to_owned()))
    }

    /// Probes `target`'s toolkit (driver, `nvidia-ctk`, CDI devices, the engine's runtimes).
    pub async fn toolkit(&self, target: &str) -> Result<HostToolkit, RunnerError> {
        let host = self.host_target(target)?;
        self.probe_toolkit(&host).await
    }

    async fn probe_toolkit(&self, host: &str) -> Result<HostToolkit, RunnerError> {
        let remote = self.remote(host).await?;
        let out = remote
            .run(&probe_argv())
            .await
            .map_err(|e| RunnerError::Failed(e.to_string()))?;
        if !out.success() {
            return Err(RunnerError::Failed(format!(
                "{host}: the toolkit probe failed: {}",
                out.stderr.trim()
            )));
        }
        let toolkit = parse_probe(&out.stdout);
        let missing = autogit_core::toolkit::missing(&toolkit);
        Ok(HostToolkit {
            host: host.to_owned(),
            toolkit,
            missing,
        })
    }

    /// Configures `target`'s engine for NVIDIA GPUs: `nvidia-ctk runtime configure` (and a
    /// restart of dockerd) when Docker lacks the `nvidia` runtime, `nvidia-ctk cdi generate`
    /// when no CDI specification names the GPUs; nothing that is already done. A host
    /// without a driver, the toolkit or an engine is an error with the fixes (autogit does
    /// not install drivers or packages). A failed step stops the run.
    pub async fn prepare(&self, target: &str) -> Result<Prepared, RunnerError> {
        let host = self.host_target(target)?;
        let before = self.probe_toolkit(&host).await?;
        let steps = prepare_steps(&before.toolkit).map_err(|missing| {
            RunnerError::Failed(format!(
                "{host}: {}; `autogit runner prepare` configures the engine once these are installed",
                missing
                    .iter()
                    .map(|m| format!("{} (fix: {})", m.why, m.fix.join(" && ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let remote = self.remote(&host).await?;
        let mut ran = Vec::new();
        for step in steps {
            let argv = step_argv(step, &before.toolkit);
            let out = remote
                .run(&argv)
                .await
                .map_err(|e| RunnerError::Failed(e.to_string()))?;
            let ok = out.success();
            ran.push(StepRun {
                step,
                command: argv.join(" "),
                ok,
                error: if ok {
                    String::new()
                } else {
                    out.stderr.trim().lines().last().unwrap_or("").to_owned()
                },
            });
            if !ok {
                break;
            }
        }
        if !ran.is_empty() {
            self.bus.publish(Event::RunnerHostPrepared {
                host: host.clone(),
                steps: ran
                    .iter()
                    .map(|r| format!("{}{}", r.command, if r.ok { "" } else { " (failed)" }))
                    .collect(),
            });
        }
        let after = self.probe_toolkit(&host).await?;
        Ok(Prepared { host, ran, after })
    }
}
