//! `autogit dns plan` and `autogit dns sync`: parse, call the DNS controller
//! (`autogit_app::dns`), render. Provider settings come from the `.env` registry
//! (DNS_PROVIDER, RFC2136_*, CLOUDFLARE_*, AWS_*, GCP_*, DNSMASQ_*, DNS_ZONE, DNS_TTL,
//! INGRESS_IP, BASE_DOMAIN).

use crate::cli::{DnsCommand, Global};
use crate::commands::make_plan;
use crate::ctx::load_all;
use crate::exit;
use crate::ui::{Ui, with_controller};
use autogit_app::dns::{DnsController, DnsError, DnsView};
use autogit_core::diagnose::{Check, DnssecFacts, Status, judge_dnssec};
use autogit_core::dns::{Change, ConflictReason, DnsPlan};
use serde_json::json;

pub fn run(cmd: DnsCommand, ui: &Ui, g: &Global) -> u8 {
    let loaded = load_all(g, &[]);
    let Some(plan) = make_plan(ui, g, &loaded) else {
        return exit::INVALID_CONFIG;
    };
    let make = |bus: &autogit_app::Bus| DnsController::new(loaded.settings.clone(), bus.clone());
    with_controller(&loaded, make, async |dns| match cmd {
        DnsCommand::Plan => match dns.plan(&plan).await {
            Ok(view) => {
                let dnssec = dnssec(dns).await;
                show_plan(ui, &view, &dnssec);
                exit::OK
            }
            Err(e) => fail(ui, &e),
        },
        DnsCommand::Sync => match dns.sync(&plan).await {
            Ok(s) => {
                for _ in 0..s.rereads {
                    ui.note("the zone changed while syncing; reading it again");
                }
                show_synced(ui, &s.view, &plan.project);
                if let Some(h) = &s.hint {
                    ui.note(h);
                }
                if s.view.plan.conflicts.is_empty() {
                    exit::OK
                } else {
                    exit::FAILURE
                }
            }
            Err(e) => fail(ui, &e),
        },
    })
}

fn fail(ui: &Ui, e: &DnsError) -> u8 {
    ui.error(&e.to_string());
    match e {
        DnsError::Config(_) => exit::INVALID_CONFIG,
        DnsError::Manual => exit::UNAVAILABLE,
        DnsError::Provider(_) | DnsError::Invalid { .. } | DnsError::NotFound(_) => exit::FAILURE,
    }
}

fn show_synced(ui: &Ui, view: &DnsView, project: &str) {
    let plan = &view.plan;
    if ui.json {
        ui.print_json(&json!({
            "provider": view.provider,
            "target": view.target,
            "zone": view.zone,
            "applied": plan.changes,
            "conflicts": plan.conflicts,
            "in_sync": plan.conflicts.is_empty(),
        }));
    } else {
        if !plan.changes.is_empty() {
            table(ui, plan);
        } else if !plan.conflicts.is_empty() {
            table(
                ui,
                &DnsPlan {
                    changes: vec![],
                    conflicts: plan.conflicts.clone(),
                },
            );
        }
        let did = if plan.changes.is_empty() {
            "nothing to do".to_owned()
        } else {
            format!("applied {}", counts(&plan.changes))
        };
        println!("{}: {did}", view.target);
    }
    if !plan.conflicts.is_empty() {
        ui.error(&format!(
            "{} left alone: records autogit does not own are there; remove them, or mark a name as autogit's with a TXT record `_autogit.<name>` \"{}\"",
            conflict_names(plan),
            autogit_core::dns::owner_value(project)
        ));
    }
}

fn conflict_names(plan: &DnsPlan) -> String {
    plan.conflicts
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn counts(changes: &[Change]) -> String {
    let n = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    format!(
        "{} created, {} updated, {} deleted",
        n(|c| matches!(c, Change::Create { .. })),
        n(|c| matches!(c, Change::Update { .. })),
        n(|c| matches!(c, Change::Delete { .. })),
    )
}

/// The zone's DNSSEC as `diagnose` judges it (`dns.dnssec`).
async fn dnssec(dns: &DnsController) -> Check {
    let (zone, resolver, r) = dns.dnssec(std::time::Duration::from_secs(3)).await;
    let r = r.map(|z| DnssecFacts {
        zone,
        resolver,
        exists: z.exists,
        dnskey: z.dnskey,
        rrsig: z.rrsig,
        ds: z.ds,
    });
    judge_dnssec(r.as_ref().map_err(String::as_str))
}

fn show_plan(ui: &Ui, view: &DnsView, dnssec: &Check) {
    let (scope, plan) = (&view.target, &view.plan);
    if ui.json {
        ui.print_json(&json!({
            "provider": view.provider,
            "target": scope,
            "desired": view.desired,
            "changes": plan.changes,
            "conflicts": plan.conflicts,
            "in_sync": plan.is_empty(),
            "dnssec": {"status": dnssec.status, "evidence": dnssec.evidence, "fix": dnssec.fix},
        }));
        return;
    }
    let note_dnssec = || {
        println!("DNSSEC: {}", dnssec.evidence);
        if dnssec.status != Status::Ok
            && let Some(f) = &dnssec.fix
        {
            ui.note(&format!("  {f}"));
        }
    };
    if plan.is_empty() {
        println!("{scope}: in sync, nothing to do");
        note_dnssec();
        return;
    }
    table(ui, plan);
    let mut summary = format!(
        "{scope}: {} to create, {} to update, {} to delete",
        plan.changes
            .iter()
            .filter(|c| matches!(c, Change::Create { .. }))
            .count(),
        plan.changes
            .iter()
            .filter(|c| matches!(c, Change::Update { .. }))
            .count(),
        plan.changes
            .iter()
            .filter(|c| matches!(c, Change::Delete { .. }))
            .count(),
    );
    if !plan.conflicts.is_empty() {
        summary.push_str(&format!(
            ", {} conflict(s) left alone",
            plan.conflicts.len()
        ));
    }
    println!("{summary}");
    note_dnssec();
}

/// ACTION NAME TYPE TTL VALUE, one row per change and per conflicting record; a record behind
/// Cloudflare's proxy says so after its value.
fn table(ui: &Ui, plan: &DnsPlan) {
    let via = |p: bool| if p { "proxied" } else { "direct" };
    let mut t = ui.table();
    t.set_header(vec!["ACTION", "NAME", "TYPE", "TTL", "VALUE"]);
    for c in &plan.changes {
        let row = match c {
            Change::Create { record: r } | Change::Delete { record: r } => {
                let action = if matches!(c, Change::Create { .. }) {
                    "create"
                } else {
                    "delete"
                };
                [
                    action,
                    &r.name,
                    r.kind.as_str(),
                    &r.ttl.to_string(),
                    &if r.proxied {
                        format!("{} (proxied)", r.value)
                    } else {
                        r.value.clone()
                    },
                ]
                .map(str::to_owned)
            }
            Change::Update { from, to } => {
                let ttl = if from.ttl == to.ttl {
                    to.ttl.to_string()
                } else {
                    format!("{} → {}", from.ttl, to.ttl)
                };
                let mut value = if from.value == to.value {
                    to.value.clone()
                } else {
                    format!("{} → {}", from.value, to.value)
                };
                if from.proxied != to.proxied {
                    value = format!("{value} ({} → {})", via(from.proxied), via(to.proxied));
                } else if to.proxied {
                    value.push_str(" (proxied)");
                }
                [
                    "update".to_owned(),
                    to.name.clone(),
                    to.kind.as_str().to_owned(),
                    ttl,
                    value,
                ]
            }
        };
        t.add_row(row.to_vec());
    }
    for c in &plan.conflicts {
        let why = match c.reason {
            ConflictReason::NotOwned => "not owned by autogit",
            ConflictReason::OtherOwner => "owned by another autogit project",
        };
        for r in &c.found {
            t.add_row(vec![
                "conflict".to_owned(),
                c.name.clone(),
                r.kind.as_str().to_owned(),
                r.ttl.to_string(),
                format!("{} ({why}; left alone)", r.value),
            ]);
        }
    }
    println!("{t}");
}
