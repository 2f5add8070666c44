//! Commands that drive the container engine: install, down, status, logs, reconcile, daemon.
//! Each parses, calls the platform controller (`autogit_app::platform`) and renders.

use crate::cli::Global;
use crate::commands::make_plan;
use crate::ctx::{Loaded, data_dir};
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, runtime};
use autogit_app::platform::PlatformController;
use autogit_app::sinks::Sinks;
use autogit_app::{Bus, clock};
use autogit_core::lifecycle::State;
use autogit_core::plan::Plan;
use autogit_core::units::Dur;
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::runtime::now;
use autogit_drivers::state::Store;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The plan, its rendered files written under `<data>/rendered`.
fn ready(ui: &Ui, g: &Global, loaded: &Loaded) -> Result<Plan, u8> {
    let plan = make_plan(ui, g, loaded).ok_or(exit::INVALID_CONFIG)?;
    let data = autogit_app::platform::data_dir(loaded).map_err(|e| fail(ui, e))?;
    autogit_app::plan::write_rendered(loaded, &data.join("rendered"), &plan)
        .map_err(|e| fail(ui, e))?;
    Ok(plan)
}

/// Connects to the engine and opens the platform controller on `bus`. With `announce`, says
/// which engine it found.
async fn open(
    ui: &Ui,
    loaded: &Loaded,
    bus: &Bus,
    plan: Plan,
    announce: bool,
) -> Result<PlatformController<Docker>, u8> {
    let engine = Docker::connect(loaded.socket(), &loaded.env)
        .await
        .map_err(|e| fail(ui, e))?;
    if announce {
        let i = engine.info().await.map_err(|e| fail(ui, e))?;
        ui.note(&format!(
            "engine: {} {} (API {}{}) at {}",
            i.kind,
            i.version,
            i.api_version,
            if i.rootless { ", rootless" } else { "" },
            i.socket.display()
        ));
    }
    PlatformController::open(loaded.settings.clone(), bus.clone(), engine, plan)
        .map_err(|e| fail(ui, e))
}

/// A one-shot command's bus and sinks (state store, webhooks), and the log sink too with -v.
fn command_bus(ui: &Ui, loaded: &Loaded) -> (Bus, Sinks) {
    let bus = Bus::new(clock::system());
    let sinks = if ui.verbose > 0 {
        Sinks::all(&bus, loaded)
    } else {
        Sinks::for_command(&bus, loaded)
    };
    (bus, sinks)
}

pub fn install(ui: &Ui, g: &Global, loaded: &Loaded, wait: &str, bootstrap: bool) -> u8 {
    let Some(wait) = parse_wait(wait) else {
        return fail(
            ui,
            format!("--wait {wait}: expected a duration such as 90s, 15m or 0"),
        );
    };
    let plan = match ready(ui, g, loaded) {
        Ok(p) => p,
        Err(code) => return code,
    };
    runtime().block_on(async {
        let (bus, sinks) = command_bus(ui, loaded);
        let code = install_on(ui, loaded, &bus, plan, wait, bootstrap).await;
        sinks.finish(bus, Duration::from_secs(10)).await;
        code
    })
}

async fn install_on(
    ui: &Ui,
    loaded: &Loaded,
    bus: &Bus,
    plan: Plan,
    wait: Dur,
    bootstrap: bool,
) -> u8 {
    let platform = match open(ui, loaded, bus, plan, true).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Dynamic ports are remembered so the next plan keeps them.
    if let Err(e) = platform
        .runtime
        .with_store(|s| autogit_app::plan::remember_ports(s, loaded, &platform.plan))
    {
        ui.note(&format!(
            "warning: the chosen ports were not remembered: {e}"
        ));
    }
    let progress = crate::ui::pull_progress(ui);
    if let Err(e) = platform.runtime.prepare(&progress).await {
        return fail(ui, e);
    }
    let start = Instant::now();
    let spinner = crate::ui::spinner(ui);
    let mut last_line = String::new();
    let mut seen_errors = std::collections::HashSet::new();
    let wanted = platform.runtime.specs.len();
    loop {
        let report = match platform.reconcile_once().await {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    ui,
                    format!(
                        "{e}; run `autogit install` again once it is fixed: it resumes where it stopped"
                    ),
                );
            }
        };
        for (svc, e) in &report.errors {
            if seen_errors.insert(format!("{svc}: {e}")) {
                ui.error(&format!("{svc}: {e}"));
            } else if !e.contains("no container engine") {
                // The same refusal twice in a row will not fix itself by waiting.
                ui.error(&format!("giving up: {svc} keeps failing with the error above; fix it and run `autogit install` again"));
                return exit::FAILURE;
            }
        }
        let states = platform.states();
        let healthy =
            states.len() == wanted && states.iter().all(|(_, s)| s == State::Healthy.as_str());
        let line = states
            .iter()
            .map(|(s, st)| format!("{s}: {st}"))
            .collect::<Vec<_>>()
            .join(", ");
        if line != last_line && !ui.quiet {
            if spinner.is_hidden() {
                eprintln!("[{:>4}s] {line}", start.elapsed().as_secs());
            } else {
                spinner.set_message(format!("waiting for health: {line}"));
            }
            last_line = line;
        }
        let has_gitlab = platform.runtime.specs.iter().any(|s| s.service == "gitlab");
        if healthy {
            spinner.finish_and_clear();
            ui.note(&format!(
                "installed: {wanted} service(s) healthy after {}s",
                start.elapsed().as_secs()
            ));
            if bootstrap && has_gitlab {
                return bootstrap_gitlab(ui, loaded).await;
            }
            return exit::OK;
        }
        if start.elapsed() >= wait.0 {
            spinner.finish_and_clear();
            if wait.as_secs() == 0 {
                ui.note("containers started; `autogit status` shows when they are healthy");
                if bootstrap && has_gitlab {
                    ui.note("once GitLab is healthy, `autogit gitlab bootstrap` creates its users and tokens");
                }
                return exit::OK;
            }
            ui.error(&format!("not healthy after {wait}: {last_line}"));
            let engine = &platform.runtime.engine;
            for (svc, st) in &states {
                if st != State::Healthy.as_str()
                    && let Ok(observed) = engine.list(&platform.runtime.project).await
                    && let Some(o) = observed.iter().find(|o| &o.service == svc)
                    && let Ok(lines) = engine.logs(&o.id, None, Some(15)).await
                {
                    eprintln!("last log lines of {svc}:");
                    for l in lines {
                        eprintln!("  {svc} | {l}");
                    }
                }
            }
            return exit::FAILURE;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The last step of `install`: users, groups and tokens in the GitLab that just became
/// healthy. A failure names what to run once the cause is fixed.
async fn bootstrap_gitlab(ui: &Ui, loaded: &Loaded) -> u8 {
    let gitlab = autogit_app::gitlab::GitLabController::new(loaded.settings.clone(), None);
    ui.note(&format!(
        "bootstrapping GitLab at {}: admin token, users, groups, service accounts",
        gitlab.url()
    ));
    match gitlab.bootstrap().await {
        Ok(report) => {
            crate::gitlab_cmd::print_report(ui, &report);
            exit::OK
        }
        Err(e) => fail(
            ui,
            format!(
                "{e}; GitLab itself is installed: run `autogit gitlab bootstrap` once this is fixed"
            ),
        ),
    }
}

pub fn down(ui: &Ui, g: &Global, loaded: &Loaded, volumes: bool, yes: bool) -> u8 {
    if volumes
        && !yes
        && let Err(code) = confirm(
            ui,
            &format!(
                "Delete the volumes of project `{}` (all GitLab data)?",
                loaded.config.platform.project
            ),
            "--volumes deletes all GitLab data; add --yes to confirm",
            "nothing was removed",
        )
    {
        return code;
    }
    let plan = match ready(ui, g, loaded) {
        Ok(p) => p,
        Err(code) => return code,
    };
    runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let platform = match open(ui, loaded, &bus, plan, false).await {
            Ok(p) => p,
            Err(code) => return code,
        };
        match platform.runtime.down(volumes).await {
            Ok(removed) => {
                for n in &removed {
                    ui.note(&format!("removed {n}"));
                }
                ui.note(&format!(
                    "{} container(s) removed; volumes {}",
                    removed.len(),
                    if volumes { "deleted" } else { "kept" }
                ));
                exit::OK
            }
            Err(e) => fail(ui, e),
        }
    })
}

pub fn status(ui: &Ui, loaded: &Loaded, service: Option<&str>) -> u8 {
    let report = match runtime().block_on(autogit_app::platform::status(loaded, now(), service)) {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    if !report.installed {
        if ui.json {
            ui.print_json(&json!({"installed": false, "services": []}));
        } else {
            ui.note(&format!(
                "nothing installed yet (no {}); run `autogit install`",
                loaded.state_db().display()
            ));
        }
        return exit::OK;
    }
    if let Some(s) = service
        && report.services.is_empty()
        && s != "runners"
    {
        return fail(
            ui,
            format!("no service `{s}` in the state of this data dir"),
        );
    }
    if let Some(e) = &report.engine_error
        && !ui.json
    {
        ui.note(&format!(
            "warning: container engine not reachable ({e}); showing recorded state only"
        ));
    }
    if ui.json {
        let mut out = json!({"installed": true, "engine_reachable": report.engine_error.is_none(), "services": report.services});
        if service == Some("gitlab") {
            out["gitlab"] = crate::gitlab_cmd::rest_status_json(loaded);
        }
        ui.print_json(&out);
        return exit::OK;
    }
    crate::ui::status_table(ui, &report.services, now() as i64);
    if service.is_none() {
        let tls = autogit_app::tls::TlsController::new(
            loaded.settings.clone(),
            Bus::new(clock::system()),
            clock::system(),
        );
        if let Ok(Some(c)) = tls.current() {
            println!(
                "certificate: {} expires in {} days{}",
                c.info.names.join(", "),
                (c.info.not_after - now() as i64) / 86_400,
                if c.due { " (renewal due)" } else { "" }
            );
        }
    }
    if service == Some("gitlab") {
        crate::gitlab_cmd::print_rest_status(ui, loaded);
    }
    exit::OK
}

pub fn logs(
    ui: &Ui,
    loaded: &Loaded,
    services: &[String],
    follow: bool,
    since: Option<&str>,
    tail: Option<usize>,
) -> u8 {
    let since_secs = match since.map(|s| Dur::parse(s).ok_or(s)) {
        Some(Ok(d)) => Some(now().saturating_sub(d.as_secs()) as i64),
        Some(Err(s)) => {
            return fail(
                ui,
                format!("--since {s}: expected a duration such as 10m or 2h"),
            );
        }
        None => None,
    };
    runtime().block_on(async {
        let engine = match Docker::connect(loaded.socket(), &loaded.env).await {
            Ok(e) => e,
            Err(e) => return fail(ui, e),
        };
        let project = &loaded.config.platform.project;
        let mut since_at = since_secs;
        let mut tail = tail;
        loop {
            let observed = match engine.list(project).await {
                Ok(o) => o,
                Err(e) => return fail(ui, e),
            };
            let chosen: Vec<_> = observed
                .iter()
                .filter(|o| services.is_empty() || services.contains(&o.service))
                .collect();
            if chosen.is_empty() && !follow {
                return fail(ui, "no matching containers; is the platform installed?");
            }
            let width = chosen.iter().map(|o| o.service.len()).max().unwrap_or(0);
            let fetched_at = now() as i64;
            for o in &chosen {
                match engine.logs(&o.id, since_at, tail).await {
                    Ok(lines) => {
                        for l in lines {
                            println!("{:<width$} | {l}", o.service);
                        }
                    }
                    Err(e) => ui.error(&format!("{}: {e}", o.service)),
                }
            }
            if !follow {
                return exit::OK;
            }
            since_at = Some(fetched_at);
            tail = None;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tokio::signal::ctrl_c() => return exit::OK,
            }
        }
    })
}

pub fn reconcile(ui: &Ui, g: &Global, loaded: &Loaded, clear: Option<&str>) -> u8 {
    if let Some(svc) = clear {
        let data = match autogit_app::platform::data_dir(loaded) {
            Ok(d) => d,
            Err(e) => return fail(ui, e),
        };
        return match Store::open(&data.join("state.db")).and_then(|s| s.clear_flag(svc)) {
            Ok(true) => {
                ui.note(&format!(
                    "cleared the human-intervention flag of `{svc}`; automatic repair is on again"
                ));
                exit::OK
            }
            Ok(false) => fail(
                ui,
                format!("no service `{svc}` in the state of this data dir"),
            ),
            Err(e) => fail(ui, e),
        };
    }
    let plan = match ready(ui, g, loaded) {
        Ok(p) => p,
        Err(code) => return code,
    };
    runtime().block_on(async {
        let (bus, sinks) = command_bus(ui, loaded);
        let code = match open(ui, loaded, &bus, plan, false).await {
            Ok(platform) => match platform.reconcile_once().await {
                Ok(report) => {
                    if ui.json {
                        ui.print_json(&json!({"actions": report.actions, "errors": report.errors.iter().map(|(s, e)| json!({"service": s, "error": e})).collect::<Vec<_>>()}));
                    } else if report.actions.is_empty() {
                        ui.note("everything matches the plan");
                    } else {
                        for a in &report.actions {
                            println!("{}", serde_json::to_string(a).unwrap_or_default());
                        }
                    }
                    platform.settle().await;
                    if report.errors.is_empty() { exit::OK } else { exit::FAILURE }
                }
                Err(e) => fail(ui, e),
            },
            Err(code) => code,
        };
        sinks.finish(bus, Duration::from_secs(10)).await;
        code
    })
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    })
}

pub fn systemd_unit(g: &Global, loaded: &Loaded) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/autogit".into());
    let config = loaded
        .config_path
        .as_ref()
        .map(|p| absolute(p).display().to_string());
    let data = absolute(&data_dir(g)).display().to_string();
    autogit_core::service::systemd_unit(&exe, config.as_deref(), &data)
}

/// After a successful install: `autogit daemon` as a systemd service, so that nothing else is
/// needed. As root the system unit `/etc/systemd/system/autogit.service`, otherwise the user
/// unit `~/.config/systemd/user/autogit.service` (`systemctl --user`; lingering keeps it running
/// after logout). `AUTOGIT_SYSTEMD_UNIT_DIR` puts the unit elsewhere. Never fails the install:
/// without systemd, or when systemctl refuses, it says what to run instead.
pub fn ensure_service(ui: &Ui, g: &Global, loaded: &Loaded) {
    use autogit_drivers::systemd::{ServiceError, install};
    let user = autogit_drivers::host::euid() != Some(0);
    let dir = loaded
        .setting("AUTOGIT_SYSTEMD_UNIT_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            if user {
                loaded
                    .setting("HOME")
                    .map(|h| PathBuf::from(h).join(".config/systemd/user"))
            } else {
                Some(PathBuf::from("/etc/systemd/system"))
            }
        });
    let manual = "run `autogit daemon` under your init system (`autogit daemon --print-systemd-unit` prints a unit)";
    let Some(dir) = dir else {
        ui.note(&format!("no systemd here: {manual}"));
        return;
    };
    match install(&dir, "autogit.service", &systemd_unit(g, loaded), user) {
        Ok(i) => ui.note(&format!(
            "autogit daemon runs as the systemd service autogit.service ({}; `{} status autogit` shows it){}",
            i.unit.display(),
            i.scope,
            if user { "; `loginctl enable-linger` keeps it running after you log out" } else { "" }
        )),
        Err(ServiceError::NoSystemd) => ui.note(&format!("no systemd here: {manual}")),
        // Not an install failure, but the user must act: shown even with --quiet.
        Err(e) => ui.error(&format!("{e}, or {manual}")),
    }
}

pub fn daemon(ui: &Ui, g: &Global, loaded: &Loaded, print_unit: bool) -> u8 {
    if print_unit {
        print!("{}", systemd_unit(g, loaded));
        return exit::OK;
    }
    let plan = match ready(ui, g, loaded) {
        Ok(p) => p,
        Err(code) => return code,
    };
    crate::ui::init_json_log(ui);
    runtime().block_on(async {
        let clock = clock::system();
        let bus = Bus::new(clock.clone());
        let sinks = Sinks::all(&bus, loaded);
        let platform = match open(ui, loaded, &bus, plan, false).await {
            Ok(p) => p,
            Err(code) => return code,
        };
        let (trigger, shutdown) = autogit_app::supervisor::shutdown();
        // SIGTERM or Ctrl-C fires the shutdown; every loop ends at its next await point (a
        // mirror sync in flight is recorded as interrupted) and `run` returns.
        let signals = tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            trigger.fire();
        });
        ui.note(&format!(
            "autogit daemon: project `{}`, reconcile every {}; SIGTERM stops it",
            platform.runtime.project, loaded.config.health.reconcile_interval
        ));
        let result = autogit_app::daemon::run(&platform, &bus, &clock, &shutdown).await;
        signals.abort();
        drop(platform);
        sinks.finish(bus, Duration::from_secs(5)).await;
        match result {
            Ok(()) => {
                ui.note("autogit daemon: stopped");
                exit::OK
            }
            Err(e) => fail(ui, format!("autogit daemon stopped: {e}")),
        }
    })
}
