//! Runner registration and unregistration: GitLab creates the runner (its `glrt-` token goes
//! to the secret store), `gitlab-runner register` runs on the runner's host with the token on
//! stdin, and the rendered `config.toml` (`core::runner::config_toml_on`: Podman's socket,
//! WSL2's `/dev/dxg` and `/usr/lib/wsl`, NVIDIA GPUs) is written into the runner's
//! configuration volume, also from stdin. Every step is recorded in the state store, so a
//! failed step is finished by running the command again, never repeated from the start.

use super::RunnerController;
use crate::{Event, Settings};
use autogit_core::config::{Executor, Runner};
use autogit_core::inventory::EngineKind;
use autogit_core::runner::{
    GitLabOp, RunnerAuth, TokenChoice, config_toml_on, runner_volume, token_for,
};
use autogit_drivers::gitlab::bootstrap::account_token_secret;
use autogit_drivers::gitlab::client::{GitLabClient, GitLabError};
use autogit_drivers::remote::inventory::probe;
use autogit_drivers::remote::{RemoteExec, register as remote_register};
use autogit_drivers::secrets::SecretStore;
use autogit_drivers::state::RegistrationRow;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// gitlab-runner's `check_interval` in the rendered configuration (its own default).
pub const CHECK_INTERVAL_SECS: u32 = 3;

/// What can go wrong in a runner workflow. Messages say what to do; none carries a token.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "no runner named `{target}` and no runner on a host `{target}` in the configuration (configured: {configured})"
    )]
    Unknown { target: String, configured: String },
    #[error("runner `{name}` has `host: auto` and has not been discovered; set its host")]
    NotDiscovered { name: String },
    #[error(
        "{host}: no container engine answers (docker or podman); gitlab-runner runs in a container"
    )]
    NoEngine { host: String },
    #[error(
        "{detail}; GitLab runner {runner_id} exists and its token is kept: run `autogit runner register {name}` again"
    )]
    HostStep {
        name: String,
        runner_id: i64,
        detail: String,
    },
    /// Targets for discovery that cannot be expanded (a range too large, a bad address).
    #[error("{0}")]
    Targets(String),
    #[error("{0}")]
    Failed(String),
}

impl From<String> for RunnerError {
    fn from(s: String) -> Self {
        RunnerError::Failed(s)
    }
}

/// One runner's registration, as `runner register` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub name: String,
    pub host: String,
    pub runner_id: i64,
    pub state: String,
    /// False when it was registered already and nothing was done.
    pub changed: bool,
}

/// What `runner unregister` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unregistered {
    /// autogit has no registration of that name.
    NotRegistered,
    Removed {
        runner_id: i64,
        /// The runner is no longer configured: its container and volume on this host were
        /// left alone.
        left_on_host: Option<String>,
    },
}

impl RunnerController {
    /// The runners `runner register TARGET` means: the runner named `target`, else every
    /// runner configured on the host `target` (the spec's `runner register <host>`).
    pub fn register_targets(&self, target: &str) -> Result<Vec<Runner>, RunnerError> {
        let all = self.runners();
        if let Some(r) = all.iter().find(|r| r.name == target) {
            return Ok(vec![r.clone()]);
        }
        let on_host: Vec<Runner> = all.iter().filter(|r| r.host == target).cloned().collect();
        if !on_host.is_empty() {
            return Ok(on_host);
        }
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        Err(RunnerError::Unknown {
            target: target.to_owned(),
            configured: if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            },
        })
    }

    /// `runner register TARGET`: registers each runner [`Self::register_targets`] names, one
    /// after the other; each has its own outcome.
    pub async fn register_target(
        &self,
        target: &str,
        gitlab_url: &str,
        runner_url: Option<&str>,
    ) -> Result<Vec<Result<Registration, RunnerError>>, RunnerError> {
        let names: Vec<String> = self
            .register_targets(target)?
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let mut out = Vec::new();
        for n in names {
            out.push(self.register(&n, gitlab_url, runner_url).await);
        }
        Ok(out)
    }

    /// Registers the runner `name`: a GitLab runner is created (once: a token minted by an
    /// earlier attempt that failed on the host is reused), `gitlab-runner register` runs on
    /// its host, then the rendered `config.toml` replaces the one it wrote. `gitlab_url` is
    /// how autogit reaches GitLab; `runner_url` how the runner does (default
    /// `gitlab.external_url`).
    pub async fn register(
        &self,
        name: &str,
        gitlab_url: &str,
        runner_url: Option<&str>,
    ) -> Result<Registration, RunnerError> {
        let runner = match self.register_targets(name)?.as_slice() {
            [r] if r.name == name => r.clone(),
            _ => {
                return Err(RunnerError::Failed(format!(
                    "`{name}` is a host, not a runner name: register its runners one by one"
                )));
            }
        };
        if runner.host == "auto" {
            return Err(RunnerError::NotDiscovered {
                name: name.to_owned(),
            });
        }
        let store = self.store()?;
        let previous = store
            .registrations()
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.name == name && r.host == runner.host && r.state != "discovered");
        // Its scope in GitLab: its tags and capabilities, protected refs only or not.
        let tags = runner.gitlab_tags();
        if let Some(row) = previous.as_ref().filter(|r| r.state == "registered") {
            // Registered: only the scope can have changed in the file; set it in place.
            let changed = crate::gitlab::GitLabController::new(
                self.settings.clone(),
                Some(gitlab_url.to_owned()),
            )
            .sync_runner_scope(row.runner_id as u64, &row.secret, &tags, runner.protected)
            .await
            .map_err(RunnerError::Failed)?;
            return Ok(registration(row, changed));
        }
        let host = self.remote(&runner.host).await?;
        let inv = probe(&host).await.map_err(|e| e.to_string())?;
        let engine = match inv.engine.map(|e| e.kind) {
            Some(EngineKind::Docker) => "docker",
            Some(EngineKind::Podman) => "podman",
            None => {
                return Err(RunnerError::NoEngine {
                    host: runner.host.clone(),
                });
            }
        };
        let secrets = SecretStore::open(&self.settings.data_dir).map_err(|e| e.to_string())?;
        let reuse = previous
            .as_ref()
            .and_then(|r| Some((r, secrets.get(&r.secret).ok()??)));
        let (runner_id, secret, token) = match reuse {
            Some((r, t)) => (r.runner_id, r.secret.clone(), t),
            None => {
                let (id, secret, token) = create_instance_runner(
                    &self.settings,
                    gitlab_url,
                    &tags,
                    runner.protected,
                    &format!("autogit {name}"),
                )
                .await?;
                (id as i64, secret, token)
            }
        };
        let mut row = RegistrationRow {
            name: name.to_owned(),
            host: runner.host.clone(),
            runner_id,
            secret,
            state: "token".into(),
            at: self.clock.now() as i64,
            message: String::new(),
        };
        store.set_registration(&row).map_err(|e| e.to_string())?;
        let url = runner_url.unwrap_or(&self.settings.config.gitlab.external_url);
        match self.host_step(&host, engine, &runner, url, &token).await {
            Ok(()) => {
                row.state = "registered".into();
                row.at = self.clock.now() as i64;
                store.set_registration(&row).map_err(|e| e.to_string())?;
                self.bus.publish(Event::RunnerRegistered {
                    runner: name.to_owned(),
                    host: row.host.clone(),
                    runner_id,
                });
                Ok(registration(&row, true))
            }
            Err(detail) => {
                row.message = detail.clone();
                let _ = store.set_registration(&row);
                self.bus.publish(Event::RunnerRegistrationFailed {
                    runner: name.to_owned(),
                    host: row.host.clone(),
                    error: detail.clone(),
                });
                Err(RunnerError::HostStep {
                    name: name.to_owned(),
                    runner_id,
                    detail,
                })
            }
        }
    }

    /// `gitlab-runner register` on the host, then the rendered `config.toml` into the
    /// runner's volume (Podman's socket as found on the host). The token reaches both on
    /// stdin only.
    async fn host_step<R: RemoteExec>(
        &self,
        host: &R,
        engine: &str,
        runner: &Runner,
        url: &str,
        token: &SecretString,
    ) -> Result<(), String> {
        let image = &self.settings.config.runners.image;
        let failed = |what: &str, o: &autogit_drivers::remote::Output| {
            format!(
                "{what} failed on {} (exit {:?}): {}",
                runner.host,
                o.code,
                o.stderr.trim().lines().last().unwrap_or("")
            )
        };
        let out = remote_register::register(host, engine, runner, image, url, token)
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(failed("gitlab-runner register", &out));
        }
        let socket = match runner.executor {
            Executor::Podman => Some(
                remote_register::podman_socket(host)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let auth = RunnerAuth {
            url: url.to_owned(),
            token: token.expose_secret().to_owned(),
        };
        let text = SecretString::from(config_toml_on(
            &self.settings.config.runners,
            &[(runner, auth)],
            CHECK_INTERVAL_SECS,
            socket.as_deref(),
        ));
        let out = remote_register::write_config(host, engine, &runner.name, image, &text)
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(failed("writing config.toml", &out));
        }
        Ok(())
    }

    /// Unregisters `name`: GitLab first (so the token stops working), then the host (the
    /// runner's container and configuration volume), then autogit's records. Each step
    /// tolerates what is already gone; a failed step stops with the registration kept, so
    /// running it again finishes the job.
    pub async fn unregister(
        &self,
        name: &str,
        gitlab_url: &str,
    ) -> Result<Unregistered, RunnerError> {
        let store = self.store()?;
        let Some(row) = store
            .registrations()
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.name == name && r.state != "discovered")
        else {
            return Ok(Unregistered::NotRegistered);
        };
        let secrets = SecretStore::open(&self.settings.data_dir).map_err(|e| e.to_string())?;
        // 1. GitLab: the runner and its authentication token.
        let gitlab = async {
            let client = client_for(&self.settings, GitLabOp::DeleteInstanceRunner, gitlab_url)?;
            match client.delete_runner(row.runner_id as u64).await {
                Ok(()) | Err(GitLabError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        };
        if let Err(e) = gitlab.await {
            return Err(RunnerError::Failed(format!(
                "removing GitLab runner {}: {e}; nothing else was changed",
                row.runner_id
            )));
        }
        // 2. The host: the runner's container and its configuration volume.
        let mut left_on_host = None;
        if let Some(runner) = self.runners().into_iter().find(|r| r.name == name) {
            let engine = autogit_core::ondemand::engine_of(&runner);
            let volume = runner_volume(name);
            let host = self.remote(&row.host).await.map_err(|e| {
                format!(
                    "{e}; GitLab runner {} is already removed: run this again",
                    row.runner_id
                )
            })?;
            let _ = host.run(&autogit_core::ondemand::stop_argv(&runner)).await;
            let argv: Vec<String> = [engine, "volume", "rm", "-f", &volume]
                .map(str::to_owned)
                .to_vec();
            match host.run(&argv).await {
                Ok(o) if o.success() => {}
                Ok(o) => {
                    return Err(RunnerError::Failed(format!(
                        "removing volume {volume} on {}: {}; run this again",
                        row.host,
                        o.stderr.trim()
                    )));
                }
                Err(e) => {
                    return Err(RunnerError::Failed(format!(
                        "{}: {e}; run this again",
                        row.host
                    )));
                }
            }
        } else {
            left_on_host = Some(row.host.clone());
        }
        // 3. autogit's records.
        let _ = secrets.remove(&row.secret);
        store.remove_registration(name).map_err(|e| e.to_string())?;
        self.bus.publish(Event::RunnerUnregistered {
            runner: name.to_owned(),
            host: row.host.clone(),
            runner_id: row.runner_id,
        });
        Ok(Unregistered::Removed {
            runner_id: row.runner_id,
            left_on_host,
        })
    }
}

fn registration(row: &RegistrationRow, changed: bool) -> Registration {
    Registration {
        name: row.name.clone(),
        host: row.host.clone(),
        runner_id: row.runner_id,
        state: row.state.clone(),
        changed,
    }
}

/// A GitLab client with the least-privileged stored token GitLab accepts for `op`
/// (`core::runner::token_for`): a service account's token where one suffices (the admin token
/// while that account has none stored), else the admin token, and an error that says why an
/// administrator is needed when it is missing.
pub fn client_for(settings: &Settings, op: GitLabOp, url: &str) -> Result<GitLabClient, String> {
    let store = SecretStore::open(&settings.data_dir).map_err(|e| e.to_string())?;
    match token_for(op) {
        TokenChoice::Account(name) => {
            match store
                .get(&account_token_secret(name))
                .map_err(|e| e.to_string())?
            {
                Some(t) => GitLabClient::new(url, Some(t)).map_err(|e| e.to_string()),
                None => crate::gitlab::stored_admin_client(&store, url),
            }
        }
        TokenChoice::Admin(why) => {
            crate::gitlab::stored_admin_client(&store, url).map_err(|e| format!("{e} ({why})"))
        }
    }
}

/// Creates an instance runner in GitLab (`POST /user/runners`): (runner id, secret name,
/// token). The token is in the secret store before this returns. Instance runners can only be
/// created by an administrator (GitLab's users API), so this uses the admin token, minting
/// one in the GitLab container when none works (docs/runners.md, "Tokens").
pub async fn create_instance_runner(
    settings: &Settings,
    gitlab_url: &str,
    tags: &[String],
    protected: bool,
    description: &str,
) -> Result<(u64, String, SecretString), String> {
    let settings = std::sync::Arc::new(settings.clone());
    crate::gitlab::GitLabController::new(settings, Some(gitlab_url.to_owned()))
        .instance_runner(tags, protected, description)
        .await
}
