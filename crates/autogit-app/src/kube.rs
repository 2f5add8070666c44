//! The Kubernetes target: the platform as the Kubernetes export describes it, applied to a
//! cluster and kept healthy there by the same decisions that keep it healthy on an engine.
//!
//! `install` applies every object by server-side apply (`core::kube_target::apply_plan`: in
//! rank order, field manager `autogit`), then waits for each workload's rollout
//! (`core::kube_target::rollout`, read from a watch of the workload). `status` and
//! `reconcile_once` read the workloads from the cluster instead of containers from the engine
//! and hand them to the platform's own [`autogit_core::reconcile::decide`] as [`Seen`]s, with
//! the records of a state store of their own (`<data>/kubernetes.db`: the cluster's services
//! are not the engine's), so the state machine, the repair backoff and budget and the
//! human-intervention flag work the same. The actions map onto the API: create, recreate and
//! start re-apply the service's objects; a repair is a rollout restart (the restart annotation
//! applied under its own field manager, forced); an orphan workload is deleted.

use crate::{Bus, Event, Settings};
use autogit_core::civil::rfc3339_utc;
use autogit_core::kube_target::{
    self, Apply, ApplyPlan, FIELD_MANAGER, RESTART_MANAGER, Rollout, Workload, WorkloadKind,
};
use autogit_core::kubernetes;
use autogit_core::lifecycle::{RepairAction, RepairPolicy, State};
use autogit_core::plan::Plan;
use autogit_core::reconcile::{Action, Input, Seen, decide};
use autogit_core::render;
use autogit_drivers::kube::{KubeClient, KubeError, WatchEvent};
use autogit_drivers::state::{ServiceRow, StateError, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KubeTargetError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Plan(String),
}

/// What one reconcile pass did.
#[derive(Debug, Default)]
pub struct KubePass {
    pub actions: Vec<Action>,
    /// Actions that failed, as (service, message).
    pub errors: Vec<(String, String)>,
    pub requeue_at: Option<u64>,
}

/// One workload as `status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkloadStatus {
    pub service: String,
    pub kind: WorkloadKind,
    pub name: String,
    /// `None`: it does not exist in the cluster.
    pub rollout: Option<Rollout>,
    pub ready: u64,
    pub replicas: u64,
    /// The state the reconcile loop recorded, and since when (unix seconds).
    pub state: Option<String>,
    pub since: Option<i64>,
    pub restarts: i64,
    pub flagged: bool,
}

/// How `install` ended.
#[derive(Debug, PartialEq)]
pub enum KubeInstall {
    /// Every workload rolled out, after this many seconds.
    Ready { workloads: usize, after: Duration },
    /// Not waited for (`--wait 0`).
    Applied { objects: usize },
    /// These workloads had not rolled out when the wait ended (service, why).
    NotReady(Vec<(String, String)>),
}

/// Progress of `install`, for a shell to show.
#[derive(Debug)]
pub enum KubeProgress<'a> {
    Applied(&'a Apply),
    Waiting { service: &'a str, why: &'a str },
    Ready(&'a str),
}

#[derive(Debug)]
pub struct KubeController {
    settings: Arc<Settings>,
    bus: Bus,
    client: KubeClient,
    pub plan: ApplyPlan,
    store: Mutex<Store>,
    policy: RepairPolicy,
    project: String,
    force_conflicts: bool,
}

/// The state store of the Kubernetes target in the data dir.
pub fn store_path(settings: &Settings) -> std::path::PathBuf {
    settings.data_dir.join("kubernetes.db")
}

/// What the cluster should run: the Kubernetes export of the configuration's platform state,
/// as an apply plan.
pub fn apply_plan(settings: &Arc<Settings>, plan: &Plan) -> Result<ApplyPlan, String> {
    let st = crate::export::from_config(settings, plan);
    let files: BTreeMap<String, String> = render::cluster_files(plan, &settings.config)
        .into_iter()
        .collect();
    kube_target::apply_plan(&st, &kubernetes::objects(&st, &files))
}

impl KubeController {
    /// The controller for `plan` on the cluster `client` reaches. `force_conflicts`: take
    /// over fields another manager owns (`--force-conflicts`).
    pub fn open(
        settings: Arc<Settings>,
        bus: Bus,
        client: KubeClient,
        plan: &Plan,
        force_conflicts: bool,
    ) -> Result<Self, KubeTargetError> {
        let apply = apply_plan(&settings, plan).map_err(KubeTargetError::Plan)?;
        settings.ensure_data_dir().map_err(KubeTargetError::Plan)?;
        let store = Store::open(&store_path(&settings))?;
        Ok(Self {
            policy: RepairPolicy::from_config(&settings.config.health),
            project: plan.project.clone(),
            settings,
            bus,
            client,
            plan: apply,
            store: Mutex::new(store),
            force_conflicts,
        })
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The kubeconfig context it acts on.
    pub fn context(&self) -> &str {
        &self.client.endpoint().context
    }

    /// The namespace of the platform (its project).
    pub fn namespace(&self) -> &str {
        &self.project
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.bus.clock().now()
    }

    /// Applies every object, in order.
    pub async fn apply_all(
        &self,
        progress: &(dyn Fn(KubeProgress<'_>) + Send + Sync),
    ) -> Result<usize, KubeError> {
        for a in &self.plan.applies {
            self.client
                .apply(&a.path(), &a.object, FIELD_MANAGER, self.force_conflicts)
                .await?;
            progress(KubeProgress::Applied(a));
        }
        Ok(self.plan.applies.len())
    }

    /// Applies the objects of one service (its workload, Service, ConfigMap, claims).
    async fn apply_service(&self, service: &str) -> Result<(), KubeError> {
        for a in self.plan.of_service(service) {
            self.client
                .apply(&a.path(), &a.object, FIELD_MANAGER, self.force_conflicts)
                .await?;
        }
        Ok(())
    }

    /// Waits for one workload's rollout until `deadline`: its object read, then a watch of it
    /// from that version (read again when the watch ends or its version expired).
    async fn wait_one(
        &self,
        w: &Workload,
        deadline: tokio::time::Instant,
        progress: &(dyn Fn(KubeProgress<'_>) + Send + Sync),
    ) -> Result<Option<String>, KubeError> {
        let collection = kube_target::workload_resource(w.kind).collection_path(Some(&w.namespace));
        loop {
            let (items, rv) = self.client.list(&collection, None).await?;
            let obj = items
                .iter()
                .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(&w.name));
            let mut why = match obj.map(|o| kube_target::rollout(w.kind, o)) {
                Some(Rollout::Complete) => return Ok(None),
                Some(Rollout::Failed(why)) => return Ok(Some(why)),
                Some(Rollout::Progressing(why)) => why,
                None => "not created yet".to_owned(),
            };
            progress(KubeProgress::Waiting {
                service: &w.service,
                why: &why,
            });
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Some(why));
            }
            let mut watch = self
                .client
                .watch(&collection, Some(&w.name), None, &rv, left.as_secs().max(1))
                .await?;
            loop {
                let ev = tokio::select! {
                    ev = watch.next() => ev?,
                    () = tokio::time::sleep_until(deadline) => return Ok(Some(why)),
                };
                match ev {
                    Some(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        match kube_target::rollout(w.kind, &o) {
                            Rollout::Complete => return Ok(None),
                            Rollout::Failed(f) => return Ok(Some(f)),
                            Rollout::Progressing(p) => {
                                if p != why {
                                    progress(KubeProgress::Waiting {
                                        service: &w.service,
                                        why: &p,
                                    });
                                }
                                why = p;
                            }
                        }
                    }
                    Some(WatchEvent::Deleted(_)) => why = "deleted".into(),
                    Some(WatchEvent::Bookmark(_)) => {}
                    // 410 Gone (the version was compacted away), or the server ended the
                    // watch: read it again.
                    Some(WatchEvent::Error { .. }) | None => break,
                }
            }
        }
    }

    /// Waits until every workload kept running has rolled out, or `timeout`.
    pub async fn wait_ready(
        &self,
        timeout: Duration,
        progress: &(dyn Fn(KubeProgress<'_>) + Send + Sync),
    ) -> Result<Vec<(String, String)>, KubeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut not_ready = Vec::new();
        for w in self.plan.workloads.iter().filter(|w| w.replicas > 0) {
            match self.wait_one(w, deadline, progress).await? {
                None => progress(KubeProgress::Ready(&w.service)),
                Some(why) => not_ready.push((w.service.clone(), why)),
            }
        }
        Ok(not_ready)
    }

    /// `install --target kubernetes`: apply everything, then wait up to `wait` (zero: do not
    /// wait) for every workload's rollout. A reconcile pass then records what runs.
    pub async fn install(
        &self,
        wait: Duration,
        progress: &(dyn Fn(KubeProgress<'_>) + Send + Sync),
    ) -> Result<KubeInstall, KubeTargetError> {
        let started = tokio::time::Instant::now();
        let objects = self.apply_all(progress).await?;
        // What was applied is deploying (as an engine's create is), until a pass sees it.
        let t = self.now();
        let records = self.store().records(t, self.policy.budget_window_secs)?;
        for d in self.plan.desired() {
            let from = records.get(&d.service).and_then(|r| r.state);
            if matches!(from, None | Some(State::Absent)) {
                let a = Action::Transition {
                    service: d.service.clone(),
                    from,
                    to: State::Deploying,
                    reason: "install".into(),
                };
                self.execute(&a, t).await.map_err(|(_, e)| e)?;
            }
        }
        if wait.is_zero() {
            return Ok(KubeInstall::Applied { objects });
        }
        let not_ready = self.wait_ready(wait, progress).await?;
        // Record the states the rollouts reached (DEPLOYING → HEALTHY).
        self.reconcile_once().await?;
        if not_ready.is_empty() {
            Ok(KubeInstall::Ready {
                workloads: self.plan.desired().len(),
                after: started.elapsed(),
            })
        } else {
            Ok(KubeInstall::NotReady(not_ready))
        }
    }

    /// Each workload's object in the cluster (`None` when missing), and the project's
    /// workloads no service wants any more (service, path).
    async fn observe(&self) -> Result<(BTreeMap<String, Value>, Vec<(String, String)>), KubeError> {
        let selector = kube_target::managed_selector(&self.project);
        let mut found = BTreeMap::new();
        let mut orphans = Vec::new();
        for kind in [WorkloadKind::Deployment, WorkloadKind::StatefulSet] {
            let r = kube_target::workload_resource(kind);
            let (items, _) = self
                .client
                .list(&r.collection_path(Some(&self.project)), Some(&selector))
                .await?;
            for o in items {
                let Some(name) = o.pointer("/metadata/name").and_then(Value::as_str) else {
                    continue;
                };
                let path = r.object_path(Some(&self.project), name);
                let wanted = self
                    .plan
                    .workloads
                    .iter()
                    .any(|w| w.kind == kind && w.name == name);
                if wanted {
                    found.insert(path, o);
                } else {
                    let service = kube_target::service_of(&o).unwrap_or(name).to_owned();
                    orphans.push((service, path));
                }
            }
        }
        Ok((found, orphans))
    }

    fn seen(&self, found: &BTreeMap<String, Value>, orphans: &[(String, String)]) -> Vec<Seen> {
        let mut seen: Vec<Seen> = self
            .plan
            .workloads
            .iter()
            .filter(|w| w.replicas > 0)
            .filter_map(|w| kube_target::seen(w, found.get(&w.path())))
            .collect();
        for (service, path) in orphans {
            seen.push(Seen {
                service: service.clone(),
                container_id: path.clone(),
                spec_hash: None,
                running: true,
                never_started: false,
                health: autogit_core::reconcile::Health::None,
                oom_killed: false,
            });
        }
        seen
    }

    /// The workloads as the cluster shows them, with what the reconcile loop recorded.
    #[tracing::instrument(name = "kube.status", skip_all, fields(namespace = %self.namespace()))]
    pub async fn status(&self) -> Result<Vec<WorkloadStatus>, KubeTargetError> {
        let (found, _) = self.observe().await?;
        let rows: BTreeMap<String, ServiceRow> = self
            .store()
            .services()?
            .into_iter()
            .map(|r| (r.service.clone(), r))
            .collect();
        Ok(self
            .plan
            .workloads
            .iter()
            .map(|w| {
                let obj = found.get(&w.path());
                let n = |p: &str| {
                    obj.and_then(|o| o.pointer(p))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                let ready = match w.kind {
                    WorkloadKind::Deployment => n("/status/availableReplicas"),
                    WorkloadKind::StatefulSet => n("/status/readyReplicas"),
                };
                let row = rows.get(&w.service);
                WorkloadStatus {
                    service: w.service.clone(),
                    kind: w.kind,
                    name: w.name.clone(),
                    rollout: obj.map(|o| kube_target::rollout(w.kind, o)),
                    ready,
                    replicas: w.replicas,
                    state: row.map(|r| r.state.clone()),
                    since: row.map(|r| r.since),
                    restarts: row.map_or(0, |r| r.restarts),
                    flagged: row.is_some_and(|r| r.flagged),
                }
            })
            .collect())
    }

    /// One reconcile pass against the cluster: observe, decide (the platform's `decide`),
    /// act, record, publish.
    #[tracing::instrument(name = "kube.reconcile", skip_all, fields(namespace = %self.namespace()))]
    pub async fn reconcile_once(&self) -> Result<KubePass, KubeTargetError> {
        let (found, orphans) = match self.observe().await {
            Ok(o) => o,
            Err(e) => {
                self.bus.publish(Event::ControllerFailed {
                    controller: "kubernetes".into(),
                    error: e.to_string(),
                    failures: 1,
                    retry_in_s: 5,
                });
                return Err(e.into());
            }
        };
        let seen = self.seen(&found, &orphans);
        let t = self.now();
        let records = self.store().records(t, self.policy.budget_window_secs)?;
        let desired = self.plan.desired();
        let actions = decide(&Input {
            desired: &desired,
            seen: &seen,
            records: &records,
            policy: self.policy,
            now: t,
            jitter: jitter(t),
        });
        let mut pass = KubePass::default();
        for a in &actions {
            if let Err((service, e)) = self.execute(a, t).await {
                let msg = e.to_string();
                let _ = self.store().event(t, Some(&service), "error", &msg);
                self.bus.publish(Event::ReconcileActionFailed {
                    service: service.clone(),
                    error: msg.clone(),
                });
                pass.errors.push((service, msg));
            }
            match a {
                Action::RequeueAt { at, .. } => {
                    pass.requeue_at = Some(pass.requeue_at.map_or(*at, |r: u64| r.min(*at)));
                }
                Action::Transition { .. } => {}
                Action::Flag { service, reason } => {
                    self.bus.publish(Event::FlagRaised {
                        service: service.clone(),
                        reason: reason.clone(),
                    });
                }
                _ => self.bus.publish(Event::ReconcileAction {
                    action: serde_json::to_value(a).unwrap_or_default(),
                }),
            }
        }
        pass.actions = actions;
        Ok(pass)
    }

    /// The reconcile loop against the cluster until `shutdown`: a pass at once, then again
    /// when a workload of the project changes (a watch of its Deployments and StatefulSets,
    /// as kube-rs' controllers are woken), when a service asked to be requeued, and every
    /// `interval`. A failed pass (the API unreachable) is retried after 5 s at most. `on_pass`
    /// sees each result.
    pub async fn run(
        &self,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
        on_pass: impl Fn(&Result<KubePass, KubeTargetError>),
    ) {
        tokio::pin!(shutdown);
        loop {
            let result = self.reconcile_once().await;
            let wait = match &result {
                Ok(p) => p.requeue_at.map_or(interval, |at| {
                    Duration::from_secs(at.saturating_sub(self.now()).max(1)).min(interval)
                }),
                Err(_) => Duration::from_secs(5).min(interval),
            };
            on_pass(&result);
            let changed = self.changed(wait);
            tokio::select! {
                () = &mut shutdown => return,
                () = changed => {}
            }
        }
    }

    /// Returns after `wait`, or sooner when a workload of the project changes.
    async fn changed(&self, wait: Duration) {
        let selector = kube_target::managed_selector(&self.project);
        let secs = wait.as_secs().max(1);
        let mut watches = Vec::new();
        for kind in [WorkloadKind::Deployment, WorkloadKind::StatefulSet] {
            let c = kube_target::workload_resource(kind).collection_path(Some(&self.project));
            if let Ok((_, rv)) = self.client.list(&c, Some(&selector)).await
                && let Ok(w) = self
                    .client
                    .watch(&c, None, Some(&selector), &rv, secs)
                    .await
            {
                watches.push(w);
            }
        }
        let timer = tokio::time::sleep(wait);
        tokio::pin!(timer);
        let mut pending: Vec<_> = watches
            .iter_mut()
            .map(|w| Box::pin(next_change(w)))
            .collect();
        if pending.is_empty() {
            timer.await;
            return;
        }
        tokio::select! {
            () = &mut timer => {}
            _ = futures_util::future::select_all(pending.iter_mut()) => {
                // Let a burst (the status after the spec) settle into one pass.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn workload(&self, service: &str) -> Option<&Workload> {
        self.plan.workloads.iter().find(|w| w.service == service)
    }

    /// The rollout restart of a service's workload (its pods replaced).
    #[tracing::instrument(name = "kube.restart", skip_all, fields(namespace = %self.namespace(), service = %service))]
    pub async fn restart(&self, service: &str) -> Result<(), KubeError> {
        let Some(w) = self.workload(service) else {
            return Ok(());
        };
        let patch = kube_target::restart_patch(w, &rfc3339_utc(self.now()));
        self.client
            .apply(&w.path(), &patch, RESTART_MANAGER, true)
            .await
            .map(drop)
    }

    async fn execute(&self, action: &Action, t: u64) -> Result<(), (String, KubeTargetError)> {
        let wrap = |s: &str| {
            let s = s.to_owned();
            move |e: KubeError| (s, KubeTargetError::from(e))
        };
        let st = |s: &str| {
            let s = s.to_owned();
            move |e: StateError| (s, KubeTargetError::from(e))
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
                    .map_err(st(service))?;
                self.bus.publish(Event::ServiceStateChanged {
                    project: self.project.clone(),
                    service: service.clone(),
                    from: from.map(|f| f.to_string()),
                    to: to.to_string(),
                    reason: reason.clone(),
                    flagged: false,
                });
            }
            // Applying is creating, updating and scaling back up alike.
            Action::Create { service } | Action::Start { service } => {
                self.apply_service(service).await.map_err(wrap(service))?;
            }
            // The pods of a changed spec are replaced by the rollout the apply starts.
            Action::Recreate { service, .. } => {
                self.apply_service(service).await.map_err(wrap(service))?;
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
                    .map_err(st(service))?;
                // Recreate: the objects applied again (one deleted under autogit comes
                // back), then the pods replaced; restart: the pods replaced.
                if *how == RepairAction::Recreate {
                    self.apply_service(service).await.map_err(wrap(service))?;
                }
                self.restart(service).await.map_err(wrap(service))?;
            }
            Action::Flag { service, reason } => {
                let s = self.store();
                s.set_flag(service, reason).map_err(st(service))?;
                let _ = s.event(t, Some(service), "flag", reason);
            }
            Action::RemoveOrphan {
                container_id,
                service,
            } => {
                self.client
                    .delete(container_id)
                    .await
                    .map_err(wrap(service))?;
                let _ = self.store().forget(service);
            }
            Action::RequeueAt { .. } => {}
        }
        Ok(())
    }

    /// Clears a service's human-intervention flag.
    pub fn clear_flag(&self, service: &str) -> Result<bool, StateError> {
        self.store().clear_flag(service)
    }
}

/// Returns at the first change a watch reports (never, once the watch has ended: the timer
/// decides then).
async fn next_change(w: &mut autogit_drivers::kube::Watch) {
    loop {
        match w.next().await {
            Ok(Some(WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_))) => {
                return;
            }
            Ok(Some(WatchEvent::Bookmark(_))) => {}
            Ok(Some(WatchEvent::Error { .. }) | None) | Err(_) => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A number in [0, 1) for the backoff's jitter, from the time (a pass is not a hot loop).
fn jitter(t: u64) -> f64 {
    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}
