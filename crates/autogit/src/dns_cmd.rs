//! `autogit dns plan` and `autogit dns sync`: the records the platform needs (core::dns), the
//! zone as the provider lists it, the diff, and applying it. Provider settings come from the
//! `.env` registry (DNS_PROVIDER, RFC2136_*, CLOUDFLARE_*, DNS_ZONE, DNS_TTL, INGRESS_IP,
//! BASE_DOMAIN).

use crate::cli::Global;
use crate::commands::make_plan;
use crate::ctx::{Loaded, load_all, secret};
use crate::exit;
use crate::ui::Ui;
use autogit_core::dns::{
    Change, ConflictReason, DnsPlan, DnsTarget, Record, desired_records, dns_plan,
};
use autogit_core::platform::DnsProvider as Kind;
use autogit_drivers::dns::cloudflare::{self, Cloudflare, CloudflareConfig};
use autogit_drivers::dns::dnsmasq::{Dnsmasq, DnsmasqConfig};
use autogit_drivers::dns::gcloud::{self, Gcloud, GcloudConfig, ServiceAccount};
use autogit_drivers::dns::rfc2136::{Rfc2136, Rfc2136Config};
use autogit_drivers::dns::route53::{self, Route53, Route53Config};
use autogit_drivers::dns::{DnsProvider, DnsProviderError};
use clap::Subcommand;
use secrecy::SecretString;
use serde_json::json;
use std::time::Duration;

/// Per network step (connect, each read) when talking to the DNS server.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Reads and updates of `dns sync` when the zone keeps changing in between.
const SYNC_ATTEMPTS: u32 = 3;

#[derive(Subcommand, Debug)]
pub enum DnsCommand {
    /// Compare the records the platform needs with the zone: what `dns sync` would create,
    /// update and delete, and the names it will not touch (records autogit does not own);
    /// changes nothing
    Plan,
    /// Apply the plan to the zone. Only records autogit owns (marked by an `_autogit.<name>`
    /// TXT record) are changed; a second run has nothing to do. `autogit daemon` runs it every
    /// reconcile interval (at least 5 minutes)
    #[command(alias = "apply")]
    Sync,
}

enum Backend {
    Rfc2136(Box<Rfc2136>),
    Cloudflare(Box<Cloudflare>),
    Route53(Box<Route53>),
    Dnsmasq(Box<Dnsmasq>),
    Gcloud(Box<Gcloud>),
    /// DNS_PROVIDER=manual: autogit lists the records; a person creates them.
    Manual,
}

/// Providers `dns plan` and `dns sync` work with in this version, for messages.
const WORKING: &str = "rfc2136 (BIND, Knot, PowerDNS: dynamic updates with a TSIG key), cloudflare (an API token), route53 (an IAM access key), gcloud (a service-account key), dnsmasq (a configuration file) and manual (`autogit dns plan` lists the records to create)";

pub fn run(cmd: DnsCommand, ui: &Ui, g: &Global) -> u8 {
    let loaded = load_all(g, &[]);
    let kind = loaded.platform.dns_provider;
    let Some(plan) = make_plan(ui, g, &loaded) else {
        return exit::INVALID_CONFIG;
    };
    if kind == Kind::None {
        ui.error(&format!(
            "DNS_PROVIDER is not set (or `none`): autogit manages no DNS records; set DNS_PROVIDER in .env to one of: {WORKING}"
        ));
        return exit::INVALID_CONFIG;
    }
    let target = match DnsTarget::from_plan(&plan, &loaded.platform, loaded.platform.dns_ttl) {
        Ok(t) => t,
        Err(e) => {
            ui.error(&e.to_string());
            return exit::INVALID_CONFIG;
        }
    };
    let desired = desired_records(&target, &plan.project);
    let backend = match kind {
        Kind::Rfc2136 => {
            rfc2136(&loaded, &target.base_domain).map(|p| Backend::Rfc2136(Box::new(p)))
        }
        Kind::Cloudflare => {
            cloudflare(&loaded, &target.base_domain).map(|p| Backend::Cloudflare(Box::new(p)))
        }
        Kind::Route53 => {
            route53(&loaded, &target.base_domain).map(|p| Backend::Route53(Box::new(p)))
        }
        Kind::Dnsmasq => dnsmasq(&loaded).map(|p| Backend::Dnsmasq(Box::new(p))),
        Kind::Gcloud => gcloud(&loaded, &target.base_domain).map(|p| Backend::Gcloud(Box::new(p))),
        _ => Ok(Backend::Manual),
    };
    let backend = match backend {
        Ok(b) => b,
        Err(msg) => {
            ui.error(&msg);
            return exit::INVALID_CONFIG;
        }
    };
    let name = provider_name(kind);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ui.error(&format!("cannot start the async runtime: {e}"));
            return exit::FAILURE;
        }
    };
    // One call per provider type: the trait's methods return `impl Future`, so no `dyn`.
    macro_rules! with {
        ($cmd:expr, $p:expr, $zone:expr) => {
            run_with(ui, $cmd, $p, &name, $zone, &desired, &plan.project)
        };
    }
    match (cmd, backend) {
        (DnsCommand::Plan, Backend::Manual) => {
            let p = dns_plan(&desired, &[], &plan.project);
            let scope =
                "manual: create these records at your DNS host (autogit cannot read the zone)";
            show_plan(ui, "manual", scope, &desired, &p);
            exit::OK
        }
        (DnsCommand::Sync, Backend::Manual) => {
            ui.error("DNS_PROVIDER=manual: autogit does not change DNS; create the records `autogit dns plan` lists, or set DNS_PROVIDER to rfc2136, cloudflare, route53, gcloud or dnsmasq");
            exit::UNAVAILABLE
        }
        (cmd, Backend::Rfc2136(p)) => rt.block_on(with!(cmd, &*p, p.zone())),
        (cmd, Backend::Dnsmasq(p)) => {
            let sync = matches!(cmd, DnsCommand::Sync);
            let file = p.path().display().to_string();
            let zone = zone_of(&loaded, &target.base_domain);
            let code = rt.block_on(with!(cmd, &*p, &zone));
            if sync && !p.reloads() {
                ui.note(&format!(
                    "dnsmasq reads {file} only when it starts: restart it (systemctl restart dnsmasq), or set DNSMASQ_RELOAD_COMMAND so that `dns sync` does"
                ));
            }
            code
        }
        (cmd, Backend::Gcloud(p)) => rt.block_on(with!(cmd, &*p, p.zone())),
        (cmd, Backend::Route53(p)) => rt.block_on(with!(cmd, &*p, p.zone())),
        (cmd, Backend::Cloudflare(p)) => rt.block_on(with!(cmd, &*p, p.zone())),
    }
}

async fn run_with<P: DnsProvider>(
    ui: &Ui,
    cmd: DnsCommand,
    p: &P,
    name: &str,
    zone: &str,
    desired: &[Record],
    project: &str,
) -> u8 {
    match cmd {
        DnsCommand::Plan => plan_cmd(ui, p, name, desired, project).await,
        DnsCommand::Sync => sync_cmd(ui, p, name, zone, desired, project).await,
    }
}

fn provider_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}").to_ascii_lowercase())
}

/// The RFC 2136 provider from the registry; the zone is DNS_ZONE, else BASE_DOMAIN.
pub(crate) fn rfc2136(loaded: &Loaded, base_domain: &str) -> Result<Rfc2136, String> {
    let value = |k: &str| {
        loaded
            .secrets(&[k.to_owned()])
            .remove(k)
            .filter(|v| !v.trim().is_empty())
    };
    let missing = |k: &str| format!("DNS_PROVIDER=rfc2136 needs {k} in .env or the environment");
    let server = value("RFC2136_SERVER").ok_or_else(|| missing("RFC2136_SERVER"))?;
    let key_name =
        value("RFC2136_TSIG_KEY_NAME").ok_or_else(|| missing("RFC2136_TSIG_KEY_NAME"))?;
    let algorithm = value("RFC2136_TSIG_ALGORITHM").unwrap_or_else(|| "hmac-sha256".to_owned());
    let secret = secret(loaded, "RFC2136_TSIG_SECRET")?.ok_or_else(|| {
        missing("RFC2136_TSIG_SECRET (or RFC2136_TSIG_SECRET_FILE, a file holding it)")
    })?;
    let zone = loaded
        .platform
        .dns_zone
        .clone()
        .unwrap_or_else(|| base_domain.to_owned());
    Rfc2136::new(&Rfc2136Config {
        server: server.trim().to_owned(),
        zone,
        key_name: key_name.trim().to_owned(),
        algorithm: algorithm.trim().to_owned(),
        secret: SecretString::from(secret),
        timeout: TIMEOUT,
    })
    .map_err(|e| e.to_string())
}

/// A value from `.env` or the environment, trimmed; `None` when unset or blank.
fn setting(loaded: &Loaded, key: &str) -> Option<String> {
    loaded
        .secrets(&[key.to_owned()])
        .remove(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The zone: DNS_ZONE, else BASE_DOMAIN.
fn zone_of(loaded: &Loaded, base_domain: &str) -> String {
    loaded
        .platform
        .dns_zone
        .clone()
        .unwrap_or_else(|| base_domain.to_owned())
}

/// The Cloudflare provider from the registry: CLOUDFLARE_API_TOKEN (or `_FILE`),
/// CLOUDFLARE_ZONE_ID (optional), CLOUDFLARE_API_URL (optional).
pub(crate) fn cloudflare(loaded: &Loaded, base_domain: &str) -> Result<Cloudflare, String> {
    let token = secret(loaded, "CLOUDFLARE_API_TOKEN")?.ok_or_else(|| {
        "DNS_PROVIDER=cloudflare needs CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_TOKEN_FILE, a file holding it) in .env or the environment: an API token with Zone:DNS:Edit".to_owned()
    })?;
    Cloudflare::new(&CloudflareConfig {
        api_url: setting(loaded, "CLOUDFLARE_API_URL")
            .unwrap_or_else(|| cloudflare::DEFAULT_API_URL.to_owned()),
        token: SecretString::from(token),
        zone: zone_of(loaded, base_domain),
        zone_id: setting(loaded, "CLOUDFLARE_ZONE_ID"),
        timeout: Duration::from_secs(30),
    })
    .map_err(|e| e.to_string())
}

/// The Route 53 provider from the registry: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or
/// `_FILE`), AWS_SESSION_TOKEN (optional), AWS_HOSTED_ZONE_ID, AWS_ROUTE53_ENDPOINT (optional).
pub(crate) fn route53(loaded: &Loaded, base_domain: &str) -> Result<Route53, String> {
    let missing = |k: &str| format!("DNS_PROVIDER=route53 needs {k} in .env or the environment");
    let key = setting(loaded, "AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
    let secret_key = secret(loaded, "AWS_SECRET_ACCESS_KEY")?.ok_or_else(|| {
        missing("AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE, a file holding it)")
    })?;
    let zone_id =
        setting(loaded, "AWS_HOSTED_ZONE_ID").ok_or_else(|| missing("AWS_HOSTED_ZONE_ID"))?;
    Route53::new(&Route53Config {
        endpoint: setting(loaded, "AWS_ROUTE53_ENDPOINT")
            .unwrap_or_else(|| route53::DEFAULT_ENDPOINT.to_owned()),
        access_key_id: key,
        secret_access_key: SecretString::from(secret_key),
        session_token: setting(loaded, "AWS_SESSION_TOKEN").map(SecretString::from),
        hosted_zone_id: zone_id,
        zone: zone_of(loaded, base_domain),
        timeout: Duration::from_secs(30),
        poll_interval: Duration::from_secs(2),
        insync_timeout: Duration::from_secs(180),
    })
    .map_err(|e| e.to_string())
}

/// The dnsmasq provider from the registry: DNSMASQ_CONFIG_PATH, DNSMASQ_RELOAD_COMMAND
/// (optional), DNS_TTL.
pub(crate) fn dnsmasq(loaded: &Loaded) -> Result<Dnsmasq, String> {
    let path = setting(loaded, "DNSMASQ_CONFIG_PATH").ok_or_else(|| {
        "DNS_PROVIDER=dnsmasq needs DNSMASQ_CONFIG_PATH in .env or the environment: the absolute path of a file dnsmasq includes (conf-file= or a file in conf-dir)".to_owned()
    })?;
    Dnsmasq::new(&DnsmasqConfig {
        path: path.into(),
        reload_command: setting(loaded, "DNSMASQ_RELOAD_COMMAND"),
        default_ttl: loaded.platform.dns_ttl,
        timeout: Duration::from_secs(60),
    })
    .map_err(|e| e.to_string())
}

/// The Google Cloud DNS provider from the registry: GCP_PROJECT, GCP_MANAGED_ZONE,
/// GCP_SERVICE_ACCOUNT_FILE, GCP_DNS_ENDPOINT (optional).
pub(crate) fn gcloud(loaded: &Loaded, base_domain: &str) -> Result<Gcloud, String> {
    let missing = |k: &str| format!("DNS_PROVIDER=gcloud needs {k} in .env or the environment");
    let project = setting(loaded, "GCP_PROJECT").ok_or_else(|| missing("GCP_PROJECT"))?;
    let managed_zone =
        setting(loaded, "GCP_MANAGED_ZONE").ok_or_else(|| missing("GCP_MANAGED_ZONE"))?;
    let file = setting(loaded, "GCP_SERVICE_ACCOUNT_FILE")
        .ok_or_else(|| missing("GCP_SERVICE_ACCOUNT_FILE (the service account's JSON key)"))?;
    let path = std::path::Path::new(&file);
    let bytes = autogit_drivers::fsx::read_bounded(path, 64 * 1024)
        .map_err(|e| format!("GCP_SERVICE_ACCOUNT_FILE: cannot read {file}: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("GCP_SERVICE_ACCOUNT_FILE: {file} is not UTF-8 text"))?;
    let account = ServiceAccount::from_json(&text, path).map_err(|e| e.to_string())?;
    Gcloud::new(&GcloudConfig {
        endpoint: setting(loaded, "GCP_DNS_ENDPOINT")
            .unwrap_or_else(|| gcloud::DEFAULT_ENDPOINT.to_owned()),
        project,
        managed_zone,
        account,
        zone: zone_of(loaded, base_domain),
        timeout: Duration::from_secs(30),
        poll_interval: Duration::from_secs(2),
        done_timeout: Duration::from_secs(180),
    })
    .map_err(|e| e.to_string())
}

async fn current_plan<P: DnsProvider>(
    p: &P,
    desired: &[Record],
    project: &str,
) -> Result<DnsPlan, String> {
    let observed = p.list(&[]).await.map_err(|e| e.to_string())?;
    Ok(dns_plan(desired, &observed, project))
}

async fn plan_cmd<P: DnsProvider>(
    ui: &Ui,
    p: &P,
    name: &str,
    desired: &[Record],
    project: &str,
) -> u8 {
    match current_plan(p, desired, project).await {
        Ok(plan) => {
            show_plan(ui, name, &p.describe(), desired, &plan);
            exit::OK
        }
        Err(e) => {
            ui.error(&e);
            exit::FAILURE
        }
    }
}

async fn sync_cmd<P: DnsProvider>(
    ui: &Ui,
    p: &P,
    name: &str,
    zone: &str,
    desired: &[Record],
    project: &str,
) -> u8 {
    let mut attempt = 0;
    let plan = loop {
        attempt += 1;
        let plan = match current_plan(p, desired, project).await {
            Ok(plan) => plan,
            Err(e) => {
                ui.error(&e);
                return exit::FAILURE;
            }
        };
        if plan.changes.is_empty() {
            break plan;
        }
        match p.apply(&plan.changes).await {
            Ok(()) => break plan,
            // Someone else changed the zone after we read it: read and plan again.
            Err(DnsProviderError::ZoneChanged { .. }) if attempt < SYNC_ATTEMPTS => {
                ui.note("the zone changed while syncing; reading it again");
            }
            Err(e) => {
                // An error answer from an atomic backend means it applied nothing (one
                // update, all or nothing); without an answer nobody knows; a backend that
                // takes one request per change applied those before the error.
                let outcome = if e.outcome_unknown() {
                    "; the update may or may not have been applied: run `autogit dns plan` to see"
                } else if matches!(e, DnsProviderError::ZoneChanged { .. }) {
                    ""
                } else if !p.atomic() {
                    "; changes before the failing one were applied: run `autogit dns plan` to see what is left"
                } else {
                    "; nothing was applied"
                };
                ui.error(&format!("{e}{outcome}"));
                return exit::FAILURE;
            }
        }
    };
    if !plan.changes.is_empty() {
        // Read back: what was applied must be what the zone now holds.
        match current_plan(p, desired, project).await {
            Ok(after) if after.changes.is_empty() => {}
            Ok(after) => {
                ui.error(&format!(
                    "{} accepted the update but the zone still differs; still to do:\n{after}",
                    p.describe(),
                ));
                return exit::FAILURE;
            }
            Err(e) => {
                ui.error(&format!(
                    "the update was sent, but reading the zone back failed: {e}"
                ));
                return exit::FAILURE;
            }
        }
    }
    if ui.json {
        ui.print_json(&json!({
            "provider": name,
            "target": p.describe(),
            "zone": zone,
            "applied": plan.changes,
            "conflicts": plan.conflicts,
            "in_sync": plan.conflicts.is_empty(),
        }));
    } else {
        if !plan.changes.is_empty() {
            table(ui, &plan);
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
        println!("{}: {did}", p.describe());
    }
    if plan.conflicts.is_empty() {
        exit::OK
    } else {
        ui.error(&format!(
            "{} left alone: records autogit does not own are there; remove them, or mark a name as autogit's with a TXT record `_autogit.<name>` \"{}\"",
            conflict_names(&plan),
            autogit_core::dns::owner_value(project)
        ));
        exit::FAILURE
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

fn show_plan(ui: &Ui, provider: &str, scope: &str, desired: &[Record], plan: &DnsPlan) {
    if ui.json {
        ui.print_json(&json!({
            "provider": provider,
            "target": scope,
            "desired": desired,
            "changes": plan.changes,
            "conflicts": plan.conflicts,
            "in_sync": plan.is_empty(),
        }));
        return;
    }
    if plan.is_empty() {
        println!("{scope}: in sync, nothing to do");
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
}

/// ACTION NAME TYPE TTL VALUE, one row per change and per conflicting record.
fn table(ui: &Ui, plan: &DnsPlan) {
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
                    &r.value,
                ]
                .map(str::to_owned)
            }
            Change::Update { from, to } => {
                let ttl = if from.ttl == to.ttl {
                    to.ttl.to_string()
                } else {
                    format!("{} → {}", from.ttl, to.ttl)
                };
                let value = if from.value == to.value {
                    to.value.clone()
                } else {
                    format!("{} → {}", from.value, to.value)
                };
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
