//! autogit's own metrics, in the Prometheus/OpenMetrics text exposition (`prometheus-client`).
//!
//! Everything comes from the state store, read at scrape time, because the bus is one
//! process's and the store is where every process's events land (the daemon's reconcile
//! loop, `autogit serve` in the `api` container, a CLI command): what happened (transitions
//! and repair durations, repairs, flags, mirror runs, DNS syncs, renewals, compute job
//! changes, runner scaling, controller failures, every event by kind) is counted by feeding
//! the bus's typed [`Event`]s, as the state-store subscriber recorded them, through
//! [`Metrics::observe`] from a cursor ([`Metrics::catch_up`]: the `events` and `transitions`
//! tables as the API's event stream reads them, and the `repairs` table); what is (each
//! service's state and flag, the restart budget in use, each mirror's last success and
//! failure streak, jobs by state, runner hosts and their GPUs, the certificate's end) is a
//! [`StateSnapshot`]. Counters start from the store's first row, so they survive restarts of
//! autogit. The API server adds its requests and the guard's analyses
//! ([`Metrics::api_request`], [`Metrics::guard_analysis`]), which are its own.
//!
//! **Invariant:** labels are bounded: service, mirror, runner, host and provider names come
//! from the configuration, states and results from fixed sets, operations from the API's
//! table; never a request id, an error message or other free text.

use crate::event::{Envelope, Event};
use autogit_drivers::state::{FeedRow, StateError, Store};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Seconds, 5 ms to ~82 s (API requests).
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Seconds, 1 s to ~36 h (repairs, mirror runs).
fn slow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 18))
}

/// The state read at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateSnapshot {
    pub services: Vec<ServiceGauges>,
    /// The restart budget (`health.restart_budget.max`) and its window in seconds.
    pub restart_budget: (u32, u64),
    pub mirrors: Vec<MirrorGauges>,
    /// Compute jobs by state (`queued`, `running`, `succeeded`, `failed`, `cancelled`).
    pub jobs: BTreeMap<String, u64>,
    pub hosts: Vec<HostGauges>,
    /// The current certificate's end (unix seconds), when there is one.
    pub certificate_not_after: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceGauges {
    pub service: String,
    pub state: String,
    pub flagged: bool,
    /// Repairs counted against the budget in its current window.
    pub budget_used: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorGauges {
    pub mirror: String,
    pub last_success: Option<i64>,
    pub consecutive_failures: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostGauges {
    pub host: String,
    pub reachable: bool,
    /// (GPU index, memory total, memory free) in bytes, as last probed.
    pub gpus: Vec<(u32, u64, u64)>,
}

impl StateSnapshot {
    /// Reads the store: services and their repair windows, mirrors, jobs, runner hosts. The
    /// certificate is the caller's (`TlsController::current`).
    pub fn read(store: &Store, settings: &crate::Settings, now: u64) -> Result<Self, StateError> {
        let budget = &settings.config.health.restart_budget;
        let window = budget.window.as_secs();
        let records = store.records(now, window)?;
        let services = records
            .into_iter()
            .map(|(service, r)| ServiceGauges {
                service,
                state: r.state.map_or("ABSENT", |s| s.as_str()).to_owned(),
                flagged: r.history.flagged,
                budget_used: r.history.repairs.len().try_into().unwrap_or(u32::MAX),
            })
            .collect();
        let streaks = store.mirror_failure_streaks()?;
        let mirrors = store
            .mirror_status()?
            .into_iter()
            .map(|m| MirrorGauges {
                consecutive_failures: streaks.get(&m.mirror).copied().unwrap_or(0),
                last_success: m.last_success,
                mirror: m.mirror,
            })
            .collect();
        let mut jobs = BTreeMap::new();
        for j in store.jobs()? {
            *jobs.entry(j.state).or_insert(0) += 1;
        }
        let hosts = store
            .hosts()?
            .into_iter()
            .map(|h| {
                let inv: Option<autogit_core::inventory::Inventory> = h
                    .inventory
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok());
                HostGauges {
                    gpus: inv.map_or_else(Vec::new, |i| {
                        i.gpus
                            .iter()
                            .map(|g| (g.index, g.memory_total.0, g.memory_free.0))
                            .collect()
                    }),
                    host: h.host,
                    reachable: h.reachable,
                }
            })
            .collect();
        Ok(Self {
            services,
            restart_budget: (budget.max, window),
            mirrors,
            jobs,
            hosts,
            certificate_not_after: None,
        })
    }
}

/// The API key Prometheus scrapes `/metrics` with, in `<rendered>/prometheus/autogit.token`
/// (`core::monitoring::AUTOGIT_TOKEN_FILE`, beside the rendered `prometheus.yml`): created
/// once, when the file is missing, as a viewer key limited to the `metrics` scope, named
/// `prometheus-scrape`. Mode 0644: Prometheus runs as another user in its container; the data
/// dir around it is 0700. Returns the file when it was created. To replace the key, revoke it
/// and delete the file; the next `install` makes a new one.
pub fn ensure_scrape_key(
    settings: &crate::Settings,
    rendered: &std::path::Path,
    clock: crate::SharedClock,
) -> Result<Option<std::path::PathBuf>, String> {
    use secrecy::ExposeSecret;
    let file = rendered
        .join("prometheus")
        .join(autogit_core::monitoring::AUTOGIT_TOKEN_FILE);
    if file.is_file() {
        return Ok(None);
    }
    let access = crate::access::AccessController::open(settings, clock)
        .map_err(|e| format!("the scrape key: {e}"))?;
    let created = access
        .create_key(crate::access::NewKey {
            name: "prometheus-scrape".into(),
            role: autogit_core::access::Role::Viewer,
            scopes: vec!["metrics".into()],
            ttl: None,
        })
        .map_err(|e| format!("the scrape key: {e}"))?;
    autogit_drivers::fsx::write_atomic(&file, created.secret.expose_secret().as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {e}"))?;
    Ok(Some(file))
}

/// How far the store's tables have been counted.
#[derive(Default)]
struct Cursor {
    /// (events, transitions) row ids (`Store::feed_after`).
    feed: (i64, i64),
    repairs: ByTime,
    mirror_runs: ByTime,
}

/// A cursor over rows counted by their time rather than their id (ids of deleted rows are
/// reused; a mirror run gets its id when it starts and its time when it ends): the latest
/// second counted and the ids counted at that second.
#[derive(Default)]
struct ByTime {
    at: i64,
    ids: Vec<i64>,
}

impl ByTime {
    /// Whether row `id` at `at` is new, marking it counted.
    fn fresh(&mut self, id: i64, at: i64) -> bool {
        if at < self.at || (at == self.at && self.ids.contains(&id)) {
            return false;
        }
        if at > self.at {
            self.at = at;
            self.ids.clear();
        }
        self.ids.push(id);
        true
    }
}

/// A row of the store's feed as the event it recorded (`None`: not an event this autogit
/// knows, e.g. one a newer autogit wrote).
fn envelope(row: FeedRow) -> Option<Envelope> {
    match row {
        FeedRow::Event { at, detail, .. } => Some(Envelope {
            at: at.max(0) as u64,
            event: serde_json::from_str(&detail).ok()?,
        }),
        FeedRow::Transition(t) => Some(Envelope {
            at: t.at.max(0) as u64,
            event: Event::ServiceStateChanged {
                project: String::new(),
                service: t.service,
                from: t.from,
                to: t.to,
                reason: String::new(),
                flagged: false,
            },
        }),
    }
}

/// The registry and every metric in it. Cheap to share (`Arc`); every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    /// Held while the state gauges are refilled and the text encoded (one scrape at a time).
    scrape: Mutex<()>,
    /// When each service entered REPAIRING (unix seconds), for the repair duration.
    repairing_since: Mutex<HashMap<String, u64>>,
    /// When the current mirror run started.
    mirror_started: Mutex<Option<u64>>,
    /// How far the store's tables have been counted: (events, transitions) row ids, and the
    /// time of the latest repair counted with the ids counted at that second.
    cursor: Mutex<Cursor>,
    events: Counters,
    transitions: Counters,
    repairs: Counters,
    repair_duration: Histograms,
    flags: Counters,
    reconcile_failures: Counters,
    mirror_runs: Counters,
    mirror_duration: Histogram,
    mirror_run_duration: Histograms,
    dns_syncs: Counters,
    dns_changes: Counters,
    dns_conflicts: Gauges,
    cert_renewals: Counters,
    compute_changes: Counters,
    runner_scaling: Counters,
    runner_jobs: Gauges,
    runner_repairs: Counters,
    controller_failures: Counters,
    backups: Counters,
    webhook_failures: Counter,
    guard_decisions: Counters,
    guard_duration: Histogram,
    api_requests: Counters,
    api_duration: Histograms,
    // Read at scrape time.
    service_state: Gauges,
    service_healthy: Gauges,
    service_flagged: Gauges,
    budget_used: Gauges,
    budget_max: Gauges,
    mirror_last_success: Gauges,
    mirror_lag: Gauges,
    mirror_failures: Gauges,
    jobs: Gauges,
    host_up: Gauges,
    gpu_total: Gauges,
    gpu_free: Gauges,
    cert_expiry: Gauges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("autogit");
        macro_rules! reg {
            ($name:literal, $help:literal, $m:expr) => {{
                let m = $m;
                r.register($name, $help, m.clone());
                m
            }};
            ($name:literal, $help:literal, $unit:expr, $m:expr) => {{
                let m = $m;
                r.register_with_unit($name, $help, $unit, m.clone());
                m
            }};
        }
        let hist = || Histograms::new_with_constructor(slow_buckets as fn() -> Histogram);
        let s = Unit::Seconds;
        Self {
            events: reg!(
                "events",
                "Events recorded in the state store, by kind and severity",
                Counters::default()
            ),
            transitions: reg!(
                "service_transitions",
                "Service state transitions, by service and new state",
                Counters::default()
            ),
            repairs: reg!(
                "service_repairs",
                "Repairs (restart or recreate) of a service",
                Counters::default()
            ),
            repair_duration: reg!(
                "service_repair_duration",
                "Time from REPAIRING to the next HEALTHY or FAILED",
                s.clone(),
                hist()
            ),
            flags: reg!(
                "service_flags_raised",
                "Human-intervention flags raised",
                Counters::default()
            ),
            reconcile_failures: reg!(
                "reconcile_action_failures",
                "Reconcile actions that failed, by service",
                Counters::default()
            ),
            mirror_runs: reg!(
                "mirror_runs",
                "Mirror runs by mirror and result (synced, up_to_date, failed)",
                Counters::default()
            ),
            mirror_duration: reg!(
                "mirror_sync_duration",
                "Duration of a whole mirror sync (all mirrors)",
                s.clone(),
                slow_buckets()
            ),
            mirror_run_duration: reg!(
                "mirror_run_duration",
                "Duration of one repository's mirror run, by mirror and result",
                s.clone(),
                hist()
            ),
            dns_syncs: reg!(
                "dns_syncs",
                "DNS syncs by provider and result (ok, failed)",
                Counters::default()
            ),
            dns_changes: reg!(
                "dns_record_changes",
                "DNS records changed by syncs, by provider and change (created, updated, deleted)",
                Counters::default()
            ),
            dns_conflicts: reg!(
                "dns_conflicts",
                "Records the last DNS sync left alone (held by someone else)",
                Gauges::default()
            ),
            cert_renewals: reg!(
                "certificate_renewals",
                "Certificate renewals by result (ok, failed)",
                Counters::default()
            ),
            compute_changes: reg!(
                "compute_job_transitions",
                "Compute job state changes, by new state",
                Counters::default()
            ),
            runner_scaling: reg!(
                "runner_scaling",
                "On-demand runner starts and stops, by runner and action",
                Counters::default()
            ),
            runner_jobs: reg!(
                "runner_jobs",
                "Jobs waiting for or running on an on-demand runner, at its latest scaling",
                Gauges::default()
            ),
            runner_repairs: reg!(
                "runner_repairs",
                "Repairs of dead runner containers, by runner and result",
                Counters::default()
            ),
            controller_failures: reg!(
                "controller_failures",
                "Failed controller passes, by controller",
                Counters::default()
            ),
            backups: reg!(
                "backups",
                "Backups by result (ok, failed)",
                Counters::default()
            ),
            webhook_failures: reg!(
                "webhook_failures",
                "Notifications that could not be delivered",
                Counter::default()
            ),
            guard_decisions: reg!(
                "guard_decisions",
                "Guard analyses by verdict (clean, suspicious, blocked)",
                Counters::default()
            ),
            guard_duration: reg!(
                "guard_analysis_duration",
                "Time of one guard analysis",
                s.clone(),
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            ),
            api_requests: reg!(
                "api_requests",
                "API requests by operation id and status code",
                Counters::default()
            ),
            api_duration: reg!(
                "api_request_duration",
                "API request latency by operation id",
                s.clone(),
                Histograms::new_with_constructor(fast_buckets as fn() -> Histogram)
            ),
            service_state: reg!(
                "service_state",
                "1 for the service's current state, 0 for the others",
                Gauges::default()
            ),
            service_healthy: reg!(
                "service_healthy",
                "1 when the service is HEALTHY",
                Gauges::default()
            ),
            service_flagged: reg!(
                "service_flagged",
                "1 while the human-intervention flag is up",
                Gauges::default()
            ),
            budget_used: reg!(
                "service_restart_budget_used",
                "Repairs counted against the restart budget in its current window",
                Gauges::default()
            ),
            budget_max: reg!(
                "restart_budget_max",
                "Repairs allowed per window (health.restart_budget.max)",
                Gauges::default()
            ),
            mirror_last_success: reg!(
                "mirror_last_success_timestamp",
                "End of the mirror's latest successful run",
                s.clone(),
                Gauges::default()
            ),
            mirror_lag: reg!(
                "mirror_lag",
                "Time since the mirror's latest successful run",
                s.clone(),
                Gauges::default()
            ),
            mirror_failures: reg!(
                "mirror_consecutive_failures",
                "Failed runs in a row since the mirror's last success",
                Gauges::default()
            ),
            jobs: reg!("compute_jobs", "Compute jobs by state", Gauges::default()),
            host_up: reg!(
                "runner_host_up",
                "1 when the runner host answered its last check",
                Gauges::default()
            ),
            gpu_total: reg!(
                "gpu_memory_total",
                "A runner host's GPU memory, as last probed",
                Unit::Bytes,
                Gauges::default()
            ),
            gpu_free: reg!(
                "gpu_memory_free",
                "A runner host's free GPU memory, as last probed",
                Unit::Bytes,
                Gauges::default()
            ),
            cert_expiry: reg!(
                "certificate_expiry_timestamp",
                "End of the current TLS certificate's validity",
                s,
                Gauges::default()
            ),
            scrape: Mutex::new(()),
            repairing_since: Mutex::new(HashMap::new()),
            mirror_started: Mutex::new(None),
            cursor: Mutex::new(Cursor::default()),
            registry: r,
        }
    }

    /// Counts what the store recorded since the last call (from its first row on the first):
    /// events and transitions through [`Metrics::observe`] (at most 100 000 rows per call; the
    /// rest at the next scrape), repairs by service and action.
    pub fn catch_up(&self, store: &Store) -> Result<(), StateError> {
        const ROWS: usize = 100_000;
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        // A store behind the cursor was replaced (a restore, a new data dir): count from its
        // end, not its history again.
        let (_, end) = store.feed_after(None, 1)?;
        if cursor.feed.0 > end.0 || cursor.feed.1 > end.1 {
            cursor.feed = end;
        }
        let mut seen = 0;
        while seen < ROWS {
            let (rows, next) = store.feed_after(Some(cursor.feed), 1000)?;
            cursor.feed = next;
            if rows.is_empty() {
                break;
            }
            seen += rows.len();
            for (_, row) in rows {
                if let Some(env) = envelope(row) {
                    self.observe(&env);
                }
            }
        }
        // Repairs by time: `clear_flag` deletes rows and SQLite reuses their ids.
        for (id, at, service, how) in store.repairs_since(cursor.repairs.at)? {
            if cursor.repairs.fresh(id, at) {
                self.repairs
                    .get_or_create(&l(&[("service", &service), ("how", &how)]))
                    .inc();
            }
        }
        for (id, at, mirror, result, took) in
            store.mirror_runs_finished_since(cursor.mirror_runs.at)?
        {
            if cursor.mirror_runs.fresh(id, at) {
                self.mirror_run_duration
                    .get_or_create(&l(&[("mirror", &mirror), ("result", &result)]))
                    .observe(took.max(0) as f64);
            }
        }
        Ok(())
    }

    /// Counts one event.
    pub fn observe(&self, env: &Envelope) {
        let e = &env.event;
        self.events
            .get_or_create(&l(&[
                ("kind", e.kind()),
                ("severity", e.severity().as_str()),
            ]))
            .inc();
        match e {
            Event::ServiceStateChanged { service, to, .. } => {
                self.transitions
                    .get_or_create(&l(&[("service", service), ("to", to)]))
                    .inc();
                let mut since = self
                    .repairing_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if to == "REPAIRING" {
                    since.entry(service.clone()).or_insert(env.at);
                } else if (to == "HEALTHY" || to == "FAILED")
                    && let Some(t0) = since.remove(service)
                {
                    self.repair_duration
                        .get_or_create(&l(&[("service", service)]))
                        .observe(env.at.saturating_sub(t0) as f64);
                }
            }
            Event::FlagRaised { service, .. } => {
                self.flags.get_or_create(&l(&[("service", service)])).inc();
            }
            Event::ReconcileActionFailed { service, .. } => {
                self.reconcile_failures
                    .get_or_create(&l(&[("service", service)]))
                    .inc();
            }
            Event::MirrorSyncStarted { .. } => {
                *self
                    .mirror_started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(env.at);
            }
            Event::MirrorSyncFinished { .. } => {
                if let Some(t0) = self
                    .mirror_started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    self.mirror_duration
                        .observe(env.at.saturating_sub(t0) as f64);
                }
            }
            Event::MirrorSynced {
                name,
                changed,
                deleted,
                ..
            } => {
                let result = if changed + deleted > 0 {
                    "synced"
                } else {
                    "up_to_date"
                };
                self.mirror_runs
                    .get_or_create(&l(&[("mirror", name), ("result", result)]))
                    .inc();
            }
            Event::MirrorFailed { name, .. } => {
                self.mirror_runs
                    .get_or_create(&l(&[("mirror", name), ("result", "failed")]))
                    .inc();
            }
            Event::DnsSynced {
                provider,
                created,
                updated,
                deleted,
                conflicts,
            } => {
                self.dns_syncs
                    .get_or_create(&l(&[("provider", provider), ("result", "ok")]))
                    .inc();
                for (change, n) in [
                    ("created", created),
                    ("updated", updated),
                    ("deleted", deleted),
                ] {
                    self.dns_changes
                        .get_or_create(&l(&[("provider", provider), ("change", change)]))
                        .inc_by(*n as u64);
                }
                self.dns_conflicts
                    .get_or_create(&l(&[("provider", provider)]))
                    .set(*conflicts as f64);
            }
            Event::DnsSyncFailed { provider, .. } => {
                self.dns_syncs
                    .get_or_create(&l(&[("provider", provider), ("result", "failed")]))
                    .inc();
            }
            Event::CertificateRenewed { .. } => {
                self.cert_renewals
                    .get_or_create(&l(&[("result", "ok")]))
                    .inc();
            }
            Event::CertificateRenewalFailed { .. } => {
                self.cert_renewals
                    .get_or_create(&l(&[("result", "failed")]))
                    .inc();
            }
            Event::ComputeJobChanged { to, .. } => {
                self.compute_changes.get_or_create(&l(&[("to", to)])).inc();
            }
            Event::RunnerScaled {
                runner,
                action,
                jobs,
                ..
            } => {
                self.runner_scaling
                    .get_or_create(&l(&[("runner", runner), ("action", action)]))
                    .inc();
                self.runner_jobs
                    .get_or_create(&l(&[("runner", runner)]))
                    .set(*jobs as f64);
            }
            Event::RunnerRepaired { runner, error, .. } => {
                let result = if error.is_some() { "failed" } else { "ok" };
                self.runner_repairs
                    .get_or_create(&l(&[("runner", runner), ("result", result)]))
                    .inc();
            }
            Event::ControllerFailed { controller, .. } => {
                self.controller_failures
                    .get_or_create(&l(&[("controller", controller)]))
                    .inc();
            }
            Event::BackupCreated { .. } => {
                self.backups.get_or_create(&l(&[("result", "ok")])).inc();
            }
            Event::BackupFailed { .. } => {
                self.backups
                    .get_or_create(&l(&[("result", "failed")]))
                    .inc();
            }
            Event::WebhookFailed { .. } => {
                self.webhook_failures.inc();
            }
            _ => {}
        }
    }

    /// One guard analysis: its verdict (`clean`, `suspicious`, `blocked`) and how long it took.
    pub fn guard_analysis(&self, verdict: &str, seconds: f64) {
        self.guard_decisions
            .get_or_create(&l(&[("verdict", verdict)]))
            .inc();
        self.guard_duration.observe(seconds);
    }

    /// One API request: the operation id (`services.list`), the status code, the latency.
    pub fn api_request(&self, operation: &'static str, status: u16, seconds: f64) {
        self.api_requests
            .get_or_create(&vec![
                ("operation", operation.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.api_duration
            .get_or_create(&vec![("operation", operation.to_owned())])
            .observe(seconds);
    }

    /// The exposition: the counters so far and the gauges of `state` (read at `now`).
    pub fn render(&self, state: &StateSnapshot, now: u64) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.fill(state, now);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    fn fill(&self, s: &StateSnapshot, now: u64) {
        for g in [
            &self.service_state,
            &self.service_healthy,
            &self.service_flagged,
            &self.budget_used,
            &self.budget_max,
            &self.mirror_last_success,
            &self.mirror_lag,
            &self.mirror_failures,
            &self.jobs,
            &self.host_up,
            &self.gpu_total,
            &self.gpu_free,
            &self.cert_expiry,
        ] {
            g.clear();
        }
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        for svc in &s.services {
            let name = svc.service.as_str();
            for st in autogit_core::lifecycle::State::ALL {
                self.service_state
                    .get_or_create(&l(&[("service", name), ("state", st.as_str())]))
                    .set(b(st.as_str() == svc.state));
            }
            let one = l(&[("service", name)]);
            self.service_healthy
                .get_or_create(&one)
                .set(b(svc.state == "HEALTHY"));
            self.service_flagged.get_or_create(&one).set(b(svc.flagged));
            self.budget_used
                .get_or_create(&one)
                .set(f64::from(svc.budget_used));
        }
        self.budget_max
            .get_or_create(&Vec::new())
            .set(f64::from(s.restart_budget.0));
        for m in &s.mirrors {
            let one = l(&[("mirror", &m.mirror)]);
            if let Some(t) = m.last_success {
                self.mirror_last_success.get_or_create(&one).set(t as f64);
                self.mirror_lag
                    .get_or_create(&one)
                    .set((now as i64).saturating_sub(t).max(0) as f64);
            }
            self.mirror_failures
                .get_or_create(&one)
                .set(f64::from(m.consecutive_failures));
        }
        for st in ["queued", "running", "succeeded", "failed", "cancelled"] {
            let n = s.jobs.get(st).copied().unwrap_or(0);
            self.jobs.get_or_create(&l(&[("state", st)])).set(n as f64);
        }
        for h in &s.hosts {
            self.host_up
                .get_or_create(&l(&[("host", &h.host)]))
                .set(b(h.reachable));
            for (i, total, free) in &h.gpus {
                let gpu = i.to_string();
                let labels = l(&[("host", &h.host), ("gpu", &gpu)]);
                self.gpu_total.get_or_create(&labels).set(*total as f64);
                self.gpu_free.get_or_create(&labels).set(*free as f64);
            }
        }
        if let Some(t) = s.certificate_not_after {
            self.cert_expiry.get_or_create(&Vec::new()).set(t as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn env(at: u64, event: Event) -> Envelope {
        Envelope { at, event }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    fn changed(service: &str, to: &str) -> Event {
        Event::ServiceStateChanged {
            project: "p".into(),
            service: service.into(),
            from: None,
            to: to.into(),
            reason: "r".into(),
            flagged: false,
        }
    }

    #[test]
    fn events_become_counters_and_a_repair_its_duration() {
        let m = Metrics::new();
        m.observe(&env(100, changed("gitlab", "REPAIRING")));
        m.observe(&env(130, changed("gitlab", "HEALTHY")));
        m.observe(&env(
            131,
            Event::FlagRaised {
                service: "gitlab".into(),
                reason: "budget spent".into(),
            },
        ));
        m.observe(&env(
            135,
            Event::RunnerScaled {
                runner: "gpu".into(),
                host: "h1".into(),
                action: "start".into(),
                jobs: 3,
                containers: 0,
                target: 1,
            },
        ));
        m.observe(&env(
            140,
            Event::MirrorFailed {
                name: "hw".into(),
                source: "git://h/hw".into(),
                error: "refused".into(),
            },
        ));
        let text = m.render(&StateSnapshot::default(), 200);
        for want in [
            r#"autogit_service_transitions_total{service="gitlab",to="REPAIRING"} 1"#,
            r#"autogit_service_transitions_total{service="gitlab",to="HEALTHY"} 1"#,
            r#"autogit_service_flags_raised_total{service="gitlab"} 1"#,
            r#"autogit_mirror_runs_total{mirror="hw",result="failed"} 1"#,
            r#"autogit_runner_scaling_total{runner="gpu",action="start"} 1"#,
            r#"autogit_runner_jobs{runner="gpu"} 3.0"#,
            r#"autogit_service_repair_duration_seconds_sum{service="gitlab"} 30.0"#,
            r#"autogit_service_repair_duration_seconds_count{service="gitlab"} 1"#,
            r#"autogit_events_total{kind="flag_raised",severity="error"} 1"#,
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        // No free text reaches a label.
        assert!(
            !text.contains("refused") && !text.contains("budget spent"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn state_gauges_are_one_hot_and_follow_the_latest_snapshot() {
        let m = Metrics::new();
        let mut s = StateSnapshot {
            services: vec![ServiceGauges {
                service: "gitlab".into(),
                state: "FAILED".into(),
                flagged: true,
                budget_used: 3,
            }],
            restart_budget: (5, 3600),
            mirrors: vec![MirrorGauges {
                mirror: "hw".into(),
                last_success: Some(900),
                consecutive_failures: 4,
            }],
            jobs: BTreeMap::from([("queued".into(), 2)]),
            hosts: vec![HostGauges {
                host: "gpu1".into(),
                reachable: true,
                gpus: vec![(0, 24 << 30, 1 << 30)],
            }],
            certificate_not_after: Some(5000),
        };
        let text = m.render(&s, 1000);
        for want in [
            r#"autogit_service_state{service="gitlab",state="FAILED"} 1.0"#,
            r#"autogit_service_state{service="gitlab",state="HEALTHY"} 0.0"#,
            r#"autogit_service_flagged{service="gitlab"} 1.0"#,
            r#"autogit_service_restart_budget_used{service="gitlab"} 3.0"#,
            "autogit_restart_budget_max 5.0",
            r#"autogit_mirror_lag_seconds{mirror="hw"} 100.0"#,
            r#"autogit_mirror_consecutive_failures{mirror="hw"} 4.0"#,
            r#"autogit_compute_jobs{state="queued"} 2.0"#,
            r#"autogit_compute_jobs{state="running"} 0.0"#,
            r#"autogit_gpu_memory_free_bytes{host="gpu1",gpu="0"} 1073741824.0"#,
            "autogit_certificate_expiry_timestamp_seconds 5000.0",
            "# TYPE autogit_service_state gauge",
            "# UNIT autogit_mirror_lag_seconds seconds",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        // A service that is gone leaves no stale series.
        s.services.clear();
        s.certificate_not_after = None;
        let text = m.render(&s, 1000);
        assert!(line(&text, "autogit_service_state{").is_none(), "{text}");
        assert!(line(&text, "autogit_certificate_expiry_timestamp_seconds ").is_none());
    }

    #[test]
    fn api_requests_and_guard_analyses() {
        let m = Metrics::new();
        m.api_request("services.list", 200, 0.002);
        m.api_request("services.list", 403, 0.001);
        m.guard_analysis("blocked", 0.0003);
        let text = m.render(&StateSnapshot::default(), 0);
        for want in [
            r#"autogit_api_requests_total{operation="services.list",status="200"} 1"#,
            r#"autogit_api_requests_total{operation="services.list",status="403"} 1"#,
            r#"autogit_api_request_duration_seconds_count{operation="services.list"} 2"#,
            r#"autogit_guard_decisions_total{verdict="blocked"} 1"#,
            "autogit_guard_analysis_duration_seconds_count 1",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }

    #[test]
    fn a_replaced_store_is_counted_from_its_end() {
        let d = tempfile::tempdir().unwrap();
        let record = |store: &Store, at| {
            let e = Event::BackupFailed {
                error: "disk full".into(),
            };
            let detail = serde_json::to_string(&e).unwrap();
            store.event(at, e.subject(), e.kind(), &detail).unwrap();
        };
        let first = Store::open(&d.path().join("a.db")).unwrap();
        for at in 1..=3 {
            record(&first, at);
        }
        let m = Metrics::new();
        m.catch_up(&first).unwrap();
        let second = Store::open(&d.path().join("b.db")).unwrap();
        record(&second, 10);
        m.catch_up(&second).unwrap();
        record(&second, 11);
        m.catch_up(&second).unwrap();
        let text = m.render(&StateSnapshot::default(), 0);
        let want = r#"autogit_backups_total{result="failed"} 4"#;
        assert!(text.contains(want), "{want} missing in\n{text}");
    }

    #[test]
    fn the_store_is_counted_once_from_its_first_row_whichever_process_wrote_it() {
        use autogit_core::lifecycle::State;
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("state.db")).unwrap();
        store
            .transition("gitlab", None, State::Repairing, "unhealthy", 100)
            .unwrap();
        store.record_repair("gitlab", "restart", 1, 101).unwrap();
        store
            .transition("gitlab", Some(State::Repairing), State::Healthy, "ok", 160)
            .unwrap();
        let record = |at, e: &Event| {
            let detail = serde_json::to_string(e).unwrap();
            store.event(at, e.subject(), e.kind(), &detail).unwrap();
        };
        record(
            170,
            &Event::DnsSynced {
                provider: "rfc2136".into(),
                created: 2,
                updated: 1,
                deleted: 0,
                conflicts: 1,
            },
        );
        let run = store
            .mirror_run_start("hw", "git://h/hw", "git://t/hw", 150)
            .unwrap();
        let m = Metrics::new();
        m.catch_up(&store).unwrap();
        // A run is counted when it ends, though its row is older than the cursor.
        let end = autogit_drivers::state::MirrorRunEnd {
            result: "synced",
            changed: 1,
            deleted: 0,
            error: None,
        };
        store.mirror_run_end(run, 192, &end).unwrap();
        m.catch_up(&store).unwrap();
        let text = m.render(&StateSnapshot::default(), 0);
        for want in [
            r#"autogit_mirror_run_duration_seconds_sum{mirror="hw",result="synced"} 42.0"#,
            r#"autogit_mirror_run_duration_seconds_count{mirror="hw",result="synced"} 1"#,
            r#"autogit_service_transitions_total{service="gitlab",to="REPAIRING"} 1"#,
            r#"autogit_service_repairs_total{service="gitlab",how="restart"} 1"#,
            r#"autogit_service_repair_duration_seconds_sum{service="gitlab"} 60.0"#,
            r#"autogit_dns_syncs_total{provider="rfc2136",result="ok"} 1"#,
            r#"autogit_dns_record_changes_total{provider="rfc2136",change="created"} 2"#,
            r#"autogit_dns_conflicts{provider="rfc2136"} 1.0"#,
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        // Only what is new is counted at the next scrape.
        store.record_repair("gitlab", "recreate", 2, 200).unwrap();
        record(
            201,
            &Event::FlagRaised {
                service: "gitlab".into(),
                reason: "budget".into(),
            },
        );
        m.catch_up(&store).unwrap();
        m.catch_up(&store).unwrap();
        // `reconcile --clear` deletes the repairs; the next one reuses a deleted row's id.
        assert!(store.clear_flag("gitlab").unwrap());
        store.record_repair("gitlab", "restart", 1, 300).unwrap();
        assert_eq!(
            store.repairs_since(300).unwrap()[0].0,
            1,
            "the id is reused"
        );
        m.catch_up(&store).unwrap();
        let text = m.render(&StateSnapshot::default(), 0);
        for want in [
            r#"autogit_service_transitions_total{service="gitlab",to="REPAIRING"} 1"#,
            r#"autogit_service_repairs_total{service="gitlab",how="restart"} 2"#,
            r#"autogit_service_repairs_total{service="gitlab",how="recreate"} 1"#,
            r#"autogit_service_flags_raised_total{service="gitlab"} 1"#,
            r#"autogit_dns_syncs_total{provider="rfc2136",result="ok"} 1"#,
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}
