//! `autogit daemon`, in-process: the platform's reconcile loop and one supervised loop per
//! controller (certificate renewal, scheduled mirror syncs, DNS sync, on-demand runners,
//! runner repair, compute scheduling, scheduled backups, the registry's garbage collection, the
//! log follower), all on one tokio runtime, each with its own requeue
//! and error policy ([`crate::supervisor`]). None can block another; all stop on shutdown.
//! Nothing runs `autogit` as a child.

use crate::backup::BackupController;
use crate::compute::ComputeController;
use crate::dns::DnsController;
use crate::mirror::MirrorController;
use crate::platform::PlatformController;
use crate::runners::RunnerController;
use crate::supervisor::{ErrorPolicy, PassError, Requeue, Shutdown, supervise};
use crate::tls::TlsController;
use crate::{Bus, SharedClock};
use autogit_drivers::engine::ContainerEngine;
use std::time::Duration;

/// How often on-demand runners and compute jobs are looked at.
pub const RUNNER_INTERVAL: Duration = Duration::from_secs(30);
/// How often the compute pass runs: every [`RUNNER_INTERVAL`], or three times per
/// `compute.lease` when that is shorter, so a host that answers renews its jobs' leases before
/// its watchdog stops them.
pub fn compute_interval(settings: &crate::Settings) -> Duration {
    let lease = settings.config.compute.lease.as_secs();
    RUNNER_INTERVAL.min(Duration::from_secs((lease / 3).max(1)))
}

/// How often the runner repair loop looks at each registered runner's container (sooner when
/// a repair waits for its backoff).
pub const RUNNER_REPAIR_INTERVAL: Duration = Duration::from_secs(30);
/// DNS is synced every reconcile interval, but not more often than this.
pub const DNS_MIN_INTERVAL: Duration = Duration::from_secs(300);

/// How often the state database is checked for damage written under the daemon.
pub const STATE_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Runs every loop until `shutdown`. The platform controller is the daemon's: its plan is
/// what DNS syncs and its settings configure every other controller.
///
/// The state database is checked every [`STATE_CHECK_INTERVAL`] (`Store::check`): when it was
/// replaced, emptied or damaged under the daemon, every loop stops and the error is returned
/// (the flag and restart budget it holds cannot be trusted; a restart refuses the file and
/// says how to recover).
pub async fn run<E: ContainerEngine>(
    platform: &PlatformController<E>,
    bus: &Bus,
    clock: &SharedClock,
    outer: &Shutdown,
) -> Result<(), String> {
    let (trigger, inner) = crate::supervisor::shutdown();
    let shutdown = &inner;
    let failure = std::sync::Mutex::new(None::<String>);
    let watch = async {
        tokio::select! {
            () = outer.wait() => {}
            e = watch_state(platform, shutdown) => {
                bus.publish(crate::Event::ControllerFailed {
                    controller: "state".into(),
                    error: e.clone(),
                    failures: 1,
                    retry_in_s: 0,
                });
                *failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            }
        }
        trigger.fire();
    };
    let settings = platform.settings().clone();
    let policy = ErrorPolicy::default();
    let interval = settings.config.health.reconcile_interval.0;

    let tls = TlsController::new(settings.clone(), bus.clone(), clock.clone());
    let mirror = MirrorController::new(settings.clone(), bus.clone(), clock.clone());
    let dns = DnsController::new(settings.clone(), bus.clone());
    let runners = RunnerController::new(settings.clone(), bus.clone(), clock.clone());
    let compute = ComputeController::new(settings.clone(), bus.clone(), clock.clone());
    let backup = BackupController::new(settings.clone(), bus.clone(), clock.clone());
    let registry =
        crate::registry::RegistryController::new(settings.clone(), bus.clone(), clock.clone());
    let gitlab_url = settings.gitlab_local_url();
    let logs = crate::logs::LogController::new(settings.clone(), clock.clone());
    // Embeddings (logs.semantic) on a blocking thread of their own, with their own connection
    // to the store: the follower never waits for the model.
    let embed = std::sync::Arc::new(crate::logs::LogController::new(
        settings.clone(),
        clock.clone(),
    ));
    let loki = logs.loki_url();
    let meili = logs.meilisearch_url();
    let http = reqwest::Client::new();

    let reconcile = platform.run(shutdown.wait());
    // The engine proxy of this machine's runners (runner containers reach the engine only
    // through it); a socket that cannot be bound is reported once, and the on-demand start
    // says that no proxy listens.
    let engine_proxy = async {
        if let Err(e) = runners.serve_local_engine_proxy(shutdown.wait()).await {
            bus.publish(crate::Event::ControllerFailed {
                controller: "engine-proxy".into(),
                error: e,
                failures: 1,
                retry_in_s: 0,
            });
        }
    };
    let tls_loop = supervise("tls", bus, clock, policy, shutdown, || async {
        if !tls.configured() {
            return Ok(Requeue::Never);
        }
        // Failures are the controller's own backoff (core::tls::retry_after), not an error
        // of the loop: the next pass time already says when to try again.
        Ok(Requeue::At(tls.pass().await))
    });
    let mirror_loop = supervise("mirror", bus, clock, policy, shutdown, || {
        mirror_pass(&mirror, shutdown)
    });
    let dns_loop = supervise("dns", bus, clock, policy, shutdown, || async {
        if !dns.manages_records() {
            return Ok(Requeue::Never);
        }
        // A failed sync is published by the controller; the loop backs off.
        dns.sync(&platform.plan)
            .await
            .map_err(|e| PassError::published(e.to_string()))?;
        Ok(Requeue::After(interval.max(DNS_MIN_INTERVAL)))
    });
    let runner_loop = supervise("runners", bus, clock, policy, shutdown, || async {
        if !runners.any() {
            return Ok(Requeue::Never);
        }
        runners
            .autoscale_pass(&gitlab_url)
            .await
            .map_err(PassError::from)?;
        Ok(Requeue::After(RUNNER_INTERVAL))
    });
    let repair_loop = supervise("runner-repair", bus, clock, policy, shutdown, || async {
        if !runners.any() {
            return Ok(Requeue::Never);
        }
        // Dead runner containers on their hosts, restarted with the services' budget, backoff
        // and flag (RunnerController::repair_pass); per-runner errors are on its rows.
        let report = runners.repair_pass().await.map_err(PassError::from)?;
        let soon = clock.now() + RUNNER_REPAIR_INTERVAL.as_secs();
        Ok(Requeue::At(report.next.map_or(soon, |t| t.min(soon)) as i64))
    });
    let compute_loop = supervise("compute", bus, clock, policy, shutdown, || async {
        // Jobs waiting or running: a scheduling pass places queued jobs on hosts with room,
        // notices finished ones and unreachable hosts.
        if compute.active() {
            compute
                .pass()
                .await
                .map_err(|e| PassError::from(e.to_string()))?;
        }
        Ok(Requeue::After(compute_interval(&settings)))
    });
    let logs_loop = supervise("logs", bus, clock, policy, shutdown, || async {
        // The containers' new lines, enriched, scrubbed and indexed (`autogit logs search`).
        logs.follow_pass(&platform.runtime.engine)
            .await
            .map_err(|e| PassError::from(e.to_string()))?;
        // And to Loki, when there is one; a Loki that is down backs the loop off and gets
        // the lines later.
        if let Some(url) = &loki {
            logs.loki_pass(&http, url)
                .await
                .map_err(|e| PassError::from(e.to_string()))?;
        }
        // And to Meilisearch, the same way.
        if let Some(url) = &meili {
            logs.meilisearch_pass(&http, url)
                .await
                .map_err(|e| PassError::from(e.to_string()))?;
        }
        Ok(Requeue::After(crate::logs::FOLLOW_INTERVAL))
    });
    let embed_loop = supervise("logs-embed", bus, clock, policy, shutdown, || async {
        if !embed.semantic() {
            return Ok(Requeue::Never);
        }
        let e = embed.clone();
        let n = tokio::task::spawn_blocking(move || e.embed_pass())
            .await
            .map_err(|e| PassError::from(e.to_string()))?
            .map_err(|e| PassError::from(e.to_string()))?;
        // More to embed: at once; else when new lines may have come.
        Ok(Requeue::After(if n > 0 {
            Duration::ZERO
        } else {
            crate::logs::FOLLOW_INTERVAL
        }))
    });
    let backup_loop = supervise("backup", bus, clock, policy, shutdown, || async {
        match backup.pass().await.map_err(PassError::from)? {
            Some(next) => Ok(Requeue::At(next)),
            None => Ok(Requeue::Never),
        }
    });
    let registry_loop = supervise("registry-gc", bus, clock, policy, shutdown, || async {
        if !registry.enabled() {
            return Ok(Requeue::Never);
        }
        // A failed collection is published as a failed task; the schedule moves on.
        Ok(match registry.pass().await.map_err(PassError::from)? {
            Some(next) => Requeue::At(next),
            None => Requeue::Never,
        })
    });
    tokio::join!(
        watch,
        reconcile,
        tls_loop,
        mirror_loop,
        dns_loop,
        engine_proxy,
        runner_loop,
        repair_loop,
        compute_loop,
        logs_loop,
        embed_loop,
        backup_loop,
        registry_loop
    );
    match failure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Resolves with the first problem `Store::check` finds (never, while the database is sound).
async fn watch_state<E: ContainerEngine>(
    platform: &PlatformController<E>,
    shutdown: &Shutdown,
) -> String {
    loop {
        if let Err(e) = platform.runtime.with_store(|s| s.check()) {
            return e.to_string();
        }
        tokio::select! {
            () = tokio::time::sleep(STATE_CHECK_INTERVAL) => {}
            () = shutdown.wait() => return std::future::pending().await,
        }
    }
}

/// `autogit daemon --target kubernetes`: the cluster's reconcile loop (woken by a watch of
/// the project's workloads, `on_pass` told of each pass) and the scheduled mirror syncs,
/// which need no container engine (git and GitLab's API at `gitlab.external_url`), until
/// `shutdown`. The engine daemon's other loops have their cluster counterpart or no place
/// there: records are ExternalDNS's (annotations of the export), certificates cert-manager's,
/// runners are the cluster's Deployments, logs the cluster's.
pub async fn run_kube(
    k: &crate::kube::KubeController,
    bus: &Bus,
    clock: &SharedClock,
    shutdown: &Shutdown,
    on_pass: impl Fn(&Result<crate::kube::KubePass, crate::kube::KubeTargetError>),
) {
    let settings = k.settings().clone();
    let interval = settings.config.health.reconcile_interval.0;
    let mirror = MirrorController::new(settings, bus.clone(), clock.clone());
    let cluster = k.run(interval, shutdown.wait(), on_pass);
    let mirror_loop = supervise(
        "mirror",
        bus,
        clock,
        ErrorPolicy::default(),
        shutdown,
        || mirror_pass(&mirror, shutdown),
    );
    tokio::join!(cluster, mirror_loop);
}

/// One pass of the scheduled mirror syncs: none configured, never again; else at the next
/// due time (a minute when none is due). A sync in flight stops at `shutdown`.
async fn mirror_pass(mirror: &MirrorController, shutdown: &Shutdown) -> Result<Requeue, PassError> {
    if !mirror.scheduled() {
        return Ok(Requeue::Never);
    }
    match mirror.pass(shutdown.wait()).await {
        Ok(Some(next)) => Ok(Requeue::At(next)),
        Ok(None) => Ok(Requeue::After(Duration::from_secs(60))),
        Err(e) => Err(e.to_string().into()),
    }
}
