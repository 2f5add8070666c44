//! What a runner host runs for itself: `autogit runner engine-proxy` (the runner container's
//! only way to the engine, `drivers::engine_proxy` deciding with `core::engine_proxy`).

use crate::exit;
use crate::ui::{Ui, runtime};
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
