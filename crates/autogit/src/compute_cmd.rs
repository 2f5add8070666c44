//! `autogit compute run|status|list`: parse, call the compute controller
//! (`autogit_app::compute`), render.

use crate::cli::Global;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, with_controller};
use autogit_app::compute::{ComputeController, ComputeError, Submit, spec_of};
use autogit_app::{Bus, clock};
use autogit_drivers::state::JobRow;
use serde_json::json;

pub(crate) fn gib(b: autogit_core::units::Bytes) -> String {
    format!("{:.1} GiB", b.0 as f64 / (1u64 << 30) as f64)
}

fn fail(ui: &Ui, e: ComputeError) -> u8 {
    ui.error(&e.to_string());
    match e {
        ComputeError::Request(_) => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

fn job_json(row: &JobRow) -> serde_json::Value {
    json!({
        "id": row.id,
        "user": row.user,
        "state": row.state,
        "spec": serde_json::from_str::<serde_json::Value>(&row.spec).unwrap_or_default(),
        "submitted_at": row.submitted_at,
        "host": row.host,
        "gpus": row.gpus.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
        "container": row.container,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "exit_code": row.exit_code,
        "message": row.message,
    })
}

/// `compute run`: record the job, run a scheduling pass, say where it went.
pub fn run(ui: &Ui, _g: &Global, loaded: &Loaded, req: Submit) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let row = match with_controller(loaded, compute(loaded), async |c| c.submit(req).await) {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    let id = &row.id;
    if ui.json {
        ui.print_json(&job_json(&row));
    } else {
        match row.state.as_str() {
            "running" => println!(
                "{id} running on {} (GPUs {})",
                row.host.as_deref().unwrap_or("?"),
                row.gpus.as_deref().unwrap_or("[]")
            ),
            "queued" => println!(
                "{id} queued: no host has the capacity now{}",
                if row.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", row.message)
                }
            ),
            other => println!("{id} {other}: {}", row.message),
        }
        // A job spread over hosts: its parts are consecutive jobs, the first answered here.
        if let Some(g) = spec_of(&row).and_then(|s| s.gang).filter(|g| g.size > 1) {
            let last = id
                .strip_prefix("job-")
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| format!("job-{}", n + u64::from(g.size) - 1))
                .unwrap_or_default();
            println!(
                "one job over {} hosts: its parts are {id} to {last} (`compute status` each; when one fails or is cancelled, the others are cancelled)",
                g.size
            );
        }
    }
    if row.state == "failed" {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// `compute status JOB`: the job's placement and state (asking the engine when it runs).
pub fn status(ui: &Ui, _g: &Global, loaded: &Loaded, job: &str) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let got = with_controller(loaded, compute(loaded), async |c| {
        let row = c.status(job).await?;
        Ok((row, c.lease(job)?))
    });
    let (row, lease) = match got {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    if ui.json {
        let mut v = job_json(&row);
        v["lease"] = json!(lease);
        ui.print_json(&v);
    } else {
        println!("job:       {}", row.id);
        println!("kind:      {}", kind(&row));
        println!("user:      {}", row.user);
        println!("state:     {}", row.state);
        if let Some(h) = &row.host {
            println!("host:      {h}");
            println!("gpus:      {}", row.gpus.as_deref().unwrap_or("[]"));
        }
        if let Some(l) = &lease {
            println!(
                "lease:     {} on {} until {} ({} probe(s) missed; when lost: {})",
                l.state.as_str(),
                l.host,
                autogit_core::civil::rfc3339_utc(l.expires_at),
                l.missed,
                l.on_lost.as_str()
            );
        }
        if let Some(c) = row.exit_code {
            println!("exit code: {c}");
        }
        if !row.message.is_empty() {
            println!("note:      {}", row.message);
        }
    }
    exit::OK
}

/// `compute cancel JOB`: a queued job leaves the queue, a running one's container is removed.
pub fn cancel(ui: &Ui, _g: &Global, loaded: &Loaded, job: &str) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    match with_controller(loaded, compute(loaded), async |c| c.cancel(job).await) {
        Ok(row) if ui.json => {
            ui.print_json(&job_json(&row));
            exit::OK
        }
        Ok(row) => {
            println!("{} cancelled", row.id);
            exit::OK
        }
        Err(e) => fail(ui, e),
    }
}

/// `compute list`: hosts and GPUs (free VRAM), then the jobs; runs a scheduling pass first.
pub fn list(ui: &Ui, _g: &Global, loaded: &Loaded) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let got = with_controller(loaded, compute(loaded), async |c| {
        let (health, rows) = c.pass().await?;
        Ok((health, rows, c.leases()?))
    });
    let (health, rows, leases) = match got {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    if ui.json {
        let hosts: Vec<serde_json::Value> = health
            .iter()
            .map(|h| {
                json!({
                    "host": h.host,
                    "reachable": h.reachable,
                    "gpus": h.inventory.as_ref().map(|i| &i.gpus),
                })
            })
            .collect();
        let jobs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = job_json(r);
                v["lease"] = json!(leases.get(&r.id));
                v
            })
            .collect();
        ui.print_json(&json!({ "hosts": hosts, "jobs": jobs }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec!["HOST", "GPU", "NAME", "FREE", "TOTAL", "UTIL"]);
    for h in &health {
        let Some(inv) = h.inventory.as_ref().filter(|_| h.reachable) else {
            t.add_row(vec![h.host.clone(), "-".into(), "unreachable".into()]);
            continue;
        };
        for gpu in &inv.gpus {
            t.add_row(vec![
                h.host.clone(),
                gpu.index.to_string(),
                gpu.name.clone(),
                gib(gpu.memory_free),
                gib(gpu.memory_total),
                gpu.utilization.map_or("-".into(), |u| format!("{u}%")),
            ]);
        }
    }
    println!("{t}");
    let mut t = ui.table();
    t.set_header(vec![
        "JOB", "KIND", "USER", "STATE", "HOST", "GPUS", "LEASE", "IMAGE", "NOTE",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.id.clone(),
            kind(r),
            r.user.clone(),
            r.state.clone(),
            r.host.clone().unwrap_or_default(),
            r.gpus.clone().unwrap_or_default(),
            leases
                .get(&r.id)
                .map_or(String::new(), |l| l.state.as_str().to_owned()),
            spec_of(r).map(|s| s.image).unwrap_or_default(),
            r.message.clone(),
        ]);
    }
    println!("{t}");
    exit::OK
}

/// The job's kind for a table (`inference`, `render`, `train`, or `-`); a service says so.
fn kind(r: &JobRow) -> String {
    spec_of(r).map_or("-".into(), |s| match (s.capability, s.service()) {
        (Some(c), Some(_)) => format!("{} (service)", c.as_str()),
        (Some(c), None) => c.as_str().to_owned(),
        (None, _) => "-".into(),
    })
}

/// The compute controller on the command's bus.
fn compute(loaded: &Loaded) -> impl FnOnce(&Bus) -> ComputeController + '_ {
    |bus| ComputeController::new(loaded.settings.clone(), bus.clone(), clock::system())
}
