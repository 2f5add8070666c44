//! `autogit upgrade --to <version>`: GitLab one required stop at a time. For each step: a
//! backup, `gitlab.version` set in autogit.yml (comments kept), the container recreated on the
//! new image and waited for, then GitLab's background migrations waited for. The path is
//! planned in `autogit_core::upgrade`.

use crate::backup_cmd::progress_printer;
use crate::cli::Global;
use crate::ctx::{Loaded, load_all};
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, runtime};
use autogit_app::backup::{BackupController, gitlab_container};
use autogit_core::units::Dur;
use autogit_core::upgrade::{STOPS, Step, Version, set_gitlab_version, upgrade_path};
use autogit_drivers::backup::running_version;
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::fsx::write_atomic;
use serde_json::json;
use std::time::{Duration, Instant};

/// Options of `upgrade`.
pub struct UpgradeArgs<'a> {
    pub to: &'a str,
    pub via: &'a [String],
    pub dry_run: bool,
    pub yes: bool,
    pub wait: &'a str,
    pub poll: &'a str,
}

/// The Ruby `gitlab-rails runner` evaluates to count pending and failed background
/// migrations (GitLab's documented checks, in one call: each call boots Rails).
pub const MIGRATIONS_SCRIPT: &str = "q = Gitlab::Database::BackgroundMigration::BatchedMigration; \
failed = q.respond_to?(:with_status) ? q.with_status(:failed).count : 0; \
legacy = (defined?(Gitlab::BackgroundMigration) && Gitlab::BackgroundMigration.respond_to?(:remaining)) ? Gitlab::BackgroundMigration.remaining : 0; \
puts \"autogit-pending=#{q.queued.count + legacy} failed=#{failed}\"";

/// Parses the script's answer: (pending, failed).
pub fn parse_migrations(output: &str) -> Option<(u64, u64)> {
    output.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("autogit-pending=")?;
        let (p, f) = rest.split_once(" failed=")?;
        Some((p.trim().parse().ok()?, f.trim().parse().ok()?))
    })
}

fn parse_dur(s: &str, flag: &str) -> Result<Dur, String> {
    parse_wait(s).ok_or_else(|| format!("{flag} {s}: expected a duration such as 30s, 10m or 1h"))
}

pub fn upgrade(ui: &Ui, g: &Global, loaded: &Loaded, a: &UpgradeArgs<'_>) -> u8 {
    let Some(to) = Version::parse(a.to) else {
        return fail(
            ui,
            format!("--to {}: expected a GitLab version such as 18.5.4", a.to),
        );
    };
    let mut via = Vec::new();
    for v in a.via {
        match Version::parse(v) {
            Some(v) => via.push(v),
            None => return fail(ui, format!("--via {v}: expected a version such as 18.8.3")),
        }
    }
    let (wait, poll) = match (parse_dur(a.wait, "--wait"), parse_dur(a.poll, "--poll")) {
        (Ok(w), Ok(p)) => (w, p),
        (Err(e), _) | (_, Err(e)) => return fail(ui, e),
    };
    if g.set.iter().any(|s| s.starts_with("gitlab.version="))
        || loaded
            .env
            .iter()
            .any(|(k, _)| k == "AUTOGIT_GITLAB__VERSION")
    {
        return fail(
            ui,
            "gitlab.version is overridden on the command line or in the environment; upgrade writes it to autogit.yml, so remove the override first",
        );
    }
    let Some(config_path) = loaded.config_path.clone() else {
        return fail(
            ui,
            "upgrade records each step's version in autogit.yml, and there is none: run `autogit init` first",
        );
    };
    let rt = runtime();
    let from = match rt.block_on(async {
        let (engine, id) = gitlab_container(loaded).await?;
        running_version(&engine, &id)
            .await
            .map_err(|e| e.to_string())
    }) {
        Ok(v) => v,
        Err(e) => return fail(ui, format!("cannot read the running GitLab version: {e}")),
    };
    let Some(from) = Version::parse(&from) else {
        return fail(
            ui,
            format!("the running GitLab reports version `{from}`, which autogit cannot read"),
        );
    };
    let steps = match upgrade_path(from, to, STOPS, &via) {
        Ok(s) => s,
        Err(e) => return fail(ui, e),
    };
    print_path(ui, from, &steps, a.dry_run);
    if a.dry_run {
        return exit::OK;
    }
    if !a.yes
        && let Err(code) = confirm(
            ui,
            &format!("Upgrade GitLab {from} to {to} in {} step(s)?", steps.len()),
            "upgrade recreates GitLab once per step; add --yes to confirm",
            "nothing was changed",
        )
    {
        return code;
    }
    let progress = progress_printer(ui);
    let mut previous = from;
    let mut done = Vec::new();
    for step in &steps {
        let v = step.version;
        progress(&format!("step {v} ({}): backup first", step.reason));
        let current = load_all(g, &[]);
        let backups = BackupController::new(
            current.settings.clone(),
            autogit_app::Bus::new(autogit_app::clock::system()),
            autogit_app::clock::system(),
        );
        let archive = match rt.block_on(backups.create(&progress)) {
            Ok(t) => t.report.archive,
            Err(e) => {
                return fail(
                    ui,
                    format!(
                        "upgrade stopped before {v}: the backup failed ({e}); GitLab {previous} is untouched"
                    ),
                );
            }
        };
        progress(&format!(
            "backup {} written; setting gitlab.version to {v}",
            archive.display()
        ));
        if let Err(e) = set_version(&config_path, &v.to_string()) {
            return fail(ui, format!("upgrade stopped before {v}: {e}"));
        }
        let next = load_all(g, &[]);
        let code = crate::runtime_cmd::install(ui, g, &next, a.wait, false);
        let rollback = format!(
            "to go back: set gitlab.version to {previous} in {}, `autogit install`, then `autogit restore {} --yes`",
            config_path.display(),
            archive.display()
        );
        if code != exit::OK {
            return fail(
                ui,
                format!("upgrade stopped at {v}: GitLab {v} did not become healthy; {rollback}"),
            );
        }
        progress(&format!(
            "GitLab {v} is healthy; waiting for background migrations"
        ));
        if let Err(e) = rt.block_on(wait_for_migrations(&next, wait, poll, &progress)) {
            return fail(ui, format!("upgrade stopped at {v}: {e}; {rollback}"));
        }
        done.push(v.to_string());
        previous = v;
    }
    if ui.json {
        ui.print_json(&json!({ "upgraded": { "from": from.to_string(), "to": to.to_string(), "steps": done } }));
    } else {
        println!(
            "GitLab upgraded from {from} to {to} ({} step(s))",
            done.len()
        );
    }
    exit::OK
}

fn set_version(config: &std::path::Path, version: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let new =
        set_gitlab_version(&text, version).map_err(|e| format!("{}: {e}", config.display()))?;
    let mode = std::fs::metadata(config)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    write_atomic(config, new.as_bytes(), mode).map_err(|e| e.to_string())
}

async fn wait_for_migrations(
    loaded: &Loaded,
    wait: Dur,
    poll: Dur,
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
    let (engine, id) = gitlab_container(loaded).await?;
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
        if start.elapsed() >= wait.0 {
            return Err(format!("background migrations still running after {wait}"));
        }
        tokio::time::sleep(poll.0.max(Duration::from_millis(100))).await;
    }
}

fn print_path(ui: &Ui, from: Version, steps: &[Step], dry_run: bool) {
    if ui.json {
        if dry_run {
            let items: Vec<_> = steps
                .iter()
                .map(|s| json!({"version": s.version.to_string(), "reason": s.reason}))
                .collect();
            ui.print_json(&json!({ "from": from.to_string(), "steps": items }));
        }
        return;
    }
    let mut t = ui.table();
    t.set_header(vec!["STEP", "VERSION", "WHY"]);
    for (i, s) in steps.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            s.version.to_string(),
            s.reason.clone(),
        ]);
    }
    println!(
        "GitLab {from} -> {}:",
        steps
            .last()
            .map_or(String::new(), |s| s.version.to_string())
    );
    println!("{t}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_answers() {
        assert_eq!(
            parse_migrations("noise\nautogit-pending=3 failed=0\n"),
            Some((3, 0))
        );
        assert_eq!(parse_migrations("autogit-pending=0 failed=2"), Some((0, 2)));
        assert_eq!(parse_migrations("autogit-pending=x failed=0"), None);
        assert_eq!(parse_migrations(""), None);
        assert!(!MIGRATIONS_SCRIPT.contains('\n'));
    }
}
