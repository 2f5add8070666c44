//! The runner controller: runner hosts reached over SSH (`drivers::remote`), their health and
//! inventory (recorded in the state store, with the last inventory a host reported kept while
//! it is unreachable), and on-demand runners: GitLab's pending and running jobs decide
//! (`core::ondemand`) whether each registered runner's container runs on its host.

pub mod discover;
pub mod local_proxy;
pub mod prepare;
pub mod register;
pub mod repair;
pub mod status;

pub use prepare::{HostToolkit, Prepared, StepRun};
pub use register::{Registration, RunnerError, Unregistered, client_for, create_instance_runner};
pub use repair::{RepairReport, RepairRow};

use crate::{Bus, Event, Settings, SharedClock};
use autogit_core::inventory::Inventory;
use autogit_core::ondemand::{
    Action, ScaleInput, parse_replicas, plan_scale, quit_argv, remove_argv, replicas_argv,
    runner_takes, start_replica_argv,
};
use autogit_drivers::extension::{ExtensionCompute, ExtensionExec};
use autogit_drivers::remote::inventory::probe;
use autogit_drivers::remote::{Host, RemoteExec};
use autogit_drivers::state::{HostRow, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One host's health as `runner health` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct HostHealth {
    pub host: String,
    pub runners: Vec<String>,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the host reported now; when it is unreachable, `None` here and the last report in
    /// `last_inventory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    #[serde(skip)]
    pub last_inventory: Option<Inventory>,
    pub checked_at: i64,
}

impl HostHealth {
    /// The container engine the host reported (`docker 27.3.1`), if any.
    pub fn engine(&self) -> Option<String> {
        let e = self.inventory.as_ref()?.engine.as_ref()?;
        let kind = match e.kind {
            autogit_core::inventory::EngineKind::Docker => "docker",
            autogit_core::inventory::EngineKind::Podman => "podman",
        };
        Some(format!("{kind} {}", e.version))
    }

    /// What else is worth saying: the error, the CUDA version, WSL2, the probe's problems.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.error.iter().cloned().collect();
        if let Some(i) = &self.inventory {
            notes.extend(i.cuda.as_ref().map(|c| format!("CUDA {c}")));
            if i.wsl2 {
                notes.push("WSL2".into());
            }
            notes.extend(i.problems.iter().cloned());
        }
        notes
    }
}

/// One runner in an autoscale pass.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub runner: String,
    pub host: String,
    /// Pending or running jobs it could take.
    pub jobs: usize,
    /// Of those, the ones waiting.
    pub pending: usize,
    pub was_running: bool,
    /// Its containers running before the pass, and how many it runs after.
    pub containers: usize,
    pub target: usize,
    pub action: Action,
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct RunnerController {
    settings: Arc<Settings>,
    bus: Bus,
    clock: SharedClock,
    /// How hosts are reached when not as the settings say (tests: the SSH lab's namespace).
    ssh: Option<autogit_drivers::remote::ssh::SshConfig>,
    /// The `compute` extensions started for hosts `extension:NAME/HOST`, by name.
    pools: tokio::sync::Mutex<BTreeMap<String, Arc<ExtensionCompute>>>,
}

/// A registered runner as the on-demand autoscaler sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OnDemandRow {
    pub runner: String,
    pub host: String,
    pub gpu: bool,
    /// `runners.mode: on-demand` (else always running).
    pub on_demand: bool,
    /// Since when it has had no job (unix seconds); `None` while it has work or never ran.
    pub idle_since: Option<i64>,
    /// When the cooldown stops it, if nothing comes (on-demand only).
    pub stops_at: Option<i64>,
}

impl RunnerController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            settings,
            bus,
            clock,
            ssh: None,
            pools: Default::default(),
        }
    }

    /// A controller of its own for a one-off command: the system clock, and a bus nobody
    /// else listens to.
    pub fn standalone(settings: Arc<Settings>) -> Self {
        let clock = crate::clock::system();
        Self::new(settings, Bus::new(clock.clone()), clock)
    }

    /// The same controller reaching hosts with `cfg` instead of [`Settings::ssh_config`].
    pub fn with_ssh_config(mut self, cfg: autogit_drivers::remote::ssh::SshConfig) -> Self {
        self.ssh = Some(cfg);
        self
    }

    /// How hosts are reached: SSH with autogit's known_hosts under the data directory.
    pub fn ssh_config(&self) -> autogit_drivers::remote::ssh::SshConfig {
        self.ssh
            .clone()
            .unwrap_or_else(|| self.settings.ssh_config())
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The configured runners, each `host: auto` replaced by the host discovery resolved for
    /// it (recorded in the state store by [`Self::resolve_auto`]; left `auto` until then).
    /// Every workflow that needs a runner's host reads it here.
    pub fn runners(&self) -> Vec<autogit_core::config::Runner> {
        let resolved = self.resolutions();
        self.settings
            .config
            .all_runners()
            .map(|r| {
                let mut r = r.clone();
                if r.host == "auto"
                    && let Some(h) = resolved.get(&r.name)
                {
                    r.host = h.clone();
                }
                r
            })
            .collect()
    }

    /// The host of runner `name` ([`Self::runners`]); `host: auto` not resolved yet is an error
    /// that says to run discovery.
    pub fn host_of(&self, name: &str) -> Result<String, RunnerError> {
        match self.runners().into_iter().find(|r| r.name == name) {
            Some(r) if r.host == "auto" => Err(RunnerError::NotDiscovered {
                name: name.to_owned(),
            }),
            Some(r) => Ok(r.host),
            None => Err(RunnerError::Failed(format!("no runner named `{name}`"))),
        }
    }

    /// The runners registered on their (known) host, as configured.
    /// Each registered runner with its on-demand state: since when it has had no job (from
    /// the autoscale pass's record) and when the cooldown stops it.
    pub fn on_demand(&self) -> Result<Vec<OnDemandRow>, String> {
        let idle: BTreeMap<String, i64> =
            std::fs::read(self.settings.data_dir.join("state/runner-idle.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
        let cfg = &self.settings.config.runners;
        let on_demand = cfg.mode == autogit_core::config::RunnerMode::OnDemand;
        let cooldown = cfg.cooldown.as_secs() as i64;
        Ok(self
            .registered()?
            .into_iter()
            .map(|r| {
                let idle_since = idle.get(&r.name).copied();
                OnDemandRow {
                    gpu: cfg.gpu.iter().any(|g| g.name == r.name),
                    on_demand,
                    idle_since,
                    stops_at: idle_since.filter(|_| on_demand).map(|t| t + cooldown),
                    runner: r.name,
                    host: r.host,
                }
            })
            .collect())
    }

    pub fn registered(&self) -> Result<Vec<autogit_core::config::Runner>, String> {
        let registered: Vec<String> = self
            .store()?
            .registrations()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|r| r.state == "registered")
            .map(|r| r.name)
            .collect();
        Ok(self
            .runners()
            .into_iter()
            .filter(|r| registered.contains(&r.name) && r.host != "auto")
            .collect())
    }

    /// Where discovery placed each `host: auto` runner: its row in the state store's runner
    /// registrations (state `discovered` until it is registered there). Read without creating
    /// the database.
    fn resolutions(&self) -> BTreeMap<String, String> {
        let path = self.settings.state_db();
        if !path.exists() {
            return BTreeMap::new();
        }
        Store::open(&path)
            .and_then(|s| s.registrations())
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.name, r.host))
            .collect()
    }

    /// Whether any runner is configured.
    pub fn any(&self) -> bool {
        self.settings.config.all_runners().next().is_some()
    }

    /// The distinct hosts of the configured runners, with the runners on each and the SSH user.
    pub fn configured_hosts(&self) -> Vec<(String, Option<String>, Vec<String>)> {
        let mut out: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
        for r in self.runners() {
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

    /// How to run commands on `host`: SSH with the user of its runners, this machine, or, for
    /// `extension:NAME/HOST`, the `compute` extension NAME (started on first use, and again
    /// after it failed).
    pub async fn remote(&self, host: &str) -> Result<Host, String> {
        let user = self
            .runners()
            .into_iter()
            .find(|r| r.host == host)
            .and_then(|r| r.user);
        self.remote_as(host, user.as_deref()).await
    }

    /// [`Self::remote`] as `user` (over SSH).
    pub async fn remote_as(&self, host: &str, user: Option<&str>) -> Result<Host, String> {
        match autogit_core::remote::via_extension(host) {
            Some((name, target)) => {
                let pool = self.pool(name).await?;
                Ok(Host::Extension(ExtensionExec::new(pool, target)))
            }
            None => Host::new(&self.ssh_config(), host, user).map_err(|e| e.to_string()),
        }
    }

    /// A configured host as [`Self::remote_as`] reaches it; one still `auto` (not placed by
    /// discovery) is not reached at all.
    async fn configured(&self, host: &str, user: Option<&str>) -> Result<Host, String> {
        if host == "auto" {
            return Err("not discovered yet (`host: auto`)".to_owned());
        }
        self.remote_as(host, user).await
    }

    /// The running `compute` extension `name`, started if it is not (or no longer) running.
    async fn pool(&self, name: &str) -> Result<Arc<ExtensionCompute>, String> {
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(name).filter(|p| p.alive()) {
            return Ok(p.clone());
        }
        let registry = crate::extensions::Registry::load(&self.settings)?;
        let started = registry
            .compute_extension(name, &self.settings, self.ssh_config().command_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let pool = Arc::new(started);
        pools.insert(name.to_owned(), pool.clone());
        Ok(pool)
    }

    fn store(&self) -> Result<Store, String> {
        self.settings.ensure_data_dir()?;
        Store::open(&self.settings.state_db()).map_err(|e| e.to_string())
    }

    /// Each configured runner's containers running on its host now (`replicas_argv`: one
    /// command per runner, all at once), with the time of the look (unix seconds). Read-only:
    /// nothing is recorded or published (`export --from running`). `Err`: the host did not
    /// answer, or its engine refused (the message).
    pub async fn running_containers(&self) -> (i64, BTreeMap<String, Result<u32, String>>) {
        let mut set = tokio::task::JoinSet::new();
        for r in self.runners() {
            let host = self.configured(&r.host, r.user.as_deref()).await;
            set.spawn(async move {
                let seen = async {
                    let out = host?
                        .run(&replicas_argv(&r))
                        .await
                        .map_err(|e| e.to_string())?;
                    if !out.success() {
                        let why = out.stderr.trim().lines().last().unwrap_or("").to_owned();
                        return Err(if why.is_empty() {
                            match out.code {
                                Some(c) => format!("listing its containers exited with {c}"),
                                None => "listing its containers was killed".to_owned(),
                            }
                        } else {
                            why
                        });
                    }
                    let up = parse_replicas(&r.name, &out.stdout)
                        .iter()
                        .filter(|(_, up)| *up)
                        .count();
                    Ok(up as u32)
                }
                .await;
                (r.name, seen)
            });
        }
        let mut seen = BTreeMap::new();
        while let Some(Ok((name, r))) = set.join_next().await {
            seen.insert(name, r);
        }
        (self.clock.now() as i64, seen)
    }

    /// Probes every configured host (concurrently), records what it found, and publishes a
    /// host that stops or starts answering. An unreachable host keeps its last inventory in
    /// the store (the scheduler still knows what it can run).
    pub async fn probe_all(&self) -> Vec<HostHealth> {
        let hosts = self.configured_hosts();
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, user, _)) in hosts.iter().enumerate() {
            let host = self.configured(name, user.as_deref()).await;
            set.spawn(async move {
                let r = match host {
                    Ok(h) => probe(&h).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                (i, r)
            });
        }
        let mut results: Vec<Option<Result<Inventory, String>>> = vec![None; hosts.len()];
        while let Some(Ok((i, r))) = set.join_next().await {
            results[i] = Some(r);
        }
        let at = self.clock.now() as i64;
        let unreachable_after = self.settings.config.compute.unreachable_after.max(1);
        let store = self.store().ok();
        let before: BTreeMap<String, HostRow> = store
            .as_ref()
            .and_then(|s| s.hosts().ok())
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.host.clone(), r))
            .collect();
        hosts
            .into_iter()
            .zip(results)
            .map(|((host, _, runners), r)| {
                let r = r.unwrap_or_else(|| Err("the probe did not finish".to_owned()));
                let prev = before.get(&host);
                let last_inventory = match &r {
                    Ok(inv) => Some(inv.clone()),
                    Err(_) => prev
                        .and_then(|p| p.inventory.as_deref())
                        .and_then(|t| serde_json::from_str(t).ok()),
                };
                // Unreachable after `compute.unreachable_after` missed probes in a row, as
                // its jobs' leases count them (`core::lease`): one event when it gets there,
                // one when it answers again.
                let missed_before = prev.map_or(0, |p| p.missed);
                let missed = if r.is_ok() {
                    0
                } else {
                    missed_before.saturating_add(1)
                };
                match &r {
                    Err(e) if host != "auto" && missed == unreachable_after => {
                        self.bus.publish(Event::HostUnreachable {
                            host: host.clone(),
                            error: e.clone(),
                        });
                    }
                    Ok(_) if missed_before >= unreachable_after => self
                        .bus
                        .publish(Event::HostReachable { host: host.clone() }),
                    _ => {}
                }
                let h = HostHealth {
                    host,
                    runners,
                    reachable: r.is_ok(),
                    error: r.as_ref().err().cloned(),
                    inventory: r.ok(),
                    last_inventory,
                    checked_at: at,
                };
                // `auto` is no host: nothing to remember about it.
                if let Some(s) = store.as_ref().filter(|_| h.host != "auto") {
                    let _ = s.record_host(&HostRow {
                        host: h.host.clone(),
                        checked_at: at,
                        reachable: h.reachable,
                        inventory: h
                            .last_inventory
                            .as_ref()
                            .and_then(|i| serde_json::to_string(i).ok()),
                        error: h.error.clone(),
                        missed,
                    });
                }
                h
            })
            .collect()
    }

    /// One pass over the registered runners: demand from GitLab's pending and running jobs
    /// (`gitlab_url`, with the token `core::runner::token_for` names: the admin token), the decision from `core::ondemand`, the
    /// container started or stopped on the runner's host. When each runner became idle is
    /// kept in `<data>/state/runner-idle.json`. Starts and stops are published.
    pub async fn autoscale_pass(&self, gitlab_url: &str) -> Result<Vec<ScaleRow>, String> {
        let data = &self.settings.data_dir;
        let store = self.store()?;
        let runners = self.registered()?;
        if runners.is_empty() {
            return Ok(Vec::new());
        }
        let client = client_for(
            &self.settings,
            autogit_core::runner::GitLabOp::ListAllActiveJobs,
            gitlab_url,
        )?;
        let jobs = client
            .active_jobs()
            .await
            .map_err(|e| format!("listing pending jobs: {e}"))?;
        let idle_file = data.join("state/runner-idle.json");
        let mut idle: BTreeMap<String, i64> = std::fs::read(&idle_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let cfg = &self.settings.config.runners;
        let cooldown = cfg.cooldown.as_secs() as i64;
        let mut rows = Vec::new();
        for r in &runners {
            let theirs = || jobs.iter().filter(|j| runner_takes(r, &j.tag_list));
            let demand = theirs().count();
            let pending = theirs().filter(|j| j.status == "pending").count();
            let mut row = ScaleRow {
                runner: r.name.clone(),
                host: r.host.clone(),
                jobs: demand,
                pending,
                was_running: false,
                containers: 0,
                target: 0,
                action: Action::Keep,
                error: None,
            };
            if let Some(reason) = self.flagged(&store, &r.name) {
                // Hands off, as for a flagged service: `reconcile --clear runner-<name>`.
                row.error = Some(format!("left alone: {reason}"));
                rows.push(row);
                continue;
            }
            let result: Result<(), String> = async {
                let host = self.remote(&r.host).await?;
                let run = |argv: Vec<String>| {
                    let host = &host;
                    async move {
                        let out = host.run(&argv).await.map_err(|e| e.to_string())?;
                        if out.success() {
                            Ok(out.stdout)
                        } else {
                            Err(out.stderr.trim().lines().last().unwrap_or("").to_owned())
                        }
                    }
                };
                let listed = run(replicas_argv(r))
                    .await
                    .map_err(|e| format!("listing the runner containers: {e}"))?;
                let replicas = parse_replicas(&r.name, &listed);
                // Replicas that exited finished a graceful stop (or died): removed. The
                // first one is the repair loop's when it dies.
                for (i, _) in replicas.iter().filter(|(i, up)| !up && *i > 0) {
                    run(remove_argv(r, *i)).await?;
                }
                let up: Vec<u32> = replicas
                    .iter()
                    .filter(|(_, up)| *up)
                    .map(|(i, _)| *i)
                    .collect();
                row.containers = up.len();
                row.was_running = !up.is_empty();
                let plan = plan_scale(ScaleInput {
                    mode: cfg.mode,
                    running: up.len() as u32,
                    pending: pending as u32,
                    active: (demand - pending) as u32,
                    concurrent: r.concurrent,
                    min: r.min,
                    max: r.max,
                    surplus_since: idle.get(&r.name).copied(),
                    now: self.clock.now() as i64,
                    cooldown,
                });
                row.target = plan.target as usize;
                match plan.surplus_since {
                    Some(t) => idle.insert(r.name.clone(), t),
                    None => idle.remove(&r.name),
                };
                let target = plan.target as usize;
                if target > up.len() {
                    row.action = Action::Start;
                    let free = (0..r.max.max(plan.target)).filter(|i| !up.contains(i));
                    for i in free.take(target - up.len()) {
                        run(start_replica_argv(r, i, &cfg.image, &cfg.isolation)).await?;
                    }
                } else if target < up.len() {
                    row.action = Action::Stop;
                    // The highest first; the first replica last.
                    for &i in up.iter().rev().take(up.len() - target) {
                        if target == 0 {
                            // No job left anywhere: removed at once.
                            run(remove_argv(r, i)).await?;
                        } else {
                            // Jobs may run on it: gitlab-runner finishes them, then exits.
                            run(quit_argv(r, i)).await?;
                        }
                    }
                } else {
                    return Ok(());
                }
                self.bus.publish(Event::RunnerScaled {
                    runner: r.name.clone(),
                    host: r.host.clone(),
                    action: format!("{:?}", row.action).to_ascii_lowercase(),
                    jobs: demand,
                    containers: up.len(),
                    target,
                });
                Ok(())
            }
            .await;
            if let Err(e) = result {
                self.bus.publish(Event::RunnerScaleFailed {
                    runner: Some(r.name.clone()),
                    host: Some(r.host.clone()),
                    error: e.clone(),
                });
                row.error = Some(e);
            }
            rows.push(row);
        }
        autogit_drivers::fsx::write_atomic(
            &idle_file,
            &serde_json::to_vec(&idle).unwrap_or_default(),
            0o600,
        )
        .map_err(|e| e.to_string())?;
        Ok(rows)
    }
}
