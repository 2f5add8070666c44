//! What a runner host runs for itself, `autogit runner engine-proxy` (the runner container's
//! only way to the engine, `drivers::engine_proxy` deciding with `core::engine_proxy`), and
//! what is done to a host, `autogit runner prepare` (the NVIDIA container toolkit, the
//! runner controller's `prepare`).

use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, runtime, with_controller};
use autogit_core::toolkit::Engine;
use serde_json::json;
use std::path::Path;

/// `runner engine-proxy`: listen at `listen`, forward allowed calls to `engine`, until
/// SIGTERM or Ctrl-C.
pub fn engine_proxy(ui: &Ui, listen: &Path, engine: &Path, runners: &[String], wsl2: bool) -> u8 {
    let policy = match autogit_core::engine_proxy::host_policy(runners, wsl2) {
        Ok(p) => p,
        Err(e) => {
            ui.error(&e);
            return exit::UNAVAILABLE;
        }
    };
    if !engine.exists() {
        ui.error(&format!(
            "no engine socket at {}: start the engine, or give its socket with --engine (Podman: `systemctl enable --now podman.socket`, then its path)",
            engine.display()
        ));
        return exit::FAILURE;
    }
    let rt = runtime();
    let served = rt.block_on(async {
        let listener = autogit_drivers::engine_proxy::bind(listen)?;
        ui.note(&format!(
            "engine proxy on {} for {} (networks {}); SIGTERM or Ctrl-C stops",
            listen.display(),
            engine.display(),
            policy.networks.join(", ")
        ));
        tokio::select! {
            () = autogit_drivers::engine_proxy::serve(listener, engine.to_owned(), policy) => {}
            () = crate::runner_cmd::stop_signal() => {}
        }
        Ok::<(), autogit_drivers::engine_proxy::ProxyError>(())
    });
    let _ = std::fs::remove_file(listen);
    match served {
        Ok(()) => {
            ui.note("engine proxy stopped");
            exit::OK
        }
        Err(e) => {
            ui.error(&e.to_string());
            exit::FAILURE
        }
    }
}

/// `runner prepare HOST [--check]`: the host's NVIDIA container toolkit, what is missing with
/// its fix, and (without `--check`) the `nvidia-ctk` steps run. Exit 1 while anything is
/// missing or a step failed.
pub fn prepare(ui: &Ui, loaded: &Loaded, target: &str, check: bool) -> u8 {
    if !crate::commands::report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let make = crate::runner_cmd::runners(loaded);
    let result = with_controller(loaded, make, async |r| {
        if check {
            r.toolkit(target).await.map(|t| (Vec::new(), t))
        } else {
            r.prepare(target).await.map(|p| (p.ran, p.after))
        }
    });
    let (ran, after) = match result {
        Ok(x) => x,
        Err(e) => return fail(ui, e),
    };
    let failed = ran.iter().any(|s| !s.ok);
    if ui.json {
        ui.print_json(&json!({
            "host": after.host,
            "ran": ran,
            "toolkit": after.toolkit,
            "missing": after.missing,
        }));
    } else {
        let t = &after.toolkit;
        let engine = match t.engine {
            Some(Engine::Docker) => format!("docker (runtimes: {})", t.docker_runtimes.join(", ")),
            Some(Engine::Podman) => "podman".to_owned(),
            None => "none".to_owned(),
        };
        println!(
            "{}: driver {} · nvidia-ctk {} · {engine} · CDI devices: {}{}",
            after.host,
            t.driver.as_deref().unwrap_or("none"),
            t.ctk.as_deref().unwrap_or("none"),
            if t.cdi_devices.is_empty() {
                "none".to_owned()
            } else {
                t.cdi_devices.join(", ")
            },
            if t.wsl2 { " · WSL2" } else { "" }
        );
        for s in &ran {
            if s.ok {
                println!("ran: {}", s.command);
            } else {
                println!("failed: {}: {}", s.command, s.error);
            }
        }
        if ran.is_empty() && !check && after.missing.is_empty() {
            ui.note("nothing to do: the host is ready for GPU containers");
        }
        for m in &after.missing {
            println!("missing {}: {}", m.what, m.why);
            for f in &m.fix {
                println!("  {f}");
            }
            if m.prepare_does_it && check {
                println!("  (`autogit runner prepare {target}` does this)");
            }
        }
    }
    if failed || !after.missing.is_empty() {
        exit::FAILURE
    } else {
        exit::OK
    }
}
