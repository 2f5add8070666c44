//! `autogit diagnose`: every check as a table (or `--output json`), the exit status of the
//! worst one, `--fix` for the safe fixes, `--bundle FILE` for a redacted support bundle. The
//! gathering and the fixes are `autogit_app::diagnose`'s; the judgements `core::diagnose`'s.

use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_app::diagnose::{DiagnoseController, FixOutcome};
use autogit_app::sinks::Sinks;
use autogit_app::{Bus, clock};
use autogit_core::diagnose::{self as d, Check, Status};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// The worst check was a warning.
pub const EXIT_WARN: u8 = 10;
/// A check failed.
pub const EXIT_FAIL: u8 = 11;

pub struct Args {
    pub only: Vec<String>,
    pub fix: bool,
    pub bundle: Option<PathBuf>,
    pub timeout: String,
}

pub fn exit_code(worst: Status) -> u8 {
    match worst {
        Status::Ok | Status::Skip => exit::OK,
        Status::Warn => EXIT_WARN,
        Status::Fail => EXIT_FAIL,
    }
}

pub fn run(ui: &Ui, loaded: &Loaded, args: &Args) -> u8 {
    if let Some(bad) = d::unknown_only(&args.only) {
        return fail(
            ui,
            format!(
                "--only {bad}: no such check group; groups: {}",
                d::GROUPS.join(", ")
            ),
        );
    }
    let Some(timeout) = crate::ui::parse_wait(&args.timeout).filter(|t| t.as_secs() > 0) else {
        return fail(
            ui,
            format!(
                "--timeout {}: expected a duration such as 10s or 1m",
                args.timeout
            ),
        );
    };
    let config = config_check(loaded);
    if config.status == Status::Fail && !ui.json {
        ui.diagnostics(&loaded.diagnostics, &loaded.sources);
    }
    runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let sinks = Sinks::for_command(&bus, loaded);
        let c = DiagnoseController::new(loaded.settings.clone(), bus.clone(), clock::system())
            .with_timeout(Duration::from_secs(timeout.as_secs()));
        let with_config = |mut checks: Vec<Check>| {
            if d::selected(&args.only, "config") {
                checks.insert(0, config.clone());
            }
            checks
        };
        let mut checks = with_config(c.run(&args.only).await);
        if checks.is_empty() && !ui.json {
            ui.note(&format!(
                "no check has the id {}; `autogit diagnose -o json` lists every id",
                args.only.join(", ")
            ));
        }
        let mut fixes: Vec<FixOutcome> = Vec::new();
        let mut before = None;
        if args.fix && !d::safe_fixes(&checks).is_empty() {
            fixes = c.fix(&checks).await;
            before = Some(checks);
            checks = with_config(c.run(&args.only).await);
        }
        let bundle = match &args.bundle {
            Some(p) => Some(c.bundle(p, &checks).await.map_err(|e| e.to_string())),
            None => None,
        };
        // The controller holds the bus too: the sinks end once every sender is gone.
        drop(c);
        sinks.finish(bus, Duration::from_secs(5)).await;
        let worst = d::worst(&checks);
        if ui.json {
            let mut out = json!({
                "worst": worst,
                "exit_code": exit_code(worst),
                "checks": checks,
            });
            if args.fix {
                out["fixes"] = json!(fixes);
                out["before_fixes"] = json!(before);
            }
            if let Some(b) = &bundle {
                out["bundle"] = match b {
                    Ok(r) => json!(r),
                    Err(e) => json!({"error": e}),
                };
            }
            ui.print_json(&out);
        } else {
            for f in &fixes {
                println!(
                    "{} {}: {}",
                    if f.ok { "fixed" } else { "fix failed" },
                    f.fix.as_str(),
                    f.detail
                );
            }
            print_table(ui, &checks);
            if args.fix && fixes.is_empty() {
                println!("nothing to fix automatically");
            } else if !args.fix && !d::safe_fixes(&checks).is_empty() {
                println!("`autogit diagnose --fix` applies the fixes marked (--fix).");
            }
            match &bundle {
                Some(Ok(r)) => println!(
                    "bundle: {} ({} files, {} secret values redacted)",
                    r.path,
                    r.files.len(),
                    r.secrets_redacted
                ),
                Some(Err(e)) => ui.error(e),
                None => {}
            }
        }
        match bundle {
            Some(Err(_)) => exit::FAILURE,
            _ => exit_code(worst),
        }
    })
}

/// The configuration's own diagnostics as a check.
fn config_check(loaded: &Loaded) -> Check {
    use autogit_core::diag::Severity;
    let diags = &loaded.diagnostics.0;
    let errors = diags
        .iter()
        .filter(|x| x.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    let first = diags
        .iter()
        .max_by_key(|x| x.severity)
        .map(|x| x.message.clone());
    d::judge_config(errors, warnings, first.as_deref())
}

fn print_table(ui: &Ui, checks: &[Check]) {
    let paint = |s: Status| {
        let text = s.as_str().to_ascii_uppercase();
        if !ui.color {
            return text;
        }
        let code = match s {
            Status::Ok => "32",
            Status::Skip => "2",
            Status::Warn => "1;33",
            Status::Fail => "1;31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let mut t = ui.table();
    t.set_header(vec!["STATUS", "CHECK", "EVIDENCE", "FIX"]);
    for c in checks {
        let mut fix = c.fix.clone().unwrap_or_default();
        if c.safe_fix.is_some() && c.status >= Status::Warn {
            fix.push_str(" (--fix)");
        }
        t.add_row(vec![
            paint(c.status),
            format!("{}\n{}", c.id, c.title),
            c.evidence.clone(),
            fix,
        ]);
    }
    println!("{t}");
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    println!(
        "{} ok, {} warning(s), {} failed, {} skipped",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    );
}
