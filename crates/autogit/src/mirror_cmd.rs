//! `autogit mirror sync`, `mirror list` and `mirror add`: parse, call the mirror controller
//! (`autogit_app::mirror`), render.

use crate::cli::Global;
use crate::commands::report;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, with_controller};
use autogit_app::Bus;
use autogit_app::mirror::{AddError, MirrorController};
use autogit_drivers::mirror::{Event as Progress, Outcome, Report};
use autogit_drivers::runtime::now;
use serde_json::json;
use std::io::IsTerminal;

pub fn sync(ui: &Ui, g: &Global, loaded: &Loaded, repos: &[String]) -> u8 {
    let _ = g;
    if !report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let m = &loaded.config.mirroring;
    if m.sources.github.is_empty() && m.sources.gitlab.is_empty() && m.sources.git.is_empty() {
        ui.note("nothing to sync: no sources under `mirroring.sources`");
        if ui.json {
            ui.print_json(&json!({"mirrors": [], "failed": 0}));
        }
        return exit::OK;
    }
    if !m.enabled {
        ui.note("note: `mirroring.enabled` is false (no scheduled syncs); syncing now as asked");
    }
    let make = |bus: &Bus| {
        MirrorController::new(loaded.settings.clone(), bus.clone(), bus.clock().clone())
    };
    with_controller(loaded, make, async |mirrors| {
        sync_with(ui, mirrors, repos).await
    })
}

async fn sync_with(ui: &Ui, mirrors: &MirrorController, repos: &[String]) -> u8 {
    // On a terminal a progress bar with the lines above it; elsewhere plain lines.
    let bar = (!ui.json && !ui.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("[{elapsed}] [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let say = |msg: String| match &bar {
        Some(b) => b.println(msg),
        None => ui.note(&msg),
    };
    let progress = |e: Progress<'_>| {
        if ui.json {
            return;
        }
        match e {
            Progress::Started { name } => match &bar {
                Some(b) => {
                    b.inc_length(1);
                    b.set_message(name.to_owned());
                }
                None => ui.note(&format!("{name}: syncing")),
            },
            Progress::Retrying {
                name,
                attempt,
                error,
            } => say(format!(
                "{name}: attempt {attempt} failed ({error}); retrying"
            )),
            Progress::Finished(r) => {
                if let Some(b) = &bar {
                    b.inc(1);
                }
                say(format!("{}: {}", r.name, line(r)));
            }
        }
    };
    // Ctrl-C: stop (git children are killed); fetches and pushes are atomic, so nothing is
    // half-written; the runs are recorded as interrupted.
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = mirrors.sync(repos, progress, cancel).await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(Some(r)) => r,
        Ok(None) => {
            ui.error("mirror sync interrupted; every mirror is as before its sync or fully synced");
            return exit::FAILURE;
        }
        Err(e) => {
            ui.error(&e.to_string());
            return exit::FAILURE;
        }
    };
    if !ui.json {
        // Mirrors that could not start (no token, no target) did not go through the driver.
        for r in report.reports.iter().filter(|r| r.attempts == 0) {
            ui.note(&format!("{}: {}", r.name, line(r)));
        }
    }
    for p in &report.pruned {
        ui.note(&format!("pruned {p}: its source is no longer configured"));
    }
    if let Some(e) = &report.prune_error {
        ui.note(e);
    }
    let total = report.reports.len();
    let failures = report.failed;
    if ui.json {
        ui.print_json(&json!({
            "mirrors": report.reports.iter().map(Report::json).collect::<Vec<_>>(),
            "failed": failures,
            "pruned": report.pruned,
            "elapsed_ms": report.elapsed.as_millis() as u64,
        }));
    } else {
        let mut t = ui.table();
        t.set_header(vec![
            "NAME", "SOURCE", "TARGET", "RESULT", "CHANGED", "DELETED", "TIME",
        ]);
        for r in &report.reports {
            let (res, ch, del) = match &r.result {
                Ok(Outcome::UpToDate) => ("up to date".to_owned(), 0, 0),
                Ok(Outcome::Synced {
                    changed,
                    deleted,
                    lfs,
                }) => (
                    if *lfs { "synced (+LFS)" } else { "synced" }.to_owned(),
                    *changed,
                    *deleted,
                ),
                Err(_) => ("FAILED".to_owned(), 0, 0),
            };
            t.add_row(vec![
                r.name.clone(),
                r.source.clone(),
                r.target.clone(),
                res,
                ch.to_string(),
                del.to_string(),
                format!("{:.1}s", r.elapsed.as_secs_f64()),
            ]);
        }
        println!("{t}");
        println!(
            "{} of {total} mirrors synced or up to date, {failures} failed, in {:.1}s",
            total - failures,
            report.elapsed.as_secs_f64()
        );
    }
    if failures > 0 {
        exit::FAILURE
    } else {
        exit::OK
    }
}

fn line(r: &Report) -> String {
    match &r.result {
        Ok(Outcome::UpToDate) => "up to date".to_owned(),
        Ok(Outcome::Synced {
            changed, deleted, ..
        }) => format!(
            "synced ({changed} refs changed, {deleted} deleted) in {:.1}s",
            r.elapsed.as_secs_f64()
        ),
        Err(e) => format!("FAILED: {e}"),
    }
}

pub fn list(ui: &Ui, g: &Global, loaded: &Loaded) -> u8 {
    let _ = g;
    if !report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let m = &loaded.config.mirroring;
    let mirrors = MirrorController::new(
        loaded.settings.clone(),
        Bus::new(autogit_app::clock::system()),
        autogit_app::clock::system(),
    );
    let rows = match mirrors.list() {
        Ok(r) => r,
        Err(e) => {
            ui.error(&e.to_string());
            return exit::FAILURE;
        }
    };
    let t_now = now() as i64;
    if ui.json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                // Kept for scripts written against the first shape.
                v["last_sync"] = json!(r.last_success);
                v
            })
            .collect();
        ui.print_json(&json!({
            "enabled": m.enabled, "schedule": m.schedule, "namespace": m.namespace,
            "sources": rows,
        }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec![
        "NAME",
        "KIND",
        "SOURCE",
        "TARGET",
        "TOKEN FROM",
        "LAST SUCCESS",
        "LAST ERROR",
    ]);
    for r in &rows {
        let success = match r.lag_s {
            Some(lag) => format!("{} ago", human(lag)),
            None => "never".to_owned(),
        };
        let error = match (r.last_error_at, &r.last_error) {
            (Some(at), Some(e)) => format!("{} ago: {}", human((t_now - at).max(0)), short(e)),
            _ => r
                .problem
                .as_deref()
                .map_or("-".to_owned(), |p| format!("not synced: {}", short(p))),
        };
        t.add_row(vec![
            r.name.clone(),
            r.kind.to_owned(),
            r.source.clone(),
            r.target.clone(),
            r.token_env.clone().unwrap_or_else(|| "-".into()),
            success,
            error,
        ]);
    }
    println!("{t}");
    println!(
        "mirroring {} · schedule \"{}\" · into group `{}`",
        if m.enabled { "enabled" } else { "disabled" },
        m.schedule,
        m.namespace
    );
    exit::OK
}

fn short(s: &str) -> String {
    let first = s.split(';').next().unwrap_or(s);
    if first.chars().count() > 80 {
        format!("{}…", first.chars().take(79).collect::<String>())
    } else {
        first.to_owned()
    }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `mirror add`: appends the source to `mirroring.sources` in autogit.yml (the controller
/// checks it and the resulting configuration, and keeps the rest of the file as written).
pub fn add(
    ui: &Ui,
    loaded: &Loaded,
    source: &str,
    token_env: Option<&str>,
    org: bool,
    group: bool,
    url: Option<&str>,
) -> u8 {
    let mirrors = MirrorController::new(
        loaded.settings.clone(),
        Bus::new(autogit_app::clock::system()),
        autogit_app::clock::system(),
    );
    match mirrors.add(source, token_env, org, group, url) {
        Ok(a) if a.already => {
            ui.note(&format!(
                "{} is already a source in {}",
                a.what,
                a.file.display()
            ));
            exit::OK
        }
        Ok(a) => {
            if ui.json {
                ui.print_json(&json!({
                    "added": a.what,
                    "list": format!("mirroring.sources.{}", a.list),
                    "file": a.file,
                }));
            } else {
                println!(
                    "added {} to mirroring.sources.{} in {}",
                    a.what,
                    a.list,
                    a.file.display()
                );
            }
            exit::OK
        }
        Err(AddError::WouldBreak {
            file,
            diagnostics,
            sources,
        }) => {
            ui.diagnostics(&diagnostics, &sources);
            ui.error(&format!("{} was not changed", file.display()));
            exit::FAILURE
        }
        Err(e) => {
            ui.error(&e.to_string());
            exit::FAILURE
        }
    }
}
