//! `autogit guard …`: parse, call the guard controller (`autogit_app::guard`: analysis,
//! quarantine, evaluation, the HTTP server), render, and map verdicts to exit codes (the table
//! is in docs/guard.md, "Commands and exit codes").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{
    CheckOutput, GuardCommand, QuarantineAction, ScanFormat, ServeLimitArgs, StatusArg,
    ThresholdArgs,
};
use autogit_app::guard::GuardController;
use autogit_guard::{Analysis, Verdict};
use autogit_guard_service::ServiceError;
use autogit_guard_service::scan;
use autogit_guard_service::store::AnalysisStatus;

/// Exit code: clean / success.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: suspicious text, or scan-repo findings.
pub const EXIT_SUSPICIOUS: u8 = 10;
/// Exit code: blocked text.
pub const EXIT_BLOCKED: u8 = 11;

/// What the binary passes to [`run`].
#[derive(Debug, Clone)]
pub struct GuardContext {
    /// Global `--json`: machine-readable output everywhere.
    pub json: bool,
    /// autogit's data directory; the quarantine lives in `<data_dir>/guard/quarantine.sqlite`.
    pub data_dir: PathBuf,
}

impl GuardContext {
    pub(crate) fn controller(&self) -> GuardController {
        GuardController::new(&self.data_dir)
    }

    /// The flags' thresholds, the rest from `guard calibrate` or the defaults.
    pub(crate) fn config(&self, t: &ThresholdArgs) -> autogit_guard::GuardConfig {
        self.controller()
            .with_local_thresholds(t.config(), t.explicit())
    }
}

pub(crate) fn fail(what: &str, err: &dyn std::fmt::Display, hint: &str) -> ExitCode {
    eprintln!("autogit: guard {what}: {err}; {hint}");
    ExitCode::from(EXIT_ERROR)
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), ServiceError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Run a guard command.
pub fn run(cmd: GuardCommand, ctx: &GuardContext) -> ExitCode {
    match cmd {
        GuardCommand::Check {
            file,
            output,
            no_quarantine,
            source,
            thresholds,
        } => check(
            ctx,
            file.as_deref(),
            output,
            no_quarantine,
            &source,
            &thresholds,
        ),
        GuardCommand::Quarantine { action } => quarantine(ctx, action),
        GuardCommand::ScanRepo { path, format } => scan_repo(ctx, &path, format),
        GuardCommand::Eval {
            file,
            threshold,
            show_misses,
            thresholds,
        } => crate::guard_model_cmd::evaluate(ctx, &file, threshold, show_misses, &thresholds),
        GuardCommand::Calibrate {
            file,
            reset,
            thresholds,
        } => crate::guard_model_cmd::calibrate(ctx, file.as_deref(), reset, &thresholds),
        GuardCommand::Model { action } => crate::guard_model_cmd::model(ctx, action),
        GuardCommand::Serve {
            listen,
            upstream,
            scan_system,
            no_quarantine,
            limits,
            thresholds,
        } => serve(
            ctx,
            listen,
            upstream,
            scan_system,
            no_quarantine,
            &limits,
            &thresholds,
        ),
    }
}

fn verdict_code(v: Verdict) -> ExitCode {
    ExitCode::from(match v {
        Verdict::Clean => EXIT_CLEAN,
        Verdict::Suspicious => EXIT_SUSPICIOUS,
        Verdict::Blocked => EXIT_BLOCKED,
    })
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Clean => "clean",
        Verdict::Suspicious => "suspicious",
        Verdict::Blocked => "blocked",
    }
}

fn check(
    ctx: &GuardContext,
    file: Option<&Path>,
    output: CheckOutput,
    no_quarantine: bool,
    source: &str,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    let (text, origin) = match crate::ui::read_input(file) {
        Ok(x) => x,
        Err(e) => return fail("check", &e, "pass a readable file, or - for standard input"),
    };
    let label = if source == "cli" {
        format!("cli:{origin}")
    } else {
        source.to_owned()
    };
    let checked =
        match ctx
            .controller()
            .check(ctx.config(thresholds), &text, &label, !no_quarantine)
        {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    "check",
                    &e,
                    "thresholds must lie in [0, 1] with suspicious <= block",
                );
            }
        };
    if let Some(w) = &checked.model_warning {
        eprintln!("autogit: guard check: {w}");
    }
    if let Some(e) = &checked.quarantine_error {
        eprintln!(
            "autogit: guard check: could not quarantine: {e}; use --no-quarantine to skip storing"
        );
    }
    let (analysis, quarantine_id) = (checked.analysis, checked.quarantine_id);
    if ctx.json || output == CheckOutput::Json {
        let mut value = match serde_json::to_value(&analysis) {
            Ok(v) => v,
            Err(e) => return fail("check", &e, "this is a bug, please report it"),
        };
        value["quarantine_id"] = serde_json::json!(quarantine_id);
        if let Err(e) = print_json(&value) {
            return fail("check", &e, "this is a bug, please report it");
        }
    } else {
        print_analysis(&analysis, &text, quarantine_id.as_deref());
    }
    verdict_code(analysis.verdict)
}

fn print_analysis(a: &Analysis, text: &str, quarantine_id: Option<&str>) {
    println!(
        "verdict: {} (risk {:.2})",
        verdict_word(a.verdict),
        a.risk_score
    );
    for f in &a.detected_patterns {
        let frag: String = text
            .get(f.span.start..f.span.end)
            .unwrap_or_default()
            .chars()
            .take(60)
            .flat_map(char::escape_debug)
            .collect();
        println!(
            "  stage {} {:<34} bytes {}..{}  \"{}\"",
            f.stage.number(),
            f.rule,
            f.span.start,
            f.span.end,
            frag
        );
    }
    if a.suppressed_findings > 0 {
        println!("  ({} more findings not listed)", a.suppressed_findings);
    }
    if let Some(p) = a.model_score {
        println!("  classifier probability {p:.3}");
    }
    if let Some(id) = quarantine_id {
        println!("quarantined as {id} (review with: autogit guard quarantine show {id})");
    }
}

fn quarantine(ctx: &GuardContext, action: QuarantineAction) -> ExitCode {
    let guard = ctx.controller();
    let path = guard.store_path();
    let result = match action {
        QuarantineAction::List { status, limit } => {
            let status = status.map(|s| match s {
                StatusArg::Pending => AnalysisStatus::Pending,
                StatusArg::Released => AnalysisStatus::Released,
                StatusArg::Confirmed => AnalysisStatus::Confirmed,
            });
            guard.list(status, limit).and_then(|records| {
                if ctx.json {
                    return print_json(&records);
                }
                if records.is_empty() {
                    println!("no quarantined texts");
                }
                for r in &records {
                    let preview: String = r
                        .original_text
                        .chars()
                        .take(50)
                        .flat_map(char::escape_debug)
                        .collect();
                    println!(
                        "{}  {}  {:<8}  risk {:.2}  {:<10}  {}  \"{}\"",
                        r.id,
                        r.timestamp,
                        serde_json::to_value(r.analysis_status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        r.risk_score,
                        verdict_word(r.verdict),
                        r.source,
                        preview
                    );
                }
                Ok(())
            })
        }
        QuarantineAction::Show { id } => guard.show(&id).and_then(|r| print_json(&r)),
        QuarantineAction::Release { id } => guard.release(&id).and_then(|r| {
            if ctx.json {
                print_json(&r)
            } else {
                println!("released {}", r.id);
                Ok(())
            }
        }),
        QuarantineAction::Confirm { id } => guard.confirm(&id).and_then(|r| {
            if ctx.json {
                print_json(&r)
            } else {
                println!("confirmed {} as an attack", r.id);
                Ok(())
            }
        }),
        QuarantineAction::Delete { id } => guard.delete(&id).and_then(|()| {
            if ctx.json {
                print_json(&serde_json::json!({ "deleted": id }))
            } else {
                println!("deleted {id}");
                Ok(())
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_CLEAN),
        Err(e @ ServiceError::NotFound(_)) => fail(
            "quarantine",
            &e,
            "list the ids with: autogit guard quarantine list",
        ),
        Err(e) => fail(
            "quarantine",
            &e,
            &format!("the database is {}", path.display()),
        ),
    }
}

fn scan_repo(ctx: &GuardContext, path: &Path, format: ScanFormat) -> ExitCode {
    let now = autogit_drivers::runtime::now() as i64;
    let report = match ctx.controller().scan_repo(path, now) {
        Ok((r, None)) => r,
        Ok((r, Some(why))) => {
            eprintln!("autogit: guard scan-repo: the result was not kept for the dashboard: {why}");
            r
        }
        Err(e) => return fail("scan-repo", &e, "pass a readable directory or file"),
    };
    let format = if ctx.json && format == ScanFormat::Text {
        ScanFormat::Json
    } else {
        format
    };
    let printed = match format {
        ScanFormat::Text => {
            print!("{}", scan::to_text(&report));
            Ok(())
        }
        ScanFormat::Json => print_json(&report),
        ScanFormat::Sarif => print_json(&scan::to_sarif(&report)),
    };
    if let Err(e) = printed {
        return fail("scan-repo", &e, "this is a bug, please report it");
    }
    ExitCode::from(if report.has_errors() {
        EXIT_SUSPICIOUS
    } else {
        EXIT_CLEAN
    })
}

fn serve(
    ctx: &GuardContext,
    listen: SocketAddr,
    upstream: Vec<String>,
    scan_system: bool,
    no_quarantine: bool,
    limits: &ServeLimitArgs,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    let options = match limits.options(&upstream, scan_system) {
        Ok(o) => o,
        Err(e @ ServiceError::Upstream { .. }) => return fail("serve", &e, "see docs/guard.md"),
        Err(e) => return fail("serve", &e, "fix the token or its file"),
    };
    match ctx
        .controller()
        .serve(listen, ctx.config(thresholds), !no_quarantine, options)
    {
        Ok(()) => ExitCode::from(EXIT_CLEAN),
        Err(e @ ServiceError::Auth(_)) => fail("serve", &e, "see docs/guard.md"),
        Err(e @ ServiceError::Guard(_)) => fail(
            "serve",
            &e,
            "thresholds must lie in [0, 1] with suspicious <= block",
        ),
        Err(e @ (ServiceError::Store(_) | ServiceError::Io { .. })) => fail(
            "serve",
            &e,
            "check the data directory, or pass --no-quarantine",
        ),
        Err(e) => fail("serve", &e, "choose a free address with --listen"),
    }
}
