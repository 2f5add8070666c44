//! `autogit runner …` and `autogit agent`: parse, call the runner controller
//! (`autogit_app::runners`), render. The workflows (registration, discovery, health,
//! autoscale) are the controller's.

use crate::cli::Global;
use crate::ctx::{Loaded, data_dir, ssh_config};
use crate::exit;
use crate::ui::{Ui, fail, runtime, with_controller};
use autogit_app::runners::{HostHealth, RunnerController, RunnerError, Unregistered, discover};
use autogit_app::{Bus, clock};
use autogit_core::inventory::Inventory;
use serde_json::json;

/// `runner trust HOST`: ssh-keyscan, fingerprints, add to the managed known_hosts.
pub fn trust(ui: &Ui, g: &Global, host: &str, replace: bool) -> u8 {
    let cfg = ssh_config(g);
    match runtime().block_on(discover::trust(&cfg, host, replace)) {
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
                let what = ["already trusted:", "trusted"][usize::from(r.added)];
                let at = cfg.known_hosts.display();
                ui.note(&format!("{what} {} in {at}", r.host));
            }
            exit::OK
        }
        Err(e) => fail(ui, e),
    }
}

/// `runner health`: reachable, engine, CPUs, memory, GPUs per host (probed concurrently by
/// the runner controller, which records what it found). Exit 1 if any host is unreachable.
pub fn health(ui: &Ui, loaded: &Loaded) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let hosts: Vec<HostHealth> =
        with_controller(loaded, runners(loaded), async |r| r.probe_all().await);
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
            let gib = crate::compute_cmd::gib;
            let gpus: Vec<String> = inv
                .map_or(&[][..], |i| &i.gpus[..])
                .iter()
                .map(|g| {
                    let (free, total) = (gib(g.memory_free), gib(g.memory_total));
                    format!("{}: {} ({free} free of {total})", g.index, g.name)
                })
                .collect();
            t.add_row(vec![
                h.host.clone(),
                h.runners.join(","),
                if h.reachable { "yes" } else { "no" }.to_owned(),
                h.engine().unwrap_or_else(|| "-".to_owned()),
                inv.and_then(|i| i.cpus)
                    .map_or("-".into(), |c| c.to_string()),
                inv.and_then(|i| i.memory).map_or("-".into(), gib),
                if gpus.is_empty() {
                    "-".into()
                } else {
                    gpus.join("\n")
                },
                h.notes().join("; "),
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
    autogit_app::runners::status::last_seen(&data_dir(g), clock::system().now() as i64)
}

/// Each runner's registration, in words, from the state database.
pub(crate) fn registration_states(g: &Global) -> std::collections::BTreeMap<String, String> {
    autogit_app::runners::status::registration_states(&data_dir(g))
}

// ---- runner register / unregister / discover ------------------------------------------------

/// `runner register TARGET`: the runner named TARGET, or every runner configured on the host
/// TARGET. GitLab creates each runner once, `gitlab-runner register` runs on its host with the
/// token on stdin, and the rendered `config.toml` goes into the runner's volume
/// (`RunnerController::register`).
pub fn register(
    ui: &Ui,
    _g: &Global,
    loaded: &Loaded,
    target: &str,
    api: &crate::cli::ApiArgs,
    runner_url: Option<&str>,
) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let url = crate::gitlab_cmd::api_url(api, loaded);
    let by_name = loaded.config.all_runners().any(|r| r.name == target);
    let results = with_controller(loaded, runners(loaded), async |r| {
        r.register_target(target, &url, runner_url).await
    });
    let results = match results {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    let mut code = exit::OK;
    let mut done = Vec::new();
    for r in results {
        match r {
            Ok(reg) => {
                if !ui.json {
                    let how = ["is already registered", "registered"][usize::from(reg.changed)];
                    println!(
                        "runner {} {how} on {} (GitLab runner {})",
                        reg.name, reg.host, reg.runner_id
                    );
                }
                done.push(reg);
            }
            Err(e) => code = fail(ui, e),
        }
    }
    if ui.json {
        match done.as_slice() {
            [one] if by_name => ui.print_json(&json!(one)),
            _ if by_name => {}
            all => ui.print_json(&json!({ "host": target, "runners": all })),
        }
    }
    code
}

/// `runner unregister NAME`: GitLab first, then the host, then autogit's records
/// (`RunnerController::unregister`); running it again finishes what a failed step left.
pub fn unregister(
    ui: &Ui,
    _g: &Global,
    loaded: &Loaded,
    name: &str,
    api: &crate::cli::ApiArgs,
) -> u8 {
    let url = crate::gitlab_cmd::api_url(api, loaded);
    match with_controller(loaded, runners(loaded), async |r| {
        r.unregister(name, &url).await
    }) {
        Ok(Unregistered::NotRegistered) => {
            ui.note(&format!("runner `{name}` is not registered; nothing to do"));
            exit::OK
        }
        Ok(Unregistered::Removed {
            runner_id,
            left_on_host,
        }) => {
            if let Some(host) = left_on_host {
                ui.note(&format!(
                    "runner `{name}` is no longer in autogit.yml: its container and volume on {host} are left for you to remove"
                ));
            }
            if ui.json {
                ui.print_json(&json!({"name": name, "runner_id": runner_id, "removed": true}));
            } else {
                println!("runner {name} (GitLab runner {runner_id}) unregistered");
            }
            exit::OK
        }
        Err(e) => fail(ui, e),
    }
}

/// `runner discover TARGETS`: which hosts answer SSH, their key fingerprints, and for hosts
/// already trusted their inventory; no targets: the hosts `autogit agent` announces.
pub fn discover(ui: &Ui, g: &Global, targets: &[String], wait: &str) -> u8 {
    let Some(wait) = autogit_core::units::Dur::parse(wait) else {
        ui.error(&format!("--wait {wait}: expected a duration such as 3s"));
        return exit::FAILURE;
    };
    let cfg = ssh_config(g);
    let d = match runtime().block_on(discover::discover(&cfg, targets, wait.0)) {
        Ok(d) => d,
        Err(e @ RunnerError::Targets(_)) => {
            ui.error(&e.to_string());
            return exit::UNAVAILABLE;
        }
        Err(e) => return fail(ui, e),
    };
    for a in &d.agents {
        ui.note(&discover::agent_line(a));
    }
    // Runners with `host: auto` get the host discovery found for them (state store).
    let loaded = crate::ctx::load_all(g, &[]);
    let auto = match loaded.diagnostics.has_errors() {
        true => Vec::new(),
        false => with_controller(&loaded, runners(&loaded), async |r| r.resolve_auto(&d))
            .unwrap_or_else(|e| {
                ui.error(&e.to_string());
                Vec::new()
            }),
    };
    for a in &auto {
        ui.note(&a.summary());
    }
    if ui.json {
        ui.print_json(&json!({ "scanned": d.scanned, "hosts": d.hosts, "auto": auto }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec![
        "HOST", "SSH", "TRUSTED", "KEY", "ENGINE", "GPUS", "NOTES",
    ]);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    for f in &d.hosts {
        let inv = f.inventory.as_ref();
        let key = f.keys.first();
        t.add_row(vec![
            f.host.clone(),
            yes(f.ssh),
            yes(f.trusted),
            key.map_or(String::new(), |k| {
                format!("{} {}", k.key_type, k.fingerprint)
            }),
            f.engine(),
            inv.map_or("-".to_owned(), gpu_list),
            f.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    let answering = d.hosts.iter().filter(|f| f.ssh).count();
    ui.note(&format!(
        "{answering} of {} addresses answer SSH",
        d.scanned
    ));
    exit::OK
}

fn gpu_list(i: &Inventory) -> String {
    if i.gpus.is_empty() {
        return "none".to_owned();
    }
    let gpus: Vec<String> = i
        .gpus
        .iter()
        .map(|g| format!("{} ({})", g.name, crate::compute_cmd::gib(g.memory_total)))
        .collect();
    gpus.join(", ")
}

/// `runner autoscale`: a pass every 30 s (or one with `--once`) until Ctrl-C or SIGTERM.
pub fn autoscale(ui: &Ui, loaded: &Loaded, once: bool, api: &crate::cli::ApiArgs) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let url = crate::gitlab_cmd::api_url(api, loaded);
    with_controller(loaded, runners(loaded), async |runners| {
        loop {
            let code = match runners.autoscale_pass(&url).await {
                Ok(rows) => print_scale(ui, &rows),
                Err(e) => fail(ui, e),
            };
            if once {
                return code;
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                () = stop_signal() => return exit::OK,
            }
        }
    })
}

/// Prints one autoscale pass; exit 1 when a runner failed.
fn print_scale(ui: &Ui, rows: &[autogit_app::runners::ScaleRow]) -> u8 {
    if ui.json {
        ui.print_json(&json!({ "runners": rows }));
    } else if rows.is_empty() {
        ui.note("no registered runners (`autogit runner register NAME`)");
    } else {
        let mut t = ui.table();
        let head = [
            "RUNNER",
            "HOST",
            "JOBS WAITING/RUNNING",
            "WAS RUNNING",
            "ACTION",
            "ERROR",
        ];
        t.set_header(head.to_vec());
        for r in rows {
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
    if rows.iter().any(|r| r.error.is_some()) {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// `autogit agent`: announces this host over mDNS until SIGTERM or Ctrl-C. The announcement
/// holds the host name, the SSH port, autogit's version, and whether the host has NVIDIA GPUs
/// (`nvidia-smi -L`) and runs under WSL2; nothing secret.
pub fn agent(ui: &Ui, name: Option<&str>, ssh_port: u16) -> u8 {
    let facts = autogit_drivers::remote::inventory::local_facts();
    let host = name.map_or(facts.hostname, str::to_owned);
    let (gpus, wsl2) = (facts.gpus, facts.wsl2);
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
    runtime().block_on(stop_signal());
    drop(announcement);
    ui.note("stopped announcing");
    exit::OK
}

/// The runner controller on the command's bus.
pub(crate) fn runners(loaded: &Loaded) -> impl FnOnce(&Bus) -> RunnerController + '_ {
    |bus| RunnerController::new(loaded.settings.clone(), bus.clone(), clock::system())
}
