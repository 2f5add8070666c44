//! The backup controller: a verified archive of GitLab (gitlab-backup in its container) with
//! GitLab's secrets and autogit's configuration, state and secrets (`drivers::backup`),
//! retention, an optional btrfs snapshot of the data dir, and the schedule the daemon follows
//! (`backup.schedule`). Restores are `drivers::backup::restore` behind the CLI's confirmation.
//!
//! Archives are encrypted with age when `backup.encrypt_to` names recipients (the daemon's
//! scheduled backups too) or the command asks for it ([`BackupController::with_encryption`]:
//! `--encrypt-to`, `--passphrase-file`). They also hold `<data_dir>/access.db` (a consistent
//! snapshot) and `<data_dir>/audit/` when those exist; never the secrets' master key, which
//! lives outside the data dir.

use crate::{Bus, Event, Settings, SharedClock};
use autogit_core::config::AutoBool;
use autogit_drivers::backup::{
    self, BackupOptions, BackupReport, Decryption, Encryption, LocalFiles,
};
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::state::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub struct BackupController {
    settings: Arc<Settings>,
    bus: Bus,
    clock: SharedClock,
    /// Overrides `backup.encrypt_to` (the command's flags).
    encryption: Option<Encryption>,
}

/// A backup taken: the archive and, when configured, the btrfs snapshot of the data dir.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Taken {
    pub report: BackupReport,
    pub btrfs_snapshot: Option<PathBuf>,
    /// Why the snapshot (an extra) was not taken, when it should have been.
    pub snapshot_warning: Option<String>,
    /// The copies to `backup.targets`, verified, each with its outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<crate::offsite::Copy>,
}

/// The running GitLab container of the platform, on the configured engine.
pub async fn gitlab_container(settings: &Settings) -> Result<(Docker, String), String> {
    let engine = Docker::connect(settings.socket(), &settings.env)
        .await
        .map_err(|e| e.to_string())?;
    let project = &settings.config.platform.project;
    let id = engine
        .list(project)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|o| o.service == "gitlab" && o.state == autogit_drivers::engine::RunState::Running)
        .map(|o| o.id)
        .ok_or_else(|| {
            format!("no running GitLab container in project `{project}`: `autogit install` first")
        })?;
    Ok((engine, id))
}

impl BackupController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            settings,
            bus,
            clock,
            encryption: None,
        }
    }

    /// Encrypts this controller's archives so, instead of as `backup.encrypt_to` says.
    pub fn with_encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// How archives are encrypted: the override, else `backup.encrypt_to`.
    pub fn encryption(&self) -> Encryption {
        self.encryption.clone().unwrap_or_else(|| {
            let to = &self.settings.config.backup.encrypt_to;
            if to.is_empty() {
                Encryption::None
            } else {
                Encryption::Recipients(to.clone())
            }
        })
    }

    /// Takes a backup on the configured engine and publishes the outcome (`backup_created` or
    /// `backup_failed`).
    pub async fn create(&self, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<Taken, String> {
        let result = match gitlab_container(&self.settings).await {
            Ok((engine, id)) => self.create_on(&engine, &id, progress).await,
            Err(e) => Err(e),
        };
        self.published(result)
    }

    fn published(&self, result: Result<Taken, String>) -> Result<Taken, String> {
        let archive = |t: &Taken| {
            t.report
                .archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let copies: Vec<Event> = match &result {
            Ok(t) => t
                .copies
                .iter()
                .map(|c| match (&c.copied, &c.error) {
                    (Some(ok), None) => Event::BackupCopied {
                        target: c.target.clone(),
                        archive: ok.name.clone(),
                        bytes: ok.size,
                        sha256: ok.sha256.clone(),
                        removed: ok.removed.clone(),
                    },
                    (_, error) => Event::BackupCopyFailed {
                        target: c.target.clone(),
                        archive: archive(t),
                        error: error.clone().unwrap_or_default(),
                    },
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        self.bus.publish(match &result {
            Ok(t) => Event::BackupCreated {
                archive: t.report.archive.display().to_string(),
                bytes: t.report.size,
                gitlab_version: t.report.gitlab_version.clone(),
                removed: t.report.removed.clone(),
            },
            Err(error) => Event::BackupFailed {
                error: error.clone(),
            },
        });
        for e in copies {
            self.bus.publish(e);
        }
        result
    }

    /// Takes a backup from the GitLab container `id` of `engine` (nothing is published: the
    /// callers do).
    pub async fn create_on(
        &self,
        engine: &impl ContainerEngine,
        id: &str,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Taken, String> {
        let data = &self.settings.data_dir;
        let dest = self.settings.backup_dir();
        let work = data.join("tmp");
        autogit_drivers::fsx::create_private_dir(&work)
            .map_err(|e| format!("{}: {e}", work.display()))?;
        let started = self.clock.now();
        // A consistent snapshot of autogit's state, taken while the daemon may be writing.
        let snapshot = work.join(format!("state-{started}.db"));
        let _ = std::fs::remove_file(&snapshot);
        let state_db = self.settings.state_db();
        let state_snapshot = if state_db.exists() {
            Store::open(&state_db)
                .and_then(|s| s.snapshot_to(&snapshot))
                .map_err(|e| e.to_string())?;
            Some(snapshot.clone())
        } else {
            None
        };
        // The access database (API keys, roles) the same way, when there is one.
        let access_db = data.join("access.db");
        let access = work.join(format!("access-{started}.db"));
        let _ = std::fs::remove_file(&access);
        let access_snapshot = if access_db.is_file() {
            backup::sqlite_snapshot(&access_db, &access).map_err(|e| e.to_string())?;
            Some(access.clone())
        } else {
            None
        };
        let opts = BackupOptions {
            dest: dest.clone(),
            keep: self.settings.config.backup.retention,
            work,
            local: LocalFiles {
                config: self.settings.config_path.clone(),
                platform_env: self.settings.env_path.clone(),
                state_snapshot,
                secrets: Some(data.join("secrets")),
                access_snapshot,
                audit: Some(data.join("audit")),
            },
            now: started,
            autogit_version: env!("CARGO_PKG_VERSION").to_owned(),
            encryption: self.encryption(),
        };
        let work = opts.work.clone();
        let result = backup::create(engine, id, &opts, progress)
            .await
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&snapshot);
        let _ = std::fs::remove_file(&access);
        let report = result?;
        let name = report
            .archive
            .file_name()
            .map(|n| {
                let n = n.to_string_lossy();
                let n = n.strip_suffix(".age").unwrap_or(&n);
                n.trim_end_matches(".tar").to_owned()
            })
            .unwrap_or_default();
        let (btrfs_snapshot, snapshot_warning) = match btrfs_snapshot(
            self.settings.config.backup.btrfs_snapshot,
            data,
            &dest,
            &name,
        ) {
            Ok(s) => (s, None),
            // The archive is complete; the snapshot is an extra.
            Err(e) => (None, Some(e)),
        };
        let mut copies = Vec::new();
        if !self.settings.config.backup.targets.is_empty() {
            progress("copying the archive to backup.targets");
            copies =
                crate::offsite::copy_all(&self.settings, &report.archive, &work, started).await;
            for c in &copies {
                progress(&match &c.error {
                    None => format!("{}: copied and verified", c.target),
                    Some(e) => format!("{}: NOT copied: {e}", c.target),
                });
            }
        }
        Ok(Taken {
            report,
            btrfs_snapshot,
            snapshot_warning,
            copies,
        })
    }

    fn schedule_file(&self) -> PathBuf {
        self.settings.data_dir.join("state/backup-schedule.json")
    }

    /// The daemon's pass: when `backup.schedule` is due, take one backup (on `engine`'s GitLab
    /// container when given, else the configured engine's). The first pass of a data dir
    /// only starts the schedule: a platform just installed is not backed up before its first
    /// scheduled time. Missed times collapse into one backup. Returns when it is due next.
    pub async fn pass(&self) -> Result<Option<i64>, String> {
        self.pass_with(None::<(&Docker, &str)>).await
    }

    pub async fn pass_with<E: ContainerEngine>(
        &self,
        on: Option<(&E, &str)>,
    ) -> Result<Option<i64>, String> {
        let schedule = &self.settings.config.backup.schedule;
        let cadence = crate::schedule::Cadence::new(self.schedule_file());
        match cadence.turn(schedule, self.clock.now() as i64)? {
            crate::schedule::Turn::Wait(next) => Ok(next),
            crate::schedule::Turn::Run { next, .. } => {
                let _ = match on {
                    Some((engine, id)) => {
                        let r = self.create_on(engine, id, &|_| {}).await;
                        self.published(r)
                    }
                    None => self.create(&|_| {}).await,
                };
                Ok(next)
            }
        }
    }
}

/// A read-only btrfs snapshot of the data dir, when it is a btrfs subvolume and
/// `backup.btrfs_snapshot` allows it. `Ok(None)`: not taken (not btrfs, or off).
fn btrfs_snapshot(
    mode: AutoBool,
    data: &Path,
    dest: &Path,
    name: &str,
) -> Result<Option<PathBuf>, String> {
    if mode == AutoBool::False {
        return Ok(None);
    }
    let fs_type = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(data)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if fs_type.as_deref() != Some("btrfs") {
        return if mode == AutoBool::True {
            Err(format!(
                "backup.btrfs_snapshot is true but {} is on {}, not btrfs",
                data.display(),
                fs_type.unwrap_or_else(|| "an unknown file system".into())
            ))
        } else {
            Ok(None)
        };
    }
    let snaps = dest.join("snapshots");
    std::fs::create_dir_all(&snaps).map_err(|e| format!("{}: {e}", snaps.display()))?;
    let target = snaps.join(name);
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(data)
        .arg(&target)
        .output()
        .map_err(|e| format!("btrfs: {e} (install btrfs-progs)"))?;
    if out.status.success() {
        Ok(Some(target))
    } else {
        Err(format!(
            "btrfs subvolume snapshot of {} failed (is it a subvolume?): {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl BackupController {
    /// Fetches `archive` (a name, or `latest`) from the backup target `target` into
    /// `<data_dir>/tmp/restore/` and verifies it against its checksum file: a corrupt copy
    /// is refused before anything is restored. Returns the local path.
    pub async fn fetch(&self, target: &str, archive: &str) -> Result<PathBuf, String> {
        let data = self.settings.ensure_data_dir()?;
        crate::offsite::fetch(&self.settings, target, archive, &data.join("tmp/restore")).await
    }

    /// The complete archives on the backup target `target`, oldest first.
    pub async fn list_target(
        &self,
        target: &str,
    ) -> Result<Vec<autogit_drivers::storage::Listed>, String> {
        crate::offsite::list(&self.settings, target).await
    }

    /// Restores `archive` into the running GitLab (same version only; every member verified
    /// before anything is touched; see `drivers::backup::restore`), then waits up to `wait`
    /// for GitLab's readiness endpoint.
    pub async fn restore(
        &self,
        archive: &Path,
        decryption: &Decryption,
        wait: std::time::Duration,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<backup::RestoreReport, String> {
        use autogit_drivers::gitlab::client::GitLabClient;
        let data = self.settings.ensure_data_dir()?;
        let store =
            autogit_drivers::secrets::SecretStore::open(&data).map_err(|e| e.to_string())?;
        let (engine, id) = gitlab_container(&self.settings).await?;
        let report = backup::restore_with(
            &engine,
            &id,
            archive,
            &data.join("tmp"),
            &store,
            decryption,
            progress,
        )
        .await
        .map_err(|e| e.to_string())?;
        if wait.is_zero() {
            return Ok(report);
        }
        let url = self.settings.gitlab_local_url();
        progress(&format!("waiting for {url}/-/readiness"));
        let client = GitLabClient::new(&url, None)
            .map_err(|e| e.to_string())?
            .with_retry(crate::gitlab::quick_retry());
        let start = std::time::Instant::now();
        loop {
            if let Ok(v) = client.readiness().await
                && v.get("status").and_then(|s| s.as_str()) == Some("ok")
            {
                return Ok(report);
            }
            if start.elapsed() >= wait {
                return Err(format!(
                    "the restore finished but GitLab is not ready after {}s; check `autogit logs gitlab`",
                    wait.as_secs()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
    }
}

/// Where the last restore test is kept.
fn restore_test_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join("state/restore-test.json")
}

/// The last restore test recorded on this host, if any (an unreadable record is none).
pub fn last_restore_test(settings: &Settings) -> Option<autogit_core::backup::RestoreTest> {
    let text = std::fs::read_to_string(restore_test_file(settings)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The engine's health test of a container as a command to exec in it.
fn health_argv(test: &[String]) -> Option<Vec<String>> {
    match test.split_first()? {
        (first, rest) if first == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        (first, [script]) if first == "CMD-SHELL" => {
            Some(vec!["/bin/sh".into(), "-c".into(), script.clone()])
        }
        _ => None,
    }
}

impl BackupController {
    /// A restore test: `archive` restored into a scratch GitLab made from the running one
    /// (`core::backup::restore_test_spec`: same image and configuration, fresh volumes, no
    /// network), which must answer its health check before and after the restore, each within
    /// `wait`. The scratch container and its volumes are removed whatever happens, and the
    /// outcome is recorded for `diagnose` (`backup.restore_test`) and published as a task.
    pub async fn restore_test(
        &self,
        archive: &Path,
        decryption: &Decryption,
        wait: std::time::Duration,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<autogit_core::backup::RestoreTest, String> {
        let (engine, running) = gitlab_container(&self.settings).await?;
        self.restore_test_on(&engine, &running, archive, decryption, wait, progress)
            .await
    }

    pub async fn restore_test_on<E: ContainerEngine>(
        &self,
        engine: &E,
        running: &str,
        archive: &Path,
        decryption: &Decryption,
        wait: std::time::Duration,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<autogit_core::backup::RestoreTest, String> {
        let project = &self.settings.config.platform.project;
        let started_at = self.clock.now() as i64;
        let clock = std::time::Instant::now();
        let name = archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let task = format!("restore-test-{started_at}");
        self.bus.publish(Event::TaskStarted {
            id: task.clone(),
            operation: "restore_test".into(),
            target: name.clone(),
            actor: "cli".into(),
        });
        let spec = engine
            .inspect(running)
            .await
            .map(|r| autogit_core::backup::restore_test_spec(&r, project))
            .map_err(|e| format!("reading the running GitLab: {e}"));
        let outcome = match &spec {
            Ok(spec) => {
                let r = self
                    .restore_into_scratch(engine, spec, archive, decryption, wait, progress)
                    .await;
                progress("removing the scratch GitLab");
                let _ = engine.remove(&spec.name).await;
                for m in &spec.mounts {
                    if let autogit_core::container::MountSpec::Volume { name, .. } = m {
                        let _ = engine.remove_volume(name).await;
                    }
                }
                r
            }
            Err(e) => Err(e.clone()),
        };
        let record = autogit_core::backup::RestoreTest {
            archive: name.clone(),
            started_at,
            seconds: clock.elapsed().as_secs_f64(),
            ok: outcome.is_ok(),
            error: outcome.err(),
        };
        let data = self.settings.ensure_data_dir()?;
        let path = restore_test_file(&self.settings);
        std::fs::create_dir_all(data.join("state")).map_err(|e| e.to_string())?;
        let text = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        autogit_drivers::fsx::write_atomic(&path, &text, 0o600).map_err(|e| e.to_string())?;
        self.bus.publish(Event::TaskFinished {
            id: task,
            operation: "restore_test".into(),
            target: name,
            ok: record.ok,
            detail: record
                .error
                .clone()
                .unwrap_or_else(|| format!("restored in {:.0} s", record.seconds)),
        });
        Ok(record)
    }

    async fn restore_into_scratch<E: ContainerEngine>(
        &self,
        engine: &E,
        spec: &autogit_core::container::ContainerSpec,
        archive: &Path,
        decryption: &Decryption,
        wait: std::time::Duration,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), String> {
        let e = |e: autogit_drivers::engine::EngineError| e.to_string();
        // A scratch left by an interrupted test goes first.
        let _ = engine.remove(&spec.name).await;
        for m in &spec.mounts {
            if let autogit_core::container::MountSpec::Volume { name, .. } = m {
                let _ = engine.remove_volume(name).await;
                engine.ensure_volume(name, &spec.labels).await.map_err(e)?;
            }
        }
        progress(&format!("starting a scratch GitLab ({})", spec.name));
        let id = engine.create(spec).await.map_err(e)?;
        engine.start(&id).await.map_err(e)?;
        let health = spec
            .healthcheck
            .as_ref()
            .and_then(|h| health_argv(&h.test))
            .ok_or("the running GitLab has no health check to judge the restore by")?;
        self.healthy(engine, &id, &health, wait, "before the restore")
            .await?;
        let data = self.settings.ensure_data_dir()?;
        let store =
            autogit_drivers::secrets::SecretStore::open(&data).map_err(|e| e.to_string())?;
        backup::restore_with(
            engine,
            &id,
            archive,
            &data.join("tmp"),
            &store,
            decryption,
            progress,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.healthy(engine, &id, &health, wait, "after the restore")
            .await
    }

    /// Runs the health check in the container every 2 s until it passes or `wait` is over.
    async fn healthy<E: ContainerEngine>(
        &self,
        engine: &E,
        id: &str,
        argv: &[String],
        wait: std::time::Duration,
        when: &str,
    ) -> Result<(), String> {
        let start = std::time::Instant::now();
        loop {
            let last = match engine.exec(id, argv).await {
                Ok((0, _)) => return Ok(()),
                Ok((code, out)) => format!("exit {code}: {}", out.trim()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= wait {
                return Err(format!(
                    "the scratch GitLab did not pass its health check {when} within {} s ({last})",
                    wait.as_secs()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_core::config::Config;
    use autogit_core::platform::PlatformEnv;

    const R: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn controller(encrypt_to: &[&str]) -> BackupController {
        let mut config = Config::default();
        config.backup.encrypt_to = encrypt_to.iter().map(|s| (*s).to_owned()).collect();
        let settings = Settings::new(config, PlatformEnv::default(), "/nonexistent".into());
        let clock = crate::clock::system();
        BackupController::new(Arc::new(settings), Bus::new(clock.clone()), clock)
    }

    /// The daemon's scheduled backups use `backup.encrypt_to`; the command's flags override it.
    #[test]
    fn archives_are_encrypted_as_configured_unless_the_command_says_otherwise() {
        assert!(matches!(controller(&[]).encryption(), Encryption::None));
        assert!(matches!(controller(&[R]).encryption(), Encryption::Recipients(r) if r == [R]));
        let p = Encryption::Passphrase(secrecy::SecretString::from("x"));
        assert!(matches!(
            controller(&[R]).with_encryption(p).encryption(),
            Encryption::Passphrase(_)
        ));
    }
}
