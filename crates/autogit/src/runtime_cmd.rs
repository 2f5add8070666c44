//! Commands that drive the container engine: install, down, status, logs, reconcile, daemon.
//! Each parses, calls the platform controller (`autogit_app::platform`) and renders.

use crate::cli::Global;
use crate::commands::make_plan;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, runtime};
use autogit_app::platform::{
    DeployProgress, InstallOutcome, InstallProgress, PlatformController, deploy,
};
use autogit_app::sinks::Sinks;
use autogit_app::{Bus, clock};
use autogit_core::plan::Plan;
use autogit_core::units::Dur;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::state::Store;
use serde_json::json;
use std::time::{Duration, Instant};

/// The plan, its rendered files written under `<data>/rendered`.
fn ready(ui: &Ui, g: &Global, loaded: &Loaded) -> Result<Plan, u8> {
    let plan = make_plan(ui, g, loaded).ok_or(exit::INVALID_CONFIG)?;
    let data = autogit_app::platform::data_dir(loaded).map_err(|e| fail(ui, e))?;
    autogit_app::plan::write_rendered(loaded, &data.join("rendered"), &plan)
        .map_err(|e| fail(ui, e))?;
    if plan.service("prometheus").is_some() && plan.service("api").is_some() {
        autogit_app::metrics::ensure_scrape_key(loaded, &data.join("rendered"), clock::system())
            .map_err(|e| fail(ui, e))?;
    }
    Ok(plan)
}

/// Connects to the engine and opens the platform controller on `bus`.
async fn open(
    ui: &Ui,
    loaded: &Loaded,
    bus: &Bus,
    plan: Plan,
) -> Result<PlatformController<Docker>, u8> {
    let engine = Docker::connect(loaded.socket(), &loaded.env)
        .await
        .map_err(|e| fail(ui, e))?;
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
    // The plan's diagnostics are reported here; `deploy` plans again, quietly.
    let plan = match make_plan(ui, g, loaded) {
        Some(p) => p,
        None => return exit::INVALID_CONFIG,
    };
    let has_gitlab = plan.service("gitlab").is_some();
    runtime().block_on(async {
        let (bus, sinks) = command_bus(ui, loaded);
        let code = install_on(ui, loaded, &bus, wait, bootstrap && has_gitlab).await;
        sinks.finish(bus, Duration::from_secs(10)).await;
        code
    })
}

async fn install_on(ui: &Ui, loaded: &Loaded, bus: &Bus, wait: Dur, bootstrap: bool) -> u8 {
    let pull = crate::ui::pull_progress(ui);
    let start = Instant::now();
    let spinner = crate::ui::spinner(ui);
    let outcome = deploy(loaded.settings.clone(), bus, wait.0, &pull, |p| match p {
        DeployProgress::Engine(e) => spinner.suspend(|| ui.note(&format!("engine: {e}"))),
        DeployProgress::Wait(InstallProgress::ActionFailed { service, error }) => {
            spinner.suspend(|| ui.error(&format!("{service}: {error}")));
        }
        DeployProgress::Wait(InstallProgress::States(states)) => {
            let line = states
                .iter()
                .map(|(s, st)| format!("{s}: {st}"))
                .collect::<Vec<_>>()
                .join(", ");
            if ui.quiet {
            } else if spinner.is_hidden() {
                eprintln!("[{:>4}s] {line}", start.elapsed().as_secs());
            } else {
                spinner.set_message(format!("waiting for health: {line}"));
            }
        }
    })
    .await;
    spinner.finish_and_clear();
    match outcome {
        Err(e) => fail(
            ui,
            format!(
                "{e}; run `autogit install` again once it is fixed: it resumes where it stopped"
            ),
        ),
        Ok(InstallOutcome::Healthy { services, after }) => {
            ui.note(&format!(
                "installed: {services} service(s) healthy after {}s",
                after.as_secs()
            ));
            if bootstrap {
                return bootstrap_gitlab(ui, loaded).await;
            }
            exit::OK
        }
        Ok(InstallOutcome::Started) => {
            ui.note("containers started; `autogit status` shows when they are healthy");
            if bootstrap {
                ui.note("once GitLab is healthy, `autogit gitlab bootstrap` creates its users and tokens");
            }
            exit::OK
        }
        Ok(InstallOutcome::GaveUp { service, .. }) => {
            // The same refusal twice in a row will not fix itself by waiting.
            ui.error(&format!("giving up: {service} keeps failing with the error above; fix it and run `autogit install` again"));
            exit::FAILURE
        }
        Ok(InstallOutcome::NotHealthy { states, logs }) => {
            let line = states
                .iter()
                .map(|(s, st)| format!("{s}: {st}"))
                .collect::<Vec<_>>()
                .join(", ");
            ui.error(&format!("not healthy after {wait}: {line}"));
            for (svc, lines) in logs {
                eprintln!("last log lines of {svc}:");
                for l in lines {
                    eprintln!("  {svc} | {l}");
                }
            }
            exit::FAILURE
        }
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
        let platform = match open(ui, loaded, &bus, plan).await {
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
        let code = match open(ui, loaded, &bus, plan).await {
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

pub fn systemd_unit(loaded: &Loaded) -> String {
    autogit_app::service::unit(loaded)
}

/// After a successful install: `autogit daemon` as a systemd service, so that nothing else is
/// needed (`autogit_app::service`). Never fails the install: without systemd, or when
/// systemctl refuses, it says what to run instead.
pub fn ensure_service(ui: &Ui, loaded: &Loaded) {
    use autogit_drivers::systemd::ServiceError;
    let manual = "run `autogit daemon` under your init system (`autogit daemon --print-systemd-unit` prints a unit)";
    match autogit_app::service::ensure(loaded) {
        Ok(i) => ui.note(&format!(
            "autogit daemon runs as the systemd service autogit.service ({}; `{} status autogit` shows it){}",
            i.unit.display(),
            i.scope,
            if i.scope.contains("--user") { "; `loginctl enable-linger` keeps it running after you log out" } else { "" }
        )),
        Err(ServiceError::NoSystemd) => ui.note(&format!("no systemd here: {manual}")),
        // Not an install failure, but the user must act: shown even with --quiet.
        Err(e) => ui.error(&format!("{e}, or {manual}")),
    }
}

pub fn daemon(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    print_unit: bool,
    api_listen: Option<std::net::SocketAddr>,
) -> u8 {
    if print_unit {
        print!("{}", systemd_unit(loaded));
        return exit::OK;
    }
    let plan = match ready(ui, g, loaded) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let telemetry = crate::ui::init_json_log(ui, loaded);
    let code = runtime().block_on(async {
        let clock = clock::system();
        let bus = Bus::new(clock.clone());
        let sinks = Sinks::all(&bus, loaded);
        let platform = match open(ui, loaded, &bus, plan).await {
            Ok(p) => p,
            Err(code) => return code,
        };
        let (trigger, shutdown) = autogit_app::supervisor::shutdown();
        let api = match api_listen {
            Some(addr) => match api_in_process(ui, loaded, &bus, addr, &shutdown).await {
                Ok(task) => Some(task),
                Err(code) => return code,
            },
            None => None,
        };
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
        if let Some(api) = api {
            // Fired by the signal, or by a failed state check: the server drains and stops.
            let _ = api.await;
        }
        drop(platform);
        sinks.finish(bus, Duration::from_secs(5)).await;
        match result {
            Ok(()) => {
                ui.note("autogit daemon: stopped");
                exit::OK
            }
            Err(e) => fail(ui, format!("autogit daemon stopped: {e}")),
        }
    });
    if let Some(t) = telemetry {
        t.shutdown();
    }
    code
}

/// `daemon --api-listen`: `autogit serve` in the daemon's process, publishing on (and
/// streaming `/api/v1/events` from) the daemon's bus; it stops with the daemon.
async fn api_in_process(
    ui: &Ui,
    loaded: &Loaded,
    bus: &Bus,
    addr: std::net::SocketAddr,
    shutdown: &autogit_app::supervisor::Shutdown,
) -> Result<tokio::task::JoinHandle<()>, u8> {
    use autogit_api::server::{Api, ServeOptions, serve};
    let clock = bus.clock().clone();
    let access = autogit_app::access::AccessController::open(loaded, clock.clone())
        .map_err(|e| fail(ui, format!("API keys: {e}")))?;
    access.register_extensions(loaded).await;
    let audit = autogit_app::audit::AuditLog::open(loaded, clock)
        .map_err(|e| fail(ui, format!("audit log: {e}")))?;
    let api = Api::new(
        loaded.settings.clone(),
        bus.clone(),
        access,
        audit,
        ServeOptions::default(),
    )
    .map_err(|e| fail(ui, e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| fail(ui, format!("--api-listen {addr}: cannot listen: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    ui.note(&format!(
        "autogit daemon: API on http://{bound} (OpenAPI at /api/v1/openapi.json)"
    ));
    let stop = shutdown.clone();
    Ok(tokio::spawn(serve(
        listener,
        std::sync::Arc::new(api),
        async move { stop.wait().await },
    )))
}
