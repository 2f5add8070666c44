//! The runtime: applies a plan on a container engine and keeps it healthy.
//!
//! Each pass observes (engine + host probes), reads the store, asks
//! `autogit_core::reconcile::decide` what to do, executes the actions, and records every
//! outcome. Nothing here decides policy: that is core's job. Containers have deterministic
//! names and carry labels with the spec hash, so a pass after a crash of autogit itself (even
//! kill -9 mid-apply) adopts what exists instead of duplicating it.

use crate::engine::{
    ContainerEngine, EngineError, EngineEvent, Health as EngineHealth, Observed, PullProgress,
    RunState,
};
use crate::health::{self, ProbeResult};
use crate::notify::{Notifier, StateChange};
use crate::state::{StateError, Store};
use autogit_core::config::Config;
use autogit_core::container::{ContainerSpec, container_spec, labels, network_name, volume_name};
use autogit_core::lifecycle::{RepairAction, RepairPolicy};
use autogit_core::plan::{Mount, Placement, Plan, Probe};
use autogit_core::reconcile::{Action, Desired, Health, Input, Seen, decide};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("secret {0} is not set; put it in .env or the environment")]
    MissingSecret(String),
}

/// A probe run from the host against a published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostProbe {
    Http {
        url: String,
        status: u16,
        body: Option<String>,
    },
    Tcp {
        addr: String,
    },
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub actions: Vec<Action>,
    /// Actions that failed, as (service, message); the pass goes on with other services.
    pub errors: Vec<(String, String)>,
    /// Earliest time (unix seconds) a service asked to be looked at again.
    pub requeue_at: Option<u64>,
}

/// How long the reconcile loop waits after an engine event for the rest of its burst.
pub const EVENT_SETTLE: Duration = Duration::from_millis(10);

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug)]
pub struct Runtime<E: ContainerEngine> {
    pub engine: E,
    store: Mutex<Store>,
    pub project: String,
    pub network: String,
    pub volumes: Vec<String>,
    pub specs: Vec<ContainerSpec>,
    desired: Vec<Desired>,
    probes: BTreeMap<String, HostProbe>,
    policy: RepairPolicy,
    notifier: Notifier,
    http: reqwest::Client,
    probe_timeout: Duration,
    rng: Mutex<u64>,
    clock: Clock,
    /// service → a secret it needs that is not set; creating it fails with a clear error.
    missing_secrets: BTreeMap<String, String>,
    /// service → seconds a restart waits for it to stop ([`autogit_core::plan::Role::stop_grace_secs`]).
    stop_grace: BTreeMap<String, u32>,
}

/// Where the runtime gets the time (unix seconds); tests drive it by hand.
pub struct Clock(pub Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl<E: ContainerEngine> Runtime<E> {
    /// `rendered_dir` must be absolute (bind mounts). `secrets` holds the values of every
    /// `secret_env` the plan names; a missing one makes `prepare` fail before anything is
    /// created (and creating that service fail), while `down` and observation still work.
    pub fn new(
        engine: E,
        store: Store,
        plan: &Plan,
        config: &Config,
        rendered_dir: &str,
        secrets: &BTreeMap<String, String>,
        notifier: Notifier,
    ) -> Result<Self, RuntimeError> {
        let mut specs = Vec::new();
        let mut desired = Vec::new();
        let mut probes = BTreeMap::new();
        let mut volumes = Vec::new();
        let mut missing_secrets = BTreeMap::new();
        let mut stop_grace = BTreeMap::new();
        for s in plan
            .services
            .iter()
            .filter(|s| s.placement == Placement::Local && !s.on_demand)
        {
            if let Some(missing) = s.secret_env.iter().find(|k| !secrets.contains_key(*k)) {
                missing_secrets.insert(s.name.clone(), missing.clone());
            }
            stop_grace.insert(s.name.clone(), s.role.stop_grace_secs());
            let spec = container_spec(plan, s, rendered_dir, secrets);
            desired.push(Desired {
                service: s.name.clone(),
                spec_hash: spec
                    .labels
                    .get(labels::SPEC_HASH)
                    .cloned()
                    .unwrap_or_default(),
                start_period_secs: s.health.as_ref().map_or(30, |h| {
                    h.start_period.as_secs() + h.interval.as_secs() * u64::from(h.retries)
                }),
            });
            for m in &s.mounts {
                if let Mount::Volume { name, .. } = m {
                    volumes.push(volume_name(&plan.project, name));
                }
            }
            if let Some(h) = &s.health {
                let published = |port: u16| {
                    s.ports
                        .iter()
                        .find(|p| p.container == port)
                        .map(|p| (p.bind.clone().unwrap_or_else(|| "127.0.0.1".into()), p.host))
                };
                let probe = match &h.probe {
                    Probe::Http {
                        port,
                        path,
                        status,
                        body,
                    } => published(*port).map(|(ip, hp)| HostProbe::Http {
                        url: format!("http://{ip}:{hp}{path}"),
                        status: *status,
                        body: body.clone(),
                    }),
                    Probe::Tcp { port } => published(*port).map(|(ip, hp)| HostProbe::Tcp {
                        addr: format!("{ip}:{hp}"),
                    }),
                    Probe::Command { .. } => None,
                };
                if let Some(p) = probe {
                    probes.insert(s.name.clone(), p);
                }
            }
            specs.push(spec);
        }
        volumes.sort();
        volumes.dedup();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Ok(Self {
            engine,
            store: Mutex::new(store),
            project: plan.project.clone(),
            network: network_name(&plan.project, &plan.network),
            volumes,
            specs,
            desired,
            probes,
            policy: RepairPolicy::from_config(&config.health),
            notifier,
            http: health::client(),
            probe_timeout: config.health.timeout.0,
            rng: Mutex::new(seed),
            clock: Clock(Box::new(now)),
            missing_secrets,
            stop_grace,
        })
    }

    /// Seconds a restart of `service` waits for it to stop (10 for a service not planned).
    pub fn stop_grace(&self, service: &str) -> u32 {
        self.stop_grace.get(service).copied().unwrap_or(10)
    }

    /// Uses `clock` instead of the system time.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Clock(Box::new(clock));
        self
    }

    /// Relies on the engine's health checks alone (no probes from the host).
    pub fn without_host_probes(mut self) -> Self {
        self.probes.clear();
        self
    }

    pub fn now(&self) -> u64 {
        (self.clock.0)()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` with the store (for status and tests).
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store())
    }

    fn jitter(&self) -> f64 {
        let mut s = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // xorshift64*
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let v = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }

    fn managed_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_owned(), self.project.clone()),
            (labels::COMPOSE_PROJECT.to_owned(), self.project.clone()),
        ])
    }

    /// Network, volumes and images: everything containers need before they can be created.
    /// Images already present are used without pulling.
    pub async fn prepare(
        &self,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        if let Some(secret) = self.missing_secrets.values().next() {
            return Err(RuntimeError::MissingSecret(secret.clone()));
        }
        self.ensure_network_and_volumes().await?;
        let mut images: Vec<&str> = self.specs.iter().map(|s| s.image.as_str()).collect();
        images.sort_unstable();
        images.dedup();
        for image in images {
            if !self.engine.image_present(image).await? {
                self.engine.pull(image, progress).await?;
            }
        }
        Ok(())
    }

    /// The network and the named volumes (each an inspect when it exists already).
    async fn ensure_network_and_volumes(&self) -> Result<(), RuntimeError> {
        let l = self.managed_labels();
        self.engine.ensure_network(&self.network, &l).await?;
        for v in &self.volumes {
            self.engine.ensure_volume(v, &l).await?;
        }
        Ok(())
    }

    async fn probe(&self, service: &str) -> Option<ProbeResult> {
        let p = self.probes.get(service)?;
        Some(match p {
            HostProbe::Http { url, status, body } => {
                health::http(
                    &self.http,
                    url,
                    *status,
                    body.as_deref(),
                    self.probe_timeout,
                )
                .await
            }
            HostProbe::Tcp { addr } => health::tcp(addr, self.probe_timeout).await,
        })
    }

    /// What the engine and the probes show, per managed container.
    pub async fn observe(&self) -> Result<(Vec<Observed>, Vec<Seen>), RuntimeError> {
        let observed = self.engine.list(&self.project).await?;
        let mut seen = Vec::new();
        for o in &observed {
            let running = matches!(o.state, RunState::Running | RunState::Restarting);
            let mut health = match o.health {
                EngineHealth::None => Health::None,
                EngineHealth::Starting => Health::Starting,
                EngineHealth::Healthy => Health::Healthy,
                EngineHealth::Unhealthy => Health::Unhealthy,
            };
            if running && let Some(result) = self.probe(&o.service).await {
                health = match (result.passed(), health) {
                    // The service answers from the host: good enough while the engine's own
                    // check has not run yet.
                    (true, Health::None | Health::Starting) => Health::Healthy,
                    (true, h) => h,
                    // Still in its start period: not a failure yet.
                    (false, Health::Starting) => Health::Starting,
                    (false, _) => Health::Unhealthy,
                };
            }
            seen.push(Seen {
                service: o.service.clone(),
                container_id: o.id.clone(),
                spec_hash: o.spec_hash.clone(),
                running,
                never_started: o.state == RunState::Created,
                health,
                oom_killed: o.oom_killed,
            });
        }
        Ok((observed, seen))
    }

    /// One reconcile pass: observe, decide, act, record.
    pub async fn reconcile_once(&self) -> Result<PassReport, RuntimeError> {
        let (observed, seen) = self.observe().await?;
        let t = self.now();
        let records = self.store().records(t, self.policy.budget_window_secs)?;
        let actions = decide(&Input {
            desired: &self.desired,
            seen: &seen,
            records: &records,
            policy: self.policy,
            now: t,
            jitter: self.jitter(),
        });
        let mut report = PassReport::default();
        for action in &actions {
            if let Err((service, e)) = self.execute(action, &observed, t).await {
                let msg = e.to_string();
                let _ = self.store().event(t, Some(&service), "error", &msg);
                report.errors.push((service, msg));
            }
            if let Action::RequeueAt { at, .. } = action {
                report.requeue_at = Some(report.requeue_at.map_or(*at, |r: u64| r.min(*at)));
            }
        }
        report.actions = actions;
        Ok(report)
    }

    fn spec(&self, service: &str) -> Option<&ContainerSpec> {
        self.specs.iter().find(|s| s.service == service)
    }

    async fn create_and_start(&self, service: &str) -> Result<(), RuntimeError> {
        let Some(spec) = self.spec(service) else {
            return Ok(());
        };
        if let Some(secret) = self.missing_secrets.get(service) {
            return Err(RuntimeError::MissingSecret(secret.clone()));
        }
        // A container is only created where nothing was installed yet (the daemon started on
        // a bare engine) or where something was removed under autogit: what it needs comes
        // first, as `prepare` does it. Restarts, the hot path of a repair, never come here.
        self.ensure_network_and_volumes().await?;
        if !self.engine.image_present(&spec.image).await? {
            self.engine.pull(&spec.image, &|_| {}).await?;
        }
        let id = self.engine.create(spec).await?;
        self.engine.start(&id).await?;
        Ok(())
    }

    /// Removes the service's container (if any; volumes stay) and creates it afresh.
    async fn recreate(&self, service: &str, id: Option<String>) -> Result<(), RuntimeError> {
        if let Some(id) = id {
            match self.engine.remove(&id).await {
                // Gone since it was observed (another removal finished first): fine.
                Ok(()) | Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.create_and_start(service).await
    }

    async fn execute(
        &self,
        action: &Action,
        observed: &[Observed],
        t: u64,
    ) -> Result<(), (String, RuntimeError)> {
        let id_of = |service: &str| {
            observed
                .iter()
                .find(|o| o.service == service)
                .map(|o| o.id.clone())
        };
        let is_running = |id: &str| {
            observed
                .iter()
                .any(|o| o.id == id && matches!(o.state, RunState::Running | RunState::Restarting))
        };
        let wrap = |s: &str| {
            let s = s.to_owned();
            move |e: RuntimeError| (s, e)
        };
        match action {
            Action::Transition {
                service,
                from,
                to,
                reason,
            } => {
                self.store()
                    .transition(service, *from, *to, reason, t)
                    .map_err(|e| (service.clone(), e.into()))?;
                self.notifier.send(StateChange {
                    project: self.project.clone(),
                    service: service.clone(),
                    from: from.map(|f| f.to_string()),
                    to: to.to_string(),
                    reason: reason.clone(),
                    at: t,
                    flagged: false,
                });
            }
            Action::Create { service } => self
                .create_and_start(service)
                .await
                .map_err(wrap(service))?,
            Action::Recreate { service, .. } => self
                .recreate(service, id_of(service))
                .await
                .map_err(wrap(service))?,
            Action::Start { service } => {
                if let Some(id) = id_of(service) {
                    self.engine
                        .start(&id)
                        .await
                        .map_err(|e| (service.clone(), e.into()))?;
                }
            }
            Action::Repair {
                service,
                how,
                attempt,
            } => {
                let what = match how {
                    RepairAction::Restart => "restart",
                    RepairAction::Recreate => "recreate",
                };
                self.store()
                    .record_repair(service, what, *attempt, t)
                    .map_err(|e| (service.clone(), e.into()))?;
                match (how, id_of(service)) {
                    // A stopped container only needs starting; a running one a restart.
                    (RepairAction::Restart, Some(id)) if !is_running(&id) => self
                        .engine
                        .start(&id)
                        .await
                        .map_err(|e| (service.clone(), e.into()))?,
                    (RepairAction::Restart, Some(id)) => self
                        .engine
                        .restart(&id, self.stop_grace(service))
                        .await
                        .map_err(|e| (service.clone(), e.into()))?,
                    (_, id) => self.recreate(service, id).await.map_err(wrap(service))?,
                }
            }
            Action::Flag { service, reason } => {
                let st = self.store();
                st.set_flag(service, reason)
                    .map_err(|e| (service.clone(), e.into()))?;
                let _ = st.event(t, Some(service), "flag", reason);
                drop(st);
                self.notifier.send(StateChange {
                    project: self.project.clone(),
                    service: service.clone(),
                    from: Some("FAILED".into()),
                    to: "FAILED".into(),
                    reason: format!("human intervention needed: {reason}"),
                    at: t,
                    flagged: true,
                });
            }
            Action::RemoveOrphan {
                container_id,
                service,
            } => {
                self.engine
                    .remove(container_id)
                    .await
                    .map_err(|e| (service.clone(), e.into()))?;
                let _ = self.store().forget(service);
            }
            Action::RequeueAt { .. } => {}
        }
        Ok(())
    }

    /// Removes the project's containers and network; volumes only when asked.
    pub async fn down(&self, remove_volumes: bool) -> Result<Vec<String>, RuntimeError> {
        let mut removed = Vec::new();
        for o in self.engine.list(&self.project).await? {
            match self.engine.remove(&o.id).await {
                // Already gone (removed by hand or by a concurrent down): that is the goal.
                Ok(()) | Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let st = self.store();
            if let Some(from) = st.state_of(&o.service)? {
                st.transition(
                    &o.service,
                    Some(from),
                    autogit_core::lifecycle::State::Absent,
                    "uninstall",
                    self.now(),
                )?;
            }
            removed.push(o.name);
        }
        match self.engine.remove_network(&self.network).await {
            Ok(()) | Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if remove_volumes {
            for v in &self.volumes {
                match self.engine.remove_volume(v).await {
                    Ok(()) | Err(EngineError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// Reconciles until `shutdown` resolves: at once on relevant engine events (die, oom,
    /// health_status, destroy), when a service asked to be requeued, and every `interval`.
    /// `on_pass` sees each report (logging, metrics).
    pub async fn run(
        &self,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
        on_pass: impl Fn(&Result<PassReport, RuntimeError>),
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<EngineEvent>(256);
        let events = self.engine.events(&self.project, tx);
        tokio::pin!(events);
        tokio::pin!(shutdown);
        let mut events_done = false;
        let mut rx_open = true;
        loop {
            let result = self.reconcile_once().await;
            let wait = match &result {
                Ok(r) => r.requeue_at.map_or(interval, |at| {
                    Duration::from_secs(at.saturating_sub(self.now()).max(1)).min(interval)
                }),
                // The engine is unreachable: retry soon, not at full speed.
                Err(_) => Duration::from_secs(5).min(interval),
            };
            on_pass(&result);
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = &mut sleep => break,
                    res = &mut events, if !events_done => {
                        // The stream ended (engine restarted?); passes continue on the timer.
                        events_done = true;
                        if let Err(e) = res {
                            let _ = self.store().event(self.now(), None, "events", &e.to_string());
                        }
                    }
                    ev = rx.recv(), if rx_open => match ev {
                        Some(ev) if matches!(ev.action.as_str(), "die" | "oom" | "destroy") || ev.action.starts_with("health_status") => {
                            // Let a burst of events (die, then health_status) settle into one
                            // pass; short, as this is the repair's hot path (a later event only
                            // costs one more, idempotent pass).
                            tokio::time::sleep(EVENT_SETTLE).await;
                            while rx.try_recv().is_ok() {}
                            break;
                        }
                        Some(_) => {}
                        None => rx_open = false,
                    },
                }
            }
        }
    }
}
