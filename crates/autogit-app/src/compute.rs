//! The compute controller: GPU jobs queued in the state store, placed by the scheduler
//! (`core::compute`: capability, GPUs, VRAM, quotas, best fit, aging), started over SSH on
//! their host, and followed until they end. Job states and their transitions are core's
//! (`JobState`, `job_transition`); every change is published.
//!
//! A host that stops answering keeps its last known inventory: queued jobs that it could run
//! stay queued (they are not failed as "no host can ever run it"), and running jobs there keep
//! their state while their lease is live (`core::lease`): each job is started under a
//! host-side wrapper whose watchdog stops it when its lease file is not renewed in time,
//! every pass in which the host answers renews it, and once the lease expired the job's
//! policy either waits for the host (`resume`) or puts it back in the queue (`reschedule`),
//! the latter only when the old copy is surely stopped (nothing starts twice).
//!
//! A service job with a route (`compute run --route NAME`, `core::routes`) is served by the
//! ingress: every pass records the host port its container is published on and, when the
//! routes of the running services changed, rewrites Traefik's `compute.yml` (and, for the
//! guard in proxy mode, its upstream file) atomically; a route leaves with its job.

use crate::runners::{HostHealth, RunnerController};
use crate::{Bus, Event, Settings, SharedClock};
use autogit_core::compute::{
    Fit, HostSlots, JobEvent, JobSpec, JobState, MIG_SLOT_BASE, Placement, Request, Scheduler,
    check_image, container_name, devices, gang_action, gpu_slots, job_transition, run_argv_on,
};
use autogit_core::config::Capability;
use autogit_core::inventory::{EngineKind, Inventory};
use autogit_core::jobkind::{JobSeen, ServiceSpec, decide_service, inspect_format, parse_seen};
use autogit_core::lease::{
    Action, Lease, LeaseRules, LeaseState, OnLost, Seen, decide, renew_argv, restart_argv,
    start_argv,
};
use autogit_core::lifecycle::{RepairAction, RepairPolicy, State};
use autogit_core::plan::Plan;
use autogit_core::routes::ServiceRoute;
use autogit_core::units::Bytes;
use autogit_drivers::remote::RemoteExec;
use autogit_drivers::state::{JobRow, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The guard's upstreams of guarded routes (proxy mode), under `<data>/rendered`: what
/// `autogit guard serve --upstream-file` reads.
pub const ROUTES_GUARD_FILE: &str = "guard/upstreams";

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The request itself is wrong (exit 2 in the CLI).
    #[error("{0}")]
    Request(String),
    #[error("no job `{0}` (see `autogit compute list`)")]
    NoSuchJob(String),
    #[error("the queue is full ({0} jobs; compute.queue_limit); try again when jobs have started")]
    QueueFull(u32),
    #[error("{0}")]
    State(String),
}

/// A job to submit.
#[derive(Debug, Clone, Default)]
pub struct Submit {
    pub gpus: u32,
    /// VRAM per GPU (`8G`); `None`: its kind's default (`core::jobkind`).
    pub vram: Option<String>,
    pub capability: Option<String>,
    pub priority: i32,
    pub user: String,
    /// Image, then the command.
    pub job: Vec<String>,
    /// When its lease expires while its host is away; `None`: the default for its kind.
    pub on_lost: Option<OnLost>,
    /// An inference job's port in its container: the job is a service, health-checked at
    /// `health` and kept running by the lifecycle policy.
    pub port: Option<u16>,
    /// The service's health path (default `/health`).
    pub health: Option<String>,
    /// Between health checks (`10s`).
    pub health_interval: Option<String>,
    /// How long a (re)started service may take to become healthy (`2m`).
    pub start_period: Option<String>,
    /// How long it may run (`24h`; `0`: no limit); `None`: its kind's default.
    pub timeout: Option<String>,
    /// A service's route: served by the ingress at `https://ROUTE.<BASE_DOMAIN>` while it
    /// runs (`core::routes`).
    pub route: Option<String>,
    /// Whether the route goes through the guard; `None`: when the ingress has the guard.
    pub guard: Option<bool>,
    /// Spread the job over this many hosts (one part per host, each with `gpus` GPUs), all
    /// started together or none; `None`: one host.
    pub hosts: Option<u32>,
}

/// The most hosts one job may be spread over.
pub const MAX_HOSTS: u32 = 64;

/// Parses a duration flag (`90s`, `5m`, `24h`) to seconds.
fn secs(flag: &str, v: Option<&str>) -> Result<Option<u64>, ComputeError> {
    v.map(|t| {
        autogit_core::units::Dur::parse(t)
            .map(|d| d.as_secs())
            .ok_or_else(|| {
                ComputeError::Request(format!(
                    "{flag} `{t}` is not a duration (e.g. 90s, 5m, 24h)"
                ))
            })
    })
    .transpose()
}

/// A running job's lease as `compute status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    pub host: String,
    pub state: LeaseState,
    /// Unix seconds.
    pub expires_at: u64,
    /// Probes of the host missed in a row.
    pub missed: u32,
    pub on_lost: OnLost,
}

#[derive(Debug)]
pub struct ComputeController {
    runners: RunnerController,
    bus: Bus,
    clock: SharedClock,
}

/// A job's state from its row (an unknown name is read as failed, and said so).
pub fn state_of(row: &JobRow) -> JobState {
    JobState::parse(&row.state).unwrap_or(JobState::Failed)
}

impl ComputeController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            runners: RunnerController::new(settings, bus.clone(), clock.clone()),
            bus,
            clock,
        }
    }

    /// Reaches hosts with this SSH configuration (tests: the lab's).
    pub fn with_ssh_config(mut self, cfg: autogit_drivers::remote::ssh::SshConfig) -> Self {
        self.runners = self.runners.with_ssh_config(cfg);
        self
    }

    fn settings(&self) -> &Settings {
        self.runners.settings()
    }

    /// `platform.project`: the prefix of its jobs' containers and lease files.
    fn project(&self) -> &str {
        &self.settings().config.platform.project
    }

    fn rules(&self) -> LeaseRules {
        let c = &self.settings().config.compute;
        LeaseRules {
            ttl: c.lease.as_secs(),
            unreachable_after: c.unreachable_after,
        }
    }

    /// The lease of a running job (`None` when it holds none).
    pub fn lease(&self, job: &str) -> Result<Option<LeaseInfo>, ComputeError> {
        Ok(self.leases()?.remove(job))
    }

    /// Every running job's lease, by job id.
    pub fn leases(&self) -> Result<BTreeMap<String, LeaseInfo>, ComputeError> {
        let st = |e: autogit_drivers::state::StateError| ComputeError::State(e.to_string());
        let store = self.store()?;
        let jobs = store.jobs().map_err(st)?;
        let (rules, now) = (self.rules(), self.clock.now());
        Ok(store
            .leases()
            .map_err(st)?
            .into_values()
            .map(|l| {
                let on_lost = jobs
                    .iter()
                    .find(|j| j.id == l.job)
                    .and_then(spec_of)
                    .map_or(OnLost::Reschedule, |s| s.on_lost());
                let info = LeaseInfo {
                    host: l.host.clone(),
                    state: l.state(&rules, now),
                    expires_at: l.expires_at,
                    missed: l.missed,
                    on_lost,
                };
                (l.job, info)
            })
            .collect())
    }

    fn jobs(&self) -> Result<Vec<JobRow>, ComputeError> {
        self.store()?
            .jobs()
            .map_err(|e| ComputeError::State(e.to_string()))
    }

    fn store(&self) -> Result<Store, ComputeError> {
        let s = self.settings();
        s.ensure_data_dir().map_err(ComputeError::State)?;
        Store::open(&s.state_db()).map_err(|e| ComputeError::State(e.to_string()))
    }

    /// Whether any job waits or runs (the daemon's pass only probes hosts then).
    pub fn active(&self) -> bool {
        let db = self.settings().state_db();
        db.exists()
            && Store::open(&db).and_then(|s| s.jobs()).is_ok_and(|jobs| {
                jobs.iter()
                    .any(|j| matches!(state_of(j), JobState::Queued | JobState::Running))
            })
    }

    /// Records a job and runs a scheduling pass; returns its row after the pass.
    pub async fn submit(&self, req: Submit) -> Result<JobRow, ComputeError> {
        let Some((image, command)) = req.job.split_first() else {
            return Err(ComputeError::Request("compute run needs an image".into()));
        };
        check_image(image).map_err(ComputeError::Request)?;
        let capability = req.capability.as_deref().and_then(Capability::parse);
        let vram = match &req.vram {
            Some(v) => Bytes::parse(v).ok_or_else(|| {
                ComputeError::Request(format!("--vram `{v}` is not a size (e.g. 8G)"))
            })?,
            None => autogit_core::jobkind::defaults(capability).vram,
        };
        let service = match req.port {
            Some(port) => {
                let mut s =
                    ServiceSpec::new(port, req.health.as_deref()).map_err(ComputeError::Request)?;
                if let Some(i) = secs("--health-interval", req.health_interval.as_deref())? {
                    s.interval = i;
                }
                if let Some(p) = secs("--start-period", req.start_period.as_deref())? {
                    s.start_period = p;
                }
                Some(s)
            }
            None if req.health.is_some() => {
                return Err(ComputeError::Request(
                    "--health needs --port (the service's port in its container)".into(),
                ));
            }
            None if req.route.is_some() => {
                return Err(ComputeError::Request(
                    "--route needs --port (the service's port in its container that the route goes to)".into(),
                ));
            }
            None => None,
        };
        let service = match (service, &req.route) {
            (Some(mut s), Some(route)) => {
                self.check_route(route)?;
                s.route = Some(route.clone());
                let plan = self.check_route(route)?;
                s.guard = autogit_core::routes::resolve_guard(&plan, req.guard)
                    .map_err(ComputeError::Request)?;
                Some(s)
            }
            (_, None) if req.guard.is_some() => {
                return Err(ComputeError::Request(
                    "the guard setting (--no-guard; API: guard) applies to a route: give --route NAME (API: route) too".into(),
                ));
            }
            (s, _) => s,
        };
        let spec = JobSpec {
            image: image.clone(),
            command: command.to_vec(),
            gpus: req.gpus,
            vram,
            capability,
            priority: req.priority,
            on_lost: req.on_lost,
            service,
            timeout: secs("--timeout", req.timeout.as_deref())?,
            gang: None,
        };
        spec.check().map_err(ComputeError::Request)?;
        let hosts = req.hosts.unwrap_or(1);
        if !(1..=MAX_HOSTS).contains(&hosts) {
            return Err(ComputeError::Request(format!(
                "--hosts {hosts}: a job runs on 1 to {MAX_HOSTS} hosts"
            )));
        }
        if hosts > 1 && spec.service.is_some() {
            return Err(ComputeError::Request(
                "--hosts: a service (--port) runs on one host; spread batch jobs only".into(),
            ));
        }
        let store = self.store()?;
        let queued = store
            .jobs()
            .map(|j| j.iter().filter(|r| state_of(r) == JobState::Queued).count())
            .unwrap_or(0);
        let limit = self.settings().config.compute.queue_limit;
        if queued >= limit as usize {
            return Err(ComputeError::QueueFull(limit));
        }
        // Its parts, one per host, stored at once: the gang is named after the first.
        let ids = store
            .add_jobs(&req.user, self.clock.now() as i64, hosts, |first, rank| {
                let spec = JobSpec {
                    gang: (hosts > 1).then(|| autogit_core::compute::Gang {
                        id: first.to_owned(),
                        rank,
                        size: hosts,
                    }),
                    ..spec.clone()
                };
                serde_json::to_string(&spec).expect("a job spec serializes")
            })
            .map_err(|e| ComputeError::State(e.to_string()))?;
        let id = ids[0].clone();
        let (_, rows) = self.pass().await?;
        rows.into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ComputeError::State(format!("{id} vanished from the state database")))
    }

    /// Refuses a route the ingress cannot serve (`core::routes::check_route`), or one that a
    /// queued or running job holds; returns the plan it checked against.
    fn check_route(&self, route: &str) -> Result<Plan, ComputeError> {
        let plan = crate::plan::quiet(self.settings()).map_err(ComputeError::Request)?;
        let taken: Vec<(String, String)> = self
            .store()?
            .jobs()
            .map_err(|e| ComputeError::State(e.to_string()))?
            .iter()
            .filter(|r| matches!(state_of(r), JobState::Queued | JobState::Running))
            .filter_map(|r| Some((spec_of(r)?.service?.route?, r.id.clone())))
            .collect();
        autogit_core::routes::check_route(&self.settings().config, &plan, route, &taken)
            .map_err(ComputeError::Request)?;
        Ok(plan)
    }

    /// The routes of the running routed services in `rows` (those whose host port is known;
    /// on `host: local`, also the gateway of the platform's network, `local_gateway`). Two
    /// jobs that got the same route (submitted at once, both checked before either was
    /// stored): the earlier one's.
    pub fn routes_of(rows: &[JobRow], local_gateway: Option<&str>) -> Vec<ServiceRoute> {
        let mut seen = std::collections::BTreeSet::new();
        rows.iter()
            .filter(|r| state_of(r) == JobState::Running)
            .filter_map(|r| {
                let svc = spec_of(r)?.service?;
                Some(ServiceRoute {
                    name: svc.route?,
                    job: r.id.clone(),
                    upstream: autogit_core::routes::upstream_url(
                        r.host.as_deref()?,
                        r.host_port?,
                        local_gateway,
                    )?,
                    guard: svc.guard,
                })
            })
            .filter(|route| seen.insert(route.name.clone()))
            .collect()
    }

    /// The gateway of the platform's network on this machine, where the ingress's container
    /// reaches the ports that routed services on `host: local` publish
    /// (`core::routes::upstream_url`): asked of the engine only when such a service runs.
    /// `None`, said in the log, when the engine does not tell.
    async fn local_gateway(&self, rows: &[JobRow]) -> Option<String> {
        let local = rows.iter().find(|r| {
            state_of(r) == JobState::Running
                && r.host
                    .as_deref()
                    .is_some_and(autogit_core::remote::is_local)
                && spec_of(r)
                    .and_then(|s| s.service)
                    .is_some_and(|s| s.route.is_some())
        })?;
        let host = local.host.as_deref()?;
        let config = &self.settings().config;
        let network = autogit_core::container::network_name(
            &config.platform.project,
            &config.platform.network,
        );
        let found: Result<String, String> = async {
            let remote = self.runners.remote(host).await?;
            // The engine the host's last probe found there (Docker unless it said Podman).
            let engine = self
                .store()
                .ok()
                .and_then(|s| s.hosts().ok())
                .and_then(|hs| hs.into_iter().find(|h| h.host == host))
                .and_then(|h| serde_json::from_str::<Inventory>(h.inventory.as_deref()?).ok())
                .and_then(|i| i.engine.map(|e| e.kind))
                .unwrap_or(EngineKind::Docker);
            let argv = autogit_core::routes::gateway_argv(engine, &network);
            let out = remote.run(&argv).await.map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(out.stderr.trim().lines().last().unwrap_or("").to_owned());
            }
            autogit_core::routes::parse_gateway(&out.stdout)
                .ok_or_else(|| format!("no gateway in `{}`", out.stdout.trim()))
        }
        .await;
        match found {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(network = %network, error = %e, "the platform network's gateway is unknown: routes to services on host: local are left out");
                None
            }
        }
    }

    /// Writes the ingress's routes of the running routed services (Traefik's
    /// `<data>/rendered/traefik/dynamic/compute.yml`, or nginx's
    /// `<data>/rendered/nginx/routes/compute.conf`, and the guard's
    /// `<data>/rendered/guard/upstreams` in proxy mode) when they changed, atomically; removes
    /// them when no route is left. Traefik's file provider (and the guard) read them again
    /// without a restart; nginx needs to be told ([`Self::apply_routes`]). Returns the routes
    /// written and whether nginx's file changed.
    pub fn sync_routes(
        &self,
        local_gateway: Option<&str>,
    ) -> Result<(Vec<ServiceRoute>, bool), ComputeError> {
        let rows = self.jobs()?;
        let routes = Self::routes_of(&rows, local_gateway);
        let rendered = self.settings().data_dir.join("rendered");
        let files = [
            rendered
                .join("traefik/dynamic")
                .join(autogit_core::routes::TRAEFIK_FILE),
            rendered.join(ROUTES_GUARD_FILE),
            rendered
                .join(autogit_core::routes::NGINX_RENDERED_DIR)
                .join(autogit_core::routes::NGINX_FILE),
        ];
        if routes.is_empty() && !files.iter().any(|f| f.exists()) {
            return Ok((routes, false));
        }
        let texts = if routes.is_empty() {
            [String::new(), String::new(), String::new()]
        } else {
            let plan = crate::plan::quiet(self.settings()).map_err(ComputeError::State)?;
            let nginx = plan.service("nginx").is_some();
            [
                if nginx {
                    String::new()
                } else {
                    autogit_core::routes::traefik_routes(&plan, &routes)
                },
                autogit_core::routes::guard_upstreams(&plan, &routes),
                if nginx {
                    autogit_core::routes::nginx_routes(&plan, &routes)
                } else {
                    String::new()
                },
            ]
        };
        let mut nginx_changed = false;
        for (i, (path, text)) in files.iter().zip(texts).enumerate() {
            let io = |e: String| {
                ComputeError::State(format!("writing the routes of compute services: {e}"))
            };
            let changed = if text.is_empty() {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io(format!("{}: {e}", path.display())));
                    }
                    Err(_) => false,
                    Ok(()) => true,
                }
            } else if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
                autogit_drivers::fsx::write_atomic(path, text.as_bytes(), 0o644)
                    .map_err(|e| io(e.to_string()))?;
                true
            } else {
                false
            };
            nginx_changed |= i == 2 && changed;
        }
        Ok((routes, nginx_changed))
    }

    /// [`Self::sync_routes`], then `nginx -s reload` when nginx's routes changed. A failure is
    /// said (the files are right; the next change or pass reloads again), not returned: the
    /// jobs' states are stored either way.
    pub async fn apply_routes(&self) -> Vec<ServiceRoute> {
        let gateway = match self.jobs() {
            Ok(rows) => self.local_gateway(&rows).await,
            Err(_) => None,
        };
        match self.sync_routes(gateway.as_deref()) {
            Ok((routes, nginx_changed)) => {
                if nginx_changed {
                    let reloaded = match crate::plan::quiet(self.settings()) {
                        Ok(plan) => crate::platform::reload_nginx(self.settings(), &plan).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = reloaded {
                        tracing::warn!(error = %e, "nginx did not reload the routes of compute services");
                    }
                }
                routes
            }
            Err(e) => {
                tracing::warn!(error = %e, "the routes of compute services are not up to date");
                Vec::new()
            }
        }
    }

    /// A job, refreshed from its host when it runs.
    pub async fn status(&self, job: &str) -> Result<JobRow, ComputeError> {
        let store = self.store()?;
        let mut row = store
            .job(job)
            .map_err(|e| ComputeError::State(e.to_string()))?
            .ok_or_else(|| ComputeError::NoSuchJob(job.to_owned()))?;
        if state_of(&row) == JobState::Running {
            let health = self.runners.probe_all().await;
            let mut lease = store
                .leases()
                .map_err(|e| ComputeError::State(e.to_string()))?
                .remove(&row.id);
            drop(store);
            self.refresh(&health, &mut row, &mut lease).await;
            let store = self.store()?;
            store
                .update_job(&row)
                .map_err(|e| ComputeError::State(e.to_string()))?;
            keep_lease(&store, &row, lease.as_ref())
                .map_err(|e| ComputeError::State(e.to_string()))?;
        }
        Ok(row)
    }

    /// Cancels a job: a queued one leaves the queue; a running one has its container removed
    /// on its host first (`<engine> rm -f`), and is cancelled only when that worked or the
    /// container is already gone. A finished job cannot be cancelled (`Request`).
    pub async fn cancel(&self, job: &str) -> Result<JobRow, ComputeError> {
        let store = self.store()?;
        let st = |e: autogit_drivers::state::StateError| ComputeError::State(e.to_string());
        let mut row = store
            .job(job)
            .map_err(st)?
            .ok_or_else(|| ComputeError::NoSuchJob(job.to_owned()))?;
        let from = state_of(&row);
        if job_transition(from, JobEvent::Cancel).is_none() {
            return Err(ComputeError::Request(format!(
                "job {job} is {}: only queued or running jobs can be cancelled",
                from.as_str()
            )));
        }
        if from == JobState::Running {
            let health = self.runners.probe_all().await;
            self.remove_container(&health, &row)
                .await
                .map_err(ComputeError::Request)?;
        }
        self.apply(&mut row, JobEvent::Cancel, "cancelled on request".into());
        self.end_service(&row, "cancelled on request");
        store.update_job(&row).map_err(st)?;
        store.drop_lease(&row.id).map_err(st)?;
        drop(store);
        self.apply_routes().await;
        Ok(row)
    }

    /// Removes a running job's container from its host (`rm -f`; already gone is fine). Fails,
    /// saying why, when the host is unreachable or its engine refuses: the copy may still run.
    async fn remove_container(&self, health: &[HostHealth], row: &JobRow) -> Result<(), String> {
        let Some(host) = row.host.as_deref() else {
            return Ok(());
        };
        let inv = health
            .iter()
            .find(|h| h.host == host && h.reachable)
            .ok_or_else(|| {
                format!(
                    "{host} is unreachable: the job's container cannot be stopped now; try again when it answers"
                )
            })?
            .inventory
            .clone();
        let argv: Vec<String> = [
            engine_name(inv.as_ref()),
            "rm",
            "-f",
            &container_name(self.project(), &row.id),
        ]
        .map(str::to_owned)
        .into();
        let out = self
            .runners
            .remote(host)
            .await?
            .run(&argv)
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() && !out.stderr.to_ascii_lowercase().contains("no such") {
            return Err(format!(
                "removing the container on {host} failed: {}",
                out.stderr.trim().lines().last().unwrap_or("")
            ));
        }
        Ok(())
    }

    /// Keeps each job spread over several hosts whole (`core::compute::gang_action`): when a
    /// part failed or was cancelled, the others are stopped and cancelled; when a part went
    /// back to the queue (its lease expired, or its host did not answer its start) while
    /// others run, those are stopped and queued again, so that the parts start together. A
    /// part whose host does not answer keeps its state until it does (or its lease decides).
    async fn keep_gangs_whole(
        &self,
        health: &[HostHealth],
        rows: &mut [JobRow],
    ) -> Result<(), ComputeError> {
        let st = |e: autogit_drivers::state::StateError| ComputeError::State(e.to_string());
        let store = self.store()?;
        // Each row's gang and state, its description read once.
        let parts: Vec<Option<(String, JobState)>> = rows
            .iter()
            .map(|r| Some((spec_of(r)?.gang?.id, state_of(r))))
            .collect();
        for (row, part) in rows.iter_mut().zip(&parts) {
            let Some((gang, _)) = part else {
                continue;
            };
            let others: Vec<JobState> = parts
                .iter()
                .flatten()
                .filter(|(g, _)| g == gang)
                .map(|(_, s)| *s)
                .collect();
            let Some((event, why)) = gang_action(state_of(row), &others) else {
                continue;
            };
            if state_of(row) == JobState::Running {
                if let Err(e) = self.remove_container(health, row).await {
                    row.message = format!("{why}; not yet: {e}");
                    store.update_job(row).map_err(st)?;
                    continue;
                }
                store.drop_lease(&row.id).map_err(st)?;
                if event == JobEvent::Requeued {
                    row.host = None;
                    row.gpus = None;
                    row.container = None;
                    row.started_at = None;
                }
            }
            self.apply(row, event, format!("{why} (gang {gang})"));
            store.update_job(row).map_err(st)?;
        }
        Ok(())
    }

    /// One scheduling pass: probe the hosts, refresh running jobs, place what fits (best
    /// fit), start it. Returns the hosts and every job after the pass.
    pub async fn pass(&self) -> Result<(Vec<HostHealth>, Vec<JobRow>), ComputeError> {
        let health = self.runners.probe_all().await;
        let rows = self.pump(&health).await?;
        // The jobs' states are stored: a route file that cannot be written is said, and
        // written on the next pass, without failing the pass.
        self.apply_routes().await;
        Ok((health, rows))
    }

    /// Applies `event` to the job's row (core decides the new state) and publishes a change.
    fn apply(&self, row: &mut JobRow, event: JobEvent, message: String) {
        let from = state_of(row);
        let now = self.clock.now() as i64;
        row.message = message;
        if let Some(to) = job_transition(from, event) {
            row.state = to.as_str().to_owned();
            if to.is_final() {
                row.finished_at = Some(now);
            }
            if let JobEvent::Exited(code) = event {
                row.exit_code = Some(code);
            }
            self.bus.publish(Event::ComputeJobChanged {
                job: row.id.clone(),
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
                host: row.host.clone(),
                message: row.message.clone(),
            });
        }
    }

    /// Renews the job's lease on its host (or counts a missed probe), then asks the engine
    /// how its container is doing and updates the row; a lost lease is handled by the job's
    /// policy (`core::lease::decide`).
    /// `lease` is the job's lease before and after (the caller stores it).
    async fn refresh(&self, health: &[HostHealth], row: &mut JobRow, lease: &mut Option<Lease>) {
        let Some(host) = row.host.clone() else { return };
        let rules = self.rules();
        let policy = spec_of(row).map_or(OnLost::Reschedule, |s| s.on_lost());
        if lease.as_ref().is_some_and(|l| l.host != host) {
            *lease = None;
        }
        let Some(h) = health.iter().find(|h| h.host == host && h.reachable) else {
            let Some(l) = lease.as_mut() else {
                // Started before leases: its fate is unknown until the host answers.
                self.apply(
                    row,
                    JobEvent::HostUnreachable,
                    format!("{host} is unreachable; the job's state is unknown until it answers"),
                );
                return;
            };
            let now = self.clock.now();
            let action = decide(l, Seen::Missed, policy, now, &rules);
            match action {
                Action::Requeue => {
                    let msg = format!(
                        "requeued: its lease on {host} expired at {} and its copy there is stopped (policy reschedule)",
                        l.expires_at
                    );
                    row.host = None;
                    row.gpus = None;
                    row.container = None;
                    row.started_at = None;
                    self.apply(row, JobEvent::LeaseExpired, msg);
                }
                Action::Wait => {
                    row.message = format!(
                        "lost: {host} is unreachable and its lease expired; it resumes there when the host answers (policy resume)"
                    );
                }
                Action::Keep => {
                    row.message = match l.state(&rules, now) {
                        LeaseState::Lost => format!(
                            "lost: its lease on {host} expired; requeued after {} when the host's watchdog has stopped it",
                            l.fence_until()
                        ),
                        LeaseState::Unreachable => format!(
                            "{host} is unreachable; the job may still run there until its lease expires at {}",
                            l.expires_at
                        ),
                        LeaseState::Live => format!(
                            "{host} did not answer ({} of {} missed probes before it counts as unreachable); the job runs there under its lease until {}",
                            l.missed, rules.unreachable_after, l.expires_at
                        ),
                    };
                }
            }
            return;
        };
        let engine = engine_name(h.inventory.as_ref());
        // Renew first: a fenced container (its watchdog stopped it) is started again here.
        let renewal = match self.runners.remote(&host).await {
            Ok(r) => r
                .run(&renew_argv(self.project(), &row.id, rules.ttl, engine))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let renewed = matches!(&renewal, Ok(o) if o.success());
        let now = self.clock.now();
        let l = lease.get_or_insert_with(|| Lease::granted(&row.id, &host, &rules, now));
        decide(l, Seen::Answered { renewed }, policy, now, &rules);
        match renewal {
            Ok(o) if o.success() => {
                if o.stdout.lines().any(|l| l.trim() == "resumed") {
                    row.message = format!("resumed on {host}: its watchdog had stopped it");
                    return;
                }
                if let Some(err) = o
                    .stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("resume-failed:"))
                {
                    // Stopped there for good (the host says so): no copy runs anywhere.
                    let err = err.trim();
                    if policy == OnLost::Reschedule {
                        row.host = None;
                        row.gpus = None;
                        row.container = None;
                        row.started_at = None;
                        self.apply(
                            row,
                            JobEvent::LeaseExpired,
                            format!("requeued: {host} stopped it when its lease lapsed and cannot start it again: {err}"),
                        );
                    } else {
                        self.apply(
                            row,
                            JobEvent::Vanished,
                            format!("{host} stopped it when its lease lapsed and cannot start it again (policy resume): {err}"),
                        );
                    }
                    return;
                }
            }
            Ok(o) => {
                row.message = format!(
                    "renewing the lease on {host} failed: {}",
                    o.stderr.trim().lines().last().unwrap_or("")
                );
                return;
            }
            Err(e) => {
                row.message = format!("renewing the lease on {host} failed: {e}");
                return;
            }
        }
        let spec = spec_of(row);
        let service = spec.as_ref().and_then(|s| s.service()).cloned();
        let format = inspect_format(service.as_ref().map(ServiceSpec::port_key).as_deref());
        let name = container_name(self.project(), &row.id);
        let argv: Vec<String> = [engine, "inspect", "--format", &format, &name]
            .map(str::to_owned)
            .into();
        let out = match self.runners.remote(&host).await {
            Ok(r) => r.run(&argv).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let seen: Option<JobSeen> = match out {
            Ok(o) if o.success() => match parse_seen(o.stdout.trim()) {
                Some(s) => Some(s),
                None => {
                    row.message =
                        format!("{engine} inspect on {host} answered `{}`", o.stdout.trim());
                    return;
                }
            },
            Ok(o) if o.stderr.to_ascii_lowercase().contains("no such") => {
                if service.is_none() {
                    self.apply(
                        row,
                        JobEvent::Vanished,
                        format!("the container is gone: {}", o.stderr.trim()),
                    );
                    return;
                }
                None
            }
            // The engine did not answer (daemon down, permissions): the job's fate is unknown.
            Ok(o) => {
                row.message = format!(
                    "{engine} inspect failed on {host}: {}",
                    o.stderr.trim().lines().last().unwrap_or("")
                );
                return;
            }
            Err(e) => {
                row.message = e;
                return;
            }
        };
        // Its route follows the port (a recreated container gets a new one); while the
        // container is down or gone, the route keeps the last one (502 until it is back).
        if service.is_some()
            && let Some(port) = seen.as_ref().and_then(|s| s.host_port)
        {
            row.host_port = Some(port);
        }
        let limit = spec.as_ref().and_then(JobSpec::time_limit);
        if let (Some(limit), Some(started), Some(s)) = (limit, row.started_at, seen.as_ref())
            && !s.ended()
            && now >= (started.max(0) as u64).saturating_add(limit)
        {
            self.time_out(row, &host, engine, limit).await;
            return;
        }
        if let (Some(svc), Some(spec)) = (service, spec) {
            self.service_pass(row, &svc, &spec, seen.as_ref(), h, rules.ttl)
                .await;
            return;
        }
        match seen {
            Some(s) if s.ended() => self.apply(row, JobEvent::Exited(s.exit_code), String::new()),
            _ => row.message.clear(),
        }
    }

    /// Stops a job that ran past its time limit and fails it (a service's record goes to
    /// `ABSENT`). When the engine refuses the stop, it is tried again on the next pass.
    async fn time_out(&self, row: &mut JobRow, host: &str, engine: &str, limit: u64) {
        let stop: Vec<String> = [
            engine.to_owned(),
            "stop".into(),
            "-t".into(),
            autogit_core::lease::STOP_SECS.to_string(),
            container_name(self.project(), &row.id),
        ]
        .into();
        let out = match self.runners.remote(host).await {
            Ok(r) => r.run(&stop).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match out {
            Ok(o) if o.success() => {
                self.apply(
                    row,
                    JobEvent::TimedOut,
                    format!("stopped: it ran past its time limit of {limit} s (--timeout)"),
                );
                self.end_service(row, "its time limit passed");
            }
            Ok(o) => {
                row.message = format!(
                    "past its time limit, but stopping it on {host} failed: {}",
                    o.stderr.trim().lines().last().unwrap_or("")
                );
            }
            Err(e) => row.message = format!("past its time limit, but {host}: {e}"),
        }
    }

    /// One pass of the lifecycle state machine for an inference job's service
    /// (`core::jobkind::decide_service`, the platform services' policy): its state, repairs
    /// (restart, then recreate, with backoff and the restart budget) and the human flag are
    /// recorded in the state store as the service `compute-<job>`.
    async fn service_pass(
        &self,
        row: &mut JobRow,
        svc: &ServiceSpec,
        spec: &JobSpec,
        seen: Option<&JobSeen>,
        h: &HostHealth,
        ttl: u64,
    ) {
        use autogit_core::reconcile::Action as A;
        let host = h.host.clone();
        let name = autogit_core::jobkind::service_name(&row.id);
        let now = self.clock.now();
        let policy = RepairPolicy::from_config(&self.settings().config.health);
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => {
                row.message = e.to_string();
                return;
            }
        };
        let record = match store.records(now, policy.budget_window_secs) {
            Ok(mut r) => r.remove(&name).unwrap_or_default(),
            Err(e) => {
                row.message = e.to_string();
                return;
            }
        };
        let mut state = record.state;
        let mut notes: Vec<String> = Vec::new();
        for a in decide_service(&row.id, svc, seen, &record, policy, now, fastrand::f64()) {
            match a {
                A::Transition { to, reason, .. } => {
                    self.move_service(&store, &name, state, to, &reason, false);
                    state = Some(to);
                    notes.push(reason);
                }
                A::Flag { reason, .. } => {
                    if let Err(e) = store.set_flag(&name, &reason) {
                        notes.push(e.to_string());
                    }
                    self.bus.publish(Event::FlagRaised {
                        service: name.clone(),
                        reason: reason.clone(),
                    });
                }
                A::Repair { how, attempt, .. } => {
                    let what = match how {
                        RepairAction::Restart => "restart",
                        RepairAction::Recreate => "recreate",
                    };
                    if let Err(e) = store.record_repair(&name, what, attempt, now) {
                        notes.push(e.to_string());
                    }
                    let error = self.restart(row, spec, h, ttl, how).await.err();
                    self.bus.publish(Event::ComputeServiceRepaired {
                        job: row.id.clone(),
                        host: host.clone(),
                        action: what.to_owned(),
                        attempt,
                        error: error.clone(),
                    });
                    notes.push(match error {
                        None => format!("{what} #{attempt}"),
                        Some(e) => format!("{what} #{attempt} failed: {e}"),
                    });
                }
                // Gone before it was ever healthy, or created and never started: started
                // again (not a repair).
                A::Create { .. } | A::Recreate { .. } => {
                    if let Err(e) = self
                        .restart(row, spec, h, ttl, RepairAction::Recreate)
                        .await
                    {
                        notes.push(format!("starting it again failed: {e}"));
                    }
                }
                A::Start { .. } => {
                    if let Err(e) = self.restart(row, spec, h, ttl, RepairAction::Restart).await {
                        notes.push(format!("starting it failed: {e}"));
                    }
                }
                A::RequeueAt { .. } | A::RemoveOrphan { .. } => {}
            }
        }
        notes.dedup();
        let flagged = store
            .records(now, 0)
            .ok()
            .and_then(|mut r| r.remove(&name))
            .filter(|r| r.history.flagged);
        let state = state.map_or("DEPLOYING", State::as_str);
        // Its route, when it has one (`core::routes`).
        let routed = match (&svc.route, &self.settings().platform.base_domain) {
            (Some(r), Some(d)) => format!(", routed at https://{r}.{d}"),
            _ => String::new(),
        };
        let at = |port| autogit_core::routes::service_url(&host, port);
        row.message = match (flagged, seen.and_then(|s| s.host_port)) {
            (Some(r), _) => format!(
                "service {state}, flagged for a human: {}; `autogit reconcile --clear {name}` lets autogit repair it again",
                r.history.flag_reason.unwrap_or_default()
            ),
            (None, Some(port)) if notes.is_empty() => {
                format!("service {state} at {}{routed}", at(port))
            }
            (None, Some(port)) => {
                format!(
                    "service {state} at {}{routed}: {}",
                    at(port),
                    notes.join("; ")
                )
            }
            (None, None) if notes.is_empty() => format!("service {state}"),
            (None, None) => format!("service {state}: {}", notes.join("; ")),
        };
    }

    /// Restarts a job's container under its lease (`restart`), or removes it and runs it
    /// again with its placement (`recreate`).
    async fn restart(
        &self,
        row: &JobRow,
        spec: &JobSpec,
        h: &HostHealth,
        ttl: u64,
        how: RepairAction,
    ) -> Result<(), String> {
        let inv = h.inventory.as_ref();
        let engine = engine_name(inv);
        let argv = match how {
            RepairAction::Restart => restart_argv(self.project(), &row.id, ttl, engine),
            RepairAction::Recreate => {
                let kind = inv
                    .and_then(|i| i.engine.as_ref())
                    .map_or(EngineKind::Docker, |e| e.kind);
                let gpus: Vec<u32> = row
                    .gpus
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_default();
                let wsl = inv.is_some_and(|i| i.wsl2);
                let devs = inv
                    .and_then(|i| devices(i, &gpus))
                    .ok_or("its MIG devices are gone from the host's inventory")?;
                start_argv(
                    self.project(),
                    &row.id,
                    ttl,
                    &run_argv_on(kind, wsl, self.project(), &row.id, spec, &devs, &[]),
                )
            }
        };
        let out = self
            .runners
            .remote(&h.host)
            .await?
            .run(&argv)
            .await
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err(out.stderr.trim().lines().last().unwrap_or("").to_owned())
        }
    }

    /// Records a state change of a service job and publishes it, like the platform's runtime.
    fn move_service(
        &self,
        store: &Store,
        name: &str,
        from: Option<State>,
        to: State,
        reason: &str,
        flagged: bool,
    ) {
        if let Err(e) = store.transition(name, from, to, reason, self.clock.now()) {
            tracing::warn!(service = name, error = %e, "recording a service job's state");
        }
        self.bus.publish(Event::ServiceStateChanged {
            project: self.settings().config.platform.project.clone(),
            service: name.to_owned(),
            from: from.map(|s| s.as_str().to_owned()),
            to: to.as_str().to_owned(),
            reason: reason.to_owned(),
            flagged,
        });
    }

    /// A service job starts (`DEPLOYING`) or ends (`ABSENT`): its record follows.
    fn service_moves(&self, row: &JobRow, to: State, reason: &str) {
        if spec_of(row).is_none_or(|s| s.service().is_none()) {
            return;
        }
        let name = autogit_core::jobkind::service_name(&row.id);
        let Ok(store) = self.store() else { return };
        let from = store
            .records(self.clock.now(), 0)
            .ok()
            .and_then(|mut r| r.remove(&name))
            .and_then(|r| r.state);
        if from != Some(to) {
            self.move_service(&store, &name, from, to, reason, false);
        }
    }

    fn end_service(&self, row: &JobRow, reason: &str) {
        self.service_moves(row, State::Absent, reason);
    }

    async fn pump(&self, health: &[HostHealth]) -> Result<Vec<JobRow>, ComputeError> {
        let st = |e: autogit_drivers::state::StateError| ComputeError::State(e.to_string());
        let store = self.store()?;
        let now = self.clock.now() as i64;
        let settings = self.settings();
        let c = &settings.config.compute;
        let mut rows = store.jobs().map_err(st)?;
        let mut leases = store.leases().map_err(st)?;
        for row in rows.iter_mut().filter(|r| state_of(r) == JobState::Running) {
            let mut lease = leases.remove(&row.id);
            self.refresh(health, row, &mut lease).await;
            store.update_job(row).map_err(st)?;
            keep_lease(&store, row, lease.as_ref()).map_err(st)?;
        }
        self.keep_gangs_whole(health, &mut rows).await?;
        let mut sched = Scheduler::new(
            host_slots(settings, health),
            &c.quotas,
            c.aging,
            u32::MAX,
            Fit::BestFit,
        );
        for row in rows.iter().filter(|r| state_of(r) == JobState::Running) {
            let (Some(spec), Some(host)) = (spec_of(row), row.host.clone()) else {
                continue;
            };
            let gpus: Vec<u32> = row
                .gpus
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            sched.adopt(
                request_of(row, &spec),
                Placement {
                    job: row.id.clone(),
                    host,
                    gpus,
                },
            );
        }
        for row in rows.iter_mut().filter(|r| state_of(r) == JobState::Queued) {
            let Some(spec) = spec_of(row) else {
                self.apply(row, JobEvent::Rejected, "unreadable job description".into());
                store.update_job(row).map_err(st)?;
                continue;
            };
            if let Err(e) = sched.submit(request_of(row, &spec)) {
                self.apply(row, JobEvent::Rejected, format!("rejected: {e}"));
                store.update_job(row).map_err(st)?;
            }
        }
        let placed = sched.schedule(now.max(0) as u64);
        // Where each gang's parts go, in rank order (the parts learn it from AUTOGIT_HOSTS).
        let mut gang_hosts: BTreeMap<String, BTreeMap<u32, String>> = BTreeMap::new();
        for p in &placed {
            if let Some(g) = rows
                .iter()
                .find(|r| r.id == p.job)
                .and_then(spec_of)
                .and_then(|s| s.gang)
            {
                gang_hosts.entry(g.id).or_default().insert(
                    g.rank,
                    autogit_core::remote::host_address(&p.host).to_owned(),
                );
            }
        }
        for p in placed {
            let Some(row) = rows.iter_mut().find(|r| r.id == p.job) else {
                continue;
            };
            let Some(spec) = spec_of(row) else { continue };
            let Some(inv) = health
                .iter()
                .find(|h| h.host == p.host)
                .and_then(|h| h.inventory.as_ref())
            else {
                continue;
            };
            let Some(engine) = inv.engine.as_ref().map(|e| e.kind) else {
                continue;
            };
            let ttl = self.rules().ttl;
            let Some(devs) = devices(inv, &p.gpus) else {
                continue;
            };
            let argv = start_argv(
                self.project(),
                &row.id,
                ttl,
                &run_argv_on(
                    engine,
                    inv.wsl2,
                    self.project(),
                    &row.id,
                    &spec,
                    &devs,
                    &spec
                        .gang
                        .as_ref()
                        .and_then(|g| gang_hosts.get(&g.id))
                        .map(|h| h.values().cloned().collect::<Vec<_>>())
                        .unwrap_or_default(),
                ),
            );
            let out = match self.runners.remote(&p.host).await {
                Ok(r) => r.run(&argv).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match out {
                Ok(o) if o.success() => {
                    row.host = Some(p.host.clone());
                    row.gpus = serde_json::to_string(&p.gpus).ok();
                    row.container = o.stdout.trim().lines().last().map(str::to_owned);
                    row.started_at = Some(now);
                    row.host_port = None;
                    // From when the start returned: the wrapper touched the lease before.
                    let lease = Lease::granted(&row.id, &p.host, &self.rules(), self.clock.now());
                    store.set_lease(&lease).map_err(st)?;
                    self.apply(row, JobEvent::Started, String::new());
                    self.service_moves(row, State::Deploying, &format!("started on {}", p.host));
                }
                Ok(o) => {
                    row.host = Some(p.host.clone());
                    let msg = format!(
                        "{} could not start it: {}",
                        p.host,
                        o.stderr.trim().lines().last().unwrap_or("")
                    );
                    self.apply(row, JobEvent::StartRefused, msg);
                }
                // Unreachable now: it stays queued and is placed again on the next pass.
                Err(e) => self.apply(row, JobEvent::StartUnreachable, format!("not started: {e}")),
            }
            store.update_job(row).map_err(st)?;
        }
        Ok(rows)
    }
}

/// Stores a running job's lease, or forgets it once the job left `running`.
fn keep_lease(
    store: &Store,
    row: &JobRow,
    lease: Option<&Lease>,
) -> Result<(), autogit_drivers::state::StateError> {
    match lease {
        Some(l) if state_of(row) == JobState::Running => store.set_lease(l),
        _ => store.drop_lease(&row.id),
    }
}

fn engine_name(inv: Option<&Inventory>) -> &'static str {
    inv.and_then(|i| i.engine.as_ref())
        .map_or("docker", |e| match e.kind {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        })
}

/// The scheduler's hosts: every configured host with the capabilities of its runners and the
/// GPUs it reported; an unreachable host is there with its last known GPUs but takes no jobs
/// (so work it could run waits for it), and a host without a container engine takes none.
pub fn host_slots(settings: &Settings, health: &[HostHealth]) -> Vec<HostSlots> {
    health
        .iter()
        .map(|h| {
            let mut caps: Vec<Capability> = settings
                .config
                .all_runners()
                .filter(|r| r.host == h.host)
                .flat_map(|r| r.capabilities.iter().copied())
                .collect();
            caps.sort();
            caps.dedup();
            let inv = h.inventory.as_ref().or(h.last_inventory.as_ref());
            // One sharing mode per host (validate refuses runners that disagree).
            let sharing = settings
                .config
                .runners
                .gpu
                .iter()
                .find(|r| r.host == h.host)
                .map(|r| r.sharing)
                .unwrap_or_default();
            let gpus = inv.map_or_else(Vec::new, |i| gpu_slots(i, sharing, h.reachable));
            // MIG devices have no place in `nvidia-smi topo -m`'s matrix.
            let mig = gpus.iter().any(|g| g.index >= MIG_SLOT_BASE);
            HostSlots {
                topology: inv.and_then(|i| i.topology.clone()).filter(|_| !mig),
                sharing,
                name: h.host.clone(),
                capabilities: caps,
                gpus,
                reachable: h.reachable && inv.is_some_and(|i| i.engine.is_some()),
            }
        })
        .collect()
}

pub fn spec_of(row: &JobRow) -> Option<JobSpec> {
    serde_json::from_str(&row.spec).ok()
}

fn request_of(row: &JobRow, spec: &JobSpec) -> Request {
    Request {
        id: row.id.clone(),
        user: row.user.clone(),
        gpus: spec.gpus,
        vram: spec.vram,
        capability: spec.capability,
        priority: spec.priority,
        submitted_at: row.submitted_at.max(0) as u64,
        gang: spec.gang.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, state: &str, route: Option<&str>, port: Option<u16>) -> JobRow {
        let spec = serde_json::json!({
            "image": "x", "gpus": 0, "vram": "1G", "capability": "inference",
            "service": {"port": 8000, "route": route, "guard": true},
        });
        JobRow {
            id: id.into(),
            user: "ann".into(),
            state: state.into(),
            spec: spec.to_string(),
            submitted_at: 1,
            host: Some("gpu1.lan".into()),
            gpus: None,
            container: None,
            started_at: Some(2),
            finished_at: None,
            exit_code: None,
            message: String::new(),
            host_port: port,
        }
    }

    /// Only running jobs with a route and a known host port are routed; a route two jobs got
    /// at once goes to the earlier one.
    #[test]
    fn routes_of_running_routed_services() {
        let rows = [
            row("job-1", "running", Some("llm"), Some(32768)),
            row("job-2", "running", Some("llm"), Some(32769)),
            row("job-3", "running", Some("embed"), None),
            row("job-4", "cancelled", Some("old"), Some(32770)),
            row("job-5", "queued", Some("next"), None),
            row("job-6", "running", None, Some(32771)),
            row("job-7", "running", Some("chat"), Some(32772)),
        ];
        let got: Vec<(String, String, String, bool)> = ComputeController::routes_of(&rows, None)
            .into_iter()
            .map(|r| (r.name, r.job, r.upstream, r.guard))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "llm".into(),
                    "job-1".into(),
                    "http://gpu1.lan:32768".into(),
                    true
                ),
                (
                    "chat".into(),
                    "job-7".into(),
                    "http://gpu1.lan:32772".into(),
                    true
                ),
            ]
        );
        // On autogit's own machine: at the platform network's gateway, once it is known.
        let mut local = row("job-8", "running", Some("here"), Some(32773));
        local.host = Some("local".into());
        let upstream = |g| {
            ComputeController::routes_of(std::slice::from_ref(&local), g)
                .into_iter()
                .map(|r| r.upstream)
                .collect::<Vec<_>>()
        };
        assert!(upstream(None).is_empty());
        assert_eq!(upstream(Some("172.18.0.1")), ["http://172.18.0.1:32773"]);
    }
}
