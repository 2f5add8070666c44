//! `autogit audit [verify]`: the newest records of the audit log as a table or JSON, and the
//! check of its hash chain (`autogit_app::audit::verify`), which exits 1 naming the first bad
//! record.

use crate::access_cmd::settings;
use crate::cli::{AuditCommand, Global};
use crate::exit;
use crate::ui::{Ui, fail};
use autogit_app::audit::{self, AuditLog, AuditQuery, VerifyError};
use autogit_app::clock;
use serde_json::json;

pub fn audit(ui: &Ui, g: &Global, cmd: Option<AuditCommand>, limit: usize, json: bool) -> u8 {
    let s = settings(g);
    if let Some(AuditCommand::Verify { file, json: j }) = cmd {
        let path = file.unwrap_or_else(|| {
            s.data_dir
                .join(autogit_drivers::audit::DIR)
                .join(autogit_drivers::audit::FILE)
        });
        if !path.is_file() {
            return fail(ui, format!("{}: no audit log there", path.display()));
        }
        return match audit::verify(&path) {
            Ok(report) => {
                if ui.json || json || j {
                    ui.print_json(&json!({ "ok": true, "report": report }));
                } else {
                    println!(
                        "{}: {} records, chain intact{}",
                        path.display(),
                        report.records,
                        if report.head_checked {
                            ", head file agrees"
                        } else {
                            ""
                        }
                    );
                    for n in &report.notes {
                        ui.note(&format!("note: {n}"));
                    }
                }
                exit::OK
            }
            Err(e) => {
                if ui.json || json || j {
                    let (line, seq) = match &e {
                        VerifyError::Bad { line, seq, .. } => (Some(*line), *seq),
                        VerifyError::File(_) => (None, None),
                    };
                    ui.print_json(
                        &json!({ "ok": false, "error": e.to_string(), "line": line, "seq": seq }),
                    );
                }
                fail(ui, format!("audit log broken: {e}"))
            }
        };
    }
    let log = match AuditLog::open(&s, clock::system()) {
        Ok(l) => l,
        Err(e) => return fail(ui, e),
    };
    let records = match log.list(&AuditQuery {
        limit,
        ..AuditQuery::default()
    }) {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    if ui.json || json {
        ui.print_json(&json!({ "records": records }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header([
        "SEQ", "AT", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME", "STATUS",
    ]);
    for r in &records {
        let e = &r.entry;
        t.add_row([
            r.seq.to_string(),
            r.at.clone(),
            e.actor.clone(),
            e.role.map_or("-".into(), |r| r.to_string()),
            e.action.clone(),
            e.target.clone(),
            e.outcome.clone(),
            e.status.map_or("-".into(), |s| s.to_string()),
        ]);
    }
    println!("{t}");
    exit::OK
}
