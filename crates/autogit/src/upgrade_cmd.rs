//! `autogit upgrade --to <version>`: parse, show the path (`core::upgrade`), confirm, and call
//! the upgrade controller (`autogit_app::upgrade`: per step a backup, the version in
//! autogit.yml, the platform deployed again, background migrations waited for).

use crate::backup_cmd::progress_printer;
use crate::cli::Global;
use crate::ctx::{Loaded, load_all};
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, runtime};
use autogit_app::upgrade::UpgradeController;
use autogit_core::units::Dur;
use autogit_core::upgrade::{STOPS, Step, Version, upgrade_path};
use serde_json::json;

/// Options of `upgrade`.
pub struct UpgradeArgs<'a> {
    pub to: &'a str,
    pub via: &'a [String],
    pub dry_run: bool,
    pub yes: bool,
    pub wait: &'a str,
    pub poll: &'a str,
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
    let upgrades = UpgradeController::new(autogit_app::Bus::new(autogit_app::clock::system()));
    let from = match rt.block_on(upgrades.running_version(loaded)) {
        Ok(v) => v,
        Err(e) => return fail(ui, e),
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
    let reload = || load_all(g, &[]).settings.clone();
    let done = match rt.block_on(upgrades.run(
        &config_path,
        from,
        &steps,
        (wait.0, poll.0),
        reload,
        &progress,
    )) {
        Ok(d) => d,
        Err(e) => return fail(ui, e),
    };
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
