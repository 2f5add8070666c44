//! The platform controller: the plan's containers on the engine, kept in the desired state by
//! the reconcile loop of `drivers::runtime` (core decides, the runtime acts and records). What
//! the runtime does is published on the bus: every state change, every action, every failed
//! action, a raised human-intervention flag.

use crate::{Bus, Event, Settings};
use autogit_core::config::Notify;
use autogit_core::plan::Plan;
use autogit_core::reconcile::Action;
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::notify::Notifier;
use autogit_drivers::runtime::{PassReport, Runtime, RuntimeError};
use autogit_drivers::state::{ServiceRow, Store};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct PlatformController<E: ContainerEngine> {
    settings: Arc<Settings>,
    bus: Bus,
    pub runtime: Runtime<E>,
    pub plan: Plan,
    _forward: AbortOnDrop,
    /// Failed passes in a row (the engine unreachable): published at 1, 2, 4, 8, ... so an
    /// engine down for an hour is a handful of notifications, not one every 5 s.
    failed_passes: std::sync::atomic::AtomicU32,
}

/// The task that forwards the runtime's state changes to the bus ends with its controller.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The values of the secrets the plan's services and the webhooks name.
pub fn plan_secrets(settings: &Settings, plan: &Plan) -> BTreeMap<String, String> {
    let mut names: Vec<String> = plan
        .services
        .iter()
        .flat_map(|s| s.secret_env.clone())
        .collect();
    for n in &settings.config.health.notify {
        if let Notify::Webhook {
            secret_env: Some(k),
            ..
        } = n
        {
            names.push(k.clone());
        }
    }
    settings.secrets(&names)
}

/// The data dir, created private (0700) and absolute (bind mounts need absolute paths).
/// `nginx -s reload` in the plan's running nginx container, when there is one (nothing
/// else: `Ok(false)`): the master reads the configuration again, starts new workers and lets
/// the old ones finish their requests. After a renewal (`tls`) and after the routes of compute
/// services changed (`compute`); Traefik reloads by itself.
pub async fn reload_nginx(settings: &Settings, plan: &Plan) -> Result<bool, String> {
    if plan.service("nginx").is_none() {
        return Ok(false);
    }
    let engine = autogit_drivers::engine::docker::Docker::connect(settings.socket(), &settings.env)
        .await
        .map_err(|e| e.to_string())?;
    let running = engine
        .list(&plan.project)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|o| o.service == "nginx" && o.state == autogit_drivers::engine::RunState::Running);
    let Some(o) = running else {
        return Ok(false);
    };
    let (code, out) = engine
        .exec(
            &o.id,
            &["nginx".to_owned(), "-s".to_owned(), "reload".to_owned()],
        )
        .await
        .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("nginx -s reload failed: {}", out.trim()));
    }
    Ok(true)
}

pub fn data_dir(settings: &Settings) -> Result<PathBuf, String> {
    settings.ensure_data_dir()
}

impl<E: ContainerEngine> PlatformController<E> {
    /// The runtime for `plan` on `engine`, recording in the state store and publishing on
    /// `bus`. The rendered files are expected under `<data>/rendered` (see
    /// `crate::plan::write_rendered`).
    pub fn open(settings: Arc<Settings>, bus: Bus, engine: E, plan: Plan) -> Result<Self, String> {
        let clock = bus.clock().clone();
        let data = data_dir(&settings)?;
        let store = Store::open(&data.join("state.db")).map_err(|e| e.to_string())?;
        let rendered = data.join("rendered");
        let (notifier, mut changes) = Notifier::channel(256);
        let runtime = Runtime::new(
            engine,
            store,
            &plan,
            &settings.config,
            &rendered.display().to_string(),
            &plan_secrets(&settings, &plan),
            notifier,
        )
        .map_err(|e| e.to_string())?
        .with_clock(move || clock.now());
        let tx = bus.clone();
        let forward = tokio::spawn(async move {
            while let Some(c) = changes.recv().await {
                tx.publish(Event::ServiceStateChanged {
                    project: c.project,
                    service: c.service,
                    from: c.from,
                    to: c.to,
                    reason: c.reason,
                    flagged: c.flagged,
                });
            }
        });
        Ok(Self {
            settings,
            bus,
            runtime,
            plan,
            _forward: AbortOnDrop(forward),
            failed_passes: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Without the host-side HTTP/TCP probes (engines whose containers have no published
    /// ports, such as the in-memory engine of the tests).
    pub fn without_host_probes(mut self) -> Self {
        self.runtime = self.runtime.without_host_probes();
        self
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Publishes what a pass did: each action, each failed action, each raised flag, or the
    /// pass's failure.
    pub fn publish_pass(&self, result: &Result<PassReport, RuntimeError>) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(report) => {
                self.failed_passes.store(0, Ordering::SeqCst);
                for a in &report.actions {
                    if let Action::Flag { service, reason } = a {
                        self.bus.publish(Event::FlagRaised {
                            service: service.clone(),
                            reason: reason.clone(),
                        });
                    }
                    if !matches!(a, Action::Transition { .. }) {
                        self.bus.publish(Event::ReconcileAction {
                            action: serde_json::to_value(a).unwrap_or_default(),
                        });
                    }
                }
                for (service, error) in &report.errors {
                    self.bus.publish(Event::ReconcileActionFailed {
                        service: service.clone(),
                        error: error.clone(),
                    });
                }
            }
            Err(e) => {
                let failures = self.failed_passes.fetch_add(1, Ordering::SeqCst) + 1;
                if failures.is_power_of_two() {
                    self.bus.publish(Event::ControllerFailed {
                        controller: "platform".into(),
                        error: e.to_string(),
                        failures,
                        retry_in_s: 5,
                    });
                }
            }
        }
    }

    /// One reconcile pass, published.
    pub async fn reconcile_once(&self) -> Result<PassReport, RuntimeError> {
        let r = self.runtime.reconcile_once().await;
        self.publish_pass(&r);
        r
    }

    /// What the plan's containers read from the host, written as `install` writes it: the
    /// rendered configuration under `<data>/rendered`, Prometheus's scrape key when it scrapes
    /// the API, and the ports the services were given (kept across plans).
    pub fn write_files(&self) -> Result<(), String> {
        let rendered = data_dir(&self.settings)?.join("rendered");
        crate::plan::write_rendered(&self.settings, &rendered, &self.plan)?;
        if self.plan.service("prometheus").is_some() && self.plan.service("api").is_some() {
            crate::metrics::ensure_scrape_key(&self.settings, &rendered, self.bus.clock().clone())?;
        }
        self.runtime
            .with_store(|s| crate::plan::remember_ports(s, &self.settings, &self.plan))
    }

    /// The reconcile loop until `shutdown`: at once on engine events, at requeue times, and
    /// every `health.reconcile_interval`. Each pass is published.
    ///
    /// The daemon may be the first thing to run on a machine (nothing installed): the files
    /// the containers mount are written first, and a container's network, volumes and image
    /// are made ready before it is created (`Runtime::create_and_start`), in the plan's order.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        if let Err(e) = self.write_files() {
            // The passes still run: containers that exist are kept healthy, and a create that
            // needs a missing file fails visibly with its own error.
            self.bus.publish(Event::ControllerFailed {
                controller: "platform".into(),
                error: e,
                failures: 1,
                retry_in_s: 0,
            });
        }
        let interval = self.settings.config.health.reconcile_interval.0;
        self.runtime
            .run(interval, shutdown, |r| self.publish_pass(r))
            .await;
    }

    /// The services' recorded states (`status`).
    pub fn services(&self) -> Vec<ServiceRow> {
        self.runtime.with_store(Store::services).unwrap_or_default()
    }

    /// The state-machine state of each planned local service, once every one has a record.
    pub fn states(&self) -> Vec<(String, String)> {
        let wanted: Vec<&str> = self
            .runtime
            .specs
            .iter()
            .map(|s| s.service.as_str())
            .collect();
        self.services()
            .into_iter()
            .filter(|r| wanted.contains(&r.service.as_str()))
            .map(|r| (r.service, r.state))
            .collect()
    }

    /// Lets queued notifications reach the bus before a one-shot command ends.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One service as `autogit status` shows it: its recorded state and what the engine says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub state: String,
    pub since: i64,
    pub last_reason: String,
    /// Since the engine started the running container (`3m`), if it runs.
    pub uptime: Option<String>,
    pub restarts: i64,
    pub flagged: bool,
    pub flag_reason: Option<String>,
    pub health: Option<String>,
    pub started_at: Option<String>,
}

/// The platform's state: recorded by the daemon in the state store, joined with the engine's
/// view (when it answers).
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// `false` when there is no state database (nothing installed).
    pub installed: bool,
    /// Why the engine could not be asked, if it could not.
    pub engine_error: Option<String>,
    pub services: Vec<ServiceStatus>,
}

/// `filter`: one service, `runners` (every `runner-*`), or all.
pub async fn status(
    settings: &Settings,
    now: u64,
    filter: Option<&str>,
) -> Result<StatusReport, String> {
    use autogit_core::units::Dur;
    use autogit_drivers::engine::RunState;
    let db = settings.state_db();
    if !db.exists() {
        return Ok(StatusReport {
            installed: false,
            engine_error: None,
            services: Vec::new(),
        });
    }
    let rows = Store::open(&db)
        .and_then(|s| s.services())
        .map_err(|e| e.to_string())?;
    // Other commands make the state database too (`runner health` records hosts, `api-key`
    // keys): installed means a service has a state.
    if rows.is_empty() {
        return Ok(StatusReport {
            installed: false,
            engine_error: None,
            services: Vec::new(),
        });
    }
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| match filter {
            None => true,
            Some("runners") => r.service.starts_with("runner-"),
            Some(s) => r.service == s,
        })
        .collect();
    let observed =
        match autogit_drivers::engine::docker::Docker::connect(settings.socket(), &settings.env)
            .await
        {
            Ok(e) => e
                .list(&settings.config.platform.project)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
    let (obs, engine_error) = match observed {
        Ok(o) => (o, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let services = rows
        .into_iter()
        .map(|r| {
            let o = obs.iter().find(|o| o.service == r.service);
            // Docker reports year 1 for never-started containers.
            let uptime = o
                .filter(|o| o.state == RunState::Running)
                .and_then(|o| o.started_at.as_deref())
                .and_then(autogit_core::units::rfc3339_to_unix)
                .filter(|t| *t > 0)
                .map(|t| Dur::secs((now as i64 - t).max(0) as u64).to_string());
            ServiceStatus {
                uptime,
                health: o.map(|o| format!("{:?}", o.health).to_ascii_lowercase()),
                started_at: o.and_then(|o| o.started_at.clone()),
                state: r.state,
                since: r.since,
                last_reason: r.reason,
                restarts: r.restarts,
                flagged: r.flagged,
                flag_reason: r.flag_reason,
                service: r.service,
            }
        })
        .collect();
    Ok(StatusReport {
        installed: true,
        engine_error,
        services,
    })
}

/// What [`PlatformController::wait_healthy`] reports while it waits.
#[derive(Debug)]
pub enum InstallProgress<'a> {
    /// The services' states changed (service, state), in plan order.
    States(&'a [(String, String)]),
    /// An action failed for the first time (a second failure ends the wait).
    ActionFailed { service: &'a str, error: &'a str },
}

/// How a wait for health ended.
#[derive(Debug)]
pub enum InstallOutcome {
    Healthy {
        services: usize,
        after: Duration,
    },
    /// Asked not to wait (`--wait 0`): the containers are started.
    Started,
    /// The same action failed twice: waiting will not fix it.
    GaveUp {
        service: String,
        error: String,
    },
    /// Not healthy in time: the states, and the last log lines of each unhealthy service.
    NotHealthy {
        states: Vec<(String, String)>,
        logs: Vec<(String, Vec<String>)>,
    },
}

impl<E: ContainerEngine> PlatformController<E> {
    /// Reconciles every 2 seconds until every planned service is HEALTHY, `wait` has passed,
    /// or an action fails twice the same way. (`install` after `prepare`.)
    pub async fn wait_healthy(
        &self,
        wait: Duration,
        mut progress: impl FnMut(InstallProgress<'_>),
    ) -> Result<InstallOutcome, RuntimeError> {
        use autogit_core::lifecycle::State;
        let start = std::time::Instant::now();
        let wanted = self.runtime.specs.len();
        let mut seen_errors = std::collections::HashSet::new();
        let mut last: Vec<(String, String)> = Vec::new();
        loop {
            let report = self.reconcile_once().await?;
            for (service, error) in &report.errors {
                if seen_errors.insert(format!("{service}: {error}")) {
                    progress(InstallProgress::ActionFailed { service, error });
                } else if !error.contains("no container engine") {
                    return Ok(InstallOutcome::GaveUp {
                        service: service.clone(),
                        error: error.clone(),
                    });
                }
            }
            let states = self.states();
            if states != last {
                progress(InstallProgress::States(&states));
                last = states.clone();
            }
            if states.len() == wanted && states.iter().all(|(_, s)| s == State::Healthy.as_str()) {
                return Ok(InstallOutcome::Healthy {
                    services: wanted,
                    after: start.elapsed(),
                });
            }
            if start.elapsed() >= wait {
                if wait.is_zero() {
                    return Ok(InstallOutcome::Started);
                }
                let mut logs = Vec::new();
                let observed = self.runtime.engine.list(&self.runtime.project).await;
                for (svc, st) in &states {
                    if st != State::Healthy.as_str()
                        && let Ok(observed) = &observed
                        && let Some(o) = observed.iter().find(|o| &o.service == svc)
                        && let Ok(lines) = self.runtime.engine.logs(&o.id, None, Some(15)).await
                    {
                        logs.push((svc.clone(), lines));
                    }
                }
                return Ok(InstallOutcome::NotHealthy { states, logs });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// The platform's containers' logs, prefixed by service (`out(service padded to the longest
/// name, line)`): the last
/// `tail` lines or those since `since` (unix seconds); with `follow`, new lines every second
/// until `stop` resolves.
pub async fn logs(
    settings: &Settings,
    services: &[String],
    since: Option<i64>,
    tail: Option<usize>,
    follow: bool,
    stop: impl Future<Output = ()>,
    mut out: impl FnMut(&str, &str),
) -> Result<(), String> {
    let engine = autogit_drivers::engine::docker::Docker::connect(settings.socket(), &settings.env)
        .await
        .map_err(|e| e.to_string())?;
    let project = &settings.config.platform.project;
    let (mut since, mut tail) = (since, tail);
    tokio::pin!(stop);
    loop {
        let observed = engine.list(project).await.map_err(|e| e.to_string())?;
        let chosen: Vec<_> = observed
            .iter()
            .filter(|o| services.is_empty() || services.contains(&o.service))
            .collect();
        if chosen.is_empty() && !follow {
            return Err("no matching containers; is the platform installed?".to_owned());
        }
        let fetched_at = autogit_drivers::runtime::now() as i64;
        let width = chosen.iter().map(|o| o.service.len()).max().unwrap_or(0);
        for o in &chosen {
            let name = format!("{:<width$}", o.service);
            match engine.logs(&o.id, since, tail).await {
                Ok(lines) => lines.iter().for_each(|l| out(&name, l)),
                Err(e) => out(&name, &format!("(cannot read its logs: {e})")),
            }
        }
        if !follow {
            return Ok(());
        }
        since = Some(fetched_at);
        tail = None;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = &mut stop => return Ok(()),
        }
    }
}

/// What [`deploy`] reports while it works (image pulls go to their own callback, live).
#[derive(Debug)]
pub enum DeployProgress<'a> {
    /// Which engine it found (`docker 28.2 (API 1.41) at /var/run/docker.sock`).
    Engine(String),
    Wait(InstallProgress<'a>),
}

/// `install` as one operation: the plan (quietly: the caller reports its diagnostics), the
/// rendered files, the engine, the remembered ports, images present or pulled, then the wait
/// for health. The upgrade runs it once per step.
#[tracing::instrument(name = "platform.deploy", skip_all)]
pub async fn deploy(
    settings: Arc<Settings>,
    bus: &Bus,
    wait: Duration,
    pull: &(dyn Fn(autogit_drivers::engine::PullProgress) + Send + Sync),
    mut progress: impl FnMut(DeployProgress<'_>),
) -> Result<InstallOutcome, String> {
    let plan = crate::plan::quiet(&settings)?;
    let engine = autogit_drivers::engine::docker::Docker::connect(settings.socket(), &settings.env)
        .await
        .map_err(|e| e.to_string())?;
    let i = engine.info().await.map_err(|e| e.to_string())?;
    progress(DeployProgress::Engine(format!(
        "{} {} (API {}{}) at {}",
        i.kind,
        i.version,
        i.api_version,
        if i.rootless { ", rootless" } else { "" },
        i.socket.display()
    )));
    let platform = PlatformController::open(settings.clone(), bus.clone(), engine, plan)?;
    platform.write_files()?;
    platform
        .runtime
        .prepare(pull)
        .await
        .map_err(|e| e.to_string())?;
    platform
        .wait_healthy(wait, |p| progress(DeployProgress::Wait(p)))
        .await
        .map_err(|e| {
            format!(
                "{e}; run `autogit install` again once it is fixed: it resumes where it stopped"
            )
        })
}
