//! `autogit backup` and `autogit restore`: find the GitLab container, hand the work to
//! `autogit_drivers::backup`, show progress, wait for GitLab after a restore.

use crate::cli::Global;
use crate::ctx::{Loaded, data_dir};
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, runtime};
use autogit_core::config::AutoBool;
use autogit_drivers::backup::{self, BackupOptions, LocalFiles};
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::gitlab::client::GitLabClient;
use autogit_drivers::secrets::SecretStore;
use autogit_drivers::state::Store;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where archives go: `backup.path`, relative to the data dir unless absolute.
pub fn backup_dir(g: &Global, loaded: &Loaded) -> PathBuf {
    let p = Path::new(&loaded.config.backup.path);
    if p.is_absolute() {
        p.to_owned()
    } else {
        data_dir(g).join(p)
    }
}

pub async fn gitlab_container(loaded: &Loaded) -> Result<(Docker, String), String> {
    let engine = Docker::connect(
        loaded.config.platform.socket.as_deref().map(Path::new),
        &loaded.env,
    )
    .await
    .map_err(|e| e.to_string())?;
    let project = &loaded.config.platform.project;
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

pub fn progress_printer(ui: &Ui) -> impl Fn(&str) + Send + Sync + use<> {
    let quiet = ui.quiet;
    let start = Instant::now();
    move |line: &str| {
        if !quiet {
            eprintln!("[{:>4}s] {line}", start.elapsed().as_secs());
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

pub fn backup(ui: &Ui, g: &Global, loaded: &Loaded) -> u8 {
    let (report, snapshot) = match take_backup(ui, g, loaded) {
        Ok(r) => r,
        Err(e) => return fail(ui, format!("backup failed: {e}")),
    };
    if ui.json {
        ui.print_json(&json!({ "backup": report, "btrfs_snapshot": snapshot }));
    } else {
        println!(
            "backup written: {} ({} MiB, GitLab {}, {} members)",
            report.archive.display(),
            report.size.div_ceil(1 << 20),
            report.gitlab_version,
            report.members
        );
        for r in &report.removed {
            println!("retention removed {r}");
        }
        if let Some(s) = snapshot {
            println!("btrfs snapshot: {}", s.display());
        }
    }
    exit::OK
}

/// Takes a backup (and the btrfs snapshot when configured); progress goes to stderr.
pub fn take_backup(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
) -> Result<(backup::BackupReport, Option<PathBuf>), String> {
    let data = data_dir(g);
    let dest = backup_dir(g, loaded);
    let work = data.join("tmp");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let started = now();
    // A consistent snapshot of autogit's state, taken while the daemon may be writing.
    let snapshot = work.join(format!("state-{started}.db"));
    let _ = std::fs::remove_file(&snapshot);
    let state_db = data.join("state.db");
    let state_snapshot = if state_db.exists() {
        Store::open(&state_db)
            .and_then(|s| s.snapshot_to(&snapshot))
            .map_err(|e| e.to_string())?;
        Some(snapshot.clone())
    } else {
        None
    };
    let opts = BackupOptions {
        dest: dest.clone(),
        keep: loaded.config.backup.retention,
        work: work.clone(),
        local: LocalFiles {
            config: loaded.config_path.clone(),
            platform_env: loaded.env_path.clone(),
            state_snapshot,
            secrets: Some(data.join("secrets")),
        },
        now: started,
        autogit_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let progress = progress_printer(ui);
    let result = runtime().block_on(async {
        let (engine, id) = gitlab_container(loaded).await?;
        backup::create(&engine, &id, &opts, &progress)
            .await
            .map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_file(&snapshot);
    let report = result?;
    let name = report
        .archive
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".tar").to_owned())
        .unwrap_or_default();
    let snapshot = match btrfs_snapshot(loaded.config.backup.btrfs_snapshot, &data, &dest, &name) {
        Ok(s) => s,
        Err(e) => {
            // The archive is complete; the snapshot is an extra.
            ui.note(&format!("warning: {e}"));
            None
        }
    };
    Ok((report, snapshot))
}

pub fn restore(ui: &Ui, g: &Global, loaded: &Loaded, archive: &Path, yes: bool, wait: &str) -> u8 {
    let Some(wait) = parse_wait(wait) else {
        return fail(
            ui,
            format!("--wait {wait}: expected a duration such as 90s, 10m or 0"),
        );
    };
    if !archive.is_file() {
        return fail(ui, format!("{}: no such archive", archive.display()));
    }
    if !yes
        && let Err(code) = confirm(
            ui,
            &format!(
                "Replace all data of GitLab in project `{}` with {}?",
                loaded.config.platform.project,
                archive.display()
            ),
            "restore replaces all GitLab data with the archive's; add --yes to confirm",
            "nothing was changed",
        )
    {
        return code;
    }
    let data = data_dir(g);
    let store = match SecretStore::open(&data) {
        Ok(s) => s,
        Err(e) => return fail(ui, e),
    };
    let progress = progress_printer(ui);
    let url = crate::gitlab_cmd::local_url(loaded);
    let result = runtime().block_on(async {
        let (engine, id) = gitlab_container(loaded).await?;
        let report = backup::restore(&engine, &id, archive, &data.join("tmp"), &store, &progress)
            .await
            .map_err(|e| e.to_string())?;
        if wait.as_secs() > 0 {
            progress(&format!("waiting for {url}/-/readiness"));
            let client = GitLabClient::new(&url, None)
                .map_err(|e| e.to_string())?
                .with_retry(crate::gitlab_cmd::quick_retry());
            let start = Instant::now();
            loop {
                if let Ok(v) = client.readiness().await
                    && v.get("status").and_then(|s| s.as_str()) == Some("ok")
                {
                    break;
                }
                if start.elapsed() >= wait.0 {
                    return Err(format!(
                        "the restore finished but GitLab is not ready after {wait}; check `autogit logs gitlab`"
                    ));
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
        Ok(report)
    });
    match result {
        Ok(r) => {
            if ui.json {
                ui.print_json(&json!({ "restore": r }));
            } else {
                println!(
                    "restored GitLab {} backup {}; {} autogit secret(s) put back",
                    r.gitlab_version,
                    r.gitlab_backup_id,
                    r.secrets_restored.len()
                );
                println!(
                    "the archive's autogit.yml, .env and state are in {} for comparison (yours were not changed)",
                    r.kept_for_reference.display()
                );
            }
            exit::OK
        }
        Err(e) => fail(ui, format!("restore failed: {e}")),
    }
}
