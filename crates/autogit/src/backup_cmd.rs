//! `autogit backup` and `autogit restore`: parse, call the backup controller
//! (`autogit_app::backup`), show progress, render.

use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, with_controller};
use autogit_app::backup::BackupController;
use autogit_app::{Bus, clock};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

pub fn progress_printer(ui: &Ui) -> impl Fn(&str) + Send + Sync + use<> {
    let quiet = ui.quiet;
    let start = Instant::now();
    move |line: &str| {
        if !quiet {
            eprintln!("[{:>4}s] {line}", start.elapsed().as_secs());
        }
    }
}

pub fn backup(ui: &Ui, loaded: &Loaded) -> u8 {
    let progress = progress_printer(ui);
    let taken = match with_controller(loaded, backups(loaded), async |b| b.create(&progress).await)
    {
        Ok(t) => t,
        Err(e) => return fail(ui, format!("backup failed: {e}")),
    };
    if let Some(w) = &taken.snapshot_warning {
        ui.note(&format!("warning: {w}"));
    }
    let report = &taken.report;
    if ui.json {
        ui.print_json(&json!({ "backup": report, "btrfs_snapshot": taken.btrfs_snapshot }));
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
        if let Some(s) = &taken.btrfs_snapshot {
            println!("btrfs snapshot: {}", s.display());
        }
    }
    exit::OK
}

pub fn restore(ui: &Ui, loaded: &Loaded, archive: &Path, yes: bool, wait: &str) -> u8 {
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
    let progress = progress_printer(ui);
    match with_controller(loaded, backups(loaded), async |b| {
        b.restore(archive, wait.0, &progress).await
    }) {
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

/// The backup controller on the command's bus.
fn backups(loaded: &Loaded) -> impl FnOnce(&Bus) -> BackupController + '_ {
    |bus| BackupController::new(loaded.settings.clone(), bus.clone(), clock::system())
}
