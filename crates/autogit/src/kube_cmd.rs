//! `install`, `status` and `reconcile` with `--target kubernetes`: each finds the kubeconfig
//! context (`ctx::kube_endpoint`), calls the Kubernetes target's controller
//! (`autogit_app::kube`) and renders.

use crate::cli::{Global, TargetArgs};
use crate::commands::make_plan;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, parse_wait, runtime};
use autogit_app::kube::{KubeController, KubeInstall, KubeProgress};
use autogit_app::sinks::Sinks;
use autogit_app::{Bus, clock};
use autogit_drivers::kube::KubeClient;
use serde_json::json;
use std::time::{Duration, Instant};

/// The controller on the context's cluster, on a one-shot command's bus.
fn open(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    target: &TargetArgs,
    bus: &Bus,
    force_conflicts: bool,
) -> Result<KubeController, u8> {
    // The plan's diagnostics are reported here. A cluster's nodes run it: the preset's sizes,
    // not capped at this host's CPUs (as `export kubernetes` writes them).
    make_plan(ui, g, loaded).ok_or(exit::INVALID_CONFIG)?;
    let plan = autogit_app::plan::plan_with(loaded, None).0;
    let endpoint = crate::ctx::kube_endpoint(target.context.as_deref()).map_err(|e| fail(ui, e))?;
    let client = KubeClient::new(endpoint).map_err(|e| fail(ui, e))?;
    KubeController::open(
        loaded.settings.clone(),
        bus.clone(),
        client,
        &plan,
        force_conflicts,
    )
    .map_err(|e| fail(ui, e))
}

pub fn install(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    target: &TargetArgs,
    wait: &str,
    force_conflicts: bool,
) -> u8 {
    let Some(wait) = parse_wait(wait) else {
        return fail(
            ui,
            format!("--wait {wait}: expected a duration such as 90s, 15m or 0"),
        );
    };
    runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let sinks = Sinks::for_command(&bus, loaded);
        let code = match open(ui, g, loaded, target, &bus, force_conflicts) {
            Ok(k) => install_on(ui, &k, wait.0).await,
            Err(code) => code,
        };
        sinks.finish(bus, Duration::from_secs(10)).await;
        code
    })
}

async fn install_on(ui: &Ui, k: &KubeController, wait: Duration) -> u8 {
    let start = Instant::now();
    let quiet = ui.quiet;
    let progress = move |p: KubeProgress<'_>| {
        if quiet {
            return;
        }
        let t = start.elapsed().as_secs();
        match p {
            KubeProgress::Applied(a) => eprintln!("[{t:>4}s] applied {}", a.describe()),
            KubeProgress::Waiting { service, why } => {
                eprintln!("[{t:>4}s] waiting for {service}: {why}");
            }
            KubeProgress::Ready(service) => eprintln!("[{t:>4}s] {service} rolled out"),
        }
    };
    match k.install(wait, &progress).await {
        Err(e) => fail(
            ui,
            format!(
                "{e}; run `autogit install --target kubernetes` again once it is fixed: applying is idempotent"
            ),
        ),
        Ok(KubeInstall::Applied { objects }) => {
            ui.note(&format!(
                "applied {objects} object(s) in namespace {} of context {}; `autogit status --target kubernetes` shows the rollouts",
                k.namespace(),
                k.context()
            ));
            exit::OK
        }
        Ok(KubeInstall::Ready { workloads, after }) => {
            if ui.json {
                ui.print_json(
                    &json!({"installed": true, "workloads": workloads, "seconds": after.as_secs()}),
                );
            } else {
                ui.note(&format!(
                    "installed: {workloads} workload(s) rolled out after {}s",
                    after.as_secs()
                ));
            }
            exit::OK
        }
        Ok(KubeInstall::NotReady(list)) => {
            let line = list
                .iter()
                .map(|(s, why)| format!("{s}: {why}"))
                .collect::<Vec<_>>()
                .join(", ");
            ui.error(&format!("not rolled out after {}s: {line}", wait.as_secs()));
            exit::FAILURE
        }
    }
}

pub fn status(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    target: &TargetArgs,
    service: Option<&str>,
) -> u8 {
    runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let k = match open(ui, g, loaded, target, &bus, false) {
            Ok(k) => k,
            Err(code) => return code,
        };
        let mut rows = match k.status().await {
            Ok(r) => r,
            Err(e) => return fail(ui, e),
        };
        if let Some(s) = service {
            rows.retain(|r| r.service == s);
            if rows.is_empty() {
                return fail(ui, format!("no workload `{s}` in the Kubernetes export"));
            }
        }
        if ui.json {
            ui.print_json(
                &json!({"target": "kubernetes", "context": k.context(), "services": rows}),
            );
            return exit::OK;
        }
        let mut t = ui.table();
        t.set_header(vec![
            "SERVICE", "WORKLOAD", "READY", "ROLLOUT", "STATE", "RESTARTS",
        ]);
        for r in &rows {
            let rollout = match &r.rollout {
                None => "missing".to_owned(),
                Some(autogit_core::kube_target::Rollout::Complete) => "complete".to_owned(),
                Some(autogit_core::kube_target::Rollout::Progressing(w)) => {
                    format!("progressing: {w}")
                }
                Some(autogit_core::kube_target::Rollout::Failed(w)) => format!("failed: {w}"),
            };
            let state = match (&r.state, r.flagged) {
                (Some(s), true) => format!("{s} (flagged)"),
                (Some(s), false) => s.clone(),
                (None, _) => "-".to_owned(),
            };
            t.add_row(vec![
                r.service.clone(),
                format!("{:?}/{}", r.kind, r.name),
                format!("{}/{}", r.ready, r.replicas),
                rollout,
                state,
                r.restarts.to_string(),
            ]);
        }
        println!("{t}");
        exit::OK
    })
}

/// `daemon --target kubernetes`: the cluster's reconcile loop until SIGTERM or Ctrl-C, every
/// pass's events published (the log sink writes them as JSON lines).
pub fn daemon(ui: &Ui, g: &Global, loaded: &Loaded, target: &TargetArgs) -> u8 {
    let telemetry = crate::ui::init_json_log(ui, loaded);
    let code = runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let sinks = Sinks::all(&bus, loaded);
        let code = match open(ui, g, loaded, target, &bus, false) {
            Ok(k) => {
                ui.note(&format!(
                    "reconciling namespace {} of context {} (SIGTERM or Ctrl-C stops)",
                    k.namespace(),
                    k.context()
                ));
                let (trigger, shutdown) = autogit_app::supervisor::shutdown();
                let signals = tokio::spawn(async move {
                    let mut term = tokio::signal::unix::signal(
                        tokio::signal::unix::SignalKind::terminate(),
                    )
                    .ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
                    }
                    trigger.fire();
                });
                let clock = bus.clock().clone();
                autogit_app::daemon::run_kube(&k, &bus, &clock, &shutdown, |r| {
                    if let Err(e) = r {
                        ui.error(&e.to_string());
                    }
                })
                .await;
                signals.abort();
                exit::OK
            }
            Err(code) => code,
        };
        sinks.finish(bus, Duration::from_secs(10)).await;
        code
    });
    if let Some(t) = telemetry {
        t.shutdown();
    }
    code
}

pub fn reconcile(
    ui: &Ui,
    g: &Global,
    loaded: &Loaded,
    target: &TargetArgs,
    clear: Option<&str>,
) -> u8 {
    runtime().block_on(async {
        let bus = Bus::new(clock::system());
        let sinks = Sinks::for_command(&bus, loaded);
        let code = match open(ui, g, loaded, target, &bus, false) {
            Ok(k) => reconcile_on(ui, &k, clear).await,
            Err(code) => code,
        };
        sinks.finish(bus, Duration::from_secs(10)).await;
        code
    })
}

async fn reconcile_on(ui: &Ui, k: &KubeController, clear: Option<&str>) -> u8 {
    if let Some(svc) = clear {
        return match k.clear_flag(svc) {
            Ok(true) => {
                ui.note(&format!(
                    "cleared the human-intervention flag of `{svc}`; automatic repair is on again"
                ));
                exit::OK
            }
            Ok(false) => fail(
                ui,
                format!("no service `{svc}` in the Kubernetes target's state"),
            ),
            Err(e) => fail(ui, e),
        };
    }
    match k.reconcile_once().await {
        Ok(pass) => {
            if ui.json {
                ui.print_json(&json!({"actions": pass.actions, "errors": pass.errors.iter().map(|(s, e)| json!({"service": s, "error": e})).collect::<Vec<_>>()}));
            } else if pass.actions.is_empty() {
                ui.note("everything matches the plan");
            } else {
                for a in &pass.actions {
                    println!("{}", serde_json::to_string(a).unwrap_or_default());
                }
            }
            for (s, e) in &pass.errors {
                ui.error(&format!("{s}: {e}"));
            }
            if pass.errors.is_empty() {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Err(e) => fail(ui, e),
    }
}
