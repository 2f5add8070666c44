//! `autogit backup` and `autogit restore`: parse, call the backup controller
//! (`autogit_app::backup`), show progress, render.

use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, with_controller};
use autogit_app::backup::BackupController;
use autogit_app::{Bus, clock};
use autogit_drivers::backup::{Decryption, Encryption};
use autogit_drivers::secrets::SecretString;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
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

/// The passphrase in `file`: its first line, not empty; a file group or others may read is
/// refused. Errors name the file, never its content.
fn passphrase(file: &Path) -> Result<SecretString, String> {
    let shown = file.display();
    let mode = std::fs::metadata(file)
        .map_err(|e| format!("--passphrase-file {shown}: {e}"))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "--passphrase-file {shown} has mode {mode:o}: it must not be readable by group or others (chmod 600)"
        ));
    }
    let bytes = autogit_drivers::fsx::read_bounded(file, 4096)
        .map_err(|e| format!("--passphrase-file {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("--passphrase-file {shown} is not UTF-8 text"))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    let mut text = text;
    secrecy::zeroize::Zeroize::zeroize(&mut text);
    if line.is_empty() {
        return Err(format!(
            "--passphrase-file {shown}: its first line is empty"
        ));
    }
    Ok(SecretString::from(line))
}

pub fn backup(
    ui: &Ui,
    loaded: &Loaded,
    encrypt_to: Vec<String>,
    passphrase_file: Option<&Path>,
) -> u8 {
    let encryption = match (encrypt_to.is_empty(), passphrase_file) {
        (_, Some(f)) => match passphrase(f) {
            Ok(p) => Some(Encryption::Passphrase(p)),
            Err(e) => return fail(ui, e),
        },
        (false, None) => Some(Encryption::Recipients(encrypt_to)),
        (true, None) => None,
    };
    let progress = progress_printer(ui);
    let make = |bus: &Bus| {
        let b = backups(loaded)(bus);
        match encryption {
            Some(e) => b.with_encryption(e),
            None => b,
        }
    };
    let taken = match with_controller(loaded, make, async |b| b.create(&progress).await) {
        Ok(t) => t,
        Err(e) => return fail(ui, format!("backup failed: {e}")),
    };
    if let Some(w) = &taken.snapshot_warning {
        ui.note(&format!("warning: {w}"));
    }
    let report = &taken.report;
    if ui.json {
        ui.print_json(&json!({
            "backup": report,
            "btrfs_snapshot": taken.btrfs_snapshot,
            "copies": taken.copies,
        }));
    } else {
        println!(
            "backup written: {} ({} MiB, GitLab {}, {} members{})",
            report.archive.display(),
            report.size.div_ceil(1 << 20),
            report.gitlab_version,
            report.members,
            if report.encrypted {
                ", encrypted with age"
            } else {
                ""
            }
        );
        for r in &report.removed {
            println!("retention removed {r}");
        }
        if let Some(s) = &taken.btrfs_snapshot {
            println!("btrfs snapshot: {}", s.display());
        }
        for c in &taken.copies {
            if let Some(ok) = &c.copied {
                println!(
                    "copied to {}: {} (SHA-256 {}, read back and verified)",
                    c.target, ok.name, ok.sha256
                );
                for r in &ok.removed {
                    println!("retention removed {r} on {}", c.target);
                }
            }
        }
    }
    let failed: Vec<String> = taken
        .copies
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.target, c.error.as_ref()?)))
        .collect();
    if !failed.is_empty() {
        return fail(
            ui,
            format!(
                "the archive was written here but not copied off the host: {}",
                failed.join("; ")
            ),
        );
    }
    exit::OK
}

/// Where `restore` takes the archive from: a file, or a backup target (`--from`).
pub struct Source<'a> {
    pub archive: Option<&'a Path>,
    pub from: Option<&'a str>,
    /// `--list`: show the target's archives only.
    pub list: bool,
    /// `--test`: into a scratch GitLab, not the running one.
    pub test: bool,
}

/// What an encrypted archive is opened with (`restore --identity` / `--passphrase-file`).
pub struct Keys<'a> {
    pub identity: Option<&'a Path>,
    pub passphrase_file: Option<&'a Path>,
}

pub fn restore(
    ui: &Ui,
    loaded: &Loaded,
    source: Source<'_>,
    keys: Keys<'_>,
    yes: bool,
    wait: &str,
) -> u8 {
    let Some(wait) = parse_wait(wait) else {
        return fail(
            ui,
            format!("--wait {wait}: expected a duration such as 90s, 10m or 0"),
        );
    };
    let test = source.test;
    let Some(target) = source.from else {
        let Some(archive) = source.archive else {
            return fail(ui, "name the archive to restore");
        };
        let latest;
        let archive = if test && archive == Path::new("latest") && !archive.exists() {
            match newest_local(loaded) {
                Some(a) => {
                    latest = a;
                    latest.as_path()
                }
                None => {
                    return fail(
                        ui,
                        format!(
                            "no archive in {} to test: `autogit backup` first",
                            loaded.settings.backup_dir().display()
                        ),
                    );
                }
            }
        } else {
            archive
        };
        return restore_file(ui, loaded, archive, keys, yes || test, wait, test);
    };
    if source.list {
        return match with_controller(loaded, backups(loaded), async |b| {
            b.list_target(target).await
        }) {
            Ok(list) if ui.json => {
                ui.print_json(&json!({ "target": target, "archives": list }));
                exit::OK
            }
            Ok(list) => {
                for a in &list {
                    println!("{}\t{} MiB", a.name, a.size.div_ceil(1 << 20));
                }
                if list.is_empty() {
                    ui.note(&format!("{target} holds no complete archive"));
                }
                exit::OK
            }
            Err(e) => fail(ui, e),
        };
    }
    let name = source
        .archive
        .map(|a| a.display().to_string())
        .unwrap_or_default();
    let progress = progress_printer(ui);
    progress(&format!(
        "fetching {name} from {target} and verifying its SHA-256"
    ));
    let fetched = match with_controller(loaded, backups(loaded), async |b| {
        b.fetch(target, &name).await
    }) {
        Ok(p) => p,
        Err(e) => return fail(ui, format!("restore failed, nothing was changed: {e}")),
    };
    let code = restore_file(ui, loaded, &fetched, keys, yes || test, wait, test);
    let _ = std::fs::remove_file(&fetched);
    code
}

/// The newest archive in the backup directory.
fn newest_local(loaded: &Loaded) -> Option<std::path::PathBuf> {
    std::fs::read_dir(loaded.settings.backup_dir())
        .ok()?
        .flatten()
        .filter(|e| autogit_core::backup::is_archive_name(&e.file_name().to_string_lossy()))
        .max_by_key(|e| e.file_name())
        .map(|e| e.path())
}

fn restore_file(
    ui: &Ui,
    loaded: &Loaded,
    archive: &Path,
    keys: Keys<'_>,
    yes: bool,
    wait: autogit_core::units::Dur,
    test: bool,
) -> u8 {
    if !archive.is_file() {
        return fail(ui, format!("{}: no such archive", archive.display()));
    }
    let decryption = match (keys.identity, keys.passphrase_file) {
        (Some(f), _) => Decryption::Identity(f.to_owned()),
        (None, Some(f)) => match passphrase(f) {
            Ok(p) => Decryption::Passphrase(p),
            Err(e) => return fail(ui, e),
        },
        (None, None) => Decryption::None,
    };
    // Refused before asking: an encrypted archive without its key cannot be restored.
    if matches!(decryption, Decryption::None)
        && autogit_drivers::backup::is_encrypted(archive).unwrap_or(false)
    {
        return fail(
            ui,
            format!(
                "restore failed: {}",
                autogit_drivers::backup::BackupError::Encrypted(archive.to_owned())
            ),
        );
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
    if test {
        let wait = if wait.0.is_zero() {
            std::time::Duration::from_secs(600)
        } else {
            wait.0
        };
        return match with_controller(loaded, backups(loaded), async |b| {
            b.restore_test(archive, &decryption, wait, &progress).await
        }) {
            Ok(t) => {
                if ui.json {
                    ui.print_json(&json!({ "restore_test": t }));
                } else if t.ok {
                    println!(
                        "{} restores: GitLab came up healthy from it in a scratch container ({:.0} s)",
                        t.archive, t.seconds
                    );
                } else {
                    println!(
                        "{} did NOT restore: {}",
                        t.archive,
                        t.error.as_deref().unwrap_or("no reason")
                    );
                }
                if t.ok { exit::OK } else { exit::FAILURE }
            }
            Err(e) => fail(ui, format!("restore test could not run: {e}")),
        };
    }
    match with_controller(loaded, backups(loaded), async |b| {
        b.restore(archive, &decryption, wait.0, &progress).await
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
