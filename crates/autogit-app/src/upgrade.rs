//! The upgrade controller: GitLab one required stop at a time (`core::upgrade` plans the
//! path). For each step: a backup, `gitlab.version` set in autogit.yml (comments kept), the
//! platform deployed again on the new image and waited for, then GitLab's background
//! migrations waited for. A failed step stops with what to run to go back.

use crate::backup::{BackupController, gitlab_container};
use crate::platform::{DeployProgress, InstallOutcome, InstallProgress, deploy};
use crate::{Bus, Settings};
use autogit_core::upgrade::{
    MIGRATIONS_SCRIPT, Step, Version, parse_migrations, set_gitlab_version,
};
use autogit_drivers::backup::running_version;
use autogit_drivers::engine::ContainerEngine;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct UpgradeController {
    bus: Bus,
}

impl UpgradeController {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// The version the running GitLab reports.
    pub async fn running_version(&self, settings: &Settings) -> Result<Version, String> {
        let (engine, id) = gitlab_container(settings).await?;
        let v = running_version(&engine, &id)
            .await
            .map_err(|e| format!("cannot read the running GitLab version: {e}"))?;
        Version::parse(&v).ok_or_else(|| {
            format!("the running GitLab reports version `{v}`, which autogit cannot read")
        })
    }

    /// Runs every step from `from`. `reload` reads the configuration again (it changes with
    /// every step); `config` is the autogit.yml each step's version is written to. Returns the
    /// versions reached.
    pub async fn run(
        &self,
        config: &Path,
        from: Version,
        steps: &[Step],
        (wait, poll): (Duration, Duration),
        reload: impl Fn() -> Arc<Settings>,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Vec<String>, String> {
        let mut previous = from;
        let mut done = Vec::new();
        for step in steps {
            let v = step.version;
            progress(&format!("step {v} ({}): backup first", step.reason));
            let backups =
                BackupController::new(reload(), self.bus.clone(), self.bus.clock().clone());
            let archive = backups.create(progress).await.map_err(|e| {
                format!("upgrade stopped before {v}: the backup failed ({e}); GitLab {previous} is untouched")
            })?;
            let archive = archive.report.archive;
            progress(&format!(
                "backup {} written; setting gitlab.version to {v}",
                archive.display()
            ));
            set_version(config, &v.to_string())
                .map_err(|e| format!("upgrade stopped before {v}: {e}"))?;
            let rollback = format!(
                "to go back: set gitlab.version to {previous} in {}, `autogit install`, then `autogit restore {} --yes`",
                config.display(),
                archive.display()
            );
            let next = reload();
            let outcome = deploy(next.clone(), &self.bus, wait, &|_| {}, |p| {
                if let DeployProgress::Wait(InstallProgress::States(states)) = p {
                    let line: Vec<String> =
                        states.iter().map(|(s, st)| format!("{s}: {st}")).collect();
                    progress(&line.join(", "));
                }
            })
            .await;
            if !matches!(outcome, Ok(InstallOutcome::Healthy { .. })) {
                let why = match outcome {
                    Err(e) => e,
                    Ok(o) => format!("{o:?}"),
                };
                return Err(format!(
                    "upgrade stopped at {v}: GitLab {v} did not become healthy ({why}); {rollback}"
                ));
            }
            progress(&format!(
                "GitLab {v} is healthy; waiting for background migrations"
            ));
            wait_for_migrations(&next, wait, poll, progress)
                .await
                .map_err(|e| format!("upgrade stopped at {v}: {e}; {rollback}"))?;
            done.push(v.to_string());
            previous = v;
        }
        Ok(done)
    }
}

/// Writes `gitlab.version` into autogit.yml, keeping the rest of the file (and its mode).
pub fn set_version(config: &Path, version: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let new =
        set_gitlab_version(&text, version).map_err(|e| format!("{}: {e}", config.display()))?;
    let mode = std::fs::metadata(config)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    autogit_drivers::fsx::write_atomic(config, new.as_bytes(), mode).map_err(|e| e.to_string())
}

/// Polls GitLab's background migrations (one `gitlab-rails runner` call each `poll`) until
/// none is pending; a failed one, or `wait` passing, is an error.
async fn wait_for_migrations(
    settings: &Settings,
    wait: Duration,
    poll: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), String> {
    let start = Instant::now();
    let argv: Vec<String> = [
        autogit_drivers::gitlab::bootstrap::GITLAB_RAILS,
        "runner",
        MIGRATIONS_SCRIPT,
    ]
    .map(str::to_owned)
    .to_vec();
    let mut last = None;
    // The container stays the same while migrations run: find it once.
    let (engine, id) = gitlab_container(settings).await?;
    loop {
        let (code, out) = engine.exec(&id, &argv).await.map_err(|e| e.to_string())?;
        match (code, parse_migrations(&out)) {
            (0, Some((0, 0))) => return Ok(()),
            (0, Some((_, failed))) if failed > 0 => {
                return Err(format!(
                    "{failed} background migration(s) failed: see Admin > Monitoring > Background migrations, retry them, then run `autogit upgrade` again"
                ));
            }
            (0, Some((pending, _))) => {
                if last != Some(pending) {
                    progress(&format!("{pending} background migration(s) still running"));
                    last = Some(pending);
                }
            }
            _ => {
                let tail: Vec<&str> = out.lines().rev().take(5).collect();
                return Err(format!(
                    "checking background migrations failed (exit {code}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
        }
        if start.elapsed() >= wait {
            return Err(format!(
                "background migrations still running after {}s",
                wait.as_secs()
            ));
        }
        tokio::time::sleep(poll.max(Duration::from_millis(100))).await;
    }
}
