//! `autogit runner trust|health` and `autogit compute …`: runner hosts reached through
//! `drivers::remote` (SSH with autogit's own known_hosts, or this machine for `local`).

use crate::cli::Global;
use crate::ctx::{Loaded, data_dir, ssh_config};
use crate::exit;
use crate::ui::Ui;
use autogit_core::inventory::{EngineKind, Inventory};
use autogit_core::units::Bytes;
use autogit_drivers::remote::Host;
use autogit_drivers::remote::inventory::probe;
use autogit_drivers::remote::ssh::trust as ssh_trust;
use autogit_drivers::state::{HostRow, Store};
use serde::Serialize;
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `runner trust HOST`: ssh-keyscan, fingerprints, add to the managed known_hosts.
pub fn trust(ui: &Ui, g: &Global, host: &str, replace: bool) -> u8 {
    let cfg = ssh_config(g);
    match runtime().block_on(ssh_trust(&cfg, host, replace)) {
        Ok(r) => {
            if ui.json {
                ui.print_json(&json!({
                    "host": r.host,
                    "added": r.added,
                    "known_hosts": cfg.known_hosts,
                    "keys": r.keys,
                }));
            } else {
                for k in &r.keys {
                    println!("{}  {}  {}", r.host, k.key_type, k.fingerprint);
                }
                ui.note(&format!(
                    "{} {} in {}",
                    if r.added {
                        "trusted"
                    } else {
                        "already trusted:"
                    },
                    r.host,
                    cfg.known_hosts.display()
                ));
            }
            exit::OK
        }
        Err(e) => {
            ui.error(&e.to_string());
            exit::FAILURE
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn gib(b: Bytes) -> String {
    format!("{:.1} GiB", b.0 as f64 / (1u64 << 30) as f64)
}

/// The distinct hosts of the configured runners, with the runners on each and the SSH user.
fn configured_hosts(loaded: &Loaded) -> Vec<(String, Option<String>, Vec<String>)> {
    let mut out: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    for r in loaded.config.all_runners() {
        match out
            .iter_mut()
            .find(|(h, u, _)| *h == r.host && *u == r.user)
        {
            Some((_, _, names)) => names.push(r.name.clone()),
            None => out.push((r.host.clone(), r.user.clone(), vec![r.name.clone()])),
        }
    }
    out
}

/// One host's health as `runner health` reports it.
#[derive(Debug, Serialize)]
pub(crate) struct HostHealth {
    pub host: String,
    pub runners: Vec<String>,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    pub checked_at: i64,
}

/// Probes every configured host (concurrently) and records what it found in the state database.
pub(crate) fn probe_all(g: &Global, loaded: &Loaded) -> Vec<HostHealth> {
    let cfg = ssh_config(g);
    let hosts = configured_hosts(loaded);
    let rt = runtime();
    let results = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, user, _)) in hosts.iter().enumerate() {
            let (cfg, name, user) = (cfg.clone(), name.clone(), user.clone());
            set.spawn(async move {
                if name == "auto" {
                    return (i, Err("not discovered yet (`host: auto`)".to_owned()));
                }
                let r = match Host::new(&cfg, &name, user.as_deref()) {
                    Ok(h) => probe(&h).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (i, r)
            });
        }
        let mut out: Vec<Option<Result<Inventory, String>>> = vec![None; hosts.len()];
        while let Some(Ok((i, r))) = set.join_next().await {
            out[i] = Some(r);
        }
        out
    });
    let at = now();
    let store = Store::open(&data_dir(g).join("state.db"));
    hosts
        .into_iter()
        .zip(results)
        .map(|((host, _, runners), r)| {
            let r = r.unwrap_or_else(|| Err("the probe did not finish".to_owned()));
            let h = HostHealth {
                host,
                runners,
                reachable: r.is_ok(),
                error: r.as_ref().err().cloned(),
                inventory: r.ok(),
                checked_at: at,
            };
            if let Ok(s) = &store {
                let _ = s.record_host(&HostRow {
                    host: h.host.clone(),
                    checked_at: at,
                    reachable: h.reachable,
                    inventory: h
                        .inventory
                        .as_ref()
                        .and_then(|i| serde_json::to_string(i).ok()),
                    error: h.error.clone(),
                });
            }
            h
        })
        .collect()
}

/// `runner health`: reachable, engine, CPUs, memory, GPUs per host. Exit 1 if any host is
/// unreachable.
pub fn health(ui: &Ui, g: &Global, loaded: &Loaded) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let hosts = probe_all(g, loaded);
    if ui.json {
        ui.print_json(&json!({ "hosts": hosts }));
    } else if hosts.is_empty() {
        ui.note("no runners configured (runners.cpu / runners.gpu in autogit.yml)");
    } else {
        let mut t = ui.table();
        t.set_header(vec![
            "HOST",
            "RUNNERS",
            "REACHABLE",
            "ENGINE",
            "CPUS",
            "MEMORY",
            "GPUS",
            "NOTES",
        ]);
        for h in &hosts {
            let inv = h.inventory.as_ref();
            let gpus = inv.map_or_else(String::new, |i| {
                i.gpus
                    .iter()
                    .map(|g| {
                        format!(
                            "{}: {} ({} free of {})",
                            g.index,
                            g.name,
                            gib(g.memory_free),
                            gib(g.memory_total)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            let mut notes: Vec<String> = Vec::new();
            if let Some(e) = &h.error {
                notes.push(e.clone());
            }
            if let Some(i) = inv {
                if let Some(c) = &i.cuda {
                    notes.push(format!("CUDA {c}"));
                }
                if i.wsl2 {
                    notes.push("WSL2".into());
                }
                notes.extend(i.problems.iter().cloned());
            }
            t.add_row(vec![
                h.host.clone(),
                h.runners.join(","),
                if h.reachable { "yes" } else { "no" }.to_owned(),
                inv.and_then(|i| i.engine.as_ref())
                    .map_or("-".to_owned(), |e| {
                        format!(
                            "{} {}",
                            if e.kind == EngineKind::Docker {
                                "docker"
                            } else {
                                "podman"
                            },
                            e.version
                        )
                    }),
                inv.and_then(|i| i.cpus)
                    .map_or("-".into(), |c| c.to_string()),
                inv.and_then(|i| i.memory).map_or("-".into(), gib),
                if gpus.is_empty() { "-".into() } else { gpus },
                notes.join("; "),
            ]);
        }
        println!("{t}");
    }
    if hosts.iter().all(|h| h.reachable) {
        exit::OK
    } else {
        exit::FAILURE
    }
}

/// What `runner health` last saw of each host, in words (`up · 2 GPUs · 3m ago`).
pub(crate) fn last_seen(g: &Global) -> std::collections::BTreeMap<String, String> {
    let path = data_dir(g).join("state.db");
    if !path.exists() {
        return Default::default();
    }
    let Ok(rows) = Store::open(&path).and_then(|s| s.hosts()) else {
        return Default::default();
    };
    let at = now();
    rows.into_iter()
        .map(|r| {
            let ago = ago(at - r.checked_at);
            let text = if r.reachable {
                let gpus = r
                    .inventory
                    .as_deref()
                    .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
                    .and_then(|v| v["gpus"].as_array().map(Vec::len))
                    .unwrap_or(0);
                match gpus {
                    0 => format!("up · {ago}"),
                    1 => format!("up · 1 GPU · {ago}"),
                    n => format!("up · {n} GPUs · {ago}"),
                }
            } else {
                format!("unreachable · {ago}")
            };
            (r.host, text)
        })
        .collect()
}

fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}
