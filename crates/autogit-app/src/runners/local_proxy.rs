//! The engine proxy of this machine's runners, served by `autogit daemon`
//! (`drivers::engine_proxy`, as `autogit runner engine-proxy` serves it on a remote host).

use super::RunnerController;

impl RunnerController {
    /// Serves the engine proxy for this machine's runners (`host: local`) at
    /// `runners.isolation.proxy_socket`, in front of the configured engine socket (else
    /// `/var/run/docker.sock`), until `stop` resolves: what `autogit runner engine-proxy` is
    /// on a remote runner host, `autogit daemon` is here. Returns at once when no registered
    /// local runner runs in a container or `runners.isolation.engine` is `socket`; an error
    /// when the socket cannot be bound (the on-demand start then says that no proxy listens).
    pub async fn serve_local_engine_proxy(
        &self,
        stop: impl Future<Output = ()>,
    ) -> Result<(), String> {
        use autogit_core::config::{EngineAccess, Executor};
        let cfg = &self.settings.config.runners;
        let local: Vec<autogit_core::config::Runner> = self
            .registered()?
            .into_iter()
            .filter(|r| r.host == "local" && r.executor != Executor::Shell)
            .collect();
        if local.is_empty() || cfg.isolation.engine != EngineAccess::Proxy {
            return Ok(());
        }
        let refs: Vec<&autogit_core::config::Runner> = local.iter().collect();
        let policy = autogit_core::runner::proxy_policy(&refs, cfg.isolation.network);
        let path = std::path::PathBuf::from(&cfg.isolation.proxy_socket);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("engine proxy: creating {}: {e}", dir.display()))?;
        }
        let listener = autogit_drivers::engine_proxy::bind(&path).map_err(|e| e.to_string())?;
        let engine = self
            .settings
            .socket()
            .map_or_else(|| "/var/run/docker.sock".into(), std::path::Path::to_owned);
        tokio::select! {
            () = autogit_drivers::engine_proxy::serve(listener, engine, policy) => {}
            () = stop => {}
        }
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}
