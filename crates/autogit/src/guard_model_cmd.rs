//! `autogit guard eval`, `guard calibrate` and `guard model …`: measuring the filter and
//! learning from the deployment (the controller is `autogit_app::guard_model`). Render only.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{ModelAction, ThresholdArgs};
use crate::guard_cmd::{EXIT_CLEAN, GuardContext, fail, print_json};
use autogit_app::guard_model::{Calibration, Flagged, ModelError, Refit};

pub(crate) fn evaluate(
    ctx: &GuardContext,
    file: &Path,
    threshold: Option<f64>,
    show_misses: bool,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    use autogit_app::guard::EvalError;
    let (m, misses) = match ctx
        .controller()
        .evaluate(ctx.config(thresholds), file, threshold)
    {
        Ok(r) => r,
        Err(e @ EvalError::Thresholds(_)) => {
            return fail(
                "eval",
                &e,
                "thresholds must lie in [0, 1] with suspicious <= block",
            );
        }
        Err(e) => {
            return fail(
                "eval",
                &e,
                "expected CSV (text,label header) or JSONL ({\"text\":…,\"label\":…}) with at least one row",
            );
        }
    };
    if ctx.json {
        let mut v = serde_json::json!({ "metrics": m });
        if show_misses {
            v["misses"] = serde_json::json!(misses);
        }
        return match print_json(&v) {
            Ok(()) => ExitCode::from(EXIT_CLEAN),
            Err(e) => fail("eval", &e, "this is a bug, please report it"),
        };
    }
    println!(
        "dataset      {} ({} injections, {} benign)",
        file.display(),
        m.positives,
        m.negatives
    );
    println!("threshold    {:.2}", m.threshold);
    println!(
        "TP {}  FP {}  TN {}  FN {}",
        m.true_positives, m.false_positives, m.true_negatives, m.false_negatives
    );
    println!("TPR          {:.3}", m.tpr);
    println!("FPR          {:.3}", m.fpr);
    println!("precision    {:.3}", m.precision);
    println!("F1           {:.3}", m.f1);
    println!("ROC AUC      {:.3}", m.roc_auc);
    println!("TPR@1%FPR    {:.3}", m.tpr_at_1pct_fpr);
    println!("TPR@5%FPR    {:.3}", m.tpr_at_5pct_fpr);
    if show_misses {
        for miss in &misses {
            let kind = if miss.label { "missed" } else { "false alarm" };
            println!(
                "  #{:<4} {kind:<11} risk {:.2}  {:?}",
                miss.index, miss.risk_score, miss.text
            );
        }
    }
    ExitCode::from(EXIT_CLEAN)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

pub(crate) fn calibrate(
    ctx: &GuardContext,
    file: Option<&Path>,
    reset: bool,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    let c = ctx.controller();
    if reset {
        return match c.reset_thresholds() {
            Ok(had) => {
                println!(
                    "{} (suspicious 0.35, block 0.7)",
                    if had {
                        "removed the fitted thresholds: the shipped defaults apply"
                    } else {
                        "no fitted thresholds: the shipped defaults apply"
                    }
                );
                ExitCode::from(EXIT_CLEAN)
            }
            Err(e) => fail("calibrate", &e, "check the data directory"),
        };
    }
    let Some(file) = file else {
        return fail("calibrate", &"no file", "pass a file of benign texts");
    };
    let cal: Calibration = match c.calibrate(ctx.config(thresholds), file) {
        Ok(cal) => cal,
        Err(e @ (ModelError::Read { .. } | ModelError::Input { .. } | ModelError::TooFew(_))) => {
            return fail(
                "calibrate",
                &e,
                "pass JSONL with a `text` field, or one benign text per line",
            );
        }
        Err(e) => return fail("calibrate", &e, "check the data directory"),
    };
    if ctx.json {
        return json_or_fail("calibrate", &cal);
    }
    println!("benign texts   {}", cal.texts);
    println!(
        "before         suspicious {:.3} (flags {}), block {:.3} (flags {})",
        cal.before.0,
        pct(cal.before_flagged.0),
        cal.before.1,
        pct(cal.before_flagged.1)
    );
    println!(
        "after          suspicious {:.3} (flags {}), block {:.3} (flags {})",
        cal.after.0,
        pct(cal.after_flagged.0),
        cal.after.1,
        pct(cal.after_flagged.1)
    );
    println!(
        "written to {} (check, eval and serve use it unless a flag sets a threshold; undo with --reset)",
        ctx.controller().thresholds_path().display()
    );
    ExitCode::from(EXIT_CLEAN)
}

fn json_or_fail(what: &str, value: &impl serde::Serialize) -> ExitCode {
    match print_json(value) {
        Ok(()) => ExitCode::from(EXIT_CLEAN),
        Err(e) => fail(what, &e, "this is a bug, please report it"),
    }
}

fn flagged_line(name: &str, f: &Flagged) -> String {
    format!(
        "{name:<28} attacks flagged {}/{}, benign flagged {}/{}",
        f.attacks_flagged, f.attacks, f.benign_flagged, f.benign
    )
}

pub(crate) fn model(ctx: &GuardContext, action: ModelAction) -> ExitCode {
    let c = ctx.controller();
    match action {
        ModelAction::Refit { thresholds } => {
            let r: Refit = match c.refit(ctx.config(&thresholds)) {
                Ok(r) => r,
                Err(e @ ModelError::NothingReviewed) => {
                    return fail(
                        "model refit",
                        &e,
                        "see docs/guard.md, \"Learning from the deployment\"",
                    );
                }
                Err(e) => return fail("model refit", &e, "check the data directory"),
            };
            if ctx.json {
                return json_or_fail("model refit", &r);
            }
            println!(
                "{}",
                flagged_line("reviewed records, before", &r.reviewed_before)
            );
            println!(
                "{}",
                flagged_line("reviewed records, after", &r.reviewed_after)
            );
            println!(
                "{}",
                flagged_line("shipped eval set, before", &r.eval_before)
            );
            println!("{}", flagged_line("shipped eval set, after", &r.eval_after));
            println!(
                "wrote {} (undo with: autogit guard model rollback)",
                r.path.display()
            );
            ExitCode::from(EXIT_CLEAN)
        }
        ModelAction::Rollback => match c.rollback() {
            Ok(true) => {
                println!("removed the local model: the shipped model is used again");
                ExitCode::from(EXIT_CLEAN)
            }
            Ok(false) => {
                println!("no local model: the shipped model is in use");
                ExitCode::from(EXIT_CLEAN)
            }
            Err(e) => fail("model rollback", &e, "check the data directory"),
        },
        ModelAction::Status => {
            let local = c.model_path().is_file();
            let (guard, warning) = match c.guard(ctx.config(&ThresholdArgs::default())) {
                Ok(g) => g,
                Err(e) => return fail("model status", &e, "check the data directory"),
            };
            let cfg = guard.config();
            let value = serde_json::json!({
                "model": match (local, &warning) {
                    (_, Some(_)) => "none (the local model is unusable)",
                    (true, None) => "local",
                    (false, None) => "shipped",
                },
                "model_path": local.then(|| c.model_path()),
                "warning": warning,
                "calibration": guard.classifier().map(|m| m.calibration()),
                "suspicious_threshold": cfg.suspicious_threshold,
                "block_threshold": cfg.block_threshold,
                "thresholds_fitted": c.local_thresholds().is_some(),
            });
            if ctx.json {
                return json_or_fail("model status", &value);
            }
            println!(
                "model        {}",
                value["model"].as_str().unwrap_or_default()
            );
            if let Some(w) = &warning {
                println!("warning      {w}");
            }
            if let Some((s, b)) = guard.classifier().map(|m| m.calibration()) {
                println!("calibration  suspicious at p >= {s:.3}, block at p >= {b:.3}");
            }
            println!(
                "thresholds   suspicious {:.3}, block {:.3} ({})",
                cfg.suspicious_threshold,
                cfg.block_threshold,
                if c.local_thresholds().is_some() {
                    "fitted by guard calibrate"
                } else {
                    "shipped defaults"
                }
            );
            ExitCode::from(EXIT_CLEAN)
        }
    }
}
