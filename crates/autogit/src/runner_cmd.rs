//! `autogit runner trust|health` and `autogit compute …`: runner hosts reached through
//! `drivers::remote` (SSH with autogit's own known_hosts, or this machine for `local`).

use crate::cli::Global;
use crate::ctx::{Loaded, data_dir, ssh_config};
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_app::runners::{HostHealth, RunnerController};
use autogit_app::sinks::Sinks;
use autogit_app::{Bus, clock};
use autogit_core::inventory::{EngineKind, Inventory};
use autogit_drivers::remote::Host;
use autogit_drivers::remote::RemoteExec;
use autogit_drivers::remote::inventory::probe;
use autogit_drivers::remote::ssh::trust as ssh_trust;
use autogit_drivers::state::Store;
use serde::Serialize;
use serde_json::json;

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

/// Probes every configured host (concurrently) through the runner controller, which records
/// what it found and publishes hosts that stop or start answering.
fn probe_all(loaded: &Loaded) -> Vec<HostHealth> {
    runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let sinks = Sinks::for_command(&bus, loaded);
        let runners = RunnerController::new(loaded.settings.clone(), bus.clone(), clock::system());
        let hosts = runners.probe_all().await;
        drop(runners);
        sinks.finish(bus, std::time::Duration::from_secs(10)).await;
        hosts
    })
}

fn open_store(ui: &Ui, g: &Global) -> Option<Store> {
    match Store::open(&data_dir(g).join("state.db")) {
        Ok(s) => Some(s),
        Err(e) => {
            ui.error(&e.to_string());
            None
        }
    }
}

fn remote(loaded: &Loaded, host: &str) -> Result<Host, String> {
    RunnerController::new(
        loaded.settings.clone(),
        Bus::new(clock::system()),
        clock::system(),
    )
    .remote(host)
}

/// `runner health`: reachable, engine, CPUs, memory, GPUs per host. Exit 1 if any host is
/// unreachable.
pub fn health(ui: &Ui, loaded: &Loaded) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let hosts = probe_all(loaded);
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
                            crate::compute_cmd::gib(g.memory_free),
                            crate::compute_cmd::gib(g.memory_total)
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
                inv.and_then(|i| i.memory)
                    .map_or("-".into(), crate::compute_cmd::gib),
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

/// Each runner's registration, in words, from the state database.
pub(crate) fn registration_states(g: &Global) -> std::collections::BTreeMap<String, String> {
    let path = data_dir(g).join("state.db");
    if !path.exists() {
        return Default::default();
    }
    let Ok(rows) = Store::open(&path).and_then(|s| s.registrations()) else {
        return Default::default();
    };
    rows.into_iter()
        .map(|r| {
            let text = if r.state == "registered" {
                format!("registered (GitLab runner {})", r.runner_id)
            } else {
                "token created; host step failed (run `runner register` again)".to_owned()
            };
            (r.name, text)
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

// ---- runner register ----------------------------------------------------------------------

/// `runner register NAME`: GitLab creates the runner (token into the secret store), then
/// `gitlab-runner register` runs on the runner's host with the token on stdin. A token minted
/// by an earlier attempt that failed on the host is reused, not minted again.
pub fn register(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    name: &str,
    api: &crate::cli::ApiArgs,
    runner_url: Option<&str>,
) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let Some(runner) = loaded.config.all_runners().find(|r| r.name == name) else {
        let names: Vec<&str> = loaded
            .config
            .all_runners()
            .map(|r| r.name.as_str())
            .collect();
        ui.error(&format!(
            "no runner named `{name}` in the configuration (configured: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
        return exit::FAILURE;
    };
    if runner.host == "auto" {
        ui.error(&format!(
            "runner `{name}` has `host: auto` and has not been discovered; set its host"
        ));
        return exit::FAILURE;
    }
    let Some(store) = open_store(ui, g) else {
        return exit::FAILURE;
    };
    let previous = store
        .registrations()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.name == name && r.host == runner.host);
    let done = |ui: &Ui, row: &autogit_drivers::state::RegistrationRow, changed: bool| {
        if ui.json {
            ui.print_json(&json!({
                "name": row.name, "host": row.host, "runner_id": row.runner_id,
                "state": row.state, "changed": changed,
            }));
        } else if changed {
            println!(
                "runner {} registered on {} (GitLab runner {})",
                row.name, row.host, row.runner_id
            );
        } else {
            println!(
                "runner {} is already registered on {} (GitLab runner {})",
                row.name, row.host, row.runner_id
            );
        }
        exit::OK
    };
    if let Some(row) = previous.as_ref().filter(|r| r.state == "registered") {
        return done(ui, row, false);
    }
    let host = match remote(loaded, &runner.host) {
        Ok(h) => h,
        Err(e) => {
            ui.error(&e);
            return exit::FAILURE;
        }
    };
    let rt = runtime();
    let engine = match rt.block_on(probe(&host)) {
        Ok(inv) => match inv.engine.map(|e| e.kind) {
            Some(EngineKind::Docker) => "docker",
            Some(EngineKind::Podman) => "podman",
            None => {
                ui.error(&format!(
                    "{}: no container engine answers (docker or podman); gitlab-runner runs in a container",
                    runner.host
                ));
                return exit::FAILURE;
            }
        },
        Err(e) => {
            ui.error(&e.to_string());
            return exit::FAILURE;
        }
    };
    let reuse = previous.as_ref().and_then(|r| {
        let store = autogit_drivers::secrets::SecretStore::open(&data_dir(g)).ok()?;
        store.get(&r.secret).ok()?.map(|t| (r, t))
    });
    let (runner_id, secret, token) = match reuse {
        Some((r, t)) => (r.runner_id, r.secret.clone(), t),
        None => {
            let mut tags = runner.tags.clone();
            tags.extend(
                runner
                    .capabilities
                    .iter()
                    .map(|c| format!("{c:?}").to_ascii_lowercase()),
            );
            let gitlab = crate::gitlab_cmd::controller(loaded, api);
            match rt.block_on(gitlab.instance_runner(&tags, &format!("autogit {name}"))) {
                Ok((id, secret, token)) => (id as i64, secret, token),
                Err(e) => {
                    ui.error(&e);
                    return exit::FAILURE;
                }
            }
        }
    };
    let mut row = autogit_drivers::state::RegistrationRow {
        name: name.to_owned(),
        host: runner.host.clone(),
        runner_id,
        secret,
        state: "token".into(),
        at: now(),
        message: String::new(),
    };
    if let Err(e) = store.set_registration(&row) {
        ui.error(&e.to_string());
        return exit::FAILURE;
    }
    let url = runner_url.unwrap_or(&loaded.config.gitlab.external_url);
    let out = rt.block_on(autogit_drivers::remote::register::register(
        &host,
        engine,
        runner,
        &loaded.config.runners.image,
        url,
        &token,
    ));
    let failure = match out {
        Ok(o) if o.success() => None,
        Ok(o) => Some(format!(
            "gitlab-runner register failed on {} (exit {:?}): {}",
            runner.host,
            o.code,
            o.stderr.trim().lines().last().unwrap_or("")
        )),
        Err(e) => Some(e.to_string()),
    };
    match failure {
        None => {
            row.state = "registered".into();
            row.at = now();
            if let Err(e) = store.set_registration(&row) {
                ui.error(&e.to_string());
                return exit::FAILURE;
            }
            done(ui, &row, true)
        }
        Some(msg) => {
            row.message = msg.clone();
            let _ = store.set_registration(&row);
            ui.error(&format!(
                "{msg}; GitLab runner {} exists and its token is kept: run `autogit runner register {name}` again",
                row.runner_id
            ));
            exit::FAILURE
        }
    }
}

// ---- runner discover ----------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Found {
    host: String,
    ssh: bool,
    trusted: bool,
    keys: Vec<autogit_drivers::remote::ssh::TrustedKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<Inventory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `runner discover TARGETS`: which hosts answer SSH (one `ssh-keyscan` over all), their key
/// fingerprints, and for hosts already trusted their inventory (GPUs, engine).
pub fn discover(ui: &Ui, g: &Global, targets: &[String], wait: &str) -> u8 {
    let mut targets = targets.to_vec();
    if targets.is_empty() {
        let Some(wait) = autogit_core::units::Dur::parse(wait) else {
            ui.error(&format!("--wait {wait}: expected a duration such as 3s"));
            return exit::FAILURE;
        };
        let agents = match autogit_drivers::mdns::browse(wait.0, false) {
            Ok(a) => a,
            Err(e) => {
                ui.error(&e);
                return exit::FAILURE;
            }
        };
        if agents.is_empty() {
            ui.error(&format!(
                "no autogit agent answered over mDNS within {wait}: run `autogit agent` on the GPU hosts (same LAN segment), or give hosts or IPv4 ranges to probe over SSH"
            ));
            return exit::FAILURE;
        }
        for a in &agents {
            let facts: Vec<String> = a
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            ui.note(&format!(
                "mDNS: {} ({}) at {} port {} {}",
                a.instance,
                a.host,
                a.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                a.port,
                facts.join(" ")
            ));
            if let Some(ip) = a.addresses.first() {
                targets.push(ip.to_string());
            }
        }
    }
    let targets = &targets;
    let hosts = match autogit_core::remote::expand_targets(targets, 1024) {
        Ok(h) => h,
        Err(e) => {
            ui.error(&e);
            return exit::UNAVAILABLE;
        }
    };
    let cfg = ssh_config(g);
    let named: Vec<&String> = targets.iter().filter(|t| !t.contains('/')).collect();
    let found = runtime().block_on(async {
        let scanned = autogit_drivers::remote::ssh::scan(&cfg, &hosts).await?;
        let mut set = tokio::task::JoinSet::new();
        for (host, lines) in scanned {
            let cfg = cfg.clone();
            set.spawn(async move {
                let trusted = autogit_drivers::remote::ssh::is_trusted(&cfg, &lines);
                let keys = autogit_drivers::remote::ssh::fingerprints(&lines.join("\n")).await;
                let (inventory, error) = if trusted {
                    match autogit_drivers::remote::ssh::Ssh::new(cfg.clone(), &host) {
                        Ok(s) => match probe(&s).await {
                            Ok(i) => (Some(i), None),
                            Err(e) => (None, Some(e.to_string())),
                        },
                        Err(e) => (None, Some(e.to_string())),
                    }
                } else {
                    (
                        None,
                        Some(format!(
                            "not trusted: compare the fingerprint, then `autogit runner trust {host}`"
                        )),
                    )
                };
                Found {
                    host,
                    ssh: true,
                    trusted,
                    keys,
                    inventory,
                    error,
                }
            });
        }
        let mut out = Vec::new();
        while let Some(Ok(f)) = set.join_next().await {
            out.push(f);
        }
        Ok::<_, autogit_drivers::remote::RemoteError>(out)
    });
    let mut found = match found {
        Ok(f) => f,
        Err(e) => {
            ui.error(&e.to_string());
            return exit::FAILURE;
        }
    };
    for n in named {
        if !found.iter().any(|f| &f.host == n) {
            found.push(Found {
                host: n.clone(),
                ssh: false,
                trusted: false,
                keys: Vec::new(),
                inventory: None,
                error: Some("no SSH server answered".into()),
            });
        }
    }
    found.sort_by(|a, b| a.host.cmp(&b.host));
    if ui.json {
        ui.print_json(&json!({ "scanned": hosts.len(), "hosts": found }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec![
        "HOST", "SSH", "TRUSTED", "KEY", "ENGINE", "GPUS", "NOTES",
    ]);
    for f in &found {
        let inv = f.inventory.as_ref();
        t.add_row(vec![
            f.host.clone(),
            if f.ssh { "yes" } else { "no" }.to_owned(),
            if f.trusted { "yes" } else { "no" }.to_owned(),
            f.keys.first().map_or(String::new(), |k| {
                format!("{} {}", k.key_type, k.fingerprint)
            }),
            inv.and_then(|i| i.engine.as_ref())
                .map_or("-".to_owned(), |e| {
                    format!("{:?} {}", e.kind, e.version).to_lowercase()
                }),
            inv.map_or("-".to_owned(), |i| {
                if i.gpus.is_empty() {
                    "none".to_owned()
                } else {
                    i.gpus
                        .iter()
                        .map(|g| {
                            format!("{} ({})", g.name, crate::compute_cmd::gib(g.memory_total))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            }),
            f.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    ui.note(&format!(
        "{} of {} addresses answer SSH",
        found.iter().filter(|f| f.ssh).count(),
        hosts.len()
    ));
    exit::OK
}

/// `runner autoscale`.
pub fn autoscale(ui: &Ui, loaded: &Loaded, once: bool, api: &crate::cli::ApiArgs) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let url = crate::gitlab_cmd::api_url(api, loaded);
    let rt = runtime();
    let runners = rt.block_on(async {
        RunnerController::new(
            loaded.settings.clone(),
            Bus::new(clock::system()),
            clock::system(),
        )
    });
    loop {
        match rt.block_on(runners.autoscale_pass(&url)) {
            Ok(rows) => {
                if ui.json {
                    ui.print_json(&json!({ "runners": rows }));
                } else if rows.is_empty() {
                    ui.note("no registered runners (`autogit runner register NAME`)");
                } else {
                    let mut t = ui.table();
                    t.set_header(vec![
                        "RUNNER",
                        "HOST",
                        "JOBS WAITING/RUNNING",
                        "WAS RUNNING",
                        "ACTION",
                        "ERROR",
                    ]);
                    for r in &rows {
                        t.add_row(vec![
                            r.runner.clone(),
                            r.host.clone(),
                            r.jobs.to_string(),
                            r.was_running.to_string(),
                            format!("{:?}", r.action).to_ascii_lowercase(),
                            r.error.clone().unwrap_or_default(),
                        ]);
                    }
                    println!("{t}");
                }
                if once {
                    return if rows.iter().any(|r| r.error.is_some()) {
                        exit::FAILURE
                    } else {
                        exit::OK
                    };
                }
            }
            Err(e) => {
                ui.error(&e);
                if once {
                    return exit::FAILURE;
                }
            }
        }
        let stop = rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => false,
                _ = tokio::signal::ctrl_c() => true,
            }
        });
        if stop {
            return exit::OK;
        }
    }
}

/// `autogit agent`: announces this host over mDNS until SIGTERM or Ctrl-C. The announcement
/// holds the host name, the SSH port, autogit's version, and whether the host has NVIDIA GPUs
/// (`nvidia-smi -L`) and runs under WSL2; nothing secret.
pub fn agent(ui: &Ui, name: Option<&str>, ssh_port: u16) -> u8 {
    let host = name.map(str::to_owned).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "autogit-host".to_owned())
    });
    let gpus = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        });
    let wsl2 = std::fs::read_to_string("/proc/version")
        .is_ok_and(|v| v.to_ascii_lowercase().contains("microsoft"))
        || std::path::Path::new("/dev/dxg").exists();
    let props = std::collections::BTreeMap::from([
        ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        ("gpus".to_owned(), gpus.to_string()),
        ("wsl2".to_owned(), wsl2.to_string()),
    ]);
    let announcement = match autogit_drivers::mdns::announce(&host, ssh_port, &props, false) {
        Ok(a) => a,
        Err(e) => {
            ui.error(&e);
            return exit::FAILURE;
        }
    };
    ui.note(&format!(
        "announcing {} (SSH port {ssh_port}, {gpus} GPU(s){}); SIGTERM or Ctrl-C stops",
        announcement.fullname(),
        if wsl2 { ", WSL2" } else { "" }
    ));
    runtime().block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    });
    drop(announcement);
    ui.note("stopped announcing");
    exit::OK
}

/// `runner unregister NAME`: GitLab first (so the token stops working), then the host, then
/// autogit's records. Each step tolerates what is already gone; a failed step stops with the
/// registration kept, so running the command again finishes the job.
pub fn unregister(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    name: &str,
    api: &crate::cli::ApiArgs,
) -> u8 {
    let Some(store) = open_store(ui, g) else {
        return exit::FAILURE;
    };
    let Some(row) = store
        .registrations()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.name == name)
    else {
        ui.note(&format!("runner `{name}` is not registered; nothing to do"));
        return exit::OK;
    };
    let data = data_dir(g);
    let secrets = match autogit_drivers::secrets::SecretStore::open(&data) {
        Ok(s) => s,
        Err(e) => return fail(ui, e),
    };
    let url = crate::gitlab_cmd::api_url(api, loaded);
    let rt = runtime();
    // 1. GitLab: the runner and its authentication token.
    let gitlab = rt.block_on(async {
        let client = autogit_app::gitlab::stored_admin_client(&secrets, &url)?;
        match client.delete_runner(row.runner_id as u64).await {
            Ok(()) | Err(autogit_drivers::gitlab::client::GitLabError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    if let Err(e) = gitlab {
        return fail(
            ui,
            format!(
                "removing GitLab runner {}: {e}; nothing else was changed",
                row.runner_id
            ),
        );
    }
    // 2. The host: the runner's container and its configuration volume.
    if let Some(runner) = loaded.config.all_runners().find(|r| r.name == name) {
        let engine = autogit_core::ondemand::engine_of(runner);
        let volume = autogit_core::runner::runner_volume(name);
        let host = match remote(loaded, &row.host) {
            Ok(h) => h,
            Err(e) => {
                return fail(
                    ui,
                    format!(
                        "{e}; GitLab runner {} is already removed: run this again",
                        row.runner_id
                    ),
                );
            }
        };
        let out = rt.block_on(async {
            let _ = host.run(&autogit_core::ondemand::stop_argv(runner)).await;
            host.run(&[
                engine.to_owned(),
                "volume".to_owned(),
                "rm".to_owned(),
                "-f".to_owned(),
                volume.clone(),
            ])
            .await
        });
        match out {
            Ok(o) if o.success() => {}
            Ok(o) => {
                return fail(
                    ui,
                    format!(
                        "removing volume {volume} on {}: {}; run this again",
                        row.host,
                        o.stderr.trim()
                    ),
                );
            }
            Err(e) => return fail(ui, format!("{}: {e}; run this again", row.host)),
        }
    } else {
        ui.note(&format!(
            "runner `{name}` is no longer in autogit.yml: its container and volume on {} are left for you to remove",
            row.host
        ));
    }
    // 3. autogit's records.
    let _ = secrets.remove(&row.secret);
    if let Err(e) = store.remove_registration(name) {
        return fail(ui, e);
    }
    if ui.json {
        ui.print_json(&json!({"name": name, "runner_id": row.runner_id, "removed": true}));
    } else {
        println!(
            "runner {name} (GitLab runner {}) unregistered",
            row.runner_id
        );
    }
    exit::OK
}
